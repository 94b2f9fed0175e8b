"""The HAN baseline (Tian et al., ECCV 2020): one HAN layer at one scale, the weak-label loss only,
one checkpoint selected by val Type@AV, global gating at val/test; PROTOCOL.md §11."""
import os

from avvp_data.datasets import recorded_classes
from nets import build_han
from nets.convert import release_han_settings
from recipes.base import (
    Recipe,
    ReportRow,
    SelectionRole,
    TrainingModule,
    WeakLabelCriterion,
    criterion_settings,
    feature_sizes_config,
    model_learning_rate,
    no_guides,
)

# the network's settings as published (PROTOCOL.md §11), under VALOR's flag names (PROTOCOL.md §13)
NETWORK_OPTIONS = {"hidden_dim": 512, "nhead": 1, "ff_dim": 512, "num_layers": 1, "han_update": "parallel"}


def build_model(config):
    """The network of a recorded config; configs written before the options existed are the published one."""
    return build_han(config["feature_dims"], **{option: config.get(option, published)
                                                for option, published in NETWORK_OPTIONS.items()},
                     num_classes=len(recorded_classes(config)))


RECIPE = Recipe(
    name="han",
    title="HAN",
    help="the HAN baseline: one selected checkpoint, global gating (PROTOCOL.md §11)",
    model_config=feature_sizes_config("han", NETWORK_OPTIONS),
    build_model=build_model,
    build_guides=no_guides,
    learning_rates=model_learning_rate,
    criterion=lambda config: WeakLabelCriterion(**criterion_settings(config)),
    training_module=TrainingModule,
    gating="global",
    # the best val Type@AV segment score, ties going to the later epoch
    selection=(SelectionRole("overall", lambda metrics: metrics["seg_type"], ties_to_later=True),),
    rows=(ReportRow("HAN best (val Type@AV seg.)", "overall", "overall"),),
    published={
        "train": dict(batch_size=16, epochs=40, lr=3e-4),
        "retrain": dict(batch_size=16, epochs=40, lr=3e-4),
    },
    release_kind="han",
    release_settings=release_han_settings,
    # HAN's release (AVVP-ECCV20) saves models/MMIL_Net.pt; VALOR's, models/model_VALOR/checkpoint_best.pt
    release_files={"overall": (("{name}.pt", "HAN release"), (os.path.join("{name}", "checkpoint_best.pt"),
                                                               "VALOR release"))},
    options=NETWORK_OPTIONS,
)
