"""HCMN: hierarchical context modelling network of DHHN; PROTOCOL.md §5."""
import torch
import torch.nn.functional as F
from torch import nn

from avvp_data.llp import NUM_CLASSES
from nets.han_layer import HANLayer
from nets.mmil_head import MMILHead
from nets.projections import AUDIO_DIM, FRAME_DIM, SNIPPET_DIM, InputProjection

# (kernel, stride) of the temporal scales; on T=10 they give T = 10, 5, 2 (PROTOCOL.md §5)
SCALES = ((1, 1), (3, 2), (5, 5))


class ConvBlock(nn.Module):
    """Conv1d(d, d, k, stride s, padding k//2, no bias) -> BatchNorm1d -> ReLU; PROTOCOL.md §5."""

    def __init__(self, d_model: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, stride, padding=kernel_size // 2,
                              bias=False)
        self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T_k, d), T_k = floor((T + 2*(k//2) - k) / s) + 1."""
        return F.relu(self.norm(self.conv(x.transpose(1, 2)))).transpose(1, 2)


def upsample_nearest(features: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """(B, T_k, 2, d) -> (B, length, 2, d): segment t takes output t // stride, the window its
    stride step starts in. On LLP (T = 10, T_k = 5 and 2) these are exactly the release's nearest-
    neighbour indices (F.interpolate, floor(t * T_k / T)); unlike those, they do not depend on T,
    so a video's result does not change when it is padded into a longer batch."""
    index = torch.arange(length, device=features.device) // stride
    return features.index_select(1, index)


def scale_mask(mask: torch.Tensor | None, stride: int) -> torch.Tensor | None:
    """The (B, T_k) mask of a scale's outputs: output j is a video's own when its window starts on
    one of the video's segments (segment stride * j)."""
    return None if mask is None else mask[:, ::stride]


class HCMN(nn.Module):
    """Hierarchical context modelling network; PROTOCOL.md §5.

    projection -> per scale k: audio/visual ConvBlocks -> the one shared HAN layer
    -> E_k (B, T_k, 2, d); F_1 = E_1, F_k = upsample(E_k, T) + F_{k-1};
    the one shared MMIL head on every F_k; outputs averaged over scales.

    Ablation switches (PROTOCOL.md §7, paper Table 2):
        hier_feat=False: a single scale (k=1) only; the other convs are not built.
        hier_pred=False: predict from the last F_k only instead of averaging the
                         predictions of all scales.
    Parameter count with the defaults: 9,294,411 (BatchNorm buffers excluded).
    """

    def __init__(self, audio_dim: int = AUDIO_DIM, frame_dim: int = FRAME_DIM,
                 snippet_dim: int = SNIPPET_DIM, d_model: int = 512,
                 num_classes: int = NUM_CLASSES, hier_feat: bool = True, hier_pred: bool = True,
                 dropout: float = 0.1):
        super().__init__()
        self.hier_feat = hier_feat
        self.hier_pred = hier_pred
        scales = SCALES if hier_feat else SCALES[:1]
        self.projection = InputProjection(audio_dim, frame_dim, snippet_dim, d_model)
        self.audio_convs = nn.ModuleList(ConvBlock(d_model, k, s) for k, s in scales)
        self.visual_convs = nn.ModuleList(ConvBlock(d_model, k, s) for k, s in scales)
        self.han = HANLayer(d_model, num_heads=1, dim_feedforward=d_model, dropout=dropout)
        self.head = MMILHead(d_model, num_classes)

    def hierarchical_features(self, audio: torch.Tensor, frames: torch.Tensor,
                              snippets: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Inputs as in `forward` -> [F_1, ..., F_K], each (B, T, 2, d)."""
        audio, visual = self.projection(audio, frames, snippets)
        if mask is not None:   # padding enters the convolutions as their own zero padding would
            audio, visual = audio * mask[:, :, None], visual * mask[:, :, None]
        num_segments = audio.shape[1]
        features = []
        for audio_conv, visual_conv in zip(self.audio_convs, self.visual_convs):
            stride = audio_conv.conv.stride[0]
            audio_k, visual_k = self.han.encode_pair(audio_conv(audio), visual_conv(visual), scale_mask(mask, stride))
            mixed = torch.stack([audio_k, visual_k], dim=2)
            if features:
                mixed = upsample_nearest(mixed, num_segments, stride) + features[-1]
            features.append(mixed)
        return features

    def forward(self, audio: torch.Tensor, frames: torch.Tensor,
                snippets: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """audio (B, 10, Da), frames (B, 80, Df), snippets (B, 10, Ds) ->
        {"global_prob", "audio_prob", "visual_prob": (B, C), "frame_prob": (B, 10, 2, C)}.
        Any number of segments T works in place of 10; mask: optional (B, T) bool, True on each
        video's own segments of a padded batch (outputs on padding are to be ignored)."""
        features = self.hierarchical_features(audio, frames, snippets, mask)
        if not self.hier_pred:
            features = features[-1:]
        # the one shared head on all scales stacked along the batch (one call, not K)
        stacked = self.head(torch.cat(features), None if mask is None else mask.repeat(len(features), 1))
        return {key: value.unflatten(0, (len(features), -1)).mean(dim=0)
                for key, value in stacked.items()}
