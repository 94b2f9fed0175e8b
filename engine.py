"""The training and evaluation loops, shared by every mode (train/retrain, val/test, estimate_labels).

Functions here return tensors or dicts of numbers; printing, tables and checkpoint decisions
happen in the caller (modes.py).
"""
import contextlib
import sys

import torch
from tqdm import tqdm

from utils.eval_metrics import evaluate_split
from utils.losses import make_targets, mgn_losses, parsing_losses

EVAL_BATCH_SIZE = 256
DECISION_THRESHOLD = 0.5   # SPEC §9
GATINGS = ("modality", "global")   # DHHN gates with a_prob / v_prob, HAN with the global prediction


def _show_progress(progress):
    return sys.stderr.isatty() if progress is None else progress


def _autocast(device, dtype):
    """Autocast to `dtype` on `device`, or nothing when dtype is None (float32, as published)."""
    if dtype is None:
        return contextlib.nullcontext()
    # the autocast weight cache must be off inside a CUDA graph capture (utils/cuda_graph.py)
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=not capturing)


def training_step(model, batch, optimizers, audio_mgn=None, visual_mgn=None, use_rmse=True,
                  autocast_dtype=None):
    """One optimisation step of the parsing network and the MGNs on one batch; SPEC §7, §10.

    batch: a TensorSplit.gather dict. Returns the loss tensors by name, not synchronised with the
    host, so that the step can be captured in a CUDA graph (utils/cuda_graph.py).
    autocast_dtype: None keeps float32 throughout (the published numerics); e.g. torch.bfloat16
    runs the forward passes under autocast, the losses stay float32.
    """
    labels = batch["labels"]
    targets = make_targets(labels, batch.get("audio_flags"), batch.get("visual_flags"))
    refined = "audio_flags" in batch or "visual_flags" in batch
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    with _autocast(labels.device, autocast_dtype):
        outputs = model(batch["audio"], batch["frames"], batch["snippets"])
        audio_guide = audio_mgn(batch["audio"]) if audio_mgn is not None else None
        visual_guide = visual_mgn(batch["frames"], batch["snippets"]) if visual_mgn is not None else None
    if autocast_dtype is not None:
        outputs = {key: value.float() for key, value in outputs.items()}
        audio_guide = audio_guide.float() if audio_guide is not None else None
        visual_guide = visual_guide.float() if visual_guide is not None else None
    losses = parsing_losses(outputs, targets, audio_guide, visual_guide, use_rmse=use_rmse)
    losses.update(mgn_losses(audio_guide, visual_guide,
                             targets.audio if refined else labels,
                             targets.visual if refined else labels))
    # the MGN terms see the HCMN only through detached guides, so one backward pass
    # gives exactly the gradients of the two separate published objectives
    sum(losses.values()).backward()
    for optimizer in optimizers:
        optimizer.step()
    return losses


def train_one_epoch(model, data, optimizers, batch_size, generator, audio_mgn=None, visual_mgn=None,
                    use_rmse=True, progress=None, desc="train", autocast_dtype=None, graphed_step=None,
                    on_step=None):
    """One pass over `data` (a TensorSplit) in shuffled batches; returns the mean of each loss term.

    When the split carries "audio_flags"/"visual_flags" (label refinement, SPEC §10) the targets
    are refined and the MGNs learn from P_a and P_v; otherwise they learn from the weak labels.
    graphed_step: optional utils.cuda_graph.GraphedTrainStep running this same step as one CUDA
    graph; it takes the batches it accepts (the full ones), the others run eagerly.
    on_step: optional callback(step, num_steps, losses) after every step (losses still on the
    device: reading them forces a sync, so a caller should do that only now and then).
    """
    nets = [net for net in (model, audio_mgn, visual_mgn) if net is not None]
    for net in nets:
        net.train()
    sums, num_batches = {}, 0
    batches = data.batch_indices(batch_size, generator)
    for step, index in enumerate(tqdm(batches, desc=desc, leave=False, disable=not _show_progress(progress)), 1):
        if graphed_step is not None and graphed_step.accepts(index):
            losses = graphed_step(index)
        else:
            losses = training_step(model, data.gather(index), optimizers, audio_mgn, visual_mgn,
                                   use_rmse, autocast_dtype)
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        num_batches += 1
        if on_step is not None:
            on_step(step, len(batches), losses)
    # one host sync per epoch, not per step
    return {name: float(total) / num_batches for name, total in sums.items()}


@torch.no_grad()
def predict(model, data, batch_size=EVAL_BATCH_SIZE, audio_source=None, visual_source=None,
            progress=None, desc="predict"):
    """Model outputs for every video of `data`, concatenated: dict of (N, 25) and (N, 10, 2, 25).

    audio_source / visual_source: optional (N,) index tensors; row i then uses the audio (or the
    frame and snippet) features of video audio_source[i] — the modality swaps of SPEC §10.
    """
    model.eval()
    audio_source = None if audio_source is None else audio_source.to(data.device)
    visual_source = None if visual_source is None else visual_source.to(data.device)
    chunks = []
    for index in tqdm(data.batch_indices(batch_size), desc=desc, leave=False,
                      disable=not _show_progress(progress)):
        audio_index = index if audio_source is None else audio_source[index]
        visual_index = index if visual_source is None else visual_source[index]
        audio = data.gather(audio_index)["audio"]
        visual = data.gather(visual_index)
        chunks.append(model(audio, visual["frames"], visual["snippets"]))
    return {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}


def gates(outputs, gating="modality"):
    """(audio gate, visual gate), the (N, 25) video-level probabilities that gate the segments:
    a_prob / v_prob for DHHN ("modality", SPEC §9), the global prediction for HAN ("global", §11)."""
    if gating not in GATINGS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")
    if gating == "modality":
        return outputs["audio_prob"], outputs["visual_prob"]
    return outputs["global_prob"], outputs["global_prob"]


def segment_predictions(outputs, gating="modality"):
    """Binary (N, 25, 10) audio and visual segment predictions; SPEC §9 (DHHN) and §11 (HAN).

    A segment is positive when its frame probability and its video-level gate (`gates`) both
    reach 0.5.
    """
    gate_audio, gate_visual = gates(outputs, gating)
    frame_prob = outputs["frame_prob"]                     # (N, 10, 2, 25)
    pred_audio = (frame_prob[:, :, 0, :] >= DECISION_THRESHOLD) & (gate_audio[:, None, :] >= DECISION_THRESHOLD)
    pred_visual = (frame_prob[:, :, 1, :] >= DECISION_THRESHOLD) & (gate_visual[:, None, :] >= DECISION_THRESHOLD)
    return pred_audio.transpose(1, 2), pred_visual.transpose(1, 2)


def score_outputs(outputs, gt_audio, gt_visual, gating="modality"):
    """SPEC §9 metrics of model outputs against (N, 25, 10) truth; see utils.eval_metrics."""
    return evaluate_split(*segment_predictions(outputs, gating), gt_audio, gt_visual)


def evaluate(model, data, gt_audio, gt_visual, gating="modality", batch_size=EVAL_BATCH_SIZE,
             progress=None):
    """predict + score_outputs: the metrics dict of one model on one split."""
    outputs = predict(model, data, batch_size, progress=progress, desc=f"eval {data.name}")
    return score_outputs(outputs, gt_audio, gt_visual, gating)
