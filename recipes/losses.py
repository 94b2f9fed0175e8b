"""Targets and losses of DHHN training (PROTOCOL.md §7, §10) and of the HAN baseline (PROTOCOL.md §11).

Every loss comes back as a named dict so each term can be logged and switched off by name.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PROB_EPS = 1e-7          # PROTOCOL.md §7: clamp every probability to [1e-7, 1-1e-7] before BCE
VISUAL_SMOOTHING = 0.1   # PROTOCOL.md §7: P_v = 0.9*y + 0.05
CONTRAST_TEMPERATURE = 0.2   # PROTOCOL.md §12 (MA)
CONTRAST_SMOOTHING = 0.1     # PROTOCOL.md §12 (MA): target 0.9, each other segment 0.1 / (T - 1)


@dataclass
class Targets:
    """(B, 25) training targets. `global_` is what the video-level prediction is trained on."""
    audio: torch.Tensor
    visual: torch.Tensor
    global_: torch.Tensor


def modality_targets(labels, audio_labels, visual_labels):
    """Targets of a dataset whose training files give weak labels per modality (LFAV): the audio and
    visual predictions learn their own modality's labels, unsmoothed, and the global one the
    video's, as the LFAV release trains with --real_av_labels (PROTOCOL.md §16). All (B, C)."""
    return Targets(audio=audio_labels, visual=visual_labels, global_=labels)


def make_targets(labels, audio_flags: torch.Tensor | None = None,
                 visual_flags: torch.Tensor | None = None, smoothing=VISUAL_SMOOTHING):
    """labels: (B, 25) weak multi-hot; *_flags: (B, 25) bool, labels judged wrong (PROTOCOL.md §10).

    Without flags: P_a = y, P_v = (1-s)*y + s/2, global = y.
    With flags: P_a[c] = 0 and P_v[c] = 0 where flagged (smoothing elsewhere unchanged) and,
    as published, the global target is the audio-refined label (the original code aliased it to P_a).
    """
    audio = labels
    visual = labels * (1.0 - smoothing) + smoothing / 2.0
    if audio_flags is None and visual_flags is None:
        return Targets(audio=audio, visual=visual, global_=labels)
    if audio_flags is not None:
        audio = audio.masked_fill(audio_flags, 0.0)
    if visual_flags is not None:
        visual = visual.masked_fill(visual_flags, 0.0)
    # as published: the global target is the audio-refined label (PROTOCOL.md §10)
    return Targets(audio=audio, visual=visual, global_=audio)


def clamp_prob(prob):
    return prob.clamp(PROB_EPS, 1.0 - PROB_EPS)


def parsing_losses(outputs, targets: Targets, audio_guide=None, visual_guide=None, use_rmse=True):
    """Losses of the parsing network (HCMN or HAN) on one batch; PROTOCOL.md §7.

    outputs: the model's dict ("global_prob", "audio_prob", "visual_prob", (B, 25) each).
    audio_guide / visual_guide: (B, 25) MGN predictions (guidance L_g; None = ablated, PROTOCOL.md §7 A-M/V-M).
    use_rmse: the -MSE(a_prob, v_prob) term (L_rmse); the HAN baseline trains without it.
    """
    audio_prob = clamp_prob(outputs["audio_prob"])
    visual_prob = clamp_prob(outputs["visual_prob"])
    global_prob = clamp_prob(outputs["global_prob"])
    losses = {
        "bce_audio": F.binary_cross_entropy(audio_prob, targets.audio),
        "bce_visual": F.binary_cross_entropy(visual_prob, targets.visual),
        "bce_global": F.binary_cross_entropy(global_prob, targets.global_),
    }
    # stop-gradient: the MGNs guide the HCMN but are trained only by their own loss
    if audio_guide is not None:
        losses["guide_audio"] = F.mse_loss(audio_prob, clamp_prob(audio_guide).detach())
    if visual_guide is not None:
        losses["guide_visual"] = F.mse_loss(visual_prob, clamp_prob(visual_guide).detach())
    if use_rmse:
        # pushes the audio and visual predictions apart: modality-specific evidence (PROTOCOL.md §7)
        losses["rmse"] = -F.mse_loss(audio_prob, visual_prob)
    return losses


def mgn_losses(audio_mgn_prob, visual_mgn_prob, audio_target, visual_target):
    """Losses of the modality-wise guiding networks; PROTOCOL.md §7 (targets y) and §10 (P_a, P_v).

    Either MGN may be None (ablated); the -MSE term needs both. It belongs to the MGN objective
    itself, so the L_rmse ablation switch (a term of the HCMN loss) leaves it on.
    """
    losses = {}
    if audio_mgn_prob is not None:
        audio_mgn_prob = clamp_prob(audio_mgn_prob)
        losses["mgn_bce_audio"] = F.binary_cross_entropy(audio_mgn_prob, audio_target)
    if visual_mgn_prob is not None:
        visual_mgn_prob = clamp_prob(visual_mgn_prob)
        losses["mgn_bce_visual"] = F.binary_cross_entropy(visual_mgn_prob, visual_target)
    if audio_mgn_prob is not None and visual_mgn_prob is not None:
        losses["mgn_rmse"] = -F.mse_loss(audio_mgn_prob, visual_mgn_prob)
    return losses


def segment_pseudo_label_loss(segment_prob, pseudo_labels, mask=None):
    """BCE of (B, T, 25) segment probabilities (clamped as in PROTOCOL.md §7) against (B, T, 25)
    segment pseudo-labels in {0, 1}, the mean over every segment and class; PROTOCOL.md §13.
    mask: (B, T) bool, True on each video's own segments (padded batches, PROTOCOL.md §16): the mean
    is then over those segments only, so a video's loss does not depend on the batch's padding."""
    if mask is None:
        return F.binary_cross_entropy(clamp_prob(segment_prob), pseudo_labels)
    terms = F.binary_cross_entropy(clamp_prob(segment_prob), pseudo_labels, reduction="none")
    weights = mask[:, :, None].to(terms.dtype)
    return (terms * weights).sum() / (weights.sum() * terms.shape[-1])


def segment_contrast_loss(audio_embed, visual_embed, temperature=CONTRAST_TEMPERATURE, smoothing=CONTRAST_SMOOTHING,
                          mask=None):
    """MA's segment contrastive term; PROTOCOL.md §12.

    audio_embed, visual_embed: (B, T, d). Each audio segment t is a T-way classification over the
    visual segments of its own video by cosine similarity / temperature, whose target is segment
    t, smoothed as MA does it: 1 - smoothing on t, smoothing / (T - 1) on every other segment
    (unlike torch's label_smoothing, which also gives the target a share). Returns the mean over
    the B*T rows of the cross-entropy.

    mask: (B, T) bool, True on each video's own T_i segments (padded batches, PROTOCOL.md §16): a
    row is then a T_i-way choice among its video's own segments, the smoothing spread over its
    T_i - 1 others, and the mean is over the rows of real segments only; per video, the loss of the
    video alone.
    """
    audio = F.normalize(audio_embed, p=2, dim=-1)
    visual = F.normalize(visual_embed, p=2, dim=-1)
    num_segments = audio.shape[1]
    logits = audio @ visual.transpose(1, 2) / temperature   # (B, T, T)
    if mask is None:
        target = torch.full((num_segments, num_segments), smoothing / (num_segments - 1), device=logits.device)
        target.fill_diagonal_(1.0 - smoothing)
        return -(target * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    columns = mask[:, None, :]
    log_probs = logits.masked_fill(~columns, float("-inf")).log_softmax(dim=-1).masked_fill(~columns, 0.0)
    others = (mask.sum(dim=1) - 1).clamp(min=1).to(logits.dtype)   # T_i - 1 per video
    eye = torch.eye(num_segments, dtype=torch.bool, device=logits.device)[None]
    target = torch.where(eye, torch.full_like(logits, 1.0 - smoothing),
                         (smoothing / others)[:, None, None].expand_as(logits))
    per_row = -(target * columns * log_probs).sum(dim=-1)   # (B, T)
    return per_row[mask].mean()
