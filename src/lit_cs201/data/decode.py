"""Image files to uint8 arrays, decoded once into a memory-mapped cache: the one decoder of every image dataset.

    files ──to_uint8 (threads)──▶ uint8 (N, C, H, W) ──▶ <cache>/<name>_<C>x<H>x<W>_<fingerprint>.npy ──▶ np.load(mmap)

`to_uint8` turns one image (a file, a PIL image or an array) into ``(channels, height, width)`` uint8: EXIF
orientation applied, transparency shown over white, converted to greyscale or RGB, resized once. The datamodules
decode their files with it and predictions on new files should too, so both see the same pixels.

`cached_images` decodes a list of files on all cores into a ``.npy`` cache and memory-maps it afterwards, so
decoding is paid once and a dataset larger than memory still trains. The cache's name holds a fingerprint of the
file list (paths, labels, sizes, modification times), the target shape and `FORMAT_VERSION`: a folder that changed
since gets a new cache, never the stale one. Files that cannot be decoded are collected and reported together.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps
from tqdm import tqdm

from lit_cs201.errors import StorageError, UserError

#: File name endings (lower case) of the image formats searched for; Pillow reads them all.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Bumped whenever decoding would give other pixels for the same files: caches of older versions are not used.
FORMAT_VERSION = 2
#: Lists at least this long show a progress line while they are decoded.
PROGRESS_FROM = 256
#: Reasons shown in the message about files that cannot be decoded; the rest are counted.
NAMED_BAD = 3

# Modes Pillow opens greyscale files in; "I"/"F" are 16/32-bit integer and float pixels.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# EXIF orientations that store the picture turned by 90 degrees: its width on screen is its stored height.
_SIDEWAYS = frozenset({5, 6, 7, 8})


class BadImageError(UserError):
    """An image file that cannot be decoded (not an image, truncated, a decompression bomb, an unusable mode)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot decode {path} ({reason})")
        self.path, self.reason = Path(path), reason


def size_pair(size: int | Sequence[int], name: str = "image_size") -> tuple[int, int]:
    """``size`` as (height, width); an int is a square."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise UserError(f"{name} must be a positive int or [height, width], got {size!r}")
    return pair[0], pair[1]


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored), read from the header without decoding any pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow would decode the whole PNG looking for an eXIf chunk after the pixels
    return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def image_header(path: str | os.PathLike[str]) -> tuple[int, int, bool]:
    """(height, width, greyscale) of an image file as `to_uint8` shows it, from the file's header alone.

    Palette images count as colour. Raises `BadImageError` for a file Pillow cannot identify.
    """
    try:
        with Image.open(path) as image:  # lazy: reads the header, decodes nothing
            width, height = image.size
            if _orientation(image) in _SIDEWAYS:
                width, height = height, width
            return height, width, image.mode in _GREY_MODES
    except Exception as err:  # Pillow's plugins raise many types for damaged files
        raise BadImageError(path, _reason(err)) from None


def _reason(err: Exception) -> str:
    return str(err) or type(err).__name__


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit ("I;16", "I") or float ("F") greyscale image as 8-bit "L"."""
    # Pillow's own convert("L") clips such values at 255, which turns most 16-bit images white.
    values = np.asarray(image, dtype=np.float32)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1 else 1.0  # float images are in [0, 1] or [0, 255]
    else:
        scale = 255 / 65535
    return Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8))


def _convert(image: Image.Image, channels: int) -> Image.Image:
    mode = "L" if channels == 1 else "RGB"
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _eight_bit(image)
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        # Transparent pixels hold arbitrary colours (often black): show them as image viewers do, over white.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode == mode else image.convert(mode)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"image arrays must be (height, width) or (height, width, 1|3|4), got {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))  # "L", "RGB" or "RGBA" from the shape


def _finish(image: Image.Image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    image = _convert(image, channels)
    if size is not None and image.size != (size[1], size[0]):
        # Bilinear with Pillow's antialiasing, as torchvision's Resize on PIL images.
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return np.ascontiguousarray(array[None] if channels == 1 else array.transpose(2, 0, 1))


def to_uint8(
    image: str | os.PathLike[str] | Image.Image | np.ndarray,
    channels: int = 3,
    size: int | Sequence[int] | None = None,
) -> np.ndarray:
    """One image as a uint8 array ``(channels, height, width)``, exactly as the image datamodules decode files.

    The image is turned upright by its EXIF orientation, transparent parts are shown over white, 16-bit
    greyscale is scaled to 8 bits, the image is converted to greyscale (ITU-R 601 luma, Pillow's "L") or RGB, and
    resized to ``size`` (bilinear, antialiased; the aspect ratio is not kept). A JPEG larger than twice ``size``
    is decoded at 1/2, 1/4 or 1/8 scale first (Pillow's draft mode), which makes a phone photo several times faster.

    Args:
        image: An image file in any format Pillow reads, a PIL image, or a uint8 array (height, width) or
            (height, width, channels) with 1, 3 (RGB) or 4 (RGBA) channels.
        channels: 1 for greyscale, 3 for RGB.
        size: Output size, an int for a square or (height, width); None keeps the image's own size.

    Raises:
        BadImageError: (a `UserError`) for a file that cannot be decoded; its ``reason`` says why.
        ValueError: for ``channels`` other than 1 or 3, or an array of another type or shape.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    target = None if size is None else size_pair(size, "size")
    if isinstance(image, np.ndarray):
        return _finish(_from_array(image), channels, target)
    if isinstance(image, Image.Image):
        return _finish(ImageOps.exif_transpose(image), channels, target)  # a copy: the caller's image stays
    try:
        with Image.open(image) as opened:
            if target is not None:
                height, width = target
                if _orientation(opened) in _SIDEWAYS:  # draft sizes are in stored pixels
                    height, width = width, height
                # Only the JPEG decoder implements draft; it picks the smallest scale still at least this large.
                opened.draft("L" if channels == 1 else "RGB", (width, height))
            ImageOps.exif_transpose(opened, in_place=True)  # decodes the pixels
            return _finish(opened, channels, target)
    except Exception as err:  # Pillow's plugins raise many types for damaged files (OSError, SyntaxError, ...)
        raise BadImageError(image, _reason(err)) from None


def find_images(folder: str | os.PathLike[str], suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder``, searched recursively, in sorted order of their paths.

    Hidden files and folders (a name starting with ".") and files without one of ``suffixes`` (lower case;
    matched in any case) are ignored: ``.txt``, ``Thumbs.db``, ``desktop.ini``, ``.DS_Store``.
    """
    found: list[Path] = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # in place: os.walk then skips the hidden ones
        found += [
            Path(top) / name
            for name in sorted(names)
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes
        ]
    return found


def default_workers() -> int:
    # Pillow releases the GIL while it decodes and resizes, so threads help where cores are free; beyond a few,
    # reading the files and the Python work per image are the limit.
    return min(8, os.cpu_count() or 1)


def _decode_rows(
    files: Sequence[Path | Image.Image | np.ndarray], out: np.ndarray, first: int, size: tuple[int, int] | None
) -> dict[int, str]:
    """Decode ``files`` into the rows of ``out``; a file that fails leaves zeros, and its index and reason."""
    bad: dict[int, str] = {}
    channels, height, width = out.shape[1:]
    for i, path in enumerate(files):
        try:
            row = to_uint8(path, channels, size)
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
) -> Iterator[tuple[np.ndarray, dict[int, str]]]:
    """Decode ``files`` (or PIL images, or uint8 arrays) in order on ``workers`` threads, as uint8 chunks (n, C, H, W).

    Each chunk comes with the files of it that could not be decoded (their index in ``files`` -> reason); their
    rows are zeros. ``shape`` is (channels, height, width); with ``resize=False`` an image of another size counts
    as bad rather than being resized. A progress bar goes to stderr when ``label`` is given.
    """
    channels, height, width = shape
    size = (height, width) if resize else None
    workers = workers or default_workers()
    # Chunks of about 64 MiB bound the memory held before they are written out; within one, each thread takes
    # a run of images (one task per small image would cost as much to hand over as to decode) but enough runs
    # for all threads, however large the images.
    window = max(1, (64 << 20) // (channels * height * width))
    bar = tqdm(total=len(files), desc=label, unit=" images", disable=not label)
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
            )
            yield out, {index: reason for bad in found for index, reason in bad.items()}
            bar.update(len(part))


def fingerprint(
    root: Path, files: Sequence[Path], labels: Sequence[int], shape: Sequence[int], resize: bool = True
) -> str:
    """Hash of what a cache holds: the files (path under ``root``, label, size, modification time), the shape.

    Any change to the folder (a file added, removed, renamed, relabelled or rewritten) changes it.
    """
    digest = hashlib.sha256(f"lit-cs201 decode cache {FORMAT_VERSION} {tuple(shape)} resize={resize}\n".encode())
    for path, label in zip(files, labels, strict=True):
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def bad_images_message(files: Sequence[Path], bad: dict[int, str], hint: str) -> str:
    """One line naming the first few files that cannot be decoded, with why, and how many there are."""
    named = [f"{files[i]} ({bad[i]})" for i in sorted(bad)[:NAMED_BAD]]
    if len(bad) == 1:
        return f"cannot decode {named[0]}; {hint}"
    more = f" and {len(bad) - NAMED_BAD} more" if len(bad) > NAMED_BAD else ""
    return f"cannot decode {len(bad)} of {len(files)} images: {', '.join(named)}{more}; {hint}"


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists."""
    return next(p for p in (folder, *folder.parents) if p.exists())


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start a cache of ``needed`` bytes in ``folder`` where the disk does not have them."""
    free = shutil.disk_usage(_existing(folder)).free
    if needed > free:
        raise StorageError(
            f"the decode cache in {folder} needs {needed / 2**30:.2f} GiB but its disk has {free / 2**30:.2f} GiB "
            "free; free up space there, or decode to a smaller image size"
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
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


def _write_skipped(path: Path, bad: dict[int, str]) -> None:
    """The files a cache left out, beside it (written before the cache itself appears)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
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
) -> Decoded:
    """The decoded images of ``files``, memory-mapped from ``cache_dir``; decoded and cached first if needed.

    Args:
        files: Image files, in the order of the rows.
        labels: Label of each file; part of the fingerprint, so a relabelled folder gets a new cache.
        shape: (channels, height, width) of every decoded image.
        cache_dir: Folder of the cache files ``<name>_<C>x<H>x<W>_<fingerprint>.npy``; a previous cache of
            ``name`` there is deleted once the new one is complete.
        name: What the files are (e.g. the split, ``train``), for the file name and the progress line.
        root: Folder the fingerprint takes the files' paths relative to (so the folder can move).
        resize: Resize images to ``shape``; False refuses an image of another size as a bad one.
        skip_bad: Leave out files that cannot be decoded (``Decoded.skipped`` says which) instead of refusing.
        hint: What to do about files that cannot be decoded, the end of the error message.

    Raises:
        UserError: naming the first few files that cannot be decoded and their count, unless ``skip_bad``.
        StorageError: where the disk has less free space than the cache needs (the message gives both).

    Where the cache cannot be written (a read-only shared dataset), the images are decoded into memory instead,
    every time, with a warning.
    """
    shape = (len(files), *(int(s) for s in shape))
    channels, height, width = shape[1:]
    path = cache_dir / f"{name}_{channels}x{height}x{width}_{fingerprint(root, files, labels, shape[1:], resize)}.npy"
    cached = _open_cache(path, shape)
    if cached is not None:
        images, bad = cached
        if bad and not skip_bad:
            raise UserError(bad_images_message(files, bad, hint))
        return Decoded(images, bad)

    show = len(files) >= PROGRESS_FROM
    bad: dict[int, str] = {}

    def chunks(label: str) -> Iterator[np.ndarray]:
        for chunk, found in decode_images(files, shape[1:], resize, label=label if show else ""):
            bad.update(found)
            yield chunk

    def accept() -> None:  # before the cache appears: a file that cannot be decoded stops it, unless skipped
        if bad and not skip_bad:
            raise UserError(bad_images_message(files, bad, hint))
        if bad:
            _write_skipped(_skipped_path(path), bad)

    if os.access(_existing(cache_dir), os.W_OK):
        check_free_space(cache_dir, 128 + math.prod(shape))  # 128: the .npy header
        try:
            _write_cache(path, shape, chunks(f"decoding {name}/ images (once; cached in {cache_dir})"), accept)
        except OSError as err:
            problem = str(err)
        else:
            for stale in cache_dir.glob(f"{name}_*"):  # the cache of the folder as it was before it changed
                if stale not in (path, _skipped_path(path)):
                    stale.unlink(missing_ok=True)
            return Decoded(np.load(path, mmap_mode="c", allow_pickle=False), bad)
    else:
        problem = "not writable"
    warnings.warn(
        f"cannot write the decode cache in {cache_dir} ({problem}); decoding in memory, every run", stacklevel=2
    )
    bad.clear()
    images = np.empty(shape, dtype=np.uint8)
    start = 0
    for chunk in chunks(f"decoding {name}/ images"):
        images[start : start + len(chunk)] = chunk
        start += len(chunk)
    if bad and not skip_bad:
        raise UserError(bad_images_message(files, bad, hint))
    return Decoded(images, bad)
