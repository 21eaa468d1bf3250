"""Errors a user can act on, and the one line and exit status each command reports them with."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import unicodedata
from argparse import ArgumentError
from collections.abc import Callable, Iterable
from typing import NoReturn

#: Largest seed numpy and scikit-learn accept (Lightning's ``seed_everything`` seeds numpy too).
MAX_SEED = 2**32 - 1
# Exit statuses: bad input; training diverged; sysexits.h's EX_IOERR (the file system failed) and EX_TEMPFAIL (the run
# is busy: try again later).
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STORAGE, EXIT_BUSY = 2, 1, 74, 75
# errno values that mean the file system, not the input, failed: the user frees space or picks another folder.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


class UserError(ValueError):
    """Bad input: a message that says what was expected, what was found and what to do. It quotes what the user
    gave (a path, a class name), shown `printable` wherever it is printed, from the command or from Python."""

    def __str__(self) -> str:
        return printable(super().__str__())


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss became NaN or infinite, so nothing trained after it can be trusted."""


class StorageError(RuntimeError):
    """The file system failed under a run (disk full, a read-only folder): what failed, what is kept, what to do."""


class RunBusyError(RuntimeError):
    """Another process is training the same run folder; this one would interleave its checkpoints."""


def is_count(value: object) -> bool:
    """Whether ``value`` is a whole count (0, 1, 2, ...): an int, not a bool. Read from files that are data
    (checkpoints, run summaries), where a count may be anything."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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


# Characters that act instead of showing when printed: C0 and C1 controls (an ANSI escape sequence starts with ESC or
# CSI and can clear the screen or rewrite lines already shown), DEL, line breaks, and the bidirectional controls that
# make a name read as another ("photo<U+202E>gpj.exe" shows as "photoexe.jpg"). File names and a checkpoint's class
# names are data: printed raw, they could forge what the program seems to say.
_ACTING_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(name: object) -> str:
    """``name`` (text, a path, bytes) as text that is safe to print, to write to a UTF-8 file and to show in a figure.

    A file name that is not valid UTF-8 reaches Python with each undecodable byte as a lone surrogate (`os.fsdecode`),
    which no UTF-8 file or terminal accepts: it is shown as ``\\xNN``, the byte. Control characters are shown as
    ``\\n``, ``\\x1b``, ``\\u202e``. Everything else, CJK and emoji included, is kept; text without such characters
    comes back unchanged, so applying it twice changes nothing.
    """
    if isinstance(name, bytes):
        text = name.decode("utf-8", "surrogateescape")
    else:
        text = os.fsdecode(name) if isinstance(name, os.PathLike) else str(name)
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if unicodedata.category(char) not in _ACTING_CATEGORIES and char not in _BIDI_CONTROLS:
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def first_few(items: Iterable[object], limit: int = 5) -> str:
    """``a, b, c and 7 more``: enough of a list to find the problem, short enough for one line."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of ``err``'s message (at most ``limit`` characters), or its type's name when it has none:
    what a one-line error quotes of a library's multi-line one."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def report(err: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line for ``err``, if it is one a user can act on (else ``None``: a bug, shown as
    a traceback). Bad input may be wrapped (jsonargparse wraps what a class raises while it is built); the project's
    own report wins over an ``OSError`` raised while cleaning up after it (a full disk fails the event files too)."""
    reported = _report(err)
    # The message quotes what the user gave (paths, class names, CSV cells): shown escaped, as everything printed.
    return None if reported is None else (reported[0], sentence(printable(reported[1])))


def sentence(text: str) -> str:
    """``text`` ended as a sentence: a full stop unless it ends with one, a question or an exclamation, or with a
    command or a path to copy (``continue with: lit-cs201 fit --ckpt_path runs/iris/version_0/last.ckpt``), which
    would be copied with the stop."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) or _ENDS_WITH_COMMAND.search(text) else text + "."


# A command after a colon, to the end of the message; or a last word that is a path.
_ENDS_WITH_COMMAND = re.compile(r":\s+(?:lit-cs201|pip|python|tensorboard)\s[^;:]*$|\s\S*/\S*$")


def _report(err: BaseException) -> tuple[int, str] | None:
    chain = []
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for link in chain:
        if isinstance(link, UserError | ArgumentError):
            return EXIT_BAD_INPUT, "error: " + " ".join(str(link).split())
        if isinstance(link, NonFiniteLossError):
            return EXIT_DIVERGED, str(link)
        if isinstance(link, StorageError):
            return EXIT_STORAGE, f"error: {link}"
        if isinstance(link, RunBusyError):
            return EXIT_BUSY, f"error: {link}"
    for link in chain:
        if isinstance(link, OSError) and link.errno in STORAGE_ERRNOS:
            where = f" ({link.filename})" if link.filename else ""
            todo = "free space on that disk" if link.errno in (errno.ENOSPC, errno.EDQUOT) else "use a writable folder"
            return (
                EXIT_STORAGE,
                f"error: {link.strerror}{where}; {todo} (--trainer.logger.init_args.save_dir moves the logs)",
            )
    return None


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser for a plain command, whose mistakes are one line (a `UserError`, exit 2), as the Lightning
    commands' are, rather than a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{usage_error(message)} (see {self.prog} --help)")


# argparse's words for a value its type refused: "argument --port: invalid int value: 'x'" (%(type)s, %(value)r).
_INVALID_VALUE = re.compile(r"invalid (int|float) value: (.*)$")
_TYPE_WORDS = {"int": "an integer", "float": "a number"}


def usage_error(message: str) -> str:
    """argparse's ``message`` for a plain command's usage error, a refused number said as `lit-cs201`'s flags say it:
    ``argument --port: 'x' is not an integer``."""
    invalid = _INVALID_VALUE.search(message)
    if invalid is None:
        return message
    return f"{message[: invalid.start()]}{invalid[2]} is not {_TYPE_WORDS[invalid[1]]}"


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a plain command's ``command`` and return its exit status; what `report` knows (bad input, a failing disk)
    is one line on stderr after the command's name, with its status; anything else is a bug, shown as a traceback."""
    try:
        return command()
    except Exception as err:
        if (reported := report(err)) is None:
            raise
        print(f"{prog}: {reported[1]}", file=sys.stderr)
        return reported[0]
