"""Predictions written to disk for re-scoring, ensembling and visualisation (`--export_dir`).

For every reported row of a val/test run, under the row's file-name slug (`row_slug`):
  <slug>_audio.csv, <slug>_visual.csv   predicted events in the eval-file format (PROTOCOL.md §2):
                                        tab-separated filename, onset, offset, event_labels, one
                                        row per maximal run of predicted segments of one class
  <slug>.npz                            filenames (N,), audio_prob / visual_prob / global_prob
                                        (N, 25), frame_prob (N, 10, 2, 25), gating, row, split
                                        (0-d str), pred_audio / pred_visual (N, 25, 10) bool
and manifest.json: format, split, num_videos, filenames (the split's videos, in the order of every
row file), rows ({row name: {audio_csv, visual_csv, npz: file name, gating}}) and sha256 ({file
name: digest} of every row file). Re-scoring the event files against the eval files
(`rescore_event_files`, scripts/rescore.py) reproduces the run's table exactly; `read_export`
reads an export back, refusing row files that disagree with its manifest.
"""
import dataclasses
import io
import json
import os
import re
import zipfile

import numpy as np

from avvp_data.annotations import read_eval_rows, read_segment_truth
from avvp_data.llp import CLASSES, EVAL_COLUMNS
from utils.errors import UserError
from utils.eval_metrics import as_numpy, evaluate_split, event_rows, segment_predictions
from utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256

MANIFEST_FILE = "manifest.json"
# 1: split, num_videos and rows only; 2: also the filenames and each row file's sha256, so that a
# row file of another split or run copied into the folder is refused instead of scored
MANIFEST_FORMAT = 2
OUTPUT_KEYS = ("audio_prob", "visual_prob", "global_prob", "frame_prob")
ROW_FILES = ("audio_csv", "visual_csv", "npz")


class ExportError(UserError):
    """An export folder that is not one, or whose row files disagree with its manifest; names the files."""


def row_slug(name):
    """File-name slug of a row name: "DHHN dual (best-audio + best-visual)" -> "dhhn_dual_best_audio_best_visual"."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return slug or "row"


def write_event_csv(path, filenames, pred, classes=CLASSES):
    """Write (N, C, 10) predictions as an eval-format event file naming `classes`; read back with
    `read_event_csv`."""
    lines = ["\t".join(EVAL_COLUMNS)]
    lines += [f"{name}\t{onset}\t{offset}\t{label}"
              for name, onset, offset, label in event_rows(filenames, pred, classes)]
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
        write_event_csv(paths["audio_csv"], filenames, pred_audio, split.classes)
        write_event_csv(paths["visual_csv"], filenames, pred_visual, split.classes)
        arrays = {key: as_numpy(outputs[key]) for key in OUTPUT_KEYS}
        arrays.update(filenames=np.array(filenames), pred_audio=pred_audio, pred_visual=pred_visual,
                      gating=np.array(gating), row=np.array(name), split=np.array(split.name))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(buffer.getvalue(), paths["npz"])
        files[name] = {**paths, "gating": gating}
    manifest = {"format": MANIFEST_FORMAT, "split": split.name, "num_videos": len(filenames), "filenames": filenames,
                "classes": list(split.classes),
                "rows": {name: {key: (os.path.basename(value) if key != "gating" else value)
                                for key, value in entry.items()} for name, entry in files.items()},
                "sha256": {os.path.basename(entry[kind]): file_sha256(entry[kind])
                           for entry in files.values() for kind in ROW_FILES}}
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


@dataclasses.dataclass(frozen=True)
class Export:
    """An export folder as `read_export` returns it. rows: {row name: {"audio_csv", "visual_csv", "npz":
    path joined to the folder, "gating": str}}; filenames: the split's videos, in the order of the
    row files; unchecked: why the row files could not be checked against checksums (a format-1
    manifest), else None."""
    folder: str
    manifest_path: str
    split: str
    filenames: list
    rows: dict
    unchecked: str | None = None
    classes: tuple = CLASSES


def read_export(export_dir):
    """The export in `export_dir`, every row file checked against its manifest before anything is
    scored: each file exists, each .npz holds the manifest's split and videos (in order) under its
    own row name, each event file names only those videos and, from format 2 on, each file has the
    sha256 that the manifest recorded. ExportError naming the file at the first disagreement.

    A format-1 manifest (no filenames, no checksums) is still read: its rows are checked against
    one another and against its split, and `unchecked` says what could not be checked.
    """
    manifest_path = os.path.join(export_dir, MANIFEST_FILE)
    manifest = _read_manifest(export_dir, manifest_path)
    split = manifest["split"]
    classes = tuple(manifest.get("classes", CLASSES))   # exports written before it was recorded are LLP's
    rows = {name: {**{kind: os.path.join(export_dir, entry[kind]) for kind in ROW_FILES}, "gating": entry.get("gating")}
            for name, entry in manifest["rows"].items()}
    for files in rows.values():
        for kind in ROW_FILES:
            if not os.path.isfile(files[kind]):
                raise ExportError(f"{files[kind]}: no such file (a row file of {manifest_path})")
    filenames = manifest.get("filenames")
    for name, files in rows.items():
        saved = _load_row_npz(files["npz"])
        if filenames is None:   # format 1: the first row's videos stand for the split, the others must agree
            filenames = saved["filenames"]
            if len(filenames) != manifest.get("num_videos", len(filenames)):
                raise ExportError(f"{files['npz']}: holds {len(filenames)} videos, but {manifest_path} "
                                  f"records {manifest['num_videos']}")
        _check_row_npz(files["npz"], saved, name, split, filenames, manifest_path)
        for kind in ("audio_csv", "visual_csv"):
            _check_event_videos(files[kind], split, filenames, manifest_path)
    if manifest["format"] < 2:
        unchecked = (f"{manifest_path}: written before exports recorded their files' checksums, so its row "
                     "files are checked against one another and its split only (export again to check them fully)")
        return Export(export_dir, manifest_path, split, list(filenames), rows, unchecked, classes)
    for files in rows.values():
        for kind in ROW_FILES:
            if file_sha256(files[kind]) != manifest["sha256"][os.path.basename(files[kind])]:
                raise ExportError(f"{files[kind]}: not the file that {manifest_path} recorded (its sha256 differs): "
                                  "changed or replaced after the export")
    return Export(export_dir, manifest_path, split, list(filenames), rows, classes=classes)


def _read_manifest(export_dir, manifest_path):
    """manifest.json as a dict with "format" set, its fields checked for type; ExportError if not one."""
    if not os.path.isfile(manifest_path):
        raise ExportError(f"{export_dir}: no {MANIFEST_FILE} (not an --export_dir of main_DHHN.py)")

    def refuse(why):
        return ExportError(f"{manifest_path}: not a manifest of main_DHHN.py --export_dir ({why})")

    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise refuse(f"not JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise refuse("not a JSON object")
    manifest.setdefault("format", 1)
    if not isinstance(manifest["format"], int) or not 1 <= manifest["format"] <= MANIFEST_FORMAT:
        raise refuse(f"format {manifest['format']!r}; this code reads formats 1 to {MANIFEST_FORMAT}")
    if not isinstance(manifest.get("split"), str):
        raise refuse("no split")
    rows = manifest.get("rows")
    if not isinstance(rows, dict) or not rows:
        raise refuse("no rows")
    for name, entry in rows.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(kind), str) for kind in ROW_FILES):
            raise refuse(f"row {name!r} does not name its {', '.join(ROW_FILES)} files")
    if manifest["format"] >= 2:
        filenames, digests = manifest.get("filenames"), manifest.get("sha256")
        if not isinstance(filenames, list) or not all(isinstance(name, str) for name in filenames):
            raise refuse("no list of filenames")
        if manifest.get("num_videos") != len(filenames):
            raise refuse(f"num_videos {manifest.get('num_videos')!r} but {len(filenames)} filenames")
        named = [entry[kind] for entry in rows.values() for kind in ROW_FILES]
        if not isinstance(digests, dict) or any(not isinstance(digests.get(file), str) for file in named):
            raise refuse("no sha256 of every row file")
    return manifest


def _load_row_npz(npz_path):
    try:
        return load_predictions(npz_path)
    except KeyError as error:   # load_predictions reads "filenames" first
        raise ExportError(f"{npz_path}: lacks {error.args[0]} "
                          "(an export of main_DHHN.py --export_dir has it)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:   # truncated or not an .npz
        raise ExportError(f"{npz_path}: not a readable .npz ({error})") from None


def _check_row_npz(npz_path, saved, name, split, filenames, manifest_path):
    """ExportError unless the .npz holds row `name` of `split` for exactly `filenames`, in order."""
    if saved.get("split") != split:
        raise ExportError(f"{npz_path}: holds predictions of split {saved.get('split')!r}, but {manifest_path} "
                          f"is an export of split {split!r}")
    if saved["filenames"] != list(filenames):
        listed, held = set(filenames), set(saved["filenames"])
        if listed == held:
            why = "in another order"
        elif held - listed:
            why = f"e.g. {sorted(held - listed)[0]!r} is not among those"
        else:
            why = f"e.g. it lacks {sorted(listed - held)[0]!r}"
        raise ExportError(f"{npz_path}: its {len(saved['filenames'])} videos are not the {len(filenames)} of "
                          f"{manifest_path} ({why})")
    if saved.get("row", name) != name:
        raise ExportError(f"{npz_path}: holds row {saved['row']!r}, but {manifest_path} lists it for row {name!r}")


def _check_event_videos(csv_path, split, filenames, manifest_path):
    """ExportError if the event file names a video that is not among `filenames` (another split's file)."""
    stray = sorted({row.filename for row in read_eval_rows(csv_path)} - set(filenames))
    if stray:
        raise ExportError(f"{csv_path}: names {len(stray)} video(s) outside the {len(filenames)} of the {split!r} "
                          f"export {manifest_path}, e.g. {stray[0]!r}")


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
