"""extraction/clip_vision.py: VALOR's CLIP frame features (utils/clip_preprocess.py) from our own
ViT code, against the reference on seeded random weights.

GOLDEN values (tests/golden/clip_vision.json) were made once in a throw-away venv with VALOR's
pins: torch 1.12.1 (the PyPI cu102 build, run on CPU), torchvision 0.13.1, transformers 4.30.2,
numpy 1.26.4, pillow 9.5.0. There, `CLIPModel(CLIPConfig(...))` was built with the vision sizes of
`SMALL` (and once with those of ViT-L/14), its vision part filled by `random_vision_state` below
(the same code) through `load_state_dict(strict=False)`; the frames of `golden_frames()` went
through VALOR's transform, `Compose([ToTensor(), Resize((224, 224)), Normalize(CLIP_MEAN,
CLIP_STD)])` on `Image.fromarray(frame).convert('RGB')`, at `np.round(np.linspace(0, 79, 10))`;
then `get_image_features(pixel_values=...)` and the division by the row norm. The layouts are
sha256 of the sorted "key:(shape)" lines of HF's `vision_model.*` and `visual_projection.weight`
(without the position_ids buffer); the parameter counts are those of `model.vision_model` plus the
projection. Stats are float64 sums over the flattened float32 tensor; entries index it.

Measured on this project's machine (torch 2.13.0+cpu): the pixel values differ from the
reference's by at most 7.2e-7 (float32 rounding inside the bilinear kernel of the two torch
versions, magnified by 1/std), the SMALL embeddings by 1.1e-6 (values up to ~3), the features by
1.8e-7. Once, outside the tests (1.2 GB of weights, 7 s a frame pair): ViT-L/14 with these seeded
weights gave embeddings within 2.0e-6 of transformers 4.30.2 and 2.1e-6 of transformers 5.24.0
(on torch 2.13), features within 8.2e-8. The tolerances below, 1e-5 on embeddings and 2e-6 on
unit-norm features, leave ten times that for other BLAS libraries; a real error (an antialiased
resize: 3e-2 on the features) is thousands of times larger.
"""
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from extraction.clip_vision import (
    CLIP_MEAN,
    CLIP_STD,
    CLIP_WEIGHTS_URL,
    POSITION_IDS_KEY,
    VIT_L14,
    CLIPVisionTower,
    clip_frame_indices,
    clip_pixel_values,
    clip_vit_l14,
    clip_window_features,
    load_clip_vision_weights,
    read_clip_state_dict,
    resize_bilinear,
    resized_frame,
)
from extraction.image_transforms import normalize, pixels_to_tensor
from utils.errors import UsageError, UserError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "clip_vision.json").read_text())
SMALL = dict(image_size=224, patch_size=14, width=64, layers=2, heads=4, mlp_width=128, projection_dim=32)
# the published ViT-L/14 parameter count: vision tower 303,179,776 + projection 1024 x 768
VIT_L14_PARAMS = 303_966_208
EMBEDDING_ATOL = 1e-5
FEATURE_ATOL = 2e-6


def vision_shapes(image_size, patch_size, width, layers, heads, mlp_width, projection_dim):
    """{key: shape} of the vision part of HF's CLIPModel, written out from the sizes."""
    shapes = {
        "vision_model.embeddings.class_embedding": (width,),
        "vision_model.embeddings.patch_embedding.weight": (width, 3, patch_size, patch_size),
        "vision_model.embeddings.position_embedding.weight": ((image_size // patch_size) ** 2 + 1, width),
        "visual_projection.weight": (projection_dim, width),
    }
    for norm in ("pre_layrnorm", "post_layernorm"):
        shapes.update({f"vision_model.{norm}.weight": (width,), f"vision_model.{norm}.bias": (width,)})
    for index in range(layers):
        layer = f"vision_model.encoder.layers.{index}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes.update({f"{layer}self_attn.{name}.weight": (width, width),
                           f"{layer}self_attn.{name}.bias": (width,)})
        for name in ("layer_norm1", "layer_norm2"):
            shapes.update({f"{layer}{name}.weight": (width,), f"{layer}{name}.bias": (width,)})
        shapes.update({f"{layer}mlp.fc1.weight": (mlp_width, width), f"{layer}mlp.fc1.bias": (mlp_width,),
                       f"{layer}mlp.fc2.weight": (width, mlp_width), f"{layer}mlp.fc2.bias": (width,)})
    return shapes


def random_vision_state(shapes, seed=0):
    """float32 arrays in HF's layout, the same on every machine: int8 levels from numpy's
    RandomState (sorted key order) / 127 = u in [-1, 1]; biases 0.1 u, LayerNorm scales 1 + 0.1 u,
    class token and position table 0.5 u, matrices u * sqrt(3 / fan_in) (unit-variance outputs)."""
    rng = np.random.RandomState(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        unit = rng.randint(-127, 128, size=shape, dtype=np.int8).astype(np.float32) / np.float32(127)
        if key.endswith("bias"):
            values = unit * np.float32(0.1)
        elif "norm" in key:
            values = np.float32(1) + unit * np.float32(0.1)
        elif len(shape) == 1 or "position_embedding" in key:
            values = unit * np.float32(0.5)
        else:
            values = unit * np.float32(math.sqrt(3.0 / int(np.prod(shape[1:]))))
        state[key] = values
    return state


def golden_frames(count=80, height=150, width=300, seed=2):
    """(80, 150, 300, 3) uint8 noise: 8 fps of a 10-s window; the resize enlarges rows, shrinks columns."""
    return np.random.RandomState(seed).randint(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def resize_frames(seed=4):
    """A 4:3 frame shrunk on both axes, and one enlarged in height and shrunk in width."""
    rng = np.random.RandomState(seed)
    return {"down_4x3": rng.randint(0, 256, size=(360, 480, 3), dtype=np.uint8),
            "mixed": rng.randint(0, 256, size=(97, 531, 3), dtype=np.uint8)}


def layout_digest(shapes):
    lines = sorted(f"{key}:{tuple(shape)}" for key, shape in shapes.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def state_shapes(model):
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def torch_state(config, seed=0):
    return {key: torch.from_numpy(value) for key, value in random_vision_state(vision_shapes(**config), seed).items()}


def assert_stats(array, golden, rel, entry_atol):
    flat = np.asarray(array, dtype=np.float64).ravel()
    assert list(np.shape(array)) == golden["shape"]
    assert flat.sum() == pytest.approx(golden["sum"], rel=rel)
    assert np.abs(flat).sum() == pytest.approx(golden["abs_sum"], rel=rel)
    assert (flat ** 2).sum() == pytest.approx(golden["square_sum"], rel=rel)
    assert flat.max() == pytest.approx(golden["max"], abs=entry_atol)
    for index, value in golden["entries"].items():
        assert flat[int(index)] == pytest.approx(value, abs=entry_atol), index


@pytest.fixture(scope="module")
def small_model():
    return load_clip_vision_weights(CLIPVisionTower(**SMALL), torch_state(SMALL)).eval()


@pytest.fixture(scope="module")
def frames():
    return golden_frames()


# ---------------------------------------------------------------- layout and weights

def test_vit_l14_layout_and_parameter_count_equal_hf():
    with torch.device("meta"):
        model = clip_vit_l14()
    shapes = state_shapes(model)
    assert shapes == vision_shapes(**VIT_L14)
    assert len(shapes) == GOLDEN["full_layout"]["keys"] == 392
    assert layout_digest(shapes) == GOLDEN["full_layout"]["digest"]
    assert sum(p.numel() for p in model.parameters()) == GOLDEN["full_layout"]["params"] == VIT_L14_PARAMS
    assert model.feature_dim == 768 and model.image_size == 224


def test_vit_l14_sizes_are_the_published_config():
    assert VIT_L14 == dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16, mlp_width=4096,
                           projection_dim=768)
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert CLIP_WEIGHTS_URL == "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/pytorch_model.bin"


def test_small_layout_equals_hf(small_model):
    shapes = state_shapes(small_model)
    assert layout_digest(shapes) == GOLDEN["small_layout"]["digest"]
    assert len(shapes) == GOLDEN["small_layout"]["keys"]
    assert sum(p.numel() for p in small_model.parameters()) == GOLDEN["small_layout"]["params"]


def test_the_whole_file_loads_with_text_keys_and_position_ids(small_model):
    tokens = (224 // 14) ** 2 + 1
    state = dict(torch_state(SMALL), **{POSITION_IDS_KEY: torch.arange(tokens)[None],
                                        "text_model.embeddings.position_ids": torch.arange(77)[None],
                                        "text_model.final_layer_norm.weight": torch.ones(32),
                                        "text_projection.weight": torch.zeros(32, 32),
                                        "logit_scale": torch.tensor(2.6592)})
    model = load_clip_vision_weights(CLIPVisionTower(**SMALL), state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_state_dict_that_does_not_fit_is_refused_by_name(small_model):
    state = torch_state(SMALL, seed=1)
    before = {key: value.clone() for key, value in small_model.state_dict().items()}
    missing = {key: value for key, value in state.items() if key != "vision_model.post_layernorm.bias"}
    with pytest.raises(UserError, match=r"missing keys \['vision_model.post_layernorm.bias'\], unexpected keys \[\]"):
        load_clip_vision_weights(small_model, missing)
    extra = dict(state, **{"vision_model.encoder.layers.2.mlp.fc1.bias": torch.zeros(128)})
    with pytest.raises(UserError, match=r"missing keys \[\], unexpected keys \['vision_model.encoder.layers.2.mlp"):
        load_clip_vision_weights(small_model, extra)
    misshapen = dict(state, **{"visual_projection.weight": torch.zeros(16, 64)})
    with pytest.raises(UserError, match=r"visual_projection.weight: \(16, 64\) instead of \(32, 64\)"):
        load_clip_vision_weights(small_model, misshapen)
    shuffled = dict(state, **{POSITION_IDS_KEY: torch.arange(257).flip(0)[None]})
    with pytest.raises(UserError, match="position_ids"):
        load_clip_vision_weights(small_model, shuffled)
    # a layer short: the message lists 10 of its 16 keys and counts the rest
    short = {key: value for key, value in state.items() if ".layers.1." not in key}
    first = "vision_model.encoder.layers.1.layer_norm1.bias"
    with pytest.raises(UserError, match=rf"missing keys \['{first}', .*\] and 6 more"):
        load_clip_vision_weights(small_model, short)
    # another network's file (open_clip's names): text-like keys are skipped, nothing is left
    with pytest.raises(UserError, match=r"no vision_model.\* or visual_projection.weight keys.*'visual.proj'"):
        load_clip_vision_weights(small_model, {"visual.proj": torch.zeros(64, 32), "logit_scale": torch.tensor(1.0)})
    for key, value in small_model.state_dict().items():   # every refusal left the model as it was
        assert torch.equal(value, before[key]), key


def test_read_clip_state_dict(tmp_path, monkeypatch):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"visual_projection.weight": torch.ones(2, 3)}, path)
    assert torch.equal(read_clip_state_dict(path)["visual_projection.weight"], torch.ones(2, 3))
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)   # as if the package were absent
    with pytest.raises(UsageError, match="pip install safetensors"):
        read_clip_state_dict(tmp_path / "model.safetensors")


# ---------------------------------------------------------------- frames and pixels

def test_frame_choice_is_numpy_round_of_linspace():
    assert clip_frame_indices(80) == GOLDEN["frame_indices_80"] == [0, 9, 18, 26, 35, 44, 53, 61, 70, 79]
    assert clip_frame_indices(10) == list(range(10))
    assert clip_frame_indices(5) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert clip_frame_indices(1) == [0] * 10
    # halves go to the even neighbour (2.5 -> 2, 1.5 -> 2), not up
    assert clip_frame_indices(6, picks=3) == [0, 2, 5]
    assert clip_frame_indices(4, picks=3) == [0, 2, 3]
    with pytest.raises(ValueError, match="no frames"):
        clip_frame_indices(0)


def bilinear_by_formula(image, size):
    """(C, H, W) float64 numpy resized with half-pixel centres: source (i + 0.5) * in / out - 0.5,
    clamped at 0, between floor(source) and the next pixel (the last one repeated at the edge).
    The coordinate is a float32, as torch's CPU kernel makes it for float32 images: the scale
    in / out rounded to float32, then scale * (i + 0.5) - 0.5 rounded once (a fused multiply-add;
    the float64 product of two float32 is exact). Computed in float64 instead, or rounded twice,
    it moves pixel values by up to 5e-5."""
    def axis_weights(length):
        scale = np.float32(length) / np.float32(size)
        centres = np.arange(size, dtype=np.float32) + np.float32(0.5)
        source = np.maximum((np.float64(scale) * centres - 0.5).astype(np.float32), np.float32(0))
        low = np.floor(source).astype(int)
        fraction = (source - low.astype(np.float32)).astype(np.float64)
        high = np.minimum(low + 1, length - 1)
        weights = np.zeros((size, length))
        np.add.at(weights, (np.arange(size), low), 1 - fraction)
        np.add.at(weights, (np.arange(size), high), fraction)
        return weights
    rows, columns = axis_weights(image.shape[1]), axis_weights(image.shape[2])
    return rows @ image @ columns.T


@pytest.mark.parametrize("name", sorted(resize_frames()))
def test_resize_is_the_half_pixel_bilinear_formula(name):
    tensor = pixels_to_tensor(resize_frames()[name][None])
    ours = resize_bilinear(tensor)[0].double().numpy()
    np.testing.assert_allclose(ours, bilinear_by_formula(tensor[0].double().numpy(), 224), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(resize_frames()))
def test_resize_reproduces_torchvision_013_tensor_resize(name):
    golden = GOLDEN["resize"][name]
    resized = resized_frame(Image.fromarray(resize_frames()[name]))
    assert resized.shape == (3, 224, 224) and resized.dtype == torch.float32
    # one value off by 1/255 would move each sum by 4e-3 / 75,000, far more than 1e-9 of it
    assert_stats(resized.numpy(), golden, rel=1e-9, entry_atol=1e-7)
    # torchvision >= 0.17 antialiases tensors by default: a different image
    antialiased = torch.nn.functional.interpolate(pixels_to_tensor(resize_frames()[name][None]), size=(224, 224),
                                                  mode="bilinear", align_corners=False, antialias=True)[0]
    assert (antialiased - resized).abs().max().item() == pytest.approx(golden["antialias_true_max_diff"], abs=1e-3)


def test_pixel_values_reproduce_valor_transform(frames):
    picked = [frames[index] for index in GOLDEN["frame_indices_80"]]
    pixel_values = clip_pixel_values(picked)
    assert pixel_values.shape == (10, 3, 224, 224) and pixel_values.dtype == torch.float32
    assert_stats(pixel_values.numpy(), GOLDEN["pixel_values"], rel=1e-8, entry_atol=1e-6)
    # PIL frames of another mode are converted as .convert('RGB') and give the same values
    as_images = clip_pixel_values([Image.fromarray(frame).convert("RGBA") for frame in picked])
    assert torch.equal(as_images, pixel_values)


def test_a_uniform_frame_is_normalised_by_hand():
    rgb = (124, 116, 104)
    frame = np.empty((30, 500, 3), dtype=np.uint8)
    frame[:] = rgb
    pixel_values = clip_pixel_values([frame])
    for channel in range(3):
        expected = (rgb[channel] / 255 - CLIP_MEAN[channel]) / CLIP_STD[channel]
        torch.testing.assert_close(pixel_values[0, channel], torch.full((224, 224), expected), rtol=0, atol=1e-6)


def test_the_frame_is_squashed_not_cropped():
    # a 1:4 frame, red outer quarters and blue middle: a centre crop would show only blue
    frame = np.zeros((100, 400, 3), dtype=np.uint8)
    frame[:, :100, 0] = frame[:, 300:, 0] = 255
    frame[:, 100:300, 2] = 255
    raw = resized_frame(frame)
    assert (raw[0, :, :50] > 0.99).all() and (raw[0, :, 174:] > 0.99).all()
    assert (raw[2, :, 60:164] > 0.99).all() and (raw[0, :, 60:164] < 0.01).all()


def test_frame_arrays_must_be_rgb_uint8():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        clip_pixel_values([np.zeros((8, 8, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        clip_pixel_values([np.zeros((8, 8), dtype=np.uint8)])


# ---------------------------------------------------------------- network and features

def test_embeddings_reproduce_get_image_features(small_model):
    pixel_values = normalize(torch.stack([resized_frame(frame) for frame in
                                          golden_frames()[GOLDEN["frame_indices_80"]]]), CLIP_MEAN, CLIP_STD)
    with torch.no_grad():
        embeddings = small_model(pixel_values)
    assert embeddings.shape == (10, 32)
    np.testing.assert_allclose(embeddings.numpy(), np.array(GOLDEN["embeddings"]), rtol=0, atol=EMBEDDING_ATOL)


def test_window_features_reproduce_valor_from_80_frames(small_model, frames):
    features = clip_window_features(small_model, frames)
    assert features.shape == (10, 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, np.array(GOLDEN["features"]), rtol=0, atol=FEATURE_ATOL)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=0, atol=1e-6)
    # the same from PIL images, and in batches of 3
    as_images = clip_window_features(small_model, [Image.fromarray(frame) for frame in frames], batch_size=3)
    np.testing.assert_allclose(as_images, features, rtol=0, atol=1e-6)


def test_an_antialiased_resize_fails_the_golden_check(small_model, frames):
    picked = torch.stack([pixels_to_tensor(frames[index][None])[0] for index in GOLDEN["frame_indices_80"]])
    antialiased = torch.nn.functional.interpolate(picked, size=(224, 224), mode="bilinear", align_corners=False,
                                                  antialias=True)
    with torch.no_grad():
        features = small_model.features(normalize(antialiased, CLIP_MEAN, CLIP_STD)).numpy()
    difference = np.abs(features - np.array(GOLDEN["features"])).max()
    assert difference > 1000 * FEATURE_ATOL
    assert difference == pytest.approx(GOLDEN["antialias_features_max_diff"], rel=0.05)


def test_a_repeated_frame_goes_through_the_network_once(small_model, frames):
    seen = []
    handle = small_model.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    try:
        few = clip_window_features(small_model, frames[:4])           # indices 0 0 1 1 1 2 2 2 3 3
        held = [frames[0]] * 40 + [frames[1]] * 40                    # one object for 40 grid times each
        held_features = clip_window_features(small_model, held)
    finally:
        handle.remove()
    assert seen == [4, 2]
    every = clip_window_features(small_model, [frames[index].copy() for index in clip_frame_indices(4)])
    np.testing.assert_allclose(few, every, rtol=0, atol=1e-6)
    np.testing.assert_allclose(held_features[:5], np.repeat(every[:1], 5, axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(held_features[5:], np.repeat(every[2:3], 5, axis=0), rtol=0, atol=1e-6)


def test_features_are_the_embeddings_over_their_norm(small_model):
    pixel_values = torch.from_numpy(np.random.RandomState(5).standard_normal((3, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        embeddings, features = small_model(pixel_values), small_model.features(pixel_values)
    torch.testing.assert_close(features, embeddings / embeddings.norm(p=2, dim=-1, keepdim=True), rtol=0, atol=1e-7)


def test_the_network_refuses_another_image_size(small_model):
    with pytest.raises(ValueError, match=r"expected \(B, 3, 224, 224\)"):
        small_model(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        CLIPVisionTower(image_size=100, patch_size=14, width=8, layers=1, heads=2, mlp_width=16, projection_dim=4)
    with pytest.raises(ValueError, match="multiple of 3 heads"):
        CLIPVisionTower(image_size=28, patch_size=14, width=8, layers=1, heads=3, mlp_width=16, projection_dim=4)


def test_other_geometries_are_consistent():
    # image 56 / patch 14: 16 patches + the class token; the constructor is not tied to 224
    model = CLIPVisionTower(image_size=56, patch_size=14, width=32, layers=3, heads=2, mlp_width=48,
                            projection_dim=8).eval()
    assert state_shapes(model) == vision_shapes(56, 14, 32, 3, 2, 48, 8)
    with torch.no_grad():
        features = clip_window_features(model, golden_frames(count=12, height=20, width=30))
    assert features.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=0, atol=1e-6)
