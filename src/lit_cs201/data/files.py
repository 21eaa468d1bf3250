"""Files anyone may hand the program, found and opened as data: only regular files are read, none is waited for.

A FIFO named ``x.png`` blocks whoever opens it until a writer comes, which may be never; a device may never end
(``/dev/zero``) or act when opened (a tape drive rewinds). `listable` passes such files over where a folder or a
glob is searched (`find_images` searches folders so); `open_regular` refuses them, also one put in a listed file's
place.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

#: File name endings (lower case) of the image formats searched for; Pillow reads them all.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Opened without waiting: a FIFO opened for reading would otherwise block until a writer comes, which may be never.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


class UnreadableFileError(ValueError):
    """A file that is not a regular file, or that cannot be opened; the message says why, in words."""


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: "a FIFO", "a character device", ..."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((words for test, words in kinds if test(mode)), "a special file")


def listable(path: str | os.PathLike[str]) -> bool:
    """Whether a file found in a folder or by a glob is one to read: a regular file, or a symbolic link that leads
    nowhere (a missing target, or a loop), which decoding then names as a bad image rather than it vanishing.

    A FIFO, a device or a socket (or a link to one) is no image file, whatever its name, and reading it could
    block for ever or never end: it is passed over like any other file that is not an image.
    """
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return os.path.islink(path)


def _unreadable(path: str | os.PathLike[str], err: OSError) -> str:
    """Why a file cannot be opened, in words that say what to mend."""
    if err.errno == errno.ELOOP:
        return "a symbolic link that loops"
    if err.errno == errno.ENOENT and os.path.islink(path):
        try:
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        except OSError:
            pass
    return err.strerror or str(err) or type(err).__name__


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | _OPEN_FLAGS)


def _require_regular(path: str | os.PathLike[str], mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise UnreadableFileError(f"{file_kind(mode)}, not a regular file")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading; `UnreadableFileError` (saying why) unless it is a regular file that opens.

    Checked before opening (opening a device may act, as a tape drive rewinds) and again on the open file, which
    was opened without waiting: a FIFO or device put in the file's place after it was listed is refused too.
    """
    try:
        _require_regular(path, os.stat(path).st_mode)
        file = open(path, "rb", opener=_nonblocking)  # closed by the caller
    except OSError as err:
        raise UnreadableFileError(_unreadable(path, err)) from None
    try:
        _require_regular(path, os.fstat(file.fileno()).st_mode)
        if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(file.fileno(), True)  # reads of a regular file as usual, on every file system
    except OSError as err:
        file.close()
        raise UnreadableFileError(_unreadable(path, err)) from None
    except UnreadableFileError:
        file.close()
        raise
    return file


def readable_size(size: int) -> str:
    """``size`` bytes in the largest unit it fills (bytes, KiB, MiB, GiB or TiB), with three figures or more."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"
    return f"{size} bytes"


def find_images(folder: str | os.PathLike[str], suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder``, searched recursively, in sorted order of their paths.

    Hidden files and folders (a name starting with ".") and files without one of ``suffixes`` (lower case;
    matched in any case) are ignored: ``.txt``, ``Thumbs.db``, ``desktop.ini``, ``.DS_Store``; so are FIFOs,
    devices and sockets, and links to them (see `listable`). As with `os.walk`, linked folders are not entered (a
    link to a folder above would loop) and a folder that cannot be listed is passed over.
    """
    found: list[Path] = []
    pending = [Path(folder)]
    while pending:  # depth first, files before subfolders: the order of os.walk
        files, subfolders = _scan(pending.pop(), suffixes)
        found += files
        pending += reversed(subfolders)
    return found


def _scan(folder: Path, suffixes: frozenset[str]) -> tuple[list[Path], list[Path]]:
    """The image files and the subfolders to search of ``folder``, each sorted by name."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return [], []
    files: list[Path] = []
    subfolders: list[Path] = []
    for entry in entries:
        # The listing tells plain files and folders apart without a system call; only links are followed (a loop
        # raises there, which DirEntry.is_dir does not catch).
        linked = entry.is_symlink()
        if not linked and entry.is_dir(follow_symlinks=False):
            subfolders.append(folder / entry.name)
        elif os.path.splitext(entry.name)[1].lower() in suffixes:
            if listable(entry.path) if linked else entry.is_file(follow_symlinks=False):
                files.append(folder / entry.name)
    return files, subfolders
