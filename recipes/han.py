"""The HAN baseline (Tian et al., ECCV 2020): one HAN layer at one scale, the weak-label loss only,
one checkpoint selected by val Type@AV, global gating at val/test; PROTOCOL.md §11."""
from nets import build_han
from recipes.base import (Recipe, ReportRow, SelectionRole, WeakLabelCriterion, feature_sizes_config,
                          model_learning_rate, no_guides)


RECIPE = Recipe(
    name="han",
    help="the HAN baseline: one selected checkpoint, global gating (PROTOCOL.md §11)",
    model_config=feature_sizes_config("han"),
    build_model=lambda config: build_han(config["feature_dims"]),
    build_guides=no_guides,
    learning_rates=model_learning_rate,
    criterion=lambda args: WeakLabelCriterion(),
    gating="global",
    # the best val Type@AV segment score, ties going to the later epoch
    selection=(SelectionRole("overall", lambda metrics: metrics["seg_type"], ties_to_later=True),),
    rows=(ReportRow("HAN best (val Type@AV seg.)", "overall", "overall"),),
    published={
        "train": dict(batch_size=16, epochs=40, lr=3e-4),
        "retrain": dict(batch_size=16, epochs=40, lr=3e-4),
    },
    release_kind="han",
)
