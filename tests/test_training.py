"""End-to-end behaviour of main_DHHN.py on a small synthetic LLP: learning, selection, resume,
reproducibility, the HAN baseline and clear errors on bad input."""
import json
import os

import numpy as np
import pytest
import torch

import engine
from avvp_data.tensor_split import TensorSplit
from conftest import TRAIN_EPOCHS, load_test_split, run_main, train_flags
from main_DHHN import get_args_parser
from nets import build_hcmn
from utils import checkpoint


def untrained_test_metrics(root):
    torch.manual_seed(0)
    split = load_test_split(root)
    model = build_hcmn(split.feature_dims())
    return engine.evaluate(model, TensorSplit(split, torch.device("cpu")), split.gt_audio, split.gt_visual)


def test_dual_model_beats_untrained_model_on_every_metric(trained_run, synthetic_root):
    save_dir, _ = trained_run
    summary = run_main(train_flags(synthetic_root, save_dir, "--mode", "test"))
    dual = summary["tables"]["DHHN dual (best-audio + best-visual)"]
    untrained = untrained_test_metrics(synthetic_root)
    for key, value in dual.items():
        assert value > untrained[key] + 0.02, (key, value, untrained[key])
    assert "HCMN best-overall" in summary["tables"]
    assert json.load(open(save_dir / "DHHN_test_summary.json"))["tables"] == summary["tables"]


def test_selected_checkpoints_hold_their_best_val_epoch(trained_run):
    save_dir, summary = trained_run
    history = summary["history"]
    assert [record["epoch"] for record in history] == list(range(1, TRAIN_EPOCHS + 1))
    scores = {
        "audio": [(r["val"]["seg_audio"] + r["val"]["evt_audio"]) / 2 for r in history],
        "visual": [(r["val"]["seg_visual"] + r["val"]["evt_visual"]) / 2 for r in history],
        "overall": [r["val"]["seg_type"] for r in history],
    }
    for role, values in scores.items():
        # strict improvement keeps the FIRST epoch reaching the maximum (PROTOCOL.md §7)
        expected_epoch = int(np.argmax(values)) + 1
        saved = checkpoint.load(checkpoint.best_path(str(save_dir), "DHHN", role))
        assert saved["epoch"] == summary["best_epoch"][role] == expected_epoch
        assert saved["score"] == pytest.approx(max(values))
        assert saved["model_config"]["feature_dims"] == {"audio": 128, "frames": 2048, "snippets": 512}
    log_lines = (save_dir / "DHHN_train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log_lines] == list(range(1, TRAIN_EPOCHS + 1))
    assert json.loads((save_dir / "DHHN_train_args.json").read_text())["config"]["optim"]["epochs"] == TRAIN_EPOCHS


def test_training_losses_decrease(trained_run):
    _, summary = trained_run
    first, last = summary["history"][0]["losses"], summary["history"][-1]["losses"]
    assert set(first) == {"bce_audio", "bce_visual", "bce_global", "guide_audio", "guide_visual", "rmse",
                          "mgn_bce_audio", "mgn_bce_visual", "mgn_rmse"}
    for name in ("bce_audio", "bce_visual", "bce_global", "mgn_bce_audio", "mgn_bce_visual"):
        assert last[name] < first[name], name


def test_resume_equals_uninterrupted_and_same_seed_repeats(synthetic_root, tmp_path):
    common = ("--mode", "train", "--no_visual_mgn")
    straight = run_main(train_flags(synthetic_root, tmp_path / "a", *common, "--epochs", "2"))
    again = run_main(train_flags(synthetic_root, tmp_path / "b", *common, "--epochs", "2"))
    run_main(train_flags(synthetic_root, tmp_path / "c", *common, "--epochs", "1"))
    resumed = run_main(train_flags(synthetic_root, tmp_path / "c", *common, "--epochs", "2", "--resume"))

    def comparable(summary):
        return [(r["epoch"], r["losses"], r["val"], r["saved"]) for r in summary["history"]]

    assert comparable(again) == comparable(straight)
    assert comparable(resumed) == comparable(straight)
    weights_straight = checkpoint.load(checkpoint.last_path(str(tmp_path / "a"), "DHHN"))["nets"]["model"]
    weights_resumed = checkpoint.load(checkpoint.last_path(str(tmp_path / "c"), "DHHN"))["nets"]["model"]
    for key, value in weights_straight.items():
        assert torch.equal(value, weights_resumed[key]), key


def test_ablation_switches_reach_the_model_and_losses(synthetic_root, tmp_path):
    summary = run_main(train_flags(synthetic_root, tmp_path, "--mode", "train", "--epochs", "1", "--no_hier_feat",
                                   "--no_hier_pred", "--no_audio_mgn", "--no_rmse"))
    assert set(summary["history"][0]["losses"]) == {"bce_audio", "bce_visual", "bce_global", "guide_visual",
                                                    "mgn_bce_visual"}
    saved = checkpoint.load(checkpoint.best_path(str(tmp_path), "DHHN", "overall"))
    assert saved["model_config"]["hier_feat"] is False and saved["model_config"]["hier_pred"] is False
    assert not any("convs.1" in key for key in saved["model"])


def test_han_baseline_trains_and_tests_with_global_gating(synthetic_root, tmp_path):
    summary = run_main(train_flags(synthetic_root, tmp_path, "--mode", "train", "--model", "han", "--epochs", "2",
                                   "--checkpoint", "HAN"))
    assert set(summary["history"][0]["losses"]) == {"bce_audio", "bce_visual", "bce_global"}
    assert summary["config"]["optim"]["batch_size"] == 16 and summary["config"]["optim"]["lr"] == 3e-4
    assert not os.path.exists(checkpoint.best_path(str(tmp_path), "HAN", "audio"))
    saved = checkpoint.load(checkpoint.best_path(str(tmp_path), "HAN", "overall"))
    assert saved["model_config"]["model_name"] == "han"
    result = run_main(train_flags(synthetic_root, tmp_path, "--mode", "test", "--model", "han", "--checkpoint", "HAN"))
    assert list(result["tables"]) == ["HAN best (val Type@AV seg.)"]


def test_published_defaults_per_model_and_mode():
    parser = get_args_parser()
    from config import resolve_config as resolve_defaults
    dhhn = resolve_defaults(parser.parse_args([])).optim
    assert (dhhn.batch_size, dhhn.epochs, dhhn.lr, dhhn.lr_audio_mgn, dhhn.lr_visual_mgn) == (
        64, 10, 3e-4, 2 * 3e-4, 0.2 * 3e-4)
    retrain = resolve_defaults(parser.parse_args(["--mode", "retrain"]))
    retrain = retrain.optim
    assert (retrain.epochs, retrain.lr, retrain.lr_audio_mgn, retrain.lr_visual_mgn) == (5, 3e-4, 3e-4, 3e-4)
    # the MGN rates follow --lr as published; explicit flags win
    faster = resolve_defaults(parser.parse_args(["--lr", "1e-3"]))
    assert (faster.optim.lr_audio_mgn, faster.optim.lr_visual_mgn) == (2 * 1e-3, 0.2 * 1e-3)
    assert resolve_defaults(parser.parse_args(["--mode", "retrain", "--lr", "1e-3"])).optim.lr_visual_mgn == 1e-3
    assert resolve_defaults(parser.parse_args(["--lr", "1e-3", "--lr_visual_mgn", "5e-5"])).optim.lr_visual_mgn == 5e-5
    han = resolve_defaults(parser.parse_args(["--model", "han"]))
    assert (han.optim.batch_size, han.optim.epochs) == (16, 40)
    assert (han.model.audio_mgn, han.model.visual_mgn, han.model.rmse) == (None, None, None)
    override = resolve_defaults(parser.parse_args(["--epochs", "3", "--batch-size", "8"]))
    assert (override.optim.epochs, override.optim.batch_size) == (3, 8)
    assert (resolve_defaults(parser.parse_args([])).run.seed, dhhn.lr_step, dhhn.lr_gamma) == (1, 10, 0.1)


# ---------------------------------------------------------------- errors a user can make

def exit_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_inputs_are_named_by_flag(synthetic_root, tmp_path, capsys):
    # an explicit data flag overrides --llp_root's layout, and a missing file is named by its flag
    flags = train_flags(synthetic_root, tmp_path, "--mode", "train", "--label_train", str(tmp_path / "nope.csv"))
    err = exit_message(flags, capsys)
    assert "--label_train" in err and "nope.csv" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.pt"))


def test_unknown_mode_is_rejected(capsys):
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--mode", "evaluate"])
    assert "invalid choice" in capsys.readouterr().err


def test_test_without_checkpoints_names_the_file(synthetic_root, tmp_path, capsys):
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "test"), capsys)
    assert "DHHN_best_audio.pt" in err and "DHHN_audio.pt" in err


def test_retrain_needs_refined_labels(synthetic_root, tmp_path, capsys):
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "retrain"), capsys)
    assert "--refined_labels" in err


def test_resume_without_checkpoint_is_an_error(synthetic_root, tmp_path, capsys):
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "train", "--resume"), capsys)
    assert "--resume" in err and "DHHN_last.pt" in err


def test_han_with_hierarchy_switch_is_rejected(capsys):
    with pytest.raises(SystemExit):
        run_main(["--model", "han", "--no_hier_feat"])
    assert "--no_hier_feat" in capsys.readouterr().err


def test_test_mode_reads_the_original_release_layout(trained_run, synthetic_root, tmp_path):
    from nets.convert import hcmn_to_release
    save_dir, _ = trained_run
    from recipes import RECIPES
    for role, layouts in RECIPES["dhhn"].release_files.items():   # release_audio.pt, release_video.pt, ...
        ours = checkpoint.load(checkpoint.best_path(str(save_dir), "DHHN", role))["model"]
        [(template, _)] = layouts
        torch.save(hcmn_to_release(ours), tmp_path / template.format(name="release"))   # a raw release state_dict
    release = run_main(train_flags(synthetic_root, tmp_path, "--mode", "test", "--checkpoint", "release"))
    ours = run_main(train_flags(synthetic_root, save_dir, "--mode", "test", "--no-log"))
    assert release["tables"] == ours["tables"]


def test_test_mode_prints_the_annotation_version(trained_run, synthetic_root, capsys):
    save_dir, _ = trained_run
    run_main(train_flags(synthetic_root, save_dir, "--mode", "val", "--no-log"))
    out = capsys.readouterr().out
    # each eval file is named with its version, so an unrecognised copy says which file it is
    for flag, name in (("eval_audio_csv", "AVVP_eval_audio.csv"), ("eval_visual_csv", "AVVP_eval_visual.csv")):
        assert f"annotations: --{flag} {synthetic_root / 'data' / name}: unrecognised (sha256" in out


def test_log_interval_prints_the_loss_every_n_steps(synthetic_root, tmp_path, capsys):
    run_main(train_flags(synthetic_root, tmp_path, "--mode", "train", "--epochs", "1", "--log-interval", "4",
                         "--no_audio_mgn", "--no_visual_mgn", "--no_hier_feat"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1 step")]
    # 160 training videos in batches of 16: steps 4 and 8 of 10
    assert [line.split(" | ")[0] for line in lines] == ["epoch 1 step 4/10", "epoch 1 step 8/10"]


@pytest.mark.parametrize("device, message", [("gpu0", "not a device name"), ("cuda:7", "--device cuda:7")])
def test_unusable_device_is_a_clear_error(synthetic_root, tmp_path, capsys, device, message):
    flags = train_flags(synthetic_root, tmp_path, "--mode", "train")
    flags[flags.index("--device") + 1] = device
    err = exit_message(flags, capsys)
    assert message in err and "Traceback" not in err


def test_corrupt_checkpoint_is_named(trained_run, synthetic_root, tmp_path, capsys):
    save_dir, _ = trained_run
    for role in ("audio", "visual", "overall"):
        content = checkpoint.load(checkpoint.best_path(str(save_dir), "DHHN", role))
        if role == "visual":
            content["model"].pop(next(iter(content["model"])))   # a damaged state dict
        checkpoint.save(checkpoint.best_path(str(tmp_path), "DHHN", role), **content)
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "test"), capsys)
    assert "DHHN_best_visual.pt does not fit a dhhn model" in err
    (tmp_path / "DHHN_best_audio.pt").write_bytes(b"not a checkpoint")
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "test"), capsys)
    assert "cannot read checkpoint" in err and "DHHN_best_audio.pt" in err


def test_bad_flags_file_and_missing_checkpoints_are_reported_before_features_are_read(synthetic_root, tmp_path,
                                                                                       capsys, monkeypatch):
    import modes.common

    def must_not_load(*args, **kwargs):
        raise AssertionError("features were loaded before the cheap checks")
    monkeypatch.setattr(modes.common, "load_split", must_not_load)
    bad_flags = tmp_path / "flags.pkl"
    bad_flags.write_bytes(b"not a pickle")
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "retrain", "--refined_labels", str(bad_flags)),
                       capsys)
    assert "flags.pkl: not a label-refinement pickle" in err
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "estimate_labels"), capsys)
    assert "DHHN_best_overall.pt" in err
    err = exit_message(train_flags(synthetic_root, tmp_path, "--mode", "test"), capsys)
    assert "DHHN_best_audio.pt" in err
