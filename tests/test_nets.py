"""Shapes, parameter counts and the computations of PROTOCOL.md §3-8 and §11."""
import math

import pytest
import torch
import torch.nn.functional as F

from avvp_data.llp import FRAMES_PER_SEGMENT, NUM_CLASSES, NUM_SEGMENTS
from config import resolve_config
from main_DHHN import get_args_parser
from nets import (
    HCMN,
    AudioMGN,
    DualHHN,
    HANBaseline,
    HANLayer,
    VisualMGN,
    build_han,
    build_hcmn,
    build_mgns,
    count_parameters,
    default_feature_dims,
)
from nets.hcmn import SCALES, upsample_nearest
from nets.projections import InputProjection
from recipes import RECIPES
from utils.errors import UsageError

OUTPUT_SHAPES = {"global_prob": (NUM_CLASSES,), "audio_prob": (NUM_CLASSES,),
                 "visual_prob": (NUM_CLASSES,), "frame_prob": (NUM_SEGMENTS, 2, NUM_CLASSES)}


pytestmark = pytest.mark.usefixtures("single_thread")   # tiny tensors (conftest)


def make_inputs(batch: int, seed: int = 0, frames_per_segment: int = FRAMES_PER_SEGMENT,
                dims: dict[str, int] | None = None):
    dims = dims or default_feature_dims()
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, NUM_SEGMENTS, dims["audio"], generator=generator),
            torch.randn(batch, NUM_SEGMENTS * frames_per_segment, dims["frames"],
                        generator=generator),
            torch.randn(batch, NUM_SEGMENTS, dims["snippets"], generator=generator))


def seeded(factory, seed: int = 0):
    torch.manual_seed(seed)
    return factory()


def linear_params(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


# ---- parameter counts, from first principles --------------------------------------

D = 512
PROJECTION = (linear_params(128, D) + linear_params(2048, D) + linear_params(512, D)
              + linear_params(2 * D, D))
VISUAL_PROJECTION = PROJECTION - linear_params(128, D)
ATTENTION = linear_params(D, 3 * D) + linear_params(D, D)       # in_proj (q, k, v) + out_proj
HAN = 2 * ATTENTION + 2 * linear_params(D, D) + 2 * 2 * D         # self+cross, FFN, 2 LayerNorms
CONVS = 2 * sum(D * D * kernel + 2 * D for kernel in (1, 3, 5))  # no conv bias; BN weight+bias
MMIL_HEAD = 3 * linear_params(D, NUM_CLASSES)
TRANSFORMER_LAYER = ATTENTION + 2 * linear_params(D, D) + 2 * 2 * D
MIL_HEAD = 2 * linear_params(D, NUM_CLASSES)


def test_parameter_counts_match_spec():
    assert PROJECTION + CONVS + HAN + MMIL_HEAD == 9_294_411
    assert linear_params(128, D) + TRANSFORMER_LAYER + MIL_HEAD == 1_669_682
    assert VISUAL_PROJECTION + 2 * TRANSFORMER_LAYER + MIL_HEAD == 5_018_162
    assert PROJECTION + HAN + MMIL_HEAD == 4_569_675
    assert count_parameters(HCMN()) == 9_294_411
    assert count_parameters(AudioMGN()) == 1_669_682
    assert count_parameters(VisualMGN()) == 5_018_162
    assert count_parameters(HANBaseline()) == 4_569_675
    # hier_feat=False builds the scale-1 convs only
    single_scale = 9_294_411 - 2 * (D * D * 3 + D * D * 5 + 2 * 2 * D)
    assert count_parameters(HCMN(hier_feat=False)) == single_scale == 5_096_011


def test_count_parameters_excludes_buffers_and_frozen():
    model = HCMN()
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers > 0
    assert sum(t.numel() for t in model.state_dict().values()) == 9_294_411 + buffers
    model.head.requires_grad_(False)
    assert count_parameters(model) == 9_294_411 - MMIL_HEAD


# ---- parsing models ------------------------------------------------------------------

PARSING_FACTORIES = {
    "hcmn": HCMN,
    "hcmn_no_hier_feat": lambda: HCMN(hier_feat=False),
    "hcmn_no_hier_pred": lambda: HCMN(hier_pred=False),
    "han": HANBaseline,
    "dual": lambda: DualHHN(HCMN(), HCMN()),
}


@pytest.mark.parametrize("name", PARSING_FACTORIES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("training", [False, True])
def test_parsing_model_outputs(name, batch, training):
    model = seeded(PARSING_FACTORIES[name]).train(training)
    outputs = model(*make_inputs(batch))
    assert set(outputs) == set(OUTPUT_SHAPES)
    for key, shape in OUTPUT_SHAPES.items():
        assert outputs[key].shape == (batch, *shape), key
        assert outputs[key].dtype == torch.float32
        assert ((outputs[key] > 0) & (outputs[key] < 1)).all(), key


@pytest.mark.parametrize("name", PARSING_FACTORIES)
def test_eval_mode_is_deterministic(name):
    model = seeded(PARSING_FACTORIES[name]).eval()
    inputs = make_inputs(2)
    with torch.no_grad():
        first, second = model(*inputs), model(*inputs)
    for key in OUTPUT_SHAPES:
        assert torch.equal(first[key], second[key]), key


def test_training_mode_uses_dropout():
    model = seeded(HCMN).train()
    inputs = make_inputs(2)
    assert not torch.equal(model(*inputs)["audio_prob"], model(*inputs)["audio_prob"])


def test_batch_elements_are_independent_in_eval():
    model = seeded(HCMN).eval()
    inputs = make_inputs(3)
    with torch.no_grad():
        batched = model(*inputs)["frame_prob"]
        single = model(*(x[1:2] for x in inputs))["frame_prob"]
    torch.testing.assert_close(batched[1:2], single, rtol=1e-5, atol=1e-6)


def test_projection_averages_the_frames_of_each_segment():
    projection = seeded(InputProjection).eval()
    audio, frames, snippets = make_inputs(2)
    _, visual = projection(audio, frames, snippets)
    # the release's formulation: average-pool windows of 8 consecutive frames
    per_frame = projection.visual.frame(frames).permute(0, 2, 1).unsqueeze(-1)
    pooled = F.avg_pool2d(per_frame, (FRAMES_PER_SEGMENT, 1)).squeeze(-1).permute(0, 2, 1)
    snippet = projection.visual.snippet(snippets)
    expected = projection.visual.fusion(torch.cat([pooled, snippet], -1))
    torch.testing.assert_close(visual, expected)


def test_other_frame_rates_and_feature_sizes():
    dims = {"audio": 64, "frames": 96, "snippets": 32}
    model = build_hcmn(dims).eval()
    outputs = model(*make_inputs(2, frames_per_segment=3, dims=dims))
    assert outputs["frame_prob"].shape == (2, NUM_SEGMENTS, 2, NUM_CLASSES)
    audio, frames, snippets = make_inputs(1, dims=dims)
    with pytest.raises(ValueError, match="segments"):
        model(audio, frames[:, :-1], snippets)


# ---- HAN layer (PROTOCOL.md §4) ---------------------------------------------------------------

def manual_attention(attention, query, key_value):
    """Single-head scaled dot-product attention from the module's raw weights."""
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
    q, k, v = query @ w_q.T + b_q, key_value @ w_k.T + b_k, key_value @ w_v.T + b_v
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return attention.out_proj(weights @ v), weights


def test_han_layer_matches_spec_formula():
    layer = seeded(HANLayer).eval()
    query, other = torch.randn(2, 10, D), torch.randn(2, 5, D)
    with torch.no_grad():
        out, (cross_weights, self_weights) = layer(query, other, need_weights=True)
        cross, expected_cross_weights = manual_attention(layer.cross_attn, query, other)
        self_out, expected_self_weights = manual_attention(layer.self_attn, query, query)
        hidden = layer.norm1(query + cross + self_out)
        expected = layer.norm2(hidden + layer.linear2(F.relu(layer.linear1(hidden))))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert cross_weights.shape == (2, 10, 5) and self_weights.shape == (2, 10, 10)
    torch.testing.assert_close(cross_weights, expected_cross_weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(self_weights, expected_self_weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cross_weights.sum(-1), torch.ones(2, 10))
    assert layer(query, other)[1] is None


def test_han_layer_pair_shares_weights_and_reads_original_inputs():
    layer = seeded(HANLayer).eval()
    audio, visual = torch.randn(3, 10, D), torch.randn(3, 10, D)
    with torch.no_grad():
        new_audio, new_visual = layer.encode_pair(audio, visual)
        # one batched call; equal to the two published calls up to GEMM rounding
        torch.testing.assert_close(new_audio, layer(audio, visual)[0], rtol=1e-5, atol=1e-6)
        # not layer(visual, new_audio)
        torch.testing.assert_close(new_visual, layer(visual, audio)[0], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(new_visual, layer(visual, new_audio)[0], atol=1e-3)
    assert layer.self_attn.num_heads == layer.cross_attn.num_heads == 1
    assert layer.self_attn.dropout == layer.cross_attn.dropout == 0.1


# ---- HCMN hierarchy (PROTOCOL.md §5, §7 ablations) --------------------------------------------

def test_hierarchical_features_add_upsampled_scales():
    model = seeded(HCMN).eval()
    mixed = []  # one HAN call per scale, audio rows then visual rows (encode_pair)
    model.han.register_forward_hook(lambda module, args, output: mixed.append(output[0]))
    with torch.no_grad():
        features = model.hierarchical_features(*make_inputs(2))
    assert [f.shape for f in features] == [(2, NUM_SEGMENTS, 2, D)] * 3
    assert len(mixed) == 3
    scale_outputs = [torch.stack(output.split(2), dim=2) for output in mixed]
    assert [e.shape[1] for e in scale_outputs] == [10, 5, 2]
    torch.testing.assert_close(features[0], scale_outputs[0])
    for k, (_, stride) in zip((1, 2), SCALES[1:]):
        torch.testing.assert_close(features[k] - features[k - 1],
                                   upsample_nearest(scale_outputs[k], NUM_SEGMENTS, stride))
    # nearest upsampling: segment t of T=10 reads step t*T_k//10
    upsampled = upsample_nearest(scale_outputs[2], NUM_SEGMENTS, 5)
    assert torch.equal(upsampled[:, :5], scale_outputs[2][:, :1].expand(-1, 5, -1, -1))
    assert torch.equal(upsampled[:, 5:], scale_outputs[2][:, 1:].expand(-1, 5, -1, -1))


def test_upsampling_by_stride_is_the_releases_nearest_interpolation_on_llp():
    """t // stride picks the very steps F.interpolate(mode="nearest") picks for T = 10 (the release)."""
    for (_, stride), steps in zip(SCALES, (10, 5, 2)):
        scale = torch.randn(3, steps, 2, 4)
        flat = scale.reshape(3, steps, 8).transpose(1, 2)
        released = F.interpolate(flat, size=NUM_SEGMENTS, mode="nearest").transpose(1, 2).reshape(3, 10, 2, 4)
        assert torch.equal(upsample_nearest(scale, NUM_SEGMENTS, stride), released)


def test_hier_pred_averages_scales_and_off_uses_last_scale():
    model = seeded(HCMN).eval()
    last_only = HCMN(hier_pred=False).eval()
    last_only.load_state_dict(model.state_dict())
    inputs = make_inputs(2)
    head_calls = []
    model.head.register_forward_hook(lambda module, args, output: head_calls.append(args[0].shape))
    with torch.no_grad():
        averaged, from_last = model(*inputs), last_only(*inputs)
        assert head_calls == [(3 * 2, NUM_SEGMENTS, 2, D)]   # one call on the three scales stacked
        per_scale = [model.head(f) for f in model.hierarchical_features(*inputs)]
    for key in OUTPUT_SHAPES:
        mean = torch.stack([out[key] for out in per_scale]).mean(dim=0)
        torch.testing.assert_close(averaged[key], mean)
        torch.testing.assert_close(from_last[key], per_scale[-1][key])
        assert not torch.allclose(averaged[key], from_last[key])


def test_hier_feat_off_is_single_scale():
    model = seeded(lambda: HCMN(hier_feat=False)).eval()
    assert len(model.audio_convs) == len(model.visual_convs) == 1
    assert model.audio_convs[0].conv.kernel_size == (1,)
    audio, frames, snippets = make_inputs(2)
    with torch.no_grad():
        outputs = model(audio, frames, snippets)
        audio_x, visual_x = model.projection(audio, frames, snippets)
        mixed = model.han.encode_pair(model.audio_convs[0](audio_x),
                                      model.visual_convs[0](visual_x))
        expected = model.head(torch.stack(mixed, dim=2))
    for key in OUTPUT_SHAPES:
        torch.testing.assert_close(outputs[key], expected[key])


def test_conv_block_shapes_and_no_bias():
    model = HCMN()
    x = torch.randn(2, NUM_SEGMENTS, D)
    for convs in (model.audio_convs, model.visual_convs):
        assert [c(x).shape[1] for c in convs] == [10, 5, 2]
        assert all(c.conv.bias is None for c in convs)
    assert model.audio_convs[1].conv is not model.visual_convs[1].conv


def test_han_baseline_is_single_han_layer_and_head():
    model = seeded(HANBaseline).eval()
    audio, frames, snippets = make_inputs(2)
    with torch.no_grad():
        outputs = model(audio, frames, snippets)
        mixed = model.han.encode_pair(*model.projection(audio, frames, snippets))
        expected = model.head(torch.stack(mixed, dim=2))
    for key in OUTPUT_SHAPES:
        torch.testing.assert_close(outputs[key], expected[key])


# ---- MMIL head -------------------------------------------------------------------------

def test_mmil_head_pooling():
    head = seeded(HCMN).head
    features = torch.randn(2, NUM_SEGMENTS, 2, D)
    with torch.no_grad():
        out = head(features)
        p = torch.sigmoid(head.fc_prob(features))
        wt = torch.softmax(head.fc_frame_att(features), dim=1)
        wm = torch.softmax(head.fc_av_att(features), dim=2)
    torch.testing.assert_close(out["global_prob"], (wt * p * wm).sum(dim=(1, 2)))
    torch.testing.assert_close(out["audio_prob"], (wt * p)[:, :, 0].sum(1))
    torch.testing.assert_close(out["visual_prob"], (wt * p)[:, :, 1].sum(1))
    torch.testing.assert_close(out["frame_prob"], p)


# ---- MGNs (PROTOCOL.md §6) --------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
def test_mgn_outputs(batch):
    audio, frames, snippets = make_inputs(batch)
    for training in (False, True):
        mgns = seeded(lambda: build_mgns(default_feature_dims()))
        audio_mgn, visual_mgn = (mgn.train(training) for mgn in mgns)
        for prob in (audio_mgn(audio), visual_mgn(frames, snippets)):
            assert prob.shape == (batch, NUM_CLASSES)
            assert ((prob > 0) & (prob < 1)).all()


def test_mgn_residual_iterations():
    audio_mgn, visual_mgn = seeded(AudioMGN).eval(), seeded(VisualMGN).eval()
    audio, frames, snippets = make_inputs(2)
    layer = audio_mgn.encoder.layers[0]
    assert layer.self_attn.num_heads == 8 and layer.linear1.out_features == 512
    assert not layer.norm_first
    with torch.no_grad():
        x = audio_mgn.projection(audio)
        for _ in range(4):
            x = x + layer(x)
        torch.testing.assert_close(audio_mgn(audio), audio_mgn.head(x)[0], rtol=1e-5, atol=1e-6)
        first, second = visual_mgn.encoder.layers
        x = visual_mgn.projection(frames, snippets)
        for _ in range(3):
            x = x + second(first(x))
        torch.testing.assert_close(visual_mgn(frames, snippets), visual_mgn.head(x)[0],
                                   rtol=1e-5, atol=1e-6)


# ---- Dual HHN (PROTOCOL.md §8) ------------------------------------------------------------------

def test_dual_takes_each_modality_from_its_stream():
    audio_stream, visual_stream = seeded(HCMN, 1).eval(), seeded(HCMN, 2).eval()
    dual = DualHHN(audio_stream, visual_stream).eval()
    inputs = make_inputs(3)
    with torch.no_grad():
        out, from_audio, from_visual = dual(*inputs), audio_stream(*inputs), visual_stream(*inputs)
    assert torch.equal(out["audio_prob"], from_audio["audio_prob"])
    assert torch.equal(out["visual_prob"], from_visual["visual_prob"])
    assert torch.equal(out["frame_prob"][:, :, 0], from_audio["frame_prob"][:, :, 0])
    assert torch.equal(out["frame_prob"][:, :, 1], from_visual["frame_prob"][:, :, 1])
    torch.testing.assert_close(out["global_prob"],
                               (from_audio["global_prob"] + from_visual["global_prob"]) / 2)


# ---- builders, precision, devices --------------------------------------------------------

def test_builders():
    dims = default_feature_dims()
    assert dims == {"audio": 128, "frames": 2048, "snippets": 512}
    assert tuple(RECIPES) == ("dhhn", "han", "ma")
    hcmn = build_hcmn(dims, hier_feat=False, hier_pred=False)
    assert isinstance(hcmn, HCMN) and not hcmn.hier_feat and not hcmn.hier_pred
    assert isinstance(build_han(dims), HANBaseline)
    with pytest.raises(ValueError, match="snippets"):
        build_hcmn({"audio": 128, "frames": 2048})
    audio_mgn, visual_mgn = build_mgns(dims)
    assert isinstance(audio_mgn, AudioMGN) and isinstance(visual_mgn, VisualMGN)


@pytest.mark.parametrize("name, flags, model_class", [("dhhn", ["--no_hier_pred"], HCMN), ("han", [], HANBaseline),
                                                     ("ma", [], HANBaseline)])
def test_every_recipe_builds_its_model_from_the_recorded_config(name, flags, model_class):
    recipe = RECIPES[name]
    model_config = recipe.model_config(resolve_config(get_args_parser().parse_args(["--model", name, *flags])),
                                       default_feature_dims())
    assert model_config["model_name"] == name and model_config["feature_dims"] == default_feature_dims()
    model = recipe.build_model(model_config)
    assert isinstance(model, model_class)
    if name == "dhhn":
        assert model.hier_feat and not model.hier_pred


def test_unknown_model_and_inapplicable_switches_are_rejected(capsys):
    # an unknown model name never reaches a builder: --model only offers the recipes
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--model", "dhhn2"])
    assert "invalid choice: 'dhhn2'" in capsys.readouterr().err
    # the hierarchy switches belong to the dhhn model only
    with pytest.raises(UsageError, match="--no_hier_feat: --model han has no such part"):
        resolve_config(get_args_parser().parse_args(["--model", "han", "--no_hier_feat"]))


def test_bf16_autocast():
    model, audio_mgn = seeded(HCMN).eval(), seeded(AudioMGN).eval()
    inputs = make_inputs(2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(*inputs)
        mgn_prob = audio_mgn(inputs[0])
    for key, shape in OUTPUT_SHAPES.items():
        assert outputs[key].shape == (2, *shape)
        assert ((outputs[key] >= 0) & (outputs[key] <= 1)).all()
    assert torch.isfinite(mgn_prob).all()


def test_runs_on_the_inputs_device():
    # the meta device stands in for an accelerator: any tensor created on a fixed
    # device inside forward would fail to mix with these inputs
    with torch.device("meta"):
        model = DualHHN(HCMN(), HCMN()).eval()
        outputs = model(*(torch.empty(x.shape) for x in make_inputs(2)))
        visual_prob = VisualMGN()(torch.empty(2, 80, 2048), torch.empty(2, 10, 512))
    assert outputs["frame_prob"].device.type == "meta" and visual_prob.device.type == "meta"
