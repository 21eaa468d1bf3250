"""What a prediction reads, without torch: the files a ``predict_path`` names, and the inversion rule.

    files, folders, globs ──expand_paths──▶ image files ──decode (lit_cs201.data.decode)──▶ uint8 (N, C, H, W)
        ──invert (the checkpoint's rule)──▶ the pixels the model is given

`lit_cs201.predict` and ``lit-cs201 predict`` apply the rule in numpy; an exported model applies the same rule inside
its graph (`lit_cs201.deploy.export`), on the same integer sums, so both invert exactly the same images.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from lit_cs201.data.files import file_kind, find_images, listable
from lit_cs201.errors import UserError

#: How the colours of images to predict are inverted: ``light_background`` inverts an image darker in its centre
#: than on its border (a digit in ink on paper, for a model of light digits on black), as ``invert: auto`` does for
#: such datasets.
Inversion = Literal["never", "always", "light_background"]


def expand_paths(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], suffixes: frozenset[str]
) -> list[Path]:
    """The files ``spec`` names: a file, a folder (searched recursively for ``suffixes``), a glob, or a list of them.

    Hidden files and files of other types inside folders are skipped; a file named directly is kept whatever its
    type, so that a wrong file gets its own error rather than vanishing (a link that leads nowhere too). FIFOs,
    devices and sockets, which could block or never end when read, are skipped inside folders and globs as
    `find_images` skips them. Refuses a ``spec`` that matches nothing, or that names such a file itself.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    found: list[Path] = []
    for item in map(str, specs):
        path = Path(item).expanduser()
        mode = _mode(path)
        if mode is not None and stat.S_ISDIR(mode):
            matches = find_images(path, suffixes)
        elif mode is not None and not stat.S_ISREG(mode):
            raise UserError(
                f"predict_path {item} is {file_kind(mode)}, not a regular file: give files of the types read here "
                f"({', '.join(sorted(suffixes))}), folders of them or a glob"
            )
        elif mode is not None or path.is_symlink():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if listable(p)]
        if not matches:
            what = "holds no files of the types read here" if path.is_dir() else "matches no file"
            raise UserError(f"predict_path {item} {what} ({', '.join(sorted(suffixes))})")
        found += matches
    return list(dict.fromkeys(found))  # a file named twice is predicted once


def none_readable(predict_path: object, errors: Sequence[tuple[str, str]]) -> UserError:
    """The error for a ``predict_path`` none of whose files could be read: the first reasons, and how many."""
    shown = "; ".join(f"{path}: {reason}" for path, reason in errors[:3])
    return UserError(f"predict_path {predict_path}: none of the {len(errors)} files could be read ({shown})")


def _mode(path: Path) -> int | None:
    """``st_mode`` of what ``path`` names, following links; None if nothing is there (or a link leads nowhere)."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a name with a NUL character
        return None


def border_mask(height: int, width: int) -> np.ndarray:
    """The border of an image ``(height, width)`` that `light_background` compares with its centre: an eighth of
    each side (at least one pixel)."""
    border = np.ones((height, width), dtype=bool)
    rows, columns = max(1, height // 8), max(1, width // 8)
    border[rows:-rows, columns:-columns] = False
    return border


def light_background(images: np.ndarray) -> np.ndarray:
    """Which of the uint8 images ``(N, C, H, W)`` are darker in their centre than on their border: a dark figure
    on a light background, as a photo of handwriting on paper is.

    Compared in integers (sums of all channels' values, cross-multiplied by the pixel counts): exact, so the graph of
    an exported model, which computes the same sums, decides every image as this does.
    """
    border = border_mask(*images.shape[-2:])
    n_border = int(border.sum())
    n_inner = border.size - n_border
    totals = images.astype(np.int64).sum(axis=1)  # (N, H, W)
    on_border = totals[:, border].sum(axis=1)
    inside = totals.sum(axis=(1, 2)) - on_border
    return on_border * n_inner > inside * n_border


def inversion(invert: str, dark_background: bool) -> Inversion:
    """The rule a datamodule's ``invert`` setting means for a dataset of light figures on a dark background (or not)."""
    if invert == "always":
        return "always"
    return "light_background" if invert == "auto" and dark_background else "never"


def apply_inversion(images: np.ndarray, rule: Inversion) -> np.ndarray:
    """``images`` (uint8, ``(N, C, H, W)``) with the colours inverted as ``rule`` says; inverted in place."""
    if rule == "always":
        np.subtract(255, images, out=images)
    elif rule == "light_background" and len(images):
        light = light_background(images)
        images[light] = 255 - images[light]
    return images
