"""Train and test with several seeds, then report every metric as mean ± std over the seeds.

    python scripts/multi_seed.py --seeds 1 2 3 [--parallel 2] -- <main_DHHN.py flags ...>

Each seed S runs main_DHHN.py as a subprocess, once per step (default: train, then test), with
`--seed S --checkpoint <checkpoint>_seed<S>` added to the flags after `--`; its output goes to
<model_save_dir>/<checkpoint>_seed<S>_multi_seed.log. The test summaries
(<model_save_dir>/<checkpoint>_seed<S>_test_summary.json) are then aggregated per reported row:
mean and sample standard deviation (ddof=1; 0 for one seed) x100, printed in the published
layout and written as JSON (--out, default <model_save_dir>/<checkpoint>_multi_seed.json).
`--steps test` re-tests existing runs; `--steps` with no step only aggregates.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Scripts run as `python scripts/<name>.py` from the repository root; put the root on the path
# so that the project imports without installing it.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from utils.constants import METRIC_KEYS  # noqa: E402
from utils.eval_metrics import format_cells  # noqa: E402
from utils.io import atomic_write_json  # noqa: E402

MAIN_SCRIPT = os.path.join(REPO_ROOT, "main_DHHN.py")
EVAL_STEPS = ("val", "test")
RESERVED_FLAGS = ("--mode", "--seed")   # set by this script per step and seed


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s --seeds S [S ...] [--parallel P] [--steps ...] [--out PATH] -- <main_DHHN.py flags>")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="one run per seed")
    parser.add_argument("--parallel", type=int, default=1,
                        help="seeds run at once (each a separate process; on one GPU they share it)")
    parser.add_argument("--steps", nargs="*", default=["train", "test"], choices=("train",) + EVAL_STEPS,
                        help="modes run per seed, in order; the summaries of the last val/test step are "
                             "aggregated (none: aggregate existing test summaries only)")
    parser.add_argument("--out", default=None,
                        help="JSON of the aggregate (default <model_save_dir>/<checkpoint>_multi_seed.json)")
    return parser


def split_argv(argv):
    """(this script's arguments, main_DHHN.py flags): the two sides of the first `--`."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1:])


def run_settings(main_flags):
    """(model_save_dir, checkpoint name) the runs will use, read with main_DHHN's own parser."""
    for token in main_flags:
        if token.split("=", 1)[0] in RESERVED_FLAGS:
            raise SystemExit(f"error: {token.split('=', 1)[0]} is set by multi_seed.py; "
                             "remove it from the flags after --")
    from main_DHHN import get_args_parser as main_parser
    parsed = main_parser().parse_args(main_flags)
    if parsed.no_log:
        raise SystemExit("error: multi_seed.py aggregates the runs' summary files; remove --no-log")
    return parsed.model_save_dir, parsed.checkpoint


def seed_name(checkpoint, seed):
    return f"{checkpoint}_seed{seed}"


def summary_path(save_dir, checkpoint, seed, step="test"):
    return os.path.join(save_dir, f"{seed_name(checkpoint, seed)}_{step}_summary.json")


def run_seed(seed, steps, main_flags, save_dir, checkpoint, env):
    """Run the steps of one seed in order; returns (seed, failed step or None, log path, seconds)."""
    os.makedirs(save_dir, exist_ok=True)
    log_path = os.path.join(save_dir, f"{seed_name(checkpoint, seed)}_multi_seed.log")
    started = time.time()
    with open(log_path, "w") as log:
        for step in steps:
            command = [sys.executable, MAIN_SCRIPT, *main_flags, "--mode", step, "--seed", str(seed),
                       "--checkpoint", seed_name(checkpoint, seed)]
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                return seed, step, log_path, time.time() - started
            print(f"seed {seed}: {step} done ({time.time() - started:.0f}s)", flush=True)
    return seed, None, log_path, time.time() - started


def aggregate(summaries):
    """Mean ± std per row and metric over seeds.

    summaries: {seed: run summary dict with "tables": {row: {metric: fraction}}}. Rows present in
    every summary are kept, in the first summary's order. Returns {"seeds": [...], "rows": {row:
    {metric: {"mean", "std", "values"} x100, "text": "61.4 ± 0.3"}}}; std is the sample standard
    deviation (ddof=1), 0 for a single seed.
    """
    if not summaries:
        raise ValueError("no summaries to aggregate")
    seeds = list(summaries)
    tables = [summaries[seed]["tables"] for seed in seeds]
    rows = [row for row in tables[0] if all(row in table for table in tables)]
    result = {"seeds": seeds, "rows": {}}
    for row in rows:
        result["rows"][row] = {}
        for key in METRIC_KEYS:
            values = 100 * np.array([table[row][key] for table in tables], dtype=np.float64)
            mean = float(values.mean())
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            result["rows"][row][key] = {"mean": mean, "std": std, "values": values.tolist(),
                                        "text": f"{mean:.1f} ± {std:.1f}"}
    return result


def format_aggregate(result):
    """The published table layout per row, cells "mean ± std" (x100, one decimal)."""
    return "\n\n".join(
        format_cells({key: cell["text"] for key, cell in metrics.items()},
                     title=f"{row}: mean ± std over seeds {', '.join(map(str, result['seeds']))}")
        for row, metrics in result["rows"].items())


def main(argv):
    own, main_flags = split_argv(argv)
    args = get_args_parser().parse_args(own)
    if args.parallel < 1:
        raise SystemExit("error: --parallel must be at least 1")
    save_dir, checkpoint = run_settings(main_flags)
    seeds = list(dict.fromkeys(args.seeds))
    env = dict(os.environ)
    if args.parallel > 1 and "OMP_NUM_THREADS" not in env:
        # several CPU processes each using every core would slow all of them down
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.parallel))
    failures = []
    if args.steps:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            futures = [pool.submit(run_seed, seed, args.steps, main_flags, save_dir, checkpoint, env) for seed in seeds]
            for future in futures:
                seed, failed_step, log_path, _ = future.result()
                if failed_step is not None:
                    failures.append(seed)
                    print(f"seed {seed}: {failed_step} FAILED, see {log_path}", file=sys.stderr)
    eval_steps = [step for step in args.steps if step in EVAL_STEPS]
    step = eval_steps[-1] if eval_steps else "test"
    summaries = {}
    for seed in seeds:
        path = summary_path(save_dir, checkpoint, seed, step)
        if seed not in failures and os.path.isfile(path):
            with open(path) as handle:
                summaries[seed] = json.load(handle)
        elif seed not in failures:
            failures.append(seed)
            print(f"seed {seed}: no {path}", file=sys.stderr)
    if not summaries:
        raise SystemExit("error: no run finished; nothing to aggregate")
    result = aggregate(summaries)
    result.update(step=step, main_flags=main_flags, failed_seeds=failures,
                  summaries={seed: summary_path(save_dir, checkpoint, seed, step) for seed in summaries})
    print(format_aggregate(result))
    out = args.out or os.path.join(save_dir, f"{checkpoint}_multi_seed.json")
    atomic_write_json(result, out)
    print(f"written to {out}")
    if failures:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
