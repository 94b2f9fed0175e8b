"""Shared fixtures: a small synthetic LLP made once per test session, CLI and script helpers."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from dataloader import LLPPaths, load_split
from avvp_data.synthetic_llp import generate_synthetic_llp

# 2-core CI machines: two OpenMP pools fighting over the cores make a step ~10x slower
torch.set_num_threads(min(2, os.cpu_count() or 1))

PIPELINE_SIZE = dict(n_train=160, n_val=48, n_test=48)
TRAIN_EPOCHS = 6
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the real annotation files, beside the checkout; tests that need them skip when absent
SHARED_LLP = Path(REPO_ROOT).parent / "shared" / "llp"


def script_path(name):
    return os.path.join(REPO_ROOT, "scripts", f"{name}.py")


def load_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, script_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny tensors: on a busy machine intra-op threads cost far more than they
    save (about 40x here), so such a module runs on one thread and restores it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_test_split(root):
    """The test split of an LLP root with its segment truth, read without a cache."""
    return load_split(LLPPaths.official(root), "test")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A synthetic LLP in the official layout (data/*.csv, feats/*/<id>.npy)."""
    root = tmp_path_factory.mktemp("synthetic_llp")
    generate_synthetic_llp(str(root), seed=0, **PIPELINE_SIZE)
    return root


def data_flags(root):
    """main_DHHN.py flags reading an LLP root in the official layout, as the shell scripts pass it."""
    return ["--llp_root", str(root), "--progress", "off"]


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
