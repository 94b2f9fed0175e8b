"""HAN baseline of Tian et al. (ECCV 2020), for comparison; PROTOCOL.md §11. With more heads,
layers and another update order it is also VALOR's network (NeurIPS 2023; PROTOCOL.md §13)."""
import copy

import torch
from torch import nn

from avvp_data.llp import NUM_CLASSES
from nets.han_layer import HANLayer
from nets.mmil_head import MMILHead
from nets.projections import AUDIO_DIM, FRAME_DIM, SNIPPET_DIM, InputProjection

HAN_UPDATES = ("parallel", "sequential")


class HANBaseline(nn.Module):
    """Projections (PROTOCOL.md §3) -> HAN layers at T=10 (PROTOCOL.md §4) -> MMIL head (PROTOCOL.md §5).

    As published: one layer, one head, feed-forward width d_model; parameter count 4,569,675. The
    AVVP release also carried unused modules (two LayerNorms and three encoders); they are not
    built here, see nets/convert.py.
    num_layers > 1 stacks copies of one initialised layer (as VALOR's release builds them), each
    reading the previous one's outputs. update: "parallel" (HAN release) computes the new visual
    sequence from the layer's audio input; "sequential" (VALOR release) from the audio output the
    layer has just computed (PROTOCOL.md §13).
    """

    def __init__(self, audio_dim: int = AUDIO_DIM, frame_dim: int = FRAME_DIM,
                 snippet_dim: int = SNIPPET_DIM, d_model: int = 512,
                 num_classes: int = NUM_CLASSES, dropout: float = 0.1, num_heads: int = 1,
                 dim_feedforward: int | None = None, num_layers: int = 1, update: str = "parallel"):
        super().__init__()
        if update not in HAN_UPDATES:
            raise ValueError(f"update must be one of {HAN_UPDATES}, got {update!r}")
        self.update = update
        self.projection = InputProjection(audio_dim, frame_dim, snippet_dim, d_model)
        self.han = HANLayer(d_model, num_heads=num_heads, dim_feedforward=dim_feedforward or d_model,
                            dropout=dropout)
        # the first layer keeps its published name, so that one-layer checkpoints load as before
        if num_layers > 1:
            self.more_han_layers = nn.ModuleList(copy.deepcopy(self.han) for _ in range(num_layers - 1))
        self.head = MMILHead(d_model, num_classes)

    def han_layers(self):
        return [self.han, *getattr(self, "more_han_layers", ())]

    def encode(self, audio: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) audio and visual sequences through every HAN layer in the `update` order."""
        for layer in self.han_layers():
            if self.update == "parallel":
                audio, visual = layer.encode_pair(audio, visual, mask)
            else:
                audio = layer(audio, visual, mask=mask)[0]
                visual = layer(visual, audio, mask=mask)[0]
        return audio, visual

    def forward(self, audio: torch.Tensor, frames: torch.Tensor,
                snippets: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """audio (B, 10, Da), frames (B, 80, Df), snippets (B, 10, Ds) ->
        {"global_prob", "audio_prob", "visual_prob": (B, C), "frame_prob": (B, 10, 2, C)}.
        Any number of segments T works in place of 10; mask: optional (B, T) bool, True on each
        video's own segments of a padded batch."""
        return self.forward_with_embeddings(audio, frames, snippets, mask)[0]

    def forward_with_embeddings(self, audio: torch.Tensor, frames: torch.Tensor, snippets: torch.Tensor,
                                mask: torch.Tensor | None = None):
        """(outputs as `forward`, audio sequence after the HAN layer (B, 10, d), fused visual
        sequence before it (B, 10, d)): what MA's segment contrastive term compares (PROTOCOL.md §12)."""
        audio, visual = self.projection(audio, frames, snippets)
        visual_projected = visual
        audio, visual = self.encode(audio, visual, mask)
        return self.head(torch.stack([audio, visual], dim=2), mask), audio, visual_projected
