"""Fetch a dataset's raw files once: use what is on disk, else an archive the user placed, else download it.

Every archive is checked against its md5 before it is extracted (`lit_cs201.data.archives`, which refuses one whose
members would land outside their folder). When nothing works (no network, as on many course machines), the error
names the file, its URL, its md5 and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from lit_cs201.data.archives import extract
from lit_cs201.errors import UserError


@dataclass(frozen=True)
class Archive:
    """A downloadable archive: mirrors of one file with a known md5, and the files it extracts to."""

    filename: str
    md5: str
    urls: tuple[str, ...]
    provides: tuple[str, ...]

    def missing(self, folder: Path) -> list[str]:
        return [name for name in self.provides if not (folder / name).is_file()]


def ensure_archive(
    archive: Archive, archive_dir: Path, extract_dir: Path, download: bool, read_only: bool = False
) -> None:
    """Make the files of ``archive`` exist in ``extract_dir``, from ``archive_dir/archive.filename`` if needed;
    ``read_only``: only check that they do, writing nothing."""
    if not archive.missing(extract_dir):
        return
    if read_only:
        raise UserError(
            f"{', '.join(archive.missing(extract_dir))} not found in {extract_dir}, a data folder that is only read "
            "here (nothing is downloaded or extracted into it); give the folder that holds the dataset as data_dir"
        )
    path = fetch_archive(archive, archive_dir, download)
    extract(path, extract_dir)
    if archive.missing(extract_dir):
        raise UserError(f"{path} did not contain {', '.join(archive.missing(extract_dir))}")


def fetch_archive(archive: Archive, folder: Path, download: bool) -> Path:
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
