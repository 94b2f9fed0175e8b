"""Progress for long work: tqdm bars on a terminal, and, where output goes to a file (nohup, SLURM,
CI), a line at least every few seconds, so that a log never goes silent for minutes."""
import sys
import time

HEARTBEAT_SECONDS = 30.0   # --log_seconds


def bars_shown(progress):
    """Whether tqdm bars are drawn: progress True/False, or None for "on a terminal"."""
    return sys.stderr.isatty() if progress is None else bool(progress)


class Heartbeat:
    """Call with a function giving a line; the line is printed when `seconds` have passed since the
    last one (the first call counts from the heartbeat's start). Off (prints nothing) when
    `enabled` is False, e.g. where a progress bar already shows the same."""

    def __init__(self, seconds=HEARTBEAT_SECONDS, enabled=True, clock=time.monotonic):
        self.seconds, self.enabled, self.clock = seconds, enabled, clock
        self.last = clock()

    def __call__(self, line):
        if not self.enabled:
            return False
        now = self.clock()
        if now - self.last < self.seconds:
            return False
        self.last = now
        print(line() if callable(line) else line, flush=True)
        return True


def heartbeat_for(progress, seconds=HEARTBEAT_SECONDS):
    """The Heartbeat of work whose bars follow `progress`: on exactly when no bar is drawn."""
    return Heartbeat(seconds, enabled=not bars_shown(progress))
