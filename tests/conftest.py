"""Shared fixtures: a small synthetic LLP made once per test session, and CLI helpers."""
import os

import pytest
import torch

from utils.synthetic_llp import generate_synthetic_llp

# 2-core CI machines: two OpenMP pools fighting over the cores make a step ~10x slower
torch.set_num_threads(min(2, os.cpu_count() or 1))

PIPELINE_SIZE = dict(n_train=160, n_val=48, n_test=48)
TRAIN_EPOCHS = 6


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A synthetic LLP in the official layout (data/*.csv, feats/*/<id>.npy)."""
    root = tmp_path_factory.mktemp("synthetic_llp")
    generate_synthetic_llp(str(root), seed=0, **PIPELINE_SIZE)
    return root


def data_flags(root):
    """main_DHHN.py flags pointing at an LLP root, as scripts/llp_paths.sh builds them."""
    root = str(root)
    return [
        "--audio_dir", f"{root}/feats/vggish/", "--video_dir", f"{root}/feats/res152/",
        "--st_dir", f"{root}/feats/r2plus1d_18/",
        "--label_train", f"{root}/data/AVVP_train.csv", "--label_val", f"{root}/data/AVVP_val_pd.csv",
        "--label_test", f"{root}/data/AVVP_test_pd.csv",
        "--eval_audio_csv", f"{root}/data/AVVP_eval_audio.csv",
        "--eval_visual_csv", f"{root}/data/AVVP_eval_visual.csv",
        "--progress", "off",
    ]


def run_main(argv):
    """main_DHHN.py in-process: parse `argv`, run, return the mode's summary dict."""
    from main_DHHN import get_args_parser, main
    return main(get_args_parser().parse_args(argv))


def train_flags(root, save_dir, *extra):
    return data_flags(root) + ["--model_save_dir", str(save_dir), "--device", "cpu", "--batch-size", "16", *extra]


@pytest.fixture(scope="session")
def trained_run(synthetic_root, tmp_path_factory):
    """(save_dir, summary) of one DHHN training run on the synthetic LLP, shared by several tests."""
    save_dir = tmp_path_factory.mktemp("dhhn_run")
    summary = run_main(train_flags(synthetic_root, save_dir, "--mode", "train", "--epochs", str(TRAIN_EPOCHS)))
    return save_dir, summary
