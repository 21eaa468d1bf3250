"""Image files to uint8 arrays: the one decoder of every image dataset and of predictions.

    files ──to_uint8 (threads)──▶ uint8 (N, C, H, W)

`to_uint8` turns one image (a file, a PIL image or an array) into ``(channels, height, width)`` uint8: EXIF
orientation applied, transparent parts filled with the colour that contrasts with what is drawn, converted to
greyscale or RGB, resized once (stretched, or its centre cut to the size's aspect ratio: `ResizeMode`). The
datamodules decode their files with it and predictions on new files should too, so both see the same pixels. Only
regular files are read: a FIFO or a device (which could block for ever or never end) is refused, also when it is
put in a listed file's place, and `find_images` does not list one.

`decode_images` decodes a list of them on all cores; `lit_cs201.data.cache` keeps the result on disk.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args

import numpy as np
from PIL import ExifTags, Image, ImageChops, ImageOps, ImageStat, UnidentifiedImageError

from lit_cs201.data.files import UnreadableFileError, listable, open_regular
from lit_cs201.errors import UserError

#: File name endings (lower case) of the image formats searched for; Pillow reads them all.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Bumped whenever decoding would give other pixels for the same files: caches of older versions are not used.
FORMAT_VERSION = 3
#: The largest side an image is decoded to: a classifier's input, not a poster (and a size a file names costs no more).
MAX_SIDE = 4096
#: The most pixels decoded from one file (after a JPEG's reduced-size decoding): a small PNG of one colour can
#: declare 170 million (Pillow's own limit), which take 700 MB decoded, on each of the threads.
MAX_PIXELS = 1 << 26
#: How an image of another aspect ratio than the size it is decoded to is resized: ``crop`` scales it to cover the
#: size and keeps the centre (nothing distorted, the edges lost), ``stretch`` scales each side on its own.
ResizeMode = Literal["crop", "stretch"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)
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


def _open_image(path: str | os.PathLike[str]) -> BinaryIO:
    try:
        return open_regular(path)
    except UnreadableFileError as err:
        raise BadImageError(path, str(err)) from None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored), read from the header without decoding any pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # Pillow would decode the whole PNG looking for an eXIf chunk after the pixels
    return int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def image_header(path: str | os.PathLike[str]) -> tuple[int, int, bool]:
    """(height, width, greyscale) of an image file as `to_uint8` shows it, from the file's header alone.

    Palette images count as colour. Raises `BadImageError` for a file Pillow cannot identify, and for one that is
    not a regular file.
    """
    file = _open_image(path)
    try:
        with file, Image.open(file) as image:  # lazy: reads the header, decodes nothing
            width, height = image.size
            if _orientation(image) in _SIDEWAYS:
                width, height = height, width
            return height, width, image.mode in _GREY_MODES
    except Exception as err:  # Pillow's plugins raise many types for damaged files
        raise BadImageError(path, _reason(err)) from None


def _reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):  # its own text names the open file object, not the file
        return "not an image Pillow can identify"
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
        # Transparent pixels hold arbitrary colours (often black): fill them with a backdrop instead.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _backdrop(rgba)), rgba)
    return image if image.mode == mode else image.convert(mode)


def _backdrop(rgba: Image.Image) -> tuple[int, int, int, int]:
    """Black behind a drawing that is mostly light, else white (as image viewers show transparency).

    Over white, a white digit on a transparent background (as drawing programs and canvases export them) would
    vanish into an all-white image; black keeps it visible, as MNIST shows digits.
    """
    # The mean brightness (Pillow's "L") weighted by opacity, from 8-bit images summed in C: a large photo costs
    # no float copy of its pixels.
    alpha = rgba.getchannel("A")
    opacity = ImageStat.Stat(alpha).sum[0]
    if opacity == 0:
        return 255, 255, 255, 255  # nothing drawn
    weighted = ImageChops.multiply(rgba.convert("L"), alpha)  # brightness x opacity / 255
    light = ImageStat.Stat(weighted).sum[0] / opacity > 0.5
    return (0, 0, 0, 255) if light else (255, 255, 255, 255)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"image arrays must be (height, width) or (height, width, 1|3|4), got {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))  # "L", "RGB" or "RGBA" from the shape


def _crop_box(width: int, height: int, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The centred box of a ``width`` x ``height`` image with the aspect ratio of ``size`` (height, width), in
    fractional pixels; None where that is the whole image."""
    if width * size[0] == height * size[1]:
        return None
    if width * size[0] > height * size[1]:  # wider than the size: cut the sides
        kept = height * size[1] / size[0]
        return (width - kept) / 2, 0.0, (width + kept) / 2, float(height)
    kept = width * size[0] / size[1]
    return 0.0, (height - kept) / 2, float(width), (height + kept) / 2


def _finish(image: Image.Image, channels: int, size: tuple[int, int] | None, resize_mode: str) -> np.ndarray:
    image = _convert(image, channels)
    if size is not None and image.size != (size[1], size[0]):
        # Bilinear with Pillow's antialiasing, as torchvision's Resize on PIL images; a crop resamples only its box,
        # in the same one pass.
        box = _crop_box(*image.size, size) if resize_mode == "crop" else None
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(image)
    return np.ascontiguousarray(array[None] if channels == 1 else array.transpose(2, 0, 1))


def to_uint8(
    image: str | os.PathLike[str] | Image.Image | np.ndarray | bytes,
    channels: int = 3,
    size: int | Sequence[int] | None = None,
    max_pixels: int = MAX_PIXELS,
    resize_mode: ResizeMode = "stretch",
) -> np.ndarray:
    """One image as a uint8 array ``(channels, height, width)``, exactly as the image datamodules decode files.

    The image is turned upright by its EXIF orientation, transparent parts are filled with black where what is
    drawn (its opaque pixels, weighted by their opacity) is mostly light, else with white (so a white digit on a
    transparent background comes out as MNIST's white on black, a logo in black ink as black on white), 16-bit
    greyscale is scaled to 8 bits, the image is converted to greyscale (ITU-R 601 luma, Pillow's "L") or RGB, and
    resized to ``size`` (bilinear, antialiased) as ``resize_mode`` says. A JPEG larger than twice ``size`` is
    decoded at 1/2, 1/4 or 1/8 scale first (Pillow's draft mode), which makes a phone photo several times faster.

    Args:
        image: An image file in any format Pillow reads (or its bytes), a PIL image, or a uint8 array (height,
            width) or (height, width, channels) with 1, 3 (RGB) or 4 (RGBA) channels.
        channels: 1 for greyscale, 3 for RGB.
        size: Output size, an int for a square or (height, width); None keeps the image's own size.
        max_pixels: The most pixels a file may hold (after a JPEG's reduced-size decoding), checked before any is
            decoded: decoding takes up to 16 bytes a pixel.
        resize_mode: For an image of another aspect ratio than ``size``: ``stretch`` scales each side on its own
            (all of the image kept, distorted); ``crop`` scales it to cover ``size`` and keeps the centre (nothing
            distorted, the edges lost), resampling only that box.

    Raises:
        BadImageError: (a `UserError`) for a file that cannot be decoded, or that is not a regular file (a FIFO,
            a device, a link that leads nowhere); its ``reason`` says why.
        ValueError: for ``channels`` other than 1 or 3, a ``resize_mode`` not in `RESIZE_MODES`, or an array of
            another type or shape.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}")
    target = None if size is None else size_pair(size, "size")
    if isinstance(image, np.ndarray):
        return _finish(_from_array(image), channels, target, resize_mode)
    if isinstance(image, Image.Image):
        upright = ImageOps.exif_transpose(image)  # a copy: the caller's image stays
        return _finish(upright, channels, target, resize_mode)
    # The bytes of a file (an upload) are read as a file is: the same pixel bound, draft mode and EXIF turn.
    file = io.BytesIO(image) if isinstance(image, bytes | bytearray) else _open_image(image)
    name = "<upload>" if isinstance(image, bytes | bytearray) else image
    try:
        with file, Image.open(file) as opened:
            if target is not None:
                height, width = target
                if _orientation(opened) in _SIDEWAYS:  # draft sizes are in stored pixels
                    height, width = width, height
                # Only the JPEG decoder implements draft; it picks the smallest scale still at least this large on
                # both sides. A crop needs no more: its box spans the side that sets the scale, so it keeps the size.
                opened.draft("L" if channels == 1 else "RGB", (width, height))
            if opened.width * opened.height > max_pixels:  # before any pixel is decoded
                raise BadImageError(
                    name, f"{opened.width}x{opened.height} pixels to decode, more than the {max_pixels:,} read at most"
                )
            ImageOps.exif_transpose(opened, in_place=True)  # decodes the pixels
            return _finish(opened, channels, target, resize_mode)
    except BadImageError:
        raise
    except Exception as err:  # Pillow's plugins raise many types for damaged files (OSError, SyntaxError, ...)
        raise BadImageError(name, _reason(err)) from None


def find_images(folder: str | os.PathLike[str], suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``folder``, searched recursively, in sorted order of their paths.

    Hidden files and folders (a name starting with ".") and files without one of ``suffixes`` (lower case;
    matched in any case) are ignored: ``.txt``, ``Thumbs.db``, ``desktop.ini``, ``.DS_Store``; so are FIFOs,
    devices and sockets, and links to them (see `listable`). As with `os.walk`, linked folders are not entered (a
    link to a folder above would loop) and a folder that cannot be listed is passed over.
    """
    found: list[Path] = []
    pending = [Path(folder)]
    while pending:  # depth first, files before subfolders: the order of os.walk
        files, subfolders = _scan(pending.pop(), suffixes)
        found += files
        pending += reversed(subfolders)
    return found


def _scan(folder: Path, suffixes: frozenset[str]) -> tuple[list[Path], list[Path]]:
    """The image files and the subfolders to search of ``folder``, each sorted by name."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return [], []
    files: list[Path] = []
    subfolders: list[Path] = []
    for entry in entries:
        # The listing tells plain files and folders apart without a system call; only links are followed (a loop
        # raises there, which DirEntry.is_dir does not catch).
        linked = entry.is_symlink()
        if not linked and entry.is_dir(follow_symlinks=False):
            subfolders.append(folder / entry.name)
        elif os.path.splitext(entry.name)[1].lower() in suffixes:
            if listable(entry.path) if linked else entry.is_file(follow_symlinks=False):
                files.append(folder / entry.name)
    return files, subfolders


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
