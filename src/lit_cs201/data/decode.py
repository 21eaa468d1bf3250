"""The package's one decoder of image files: many files on all cores, and the names of decoding one.

    files ──to_uint8 (threads)──▶ uint8 (N, C, H, W) chunks, the files that failed named

`to_uint8` (`lit_cs201.data.image_file`) turns one image (a file, its bytes, a PIL image or an array) into
``(channels, height, width)`` uint8: EXIF orientation applied, transparent parts filled with the colour that contrasts
with what is drawn, converted to greyscale or RGB, resized once (stretched, or its centre cut to the size's aspect
ratio: `ResizeMode`). The datamodules decode their files with it and predictions on new files should too, so both
see the same pixels. Only regular files are read: a FIFO or a device (which could block for ever or never end) is
refused, also when it is put in a listed file's place, and `find_images` (`lit_cs201.data.files`) does not list one.

Here: `decode_images` decodes a list of them on all cores, `decode_readable` whole, leaving out those that fail;
`lit_cs201.data.cache` keeps the result on disk. The names of one image's decoding are importable from here too,
as the one place that says how the package decodes images.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lit_cs201.data.files import IMAGE_SUFFIXES, find_images
from lit_cs201.data.image_file import MAX_PIXELS, MAX_SIDE, BadImageError, image_header, to_uint8
from lit_cs201.data.pixels import RESIZE_MODES, ResizeMode, size_pair

__all__ = [
    "FORMAT_VERSION",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "PROGRESS_FROM",
    "RESIZE_MODES",
    "BadImageError",
    "ResizeMode",
    "bad_images_message",
    "decode_images",
    "decode_readable",
    "default_workers",
    "find_images",
    "image_header",
    "size_pair",
    "to_uint8",
]

#: Bumped whenever decoding would give other pixels for the same files: caches of older versions are not used.
FORMAT_VERSION = 3
#: Lists at least this long show a progress line while they are decoded.
PROGRESS_FROM = 256
#: Reasons shown in the message about files that cannot be decoded; the rest are counted.
NAMED_BAD = 3


def default_workers() -> int:
    # Pillow releases the GIL while it decodes and resizes, so threads help where cores are free; beyond a few,
    # reading the files and the Python work per image are the limit.
    return min(8, os.cpu_count() or 1)


def _decode_rows(
    files: Sequence[Path | Image.Image | np.ndarray],
    out: np.ndarray,
    first: int,
    size: tuple[int, int] | None,
    max_pixels: int = MAX_PIXELS,
    resize_mode: ResizeMode = "stretch",
) -> dict[int, str]:
    """Decode ``files`` into the rows of ``out``; a file that fails leaves zeros, and its index and reason."""
    bad: dict[int, str] = {}
    channels, height, width = out.shape[1:]
    for i, path in enumerate(files):
        try:
            row = to_uint8(path, channels, size, max_pixels, resize_mode)
            if row.shape[1:] != (height, width):
                raise BadImageError(path, f"{row.shape[2]}x{row.shape[1]} pixels, expected {width}x{height}")
            out[i] = row
        except (BadImageError, ValueError) as err:  # a damaged file; an array of another type or shape
            out[i] = 0
            bad[first + i] = getattr(err, "reason", str(err))
    return bad


def decode_images(
    files: Sequence[Path | Image.Image | np.ndarray],
    shape: Sequence[int],
    resize: bool = True,
    workers: int = 0,
    label: str = "",
    max_pixels: int = MAX_PIXELS,
    resize_mode: ResizeMode = "stretch",
) -> Iterator[tuple[np.ndarray, dict[int, str]]]:
    """Decode ``files`` (or PIL images, or uint8 arrays) in order on ``workers`` threads, as uint8 chunks (n, C, H, W).

    Each chunk comes with the files of it that could not be decoded (their index in ``files`` -> reason); their
    rows are zeros. ``shape`` is (channels, height, width); with ``resize=False`` an image of another size counts
    as bad rather than being resized. A progress bar goes to stderr when ``label`` is given. ``max_pixels`` and
    ``resize_mode``: see `to_uint8`.
    """
    channels, height, width = shape
    size = (height, width) if resize else None
    workers = workers or default_workers()
    # Chunks of about 64 MiB bound the memory held before they are written out; within one, each thread takes
    # a run of images (one task per small image would cost as much to hand over as to decode) but enough runs
    # for all threads, however large the images.
    window = max(1, (64 << 20) // (channels * height * width))
    bar = _progress(len(files), label)
    with ThreadPoolExecutor(workers) as pool, bar:
        for start in range(0, len(files), window):
            part = files[start : start + window]
            out = np.empty((len(part), channels, height, width), dtype=np.uint8)
            run = max(1, min(64, len(part) // (4 * workers)))
            firsts = range(0, len(part), run)
            found = pool.map(
                _decode_rows,
                [part[i : i + run] for i in firsts],
                [out[i : i + run] for i in firsts],
                [start + i for i in firsts],
                [size] * len(firsts),
                [max_pixels] * len(firsts),
                [resize_mode] * len(firsts),
            )
            yield out, {index: reason for bad in found for index, reason in bad.items()}
            bar.update(len(part))


class _NoProgress(contextlib.nullcontext):
    def update(self, n: int) -> None:
        pass


def _progress(total: int, label: str) -> Any:
    """A progress bar on stderr (tqdm's) when ``label`` is given; nothing, and no tqdm needed, otherwise."""
    if not label:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit=" images")


def decode_readable(
    sources: Sequence[Path | Image.Image | np.ndarray | bytes],
    shape: Sequence[int],
    what: str = "images",
    workers: int = 0,
    max_pixels: int = MAX_PIXELS,
    resize_mode: ResizeMode = "stretch",
) -> tuple[np.ndarray, dict[int, str]]:
    """``sources`` decoded whole (`decode_images`, resized as ``resize_mode`` says) as uint8 ``(n, C, H, W)``, those
    that cannot be decoded left out and returned as {index in ``sources``: reason}. A progress line
    ``decoding N <what>`` shows for long lists."""
    label = f"decoding {len(sources)} {what}" if len(sources) >= PROGRESS_FROM else ""
    chunks, errors = [], {}
    decoded = decode_images(
        sources, shape, workers=workers, label=label, max_pixels=max_pixels, resize_mode=resize_mode
    )
    for chunk, bad in decoded:
        chunks.append(chunk)
        errors.update(bad)
    images = np.concatenate(chunks) if chunks else np.zeros((0, *shape), np.uint8)
    return images[[i for i in range(len(sources)) if i not in errors]], errors


def bad_images_message(files: Sequence[Path], bad: dict[int, str], hint: str) -> str:
    """One line naming the first few files that cannot be decoded, with why, and how many there are."""
    named = [f"{files[i]} ({bad[i]})" for i in sorted(bad)[:NAMED_BAD]]
    if len(bad) == 1:
        return f"cannot decode {named[0]}; {hint}"
    more = f" and {len(bad) - NAMED_BAD} more" if len(bad) > NAMED_BAD else ""
    return f"cannot decode {len(bad)} of {len(files)} images: {', '.join(named)}{more}; {hint}"
