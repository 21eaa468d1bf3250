"""Reading torch files that anyone may have written: tensors and plain values only, with errors that say why.

A checkpoint or weight file is a pickle; unpickled without ``weights_only``, it can run any code it names.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from lit_cs201.errors import UserError


def load_plain(path: Path, what: str, kind: str, mmap: bool = False) -> Any:
    """``torch.load`` of ``path`` with ``weights_only``; a file that is not plain data, or not a torch file at all,
    is a one-line `UserError` that starts with ``what`` (the option that named the file) and names the ``kind`` of
    file expected. ``mmap`` reads tensors only when they are used, where the file's format allows it."""
    try:
        # mmap works only on the zip format torch.save writes since torch 1.6.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
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
