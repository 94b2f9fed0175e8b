"""LFAV: the label readers and the metrics equal the LFAV release's own code (GeWu-Lab/LFAV).

tests/golden/lfav_release_metrics.json holds what the release's evaluation() computed on inputs made
by the recipe below (its "how" says how); the tests rebuild the same inputs with numpy alone, check
them by sha256, and compare. The other tests are small cases computed by hand and bad inputs.
"""
import hashlib
import json
import os
import warnings

import numpy as np
import pytest

from avvp_data.lfav import (
    LFAV_CLASS_INDEX,
    LFAV_CLASSES,
    LFAV_NUM_CLASSES,
    LFAVDataError,
    LFAVDataWarning,
    read_split_weak_labels,
    read_truth,
    read_weak_labels,
    snippet_counts,
)
from conftest import REPO_ROOT
from utils.lfav_metrics import (
    average_precision,
    evaluate_videos,
    snippet_map,
    snippet_predictions,
    snippet_probabilities,
    video_scores,
)

GOLDEN_PATH = os.path.join(REPO_ROOT, "tests", "golden", "lfav_release_metrics.json")
TRUTH_HEADER = "filename\tonset\toffset\tevent_labels\n"
WEAK_HEADER = "filename\tevent_labels\n"


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN_PATH) as handle:
        return json.load(handle)


# ---------------------------------------------------------------------------------------------
# The golden inputs' recipe (the generator of the golden file runs this same code)
# ---------------------------------------------------------------------------------------------

def recipe_videos(count):
    return [f"lfavvid{index:04d}" for index in range(count)]


def recipe_truth_rows(rng, lengths):
    """{modality: [(video, onset, offset, class index)]}: random events, one shared audio-visual
    event per class (so no mAP is NaN), a row with offset < onset and one running past the end per
    video, and a row starting after its video ends."""
    videos = recipe_videos(len(lengths))
    rows = {"audio": [], "visual": []}
    for video, length in zip(videos, lengths):
        for modality in ("audio", "visual"):
            for _ in range(int(rng.integers(4, 12))):
                onset = int(rng.integers(0, length))
                rows[modality].append((video, onset, onset + int(rng.integers(0, 30)),
                                       int(rng.integers(LFAV_NUM_CLASSES))))
    for cls in range(LFAV_NUM_CLASSES):
        index = cls % len(lengths)
        start = int(rng.integers(0, lengths[index] - 6))
        for modality in ("audio", "visual"):
            rows[modality].append((videos[index], start, start + 5, cls))
    for index, (video, length) in enumerate(zip(videos, lengths)):
        modality = ("audio", "visual")[index % 2]
        onset = int(rng.integers(10, length))
        rows[modality].append((video, onset, onset - int(rng.integers(1, 10)), int(rng.integers(LFAV_NUM_CLASSES))))
        onset = int(rng.integers(length - 20, length))
        rows[modality].append((video, onset, length + int(rng.integers(0, 50)), int(rng.integers(LFAV_NUM_CLASSES))))
    rows["visual"].append((videos[0], lengths[0] + 3, lengths[0] + 9, 7))
    return rows


def recipe_outputs(rng, lengths, rows):
    """Per video: (T, 2, C) float64 frame probabilities near shifted truth, and (2, C) gates.
    float64 so that no two pooled probabilities tie (the ranking of ties is numpy's sort order)."""
    outputs = []
    for video, length in zip(recipe_videos(len(lengths)), lengths):
        frame_prob = np.empty((length, 2, LFAV_NUM_CLASSES))
        gates = np.empty((2, LFAV_NUM_CLASSES))
        for m, modality in enumerate(("audio", "visual")):
            mask = np.zeros((LFAV_NUM_CLASSES, length))
            present = np.zeros(LFAV_NUM_CLASSES)
            for row_video, onset, offset, cls in rows[modality]:
                if row_video == video and offset >= onset:
                    shift = int(rng.integers(-3, 4))
                    mask[cls, max(onset + shift, 0):max(offset + shift + 1, 0)] = 1
                    present[cls] = 1
            frame_prob[:, m, :] = (0.45 * mask + 0.55 * rng.random((LFAV_NUM_CLASSES, length))).T
            gates[m] = 0.4 * present + 0.6 * rng.random(LFAV_NUM_CLASSES)
        outputs.append((frame_prob, gates))
    return outputs


def recipe_inputs(seed, lengths):
    """({modality: truth CSV text}, [(frame_prob, gates)] per video) of the golden recipe."""
    rng = np.random.default_rng(seed)
    rows = recipe_truth_rows(rng, lengths)
    outputs = recipe_outputs(rng, lengths, rows)
    csv_text = {modality: TRUTH_HEADER + "".join(f"{video}\t{onset}\t{offset}\t{LFAV_CLASSES[cls]}\n"
                                                 for video, onset, offset, cls in rows[modality])
                for modality in rows}
    return csv_text, outputs


def recipe_digest(csv_text, outputs):
    hasher = hashlib.sha256()
    for modality in ("audio", "visual"):
        hasher.update(csv_text[modality].encode())
    for frame_prob, gates in outputs:
        hasher.update(np.ascontiguousarray(frame_prob, dtype="<f8").tobytes())
        hasher.update(np.ascontiguousarray(gates, dtype="<f8").tobytes())
    return hasher.hexdigest()


def runs(array):
    """[[class, start, end]] maximal runs of positives of a (C, T) 0/1 array, end exclusive."""
    found = []
    for cls, row in enumerate(np.asarray(array)):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row, [0]]).astype(int)))
        found += [[cls, int(start), int(end)] for start, end in zip(edges[::2], edges[1::2])]
    return found


@pytest.fixture(scope="module")
def golden_split(golden, tmp_path_factory):
    """The recipe's truth read by our reader (T from zero audio features, as the release takes it)
    and the recipe's model outputs."""
    recipe = golden["recipe"]
    csv_text, outputs = recipe_inputs(recipe["seed"], recipe["lengths"])
    assert recipe_digest(csv_text, outputs) == recipe["sha256"]
    folder = tmp_path_factory.mktemp("lfav_golden")
    videos = recipe_videos(len(recipe["lengths"]))
    (folder / "audio").mkdir()
    for video, length in zip(videos, recipe["lengths"]):
        np.save(folder / "audio" / f"{video[:11]}.npy", np.zeros((length, 128), dtype=np.float32))
    counts = snippet_counts(folder / "audio", videos)
    truth = {}
    for modality in ("audio", "visual"):
        (folder / f"{modality}.csv").write_text(csv_text[modality])
        with pytest.warns(LFAVDataWarning, match="offset < onset"):
            truth[modality] = read_truth(folder / f"{modality}.csv", counts)
    return videos, counts, truth, outputs


def test_the_recipe_rebuilds_the_golden_inputs(golden, golden_split):
    videos, counts, _, _ = golden_split
    assert counts == dict(zip(videos, golden["recipe"]["lengths"]))


def test_truth_arrays_equal_the_releases(golden, golden_split):
    videos, counts, truth, _ = golden_split
    for modality in ("audio", "visual"):
        assert list(truth[modality]) == videos
        for video in videos:
            assert truth[modality][video].shape == (35, counts[video])
            assert truth[modality][video].dtype == np.float32
            assert runs(truth[modality][video]) == golden["truth_runs"][modality][video], (modality, video)


def test_metrics_equal_the_releases(golden, golden_split):
    videos, _, truth, outputs = golden_split
    predictions = [snippet_predictions(frame_prob, gates[0], gates[1]) for frame_prob, gates in outputs]
    probabilities = [snippet_probabilities(frame_prob) for frame_prob, _ in outputs]
    for m in range(3):   # ties would make the ranking, hence AP, depend on the sort algorithm
        for pooled in np.concatenate([probs[m] for probs in probabilities], axis=1):
            assert len(np.unique(pooled)) == len(pooled)
    results = evaluate_videos([p[0] for p in predictions], [p[1] for p in predictions],
                              [truth["audio"][v] for v in videos], [truth["visual"][v] for v in videos],
                              [p[0] for p in probabilities], [p[1] for p in probabilities])
    differences = []
    for key, release_values in golden["per_video"].items():
        differences += list(np.abs(results["per_video"][key] - release_values))
    split = golden["split"]
    differences += [abs(results[f"map_{column}"] - split[f"map_{column}"])
                    for column in ("audio", "visual", "av", "avg")]
    differences += [abs(results["evt_type"] - split["evt_type_x100"] / 100),
                    abs(results["selection"] - split["selection_x100"] / 100)]
    assert len(differences) == 8 * len(videos) + 6
    print(f"largest difference from the LFAV release: {max(differences):.3g}")
    assert max(differences) <= 1e-12
    assert results["selection"] == pytest.approx(0.3358112148575181, abs=1e-12)


def test_map_is_nan_when_a_class_has_no_positive_snippet(golden):
    case = golden["nan_case"]
    rng = np.random.default_rng(case["seed"])
    probs = [rng.random((35, length)) for length in case["lengths"]]
    truths = [(rng.random((35, length)) < 0.3).astype(float) for length in case["lengths"]]
    for truth in truths:
        truth[0] = 0
    assert case["map"] == "nan"
    assert np.isnan(snippet_map(probs, truths))
    truths[1][0, 2] = 1   # one positive makes it a number
    assert np.isfinite(snippet_map(probs, truths))


# ---------------------------------------------------------------------------------------------
# Hand-computed: 2 videos, 3 classes, 4 snippets
# ---------------------------------------------------------------------------------------------
#
# video 1             audio truth / prediction         visual truth / prediction
#   class 0            1 1 0 0 / 1 1 1 0                1 0 0 0 / 1 0 0 0
#   class 1            0 0 0 0 / 0 0 0 0                0 1 1 0 / 0 0 1 0
#   class 2            0 0 1 1 / 0 0 0 1                0 0 0 0 / 0 0 0 0
# video 2: audio class 1 truth 1 1 1 1, prediction 1 0 1 1; all else 0.
#
# Segment level. v1 audio: c0 TP 2 FP 1 -> 4/5, c2 TP 1 FN 1 -> 2/3: 11/15. v1 visual: c0 1,
# c1 TP 1 FN 1 -> 2/3: 5/6. v1 AV: truth and prediction only c0 at snippet 0: 1. v1 Event@AV
# pools the counts: c0 TP 3 FP 1 -> 6/7, c1 2/3, c2 2/3: 46/63. v2 audio: TP 3 FN 1 -> 6/7;
# v2 visual and AV are empty videos: 1; v2 Event@AV = v2 audio = 6/7.
# Event level. v1: every predicted event meets its truth event at IoU >= 1/2 (c0 audio 2/3, c2
# audio 1/2, c1 visual 1/2): all 1. v2: predicted [0,1) has IoU 1/4 with [0,4): FP; [2,4) has 1/2:
# TP, and the truth event is matched: 2/(2+1) = 2/3, so audio and Event@AV 2/3, visual and AV 1.
# Audio mAP, pooled snippets v1 then v2, by falling probability:
#   c0 probs .9 .4 .8 .1 | .7 .2 .3 .05, positives .9 .4: precision 1 at recall 1/2, 2/4 at 1:
#      AP = 1/2 * 1 + 1/2 * 1/2 = 3/4
#   c1 probs .1 .2 .3 .4 | .6 .5 .35 .45, positives v2: ranks 1, 2, 3, 5 -> 1, 1, 1, 4/5: AP 19/20
#   c2 probs .15 .25 .55 .65 | .7 .12 .13 .14, positives .55 .65: ranks 2, 3 -> 1/2, 2/3; the
#      envelope is 2/3 at both recalls: AP 2/3.           map_audio = (3/4 + 19/20 + 2/3) / 3 = 71/90
# Visual class 2 and audio-visual classes 1 and 2 have no positive snippet: those mAPs are NaN.

HAND_GT_AUDIO = [np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]), np.array([[0] * 4, [1] * 4, [0] * 4])]
HAND_PRED_AUDIO = [np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]), np.array([[0] * 4, [1, 0, 1, 1], [0] * 4])]
HAND_GT_VISUAL = [np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]), np.zeros((3, 4), dtype=int)]
HAND_PRED_VISUAL = [np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]), np.zeros((3, 4), dtype=int)]
HAND_PROB_AUDIO = [np.array([[.9, .4, .8, .1], [.1, .2, .3, .4], [.15, .25, .55, .65]]),
                   np.array([[.7, .2, .3, .05], [.6, .5, .35, .45], [.7, .12, .13, .14]])]


def test_a_hand_computed_split():
    prob_visual = [np.full((3, 4), 0.5), np.full((3, 4), 0.25)]
    results = evaluate_videos(HAND_PRED_AUDIO, HAND_PRED_VISUAL, HAND_GT_AUDIO, HAND_GT_VISUAL,
                              HAND_PROB_AUDIO, prob_visual)
    expected_per_video = {"seg_audio": [11 / 15, 6 / 7], "seg_visual": [5 / 6, 1], "seg_av": [1, 1],
                          "seg_event": [46 / 63, 6 / 7], "evt_audio": [1, 2 / 3], "evt_visual": [1, 1],
                          "evt_av": [1, 1], "evt_event": [1, 2 / 3]}
    assert set(results["per_video"]) == set(expected_per_video)
    for key, expected in expected_per_video.items():
        np.testing.assert_allclose(results["per_video"][key], expected, rtol=0, atol=1e-12, err_msg=key)
    assert results["seg_audio"] == pytest.approx(167 / 210, abs=1e-12)
    assert results["seg_type"] == pytest.approx((167 / 210 + 11 / 12 + 1) / 3, abs=1e-12)
    assert results["evt_type"] == pytest.approx(17 / 18, abs=1e-12)
    assert results["map_audio"] == pytest.approx(71 / 90, abs=1e-12)
    assert np.isnan(results["map_visual"]) and np.isnan(results["map_av"]) and np.isnan(results["selection"])


def test_a_hand_computed_selection_score():
    # visual and audio-visual probabilities equal to the truth rank every positive first: AP 1 where
    # a class has positives; with all three classes positive everywhere the mAPs are 1.
    truth = [np.ones((3, 4), dtype=int)]
    results = evaluate_videos(truth, truth, truth, truth, [np.full((3, 4), 0.9)], [np.full((3, 4), 0.8)])
    assert results["map_avg"] == 1.0 and results["evt_type"] == 1.0 and results["selection"] == 1.0
    results = evaluate_videos([np.zeros((3, 4))], truth, truth, truth, [np.full((3, 4), 0.9)], [np.full((3, 4), 0.8)])
    # audio: nothing predicted -> F 0 per class; audio-visual likewise; visual 1: Type@AV 1/3
    assert results["evt_type"] == pytest.approx(1 / 3, abs=1e-12)
    assert results["selection"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-12)


def test_average_precision_by_hand():
    assert average_precision([.9, .4, .8, .1, .7, .2, .3, .05], [1, 1, 0, 0, 0, 0, 0, 0]) == 0.75
    assert average_precision([.3, .2, .1], [1, 1, 0]) == 1.0
    assert average_precision([.3, .2, .1], [0, 0, 1]) == pytest.approx(1 / 3, abs=1e-15)
    assert np.isnan(average_precision([.3, .2], [0, 0]))


def test_video_scores_of_an_empty_video_are_one_and_shapes_must_agree():
    empty = np.zeros((35, 7))
    assert set(video_scores(empty, empty, empty, empty).values()) == {1.0}
    with pytest.raises(ValueError, match="shape"):
        video_scores(empty, np.zeros((35, 6)), empty, empty)


def test_snippet_predictions_gate_by_modality_at_half():
    frame_prob = np.zeros((2, 2, 3))
    frame_prob[:, 0, :] = [[0.5, 0.49, 0.9], [0.6, 0.7, 0.2]]   # audio (T=2, C=3)
    frame_prob[:, 1, :] = [[0.9, 0.9, 0.9], [0.1, 0.1, 0.1]]    # visual
    pred_audio, pred_visual = snippet_predictions(frame_prob, np.array([0.5, 0.9, 0.1]), np.array([0.7, 0.2, 0.5]))
    assert pred_audio.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert pred_visual.tolist() == [[1, 0], [0, 0], [1, 0]]
    prob_audio, prob_visual, prob_av = snippet_probabilities(frame_prob.astype(np.float32))
    assert prob_av.dtype == np.float32 and prob_av.shape == (3, 2)
    assert prob_av[1].tolist() == pytest.approx([0.49 * 0.9, 0.7 * 0.1], abs=1e-6)


# ---------------------------------------------------------------------------------------------
# The readers, on files laid out as the release's (tmp_path copies of its format, no release file)
# ---------------------------------------------------------------------------------------------

def test_truth_rows_cover_onset_to_offset_inclusive_and_are_cut_at_t(tmp_path):
    path = tmp_path / "val_audio.csv"
    path.write_text(TRUTH_HEADER + "YX5Ay2kzz2U\t0\t1\tcar\nYX5Ay2kzz2U\t2\t2\tspeech\n"
                    "YX5Ay2kzz2U\t3\t135\tspeech\nYX5Ay2kzz2U\t9\t11\tcat\nZF-pF6v3fb0\t2\t5\tclapping\n")
    with pytest.warns(LFAVDataWarning, match="line 6: 'ZF-pF6v3fb0'"):   # a video not being read
        truth = read_truth(path, {"YX5Ay2kzz2U": 6, "-2UWP3n_05A": 3})
    video = truth["YX5Ay2kzz2U"]
    assert list(truth) == ["YX5Ay2kzz2U", "-2UWP3n_05A"]
    assert video[LFAV_CLASS_INDEX["car"]].tolist() == [1, 1, 0, 0, 0, 0]
    assert video[LFAV_CLASS_INDEX["speech"]].tolist() == [0, 0, 1, 1, 1, 1]
    assert video.sum() == 6   # the cat row starts after the video's 6 snippets
    assert not truth["-2UWP3n_05A"].any()


def test_truth_rows_the_release_ignores_come_with_a_warning(tmp_path):
    path = tmp_path / "test_visual.csv"
    path.write_text(TRUTH_HEADER + "mMVgZRbBJdo\t156\t0\tsinging\nmMVgZRbBJdo\t1\t2\tsinging\n"
                    "otherothero\t0\t1\tcar\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        truth = read_truth(path, {"mMVgZRbBJdo": 4})
    messages = [str(warning.message) for warning in caught]
    assert [warning.category for warning in caught] == [LFAVDataWarning, LFAVDataWarning]
    assert messages[0].startswith(f"{path}: 1 row(s) have offset < onset") and "line 2" in messages[0]
    assert "name no video being read" in messages[1] and "line 4: 'otherothero'" in messages[1]
    assert truth["mMVgZRbBJdo"][LFAV_CLASS_INDEX["singing"]].tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("text, message", [
    ("YX5Ay2kzz2U\t0\t1\tcar\nYX5Ay2kzz2U\t0\t1\ttrain\n", "line 3: unknown class 'train'"),
    ("YX5Ay2kzz2U\t0\t1\t speech\n", "line 2: unknown class ' speech'"),
    ("YX5Ay2kzz2U\t0\t1.5\tcar\n", "line 2: offset '1.5' is not a non-negative integer (seconds)"),
    ("YX5Ay2kzz2U\t-1\t1\tcar\n", "line 2: onset '-1' is not a non-negative integer (seconds)"),
    ("YX5Ay2kzz2U\t0\t1\n", "line 2: 3 fields, the header has 4"),
])
def test_a_bad_truth_row_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "val_visual.csv"
    path.write_text(TRUTH_HEADER + text)
    with pytest.raises(LFAVDataError) as error:
        read_truth(path, {"YX5Ay2kzz2U": 4})
    assert str(error.value) == f"{path}: {message}"


def test_missing_columns_and_files_are_errors(tmp_path):
    path = tmp_path / "val_audio.csv"
    path.write_text("filename\tonset\tevent_labels\nYX5Ay2kzz2U\t0\tcar\n")
    with pytest.raises(LFAVDataError, match=r"val_audio.csv: missing column\(s\) offset"):
        read_truth(path, {"YX5Ay2kzz2U": 4})
    path.write_text("filename,event_labels\nYX5Ay2kzz2U,car\n")
    with pytest.raises(LFAVDataError, match="missing column.*tab-separated expected"):
        read_weak_labels(path)
    with pytest.raises(LFAVDataError, match="absent.csv: cannot be read"):
        read_weak_labels(tmp_path / "absent.csv")
    with pytest.raises(LFAVDataError, match="audio feature of 'YX5Ay2kzz2U' cannot be read"):
        snippet_counts(tmp_path, ["YX5Ay2kzz2U"])


def test_weak_labels_as_the_release_reads_them(tmp_path):
    path = tmp_path / "train_audio_weakly.csv"
    path.write_text(WEAK_HEADER + "--96EN9NUQM\talarm,speech\nXvyeQ5Bz_lk\tsilent\n"
                    "HNS0CC0Z7TM\tspeech,cheering, playing_badminton\n5kE3ngBWV_U\tfixed-wing_aircraft,train\n")
    with pytest.warns(LFAVDataWarning, match=r"1 unknown class name\(s\) skipped[^\n]*\n  line 5: 'train'"):
        labels = read_weak_labels(path)
    assert list(labels) == ["--96EN9NUQM", "XvyeQ5Bz_lk", "HNS0CC0Z7TM", "5kE3ngBWV_U"]
    assert all(label.shape == (35,) and label.dtype == np.float32 for label in labels.values())
    assert np.flatnonzero(labels["--96EN9NUQM"]).tolist() == [1, 33]
    assert not labels["XvyeQ5Bz_lk"].any()
    assert np.flatnonzero(labels["HNS0CC0Z7TM"]).tolist() == [9, 24, 33]
    assert np.flatnonzero(labels["5kE3ngBWV_U"]).tolist() == [16]


@pytest.mark.parametrize("text, message", [
    ("aaaaaaaaaaa\tcar\naaaaaaaaaaa\tcat\n", "line 3: filename 'aaaaaaaaaaa' already on line 2"),
    ("aaaaaaaaaaa\t\n", "line 2: no event_labels (write 'silent' for none)"),
    ("aaaaaaaaaaa \tcar\n", "line 2: filename 'aaaaaaaaaaa ' has leading or trailing whitespace"),
])
def test_a_bad_weak_row_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "train_weakly.csv"
    path.write_text(WEAK_HEADER + text)
    with pytest.raises(LFAVDataError) as error:
        read_weak_labels(path)
    assert str(error.value) == f"{path}: {message}"


def test_the_three_weak_files_of_a_split_must_pair_by_row(tmp_path):
    paths = {kind: tmp_path / f"{kind}.csv" for kind in ("video", "audio", "visual")}
    paths["video"].write_text(WEAK_HEADER + "aaaaaaaaaaa\tcar,speech\nbbbbbbbbbbb\tdog\n")
    paths["audio"].write_text(WEAK_HEADER + "aaaaaaaaaaa\tspeech\nbbbbbbbbbbb\tdog\n")
    paths["visual"].write_text(WEAK_HEADER + "aaaaaaaaaaa\tcar\nbbbbbbbbbbb\tsilent\n")
    split = read_split_weak_labels(paths["video"], paths["audio"], paths["visual"])
    assert np.flatnonzero(split["visual"]["aaaaaaaaaaa"]).tolist() == [4]
    assert np.flatnonzero(split["audio"]["aaaaaaaaaaa"]).tolist() == [33]
    paths["visual"].write_text(WEAK_HEADER + "bbbbbbbbbbb\tdog\naaaaaaaaaaa\tcar\n")
    with pytest.raises(LFAVDataError, match=r"visual.csv: video row 1 differs from .*video.csv"):
        read_split_weak_labels(paths["video"], paths["audio"], paths["visual"])


def test_the_class_list_is_the_releases():
    assert LFAV_NUM_CLASSES == len(set(LFAV_CLASSES)) == 35
    assert (LFAV_CLASSES[0], LFAV_CLASSES[16], LFAV_CLASSES[24], LFAV_CLASSES[-1]) == (
        "accordion", "fixed-wing_aircraft", "playing_badminton", "violin")
    assert LFAV_CLASS_INDEX["speech"] == 33 and LFAV_CLASS_INDEX["playing_basketball"] == 23
