"""DHHN (ACM MM 2022): the HCMN parsing network, two guiding networks in training, three selected
checkpoints and the dual-stream model at val/test; PROTOCOL.md §5-§10."""
from nets import build_hcmn, build_mgns
from recipes.base import Recipe, ReportRow, SelectionRole, WeakLabelCriterion
from utils.losses import mgn_losses, parsing_losses

# as published, the MGN learning rates follow --lr: 2x (audio) and 0.2x (visual) in train, 1x in
# retrain; an explicit --lr_audio_mgn / --lr_visual_mgn wins (PROTOCOL.md §7, §10)
MGN_LR_FACTORS = {"train": {"audio_mgn": 2.0, "visual_mgn": 0.2},
                  "retrain": {"audio_mgn": 1.0, "visual_mgn": 1.0}}


class DHHNCriterion(WeakLabelCriterion):
    """The HCMN loss (bce_*, guide_audio, guide_visual, rmse) and the MGN loss (mgn_bce_audio,
    mgn_bce_visual, mgn_rmse); PROTOCOL.md §7, §10. An ablated MGN has no net, so no terms."""

    def __init__(self, use_rmse=True):
        self.use_rmse = use_rmse

    def forward(self, nets, batch):
        outputs = dict(super().forward(nets, batch))
        if "audio_mgn" in nets:
            outputs["audio_guide"] = nets["audio_mgn"](batch["audio"])
        if "visual_mgn" in nets:
            outputs["visual_guide"] = nets["visual_mgn"](batch["frames"], batch["snippets"])
        return outputs

    def __call__(self, outputs, batch):
        labels = batch["labels"]
        targets = self.targets(batch)
        audio_guide, visual_guide = outputs.get("audio_guide"), outputs.get("visual_guide")
        losses = parsing_losses(outputs, targets, audio_guide, visual_guide, use_rmse=self.use_rmse)
        # the MGNs learn the weak labels, or P_a and P_v when the labels are refined (PROTOCOL.md §10)
        refined = "audio_flags" in batch or "visual_flags" in batch
        losses.update(mgn_losses(audio_guide, visual_guide,
                                 targets.audio if refined else labels,
                                 targets.visual if refined else labels))
        # the MGN terms see the HCMN only through detached guides, so one backward pass of the sum
        # gives exactly the gradients of the two separate published objectives
        return losses


def _model_config(args, feature_dims):
    return {"model_name": "dhhn", "feature_dims": dict(feature_dims),
            "hier_feat": args.hier_feat, "hier_pred": args.hier_pred}


def _build_model(config):
    return build_hcmn(config["feature_dims"], hier_feat=config["hier_feat"], hier_pred=config["hier_pred"])


def _build_guides(args, feature_dims):
    # both are built whatever the switches, so that the random initialisation of every net is the
    # same with and without an ablation; each net shares its name with its switch (--no_audio_mgn)
    audio_mgn, visual_mgn = build_mgns(feature_dims)
    built = {"audio_mgn": audio_mgn, "visual_mgn": visual_mgn}
    return {name: net for name, net in built.items() if getattr(args, name)}


def _derive_mgn_learning_rates(args, training_mode):
    for guide, factor in MGN_LR_FACTORS[training_mode].items():
        flag = f"lr_{guide}"
        if getattr(args, flag) is None:
            setattr(args, flag, factor * args.lr)   # computed as the release did: factor * lr


def _learning_rates(args):
    return {"model": args.lr, "audio_mgn": args.lr_audio_mgn, "visual_mgn": args.lr_visual_mgn}


RECIPE = Recipe(
    name="dhhn",
    help="DHHN: HCMN + MGNs, three selected checkpoints, dual-stream test (PROTOCOL.md §5-§8)",
    model_config=_model_config,
    build_model=_build_model,
    build_guides=_build_guides,
    learning_rates=_learning_rates,
    criterion=lambda args: DHHNCriterion(use_rmse=args.rmse),
    gating="modality",
    # PROTOCOL.md §7: each kept when its own val score strictly improves
    selection=(
        SelectionRole("audio", lambda metrics: (metrics["seg_audio"] + metrics["evt_audio"]) / 2),
        SelectionRole("visual", lambda metrics: (metrics["seg_visual"] + metrics["evt_visual"]) / 2),
        SelectionRole("overall", lambda metrics: metrics["seg_type"]),
    ),
    # PROTOCOL.md §8: the dual stream, then the single best-overall HCMN to show what dual selection adds
    rows=(
        ReportRow("DHHN dual (best-audio + best-visual)", "audio", "visual"),
        ReportRow("HCMN best-overall", "overall", "overall", required=False),
    ),
    # PROTOCOL.md §7 (train) and §10 (retrain)
    published={
        "train": dict(batch_size=64, epochs=10, lr=3e-4),
        "retrain": dict(batch_size=64, epochs=5, lr=3e-4),
    },
    derive_flags=_derive_mgn_learning_rates,
    release_kind="hcmn",
    switches=("hier_feat", "hier_pred", "audio_mgn", "visual_mgn", "rmse"),
)
