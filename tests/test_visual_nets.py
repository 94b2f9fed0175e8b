"""extraction/visual_nets.py and extraction/image_transforms.py: torchvision's weight layouts and
outputs, and the frame preprocessing of AVVP-ECCV20's scripts/extract_rgb_feat.py and
scripts/extract_3D_feat.py.

GOLDEN values below were produced with torchvision itself, which cannot be imported here: in a
throw-away venv (torch 2.14.1+cu130 run on CPU, torchvision 0.29.1, pillow 13.0.0, numpy 2.4.6),
torchvision.models.resnet152(weights=None) and torchvision.models.video.r2plus1d_18(weights=None)
were filled by `fill_from_numpy` below (the same code), their `fc` replaced by nn.Identity so
that the output is flatten(avgpool(x)), and run in eval mode on `random_input(shape)`; the
transform values come from torchvision.transforms (Resize(256), CenterCrop(224), ToTensor,
Normalize(ImageNet); Resize((112, 112)), ToTensor, Normalize(Kinetics)) on `golden_images()`.
Sums are over the flattened tensor in float64; entries index the flattened tensor.
"""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from extraction.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    normalize,
    r2plus1d_clips,
    r2plus1d_input,
    resize_shorter_side,
    resnet_input,
    to_tensor,
)
from extraction.visual_nets import r2plus1d_18, resnet152

WEIGHT_SCALE = 0.02

# torchvision's documented num_params, its len(state_dict()) and sha256 of "key:shape" lines
LAYOUTS = {
    "resnet152": dict(params=60_192_808, keys=932,
                      digest="9e3321003337a84820c9f62956c320beec8a4cf299353de4281d05b5f24d39ad"),
    "r2plus1d_18": dict(params=31_505_325, keys=224,
                        digest="247afa1fbd50f74b8818e1a5c1567a589d00c05d02c70d78ed706e044a9f6151"),
}
FEATURE_GOLDEN = {
    "resnet152": dict(
        shape=(1, 3, 224, 224), sum=134.70500939213275, square_sum=20.20330888520769,
        argmax=2015, max=0.43541693687438965,
        entries={1: 0.019999520853161812, 7: 0.00917748548090458, 100: 0.12670007348060608,
                 511: 0.05898161977529526, 1234: 0.0}),
    "r2plus1d_18": dict(
        shape=(1, 3, 8, 112, 112), sum=14.591053768191387, square_sum=1.0077867606894912,
        argmax=213, max=0.19789735972881317,
        entries={1: 0.033044349402189255, 7: 0.030504927039146423, 100: 0.05403440445661545,
                 511: 0.0020074662752449512, 210: 0.058146290481090546}),
}
TRANSFORM_GOLDEN = {
    "resnet_input": dict(
        shape=(2, 3, 224, 224), sum=67800.79289773898, abs_sum=222381.58195424592,
        square_sum=243354.79067173437, argmax=254675, max=2.6051416397094727,
        entries={0: 1.444044828414917, 1: 0.6734309792518616, 12345: 0.19393789768218994,
                 40000: 1.324171543121338, 301055: -0.7935511469841003}),
    "r2plus1d_input": dict(
        shape=(2, 3, 112, 112), sum=33777.308743626185, abs_sum=37785.921401273765,
        square_sum=27488.9851560629, argmax=63113, max=2.114596366882324,
        entries={0: 0.254510760307312, 1: 0.44368448853492737, 12345: 0.2201155722141266,
                 40000: -0.05504601448774338, 75263: 0.34347546100616455}),
}


def fill_from_numpy(model, seed=0):
    """Every float tensor of the state dict, in sorted key order, from RandomState(seed): normal
    * 0.02, BN scales 1 + that, running variances 1 + |that|; integer buffers left as they are."""
    rng = np.random.RandomState(seed)
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key]
        if not tensor.is_floating_point():
            continue
        values = rng.standard_normal(tuple(tensor.shape)) * WEIGHT_SCALE
        if key.endswith("running_var"):
            values = 1.0 + np.abs(values)
        elif key.endswith("weight") and tensor.dim() == 1:
            values = 1.0 + values
        tensor.copy_(torch.from_numpy(values.astype(np.float32)))


def random_input(shape):
    return torch.from_numpy(np.random.RandomState(1).standard_normal(shape).astype(np.float32))


def golden_images():
    """320x240 and 181x301 frames of uniform noise: both resize branches, and crop offsets of
    58.5 and 100.5 (resized to 341x256 and 256x425) that Python's round takes to 58 and 100."""
    rng = np.random.RandomState(2)
    landscape = rng.randint(0, 256, size=(240, 320, 3), dtype=np.uint8)
    portrait = rng.randint(0, 256, size=(301, 181, 3), dtype=np.uint8)
    return [Image.fromarray(landscape), Image.fromarray(portrait)]


def layout_digest(model):
    lines = [f"{key}:{tuple(value.shape)}" for key, value in model.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


BUILDERS = {"resnet152": resnet152, "r2plus1d_18": r2plus1d_18}


@pytest.fixture(scope="module")
def filled_nets():
    """Both nets, built without their random init (meta device; the filler writes every float)."""
    nets = {}
    for name, build in BUILDERS.items():
        with torch.device("meta"):
            model = build()
        model = model.to_empty(device="cpu").eval()
        for buffer in model.buffers():
            if not buffer.is_floating_point():
                buffer.zero_()   # num_batches_tracked, as a fresh BatchNorm has it
        fill_from_numpy(model)
        nets[name] = model
    return nets


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parameters_and_state_dict_layout_equal_torchvision(filled_nets, name):
    model = filled_nets[name]
    expected = LAYOUTS[name]
    assert sum(p.numel() for p in model.parameters()) == expected["params"]
    assert len(model.state_dict()) == expected["keys"]
    assert layout_digest(model) == expected["digest"]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_features_reproduce_torchvision_golden_values(filled_nets, name):
    golden = FEATURE_GOLDEN[name]
    with torch.no_grad():
        feature = filled_nets[name].features(random_input(golden["shape"]))
    assert feature.shape == (1, filled_nets[name].feature_dim)
    flat = feature.double().flatten()
    assert flat.sum().item() == pytest.approx(golden["sum"], rel=1e-4)
    assert flat.square().sum().item() == pytest.approx(golden["square_sum"], rel=1e-4)
    assert flat.argmax().item() == golden["argmax"]
    assert flat.max().item() == pytest.approx(golden["max"], rel=1e-4)
    for index, value in golden["entries"].items():
        assert flat[index].item() == pytest.approx(value, rel=1e-4, abs=1e-6), index


def test_feature_dims_and_logits_on_small_batches(filled_nets):
    resnet, r2plus1d = filled_nets["resnet152"], filled_nets["r2plus1d_18"]
    with torch.no_grad():
        images = random_input((2, 3, 64, 64))
        assert resnet.features(images).shape == (2, 2048)
        logits = resnet(images)
        assert logits.shape == (2, 1000)
        torch.testing.assert_close(logits, resnet.fc(resnet.features(images)))
        clips = random_input((2, 3, 8, 32, 32))
        assert r2plus1d.features(clips).shape == (2, 512)
        assert r2plus1d(clips).shape == (2, 400)


@pytest.mark.parametrize("name, transform", [("resnet_input", resnet_input),
                                             ("r2plus1d_input", r2plus1d_input)])
def test_transforms_reproduce_torchvision_golden_values(name, transform):
    golden = TRANSFORM_GOLDEN[name]
    batch = transform(golden_images())
    assert batch.shape == golden["shape"] and batch.dtype == torch.float32
    flat = batch.double().flatten()
    # one pixel off by 1/255 would move each sum by more than 1e-7 of it
    assert flat.sum().item() == pytest.approx(golden["sum"], rel=1e-9)
    assert flat.abs().sum().item() == pytest.approx(golden["abs_sum"], rel=1e-9)
    assert flat.square().sum().item() == pytest.approx(golden["square_sum"], rel=1e-9)
    assert flat.argmax().item() == golden["argmax"]
    assert flat.max().item() == golden["max"]
    for index, value in golden["entries"].items():
        assert flat[index].item() == pytest.approx(value, abs=1e-6), index


def uniform_image(rgb, size=(320, 240)):
    return Image.new("RGB", size, rgb)


@pytest.mark.parametrize("transform, mean, std, side", [
    (resnet_input, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224),
    (r2plus1d_input, (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 112),
])
def test_uniform_image_normalised_by_hand(transform, mean, std, side):
    rgb = (124, 116, 104)
    batch = transform([uniform_image(rgb), uniform_image(rgb, size=(100, 300))])
    assert batch.shape == (2, 3, side, side)
    for channel in range(3):
        expected = (rgb[channel] / 255 - mean[channel]) / std[channel]
        torch.testing.assert_close(batch[:, channel], torch.full((2, side, side), expected),
                                   rtol=0, atol=1e-6)


def test_constants_are_the_published_ones():
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (KINETICS_MEAN, KINETICS_STD) == ((0.43216, 0.394666, 0.37645),
                                             (0.22803, 0.22145, 0.216989))


def test_normalize_keeps_batch_dims():
    tensor = torch.ones(4, 3, 2, 5)
    out = normalize(tensor, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    assert out.shape == tensor.shape
    torch.testing.assert_close(out[:, 0], torch.full((4, 2, 5), 1.0))
    torch.testing.assert_close(out[:, 1], torch.full((4, 2, 5), 3.0))
    torch.testing.assert_close(out[:, 2], torch.full((4, 2, 5), 0.5))


@pytest.mark.parametrize("size, expected", [((320, 240), (341, 256)), ((240, 320), (256, 341)),
                                            ((333, 250), (340, 256)), ((256, 400), (256, 400))])
def test_shorter_side_becomes_256_longer_truncated(size, expected):
    assert resize_shorter_side(uniform_image((0, 0, 0), size), 256).size == expected


def test_resnet_crop_is_the_centre_of_the_resized_frame():
    # 320x240 in thirds red | green | blue (columns 0-106, 107-213, 214-319); resized to 341x256
    # (x 341/320), the crop starts at column round((341 - 224) / 2) = 58 (Python's round of 58.5)
    pixels = np.zeros((240, 320, 3), dtype=np.uint8)
    pixels[:, :107, 0] = 255
    pixels[:, 107:214, 1] = 255
    pixels[:, 214:, 2] = 255
    crop = resnet_input([Image.fromarray(pixels)])[0]
    raw = crop * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    row = raw[:, 112]   # (3, 224): every row is the same
    left = 58
    red_to_green = 107 * 341 / 320 - left     # 56.0 in crop columns
    green_to_blue = 214 * 341 / 320 - left    # 170.0
    red_columns = (row[0] > 0.5).nonzero().flatten()
    blue_columns = (row[2] > 0.5).nonzero().flatten()
    assert red_columns.min().item() == 0 and blue_columns.max().item() == 223
    assert abs(red_columns.max().item() + 0.5 - red_to_green) <= 1
    assert abs(blue_columns.min().item() - 0.5 - green_to_blue) <= 1
    assert (row[1, 60:166] > 0.99).all()


def test_r2plus1d_input_fills_the_frame_ignoring_aspect():
    # a 4:1 frame, red outer quarters and blue middle: a centre crop would show only blue
    pixels = np.zeros((100, 400, 3), dtype=np.uint8)
    pixels[:, :100, 0] = 255
    pixels[:, 300:, 0] = 255
    pixels[:, 100:300, 2] = 255
    frame = r2plus1d_input([Image.fromarray(pixels)])[0]
    raw = frame * torch.tensor(KINETICS_STD).view(3, 1, 1) + torch.tensor(KINETICS_MEAN).view(3, 1, 1)
    assert frame.shape == (3, 112, 112)
    assert (raw[0, :, :25] > 0.99).all() and (raw[0, :, 87:] > 0.99).all()
    assert (raw[2, :, 31:81] > 0.99).all() and (raw[0, :, 31:81] < 0.01).all()


def test_grey_frames_are_converted_to_rgb():
    grey = Image.new("L", (8, 6), 200)
    tensor = to_tensor(grey)
    assert tensor.shape == (3, 6, 8)
    torch.testing.assert_close(tensor, torch.full((3, 6, 8), 200 / 255))


def test_r2plus1d_clips_put_frame_i_at_clip_i_div_8_time_i_mod_8():
    frames = torch.arange(80, dtype=torch.float32).view(80, 1, 1, 1).expand(80, 3, 4, 5)
    frames = frames + torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1) / 10
    clips = r2plus1d_clips(frames)
    assert clips.shape == (10, 3, 8, 4, 5)
    for index in range(80):
        torch.testing.assert_close(clips[index // 8, :, index % 8], frames[index], rtol=0, atol=0)
    with pytest.raises(ValueError, match="81 frames"):
        r2plus1d_clips(torch.zeros(81, 3, 4, 5))
