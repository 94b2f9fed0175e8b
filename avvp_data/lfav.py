"""LFAV, long-form audio-visual video parsing (Hou et al., ACM TOMM 2024): what the dataset is, and
readers of its label files that build exactly the arrays the LFAV release builds.

The release is https://github.com/GeWu-Lab/LFAV at commit `LFAV_RELEASE_COMMIT`; "evaluation.py:156"
below means src/tools/evaluation.py line 156 there, "dataloader.py" src/dataloader.py. Unlike LLP
(10 fixed segments), an LFAV video has T 1-s snippets, T being the length of its audio feature
(evaluation.py:124, `repeat_len = audio.size()[1]`, with the audio loaded in dataloader.py:69-70).

Conventions of the release that differ from LLP's eval files, kept on purpose:
- a truth row covers snippets onset..offset INCLUSIVE (`GT[idx, x1:x2+1] = 1`, evaluation.py:156,
  172), so onset == offset is one snippet; the slice is cut at T, so a row past the end of the video
  is clipped and one starting at or after T adds nothing (test_visual.csv has an offset of 116117);
- a row with offset < onset gives an empty slice and adds nothing; the release's val and test truth
  files have 37 such rows. Here they are ignored with an `LFAVDataWarning` naming the lines;
- weak labels are stripped of surrounding blanks (dataloader.py:25; train_audio_weakly.csv has
  ' playing_badminton'), 'silent' means no event (dataloader.py:28), and any other unknown name is
  skipped (dataloader.py:30-32 prints it and goes on; val/test_visual_weakly.csv name 'train' and
  'toilet_flush'). Here the skipped names come with an `LFAVDataWarning`.
Where the release would crash (an unknown class in a truth file: `id_to_idx[event]`, evaluation.py:155)
or silently change the numbers (a fractional second, truncated by `int()`, evaluation.py:152-153),
the readers raise `LFAVDataError` naming the file and line. numpy only.
"""
import os
import re
import warnings

import numpy as np

from utils.errors import UserError, bulleted

LFAV_RELEASE = "GeWu-Lab/LFAV"
LFAV_RELEASE_COMMIT = "e17ad4d8d42355f568f2c0248476cc5ea07bbb1f"

# The 35 classes in the release's order (src/utils/constant.py, CATEGORIES): the class axis of
# every label array and model output.
LFAV_CLASSES = (
    "accordion", "alarm", "banjo", "bicycle", "car", "car_alarm", "cat", "cello", "chainsaw",
    "cheering", "chicken_rooster", "clapping", "cry", "dance", "dog", "drum", "fixed-wing_aircraft",
    "frisbee", "guitar", "helicopter", "horse", "laughter", "piano", "playing_basketball",
    "playing_badminton", "playing_baseball", "playing_ping-pong", "playing_tennis", "playing_soccer",
    "playing_volleyball", "rodents", "shofar", "singing", "speech", "violin",
)
LFAV_CLASS_INDEX = {name: index for index, name in enumerate(LFAV_CLASSES)}
LFAV_NUM_CLASSES = len(LFAV_CLASSES)
SNIPPET_SECONDS = 1.0   # one snippet per second; a video has as many as its audio feature has rows
MODALITIES = ("audio", "visual")
# A weak label meaning "no event of this modality" (dataloader.py:28).
SILENT_LABEL = "silent"

# feature kind -> (the release's README name, per-snippet width); each file is (T, width), named
# `<first 11 characters of the filename>.npy` (dataloader.py:69-72; widths: src/models/stage_one.py:32-34)
FEATURE_KINDS = {"audio": ("VGGish", 128), "frames": ("ResNet18", 512), "snippets": ("R(2+1)D-18", 512)}
VIDEO_ID_LENGTH = 11

# The release's label files, relative to its LFAV_dataset/ folder (src/main.py:46-73 names them).
# The three weak files of a split list the same videos in the same order: the release pairs their
# rows by position (dataloader.py:100-103; evaluation.py:144, 160).
WEAK_LABEL_FILES = {
    "train": {"video": "train/train_weakly.csv", "audio": "train/train_audio_weakly.csv",
              "visual": "train/train_visual_weakly.csv"},
    "val": {"video": "val/val_weak_av.csv", "audio": "val/val_audio_weakly.csv",
            "visual": "val/val_visual_weakly.csv"},
    "test": {"video": "test/test_weak_av.csv", "audio": "test/test_audio_weakly.csv",
             "visual": "test/test_visual_weakly.csv"},
}
TRUTH_FILES = {
    "val": {"audio": "val/val_audio.csv", "visual": "val/val_visual.csv"},
    "test": {"audio": "test/test_audio.csv", "visual": "test/test_visual.csv"},
}
# The layout an LFAV root has here: the release's label folder as it ships (LFAV_dataset/, the
# WEAK_LABEL_FILES and TRUTH_FILES are relative to it) and the feature folders under feats/, named as
# src/scripts/train_s3.sh:4-6 names them; --audio_dir / --video_dir / --st_dir point elsewhere.
LABEL_FOLDER = "LFAV_dataset"
FEATURES_FOLDER = "feats"
FEATURE_FOLDERS = {"audio": "audio-feat-vggish-align", "frames": "visual-feat-res18-align",
                   "snippets": "visual-feat-r2plus1d-align"}

# tab-separated with a header row (the release reads them with `pd.read_csv(..., sep='\t')`)
WEAK_COLUMNS = ("filename", "event_labels")
TRUTH_COLUMNS = ("filename", "onset", "offset", "event_labels")


def label_paths(root):
    """{split: {"video"/"audio"/"visual": weak file, and for val/test "audio_truth"/"visual_truth"}},
    the paths of an LFAV root's label files (WEAK_LABEL_FILES, TRUTH_FILES under LABEL_FOLDER)."""
    paths = {split: {kind: os.path.join(root, LABEL_FOLDER, name) for kind, name in files.items()}
             for split, files in WEAK_LABEL_FILES.items()}
    for split, files in TRUTH_FILES.items():
        paths[split].update({f"{modality}_truth": os.path.join(root, LABEL_FOLDER, name)
                             for modality, name in files.items()})
    return paths


def feature_dirs(root):
    """{kind: folder of its <id>.npy files} of an LFAV root, for the kinds of FEATURE_KINDS."""
    return {kind: os.path.join(root, FEATURES_FOLDER, FEATURE_FOLDERS[kind]) for kind in FEATURE_KINDS}


class LFAVDataError(UserError):
    """Bad LFAV input; the message names the file and the line(s)."""


class LFAVDataWarning(UserWarning):
    """A defect of the kind the LFAV release's own files have, ignored as the release ignores it."""


def _read_rows(csv_path, columns):
    """[(line number, {column: text})] of a tab-separated file with a header; line 1 is the header.

    Blank lines are skipped; a missing column or a row with the wrong number of fields is an error.
    """
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LFAVDataError(f"{csv_path}: cannot be read ({error})") from None
    if not lines:
        raise LFAVDataError(f"{csv_path}: empty file, expected the header {', '.join(columns)}")
    header = lines[0].split("\t")
    missing = [column for column in columns if column not in header]
    if missing:
        raise LFAVDataError(f"{csv_path}: missing column(s) {', '.join(missing)} "
                            f"(header: {', '.join(header)}; tab-separated expected)")
    rows, malformed = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            malformed.append(f"line {number}: {len(fields)} fields, the header has {len(header)}")
            continue
        rows.append((number, dict(zip(header, fields))))
    _raise_if_any(csv_path, malformed)
    return rows


def _raise_if_any(csv_path, problems):
    """One error for all `problems` of a file: one line for one problem, else a list by line."""
    if len(problems) == 1:
        raise LFAVDataError(f"{csv_path}: {problems[0]}")
    if problems:
        raise LFAVDataError(f"{csv_path}: {len(problems)} bad row(s):\n{bulleted(problems)}")


def _filename_problem(number, filename):
    """Why a filename cannot name a video, or None; names are matched exactly (evaluation.py:144)."""
    if not filename:
        return f"line {number}: empty filename"
    if filename != filename.strip():
        return f"line {number}: filename {filename!r} has leading or trailing whitespace"
    return None


def read_weak_labels(csv_path, classes=LFAV_CLASSES):
    """{filename: (35,) float32 0/1} of a weak-label file, in file order (dataloader.py:11-33).

    `event_labels` is a comma-joined list of class names; each is stripped, 'silent' adds nothing,
    and other unknown names are skipped with one LFAVDataWarning, as the release skips them. An
    empty label field, a repeated filename or a bad filename is an LFAVDataError naming the line.
    classes: the class axis; another list than LFAV's (a user's own, --classes) makes an unknown
    name an LFAVDataError too, since there it is a typo rather than a known defect of the release.
    """
    class_index = {name: index for index, name in enumerate(classes)}
    own_classes = tuple(classes) != LFAV_CLASSES
    labels, first_line, problems, skipped = {}, {}, [], []
    for number, row in _read_rows(csv_path, WEAK_COLUMNS):
        filename, names = row["filename"], row["event_labels"]
        problem = _filename_problem(number, filename)
        if problem is None and filename in first_line:
            problem = f"line {number}: filename {filename!r} already on line {first_line[filename]}"
        if problem is None and not names.strip():
            problem = f"line {number}: no event_labels (write {SILENT_LABEL!r} for none)"
        if problem is not None:
            problems.append(problem)
            continue
        first_line[filename] = number
        labels[filename] = np.zeros(len(class_index), dtype=np.float32)
        for name in (name.strip() for name in names.split(",")):
            if name in class_index:
                labels[filename][class_index[name]] = 1.0
            elif name != SILENT_LABEL:
                skipped.append(f"line {number}: {name!r}")
    if own_classes:
        problems += [f"{line}: not a class of the --classes list" for line in skipped]
    _raise_if_any(csv_path, problems)
    if skipped:
        warnings.warn(f"{csv_path}: {len(skipped)} unknown class name(s) skipped, as the LFAV release "
                      f"skips them:\n{bulleted(skipped)}", LFAVDataWarning, stacklevel=2)
    return labels


def read_split_weak_labels(video_csv, audio_csv, visual_csv, classes=LFAV_CLASSES):
    """{"video", "audio", "visual": {filename: (35,) float32}} of one split's three weak files.

    The release pairs the three files' rows by position (dataloader.py:100-103) and takes the video
    order of evaluation from them (evaluation.py:144, 160), so they must list the same filenames in
    the same order; the first difference is an LFAVDataError naming both files and the line.
    """
    split = {"video": read_weak_labels(video_csv, classes), "audio": read_weak_labels(audio_csv, classes),
             "visual": read_weak_labels(visual_csv, classes)}
    order = list(split["video"])
    for kind, path in (("audio", audio_csv), ("visual", visual_csv)):
        other = list(split[kind])
        if other != order:
            row = next((i for i, (a, b) in enumerate(zip(order, other)) if a != b), min(len(order), len(other)))
            raise LFAVDataError(f"{path}: video row {row + 1} differs from {video_csv} "
                                f"({len(other)} and {len(order)} videos; the rows pair by position)")
    return split


def snippet_counts(audio_feature_dir, filenames):
    """{filename: T}, the number of 1-s snippets of each video: the rows of its audio feature.

    The release scores a video over `repeat_len = audio.size()[1]` snippets (evaluation.py:124) of
    the audio file `<first 11 characters>.npy` (dataloader.py:69-70). Only the header is read.
    """
    counts = {}
    for filename in filenames:
        path = os.path.join(audio_feature_dir, filename[:VIDEO_ID_LENGTH] + ".npy")
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as error:
            raise LFAVDataError(f"{path}: audio feature of {filename!r} cannot be read ({error})") from None
        if len(shape) != 2 or shape[0] == 0:
            raise LFAVDataError(f"{path}: audio feature of {filename!r} has shape {shape}, expected (T, 128)")
        counts[filename] = shape[0]
    return counts


def _parse_second(number, column, text, problems):
    """A non-negative int of `text`, or None after recording why not."""
    if not re.fullmatch(r"\+?\d+", text.strip()):
        problems.append(f"line {number}: {column} {text!r} is not a non-negative integer (seconds)")
        return None
    return int(text)


def _truth_rows(csv_path, classes):
    """[(line, filename, onset, offset, class index)] of a truth file, every row validated."""
    class_index = {name: index for index, name in enumerate(classes)}
    parsed, problems = [], []
    for number, row in _read_rows(csv_path, TRUTH_COLUMNS):
        found = len(problems)
        filename_problem = _filename_problem(number, row["filename"])
        if filename_problem is not None:
            problems.append(filename_problem)
        onset = _parse_second(number, "onset", row["onset"], problems)
        offset = _parse_second(number, "offset", row["offset"], problems)
        name = row["event_labels"]
        if name not in class_index:   # matched exactly: the release does not strip here
            problems.append(f"line {number}: unknown class {name!r}")
        if len(problems) == found:
            parsed.append((number, row["filename"], onset, offset, class_index[name]))
    _raise_if_any(csv_path, problems)
    return parsed


def _warn_ignored(csv_path, rows, why):
    if rows:
        lines = [f"line {number}: {filename!r} onset {onset} offset {offset}"
                 for number, filename, onset, offset, _ in rows]
        warnings.warn(f"{csv_path}: {len(rows)} row(s) {why}, ignored as the LFAV release ignores them:\n"
                      f"{bulleted(lines)}", LFAVDataWarning, stacklevel=3)


def read_truth(csv_path, num_snippets, classes=LFAV_CLASSES):
    """{filename: (35, T) float32 0/1} snippet truth of one modality for every video of `num_snippets`
    ({filename: T}, e.g. from `snippet_counts`), in its order.

    Snippets onset..offset inclusive of a row are positive, cut at T (evaluation.py:141-172); rows of
    one video and class are OR-ed; a video without rows is all zero. Rows with offset < onset and rows
    of videos not in `num_snippets` add nothing and are reported in an LFAVDataWarning. classes: the
    class axis (LFAV's, or a user's own list).
    """
    truth = {filename: np.zeros((len(classes), count), dtype=np.float32)
             for filename, count in num_snippets.items()}
    rows = _truth_rows(csv_path, classes)
    _warn_ignored(csv_path, [row for row in rows if row[3] < row[2]], "have offset < onset")
    _warn_ignored(csv_path, [row for row in rows if row[1] not in truth], "name no video being read")
    for _, filename, onset, offset, cls in rows:
        if filename in truth:
            truth[filename][cls, onset:offset + 1] = 1.0   # inclusive offset; empty when offset < onset
    return truth
