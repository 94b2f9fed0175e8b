"""Atomic file writes (a crash mid-write never leaves a truncated checkpoint or result), and a
file's SHA-256.

Imports no torch at module level, so data-only tools (dataloader, download script) stay light.
"""
import hashlib
import json
import os
import shutil
import tempfile
import uuid

from utils.errors import FileWriteError, UsageError


def atomic_write(path, write_fn, mode="wb"):
    """Write through a temp file in the same folder, then rename over `path`.

    An interrupted or failed write leaves `path` as it was and no temp file behind. An OSError
    (disk full, read-only folder, ...) becomes a FileWriteError naming `path`, the cause and the free
    space; so does the RuntimeError that torch's zip writer raises for a failed write (a full disk
    shows there as "[enforce fail at inline_container.cc] unexpected pos").
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    except BaseException as error:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)
        if isinstance(error, FileWriteError):
            raise
        if isinstance(error, OSError):
            raise FileWriteError(f"cannot write {path}: {error.strerror or error}{_free_space(folder)}") from None
        if isinstance(error, RuntimeError) and any(sign in str(error) for sign in TORCH_WRITE_FAILURES):
            raise FileWriteError(f"cannot write {path}: the write failed (the disk is full?)"
                                 f"{_free_space(folder)}") from None
        raise


# what torch.save's zip writer says when the bytes did not reach the file
TORCH_WRITE_FAILURES = ("inline_container", "unexpected pos", "PytorchStreamWriter failed")


def _free_space(folder):
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free in {folder})"
    except OSError:
        return ""


def check_writable(folder):
    """Create `folder` if needed and prove that a file can be written there (FileWriteError if not),
    so that a read-only or unusable output folder is reported before any work."""
    # a name of its own per call: runs starting together in one folder (a sweep's parallel jobs)
    # must not remove each other's probe between its write and its removal
    probe = os.path.join(folder, f".write_test.{uuid.uuid4().hex}")
    atomic_write(probe, lambda handle: handle.write(b""))
    os.remove(probe)


def check_creatable(folder, flag):
    """UsageError naming `flag` unless `folder` is a writable folder or could be made as one (its
    nearest existing parent is a writable folder); creates nothing, so that a refused run leaves
    no empty output folder behind."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{flag} {folder}: exists and is not a folder")
    parent = os.path.abspath(folder)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {folder}: {parent} is not writable")


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path):
    import torch
    atomic_write(path, lambda handle: torch.save(obj, handle), "wb")


def atomic_write_json(obj, path):
    atomic_write(path, lambda handle: handle.write(json.dumps(obj, indent=2, default=_json_default) + "\n"), "w")


def atomic_write_text(text, path):
    atomic_write(path, lambda handle: handle.write(text), "w")


def atomic_write_bytes(data, path):
    atomic_write(path, lambda handle: handle.write(data), "wb")


def _json_default(value):
    """numpy scalars and arrays, torch tensors -> plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_sha256(path):
    """Hex SHA-256 of a file, read in 1 MiB blocks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
