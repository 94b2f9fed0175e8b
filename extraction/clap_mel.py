"""The audio side of VALOR's CLAP features up to the network input: a 10-s clip at 48 kHz forced to
480,000 samples, the int16 round trip, and the fusion log-mel spectrogram (docs/PROTOCOL.md §15).

VALOR (utils/clap_preprocess.py with laion_clap 1.1.4) reads each clip as 48 kHz mono float32,
picks 480,000 samples by index, quantises them to int16 and back, and computes torchaudio's
MelSpectrogram + AmplitudeToDB with the settings of laion_clap's HTSAT-tiny `audio_cfg`. This
module computes the same in plain torch (core installs have no torchaudio): `torch.stft` with a
periodic Hann window, power 2, an HTK mel filterbank without area normalisation, 10 log10 of the
power floored at 1e-10. tests/test_clap_audio.py holds the reference's output on a fixed
waveform, computed once with torchaudio.

    samples = prepare_clip(waveform)        # (480000,) float32
    mel = fusion_mel(samples)               # (1001, 64) float32 torch tensor, dB
"""
import math

import numpy as np
import torch

# --- laion_clap's HTSAT-tiny audio_cfg (model_configs/HTSAT-tiny.json) ---
SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000               # 10 s; the model's max_len
WINDOW_SIZE = 1024                  # n_fft and win_length
HOP_SIZE = 480                      # 10 ms
MEL_BINS = 64
MEL_FMIN = 50.0
MEL_FMAX = 14000.0
NUM_FFT_BINS = WINDOW_SIZE // 2 + 1                 # 513: DC .. Nyquist
CLIP_FRAMES = CLIP_SAMPLES // HOP_SIZE + 1          # 1001: centred frames of a 480,000-sample clip

# torchaudio's defaults that laion's get_mel leaves in place: the "htk" mel scale, no filter
# normalisation; AmplitudeToDB(stype="power", top_db=None) with amin 1e-10 and ref 1
HTK_MEL_FACTOR = 2595.0             # mel = 2595 log10(1 + f / 700)
HTK_MEL_BREAK_HZ = 700.0
POWER_FLOOR = 1e-10
DB_PER_DECADE = 10.0                # a power quantity

# laion_clap's float32_to_int16 / int16_to_float32, which VALOR applies before the mel
INT16_SCALE = 32767.0


def pick_clip_samples(waveform, num_samples=CLIP_SAMPLES):
    """(num_samples,) samples of a 1-D waveform at indices round(linspace(0, len - 1, num_samples)),
    VALOR's way of making every clip exactly 10 s (clap_preprocess.py; PROTOCOL.md §15).

    This picks samples, it neither pads nor filters: a clip of exactly num_samples is returned
    unchanged, a longer one loses evenly spread samples, a shorter one repeats some (a
    nearest-neighbour time stretch). np.round rounds halves to even, as VALOR's numpy did.
    """
    samples = np.asarray(waveform)
    if samples.ndim != 1 or samples.shape[0] == 0:
        raise ValueError(f"CLAP takes a non-empty mono waveform of shape (num_samples,), got shape {samples.shape}")
    indices = np.round(np.linspace(0, samples.shape[0] - 1, num_samples)).astype(np.int64)
    return samples[indices]


def int16_round_trip(waveform):
    """(num_samples,) float32: clipped to [-1, 1], scaled by 32767 and truncated to int16, divided
    by 32767 again (laion_clap's quantisation, which its training data went through).

    The product is taken in float32, as on librosa's float32 output, so that a float64 input
    truncates where VALOR's would.
    """
    samples = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    levels = (samples * np.float32(INT16_SCALE)).astype(np.int16)
    return (levels / INT16_SCALE).astype(np.float32)


def prepare_clip(waveform, sample_rate=SAMPLE_RATE):
    """(480000,) float32 network-ready samples of one clip's 48 kHz mono waveform in [-1, 1]:
    index picking, then the int16 round trip (VALOR's order)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"CLAP takes {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; decode at {SAMPLE_RATE} Hz")
    return int16_round_trip(pick_clip_samples(np.asarray(waveform, dtype=np.float32)))


def htk_hz_to_mel(hertz):
    """HTK mel scale 2595 log10(1 + f / 700) of a frequency in Hz (a Python float)."""
    return HTK_MEL_FACTOR * math.log10(1.0 + hertz / HTK_MEL_BREAK_HZ)


def mel_filterbank(num_fft_bins=NUM_FFT_BINS, num_mels=MEL_BINS, fmin=MEL_FMIN, fmax=MEL_FMAX,
                   sample_rate=SAMPLE_RATE):
    """(num_fft_bins, num_mels) float32 torch weights W with mel power = power spectrum @ W.

    Band j is a triangle in Hz rising from edge j to edge j + 1 and falling to edge j + 2; the
    num_mels + 2 edges are evenly spaced on the HTK mel scale from fmin to fmax, and FFT bin k sits
    at k * (sample_rate // 2) / (num_fft_bins - 1) Hz. Peaks are 1 (no Slaney area normalisation)
    and, unlike VGGish's filters (extraction/vggish.py), the triangles are linear in Hz, not in mel.
    Everything after the two end points is float32 torch arithmetic, as in torchaudio's
    melscale_fbanks, because the rounding of the edges is part of the reference: the same
    triangles computed in float64 move weights by up to 6e-6 and the golden clip's dB by up to
    5e-4, where float32 arithmetic gives torchaudio's mel bit for bit.
    """
    bin_hz = torch.linspace(0, sample_rate // 2, num_fft_bins, dtype=torch.float32)[:, None]
    edges_mel = torch.linspace(htk_hz_to_mel(fmin), htk_hz_to_mel(fmax), num_mels + 2, dtype=torch.float32)
    edges_hz = HTK_MEL_BREAK_HZ * (10.0 ** (edges_mel / HTK_MEL_FACTOR) - 1.0)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def power_spectrogram(samples):
    """(num_frames, 513) float32 |STFT|^2: 1024-point periodic Hann frames every 480 samples,
    centred (the signal reflect-padded by 512 on both sides), so num_frames = 1 + len // 480."""
    window = torch.hann_window(WINDOW_SIZE, periodic=True, dtype=torch.float32)
    spectrum = torch.stft(samples, n_fft=WINDOW_SIZE, hop_length=HOP_SIZE, win_length=WINDOW_SIZE, window=window,
                          center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    return spectrum.abs().pow(2.0).transpose(-1, -2)


def fusion_mel(samples):
    """(num_frames, 64) float32 torch tensor of 10 log10(max(mel power, 1e-10)) dB for a
    (num_samples,) waveform (numpy or torch; 480,000 samples give 1001 frames).

    This is laion_clap's `get_mel` (training/data.py) as VALOR calls it on the prepared clip; the
    fusion input stacks four copies of it (clap_audio.HTSATAudioEncoder uses one, see there).
    """
    samples = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if samples.dim() != 1 or samples.shape[0] <= WINDOW_SIZE // 2:
        raise ValueError(f"the fusion mel takes a mono waveform longer than {WINDOW_SIZE // 2} samples "
                         f"(reflect padding), got shape {tuple(samples.shape)}")
    mel_power = power_spectrogram(samples) @ mel_filterbank()
    return DB_PER_DECADE * torch.log10(mel_power.clamp(min=POWER_FLOOR))
