"""MA (Wu & Yang, CVPR 2021), the estimator behind the published refinement flags and the "MA" row
of DHHN's Table 1: the HAN baseline's network trained with a segment contrastive term, the last
epoch's weights kept (no selection on val); PROTOCOL.md §12."""
import dataclasses

from recipes import han
from recipes.base import (
    ReportRow,
    SelectionRole,
    TrainingModule,
    WeakLabelCriterion,
    criterion_settings,
    feature_sizes_config,
)
from recipes.losses import parsing_losses, segment_contrast_loss


class MATrainingModule(TrainingModule):
    """The HAN network's outputs plus the two segment sequences MA's contrastive term compares
    (audio_embed, visual_embed, (B, 10, d)); PROTOCOL.md §12. A padded batch's mask reaches the
    network and the contrastive term (§16)."""

    def forward(self, batch):
        outputs, audio_embed, visual_embed = self.model.forward_with_embeddings(
            batch["audio"], batch["frames"], batch["snippets"], batch.get("mask"))
        return {**outputs, "audio_embed": audio_embed, "visual_embed": visual_embed}


class MACriterion(WeakLabelCriterion):
    """bce_audio, bce_visual, bce_global (refined targets when the batch carries flags) and
    `contrast`, the segment contrastive term; PROTOCOL.md §12."""

    def model_losses(self, outputs, batch):
        losses = parsing_losses(outputs, self.targets(batch), use_rmse=False)
        losses["contrast"] = segment_contrast_loss(outputs["audio_embed"], outputs["visual_embed"],
                                                   mask=batch.get("mask"))
        return losses


# the HAN baseline's network, builder and optimisation; what differs is listed here
RECIPE = dataclasses.replace(
    han.RECIPE,
    name="ma",
    title="MA",
    help="MA: HAN + segment contrastive term, last epoch kept, the published flags' estimator (PROTOCOL.md §12)",
    model_config=feature_sizes_config("ma", han.NETWORK_OPTIONS),
    criterion=lambda config: MACriterion(**criterion_settings(config)),
    training_module=MATrainingModule,
    # as the MA release scores (its step 1 and step 3): segments gated by a_prob / v_prob
    gating="modality",
    # no selection: a constant score with ties to the later epoch keeps every epoch, so the last
    selection=(SelectionRole("final", lambda metrics: 0.0, ties_to_later=True),),
    rows=(ReportRow("MA (last epoch)", "final", "final"),),
    published={
        "train": dict(batch_size=16, epochs=12, lr=3e-4),
        "retrain": dict(batch_size=16, epochs=12, lr=3e-4),
    },
    refine_source="final",
    release_files={},
    release_settings=None,
)
