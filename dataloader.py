"""LLP splits in memory: labels, validated features and segment truth of one split (PROTOCOL.md §2).

Where the files are (`LLPPaths`, the official layout under one root), how annotation files are
parsed (avvp_data/annotations.py), how feature files are validated (avvp_data/feature_files.py) and how
packed features are reused across runs (avvp_data/feature_cache.py) live in their own modules; this
one puts them together into an `LLPSplit`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields

import numpy as np

from avvp_data.annotations import (
    published_eval_videos,
    read_label_filenames,
    read_video_labels,
    segment_truth_with_coverage,
)
from avvp_data.feature_files import (
    ROW_FORMATS,
    feature_paths,
    loaded_rows,
    read_feature_kind,
    read_pseudo_labels,
    source_shape,
    storage_dtype,
)
from avvp_data.llp import (
    CLASSES,
    EVAL_AUDIO_CSV,
    EVAL_VISUAL_CSV,
    FEATURE_KINDS,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    NUM_CLASSES,
    NUM_SEGMENTS,
    YOUTUBE_ID_LENGTH,
)
from utils.errors import LLPDataError, LLPDataWarning, bulleted

SPLITS = ("train", "val", "test")
# the data flags of main_DHHN.py and where the official layout keeps each (PROTOCOL.md §2)
OFFICIAL_LAYOUT = {
    "audio_dir": os.path.join("feats", FEATURE_KINDS["audio"][0]),
    "video_dir": os.path.join("feats", FEATURE_KINDS["frames"][0]),
    "st_dir": os.path.join("feats", FEATURE_KINDS["snippets"][0]),
    "label_train": os.path.join("data", LABEL_TRAIN_CSV),
    "label_val": os.path.join("data", LABEL_VAL_CSV),
    "label_test": os.path.join("data", LABEL_TEST_CSV),
    "eval_audio_csv": os.path.join("data", EVAL_AUDIO_CSV),
    "eval_visual_csv": os.path.join("data", EVAL_VISUAL_CSV),
}
FEATURE_FLAGS = {"audio": "audio_dir", "frames": "video_dir", "snippets": "st_dir"}

# Val/test videos with a weak label but no row in either eval file (PROTOCOL.md §2: truth is
# attached by exact filename). In the real LLP files there are none (0 of 649 val, 0 of 1,200
# test), so a few are a local annotation gap: they are scored against empty truth, with a
# warning. More than this many (the larger of the two) means the label and eval files name the
# videos differently (another copy, edited names), and every score would be computed against
# truth that is not there, so loading fails.
MAX_VIDEOS_WITHOUT_TRUTH = 5
MAX_SHARE_WITHOUT_TRUTH = 0.01   # of the split's videos
EXAMPLES_WITHOUT_TRUTH = 5       # filenames named in the error


@dataclass(frozen=True)
class LLPPaths:
    """Where the files of one copy of LLP are; the fields are main_DHHN.py's data flags."""
    audio_dir: str
    video_dir: str
    st_dir: str
    label_train: str
    label_val: str
    label_test: str
    eval_audio_csv: str
    eval_visual_csv: str

    @classmethod
    def official(cls, root):
        """The official layout under `root`: root/data/AVVP_*.csv, root/feats/{vggish,res152,r2plus1d_18}."""
        return cls(**{flag: os.path.join(os.fspath(root), relative) for flag, relative in OFFICIAL_LAYOUT.items()})

    @classmethod
    def from_args(cls, args):
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})

    def feature_dirs(self):
        """kind -> folder, kinds of FEATURE_KINDS."""
        return {kind: getattr(self, flag) for kind, flag in FEATURE_FLAGS.items()}

    def label_csv(self, split):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, f"label_{split}")


@dataclass
class LLPSplit:
    """One split in memory; PROTOCOL.md §2.

    labels (N,25) float32 weak multi-hot; audio (N,10,128), frames (N,80,2048),
    snippets (N,10,512) float32 (frames optionally float16, or (N,10,2048) pooled); gt_audio and
    gt_visual (N,25,10) uint8 class x segment, or None without eval files. feature_layout: kind ->
    (rows, dim) of its files (e.g. audio (64, 768) for CLAP maps, held as (N, 10, 768));
    pseudo_audio / pseudo_visual: (N,10,25) float32 segment pseudo-labels (PROTOCOL.md §13) or None.
    classes: the names of the class axis (25 above stands for len(classes); avvp_data/datasets.py).
    """
    name: str
    filenames: list[str]
    labels: np.ndarray
    audio: np.ndarray
    frames: np.ndarray
    snippets: np.ndarray
    gt_audio: np.ndarray | None = None
    gt_visual: np.ndarray | None = None
    feature_layout: dict | None = None
    pseudo_audio: np.ndarray | None = None
    pseudo_visual: np.ndarray | None = None
    classes: tuple = CLASSES

    @property
    def num_videos(self):
        return len(self.filenames)

    def feature_dims(self):
        """kind -> last dim, e.g. {"audio": 128, "frames": 2048, "snippets": 512}."""
        return {kind: getattr(self, kind).shape[-1] for kind in FEATURE_KINDS}

    def feature_formats(self):
        """kind -> what its files hold, e.g. {"audio": "(64, 768): CLAP feature maps, ..."}:
        recorded in every checkpoint, so that a model meets only the kind of features it learned on."""
        return describe_layout(self.feature_layout)


def describe_layout(layout):
    """kind -> "(rows, dim): what those rows are" for a feature_layout (see LLPSplit); None for None."""
    if layout is None:
        return None
    return {kind: f"({rows}, {dim}): {ROW_FORMATS[kind][rows]}" for kind, (rows, dim) in layout.items()}


def load_features(feature_dirs, filenames, cache=None, split="videos", frame_dtype="float32",
                  pool_frames=False, progress=False, exact_names=False, heartbeat=None):
    """(kind -> stacked features of `filenames`, kind -> (rows, dim) of its files), validated;
    PROTOCOL.md §2, §13.

    feature_dirs: kind -> folder, kinds from FEATURE_KINDS ("audio" (N,10,128),
    "frames" (N,80,2048), "snippets" (N,10,512)). Files are `<video id>.npy`
    (avvp_data.feature_files.feature_file_name). The dim may differ from the published one, and the
    rows may be another of avvp_data.feature_files.ROW_FORMATS (CLIP frames (10, 768), CLAP maps
    (64, 768), held as 10 segment vectors), if all files of the kind agree. Returns float32 arrays
    (frames float16 when frame_dtype="float16"). Every file is checked (missing, unreadable,
    shape, non-float dtype, NaN/Inf) and all problems are raised in one LLPDataError.
    cache: a avvp_data.feature_cache.PackedFeatureCache (or None): each kind is packed there under
    `split` and reused while the source files are unchanged.
    pool_frames: keep one mean frame per segment, frames (N,10,Df) instead of (N,80,Df).
    exact_names: files are `<filename>.npy` (avvp_data.feature_files.feature_paths).
    heartbeat: optional utils.progress.Heartbeat for lines while files are read (output to a file).
    """
    unknown = set(feature_dirs) - set(FEATURE_KINDS)
    if unknown:
        raise ValueError(f"unknown feature kind(s) {sorted(unknown)}; known: {list(FEATURE_KINDS)}")
    features, layout, problems, to_save = {}, {}, [], []
    for kind, folder in feature_dirs.items():
        dtype = storage_dtype(kind, frame_dtype)
        paths = feature_paths(folder, filenames, exact_names)
        pooled_rows = NUM_SEGMENTS if pool_frames and kind == "frames" else None
        entry = kind + ("_pooled" if pooled_rows else "")   # pooled and full frames are cached apart
        key = cache.key(split, entry, folder, paths, filenames, dtype) if cache is not None else None
        shape = source_shape(kind, paths) if key is not None else None
        if shape is not None:
            cached = cache.load(key, loaded_rows(kind, shape[0], pooled_rows), dtype, len(paths))
            if cached is not None and cached.shape[-1] == shape[1]:
                features[kind], layout[kind] = cached, shape
                continue
        features[kind], layout[kind] = read_feature_kind(kind, paths, dtype, progress, problems, pooled_rows,
                                                         heartbeat)
        if key is not None:
            to_save.append((kind, key))
    if problems:
        raise LLPDataError(f"{len(problems)} bad feature file(s):\n{bulleted(problems)}")
    for kind, key in to_save:
        cache.save(key, features[kind])
    return features, layout


def load_pseudo_labels(pseudo_dirs, filenames, num_classes=NUM_CLASSES, exact_names=False):
    """modality -> (N, 10, 25) segment pseudo-labels of `filenames` from `pseudo_dirs` (modality ->
    folder of `<id>.npy`, VALOR's layout; PROTOCOL.md §13), every file validated and all problems
    raised in one LLPDataError."""
    labels, problems = {}, []
    for modality, folder in pseudo_dirs.items():
        labels[modality] = read_pseudo_labels(feature_paths(folder, filenames, exact_names), problems, num_classes)
    if problems:
        raise LLPDataError(f"{len(problems)} bad pseudo-label file(s):\n{bulleted(problems)}")
    return labels


def load_split(paths, split, with_truth=None, cache=None, frame_dtype="float32", pool_frames=False,
               progress=False, known_filenames=None, pseudo_dirs=None, heartbeat=None, classes=CLASSES,
               exact_names=False):
    """Labels, features and (val/test) segment ground truth of one split; PROTOCOL.md §2.

    paths: LLPPaths. split: "train", "val" or "test". with_truth: read the eval files (default:
    for val and test). cache, frame_dtype, pool_frames, progress, heartbeat: as in `load_features`.
    known_filenames: every video the eval files may name (val ∪ test), used to warn about eval
    rows matching none; by default read from the published val/test label files beside the eval
    file (falls back to a filename check).
    With truth, videos with a weak label but no row in either eval file are counted:
    `check_truth_coverage` warns about a few and raises LLPDataError for more.
    pseudo_dirs: optional {"audio": folder, "visual": folder} of segment pseudo-labels
    (`load_pseudo_labels`), read before the features so that a bad one is reported first.
    classes: the class names of the label and eval files (LLP's by default, avvp_data/datasets.py).
    exact_names: feature files named `<filename>.npy` (your own clips), not by LLP's 11-character id.
    """
    filenames, labels = read_video_labels(paths.label_csv(split), classes)
    with_truth = split != "train" if with_truth is None else with_truth
    ground_truth = {"audio": None, "visual": None}
    if with_truth:
        covered = np.zeros(len(filenames), dtype=bool)
        for modality, csv_path in (("audio", paths.eval_audio_csv), ("visual", paths.eval_visual_csv)):
            known = known_filenames if known_filenames is not None else published_eval_videos(csv_path)
            ground_truth[modality], has_rows = segment_truth_with_coverage(csv_path, filenames, known, classes)
            covered |= has_rows
        check_truth_coverage(paths, split, filenames, labels, covered)
    pseudo = load_pseudo_labels(pseudo_dirs, filenames, len(classes), exact_names) if pseudo_dirs else {}
    features, layout = load_features(paths.feature_dirs(), filenames, cache=cache, split=split,
                                     frame_dtype=frame_dtype, pool_frames=pool_frames, progress=progress,
                                     heartbeat=heartbeat, exact_names=exact_names)
    return LLPSplit(name=split, filenames=filenames, labels=labels, audio=features["audio"],
                    frames=features["frames"], snippets=features["snippets"],
                    gt_audio=ground_truth["audio"], gt_visual=ground_truth["visual"], feature_layout=layout,
                    pseudo_audio=pseudo.get("audio"), pseudo_visual=pseudo.get("visual"), classes=tuple(classes))


def split_overlaps(paths, splits=SPLITS, by_id=True):
    """["--label_train A and --label_val B share N videos ...", ...]: every pair of the label files
    of `splits` (those that exist) that name a video twice, by filename or (by_id) by YouTube id
    (the first 11 characters, by which the feature files are found: two clips of one video share
    them; not with --feature_names filename). Checkpoints selected on a split that is also trained
    on or scored are silently wrong numbers."""
    def key(name):
        return name[:YOUTUBE_ID_LENGTH] if by_id else name

    names = {split: set(read_label_filenames(paths.label_csv(split))) for split in splits
             if os.path.isfile(paths.label_csv(split))}
    problems = []
    for index, first in enumerate(names):
        for second in list(names)[index + 1:]:
            shared = sorted(names[first] & names[second])
            shared_ids = sorted({key(name) for name in names[second]} & {key(name) for name in names[first]})
            if not shared_ids:
                continue
            examples = ", ".join(repr(name) for name in (shared or shared_ids)[:EXAMPLES_WITHOUT_TRUTH])
            by = (f" and {len(shared_ids)} YouTube id(s) (the first {YOUTUBE_ID_LENGTH} characters, by which "
                  "features are found)") if by_id else ""
            problems.append(f"--label_{first} {paths.label_csv(first)} and --label_{second} "
                            f"{paths.label_csv(second)} share {len(shared)} video(s){by}, e.g. {examples}")
    return problems


def max_videos_without_truth(num_videos):
    """How many videos of a split may lack eval rows before loading fails: more than 1% of the
    split or more than 5 videos, whichever is larger (MAX_VIDEOS_WITHOUT_TRUTH above)."""
    return max(MAX_VIDEOS_WITHOUT_TRUTH, MAX_SHARE_WITHOUT_TRUTH * num_videos)


def check_truth_coverage(paths, split, filenames, labels, covered):
    """Warn about (or, past max_videos_without_truth, refuse) videos of `split` whose weak label is
    non-empty but that no row of either eval file names (`covered` False); PROTOCOL.md §2."""
    missing = [name for name, label, has_rows in zip(filenames, labels, covered)
               if not has_rows and np.any(label > 0)]
    if not missing:
        return
    label_csv = paths.label_csv(split)
    where = f"either {paths.eval_audio_csv} or {paths.eval_visual_csv}"
    if len(missing) > max_videos_without_truth(len(filenames)):
        examples = ", ".join(repr(name) for name in missing[:EXAMPLES_WITHOUT_TRUTH])
        more = ", ..." if len(missing) > EXAMPLES_WITHOUT_TRUTH else ""
        raise LLPDataError(
            f"{label_csv}: {len(missing)} of {len(filenames)} videos have a weak label but no row in "
            f"{where} (e.g. {examples}{more}); filenames must match the eval files exactly "
            "(PROTOCOL.md §2)")
    warnings.warn(
        f"{label_csv}: {len(missing)} of {len(filenames)} videos have a weak label but no row in {where}; "
        f"they are scored against empty truth (filenames must match the eval files exactly, "
        f"PROTOCOL.md §2):\n{bulleted(missing)}",
        LLPDataWarning, stacklevel=3)
