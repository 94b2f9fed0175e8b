"""Predictions written to disk for re-scoring, ensembling and visualisation (`--export_dir`).

For every reported row of a val/test run, under the row's file-name slug (`row_slug`):
  <slug>_audio.csv, <slug>_visual.csv   predicted events in the eval-file format (PROTOCOL.md §2):
                                        tab-separated filename, onset, offset, event_labels, one
                                        row per maximal run of predicted segments of one class
  <slug>.npz                            filenames (N,), audio_prob / visual_prob / global_prob
                                        (N, 25), frame_prob (N, 10, 2, 25), gating, row, split
                                        (0-d str), pred_audio / pred_visual (N, 25, 10) bool
and manifest.json naming the files of every row. Re-scoring the event files against the eval
files (`rescore_event_files`, scripts/rescore.py) reproduces the run's table exactly.
"""
import io
import os
import re

import numpy as np

from avvp_data.annotations import read_segment_truth
from avvp_data.llp import CLASSES, EVAL_COLUMNS
from utils.eval_metrics import as_numpy, evaluate_split, event_rows, segment_predictions
from utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

MANIFEST_FILE = "manifest.json"
OUTPUT_KEYS = ("audio_prob", "visual_prob", "global_prob", "frame_prob")


def row_slug(name):
    """File-name slug of a row name: "DHHN dual (best-audio + best-visual)" -> "dhhn_dual_best_audio_best_visual"."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return slug or "row"


def write_event_csv(path, filenames, pred):
    """Write (N, 25, 10) predictions as an eval-format event file; read back with `read_event_csv`."""
    lines = ["\t".join(EVAL_COLUMNS)]
    lines += [f"{name}\t{onset}\t{offset}\t{label}"
              for name, onset, offset, label in event_rows(filenames, pred, CLASSES)]
    atomic_write_text("\n".join(lines) + "\n", path)


def read_event_csv(path, filenames):
    """(N, 25, 10) uint8 segments of an eval-format event file for `filenames` (videos without rows
    are all negative). Events of other videos are warned about and ignored, as in the eval files."""
    return read_segment_truth(path, filenames, known_filenames=filenames)


def export_predictions(export_dir, split, rows):
    """Write every row's predictions under `export_dir`; returns {row name: {kind: path}}.

    split: the evaluated LLPSplit (its filenames and name are used). rows: {row name: (outputs,
    gating)}, outputs as returned by engine.predict ((N, 25) and (N, 10, 2, 25) tensors), gating
    "modality" or "global" (PROTOCOL.md §9 / §11), which decides the binary predictions.
    """
    os.makedirs(export_dir, exist_ok=True)
    filenames = list(split.filenames)
    files, used = {}, set()
    for name, (outputs, gating) in rows.items():
        slug = _unique(row_slug(name), used)
        pred_audio, pred_visual = (as_numpy(pred) for pred in segment_predictions(outputs, gating))
        paths = {"audio_csv": os.path.join(export_dir, f"{slug}_audio.csv"),
                 "visual_csv": os.path.join(export_dir, f"{slug}_visual.csv"),
                 "npz": os.path.join(export_dir, f"{slug}.npz")}
        write_event_csv(paths["audio_csv"], filenames, pred_audio)
        write_event_csv(paths["visual_csv"], filenames, pred_visual)
        arrays = {key: as_numpy(outputs[key]) for key in OUTPUT_KEYS}
        arrays.update(filenames=np.array(filenames), pred_audio=pred_audio, pred_visual=pred_visual,
                      gating=np.array(gating), row=np.array(name), split=np.array(split.name))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(buffer.getvalue(), paths["npz"])
        files[name] = {**paths, "gating": gating}
    manifest = {"split": split.name, "num_videos": len(filenames),
                "rows": {name: {key: (os.path.basename(value) if key != "gating" else value)
                                for key, value in entry.items()} for name, entry in files.items()}}
    atomic_write_json(manifest, os.path.join(export_dir, MANIFEST_FILE))
    return files


def load_predictions(npz_path):
    """An exported .npz as a dict: filenames (list of str), gating / row / split (str), the other
    arrays as numpy (probabilities float32, pred_audio / pred_visual (N, 25, 10) bool)."""
    with np.load(npz_path, allow_pickle=False) as content:
        loaded = {key: content[key] for key in content.files}
    loaded["filenames"] = [str(name) for name in loaded["filenames"]]
    for key in ("gating", "row", "split"):
        if key in loaded:
            loaded[key] = str(loaded[key])
    return loaded


def rescore_event_files(pred_audio_csv, pred_visual_csv, eval_audio_csv, eval_visual_csv, filenames):
    """PROTOCOL.md §9 metrics (utils.eval_metrics.evaluate_split) of exported event files for `filenames`."""
    pred_audio = read_event_csv(pred_audio_csv, filenames)
    pred_visual = read_event_csv(pred_visual_csv, filenames)
    gt_audio = read_segment_truth(eval_audio_csv, filenames)
    gt_visual = read_segment_truth(eval_visual_csv, filenames)
    return evaluate_split(pred_audio, pred_visual, gt_audio, gt_visual)


def _unique(slug, used):
    candidate, number = slug, 2
    while candidate in used:
        candidate, number = f"{slug}_{number}", number + 1
    used.add(candidate)
    return candidate
