"""One LFAV split in memory for main_DHHN.py (`--dataset lfav`; PROTOCOL.md §16): its videos of
different lengths, its three kinds of weak labels and, for val/test, the snippet truth, read with
the release's readers of avvp_data/lfav.py and checked before any work.

A video's features are found as the release finds them, `<first 11 characters of the filename>.npy`
in each kind's folder (src/dataloader.py:69-72), and must agree on its number of 1-s snippets T:
audio (T, 128), frames (T, 512), snippets (T, 512) in the published sizes (other widths are allowed
and recorded, as for LLP). The truth of a video covers the T snippets of its audio feature, as the
release scores it (src/tools/evaluation.py:124).
"""
import os
import warnings
from dataclasses import dataclass

import numpy as np

from avvp_data.feature_files import read_pseudo_label_file
from avvp_data.lfav import (
    FEATURE_KINDS,
    LFAV_CLASSES,
    MODALITIES,
    VIDEO_ID_LENGTH,
    WEAK_LABEL_FILES,
    LFAVDataError,
    LFAVDataWarning,
    read_split_weak_labels,
    read_truth,
    read_weak_labels,
)
from utils.errors import bulleted

WEAK_KINDS = ("video", "audio", "visual")
# problems of one split listed before "... and N more"
PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class LFAVPaths:
    """The inputs of an LFAV run: the three feature folders and, per split, the label files of
    avvp_data/lfav.label_paths ({split: {"video", "audio", "visual"[, "audio_truth", "visual_truth"]}})."""
    audio_dir: str
    video_dir: str
    st_dir: str
    labels: dict

    @property
    def feature_dirs(self):
        return {"audio": self.audio_dir, "frames": self.video_dir, "snippets": self.st_dir}

    def split_files(self, split):
        """{flag-like name: path} of the label files `split` reads."""
        return dict(self.labels[split])


@dataclass
class LFAVSplit:
    """One split of videos of different lengths.

    videos: per video {"audio": (T_i, 128), "frames": (T_i, 512), "snippets": (T_i, 512)} float32;
    labels: (N, 35) float32 video-level weak labels; audio_labels / visual_labels: (N, 35) the
    per-modality weak labels; gt_audio / gt_visual: per video (35, T_i) float32 snippet truth, or
    None for the training split. feature_layout: kind -> per-row width of its files. pseudo_audio /
    pseudo_visual: per video (T_i, C) segment pseudo-labels in {0, 1} (PROTOCOL.md §13, §16), or None.
    """
    name: str
    filenames: list
    videos: list
    labels: np.ndarray
    audio_labels: np.ndarray
    visual_labels: np.ndarray
    gt_audio: list | None
    gt_visual: list | None
    feature_layout: dict
    classes: tuple = LFAV_CLASSES
    pseudo_audio: list | None = None    # per video (T_i, C) float32 segment pseudo-labels, or None
    pseudo_visual: list | None = None

    @property
    def num_videos(self):
        return len(self.filenames)

    @property
    def lengths(self):
        return [video["audio"].shape[0] for video in self.videos]

    def feature_dims(self):
        return dict(self.feature_layout)

    def feature_formats(self):
        """kind -> what its files hold, recorded in checkpoints like LLPSplit.feature_formats."""
        return {kind: f"(T, {width}): {FEATURE_KINDS[kind][0]} per 1-s snippet" if width == FEATURE_KINDS[kind][1]
                else f"(T, {width}): per 1-s snippet" for kind, width in self.feature_layout.items()}


def missing_inputs(paths, split):
    """["<what> <path>: file not found", ...] of the files and folders `split` needs."""
    problems = [f"LFAV {split} {kind} labels {path}: file not found"
                for kind, path in paths.split_files(split).items() if not os.path.isfile(path)]
    problems += [f"LFAV {kind} features {folder}: folder not found"
                 for kind, folder in paths.feature_dirs.items() if not os.path.isdir(folder)]
    return problems


def split_overlaps(paths, splits=tuple(WEAK_LABEL_FILES)):
    """["<file A> and <file B> share N videos (e.g. ...)", ...] of every pair of the splits' video-level
    weak files (those that exist) that name one video twice, by its 11-character id, by which its
    feature files are found (src/dataloader.py:69)."""
    ids = {}
    for split in splits:
        path = paths.labels[split]["video"]
        if os.path.isfile(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LFAVDataWarning)   # said when the split is loaded
                ids[split] = (path, {filename[:VIDEO_ID_LENGTH] for filename in read_weak_labels(path)})
    found, names = [], list(ids)
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            shared = sorted(ids[first][1] & ids[second][1])
            if shared:
                found.append(f"{ids[first][0]} and {ids[second][0]} share {len(shared)} video(s) "
                             f"(e.g. {', '.join(shared[:3])})")
    return found


def _read_video(feature_dirs, filename, problems):
    """The feature dict of one video, or None after recording why it cannot be used."""
    video = {}
    for kind, folder in feature_dirs.items():
        path = os.path.join(folder, filename[:VIDEO_ID_LENGTH] + ".npy")
        try:
            array = np.load(path)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: {kind} feature of {filename!r} cannot be read ({error})")
            return None
        if array.ndim != 2 or array.shape[0] == 0:
            problems.append(f"{path}: {kind} feature of {filename!r} has shape {array.shape}, expected (T, width)")
            return None
        if not np.isfinite(array).all():
            problems.append(f"{path}: {kind} feature of {filename!r} holds NaN or infinite values")
            return None
        video[kind] = np.ascontiguousarray(array, dtype=np.float32)
    lengths = {kind: array.shape[0] for kind, array in video.items()}
    if len(set(lengths.values())) != 1:
        problems.append(f"{filename!r}: its features disagree on the number of 1-s snippets "
                        f"({', '.join(f'{kind} {count}' for kind, count in lengths.items())})")
        return None
    return video


def _feature_layout(filenames, videos, problems):
    """kind -> the per-row width all videos share; a video of another width is a problem."""
    layout = {kind: videos[0][kind].shape[1] for kind in videos[0]}
    for filename, video in zip(filenames, videos):
        other = {kind: array.shape[1] for kind, array in video.items() if array.shape[1] != layout[kind]}
        if other:
            problems.append(f"{filename!r}: feature widths {other}, the split's first video has {layout}")
    return layout


def _raise_problems(split, problems):
    if problems:
        shown = problems[:PROBLEMS_SHOWN]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise LFAVDataError(f"LFAV {split}: {len(problems)} unusable input(s):\n{bulleted(shown)}{more}")


def load_pseudo_label_sequences(pseudo_dirs, filenames, lengths, num_classes, problems):
    """{modality: [(T_i, C) float32]} of the `<id>.npy` files of `pseudo_dirs` ({modality: folder}),
    each the length of its video; every bad file appended to `problems`."""
    labels = {}
    for modality, folder in pseudo_dirs.items():
        labels[modality] = [read_pseudo_label_file(os.path.join(folder, filename[:VIDEO_ID_LENGTH] + ".npy"),
                                                   (length, num_classes), problems)
                            for filename, length in zip(filenames, lengths)]
    return labels


def load_lfav_split(paths, split, heartbeat=None, classes=LFAV_CLASSES, pseudo_dirs=None):
    """The LFAVSplit `split` (train/val/test) of `paths`; every unusable file of the split is reported
    together in one LFAVDataError. The release's data defects (unknown names in weak labels, truth
    rows with offset < onset) are ignored as the release ignores them, said in one line each.
    classes: the class axis, LFAV's or a user's own (--classes) for own videos in LFAV's layout.
    pseudo_dirs: optional {"audio": folder, "visual": folder} of segment pseudo-labels, one (T, C)
    `<id>.npy` per video, checked against each video's length."""
    files = paths.split_files(split)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LFAVDataWarning)
        weak = read_split_weak_labels(files["video"], files["audio"], files["visual"], classes)
        filenames = list(weak["video"])
        if not filenames:
            raise LFAVDataError(f"{files['video']}: no videos")
        problems, videos = [], []
        for number, filename in enumerate(filenames, 1):
            videos.append(_read_video(paths.feature_dirs, filename, problems))
            if heartbeat is not None:
                heartbeat(lambda number=number: f"  LFAV {split}: {number}/{len(filenames)} videos read and checked")
        _raise_problems(split, problems)
        layout = _feature_layout(filenames, videos, problems)
        _raise_problems(split, problems)
        pseudo = load_pseudo_label_sequences(pseudo_dirs or {}, filenames,
                                             [video["audio"].shape[0] for video in videos], len(classes), problems)
        _raise_problems(split, problems)
        truth = {}
        if "audio_truth" in files:
            lengths = {filename: video["audio"].shape[0] for filename, video in zip(filenames, videos)}
            for modality in MODALITIES:
                by_name = read_truth(files[f"{modality}_truth"], lengths, classes)
                truth[modality] = [by_name[filename] for filename in filenames]
    for warning in caught:
        first_line = str(warning.message).splitlines()[0]
        print(f"note: {first_line} (LFAV's own files have such rows)")
    labels = {kind: np.stack([weak[kind][filename] for filename in filenames]) for kind in WEAK_KINDS}
    return LFAVSplit(name=split, filenames=filenames, videos=videos, labels=labels["video"],
                     audio_labels=labels["audio"], visual_labels=labels["visual"],
                     gt_audio=truth.get("audio"), gt_visual=truth.get("visual"), feature_layout=layout,
                     classes=tuple(classes), pseudo_audio=pseudo.get("audio"), pseudo_visual=pseudo.get("visual"))


def classes_without_positives(split):
    """{modality: [class names]} of the classes that no snippet of `split` is positive for, per
    audio, visual and audio-visual (both at once): their snippet AP is 0/0, so the split's mAP, and
    the release's selection score with it, is NaN. (The release's val and test have every class in
    all three.)"""
    absent = {}
    audio_visual = [audio * visual for audio, visual in zip(split.gt_audio, split.gt_visual)]
    for modality, truth in (("audio", split.gt_audio), ("visual", split.gt_visual), ("audio-visual", audio_visual)):
        pooled = np.concatenate(truth, axis=1).sum(axis=1)
        names = [split.classes[index] for index in np.flatnonzero(pooled == 0)]
        if names:
            absent[modality] = names
    return absent
