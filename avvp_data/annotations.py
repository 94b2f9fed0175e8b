"""LLP annotation files: weak labels and segment ground truth, parsed and validated (PROTOCOL.md §2).

Annotation files are tab-separated with a header row. Ground truth is matched to videos by
EXACT filename, as published, so the known defects of the real files (eval rows naming no
val/test video, rows with offset <= onset) are kept: they are reported with ``warnings.warn``
and ignored, never fatal. Anything that would silently change the numbers (an unknown class, a
bad onset/offset, a filename or class name with leading or trailing whitespace) is an
``LLPDataError`` naming the file and the line.
"""
import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from avvp_data.llp import (
    ANNOTATION_SHA256,
    CLASS_INDEX,
    CLASSES,
    EVAL_AUDIO_CSV,
    EVAL_COLUMNS,
    LABEL_COLUMNS,
    LABEL_TEST_CSV,
    LABEL_VAL_CSV,
    NUM_SEGMENTS,
    OLDER_ANNOTATION_SHA256,
)
from utils.errors import LLPDataError, LLPDataWarning, bulleted


def _known_annotation_versions():
    """sha256 -> human-readable version of every published annotation file (PROTOCOL.md §2)."""
    versions = {digest: f"{name}, current" for name, digest in ANNOTATION_SHA256.items()}
    versions[ANNOTATION_SHA256[EVAL_AUDIO_CSV]] = f"{EVAL_AUDIO_CSV}, current (corrected upstream in 2024)"
    versions[OLDER_ANNOTATION_SHA256[EVAL_AUDIO_CSV]] = (
        f"{EVAL_AUDIO_CSV}, 2020 copy with defects (3 rows of 2 test videos have a broken filename; "
        "corrected upstream in 2024)")
    return versions


KNOWN_ANNOTATION_SHA256 = _known_annotation_versions()

# `<11-char YouTube id>_<start>_<end>`; a few train videos have decimal times.
LLP_FILENAME = re.compile(r"^[A-Za-z0-9_-]{11}_\d+(\.\d+)?_\d+(\.\d+)?$")


def _read_tsv(csv_path, columns):
    """Rows of a tab-separated file with a header, as (line number, values).

    `values` holds the requested `columns` in order. Line numbers are 1-based
    in the file (the header is line 1), so messages point at the real line.
    """
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as error:
        raise LLPDataError(f"{csv_path}: not UTF-8 text ({error})") from None
    if not lines:
        raise LLPDataError(f"{csv_path}: empty file, expected a header row")
    header = lines[0].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise LLPDataError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                           f"(header: {', '.join(header)}; tab-separated expected)")
    positions = [header.index(c) for c in columns]
    rows, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # trailing blank lines are harmless
        fields = line.split("\t")
        if len(fields) != len(header):
            bad.append(f"line {number}: {len(fields)} fields, header has {len(header)}")
            continue
        rows.append((number, [fields[p] for p in positions]))
    if bad:
        raise LLPDataError(f"{csv_path}: {len(bad)} malformed row(s):\n{bulleted(bad)}")
    return rows


def _whitespace_problem(number, what, text, problems):
    """Record `text` (a filename or class name) if it has leading or trailing whitespace; True if so.

    Names are matched exactly (PROTOCOL.md §2): 'x_0_10 ' is not 'x_0_10', so such a video would
    silently lose its truth and such a class would be unknown. Never stripped, always an error.
    """
    if text == text.strip():
        return False
    problems.append(f"line {number}: {what} {text!r} has leading or trailing whitespace")
    return True


def _raise_problems(csv_path, problems):
    if not problems:
        return
    note = (" (names must match exactly, PROTOCOL.md §2)"
            if any("whitespace" in problem for problem in problems) else "")
    raise LLPDataError(f"{csv_path}: {len(problems)} bad row(s){note}:\n{bulleted(problems)}")


def read_video_labels(csv_path, classes=CLASSES):
    """Filenames and (N, C) float32 multi-hot weak labels of a label CSV, C = len(classes) (LLP's
    25 by default, avvp_data/datasets.py); PROTOCOL.md §2.

    Columns `filename`, `event_labels` (comma-joined class names). Raises
    LLPDataError on an unknown class, a repeated filename, or a filename or
    class name with leading or trailing whitespace, naming the lines; and on a
    file with no video rows.
    """
    rows = _read_tsv(csv_path, LABEL_COLUMNS)
    if not rows:
        raise LLPDataError(f"{csv_path}: no videos (a header row and no video rows)")
    filenames = [filename for _, (filename, _) in rows]
    class_index = _class_index(classes)
    labels = np.zeros((len(rows), len(classes)), dtype=np.float32)
    problems, first_line = [], {}
    for i, (number, (filename, event_labels)) in enumerate(rows):
        _whitespace_problem(number, "filename", filename, problems)
        if filename in first_line:
            problems.append(f"line {number}: filename {filename!r} already on "
                            f"line {first_line[filename]}")
        first_line.setdefault(filename, number)
        for name in event_labels.split(","):
            if _whitespace_problem(number, "class", name, problems):
                continue
            if name in class_index:
                labels[i, class_index[name]] = 1.0
            else:
                problems.append(f"line {number}: unknown class {name!r}")
    _raise_problems(csv_path, problems)
    return filenames, labels


def read_label_filenames(csv_path):
    """The filenames of a label CSV, in order, without reading its labels (for checks that compare
    splits, whatever their classes)."""
    return [filename for _, (filename, _) in _read_tsv(csv_path, LABEL_COLUMNS)]


def _class_index(classes):
    return CLASS_INDEX if classes is CLASSES else {name: i for i, name in enumerate(classes)}


class EvalRow(NamedTuple):
    """One validated row of an eval CSV (PROTOCOL.md §2); `line` is 1-based in the file."""
    line: int
    filename: str
    onset: int
    offset: int
    class_index: int


def _parse_second(text, column, problems, number):
    """int in 0..NUM_SEGMENTS, or None after recording why not."""
    value = text.strip()
    if not re.fullmatch(r"[+-]?\d+", value):
        problems.append(f"line {number}: {column} {text!r} is not an integer")
        return None
    if not 0 <= int(value) <= NUM_SEGMENTS:
        problems.append(f"line {number}: {column} {text!r} outside 0..{NUM_SEGMENTS}")
        return None
    return int(value)


def read_eval_rows(csv_path, classes=CLASSES):
    """All rows of an eval CSV, validated, class indices into `classes`; PROTOCOL.md §2.

    Every row is checked, including rows of other splits, so a corrupt file
    fails the same way whichever split is loaded. Raises LLPDataError listing
    unknown classes, non-integer or out-of-range onsets/offsets, and filenames
    or class names with leading or trailing whitespace, by line.
    """
    parsed, problems = [], []
    class_index = _class_index(classes)
    for number, (filename, onset, offset, name) in _read_tsv(csv_path, EVAL_COLUMNS):
        bad_filename = _whitespace_problem(number, "filename", filename, problems)
        onset = _parse_second(onset, "onset", problems, number)
        offset = _parse_second(offset, "offset", problems, number)
        if _whitespace_problem(number, "class", name, problems):
            continue
        if name not in class_index:
            problems.append(f"line {number}: unknown class {name!r}")
        elif onset is not None and offset is not None and not bad_filename:
            parsed.append(EvalRow(number, filename, onset, offset, class_index[name]))
    _raise_problems(csv_path, problems)
    return parsed


def looks_like_llp_filename(filename):
    """True for `<11-char YouTube id>_<start>_<end>` (PROTOCOL.md §2)."""
    return LLP_FILENAME.match(filename) is not None


def unmatched_eval_rows(csv_path, all_filenames=None):
    """(line, filename) of eval rows that can belong to no video.

    With `all_filenames` (e.g. val ∪ test): rows whose filename is not among
    them. Without: rows whose filename is not even a well-formed LLP filename.
    """
    rows = read_eval_rows(csv_path)
    return [(row.line, row.filename) for row in _unmatched(rows, all_filenames)]


def _unmatched(rows, known_filenames):
    if known_filenames is None:
        return [row for row in rows if not looks_like_llp_filename(row.filename)]
    known = set(known_filenames)
    return [row for row in rows if row.filename not in known]


def _lines_by_filename(rows):
    """"'name' (lines 3, 4)" per distinct filename, in file order."""
    lines = {}
    for row in rows:
        lines.setdefault(row.filename, []).append(str(row.line))
    return [f"{name!r} (line{'s' if len(found) > 1 else ''} {', '.join(found)})"
            for name, found in lines.items()]


def _warn_unmatched(csv_path, rows, known_filenames):
    unmatched = _unmatched(rows, known_filenames)
    if not unmatched:
        return
    names = _lines_by_filename(unmatched)
    why = ("match no known video" if known_filenames is not None
           else "are not well-formed LLP filenames (<11-char id>_<start>_<end>)")
    warnings.warn(
        f"{csv_path}: {len(unmatched)} row(s) of {len(names)} filename(s) that {why} "
        f"are ignored (exact filename match, PROTOCOL.md §2):\n{bulleted(names)}",
        LLPDataWarning, stacklevel=3)


def _warn_empty(csv_path, rows):
    empty = [row for row in rows if row.offset <= row.onset]
    if not empty:
        return
    examples = [f"line {row.line}: {row.filename!r} onset {row.onset} offset {row.offset}"
                for row in empty]
    warnings.warn(
        f"{csv_path}: {len(empty)} row(s) have offset <= onset and add nothing "
        f"(kept as published, PROTOCOL.md §2):\n{bulleted(examples)}",
        LLPDataWarning, stacklevel=3)


def read_segment_truth(csv_path, filenames, known_filenames=None, classes=CLASSES):
    """(N, C, 10) uint8 ground truth, class x segment, for `filenames`; PROTOCOL.md §2.

    As `segment_truth_with_coverage`, without the coverage.
    """
    return segment_truth_with_coverage(csv_path, filenames, known_filenames, classes)[0]


def segment_truth_with_coverage(csv_path, filenames, known_filenames=None, classes=CLASSES):
    """(truth, has_rows): (N, C, 10) uint8 ground truth, class x segment (C = len(classes), LLP's
    25 by default), for `filenames`, and
    (N,) bool, True for the videos that at least one row of the file names; PROTOCOL.md §2.

    Segment t of a row is positive iff onset <= t < offset; several rows per
    video and class are OR-ed; offset <= onset adds nothing. Rows are matched
    by exact filename. Rows of other videos are ignored; those that can belong
    to no video are reported in one LLPDataWarning: rows whose filename is in
    neither `filenames` nor `known_filenames` (pass val ∪ test), or, when
    `known_filenames` is None, rows whose filename is not a well-formed LLP
    filename. Rows with offset <= onset get a second warning.
    """
    rows = read_eval_rows(csv_path, classes)
    known = None if known_filenames is None else set(known_filenames) | set(filenames)
    _warn_unmatched(csv_path, rows, known)
    _warn_empty(csv_path, rows)
    index = {name: i for i, name in enumerate(filenames)}
    truth = np.zeros((len(filenames), len(classes), NUM_SEGMENTS), dtype=np.uint8)
    has_rows = np.zeros(len(filenames), dtype=bool)
    for row in rows:
        i = index.get(row.filename)
        if i is not None:
            truth[i, row.class_index, row.onset:row.offset] = 1  # empty when offset <= onset
            has_rows[i] = True
    return truth, has_rows


def annotation_version(csv_path):
    """Which published version a file is, by sha256 (PROTOCOL.md §2), e.g.
    "AVVP_eval_audio.csv, current (corrected upstream in 2024)" or
    "unrecognised (sha256 ...)"."""
    digest = hashlib.sha256(Path(csv_path).read_bytes()).hexdigest()
    return KNOWN_ANNOTATION_SHA256.get(digest, f"unrecognised (sha256 {digest})")


def published_eval_videos(eval_csv):
    """Val ∪ test filenames from the label files published beside `eval_csv`,
    or None when they are not there."""
    folder = os.path.dirname(os.path.abspath(eval_csv))
    paths = [os.path.join(folder, name) for name in (LABEL_VAL_CSV, LABEL_TEST_CSV)]
    if not all(os.path.isfile(path) for path in paths):
        return None
    return {name for path in paths for name in read_label_filenames(path)}
