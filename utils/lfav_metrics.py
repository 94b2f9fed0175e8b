"""LFAV's parsing metrics over videos of any length, computed as the LFAV release computes them.

The release is https://github.com/GeWu-Lab/LFAV (commit e17ad4d8); "evaluation.py:N" is its
src/tools/evaluation.py, "eval_metrics.py:N" its src/utils/eval_metrics.py, "main.py:N" src/main.py.

* Segment- and event-level F1 per video are LLP's (PROTOCOL.md §9) over T snippets instead of 10:
  the release's `segment_level` / `event_level` (eval_metrics.py:33-207) count TP/FP/FN and apply
  the empty-video rule exactly as utils/eval_metrics.py does, whose per-video functions take (C, T)
  arrays of any T, so they are reused here. Split scores are means over videos; Type@AV is the mean
  of audio, visual and audio-visual (evaluation.py:217-222). The release computes the segment level
  and Event@AV but prints only the event-level audio, visual, audio-visual and Type@AV.
* Snippet-level mAP (eval_metrics.py:289-332): per class, the snippets of all videos are pooled
  and ranked by probability (`np.argsort(...)[::-1]`, so equal probabilities fall in numpy's sort
  order), and AP is VOC 2011's interpolated AP. The probabilities are the raw frame probabilities,
  not gated by the video-level ones, and audio-visual is their product (evaluation.py:85-90); the
  truth is the snippet truth, audio-visual = audio AND visual. mAP is the plain mean of the per-class
  APs: a class with no positive snippet has AP NaN (recall 0/0), so the mAP is NaN.
* Checkpoint selection (evaluation.py:212-225, main.py:283-285): (mean of the audio, visual and
  audio-visual mAPs + event-level Type@AV) / 2; the release keeps a checkpoint when this beats the
  best so far strictly (starting from 0, so a NaN score is never kept).

All scores here are in [0, 1]; the release prints them x100.
"""
import numpy as np

from utils.eval_metrics import DECISION_THRESHOLD, as_numpy, event_level, segment_level

# per-video columns, in the order utils.eval_metrics returns them: audio, visual, Event@AV, audio-visual
_VIDEO_COLUMNS = ("audio", "visual", "event", "av")
MAP_COLUMNS = ("audio", "visual", "av")


def snippet_predictions(frame_prob, audio_gate, visual_gate):
    """(pred_audio, pred_visual), (C, T) int 0/1, of one video's (T, 2, C) frame probabilities and
    (C,) video-level probabilities: a snippet is positive when both reach 0.5 (evaluation.py:82-83,
    126-127; modality axis 0 = audio, 1 = visual)."""
    frame_prob = as_numpy(frame_prob)
    gates = (as_numpy(audio_gate), as_numpy(visual_gate))
    return tuple(((frame_prob[:, m, :] >= DECISION_THRESHOLD) & (gates[m] >= DECISION_THRESHOLD)).T.astype(np.int_)
                 for m in range(2))


def snippet_probabilities(frame_prob):
    """(prob_audio, prob_visual, prob_av), (C, T), of one video's (T, 2, C) frame probabilities, in
    their own dtype: the arrays the release ranks for mAP (evaluation.py:85-90)."""
    frame_prob = as_numpy(frame_prob)
    prob_audio, prob_visual = frame_prob[:, 0, :].T, frame_prob[:, 1, :].T
    return prob_audio, prob_visual, prob_audio * prob_visual


def video_scores(pred_audio, pred_visual, gt_audio, gt_visual):
    """{"seg_audio", ..., "evt_av"}: the 8 F-scores of one video from (C, T) 0/1 arrays; the
    audio-visual prediction and truth are audio AND visual (evaluation.py:175, 183-199)."""
    pred_audio, pred_visual = np.asarray(pred_audio), np.asarray(pred_visual)
    gt_audio, gt_visual = np.asarray(gt_audio), np.asarray(gt_visual)
    if not pred_audio.shape == pred_visual.shape == gt_audio.shape == gt_visual.shape:
        raise ValueError(f"a video's arrays must share one (classes, snippets) shape, got {pred_audio.shape}, "
                         f"{pred_visual.shape}, {gt_audio.shape}, {gt_visual.shape}")
    arrays = (pred_audio, pred_visual, pred_audio * pred_visual, gt_audio, gt_visual, gt_audio * gt_visual)
    scores = {}
    for level, score in (("seg", segment_level), ("evt", event_level)):
        scores.update({f"{level}_{column}": float(value) for column, value in zip(_VIDEO_COLUMNS, score(*arrays))})
    return scores


def average_precision(scores, truth):
    """Interpolated AP (VOC 2011) of one class from pooled (n,) scores and 0/1 truth, as
    eval_metrics.py:297-332 computes it; NaN when no snippet is positive (its recall is 0/0)."""
    scores, truth = np.asarray(scores), np.asarray(truth)
    positives = np.sum(truth)
    if positives == 0:
        return float("nan")
    order = np.argsort(scores)[::-1]                   # the release's ranking, ties included
    true_positives = np.cumsum(truth[order] == 1)
    precision = true_positives / np.arange(1, len(order) + 1)
    recall = true_positives / positives
    # precision envelope: the best precision at this recall or any higher one
    envelope = np.maximum.accumulate(np.concatenate([[0], precision, [0]])[::-1])[::-1]
    recall = np.concatenate([[0], recall, [1]])
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * envelope[steps]))


def snippet_average_precisions(probs, truths):
    """(C,) APs of per-video (C, T_i) probabilities and 0/1 truths, the snippets of all videos
    pooled per class in the order given (eval_metrics.py:293-319)."""
    pooled_probs = np.concatenate([np.asarray(prob) for prob in probs], axis=1)
    pooled_truth = np.concatenate([np.asarray(truth) for truth in truths], axis=1)
    if pooled_probs.shape != pooled_truth.shape:
        raise ValueError(f"probabilities {pooled_probs.shape} and truth {pooled_truth.shape} do not match")
    return np.array([average_precision(prob, truth) for prob, truth in zip(pooled_probs, pooled_truth)])


def snippet_map(probs, truths):
    """Snippet-level mAP: the plain mean of `snippet_average_precisions` in class order
    (eval_metrics.py:320), NaN when a class has no positive snippet."""
    precisions = [float(ap) for ap in snippet_average_precisions(probs, truths)]
    return sum(precisions) / len(precisions)


def selection_score(results):
    """The release's checkpoint score, (map_avg + evt_type) / 2 in [0, 1] (evaluation.py:212, 221-225)."""
    return (results["map_avg"] + results["evt_type"]) / 2


# The score each selected checkpoint of a recipe is kept by on LFAV (PROTOCOL.md §16): the release's
# rule for the overall model; for DHHN's best-audio and best-visual checkpoints the same rule on their
# own modality, (snippet mAP + event-level F) / 2. Kept when strictly better, as the release keeps.
ROLE_SCORES = {
    "overall": selection_score,
    "audio": lambda results: (results["map_audio"] + results["evt_audio"]) / 2,
    "visual": lambda results: (results["map_visual"] + results["evt_visual"]) / 2,
}
# the scores of a results dict that run records keep, beside the 10 of the published table
RECORDED_KEYS = ("map_audio", "map_visual", "map_av", "map_avg", "selection")


def evaluate_videos(pred_audio, pred_visual, gt_audio, gt_visual, prob_audio, prob_visual):
    """Score a split of videos of any lengths; each argument is a sequence with one (C, T_i) array
    per video, in the same video order (predictions and truth 0/1, probabilities as the model
    returned them, e.g. from `snippet_predictions` and `snippet_probabilities`).

    Returns {"<level>_<column>" for level seg/evt and column audio, visual, av, type, event: split
    mean; "map_audio", "map_visual", "map_av", "map_avg"; "selection": `selection_score`;
    "per_video": {"<level>_<column>": (N,) float64, type excepted}}.
    """
    counts = {len(pred_audio), len(pred_visual), len(gt_audio), len(gt_visual), len(prob_audio), len(prob_visual)}
    if len(counts) != 1 or counts == {0}:
        raise ValueError(f"evaluate_videos needs the same number (> 0) of videos in every argument, got {counts}")
    per_video = [video_scores(*arrays) for arrays in zip(pred_audio, pred_visual, gt_audio, gt_visual)]
    results = {"per_video": {key: np.array([scores[key] for scores in per_video]) for key in per_video[0]}}
    for key, scores in results["per_video"].items():
        results[key] = float(np.mean(scores))
    for level in ("seg", "evt"):
        results[f"{level}_type"] = float(np.mean([results[f"{level}_{column}"] for column in MAP_COLUMNS]))
    gt_av = [np.asarray(audio) * np.asarray(visual) for audio, visual in zip(gt_audio, gt_visual)]
    prob_av = [np.asarray(audio) * np.asarray(visual) for audio, visual in zip(prob_audio, prob_visual)]
    for column, probs, truths in (("audio", prob_audio, gt_audio), ("visual", prob_visual, gt_visual),
                                  ("av", prob_av, gt_av)):
        results[f"map_{column}"] = snippet_map(probs, truths)
    results["map_avg"] = (results["map_audio"] + results["map_visual"] + results["map_av"]) / 3
    results["selection"] = selection_score(results)
    return results
