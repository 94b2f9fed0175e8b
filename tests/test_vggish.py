"""The VGGish port (extraction/vggish.py): the front end against hand computations, the network's
size and key names, golden values of the torchvggish reference, the 8-bit post-processing."""
import math

import numpy as np
import pytest
import torch

from extraction.vggish import (
    EXAMPLE_FRAMES,
    NUM_MEL_BANDS,
    VGGish,
    VGGishPostprocessor,
    load_pca,
    load_vggish_weights,
    log_mel_examples,
    log_mel_spectrogram,
    mel_matrix,
)

# torchvggish's VGG, written out from the layer sizes: conv index -> (out, in) channels of a 3x3
# kernel, linear index -> (out, in) features; the final conv map is 512 x 6 x 4
CONV_CHANNELS = {0: (64, 1), 3: (128, 64), 6: (256, 128), 8: (256, 256), 11: (512, 256), 13: (512, 512)}
LINEAR_FEATURES = {0: (4096, 512 * 6 * 4), 2: (4096, 4096), 4: (128, 4096)}


def expected_shapes():
    """{state-dict key: shape} of torchvggish's VGG, in its order."""
    shapes = {}
    for index, (out, into) in CONV_CHANNELS.items():
        shapes.update({f"features.{index}.weight": (out, into, 3, 3), f"features.{index}.bias": (out,)})
    for index, (out, into) in LINEAR_FEATURES.items():
        shapes.update({f"embeddings.{index}.weight": (out, into), f"embeddings.{index}.bias": (out,)})
    return shapes


EXPECTED_SHAPES = expected_shapes()

LOG_SILENCE = math.log(0.01)


def htk_mel(hertz):
    return 1127.0 * math.log(1.0 + hertz / 700.0)


def random_state_dict(seed=0):
    """A torchvggish-format state dict, stable across machines: int8 levels drawn by numpy's
    RandomState (fast for 72M values), scaled to a uniform of bound sqrt(6 / fan_in) for weights
    and 0.1 for biases, so activations neither vanish nor explode."""
    rng = np.random.RandomState(seed)
    state = {}
    for key, shape in EXPECTED_SHAPES.items():
        fan_in = int(np.prod(EXPECTED_SHAPES[key.replace("bias", "weight")][1:]))
        bound = math.sqrt(6.0 / fan_in) if key.endswith("weight") else 0.1
        levels = rng.randint(-127, 128, size=shape, dtype=np.int8).astype(np.float32)
        state[key] = torch.from_numpy(levels * np.float32(bound / 127))
    return state


def golden_waveform():
    """(160000,) 10 s at 16 kHz: a chirp 200 Hz -> 6000 Hz at 0.5 plus a 1 kHz tone at 0.1."""
    t = np.arange(160000) / 16000
    return 0.5 * np.sin(2 * np.pi * (200 * t + 290 * t ** 2)) + 0.1 * np.sin(2 * np.pi * 1000 * t)


# GOLDEN values of the reference, produced with torchvggish 0.2 (PyPI; its mel_features.py and
# vggish_input.py are the TensorFlow reference's, its VGG loads the released weights) and
# soundfile 0.14.0, numpy 2.4.6, torch 2.13.0+cpu:
#   from torchvggish import vggish_input, torchvggish
#   examples = vggish_input.waveform_to_examples(golden_waveform(), 16000, return_tensor=False)
#   vgg = torchvggish._vgg(postprocess=False); vgg.load_state_dict(random_state_dict(0)); vgg.eval()
#   embeddings = vgg(torch.tensor(examples, dtype=torch.float32)[:, None])
# The sums are float64 sums of the float32 arrays. On that machine this port's examples and
# embeddings equalled the reference's bit for bit; the tolerances below leave room for other BLAS.
GOLDEN_EXAMPLES_SUM = -210446.54300935112
GOLDEN_EXAMPLES_ENTRIES = {(0, 0, 0): 2.6712148189544678, (0, 40, 10): 1.769941806793213,
                           (3, 17, 33): 3.806673526763916, (5, 95, 63): -4.594083786010742,
                           (9, 50, 20): 2.4732184410095215, (9, 95, 0): -4.5921101570129395}
GOLDEN_EMBEDDINGS_SUM = 4522.833494991064
GOLDEN_EMBEDDINGS_ENTRIES = {(0, 3): 2.04850172996521, (1, 57): 5.053559303283691, (2, 108): 8.817349433898926,
                             (4, 31): 2.244997262954712, (5, 84): 1.615419864654541, (7, 14): 10.402840614318848,
                             (8, 68): 20.945186614990234, (9, 126): 5.596757411956787}
GOLDEN_EMBEDDINGS_ZEROS = 572      # of 1280: the final ReLU is kept


@pytest.fixture(scope="module")
def random_state():
    return random_state_dict(0)


@pytest.fixture(scope="module")
def loaded_model(random_state):
    # one model for the module: building VGGish initialises 72M parameters (~0.6 s)
    return load_vggish_weights(VGGish(), random_state).eval()


@pytest.fixture(scope="module")
def golden_examples():
    return log_mel_examples(golden_waveform())


# ---------------------------------------------------------------- front end

def test_silence_is_log_of_the_offset_everywhere():
    examples = log_mel_examples(np.zeros(16000))
    assert examples.shape == (1, EXAMPLE_FRAMES, NUM_MEL_BANDS) and examples.dtype == np.float32
    assert np.all(examples == np.float32(LOG_SILENCE))


def test_mel_matrix_shape_dc_row_and_a_weight_by_hand():
    weights = mel_matrix()
    assert weights.shape == (257, 64) and weights.dtype == np.float64
    assert np.all(weights[0] == 0)
    # bin 10 is 10 * 8000 / 256 = 312.5 Hz; the 66 band edges are evenly spaced in mel
    step = (htk_mel(7500.0) - htk_mel(125.0)) / 65
    bin_mel = htk_mel(312.5)
    band = int((bin_mel - htk_mel(125.0)) // step)          # the band whose rising side holds the bin
    lower, centre, upper = (htk_mel(125.0) + (band + i) * step for i in range(3))
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    assert 0 < rising < 1 and falling > 1
    assert weights[10, band] == pytest.approx(rising, rel=1e-12)
    # the same bin lies on the falling side of the band below, with weight 1 - rising
    assert weights[10, band - 1] == pytest.approx(1 - rising, rel=1e-12)
    assert np.count_nonzero(weights[10]) == 2
    # above 7500 Hz (bin 240 = 7500 Hz) nothing is weighted
    assert np.all(weights[240:] == 0)


def test_a_centred_impulse_gives_a_flat_spectrum():
    # frame 0 covers samples 0..399; the periodic Hann window is 1 at sample 200, so the windowed
    # frame is a unit impulse and every FFT magnitude is 1
    waveform = np.zeros(400 + 160 * 4)
    waveform[200] = 1.0
    log_mel = log_mel_spectrogram(waveform)
    assert log_mel.shape == (5, 64)
    np.testing.assert_allclose(log_mel[0], np.log(mel_matrix().sum(axis=0) + 0.01), rtol=1e-12)
    # frames 2.. start at sample 320 and later: they never see the impulse
    assert np.all(log_mel[2:] == LOG_SILENCE)


@pytest.mark.parametrize("band", [5, 30, 60])
def test_a_sine_at_a_band_centre_peaks_in_that_band(band):
    step = (htk_mel(7500.0) - htk_mel(125.0)) / 65
    centre_mel = htk_mel(125.0) + (band + 1) * step
    centre_hertz = 700.0 * (math.exp(centre_mel / 1127.0) - 1.0)
    t = np.arange(16000) / 16000
    examples = log_mel_examples(0.5 * np.sin(2 * np.pi * centre_hertz * t))
    assert np.all(examples[0].argmax(axis=1) == band)


@pytest.mark.parametrize("num_samples, num_examples", [
    (160000, 10),          # 998 frames
    (159999, 10),          # still 1 + 159599 // 160 = 998 frames
    (153840, 10),          # 1 + 153440 // 160 = 960 frames: the shortest with 10 examples
    (153839, 9),           # 959 frames
    (15600, 1),            # 1 + 15200 // 160 = 96 frames
    (15599, 0),            # 95 frames
    (100, 0),              # not one frame: zero examples (the reference fails here)
])
def test_examples_are_complete_runs_of_96_frames(num_samples, num_examples):
    assert log_mel_examples(np.zeros(num_samples)).shape == (num_examples, EXAMPLE_FRAMES, NUM_MEL_BANDS)


def test_the_front_end_refuses_other_rates_and_channels():
    with pytest.raises(ValueError, match="16000 Hz"):
        log_mel_examples(np.zeros(44100), sample_rate=44100)
    with pytest.raises(ValueError, match="mono"):
        log_mel_examples(np.zeros((16000, 2)))


def test_front_end_matches_golden_values(golden_examples):
    assert golden_examples.shape == (10, 96, 64) and golden_examples.dtype == np.float32
    assert float(golden_examples.astype(np.float64).sum()) == pytest.approx(GOLDEN_EXAMPLES_SUM, rel=1e-6)
    for index, value in GOLDEN_EXAMPLES_ENTRIES.items():
        assert float(golden_examples[index]) == pytest.approx(value, rel=1e-5, abs=1e-6), index


# ---------------------------------------------------------------- network

def test_parameter_count_and_state_dict_keys(loaded_model):
    model = loaded_model
    convs = ((1 * 9 + 1) * 64 + (64 * 9 + 1) * 128 + (128 * 9 + 1) * 256 + (256 * 9 + 1) * 256
             + (256 * 9 + 1) * 512 + (512 * 9 + 1) * 512)
    linears = (512 * 6 * 4 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 128
    assert sum(p.numel() for p in model.parameters()) == convs + linears == 72141184
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == EXPECTED_SHAPES


def test_forward_takes_both_input_layouts(loaded_model):
    examples = torch.from_numpy(log_mel_examples(golden_waveform()[:32000]))
    with torch.no_grad():
        flat, channel = loaded_model(examples), loaded_model(examples[:, None])
    assert flat.shape == (2, 128)
    assert torch.equal(flat, channel)
    with pytest.raises(ValueError, match="96, 64"):
        loaded_model(torch.zeros(2, 64, 96))


def test_a_torchvggish_state_dict_loads_and_a_wrong_one_raises(random_state, loaded_model):
    def loaded_exactly():
        return all(torch.equal(value, random_state[key]) for key, value in loaded_model.state_dict().items())
    assert loaded_exactly()
    missing = dict(random_state)
    del missing["features.8.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['features.8.bias'\]"):
        load_vggish_weights(loaded_model, missing)
    extra = dict(random_state, **{"pproc.pca_means": torch.zeros(128)})
    with pytest.raises(ValueError, match=r"unexpected keys \['pproc.pca_means'\]"):
        load_vggish_weights(loaded_model, extra)
    misshapen = dict(random_state, **{"embeddings.4.bias": torch.zeros(127)})
    with pytest.raises(ValueError, match="embeddings.4.bias"):
        load_vggish_weights(loaded_model, misshapen)
    assert loaded_exactly()             # a refused dict leaves the model as it was


def _golden_errors(embeddings):
    """The golden checks that `embeddings` (10, 128) fails, by name."""
    failed = []
    if float(embeddings.double().sum()) != pytest.approx(GOLDEN_EMBEDDINGS_SUM, rel=1e-4):
        failed.append("sum")
    if int((embeddings == 0).sum()) != GOLDEN_EMBEDDINGS_ZEROS:
        failed.append("zeros")
    failed += [index for index, value in GOLDEN_EMBEDDINGS_ENTRIES.items()
               if float(embeddings[index]) != pytest.approx(value, rel=1e-4, abs=1e-5)]
    return failed


def test_embeddings_match_golden_values(loaded_model, golden_examples):
    with torch.no_grad():
        embeddings = loaded_model(torch.from_numpy(golden_examples))
    assert embeddings.shape == (10, 128)
    assert _golden_errors(embeddings) == []


def test_a_channels_first_flatten_fails_the_golden_check(loaded_model, golden_examples):
    # what a port that forgets TensorFlow's NHWC layout computes: the released weights would be
    # read in the wrong order
    with torch.no_grad():
        maps = loaded_model.features(torch.from_numpy(golden_examples)[:, None])
        embeddings = loaded_model.embeddings(maps.flatten(1))
    assert "sum" in _golden_errors(embeddings) and len(_golden_errors(embeddings)) > 3


# ---------------------------------------------------------------- post-processing

def test_quantisation_truncates_as_the_release_does():
    postprocessor = VGGishPostprocessor(np.eye(128), np.zeros(128))
    embeddings = torch.zeros(1, 128)
    embeddings[0, :6] = torch.tensor([-3.0, -2.0, 0.0, 1.99, 2.0, 5.0])
    quantized = postprocessor(embeddings)
    # clip to [-2, 2], then (x + 2) * 255 / 4 truncated: 0, 0, 127.5 -> 127, 254.3625 -> 254, 255, 255
    assert quantized.dtype == torch.float32
    assert quantized[0, :6].tolist() == [0, 0, 127, 254, 255, 255]
    assert torch.all(quantized[0, 6:] == 127)


def test_pca_matches_the_reference_formula():
    rng = np.random.RandomState(2)
    eigen_vectors, means = rng.normal(size=(128, 128)) / 8, rng.normal(size=128)
    embeddings = rng.uniform(0, 3, size=(4, 128)).astype(np.float32)
    # vggish_postprocess.Postprocessor.postprocess, written out
    projected = np.dot(eigen_vectors, embeddings.T - means.reshape(-1, 1)).T
    expected = ((np.clip(projected, -2, 2) + 2) * (255.0 / 4)).astype(np.uint8)
    postprocessor = load_pca({"pca_eigen_vectors": torch.from_numpy(eigen_vectors),
                              "pca_means": means.reshape(-1, 1)})
    quantized = postprocessor(torch.from_numpy(embeddings))
    assert np.array_equal(quantized.numpy(), expected.astype(np.float32))
    assert 0 < np.count_nonzero((expected > 0) & (expected < 255))


def test_load_pca_refuses_a_dict_that_does_not_fit():
    with pytest.raises(ValueError, match=r"missing keys \['pca_means'\]"):
        load_pca({"pca_eigen_vectors": np.eye(128)})
    with pytest.raises(ValueError, match="pca_eigen_vectors"):
        load_pca({"pca_eigen_vectors": np.eye(64), "pca_means": np.zeros(128)})
