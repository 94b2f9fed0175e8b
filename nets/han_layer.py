"""Hybrid attention (HAN) layer of Tian et al. (ECCV 2020); PROTOCOL.md §4."""
import torch
import torch.nn.functional as F
from torch import nn


class HANLayer(nn.Module):
    """One hybrid-attention layer: self-attention plus cross-modal attention.

    For a query sequence q and the other modality's sequence o, both (B, T, d):
        q1  = LN1(q + Drop(CrossAttn(q, o, o)) + Drop(SelfAttn(q, q, q)))
        out = LN2(q1 + Drop(W2 · Drop(ReLU(W1 · q1))))
    Attention is standard multi-head scaled dot-product attention with dropout on
    the attention weights. The same layer (same weights) serves both modalities:
    see `encode_pair`.
    """

    def __init__(self, d_model: int = 512, num_heads: int = 1, dim_feedforward: int = 512,
                 dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                               batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                                batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout_cross = nn.Dropout(dropout)
        self.dropout_self = nn.Dropout(dropout)
        self.dropout_ff_hidden = nn.Dropout(dropout)
        self.dropout_ff = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, other: torch.Tensor, need_weights: bool = False,
                mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """query (B, Tq, d), other (B, To, d) -> (out (B, Tq, d), weights).

        weights is None unless need_weights; then it is (cross (B, Tq, To),
        self (B, Tq, Tq)), averaged over heads. mask: optional (B, T) bool (Tq == To), True on
        a video's own segments: padded segments are attended by nothing.
        """
        padding = None if mask is None else ~mask
        cross, cross_weights = self.cross_attn(query, other, other, need_weights=need_weights,
                                               key_padding_mask=padding)
        self_out, self_weights = self.self_attn(query, query, query, need_weights=need_weights,
                                                key_padding_mask=padding)
        hidden = self.norm1(query + self.dropout_cross(cross) + self.dropout_self(self_out))
        feed_forward = self.linear2(self.dropout_ff_hidden(F.relu(self.linear1(hidden))))
        out = self.norm2(hidden + self.dropout_ff(feed_forward))
        return out, ((cross_weights, self_weights) if need_weights else None)

    def encode_pair(self, audio: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T, d), visual (B, T, d) -> new audio, new visual (B, T, d).

        Both directions read the ORIGINAL inputs: the visual output attends to the
        audio input, not to the freshly updated audio (PROTOCOL.md §4).
        """
        # One call on the two directions stacked along the batch: the weights are shared and
        # every operation is per row, so this equals the two published calls in half the kernels.
        both = None if mask is None else torch.cat([mask, mask])
        updated = self(torch.cat([audio, visual]), torch.cat([visual, audio]), mask=both)[0]
        return updated[:audio.shape[0]], updated[audio.shape[0]:]
