"""Decoded images cached once as a memory-mapped ``.npy``, under a name that changes whenever the files do.

    files ──decode_images (threads)──▶ <cache>/<name>_<C>x<H>x<W>_<fingerprint>.npy ──▶ np.load(mmap)

`cached_images` decodes a list of files on all cores into a ``.npy`` cache and memory-maps it afterwards, so
decoding is paid once and a dataset larger than memory still trains. The cache's name holds a fingerprint of the
file list (paths, labels, and each file's size, modification time, inode number and change time), the target shape,
how images are resized to it, and `FORMAT_VERSION`: a folder that changed since gets a new cache, never the stale
one. Files that cannot be decoded are collected and reported together. Only files of this module's own naming are
ever deleted: the previous cache of the same split, and temporary files that a killed writer left behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lit_cs201.data.decode import FORMAT_VERSION, PROGRESS_FROM, ResizeMode, bad_images_message, decode_images
from lit_cs201.data.files import readable_size
from lit_cs201.errors import StorageError, UserError

#: Seconds a temporary cache file of another machine (or of an unknown writer) must lie unchanged before a decode
#: removes it as left behind: a live writer adds to its file every few seconds, whatever the images.
STALE_AFTER = 24 * 3600


def fingerprint(
    root: Path,
    files: Sequence[Path],
    labels: Sequence[int],
    shape: Sequence[int],
    resize: bool = True,
    resize_mode: ResizeMode = "stretch",
) -> str:
    """Hash of what a cache holds: the files (path under ``root``, label, and what `_file_state` says), the shape,
    how images are resized to it.

    Any change to the folder (a file added, removed, renamed, relabelled, rewritten, or swapped with another) changes
    it, from one ``stat`` per file: no image is read.
    """
    # A stretch hashes as before crops existed ("True"), so the caches decoded then are still used.
    how = "crop" if resize and resize_mode == "crop" else resize
    digest = hashlib.sha256(f"lit-cs201 decode cache {FORMAT_VERSION} {tuple(shape)} resize={how}\n".encode())
    for path, label in zip(files, labels, strict=True):
        line = f"{path.relative_to(root).as_posix()}\t{label}\t{_file_state(path)}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))  # names that are not UTF-8 come as lone surrogates
    return digest.hexdigest()[:16]


def _file_state(path: Path) -> str:
    """Size, modification time, inode number and change time of the file at ``path``.

    Size and modification time alone miss files of one size and time (extracted from one archive) swapped by
    ``mv``, or rewritten and given their old time back. The inode number tells a file put in another's place; the
    change time (``st_ctime``) is set by the kernel on every write, rename and ``chmod``, and no program can set it
    back as ``touch`` sets modification times, so it tells a file edited in place. Both cost nothing: the ``stat``
    is made anyway. A copy of the folder (new inodes) is decoded again; moving it within its disk is not.
    """
    try:
        info = os.stat(path)
    except OSError as err:  # a link that leads nowhere: decoding names it; once mended, the state differs
        return f"unreadable {err.errno}"
    return f"{info.st_size}\t{info.st_mtime_ns}\t{info.st_ino}\t{info.st_ctime_ns}"


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists."""
    return next(p for p in (folder, *folder.parents) if p.exists())


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start a cache of ``needed`` bytes in ``folder`` where the disk does not have them."""
    free = shutil.disk_usage(_existing(folder)).free
    if needed > free:
        need, have = readable_size(needed), readable_size(free)
        if need == have:  # rounded to the same figure: the bytes show which is larger
            need, have = f"{needed:,} bytes", f"{free:,} bytes"
        raise StorageError(
            f"the decode cache in {folder} needs {need} but its disk has {have} free; free up space there, or "
            "decode to a smaller image size"
        )


def _write_cache(
    path: Path, shape: tuple[int, ...], chunks: Iterator[np.ndarray], before_replace: Callable[[], None]
) -> None:
    """Write the chunks as one ``.npy`` under a temporary name, flushed to disk, then rename it to ``path``.

    Sequential writes (not a memory map) make a full disk an ``OSError`` rather than a crash, and the flush
    before the rename means a power cut cannot leave a complete-looking file of zeros. ``before_replace`` runs
    between the two and may still refuse the file by raising. A cache folder this call created and could not
    fill is removed again, so a failed decode leaves nothing behind.
    """
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer (processes of a multi-node run may share the folder); os.open rather than
    # mkstemp so that the file gets the usual permissions and others sharing the dataset can read it.
    tmp = _temporary(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for chunk in chunks:
                out.write(chunk.tobytes())
            out.flush()
            os.fsync(out.fileno())
        before_replace()
        os.replace(tmp, path)  # the cache appears complete or not at all
    finally:
        tmp.unlink(missing_ok=True)
        if created and not path.exists() and not any(path.parent.iterdir()):
            path.parent.rmdir()


def _skipped_path(path: Path) -> Path:
    return path.with_suffix(".skipped.json")


@functools.cache
def _machine() -> str:
    """This machine, as a part of a file name: which temporary files a process here has written."""
    where = socket.gethostname()
    try:  # containers may share a host name but never their process ids: the PID namespace tells them apart
        where += " " + os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return hashlib.blake2b(where.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


def _temporary(path: Path, pid: int | None = None) -> Path:
    """A hidden name of its own for a writer of ``path``, naming its machine and process (see `_remove_leftovers`)."""
    pid = os.getpid() if pid is None else pid
    return path.with_name(f".{path.name}.{_machine()}.{pid}.{secrets.token_hex(4)}.tmp")


def _own_names(name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The names this module gives the caches of ``name`` (and their lists of skipped files), and their temporary
    names: nothing else in a cache folder, which may be the user's own (``cache_dir: .``), is ever deleted."""
    cache = rf"{re.escape(name)}_\d+x\d+x\d+_[0-9a-f]{{16}}\.(?:npy|skipped\.json)"
    # Releases before FORMAT_VERSION 3 named the process but not its machine.
    temporary = rf"\.{cache}\.(?:(?P<machine>[0-9a-f]{{12}})\.)?(?P<pid>\d+)\.[0-9a-f]{{8}}\.tmp"
    return re.compile(cache), re.compile(temporary)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as listing:
            return list(listing)
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine; True where that cannot be known."""
    if os.name == "nt":
        return True  # there os.kill ends the process rather than asking about it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process (EPERM), or no pid at all
        return True
    return True


def _remove_leftovers(folder: Path, name: str) -> None:
    """Delete the temporary files of ``name``'s caches in ``folder`` whose writer is certainly gone (killed while
    it decoded): one of this machine when its process has ended; one of another machine (nodes may share a dataset
    folder) or of an older release only after `STALE_AFTER` unchanged. A live writer's file is never touched."""
    _, temporary = _own_names(name)
    for entry in _entries(folder):
        found = temporary.fullmatch(entry.name)
        if found is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            ended = found["machine"] == _machine() and not _alive(int(found["pid"]))
            if ended or time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                os.unlink(entry.path)
        except OSError:
            pass  # removed by another process first, or not ours to remove (another user's, read-only)


def _remove_previous(path: Path, name: str) -> None:
    """Delete the other caches of ``name`` beside ``path``: those of the folder as it was before it changed."""
    cache, _ = _own_names(name)
    keep = {path.name, _skipped_path(path).name}
    for entry in _entries(path.parent):
        if cache.fullmatch(entry.name) and entry.name not in keep and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass  # another process removed it first, or it is not ours to remove: it only takes space


def _write_skipped(path: Path, bad: dict[int, str]) -> None:
    """The files a cache left out, beside it (written before the cache itself appears)."""
    tmp = _temporary(path)
    try:
        with tmp.open("w", encoding="utf-8") as out:
            json.dump({str(i): reason for i, reason in sorted(bad.items())}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _open_cache(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[int, str]] | None:
    """The cached images and the rows left out when they were decoded; None if missing or unreadable."""
    if not path.is_file():
        return None
    try:
        # Copy-on-write: the tensor is writable (torch warns about read-only arrays) and the file stays as is.
        images = np.load(path, mmap_mode="c", allow_pickle=False)
        skipped = _skipped_path(path)
        bad = {int(i): str(r) for i, r in json.loads(skipped.read_text("utf-8")).items()} if skipped.is_file() else {}
    except (OSError, ValueError):
        return None  # decode again; the new file replaces it
    if images.shape != shape or images.dtype != np.uint8:
        return None
    return images, bad


class Decoded(NamedTuple):
    """The decoded images of a list of files."""

    #: uint8 (N, C, H, W), one row per file, memory-mapped when cached; rows of skipped files are zeros.
    images: np.ndarray
    #: Files that could not be decoded and were left out: index in the list -> reason.
    skipped: dict[int, str]


def cached_images(
    files: Sequence[Path],
    labels: Sequence[int],
    shape: Sequence[int],
    cache_dir: Path,
    name: str,
    root: Path,
    resize: bool = True,
    skip_bad: bool = False,
    hint: str = "fix or delete them",
    read_only: str | None = None,
    resize_mode: ResizeMode = "stretch",
) -> Decoded:
    """The decoded images of ``files``, memory-mapped from ``cache_dir``; decoded and cached first if needed.

    Args:
        files: Image files, in the order of the rows.
        labels: Label of each file; part of the fingerprint, so a relabelled folder gets a new cache.
        shape: (channels, height, width) of every decoded image.
        cache_dir: Folder of the cache files ``<name>_<C>x<H>x<W>_<fingerprint>.npy``; a previous cache of
            ``name`` there is deleted once the new one is complete, and temporary files that killed writers left
            behind before the decode starts (see `_remove_leftovers`). Other files there are never touched.
        name: What the files are (e.g. the split, ``train``), for the file name and the progress line.
        root: Folder the fingerprint takes the files' paths relative to (so the folder can move).
        resize: Resize images to ``shape``; False refuses an image of another size as a bad one.
        skip_bad: Leave out files that cannot be decoded (``Decoded.skipped`` says which) instead of refusing.
        hint: What to do about files that cannot be decoded, the end of the error message.
        read_only: Why nothing may be written in ``cache_dir``, if so: an existing cache is used, and otherwise
            the images are decoded into memory, with a warning that gives this reason.
        resize_mode: How an image of another aspect ratio is resized to ``shape`` (see `decode.to_uint8`); part of
            the fingerprint.

    Raises:
        UserError: naming the first few files that cannot be decoded and their count, unless ``skip_bad``.
        StorageError: where the disk has less free space than the cache needs (the message gives both).

    Where the cache cannot be written (a read-only shared dataset), the images are decoded into memory instead,
    every time, with a warning.
    """
    shape = (len(files), *(int(s) for s in shape))
    channels, height, width = shape[1:]
    stamp = fingerprint(root, files, labels, shape[1:], resize, resize_mode)
    path = cache_dir / f"{name}_{channels}x{height}x{width}_{stamp}.npy"
    cached = _open_cache(path, shape)
    if cached is not None:
        images, bad = cached
        if bad and not skip_bad:
            raise UserError(bad_images_message(files, bad, hint))
        return Decoded(images, bad)

    show = len(files) >= PROGRESS_FROM
    bad: dict[int, str] = {}

    def chunks(label: str) -> Iterator[np.ndarray]:
        for chunk, found in decode_images(
            files, shape[1:], resize, label=label if show else "", resize_mode=resize_mode
        ):
            bad.update(found)
            yield chunk

    def accept() -> None:  # before the cache appears: a file that cannot be decoded stops it, unless skipped
        if bad and not skip_bad:
            raise UserError(bad_images_message(files, bad, hint))
        if bad:
            _write_skipped(_skipped_path(path), bad)
        else:  # of an unreadable cache of these same files, which this one replaces
            _skipped_path(path).unlink(missing_ok=True)

    if read_only is not None:
        problem = f"not writing a decode cache in {cache_dir}: {read_only}"
    elif os.access(_existing(cache_dir), os.W_OK):
        _remove_leftovers(cache_dir, name)  # first: what they free counts
        check_free_space(cache_dir, 128 + math.prod(shape))  # 128: the .npy header
        try:
            _write_cache(path, shape, chunks(f"decoding {name}/ images (once; cached in {cache_dir})"), accept)
        except OSError as err:
            problem = f"cannot write the decode cache in {cache_dir} ({err})"
        else:
            _remove_previous(path, name)
            return Decoded(np.load(path, mmap_mode="c", allow_pickle=False), bad)
    else:
        problem = f"cannot write the decode cache in {cache_dir} (not writable)"
    warnings.warn(f"{problem}; decoding in memory, every run", stacklevel=2)
    bad.clear()
    images = np.empty(shape, dtype=np.uint8)
    start = 0
    for chunk in chunks(f"decoding {name}/ images"):
        images[start : start + len(chunk)] = chunk
        start += len(chunk)
    if bad and not skip_bad:
        raise UserError(bad_images_message(files, bad, hint))
    return Decoded(images, bad)
