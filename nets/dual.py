"""Dual HHN: two HCMNs, one trusted for each modality; PROTOCOL.md §8."""
import torch
from torch import nn

from nets.hcmn import HCMN


class DualHHN(nn.Module):
    """Audio predictions from `audio_stream`, visual predictions from `visual_stream`.

    In the protocol the audio stream holds the best-audio checkpoint and the visual
    stream the best-visual one (PROTOCOL.md §8). "global_prob" is the mean of the two
    streams' global predictions; it exists only so that every parsing model has the
    same outputs: the DHHN evaluation gates audio with audio_prob and visual with
    visual_prob and never reads it (PROTOCOL.md §9).
    """

    def __init__(self, audio_stream: HCMN, visual_stream: HCMN):
        super().__init__()
        self.audio_stream = audio_stream
        self.visual_stream = visual_stream

    def forward(self, audio: torch.Tensor, frames: torch.Tensor,
                snippets: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """audio (B, 10, Da), frames (B, 80, Df), snippets (B, 10, Ds) ->
        {"global_prob", "audio_prob", "visual_prob": (B, C), "frame_prob": (B, 10, 2, C)};
        mask as in HCMN.forward."""
        from_audio = self.audio_stream(audio, frames, snippets, mask)
        from_visual = self.visual_stream(audio, frames, snippets, mask)
        return {
            "global_prob": (from_audio["global_prob"] + from_visual["global_prob"]) / 2,
            "audio_prob": from_audio["audio_prob"],
            "visual_prob": from_visual["visual_prob"],
            "frame_prob": torch.stack([from_audio["frame_prob"][:, :, 0],
                                       from_visual["frame_prob"][:, :, 1]], dim=2),
        }
