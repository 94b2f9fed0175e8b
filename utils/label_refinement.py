"""Modality-aware label refinement by modality swapping (Wu & Yang, CVPR 2021), as DHHN uses it; PROTOCOL.md §10.

engine.estimate_label_flags() judges, for each training video and labelled class, whether the audio or the
visual label is wrong; the flags are saved in the published pickle format and as a readable CSV,
and read back (either format) by read_refined_labels() for --mode retrain.
"""
import collections
import csv
import io
import os
import pickle

import numpy as np
import torch

from utils.constants import CLASS_INDEX, CLASSES, MODALITIES, NUM_CLASSES
from utils.errors import UserError
from utils.io import atomic_write_bytes, atomic_write_text

SWAP_THRESHOLD = 0.5     # PROTOCOL.md §10 step 4
FLAG_COLUMNS = ("filename", "event_labels", "modality")
PICKLE_MAGIC = b"\x80"   # first byte of every pickle of protocol 2 or later (the published file, ours)


class RefinementError(UserError):
    """A flags file that cannot be used, or a split where no partner can be found; names the file/video."""


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


# ---------------------------------------------------------------- files

def to_published_lists(audio_flags, visual_flags):
    """The published pickle payload: [visual_lists, audio_lists], 25 lists of train-row indices each."""
    def lists(flags):
        return [np.flatnonzero(flags[:, c]).tolist() for c in range(NUM_CLASSES)]
    return [lists(visual_flags), lists(audio_flags)]


def write_flags(prefix, filenames, audio_flags, visual_flags):
    """Write <prefix>.pkl (published format, plain ints) and <prefix>.csv (filename, event_labels, modality)."""
    atomic_write_bytes(pickle.dumps(to_published_lists(audio_flags, visual_flags)), prefix + ".pkl")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(FLAG_COLUMNS)
    for modality, flags in (("audio", audio_flags), ("visual", visual_flags)):
        for row, column in zip(*np.nonzero(flags)):
            writer.writerow([filenames[row], CLASSES[column], modality])
    atomic_write_text(buffer.getvalue(), prefix + ".csv")
    return prefix + ".pkl", prefix + ".csv"


def _safe_bytes_to_storage(data):
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


class _FlagsUnpickler(pickle.Unpickler):
    """Loads the published pickle (lists of ints or 0-d tensors) and nothing that could run code."""
    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _safe_bytes_to_storage,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _flags_from_pickle(path, num_videos):
    try:
        with open(path, "rb") as handle:
            payload = _FlagsUnpickler(handle).load()
    except Exception as error:  # any unpickling failure means the same thing to the user
        raise RefinementError(f"{path}: not a label-refinement pickle ({error})") from None
    if not (isinstance(payload, (list, tuple)) and len(payload) == 2
            and all(isinstance(lists, (list, tuple)) and len(lists) == NUM_CLASSES for lists in payload)):
        raise RefinementError(f"{path}: expected [visual_lists, audio_lists] with {NUM_CLASSES} lists each")
    flags = {}
    for modality, lists in zip(("visual", "audio"), payload):
        mask = np.zeros((num_videos, NUM_CLASSES), dtype=bool)
        for column, indices in enumerate(lists):
            for index in indices:
                try:
                    row = int(index)
                except (TypeError, ValueError):
                    raise RefinementError(f"{path}: {modality} list of {CLASSES[column]} holds a non-integer {index!r}") from None
                if not 0 <= row < num_videos:
                    raise RefinementError(f"{path}: {modality} index {row} of {CLASSES[column]} is outside "
                                          f"the {num_videos} training videos")
                mask[row, column] = True
        flags[modality] = mask
    return flags["audio"], flags["visual"]


def _flags_text(path):
    """The text of a .csv flags file; RefinementError when it cannot be one (binary, not UTF-8, empty)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise RefinementError(f"{path}: cannot be read ({error.strerror or error})") from None
    if data.startswith(PICKLE_MAGIC):
        raise RefinementError(f"{path}: not a tab-separated text file (it looks like a pickle: use a .pkl name)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise RefinementError(f"{path}: not a tab-separated text file (not UTF-8 text: line {line}, byte "
                              f"{error.start} is {data[error.start:error.start + 1]!r})") from None
    if "\x00" in text:
        raise RefinementError(f"{path}: not a tab-separated text file (binary: it holds NUL bytes)")
    if not text.strip():
        raise RefinementError(f"{path}: empty file: line 1 should be the header row "
                              f"{', '.join(FLAG_COLUMNS)} (tab-separated)")
    return text


def _numbered_rows(path, text):
    """(line, fields) of the tab-separated `text`, line the file's line where the row ends (header: 1)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise RefinementError(f"{path} line {reader.line_num}: not tab-separated text ({error})") from None
        yield reader.line_num, fields


def _flags_from_csv(path, filenames):
    row_of = {name: row for row, name in enumerate(filenames)}
    audio_flags = np.zeros((len(filenames), NUM_CLASSES), dtype=bool)
    visual_flags = np.zeros_like(audio_flags)
    rows = _numbered_rows(path, _flags_text(path))
    _, header = next(rows)
    if not set(FLAG_COLUMNS) <= set(header):
        raise RefinementError(f"{path}: expected tab-separated columns {', '.join(FLAG_COLUMNS)} "
                              f"(header: {', '.join(header)})")
    position = {column: header.index(column) for column in FLAG_COLUMNS}
    for line, fields in rows:
        if not fields:
            continue  # blank line
        if len(fields) != len(header):
            raise RefinementError(f"{path} line {line}: {len(fields)} field(s), header has {len(header)}")
        filename, name, modality = (fields[position[column]] for column in FLAG_COLUMNS)
        if filename not in row_of:
            raise RefinementError(f"{path} line {line}: {filename!r} is not a training video")
        if name not in CLASS_INDEX:
            raise RefinementError(f"{path} line {line}: unknown class {name!r}")
        if modality not in MODALITIES:
            raise RefinementError(f"{path} line {line}: modality must be audio or visual, got {modality!r}")
        target = audio_flags if modality == "audio" else visual_flags
        target[row_of[filename], CLASS_INDEX[name]] = True
    return audio_flags, visual_flags


def read_refined_labels(path, filenames):
    """(audio_flags, visual_flags), (N, 25) bool for the training videos `filenames`, from .pkl or .csv."""
    if os.path.splitext(path)[1].lower() == ".csv":
        return _flags_from_csv(path, filenames)
    return _flags_from_pickle(path, len(filenames))


def restrict_to_labels(audio_flags, visual_flags, labels):
    """Flags on labelled classes only, plus how many others were dropped; PROTOCOL.md §10 step 4.

    A flag says a label is wrong, so a flag on a class the video is not labelled with means
    nothing; kept, it would turn P_v's smoothed 0.05 into 0 (the release only zeroes labelled cells).
    """
    labelled = np.asarray(labels) > 0
    dropped = int((audio_flags & ~labelled).sum() + (visual_flags & ~labelled).sum())
    return audio_flags & labelled, visual_flags & labelled, dropped


def summary_table(audio_flags, visual_flags, labels):
    """Printable per-class counts: labelled videos, flagged audio labels, flagged visual labels."""
    labelled = (np.asarray(labels) > 0).sum(axis=0)
    lines = [f"{'class':<24}{'labelled':>9}{'audio':>7}{'visual':>7}"]
    for column, name in enumerate(CLASSES):
        lines.append(f"{name:<24}{labelled[column]:>9}{audio_flags[:, column].sum():>7}{visual_flags[:, column].sum():>7}")
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
