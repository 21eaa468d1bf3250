"""Archives anyone may hand the program, extracted as data: every member lands inside its folder, or nothing does.

Before anything is written, each member's final path (after its prefix is removed) must lie strictly inside the
target folder, reach through no symbolic link already there, and be a plain file or folder; the members' total size
must fit the disk. Otherwise the whole archive is refused. Files are written under a temporary name and renamed
once complete, and an extraction that fails part-way removes what it wrote, never what was there before.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from tqdm import tqdm

from lit_cs201.data.files import readable_size
from lit_cs201.errors import UserError, first_few

# What reading a damaged or truncated archive raises; a failing disk raises a plain OSError, which is not bad input.
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError)
_GZIP_MAGIC = b"\x1f\x8b"
# Mode bits of a zip member made on Unix, and tar member types, that are not plain files or folders.
_SPECIAL_MODES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
_SPECIAL_TAR_TYPES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
_ON_DISK = {stat.S_IFDIR: "a folder", stat.S_IFREG: "a file", **_SPECIAL_MODES}
# Files take whole blocks of a disk; 4 KiB is the common block size.
_BLOCK = 4096


@dataclass(frozen=True)
class _Member:
    """One archive member: its name as stored, "file", "folder" or what else it is (refused), its declared size."""

    name: str
    kind: str
    size: int
    handle: object


Reader = Callable[[_Member], IO[bytes]]


def members(path: Path, prefix: str = "") -> list[str]:
    """The paths, relative to the target folder, that `extract` would write from ``path``; refuses (a `UserError`)
    what `extract` refuses whatever the target folder holds. Nothing is written."""
    with _opened(path, prefix) as (found, _):
        return [rel.as_posix() for rel, _ in _checked(path, found, prefix)]


def extract(path: Path, dest: Path, prefix: str = "") -> None:
    """Extract the members of a zip or tar archive whose names start with ``prefix`` into ``dest``, without the
    prefix; a single gzip-compressed file (``x.gz``) becomes ``dest/x``.

    The archive is refused (a `UserError`) before anything is written if a member would not land strictly inside
    ``dest`` as a plain file or folder, or if its members do not fit the disk. Each file is written as ``<name>.part``
    and renamed once complete; if extraction fails, every file and folder it created is removed again.
    """
    with _opened(path, prefix) as (found, read):
        wanted = _checked(path, found, prefix)
        targets = [(dest.joinpath(*rel.parts), member) for rel, member in wanted]
        if problems := _disk_problems(dest, wanted):
            raise UserError(_refusal(path, problems))
        _check_space(path, dest, [member.size for _, member in wanted if member.kind == "file"])
        written = _Written()
        try:
            written.folder(dest)
            for target, member in tqdm(targets, f"extracting {path.name}", unit=" files"):
                if member.kind == "file":
                    written.file(target, path, member, read)
                else:
                    written.folder(target)
        except BaseException:  # an interrupt too: a half-extracted tree must not pass for a complete one
            written.undo()
            raise


@contextmanager
def _opened(path: Path, prefix: str) -> Iterator[tuple[list[_Member], Reader]]:
    with ExitStack() as stack:
        try:
            found, read = _open(path, prefix, stack)
        except _DAMAGED as err:
            raise UserError(_damaged(path, err)) from err
        yield found, read


def _open(path: Path, prefix: str, stack: ExitStack) -> tuple[list[_Member], Reader]:
    if zipfile.is_zipfile(path):
        archive = stack.enter_context(zipfile.ZipFile(path))
        return [_zip_member(info) for info in archive.infolist()], lambda member: archive.open(member.handle)
    if tarfile.is_tarfile(path):
        tar = stack.enter_context(tarfile.open(path))
        return [_tar_member(info) for info in tar.getmembers()], lambda member: tar.extractfile(member.handle)
    with open(path, "rb") as f:
        head = f.read(8)
        # A gzip file ends with its uncompressed size (modulo 4 GiB): what it declares, as zip and tar members do.
        f.seek(-min(4, len(head)), os.SEEK_END)
        size = int.from_bytes(f.read(4), "little")
    if not head.startswith(_GZIP_MAGIC):
        raise UserError(_not_an_archive(path, head))
    return [_Member(prefix + path.stem, "file", size, None)], lambda _: gzip.open(path)


def _zip_member(info: zipfile.ZipInfo) -> _Member:
    # orig_filename keeps what zipfile's own filename cuts off at a NUL byte.
    special = _SPECIAL_MODES.get(stat.S_IFMT(info.external_attr >> 16))
    kind = special or ("folder" if info.is_dir() else "file")
    return _Member(info.orig_filename, kind, info.file_size, info)


def _tar_member(info: tarfile.TarInfo) -> _Member:
    if info.isfile() or info.isdir():
        kind = "file" if info.isfile() else "folder"
    else:
        kind = _SPECIAL_TAR_TYPES.get(info.type, f"a tar entry of type {info.type!r}")
    return _Member(info.name, kind, info.size, info)


def _name_problem(name: str) -> str | None:
    """Why a member path could not land inside a folder, whatever the folder holds; None if it can."""
    if "\0" in name:
        return "a NUL byte"
    if "\\" in name:
        return "a backslash, a Windows separator"
    if name.startswith("/") or PureWindowsPath(name).anchor:
        return "an absolute path or a drive letter"
    if ".." in PurePosixPath(name).parts:
        return "'..'"
    return None


def _member_problem(member: _Member, prefix: str) -> str | None:
    if member.kind not in ("file", "folder"):
        return member.kind
    if problem := _name_problem(member.name):
        return problem
    if not member.name.startswith(prefix):
        return None
    rest = member.name[len(prefix) :]
    if problem := _name_problem(rest):
        return f"{problem} once {prefix!r} is removed"
    if member.kind == "file" and not PurePosixPath(rest).parts:
        return f"no file name once {prefix!r} is removed"
    return None


def _checked(path: Path, found: list[_Member], prefix: str) -> list[tuple[PurePosixPath, _Member]]:
    """The members to write and their paths relative to the target folder, each checked: every member of the
    archive, wanted or not, is a plain file or folder with a safe name; no path is written twice, or as both a file
    and a folder."""
    problems, wanted, kinds = [], [], {}
    for member in found:
        problem = _member_problem(member, prefix)
        rel = PurePosixPath(member.name[len(prefix) :])
        if problem is None and member.name.startswith(prefix) and rel.parts:
            problem = _clash(kinds, rel, member.kind)
            wanted.append((rel, member))
        if problem:
            problems.append(f"{member.name!r} ({problem})")
    if problems:
        raise UserError(_refusal(path, problems))
    return wanted


def _clash(kinds: dict[PurePosixPath, str], rel: PurePosixPath, kind: str) -> str | None:
    """Record that ``rel`` is written as ``kind`` (its parents as folders); say why if an earlier member clashes."""
    for where, want in [*((p, "folder") for p in reversed(rel.parents) if p.parts), (rel, kind)]:
        if where not in kinds:
            kinds[where] = want
        elif kinds[where] != want:
            return f"{where.as_posix()!r} would be both a file and a folder"
        elif want == "file":
            return "a second member with the same path"
    return None


def _disk_problems(dest: Path, wanted: list[tuple[PurePosixPath, _Member]]) -> list[str]:
    """Members that would reach through a symbolic link already in ``dest``, or replace a folder with a file (or the
    reverse); each path on disk is looked at once."""
    if not dest.is_dir():
        return []  # a new folder holds nothing to reach through
    modes: dict[Path, int | None] = {}
    problems = []
    for rel, member in wanted:
        paths = [(dest.joinpath(*p.parts), "folder") for p in reversed(rel.parents) if p.parts]
        target = dest.joinpath(*rel.parts)
        paths.append((target, member.kind))
        if member.kind == "file":
            paths.append((target.with_name(target.name + ".part"), "file"))
        if problem := _first_on_disk(paths, modes):
            problems.append(f"{member.name!r} ({problem})")
    return problems


def _first_on_disk(paths: list[tuple[Path, str]], modes: dict[Path, int | None]) -> str | None:
    for where, want in paths:
        if where not in modes:
            modes[where] = _mode(where)
        mode = modes[where]
        if mode is None or (stat.S_ISDIR(mode) and want == "folder") or (stat.S_ISREG(mode) and want == "file"):
            continue  # a file already there is replaced: an earlier extraction of the same archive left it
        return f"{where} is already there as {_ON_DISK.get(stat.S_IFMT(mode), 'a special file')}"
    return None


def _mode(path: Path) -> int | None:
    try:
        return path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _check_space(path: Path, dest: Path, sizes: list[int]) -> None:
    needed = sum(-(-size // _BLOCK) * _BLOCK for size in sizes)
    disk = next(p for p in (dest, *dest.parents) if p.exists())
    free = shutil.disk_usage(disk).free
    if needed > free:
        raise UserError(
            f"{path} would take {readable_size(needed)} once extracted (the sizes its members declare) but {disk} has "
            f"{readable_size(free)} free; free space there or extract it onto another disk. Nothing was extracted"
        )


class _Written:
    """What one extraction created, so that a failed one can remove exactly that, never what was there before."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.folders: set[Path] = set()

    def folder(self, folder: Path) -> None:
        if folder in self.folders:
            return
        missing = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
        for new in reversed(missing):
            os.mkdir(new)
            self.created.append(new)
        self.folders.add(folder)

    def file(self, target: Path, path: Path, member: _Member, read: Reader) -> None:
        """Write ``member`` to ``target`` through ``<target>.part``, so that only a complete file has its name."""
        self.folder(target.parent)
        part = target.with_name(target.name + ".part")
        self.created.append(part)
        try:
            with read(member) as source, open(part, "wb") as out:
                shutil.copyfileobj(source, out)
        except _DAMAGED as err:
            raise UserError(_damaged(path, err)) from err
        if not target.exists():
            self.created.append(target)
        os.replace(part, target)

    def undo(self) -> None:
        for path in reversed(self.created):
            with suppress(OSError):  # a folder someone else has put files into stays
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


def _refusal(path: Path, problems: list[str]) -> str:
    return (
        f"{path}: refusing to extract it: archive members must be plain files or folders that land inside the folder "
        f"they are extracted to, and {len(problems)} are not: {first_few(problems, 3)}. Nothing was extracted; this "
        "is not the official archive: delete it and download that again"
    )


def _damaged(path: Path, err: BaseException) -> str:
    return (
        f"{path} is damaged ({type(err).__name__}: {err}): an incomplete download or not the official archive. "
        "Nothing was kept from it; delete it and download it again"
    )


def _not_an_archive(path: Path, head: bytes) -> str:
    if not head:
        found = "it is empty (0 bytes)"
    elif head.startswith(b"PK"):
        found = "it starts like a zip but has no zip directory at its end: a download cut short"
    else:
        found = f"it starts with {head!r}"
    return (
        f"{path} is not a zip, tar or gzip archive: {found}. Nothing was extracted; delete it, place the archive "
        "itself there (check its md5) and run again"
    )
