"""Lay out your own labelled clips as LLP is, so that main_DHHN.py trains and scores on them.

    python scripts/make_own_dataset.py --labels my_labels.csv --eval_audio my_eval_audio.csv \\
        --eval_visual my_eval_visual.csv --out_dir my_data

--labels: one row per 10-s clip, tab-separated `filename<TAB>event_labels` (class names joined by
commas), the filename being the clip's file name without its extension. --eval_audio /
--eval_visual: the segment truth of the clips you labelled by hand, `filename onset offset
event_labels` (seconds 0-10, one row per event), as LLP's eval files. The hand-labelled clips are
split between val (checkpoint selection) and test (the reported numbers) by --test_share, the
others are the training split; val and test keep their weak labels from --labels.

Writes under --out_dir: data/AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv,
AVVP_eval_audio.csv, AVVP_eval_visual.csv and classes.txt (the --classes file: that of --classes
if given, else every name of --labels, sorted). Then extract the clips' features into the same
folder and train with --classes and --feature_names filename (docs/OWN_VIDEOS.md, "Your own
classes").
"""
import argparse
import os
import shutil
import sys

import numpy as np

from avvp_data.annotations import read_eval_rows, read_video_labels
from avvp_data.datasets import read_class_list
from avvp_data.llp import (
    EVAL_AUDIO_CSV,
    EVAL_COLUMNS,
    EVAL_VISUAL_CSV,
    LABEL_COLUMNS,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
)
from utils.errors import UsageError, UserError
from utils.io import atomic_write_text

CLASSES_FILE = "classes.txt"
EXIT_USER_ERROR = 2


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="weak labels of every clip (filename, event_labels)")
    parser.add_argument("--eval_audio", required=True, help="audio segment truth of the hand-labelled clips")
    parser.add_argument("--eval_visual", required=True, help="visual segment truth of the hand-labelled clips")
    parser.add_argument("--out_dir", required=True, help="root of the LLP layout to write (data/, classes.txt)")
    parser.add_argument("--classes", default=None,
                        help="a class-list file fixing the names and their order (default: the names of --labels, "
                             "sorted)")
    parser.add_argument("--test_share", type=float, default=0.5,
                        help="share of the hand-labelled clips that go to test; the rest is val")
    parser.add_argument("--seed", type=int, default=0, help="seed of the val / test split")
    return parser


def label_rows(path):
    """[(filename, [class names])] of a label file, as written, without a class list."""
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    if not lines or lines[0].split("\t")[:2] != list(LABEL_COLUMNS):
        raise UsageError(f"--labels {path}: the first line must be the header {chr(9).join(LABEL_COLUMNS)!r} "
                         "(tab-separated)")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1]:
            raise UsageError(f"--labels {path} line {number}: a filename and its event_labels are needed")
        rows.append((fields[0], fields[1].split(",")))
    return rows


def split_hand_labelled(names, test_share, seed):
    """(val names, test names) of the hand-labelled clips, each at least one, in file order."""
    if len(names) < 2:
        raise UsageError(f"the eval files label {len(names)} clip(s); val and test need at least one each")
    order = np.random.default_rng(seed).permutation(len(names))
    num_test = min(len(names) - 1, max(1, round(test_share * len(names))))
    test = set(order[:num_test].tolist())
    return ([name for i, name in enumerate(names) if i not in test],
            [name for i, name in enumerate(names) if i in test])


def write_labels(path, names, labels_of):
    atomic_write_text("\n".join(["\t".join(LABEL_COLUMNS)] + [f"{name}\t{labels_of[name]}" for name in names]) + "\n",
                      path)


def main(args):
    if not 0 < args.test_share < 1:
        raise UsageError(f"--test_share {args.test_share}: must lie strictly between 0 and 1")
    rows = label_rows(args.labels)
    classes = (read_class_list(os.path.abspath(args.classes)) if args.classes
               else tuple(sorted({name for _, names in rows for name in names})))
    classes_path = os.path.join(args.out_dir, CLASSES_FILE)
    atomic_write_text("\n".join(classes) + "\n", classes_path)
    # read as main_DHHN.py will read them: unknown classes, repeats and blanks are named here
    filenames, _ = read_video_labels(args.labels, classes)
    labels_of = {name: ",".join(names) for name, names in rows}
    labelled = {flag: {row.filename for row in read_eval_rows(path, classes)}
                for flag, path in (("--eval_audio", args.eval_audio), ("--eval_visual", args.eval_visual))}
    for flag, named in labelled.items():
        unknown = sorted(named - set(filenames))
        if unknown:
            raise UsageError(f"{flag}: {len(unknown)} clip(s) are not in --labels (e.g. {', '.join(unknown[:3])})")
    hand_labelled = [name for name in filenames if name in labelled["--eval_audio"] | labelled["--eval_visual"]]
    val, test = split_hand_labelled(hand_labelled, args.test_share, args.seed)
    train = [name for name in filenames if name not in set(hand_labelled)]
    if not train:
        raise UsageError("every clip of --labels is hand-labelled: none is left to train on")
    data = os.path.join(args.out_dir, "data")
    for name, names in ((LABEL_TRAIN_CSV, train), (LABEL_VAL_CSV, val), (LABEL_TEST_CSV, test)):
        write_labels(os.path.join(data, name), names, labels_of)
    for source, name in ((args.eval_audio, EVAL_AUDIO_CSV), (args.eval_visual, EVAL_VISUAL_CSV)):
        shutil.copyfile(source, os.path.join(data, name))
    print(f"{args.out_dir}: {len(train)} train, {len(val)} val, {len(test)} test clips of {len(classes)} classes "
          f"({classes_path}); eval columns {', '.join(EVAL_COLUMNS)}")
    return {"train": train, "val": val, "test": test, "classes": classes}


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
