"""Attentive multiple-instance pooling heads (PROTOCOL.md §5 and §6)."""
import torch
from torch import nn

from avvp_data.llp import NUM_CLASSES


class MMILHead(nn.Module):
    """Multimodal multiple-instance learning head; PROTOCOL.md §5.

    Input F (B, T, 2, d), modality index 0 audio, 1 visual:
        p   = sigmoid(fc_prob(F))                segment probabilities
        wt  = softmax over time of fc_frame_att(F)
        wm  = softmax over modality of fc_av_att(F)
        global = sum over time and modality of wt * p * wm
        audio  = sum over time of (wt * p)[:, :, 0];  visual likewise with 1.
    p, audio and visual lie in (0, 1). global lies in (0, 2): its time weights sum to one per
    modality and its modality weights to one per segment, so together they can reach 2 (the release
    clamps it inside the loss only; reporting/decision_rules.OUTPUT_RANGES).
    """

    def __init__(self, d_model: int = 512, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.fc_prob = nn.Linear(d_model, num_classes)
        self.fc_frame_att = nn.Linear(d_model, num_classes)
        self.fc_av_att = nn.Linear(d_model, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """features (B, T, 2, d) -> {"global_prob", "audio_prob", "visual_prob": (B, C),
        "frame_prob": (B, T, 2, C)}. mask: optional (B, T) bool, True on a video's own segments,
        False on padding, which then gets no weight in the pooling over time."""
        frame_prob = torch.sigmoid(self.fc_prob(features))
        time_logits = self.fc_frame_att(features)
        if mask is not None:
            time_logits = time_logits.masked_fill(~mask[:, :, None, None], float("-inf"))
        time_weights = torch.softmax(time_logits, dim=1)
        modality_weights = torch.softmax(self.fc_av_att(features), dim=2)
        temporal_prob = time_weights * frame_prob
        return {
            "global_prob": (temporal_prob * modality_weights).sum(dim=(1, 2)),
            "audio_prob": temporal_prob[:, :, 0].sum(dim=1),
            "visual_prob": temporal_prob[:, :, 1].sum(dim=1),
            "frame_prob": frame_prob,
        }


class MILHead(nn.Module):
    """Single-modality attentive MIL head of the MGNs; PROTOCOL.md §6.

        p = sigmoid(fc_prob(x)),  w = softmax over time of fc_frame_att(x),
        prob = sum over time of w * p.
    """

    def __init__(self, d_model: int = 512, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.fc_prob = nn.Linear(d_model, num_classes)
        self.fc_frame_att = nn.Linear(d_model, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, d) -> video probabilities (B, C), segment probabilities (B, T, C);
        mask: optional (B, T) bool, False on padding, which gets no weight over time."""
        frame_prob = torch.sigmoid(self.fc_prob(features))
        time_logits = self.fc_frame_att(features)
        if mask is not None:
            time_logits = time_logits.masked_fill(~mask[:, :, None], float("-inf"))
        time_weights = torch.softmax(time_logits, dim=1)
        return (time_weights * frame_prob).sum(dim=1), frame_prob
