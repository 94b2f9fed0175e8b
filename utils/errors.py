"""The one base class of every error a user can cause, and the LLP data errors.

main_DHHN.py catches exactly `UserError` and prints its message without a traceback; anything
else is a bug and keeps its traceback. A module that raises a new kind of user error derives it
from `UserError` (tests/test_layers.py checks every error class of the project).
"""

# Longest list of problems put in one message; the rest are counted.
MAX_LISTED = 20


class UserError(ValueError):
    """Something the user can fix (a flag, a file, a checkpoint); the message names it."""


class UsageError(UserError):
    """A flag that cannot work (missing file, contradictory options); the message names the flag."""


class LLPDataError(UserError):
    """Bad LLP input; the message names the file and row, or the paths."""


class LLPDataWarning(UserWarning):
    """A known kind of defect in LLP input that is ignored as published (PROTOCOL.md §2)."""


def bulleted(lines, limit=MAX_LISTED):
    """Indented lines, at most `limit`, then "... and N more"."""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(shown)


class FileWriteError(UserError, OSError):
    """A result or checkpoint that cannot be written (disk full, read-only folder); names the path."""


class TrainingDiverged(UserError):
    """Training produced non-finite losses or probabilities; names the epoch and step."""


class NonFiniteOutputs(UserError):
    """A model gave inf or NaN outputs at evaluation or parsing; names the step and videos."""


class RunInterrupted(UserError):
    """Ctrl-C or SIGTERM stopped the run; says what is on disk and how to continue."""
    exit_code = 130   # as a shell reports a Ctrl-C
