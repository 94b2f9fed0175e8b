"""The printed tables: the published headline table (`format_table`), per-class F1 and the modality
confusion of segment predictions.

Per-class F1 comes from `evaluate_split(...)["per_class"]` (counts pooled over the split, PROTOCOL.md §9).
The modality confusion counts, over every (video, class, segment), the truth state against the
predicted state, each one of MODALITY_STATES; it shows e.g. how often an audio-only event is
parsed as visual-only, which the F-scores alone do not separate.
"""
import csv
import io

import numpy as np

from avvp_data.llp import CLASSES, NUM_SEGMENTS
from utils.eval_metrics import (
    COLUMN_TITLES,
    LEVEL_TITLES,
    LEVELS,
    METRIC_KEYS,
    SCORED_MODALITIES,
    TABLE_COLUMNS,
    as_numpy,
)
from utils.io import atomic_write_text

MODALITY_TITLES = {"audio": "A", "visual": "V", "av": "AV"}
PER_CLASS_COLUMNS = tuple(f"{level}_{modality}" for level in LEVEL_TITLES for modality in SCORED_MODALITIES)
PER_CLASS_LEGEND = ("-: the class neither occurs nor is predicted in this split (F undefined); "
                    "class mean: over the classes where F is defined")
# state code = audio + 2 * visual
MODALITY_STATES = ("none", "audio only", "visual only", "both")



def format_table(results, title=None):
    """The published table: rows Seg./Eve., columns Audio ... Event@AV, x100 with
    one decimal (PROTOCOL.md §9). `results` needs the "<level>_<column>" keys."""
    return format_cells({key: f"{100 * results[key]:.1f}" for key in METRIC_KEYS}, title)


def format_lfav_table(results, title=None):
    """LFAV's results: the published table of F-scores over its snippets, then the snippet-level mAPs
    and the release's selection score (x100, one decimal; PROTOCOL.md §16)."""
    maps = "  ".join(f"{name} {100 * results[f'map_{key}']:.1f}"
                     for key, name in (("audio", "audio"), ("visual", "visual"), ("av", "audio-visual"),
                                       ("avg", "mean")))
    return (f"{format_table(results, title)}\nsnippet mAP: {maps} | selection (mAP mean + Eve. Type@AV) / 2: "
            f"{100 * results['selection']:.1f}")


def format_cells(cells, title=None):
    """The published table layout around given cell texts, {"<level>_<column>": text} (e.g.
    "61.4 ± 0.3"); each column as wide as its title or its widest cell, two spaces apart."""
    widths = {c: max(len(COLUMN_TITLES[c]), *(len(cells[f"{level}_{c}"]) for level in LEVELS))
              for c in TABLE_COLUMNS}
    label_width = max(len(t) for t in LEVEL_TITLES.values())
    lines = [] if title is None else [title]
    lines.append(" " * label_width + "".join(
        f"  {COLUMN_TITLES[c]:>{widths[c]}}" for c in TABLE_COLUMNS))
    for level in LEVELS:
        lines.append(f"{LEVEL_TITLES[level]:<{label_width}}" + "".join(
            f"  {cells[f'{level}_{c}']:>{widths[c]}}" for c in TABLE_COLUMNS))
    return "\n".join(lines)

def per_class_values(metrics):
    """{column: (25,) float64 F x 100} for PER_CLASS_COLUMNS; NaN where a class is never present
    nor predicted. metrics: an evaluate_split dict."""
    return {column: 100 * np.asarray(metrics["per_class"][column], dtype=np.float64)
            for column in PER_CLASS_COLUMNS}


def _cell(value):
    return "" if np.isnan(value) else f"{value:.1f}"


def per_class_csv_text(metrics, classes=CLASSES):
    """CSV text: header class, seg_audio, seg_visual, seg_av, evt_audio, evt_visual, evt_av; one line
    per class, F x 100 with one decimal, empty for NaN."""
    values = per_class_values(metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("class",) + PER_CLASS_COLUMNS)
    for index, name in enumerate(classes):
        writer.writerow([name] + [_cell(values[column][index]) for column in PER_CLASS_COLUMNS])
    return buffer.getvalue()


def write_per_class_csv(metrics, path, classes=CLASSES):
    """Write `per_class_csv_text(metrics, classes)` to `path` (atomically)."""
    atomic_write_text(per_class_csv_text(metrics, classes), path)


def per_class_table(metrics, title=None, classes=CLASSES):
    """Printable per-class F1 (x100, one decimal, "-" where undefined): a line per class, columns
    Seg. A/V/AV then Eve. A/V/AV, and a last line with the mean over the classes that are defined
    (a macro average over classes, unlike the headline table's mean over videos)."""
    values = per_class_values(metrics)
    name_width = max(len(name) for name in tuple(classes) + ("class mean",))
    titles = [f"{LEVEL_TITLES[column.split('_')[0]]} {MODALITY_TITLES[column.split('_', 1)[1]]}"
              for column in PER_CLASS_COLUMNS]
    widths = [max(len(t), len("100.0")) for t in titles]
    lines = [] if title is None else [title]
    lines.append(" " * name_width + "".join(f"  {t:>{w}}" for t, w in zip(titles, widths)))

    def line(label, numbers):
        return f"{label:<{name_width}}" + "".join(
            f"  {'-' if np.isnan(v) else f'{v:.1f}':>{w}}" for v, w in zip(numbers, widths))

    for index, name in enumerate(classes):
        lines.append(line(name, [values[column][index] for column in PER_CLASS_COLUMNS]))
    means = [np.nanmean(values[c]) if not np.isnan(values[c]).all() else np.nan for c in PER_CLASS_COLUMNS]
    lines.append(line("class mean", means))
    lines.append(PER_CLASS_LEGEND)
    return "\n".join(lines)


def _states(audio, visual, name):
    audio, visual = as_numpy(audio), as_numpy(visual)
    if audio.ndim != 3 or audio.shape[2] != NUM_SEGMENTS or visual.shape != audio.shape:
        raise ValueError(f"{name} audio and visual must both have shape (N, classes, {NUM_SEGMENTS}), "
                         f"got {audio.shape} and {visual.shape}")
    return (audio != 0).astype(np.int64) + 2 * (visual != 0).astype(np.int64)


def modality_confusion(pred_audio, pred_visual, gt_audio, gt_visual):
    """(4, 4) int64 counts over (video, class, segment): row = truth state, column = predicted state,
    states in MODALITY_STATES order (none, audio only, visual only, both). Inputs (N, 25, 10) 0/1,
    numpy or torch. E.g. [1, 2] counts audio-only truth predicted as visual-only."""
    truth = _states(gt_audio, gt_visual, "truth")
    pred = _states(pred_audio, pred_visual, "prediction")
    if truth.shape != pred.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    codes = 4 * truth.ravel() + pred.ravel()
    return np.bincount(codes, minlength=16).reshape(4, 4).astype(np.int64)


def format_confusion(confusion, title=None):
    """Printable modality confusion: counts, rows truth, columns prediction, with each row's
    share (%) of its truth segments beside the counts."""
    confusion = np.asarray(confusion)
    row_totals = confusion.sum(axis=1)
    corner = "truth \\ pred"
    label_width = max(len(corner), *(len(s) for s in MODALITY_STATES))
    cell_width = max(max(len(s) for s in MODALITY_STATES), len(f"{confusion.max()} (100.0%)"))
    lines = [] if title is None else [title]
    total_width = max(len("total"), len(str(row_totals.max())))
    lines.append(f"{corner:<{label_width}}" + "".join(f"  {s:>{cell_width}}" for s in MODALITY_STATES)
                 + f"  {'total':>{total_width}}")
    for state, counts, total in zip(MODALITY_STATES, confusion, row_totals):
        cells = [f"{count} ({100 * count / total:.1f}%)" if total else str(count) for count in counts]
        lines.append(f"{state:<{label_width}}" + "".join(f"  {c:>{cell_width}}" for c in cells)
                     + f"  {total:>{total_width}}")
    return "\n".join(lines)


def confusion_dict(confusion):
    """{truth state: {predicted state: count}}, for JSON records."""
    return {truth: {pred: int(confusion[i, j]) for j, pred in enumerate(MODALITY_STATES)}
            for i, truth in enumerate(MODALITY_STATES)}
