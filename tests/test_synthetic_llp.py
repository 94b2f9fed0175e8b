"""The synthetic LLP: official layout, planted truth encoded exactly, signal, ambiguity, determinism;
CLIP/CLAP features and noisy segment pseudo-labels."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    CLASS_INDEX,
    CLASSES,
    CLIP_FEATURE_SHAPE,
    EVAL_AUDIO_CSV,
    EVAL_VISUAL_CSV,
    FEATURE_KINDS,
    LABEL_FULL_CSV,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    NUM_CLASSES,
    NUM_SEGMENTS,
    PSEUDO_LABEL_SHAPE,
    VALOR_FEATURES_FOLDER,
    VALOR_PSEUDO_LABELS_FOLDER,
    VALOR_SET_MODALITY,
    VALOR_SETS,
)
from avvp_data.synthetic_llp import (
    COMPLETE_MARKER,
    CONFUSABLE_PAIRS,
    FALSE_POSITIVE_SOURCES,
    PARTIAL_MARKER,
    PSEUDO_LABEL_NOISE,
    PSEUDO_LABELS_PARTIAL,
    PSEUDO_LABELS_SIDECAR,
    RECIPE,
    SIZES,
    SPLIT_LABEL_CSV,
    SPLITS,
    _build_modern_world,
    _build_world,
    _sample_annotations,
    generate_synthetic_llp,
    is_complete,
    load_planted_truth,
    write_pseudo_labels,
)
from conftest import script_path
from scripts import make_pseudo_labels, make_synthetic_llp
from utils.eval_metrics import extract_events

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

    module = make_synthetic_llp
    module.main(module.get_args_parser().parse_args(args))
    assert "already complete" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# CLIP/CLAP features

# _tree_digest of generate_synthetic_llp(root, 3, 2, 2, seed=7), computed with the generator as it
# was before the modern features and pseudo-labels existed (commit a057668): the default output
# must stay byte for byte the same. (It also depends on numpy's random streams and float32
# arithmetic; test_deterministic_bytes_and_seed_matters checks determinism on its own.)
DEFAULT_TREE_DIGEST = "40f215e86360270409a1f148532a5c3640a33e1b3a3f4fa62138c7696ec60645"


def test_default_output_is_unchanged(tmp_path):
    generate_synthetic_llp(str(tmp_path), 3, 2, 2, seed=7)
    assert _tree_digest(tmp_path) == DEFAULT_TREE_DIGEST


def _valor_segments(maps):
    """(N, 64, D) CLAP maps -> (N, 10, D) as VALOR's model makes them (main_network.py: view as
    (D, 2, 32), bicubic to (2, 1024), mean of the 2 bands, average pooling to 10), its Linear left out."""
    grid = torch.from_numpy(maps).permute(0, 2, 1).reshape(maps.shape[0], maps.shape[2], 2, 32)
    upsampled = F.interpolate(grid, size=(2, 1024), mode="bicubic").mean(2)
    return F.adaptive_avg_pool1d(upsampled, NUM_SEGMENTS).permute(0, 2, 1).numpy()


def test_modern_features_shapes_signal_and_classic_bytes(tmp_path):
    modern, classic = tmp_path / "modern", tmp_path / "classic"
    summary = generate_synthetic_llp(str(modern), n_train=16, n_val=2, n_test=2, seed=2, modern_features=True)
    generate_synthetic_llp(str(classic), n_train=16, n_val=2, n_test=2, seed=2)
    assert summary["modern_features"] and summary["modern_feature_bytes"] > 0
    for folder in ("data", "feats"):  # the classic part is the default output, byte for byte
        assert _tree_digest(modern / folder) == _tree_digest(classic / folder)
    assert not any((classic / name).exists() for name in VALOR_SETS)

    filenames, audio, visual = load_planted_truth(modern, "train")
    all_ids = sorted(name[:11] + ".npy" for split in SPLITS for name in load_planted_truth(modern, split)[0])
    world = _build_modern_world(2, RECIPE)
    stacked = {}
    for name, shape in (("CLIP", CLIP_FEATURE_SHAPE), ("CLAP", CLAP_FEATURE_SHAPE)):
        folder = modern / name / VALOR_FEATURES_FOLDER
        assert sorted(os.listdir(folder)) == all_ids
        stacked[name] = np.stack([np.load(folder / (video[:11] + ".npy")) for video in filenames])
        assert stacked[name].shape[1:] == shape and stacked[name].dtype == np.float32
        assert np.isfinite(stacked[name]).all()

    # the planted truth of each set's modality is what a VALOR-style model sees, segment by segment
    for name, segments, masks in (("CLIP", stacked["CLIP"], visual), ("CLAP", _valor_segments(stacked["CLAP"]), audio)):
        assert VALOR_SET_MODALITY[name] == ("visual" if masks is visual else "audio")
        scores = (segments - world[name]["offset"]) @ world[name]["prototypes"].T   # (N, 10, 25)
        present = masks.transpose(0, 2, 1).astype(bool)
        labelled = present.any(1, keepdims=True) & ~present   # the video's class, absent there
        assert present.sum() > 30 and labelled.sum() > 10
        assert scores[present].mean() > scores[labelled].mean() + 3 * scores[labelled].std(), name
    # rows 0-31 and 32-63 are two frequency bands, each spanning the whole 10 s in time order
    # (VALOR's clap_utils.py): row r is time step r % 32, which covers [r % 32, r % 32 + 1) * 10/32 s
    scores = (stacked["CLAP"] - world["CLAP"]["offset"]) @ world["CLAP"]["prototypes"].T   # (N, 64, 25)
    segment_of_step = ((np.arange(32) + 0.5) * NUM_SEGMENTS / 32).astype(int)
    videos, classes = np.nonzero(audio.any(2))
    expected = audio[videos, classes][:, segment_of_step].ravel()
    for band in range(2):
        observed = scores[videos, 32 * band:32 * (band + 1), classes].ravel()
        assert np.corrcoef(observed, expected)[0, 1] > 0.7, band   # ~0.8; a layout in time order over 64 rows: ~0.4


def test_modern_features_completion_and_regeneration(tmp_path):
    root = str(tmp_path / "root")
    generate_synthetic_llp(root, **SMALL, seed=0)
    assert is_complete(root, **SMALL) and not is_complete(root, **SMALL, modern_features=True)
    # asked for later: generated (not silently reused)
    assert not generate_synthetic_llp(root, **SMALL, modern_features=True)["skipped"]
    assert is_complete(root, **SMALL, modern_features=True)
    assert len(os.listdir(os.path.join(root, "CLAP", VALOR_FEATURES_FOLDER))) == sum(SMALL.values())
    # a root with them holds everything a root without them does: reused
    assert is_complete(root, **SMALL) and generate_synthetic_llp(root, **SMALL)["skipped"]
    # pseudo-labels written into the root belong to its truth: gone, with the features, when it is redone
    write_pseudo_labels(root, root, 0.9, 0.8)
    generate_synthetic_llp(root, **SMALL, seed=1)
    for name in VALOR_SETS:
        for folder in (VALOR_FEATURES_FOLDER, VALOR_PSEUDO_LABELS_FOLDER):
            assert os.listdir(os.path.join(root, name, folder)) == []
    assert not os.path.exists(os.path.join(root, PSEUDO_LABELS_SIDECAR))
    with pytest.raises(ValueError, match="modern_features"):
        generate_synthetic_llp(str(tmp_path / "x"), **SMALL, modern_features="yes")


def test_make_synthetic_llp_cli_modern_features(tmp_path, capsys):
    module = make_synthetic_llp
    args = ["--out", str(tmp_path), "--size", "tiny", "--n_train", "2", "--n_val", "1", "--n_test", "1",
            "--modern_features", "--no_progress"]
    module.main(module.get_args_parser().parse_args(args))
    assert "with CLIP/CLAP features" in capsys.readouterr().out
    assert is_complete(str(tmp_path), 2, 1, 1, modern_features=True)


# --------------------------------------------------------------------------------------------
# pseudo-labels

def _read_pseudo_labels(out_root, root):
    """{modality: (N, 10, 25)} over train, val, test, and the same of the planted truth."""
    labels, truth = {}, {}
    for name in VALOR_SETS:
        modality = VALOR_SET_MODALITY[name]
        arrays, masks = [], []
        for split in SPLITS:
            filenames, audio, visual = load_planted_truth(root, split)
            for video, mask in zip(filenames, audio if modality == "audio" else visual):
                arrays.append(np.load(os.path.join(out_root, name, VALOR_PSEUDO_LABELS_FOLDER, video[:11] + ".npy")))
                masks.append(mask.T)
        labels[modality], truth[modality] = np.stack(arrays), np.stack(masks).astype(bool)
    return labels, truth


def test_pseudo_labels_are_the_truth_at_precision_and_recall_one(tiny_root, tmp_path):
    root, _ = tiny_root
    measured = write_pseudo_labels(root, tmp_path, 1.0, 1.0, seed=3)
    labels, truth = _read_pseudo_labels(tmp_path, root)
    for modality in ("audio", "visual"):
        assert labels[modality].shape[1:] == PSEUDO_LABEL_SHAPE and labels[modality].dtype == np.float32
        np.testing.assert_array_equal(labels[modality], truth[modality].astype(np.float32))
        assert measured[modality]["precision"] == measured[modality]["recall"] == 1.0
    with open(tmp_path / PSEUDO_LABELS_SIDECAR) as handle:
        sidecar = json.load(handle)
    assert sidecar["precision"] == sidecar["recall"] == 1.0 and sidecar["seed"] == 3
    assert sidecar["measured"] == measured and sidecar["dataset"]["n_train"] == SIZES["tiny"][0]
    assert set(sidecar["measured_per_split"]) == set(SPLITS)
    assert not (tmp_path / PSEUDO_LABELS_PARTIAL).exists()


@pytest.mark.parametrize("precision, recall", [(0.9, 0.8), (0.6, 0.5)])
def test_pseudo_labels_reach_the_asked_quality(tiny_root, tmp_path, precision, recall):
    root, _ = tiny_root
    measured = write_pseudo_labels(root, tmp_path, precision, recall)
    labels, truth = _read_pseudo_labels(tmp_path, root)
    partner = {CLASS_INDEX[a]: CLASS_INDEX[b] for pair in CONFUSABLE_PAIRS for a, b in (pair, pair[::-1])}
    for modality, row in measured.items():
        predicted = labels[modality].astype(bool)
        true_positives = int((predicted & truth[modality]).sum())
        false_positives = int((predicted & ~truth[modality]).sum())
        # what is returned is what the files hold
        assert (row["true_positives"], row["false_positives"]) == (true_positives, false_positives)
        assert row["precision"] == pytest.approx(true_positives / (true_positives + false_positives))
        assert row["precision"] == pytest.approx(precision, abs=0.01)   # exact up to rounding per split
        assert row["recall"] == pytest.approx(recall, abs=0.06)        # binomial, ~900 true cells
        # false positives: mostly classes of the weak label, the rest confusable partners
        sources = row["false_positives_by_source"]
        assert sum(sources.values()) == false_positives and sources["other"] == 0
        assert sources["weak_label"] == pytest.approx(PSEUDO_LABEL_NOISE.weak_label_share * false_positives, abs=3)
        weak = (truth["audio"] | truth["visual"]).any(1)                  # (N, 25)
        videos, segments, classes = np.nonzero(predicted & ~truth[modality])
        on_weak = weak[videos, classes]
        assert on_weak.sum() == sources["weak_label"]
        for video, segment, c in zip(videos[~on_weak], segments[~on_weak], classes[~on_weak]):
            assert truth[modality][video, segment, partner[c]]


def test_pseudo_labels_deterministic_seeded_and_nested(tiny_root, tmp_path):
    root, _ = tiny_root

    def write(name, precision, recall, seed=0):
        write_pseudo_labels(root, tmp_path / name, precision, recall, seed=seed)
        return _read_pseudo_labels(tmp_path / name, root)[0]

    first, again, other_seed = write("a", 0.7, 0.7), write("b", 0.7, 0.7), write("c", 0.7, 0.7, seed=1)
    assert _tree_digest(tmp_path / "a" / "CLIP") == _tree_digest(tmp_path / "b" / "CLIP")
    assert _tree_digest(tmp_path / "a" / "CLAP") == _tree_digest(tmp_path / "b" / "CLAP")
    assert all((first[m] == again[m]).all() and (first[m] != other_seed[m]).any() for m in first)
    # one seed, several levels: the cells kept at a lower recall are kept at a higher one, and
    # the false positives of a higher precision are among those of a lower one
    lower_recall, lower_precision = write("d", 0.7, 0.4), write("e", 0.5, 0.7)
    _, truth = _read_pseudo_labels(tmp_path / "a", root)
    for modality in first:
        kept, fewer_kept = first[modality] * truth[modality], lower_recall[modality] * truth[modality]
        assert (fewer_kept <= kept).all() and fewer_kept.sum() < kept.sum()
        false, more_false = first[modality] * ~truth[modality], lower_precision[modality] * ~truth[modality]
        assert (false <= more_false).all() and false.sum() < more_false.sum()


def test_pseudo_labels_refuse_bad_arguments(tiny_root, tmp_path):
    root, _ = tiny_root
    for precision in (0, -0.5, 1.01, float("nan"), True, "0.9"):
        with pytest.raises(ValueError, match="precision"):
            write_pseudo_labels(root, tmp_path / "out", precision, 0.8)
    for recall in (-0.1, 1.5, float("inf")):
        with pytest.raises(ValueError, match="recall"):
            write_pseudo_labels(root, tmp_path / "out", 0.9, recall)
    with pytest.raises(ValueError, match="seed"):
        write_pseudo_labels(root, tmp_path / "out", 0.9, 0.8, seed=-1)
    with pytest.raises(ValueError, match="not a complete synthetic LLP"):
        write_pseudo_labels(tmp_path / "empty", tmp_path / "out", 0.9, 0.8)
    assert not (tmp_path / "out").exists()
    foreign = tmp_path / "real" / "CLAP" / VALOR_PSEUDO_LABELS_FOLDER
    foreign.mkdir(parents=True)
    (foreign / "real_video_.npy").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="did not"):
        write_pseudo_labels(root, tmp_path / "real", 0.9, 0.8)
    assert (foreign / "real_video_.npy").exists()


def test_pseudo_labels_recall_zero_and_cli(tiny_root, tmp_path, capsys):
    root, _ = tiny_root
    measured = write_pseudo_labels(root, tmp_path / "none", 0.5, 0.0)
    assert all(row["precision"] is None and row["recall"] == 0.0 for row in measured.values())
    module = make_pseudo_labels
    args = ["--root", str(root), "--out", str(tmp_path / "cli"), "--precision", "0.9", "--recall", "0.8"]
    assert module.main(module.get_args_parser().parse_args(args)) == write_pseudo_labels(
        root, tmp_path / "api", 0.9, 0.8)
    output = capsys.readouterr().out
    assert output.count("\n") == 1 and "audio precision" in output and "visual precision" in output
    assert set(FALSE_POSITIVE_SOURCES) == {"weak_label", "confusable", "other"}
