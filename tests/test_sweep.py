"""scripts/sweep.py: jobs, skipping and resuming, aggregation checked by hand, the executors."""
import builtins
import csv
import io
import json
import math
import os
import re
import sys
import time
from types import SimpleNamespace

import pytest

from avvp_data.synthetic_llp import COMPLETE_MARKER, generate_synthetic_llp
from conftest import data_flags, run_main
from reporting import plots
from scripts import sweep
from utils.eval_metrics import METRIC_KEYS

HAN_FAST = "--model han --epochs 1 --batch-size 16 --device cpu"


@pytest.fixture(scope="module")
def tiny_llp(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_llp")
    generate_synthetic_llp(str(root), n_train=32, n_val=16, n_test=16, seed=1)
    return root


def table(**values):
    """A test table: every metric 0.5 except the ones given (fractions)."""
    return {key: values.get(key, 0.5) for key in METRIC_KEYS}


def test_mean_std_and_paired_interval_by_hand():
    per_row = {"full": {1: table(seg_type=0.50), 2: table(seg_type=0.60), 3: table(seg_type=0.70)},
               "F-H off": {1: table(seg_type=0.52), 2: table(seg_type=0.61), 3: table(seg_type=0.75)}}
    result = sweep.aggregate(per_row, baseline="full")
    full = result["rows"]["full"]["seg_type"]
    assert full["mean"] == pytest.approx(60.0) and full["std"] == pytest.approx(10.0)
    assert full["text"] == "60.0 ± 10.0" and full["values"] == pytest.approx([50, 60, 70])
    # differences 2, 1, 5: mean 8/3, sample std sqrt(13/3), t(0.975, 2) = 4.303
    diff = result["differences"]["F-H off"]["seg_type"]
    half = 4.303 * math.sqrt(13 / 3) / math.sqrt(3)
    assert diff["mean"] == pytest.approx(8 / 3)
    assert (diff["low"], diff["high"]) == pytest.approx((8 / 3 - half, 8 / 3 + half))
    assert diff["text"] == "+2.7 [-2.5, +7.8]"
    assert result["differences"]["F-H off"]["seg_audio"]["text"] == "+0.0 [+0.0, +0.0]"
    assert "full" not in result["differences"]


def test_paired_differences_use_the_seeds_both_rows_have():
    one = sweep.paired_difference({1: 3.0, 2: 4.0}, {2: 1.0, 5: 0.0})
    assert (one["n"], one["mean"], one["low"], one["text"]) == (1, 3.0, None, "+3.0")
    assert sweep.paired_difference({1: 1.0}, {2: 1.0})["text"] == "n/a"
    assert sweep.t_quantile(2) == 4.303 and sweep.t_quantile(100) == pytest.approx(1.984, abs=1e-3)


def tables_of(tmp_path, per_row, synthetic=True, extra=("--epochs", "3")):
    """The aggregate of `per_row` as main() completes it, for a sweep on an LLP root in tmp_path."""
    root = tmp_path / "llp"
    root.mkdir(parents=True, exist_ok=True)
    if synthetic:
        (root / COMPLETE_MARKER).write_text("{}")
    args = SimpleNamespace(llp_root=str(root), lfav_root=None, name="table2", out_dir=str(tmp_path), seeds=[1, 2, 3])
    result = sweep.aggregate(per_row, baseline=next(iter(per_row)))
    result.update(main_flags=list(extra), **sweep.sweep_context(args, list(extra)))
    result["warnings"] = sweep.seed_warnings(result)
    return result, args


def test_tables_name_the_split_the_dataset_and_the_extra_flags(tmp_path):
    per_row = {"full": {seed: table() for seed in (1, 2, 3)}, "F-H off": {seed: table() for seed in (1, 2, 3)}}
    result, args = tables_of(tmp_path, per_row)
    said = f"test split, synthetic LLP ({tmp_path}/llp), extra flags: --epochs 3"
    assert result["description"] == said and result["dataset"]["synthetic"] and not result["warnings"]
    assert sweep.text_tables(result, [1, 2, 3]).splitlines()[0] == f"sweep table2: {said}"
    assert sweep.markdown(result, [1, 2, 3]).splitlines()[0] == f"**Sweep table2**: {said}."
    assert "note" not in sweep.text_tables(result, [1, 2, 3]).lower()
    rows = list(csv.DictReader(io.StringIO(sweep.csv_text(result))))
    assert len(rows) == 2 * len(METRIC_KEYS)
    assert {(row["split"], row["dataset"], row["extra_flags"]) for row in rows} == {
        ("test", f"synthetic LLP ({tmp_path}/llp)", "--epochs 3")}
    real, _ = tables_of(tmp_path / "real", per_row, synthetic=False, extra=())
    assert real["description"] == f"test split, LLP ({tmp_path}/real/llp), extra flags: none"


def test_fewer_than_three_seeds_are_flagged_with_the_reason(tmp_path):
    per_row = {"full": {1: table(), 2: table(seg_type=0.6)}, "F-H off": {1: table(), 2: table()},
               "P-H off": {1: table()}}
    result, _ = tables_of(tmp_path, per_row)
    one, two = result["warnings"]   # the fewest seeds first
    assert two.startswith("full, F-H off: 2 seeds each;") and "t = 12.7" in two and "significant" in two
    assert one.startswith("P-H off: 1 seed, so no std and no interval")
    assert sweep.text_tables(result, [1, 2]).splitlines()[-2:] == [f"note: {one}", f"note: {two}"]
    assert sweep.markdown(result, [1, 2]).splitlines()[-2:] == [f"> **Note:** {one}.", f"> **Note:** {two}."]
    # three seeds each, but only two in common with the baseline: the paired interval is the weak one
    per_row = {"full": {seed: table() for seed in (1, 2, 3)}, "F-H off": {seed: table() for seed in (2, 3, 4)}}
    [paired] = tables_of(tmp_path, per_row)[0]["warnings"]
    assert paired.startswith("F-H off - full: 2 seed(s) in common;") and "t = 12.7" in paired


def test_plot_titles_name_the_dataset_the_flags_and_the_split(tmp_path, monkeypatch):
    config = sweep.Config("HAN", "han", sweep.train_and_test("--model", "han"))
    record = {"epoch": 1, "losses": {"bce": 0.5}, "val": {key: 0.5 for key in METRIC_KEYS}, "saved": ["overall"]}
    for seed in (1, 2):
        (tmp_path / f"han_seed{seed}_train_log.jsonl").write_text(json.dumps(record) + "\n")
    result, args = tables_of(tmp_path, {"HAN": {1: table(), 2: table()}})
    titles = {}
    monkeypatch.setattr(plots, "plot_training_curves",
                        lambda runs, path, title: titles.setdefault(os.path.basename(path), title))
    monkeypatch.setattr(plots, "plot_metric_bars",
                        lambda rows, path, title, baseline: titles.setdefault(os.path.basename(path), title))
    sweep.draw([config], result, args)
    data = f"synthetic LLP ({tmp_path}/llp), extra flags: --epochs 3"
    assert titles == {"han_seed1_curves.png": f"HAN, seed 1\n{data}", "han_seed2_curves.png": f"HAN, seed 2\n{data}",
                      "han_curves.png": f"HAN: seed 1, seed 2\n{data}",
                      "table_bars.png": f"table2: mean ± std over seeds\ntest split, {data}\n"
                                        "fewer than 3 seeds in some rows: their spread means little"}


def sweep_args(tmp_path, seeds=(1, 2)):
    return SimpleNamespace(out_dir=str(tmp_path), llp_root="/llp", lfav_root=None, seeds=list(seeds))


def test_finished_steps_are_skipped_and_interrupted_ones_resume(tmp_path):
    config = sweep.Config("HAN", "han", sweep.train_and_test("--model", "han"))
    (tmp_path / "han_seed1_train_summary.json").write_text("{}")   # seed 1 trained, not tested
    (tmp_path / "han_seed2_last.pt").write_text("")                # seed 2 interrupted while training
    jobs = sweep.build_jobs([config], sweep_args(tmp_path), ["--epochs", "3"])
    first, second = jobs
    assert first.run == "han_seed1" and [command[3] for command in first.commands] == ["test"]
    assert [command[3] for command in second.commands] == ["train", "test"]
    assert second.commands[0][-1] == "--resume" and "--resume" not in second.commands[1]
    assert second.commands[0][-3:-1] == ["--epochs", "3"]
    (tmp_path / "han_seed1_test_summary.json").write_text("{}")
    assert sweep.build_jobs([config], sweep_args(tmp_path, [1]), [])[0].commands == []


def test_the_refinement_chain_names_its_estimator_apart(tmp_path):
    chain = sweep.refinement_chain("dhhn", None)
    assert [(step.mode, step.suffix) for step in chain] == [("train", "_ma"), ("estimate_labels", "_ma"),
                                                            ("retrain", ""), ("test", "")]
    job = sweep.build_jobs([sweep.Config("DHHN refined", "refined", chain)], sweep_args(tmp_path, [4]), [])[0]
    checkpoints = [command[command.index("--checkpoint") + 1] for command in job.commands]
    assert checkpoints == ["refined_seed4_ma", "refined_seed4_ma", "refined_seed4", "refined_seed4"]
    assert f"{tmp_path}/refined_seed4_ma_refined_labels.pkl" in job.commands[2]
    published = sweep.refinement_chain("ma", "/llp/data/flags.pkl")
    assert [step.mode for step in published] == ["retrain", "test"]


def test_presets_and_bad_requests(tmp_path, capsys):
    args = SimpleNamespace(llp_root=str(tmp_path), lfav_root=None, pseudo_root=None, out_dir=str(tmp_path),
                           levels=[(0.9, 0.8)])
    assert [config.title for config in sweep.table2(args)] == ["DHHN (full)", "F-H off", "P-H off", "A-M off",
                                                               "V-M off", "L_rmse off"]
    assert [config.slug for config in sweep.table1(args)] == ["han", "ma", "dhhn", "dhhn_refined"]
    for folder in ("CLAP", "CLIP"):
        os.makedirs(tmp_path / folder / "segment_pseudo_labels")
    assert sweep.table1(args)[-1].title == "DHHN + pseudo-labels"
    for argv, message in [
            (["--preset", "table2", "--seeds", "1", "--", "--seed", "3"],
             "error: the flags after -- cannot be used; nothing was started:\n"
             "  the flags after --: --seed is set by sweep.py per run (--seeds); remove it from them"),
            (["--preset", "table2", "--seeds", "1", "--", "--bogus"],
             "error: the flags after --: unrecognized arguments: --bogus; nothing was started"),
            (["--config", "a b=--model han", "--config", "a-b=--model dhhn", "--seeds", "1"],
             "error: 2 of 2 configuration(s) cannot run; nothing was started:\n"
             "  a b: its runs would share the names a_b_seed<S> with 'a-b'; give it another title\n"
             "  a-b: its runs would share the names a_b_seed<S> with 'a b'; give it another title\n"),
            (["--preset", "table2", "--seeds", "1", "--baseline", "nope"], "error: --baseline 'nope': not a row"),
            (["--seeds", "1"], "error: give --preset or at least one --config"),
            (["--preset", "table2", "--seeds", "1", "-2"], "error: --seeds -2: a seed must be in 0..4294967295"),
            (["--config", "A", "--seeds", "1"], "error: --config 'A': expected TITLE=main_DHHN flags")]:
        with pytest.raises(SystemExit) as exit_info:
            sweep.main(["--out_dir", str(tmp_path / "sweep"), "--llp_root", str(tmp_path), *argv])
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "sweep").exists()


def test_every_bad_configuration_is_named_at_once_before_anything_starts(tmp_path, capsys):
    """Each would start and fail later (or train seconds for files it then cannot find): all are
    refused in one error, by configuration and flag, exit status 2, and no file is made."""
    out_dir = tmp_path / "sweep"
    configs = {"good": HAN_FAST, "unknown": "--model han --bogus 3", "no value": "--model han --lr",
               "bad value": "--model han --lr abc", "zero epochs": "--model han --epochs 0",
               "own name": "--model han --checkpoint mine", "save dir": "--model han --model_save_dir elsewhere",
               "nowhere": "--model han --refine_source final", "bad mix": "--model han --scheduler warm_up_cos_anneal "
                                                                        "--lr_step 3"}
    argv = [word for title, flags in configs.items() for word in ("--config", f"{title}={flags}")]
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(argv + ["--seeds", "1", "2", "--llp_root", str(tmp_path), "--out_dir", str(out_dir), "--",
                           "--log-interval", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: 8 of 9 configuration(s) cannot run; nothing was started:",
        "  unknown: unrecognized arguments: --bogus 3",
        "  no value: argument --lr: expected one argument",
        "  bad value: argument --lr: invalid float value: 'abc'",
        "  zero epochs: --mode train: --epochs 0: must be at least 1",
        "  own name: --checkpoint is set by sweep.py per run (the run's name); remove it from the configuration",
        "  save dir: --model_save_dir is set by sweep.py per run (--out_dir); remove it from the configuration",
        "  nowhere: --refine_source acts in no step of its chain (train, test), only in --mode estimate_labels",
        "  bad mix: --mode train: --lr_step: does nothing with --scheduler warm_up_cos_anneal (it shapes --scheduler "
        "steplr). Drop them, or pick the mode or schedule they belong to"]
    assert not out_dir.exists()
    # an extra flag that acts in no step of a chain is refused for each configuration it would be lost in
    with pytest.raises(SystemExit):
        sweep.main(["--config", f"A={HAN_FAST}", "--seeds", "1", "--llp_root", str(tmp_path), "--out_dir",
                    str(out_dir), "--dry_run", "--", "--refined_labels", "flags.pkl"])
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  A: --refined_labels (after --) acts in no step of its chain (train, test), only in --mode retrain"]


def fake_job(tmp_path, run, code):
    """A job of one step that runs `code` in Python, as if it were main_DHHN.py --mode train."""
    return sweep.Job(run, 1, run, [[sys.executable, "-c", code, "--mode", "train"]], str(tmp_path / f"{run}.log"))


def test_the_sweep_says_each_run_start_and_end_with_its_own_time_and_that_it_is_alive(tmp_path, monkeypatch,
                                                                                    capsys):
    monkeypatch.setattr(sweep, "ALIVE_SECONDS", 0.2, raising=False)
    nap = "import time; time.sleep(1.0)"
    jobs = [fake_job(tmp_path, "a", nap), fake_job(tmp_path, "b", nap),
            fake_job(tmp_path, "c", "import sys; print('starting'); print('error: --lr 0: must be positive'); "
                                    "sys.exit(2)")]
    started = time.monotonic()
    results = sweep.run_local(jobs, parallel=1)
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if not line.startswith("sweep: ")]
    assert said[0] == "a: started, 1 step(s): train" and said[2] == "b: started, 1 step(s): train"
    for line in said[1], said[3]:   # each run's own time, not the time since the sweep started
        assert re.fullmatch(r"[ab]: done in \d\.\d s", line) and 0.9 < float(line.split()[-2]) < 1.9
    assert time.monotonic() - started > 2
    assert said[4:] == ["c: started, 1 step(s): train",
                        f"c: FAILED in {said[5].split()[3]} s at step 1/1 (--mode train): error: --lr 0: must be "
                        f"positive; log: {tmp_path / 'c.log'}"]
    alive = [line for line in lines if line.startswith("sweep: ")]
    assert any(re.fullmatch(r"sweep: 1 running, 0 finished \(0 failed\), 2 waiting; \d\.\d s since the start", line)
               for line in alive)
    assert any(line.startswith("sweep: 1 running, 1 finished (0 failed), 1 waiting; ") for line in alive)
    assert [(run, failed) for run, failed, _ in results] == [("a", None), ("b", None), ("c", 0)]


def test_dry_run_prints_every_job_and_runs_nothing(tmp_path, capsys):
    assert sweep.main(["--preset", "table2", "--seeds", "1", "2", "--out_dir", str(tmp_path), "--dry_run",
                       "--llp_root", str(tmp_path)]) is None
    out = capsys.readouterr().out
    assert out.count("2 step(s)") == 12 and "no_rmse_seed2 (L_rmse off, seed 2)" in out
    assert "--mode train --seed 2 --checkpoint no_rmse_seed2" in out and not os.listdir(tmp_path)


def test_local_sweep_trains_tests_aggregates_plots_then_skips(tiny_llp, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    argv = ["--config", f"A={HAN_FAST}", "--config", f"B={HAN_FAST} --lr 1e-3", "--seeds", "1", "2",
            "--executor", "local", "--parallel", "2", "--llp_root", str(tiny_llp), "--out_dir", str(out_dir),
            "--", "--log-interval", "0"]
    result = sweep.main(argv)
    assert set(result["rows"]) == {"A", "B"} and result["baseline"] == "A"
    assert result["rows"]["B"]["seg_type"]["n"] == 2 and set(result["differences"]) == {"B"}
    for suffix in ("txt", "md", "csv", "json"):
        assert (out_dir / f"sweep.{suffix}").stat().st_size > 0
    written = json.loads((out_dir / "sweep.json").read_text())
    assert written["rows"]["A"]["evt_type"]["text"] == result["rows"]["A"]["evt_type"]["text"]
    assert sorted(os.listdir(out_dir / "plots")) == ["a_curves.png", "a_seed1_curves.png", "a_seed2_curves.png",
                                                     "b_curves.png", "b_seed1_curves.png", "b_seed2_curves.png",
                                                     "table_bars.png"]
    printed = capsys.readouterr()
    assert "B - A: paired mean difference [95% interval]" in printed.out
    assert "warning: A, B: 2 seeds each;" in printed.err and "t = 12.7" in printed.err
    said = f"test split, synthetic LLP ({tiny_llp}), extra flags: --log-interval 0"
    assert (out_dir / "sweep.md").read_text().startswith(f"**Sweep sweep**: {said}.")
    assert written["description"] == said and written["warnings"] == result["warnings"]
    again = sweep.main(argv)
    assert "4 run(s) in" in capsys.readouterr().out.splitlines()[0]
    assert again["rows"] == result["rows"]


def test_an_interrupted_run_is_resumed(tiny_llp, tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    flags = data_flags(tiny_llp) + ["--model", "han", "--batch-size", "16", "--device", "cpu", "--log-interval", "0"]
    # run "a_seed1" of the configuration "a", stopped after epoch 1 of 2: its _last.pt, no summary
    run_main(flags + ["--mode", "train", "--epochs", "1", "--seed", "1", "--checkpoint", "a_seed1",
                      "--model_save_dir", str(out_dir)])
    os.remove(out_dir / "a_seed1_train_summary.json")
    capsys.readouterr()
    sweep.main(["--config", "a=--model han --epochs 2 --batch-size 16 --device cpu --log-interval 0", "--seeds", "1",
                "--llp_root", str(tiny_llp), "--out_dir", str(out_dir), "--no_plots"])
    log = (out_dir / "a_seed1_sweep.log").read_text()
    assert "--mode train" in log and "--resume" in log and "resumed after epoch 1" in log
    summary = json.loads((out_dir / "a_seed1_train_summary.json").read_text())
    assert [record["epoch"] for record in summary["history"]] == [1, 2]


def test_submitit_local_executor_runs_the_jobs(tiny_llp, tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit", reason='pip install -e ".[sweep]"')
    monkeypatch.setattr(sweep, "ALIVE_SECONDS", 0.5)
    monkeypatch.setattr(sweep, "POLL_SECONDS", 0.1)
    out_dir = tmp_path / "sweep"
    result = sweep.main(["--config", f"A={HAN_FAST}", "--seeds", "3", "--executor", "submitit_local", "--time", "10",
                         "--llp_root", str(tiny_llp), "--out_dir", str(out_dir), "--no_plots"])
    assert result["rows"]["A"]["seg_type"]["seeds"] == [3]
    assert os.listdir(out_dir / "slurm_logs")
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(r"a_seed3: done in (\d\.\d s|\d+ s|\d+ min \d\d s)", line) for line in lines)
    assert any(re.fullmatch(r"sweep: [01] running, 0 finished \(0 failed\), [01] waiting; .* since the start", line)
               for line in lines)


def test_a_missing_submitit_names_the_install_command(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--config", f"A={HAN_FAST}", "--seeds", "1", "--executor", "slurm", "--llp_root", str(tmp_path),
                    "--out_dir", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2 and not (tmp_path / "sweep").exists()
    assert capsys.readouterr().err == 'error: --executor slurm needs submitit: pip install -e ".[sweep]"\n'
