"""Checkpoint files: plain dicts that load with torch.load(weights_only=True), written atomically.

Layout under --model_save_dir, for --checkpoint NAME:
  NAME_best_audio.pt, NAME_best_visual.pt, NAME_best_overall.pt   selected HCMN / HAN weights (PROTOCOL.md §7)
  NAME_last.pt                                                   everything needed to --resume
Other codebases' files of a selected model (raw state dicts: the DHHN release's NAME_audio.pt,
HAN's NAME.pt, VALOR's NAME/checkpoint_best.pt) are found too, by the layouts a recipe lists
(recipes/base.py, Recipe.release_files), after this project's own.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from utils.errors import FileWriteError, UserError
from utils.io import atomic_torch_save, atomic_write_text


class CheckpointError(UserError):
    """A checkpoint that is missing or does not fit; the message names the file."""


def best_path(save_dir, name, role):
    return os.path.join(save_dir, f"{name}_best_{role}.pt")


def last_path(save_dir, name):
    return os.path.join(save_dir, f"{name}_last.pt")


def _candidates(save_dir, name, role, release_files):
    """[(path, whose layout)]: this project's file first, then those of `release_files`
    ({role: ((path template with {name}, whose layout), ...)})."""
    releases = [(os.path.join(save_dir, template.format(name=name)), source)
                for template, source in release_files.get(role, ())]
    return [(best_path(save_dir, name, role), "this project")] + releases


def selected_exists(save_dir, name, role, release_files=None):
    """Whether the role's selected weights exist in any layout (whether `find_selected` finds them)."""
    return any(os.path.isfile(path) for path, _ in _candidates(save_dir, name, role, release_files or {}))


def find_selected(save_dir, name, role, release_files=None):
    """Path of the role's selected weights: the project's layout first, then the releases' of
    `release_files` (a recipe's Recipe.release_files)."""
    candidates = _candidates(save_dir, name, role, release_files or {})
    for path, _ in candidates:
        if os.path.isfile(path):
            return path
    expected = " or ".join(f"{os.path.relpath(path, save_dir)} ({source})" for path, source in candidates)
    raise CheckpointError(f"no {role} checkpoint for --checkpoint {name} in {save_dir}: expected {expected}")


def save(path, **content):
    """Atomically write a checkpoint dict (state_dicts, epoch, scores, args as a dict, ...)."""
    atomic_torch_save(content, path)


def load(path, map_location="cpu", mmap=False):
    """The checkpoint dict; mmap=True maps the file instead of reading it (cheap when only a few
    entries are looked at)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None


def host_copy(content):
    """`content` with every tensor copied to host memory (dicts, lists and tuples walked); the copy
    no longer changes when training goes on updating the originals."""
    if torch.is_tensor(content):
        return content.detach().to("cpu", copy=True)
    if isinstance(content, dict):
        return {key: host_copy(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return type(content)(host_copy(value) for value in content)
    return content


class BackgroundWriter:
    """Checkpoint writes on a worker thread, so that training does not wait for the disk.

    A full `_last.pt` (three nets and their Adam moments, about 190 MB at LLP sizes) takes a few
    tenths of a second to write and fsync: on a GPU that is a sizeable part of an epoch. `save`
    snapshots the content to host memory at once and queues the atomic write; writes happen one at
    a time in submission order, so a `_last.pt` never lands before the best checkpoints it refers
    to. At most `max_pending` writes are queued (bounded host memory); a failed write raises at the
    next `save` or at `wait`/`close`, and the writes queued after it are skipped, so that a
    `_last.pt` never claims an epoch whose best files did not land: the run stays resumable from
    its last complete epoch. Use as a context manager: leaving it, normally or by an exception
    (Ctrl-C included), first finishes every queued write.
    """

    def __init__(self, max_pending=4):
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending = []
        self._failed = False

    def save(self, path, **content):
        self._submit(save, path, **host_copy(content))

    def write_text(self, path, text):
        """Queue an atomic text write behind the checkpoints queued before it (e.g. a log line that
        must never claim an epoch whose checkpoint is not on disk yet)."""
        self._submit(atomic_write_text, text, path)

    def _submit(self, function, *args, **kwargs):
        self._collect(keep=self.max_pending - 1)
        self._pending.append(self._executor.submit(self._write, function, *args, **kwargs))

    def _write(self, function, *args, **kwargs):
        if self._failed:   # an earlier write failed: what follows it must not land without it
            return
        try:
            function(*args, **kwargs)
        except BaseException:
            self._failed = True
            raise

    def wait(self):
        """Block until every queued write is on disk; raise the first write error."""
        self._collect(keep=0)

    def _collect(self, keep):
        while len(self._pending) > keep or (self._pending and self._pending[0].done()):
            self._pending.pop(0).result()

    def close(self):
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            self.close()
        except FileWriteError:
            if exc_type is None:
                raise
            # the error already leaving the block is the one to report; this one followed from it
            # or says the same (a full disk)
