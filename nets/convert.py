"""State-dict interop with the original releases (DHHN, ACM MM 2022; AVVP HAN, ECCV 2020).

Our modules have descriptive names; the releases use flat ones. Conversion is a
renaming by key prefix (the tensors are shared, not copied), plus the release's
unused modules, which are dropped on import and written fresh on export:

- DHHN HCMN: `hat_encoder.norm1/norm2`, two 512-d LayerNorms the release built but
  never applied (its encoder has norm=None); 2,048 parameters, so a release HCMN
  holds 9,296,459 parameters against our 9,294,411 (PROTOCOL.md §5).
- AVVP HAN: the same two LayerNorms, and also whole unused encoders
  (`audio_encoder`, `visual_encoder`, `cmt_encoder`) in the published MMIL_Net.
- VALOR's MMIL_Net (NeurIPS 2023; PROTOCOL.md §13, §15): the HAN network with any number of
  layers (`hat_encoder.layers.{i}`, ours `han` and `more_han_layers.{i-1}`) and two final
  LayerNorms `hat_encoder.final_norm_a/v` that its post-norm layers never apply.
- DHHN MGNs: nothing unused, but as published the visual MGN's encoder is also
  called `audio_encoder`.

Every conversion checks the full key set and raises StateDictKeyError listing the
missing and unexpected keys. Files may carry a DataParallel `module.` (or a
torch.compile `_orig_mod.`) prefix; it is stripped.
"""
import functools
import os
from collections.abc import Callable, Mapping

import torch
from torch import nn

from nets.han_baseline import HANBaseline
from nets.hcmn import HCMN, SCALES
from nets.mgn import AudioMGN, VisualMGN
from utils.errors import UserError

KINDS = ("hcmn", "audio_mgn", "visual_mgn", "han")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

StateDict = dict[str, torch.Tensor]


class StateDictKeyError(UserError):
    """A state dict does not hold exactly the keys of the expected model."""


# (our prefix, release prefix) pairs; a key is renamed by its longest matching prefix.
_PROJECTION = (
    ("projection.audio.", "fc_a."),
    ("projection.visual.frame.", "fc_v."),
    ("projection.visual.snippet.", "fc_st."),
    ("projection.visual.fusion.", "fc_fusion."),
)
_MMIL_HEAD = (
    ("head.fc_prob.", "fc_prob."),
    ("head.fc_frame_att.", "fc_frame_att."),
    ("head.fc_av_att.", "fc_av_att."),
)
def _han_layers(num_layers):
    """(our prefix, release prefix) of every HAN layer: the first keeps its published name `han`."""
    pairs = []
    for index in range(num_layers):
        ours = "han." if index == 0 else f"more_han_layers.{index - 1}."
        release = f"hat_encoder.layers.{index}."
        pairs += [(ours + "cross_attn.", release + "cm_attn."), (ours, release)]
    return tuple(pairs)


_HAN_LAYER = _han_layers(1)
# a release ResBlock1D keeps Conv1d, BatchNorm1d, ReLU in `blocks.0`; audio is conv_x1
_HCMN_CONVS = tuple(
    pair
    for scale in range(len(SCALES))
    for ours, release in (("audio_convs", "conv_x1"), ("visual_convs", "conv_x2"))
    for pair in ((f"{ours}.{scale}.conv.", f"{release}.{scale}.blocks.0.0."),
                 (f"{ours}.{scale}.norm.", f"{release}.{scale}.blocks.0.1."))
)
_MGN_HEAD = (
    ("head.fc_prob.", "fc_prob."),
    ("head.fc_frame_att.", "fc_frame_att."),
)
# as published, both MGNs call their encoder `audio_encoder`
_MGN_ENCODER = (("encoder.layers.", "audio_encoder.layers."),)

_RENAMES = {
    "hcmn": _PROJECTION + _HCMN_CONVS + _HAN_LAYER + _MMIL_HEAD,
    "han": _PROJECTION + _HAN_LAYER + _MMIL_HEAD,
    "audio_mgn": (("projection.", "fc_a."),) + _MGN_ENCODER + _MGN_HEAD,
    "visual_mgn": (("projection.frame.", "fc_v."), ("projection.snippet.", "fc_st."),
                   ("projection.fusion.", "fc_fusion."), *_MGN_ENCODER, *_MGN_HEAD),
}
# release modules that never take part in the forward pass (see the module docstring)
_UNUSED_LAYER_NORMS = ("hat_encoder.norm1.", "hat_encoder.norm2.")
_AVVP_UNUSED_ENCODERS = ("audio_encoder.layers.0.", "visual_encoder.layers.0.",
                         "cmt_encoder.layers.0.")
_AVVP_UNUSED_NORMS = ("cmt_encoder.norm1.", "cmt_encoder.norm2.")
_VALOR_UNUSED_NORMS = ("hat_encoder.final_norm_a.", "hat_encoder.final_norm_v.")
_UNUSED_ON_IMPORT = {
    "hcmn": _UNUSED_LAYER_NORMS,
    "han": _UNUSED_LAYER_NORMS + _AVVP_UNUSED_ENCODERS + _AVVP_UNUSED_NORMS + _VALOR_UNUSED_NORMS,
    "audio_mgn": (),
    "visual_mgn": (),
}
_MODEL_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "hcmn": HCMN, "han": HANBaseline, "audio_mgn": AudioMGN, "visual_mgn": VisualMGN,
}


def strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove a `module.` / `_orig_mod.` prefix that every key carries (DataParallel,
    torch.compile)."""
    state_dict = dict(state_dict)
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


@functools.cache
def our_keys(kind: str, hier_feat: bool = True, num_layers: int = 1) -> frozenset[str]:
    """State-dict keys of our model of `kind` (built on the meta device: no memory); num_layers:
    the HAN layers of a "han" model."""
    _check_kind(kind)
    with torch.device("meta"):
        if kind == "hcmn":
            model = HCMN(hier_feat=hier_feat)
        elif kind == "han":
            model = HANBaseline(num_layers=num_layers)
        else:
            model = _MODEL_FACTORIES[kind]()
    return frozenset(model.state_dict())


def _renames(kind: str, num_layers: int = 1) -> tuple[tuple[str, str], ...]:
    if kind == "han":
        return _PROJECTION + _han_layers(num_layers) + _MMIL_HEAD
    return _RENAMES[kind]


def release_keys(kind: str, num_layers: int = 1) -> frozenset[str]:
    """Keys of the release model of `kind`, as written by the `*_to_release` functions."""
    renamed = _rename(dict.fromkeys(our_keys(kind, num_layers=num_layers)), _renames(kind, num_layers), kind)
    unused = {key + name for key in _unused_on_export(kind) for name in ("weight", "bias")}
    return frozenset(renamed) | frozenset(unused)


def release_han_layers(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many HAN layers a release MMIL_Net state dict holds (`hat_encoder.layers.{i}.`)."""
    indices = {int(key.split(".")[2]) for key in strip_wrapper_prefix(state_dict)
               if key.startswith("hat_encoder.layers.") and key.split(".")[2].isdigit()}
    return max(indices) + 1 if indices else 1


def release_han_settings(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The network settings a release MMIL_Net (HAN's or VALOR's) state dict fixes: hidden_dim,
    ff_dim, num_layers (the number of heads leaves no trace in the weights)."""
    state_dict = strip_wrapper_prefix(state_dict)
    return {"hidden_dim": state_dict["fc_prob.weight"].shape[1],
            "ff_dim": state_dict["hat_encoder.layers.0.linear1.weight"].shape[0],
            "num_layers": release_han_layers(state_dict)}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {KINDS}")


def _check_keys(found: set[str] | frozenset[str], expected: frozenset[str], what: str) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise StateDictKeyError(
            f"{what}: {len(missing)} missing key(s) {missing}; "
            f"{len(unexpected)} unexpected key(s) {unexpected}")


def _rename(state_dict: Mapping, pairs: tuple[tuple[str, str], ...], what: str) -> dict:
    renamed, unmatched = {}, []
    for key, value in state_dict.items():
        matches = [pair for pair in pairs if key.startswith(pair[0])]
        if not matches:
            unmatched.append(key)
            continue
        source, target = max(matches, key=lambda pair: len(pair[0]))
        renamed[target + key[len(source):]] = value
    if unmatched:
        raise StateDictKeyError(f"{what}: unexpected key(s) {sorted(unmatched)}")
    return renamed


def _unused_on_export(kind: str) -> tuple[str, ...]:
    return _UNUSED_LAYER_NORMS if kind in ("hcmn", "han") else ()


def _from_release(state_dict: Mapping[str, torch.Tensor], kind: str) -> StateDict:
    state_dict = strip_wrapper_prefix(state_dict)
    num_layers = release_han_layers(state_dict) if kind == "han" else 1
    used = {key: value for key, value in state_dict.items()
            if not key.startswith(_UNUSED_ON_IMPORT[kind])}
    expected = release_keys(kind, num_layers)
    expected_used = expected - {key for key in expected if key.startswith(_UNUSED_ON_IMPORT[kind])}
    _check_keys(set(used), expected_used, f"release {kind} state dict")
    reverse = tuple((release, ours) for ours, release in _renames(kind, num_layers))
    return _rename(used, reverse, f"release {kind} state dict")


def _to_release(state_dict: Mapping[str, torch.Tensor], kind: str) -> StateDict:
    state_dict = strip_wrapper_prefix(state_dict)
    _check_keys(set(state_dict), our_keys(kind),
                f"our {kind} state dict (the release format has no ablated variants)")
    release = _rename(state_dict, _RENAMES[kind], f"our {kind} state dict")
    # fresh default LayerNorms for the release's unused modules
    reference = state_dict["han.norm1.weight"] if _unused_on_export(kind) else None
    for prefix in _unused_on_export(kind):
        release[prefix + "weight"] = torch.ones_like(reference)
        release[prefix + "bias"] = torch.zeros_like(reference)
    return release


def hcmn_from_release(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Release DHHN `HCMN` state dict -> our HCMN state dict (unused LayerNorms dropped)."""
    return _from_release(state_dict, "hcmn")


def hcmn_to_release(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Our HCMN state dict (default hierarchy) -> release DHHN `HCMN` state dict."""
    return _to_release(state_dict, "hcmn")


def han_from_release(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Release AVVP or VALOR `MMIL_Net` state dict -> our HANBaseline state dict.

    Accepts it with or without the published unused encoders (`audio_encoder`,
    `visual_encoder`, `cmt_encoder`); they, `hat_encoder.norm1/norm2` and VALOR's
    `hat_encoder.final_norm_a/v` are dropped. Any number of HAN layers (VALOR+: 4).
    """
    return _from_release(state_dict, "han")


def han_to_release(state_dict: Mapping[str, torch.Tensor],
                   with_unused_encoders: bool = False) -> StateDict:
    """Our HANBaseline state dict -> release AVVP `MMIL_Net` state dict.

    By default the keys are the used modules plus `hat_encoder.norm1/norm2`. With
    with_unused_encoders the published unused encoders are added too (zero weights,
    default LayerNorms), so that the original MMIL_Net loads the result strictly.
    """
    release = _to_release(state_dict, "han")
    if with_unused_encoders:
        reference = state_dict["han.norm1.weight"]
        d_model, dim_feedforward = state_dict["han.linear1.weight"].shape[::-1]
        with torch.device("meta"):
            layer = nn.TransformerEncoderLayer(d_model, 1, dim_feedforward)
        for prefix in _AVVP_UNUSED_ENCODERS:
            for name, tensor in layer.state_dict().items():
                is_norm_weight = name.startswith("norm") and name.endswith("weight")
                fill = torch.ones if is_norm_weight else torch.zeros
                release[prefix + name] = fill(tensor.shape, dtype=reference.dtype,
                                              device=reference.device)
        for prefix in _AVVP_UNUSED_NORMS:
            release[prefix + "weight"] = torch.ones_like(reference)
            release[prefix + "bias"] = torch.zeros_like(reference)
    return release


# kind -> converter; the MGNs (release `AudioNet` / `VideoNet`) need no more than the shared one
FROM_RELEASE = {kind: functools.partial(_from_release, kind=kind) for kind in KINDS}
TO_RELEASE = {kind: functools.partial(_to_release, kind=kind) for kind in KINDS}


def detect_release_kind(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """"hcmn", "han", "audio_mgn" or "visual_mgn" for a release-format state dict,
    None for anything else (e.g. our own format)."""
    keys = set(strip_wrapper_prefix(state_dict))
    if any(key.startswith("conv_x1.") for key in keys):
        return "hcmn"
    if any(key.startswith("hat_encoder.") for key in keys):
        return "han"  # checked before the MGNs: the AVVP release also has audio_encoder
    if any(key.startswith("audio_encoder.layers.") for key in keys):
        if "fc_v.weight" in keys:
            return "visual_mgn"
        if "fc_a.weight" in keys:
            return "audio_mgn"
    return None


def load_any_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                        kind: str) -> StateDict:
    """A state dict of `kind` in our format, from our format or the release format.

    path_or_state_dict: a state dict, or a file holding one (loaded on the CPU with
    weights_only=True). Raises StateDictKeyError when the keys do not match the
    model of `kind` (our HCMN may be either hierarchy variant).
    """
    _check_kind(kind)
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        loaded = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        source = os.fspath(path_or_state_dict)
    else:
        loaded, source = path_or_state_dict, "state dict"
    if not isinstance(loaded, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in loaded.values()):
        keys = sorted(loaded)[:10] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(f"{source}: expected a state dict of tensors, got {keys}; "
                         "pass the model's entry of a training checkpoint")
    state_dict = strip_wrapper_prefix(loaded)
    release_kind = detect_release_kind(state_dict)
    if release_kind is not None:
        if release_kind != kind:
            raise StateDictKeyError(f"{source}: holds a release {release_kind} state dict, "
                                    f"not a {kind} one")
        return FROM_RELEASE[kind](state_dict)
    more_layers = {key.split(".")[1] for key in state_dict if key.startswith("more_han_layers.")}
    accepted = [our_keys(kind, num_layers=1 + len(more_layers))] + (
        [our_keys(kind, hier_feat=False)] if kind == "hcmn" else [])
    if set(state_dict) not in accepted:
        _check_keys(set(state_dict), accepted[0], f"{source} (as our {kind} format)")
    return state_dict
