"""Nothing silently wrong, round 3: splits that share videos, divergence that never gives a NaN loss,
non-finite outputs scored as zeros, unfinished runs scored as finished, failed checkpoint writes,
temp files of killed writes, flags that do nothing, unusable paths, problems reported one split at a
time, moved run folders, and long silences in a log (docs/RELIABILITY.md)."""
import os
import shutil

import numpy as np
import pytest
import torch

import modes.common
from avvp_data.annotations import read_video_labels
from avvp_data.synthetic_llp import generate_synthetic_llp
from config import resolve_config
from conftest import FULL_DISK_ERROR, SHARED_LLP, fail_at_call, main_fails, run_main, train_flags
from dataloader import LLPPaths, split_overlaps
from main_DHHN import get_args_parser, given_flags
from utils import checkpoint
from utils.errors import UsageError
from utils.progress import Heartbeat

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("round3") / "llp"
    generate_synthetic_llp(str(root), n_train=48, n_val=16, n_test=16, seed=0)
    return root


def fails(argv, capsys, code=2):
    """main_DHHN's refusal; some list every problem they found under the first line."""
    return main_fails(argv, capsys, code, listing=True)


def no_features_loaded(monkeypatch):
    monkeypatch.setattr(modes.common, "load_split", lambda *args, **kwargs: pytest.fail("features were loaded"))


# ---------------------------------------------------------------- 1. splits that share videos

def test_a_val_file_that_is_the_test_file_is_refused_naming_both(tiny_root, tmp_path, capsys, monkeypatch):
    no_features_loaded(monkeypatch)
    test_csv = tiny_root / "data" / "AVVP_test_pd.csv"
    err = fails(train_flags(tiny_root, tmp_path, "--mode", "train", "--label_val", str(test_csv)), capsys)
    assert f"--label_val {test_csv} and --label_test {test_csv} share 16 video(s) and 16 YouTube id(s)" in err
    assert "--allow_split_overlap" in err
    assert [path.name for path in tmp_path.iterdir()] == [".DHHN.lock"]   # nothing written but the run's lock


def test_two_clips_of_one_youtube_video_in_two_splits_are_found_by_their_id(tiny_root, tmp_path):
    # a train list holding another clip of a val video: its features are the val video's files
    val_names, _ = read_video_labels(str(tiny_root / "data" / "AVVP_val_pd.csv"))
    data = tmp_path / "data"
    shutil.copytree(tiny_root / "data", data)
    other_clip = val_names[0][:11] + "_0_10"
    with open(data / "AVVP_train.csv", "a") as handle:
        handle.write(f"{other_clip}\tSpeech\n")
    paths = LLPPaths(**{**vars(LLPPaths.official(tiny_root)), "label_train": str(data / "AVVP_train.csv")})
    [problem] = split_overlaps(paths)
    assert "share 0 video(s) and 1 YouTube id(s)" in problem and repr(val_names[0][:11]) in problem


def test_an_allowed_overlap_runs_with_a_warning_and_is_recorded(tiny_root, tmp_path, capsys):
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1", "--allow_split_overlap",
                        "--label_val", str(tiny_root / "data" / "AVVP_test_pd.csv"))
    summary = run_main(flags)
    assert "warning: --allow_split_overlap: --label_val" in capsys.readouterr().out
    assert summary["config"]["data"]["allow_split_overlap"] is True
    assert "share 16 video(s)" in summary["provenance"]["split_overlaps"][0]


@pytest.mark.skipif(not SHARED_LLP.is_dir(), reason="needs ../shared/llp (the real LLP annotations)")
def test_the_real_llp_splits_share_nothing():
    paths = LLPPaths(**{**vars(LLPPaths.official(".")), "label_train": str(SHARED_LLP / "AVVP_train.csv"),
                        "label_val": str(SHARED_LLP / "AVVP_val_pd.csv"),
                        "label_test": str(SHARED_LLP / "AVVP_test_pd.csv")})
    assert split_overlaps(paths) == []


# ---------------------------------------------------------------- 2, 3. divergence and non-finite outputs

def test_an_update_that_breaks_the_weights_stops_before_anything_is_saved(tiny_root, tmp_path, capsys):
    # one step per epoch: its loss is computed before the update, so every loss of the run is finite
    err = fails(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1", "--lr", "1e38",
                            "--batch-size", "64"), capsys)
    assert "error: epoch 1, step 1/1: its update left the weights of model" in err and "training diverged" in err
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".pt")]


def test_a_model_with_broken_weights_is_not_scored_as_predicting_nothing(tiny_root, tmp_path, capsys):
    run_main(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1"))
    for role in ("audio", "visual", "overall"):
        path = checkpoint.best_path(str(tmp_path), "DHHN", role)
        content = checkpoint.load(path)
        content["model"] = {key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                            for key, value in content["model"].items()}
        checkpoint.save(path, **content)
    (tmp_path / "DHHN_test_args.json").write_text("of the test before")
    export_dir = tmp_path / "exported"
    err = fails(train_flags(tiny_root, tmp_path, "--mode", "test", "--export_dir", str(export_dir)), capsys)
    assert "the model gives inf or NaN" in err and "of 16 videos" in err and "nothing was scored" in err
    assert not (tmp_path / "DHHN_test_summary.json").exists()
    # a refused run leaves the records of the run before it, and makes no export folder
    assert (tmp_path / "DHHN_test_args.json").read_text() == "of the test before"
    assert not export_dir.exists()


# ---------------------------------------------------------------- 6. an unfinished run

def test_an_unfinished_run_says_so_in_its_tables(tiny_root, tmp_path, capsys, monkeypatch):
    import engine
    evaluate = fail_at_call(monkeypatch, engine, "evaluate", 2, KeyboardInterrupt)   # in epoch 2
    fails(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "3"), capsys, code=130)
    monkeypatch.setattr(engine, "evaluate", evaluate)
    summary = run_main(train_flags(tiny_root, tmp_path, "--mode", "test"))
    out = capsys.readouterr().out
    assert "test: DHHN dual (best-audio + best-visual) [UNFINISHED RUN: trained 1 of 3 epochs]" in out
    assert "warning: --checkpoint DHHN is an UNFINISHED run" in out
    assert summary["unfinished"] == "trained 1 of 3 epochs"


def test_a_run_whose_last_write_failed_after_its_best_files_is_unfinished(tiny_root, tmp_path, capsys, monkeypatch):
    # epoch 1 of 2: its three best files land, its _last.pt does not
    save = fail_at_call(monkeypatch, torch, "save", 4, RuntimeError(FULL_DISK_ERROR))
    fails(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "2"), capsys)
    monkeypatch.setattr(torch, "save", save)
    assert not (tmp_path / "DHHN_last.pt").exists() and (tmp_path / "DHHN_best_overall.pt").exists()
    summary = run_main(train_flags(tiny_root, tmp_path, "--mode", "test"))
    assert summary["unfinished"] == "stopped in epoch 1 of 2, before that epoch's DHHN_last.pt was written"
    assert "[UNFINISHED RUN: stopped in epoch 1 of 2" in capsys.readouterr().out


def test_scoring_a_mistyped_run_folder_names_it_and_creates_nothing(tiny_root, tmp_path, capsys):
    typo = tmp_path / "modles"
    err = fails(train_flags(tiny_root, typo, "--mode", "test"), capsys)
    assert err == (f"error: --model_save_dir {typo}: no such folder, so no checkpoint DHHN to read (--mode test "
                   "reads a trained run's)\n")
    assert not typo.exists()


# ---------------------------------------------------------------- 7, 8. failed writes, killed writes

def test_a_failed_checkpoint_write_is_one_line_and_the_run_resumes(tiny_root, tmp_path, capsys, monkeypatch):
    # epoch 1 wrote best x3 + last; the first write of epoch 2 fails (a best or last)
    save = fail_at_call(monkeypatch, torch, "save", 5, RuntimeError(FULL_DISK_ERROR))
    flags = train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "2")
    err = fails(flags, capsys)
    assert err.count("\n") == 1
    assert f"cannot write {tmp_path}/DHHN_" in err and "the disk is full?" in err and "MiB free in" in err
    assert f"{tmp_path}/DHHN_last.pt holds epoch 1, complete: continue with --resume" in err
    assert checkpoint.load(str(tmp_path / "DHHN_last.pt"))["epoch"] == 1   # the writes after the failure skipped
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    monkeypatch.setattr(torch, "save", save)
    summary = run_main(flags + ["--resume"])
    assert [record["epoch"] for record in summary["history"]] == [1, 2]


def test_a_run_removes_the_temp_files_its_killed_writes_left_and_only_those(tiny_root, tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    own = [".DHHN_last.pt.k1ll3d_.tmp", ".DHHN_best_audio.pt.abc123.tmp", ".DHHN_train_summary.json.x9.tmp"]
    others = [".DHHN_seed2_last.pt.abc123.tmp", "DHHN_last.pt.abc.tmp", ".DHHN_last.pt"]
    for name in own + others:
        (tmp_path / name).write_bytes(b"partial")
    run_main(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1"))
    out = capsys.readouterr().out
    assert "removed 3 temp file(s) that a killed write of --checkpoint DHHN left" in out
    assert all(not (tmp_path / name).exists() for name in own)
    assert all((tmp_path / name).exists() for name in others)


# ---------------------------------------------------------------- 9, 10. flags and paths

def resolve(*argv):
    parser = get_args_parser()
    args = parser.parse_args(list(argv))
    return resolve_config(args, given_flags(parser, args))


@pytest.mark.parametrize("argv, message", [
    (["--warm_up_epoch", "3"], "--warm_up_epoch: does nothing with --scheduler steplr (it shapes --scheduler "
                               "warm_up_cos_anneal)"),
    (["--lr_min", "1e-5"], "--lr_min: does nothing with --scheduler steplr"),
    (["--scheduler", "warm_up_cos_anneal", "--lr_step", "5"], "--lr_step: does nothing with --scheduler "
                                                              "warm_up_cos_anneal"),
    (["--mode", "test", "--resume"], "--resume: does nothing in --mode test (it acts in --mode train/retrain)"),
    (["--mode", "test", "--epochs", "3"], "--epochs: does nothing in --mode test"),
    (["--mode", "val", "--lr", "1e-3"], "--lr: does nothing in --mode val"),
    (["--mode", "train", "--export_dir", "e"], "--export_dir: does nothing in --mode train (it acts in --mode "
                                               "val/test)"),
    (["--mode", "train", "--refine_source", "visual"], "--refine_source: does nothing in --mode train"),
    (["--mode", "train", "--refined_labels", "f.pkl"], "--refined_labels: does nothing in --mode train (it acts "
                                                       "in --mode retrain)"),
    (["--mode", "estimate_labels", "--cuda_graph"], "--cuda_graph: does nothing in --mode estimate_labels"),
])
def test_flags_that_do_nothing_are_refused(argv, message):
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        resolve(*argv)


def test_the_shell_scripts_flags_for_other_steps_are_noted_and_valors_test_flags_accepted(capsys):
    config = resolve("--mode", "test", "--epochs", "3", "--unused_flags", "note")
    assert config.optim.epochs == 3   # recorded as given; nothing reads it at test
    assert "--epochs: not used by --mode test (it acts in --mode train/retrain)" in capsys.readouterr().out
    # VALOR's scripts/test_valor.sh passes the pseudo-label folders at test
    resolve("--mode", "test", "--model", "MMIL_Net", "--a_pseudo_data_dir", "A", "--v_pseudo_data_dir", "V")
    out = capsys.readouterr().out
    assert "--audio_pseudo_dir: not used by --mode test" in out and "--visual_pseudo_dir: not used" in out


def test_the_help_says_which_modes_a_flag_acts_in():
    helps = {action.dest: action.help for action in get_args_parser()._actions}
    assert helps["resume"].startswith("train/retrain: ") and helps["export_dir"].startswith("val/test: ")
    assert helps["refine_out"].startswith("estimate_labels: ") and not helps["hidden_dim"].startswith("train")


@pytest.mark.parametrize("make, flag, message", [
    (lambda tmp: (tmp / "f").write_text(""), "--model_save_dir", "--model_save_dir {tmp}/f: is a file, not a folder"),
    (lambda tmp: None, "--checkpoint", "--checkpoint '': give the run a name"),
    (lambda tmp: (tmp / "f").write_text(""), "--audio_pseudo_dir", "--audio_pseudo_dir {tmp}/f: not a folder"),
])
def test_unusable_paths_are_one_line_naming_the_flag(tiny_root, tmp_path, capsys, monkeypatch, make, flag, message):
    no_features_loaded(monkeypatch)
    make(tmp_path)
    value = "" if flag == "--checkpoint" else str(tmp_path / "f")
    flags = train_flags(tiny_root, tmp_path / "run", "--mode", "train")
    err = fails(flags + [flag, value], capsys)
    assert message.format(tmp=tmp_path) in err


# ---------------------------------------------------------------- 11, 12. all problems at once, moved folders

def test_a_missing_train_feature_and_an_inf_val_feature_are_reported_together(tmp_path, capsys):
    root = tmp_path / "llp"
    generate_synthetic_llp(str(root), n_train=24, n_val=8, n_test=8, seed=1)
    train_name = read_video_labels(str(root / "data" / "AVVP_train.csv"))[0][0][:11]
    val_name = read_video_labels(str(root / "data" / "AVVP_val_pd.csv"))[0][0][:11]
    os.remove(root / "feats" / "vggish" / f"{train_name}.npy")
    broken = root / "feats" / "r2plus1d_18" / f"{val_name}.npy"
    np.save(broken, np.full((10, 512), np.inf, dtype=np.float32))
    err = fails(train_flags(root, tmp_path / "run", "--mode", "train", "--feature_cache", "none"), capsys)
    assert "train: 1 bad feature file(s)" in err and f"{train_name}.npy" in err
    assert "val: 1 bad feature file(s)" in err and f"{broken}: NaN/Inf values" in err


def test_a_run_whose_folder_was_moved_resumes(tiny_root, tmp_path, capsys):
    first = tmp_path / "first"
    run_main(train_flags(tiny_root, first, "--mode", "train", "--epochs", "1"))
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    summary = run_main(train_flags(tiny_root, moved, "--mode", "train", "--epochs", "2", "--resume"))
    assert [record["epoch"] for record in summary["history"]] == [1, 2]


# ---------------------------------------------------------------- 14. long silences

def test_a_heartbeat_prints_when_its_seconds_have_passed(capsys):
    now = [0.0]
    beat = Heartbeat(seconds=10, clock=lambda: now[0])
    assert beat("a") is False
    now[0] = 10.0
    assert beat(lambda: "b") is True
    now[0] = 15.0
    assert beat("c") is False
    now[0] = 21.0
    assert beat("d") is True
    assert capsys.readouterr().out == "b\nd\n"
    assert Heartbeat(seconds=0, enabled=False)("e") is False


def test_a_run_logged_to_a_file_prints_its_phases_and_time_based_step_lines(tiny_root, tmp_path, capsys):
    run_main(train_flags(tiny_root, tmp_path, "--mode", "train", "--epochs", "1", "--log-interval", "0",
                         "--log_seconds", "1e-9"))
    out = capsys.readouterr().out
    assert "train: loading labels, truth and features" in out and "train: 48 videos loaded and checked in" in out
    assert "val: 16 videos loaded and checked in" in out
    # --log-interval 0 prints no step line by count; without a terminal the time-based ones remain
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("epoch 1 step")] == [
        "epoch 1 step 1/3", "epoch 1 step 2/3", "epoch 1 step 3/3"]


def test_write_probes_of_runs_starting_together_do_not_collide(tmp_path, monkeypatch):
    """check_writable's probe file has a name of its own per call: two runs of a sweep starting in one
    folder at once must not remove each other's probe (FileNotFoundError, seen in a parallel sweep)."""
    import utils.io
    removed = []
    original_remove = os.remove

    def recording_remove(path):
        removed.append(path)
        original_remove(path)
    monkeypatch.setattr(utils.io.os, "remove", recording_remove)
    other_runs_probe = tmp_path / ".write_test"   # the one fixed name all runs used to share
    other_runs_probe.write_bytes(b"")
    utils.io.check_writable(str(tmp_path))
    utils.io.check_writable(str(tmp_path))
    assert len(removed) == 2 and len(set(removed)) == 2
    assert all(os.path.dirname(path) == str(tmp_path) for path in removed)
    assert other_runs_probe.exists() and sorted(os.listdir(tmp_path)) == [".write_test"]
