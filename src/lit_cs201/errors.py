"""Errors a user can act on. The CLI prints each as one line, with its own exit status (see ``cli.main``)."""

from __future__ import annotations

from collections.abc import Iterable

#: Largest seed numpy and scikit-learn accept (Lightning's ``seed_everything`` seeds numpy too).
MAX_SEED = 2**32 - 1


class UserError(ValueError):
    """Bad input: a message that says what was expected, what was found and what to do."""


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss became NaN or infinite, so nothing trained after it can be trusted."""


class StorageError(RuntimeError):
    """The file system failed under a run (disk full, a read-only folder): what failed, what is kept, what to do."""


class RunBusyError(RuntimeError):
    """Another process is training the same run folder; this one would interleave its checkpoints."""


def check_range(
    name: str, value: float, low: float, high: float | None = None, *, below: float | None = None, hint: str = ""
) -> None:
    """Refuse a ``value`` outside ``[low, high]`` (or ``[low, below)``), naming the setting and the range."""
    if low <= value and (high is None or value <= high) and (below is None or value < below):
        return
    if high is not None:
        expected = f"between {low} and {high}"
    elif below is not None:
        expected = f"at least {low} and below {below}"
    else:
        expected = f"at least {low}"
    raise UserError(f"{name} must be {expected}, got {value}" + (f"; {hint}" if hint else ""))


def first_few(items: Iterable[object], limit: int = 5) -> str:
    """``a, b, c and 7 more``: enough of a list to find the problem, short enough for one line."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
