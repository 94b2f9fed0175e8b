"""Feature files of LLP: one `<youtube id>.npy` per video and kind, validated and stacked (PROTOCOL.md §2).

Every file of a split is checked before training (missing, unreadable, wrong shape or dtype,
NaN/Inf) and all problems are reported at once, with paths, as one LLPDataError.
"""
import os
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    FEATURE_KINDS,
    FRAMES_PER_SEGMENT,
    NUM_SEGMENTS,
    PSEUDO_LABEL_SHAPE,
    YOUTUBE_ID_LENGTH,
)

FRAME_DTYPES = ("float32", "float16")
ACCEPTED_FLOAT_SIZES = (2, 4, 8)  # float16/32/64, either byte order
CLAP_MAP_ROWS = CLAP_FEATURE_SHAPE[0]
# the rows a feature file of each kind may have, and what they hold (PROTOCOL.md §2, §13); the
# published row count first
ROW_FORMATS = {
    "audio": {NUM_SEGMENTS: "one vector per segment (VGGish)",
              CLAP_MAP_ROWS: "CLAP feature maps, turned into one vector per segment at load"},
    "frames": {NUM_SEGMENTS * FRAMES_PER_SEGMENT: f"{FRAMES_PER_SEGMENT} frames per segment (ResNet152)",
               NUM_SEGMENTS: "one frame per segment (CLIP)"},
    "snippets": {NUM_SEGMENTS: "one snippet per segment (R(2+1)D)"},
}
# CLAP maps: 2 x 32 time steps, each row upsampled to this many before the mean and the pooling (PROTOCOL.md §13)
CLAP_MAP_GRID = (2, CLAP_MAP_ROWS // 2)
CLAP_UPSAMPLED_STEPS = 1024
PSEUDO_LABEL_VALUES = (0, 1)


def feature_file_name(filename):
    """`<youtube id>.npy`: as published, features are named by the first 11 characters of the
    filename (`<id>_<start>_<end>`), the id itself possibly holding '_' or '-'; PROTOCOL.md §2."""
    return filename[:YOUTUBE_ID_LENGTH] + ".npy"


def feature_paths(folder, filenames, exact_names=False):
    """The feature file of every video in `folder`, in the order of `filenames`; with exact_names
    `<filename>.npy` (the windows of parse_video.py), not the published 11-character rule."""
    return [os.path.join(folder, name + ".npy" if exact_names else feature_file_name(name)) for name in filenames]


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


def _scan_headers(paths, accepted_rows, problems):
    """Shapes of readable float files with one of `accepted_rows` rows; problems appended."""
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
        elif len(shape) != 2 or shape[0] not in accepted_rows:
            problems.append(f"{path}: shape {shape}, expected (rows, dim) with rows "
                            f"{' or '.join(map(str, accepted_rows))}")
        else:
            shapes[path] = shape
    return shapes


def _choose_shape(shapes, default_shape):
    """The (rows, dim) all files of a kind must share: the most common one, the published one on a
    tie (so CLIP/CLAP-like features plug in)."""
    counts = Counter(tuple(shape) for shape in shapes.values())
    if not counts:
        return tuple(default_shape)
    best = max(counts.values())
    return tuple(default_shape) if counts.get(tuple(default_shape)) == best else counts.most_common(1)[0][0]


def source_shape(kind, paths):
    """The (rows, dim) of the first readable file of a kind (its files all share it once
    validated), or None; how the packed cache learns the layout of the files it stands for."""
    for path in paths:
        try:
            shape, _ = _read_header(path)
        except (OSError, ValueError):
            continue
        if len(shape) == 2 and shape[0] in ROW_FORMATS[kind]:
            return tuple(shape)
    return None


def loaded_rows(kind, rows, pooled_rows=None):
    """Rows per video in memory for files of `rows` rows: CLAP maps become one vector per segment,
    frames are pooled to `pooled_rows` when asked."""
    if kind == "audio" and rows == CLAP_MAP_ROWS:
        return NUM_SEGMENTS
    return pooled_rows or rows


def clap_maps_to_segments(maps):
    """(N, 64, D) CLAP feature maps -> (N, 10, D) float32 segment vectors, as VALOR computes them
    in its model (view as (D, 2, 32), bicubic upsampling to (2, 1024), the audio Linear, mean over
    the 2 rows, adaptive average pooling to 10 steps) but without the Linear; PROTOCOL.md §13.

    Every step but the Linear is a fixed linear map along time whose weights sum to one per output
    step, so it commutes with the Linear (bias included): applying it once here and the Linear in
    the model gives the model's result up to float rounding (tests/test_modern_features.py).
    """
    maps = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    num_videos, rows, dim = maps.shape
    grid = maps.permute(0, 2, 1).reshape(num_videos, dim, *CLAP_MAP_GRID)
    upsampled = F.interpolate(grid, size=(CLAP_MAP_GRID[0], CLAP_UPSAMPLED_STEPS), mode="bicubic")
    segments = F.adaptive_avg_pool1d(upsampled.mean(dim=2), NUM_SEGMENTS)   # (N, D, 10)
    return segments.permute(0, 2, 1).contiguous().numpy()


def read_feature_kind(kind, paths, dtype, progress, problems, pooled_rows=None, heartbeat=None):
    """((N, rows, dim) array of one feature kind, (rows, dim) of its files); every problem appended.

    Files may have any of the kind's ROW_FORMATS rows (all files of the kind the same); CLAP
    maps (64 rows) are turned into 10 segment vectors as they are read (clap_maps_to_segments).
    pooled_rows: average consecutive groups of rows down to this many (frames -> one mean
    frame per segment) as each file is read, so the full array never sits in memory.
    heartbeat: optional utils.progress.Heartbeat, given a "<kind>: 4000/10000 files read" line per file.
    """
    _, default_shape = FEATURE_KINDS[kind]
    shapes = _scan_headers(paths, tuple(ROW_FORMATS[kind]), problems)
    rows, dim = _choose_shape(shapes, default_shape)
    out = np.zeros((len(paths), loaded_rows(kind, rows, pooled_rows), dim), dtype=dtype)
    for i, path in enumerate(tqdm(paths, desc=f"{kind} features", disable=not progress)):
        if heartbeat is not None:
            heartbeat(lambda i=i: f"  {kind} features: {i}/{len(paths)} files read and checked")
        if path not in shapes:
            continue
        if tuple(shapes[path]) != (rows, dim):
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
        if kind == "audio" and rows == CLAP_MAP_ROWS:
            values = clap_maps_to_segments(values[None])[0]
        elif pooled_rows:
            values = pool_frames_per_segment(values[None], pooled_rows)[0]
        out[i] = values
    return out, (rows, dim)


def read_pseudo_labels(paths, problems, num_classes=PSEUDO_LABEL_SHAPE[1]):
    """(N, 10, C) float32 segment pseudo-labels (segment x class, 0 or 1; C LLP's 25 by default), one
    `<id>.npy` per video as VALOR ships them (PROTOCOL.md §13); every problem (missing, unreadable,
    shape, a value other than 0 and 1) appended."""
    shape = (PSEUDO_LABEL_SHAPE[0], num_classes)
    out = np.zeros((len(paths), *shape), dtype=np.float32)
    for i, path in enumerate(paths):
        values = read_pseudo_label_file(path, shape, problems)
        if values is not None:
            out[i] = values
    return out


def read_pseudo_label_file(path, shape, problems):
    """The (segments, classes) 0/1 array of one pseudo-label file as float32, or None after appending
    why it cannot be used (missing, unreadable, another shape, a value other than 0 and 1)."""
    if not os.path.isfile(path):
        problems.append(f"{path}: missing")
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        problems.append(f"{path}: unreadable ({error})")
        return None
    if values.shape != tuple(shape):
        problems.append(f"{path}: shape {values.shape}, expected {tuple(shape)} (segment x class)")
    elif values.dtype.kind not in "biuf" or not np.isin(values, PSEUDO_LABEL_VALUES).all():
        problems.append(f"{path}: values other than 0 and 1 (dtype {values.dtype})")
    else:
        return values.astype(np.float32)
    return None


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
        frames_per_segment = num_frames // num_segments
        pooled[start:start + chunk] = block.reshape(len(block), num_segments, frames_per_segment, dim).mean(axis=2)
    return pooled
