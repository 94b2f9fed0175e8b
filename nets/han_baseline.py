"""HAN baseline of Tian et al. (ECCV 2020), for comparison; PROTOCOL.md §11."""
import torch
from torch import nn

from nets.han_layer import HANLayer
from nets.mmil_head import MMILHead
from nets.projections import AUDIO_DIM, FRAME_DIM, SNIPPET_DIM, InputProjection
from utils.constants import NUM_CLASSES


class HANBaseline(nn.Module):
    """Projections (PROTOCOL.md §3) -> one HAN layer at T=10 (PROTOCOL.md §4) -> MMIL head (PROTOCOL.md §5).

    Parameter count: 4,569,675. The AVVP release also carried unused modules
    (two LayerNorms and three encoders); they are not built here, see nets/convert.py.
    """

    def __init__(self, audio_dim: int = AUDIO_DIM, frame_dim: int = FRAME_DIM,
                 snippet_dim: int = SNIPPET_DIM, d_model: int = 512,
                 num_classes: int = NUM_CLASSES, dropout: float = 0.1):
        super().__init__()
        self.projection = InputProjection(audio_dim, frame_dim, snippet_dim, d_model)
        self.han = HANLayer(d_model, num_heads=1, dim_feedforward=d_model, dropout=dropout)
        self.head = MMILHead(d_model, num_classes)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor,
                snippets: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio (B, 10, Da), frames (B, 80, Df), snippets (B, 10, Ds) ->
        {"global_prob", "audio_prob", "visual_prob": (B, C), "frame_prob": (B, 10, 2, C)}."""
        return self.forward_with_embeddings(audio, frames, snippets)[0]

    def forward_with_embeddings(self, audio: torch.Tensor, frames: torch.Tensor, snippets: torch.Tensor):
        """(outputs as `forward`, audio sequence after the HAN layer (B, 10, d), fused visual
        sequence before it (B, 10, d)): what MA's segment contrastive term compares (PROTOCOL.md §12)."""
        audio, visual = self.projection(audio, frames, snippets)
        visual_projected = visual
        audio, visual = self.han.encode_pair(audio, visual)
        return self.head(torch.stack([audio, visual], dim=2)), audio, visual_projected
