"""Modality-wise guiding networks (unimodal, used in training only); PROTOCOL.md §6."""
import copy

import torch
from torch import nn

from avvp_data.llp import NUM_CLASSES
from nets.mmil_head import MILHead
from nets.projections import AUDIO_DIM, FRAME_DIM, SNIPPET_DIM, VisualProjection


class ResidualEncoder(nn.Module):
    """A stack of post-norm Transformer encoder layers applied repeatedly with a residual.

    x <- x + Stack(x), `num_iterations` times, the same weights every time (PROTOCOL.md §6).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, num_layers: int,
                 num_iterations: int, dropout: float):
        super().__init__()
        self.num_iterations = num_iterations
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout,
                                           activation="relu", batch_first=True, norm_first=False)
        # as published: the layers start as copies of one initialised layer (the release builds
        # them with nn.TransformerEncoder(layer, num_layers), which deep-copies it) and then
        # train apart; PROTOCOL.md §6
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); mask: optional (B, T) bool, True on a video's own segments
        (padding is attended by nothing)."""
        padding = None if mask is None else ~mask
        for _ in range(self.num_iterations):
            encoded = x
            for layer in self.layers:
                encoded = layer(encoded, src_key_padding_mask=padding)
            x = x + encoded
        return x


class AudioMGN(nn.Module):
    """Audio guiding network: Linear -> 1 encoder layer applied 4 times -> MIL head.

    1,669,682 parameters with the defaults (PROTOCOL.md §6).
    """

    def __init__(self, audio_dim: int = AUDIO_DIM, d_model: int = 512, num_heads: int = 8,
                 dim_feedforward: int = 512, num_layers: int = 1, num_iterations: int = 4,
                 num_classes: int = NUM_CLASSES, dropout: float = 0.1):
        super().__init__()
        self.projection = nn.Linear(audio_dim, d_model)
        self.encoder = ResidualEncoder(d_model, num_heads, dim_feedforward, num_layers,
                                       num_iterations, dropout)
        self.head = MILHead(d_model, num_classes)

    def forward(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """audio (B, T, Da) -> video-level audio probabilities (B, C)."""
        return self.with_segments(audio, mask)[0]

    def with_segments(self, audio: torch.Tensor, mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T, Da) -> video-level (B, C) and segment-level (B, T, C) audio probabilities;
        mask as in HCMN.forward."""
        return self.head(self.encoder(self.projection(audio), mask), mask)


class VisualMGN(nn.Module):
    """Visual guiding network: own visual projection (PROTOCOL.md §3) -> 2 encoder layers
    applied 3 times -> MIL head. 5,018,162 parameters with the defaults (PROTOCOL.md §6).
    """

    def __init__(self, frame_dim: int = FRAME_DIM, snippet_dim: int = SNIPPET_DIM,
                 d_model: int = 512, num_heads: int = 8, dim_feedforward: int = 512,
                 num_layers: int = 2, num_iterations: int = 3, num_classes: int = NUM_CLASSES,
                 dropout: float = 0.1):
        super().__init__()
        self.projection = VisualProjection(frame_dim, snippet_dim, d_model)
        self.encoder = ResidualEncoder(d_model, num_heads, dim_feedforward, num_layers,
                                       num_iterations, dropout)
        self.head = MILHead(d_model, num_classes)

    def forward(self, frames: torch.Tensor, snippets: torch.Tensor, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """frames (B, T*F, Df), snippets (B, T, Ds) -> video-level visual probabilities (B, C)."""
        return self.with_segments(frames, snippets, mask)[0]

    def with_segments(self, frames: torch.Tensor, snippets: torch.Tensor, mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T*F, Df), snippets (B, T, Ds) -> video-level (B, C) and segment-level
        (B, T, C) visual probabilities; mask as in HCMN.forward."""
        return self.head(self.encoder(self.projection(frames, snippets), mask), mask)
