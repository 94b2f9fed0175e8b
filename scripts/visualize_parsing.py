"""Draw parsing timelines (PNG) of chosen videos from exported predictions; no model needed.

    python scripts/visualize_parsing.py --predictions runs/test/dhhn_dual_best_audio_best_visual.npz \
        --eval_audio_csv data/AVVP_eval_audio.csv --eval_visual_csv data/AVVP_eval_visual.csv \
        --label_csv data/AVVP_test_pd.csv --worst 5 --metric seg_type --out_dir pictures/

Predictions are the .npz files written by `main_DHHN.py --mode test --export_dir DIR`. With
--compare OTHER.npz (e.g. HAN against DHHN, or two checkpoints) each picture shows the
predictions side by side; --rank_by gain then orders videos by how much OTHER gains over
--predictions. Videos are chosen by name (--videos) or as the N best / worst by a per-video
score (--metric: seg_/evt_ + audio, visual, av, event, or type = mean of audio, visual, av).
"""
import argparse
import os
import re
import sys

import numpy as np

from avvp_data.annotations import read_segment_truth, read_video_labels
from avvp_data.llp import CLASSES
from reporting.export import load_predictions
from reporting.visualize import Panel, rank_videos, render_parsing
from utils.errors import UsageError, UserError
from utils.eval_metrics import LEVELS, SCORED_MODALITIES, VIDEO_COLUMNS, evaluate_split, gates

EXIT_USER_ERROR = 2
METRICS = tuple(f"{level}_{column}" for level in LEVELS for column in VIDEO_COLUMNS + ("type",))


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="exported predictions (.npz from --export_dir)")
    parser.add_argument("--compare", nargs="+", default=[],
                        help="further exported predictions of the same videos, drawn beside --predictions")
    parser.add_argument("--names", nargs="+", default=None,
                        help="panel titles, one per prediction file (default: the exported row names)")
    parser.add_argument("--eval_audio_csv", default="data/AVVP_eval_audio.csv", help="audio segment truth")
    parser.add_argument("--eval_visual_csv", default="data/AVVP_eval_visual.csv", help="visual segment truth")
    parser.add_argument("--label_csv", default=None,
                        help="the split's weak-label file (optional): weak labels go into the titles, and "
                             "every exported video must be in it")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--videos", nargs="+", help="filenames of the videos to draw")
    choice.add_argument("--best", type=int, help="draw the N videos scoring highest on --metric")
    choice.add_argument("--worst", type=int, help="draw the N videos scoring lowest on --metric")
    parser.add_argument("--metric", default="seg_type", choices=METRICS, help="per-video score used to rank")
    parser.add_argument("--rank_by", default="score", choices=("score", "gain"),
                        help="score: --metric of --predictions; gain: first --compare minus --predictions")
    parser.add_argument("--no_probabilities", action="store_true", help="do not draw segment probabilities")
    parser.add_argument("--out_dir", default="pictures/", help="folder of the PNG files")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNG files")
    return parser


def per_video_scores(pred_audio, pred_visual, gt_audio, gt_visual):
    """{metric: (N,) per-video score} for METRICS; type = mean of the audio, visual and av scores."""
    per_video = evaluate_split(pred_audio, pred_visual, gt_audio, gt_visual)["per_video"]
    scores = dict(per_video)
    for level in LEVELS:
        scores[f"{level}_type"] = np.mean([per_video[f"{level}_{m}"] for m in SCORED_MODALITIES], axis=0)
    return scores


def _aligned(predictions, filenames, path):
    """Rows of an exported prediction dict reordered to `filenames`."""
    index = {name: i for i, name in enumerate(predictions["filenames"])}
    missing = [name for name in filenames if name not in index]
    if missing:
        raise UsageError(f"{path} lacks {len(missing)} video(s) of --predictions, e.g. {missing[0]}")
    order = np.array([index[name] for name in filenames])
    return {key: (value[order] if isinstance(value, np.ndarray) and value.ndim and len(value) == len(index)
                  else value) for key, value in predictions.items() if key != "filenames"}


def _gates(predictions, video):
    """The video-level probabilities that gated the segments of `video` (engine.gates)."""
    gate_audio, gate_visual = gates(predictions, predictions.get("gating", "modality"))
    return {"audio_prob": gate_audio[video], "visual_prob": gate_visual[video]}


def _file_slug(filename):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", filename)


def _score_text(scores, video):
    return "  ".join(f"{key.replace('_', ' ')} {100 * scores[key][video]:.1f}"
                     for key in ("seg_audio", "seg_visual", "seg_av", "evt_type"))


def main(args):
    paths = [args.predictions] + list(args.compare)
    if args.names is not None and len(args.names) != len(paths):
        raise UsageError(f"--names has {len(args.names)} titles for {len(paths)} prediction files")
    if args.rank_by == "gain" and not args.compare:
        raise UsageError("--rank_by gain needs --compare")
    first = load_predictions(args.predictions)
    filenames = first["filenames"]
    loaded = [first] + [_aligned(load_predictions(path), filenames, path) for path in args.compare]
    weak = None
    if args.label_csv:
        label_names, labels = read_video_labels(args.label_csv)
        weak = dict(zip(label_names, labels))
        outside = [name for name in filenames if name not in weak]
        if outside:
            raise UsageError(f"{len(outside)} exported video(s) are not in --label_csv {args.label_csv}, "
                             f"e.g. {outside[0]}")
    gt_audio = read_segment_truth(args.eval_audio_csv, filenames)
    gt_visual = read_segment_truth(args.eval_visual_csv, filenames)
    scores = [per_video_scores(p["pred_audio"], p["pred_visual"], gt_audio, gt_visual) for p in loaded]

    if args.videos:
        index = {name: i for i, name in enumerate(filenames)}
        unknown = [name for name in args.videos if name not in index]
        if unknown:
            raise UsageError(f"not among the exported videos: {', '.join(unknown)}")
        chosen = [(None, index[name]) for name in args.videos]
    else:
        ranking = scores[0][args.metric] if args.rank_by == "score" else scores[1][args.metric] - scores[0][args.metric]
        worst = args.worst is not None
        prefix = "worst" if worst else "best"
        chosen = [(f"{prefix}{rank + 1:02d}", video)
                  for rank, video in enumerate(rank_videos(ranking, args.worst if worst else args.best, worst))]

    os.makedirs(args.out_dir, exist_ok=True)
    names = args.names or [f"{p.get('row', os.path.basename(path))} ({os.path.basename(path)})"
                           for p, path in zip(loaded, paths)]
    written = []
    for prefix, video in chosen:
        filename = filenames[video]
        panels = [Panel(label=name, pred_audio=p["pred_audio"][video], pred_visual=p["pred_visual"][video],
                        frame_prob=None if args.no_probabilities else p["frame_prob"][video],
                        **_gates(p, video), subtitle=_score_text(s, video))
                  for name, p, s in zip(names, loaded, scores)]
        title = filename
        if weak is not None:
            title += "   weak labels: " + ", ".join(CLASSES[c] for c in np.flatnonzero(weak[filename]))
        out = os.path.join(args.out_dir, (f"{prefix}_" if prefix else "") + _file_slug(filename) + ".png")
        render_parsing(out, gt_audio[video], gt_visual[video], panels, title=title, dpi=args.dpi)
        print(f"{out}  {args.metric} {100 * scores[0][args.metric][video]:.1f}"
              + "".join(f" vs {100 * s[args.metric][video]:.1f}" for s in scores[1:]))
        written.append(out)
    return written


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (UserError, OSError) as error:   # OSError: a missing predictions, eval or label file, named by it
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
