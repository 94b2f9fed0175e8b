"""LLP parsing metrics: segment- and event-level F-scores (PROTOCOL.md §9).

Two layers:

* `segment_level` / `event_level` score one video. They are the reference
  implementation, written plainly after the published AVVP code (whose names
  SO_a, GT_a, ... they keep, in this module only).
* `evaluate_split` scores a whole split at once, fully vectorised, and must
  equal averaging the reference functions over the videos (tests check this
  to 1e-12). `format_table` prints its result in the published layout.

All label arrays are (class, segment) = (C, T) per video, 0/1 valued; a split is
(N, C, T). LLP has C = 25 classes and T = 10 segments; the module knows no dataset:
the class and segment counts come from the arrays, the class names from the caller.
"""

import functools

import numpy as np
import torch

# Metric keys: "<level>_<column>", level in LEVELS, column in TABLE_COLUMNS (PROTOCOL.md §9).
LEVELS = ("seg", "evt")
LEVEL_TITLES = {"seg": "Seg.", "evt": "Eve."}
TABLE_COLUMNS = ("audio", "visual", "av", "type", "event")
COLUMN_TITLES = {"audio": "Audio", "visual": "Visual", "av": "Audio-Visual",
                 "type": "Type@AV", "event": "Event@AV"}
METRIC_KEYS = tuple(f"{level}_{column}" for level in LEVELS for column in TABLE_COLUMNS)   # the 10 of a table
# the batched scorer keeps a row's events as bits of one uint64: at most 10 segments (55 intervals)
MAX_BATCHED_SEGMENTS = 10

SCORED_MODALITIES = ("audio", "visual", "av")   # audio-visual = audio AND visual (PROTOCOL.md §9)
DECISION_THRESHOLD = 0.5   # PROTOCOL.md §9, for segment and video-level probabilities alike
# gating rules: DHHN gates each modality with its own video-level prediction (a_prob / v_prob),
# HAN both with the global one (PROTOCOL.md §9, §11)
GATINGS = ("modality", "global")
# Per-video score columns: every table column except "type", which is a mean of
# split means (PROTOCOL.md §9), not a per-video score.
VIDEO_COLUMNS = ("audio", "visual", "av", "event")


# --------------------------------------------------------------------------
# Reference implementation, one video at a time (PROTOCOL.md §9)
# --------------------------------------------------------------------------

def _mean_f_score(tp, fp, fn):
    """Mean over classes of 2TP/(2TP+FP+FN), skipping classes with no
    prediction and no ground truth; 1.0 when every class is skipped. (25,) counts."""
    scores = [2 * t / (2 * t + p + n) for t, p, n in zip(tp, fp, fn) if t + p + n > 0]
    if not scores:
        return 1.0  # all true negatives
    return sum(scores) / len(scores)


def _segment_counts(pred, gt):
    """Per-class TP, FP, FN over segments; (25, 10) 0/1 -> three (25,) int arrays."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    tp = np.sum(pred & gt, axis=1)
    fp = np.sum(pred & ~gt, axis=1)
    fn = np.sum(~pred & gt, axis=1)
    return tp, fp, fn


def _four_scores(counts_a, counts_v, counts_av):
    """(f_a, f_v, f_event, f_av) from per-class (tp, fp, fn) triples.

    Event@AV pools the audio and visual counts per class before the F-score."""
    pooled = [a + v for a, v in zip(counts_a, counts_v)]
    return (_mean_f_score(*counts_a), _mean_f_score(*counts_v),
            _mean_f_score(*pooled), _mean_f_score(*counts_av))


def segment_level(SO_a, SO_v, SO_av, GT_a, GT_v, GT_av):
    """Segment-level scores of one video; each input (25, 10) 0/1; PROTOCOL.md §9.

    Returns (f_a, f_v, f_event, f_av): audio, visual, Event@AV, audio-visual.
    """
    return _four_scores(_segment_counts(SO_a, GT_a), _segment_counts(SO_v, GT_v),
                        _segment_counts(SO_av, GT_av))


def extract_events(row):
    """Maximal runs of positive segments in a (10,) 0/1 row -> [(start, end), ...],
    end exclusive, in order."""
    events = []
    start = None
    for t, positive in enumerate(np.asarray(row, dtype=bool)):
        if positive and start is None:
            start = t
        elif not positive and start is not None:
            events.append((start, t))
            start = None
    if start is not None:
        events.append((start, len(row)))
    return events


def event_rows(filenames, labels, class_names):
    """[(filename, onset, offset, class name)] of (N, C, T) 0/1 labels, numpy or torch: one per
    maximal run of positive segments (PROTOCOL.md §9 events), in video, class, onset order; the rows of
    an eval file (PROTOCOL.md §2). T is 10 for LLP clips, the stitched length for parse_video.py."""
    labels = as_numpy(labels)
    if labels.ndim != 3 or labels.shape[:2] != (len(filenames), len(class_names)) or not labels.shape[2]:
        raise ValueError(f"labels must have shape ({len(filenames)}, {len(class_names)}, T), e.g. T = 10; "
                         f"got {labels.shape}")
    labels = labels.astype(bool)
    rows = []
    for video, cls in zip(*np.nonzero(labels.any(axis=2))):
        for onset, offset in extract_events(labels[video, cls]):
            rows.append((filenames[video], onset, offset, class_names[cls]))
    return rows


def _is_match(event_1, event_2):
    """IoU over segments >= 0.5, in integers: 2 |A & B| >= |A | B|."""
    segments_1 = set(range(*event_1))
    segments_2 = set(range(*event_2))
    return 2 * len(segments_1 & segments_2) >= len(segments_1 | segments_2)


def event_counts(pred_row, gt_row):
    """Event TP, FP, FN of one class in one video; rows (10,) 0/1; PROTOCOL.md §9.

    As published there is no one-to-one matching: a predicted event is a TP if
    it matches SOME gt event, else FP; a gt event matched by no predicted event
    is a FN. (At IoU >= 0.5 two disjoint runs can never both match one run, so
    this happens to equal a one-to-one matching; tests check it exhaustively.)
    """
    pred_events = extract_events(pred_row)
    gt_events = extract_events(gt_row)
    tp = sum(any(_is_match(p, g) for g in gt_events) for p in pred_events)
    fp = len(pred_events) - tp
    fn = sum(not any(_is_match(p, g) for p in pred_events) for g in gt_events)
    return tp, fp, fn


def _event_counts(pred, gt):
    """Per-class event TP, FP, FN; (25, 10) 0/1 -> three (25,) int arrays."""
    counts = np.array([event_counts(p, g) for p, g in zip(pred, gt)], dtype=np.int64)
    return counts[:, 0], counts[:, 1], counts[:, 2]


def event_level(SO_a, SO_v, SO_av, GT_a, GT_v, GT_av):
    """Event-level scores of one video; each input (25, 10) 0/1; PROTOCOL.md §9.

    Returns (f_a, f_v, f_event, f_av): audio, visual, Event@AV, audio-visual.
    """
    return _four_scores(_event_counts(SO_a, GT_a), _event_counts(SO_v, GT_v),
                        _event_counts(SO_av, GT_av))


# --------------------------------------------------------------------------
# Batched evaluation of a split
# --------------------------------------------------------------------------

# A row of T <= MAX_BATCHED_SEGMENTS 0/1 segments is handled as a bit mask, its pattern code
# sum_t row[t] << t. Counts then become bit counts of masks (PROTOCOL.md §9):
#   segments: TP = |p & g|, FP = |p & ~g|, FN = |~p & g| for codes p, g;
#   events: over the 55 intervals [start, end) of a row, runs[c] marks the
#   events (maximal runs) of pattern c and close[c] the intervals with IoU >= 0.5
#   to some event of c; TP = |runs[p] & close[g]|, FP = |runs[p] & ~close[g]|,
#   FN = |runs[g] & ~close[p]| (IoU is symmetric).

@functools.cache
def _event_masks(num_segments):
    """(runs, close): two read-only (2**num_segments,) uint64 arrays of interval
    bit masks per row pattern, as described above. Built once (about 1 ms)."""
    starts, ends = np.triu_indices(num_segments + 1, k=1)  # all 0 <= start < end <= S
    if len(starts) > 64:
        raise ValueError(f"{num_segments} segments have {len(starts)} intervals; "
                         "interval masks need them to fit one uint64 (<= 10 segments)")
    # An interval is a maximal run of a pattern iff all its segments are on and
    # its neighbours (where they exist) are off.
    inside = (1 << ends) - (1 << starts)
    border = ((1 << starts) >> 1) | ((1 << ends) & ((1 << num_segments) - 1))
    codes = np.arange(2 ** num_segments)[:, None]
    is_run = ((codes & inside) == inside) & ((codes & border) == 0)  # (P, 55)

    inter = np.clip(np.minimum(ends[:, None], ends) - np.maximum(starts[:, None], starts),
                    0, None)
    lengths = ends - starts
    union = lengths[:, None] + lengths - inter
    is_match = 2 * inter >= union  # (55, 55) IoU >= 0.5, in integers
    is_close = is_run.astype(np.int64) @ is_match.astype(np.int64) > 0  # (P, 55)

    bits = np.left_shift(np.uint64(1), np.arange(len(starts), dtype=np.uint64))
    runs = np.bitwise_or.reduce(np.where(is_run, bits, np.uint64(0)), axis=1)
    close = np.bitwise_or.reduce(np.where(is_close, bits, np.uint64(0)), axis=1)
    runs.flags.writeable = close.flags.writeable = False  # cached and shared
    return runs, close


def _popcount(masks):
    """(...) non-negative int64 or uint64 bit masks -> (...) uint8 numbers of set bits."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(masks)
    return _popcount_swar(masks)


def _popcount_swar(masks):
    """Bit count for numpy < 2.0, by the classic SWAR reduction (Hacker's Delight §5-1):
    add neighbouring 1-, 2-, then 4-bit fields, then sum the 8 bytes by a multiply."""
    masks = masks.astype(np.uint64)
    one, two, four = np.uint64(1), np.uint64(2), np.uint64(4)
    pairs, nibbles = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333)
    masks = masks - ((masks >> one) & pairs)
    masks = (masks & nibbles) + ((masks >> two) & nibbles)
    masks = (masks + (masks >> four)) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((masks * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.uint8)


def _segment_counts_batched(pred, gt):
    """(...) int64 pattern codes of pred and gt rows -> (3, ...) uint8 segment TP, FP, FN."""
    return np.stack([_popcount(pred & gt), _popcount(pred & ~gt), _popcount(~pred & gt)])


def _event_counts_batched(pred, gt, num_segments):
    """(...) int64 pattern codes of pred and gt rows of `num_segments` -> (3, ...) uint8 event TP, FP, FN."""
    runs, close = _event_masks(num_segments)
    return np.stack([_popcount(runs[pred] & close[gt]), _popcount(runs[pred] & ~close[gt]),
                     _popcount(runs[gt] & ~close[pred])])


def _pattern_codes(labels):
    """(..., T) bool rows -> (...) int64 pattern codes, sum_t row[t] << t."""
    # A small int16 matmul is ~5x faster here than np.packbits on 10-long rows;
    # int64 (not uint64) codes index arrays without a conversion.
    codes = labels.astype(np.int16) @ (1 << np.arange(labels.shape[-1], dtype=np.int16))
    return codes.astype(np.int64)


def as_numpy(value):
    """A numpy array of an array-like or a torch tensor on any device."""
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def _to_codes(labels, name):
    """(N, C, T) 0/1 array or tensor (any dtype, any device) -> (N, 25) int64
    pattern codes; raises ValueError on a wrong shape or non-binary values."""
    labels = as_numpy(labels)
    if labels.ndim != 3 or not 1 <= labels.shape[2] <= MAX_BATCHED_SEGMENTS:
        raise ValueError(f"{name} must have shape (N, classes, segments) with 1 to {MAX_BATCHED_SEGMENTS} "
                         f"segments (LLP: (N, 25, 10)), got {labels.shape}")
    if labels.dtype != bool:
        binary = labels != 0
        if not np.array_equal(binary, labels == 1):
            raise ValueError(f"{name} must be 0/1 valued")
        labels = binary
    return _pattern_codes(labels)


def _video_scores(tp, fp, fn):
    """(..., N, 25) counts -> (..., N) float64 per-video mean F over the classes
    with any prediction or truth, 1.0 for a video with none (PROTOCOL.md §9)."""
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f_score = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=present)
    num_present = present.sum(axis=-1)
    return np.divide(f_score.sum(axis=-1), num_present,
                     out=np.ones(num_present.shape), where=num_present > 0)


def _class_scores(tp, fp, fn):
    """(..., 25) counts -> (..., 25) float64 F per class; NaN for a class with no
    prediction and no truth."""
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.full(tp.shape, np.nan),
                     where=denominator > 0)


def gates(outputs, gating="modality"):
    """(audio gate, visual gate), the (N, 25) video-level probabilities that gate the segments:
    a_prob / v_prob ("modality", DHHN) or the global prediction ("global", HAN); PROTOCOL.md §9."""
    if gating not in GATINGS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")
    if gating == "modality":
        return outputs["audio_prob"], outputs["visual_prob"]
    return outputs["global_prob"], outputs["global_prob"]


def segment_predictions(outputs, gating="modality"):
    """Binary (N, 25, 10) audio and visual segment predictions of model outputs; PROTOCOL.md §9.

    outputs: "frame_prob" (N, 10, 2, 25) and the video-level probabilities (N, 25), tensors.
    A segment is positive when its frame probability and its video-level gate (`gates`) both
    reach the threshold.
    """
    gate_audio, gate_visual = gates(outputs, gating)
    frame_prob = outputs["frame_prob"]
    pred_audio = (frame_prob[:, :, 0, :] >= DECISION_THRESHOLD) & (gate_audio[:, None, :] >= DECISION_THRESHOLD)
    pred_visual = (frame_prob[:, :, 1, :] >= DECISION_THRESHOLD) & (gate_visual[:, None, :] >= DECISION_THRESHOLD)
    return pred_audio.transpose(1, 2), pred_visual.transpose(1, 2)


def score_outputs(outputs, gt_audio, gt_visual, gating="modality"):
    """`evaluate_split` of model outputs under a gating rule, against (N, 25, 10) truth."""
    return evaluate_split(*segment_predictions(outputs, gating), gt_audio, gt_visual)


def evaluate_split(pred_audio, pred_visual, gt_audio, gt_visual):
    """Score a split; inputs (N, 25, 10) 0/1 (class x segment), numpy or torch.

    The audio-visual prediction and truth are audio AND visual (PROTOCOL.md §9).
    Returns a dict:
      "<level>_<column>" for level in LEVELS, column in TABLE_COLUMNS: float in
          [0, 1], the mean over videos (type = mean of audio, visual, av);
      "per_video": {"<level>_<column>" for the non-type columns: (N,) float64};
      "per_class": {"<level>_<modality>": (25,) float64 F from counts pooled
          over the split (NaN where a class never occurs nor is predicted),
          "<level>_<modality>_counts": (25, 3) int64 pooled TP, FP, FN}.
    Equals averaging `segment_level` / `event_level` over the videos.
    """
    pred_a, pred_v = _to_codes(pred_audio, "pred_audio"), _to_codes(pred_visual, "pred_visual")
    gt_a, gt_v = _to_codes(gt_audio, "gt_audio"), _to_codes(gt_visual, "gt_visual")
    shapes = {tuple(as_numpy(labels).shape) for labels in (pred_audio, pred_visual, gt_audio, gt_visual)}
    if len({shape[0] for shape in shapes}) != 1:
        raise ValueError(f"all inputs must have the same number of videos, got {sorted(shapes)}")
    if len(shapes) != 1:
        raise ValueError(f"all inputs must have the same shape (videos, classes, segments), got {sorted(shapes)}")
    num_segments = next(iter(shapes))[2]
    if pred_a.shape[0] == 0:
        raise ValueError("cannot evaluate an empty split")
    # Rows are bit patterns from here on, so AND of the labels is AND of the codes.
    pred = np.stack([pred_a, pred_v, pred_a & pred_v])  # (3, N, 25), SCORED_MODALITIES order
    gt = np.stack([gt_a, gt_v, gt_a & gt_v])

    results = {"per_video": {}, "per_class": {}}
    event_counts_batched = functools.partial(_event_counts_batched, num_segments=num_segments)
    for level, count in (("seg", _segment_counts_batched), ("evt", event_counts_batched)):
        counts = count(pred, gt)  # (3, 3, N, 25): TP/FP/FN, modality, video, class
        # Event@AV pools audio and visual counts per class before the F-score.
        column_counts = np.concatenate([counts, counts[:, :1] + counts[:, 1:2]], axis=1)
        per_video = _video_scores(*column_counts)  # (4, N), VIDEO_COLUMNS order
        for column, scores in zip(VIDEO_COLUMNS, per_video):
            results["per_video"][f"{level}_{column}"] = scores
            results[f"{level}_{column}"] = float(scores.mean())
        results[f"{level}_type"] = float(np.mean([results[f"{level}_{m}"] for m in SCORED_MODALITIES]))

        split_counts = counts.sum(axis=2, dtype=np.int64)  # (3, 3, 25) pooled over videos
        class_scores = _class_scores(*split_counts)  # (3, 25)
        for i, modality in enumerate(SCORED_MODALITIES):
            results["per_class"][f"{level}_{modality}"] = class_scores[i]
            results["per_class"][f"{level}_{modality}_counts"] = split_counts[:, i].T
    return results
