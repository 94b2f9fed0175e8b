"""Modality-aware label refinement by modality swapping (Wu & Yang, CVPR 2021), as DHHN uses it; PROTOCOL.md §10.

engine.estimate_label_flags() judges, for each training video and labelled class, whether the audio or the
visual label is wrong, from predictions made by the functions here; avvp_data/refinement_flags.py
writes the flags files and reads them back for --mode retrain.
"""
import numpy as np

from avvp_data.llp import CLASSES
from avvp_data.refinement_flags import RefinementError

SWAP_THRESHOLD = 0.5     # PROTOCOL.md §10 step 4


def choose_partners(labels, seed):
    """(N,) index of a random partner per video whose label set is disjoint from its own; PROTOCOL.md §10 step 2.

    labels: (N, 25) 0/1. Uniform over the disjoint videos, driven by a seeded numpy Generator.
    """
    labels = np.asarray(labels) > 0
    rng = np.random.default_rng(seed)
    as_float = labels.astype(np.float32)
    partners = np.empty(len(labels), dtype=np.int64)
    for start in range(0, len(labels), 1024):
        # overlap of 1,024 videos with all videos at a time keeps memory at N*1024 booleans
        disjoint = (as_float[start:start + 1024] @ as_float.T) == 0
        for offset, row in enumerate(disjoint):
            candidates = np.flatnonzero(row)
            if candidates.size == 0:
                raise RefinementError(f"training video {start + offset} shares a class with every other video: "
                                      "no partner for modality swapping")
            partners[start + offset] = candidates[rng.integers(candidates.size)]
    return partners


def _normalised_error(prob, labels):
    """err[c] / max(err) with err[c] = 1 - accuracy of (prob > 0.5) against the labels; PROTOCOL.md §10 step 3."""
    error = 1.0 - ((prob > SWAP_THRESHOLD) == (labels > 0)).mean(axis=0)
    return error / error.max() if error.max() > 0 else np.full_like(error, np.nan)


def flags_from_predictions(labels, original, visual_swapped, audio_swapped):
    """(audio_flags, visual_flags), (N, 25) bool each; PROTOCOL.md §10 steps 3-4.

    Each prediction argument is a dict with "audio_prob" and "visual_prob", (N, 25) numpy.
    A ratio with a zero normaliser is inf or NaN and so never flags (the class was never wrong).
    """
    labels = np.asarray(labels) > 0
    norm_audio = _normalised_error(original["audio_prob"], labels)
    norm_visual = _normalised_error(original["visual_prob"], labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        # with foreign audio the class vanishes from both predictions -> it was heard, not seen
        visual_flags = labels & (audio_swapped["visual_prob"] / norm_visual < SWAP_THRESHOLD) \
            & (audio_swapped["audio_prob"] / norm_visual < SWAP_THRESHOLD)
        audio_flags = labels & (visual_swapped["audio_prob"] / norm_audio < SWAP_THRESHOLD) \
            & (visual_swapped["visual_prob"] / norm_audio < SWAP_THRESHOLD)
    return audio_flags, visual_flags


def restrict_to_labels(audio_flags, visual_flags, labels):
    """Flags on labelled classes only, plus how many others were dropped; PROTOCOL.md §10 step 4.

    A flag says a label is wrong, so a flag on a class the video is not labelled with means
    nothing; kept, it would turn P_v's smoothed 0.05 into 0 (the release only zeroes labelled cells).
    """
    labelled = np.asarray(labels) > 0
    dropped = int((audio_flags & ~labelled).sum() + (visual_flags & ~labelled).sum())
    return audio_flags & labelled, visual_flags & labelled, dropped


def summary_table(audio_flags, visual_flags, labels, classes=CLASSES):
    """Printable per-class counts: labelled videos, flagged audio labels, flagged visual labels."""
    labelled = (np.asarray(labels) > 0).sum(axis=0)
    lines = [f"{'class':<24}{'labelled':>9}{'audio':>7}{'visual':>7}"]
    for column, name in enumerate(classes):
        lines.append(f"{name:<24}{labelled[column]:>9}{audio_flags[:, column].sum():>7}"
                     f"{visual_flags[:, column].sum():>7}")
    lines.append(f"{'total':<24}{labelled.sum():>9}{audio_flags.sum():>7}{visual_flags.sum():>7}")
    return "\n".join(lines)


def flag_quality(audio_flags, visual_flags, labels, planted_audio, planted_visual):
    """Precision / recall of flags against the modality truth of a synthetic LLP (issue: flag quality).

    labels (N, 25) weak labels; planted_* (N, 25, 10) segment truth. A labelled class's audio
    label is really wrong when the class never sounds, its visual label when it is never seen.
    Random flagging of the same number of labelled pairs would reach precision = base rate and
    recall = flagged / labelled; both are returned beside the measured values.
    """
    labelled = np.asarray(labels) > 0
    quality = {}
    for modality, flags, planted in (("audio", audio_flags, planted_audio), ("visual", visual_flags, planted_visual)):
        wrong = labelled & ~(np.asarray(planted) > 0).any(axis=2)
        flagged = np.asarray(flags) & labelled
        hits = int((flagged & wrong).sum())
        quality[modality] = {
            "labelled": int(labelled.sum()), "really_wrong": int(wrong.sum()), "flagged": int(flagged.sum()),
            "correct_flags": hits,
            "precision": hits / flagged.sum() if flagged.sum() else float("nan"),
            "recall": hits / wrong.sum() if wrong.sum() else float("nan"),
            "random_precision": wrong.sum() / labelled.sum(),
            "random_recall": flagged.sum() / labelled.sum(),
        }
    return quality
