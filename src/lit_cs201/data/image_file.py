"""One image file read as data: opened only if it is a regular file, its pixels counted before any is decoded.

    file, bytes, PIL image or array ──to_uint8──▶ uint8 (channels, height, width)

`to_uint8` is what every image dataset and every prediction decodes with, so both see the same pixels: the file is
opened without waiting (a FIFO or a device is refused, also one put in a listed file's place), its declared size is
checked against a bound, a large JPEG is decoded at a reduced scale, and the EXIF orientation is applied; what is
then done to the pixels is `lit_cs201.data.pixels`'s. `image_header` reads the size a file shows, decoding nothing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from lit_cs201.data.files import UnreadableFileError, open_regular
from lit_cs201.data.pixels import GREY_MODES, RESIZE_MODES, ResizeMode, from_array, size_pair, to_array
from lit_cs201.errors import UserError

#: The largest side an image is decoded to: a classifier's input, not a poster (and a size a file names costs no more).
MAX_SIDE = 4096
#: The most pixels decoded from one file (after a JPEG's reduced-size decoding): a small PNG of one colour can
#: declare 170 million (Pillow's own limit), which take 700 MB decoded, on each of the threads.
MAX_PIXELS = 1 << 26

# EXIF orientations that store the picture turned by 90 degrees: its width on screen is its stored height.
_SIDEWAYS = frozenset({5, 6, 7, 8})


class BadImageError(UserError):
    """An image file that cannot be decoded (not an image, truncated, a decompression bomb, an unusable mode)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot decode {path} ({reason})")
        self.path, self.reason = Path(path), reason


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
            return height, width, image.mode in GREY_MODES
    except Exception as err:  # Pillow's plugins raise many types for damaged files
        raise BadImageError(path, _reason(err)) from None


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
        return to_array(from_array(image), channels, target, resize_mode)
    if isinstance(image, Image.Image):
        upright = ImageOps.exif_transpose(image)  # a copy: the caller's image stays
        return to_array(upright, channels, target, resize_mode)
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
            return to_array(opened, channels, target, resize_mode)
    except BadImageError:
        raise
    except Exception as err:  # Pillow's plugins raise many types for damaged files (OSError, SyntaxError, ...)
        raise BadImageError(name, _reason(err)) from None


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


def _reason(err: Exception) -> str:
    if isinstance(err, UnidentifiedImageError):  # its own text names the open file object, not the file
        return "not an image Pillow can identify"
    return str(err) or type(err).__name__
