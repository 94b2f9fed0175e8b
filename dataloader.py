"""LLP annotations and features, loaded once and validated up front (SPEC §2).

Annotation files are tab-separated with a header row. Ground truth is matched to
videos by EXACT filename, as published, so the known defects of the real files
(eval rows naming no val/test video, rows with offset <= onset) are kept: they
are reported with ``warnings.warn`` and ignored, never fatal. Anything that would
silently change the numbers (an unknown class, a bad onset/offset, a broken
feature file) is an ``LLPDataError`` naming the file and the line or path.

Features of a split are read once into stacked arrays and can be cached as one
packed ``.npy`` per (split, feature kind), so later runs skip ~12k small reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from utils.constants import (
    ANNOTATION_SHA256, OLDER_ANNOTATION_SHA256,
    CLASS_INDEX, EVAL_AUDIO_CSV, FEATURE_KINDS, LABEL_TEST_CSV, LABEL_VAL_CSV, NUM_CLASSES, NUM_SEGMENTS,
)
from utils.io import atomic_write

# Longest list of problems put in one message; the rest are counted.
MAX_LISTED = 20


def _known_annotation_versions():
    """sha256 -> human-readable version of every published annotation file (SPEC §2)."""
    versions = {digest: f"{name}, current" for name, digest in ANNOTATION_SHA256.items()}
    versions[ANNOTATION_SHA256[EVAL_AUDIO_CSV]] = f"{EVAL_AUDIO_CSV}, current (corrected upstream in 2024)"
    versions[OLDER_ANNOTATION_SHA256[EVAL_AUDIO_CSV]] = (
        f"{EVAL_AUDIO_CSV}, 2020 copy with defects (3 rows of 2 test videos have a broken filename; "
        "corrected upstream in 2024)")
    return versions


KNOWN_ANNOTATION_SHA256 = _known_annotation_versions()

# `<11-char YouTube id>_<start>_<end>`; a few train videos have decimal times.
YOUTUBE_ID_LENGTH = 11
LLP_FILENAME = re.compile(r"^[A-Za-z0-9_-]{11}_\d+(\.\d+)?_\d+(\.\d+)?$")

LABEL_COLUMNS = ("filename", "event_labels")
EVAL_COLUMNS = ("filename", "onset", "offset", "event_labels")
FRAME_DTYPES = ("float32", "float16")
ACCEPTED_FLOAT_SIZES = (2, 4, 8)  # float16/32/64, either byte order
CACHE_FORMAT = 1


class LLPDataError(ValueError):
    """Bad LLP input; the message names the file and row, or the paths."""


class LLPDataWarning(UserWarning):
    """A known kind of defect in LLP input that is ignored as published."""


def _bulleted(lines, limit=MAX_LISTED):
    """Indented lines, at most `limit`, then "... and N more"."""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(shown)


# ---------------------------------------------------------------- annotations

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
        raise LLPDataError(f"{csv_path}: {len(bad)} malformed row(s):\n{_bulleted(bad)}")
    return rows


def read_video_labels(csv_path):
    """Filenames and (N, 25) float32 multi-hot weak labels of a label CSV; SPEC §2.

    Columns `filename`, `event_labels` (comma-joined class names). Raises
    LLPDataError on an unknown class or a repeated filename, naming the lines.
    """
    rows = _read_tsv(csv_path, LABEL_COLUMNS)
    filenames = [filename for _, (filename, _) in rows]
    labels = np.zeros((len(rows), NUM_CLASSES), dtype=np.float32)
    problems, first_line = [], {}
    for i, (number, (filename, event_labels)) in enumerate(rows):
        if filename in first_line:
            problems.append(f"line {number}: filename {filename!r} already on "
                            f"line {first_line[filename]}")
        first_line.setdefault(filename, number)
        for name in event_labels.split(","):
            if name in CLASS_INDEX:
                labels[i, CLASS_INDEX[name]] = 1.0
            else:
                problems.append(f"line {number}: unknown class {name!r}")
    if problems:
        raise LLPDataError(f"{csv_path}: {len(problems)} bad row(s):\n{_bulleted(problems)}")
    return filenames, labels


class EvalRow(NamedTuple):
    """One validated row of an eval CSV (SPEC §2); `line` is 1-based in the file."""
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


def read_eval_rows(csv_path):
    """All rows of an eval CSV, validated; SPEC §2.

    Every row is checked, including rows of other splits, so a corrupt file
    fails the same way whichever split is loaded. Raises LLPDataError listing
    unknown classes and non-integer or out-of-range onsets/offsets by line.
    """
    parsed, problems = [], []
    for number, (filename, onset, offset, name) in _read_tsv(csv_path, EVAL_COLUMNS):
        onset = _parse_second(onset, "onset", problems, number)
        offset = _parse_second(offset, "offset", problems, number)
        if name not in CLASS_INDEX:
            problems.append(f"line {number}: unknown class {name!r}")
        elif onset is not None and offset is not None:
            parsed.append(EvalRow(number, filename, onset, offset, CLASS_INDEX[name]))
    if problems:
        raise LLPDataError(f"{csv_path}: {len(problems)} bad row(s):\n{_bulleted(problems)}")
    return parsed


def feature_file_name(filename):
    """`<youtube id>.npy`: as published, features are named by the first 11 characters of the
    filename (`<id>_<start>_<end>`), the id itself possibly holding '_' or '-'; SPEC §2."""
    return filename[:YOUTUBE_ID_LENGTH] + ".npy"


def looks_like_llp_filename(filename):
    """True for `<11-char YouTube id>_<start>_<end>` (SPEC §2)."""
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
        f"are ignored (exact filename match, SPEC §2):\n{_bulleted(names)}",
        LLPDataWarning, stacklevel=3)


def _warn_empty(csv_path, rows):
    empty = [row for row in rows if row.offset <= row.onset]
    if not empty:
        return
    examples = [f"line {row.line}: {row.filename!r} onset {row.onset} offset {row.offset}"
                for row in empty]
    warnings.warn(
        f"{csv_path}: {len(empty)} row(s) have offset <= onset and add nothing "
        f"(kept as published, SPEC §2):\n{_bulleted(examples)}",
        LLPDataWarning, stacklevel=3)


def read_segment_truth(csv_path, filenames, known_filenames=None):
    """(N, 25, 10) uint8 ground truth, class x segment, for `filenames`; SPEC §2.

    Segment t of a row is positive iff onset <= t < offset; several rows per
    video and class are OR-ed; offset <= onset adds nothing. Rows are matched
    by exact filename. Rows of other videos are ignored; those that can belong
    to no video are reported in one LLPDataWarning: rows whose filename is in
    neither `filenames` nor `known_filenames` (pass val ∪ test), or, when
    `known_filenames` is None, rows whose filename is not a well-formed LLP
    filename. Rows with offset <= onset get a second warning.
    """
    rows = read_eval_rows(csv_path)
    known = None if known_filenames is None else set(known_filenames) | set(filenames)
    _warn_unmatched(csv_path, rows, known)
    _warn_empty(csv_path, rows)
    index = {name: i for i, name in enumerate(filenames)}
    truth = np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=np.uint8)
    for row in rows:
        i = index.get(row.filename)
        if i is not None:
            truth[i, row.class_index, row.onset:row.offset] = 1  # empty when offset <= onset
    return truth


def annotation_version(csv_path):
    """Which published version a file is, by sha256 (SPEC §2), e.g.
    "AVVP_eval_audio.csv, current (corrected upstream in 2024)" or
    "unrecognised (sha256 ...)"."""
    digest = hashlib.sha256(Path(csv_path).read_bytes()).hexdigest()
    return KNOWN_ANNOTATION_SHA256.get(digest, f"unrecognised (sha256 {digest})")


# ------------------------------------------------------------------- features

def default_cache_dir(audio_dir):
    """`.packed_cache` beside the feature folders (feats/vggish -> feats/.packed_cache)."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(audio_dir))), ".packed_cache")


def _target_dtype(kind, frame_dtype):
    # Only frames may be float16: they are 16x larger than the other kinds.
    return np.dtype(frame_dtype if kind == "frames" else "float32")


def _stat_sources(paths):
    """[(size, mtime_ns)] of every path, or None if any is missing/unstatable."""
    stats = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        stats.append((st.st_size, st.st_mtime_ns))
    return stats


def _fingerprint(kind, folder, filenames, stats, dtype):
    """sha256 keying a packed cache on everything that changes its content."""
    key = json.dumps([CACHE_FORMAT, kind, os.path.abspath(folder), dtype.str,
                      list(filenames), stats])
    return hashlib.sha256(key.encode()).hexdigest()


class _Cache:
    """One packed `.npy` plus a JSON manifest per (split, kind) in `folder`."""

    def __init__(self, folder, name):
        self.folder = folder
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)

    def paths(self, kind):
        stem = os.path.join(self.folder, f"{self.name}_{kind}")
        return stem + ".npy", stem + ".json"

    def load(self, kind, fingerprint, shape_rows, dtype, num_videos):
        """The cached array if its manifest matches `fingerprint`, else None."""
        array_path, manifest_path = self.paths(kind)
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            if manifest.get("fingerprint") != fingerprint:
                return None
            array = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or damaged: rebuild
        if (array.ndim != 3 or array.shape[:2] != (num_videos, shape_rows)
                or array.dtype != dtype):
            return None
        return array

    def save(self, kind, array, fingerprint, source_dir):
        """Write array then manifest, each via temp file + os.replace; warn on failure."""
        array_path, manifest_path = self.paths(kind)
        manifest = {"format": CACHE_FORMAT, "kind": kind, "split": self.name,
                    "source_dir": os.path.abspath(source_dir),
                    "num_videos": int(array.shape[0]), "shape": list(array.shape),
                    "dtype": array.dtype.str, "fingerprint": fingerprint}
        try:
            os.makedirs(self.folder, exist_ok=True)
            # The manifest goes last, so it never vouches for a half-written array.
            atomic_write(array_path, lambda f: np.save(f, array))
            atomic_write(manifest_path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        except OSError as error:
            warnings.warn(f"feature cache {self.folder} not writable ({error}); "
                          "continuing without cache", stacklevel=3)


def _read_header(path):
    """(shape, dtype) from a .npy header, without reading the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, dtype = array.shape, array.dtype
    return shape, dtype


def _scan_headers(paths, rows, problems):
    """Shapes of readable float files with `rows` rows; problems appended."""
    shapes = {}
    for path in paths:
        if not os.path.isfile(path):
            problems.append(f"{path}: missing")
            continue
        try:
            shape, dtype = _read_header(path)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: unreadable ({error})")
            continue
        if dtype.kind != "f" or dtype.itemsize not in ACCEPTED_FLOAT_SIZES:
            problems.append(f"{path}: dtype {dtype}, expected float16/32/64")
        elif len(shape) != 2 or shape[0] != rows:
            problems.append(f"{path}: shape {shape}, expected ({rows}, dim)")
        else:
            shapes[path] = shape
    return shapes


def _choose_dim(shapes, default_dim):
    """The feature dim all files of a kind must share: the most common one,
    the published dim on a tie (so CLIP/CLAP-like features plug in)."""
    counts = Counter(shape[1] for shape in shapes.values())
    if not counts:
        return default_dim
    best = max(counts.values())
    return default_dim if counts.get(default_dim) == best else counts.most_common(1)[0][0]


def _read_kind(kind, paths, dtype, progress, problems, pooled_rows=None):
    """(N, rows, dim) array of one feature kind; every problem appended.

    pooled_rows: average consecutive groups of rows down to this many (frames -> one mean
    frame per segment) as each file is read, so the full array never sits in memory.
    """
    _, (rows, default_dim) = FEATURE_KINDS[kind]
    shapes = _scan_headers(paths, rows, problems)
    dim = _choose_dim(shapes, default_dim)
    out = np.zeros((len(paths), pooled_rows or rows, dim), dtype=dtype)
    for i, path in enumerate(tqdm(paths, desc=f"{kind} features", disable=not progress)):
        if path not in shapes:
            continue
        if shapes[path][1] != dim:
            problems.append(f"{path}: shape {shapes[path]}, expected ({rows}, {dim}) "
                            f"like the other {kind} files")
            continue
        try:
            with np.errstate(over="ignore"):  # overflow to Inf is reported just below
                values = np.load(path, allow_pickle=False).astype(dtype)
        except (OSError, ValueError, EOFError) as error:
            problems.append(f"{path}: unreadable ({error})")
            continue
        # Checked after the cast: float64 -> float32 (or float16) can overflow to Inf.
        if not np.isfinite(values).all():
            problems.append(f"{path}: NaN/Inf values (as {dtype.name})")
            continue
        if pooled_rows:
            values = pool_frames_per_segment(values[None], pooled_rows)[0]
        out[i] = values
    return out


def pool_frames_per_segment(frames, num_segments, chunk=1024):
    """(N, T*F, D) frame features -> (N, T, D) float32 means of the F frames of each segment.

    The visual projection is linear, so projecting the mean frame equals averaging the projected
    frames (SPEC §3) up to float rounding, with 1/F of the memory and the projection's compute.
    """
    num_videos, num_frames, dim = frames.shape
    if num_frames == num_segments:   # already one (mean) frame per segment, e.g. pooled at load
        return frames
    pooled = np.empty((num_videos, num_segments, dim), dtype=np.float32)
    for start in range(0, num_videos, chunk):
        block = frames[start:start + chunk].astype(np.float32)
        pooled[start:start + chunk] = block.reshape(len(block), num_segments, num_frames // num_segments, dim).mean(axis=2)
    return pooled


def load_features(feature_dirs, filenames, cache_dir=None, frame_dtype="float32",
                  progress=False, cache_name="videos", pool_frames=False):
    """Stacked features of `filenames`, validated; SPEC §2.

    feature_dirs: kind -> folder, kinds from FEATURE_KINDS ("audio" (N,10,128),
    "frames" (N,80,2048), "snippets" (N,10,512)). Files are `<video id>.npy`,
    the id being the first 11 characters of the filename (feature_file_name).
    The last dim may differ from the published one if all files of the kind
    agree. Returns float32 arrays (frames float16 when frame_dtype="float16").
    Every file is checked (missing, unreadable, shape, non-float dtype, NaN/Inf)
    and all problems are raised in one LLPDataError. With `cache_dir`, each kind
    is packed into `<cache_name>_<kind>.npy` there and reused while the file
    list, sizes and mtimes and the dtype are unchanged.
    """
    if frame_dtype not in FRAME_DTYPES:
        raise ValueError(f"frame_dtype must be one of {FRAME_DTYPES}, got {frame_dtype!r}")
    unknown = set(feature_dirs) - set(FEATURE_KINDS)
    if unknown:
        raise ValueError(f"unknown feature kind(s) {sorted(unknown)}; known: {list(FEATURE_KINDS)}")
    cache = _Cache(cache_dir, cache_name) if cache_dir is not None else None
    features, problems, to_save = {}, [], []
    for kind, folder in feature_dirs.items():
        dtype = _target_dtype(kind, frame_dtype)
        paths = [os.path.join(folder, feature_file_name(name)) for name in filenames]
        pooled_rows = NUM_SEGMENTS if pool_frames and kind == "frames" else None
        stats = _stat_sources(paths) if cache is not None else None
        entry = kind + ("_pooled" if pooled_rows else "")   # pooled and full frames are cached apart
        fingerprint = _fingerprint(entry, folder, filenames, stats, dtype) if stats is not None else None
        if fingerprint is not None:
            rows = pooled_rows or FEATURE_KINDS[kind][1][0]
            cached = cache.load(entry, fingerprint, rows, dtype, len(paths))
            if cached is not None:
                features[kind] = cached
                continue
        features[kind] = _read_kind(kind, paths, dtype, progress, problems, pooled_rows)
        if fingerprint is not None:
            to_save.append((kind, entry, fingerprint, folder))
    if problems:
        raise LLPDataError(f"{len(problems)} bad feature file(s):\n{_bulleted(problems)}")
    for kind, entry, fingerprint, folder in to_save:
        cache.save(entry, features[kind], fingerprint, folder)
    return features


# ---------------------------------------------------------------------- split

@dataclass
class LLPSplit:
    """One split in memory; SPEC §2.

    labels (N,25) float32 weak multi-hot; audio (N,10,128), frames (N,80,2048),
    snippets (N,10,512) float32 (frames optionally float16); gt_audio and
    gt_visual (N,25,10) uint8 class x segment, or None without eval files.
    """
    name: str
    filenames: list[str]
    labels: np.ndarray
    audio: np.ndarray
    frames: np.ndarray
    snippets: np.ndarray
    gt_audio: np.ndarray | None = None
    gt_visual: np.ndarray | None = None

    @property
    def num_videos(self):
        return len(self.filenames)

    def feature_dims(self):
        """kind -> last dim, e.g. {"audio": 128, "frames": 2048, "snippets": 512}."""
        return {kind: getattr(self, kind).shape[-1] for kind in FEATURE_KINDS}


def _published_eval_videos(eval_csv):
    """Val ∪ test filenames from the label files published beside `eval_csv`,
    or None when they are not there."""
    folder = os.path.dirname(os.path.abspath(eval_csv))
    paths = [os.path.join(folder, name) for name in (LABEL_VAL_CSV, LABEL_TEST_CSV)]
    if not all(os.path.isfile(path) for path in paths):
        return None
    return {name for path in paths for name in read_video_labels(path)[0]}


def load_split(name, label_csv, audio_dir, video_dir, st_dir, eval_audio_csv=None,
               eval_visual_csv=None, cache_dir=None, frame_dtype="float32",
               progress=False, use_cache=True, known_filenames=None, pool_frames=False):
    """Labels, features and (optionally) segment ground truth of one split; SPEC §2.

    Features are packed into `cache_dir` (None: default_cache_dir(audio_dir))
    unless use_cache is False. pool_frames: keep one mean frame per segment,
    frames (N,10,Df) instead of (N,80,Df) (see pool_frames_per_segment).
    known_filenames: every video the eval files may name (val ∪ test), used to
    warn about eval rows matching none; by default read from the published
    val/test label files beside the eval file (falls back to a filename check).
    """
    filenames, labels = read_video_labels(label_csv)
    ground_truth = {}
    for modality, csv_path in (("audio", eval_audio_csv), ("visual", eval_visual_csv)):
        if csv_path is None:
            ground_truth[modality] = None
            continue
        known = known_filenames if known_filenames is not None else _published_eval_videos(csv_path)
        ground_truth[modality] = read_segment_truth(csv_path, filenames, known)
    if use_cache and cache_dir is None:
        cache_dir = default_cache_dir(audio_dir)
    features = load_features(
        {"audio": audio_dir, "frames": video_dir, "snippets": st_dir}, filenames,
        cache_dir=cache_dir if use_cache else None, frame_dtype=frame_dtype, progress=progress,
        cache_name=name, pool_frames=pool_frames)
    return LLPSplit(name=name, filenames=filenames, labels=labels,
                    audio=features["audio"], frames=features["frames"],
                    snippets=features["snippets"], gt_audio=ground_truth["audio"],
                    gt_visual=ground_truth["visual"])
