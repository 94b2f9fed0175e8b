"""Time the batched split evaluator against the per-video reference loop (PROTOCOL.md §9).

Run from the repo root: python scripts/bench_eval.py [--videos 1200] [--repeats 5]
Prints absolute times, the speed-up, and checks that both give the same scores.
"""

import argparse
import sys
import time

import numpy as np

from avvp_data.llp import NUM_CLASSES, NUM_SEGMENTS
from utils.eval_metrics import evaluate_split, event_level, segment_level

REFERENCE_ORDER = ("audio", "visual", "event", "av")  # published return order


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1200, help="videos in the random split")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of the batched evaluator (best is reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random labels")
    return parser


def random_labels(rng, num_videos):
    """(N, 25, 10) bool: Markov runs in a varying share of classes per video
    (some videos empty), long runs to alternating ones."""
    active_share = rng.choice([0.0, 0.1, 0.3, 1.0], size=(num_videos, 1, 1))
    active = rng.random((num_videos, NUM_CLASSES, 1)) < active_share
    switch = rng.choice([0.05, 0.2, 0.5, 0.9], size=(num_videos, 1))
    state = rng.random((num_videos, NUM_CLASSES)) < 0.5
    segments = []
    for _ in range(NUM_SEGMENTS):
        segments.append(state)
        state = state ^ (rng.random(state.shape) < switch)
    return np.stack(segments, axis=-1) & active


def random_predictions(rng, gt):
    """Truth with 0-30% of segments flipped in half the classes, random elsewhere."""
    noise = rng.choice([0.0, 0.1, 0.3], size=(len(gt), 1, 1))
    noisy = gt ^ (rng.random(gt.shape) < noise)
    return np.where(rng.random((*gt.shape[:2], 1)) < 0.5, noisy, random_labels(rng, len(gt)))


def reference_loop(pred_a, pred_v, gt_a, gt_v):
    """{"<level>_<column>": (N,)} per-video scores from the reference functions."""
    scores = {}
    for level, reference in (("seg", segment_level), ("evt", event_level)):
        per_video = np.array([reference(pa, pv, pa & pv, ga, gv, ga & gv)
                              for pa, pv, ga, gv in zip(pred_a, pred_v, gt_a, gt_v)])
        for column, column_scores in zip(REFERENCE_ORDER, per_video.T):
            scores[f"{level}_{column}"] = column_scores
    return scores


def main(args):
    problems = [f"--{key} {getattr(args, key)}: must be at least 1" for key in ("videos", "repeats")
                if getattr(args, key) < 1]
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        sys.exit(2)
    rng = np.random.default_rng(args.seed)
    gt_a, gt_v = random_labels(rng, args.videos), random_labels(rng, args.videos)
    split = (random_predictions(rng, gt_a), random_predictions(rng, gt_v), gt_a, gt_v)

    start = time.perf_counter()
    reference = reference_loop(*split)
    loop_time = time.perf_counter() - start

    # The first call also builds the cached event masks; time it on its own.
    start = time.perf_counter()
    results = evaluate_split(*split)
    first_time = time.perf_counter() - start
    batched_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = evaluate_split(*split)
        batched_times.append(time.perf_counter() - start)
    batched_time = min(batched_times)

    max_diff = max(np.abs(results["per_video"][key] - scores).max()
                   for key, scores in reference.items())
    if max_diff > 1e-12:
        raise SystemExit(f"batched and reference scores differ by {max_diff:.3g}")

    print(f"{args.videos} videos, max |batched - reference| per-video score: {max_diff:.1e}")
    print(f"reference loop (segment_level + event_level per video): {loop_time * 1e3:9.1f} ms")
    print(f"batched evaluate_split, first call (builds caches):     {first_time * 1e3:9.1f} ms")
    print(f"batched evaluate_split, best of {args.repeats} later calls:          "
          f"{batched_time * 1e3:9.1f} ms")
    print(f"speed-up: {loop_time / batched_time:.0f}x (first call: {loop_time / first_time:.0f}x)")

if __name__ == "__main__":
    main(get_args_parser().parse_args())
