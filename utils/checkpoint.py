"""Checkpoint files: plain dicts that load with torch.load(weights_only=True), written atomically.

Layout under --model_save_dir, for --checkpoint NAME:
  NAME_best_audio.pt, NAME_best_visual.pt, NAME_best_overall.pt   selected HCMN / HAN weights (SPEC §7)
  NAME_last.pt                                                   everything needed to --resume
The original release's layout (NAME_audio.pt, NAME_video.pt, NAME_aud-vis.pt, raw release
state_dicts) is accepted for testing as well.
"""
import os

import torch

from utils.io import atomic_torch_save

SELECTION_ROLES = ("audio", "visual", "overall")
RELEASE_SUFFIXES = {"audio": "audio", "visual": "video", "overall": "aud-vis"}


class CheckpointError(ValueError):
    """A checkpoint that is missing or does not fit; the message names the file."""


def best_path(save_dir, name, role):
    return os.path.join(save_dir, f"{name}_best_{role}.pt")


def last_path(save_dir, name):
    return os.path.join(save_dir, f"{name}_last.pt")


def release_path(save_dir, name, role):
    return os.path.join(save_dir, f"{name}_{RELEASE_SUFFIXES[role]}.pt")


def find_selected(save_dir, name, role):
    """Path of the role's selected weights: the project's layout first, then the release's."""
    for path in (best_path(save_dir, name, role), release_path(save_dir, name, role)):
        if os.path.isfile(path):
            return path
    raise CheckpointError(
        f"no {role} checkpoint for --checkpoint {name} in {save_dir}: expected "
        f"{os.path.basename(best_path(save_dir, name, role))} (this project) or "
        f"{os.path.basename(release_path(save_dir, name, role))} (original release)")


def save(path, **content):
    """Atomically write a checkpoint dict (state_dicts, epoch, scores, args as a dict, ...)."""
    atomic_torch_save(content, path)


def load(path, map_location="cpu"):
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None
