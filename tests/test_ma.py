"""MA (--model ma): the contrastive term by hand, the last-epoch checkpoint, and estimate /
retrain / test through the recipe (PROTOCOL.md §12)."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import run_main, train_flags
from recipes.losses import segment_contrast_loss
from utils import checkpoint


def test_contrast_term_by_hand():
    # three orthogonal segments: similarity 1/0.2 = 5 on the diagonal, 0 elsewhere, so every row's
    # log-softmax is [5 - L, -L, -L] with L = log(e^5 + 2); targets 0.9 and 0.1 / 2 twice give
    # -(0.9 (5 - L) - 0.1 L) = L - 4.5 per row
    embed = torch.eye(3).unsqueeze(0) * torch.tensor([2.0, 0.5, 7.0])[None, :, None]   # norms do not matter
    expected = math.log(math.exp(5) + 2) - 4.5
    assert segment_contrast_loss(embed, embed).item() == pytest.approx(expected, abs=1e-6)
    # MA's smoothing differs from torch's label_smoothing (which also gives the target a share)
    torch_smoothed = F.cross_entropy(torch.eye(3) * 5, torch.arange(3), label_smoothing=0.1).item()
    assert abs(torch_smoothed - expected) > 1e-3


def test_contrast_term_pairs_each_audio_segment_with_its_own_visual_segment():
    torch.manual_seed(0)
    visual = torch.randn(2, 10, 16)
    aligned = segment_contrast_loss(visual * 3.0, visual)
    shuffled = segment_contrast_loss(visual[:, torch.randperm(10)], visual)
    assert aligned < shuffled
    assert aligned.shape == ()


@pytest.fixture(scope="module")
def ma_run(synthetic_root, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("ma_run")
    summary = run_main(train_flags(synthetic_root, save_dir, "--model", "ma", "--checkpoint", "MA", "--epochs", "3"))
    return save_dir, summary


def test_ma_trains_with_the_contrast_term_and_keeps_the_last_epoch(ma_run):
    save_dir, summary = ma_run
    assert list(summary["history"][0]["losses"]) == ["bce_audio", "bce_visual", "bce_global", "contrast"]
    assert [record["saved"] for record in summary["history"]] == [["final"]] * 3
    kept = checkpoint.load(checkpoint.best_path(str(save_dir), "MA", "final"))
    last = checkpoint.load(checkpoint.last_path(str(save_dir), "MA"))
    assert kept["epoch"] == 3 and kept["model_config"]["model_name"] == "ma"
    assert all(torch.equal(value, last["nets"]["model"][key]) for key, value in kept["model"].items())


def test_ma_estimates_flags_retrains_and_tests(ma_run, synthetic_root, tmp_path):
    save_dir, _ = ma_run
    estimate = run_main(train_flags(synthetic_root, save_dir, "--model", "ma", "--mode", "estimate_labels",
                                    "--checkpoint", "MA", "--refine_out", str(tmp_path / "flags")))
    assert estimate["source_checkpoint"] == "final"
    assert estimate["flagged_audio"] + estimate["flagged_visual"] > 0
    retrained = run_main(train_flags(synthetic_root, tmp_path, "--model", "ma", "--mode", "retrain", "--epochs", "2",
                                     "--refined_labels", str(tmp_path / "flags.pkl"), "--checkpoint", "MA_refined"))
    assert retrained["config"]["optim"]["epochs"] == 2 and "contrast" in retrained["history"][-1]["losses"]
    tested = run_main(train_flags(synthetic_root, tmp_path, "--model", "ma", "--mode", "test",
                                  "--checkpoint", "MA_refined"))
    assert list(tested["tables"]) == ["MA (last epoch)"]
    assert tested["config"]["run"]["refine_source"] == "final"
    # DHHN retrained on MA's flags: the paper's refinement chain
    dhhn = run_main(train_flags(synthetic_root, tmp_path, "--mode", "retrain", "--epochs", "1",
                                "--refined_labels", str(tmp_path / "flags.pkl"), "--checkpoint", "DHHN_refined"))
    assert dhhn["config"]["model"]["name"] == "dhhn" and set(dhhn["best_epoch"]) == {"audio", "visual", "overall"}


def test_published_ma_schedule():
    from config import resolve_config
    from main_DHHN import get_args_parser
    train = resolve_config(get_args_parser().parse_args(["--model", "ma"]))
    retrain = resolve_config(get_args_parser().parse_args(["--model", "ma", "--mode", "retrain"]))
    assert (train.optim.batch_size, train.optim.epochs, train.optim.lr) == (16, 12, 3e-4)
    assert (retrain.optim.batch_size, retrain.optim.epochs, retrain.optim.lr) == (16, 12, 3e-4)
    assert train.optim.lr_audio_mgn is None and train.model.rmse is None
