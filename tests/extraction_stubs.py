"""Stub feature networks for the extraction tests: the real pipeline (decoding, windows,
preprocessing, batching, records) with networks whose outputs the tests can predict from the
synthetic videos of video_fixtures.py. Not a test module itself."""
import torch
from torch import nn

from extraction import vggish
from extraction.extractor import FeatureExtractor
from extraction.image_transforms import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD


class MeanColour(nn.Module):
    """Stub visual net: the mean RGB (0..255) of each input, padded to `dim`; clips also give the
    mean RGB of each of their 8 frames (dims 3..26)."""

    def __init__(self, dim, mean, std):
        super().__init__()
        self.dim = dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def features(self, inputs):
        if inputs.dim() == 5:   # (B, 3, 8, H, W) clips
            frames = inputs.permute(0, 2, 1, 3, 4).reshape(-1, 3, *inputs.shape[-2:])
            per_frame = self._rgb(frames).reshape(len(inputs), -1)   # (B, 8 * 3)
            values = torch.cat([per_frame.reshape(len(inputs), -1, 3).mean(1), per_frame], dim=1)
        else:
            values = self._rgb(inputs)
        return torch.cat([values, torch.zeros(len(inputs), self.dim - values.shape[1])], dim=1)

    def _rgb(self, images):
        return ((images * self.std + self.mean) * 255).mean(dim=(2, 3))


class LoudestBand(nn.Module):
    """Stub VGGish: the mean log-mel of each band over the example's frames, padded to 128."""

    def forward(self, examples):
        bands = examples.reshape(len(examples), -1, vggish.NUM_MEL_BANDS).mean(dim=1)
        return torch.cat([bands, torch.zeros(len(examples), 128 - bands.shape[1])], dim=1)


class StubExtractor(FeatureExtractor):
    """The real pipeline (decoding, windows, preprocessing, batching, records) with stub networks."""
    calls = 0

    def _build(self, kind, weights_dir):
        self.weight_records[kind] = "stub"
        if kind == "audio":
            return LoudestBand()
        if kind == "frames":
            return MeanColour(2048, IMAGENET_MEAN, IMAGENET_STD)
        return MeanColour(512, KINETICS_MEAN, KINETICS_STD)

    def extract(self, info, on_window=None):
        StubExtractor.calls += 1
        return super().extract(info, on_window)
