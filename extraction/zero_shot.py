"""Zero-shot segment pseudo-labels as VALOR made them, for LLP or any class list (PROTOCOL.md §13, §15).

VALOR (Franklin905/VALOR, utils/clip_preprocess.py and clap_preprocess.py) scores every 1-s
segment of a video against one text prompt per class, with CLIP for the visual side (10 frames)
and CLAP for the audio side (10 windows of about 1 s), and keeps a (segment, class) when

    logit > threshold[class]       (strict, one fixed threshold per class)

and the class is one of the video's weak labels; every other class of the video is 0. The result,
(10, C) int64 in {0, 1}, is what `segment_pseudo_labels/<id>.npy` holds. This module is that rule on
given logits, plus what a dataset without VALOR's hand-set thresholds needs: prompts made from its
class names, thresholds tuned on a labelled validation split, and the quality of labels against
dense truth. It needs numpy only; the logits come from extraction/clip_text.py and clap_text.py.

    prompts = class_prompts(classes, "clip")
    labels = segment_labels(logits, valor_thresholds(classes, "clip"), weak_labels)
"""
import numpy as np

from avvp_data.llp import CLASSES
from utils.errors import UserError

MODALITIES = ("clip", "clap")     # the visual prompts and scores, the audio ones
MODALITY_SIDE = {"clip": "visual", "clap": "audio"}

# VALOR's prompts for LLP's classes, in the order of avvp_data.llp.CLASSES, spelt as in its
# scripts (two typos included: they are the text CLIP was given, and its thresholds fit them)
VALOR_CLIP_PROMPTS = (
    "A photo of people talking.", "A photo of a car.", "A photo of people cheering.", "A photo of a dog.",
    "A photo of a cat.", "A photo of frying food.", "A photo of people playing basketball.",
    "A photo of a fire alarm.", "A photo of a chainsaw.", "A photo of a cello.", "A photo of a banjo.",
    "A photo of people singing.", "A photo of a chicken or a rooster.", "A photo of a violin.",
    "A photo of a vaccum cleaner.", "A photo of a laughing baby.", "A photo of an accordion.",
    "A photo of a lawnmower.", "A photo of a motorcycle.", "A photo of a helicopter.",
    "A photo of a acoustic guiter.", "A photo of a ringing telephone.", "A photo of a crying baby.",
    "A photo of a blender.", "A photo of hands clapping.",
)
# the AudioSet-style names VALOR wrote for CLAP; its prompt is CLAP_PREFIX + name.lower()
VALOR_CLAP_NAMES = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying (food)", "Basketball bounce", "Fire alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken, rooster", "Violin fiddle", "Vacuum cleaner", "Baby laughter",
    "Accordion", "Lawn mower", "Motorcycle", "Helicopter", "Acoustic guitar", "Telephone bell ringing",
    "Baby cry, infant cry", "Blender", "Clapping",
)
CLIP_TEMPLATE = "A photo of {}."
CLAP_PREFIX = "This is a sound of "

# VALOR's per-class thresholds on its logits (CLIP: 100 x cosine; CLAP: logit_scale_a.exp() x cosine)
VALOR_THRESHOLDS = {
    "clip": (20, 15, 18, 14, 15, 18, 18, 15, 15, 15, 15, 18, 15, 15, 15, 15, 15, 15, 15, 16,
             14, 15, 15, 15, 18),
    "clap": (0, 0, 1, 4, 6, -2, 4, 4, 2, 2, 2, 1, 2, 3, 0, 2, 2, 2, 0, 2, -1, 2, 3, 3, 0),
}


def _check_modality(modality):
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r}: one of {', '.join(MODALITIES)}")


def is_llp(classes):
    return tuple(classes) == CLASSES


def class_prompts(classes, modality):
    """One text per class: VALOR's for LLP's 25 classes in LLP's order; for any other list
    "A photo of <name>." (CLIP) or "This is a sound of <name>" (CLAP, lower case), with the
    underscores of the label files' names read as spaces."""
    _check_modality(modality)
    classes = tuple(classes)
    if is_llp(classes):
        return list(VALOR_CLIP_PROMPTS) if modality == "clip" else [CLAP_PREFIX + name.lower()
                                                                    for name in VALOR_CLAP_NAMES]
    spoken = [name.replace("_", " ") for name in classes]
    if modality == "clip":
        return [CLIP_TEMPLATE.format(name) for name in spoken]
    return [CLAP_PREFIX + name.lower() for name in spoken]


def valor_thresholds(classes, modality):
    """(C,) float64 of VALOR's thresholds; they exist for LLP's 25 classes only."""
    _check_modality(modality)
    if not is_llp(classes):
        raise UserError(f"VALOR's {modality.upper()} thresholds are set for LLP's {len(CLASSES)} classes only; "
                        "for other classes tune them on a labelled validation split (--thresholds tuned)")
    return np.asarray(VALOR_THRESHOLDS[modality], dtype=np.float64)


def segment_labels(logits, thresholds, weak_labels):
    """(..., T, C) int64 in {0, 1}: logits > thresholds (strict), and only where the video's weak
    labels (..., C) hold the class. logits (..., T, C); thresholds (C,)."""
    logits = np.asarray(logits)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    weak = np.asarray(weak_labels) > 0
    if logits.ndim < 2 or thresholds.shape != logits.shape[-1:] or weak.shape != logits.shape[:-2] + logits.shape[-1:]:
        raise ValueError(f"logits {logits.shape} (..., T, C), thresholds {thresholds.shape} (C,) and weak labels "
                         f"{weak.shape} (..., C) do not fit")
    return ((logits > thresholds) & weak[..., None, :]).astype(np.int64)


def _best_threshold(values, truth):
    """(threshold, f1) maximising F1 of `values > threshold` against `truth` (1-D) over the
    candidates: each observed value (keeps what lies above it) and the float just below the
    smallest (keeps all). Ties go to the highest threshold (fewest labels)."""
    order = np.argsort(-values, kind="stable")
    values, truth = values[order], truth[order].astype(np.int64)
    # predictions above a threshold equal to distinct value u_k = the entries before u_k's first index
    distinct, first = np.unique(-values, return_index=True)        # descending values, first positions
    distinct = -distinct
    positives = truth.sum()
    true_pos = np.concatenate([[0], np.cumsum(truth)])              # true positives of the first n entries
    kept = np.concatenate([first, [len(values)]])                   # n kept for u_0 .. u_last, then all
    candidates = np.concatenate([distinct, [np.nextafter(values[-1], -np.inf)]])
    tp = true_pos[kept]
    f1 = np.where(kept + positives > 0, 2 * tp / np.maximum(kept + positives, 1), 0.0)
    best = int(np.flatnonzero(f1 == f1.max())[0])                   # candidates descend: the first is highest
    return float(candidates[best]), float(f1[best])


def tune_thresholds(logits, truth, weak_labels, fallback=None):
    """(C,) float64 per-class thresholds chosen on a labelled split: for class c, over the
    segments of the videos whose weak labels hold c (the only ones the rule can label), the
    candidate maximising the F1 of `logit > threshold` against the dense truth (_best_threshold).

    logits (N, T, C), truth (N, T, C) in {0, 1}, weak_labels (N, C). Give it validation data only:
    thresholds tuned on the split they are then scored on report an optimistic quality. A class no
    video of the split carries takes fallback[c] (e.g. VALOR's for LLP); without a fallback,
    UserError names such classes."""
    logits = np.asarray(logits, dtype=np.float64)
    truth = np.asarray(truth)
    weak = np.asarray(weak_labels) > 0
    if logits.ndim != 3 or truth.shape != logits.shape or weak.shape != (logits.shape[0], logits.shape[2]):
        raise ValueError(f"logits {logits.shape} (N, T, C), truth {truth.shape} (N, T, C) and weak labels "
                         f"{weak.shape} (N, C) do not fit")
    thresholds = np.empty(logits.shape[2])
    unseen = []
    for c in range(logits.shape[2]):
        videos = weak[:, c]
        if not videos.any():
            unseen.append(c)
            continue
        thresholds[c] = _best_threshold(logits[videos, :, c].ravel(), truth[videos, :, c].ravel())[0]
    if unseen:
        if fallback is None:
            raise UserError(f"no video of the tuning split has class(es) {unseen} among its weak labels, so no "
                            "threshold can be tuned for them; give fallback thresholds")
        thresholds[unseen] = np.asarray(fallback, dtype=np.float64)[unseen]
    return thresholds


def _scores(tp, fp, fn):
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1, "tp": int(tp), "fp": int(fp), "fn": int(fn)}


def label_quality(pred, truth):
    """Precision, recall and F1 of segment labels against dense truth, over all (video, segment,
    class) cells and per class (the last axis): {"precision", "recall", "f1", "tp", "fp", "fn",
    "per_class": [the same per class]}. A score without cells to count (no label and no truth)
    is None."""
    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    if pred.shape != truth.shape or pred.ndim < 1:
        raise ValueError(f"labels {pred.shape} and truth {truth.shape} differ in shape")
    axes = tuple(range(pred.ndim - 1))
    tp = (pred & truth).sum(axis=axes)
    fp = (pred & ~truth).sum(axis=axes)
    fn = (~pred & truth).sum(axis=axes)
    quality = _scores(tp.sum(), fp.sum(), fn.sum())
    quality["per_class"] = [_scores(*counts) for counts in zip(tp, fp, fn)]
    return quality
