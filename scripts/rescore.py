"""Re-score exported predicted events against the eval files and print the published table (PROTOCOL.md §9).

Every row of an export (main_DHHN.py --mode test --export_dir DIR):
    python scripts/rescore.py --export_dir DIR --label_csv data/AVVP_test_pd.csv \
        --eval_audio_csv data/AVVP_eval_audio.csv --eval_visual_csv data/AVVP_eval_visual.csv
One pair of event files (eval format: filename, onset, offset, event_labels; e.g. another
method's output), scored on the videos of --label_csv:
    python scripts/rescore.py --pred_audio_csv A.csv --pred_visual_csv V.csv --label_csv data/AVVP_test_pd.csv ...

The videos scored are those of --label_csv (a video without predicted events counts as predicting
nothing); with --export_dir and no --label_csv, those of each row's .npz.
"""
import argparse
import json
import os
import sys

# Scripts run as `python scripts/<name>.py` from the repository root; put the root on the path
# so that `utils` imports without installing the project.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.annotations import read_video_labels  # noqa: E402
from utils.eval_metrics import format_table  # noqa: E402
from utils.export import MANIFEST_FILE, load_predictions, rescore_event_files  # noqa: E402
from utils.io import atomic_write_json  # noqa: E402
from utils.tables import per_class_table  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--export_dir", help="an --export_dir of main_DHHN.py: re-score every row in it")
    source.add_argument("--pred_audio_csv", help="predicted audio events (eval format); needs --pred_visual_csv")
    parser.add_argument("--pred_visual_csv", help="predicted visual events (eval format)")
    parser.add_argument("--label_csv", default=None, help="weak-label file of the split: its videos are scored")
    parser.add_argument("--eval_audio_csv", default="data/AVVP_eval_audio.csv", help="audio segment truth")
    parser.add_argument("--eval_visual_csv", default="data/AVVP_eval_visual.csv", help="visual segment truth")
    parser.add_argument("--per_class", action="store_true", help="also print per-class F1")
    parser.add_argument("--out_json", default=None, help="write the tables there (fractions, like the run summaries)")
    return parser


def _sources(args):
    """[(row name, audio csv, visual csv, filenames)] to score."""
    label_filenames = read_video_labels(args.label_csv)[0] if args.label_csv else None
    if args.pred_audio_csv:
        if not args.pred_visual_csv or label_filenames is None:
            raise SystemExit("error: --pred_audio_csv needs --pred_visual_csv and --label_csv")
        return [(os.path.basename(args.pred_audio_csv), args.pred_audio_csv, args.pred_visual_csv, label_filenames)]
    manifest_path = os.path.join(args.export_dir, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise SystemExit(f"error: --export_dir {args.export_dir}: no {MANIFEST_FILE}")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    sources = []
    for name, files in manifest["rows"].items():
        def path(key):
            return os.path.join(args.export_dir, files[key])
        filenames = label_filenames if label_filenames is not None else load_predictions(path("npz"))["filenames"]
        sources.append((name, path("audio_csv"), path("visual_csv"), filenames))
    return sources


def main(args):
    """{row name: metrics dict} of every source; prints one table per row."""
    results = {}
    for name, audio_csv, visual_csv, filenames in _sources(args):
        metrics = rescore_event_files(audio_csv, visual_csv, args.eval_audio_csv, args.eval_visual_csv, filenames)
        results[name] = metrics
        print(format_table(metrics, title=f"{name} ({len(filenames)} videos)"))
        if args.per_class:
            print(per_class_table(metrics, title=f"{name}: per-class F1"))
    if args.out_json:
        atomic_write_json({"tables": {name: {key: value for key, value in metrics.items()
                                              if key not in ("per_video", "per_class")}
                                       for name, metrics in results.items()}}, args.out_json)
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
