"""Optimizers and learning-rate schedules of a training run (PROTOCOL.md §7 as published; §13 for
the options VALOR's recipe needs, under VALOR's flag names)."""
import math

import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}   # --optimizer
SCHEDULERS = ("steplr", "warm_up_cos_anneal")                          # --scheduler


def build_optimizer(kind, parameters, lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, fused=False):
    """Adam (as published: torch's defaults, no weight decay) or AdamW with the given settings."""
    return OPTIMIZERS[kind](parameters, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, fused=fused)


def warm_up_cosine_factor(epoch, warm_up_epochs, total_epochs, min_ratio):
    """The learning rate of `epoch` (1-based) as a fraction of the peak, as VALOR's release sets it
    at the start of each epoch: epoch / warm_up_epochs during the warm-up, then a cosine from 1 at
    epoch warm_up_epochs down to `min_ratio` (lr_min / lr) at the last epoch."""
    if epoch < warm_up_epochs:
        return epoch / warm_up_epochs
    progress = (epoch - warm_up_epochs) / (total_epochs - warm_up_epochs)
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(progress * math.pi))


def build_scheduler(kind, optimizer, step_size, gamma, warm_up_epochs, total_epochs, min_ratio):
    """The per-epoch schedule of one optimizer; `scheduler.step()` runs after every epoch.

    steplr: lr x gamma every step_size epochs (as published). warm_up_cos_anneal: VALOR's warm-up
    and cosine (`warm_up_cosine_factor`); a LambdaLR after k finished epochs gives epoch k + 1
    its factor, so every net keeps its own peak (e.g. the MGNs' own learning rates).
    """
    if kind == "steplr":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda finished: warm_up_cosine_factor(finished + 1, warm_up_epochs, total_epochs, min_ratio))
