"""Input projections shared by every network (PROTOCOL.md §3).

The audio projection and the visual projection are separate modules so that the
visual MGN (PROTOCOL.md §6) can hold its own copy of the visual half alone.
"""
import torch
from torch import nn

from avvp_data.llp import FEATURE_KINDS

AUDIO_DIM = FEATURE_KINDS["audio"][1][-1]
FRAME_DIM = FEATURE_KINDS["frames"][1][-1]
SNIPPET_DIM = FEATURE_KINDS["snippets"][1][-1]


class VisualProjection(nn.Module):
    """Frame and snippet features -> one visual vector per segment; PROTOCOL.md §3.

    frame:   Linear(frame_dim -> d) applied to every frame, then the frames of a
             segment are averaged;
    snippet: Linear(snippet_dim -> d);
    fusion:  Linear(2d -> d) on the concatenation [frames, snippet].
    """

    def __init__(self, frame_dim: int = FRAME_DIM, snippet_dim: int = SNIPPET_DIM,
                 d_model: int = 512):
        super().__init__()
        self.frame = nn.Linear(frame_dim, d_model)
        self.snippet = nn.Linear(snippet_dim, d_model)
        self.fusion = nn.Linear(2 * d_model, d_model)

    def forward(self, frames: torch.Tensor, snippets: torch.Tensor) -> torch.Tensor:
        """frames (B, T*F, Df), snippets (B, T, Ds) -> (B, T, d).

        The number of frames per segment F is frames.shape[1] // T, so feature
        sets with another frame rate work unchanged (LLP: T=10, F=8).
        """
        batch, num_segments = snippets.shape[:2]
        if frames.shape[0] != batch or frames.shape[1] % num_segments:
            raise ValueError(
                f"frames {tuple(frames.shape)} do not split into the {num_segments} "
                f"segments of snippets {tuple(snippets.shape)}")
        per_frame = self.frame(frames)
        # consecutive frames belong to the same segment (the release average-pools
        # windows of F frames; a reshaped mean is the same computation)
        per_segment = per_frame.reshape(batch, num_segments, -1, per_frame.shape[-1]).mean(dim=2)
        return self.fusion(torch.cat([per_segment, self.snippet(snippets)], dim=-1))


class InputProjection(nn.Module):
    """Audio and visual features -> two (B, T, d) sequences; PROTOCOL.md §3."""

    def __init__(self, audio_dim: int = AUDIO_DIM, frame_dim: int = FRAME_DIM,
                 snippet_dim: int = SNIPPET_DIM, d_model: int = 512):
        super().__init__()
        self.audio = nn.Linear(audio_dim, d_model)
        self.visual = VisualProjection(frame_dim, snippet_dim, d_model)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor,
                snippets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T, Da), frames (B, T*F, Df), snippets (B, T, Ds)
        -> audio (B, T, d), visual (B, T, d)."""
        return self.audio(audio), self.visual(frames, snippets)
