"""The packed feature cache: a split's features of one kind as one `.npy`, reused across runs.

Reading ~12k small `.npy` files dominates loading LLP; packed, a split loads in a fraction of the
time (docs/SPEED.md). An entry is keyed by a fingerprint of everything that changes its content:
the source folder, the file list, the storage dtype and, of every source file, its size, mtime,
inode change time (ctime) and inode number. Size and mtime alone are not enough: `cp -p`,
`rsync -a` and `tar` replace a file with one of the same size and copy the old mtime onto it.
No tool can set ctime (the kernel sets it to the current time on every write, chmod or utime, on
most file systems also on a rename), and a file replaced by rename gets a new inode. A damaged or
stale entry is rebuilt, never served; the price is a rebuild after a chmod, chown or move of the
features, which also change ctime.

Layout in the cache folder, per (split, entry): `<split>_<entry>.npy` and `<split>_<entry>.json`
(the manifest, written last so that it never vouches for a half-written array).
"""
import hashlib
import json
import os
import re
import warnings
from typing import NamedTuple

import numpy as np

from utils.io import atomic_write

# 2: the fingerprint holds (size, mtime_ns, ctime_ns, inode) per source file, 1 held (size, mtime_ns)
CACHE_FORMAT = 2
CACHE_FOLDER_NAME = ".packed_cache"


def default_cache_dir(audio_dir):
    """`.packed_cache` beside the feature folders (feats/vggish -> feats/.packed_cache)."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(audio_dir))), CACHE_FOLDER_NAME)


def _stat_sources(paths):
    """[(size, mtime_ns, ctime_ns, inode)] of every path, or None if any is missing/unstatable."""
    stats = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        stats.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return stats


class CacheKey(NamedTuple):
    """Which entry of which split, where its content comes from, and its fingerprint."""
    split: str
    entry: str
    source_dir: str
    fingerprint: str


class PackedFeatureCache:
    """Packed arrays in `folder`, one per (split, entry); see the module docstring."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def key(self, split, entry, source_dir, paths, filenames, dtype):
        """The CacheKey of an entry built from the files `paths` (one per filename), or None when a
        source file is missing (then nothing is cached: the reader reports the missing file)."""
        stats = _stat_sources(paths)
        if stats is None:
            return None
        content = json.dumps([CACHE_FORMAT, entry, os.path.abspath(source_dir), np.dtype(dtype).str,
                              list(filenames), stats])
        return CacheKey(split, entry, source_dir, hashlib.sha256(content.encode()).hexdigest())

    def _paths(self, key):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key.split)
        stem = os.path.join(self.folder, f"{name}_{key.entry}")
        return stem + ".npy", stem + ".json"

    def load(self, key, rows, dtype, num_videos):
        """The cached (num_videos, rows, dim) array of `key`, or None if absent, stale or damaged."""
        array_path, manifest_path = self._paths(key)
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            if manifest.get("fingerprint") != key.fingerprint:
                return None
            array = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or damaged: rebuild
        if array.ndim != 3 or array.shape[:2] != (num_videos, rows) or array.dtype != np.dtype(dtype):
            return None
        return array

    def save(self, key, array):
        """Write the array, then its manifest, each atomically; a cache that cannot be written is
        a warning, not an error (the run goes on without it)."""
        array_path, manifest_path = self._paths(key)
        manifest = {"format": CACHE_FORMAT, "kind": key.entry, "split": key.split,
                    "source_dir": os.path.abspath(key.source_dir),
                    "num_videos": int(array.shape[0]), "shape": list(array.shape),
                    "dtype": array.dtype.str, "fingerprint": key.fingerprint}
        try:
            os.makedirs(self.folder, exist_ok=True)
            atomic_write(array_path, lambda f: np.save(f, array))
            atomic_write(manifest_path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        except OSError as error:
            warnings.warn(f"feature cache {self.folder} not writable ({error}); "
                          "continuing without cache", stacklevel=3)
