"""Nothing silently wrong: every mistake or fault of a run stops with one line naming the flag,
file or run (exit code 2, or 130 when interrupted), before any work where it can, and leaves
nothing half-written or mixed (docs/RELIABILITY.md)."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import modes.common
from avvp_data.synthetic_llp import generate_synthetic_llp
from conftest import REPO_ROOT, fail_at_call, main_fails, run_main, train_flags
from main_DHHN import MODES, get_args_parser
from modes.common import RUN_MODES
from utils import checkpoint
from utils.run_lock import RunLock


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A tiny synthetic LLP under a folder whose name holds a space."""
    root = tmp_path_factory.mktemp("llp with space") / "llp"
    generate_synthetic_llp(str(root), n_train=48, n_val=16, n_test=16, seed=0)
    return root




def leftovers(folder):
    return [name for _, _, files in os.walk(folder) for name in files if name.endswith(".tmp")]


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "0", "--epochs 0: must be at least 1"),
    ("--epochs", "-3", "--epochs -3: must be at least 1"),
    ("--batch-size", "0", "--batch-size 0: must be at least 1"),
    ("--eval_batch_size", "0", "--eval_batch_size 0: must be at least 1"),
    ("--lr_step", "0", "--lr_step 0: must be at least 1"),
    ("--lr", "-0.001", "--lr -0.001: must be positive"),
    ("--lr_visual_mgn", "0", "--lr_visual_mgn 0.0: must be positive"),
    ("--seed", "-1", "--seed -1: must be in 0..4294967295"),
    ("--seed", "4294967296", "--seed 4294967296: must be in 0..4294967295"),
])
def test_impossible_numbers_are_refused_before_any_work(tiny_root, tmp_path, capsys, flag, value, message):
    save_dir = tmp_path / "run"
    err = main_fails(train_flags(tiny_root, save_dir, "--mode", "train", flag, value), capsys)
    assert message in err
    assert not save_dir.exists()


def test_help_says_what_switches_do_without_a_default(capsys):
    help_text = get_args_parser().format_help()
    assert "(default: True)" not in help_text and "(default: False)" not in help_text
    assert "L_rmse off" in help_text and "(default: 256)" in help_text


def test_every_mode_has_its_records_known():
    assert tuple(MODES) == RUN_MODES


# ---------------------------------------------------------------- one run per name


def test_a_second_run_under_a_running_name_is_refused_naming_it(tiny_root, tmp_path, capsys):
    with RunLock(str(tmp_path), "DHHN", "train"):
        err = main_fails(train_flags(tiny_root, tmp_path, "--mode", "test"), capsys)
    assert f"--checkpoint DHHN in {tmp_path} is in use by a train run (process {os.getpid()}" in err
    assert not list(tmp_path.glob("DHHN_*"))


def test_a_killed_run_does_not_leave_its_name_locked(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from utils.run_lock import RunLock\n"
        "with RunLock(sys.argv[2], 'DHHN', 'train'):\n    print('locked', flush=True); time.sleep(60)"),
        REPO_ROOT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match="in use by a train run"):
        RunLock(str(tmp_path), "DHHN", "test").__enter__()
    holder.kill()   # kill -9: no cleanup runs
    holder.wait()
    with RunLock(str(tmp_path), "DHHN", "test"):
        pass


def test_training_again_under_a_used_name_keeps_the_earlier_files(tiny_root, tmp_path, capsys):
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1")
    run_main(flags)
    first = checkpoint.load(str(tmp_path / "DHHN_last.pt"))
    (tmp_path / "DHHN_seed2_last.pt").write_bytes(b"another run's file")
    capsys.readouterr()
    run_main(flags)
    moved = list((tmp_path / "previous").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("DHHN_")
    assert f"moved to {moved[0]}" in capsys.readouterr().out
    assert sorted(path.name for path in moved[0].iterdir()) == [
        "DHHN_best_audio.pt", "DHHN_best_overall.pt", "DHHN_best_visual.pt", "DHHN_last.pt",
        "DHHN_train_args.json", "DHHN_train_log.jsonl", "DHHN_train_summary.json"]
    kept = checkpoint.load(str(moved[0] / "DHHN_last.pt"))
    assert all(torch.equal(kept["nets"]["model"][key], value) for key, value in first["nets"]["model"].items())
    assert (tmp_path / "DHHN_last.pt").is_file()
    assert (tmp_path / "DHHN_seed2_last.pt").read_bytes() == b"another run's file"


# ---------------------------------------------------------------- resume


def test_resume_refuses_changed_flags_before_writing_anything(tiny_root, tmp_path, capsys):
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1")
    run_main(flags)
    recorded = (tmp_path / "DHHN_train_args.json").read_bytes()
    err = main_fails(flags + ["--resume", "--epochs", "2", "--lr", "0.001", "--no_rmse"], capsys)
    assert "lr 0.0003 -> 0.001" in err and "rmse True -> False" in err
    err = main_fails(flags + ["--resume", "--batch-size", "8"], capsys)
    assert "batch_size 16 -> 8" in err
    assert (tmp_path / "DHHN_train_args.json").read_bytes() == recorded
    # more epochs and flags that change no result are fine
    summary = run_main(flags + ["--resume", "--epochs", "2", "--log-interval", "0", "--eval_batch_size", "7"])
    assert [record["epoch"] for record in summary["history"]] == [1, 2]


def test_resume_refuses_fewer_epochs_than_planned(tiny_root, tmp_path, capsys):
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "2")
    run_main(flags)
    err = main_fails(flags[:-1] + ["1", "--resume"], capsys)
    assert "epochs 2 -> 1 (only more epochs may be asked for)" in err


# ---------------------------------------------------------------- faults


def test_ctrl_c_stops_after_the_last_saved_epoch_and_resume_finishes(tiny_root, tmp_path, capsys, monkeypatch):
    import engine
    evaluate = fail_at_call(monkeypatch, engine, "evaluate", 2, KeyboardInterrupt)   # in epoch 2
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "3")
    err = main_fails(flags, capsys, code=130)
    assert err == f"error: interrupted after epoch 1 ({tmp_path}/DHHN_last.pt holds it); continue with --resume\n"
    assert checkpoint.load(str(tmp_path / "DHHN_last.pt"))["epoch"] == 1
    assert len((tmp_path / "DHHN_train_log.jsonl").read_text().splitlines()) == 1
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(engine, "evaluate", evaluate)
    summary = run_main(flags + ["--resume"])
    assert [record["epoch"] for record in summary["history"]] == [1, 2, 3]


def test_sigterm_during_training_stops_cleanly(tiny_root, tmp_path):
    command = [sys.executable, os.path.join(REPO_ROOT, "main_DHHN.py"), "--mode", "train", "--llp_root", str(tiny_root),
               "--model_save_dir", str(tmp_path), "--epochs", "1000", "--batch-size", "16", "--progress", "off",
               "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while not (tmp_path / "DHHN_train_log.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    epoch = checkpoint.load(str(tmp_path / "DHHN_last.pt"))["epoch"]
    assert err == f"error: interrupted after epoch {epoch} ({tmp_path}/DHHN_last.pt holds it); continue with --resume\n"
    log = [json.loads(line) for line in (tmp_path / "DHHN_train_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in log] == list(range(1, epoch + 1))
    assert leftovers(tmp_path) == []


def test_a_full_disk_is_one_line_naming_the_file(tiny_root, tmp_path, capsys, monkeypatch):
    import utils.io

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(utils.io.os, "fsync", no_space)
    err = main_fails(train_flags(tiny_root, tmp_path / "run", "--mode", "train", "--epochs", "1"), capsys)
    assert "cannot write" in err and str(tmp_path / "run") in err and "No space left on device" in err
    assert leftovers(tmp_path) == []


def test_an_unusable_save_folder_is_refused_before_any_work(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modes.common, "load_split", lambda *args, **kwargs: pytest.fail("features were loaded"))
    (tmp_path / "a_file").write_text("")
    err = main_fails(train_flags(tiny_root, tmp_path / "a_file" / "models", "--mode", "train"), capsys)
    assert f"cannot write {tmp_path}/a_file/models" in err


def test_a_read_only_save_folder_still_scores_with_no_log(trained_run, synthetic_root, capsys, monkeypatch):
    from utils.errors import FileWriteError

    def read_only(folder):
        raise FileWriteError(f"cannot write {folder}/.write_test: Read-only file system")
    monkeypatch.setattr(modes.common, "check_writable", read_only)
    save_dir, _ = trained_run
    err = main_fails(train_flags(synthetic_root, save_dir, "--mode", "test"), capsys)   # it would write its summary
    assert "Read-only file system" in err
    summary = run_main(train_flags(synthetic_root, save_dir, "--mode", "test", "--no-log"))
    assert "scoring its checkpoints without a run lock" in capsys.readouterr().out
    assert "DHHN dual (best-audio + best-visual)" in summary["tables"]
    main_fails(train_flags(synthetic_root, save_dir, "--mode", "train", "--no-log"), capsys)   # training never


def test_a_diverging_run_stops_naming_epoch_and_step(tiny_root, tmp_path, capsys):
    err = main_fails(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "2", "--lr", "1e6"), capsys)
    assert "error: epoch 1, step " in err and "training diverged; lower --lr" in err
    assert not (tmp_path / "DHHN_last.pt").exists()


def test_an_export_dir_that_is_a_file_is_refused_before_evaluating(tiny_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modes.common, "load_split", lambda *args, **kwargs: pytest.fail("features were loaded"))
    (tmp_path / "exported").write_text("")
    err = main_fails(train_flags(tiny_root, tmp_path, "--mode", "test", "--export_dir", str(tmp_path / "exported")),
                     capsys)
    assert f"--export_dir {tmp_path}/exported: exists and is not a folder" in err


# ---------------------------------------------------------------- the shell scripts


def run_script(name, env, *flags, cwd):
    return subprocess.run(["sh", os.path.join(REPO_ROOT, name), *flags], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_origin_script_runs_from_another_folder_with_a_space_in_llp_root(tiny_root, tmp_path):
    result = run_script("DHHN_origin.sh", {"LLP_ROOT": str(tiny_root)}, "--epochs", "1", "--batch-size", "16",
                        "--model_save_dir", str(tmp_path), "--progress", "off", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test: DHHN dual (best-audio + best-visual)" in result.stdout


def test_refinement_script_chains_the_steps_of_one_run(tiny_root, tmp_path):
    # the synthetic LLP has no published flags: the script says so and runs the MA chain
    result = run_script("DHHN_refinement.sh", {"LLP_ROOT": str(tiny_root), "SAVE_DIR": "my runs", "NAME": "A"},
                        "--epochs", "1", "--batch-size", "16", "--progress", "off", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no published flags at" in result.stdout and "ESTIMATOR=ma" in result.stdout
    save_dir = tmp_path / "my runs"
    flags = save_dir / "A_ma_refined_labels.pkl"
    assert flags.is_file() and (save_dir / "A_ma_best_final.pt").is_file()
    assert (save_dir / "A_refined_best_audio.pt").is_file()
    retrain = json.loads((save_dir / "A_refined_retrain_args.json").read_text())
    assert retrain["config"]["data"]["refined_labels"] == str(flags) and retrain["config"]["model"]["name"] == "dhhn"
    for bad_flag in ("--checkpoint", "--model"):
        refused = run_script("DHHN_refinement.sh", {"LLP_ROOT": str(tiny_root)}, bad_flag, "X", cwd=tmp_path)
        assert refused.returncode == 2 and "set SAVE_DIR=..., NAME=..., ESTIMATOR=..." in refused.stderr


def test_refinement_script_uses_the_published_flags_when_present(tiny_root, tmp_path):
    import shutil
    root = tmp_path / "llp"
    shutil.copytree(tiny_root, root)
    import numpy as np

    from avvp_data.annotations import read_video_labels
    from avvp_data.refinement_flags import write_flags
    filenames, labels = read_video_labels(str(root / "data" / "AVVP_train.csv"))
    flags = np.zeros_like(labels, dtype=bool)
    flags[0, labels[0].argmax()] = True
    write_flags(str(root / "data" / "need_to_change_MA"), filenames, flags, flags)
    result = run_script("DHHN_refinement.sh", {"LLP_ROOT": str(root), "SAVE_DIR": str(tmp_path / "runs")},
                        "--epochs", "1", "--batch-size", "16", "--progress", "off", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"retraining on the published flags {root}/data/need_to_change_MA.pkl" in result.stdout
    assert not list((tmp_path / "runs").glob("DHHN_ma_*"))
    assert (tmp_path / "runs" / "DHHN_refined_best_audio.pt").is_file()
