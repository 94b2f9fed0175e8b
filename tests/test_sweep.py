"""scripts/sweep.py: jobs, skipping and resuming, aggregation checked by hand, the executors."""
import builtins
import json
import math
import os
from types import SimpleNamespace

import pytest

from conftest import data_flags, load_script, run_main
from utils.eval_metrics import METRIC_KEYS
from avvp_data.synthetic_llp import generate_synthetic_llp

sweep = load_script("sweep")
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


def sweep_args(tmp_path, seeds=(1, 2)):
    return SimpleNamespace(out_dir=str(tmp_path), llp_root="/llp", seeds=list(seeds))


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
    args = SimpleNamespace(llp_root=str(tmp_path), pseudo_root=None, out_dir=str(tmp_path), levels=[(0.9, 0.8)])
    assert [config.title for config in sweep.table2(args)] == ["DHHN (full)", "F-H off", "P-H off", "A-M off",
                                                               "V-M off", "L_rmse off"]
    assert [config.slug for config in sweep.table1(args)] == ["han", "ma", "dhhn", "dhhn_refined"]
    for folder in ("CLAP", "CLIP"):
        os.makedirs(tmp_path / folder / "segment_pseudo_labels")
    assert sweep.table1(args)[-1].title == "DHHN + pseudo-labels"
    with pytest.raises(SystemExit, match="--seed is set by sweep.py"):
        sweep.main(["--preset", "table2", "--seeds", "1", "--dry_run", "--", "--seed", "3"])
    with pytest.raises(SystemExit, match="would share run names: a_b"):
        sweep.main(["--config", "a b=--model han", "--config", "a-b=--model dhhn", "--seeds", "1", "--dry_run"])
    with pytest.raises(SystemExit, match="--baseline 'nope': not a row"):
        sweep.main(["--preset", "table2", "--seeds", "1", "--dry_run", "--baseline", "nope"])


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
    assert "B - A: paired mean difference [95% interval]" in capsys.readouterr().out
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


def test_submitit_local_executor_runs_the_jobs(tiny_llp, tmp_path):
    pytest.importorskip("submitit", reason="pip install -r requirements-sweep.txt")
    out_dir = tmp_path / "sweep"
    result = sweep.main(["--config", f"A={HAN_FAST}", "--seeds", "3", "--executor", "submitit_local", "--time", "10",
                         "--llp_root", str(tiny_llp), "--out_dir", str(out_dir), "--no_plots"])
    assert result["rows"]["A"]["seg_type"]["seeds"] == [3]
    assert os.listdir(out_dir / "slurm_logs")


def test_a_missing_submitit_names_the_install_command(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_submitit)
    args = SimpleNamespace(executor="slurm", out_dir=str(tmp_path), slurm_log_dir=None)
    with pytest.raises(SystemExit, match="needs submitit: pip install -r requirements-sweep.txt"):
        sweep.submitit_executor(args)
