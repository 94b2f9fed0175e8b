"""Seeding, device choice and the provenance recorded with every run (PROTOCOL.md §7: seed 1)."""
import os
import platform
import random
import signal
import subprocess
import sys
import warnings

import numpy as np
import torch

from utils.errors import UserError

# numpy's seeds are 32-bit
MAX_SEED = 2 ** 32 - 1


def _plain_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def print_warnings_plainly():
    """Warnings print as "warning: <message>", without Python's file, line and source line: the
    project's warnings are meant for users and name the file or flag they are about."""
    warnings.formatwarning = _plain_warning


def set_seed(seed):
    """Seed python, numpy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class termination_as_interrupt:
    """Context manager: SIGTERM (what a scheduler or `kill` sends) raises KeyboardInterrupt like
    Ctrl-C, so that the same cleanup runs (temp files removed, queued checkpoints finished)."""

    def __enter__(self):
        self._previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc_info):
        signal.signal(signal.SIGTERM, self._previous)
        return False


class DeviceError(UserError):
    """A --device that this machine does not have; the message names the flag."""


def resolve_device(name):
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name}: not a device name (try auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def device_description(device):
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit():
    """The commit of the code that produced a result, '+dirty' when uncommitted changes exist."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def package_versions():
    import pandas
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "numpy": np.__version__, "pandas": pandas.__version__}
    if torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
    return versions


def provenance(device, seed):
    """What a result needs to be traced back to its code and machine."""
    return {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "git_commit": git_commit(), "versions": package_versions(),
            "device": device_description(device), "seed": seed}
