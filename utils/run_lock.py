"""One run at a time per run name: a lock on `<model_save_dir>/.<checkpoint>.lock`.

Two runs writing the same `<checkpoint>_*` files would leave a mix of both (best files of one,
`_last.pt` and summary of the other). Every mode holds the lock of its run name while it works;
a second run is refused with a message naming the process that holds it. The lock is an
advisory `flock` on the file, so the operating system releases it when its process ends, however
it ends (kill -9 included): a stale lock file never blocks a later run.
"""
import fcntl
import json
import os
import socket
import time

from utils.errors import UserError


class RunLocked(UserError):
    """Another process is running under the same --model_save_dir / --checkpoint."""


def lock_path(save_dir, name):
    return os.path.join(save_dir, f".{name}.lock")


class RunLock:
    """Context manager holding the lock of run `name` in `save_dir`; `what` says what this run does
    (e.g. "train"), and is shown to a run that finds the lock taken."""

    def __init__(self, save_dir, name, what):
        self.path = lock_path(save_dir, name)
        self.name, self.what = name, what
        self._handle = None

    def __enter__(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(handle)
            handle.close()
            raise RunLocked(f"--checkpoint {self.name} in {os.path.dirname(self.path) or '.'} is in use by "
                            f"{holder}; wait for it to finish, "
                            "or choose another --checkpoint / --model_save_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info):
        # the content stays: it describes the last holder; only the flock matters
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
        return False


def _describe(handle):
    handle.seek(0)
    try:
        holder = json.loads(handle.read())
        return f"a {holder['what']} run (process {holder['pid']} on {holder['host']}, since {holder['since']})"
    except (ValueError, KeyError, TypeError):
        return "another run"
