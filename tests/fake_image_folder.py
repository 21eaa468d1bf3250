"""A small image folder as users have them: class folders of mixed formats, modes and sizes, nested folders, and
the clutter that file managers leave (``.DS_Store``, ``Thumbs.db``, AppleDouble ``._`` files, notes)::

    <root>/<split>/<class>/<i>.<png|jpg|JPG|bmp|gif|webp|tiff>      every other file inside <class>/more/
    <root>/<split>/<class>/.hidden/ignored.png, ._0.png, notes.txt, Thumbs.db, .DS_Store

Pixels are the class's colour plus noise, so a classifier can learn them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"cat": (220, 40, 40), "dog": (40, 40, 220), "owl": (40, 200, 40)}
# (suffix, PIL format, mode): the formats and modes of real folders, cycled through per class.
KINDS = (
    (".png", "PNG", "RGB"),
    (".jpg", "JPEG", "RGB"),
    (".png", "PNG", "L"),
    (".bmp", "BMP", "RGB"),
    (".gif", "GIF", "P"),
    (".JPG", "JPEG", "L"),
    (".webp", "WEBP", "RGB"),
    (".tiff", "TIFF", "RGB"),
)


def write_image(
    path: Path, colour: tuple[int, int, int], size: tuple[int, int], fmt: str, mode: str, seed: int
) -> None:
    """One image of ``size`` (height, width): ``colour`` plus noise, saved in ``fmt`` and ``mode``."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 12, (*size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def write_image_folder(
    root: Path,
    splits: tuple[str, ...] = ("train", "test"),
    classes: tuple[str, ...] = ("cat", "dog"),
    per_class: int = 8,
    size: tuple[int, int] | None = (12, 16),
    grey: bool = False,
    clutter: bool = True,
) -> list[Path]:
    """Write the folder; ``size=None`` gives every image a size of its own. Returns the image files written."""
    # GIF and WebP files open as palette and RGB images whatever was saved: a greyscale folder has neither.
    kinds = [kind for kind in KINDS if kind[1] not in ("GIF", "WEBP")] if grey else KINDS
    written: list[Path] = []
    for s, split in enumerate(splits):
        for c, name in enumerate(classes):
            folder = root / split / name
            for i in range(per_class):
                suffix, fmt, mode = kinds[i % len(kinds)]
                path = (folder / "more" if i % 2 else folder) / f"{i}{suffix}"
                image_size = size or (9 + i, 11 + 2 * i)
                write_image(path, COLOURS[name], image_size, fmt, "L" if grey else mode, seed=100 * s + 10 * c + i)
                written.append(path)
            if clutter:
                write_image(folder / ".hidden" / "ignored.png", (0, 0, 0), (5, 5), "PNG", "RGB", seed=0)
                (folder / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble metadata, not an image")
                (folder / "notes.txt").write_text("where these photos came from\n")
                (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnail cache")
                (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return written
