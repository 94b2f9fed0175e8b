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

Before anything is scored, every input is checked and a mismatch is one line naming the files
(exit status 2): an export's row files against its manifest (reporting.export.read_export: the
split, the videos, the files' checksums), --label_csv against the export's videos, the eval
files against the videos scored, a --tune_on export against --export_dir, and --out_json.

With --export_dir the videos scored are the export's; a --label_csv given with it must list exactly
those (it then gives only their order). With --pred_audio_csv they are those of --label_csv (a
video without predicted events counts as predicting nothing).
"""
import argparse
import os
import sys
import textwrap
import warnings

import numpy as np

from avvp_data.annotations import read_eval_rows, read_segment_truth, read_video_labels
from avvp_data.datasets import describe_classes
from avvp_data.llp import CLASSES, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV
from dataloader import max_videos_without_truth
from reporting.decision_rules import (
    PROBABILITY_SHAPES,
    RULES,
    TUNING_SPLIT,
    DecisionRuleError,
    load_outputs,
    score_rule,
    tune_visual_thresholds,
)
from reporting.export import ExportError, read_export, rescore_event_files
from reporting.tables import format_table, per_class_table
from utils.errors import LLPDataWarning, UsageError, UserError
from utils.io import atomic_write_json

TITLE_WIDTH = 100   # tuned thresholds are wrapped under a table's title at this width
DEFAULT_EVAL = {"--eval_audio_csv": f"data/{EVAL_AUDIO_CSV}", "--eval_visual_csv": f"data/{EVAL_VISUAL_CSV}"}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--export_dir", help="an --export_dir of main_DHHN.py: re-score every row in it")
    source.add_argument("--pred_audio_csv", help="predicted audio events (eval format); needs --pred_visual_csv")
    parser.add_argument("--pred_visual_csv", help="predicted visual events (eval format)")
    parser.add_argument("--label_csv", default=None,
                        help="weak-label file of the split: its videos are scored (with --export_dir it must "
                             "list exactly the export's videos)")
    parser.add_argument("--eval_audio_csv", default=DEFAULT_EVAL["--eval_audio_csv"], help="audio segment truth")
    parser.add_argument("--eval_visual_csv", default=DEFAULT_EVAL["--eval_visual_csv"], help="visual segment truth")
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
    """UsageError for flags that cannot work together, input files that are not there and an
    --out_json that cannot be written, before anything is read."""
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
    check_input_files(args)
    check_out_json(args.out_json)


def check_input_files(args):
    """UsageError naming the flag of the first input file that does not exist."""
    for flag, path in (("--pred_audio_csv", args.pred_audio_csv), ("--pred_visual_csv", args.pred_visual_csv),
                       ("--label_csv", args.label_csv)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    missing_defaults = [flag for flag, default in DEFAULT_EVAL.items()
                        if getattr(args, flag[2:]) == default and not os.path.isfile(default)]
    if missing_defaults:   # the defaults hold only when run from the LLP root (where data/ is)
        their, are = ("their defaults", "are") if len(missing_defaults) > 1 else ("its default", "is")
        raise UsageError(f"{' and '.join(missing_defaults)} not given, and {their} "
                         f"{' and '.join(DEFAULT_EVAL[flag] for flag in missing_defaults)} {are} not under the "
                         f"current folder ({os.getcwd()}): pass "
                         f"{' '.join(f'{flag} LLP_ROOT/{DEFAULT_EVAL[flag]}' for flag in missing_defaults)}")
    for flag in DEFAULT_EVAL:
        path = getattr(args, flag[2:])
        if not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")


def check_out_json(path):
    """UsageError if --out_json could not be written: it is a folder, or a file stands where its folder would be."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"--out_json {path}: is a folder; give the name of a .json file")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):   # atomic_write_json makes the missing folders
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--out_json {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise UsageError(f"--out_json {path}: the folder {existing} is not writable")


# ---------------------------------------------------------------- checks across inputs

def read_checked_export(export_dir, flag):
    """reporting.export.read_export, its errors naming `flag`; a note on stderr for an old manifest."""
    try:
        export = read_export(export_dir)
    except ExportError as error:
        raise UsageError(f"{flag} {export_dir}: {error}") from None
    if export.classes != CLASSES:   # the decision rules and their thresholds are LLP's (PROTOCOL.md §14)
        raise UsageError(f"{flag} {export_dir}: predicts {describe_classes(export.classes)}; rescore.py scores "
                         f"{describe_classes(CLASSES)}")
    if export.unchecked:
        print(f"note: {export.unchecked}", file=sys.stderr)
    return export


def scored_videos(args, export):
    """The videos scored from `export`: its own, in the order of --label_csv when given, which must
    list exactly them (a label file of another split would score predictions that do not exist)."""
    if not args.label_csv:
        return list(export.filenames)
    label_filenames = read_video_labels(args.label_csv)[0]
    extra = sorted(set(label_filenames) - set(export.filenames))
    lacking = sorted(set(export.filenames) - set(label_filenames))
    if extra or lacking:
        parts = [f"{len(extra)} of its videos are not in the export (e.g. {extra[0]!r})"] if extra else []
        if lacking:
            parts.append(f"{len(lacking)} of the export's are not in it (e.g. {lacking[0]!r})")
        raise UsageError(f"--label_csv {args.label_csv}: its {len(label_filenames)} videos are not the "
                         f"{len(export.filenames)} of the {export.split!r} export {export.manifest_path}: "
                         f"{'; '.join(parts)}")
    return label_filenames


def check_eval_coverage(args, filenames, what):
    """UsageError when more of `filenames` than the dataloader tolerates (dataloader.max_videos_without_truth)
    have no row in either eval file: those files are another split's, and every such video would be
    scored against empty truth. A few are warned about, as the dataloader does."""
    named = {row.filename for path in (args.eval_audio_csv, args.eval_visual_csv) for row in read_eval_rows(path)}
    missing = [name for name in filenames if name not in named]
    if not missing:
        return
    files = f"--eval_audio_csv {args.eval_audio_csv} and --eval_visual_csv {args.eval_visual_csv}"
    message = (f"{files}: {len(missing)} of the {len(filenames)} videos of {what} have no row in either "
               f"(e.g. {missing[0]!r})")
    if len(missing) > max_videos_without_truth(len(filenames)):
        raise UsageError(f"{message}; give the eval files of that split")
    warnings.warn(f"{message}; they are scored against empty truth", LLPDataWarning, stacklevel=2)


# ---------------------------------------------------------------- the run's own rule: event files

def event_file_sources(args):
    """[(row name, audio csv, visual csv, filenames)] to score, every input checked."""
    if args.pred_audio_csv:
        filenames = read_video_labels(args.label_csv)[0]
        for flag, path in (("--pred_audio_csv", args.pred_audio_csv), ("--pred_visual_csv", args.pred_visual_csv)):
            check_predicted_videos(path, flag, filenames, args.label_csv)
        return [(os.path.basename(args.pred_audio_csv), args.pred_audio_csv, args.pred_visual_csv, filenames)]
    export = read_checked_export(args.export_dir, "--export_dir")
    filenames = scored_videos(args, export)
    check_eval_coverage(args, filenames, f"the {export.split!r} export {args.export_dir}")
    return [(name, files["audio_csv"], files["visual_csv"], filenames) for name, files in export.rows.items()]


def check_predicted_videos(path, flag, filenames, label_csv):
    """Every video that a prediction file names is one of --label_csv's: a file of another split
    (or of another subset) would otherwise be scored as predicting nothing for these videos."""
    named = {row.filename for row in read_eval_rows(path)}
    foreign = sorted(named - set(filenames))
    if foreign:
        raise UsageError(f"{flag} {path}: {len(foreign)} of the {len(named)} videos it predicts are not in --label_csv "
                         f"{label_csv} (e.g. {', '.join(foreign[:3])}): predictions of another split?")


def event_file_scores(args):
    """(row name, title, metrics) of every event-file source, as exported (the run's own rule)."""
    for name, audio_csv, visual_csv, filenames in event_file_sources(args):
        metrics = rescore_event_files(audio_csv, visual_csv, args.eval_audio_csv, args.eval_visual_csv, filenames)
        yield name, f"{name} ({len(filenames)} videos)", metrics


# ---------------------------------------------------------------- another paper's rule: probabilities

def select_videos(outputs, filenames):
    """`outputs` restricted to `filenames` (all among them, checked by scored_videos), in that order."""
    index = {name: i for i, name in enumerate(outputs["filenames"])}
    rows = np.array([index[name] for name in filenames], dtype=np.int64)
    return {**outputs, **{key: outputs[key][rows] for key in PROBABILITY_SHAPES}, "filenames": list(filenames)}


def tuning_export(args, export):
    """The --tune_on export, refused unless it is a val export with the rows of `export` and, when
    `export` is not val itself, no video in common with it (PROTOCOL.md §14)."""
    tuning = read_checked_export(args.tune_on, "--tune_on")
    if tuning.split != TUNING_SPLIT:
        raise UsageError(f"--tune_on {args.tune_on}: an export of split {tuning.split!r}; "
                         f"thresholds are tuned on a {TUNING_SPLIT} export only (PROTOCOL.md §14)")
    if list(tuning.rows) != list(export.rows):
        raise UsageError(f"--tune_on {args.tune_on}: its rows ({', '.join(map(repr, tuning.rows))}) are not those "
                         f"of --export_dir {args.export_dir} ({', '.join(map(repr, export.rows))}); the thresholds "
                         "of a row are tuned on the same row")
    overlap = sorted(set(tuning.filenames) & set(export.filenames))
    if overlap and export.split != TUNING_SPLIT:
        raise UsageError(f"--tune_on {args.tune_on}: shares {len(overlap)} video(s) with the {export.split} "
                         f"videos being scored, e.g. {overlap[0]}")
    check_eval_coverage(args, tuning.filenames, f"the {TUNING_SPLIT!r} export {args.tune_on}")
    return tuning


def load_checked_outputs(npz_path, flag):
    try:
        return load_outputs(npz_path)
    except DecisionRuleError as error:
        raise UsageError(f"{flag}: {error}") from None


def tune(args, rule, outputs, npz_path):
    """Per-class visual thresholds tuned on one row's --tune_on (val) outputs."""
    gt_audio = read_segment_truth(args.eval_audio_csv, outputs["filenames"])
    gt_visual = read_segment_truth(args.eval_visual_csv, outputs["filenames"])
    try:
        return tune_visual_thresholds(outputs, gt_audio, gt_visual, outputs["split"], rule)
    except DecisionRuleError as error:
        raise UsageError(f"{npz_path}: {error}") from None


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


def rule_inputs(args):
    """{row name: (outputs of the scored videos, tuning outputs or None, .npz tuned on)}: every
    export and every row's probabilities read and checked before any row is scored."""
    export = read_checked_export(args.export_dir, "--export_dir")
    filenames = scored_videos(args, export)
    check_eval_coverage(args, filenames, f"the {export.split!r} export {args.export_dir}")
    tuning = tuning_export(args, export) if RULES[args.rule].tunes_thresholds else None
    inputs = {}
    for name, files in export.rows.items():
        outputs = select_videos(load_checked_outputs(files["npz"], "--export_dir"), filenames)
        tune_npz = tuning.rows[name]["npz"] if tuning else None
        inputs[name] = (outputs, load_checked_outputs(tune_npz, "--tune_on") if tuning else None, tune_npz)
    return inputs


def rule_scores(args, record):
    """(row name, title, metrics) of every row of --export_dir under --rule; fills record[row] with
    the thresholds used."""
    rule = RULES[args.rule]
    inputs = rule_inputs(args)
    truth = {}   # the rows of one export share their videos: read their truth once
    for name, (outputs, tuning_outputs, tune_npz) in inputs.items():
        filenames = tuple(outputs["filenames"])
        if filenames not in truth:
            truth[filenames] = (read_segment_truth(args.eval_audio_csv, list(filenames)),
                                read_segment_truth(args.eval_visual_csv, list(filenames)))
        thresholds = tune(args, rule, tuning_outputs, tune_npz) if tuning_outputs is not None else None
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
