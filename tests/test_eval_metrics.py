"""Tests of the LLP metrics (PROTOCOL.md §9): hand-computed cases for each rule, then
the batched evaluator against the per-video reference on random splits."""

import numpy as np
import pytest
import torch

from avvp_data.llp import NUM_CLASSES, NUM_SEGMENTS
from reporting.tables import format_table
from scripts.bench_eval import random_labels, random_predictions  # the benchmark's generator, shared
from utils.eval_metrics import (
    _event_counts_batched,
    _event_masks,
    _pattern_codes,
    _popcount,
    _popcount_swar,
    _segment_counts_batched,
    evaluate_split,
    event_counts,
    event_level,
    extract_events,
    segment_level,
)

ALL_CODES = np.arange(2 ** NUM_SEGMENTS)

REFERENCE_ORDER = ("audio", "visual", "event", "av")  # published return order


def _labels(positives=None):
    """(25, 10) float 0/1 video from {class: [segments]}."""
    labels = np.zeros((NUM_CLASSES, NUM_SEGMENTS))
    for cls, segments in (positives or {}).items():
        labels[cls, segments] = 1
    return labels


def _score_video(pred_a, pred_v, gt_a, gt_v):
    """Reference (segment, event) score tuples of one video, after checking that
    the batched evaluator gives the same numbers."""
    pred_av, gt_av = pred_a * pred_v, gt_a * gt_v
    seg = segment_level(pred_a, pred_v, pred_av, gt_a, gt_v, gt_av)
    evt = event_level(pred_a, pred_v, pred_av, gt_a, gt_v, gt_av)
    batched = evaluate_split(pred_a[None], pred_v[None], gt_a[None], gt_v[None])
    for level, scores in (("seg", seg), ("evt", evt)):
        for column, score in zip(REFERENCE_ORDER, scores):
            assert batched[f"{level}_{column}"] == pytest.approx(score, abs=1e-12)
    return seg, evt


def _audio_only(pred_a, gt_a):
    """(segment f_a, event f_a) of a video with no visual or audio-visual labels;
    checks that the empty modalities score 1.0 and Event@AV equals audio."""
    empty = _labels()
    seg, evt = _score_video(_labels(pred_a), empty, _labels(gt_a), empty)
    for f_a, f_v, f_event, f_av in (seg, evt):
        assert (f_v, f_av) == (1.0, 1.0)
        assert f_event == pytest.approx(f_a, abs=1e-12)
    return seg[0], evt[0]


# ---------------------------------------------------------------- hand cases

def test_video_without_positives_scores_one():
    empty = _labels()
    seg, evt = _score_video(empty, empty, empty, empty)
    assert seg == (1.0, 1.0, 1.0, 1.0)
    assert evt == (1.0, 1.0, 1.0, 1.0)


def test_split_without_positives_scores_one_and_nan_per_class():
    zeros = np.zeros((3, NUM_CLASSES, NUM_SEGMENTS), dtype=bool)
    results = evaluate_split(zeros, zeros, zeros, zeros)
    for level in ("seg", "evt"):
        for column in ("audio", "visual", "av", "type", "event"):
            assert results[f"{level}_{column}"] == 1.0
        for modality in ("audio", "visual", "av"):
            assert np.isnan(results["per_class"][f"{level}_{modality}"]).all()
            assert not results["per_class"][f"{level}_{modality}_counts"].any()


def test_class_with_prediction_but_no_truth_scores_zero():
    # class 0: 3 predicted segments / 1 predicted event, no truth -> F 0
    # class 1: one segment right -> F 1; mean (0 + 1) / 2 = 0.5 at both levels
    assert _audio_only({0: [0, 1, 2], 1: [5]}, {1: [5]}) == (0.5, 0.5)


def test_class_with_truth_but_no_prediction_scores_zero():
    # class 2: truth only -> F 0; class 1 right -> F 1; mean 0.5
    assert _audio_only({1: [5]}, {1: [5], 2: [3, 4]}) == (0.5, 0.5)


def test_iou_exactly_half_is_a_match():
    # pred 0-1 vs truth 0-3: IoU 2/4 -> event TP, truth matched: F 1.
    # segments: TP 2, FN 2 -> 4 / (4 + 2) = 2/3
    seg, evt = _audio_only({0: [0, 1]}, {0: [0, 1, 2, 3]})
    assert evt == 1.0
    assert seg == pytest.approx(2 / 3, abs=1e-12)
    # pred 0-9 vs truth 0-4: IoU 5/10 -> TP; segments TP 5, FP 5 -> 10/15
    seg, evt = _audio_only({0: list(range(10))}, {0: [0, 1, 2, 3, 4]})
    assert evt == 1.0
    assert seg == pytest.approx(2 / 3, abs=1e-12)


def test_iou_just_below_half_is_no_match():
    # pred 0-3 vs truth 0-8: IoU 4/9 < 1/2 -> FP 1, FN 1: F 0.
    # segments: TP 4, FN 5 -> 8 / 13
    seg, evt = _audio_only({0: [0, 1, 2, 3]}, {0: list(range(9))})
    assert evt == 0.0
    assert seg == pytest.approx(8 / 13, abs=1e-12)
    # pred 1-3 vs truth 2-5: IoU |{2,3}| / |{1..5}| = 2/5 -> F 0
    assert _audio_only({0: [1, 2, 3]}, {0: [2, 3, 4, 5]})[1] == 0.0


def test_long_prediction_over_two_truth_events():
    # pred run 0-5; truth runs 0-3 and 5. IoU 4/6 with 0-3 -> TP; truth 5 has
    # IoU 1/6 -> FN. Event F = 2 / (2 + 0 + 1) = 2/3.
    # segments: TP 5, FP 1 (segment 4) -> 10 / 11
    seg, evt = _audio_only({0: [0, 1, 2, 3, 4, 5]}, {0: [0, 1, 2, 3, 5]})
    assert evt == pytest.approx(2 / 3, abs=1e-12)
    assert seg == pytest.approx(10 / 11, abs=1e-12)


def test_two_predictions_over_one_truth_event():
    # pred runs 0-2 and 4; truth 0-4. IoU 3/5 -> TP, IoU 1/5 -> FP; truth
    # matched -> FN 0. Event F = 2 / (2 + 1 + 0) = 2/3. Segments TP 4, FN 1 -> 8/9.
    seg, evt = _audio_only({0: [0, 1, 2, 4]}, {0: [0, 1, 2, 3, 4]})
    assert evt == pytest.approx(2 / 3, abs=1e-12)
    assert seg == pytest.approx(8 / 9, abs=1e-12)


def test_without_one_to_one_matching_counts_equal_a_matching():
    # Two runs can never both reach IoU >= 1/2 with one run: each overlap
    # would need half of that run, but the gap between the two runs lies
    # inside it. So "matched predictions" (TP) always equals "matched truth
    # events" (gt events - FN); checked over all 1024 x 1024 pattern pairs.
    pred, gt = np.meshgrid(ALL_CODES, ALL_CODES, indexing="ij")
    tp, _, fn = _event_counts_batched(pred, gt, NUM_SEGMENTS).astype(int)
    num_gt_events = _popcount(_event_masks(NUM_SEGMENTS)[0][gt]).astype(int)
    assert np.array_equal(tp, num_gt_events - fn)
    assert num_gt_events.max() == 5  # 1010101010


def test_events_touching_both_ends():
    # pred runs 0-2, 7-9; truth runs 0-2, 8-9: IoU 1 and 2/3 -> TP 2: F 1.
    # segments: TP 5, FP 1 (segment 7) -> 10 / 11
    seg, evt = _audio_only({0: [0, 1, 2, 7, 8, 9]}, {0: [0, 1, 2, 8, 9]})
    assert evt == 1.0
    assert seg == pytest.approx(10 / 11, abs=1e-12)
    # pred 9 vs truth 8-9: IoU 1/2 -> TP
    assert _audio_only({0: [9]}, {0: [8, 9]})[1] == 1.0


def test_extract_events():
    assert extract_events([1, 1, 1, 0, 0, 0, 0, 1, 1, 1]) == [(0, 3), (7, 10)]
    assert extract_events([1] * 10) == [(0, 10)]
    assert extract_events([0] * 10) == []
    assert extract_events([1] + [0] * 9) == [(0, 1)]
    assert extract_events([0] * 9 + [1]) == [(9, 10)]
    assert extract_events([1, 0] * 5) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def test_several_events_per_class():
    # class 0: pred 0,2,4,6,8 (5 runs); truth runs 0-2 and 6-7.
    #   pred 0 and 2: IoU 1/3 with 0-2 -> FP; pred 4, 8 -> FP; pred 6: IoU 1/2 -> TP.
    #   truth 0-2 unmatched -> FN. Event F = 2 / (2 + 4 + 1) = 2/7.
    #   segments: TP {0,2,6}, FP {4,8}, FN {1,7} -> 6 / 10.
    # class 1: exact -> F 1 at both levels.
    seg, evt = _audio_only({0: [0, 2, 4, 6, 8], 1: [3, 4]}, {0: [0, 1, 2, 6, 7], 1: [3, 4]})
    assert event_counts(_labels({0: [0, 2, 4, 6, 8]})[0], _labels({0: [0, 1, 2, 6, 7]})[0]) \
        == (1, 4, 1)
    assert evt == pytest.approx((2 / 7 + 1) / 2, abs=1e-12)
    assert seg == pytest.approx((0.6 + 1) / 2, abs=1e-12)


def test_event_at_av_pools_counts_before_f():
    # class 0: audio pred 0, truth 0 (TP); visual pred 0-2, no truth.
    # segment: audio F 1; visual F 0 (FP 3); pooled TP 1, FP 3 -> 2/5 = 0.4,
    #   not the mean 0.5; audio-visual pred {0}, truth {} -> F 0.
    # event: audio TP; visual FP 1; pooled 2 / (2 + 1) = 2/3, not 0.5; av FP -> 0.
    seg, evt = _score_video(_labels({0: [0]}), _labels({0: [0, 1, 2]}),
                            _labels({0: [0]}), _labels())
    assert seg == pytest.approx((1.0, 0.0, 0.4, 0.0), abs=1e-12)
    assert evt == pytest.approx((1.0, 0.0, 2 / 3, 0.0), abs=1e-12)
    results = evaluate_split(*(x[None] for x in (_labels({0: [0]}), _labels({0: [0, 1, 2]}),
                                                 _labels({0: [0]}), _labels())))
    assert results["seg_type"] == pytest.approx(1 / 3, abs=1e-12)  # mean(1, 0, 0)


def test_per_class_pools_counts_over_videos():
    # video 0, audio class 0: pred 0-1, truth 0 -> segments TP 1, FP 1;
    #   event IoU 1/2 -> TP 1.
    # video 1, audio class 0: truth 3, no pred -> FN 1 (segment and event).
    # pooled segment (1, 1, 1) -> 2/4; event (1, 0, 1) -> 2/3; other classes NaN.
    pred_a = np.stack([_labels({0: [0, 1]}), _labels()])
    gt_a = np.stack([_labels({0: [0]}), _labels({0: [3]})])
    empty = np.zeros_like(pred_a)
    per_class = evaluate_split(pred_a, empty, gt_a, empty)["per_class"]
    assert per_class["seg_audio_counts"][0].tolist() == [1, 1, 1]
    assert per_class["evt_audio_counts"][0].tolist() == [1, 0, 1]
    assert per_class["seg_audio"][0] == pytest.approx(0.5, abs=1e-12)
    assert per_class["evt_audio"][0] == pytest.approx(2 / 3, abs=1e-12)
    assert np.isnan(per_class["seg_audio"][1:]).all()
    assert np.isnan(per_class["evt_visual"]).all()


def test_format_table():
    results = {"seg_audio": 0.614, "seg_visual": 0.634, "seg_av": 0.568, "seg_type": 0.605,
               "seg_event": 0.595, "evt_audio": 0.546, "evt_visual": 0.608, "evt_av": 0.511,
               "evt_type": 0.555, "evt_event": 1.0}
    assert format_table(results, title="DHHN test") == (
        "DHHN test\n"
        "      Audio  Visual  Audio-Visual  Type@AV  Event@AV\n"
        "Seg.   61.4    63.4          56.8     60.5      59.5\n"
        "Eve.   54.6    60.8          51.1     55.5     100.0")
    assert format_table(results).startswith("      Audio")


# ----------------------------------------------------- batched vs reference

def _random_split(seed, num_videos):
    rng = np.random.default_rng(seed)
    gt_a, gt_v = random_labels(rng, num_videos), random_labels(rng, num_videos)
    return random_predictions(rng, gt_a), random_predictions(rng, gt_v), gt_a, gt_v


def test_batched_equals_reference_on_random_split():
    pred_a, pred_v, gt_a, gt_v = _random_split(seed=0, num_videos=300)
    assert (~gt_a.any(axis=(1, 2))).any()  # the sample has videos without truth
    assert (~pred_a.any(axis=(1, 2))).any()  # ... and without predictions
    results = evaluate_split(pred_a, pred_v, gt_a, gt_v)
    for level, reference in (("seg", segment_level), ("evt", event_level)):
        expected = np.array([reference(pa, pv, pa & pv, ga, gv, ga & gv)
                             for pa, pv, ga, gv in zip(pred_a, pred_v, gt_a, gt_v)])
        for column, per_video in zip(REFERENCE_ORDER, expected.T):
            np.testing.assert_allclose(results["per_video"][f"{level}_{column}"], per_video,
                                       rtol=0, atol=1e-12)
            assert abs(results[f"{level}_{column}"] - per_video.mean()) <= 1e-12
        split_means = [results[f"{level}_{m}"] for m in ("audio", "visual", "av")]
        assert results[f"{level}_type"] == pytest.approx(np.mean(split_means), abs=1e-12)


def test_per_class_counts_equal_direct_count():
    pred_a, pred_v, gt_a, gt_v = _random_split(seed=1, num_videos=200)
    per_class = evaluate_split(pred_a, pred_v, gt_a, gt_v)["per_class"]
    for modality, pred, gt in (("audio", pred_a, gt_a), ("visual", pred_v, gt_v),
                               ("av", pred_a & pred_v, gt_a & gt_v)):
        segment = np.stack([(pred & gt).sum(axis=(0, 2)), (pred & ~gt).sum(axis=(0, 2)),
                            (~pred & gt).sum(axis=(0, 2))], axis=1)
        event = np.zeros((NUM_CLASSES, 3), dtype=int)
        for pred_video, gt_video in zip(pred, gt):
            for cls in range(NUM_CLASSES):
                event[cls] += event_counts(pred_video[cls], gt_video[cls])
        for level, counts in (("seg", segment), ("evt", event)):
            assert np.array_equal(per_class[f"{level}_{modality}_counts"], counts)
            tp, fp, fn = counts.T
            with np.errstate(invalid="ignore", divide="ignore"):
                expected = 2 * tp / (2 * tp + fp + fn)  # NaN where 0/0
            np.testing.assert_allclose(per_class[f"{level}_{modality}"], expected,
                                       rtol=0, atol=1e-12)


def test_batched_counts_equal_reference_on_patterns():
    rng = np.random.default_rng(2)
    rows = rng.random((2, 3000, NUM_SEGMENTS)) < rng.random((2, 3000, 1))
    # every pattern against itself and against an empty row, then random pairs
    every_row = (ALL_CODES[:, None] >> np.arange(NUM_SEGMENTS)) & 1 == 1
    empty = np.zeros_like(every_row)
    pred_rows = np.concatenate([every_row, every_row, empty, rows[0]])
    gt_rows = np.concatenate([every_row, empty, every_row, rows[1]])
    pred, gt = _pattern_codes(pred_rows), _pattern_codes(gt_rows)
    segment = _segment_counts_batched(pred, gt).T.tolist()
    event = _event_counts_batched(pred, gt, NUM_SEGMENTS).T.tolist()
    for i, (pred_row, gt_row) in enumerate(zip(pred_rows, gt_rows)):
        assert event[i] == list(event_counts(pred_row, gt_row))
        assert segment[i] == [int(pred_row[gt_row].sum()), int(pred_row[~gt_row].sum()),
                              int(gt_row[~pred_row].sum())]


@pytest.mark.parametrize("popcount", [_popcount, _popcount_swar])
def test_popcount(popcount):
    rng = np.random.default_rng(4)
    masks = np.concatenate([np.array([0, 1, 2 ** 63, 2 ** 64 - 1], dtype=np.uint64),
                            rng.integers(0, 2 ** 64 - 1, size=1000, dtype=np.uint64)])
    expected = [bin(int(mask)).count("1") for mask in masks]
    assert popcount(masks).tolist() == expected
    assert popcount(ALL_CODES).tolist() == [bin(code).count("1") for code in ALL_CODES]


def test_accepts_numeric_dtypes_and_tensors():
    pred_a, pred_v, gt_a, gt_v = _random_split(seed=3, num_videos=20)
    expected = evaluate_split(pred_a, pred_v, gt_a, gt_v)
    for convert in (lambda x: x.astype(np.uint8), lambda x: x.astype(np.float32),
                    torch.from_numpy, lambda x: torch.from_numpy(x).float()):
        results = evaluate_split(*(convert(x) for x in (pred_a, pred_v, gt_a, gt_v)))
        for key in expected["per_video"]:
            assert np.array_equal(results["per_video"][key], expected["per_video"][key])


@pytest.mark.parametrize("bad_input, message", [
    (np.zeros((2, NUM_CLASSES, NUM_SEGMENTS + 1)), "shape"),
    (np.zeros((NUM_CLASSES, NUM_SEGMENTS)), "shape"),
    (np.full((2, NUM_CLASSES, NUM_SEGMENTS), 0.5), "0/1"),
    (np.full((2, NUM_CLASSES, NUM_SEGMENTS), 2), "0/1"),
    (np.zeros((3, NUM_CLASSES, NUM_SEGMENTS)), "same number of videos"),
])
def test_bad_inputs_raise(bad_input, message):
    good = np.zeros((2, NUM_CLASSES, NUM_SEGMENTS))
    with pytest.raises(ValueError, match=message):
        evaluate_split(bad_input, good, good, good)


def test_empty_split_raises():
    empty = np.zeros((0, NUM_CLASSES, NUM_SEGMENTS))
    with pytest.raises(ValueError, match="empty"):
        evaluate_split(empty, empty, empty, empty)
