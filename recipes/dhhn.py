"""DHHN (ACM MM 2022): the HCMN parsing network, two guiding networks in training, three selected
checkpoints and the dual-stream model at val/test; PROTOCOL.md §5-§10."""
from avvp_data.datasets import recorded_classes
from avvp_data.llp import MODALITIES
from nets import build_hcmn, build_mgns
from recipes.base import Recipe, ReportRow, SelectionRole, TrainingModule, WeakLabelCriterion, criterion_settings
from recipes.losses import mgn_losses, parsing_losses, segment_pseudo_label_loss

# as published, the MGN learning rates follow --lr: 2x (audio) and 0.2x (visual) in train, 1x in
# retrain; an explicit --lr_audio_mgn / --lr_visual_mgn wins (PROTOCOL.md §7, §10)
MGN_LR_FACTORS = {"train": {"audio_mgn": 2.0, "visual_mgn": 0.2},
                  "retrain": {"audio_mgn": 1.0, "visual_mgn": 1.0}}


class DHHNTrainingModule(TrainingModule):
    """The HCMN and the MGNs that guide it in training (PROTOCOL.md §6): the HCMN's outputs plus each
    MGN's video-level (audio_guide, visual_guide) and segment probabilities (*_guide_segments). An
    ablated MGN is not among the guides, so it has no outputs."""

    def forward(self, batch):
        outputs = dict(super().forward(batch))
        nets = self.nets
        mask = batch.get("mask")
        if "audio_mgn" in nets:
            outputs["audio_guide"], outputs["audio_guide_segments"] = nets["audio_mgn"].with_segments(
                batch["audio"], mask)
        if "visual_mgn" in nets:
            outputs["visual_guide"], outputs["visual_guide_segments"] = nets["visual_mgn"].with_segments(
                batch["frames"], batch["snippets"], mask)
        return outputs


class DHHNCriterion(WeakLabelCriterion):
    """The HCMN loss (bce_*, guide_audio, guide_visual, rmse) and the MGN loss (mgn_bce_audio,
    mgn_bce_visual, mgn_rmse); PROTOCOL.md §7, §10. An ablated MGN has no net, so no terms.

    With segment pseudo-labels the HCMN gets pseudo_audio / pseudo_visual on its segment
    probabilities (the mean over scales, PROTOCOL.md §13). pseudo_mgn: each MGN also learns its
    modality's pseudo-labels on its own segment probabilities (mgn_pseudo_audio,
    mgn_pseudo_visual); off by default, since the MGNs exist to give video-level guidance.
    """

    def __init__(self, use_rmse=True, pseudo_mgn=False, **settings):
        super().__init__(**settings)
        self.use_rmse = use_rmse
        self.pseudo_mgn = pseudo_mgn

    def model_losses(self, outputs, batch):
        labels = batch["labels"]
        targets = self.targets(batch)
        audio_guide, visual_guide = outputs.get("audio_guide"), outputs.get("visual_guide")
        losses = parsing_losses(outputs, targets, audio_guide, visual_guide, use_rmse=self.use_rmse)
        # the MGNs learn the weak labels, or P_a and P_v when the labels are refined (PROTOCOL.md §10)
        # or given per modality (LFAV, §16)
        refined = "audio_flags" in batch or "visual_flags" in batch or "audio_labels" in batch
        losses.update(mgn_losses(audio_guide, visual_guide,
                                 targets.audio if refined else labels,
                                 targets.visual if refined else labels))
        if self.pseudo_mgn:
            for modality in MODALITIES:
                segments, target = outputs.get(f"{modality}_guide_segments"), batch.get(f"{modality}_pseudo")
                if segments is not None and target is not None:
                    losses[f"mgn_pseudo_{modality}"] = self.pseudo_weight * segment_pseudo_label_loss(
                        segments, target, batch.get("mask"))
        # the MGN terms see the HCMN only through detached guides, so one backward pass of the sum
        # gives exactly the gradients of the two separate published objectives
        return losses


def _model_config(config, feature_dims):
    return {"model_name": "dhhn", "feature_dims": dict(feature_dims),
            "hier_feat": config.model.hier_feat, "hier_pred": config.model.hier_pred,
            "classes": list(config.data.class_names)}


def _build_model(config):
    return build_hcmn(config["feature_dims"], hier_feat=config["hier_feat"], hier_pred=config["hier_pred"],
                      num_classes=len(recorded_classes(config)))


def _build_guides(config, feature_dims):
    # both are built whatever the switches, so that the random initialisation of every net is the
    # same with and without an ablation; each net shares its name with its switch (--no_audio_mgn)
    audio_mgn, visual_mgn = build_mgns(feature_dims, num_classes=len(config.data.class_names))
    built = {"audio_mgn": audio_mgn, "visual_mgn": visual_mgn}
    return {name: net for name, net in built.items() if getattr(config.model, name)}


def _derive_mgn_learning_rates(values, training_mode):
    for guide, factor in MGN_LR_FACTORS[training_mode].items():
        flag = f"lr_{guide}"
        if values[flag] is None:
            values[flag] = factor * values["lr"]   # computed as the release did: factor * lr


def _learning_rates(config):
    return {"model": config.optim.lr, "audio_mgn": config.optim.lr_audio_mgn, "visual_mgn": config.optim.lr_visual_mgn}


RECIPE = Recipe(
    name="dhhn",
    title="DHHN",
    help="DHHN: HCMN + MGNs, three selected checkpoints, dual-stream test (PROTOCOL.md §5-§8)",
    model_config=_model_config,
    build_model=_build_model,
    build_guides=_build_guides,
    learning_rates=_learning_rates,
    criterion=lambda config: DHHNCriterion(use_rmse=config.model.rmse, pseudo_mgn=config.model.pseudo_mgn,
                                           **criterion_settings(config)),
    training_module=DHHNTrainingModule,
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
    # the DHHN release saves its three selected HCMNs under these names
    release_files={"audio": (("{name}_audio.pt", "DHHN release"),), "visual": (("{name}_video.pt", "DHHN release"),),
                   "overall": (("{name}_aud-vis.pt", "DHHN release"),)},
    switches=("hier_feat", "hier_pred", "audio_mgn", "visual_mgn", "rmse"),
    options={"pseudo_mgn": False},
)
