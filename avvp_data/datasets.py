"""Which classes a run parses: LLP's 25 by default, or a user's own list (`--classes FILE`; PROTOCOL.md §16).

The class list is the one thing about a dataset that every part must agree on: it orders the
columns of the weak labels, the class axis of the segment truth and of every model output, the
rows of the per-class table and the names in exported events. A checkpoint records the list it
was trained on (model_config["classes"]), and val / test / estimate_labels / parse_video refuse a
model on data of another list, naming both (`check_same_classes`). Videos keep LLP's layout:
10 segments of 1 s (docs/OWN_VIDEOS.md, "Your own classes").

A class-list file holds one class name per line, in the order of the model's class axis; blank
lines and lines starting with # are skipped. The names are those of the label and eval files,
matched exactly.
"""
import functools
import os
from dataclasses import dataclass

from avvp_data.lfav import FEATURE_KINDS as LFAV_FEATURE_KINDS
from avvp_data.lfav import LFAV_CLASSES, SNIPPET_SECONDS
from avvp_data.llp import CLASSES
from utils.errors import UserError, bulleted

# how many names a message shows before "..."
NAMES_SHOWN = 4


class ClassListError(UserError):
    """A --classes file that cannot be a class list; names the file and the lines."""


@functools.cache
def read_class_list(path):
    """The class names of a class-list file, in order (cached: one run reads it once, so that every
    part sees the same list even if the file changes meanwhile)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ClassListError(f"--classes {path}: cannot read it ({error})") from None
    names, problems, first_line = [], [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line != line.strip():
            problems.append(f"line {number}: {line!r} has blanks around the name (names must match exactly)")
        elif "," in line or "\t" in line:
            problems.append(f"line {number}: {line!r} holds a comma or a tab, which the label files use as separators")
        elif line in first_line:
            problems.append(f"line {number}: {line!r} is already on line {first_line[line]}")
        else:
            first_line[line] = number
            names.append(line)
    if problems:
        raise ClassListError(f"--classes {path}: {len(problems)} bad line(s):\n{bulleted(problems)}")
    if len(names) < 2:
        raise ClassListError(f"--classes {path}: {len(names)} class name(s); a class list needs at least 2")
    return tuple(names)


def dataset_classes(classes_file, dataset="llp"):
    """The class names of a run: those of the --classes file, else the dataset's own (LLP's 25,
    LFAV's 35)."""
    return DATASETS[dataset].classes if classes_file is None else read_class_list(os.path.abspath(classes_file))


def describe_classes(classes):
    """"LLP's 25 classes" or "7 classes (Dog, Cat, Piano, Rain, ...)", for messages."""
    classes = tuple(classes)
    for dataset in DATASETS.values():
        if classes == dataset.classes:
            return f"{dataset.title}'s {len(classes)} classes"
    shown = ", ".join(classes[:NAMES_SHOWN]) + (", ..." if len(classes) > NAMES_SHOWN else "")
    return f"{len(classes)} classes ({shown})"


def recorded_classes(model_config):
    """The classes a checkpoint's model was trained on; files written before the list was recorded,
    and the releases, are LLP models."""
    return tuple(model_config.get("classes", CLASSES))


def check_same_classes(trained, data, where, error=UserError):
    """Raise `error` naming both lists when a model trained on `trained` meets data of `data`: the
    class axes would be matched by position, and every per-class number would be of another class."""
    trained, data = tuple(trained), tuple(data)
    if trained == data:
        return
    same_names = sorted(trained) == sorted(data)
    why = " (the same names in another order)" if same_names else ""
    raise error(f"{where} was trained on {describe_classes(trained)}, the data has {describe_classes(data)}{why}; "
                "pass the --classes file it was trained with")


# ------------------------------------------------------------------------------------------------
# what a dataset is (--dataset)

@dataclass(frozen=True)
class DatasetDescription:
    """What the modes need to know of a dataset, in one place (PROTOCOL.md §16).

    segments: a video's fixed number of segments (LLP: 10) or None for videos of any length, which
    are then padded and masked (avvp_data/tensor_split.PaddedSplit); segment_seconds: the length of
    one; weak_labels: the weak-label kinds its training files give ("video" for LLP; LFAV also
    "audio" and "visual", which train the modality predictions); feature_dims: kind -> per-row width
    of its published features; frames_per_segment: rows of the frame features per segment; metrics:
    which scorer its val/test use ("llp": utils/eval_metrics.py, "lfav": utils/lfav_metrics.py).
    """
    name: str
    title: str
    classes: tuple
    segments: int | None
    segment_seconds: float
    weak_labels: tuple
    feature_dims: dict
    frames_per_segment: int
    metrics: str
    modes: tuple    # the --mode values it supports


DATASETS = {
    "llp": DatasetDescription(
        name="llp", title="LLP", classes=CLASSES, segments=10, segment_seconds=1.0, weak_labels=("video",),
        feature_dims={"audio": 128, "frames": 2048, "snippets": 512}, frames_per_segment=8, metrics="llp",
        modes=("train", "retrain", "val", "test", "estimate_labels")),
    "lfav": DatasetDescription(
        name="lfav", title="LFAV", classes=LFAV_CLASSES, segments=None, segment_seconds=SNIPPET_SECONDS,
        weak_labels=("video", "audio", "visual"),
        feature_dims={kind: width for kind, (_, width) in LFAV_FEATURE_KINDS.items()}, frames_per_segment=1,
        metrics="lfav", modes=("train", "val", "test")),
}
