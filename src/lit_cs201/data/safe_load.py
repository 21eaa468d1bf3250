"""Reading torch files that anyone may have written: tensors and plain values only, bounded, with errors that say why.

A checkpoint or weight file is a pickle; unpickled without ``weights_only``, it can run any code it names. Even
as plain data it may cost without limit: a compressed member of the zip format can inflate to gigabytes, and a
pickle can be made of millions of objects. `load_plain` refuses both before anything is unpickled, in the zip
format torch.save writes and in torch's format from before 1.6 (a sequence of pickles, then the tensors' bytes).
"""

from __future__ import annotations

import pickletools
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from lit_cs201.errors import UserError

#: Largest pickle (the part of a torch file that holds everything but the tensors' bytes) read. A ResNet-152
#: checkpoint with its optimizer state has 160 KB; torch's safe unpickler reads a hostile one at about 1 s per MiB.
MAX_PICKLE_BYTES = 8 << 20


def load_plain(path: Path, what: str, kind: str) -> Any:
    """``torch.load`` of ``path`` with ``weights_only``; a file that is not plain data, not a torch file at all, or
    larger in its pickle than `MAX_PICKLE_BYTES`, is a one-line `UserError` that starts with ``what`` (the option
    that named the file) and names the ``kind`` of file expected.

    Not memory-mapped: torch checks that each tensor's record in the file holds its bytes only when it reads the
    record, and a mapped tensor would take the bytes that follow a short one.
    """
    if zipfile.is_zipfile(path):
        _check_members(path, what, kind)
    else:
        _check_legacy(path, what, kind)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not one of its own
        # weights_only refuses any object beyond tensors and plain containers, naming the global it would import.
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err))
        if unsafe:
            raise UserError(
                f"{what} {path}: holds objects that are not plain data ({unsafe[1]}), so it is not loaded, for "
                "safety: unpickling them could run code; use a file from a source you trust"
            ) from None
        raise UserError(
            f"{what} {path}: not a readable {kind} ({type(err).__name__}); a truncated or partial copy, or not a "
            "file torch.save wrote"
        ) from None


def _check_members(path: Path, what: str, kind: str) -> None:
    """Refuse a zip whose members torch.save would not have written: compressed ones (torch stores every member
    as it is, so none can inflate beyond the file's own size) or a pickle above `MAX_PICKLE_BYTES`."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UserError(f"{what} {path}: not a readable {kind} ({err})") from None
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise UserError(
            f"{what} {path}: holds compressed members ({compressed[0]}, ...), which torch.save never writes, so it "
            f"is not read; not a {kind} torch wrote, or one repacked by another tool"
        )
    pickles = [m for m in members if m.filename.endswith(".pkl")]
    largest = max(pickles, key=lambda m: m.file_size, default=None)
    if largest is not None and largest.file_size > MAX_PICKLE_BYTES:
        raise UserError(
            f"{what} {path}: its settings and structure ({largest.filename}) take {largest.file_size / 2**20:.1f} "
            f"MiB, more than the {MAX_PICKLE_BYTES >> 20} MiB any {kind} needs, so it is not read"
        )


def _check_legacy(path: Path, what: str, kind: str) -> None:
    """Refuse a file in torch's format from before 1.6 whose pickles (five, before the tensors' bytes) run past
    `MAX_PICKLE_BYTES`: read opcode by opcode (`pickletools`), which builds nothing. The tar format of torch before
    0.4 is not read at all."""
    if tarfile.is_tarfile(path):
        raise UserError(f"{what} {path}: in the tar format of torch before 0.4, which is not read; save it again")
    with open(path, "rb") as file:
        try:
            end = _pickles_end(file, count=5)  # magic number, protocol, system information, the object, its keys
        except (ValueError, EOFError, OverflowError):
            return  # not pickles there: torch.load reports the file as unreadable
    if end > MAX_PICKLE_BYTES:
        raise UserError(
            f"{what} {path}: its settings and structure take more than the {MAX_PICKLE_BYTES >> 20} MiB any {kind} "
            "needs, so it is not read"
        )


def _pickles_end(file: BinaryIO, count: int) -> int:
    """Where the first ``count`` pickles of ``file`` end, or a place past `MAX_PICKLE_BYTES` if they run further."""
    for _ in range(count):
        for _ in pickletools.genops(file):
            if file.tell() > MAX_PICKLE_BYTES:
                return file.tell()
    return file.tell()
