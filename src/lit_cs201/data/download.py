"""Fetch a dataset's raw files once: use what is on disk, else an archive the user placed, else download.

Every archive is checked against its md5 before it is extracted. When nothing works (no network, as on many
course machines), the error names the file, its URL, its md5 and where to put it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import check_integrity, download_url, extract_archive

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


def ensure_archive(archive: Archive, archive_dir: Path, extract_dir: Path, download: bool) -> None:
    """Make the files of ``archive`` exist in ``extract_dir``, from ``archive_dir/archive.filename`` if needed."""
    if not archive.missing(extract_dir):
        return
    path = archive_dir / archive.filename
    if path.is_file():
        if not check_integrity(str(path), archive.md5):
            raise UserError(
                f"{path} is damaged or incomplete (md5 is not {archive.md5}); delete it and download it again "
                f"from {archive.urls[0]}"
            )
    elif download:
        created = _missing_parents(archive_dir)
        failure = _download(archive, archive_dir)
        if failure is not None:
            # Leave the disk as it was: no partial download (ours, never the user's), no empty folders.
            path.unlink(missing_ok=True)
            for folder in created:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise UserError(_missing_message(archive, archive_dir, extract_dir, f"download failed: {failure}"))
    else:
        raise UserError(_missing_message(archive, archive_dir, extract_dir, "download is off"))
    extract_archive(str(path), str(extract_dir))
    if archive.missing(extract_dir):
        raise UserError(f"{path} did not contain {', '.join(archive.missing(extract_dir))}")


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _download(archive: Archive, archive_dir: Path) -> str | None:
    """Try each mirror; None on success, else the last error as text."""
    failure = None
    for url in archive.urls:
        try:
            download_url(url, str(archive_dir), archive.filename, archive.md5)  # raises on a wrong md5 too
            return None
        except Exception as err:  # network errors come in many types (URLError, OSError, HTTP errors, ...)
            failure = f"{url}: {type(err).__name__}: {err}"
    return failure


def _missing_message(archive: Archive, archive_dir: Path, extract_dir: Path, reason: str) -> str:
    return (
        f"{', '.join(archive.missing(extract_dir))} not found in {extract_dir} ({reason}). "
        f"Download {archive.urls[0]} (md5 {archive.md5}) and place it at {archive_dir / archive.filename}, "
        "then run again"
    )
