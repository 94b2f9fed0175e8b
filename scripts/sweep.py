"""Configurations x seeds: train and test every run, locally or on SLURM, then the paper's tables
as mean ± std over seeds, paired differences against a baseline row, and pictures.

    python scripts/sweep.py --preset table2 --seeds 1 2 3 --executor local --parallel 2
    python scripts/sweep.py --preset table1 --seeds 1 2 3 --executor slurm --partition gpu --gpus 1 \\
        --time 120 --mem 32 --array_parallelism 16 --llp_root path/to/llp
    python scripts/sweep.py --config "HAN=--model han" --config "DHHN=--model dhhn" --seeds 1 2 3
    python scripts/sweep.py --preset table2 --seeds 1 2 3 --dry_run      # print the jobs only

Presets: table1 (the methods of the paper's Table 1: HAN, MA, DHHN without and with label
refinement; DHHN + pseudo-labels when --pseudo_root holds them), table2 (the full DHHN, then F-H,
P-H, A-M, V-M and L_rmse each switched off: the paper's Table 2), pseudo_labels (DHHN, HAN, DHHN +
pseudo-labels and VALOR at each of --levels on the synthetic LLP, where the pseudo-labels are
made from the planted truth). Flags after `--` go to every main_DHHN.py call. Every step of every
configuration is parsed and resolved as main_DHHN.py will take it before anything starts; all the
bad ones are named in one error (exit status 2).

Runs are named <config slug>_seed<S> in --out_dir (default runs/sweep_<preset>); a job is the
chain of main_DHHN.py steps of one run. A step whose summary file exists is skipped (a finished
run costs nothing); a train/retrain step with a <run>_last.pt but no summary resumes (--resume).
The test summaries are aggregated per configuration (its first row: the method's own), each of
the 10 numbers as mean ± sample std x100, and paired per seed against the baseline row (the first
configuration, or --baseline) with a 95% t interval across seeds. Written to <out_dir>/sweep.
{txt,md,csv,json}, and pictures to <out_dir>/plots/: training curves per configuration (seeds
overlaid) and per run, and the table as bars with error bars. Every table and picture says what it
is of (the split, the synthetic LLP or a real root, the flags after `--`), and rows resting on fewer
than 3 seeds are flagged: with 2, a 95% interval multiplies the std by t = 12.7. SLURM needs submitit
(pip install -e ".[sweep]").
"""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from avvp_data.llp import PUBLISHED_FLAGS_FILE, VALOR_PSEUDO_LABELS_FOLDER, VALOR_SET_MODALITY
from config import FLAG_MODES, acts_in, flags_acting_in, published_flags, resolve_config
from main_DHHN import get_args_parser as main_args_parser
from main_DHHN import given_flags
from reporting.tables import format_cells
from utils.errors import UsageError, UserError, bulleted
from utils.eval_metrics import COLUMN_TITLES, LEVEL_TITLES, METRIC_KEYS
from utils.io import atomic_write_json, atomic_write_text
from utils.lfav_metrics import RECORDED_KEYS as LFAV_RECORDED_KEYS
from utils.runtime import MAX_SEED

# LFAV's numbers beyond the published 10 (utils/lfav_metrics.py), as the tables title them
LFAV_TITLES = {"map_audio": "mAP Audio", "map_visual": "mAP Visual", "map_av": "mAP Audio-Visual",
               "map_avg": "mAP mean", "selection": "LFAV selection"}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_SCRIPT = os.path.join(REPO_ROOT, "main_DHHN.py")
DEFAULT_SYNTHETIC_ROOT = os.path.join(REPO_ROOT, "data", "synthetic")
SUBMITIT_INSTALL = 'pip install -e ".[sweep]"'
EXECUTORS = ("local", "slurm", "submitit_local")   # submitit_local: the SLURM code path on this machine
# main_DHHN.py's settings (argparse dests) that the sweep gives each step itself, and from what
RESERVED_DESTS = {"mode": "each step's mode", "seed": "--seeds", "checkpoint": "the run's name",
                  "model_save_dir": "--out_dir", "llp_root": "sweep.py's --llp_root",
                  "resume": "an interrupted step resumes", "no_log": "the plots read the per-epoch logs"}
EXIT_USER_ERROR = 2
# while runs go on, a line at least this often says how many run and how many finished
ALIVE_SECONDS = 60
POLL_SECONDS = 10   # submitit: how often the jobs' states are asked for
# 95% two-sided quantiles of Student's t by degrees of freedom (a table of constants; beyond 30
# the Cornish-Fisher expansion around the normal quantile is within 0.001)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}
# VALOR's published recipe (PROTOCOL.md §13): configs/valor.flags, which VALOR.sh reads too
VALOR_CONFIG = "valor"


# ------------------------------------------------------------------------------------------------
# what runs

@dataclass(frozen=True)
class Step:
    """One main_DHHN.py call of a run: its mode, the checkpoint name suffix (the run's own name when
    empty; an estimator's steps use their own) and flags; `{run}` and `{save_dir}` in a flag become
    the run's name and --out_dir."""
    mode: str
    flags: tuple = ()
    suffix: str = ""


@dataclass(frozen=True)
class Config:
    """A row of the table: its title, a slug naming its runs, the chain of steps of one run."""
    title: str
    slug: str
    steps: tuple


def train_and_test(*flags):
    return (Step("train", flags), Step("test", flags))


def published_train_and_test(name, *flags):
    """Train and test under the published configuration configs/<name>.flags, each step with the
    flags that act in its mode; the sweep sets --seed itself."""
    return tuple(Step(mode, (*published_flags(name, mode, main_args_parser(), leave_out=("--seed",)), *flags))
                 for mode in ("train", "test"))


def refinement_chain(model, flags_file, *flags):
    """Retrain `model` on refined labels, then test: on `flags_file` when given (the published
    flags), else on flags its own MA estimator makes (train MA, estimate, retrain; PROTOCOL.md §10, §12)."""
    test = Step("test", ("--model", model, *flags))
    if flags_file:
        return (Step("retrain", ("--model", model, "--refined_labels", flags_file, *flags)), test)
    estimator = ("--model", "ma", *flags)
    return (Step("train", estimator, "_ma"), Step("estimate_labels", estimator, "_ma"),
            Step("retrain", ("--model", model, "--refined_labels", "{save_dir}/{run}_ma_refined_labels.pkl", *flags)),
            test)


def pseudo_flags(folder):
    """--audio_pseudo_dir / --visual_pseudo_dir of a folder in VALOR's layout."""
    dirs = {modality: os.path.join(folder, name, VALOR_PSEUDO_LABELS_FOLDER)
            for name, modality in VALOR_SET_MODALITY.items()}
    return ("--audio_pseudo_dir", dirs["audio"], "--visual_pseudo_dir", dirs["visual"])


def has_pseudo_labels(folder):
    return folder is not None and all(os.path.isdir(path) for path in pseudo_flags(folder)[1::2])


def table1(args):
    published = os.path.join(args.llp_root, "data", PUBLISHED_FLAGS_FILE)
    flags_file = published if os.path.isfile(published) else None
    configs = [Config("HAN", "han", train_and_test("--model", "han")),
               Config("MA", "ma", refinement_chain("ma", flags_file)),
               Config("DHHN without refinement", "dhhn", train_and_test("--model", "dhhn")),
               Config("DHHN with refinement", "dhhn_refined", refinement_chain("dhhn", flags_file))]
    pseudo_root = args.pseudo_root or args.llp_root
    if has_pseudo_labels(pseudo_root):
        configs.append(Config("DHHN + pseudo-labels", "dhhn_pseudo",
                              train_and_test("--model", "dhhn", *pseudo_flags(pseudo_root))))
    return configs


ABLATIONS = (("F-H off", "no_hier_feat"), ("P-H off", "no_hier_pred"), ("A-M off", "no_audio_mgn"),
             ("V-M off", "no_visual_mgn"), ("L_rmse off", "no_rmse"))


def table2(args):
    configs = [Config("DHHN (full)", "full", train_and_test("--model", "dhhn"))]
    configs += [Config(title, switch, train_and_test("--model", "dhhn", f"--{switch}")) for title, switch in ABLATIONS]
    return configs


def level_name(precision, recall):
    return f"p{round(100 * precision)}_r{round(100 * recall)}"


def pseudo_level_folder(args, precision, recall):
    return os.path.join(args.out_dir, f"pseudo_{level_name(precision, recall)}")


def pseudo_labels(args):
    configs = [Config("DHHN", "dhhn", train_and_test("--model", "dhhn")),
               Config("HAN", "han", train_and_test("--model", "han"))]
    for precision, recall in args.levels:
        folder, name = pseudo_level_folder(args, precision, recall), level_name(precision, recall)
        quality = f"pseudo-labels P={precision:.0%} R={recall:.0%}"
        configs.append(Config(f"DHHN + {quality}", f"dhhn_{name}",
                              train_and_test("--model", "dhhn", *pseudo_flags(folder))))
        configs.append(Config(f"VALOR (HAN + {quality})", f"valor_{name}",
                              published_train_and_test(VALOR_CONFIG, *pseudo_flags(folder))))
    return configs


PRESETS = {"table1": table1, "table2": table2, "pseudo_labels": pseudo_labels}


def prepare_pseudo_labels(args):
    """pseudo_labels preset: the synthetic LLP's pseudo-labels at every level, from its planted truth."""
    from avvp_data.synthetic_llp import write_pseudo_labels
    for precision, recall in args.levels:
        write_pseudo_labels(args.llp_root, pseudo_level_folder(args, precision, recall), precision, recall, seed=0)


def slugify(title):
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "config"


def parse_config(text):
    """--config "TITLE=flags ...": a configuration trained and tested with those flags."""
    title, separator, flags = text.partition("=")
    if not separator or not title.strip():
        raise UsageError(f"--config {text!r}: expected TITLE=main_DHHN flags, e.g. \"HAN=--model han\"")
    return Config(title.strip(), slugify(title), train_and_test(*flags.split()))


# ------------------------------------------------------------------------------------------------
# jobs

@dataclass
class Job:
    """One run (a configuration at a seed): the commands still to run, in order, and its log."""
    config: str
    seed: int
    run: str
    commands: list = field(default_factory=list)
    log: str = ""
    env: dict = field(default_factory=dict)


def run_name(config, seed):
    return f"{config.slug}_seed{seed}"


def summary_file(save_dir, checkpoint, mode):
    return os.path.join(save_dir, f"{checkpoint}_{mode}_summary.json")


def step_flags(step, run, args):
    """The flags a configuration gives one step of run `run`, `{run}` and `{save_dir}` filled in."""
    return [flag.replace("{run}", run).replace("{save_dir}", args.out_dir) for flag in step.flags]


def step_argv(step, run, seed, args, extra):
    """The main_DHHN.py arguments of one step, with --resume when an interrupted train/retrain left
    its <checkpoint>_last.pt."""
    checkpoint = run + step.suffix
    # a configuration's and the extra flags go to every step of the chain; each step gets those that
    # act in its mode, since main_DHHN.py refuses the others
    flags = flags_acting_in([*step_flags(step, run, args), *extra], step.mode, main_args_parser(),
                            source=f"the flags of {run}")
    data = ["--dataset", "lfav", "--lfav_root", args.lfav_root] if args.lfav_root else ["--llp_root", args.llp_root]
    argv = ["--mode", step.mode, "--seed", str(seed), "--checkpoint", checkpoint, "--model_save_dir", args.out_dir,
            *data, "--progress", "off", *flags]
    last = os.path.join(args.out_dir, f"{checkpoint}_last.pt")
    if step.mode in ("train", "retrain") and os.path.isfile(last):
        argv.append("--resume")
    return argv


def step_command(step, run, seed, args, extra):
    """The main_DHHN.py command of one step (`step_argv`); None when the step's summary says it
    already finished."""
    if os.path.isfile(summary_file(args.out_dir, run + step.suffix, step.mode)):
        return None
    return [sys.executable, MAIN_SCRIPT, *step_argv(step, run, seed, args, extra)]


# ------------------------------------------------------------------------------------------------
# every configuration checked before anything starts

def strict_main_parser():
    """main_DHHN.py's parser, raising UsageError (the message names the flag) instead of exiting,
    and taking no abbreviated flag (flags_acting_in, which splits them per step, knows none)."""
    parser = main_args_parser()
    parser.allow_abbrev = False

    def refuse(message):
        raise UsageError(message)

    def refuse_exit(status=0, message=None):   # -h: main_DHHN.py would print its help and stop
        raise UsageError("-h/--help runs nothing; give main_DHHN.py's flags to run with")
    parser.error, parser.exit = refuse, refuse_exit
    return parser


def written_flags(words, parser):
    """[(flag as written, argparse dest)] of main_DHHN.py command-line `words` that parse."""
    action_of = {option: action for action in parser._actions for option in action.option_strings}
    found, index = [], 0
    while index < len(words):
        flag = words[index].split("=", 1)[0]
        action = action_of[flag]
        found.append((flag, action.dest))
        index += 1 + (action.nargs != 0 and "=" not in words[index])
    return found


def reserved_flag_problems(words, parser, where):
    """A problem per flag of `words` that sweep.py sets itself (RESERVED_DESTS)."""
    return [f"{flag} is set by sweep.py per run ({RESERVED_DESTS[dest]}); remove it from {where}"
            for flag, dest in written_flags(words, parser) if dest in RESERVED_DESTS]


def config_problems(config, args, extra, parser):
    """What keeps `config` from running as main_DHHN.py would take it, one problem each: flags that
    do not parse (unknown, no value, a bad value), flags sweep.py sets, flags that act in no step of
    its chain, and what `config.resolve_config` refuses in a step's command (e.g. --epochs 0)."""
    run = run_name(config, args.seeds[0])
    problems, given, acting, parsed = [], {}, set(), True
    for step in config.steps:
        own = step_flags(step, run, args)
        try:
            parser.parse_args(own)
        except UsageError as error:
            problems.append(str(error))
            parsed = False
            continue
        problems += reserved_flag_problems(own, parser, "the configuration")
        for where, words in (("", own), (" (after --)", extra)):
            for flag, dest in written_flags(words, parser):
                given[flag + where] = dest
                if acts_in(dest, step.mode):
                    acting.add(flag + where)
    chain = ", ".join(dict.fromkeys(step.mode for step in config.steps))
    problems += [f"{flag} acts in no step of its chain ({chain}), only in --mode {'/'.join(FLAG_MODES[dest])}"
                 for flag, dest in given.items() if flag not in acting]
    if not parsed:   # the steps' commands would stop on the same words
        return problems
    for step in config.steps:
        try:
            namespace = parser.parse_args(step_argv(step, run, args.seeds[0], args, extra))
            with contextlib.redirect_stdout(io.StringIO()):   # the notes main_DHHN.py prints at its start
                resolve_config(namespace, given_flags(parser, namespace))
        except UserError as error:
            problems.append(f"--mode {step.mode}: {error}")
    return problems


def check_configs(configs, args, extra):
    """Every configuration parsed and resolved as main_DHHN.py will take each step of its chain, and
    the flags after `--`, before any run, file or folder is started; one UsageError names every bad
    configuration with each of its flags."""
    parser = strict_main_parser()
    try:
        parser.parse_args(extra)
    except UsageError as error:   # they go to every configuration, which cannot be judged without them
        raise UsageError(f"the flags after --: {error}; nothing was started") from None
    problems = [f"the flags after --: {problem}" for problem in reserved_flag_problems(extra, parser, "them")]
    titles_of = {}
    for config in configs:
        titles_of.setdefault(config.slug, []).append(config.title)
    bad = 0
    for config in configs:
        found = list(dict.fromkeys(config_problems(config, args, extra, parser)))
        if len(titles_of[config.slug]) > 1:
            others = ", ".join(repr(title) for title in titles_of[config.slug] if title != config.title)
            found.append(f"its runs would share the names {config.slug}_seed<S> with {others}; give it another title")
        problems += [f"{config.title}: {problem}" for problem in found]
        bad += bool(found)
    if problems:
        what = f"{bad} of {len(configs)} configuration(s) cannot run" if bad else "the flags after -- cannot be used"
        raise UsageError(f"{what}; nothing was started:\n{bulleted(problems, len(problems))}")


# ------------------------------------------------------------------------------------------------
# running jobs

def build_jobs(configs, args, extra):
    slugs = [config.slug for config in configs]
    duplicates = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if duplicates:
        raise UsageError(f"configurations would share run names: {', '.join(duplicates)}; give them other titles")
    jobs = []
    for config in configs:
        for seed in args.seeds:
            run = run_name(config, seed)
            commands = [command for step in config.steps
                        if (command := step_command(step, run, seed, args, extra)) is not None]
            jobs.append(Job(config.title, seed, run, commands, os.path.join(args.out_dir, f"{run}_sweep.log")))
    return jobs


def run_job(job):
    """Run a job's commands in order, appending their output to its log; returns (run, failed
    command index or None, seconds the job took). Module-level and stdlib-only: submitit pickles it
    for the cluster, where the seconds are measured too."""
    started = time.monotonic()
    os.makedirs(os.path.dirname(job.log) or ".", exist_ok=True)
    with open(job.log, "a") as log:
        for index, command in enumerate(job.commands):
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            env = {**os.environ, **job.env}
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                return job.run, index, time.monotonic() - started
    return job.run, None, time.monotonic() - started


def say(text):
    """One line now: a sweep's output often goes to a file (nohup, SLURM), which Python buffers."""
    print(text, flush=True)


def last_log_line(path):
    """The last non-empty line of a run's log (main_DHHN.py's `error: ...` when a step failed), or ''."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")


def step_modes(job):
    return [command[command.index("--mode") + 1] for command in job.commands]


def started_line(job):
    modes = step_modes(job)
    return f"{job.run}: started, {len(modes)} step(s): {', '.join(modes)}"


def duration_text(seconds):
    """2.4 s, 37 s, 5 min 07 s, 2 h 05 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, whole = divmod(round(seconds), 60)
    if minutes < 1:
        return f"{whole} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {whole:02d} s"


def finished_line(job, failed, seconds):
    """A run's last line, with its own duration; a failure names the step and what its log ends with."""
    if failed is None:
        return f"{job.run}: done in {duration_text(seconds)}"
    modes = step_modes(job)
    cause = last_log_line(job.log)
    return (f"{job.run}: FAILED in {duration_text(seconds)} at step {failed + 1}/{len(modes)} (--mode {modes[failed]})"
            + (f": {cause}" if cause else "") + f"; log: {job.log}")


def alive_line(running, finished, failed, waiting, since):
    return (f"sweep: {running} running, {finished} finished ({failed} failed), {waiting} waiting; "
            f"{duration_text(time.monotonic() - since)} since the start")


def run_local(jobs, parallel):
    """Run the jobs here, `parallel` at once: a line when each starts and ends (with its own
    duration), and one at least every ALIVE_SECONDS while any runs."""
    if parallel > 1:
        threads = str(max(1, (os.cpu_count() or 1) // parallel))   # processes must not each take every core
        for job in jobs:
            job.env.setdefault("OMP_NUM_THREADS", threads)
    since, lock = time.monotonic(), threading.Lock()
    counts = {"running": 0, "finished": 0, "failed": 0}

    def run_one(job):
        with lock:
            counts["running"] += 1
            say(started_line(job))
        result = run_job(job)
        with lock:
            counts["running"] -= 1
            counts["finished"] += 1
            counts["failed"] += result[1] is not None
            say(finished_line(job, *result[1:]))
        return result

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        while wait(futures, timeout=ALIVE_SECONDS).not_done:
            with lock:
                say(alive_line(counts["running"], counts["finished"], counts["failed"],
                               len(jobs) - counts["running"] - counts["finished"], since))
    return [future.result() for future in futures]


def require_submitit(executor):
    try:
        import submitit
    except ImportError:
        raise UsageError(f"--executor {executor} needs submitit: {SUBMITIT_INSTALL}") from None
    return submitit


def submitit_executor(args):
    submitit = require_submitit(args.executor)
    folder = args.slurm_log_dir or os.path.join(args.out_dir, "slurm_logs")
    if args.executor == "submitit_local":
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=args.time, name="dhhn_sweep")
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=args.time, slurm_partition=args.partition, gpus_per_node=args.gpus,
                               mem_gb=args.mem, cpus_per_task=args.cpus, tasks_per_node=1, nodes=1,
                               slurm_array_parallelism=args.array_parallelism, name="dhhn_sweep")
    return executor


def run_submitit(jobs, args):
    """Submit the jobs as one job array and wait for them, polling every POLL_SECONDS: a line when a
    job is first seen running and when it ends (with its own duration, measured on the node), and
    one at least every ALIVE_SECONDS; their outputs stay in the log folder."""
    executor = submitit_executor(args)
    submitted = executor.map_array(run_job, jobs)
    say(f"submitted {len(submitted)} job(s) ({', '.join(job.job_id for job in submitted[:3])}"
        f"{', ...' if len(submitted) > 3 else ''}); waiting")
    since = last_alive = time.monotonic()
    results, running = {}, set()
    while len(results) < len(jobs):
        for job, handle in zip(jobs, submitted):
            if job.run in results:
                continue
            if handle.done():
                running.discard(job.run)
                try:
                    results[job.run] = handle.result()
                except Exception as error:   # a job killed or crashed on the cluster: report it, keep the others
                    print(f"{job.run}: job {handle.job_id} failed: {str(error).splitlines()[0]}", file=sys.stderr,
                          flush=True)
                    results[job.run] = (job.run, 0, None)
                else:
                    say(finished_line(job, *results[job.run][1:]))
            elif job.run not in running and handle.state == "RUNNING":
                running.add(job.run)
                say(started_line(job) + f" (job {handle.job_id})")
        if len(results) < len(jobs):
            if time.monotonic() - last_alive >= ALIVE_SECONDS:
                failed = sum(result[1] is not None for result in results.values())
                say(alive_line(len(running), len(results), failed, len(jobs) - len(running) - len(results), since))
                last_alive = time.monotonic()
            time.sleep(min(POLL_SECONDS, ALIVE_SECONDS))
    return [results[job.run] for job in jobs]


# ------------------------------------------------------------------------------------------------
# aggregation

AGGREGATED_SPLIT = "test"   # the tables are of the runs' test summaries; the training curves, of val
MIN_SEEDS = 3               # below it a std or a 95% interval says little (seed_warnings)


def t_quantile(degrees_of_freedom):
    """The 97.5% quantile of Student's t (a 95% two-sided interval)."""
    if degrees_of_freedom in T_975:
        return T_975[degrees_of_freedom]
    z, nu = 1.959964, degrees_of_freedom
    return z + (z ** 3 + z) / (4 * nu) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * nu ** 2)


def mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def paired_difference(values, baseline):
    """{mean, low, high, n, values} of values - baseline over the seeds both have (x100 numbers);
    low/high the 95% t interval of the mean difference, None with fewer than 2 seeds."""
    seeds = [seed for seed in values if seed in baseline]
    differences = [values[seed] - baseline[seed] for seed in seeds]
    if not differences:
        return {"mean": None, "low": None, "high": None, "n": 0, "values": [], "text": "n/a"}
    mean, std = mean_std(differences)
    if len(differences) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1, "values": differences, "text": f"{mean:+.1f}"}
    half = t_quantile(len(differences) - 1) * std / math.sqrt(len(differences))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(differences), "values": differences,
            "text": f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]"}


def aggregate(per_row, baseline=None):
    """per_row: {row title: {seed: {metric: fraction}}} -> {"rows": {row: {metric: {mean, std, n,
    values (x100, by seed order), text}}}, "differences": {row: {metric: paired_difference}}
    against `baseline` (a row title; none when None)}."""
    result = {"rows": {}, "differences": {}, "baseline": baseline}
    for row, by_seed in per_row.items():
        seeds = sorted(by_seed)
        result["rows"][row] = {}
        for key in table_keys(per_row):
            values = [100 * by_seed[seed][key] for seed in seeds]
            mean, std = mean_std(values)
            result["rows"][row][key] = {"mean": mean, "std": std, "n": len(values), "seeds": seeds, "values": values,
                                        "text": f"{mean:.1f} ± {std:.1f}"}
    if baseline is not None:
        base = {seed: {key: 100 * value for key, value in table.items()} for seed, table in per_row[baseline].items()}
        for row, by_seed in per_row.items():
            if row == baseline:
                continue
            result["differences"][row] = {
                key: paired_difference({seed: 100 * table[key] for seed, table in by_seed.items()},
                                       {seed: table[key] for seed, table in base.items()})
                for key in table_keys(per_row)}
    return result


def table_keys(per_row):
    """The 10 published numbers, and LFAV's snippet mAPs and selection score when every run has them."""
    tables = [table for by_seed in per_row.values() for table in by_seed.values()]
    return METRIC_KEYS + tuple(key for key in LFAV_RECORDED_KEYS if all(key in table for table in tables))


def extra_titles(metrics):
    """{key: column title} of a row's numbers beyond the published 10 (LFAV's)."""
    return {key: LFAV_TITLES[key] for key in metrics if key not in METRIC_KEYS}


def collect(configs, args):
    """{row title: {seed: the test table of the method's own row}} of every finished run; missing
    ones are listed, not guessed."""
    per_row, missing = {}, []
    for config in configs:
        for seed in args.seeds:
            path = summary_file(args.out_dir, run_name(config, seed), AGGREGATED_SPLIT)
            if not os.path.isfile(path):
                missing.append(path)
                continue
            with open(path) as handle:
                tables = json.load(handle)["tables"]
            per_row.setdefault(config.title, {})[seed] = next(iter(tables.values()))
    return per_row, missing


def shown_path(path):
    """`path` relative to the working directory when it lies inside it, else as given."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def sweep_context(args, extra):
    """What the tables are of, for their titles: {"sweep", "split", "dataset": {"name", "root",
    "synthetic", "title"}, "description"}. A synthetic LLP is recognised by the marker its
    generator leaves in its root (avvp_data/synthetic_llp.py): its scores say nothing about LLP."""
    from avvp_data.synthetic_lfav import COMPLETE_MARKER as LFAV_MARKER
    from avvp_data.synthetic_llp import COMPLETE_MARKER
    root, marker, title = ((args.lfav_root, LFAV_MARKER, "LFAV") if args.lfav_root
                           else (args.llp_root, COMPLETE_MARKER, "LLP"))
    synthetic = os.path.isfile(os.path.join(root, marker))
    name = f"synthetic {title}" if synthetic else title
    dataset = {"name": name, "root": root, "synthetic": synthetic, "title": f"{name} ({shown_path(root)})"}
    return {"sweep": args.name, "split": AGGREGATED_SPLIT, "dataset": dataset,
            "description": f"{AGGREGATED_SPLIT} split, {dataset['title']}, extra flags: {flags_text(extra)}"}


def flags_text(extra):
    return shlex.join(extra) if extra else "none"


def seed_warnings(result):
    """Sentences on the rows (and paired differences) resting on fewer than MIN_SEEDS seeds: with
    one there is no spread at all; with two the std is that of a single difference and the 95%
    interval multiplies it by t(1 degree of freedom) = 12.7, so almost no difference is significant."""
    counts = {row: metrics[METRIC_KEYS[0]]["n"] for row, metrics in result["rows"].items()}
    warnings = []
    for n in sorted(set(counts.values())):
        rows = [row for row, count in counts.items() if count == n]
        if n < MIN_SEEDS:
            warnings.append(_few_seeds(", ".join(rows) + (f": {n} seed" if n == 1 else f": {n} seeds")
                                       + (" each" if len(rows) > 1 else ""), n))
    for row, metrics in result["differences"].items():
        shared = metrics[METRIC_KEYS[0]]["n"]
        if shared < MIN_SEEDS and min(counts[row], counts[result["baseline"]]) >= MIN_SEEDS:
            warnings.append(_few_seeds(f"{row} - {result['baseline']}: {shared} seed(s) in common", shared))
    return warnings


def _few_seeds(what, n):
    if n < 2:
        return f"{what}, so no std and no interval: the numbers are one run's; use {MIN_SEEDS} seeds or more"
    return (f"{what}; with {n} seeds the std is that of one difference and a 95% interval multiplies it by "
            f"t = {t_quantile(n - 1):.1f}, so almost no difference is significant; use {MIN_SEEDS} seeds or more")


def text_tables(result, seeds):
    blocks = [format_cells({key: cell["text"] for key, cell in metrics.items()},
                           title=f"{row}: mean ± std over seeds {', '.join(map(str, seeds))}")
              + "".join(f"\n{title}: {metrics[key]['text']}" for key, title in extra_titles(metrics).items())
              for row, metrics in result["rows"].items()]
    blocks += [format_cells({key: cell["text"] for key, cell in metrics.items()},
                            title=f"{row} - {result['baseline']}: paired mean difference [95% interval]")
               for row, metrics in result["differences"].items()]
    if result.get("description"):
        blocks.insert(0, f"sweep {result['sweep']}: {result['description']}")
    if result.get("warnings"):
        blocks.append("\n".join(f"note: {warning}" for warning in result["warnings"]))
    return "\n\n".join(blocks)


def markdown(result, seeds):
    keys = tuple(next(iter(result["rows"].values())))
    extra = {key: LFAV_TITLES[key] for key in keys if key not in METRIC_KEYS}
    header = "| row | " + " | ".join([f"{LEVEL_TITLES[level]} {COLUMN_TITLES[column]}"
                                     for level, column in (key.split("_", 1) for key in METRIC_KEYS)]
                                    + list(extra.values())) + " |"
    rule = "|---" * (len(keys) + 1) + "|"
    lines = [f"Mean ± std over seeds {', '.join(map(str, seeds))}:", "", header, rule]
    if result.get("description"):
        lines[:0] = [f"**Sweep {result['sweep']}**: {result['description']}.", ""]
    lines += [f"| {row} | " + " | ".join(metrics[key]["text"] for key in keys) + " |"
              for row, metrics in result["rows"].items()]
    if result["differences"]:
        lines += ["", f"Paired difference to {result['baseline']} (mean [95% interval over seeds]):", "", header, rule]
        lines += [f"| {row} | " + " | ".join(metrics[key]["text"] for key in keys) + " |"
                  for row, metrics in result["differences"].items()]
    if result.get("warnings"):
        lines += [""] + [f"> **Note:** {warning}." for warning in result["warnings"]]
    return "\n".join(lines) + "\n"


def csv_text(result):
    out = io.StringIO()
    writer = csv.writer(out)
    # what the numbers are of, on every line: a CSV has no title
    context = [result.get("split", ""), result.get("dataset", {}).get("title", ""),
               flags_text(result["main_flags"]) if "main_flags" in result else ""]
    writer.writerow(["row", "metric", "n", "mean", "std", "diff_mean", "diff_low", "diff_high", "split", "dataset",
                     "extra_flags"])
    for row, metrics in result["rows"].items():
        for key, cell in metrics.items():
            diff = result["differences"].get(row, {}).get(key, {})
            diffs = ("" if diff.get(name) is None else f"{diff[name]:.4f}" for name in ("mean", "low", "high"))
            writer.writerow([row, key, cell["n"], f"{cell['mean']:.4f}", f"{cell['std']:.4f}", *diffs, *context])
    return out.getvalue()


def draw(configs, result, args):
    """Training curves per configuration (seeds overlaid) and per run, and the table as bars; every
    title names the data and the extra flags (`sweep_context`), the bars' also the split."""
    from reporting.plots import plot_metric_bars, plot_training_curves, read_train_log
    folder = os.path.join(args.out_dir, "plots")
    written = []
    # the curves' panels are the val scores of training, titled so; the run is named here
    runs_of = f"{result['dataset']['title']}, extra flags: {flags_text(result['main_flags'])}"
    for config in configs:
        mode = next(step.mode for step in config.steps if step.mode in ("train", "retrain") and not step.suffix)
        runs = {}
        for seed in args.seeds:
            log = os.path.join(args.out_dir, f"{run_name(config, seed)}_{mode}_log.jsonl")
            if os.path.isfile(log):
                runs[f"seed {seed}"] = read_train_log(log)
                written.append(plot_training_curves({f"seed {seed}": runs[f"seed {seed}"]},
                                                    os.path.join(folder, f"{run_name(config, seed)}_curves.png"),
                                                    f"{config.title}, seed {seed}\n{runs_of}"))
        if runs:
            written.append(plot_training_curves(runs, os.path.join(folder, f"{config.slug}_curves.png"),
                                                f"{config.title}: {', '.join(runs)}\n{runs_of}"))
    if result["rows"]:
        caution = ""
        if result["warnings"]:
            caution = f"\nfewer than {MIN_SEEDS} seeds in some rows: their spread means little"
        written.append(plot_metric_bars(result["rows"], os.path.join(folder, "table_bars.png"),
                                        f"{args.name}: mean ± std over seeds\n{result['description']}{caution}",
                                        baseline=result["baseline"]))
    return written


# ------------------------------------------------------------------------------------------------
# command line

def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s (--preset NAME | --config TITLE=FLAGS ...) --seeds S [S ...] "
                                           "[options] [-- main_DHHN.py flags]")
    what = parser.add_argument_group("what runs")
    what.add_argument("--preset", choices=tuple(PRESETS), help="a table of the paper (or the pseudo-label study)")
    what.add_argument("--config", action="append", default=[], metavar="TITLE=FLAGS",
                      help="a configuration: its row title and its main_DHHN.py flags (repeatable; after a preset's)")
    what.add_argument("--seeds", type=int, nargs="+", required=True)
    what.add_argument("--llp_root", default=None, help="LLP in the official layout (default: the synthetic LLP, "
                                                       "made in data/synthetic on first use)")
    what.add_argument("--lfav_root", default=None,
                      help="run on LFAV (main_DHHN.py --dataset lfav --lfav_root): an LFAV root or a synthetic one "
                           "(scripts/make_synthetic_lfav.py); rows with --config")
    what.add_argument("--pseudo_root", default=None, help="table1: folder with CLAP/ and CLIP/segment_pseudo_labels "
                                                          "(default --llp_root)")
    what.add_argument("--levels", nargs="+", default=["0.9:0.8", "0.5:0.5"],
                      help="pseudo_labels: pseudo-label qualities, precision:recall each")
    what.add_argument("--out_dir", default=None, help="runs, tables and plots (default runs/sweep_<preset>)")
    what.add_argument("--baseline", default=None, help="row title the others are paired against (default: the first)")
    how = parser.add_argument_group("where it runs")
    how.add_argument("--executor", default="local", choices=EXECUTORS,
                     help="local: subprocesses here; slurm: a submitit job array; submitit_local: submitit's local "
                          "executor (the SLURM code path on this machine)")
    how.add_argument("--parallel", type=int, default=1, help="local: jobs at once")
    how.add_argument("--partition", default=None, help="slurm: partition")
    how.add_argument("--time", type=int, default=240, help="slurm/submitit: minutes per job")
    how.add_argument("--gpus", type=int, default=1, help="slurm: GPUs per job")
    how.add_argument("--cpus", type=int, default=8, help="slurm: CPUs per job")
    how.add_argument("--mem", type=int, default=32, help="slurm: memory per job in GB")
    how.add_argument("--array_parallelism", type=int, default=32, help="slurm: jobs of the array running at once")
    how.add_argument("--slurm_log_dir", default=None,
                     help="submitit's folder of job logs (default <out_dir>/slurm_logs)")
    how.add_argument("--dry_run", action="store_true", help="print the jobs and their commands, run nothing")
    how.add_argument("--no_plots", action="store_true", help="tables only")
    return parser


def split_argv(argv):
    """(this script's arguments, main_DHHN.py flags): the two sides of the first `--`."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1:])


def parse_level(text):
    try:
        precision, recall = (float(part) for part in text.split(":"))
    except ValueError:
        raise UsageError(f"--levels {text}: expected precision:recall, e.g. 0.9:0.8") from None
    return precision, recall


def resolve(args):
    if not args.preset and not args.config:
        raise UsageError("give --preset or at least one --config")
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    outside = [str(seed) for seed in args.seeds if not 0 <= seed <= MAX_SEED]
    if outside:
        raise UsageError(f"--seeds {' '.join(outside)}: a seed must be in 0..{MAX_SEED}")
    args.name = args.preset or "sweep"
    args.out_dir = os.path.abspath(args.out_dir or os.path.join("runs", f"sweep_{args.name}"))
    args.levels = [parse_level(text) for text in args.levels]
    args.seeds = list(dict.fromkeys(args.seeds))
    if args.lfav_root is not None:
        if args.preset or args.llp_root or args.pseudo_root:
            raise UsageError("--lfav_root: the presets, --llp_root and --pseudo_root are LLP's; give the rows "
                             "with --config")
        if not os.path.isdir(args.lfav_root):
            raise UsageError(f"--lfav_root {args.lfav_root}: no such folder (scripts/make_synthetic_lfav.py makes one)")
        args.lfav_root = os.path.abspath(args.lfav_root)
    synthetic = args.llp_root is None and args.lfav_root is None
    args.llp_root = os.path.abspath(args.llp_root or DEFAULT_SYNTHETIC_ROOT)
    if args.preset == "pseudo_labels" and not os.path.isfile(os.path.join(args.llp_root, ".synthetic_complete")) \
            and not synthetic:
        raise UsageError(f"--preset pseudo_labels makes its pseudo-labels from a synthetic LLP's planted truth; "
                         f"{args.llp_root} is not one")
    return synthetic


def main(argv):
    """The sweep of the command line `argv`; a usage error is one line on stderr and exit status 2,
    before any run, file or folder is started."""
    try:
        return run_sweep(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def run_sweep(argv):
    own, extra = split_argv(argv)
    args = get_args_parser().parse_args(own)
    synthetic = resolve(args)
    configs = (PRESETS[args.preset](args) if args.preset else []) + [parse_config(text) for text in args.config]
    baseline = args.baseline or configs[0].title
    if baseline not in [config.title for config in configs]:
        raise UsageError(f"--baseline {baseline!r}: not a row ({', '.join(config.title for config in configs)})")
    check_configs(configs, args, extra)
    if args.executor != "local" and not args.dry_run:
        require_submitit(args.executor)
    jobs = build_jobs(configs, args, extra)
    pending = [job for job in jobs if job.commands]
    if args.dry_run:
        for job in jobs:
            print(f"{job.run} ({job.config}, seed {job.seed}): "
                  + ("finished, skipped" if not job.commands else f"{len(job.commands)} step(s)"))
            for command in job.commands:
                print("    " + " ".join(command[1:]))
        return None
    if synthetic:
        from avvp_data.synthetic_llp import SIZES, generate_synthetic_llp
        generate_synthetic_llp(args.llp_root, *SIZES["demo"], seed=0)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.preset == "pseudo_labels":
        prepare_pseudo_labels(args)
    print(f"{len(jobs)} run(s) in {args.out_dir}: {len(jobs) - len(pending)} finished, {len(pending)} to run "
          f"({args.executor})", flush=True)
    results = []
    if pending:
        results = run_local(pending, args.parallel) if args.executor == "local" else run_submitit(pending, args)
    failed = [run for run, index, _ in results if index is not None]
    per_row, missing = collect(configs, args)
    for path in missing:
        print(f"missing: {path}", file=sys.stderr)
    if not per_row:
        raise SystemExit("error: no run finished; nothing to aggregate")
    result = aggregate(per_row, baseline if baseline in per_row else None)
    result.update(seeds=args.seeds, configs={config.title: config.slug for config in configs},
                  failed_runs=failed, missing=missing, main_flags=extra, **sweep_context(args, extra))
    result["warnings"] = seed_warnings(result)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(text_tables(result, args.seeds))
    stem = os.path.join(args.out_dir, "sweep")
    atomic_write_text(text_tables(result, args.seeds) + "\n", stem + ".txt")
    atomic_write_text(markdown(result, args.seeds), stem + ".md")
    atomic_write_text(csv_text(result), stem + ".csv")
    atomic_write_json(result, stem + ".json")
    if not args.no_plots:
        result["plots"] = draw(configs, result, args)
    plots = "" if args.no_plots else f" and {len(result.get('plots', []))} plot(s)"
    print(f"written: {stem}.{{txt,md,csv,json}}{plots}")
    if failed or missing:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
