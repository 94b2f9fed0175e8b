"""The label-refinement flags files (PROTOCOL.md §10): the published pickle format and a readable
tab-separated CSV, written by --mode estimate_labels and read back (either format) by --mode retrain."""
import collections
import csv
import io
import os
import pickle

import numpy as np
import torch

from avvp_data.llp import CLASSES, MODALITIES
from utils.errors import UserError
from utils.io import atomic_write_bytes, atomic_write_text

FLAG_COLUMNS = ("filename", "event_labels", "modality")
PICKLE_MAGIC = b"\x80"   # first byte of every pickle of protocol 2 or later (the published file, ours)


class RefinementError(UserError):
    """A flags file that cannot be used, or a split where no partner can be found; names the file/video."""


def to_published_lists(audio_flags, visual_flags):
    """The published pickle payload: [visual_lists, audio_lists], one list of train-row indices per
    class (25 for LLP) each."""
    def lists(flags):
        return [np.flatnonzero(flags[:, c]).tolist() for c in range(flags.shape[1])]
    return [lists(visual_flags), lists(audio_flags)]


def write_flags(prefix, filenames, audio_flags, visual_flags, classes=CLASSES):
    """Write <prefix>.pkl (published format, plain ints) and <prefix>.csv (filename, event_labels, modality);
    `classes` names the columns of the flags."""
    atomic_write_bytes(pickle.dumps(to_published_lists(audio_flags, visual_flags)), prefix + ".pkl")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(FLAG_COLUMNS)
    for modality, flags in (("audio", audio_flags), ("visual", visual_flags)):
        for row, column in zip(*np.nonzero(flags)):
            writer.writerow([filenames[row], classes[column], modality])
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


def _flags_from_pickle(path, num_videos, classes):
    try:
        with open(path, "rb") as handle:
            payload = _FlagsUnpickler(handle).load()
    except Exception as error:  # any unpickling failure means the same thing to the user
        raise RefinementError(f"{path}: not a label-refinement pickle ({error})") from None
    if not (isinstance(payload, (list, tuple)) and len(payload) == 2
            and all(isinstance(lists, (list, tuple)) and len(lists) == len(classes) for lists in payload)):
        raise RefinementError(f"{path}: expected [visual_lists, audio_lists] with {len(classes)} lists each")
    flags = {}
    for modality, lists in zip(("visual", "audio"), payload):
        mask = np.zeros((num_videos, len(classes)), dtype=bool)
        for column, indices in enumerate(lists):
            for index in indices:
                try:
                    row = int(index)
                except (TypeError, ValueError):
                    raise RefinementError(f"{path}: {modality} list of {classes[column]} holds a non-integer "
                                          f"{index!r}") from None
                if not 0 <= row < num_videos:
                    raise RefinementError(f"{path}: {modality} index {row} of {classes[column]} is outside "
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


def _flags_from_csv(path, filenames, classes):
    row_of = {name: row for row, name in enumerate(filenames)}
    class_index = {name: column for column, name in enumerate(classes)}
    audio_flags = np.zeros((len(filenames), len(classes)), dtype=bool)
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
        if name not in class_index:
            raise RefinementError(f"{path} line {line}: unknown class {name!r}")
        if modality not in MODALITIES:
            raise RefinementError(f"{path} line {line}: modality must be audio or visual, got {modality!r}")
        target = audio_flags if modality == "audio" else visual_flags
        target[row_of[filename], class_index[name]] = True
    return audio_flags, visual_flags


def read_refined_labels(path, filenames, classes=CLASSES):
    """(audio_flags, visual_flags), (N, C) bool for the training videos `filenames` and the C
    `classes` (LLP's 25 by default), from .pkl or .csv."""
    if os.path.splitext(path)[1].lower() == ".csv":
        return _flags_from_csv(path, filenames, classes)
    return _flags_from_pickle(path, len(filenames), classes)
