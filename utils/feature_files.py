"""Feature files of LLP: one `<youtube id>.npy` per video and kind, validated and stacked (PROTOCOL.md §2).

Every file of a split is checked before training (missing, unreadable, wrong shape or dtype,
NaN/Inf) and all problems are reported at once, with paths, as one LLPDataError.
"""
import os
from collections import Counter

import numpy as np
from tqdm import tqdm

from utils.constants import FEATURE_KINDS, YOUTUBE_ID_LENGTH

FRAME_DTYPES = ("float32", "float16")
ACCEPTED_FLOAT_SIZES = (2, 4, 8)  # float16/32/64, either byte order


def feature_file_name(filename):
    """`<youtube id>.npy`: as published, features are named by the first 11 characters of the
    filename (`<id>_<start>_<end>`), the id itself possibly holding '_' or '-'; PROTOCOL.md §2."""
    return filename[:YOUTUBE_ID_LENGTH] + ".npy"


def feature_paths(folder, filenames):
    """The feature file of every video in `folder`, in the order of `filenames`."""
    return [os.path.join(folder, feature_file_name(name)) for name in filenames]


def storage_dtype(kind, frame_dtype):
    """numpy dtype a kind is held in: only frames may be float16, they are 8x larger than the rest."""
    if frame_dtype not in FRAME_DTYPES:
        raise ValueError(f"frame_dtype must be one of {FRAME_DTYPES}, got {frame_dtype!r}")
    return np.dtype(frame_dtype if kind == "frames" else "float32")


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


def read_feature_kind(kind, paths, dtype, progress, problems, pooled_rows=None):
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
    frames (PROTOCOL.md §3) up to float rounding, with 1/F of the memory and the projection's compute.
    """
    num_videos, num_frames, dim = frames.shape
    if num_frames == num_segments:   # already one (mean) frame per segment, e.g. pooled at load
        return frames
    pooled = np.empty((num_videos, num_segments, dim), dtype=np.float32)
    for start in range(0, num_videos, chunk):
        block = frames[start:start + chunk].astype(np.float32)
        pooled[start:start + chunk] = block.reshape(len(block), num_segments, num_frames // num_segments, dim).mean(axis=2)
    return pooled
