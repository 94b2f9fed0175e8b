"""Re-score exported predictions against the eval files and print the published table (PROTOCOL.md §9).

Every row of an export (main_DHHN.py --mode test --export_dir DIR), from its event files:
    python scripts/rescore.py --export_dir DIR --label_csv data/AVVP_test_pd.csv \
        --eval_audio_csv data/AVVP_eval_audio.csv --eval_visual_csv data/AVVP_eval_visual.csv
One pair of event files (eval format: filename, onset, offset, event_labels; e.g. another
method's output), scored on the videos of --label_csv:
    python scripts/rescore.py --pred_audio_csv A.csv --pred_visual_csv V.csv --label_csv data/AVVP_test_pd.csv ...
Every row of an export under another paper's decision rule (PROTOCOL.md §14), from its exported
probabilities (.npz); cmpae tunes per-class visual thresholds on a val export of the same rows:
    python scripts/rescore.py --export_dir DIR --rule coleaf ...
    python scripts/rescore.py --export_dir TEST_DIR --rule cmpae --tune_on VAL_DIR ...

The videos scored are those of --label_csv (a video without predicted events counts as predicting
nothing; under --rule every one must be in the .npz); with --export_dir and no --label_csv, those
of each row's .npz.
"""
import argparse
import json
import os
import sys
import textwrap

import numpy as np

from avvp_data.annotations import read_segment_truth, read_video_labels
from avvp_data.llp import CLASSES
from reporting.decision_rules import (
    PROBABILITY_SHAPES,
    RULES,
    TUNING_SPLIT,
    DecisionRuleError,
    load_outputs,
    score_rule,
    tune_visual_thresholds,
)
from reporting.export import MANIFEST_FILE, load_predictions, rescore_event_files
from reporting.tables import format_table, per_class_table
from utils.errors import UsageError, UserError
from utils.io import atomic_write_json

TITLE_WIDTH = 100   # tuned thresholds are wrapped under a table's title at this width


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--export_dir", help="an --export_dir of main_DHHN.py: re-score every row in it")
    source.add_argument("--pred_audio_csv", help="predicted audio events (eval format); needs --pred_visual_csv")
    parser.add_argument("--pred_visual_csv", help="predicted visual events (eval format)")
    parser.add_argument("--label_csv", default=None, help="weak-label file of the split: its videos are scored")
    parser.add_argument("--eval_audio_csv", default="data/AVVP_eval_audio.csv", help="audio segment truth")
    parser.add_argument("--eval_visual_csv", default="data/AVVP_eval_visual.csv", help="visual segment truth")
    parser.add_argument("--rule", choices=tuple(RULES), default=None,
                        help="re-derive the segment predictions from the exported probabilities (.npz of "
                             "--export_dir) under this paper's decision rule (PROTOCOL.md §14); default: "
                             "score the exported event files, i.e. the run's own rule")
    parser.add_argument("--tune_on", default=None,
                        help="a val --export_dir with the same rows: tunes the per-class thresholds of "
                             "--rule cmpae (val exports only)")
    parser.add_argument("--per_class", action="store_true", help="also print per-class F1")
    parser.add_argument("--out_json", default=None, help="write the tables there (fractions, like the run summaries)")
    return parser


def check_flags(args):
    """UsageError for flags that cannot work together."""
    if args.pred_audio_csv and (not args.pred_visual_csv or not args.label_csv):
        raise UsageError("--pred_audio_csv needs --pred_visual_csv and --label_csv")
    if args.rule is not None and not args.export_dir:
        raise UsageError(f"--rule {args.rule} needs --export_dir: "
                         "the rules start from the exported probabilities (.npz)")
    tunes = args.rule is not None and RULES[args.rule].tunes_thresholds
    if tunes and not args.tune_on:
        raise UsageError(f"--rule {args.rule} tunes per-class visual thresholds on val: give --tune_on VAL_EXPORT_DIR")
    if args.tune_on and not tunes:
        raise UsageError(f"--tune_on is for a rule that tunes thresholds "
                         f"({', '.join(name for name, rule in RULES.items() if rule.tunes_thresholds)}), "
                         f"not {args.rule or 'the event files'}")


def read_manifest(export_dir, flag):
    """manifest.json of an export, with "rows" as {row name: {kind: path joined to export_dir}}."""
    manifest_path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise UsageError(f"{flag} {export_dir}: no {MANIFEST_FILE}")
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        rows = {name: {kind: os.path.join(export_dir, value) for kind, value in files.items() if kind != "gating"}
                for name, files in manifest["rows"].items()}
    except (ValueError, KeyError, AttributeError, TypeError) as error:
        raise UsageError(f"{manifest_path}: not a manifest of main_DHHN.py --export_dir ({error!r})") from None
    return {**manifest, "rows": rows}


# ---------------------------------------------------------------- the run's own rule: event files

def event_file_scores(args):
    """(row name, title, metrics) of every event-file source, as exported (the run's own rule)."""
    label_filenames = read_video_labels(args.label_csv)[0] if args.label_csv else None
    if args.pred_audio_csv:
        sources = [(os.path.basename(args.pred_audio_csv), args.pred_audio_csv, args.pred_visual_csv, label_filenames)]
    else:
        sources = [(name, files["audio_csv"], files["visual_csv"],
                    label_filenames if label_filenames is not None else load_predictions(files["npz"])["filenames"])
                   for name, files in read_manifest(args.export_dir, "--export_dir")["rows"].items()]
    for name, audio_csv, visual_csv, filenames in sources:
        metrics = rescore_event_files(audio_csv, visual_csv, args.eval_audio_csv, args.eval_visual_csv, filenames)
        yield name, f"{name} ({len(filenames)} videos)", metrics


# ---------------------------------------------------------------- another paper's rule: probabilities

def select_videos(outputs, filenames, npz_path):
    """`outputs` restricted to `filenames`, in that order; UsageError naming the file if one is missing."""
    index = {name: i for i, name in enumerate(outputs["filenames"])}
    missing = [name for name in filenames if name not in index]
    if missing:
        raise UsageError(f"{npz_path}: lacks {len(missing)} video(s) of --label_csv, e.g. {missing[0]}")
    rows = np.array([index[name] for name in filenames], dtype=np.int64)
    return {**outputs, **{key: outputs[key][rows] for key in PROBABILITY_SHAPES}, "filenames": list(filenames)}


def tuning_rows(args):
    """{row name: .npz path} of the --tune_on export, refused unless it is a val export (PROTOCOL.md §14)."""
    manifest = read_manifest(args.tune_on, "--tune_on")
    if manifest.get("split") != TUNING_SPLIT:
        raise UsageError(f"--tune_on {args.tune_on}: an export of split {manifest.get('split')!r}; "
                         f"thresholds are tuned on a {TUNING_SPLIT} export only (PROTOCOL.md §14)")
    return {name: files["npz"] for name, files in manifest["rows"].items()}


def tune(args, rule, name, npz_paths, scored):
    """Per-class visual thresholds of row `name`, tuned on its --tune_on (val) outputs."""
    if name not in npz_paths:
        raise UsageError(f"--tune_on {args.tune_on}: has no row {name!r} to tune its thresholds on "
                         f"(it has {', '.join(map(repr, npz_paths))})")
    outputs = load_outputs(npz_paths[name])
    overlap = set(outputs["filenames"]) & set(scored["filenames"])
    if overlap and scored["split"] != TUNING_SPLIT:
        raise UsageError(f"--tune_on {args.tune_on}: shares {len(overlap)} video(s) with the {scored['split']} "
                         f"videos being scored, e.g. {sorted(overlap)[0]}")
    gt_audio = read_segment_truth(args.eval_audio_csv, outputs["filenames"])
    gt_visual = read_segment_truth(args.eval_visual_csv, outputs["filenames"])
    try:
        return tune_visual_thresholds(outputs, gt_audio, gt_visual, outputs["split"], rule)
    except DecisionRuleError as error:
        raise UsageError(f"{npz_paths[name]}: {error}") from None


def rule_title(name, num_videos, rule, thresholds, args, scored_split):
    """A table title naming the rule, and for a tuned rule its thresholds and where they were tuned."""
    protocol = "the DHHN protocol" if rule.is_protocol else "not the DHHN protocol"
    title = f"{name} ({num_videos} videos) [rule: {rule.name}, {protocol}]"
    if thresholds is None:
        return title
    themselves = ", the scored videos themselves" if scored_split == TUNING_SPLIT else ""
    where = f"tuned on {TUNING_SPLIT} ({args.tune_on}{themselves})"
    # a class and its value are joined by a no-break space while wrapping, so they stay on one line
    listing = ", ".join(f"{cls}\u00a0{value:.2f}" for cls, value in zip(CLASSES, thresholds))
    wrapped = textwrap.fill(f"visual gate thresholds {where}: {listing}", TITLE_WIDTH, subsequent_indent="  ",
                            break_long_words=False, break_on_hyphens=False)
    return title + "\n" + wrapped.replace("\u00a0", " ")


def thresholds_record(rule, thresholds):
    """The thresholds a row was scored with, for --out_json."""
    visual = rule.visual_gate_threshold if thresholds is None else dict(zip(CLASSES, map(float, thresholds)))
    return {"segment": rule.segment_threshold, "audio_gate": rule.audio_gate_threshold, "visual_gate": visual}


def rule_scores(args, record):
    """(row name, title, metrics) of every row of --export_dir under --rule; fills record[row] with
    the thresholds used."""
    rule = RULES[args.rule]
    rows = read_manifest(args.export_dir, "--export_dir")["rows"]
    npz_for_tuning = tuning_rows(args) if rule.tunes_thresholds else None
    label_filenames = read_video_labels(args.label_csv)[0] if args.label_csv else None
    truth = {}   # filenames -> (gt_audio, gt_visual); the rows of one export share their videos
    for name, files in rows.items():
        outputs = load_outputs(files["npz"])
        if label_filenames is not None:
            outputs = select_videos(outputs, label_filenames, files["npz"])
        filenames = tuple(outputs["filenames"])
        if filenames not in truth:
            truth[filenames] = (read_segment_truth(args.eval_audio_csv, list(filenames)),
                                read_segment_truth(args.eval_visual_csv, list(filenames)))
        thresholds = tune(args, rule, name, npz_for_tuning, outputs) if rule.tunes_thresholds else None
        metrics = score_rule(outputs, *truth[filenames], rule, thresholds)
        record[name] = thresholds_record(rule, thresholds)
        yield name, rule_title(name, len(filenames), rule, thresholds, args, outputs["split"]), metrics


def main(args):
    """{row name: metrics dict} of every source; prints one table per row."""
    check_flags(args)
    thresholds_used = {}
    scores = event_file_scores(args) if args.rule is None else rule_scores(args, thresholds_used)
    results = {}
    for name, title, metrics in scores:
        results[name] = metrics
        print(format_table(metrics, title=title))
        if args.per_class:
            print(per_class_table(metrics, title=f"{title.splitlines()[0]}: per-class F1"))
    if args.out_json:
        tables = {name: {key: value for key, value in metrics.items() if key not in ("per_video", "per_class")}
                  for name, metrics in results.items()}
        extra = {} if args.rule is None else {
            "rule": args.rule, "rule_description": RULES[args.rule].gate_description(),
            "protocol_default": RULES[args.rule].is_protocol, "tuned_on": args.tune_on, "thresholds": thresholds_used}
        atomic_write_json({"tables": tables, **extra}, args.out_json)
    return results


def cli(argv=None):
    """Run from the command line; a user error is one line on stderr and exit status 2."""
    try:
        main(get_args_parser().parse_args(argv))
    except (UserError, OSError) as error:   # OSError: a missing eval or label file, named by the error
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
