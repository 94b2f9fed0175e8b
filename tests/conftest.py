"""Shared fixtures: a small synthetic LLP made once per test session, CLI and script helpers."""
import os
from pathlib import Path

import pytest
import torch

from avvp_data.llp import NUM_CLASSES, NUM_SEGMENTS
from avvp_data.synthetic_llp import generate_synthetic_llp
from dataloader import LLPPaths, load_split

# 2-core CI machines: two OpenMP pools fighting over the cores make a step ~10x slower
torch.set_num_threads(min(2, os.cpu_count() or 1))

PIPELINE_SIZE = dict(n_train=160, n_val=48, n_test=48)
TRAIN_EPOCHS = 6
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the real annotation files, beside the checkout; tests that need them skip when absent
SHARED_LLP = Path(REPO_ROOT).parent / "shared" / "llp"


def script_path(name):
    return os.path.join(REPO_ROOT, "scripts", f"{name}.py")


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


def main_fails(argv, capsys, code=2, listing=False):
    """main_DHHN.py in-process exits with `code` and an `error: ...` message, no traceback; the
    message is one line unless `listing` (all problems at once, listed under it). Returns it."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert listing or err.count("\n") == 1, err
    return err


def fake_outputs(num_videos, seed):
    """Random engine.predict-like outputs (LLP's shapes), probabilities uniform in [0, 1), so spread
    around the 0.5 threshold: every video has events in both modalities."""
    generator = torch.Generator().manual_seed(seed)
    return {"global_prob": torch.rand(num_videos, NUM_CLASSES, generator=generator),
            "audio_prob": torch.rand(num_videos, NUM_CLASSES, generator=generator),
            "visual_prob": torch.rand(num_videos, NUM_CLASSES, generator=generator),
            "frame_prob": torch.rand(num_videos, NUM_SEGMENTS, 2, NUM_CLASSES, generator=generator)}


def fail_at_call(monkeypatch, owner, name, call, error):
    """Make `owner.name` raise `error` at its `call`-th call (counted from 1) and behave as before
    otherwise; returns the original, so that a test can put it back before going on."""
    original, calls = getattr(owner, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise error
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, failing)
    return original


# what torch's zip writer raises when a checkpoint's bytes do not reach a full disk
FULL_DISK_ERROR = "[enforce fail at inline_container.cc:626] . unexpected pos 4160 vs 4054"


def train_flags(root, save_dir, *extra):
    """main_DHHN.py flags for a run on `root` writing to `save_dir`; training modes (the default
    mode, or --mode train/retrain in `extra`) train in batches of 16, which other modes refuse."""
    mode = extra[list(extra).index("--mode") + 1] if "--mode" in extra else "train"
    batches = ["--batch-size", "16"] if mode in ("train", "retrain") else []
    return data_flags(root) + ["--model_save_dir", str(save_dir), "--device", "cpu", *batches, *extra]


@pytest.fixture(scope="session")
def trained_run(synthetic_root, tmp_path_factory):
    """(save_dir, summary) of one DHHN training run on the synthetic LLP, shared by several tests."""
    save_dir = tmp_path_factory.mktemp("dhhn_run")
    summary = run_main(train_flags(synthetic_root, save_dir, "--mode", "train", "--epochs", str(TRAIN_EPOCHS)))
    return save_dir, summary


# The end-to-end tests, deselected by -m "not e2e" (the fast unit set), by a rule one can check by
# reading a test: it needs the session's synthetic LLP or trained run (pytest resolves fixtures
# transitively, so a fixture built on them counts), or its own body calls run_main (main_DHHN.py
# in-process) or the subprocess module, or it lives in one of E2E_MODULES.
E2E_FIXTURES = ("synthetic_root", "trained_run")
E2E_CALLS = ("run_main", "subprocess")
E2E_MODULES = (
    "test_reliability",   # runs, resumes and interrupts main_DHHN.py through helpers of its own
    "test_sweep",         # runs scripts/sweep.py, which trains and tests every configuration
    "test_speed_paths",   # trains the full-size networks through the training loop's speed paths
    "test_extraction",    # video files written with PyAV -> features, through the extractor and its CLI
)


def is_end_to_end(item):
    code = getattr(getattr(item, "function", None), "__code__", None)
    return (item.module.__name__ in E2E_MODULES
            or any(name in item.fixturenames for name in E2E_FIXTURES)
            or (code is not None and any(name in code.co_names for name in E2E_CALLS)))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_end_to_end(item):
            item.add_marker(pytest.mark.e2e)
