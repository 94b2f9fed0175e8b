"""Networks of the project and the builders that turn options into constructor calls."""
from torch import nn

from nets.dual import DualHHN
from nets.han_baseline import HANBaseline
from nets.han_layer import HANLayer
from nets.hcmn import HCMN
from nets.mgn import AudioMGN, VisualMGN
from utils.constants import FEATURE_KINDS

PARSING_MODELS = ("dhhn", "han")

__all__ = ["AudioMGN", "DualHHN", "HANBaseline", "HANLayer", "HCMN", "PARSING_MODELS",
           "VisualMGN", "build_mgns", "build_parsing_model", "count_parameters",
           "default_feature_dims"]


def default_feature_dims() -> dict[str, int]:
    """{"audio": 128, "frames": 2048, "snippets": 512}: feature sizes of LLP (SPEC §2)."""
    return {kind: shape[-1] for kind, (_, shape) in FEATURE_KINDS.items()}


def _check_feature_dims(feature_dims: dict[str, int]) -> None:
    missing = set(FEATURE_KINDS) - set(feature_dims)
    if missing:
        raise ValueError(f"feature_dims lacks {sorted(missing)}; "
                         f"expected keys {sorted(FEATURE_KINDS)}")


def build_parsing_model(model_name: str, feature_dims: dict[str, int], hier_feat: bool = True,
                        hier_pred: bool = True) -> nn.Module:
    """"dhhn" -> HCMN (SPEC §5), "han" -> HANBaseline (SPEC §11).

    feature_dims: {"audio": Da, "frames": Df, "snippets": Ds}. The hierarchy switches
    exist for the HCMN only; asking the HAN baseline to turn them off is an error.
    """
    _check_feature_dims(feature_dims)
    dims = {"audio_dim": feature_dims["audio"], "frame_dim": feature_dims["frames"],
            "snippet_dim": feature_dims["snippets"]}
    if model_name == "dhhn":
        return HCMN(**dims, hier_feat=hier_feat, hier_pred=hier_pred)
    if model_name == "han":
        if not (hier_feat and hier_pred):
            raise ValueError("hier_feat/hier_pred apply to the dhhn model only; "
                             "the HAN baseline has a single scale")
        return HANBaseline(**dims)
    raise ValueError(f"unknown model {model_name!r}; choose one of {PARSING_MODELS}")


def build_mgns(feature_dims: dict[str, int]) -> tuple[AudioMGN, VisualMGN]:
    """The two modality-wise guiding networks of SPEC §6."""
    _check_feature_dims(feature_dims)
    return (AudioMGN(audio_dim=feature_dims["audio"]),
            VisualMGN(frame_dim=feature_dims["frames"], snippet_dim=feature_dims["snippets"]))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter values (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
