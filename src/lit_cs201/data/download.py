"""Fetch a dataset's raw files once: use what is on disk, else an archive the user placed, else download it.

Every archive is checked against its md5 before it is extracted, and refused before anything is written if a member
would land outside the target folder (an absolute path, ``..``) or is a link. When nothing works (no network, as on
many course machines), the error names the file, its URL, its md5 and where to put it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lit_cs201.errors import UserError, first_few


@dataclass(frozen=True)
class Archive:
    """A downloadable archive: mirrors of one file with a known md5, and the files it extracts to."""

    filename: str
    md5: str
    urls: tuple[str, ...]
    provides: tuple[str, ...]

    def missing(self, folder: Path) -> list[str]:
        return [name for name in self.provides if not (folder / name).is_file()]


def ensure_archive(archive: Archive, archive_dir: Path, extract_dir: Path, download: bool) -> None:
    """Make the files of ``archive`` exist in ``extract_dir``, from ``archive_dir/archive.filename`` if needed."""
    if not archive.missing(extract_dir):
        return
    path = fetch(archive, archive_dir, download)
    extract(path, extract_dir)
    if archive.missing(extract_dir):
        raise UserError(f"{path} did not contain {', '.join(archive.missing(extract_dir))}")


def fetch(archive: Archive, folder: Path, download: bool) -> Path:
    """``folder/archive.filename`` with its md5 checked; downloaded first if it is missing and ``download`` is on."""
    path = folder / archive.filename
    if path.is_file():
        found = md5(path)
        if found != archive.md5:
            raise UserError(
                f"{path}: md5 is {found}, expected {archive.md5}: the file is incomplete or not the official archive. "
                f"Nothing was extracted; delete it and download it again from {archive.urls[0]}"
            )
        return path
    if not download:
        raise UserError(_missing_message(archive, path, "download is off"))
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    failure = _download(archive, path)
    if failure is not None:
        for parent in created:  # leave the disk as it was: no empty folders
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        raise UserError(_missing_message(archive, path, f"download failed: {failure}"))
    return path


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(archive: Archive, path: Path) -> str | None:
    """Try each mirror until one gives the right md5, through ``<path>.part``; None on success, else the last error."""
    from torchvision.datasets.utils import download_url  # imports torch, which takes seconds: only when downloading

    part = path.with_name(path.name + ".part")
    failure = None
    for url in archive.urls:
        part.unlink(missing_ok=True)  # an interrupted download is started again
        try:
            download_url(url, str(path.parent), part.name)
        except Exception as err:  # network errors come in many types (URLError, OSError, HTTP errors, ...)
            failure = f"{url}: {type(err).__name__}: {err}"
            continue
        found = md5(part)
        if found == archive.md5:
            os.replace(part, path)  # the archive appears only once it is complete and right
            return None
        failure = f"{url} gave a file with md5 {found}, expected {archive.md5}"
    part.unlink(missing_ok=True)
    return failure


def _missing_message(archive: Archive, path: Path, reason: str) -> str:
    return (
        f"{', '.join(archive.missing(path.parent))} not found in {path.parent} ({reason}). "
        f"Download {archive.urls[0]} (md5 {archive.md5}) and place it at {path}, then run again"
    )


_DRIVE = re.compile(r"[A-Za-z]:")


def extract(path: Path, dest: Path, prefix: str = "") -> None:
    """Extract the members of a zip or tar archive whose names start with ``prefix`` into ``dest``, without the
    prefix; a single gzip-compressed file (``x.gz``) becomes ``dest/x``.

    An archive holding a member with an absolute path, ``..`` or a link is refused before anything is written.
    """
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [(i.filename, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i) for i in archive.infolist()]
        read = archive.open
    elif tarfile.is_tarfile(path):
        archive = tarfile.open(path)
        members = [(m.name, m.isdir(), not (m.isfile() or m.isdir()), m) for m in archive.getmembers()]
        read = archive.extractfile
    else:
        dest.mkdir(parents=True, exist_ok=True)
        with gzip.open(path) as source, open(dest / path.stem, "wb") as out:
            shutil.copyfileobj(source, out)
        return
    with archive:
        unsafe = [
            name
            for name, _, link, _ in members
            if link or name.startswith("/") or "\\" in name or _DRIVE.match(name) or ".." in name.split("/")
        ]
        if unsafe:
            raise UserError(
                f"{path} holds {len(unsafe)} members with an absolute path, '..' or a link ({first_few(unsafe)}); "
                "refusing to extract it. Nothing was extracted"
            )
        dest.mkdir(parents=True, exist_ok=True)
        wanted = [m for m in members if m[0].startswith(prefix)]
        for name, is_dir, _, member in tqdm(wanted, f"extracting {path.name}", unit=" files"):
            target = dest / name[len(prefix) :]
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with read(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
