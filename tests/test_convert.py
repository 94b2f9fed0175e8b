"""State-dict interop with the original DHHN and AVVP releases (nets/convert.py)."""
import pytest
import torch
from torch import nn

from nets import HCMN, AudioMGN, HANBaseline, VisualMGN
from nets.convert import (
    FROM_RELEASE,
    KINDS,
    TO_RELEASE,
    StateDictKeyError,
    detect_release_kind,
    han_from_release,
    han_to_release,
    hcmn_from_release,
    hcmn_to_release,
    load_any_state_dict,
)
from nets.release_reference import release_hcmn_forward

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
FACTORIES = {"hcmn": HCMN, "audio_mgn": AudioMGN, "visual_mgn": VisualMGN, "han": HANBaseline}


pytestmark = pytest.mark.usefixtures("single_thread")   # tiny tensors (conftest)


def random_model(kind: str, seed: int = 0) -> nn.Module:
    """A model whose every tensor (LayerNorm, BatchNorm statistics included) is random,
    so that any swapped or defaulted tensor changes the outputs."""
    torch.manual_seed(seed)
    model = FACTORIES[kind]()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            else:
                tensor.add_(0.05 * torch.randn_like(tensor))
    return model.eval()


def make_inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 10, 128, generator=generator),
            torch.randn(batch, 80, 2048, generator=generator),
            torch.randn(batch, 10, 512, generator=generator))


def run(kind: str, model: nn.Module, inputs) -> torch.Tensor:
    audio, frames, snippets = inputs
    with torch.no_grad():
        if kind == "audio_mgn":
            return model(audio)
        if kind == "visual_mgn":
            return model(frames, snippets)
        return torch.cat([t.flatten(1) for t in model(audio, frames, snippets).values()], 1)


# ---- the release key names, written out from the release's module layout ----------------

def weight_bias(*modules):
    return {f"{m}.{p}" for m in modules for p in ("weight", "bias")}


ATTENTION_KEYS = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
HAT_ENCODER = (
    {f"hat_encoder.layers.0.{attention}.{p}" for attention in ("self_attn", "cm_attn")
     for p in ATTENTION_KEYS}
    | weight_bias(*(f"hat_encoder.layers.0.{m}" for m in ("linear1", "linear2", "norm1", "norm2")))
    | weight_bias("hat_encoder.norm1", "hat_encoder.norm2"))
RELEASE_HCMN_KEYS = (
    weight_bias("fc_prob", "fc_frame_att", "fc_av_att", "fc_a", "fc_v", "fc_st", "fc_fusion")
    | {f"{branch}.{scale}.blocks.0.0.weight" for branch in ("conv_x1", "conv_x2")
       for scale in range(3)}
    | {f"{branch}.{scale}.blocks.0.1.{p}" for branch in ("conv_x1", "conv_x2") for scale in range(3)
       for p in ("weight", "bias", *BN_BUFFERS)}
    | HAT_ENCODER)


def encoder_layer_keys(prefix):
    """Keys of a standard torch.nn.TransformerEncoderLayer under `prefix`."""
    return ({f"{prefix}.self_attn.{p}" for p in ATTENTION_KEYS}
            | weight_bias(*(f"{prefix}.{m}" for m in ("linear1", "linear2", "norm1", "norm2"))))


RELEASE_KEYS = {
    "hcmn": RELEASE_HCMN_KEYS,
    "audio_mgn": (weight_bias("fc_a", "fc_prob", "fc_frame_att")
                  | encoder_layer_keys("audio_encoder.layers.0")),
    "visual_mgn": (weight_bias("fc_v", "fc_st", "fc_fusion", "fc_prob", "fc_frame_att")
                   | encoder_layer_keys("audio_encoder.layers.0")
                   | encoder_layer_keys("audio_encoder.layers.1")),
    "han": weight_bias("fc_prob", "fc_frame_att", "fc_av_att", "fc_a", "fc_v", "fc_st", "fc_fusion")
           | HAT_ENCODER,
}


@pytest.mark.parametrize("kind", KINDS)
def test_exported_keys_match_release_names(kind):
    release = TO_RELEASE[kind](random_model(kind).state_dict())
    assert set(release) == RELEASE_KEYS[kind]
    assert detect_release_kind(release) == kind


def test_release_hcmn_shapes_and_parameter_count():
    release = hcmn_to_release(random_model("hcmn").state_dict())
    assert len(RELEASE_HCMN_KEYS) == 70
    assert release["conv_x1.1.blocks.0.0.weight"].shape == (512, 512, 3)
    assert release["conv_x2.2.blocks.0.0.weight"].shape == (512, 512, 5)
    assert release["hat_encoder.layers.0.cm_attn.in_proj_weight"].shape == (1536, 512)
    assert release["fc_v.weight"].shape == (512, 2048)
    params = sum(t.numel() for key, t in release.items() if not key.endswith(BN_BUFFERS))
    assert params == 9_296_459
    # the unused LayerNorms are written with their default values
    assert torch.equal(release["hat_encoder.norm1.weight"], torch.ones(512))
    assert torch.equal(release["hat_encoder.norm2.bias"], torch.zeros(512))


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_gives_identical_outputs(kind):
    source = random_model(kind, seed=0)
    release = TO_RELEASE[kind](source.state_dict())
    imported = FROM_RELEASE[kind](release)
    assert set(imported) == set(source.state_dict())
    assert all(torch.equal(imported[key], value) for key, value in source.state_dict().items())
    target = random_model(kind, seed=1)
    target.load_state_dict(imported)
    inputs = make_inputs()
    assert torch.equal(run(kind, target, inputs), run(kind, source, inputs))


# ---- release semantics: the renamed tensors play the same roles --------------------------

def test_imported_hcmn_computes_the_release_forward_pass():
    release = hcmn_to_release(random_model("hcmn").state_dict())
    model = HCMN().eval()
    model.load_state_dict(hcmn_from_release(release))
    inputs = make_inputs(3)
    with torch.no_grad():
        ours, reference = model(*inputs), release_hcmn_forward(release, *inputs)
    for key in reference:
        torch.testing.assert_close(ours[key], reference[key], rtol=1e-4, atol=1e-5)


class ReleaseMGN(nn.Module):
    """The release MGN layout built from torch modules: loading strictly proves that the
    exported names and shapes are those of torch's own TransformerEncoder."""

    def __init__(self, visual: bool):
        super().__init__()
        self.visual = visual
        if visual:
            self.fc_v, self.fc_st = nn.Linear(2048, 512), nn.Linear(512, 512)
            self.fc_fusion = nn.Linear(1024, 512)
        else:
            self.fc_a = nn.Linear(128, 512)
        self.fc_prob, self.fc_frame_att = nn.Linear(512, 25), nn.Linear(512, 25)
        self.audio_encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=512),
            num_layers=2 if visual else 1, enable_nested_tensor=False)

    def forward(self, audio, frames, snippets):
        if self.visual:
            per_segment = self.fc_v(frames).reshape(frames.shape[0], 10, 8, 512).mean(2)
            x = self.fc_fusion(torch.cat([per_segment, self.fc_st(snippets)], -1))
        else:
            x = self.fc_a(audio)
        for _ in range(3 if self.visual else 4):
            x = x + self.audio_encoder(x.permute(1, 0, 2)).permute(1, 0, 2)
        frame_prob = torch.sigmoid(self.fc_prob(x))
        return (torch.softmax(self.fc_frame_att(x), dim=1) * frame_prob).sum(1)


@pytest.mark.parametrize("kind", ["audio_mgn", "visual_mgn"])
def test_exported_mgn_loads_into_release_layout(kind):
    model = random_model(kind)
    reference = ReleaseMGN(visual=kind == "visual_mgn").eval()
    reference.load_state_dict(TO_RELEASE[kind](model.state_dict()), strict=True)
    inputs = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(run(kind, model, inputs), reference(*inputs),
                                   rtol=1e-4, atol=1e-5)


# ---- prefixes, unused modules, detection, loading, errors ------------------------------

def test_data_parallel_prefix_is_stripped():
    model = random_model("hcmn")
    release = {"module." + key: value for key, value in hcmn_to_release(model.state_dict()).items()}
    assert detect_release_kind(release) == "hcmn"
    imported = hcmn_from_release(release)
    assert all(torch.equal(imported[key], value) for key, value in model.state_dict().items())
    assert load_any_state_dict(release, "hcmn").keys() == model.state_dict().keys()


def test_han_release_with_published_unused_encoders():
    model = random_model("han")
    release = han_to_release(model.state_dict(), with_unused_encoders=True)
    unused = (encoder_layer_keys("audio_encoder.layers.0")
              | encoder_layer_keys("visual_encoder.layers.0")
              | encoder_layer_keys("cmt_encoder.layers.0")
              | weight_bias("cmt_encoder.norm1", "cmt_encoder.norm2"))
    assert set(release) == RELEASE_KEYS["han"] | unused
    assert release["audio_encoder.layers.0.self_attn.in_proj_weight"].shape == (1536, 512)
    assert detect_release_kind(release) == "han"
    imported = han_from_release(release)
    assert all(torch.equal(imported[key], value) for key, value in model.state_dict().items())


def test_detect_release_kind_rejects_our_format():
    for kind in KINDS:
        assert detect_release_kind(FACTORIES[kind]().state_dict()) is None


@pytest.mark.parametrize("kind", KINDS)
def test_load_any_state_dict_from_files(kind, tmp_path):
    model = random_model(kind)
    ours, release = tmp_path / "ours.pt", tmp_path / "release.pt"
    torch.save(model.state_dict(), ours)
    torch.save(TO_RELEASE[kind](model.state_dict()), release)
    for path in (ours, str(release)):
        loaded = load_any_state_dict(path, kind)
        assert all(torch.equal(loaded[key], value) for key, value in model.state_dict().items())


def test_load_any_state_dict_accepts_the_single_scale_hcmn():
    state_dict = HCMN(hier_feat=False).state_dict()
    assert load_any_state_dict(state_dict, "hcmn").keys() == state_dict.keys()
    with pytest.raises(StateDictKeyError, match="no ablated variants"):
        hcmn_to_release(state_dict)


def test_key_mismatch_lists_missing_and_unexpected_keys():
    release = hcmn_to_release(random_model("hcmn").state_dict())
    del release["conv_x2.1.blocks.0.1.running_var"]
    release["conv_x1.3.blocks.0.0.weight"] = torch.zeros(1)
    with pytest.raises(StateDictKeyError) as error:
        hcmn_from_release(release)
    assert "conv_x2.1.blocks.0.1.running_var" in str(error.value)
    assert "conv_x1.3.blocks.0.0.weight" in str(error.value)
    ours = HANBaseline().state_dict()
    ours.pop("head.fc_av_att.bias")
    with pytest.raises(StateDictKeyError, match="head.fc_av_att.bias"):
        load_any_state_dict(ours, "han")


def test_wrong_kind_and_non_state_dicts_are_rejected(tmp_path):
    release = hcmn_to_release(random_model("hcmn").state_dict())
    with pytest.raises(StateDictKeyError, match="release hcmn"):
        load_any_state_dict(release, "han")
    with pytest.raises(ValueError, match="unknown model kind"):
        load_any_state_dict(release, "dhhn")
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "model": HCMN().state_dict()}, checkpoint)
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_any_state_dict(checkpoint, "hcmn")
