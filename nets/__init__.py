"""Networks of the project and the builders that turn options into constructor calls."""
from torch import nn

from avvp_data.llp import FEATURE_KINDS, NUM_CLASSES
from nets.dual import DualHHN
from nets.han_baseline import HANBaseline
from nets.han_layer import HANLayer
from nets.hcmn import HCMN
from nets.mgn import AudioMGN, VisualMGN

__all__ = ["AudioMGN", "DualHHN", "HANBaseline", "HANLayer", "HCMN", "VisualMGN", "build_han", "build_hcmn",
           "build_mgns", "count_parameters", "default_feature_dims"]


def default_feature_dims() -> dict[str, int]:
    """{"audio": 128, "frames": 2048, "snippets": 512}: feature sizes of LLP (PROTOCOL.md §2)."""
    return {kind: shape[-1] for kind, (_, shape) in FEATURE_KINDS.items()}


def _network_dims(feature_dims: dict[str, int]) -> dict[str, int]:
    """Constructor arguments of the input projections (PROTOCOL.md §3) for the given feature sizes."""
    missing = set(FEATURE_KINDS) - set(feature_dims)
    if missing:
        raise ValueError(f"feature_dims lacks {sorted(missing)}; "
                         f"expected keys {sorted(FEATURE_KINDS)}")
    return {"audio_dim": feature_dims["audio"], "frame_dim": feature_dims["frames"],
            "snippet_dim": feature_dims["snippets"]}


def build_hcmn(feature_dims: dict[str, int], hier_feat: bool = True, hier_pred: bool = True,
               num_classes: int = NUM_CLASSES) -> HCMN:
    """The HCMN of PROTOCOL.md §5 for features of the given sizes ({"audio": Da, "frames": Df,
    "snippets": Ds}), with the two hierarchy switches of the paper's Table 2."""
    return HCMN(**_network_dims(feature_dims), hier_feat=hier_feat, hier_pred=hier_pred, num_classes=num_classes)


def build_han(feature_dims: dict[str, int], hidden_dim: int = 512, nhead: int = 1, ff_dim: int | None = None,
              num_layers: int = 1, han_update: str = "parallel", num_classes: int = NUM_CLASSES) -> HANBaseline:
    """The HAN baseline of PROTOCOL.md §11 for features of the given sizes; the defaults are the
    published network, VALOR's (PROTOCOL.md §13) takes its flag names (8 heads, ff_dim 1024,
    sequential update)."""
    return HANBaseline(**_network_dims(feature_dims), d_model=hidden_dim, num_heads=nhead, dim_feedforward=ff_dim,
                       num_layers=num_layers, update=han_update, num_classes=num_classes)


def build_mgns(feature_dims: dict[str, int], num_classes: int = NUM_CLASSES) -> tuple[AudioMGN, VisualMGN]:
    """The two modality-wise guiding networks of PROTOCOL.md §6."""
    dims = _network_dims(feature_dims)
    return (AudioMGN(audio_dim=dims["audio_dim"], num_classes=num_classes),
            VisualMGN(frame_dim=dims["frame_dim"], snippet_dim=dims["snippet_dim"], num_classes=num_classes))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter values (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
