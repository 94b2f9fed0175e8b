"""The training and evaluation loops, shared by every mode (train/retrain, val/test, estimate_labels).

Functions here return tensors or dicts of numbers; printing, tables and checkpoint decisions
happen in the caller (modes/). What differs between models comes in as a recipe's criterion.
"""
import contextlib
import sys

import torch
from tqdm import tqdm

from engine.label_refinement import choose_partners, flags_from_predictions
from utils.errors import NonFiniteOutputs, TrainingDiverged
from utils.eval_metrics import score_outputs

EVAL_BATCH_SIZE = 256
# what torch's binary_cross_entropy says (CPU) when a probability is NaN: the run has diverged
BCE_RANGE_MESSAGE = "all elements of input should be between 0 and 1"
DIVERGED_HINT = "lower --lr (or check the features for extreme values) and train again"


def _show_progress(progress):
    return sys.stderr.isatty() if progress is None else progress


def _autocast(device, dtype):
    """Autocast to `dtype` on `device`, or nothing when dtype is None (float32, as published)."""
    if dtype is None:
        return contextlib.nullcontext()
    # the autocast weight cache must be off inside a CUDA graph capture (engine/cuda_graph.py)
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=not capturing)


class TrainStep:
    """One optimisation step of every net on one batch: batch dict -> loss tensors by name.

    module: a recipe's TrainingModule (recipes/base.py: the parsing network and its training-only
    nets); criterion: the recipe's criterion. The step reads `outputs = module(batch); losses =
    criterion(outputs, batch)`. The forward pass runs under autocast when `autocast_dtype` is set
    (e.g. torch.bfloat16; None keeps the published float32) while the losses stay float32.
    grad_norm: clip the gradient norm of each net to it before its step (0: never, as published).
    The losses come back on the device, not synchronised with the host, so that the step can be
    captured in a CUDA graph (engine/cuda_graph.py).
    """

    def __init__(self, module, criterion, optimizers, autocast_dtype=None, grad_norm=0.0):
        self.module, self.criterion = module, criterion
        self.optimizers = list(optimizers)
        self.autocast_dtype = autocast_dtype
        self.grad_norm = grad_norm

    @property
    def nets(self):
        """{name: net} of the module, "model" first."""
        return self.module.nets

    def train(self):
        self.module.train()

    def __call__(self, batch):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        with _autocast(batch["labels"].device, self.autocast_dtype):
            outputs = self.module(batch)
        if self.autocast_dtype is not None:
            outputs = {key: value.float() for key, value in outputs.items()}
        losses = self.criterion(outputs, batch)
        sum(losses.values()).backward()
        if self.grad_norm > 0:
            for net in self.nets.values():
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_norm)
        for optimizer in self.optimizers:
            optimizer.step()
        return losses


def train_one_epoch(step, data, batch_size, generator, graphed_step=None, on_step=None, progress=None,
                    desc="train"):
    """One pass over `data` (a TensorSplit) in shuffled batches; returns the mean of each loss term.

    step: a TrainStep. When the split carries "audio_flags"/"visual_flags" (label refinement,
    PROTOCOL.md §10) the batches carry them too and the criterion refines the targets.
    graphed_step: optional engine.cuda_graph.GraphedTrainStep running this same step as one CUDA
    graph; it takes the batches it accepts (the full ones), the others run eagerly.
    on_step: optional callback(step, num_steps, losses) after every step (losses still on the
    device: reading them forces a sync, so a caller should do that only now and then).
    Divergence raises TrainingDiverged naming `desc` and the step, before the caller saves anything
    of the epoch: a NaN probability (CPU: torch's BCE refuses it at that step), a non-finite loss,
    or weights that are no longer finite after the epoch's last step (the loss is computed before
    each update, so the update that broke the weights can leave every loss of the epoch finite).
    """
    step.train()
    sums, num_batches, finite_losses = {}, 0, []
    batches = data.batch_indices(batch_size, generator)
    for number, index in enumerate(tqdm(batches, desc=desc, leave=False, disable=not _show_progress(progress)), 1):
        try:
            if graphed_step is not None and graphed_step.accepts(index):
                losses = graphed_step(index)
            else:
                losses = step(data.gather(index))
        except RuntimeError as error:
            if BCE_RANGE_MESSAGE not in str(error):
                raise
            raise TrainingDiverged(f"{desc}, step {number}/{len(batches)}: a predicted probability is NaN, "
                                   f"training diverged; {DIVERGED_HINT}") from None
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        # kept on the device: read once per epoch, so that finding the step costs no sync per step
        finite_losses.append(torch.stack([value.detach() for value in losses.values()]).isfinite().all())
        num_batches += 1
        if on_step is not None:
            on_step(number, len(batches), losses)
    check_finite_training(step.nets, finite_losses, desc)
    # one host sync per epoch, not per step
    return {name: float(total) / num_batches for name, total in sums.items()}


def nonfinite_nets(nets):
    """Names of the nets whose parameters hold inf or NaN (one host sync for all of them)."""
    names = list(nets)
    flags = torch.stack([torch.stack([p.detach().isfinite().all() for p in nets[name].parameters()]).all()
                         for name in names])
    return [name for name, finite in zip(names, flags.tolist()) if not finite]


def check_finite_training(nets, finite_losses, desc):
    """TrainingDiverged naming the first step whose loss was not finite, or, when every loss was,
    the last step, whose update left weights that are not (nets: {name: net} after the epoch)."""
    num_steps = len(finite_losses)
    finite = torch.stack(finite_losses).tolist() if finite_losses else []
    broken = nonfinite_nets(nets)
    if all(finite) and not broken:
        return
    if not all(finite):
        first = finite.index(False) + 1
        what = f"step {first}/{num_steps}: a loss is not finite"
    else:
        what = f"step {num_steps}/{num_steps}: its update left the weights of {', '.join(broken)} inf or NaN"
    raise TrainingDiverged(f"{desc}, {what}; training diverged; nothing of this epoch was saved; {DIVERGED_HINT}")


@torch.no_grad()
def predict(model, data, batch_size=EVAL_BATCH_SIZE, audio_source=None, visual_source=None,
            progress=None, desc="predict"):
    """Model outputs for every video of `data`, concatenated: dict of (N, 25) and (N, 10, 2, 25).

    audio_source / visual_source: optional (N,) index tensors; row i then uses the audio (or the
    frame and snippet) features of video audio_source[i]: the modality swaps of PROTOCOL.md §10.
    Outputs that are not finite raise NonFiniteOutputs naming `desc`: a NaN compares False with every
    threshold, so it would be scored as a model that predicts nothing.
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
    outputs = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    check_finite_outputs(outputs, data.filenames, desc)
    return outputs


def check_finite_outputs(outputs, filenames, desc):
    """NonFiniteOutputs naming the outputs and the videos where the model gave inf or NaN."""
    bad = {key: (~value.isfinite()).flatten(1).any(dim=1) for key, value in outputs.items()}
    rows = torch.stack(list(bad.values())).any(dim=0)
    if not bool(rows.any()):
        return
    videos = [filenames[i] for i in rows.nonzero().flatten().tolist()]
    keys = [key for key, flags in bad.items() if bool(flags.any())]
    raise NonFiniteOutputs(f"{desc}: the model gives inf or NaN ({', '.join(keys)}) for {len(videos)} of "
                           f"{len(filenames)} videos (e.g. {videos[0]}); its weights are broken (a diverged "
                           "training?) or the features hold extreme values; nothing was scored")


def evaluate(model, data, gt_audio, gt_visual, gating="modality", batch_size=EVAL_BATCH_SIZE,
             progress=None):
    """predict + score_outputs: the metrics dict of one model on one split."""
    outputs = predict(model, data, batch_size, progress=progress, desc=f"eval {data.name}")
    return score_outputs(outputs, gt_audio, gt_visual, gating)


def estimate_label_flags(model, data, labels, seed, batch_size=EVAL_BATCH_SIZE, progress=None):
    """The three batched passes of modality swapping over a TensorSplit (original, visual swapped,
    audio swapped with a seeded partner per video) and the flags they give; PROTOCOL.md §10.

    Returns (audio_flags, visual_flags, partners): (N, 25) bool, (N,) partner index.
    """
    partners = choose_partners(labels, seed)
    partner_index = torch.from_numpy(partners)

    def probs(**swap):
        outputs = predict(model, data, batch_size, progress=progress, **swap)
        return {key: outputs[key].float().cpu().numpy() for key in ("audio_prob", "visual_prob")}

    original = probs(desc="original")
    visual_swapped = probs(visual_source=partner_index, desc="visual swapped")
    audio_swapped = probs(audio_source=partner_index, desc="audio swapped")
    audio_flags, visual_flags = flags_from_predictions(labels, original, visual_swapped, audio_swapped)
    return audio_flags, visual_flags, partners
