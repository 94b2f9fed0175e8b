"""VGGish audio embeddings: the log-mel front end and the network of Google's AudioSet release, in PyTorch.

The LLP audio features (PROTOCOL.md §2: `vggish` (10, 128) per video) are one VGGish embedding per
0.96 s example of a 10 s, 16 kHz clip. This module reproduces the TensorFlow reference
(tensorflow/models, research/audioset/vggish: vggish_params.py, mel_features.py, vggish_input.py,
vggish_slim.py, vggish_postprocess.py) and loads the state dicts of the torchvggish port
(harritaylor/torchvggish: `vggish-10086976.pth`, `vggish_pca_params-970ea276.pth`; where they
come from is extraction/weights.py's business, this module never downloads).

Front end: waveform -> magnitude STFT (25 ms periodic Hann, 10 ms hop, 512-point FFT) -> 64 HTK
mel bands in 125..7500 Hz -> log(mel + 0.01) -> non-overlapping examples of 96 frames.
Network: 6 conv layers (4 max-pools) on a (1, 96, 64) example, then 3 fully connected layers to
128 values, each followed by a ReLU.
"""
import math

import numpy as np
import torch
from torch import nn

# --- front end (vggish_params.py, mel_features.py) ---
SAMPLE_RATE = 16000                 # Hz; the decoder resamples, this module refuses any other rate
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
# seconds to samples as mel_features.log_mel_spectrogram does: int(round(rate * seconds))
STFT_WINDOW_SAMPLES = int(round(SAMPLE_RATE * STFT_WINDOW_SECONDS))     # 400
STFT_HOP_SAMPLES = int(round(SAMPLE_RATE * STFT_HOP_SECONDS))           # 160
# the next power of two at or above the window, as the reference computes it
FFT_LENGTH = 2 ** int(math.ceil(math.log2(STFT_WINDOW_SAMPLES)))        # 512
NUM_FFT_BINS = FFT_LENGTH // 2 + 1                                      # 257: DC .. Nyquist
NUM_MEL_BANDS = 64
MEL_LOW_HZ = 125.0                  # lower edge of the lowest triangle
MEL_HIGH_HZ = 7500.0                # upper edge of the highest triangle
# HTK mel scale: mel = 1127 ln(1 + f / 700)
MEL_BREAK_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0
LOG_OFFSET = 0.01                   # log(mel + 0.01): silence maps to log(0.01), not -inf
EXAMPLE_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96          # examples do not overlap
# seconds to frames as vggish_input.waveform_to_examples does: int(round(seconds / hop))
EXAMPLE_FRAMES = int(round(EXAMPLE_SECONDS / STFT_HOP_SECONDS))         # 96
EXAMPLE_HOP_FRAMES = int(round(EXAMPLE_HOP_SECONDS / STFT_HOP_SECONDS))  # 96

# --- network (vggish_slim.py; torchvggish's VGG) ---
# output channels of the conv layers, grouped by the max-pool that closes each group
CONV_GROUPS = ((64,), (128,), (256, 256), (512, 512))
CONV_KERNEL = 3
POOL_SIZE = 2
# (96, 64) halved by each of the 4 pools
FINAL_MAP_SIZE = (EXAMPLE_FRAMES // POOL_SIZE ** len(CONV_GROUPS), NUM_MEL_BANDS // POOL_SIZE ** len(CONV_GROUPS))
FC_WIDTH = 4096
EMBEDDING_SIZE = 128

# --- post-processing (vggish_postprocess.py, vggish_params.py) ---
PCA_EIGEN_VECTORS_KEY = "pca_eigen_vectors"
PCA_MEANS_KEY = "pca_means"
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0
QUANTIZE_TOP = 255.0                # 8 bits: the AudioSet release stores embeddings as uint8


# ---------------------------------------------------------------- front end

def hertz_to_mel(hertz):
    """HTK mel scale, 1127 ln(1 + f / 700), for a scalar or an array (mel_features.hertz_to_mel)."""
    return MEL_HIGH_FREQUENCY_Q * np.log(1.0 + np.asarray(hertz, dtype=np.float64) / MEL_BREAK_HZ)


def mel_matrix():
    """(257, 64) float64 weights M with mel = |STFT| @ M (mel_features.spectrogram_to_mel_matrix).

    Band j is a triangle, linear in mel, rising from edge j to edge j + 1 and falling to edge
    j + 2, where the 66 edges are evenly spaced in mel from 125 Hz to 7500 Hz. Spectrogram bin k
    sits at k * 8000 / 256 Hz. The DC row is zeroed, as HTK excludes the DC bin.
    """
    bins_mel = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, NUM_FFT_BINS))[:, None]
    edges = np.linspace(hertz_to_mel(MEL_LOW_HZ), hertz_to_mel(MEL_HIGH_HZ), NUM_MEL_BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (centre - lower)
    falling = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def _check_waveform(waveform):
    """The waveform as a 1-D float64 array; ValueError for anything else."""
    samples = np.asarray(waveform, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"VGGish takes a mono waveform of shape (num_samples,), got shape {samples.shape}; "
                         "mix the channels down first")
    return samples


def _frames(array, length, hop):
    """(num_frames, length, ...) complete frames of `array` along its first axis, none padded
    (mel_features.frame); a too short array gives zero frames where the reference fails."""
    count = max(0, 1 + (array.shape[0] - length) // hop)
    starts = np.arange(count) * hop
    return array[starts[:, None] + np.arange(length)]


def periodic_hann(length):
    """(length,) Hann window of period `length` (Matlab's "periodic"; np.hanning is the symmetric
    one, of period length - 1); its value at the centre, index length / 2, is 1."""
    return 0.5 - 0.5 * np.cos(2 * np.pi / length * np.arange(length))


def stft_magnitude(waveform):
    """(num_frames, 257) float64 |rfft| of 400-sample periodic-Hann frames every 160 samples,
    zero-padded to 512 (mel_features.stft_magnitude); num_frames = 1 + (num_samples - 400) // 160."""
    frames = _frames(_check_waveform(waveform), STFT_WINDOW_SAMPLES, STFT_HOP_SAMPLES)
    return np.abs(np.fft.rfft(frames * periodic_hann(STFT_WINDOW_SAMPLES), FFT_LENGTH))


def log_mel_spectrogram(waveform):
    """(num_frames, 64) float64 log(|STFT| @ mel_matrix() + 0.01) of a 16 kHz mono waveform
    (mel_features.log_mel_spectrogram with the vggish_params settings)."""
    return np.log(stft_magnitude(waveform) @ mel_matrix() + LOG_OFFSET)


def log_mel_examples(waveform, sample_rate=SAMPLE_RATE):
    """(num_examples, 96, 64) float32 VGGish input examples of a mono waveform (num_samples,) in [-1, 1]
    (vggish_input.waveform_to_examples, without its resampling and channel mixing).

    Examples are the complete, non-overlapping runs of 96 frames; an incomplete run at the end is
    dropped. 160000 samples (10 s) give 998 frames, hence 10 examples; any length from 153840
    samples (960 frames) up gives 10.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"VGGish takes {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; "
                         "the decoder resamples, this front end does not")
    log_mel = log_mel_spectrogram(waveform)
    return _frames(log_mel, EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES).astype(np.float32)


# ---------------------------------------------------------------- network

def _conv_layers():
    """The `features` stack: per group, 3x3 convs (padding 1) with ReLUs, then a 2x2 max-pool.
    The module indices (0, 3, 6, 8, 11, 13 for the convs) give torchvggish's key names."""
    layers = []
    channels = 1
    for group in CONV_GROUPS:
        for width in group:
            layers += [nn.Conv2d(channels, width, kernel_size=CONV_KERNEL, padding=CONV_KERNEL // 2), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=POOL_SIZE, stride=POOL_SIZE))
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish (vggish_slim.py, the 2017-2020 release): (B, 96, 64) or (B, 1, 96, 64) log-mel
    examples -> (B, 128) embeddings.

    State-dict keys are those of torchvggish's VGG (features.0.weight ... embeddings.4.bias), so
    `vggish-10086976.pth` loads as it is (load_vggish_weights).
    """

    def __init__(self):
        super().__init__()
        self.features = _conv_layers()
        final_channels = CONV_GROUPS[-1][-1]
        self.embeddings = nn.Sequential(
            nn.Linear(final_channels * FINAL_MAP_SIZE[0] * FINAL_MAP_SIZE[1], FC_WIDTH), nn.ReLU(),
            nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU(),
            # the 'vggish/embedding' tensor the LLP and AVE features were read from still ended in
            # this ReLU; the TF release dropped it in 2020 (the final layer became linear)
            nn.Linear(FC_WIDTH, EMBEDDING_SIZE), nn.ReLU(),
        )

    def forward(self, examples):
        """(B, 96, 64) or (B, 1, 96, 64) float -> (B, 128) float, after the final ReLU."""
        if examples.dim() == 3:
            examples = examples.unsqueeze(1)
        if examples.dim() != 4 or tuple(examples.shape[1:]) != (1, EXAMPLE_FRAMES, NUM_MEL_BANDS):
            raise ValueError(f"VGGish takes examples of shape (B, {EXAMPLE_FRAMES}, {NUM_MEL_BANDS}) or "
                             f"(B, 1, {EXAMPLE_FRAMES}, {NUM_MEL_BANDS}), got {tuple(examples.shape)}")
        maps = self.features(examples)                       # (B, 512, 6, 4)
        # the fully connected weights were trained on TensorFlow's NHWC layout: flatten (B, 6, 4, 512)
        flat = maps.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(flat)


# ---------------------------------------------------------------- post-processing

class VGGishPostprocessor(nn.Module):
    """AudioSet-style post-processing (vggish_postprocess.Postprocessor): (B, 128) raw embeddings ->
    (B, 128) float32 integers in 0..255: PCA (with whitening) eigvecs @ (e - means), clipped to
    [-2, 2], quantized to 8 bits. Computed in float64, as the reference's numpy does."""

    def __init__(self, pca_eigen_vectors, pca_means):
        """pca_eigen_vectors (128, 128), pca_means 128 values (any shape, e.g. (128,) or (128, 1))."""
        super().__init__()
        eigen_vectors = torch.as_tensor(pca_eigen_vectors, dtype=torch.float64)
        means = torch.as_tensor(pca_means, dtype=torch.float64)
        if tuple(eigen_vectors.shape) != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.numel() != EMBEDDING_SIZE:
            raise ValueError(f"PCA parameters must be {PCA_EIGEN_VECTORS_KEY} ({EMBEDDING_SIZE}, {EMBEDDING_SIZE}) "
                             f"and {EMBEDDING_SIZE} {PCA_MEANS_KEY}, got {tuple(eigen_vectors.shape)} "
                             f"and {tuple(means.shape)}")
        self.register_buffer("pca_eigen_vectors", eigen_vectors)
        self.register_buffer("pca_means", means.reshape(EMBEDDING_SIZE))

    def forward(self, embeddings):
        """(B, 128) -> (B, 128) float32 in {0, ..., 255}."""
        centred = embeddings.to(torch.float64) - self.pca_means
        projected = centred @ self.pca_eigen_vectors.T       # row b: eigvecs @ (e_b - means)
        clipped = projected.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        scaled = (clipped - QUANTIZE_MIN) * (QUANTIZE_TOP / (QUANTIZE_MAX - QUANTIZE_MIN))
        # the reference casts to uint8, which truncates (scaled is >= 0, so floor is the same);
        # torchvggish rounds instead, so about half of its values are 1 higher than the release's
        return torch.floor(scaled).to(torch.float32)


# ---------------------------------------------------------------- loading

def _check_keys(given, expected, what):
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{what} does not fit: missing keys {missing}, unexpected keys {unexpected}")


def load_vggish_weights(model, state_dict):
    """Loads torchvggish's `vggish-10086976.pth` (as torch.load gives it: 18 tensors named
    features.{0,3,6,8,11,13}.{weight,bias}, embeddings.{0,2,4}.{weight,bias}) into `model`, a VGGish;
    returns the model. ValueError naming the missing, unexpected or misshapen entries."""
    expected = model.state_dict()
    _check_keys(state_dict, expected, "VGGish state dict")
    tensors = {key: torch.as_tensor(value) for key, value in state_dict.items()}
    misshapen = [f"{key}: {tuple(tensors[key].shape)} instead of {tuple(expected[key].shape)}"
                 for key in expected if tensors[key].shape != expected[key].shape]
    if misshapen:
        raise ValueError("VGGish state dict does not fit: " + "; ".join(misshapen))
    model.load_state_dict(tensors)
    return model


def load_pca(state_dict):
    """A VGGishPostprocessor from torchvggish's `vggish_pca_params-970ea276.pth` (as torch.load gives
    it: 'pca_eigen_vectors' (128, 128), 'pca_means' 128 values). ValueError if the dict does not fit."""
    _check_keys(state_dict, (PCA_EIGEN_VECTORS_KEY, PCA_MEANS_KEY), "VGGish PCA parameters")
    return VGGishPostprocessor(state_dict[PCA_EIGEN_VECTORS_KEY], state_dict[PCA_MEANS_KEY])
