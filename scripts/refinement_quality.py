"""Precision and recall of label-refinement flags against the planted truth of a synthetic LLP.

    python scripts/refinement_quality.py --root data/synthetic \
        --flags models/refinement/DHHN_ma_refined_labels.csv

Prints, per modality, how many labelled (video, class) pairs were flagged, how many of those
really lack that modality, and what random flagging of the same count would reach.
"""
import argparse
import os
import sys

from avvp_data.annotations import read_video_labels
from avvp_data.llp import LABEL_TRAIN_CSV
from avvp_data.refinement_flags import RefinementError, read_refined_labels
from avvp_data.synthetic_llp import load_planted_truth
from engine.label_refinement import flag_quality
from utils.io import atomic_write_json


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/synthetic", help="synthetic LLP root (holds data/synthetic_truth.npz)")
    parser.add_argument("--flags", required=True, help="flags from --mode estimate_labels (.csv or .pkl)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser


def format_quality(quality):
    lines = [f"{'modality':<8}{'labelled':>9}{'wrong':>7}{'flagged':>8}{'precision':>10}{'recall':>8}"
             f"{'random P':>10}{'random R':>10}"]
    for modality, row in quality.items():
        lines.append(f"{modality:<8}{row['labelled']:>9}{row['really_wrong']:>7}{row['flagged']:>8}"
                     f"{100 * row['precision']:>10.1f}{100 * row['recall']:>8.1f}"
                     f"{100 * row['random_precision']:>10.1f}{100 * row['random_recall']:>10.1f}")
    return "\n".join(lines)


def main(args):
    filenames, labels = read_video_labels(os.path.join(args.root, "data", LABEL_TRAIN_CSV))
    planted_names, planted_audio, planted_visual = load_planted_truth(args.root, "train")
    if list(planted_names) != list(filenames):
        raise RefinementError(f"{args.root}: planted truth and {LABEL_TRAIN_CSV} list different videos")
    audio_flags, visual_flags = read_refined_labels(args.flags, filenames)
    quality = flag_quality(audio_flags, visual_flags, labels, planted_audio, planted_visual)
    print(format_quality(quality))
    if args.json:
        atomic_write_json(quality, args.json)
    return quality


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (RefinementError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
