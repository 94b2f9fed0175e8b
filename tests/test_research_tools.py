"""Research tools: prediction export and re-scoring, per-class and modality-confusion tables,
parsing timelines, multi-seed aggregation, and feature sets of other sizes (CLIP/CLAP-like)."""
import json
import os
import struct

import numpy as np
import pytest
import torch

from avvp_data.llp import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp_data.synthetic_llp import generate_synthetic_llp
from conftest import data_flags, fake_outputs, load_test_split, run_main
from dataloader import LLPPaths, load_split
from reporting.export import (
    export_predictions,
    load_predictions,
    read_event_csv,
    read_export,
    rescore_event_files,
    row_slug,
    write_event_csv,
)
from reporting.tables import (
    MODALITY_STATES,
    format_confusion,
    modality_confusion,
    per_class_csv_text,
    per_class_table,
    write_per_class_csv,
)
from reporting.visualize import Panel, classes_to_show, rank_videos, render_parsing, segment_spans
from scripts import rescore
from scripts import visualize_parsing as visualize
from utils import checkpoint
from utils.eval_metrics import evaluate_split, event_rows, score_outputs, segment_predictions
from utils.io import file_sha256

HEADLINE = [f"{level}_{column}" for level in ("seg", "evt") for column in ("audio", "visual", "av", "type", "event")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_SIZE = dict(n_train=24, n_val=12, n_test=12)


def eval_csvs(root):
    return f"{root}/data/AVVP_eval_audio.csv", f"{root}/data/AVVP_eval_visual.csv"


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_llp")
    generate_synthetic_llp(str(root), seed=3, **TINY_SIZE)
    return root


# ---------------------------------------------------------------- export and re-scoring

def test_row_slug_and_event_rows():
    assert row_slug("DHHN dual (best-audio + best-visual)") == "dhhn_dual_best_audio_best_visual"
    assert row_slug("HAN best (val Type@AV seg.)") == "han_best_val_type_av_seg"
    assert row_slug("(( ))") == "row"
    pred = np.zeros((2, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    pred[0, 3, [0, 1, 2, 5, 9]] = True
    pred[1, 0, :] = True
    pred[1, 24, 4] = True
    assert event_rows(["a", "b"], pred, CLASSES) == [("a", 0, 3, "Dog"), ("a", 5, 6, "Dog"), ("a", 9, 10, "Dog"),
                                            ("b", 0, 10, "Speech"), ("b", 4, 5, "Clapping")]


def test_event_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    filenames = [f"video{i:02d}" for i in range(6)]
    pred = rng.random((6, NUM_CLASSES, NUM_SEGMENTS)) < 0.3
    pred[2] = False   # a video with no events has no rows and reads back empty
    path = tmp_path / "pred_audio.csv"
    write_event_csv(path, filenames, pred)
    assert path.read_text().splitlines()[0] == "filename\tonset\toffset\tevent_labels"
    assert np.array_equal(read_event_csv(path, filenames), pred)


@pytest.mark.parametrize("gating", ["modality", "global"])
def test_rescored_export_equals_score_outputs(synthetic_root, tmp_path, gating):
    split = load_test_split(synthetic_root)
    outputs = fake_outputs(split.num_videos, seed=1)
    expected = score_outputs(outputs, split.gt_audio, split.gt_visual, gating)
    files = export_predictions(tmp_path, split, {"Random model": (outputs, gating)})["Random model"]
    rescored = rescore_event_files(files["audio_csv"], files["visual_csv"], *eval_csvs(synthetic_root),
                                   split.filenames)
    for key in HEADLINE:
        assert abs(rescored[key] - expected[key]) <= 1e-12, key
    for key, scores in expected["per_video"].items():
        np.testing.assert_array_equal(rescored["per_video"][key], scores)

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == {"format": 2, "split": "test", "num_videos": split.num_videos, "filenames": split.filenames,
                        "classes": list(CLASSES),
                        "rows": {"Random model": {"audio_csv": "random_model_audio.csv",
                                                  "visual_csv": "random_model_visual.csv",
                                                  "npz": "random_model.npz", "gating": gating}},
                        "sha256": {os.path.basename(files[kind]): file_sha256(files[kind])
                                   for kind in ("audio_csv", "visual_csv", "npz")}}
    assert read_export(str(tmp_path)).filenames == split.filenames

    saved = load_predictions(files["npz"])
    assert saved["filenames"] == split.filenames and saved["gating"] == gating
    assert saved["row"] == "Random model" and saved["split"] == "test"
    for key, value in outputs.items():
        np.testing.assert_array_equal(saved[key], value.numpy())
    pred_audio, pred_visual = segment_predictions(outputs, gating)
    np.testing.assert_array_equal(saved["pred_audio"], pred_audio.numpy())
    np.testing.assert_array_equal(saved["pred_visual"], pred_visual.numpy())


# ---------------------------------------------------------------- tables

def test_modality_confusion_counts_hand_made_case():
    shape = (1, NUM_CLASSES, NUM_SEGMENTS)
    gt_audio, gt_visual, pred_audio, pred_visual = (np.zeros(shape, dtype=np.uint8) for _ in range(4))
    gt_audio[0, 0, 0:3] = 1                               # audio-only truth on 3 segments, predicted as
    pred_visual[0, 0, 0] = 1                              # visual only,
    pred_audio[0, 0, 1] = 1                               # audio only,
    pred_audio[0, 0, 2] = pred_visual[0, 0, 2] = 1        # both
    gt_audio[0, 1, 5] = gt_visual[0, 1, 5] = 1            # audio-visual truth, missed
    gt_visual[0, 2, 3] = 1                                # visual-only truth predicted as audio only
    pred_audio[0, 2, 3] = 1
    pred_audio[0, 3, 7] = pred_visual[0, 3, 7] = 1        # nothing there, predicted in both
    expected = np.zeros((4, 4), dtype=np.int64)
    none, audio_only, visual_only, both = range(4)
    expected[audio_only, [visual_only, audio_only, both]] = 1
    expected[both, none] = 1
    expected[visual_only, audio_only] = 1
    expected[none, both] = 1
    expected[none, none] = NUM_CLASSES * NUM_SEGMENTS - 6
    confusion = modality_confusion(pred_audio, pred_visual, gt_audio, gt_visual)
    np.testing.assert_array_equal(confusion, expected)
    as_tensors = modality_confusion(*(torch.from_numpy(labels).bool()
                                      for labels in (pred_audio, pred_visual, gt_audio, gt_visual)))
    np.testing.assert_array_equal(as_tensors, expected)
    text = format_confusion(confusion, title="confusion")
    assert all(state in text for state in MODALITY_STATES)
    assert "1 (33.3%)" in text
    with pytest.raises(ValueError, match="shape"):
        modality_confusion(pred_audio[:, :, :5], pred_visual[:, :, :5], gt_audio, gt_visual)


def test_per_class_csv_and_table(tmp_path):
    shape = (1, NUM_CLASSES, NUM_SEGMENTS)
    pred_audio, pred_visual, gt_audio, gt_visual = (np.zeros(shape, dtype=bool) for _ in range(4))
    pred_audio[0, 0] = gt_audio[0, 0] = True       # Speech: audio perfectly found
    pred_audio[0, 1, 2:4] = True                   # Car: a false audio event
    gt_visual[0, 2, :4] = True                     # Cheering: visual half found
    pred_visual[0, 2, :2] = True
    metrics = evaluate_split(pred_audio, pred_visual, gt_audio, gt_visual)
    lines = per_class_csv_text(metrics).splitlines()
    assert lines[0] == "class,seg_audio,seg_visual,seg_av,evt_audio,evt_visual,evt_av"
    assert len(lines) == 1 + NUM_CLASSES
    assert lines[1] == "Speech,100.0,,,100.0,,"
    assert lines[2] == "Car,0.0,,,0.0,,"
    # Cheering visual: segments TP 2, FN 2 -> 2*2/(4+2) = 66.7; event [0,2) vs [0,4): IoU 0.5 -> TP
    assert lines[3] == "Cheering,,66.7,,,100.0,"
    assert lines[4] == "Dog,,,,,,"
    path = tmp_path / "per_class.csv"
    write_per_class_csv(metrics, path)
    assert path.read_text().splitlines() == lines
    table = per_class_table(metrics, title="per class")
    assert table.splitlines()[0] == "per class"
    assert all(name in table for name in CLASSES)
    assert table.splitlines()[-2].split() == ["class", "mean", "50.0", "66.7", "-", "50.0", "100.0", "-"]
    # the last line says what "-" means
    assert table.splitlines()[-1].startswith("-: the class neither occurs nor is predicted")


# ---------------------------------------------------------------- timelines

def test_segment_spans_hand_made_case():
    pred = [0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    truth = [0, 0, 1, 1, 1, 0, 0, 1, 1, 1]
    assert segment_spans(pred, truth) == {"tp": [(2, 4), (7, 8)], "fn": [(4, 5), (8, 10)],
                                          "fp": [(1, 2), (6, 7)], "truth": [(2, 5), (7, 10)],
                                          "pred": [(1, 4), (6, 8)]}
    assert segment_spans([1] * 10, [1] * 10) == {"tp": [(0, 10)], "fn": [], "fp": [], "truth": [(0, 10)],
                                                 "pred": [(0, 10)]}
    with pytest.raises(ValueError):
        segment_spans([1] * 9, [1] * 10)


def test_classes_to_show_and_ranking():
    empty = np.zeros((NUM_CLASSES, NUM_SEGMENTS))
    gt_audio, pred_visual = empty.copy(), empty.copy()
    gt_audio[7, 3] = 1
    pred_visual[2, 0] = 1
    assert classes_to_show(gt_audio, empty, empty, pred_visual) == [2, 7]
    assert rank_videos([0.5, 0.9, 0.1, 0.9], 3) == [1, 3, 0]
    assert rank_videos([0.5, 0.9, 0.1, 0.5], 2, worst=True) == [2, 0]


def test_render_timeline_and_comparison_png(tmp_path):
    gt_audio = np.zeros((NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    gt_visual = gt_audio.copy()
    gt_audio[0, 2:8] = gt_visual[0, 4:6] = gt_visual[3, :] = True
    pred_audio, pred_visual = gt_audio.copy(), gt_visual.copy()
    pred_audio[0, 6:10] = [0, 0, 1, 1]
    pred_visual[19, 1:3] = True
    probs = np.random.default_rng(0).random((NUM_SEGMENTS, 2, NUM_CLASSES))
    first = Panel("DHHN", pred_audio, pred_visual, frame_prob=probs, audio_prob=probs[0, 0], visual_prob=probs[0, 1])
    second = Panel("HAN", gt_audio, gt_visual, subtitle="seg audio 100.0")
    single = render_parsing(tmp_path / "single.png", gt_audio, gt_visual, [first], title="video_1")
    pair = render_parsing(tmp_path / "pair.png", gt_audio, gt_visual, [first, second], title="video_1")
    (width, height), (pair_width, pair_height) = png_size(single), png_size(pair)
    assert 400 < width < 3000 and 200 < height < 3000
    assert pair_width > width and pair_height == height
    assert 5_000 < os.path.getsize(single) < 2_000_000
    empty = render_parsing(tmp_path / "empty.png", np.zeros_like(gt_audio), np.zeros_like(gt_audio),
                           [Panel("none", np.zeros_like(gt_audio), np.zeros_like(gt_audio))])
    png_size(empty)


# ---------------------------------------------------------------- main_DHHN end to end

def test_test_mode_exports_and_rescore_reproduces_the_table(synthetic_root, tmp_path, capsys):
    flags = data_flags(synthetic_root) + ["--model_save_dir", str(tmp_path / "run"), "--device", "cpu"]
    run_main(flags + ["--mode", "train", "--epochs", "1", "--batch-size", "16"])
    export_dir = tmp_path / "export"
    summary = run_main(flags + ["--mode", "test", "--export_dir", str(export_dir)])
    printed = capsys.readouterr().out
    assert "modality confusion" in printed and "per-class F1" in printed
    confusion = summary["modality_confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == summary["num_videos"] * NUM_CLASSES * NUM_SEGMENTS
    assert (tmp_path / "run" / "DHHN_test_per_class.csv").is_file()

    audio_csv, visual_csv = eval_csvs(synthetic_root)
    results = rescore.main(rescore.get_args_parser().parse_args([
        "--export_dir", str(export_dir), "--label_csv", f"{synthetic_root}/data/AVVP_test_pd.csv",
        "--eval_audio_csv", audio_csv, "--eval_visual_csv", visual_csv,
        "--out_json", str(tmp_path / "rescored.json")]))
    assert list(results) == list(summary["tables"])
    for row, table in summary["tables"].items():
        for key in HEADLINE:
            assert abs(results[row][key] - table[key]) <= 1e-12, (row, key)
    assert json.loads((tmp_path / "rescored.json").read_text())["tables"].keys() == summary["tables"].keys()
    rescored_text = capsys.readouterr().out
    for row in summary["tables"]:   # the same printed table as the test run
        table_lines = [line for line in printed.split(f"test: {row}\n")[1].splitlines()[:3]]
        assert "\n".join(table_lines) in rescored_text

    # timelines straight from the export: the worst video, dual DHHN beside the single HCMN
    manifest = json.loads((export_dir / "manifest.json").read_text())["rows"]
    dual, single = (str(export_dir / entry["npz"]) for entry in manifest.values())
    written = visualize.main(visualize.get_args_parser().parse_args([
        "--predictions", dual, "--compare", single, "--eval_audio_csv", audio_csv, "--eval_visual_csv", visual_csv,
        "--label_csv", f"{synthetic_root}/data/AVVP_test_pd.csv", "--worst", "2", "--metric", "seg_av",
        "--out_dir", str(tmp_path / "pictures")]))
    assert [os.path.basename(path)[:8] for path in written] == ["worst01_", "worst02_"]
    for path in written:
        png_size(path)


# ---------------------------------------------------------------- other feature sets

CLIP_LIKE_DIMS = {"audio": 512, "frames": 768, "snippets": 768}


def test_clip_clap_sized_features_train_and_test(tiny_root, tmp_path, capsys):
    """Input sizes come from the feature files: rewrite the tiny LLP's features at CLAP/CLIP-like
    widths (a fixed random projection keeps their content), train 1 epoch and test."""
    root = tmp_path / "clip_llp"
    root.mkdir()
    os.symlink(tiny_root / "data", root / "data")   # same annotations, features rewritten below
    rng = np.random.default_rng(0)
    for kind, folder in (("audio", "vggish"), ("frames", "res152"), ("snippets", "r2plus1d_18")):
        (root / "feats" / folder).mkdir(parents=True)
        projection = None
        for source in sorted((tiny_root / "feats" / folder).glob("*.npy")):
            features = np.load(source)
            if projection is None:
                projection = rng.standard_normal((features.shape[1], CLIP_LIKE_DIMS[kind])) / np.sqrt(features.shape[1])
            np.save(root / "feats" / folder / source.name, (features @ projection).astype(np.float32))
    flags = data_flags(root) + ["--model_save_dir", str(tmp_path / "run"), "--device", "cpu", "--feature_cache", "none"]
    trained = run_main(flags + ["--mode", "train", "--epochs", "1", "--batch-size", "16"])
    assert len(trained["history"]) == 1
    # other sizes are accepted, never silently
    out = capsys.readouterr().out
    assert "features differ from the published ones (audio (10, 512): one vector per segment" in out
    assert "frames (80, 768): 8 frames per segment" in out
    tested = run_main(flags + ["--mode", "test"])
    assert all(0.0 <= value <= 1.0 for table in tested["tables"].values() for value in table.values())
    for role in ("audio", "visual", "overall"):
        saved = checkpoint.load(checkpoint.best_path(str(tmp_path / "run"), "DHHN", role))
        assert saved["model_config"]["feature_dims"] == CLIP_LIKE_DIMS
    assert load_split(LLPPaths.official(root), "test", with_truth=False).feature_dims() == CLIP_LIKE_DIMS
