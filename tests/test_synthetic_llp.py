"""The synthetic LLP: official layout, planted truth encoded exactly, signal, ambiguity, determinism."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import load_script, script_path
from utils.constants import (CLASS_INDEX, CLASSES, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, FEATURE_KINDS,
                             LABEL_FULL_CSV, LABEL_TEST_CSV, LABEL_TRAIN_CSV, LABEL_VAL_CSV,
                             NUM_CLASSES, NUM_SEGMENTS)
from utils.eval_metrics import extract_events
from utils.synthetic_llp import (COMPLETE_MARKER, PARTIAL_MARKER, RECIPE, SIZES, SPLIT_LABEL_CSV,
                                 SPLITS, _build_world, _sample_annotations, generate_synthetic_llp,
                                 is_complete, load_planted_truth)

SMALL = dict(n_train=12, n_val=4, n_test=4)
EVAL_COLUMNS = ["filename", "onset", "offset", "event_labels"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_tiny")
    summary = generate_synthetic_llp(str(root), *SIZES["tiny"], seed=0)
    return root, summary


def _read_tsv(path):
    return pd.read_csv(path, sep="\t", dtype={"filename": str})


def _tree_digest(root):
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def _masks_from_eval(frame, filenames):
    """(N, 25, 10) uint8 from eval CSV rows (segment t positive iff onset <= t < offset)."""
    row_of = {name: i for i, name in enumerate(filenames)}
    masks = np.zeros((len(filenames), NUM_CLASSES, NUM_SEGMENTS), dtype=np.uint8)
    for name, onset, offset, label in frame[EVAL_COLUMNS].itertuples(index=False):
        masks[row_of[name], CLASS_INDEX[label], onset:offset] = 1
    return masks


def test_layout_and_shapes(tiny_root):
    root, summary = tiny_root
    names = sorted(os.listdir(root / "data"))
    assert names == sorted([LABEL_TRAIN_CSV, LABEL_VAL_CSV, LABEL_TEST_CSV, LABEL_FULL_CSV,
                            EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, "synthetic_truth.npz"])
    all_names = []
    for split, size in zip(SPLITS, SIZES["tiny"]):
        frame = _read_tsv(root / "data" / SPLIT_LABEL_CSV[split])
        assert list(frame.columns) == ["filename", "event_labels"]
        assert len(frame) == size == summary["videos"][split]
        all_names += list(frame.filename)
    assert len(set(name[:11] for name in all_names)) == len(all_names)  # ids unique over splits
    for name in all_names:
        video_id, start, end = name[:11], *name[12:].split("_")
        assert name[11] == "_" and set(video_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert int(end) == int(start) + 10
    for folder, shape in FEATURE_KINDS.values():
        files = sorted(os.listdir(root / "feats" / folder))
        assert files == sorted(name[:11] + ".npy" for name in all_names)
        array = np.load(root / "feats" / folder / files[0])
        assert array.shape == shape and array.dtype == np.float32 and np.isfinite(array).all()


def test_full_csv_is_train_val_test_in_order(tiny_root):
    root, _ = tiny_root
    full = _read_tsv(root / "data" / LABEL_FULL_CSV)
    parts = pd.concat([_read_tsv(root / "data" / SPLIT_LABEL_CSV[split]) for split in SPLITS])
    assert full.values.tolist() == parts.values.tolist()


def test_weak_labels_are_union_of_modalities(tiny_root):
    root, _ = tiny_root
    for split in SPLITS:
        filenames, audio, visual = load_planted_truth(root, split)
        frame = _read_tsv(root / "data" / SPLIT_LABEL_CSV[split])
        assert list(frame.filename) == filenames
        assert audio.shape == visual.shape == (len(filenames), NUM_CLASSES, NUM_SEGMENTS)
        assert audio.dtype == visual.dtype == np.uint8
        for labels, a, v in zip(frame.event_labels, audio, visual):
            present = {CLASSES[c] for c in np.flatnonzero(a.any(1) | v.any(1))}
            assert set(labels.split(",")) == present
            assert 1 <= len(present) <= 3


def test_eval_csvs_encode_planted_truth_exactly(tiny_root):
    root, _ = tiny_root
    frames = {"audio": _read_tsv(root / "data" / EVAL_AUDIO_CSV),
              "visual": _read_tsv(root / "data" / EVAL_VISUAL_CSV)}
    truth = {split: load_planted_truth(root, split) for split in ("val", "test")}
    eval_names = truth["val"][0] + truth["test"][0]
    for modality, frame in frames.items():
        assert list(frame.columns) == EVAL_COLUMNS
        assert frame.onset.dtype.kind == frame.offset.dtype.kind == "i"
        assert ((0 <= frame.onset) & (frame.onset < frame.offset) & (frame.offset <= 10)).all()
        assert set(frame.filename) <= set(eval_names)  # val + test only
        index = 1 if modality == "audio" else 2
        expected = np.concatenate([truth["val"][index], truth["test"][index]])
        np.testing.assert_array_equal(_masks_from_eval(frame, eval_names), expected)
        # runs are maximal: no two rows of one video and class touch or overlap
        for _, rows in frame.groupby(["filename", "event_labels"]):
            spans = sorted(zip(rows.onset, rows.offset))
            assert all(previous[1] < following[0] for previous, following in zip(spans, spans[1:]))


def test_runs_written_to_the_eval_files():
    # the generator writes eval rows with the metric module's run extractor (PROTOCOL.md §9 events)
    assert extract_events([0, 1, 1, 0, 0, 1, 0, 0, 1, 1]) == [(1, 3), (5, 6), (8, 10)]
    assert extract_events([1] * 10) == [(0, 10)]
    assert extract_events([0] * 10) == []


def test_modality_mix_and_ambiguity():
    # the annotation sampler alone (no features), on enough videos for stable fractions
    audio, visual = _sample_annotations(3, "train", 400, _build_world(3, RECIPE)["class_weights"], RECIPE)
    has_audio, has_visual = audio.any(2), visual.any(2)
    labelled = has_audio | has_visual
    fractions = np.array([(has_audio & ~has_visual).sum(), (~has_audio & has_visual).sum(),
                          (has_audio & has_visual).sum()]) / labelled.sum()
    assert np.all(fractions > 0.15), fractions  # audio-only, visual-only, audio-visual all common
    # ambiguity: a labelled class is often absent from one modality ...
    assert (labelled & ~(has_audio & has_visual)).sum() > 0.3 * labelled.sum()
    # ... events are often partial, and audio-visual events sometimes differ in extent
    event_lengths = np.concatenate([audio.sum(2)[has_audio], visual.sum(2)[has_visual]])
    assert (event_lengths < NUM_SEGMENTS).mean() > 0.3 and (event_lengths == NUM_SEGMENTS).any()
    both = has_audio & has_visual
    differs = (audio != visual).any(2) & both
    assert 0.1 * both.sum() < differs.sum() < 0.9 * both.sum()
    assert labelled[:, CLASS_INDEX["Speech"]].mean() > 0.25  # Speech is the frequent class


def test_features_carry_class_signal(tmp_path):
    """Nearest-prototype classification of active segments beats chance by far, in every kind."""
    generate_synthetic_llp(str(tmp_path), n_train=40, n_val=0, n_test=0, seed=1)
    filenames, audio, visual = load_planted_truth(tmp_path, "train")
    world = _build_world(1, RECIPE)
    for kind, (folder, _) in FEATURE_KINDS.items():
        masks = audio if kind == "audio" else visual
        prototypes = world[kind]["prototypes"]
        hits = total = 0
        active_scores, inactive_scores = [], []
        for name, mask in zip(filenames, masks):
            features = np.load(tmp_path / "feats" / folder / (name[:11] + ".npy"))
            segments = features.reshape(NUM_SEGMENTS, -1, features.shape[-1]).mean(1)
            scores = (segments - world[kind]["offset"]) @ prototypes.T  # (10, 25)
            for c in np.flatnonzero(mask.any(1)):
                active_scores += list(scores[mask[c] == 1, c])
                inactive_scores += list(scores[mask[c] == 0, c])
            for t in range(NUM_SEGMENTS):
                if mask[:, t].sum() == 1:  # a single active class: is it the best-scoring one?
                    hits += int(scores[t].argmax() == np.flatnonzero(mask[:, t])[0])
                    total += 1
        assert total > 50 and hits / total > 0.5, (kind, hits, total)  # chance is 1/25
        assert np.mean(active_scores) > np.mean(inactive_scores) + 3 * np.std(inactive_scores), kind


def test_deterministic_bytes_and_seed_matters(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_synthetic_llp(str(first), **SMALL, seed=5)
    generate_synthetic_llp(str(second), **SMALL, seed=5)
    generate_synthetic_llp(str(other), **SMALL, seed=6)
    assert _tree_digest(first) == _tree_digest(second)
    assert _tree_digest(first) != _tree_digest(other)


def test_completion_marker_and_regeneration(tmp_path):
    root = str(tmp_path / "root")
    assert not is_complete(root, **SMALL)
    summary = generate_synthetic_llp(root, **SMALL, seed=0)
    assert not summary["skipped"] and is_complete(root, **SMALL, seed=0)
    assert not is_complete(root, **SMALL, seed=1)
    assert not is_complete(root, **{**SMALL, "n_train": 25}, seed=0)
    with open(os.path.join(root, COMPLETE_MARKER)) as handle:
        assert json.load(handle)["params"]["n_train"] == SMALL["n_train"]
    assert not os.path.exists(os.path.join(root, PARTIAL_MARKER))

    again = generate_synthetic_llp(root, **SMALL, seed=0)
    assert again["skipped"] and again["videos"] == summary["videos"]

    # other parameters: regenerated, and the videos of the old dataset do not linger
    generate_synthetic_llp(root, n_train=10, n_val=4, n_test=4, seed=0)
    assert len(os.listdir(os.path.join(root, "feats", "vggish"))) == 18
    assert is_complete(root, n_train=10, n_val=4, n_test=4)

    # an interrupted run (partial marker, no complete marker) is not complete and is redone
    os.remove(os.path.join(root, COMPLETE_MARKER))
    with open(os.path.join(root, PARTIAL_MARKER), "w") as handle:
        handle.write("{}")
    assert not is_complete(root, n_train=10, n_val=4, n_test=4)
    assert not generate_synthetic_llp(root, n_train=10, n_val=4, n_test=4)["skipped"]
    assert is_complete(root, n_train=10, n_val=4, n_test=4)


def test_refuses_foreign_folder_and_bad_arguments(tmp_path):
    (tmp_path / "feats" / "vggish").mkdir(parents=True)
    (tmp_path / "feats" / "vggish" / "real_video_.npy").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_synthetic_llp(str(tmp_path), **SMALL)
    assert (tmp_path / "feats" / "vggish" / "real_video_.npy").exists()
    with pytest.raises(ValueError, match="feature_dtype"):
        generate_synthetic_llp(str(tmp_path / "x"), **SMALL, feature_dtype="float16")
    with pytest.raises(ValueError, match="n_train"):
        generate_synthetic_llp(str(tmp_path / "x"), n_train=-1, n_val=1, n_test=1)
    with pytest.raises(ValueError, match="unknown split"):
        load_planted_truth(tmp_path, "training")
    with pytest.raises(FileNotFoundError, match="planted truth"):
        load_planted_truth(tmp_path, "train")


def test_float64_features(tmp_path):
    generate_synthetic_llp(str(tmp_path), n_train=2, n_val=1, n_test=1, feature_dtype="float64")
    folder = FEATURE_KINDS["snippets"][0]
    array = np.load(tmp_path / "feats" / folder / os.listdir(tmp_path / "feats" / folder)[0])
    assert array.dtype == np.float64


def test_cli(tmp_path, capsys):
    script = script_path("make_synthetic_llp")
    args = ["--out", str(tmp_path / "syn"), "--size", "tiny", "--n_train", "6", "--n_val", "2", "--n_test", "3"]
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.count("\n") == 1 and "6/2/3 videos" in result.stdout
    assert is_complete(str(tmp_path / "syn"), 6, 2, 3)

    module = load_script("make_synthetic_llp")
    module.main(module.get_args_parser().parse_args(args))
    assert "already complete" in capsys.readouterr().out
