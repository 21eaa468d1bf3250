"""From decoded pixels to the array a model sees: 8 bits, transparency filled, greyscale or RGB, resized once.

    PIL image (any mode) or uint8 array ──to_array──▶ uint8 (channels, height, width)

`lit_cs201.data.image_file.to_uint8` opens a file and hands its upright pixels here; what happens to them (16-bit and
float greyscale scaled to 8 bits, a backdrop behind transparent parts, the conversion, the one resize: stretched, or
its centre cut to the size's aspect ratio) is the same whatever the image came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageChops, ImageStat

from lit_cs201.errors import UserError

#: How an image of another aspect ratio than the size it is decoded to is resized: ``crop`` scales it to cover the
#: size and keeps the centre (nothing distorted, the edges lost), ``stretch`` scales each side on its own.
ResizeMode = Literal["crop", "stretch"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)
#: Modes Pillow opens greyscale files in; "I"/"F" are 16/32-bit integer and float pixels.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def size_pair(size: int | Sequence[int], name: str = "image_size") -> tuple[int, int]:
    """``size`` as (height, width); an int is a square."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise UserError(f"{name} must be a positive int or [height, width], got {size!r}")
    return pair[0], pair[1]


def from_array(array: np.ndarray) -> Image.Image:
    """A uint8 array (height, width) or (height, width, 1|3|4) as a PIL image; `ValueError` for another one."""
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"image arrays must be (height, width) or (height, width, 1|3|4), got {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))  # "L", "RGB" or "RGBA" from the shape


def to_array(image: Image.Image, channels: int, size: tuple[int, int] | None, resize_mode: str) -> np.ndarray:
    """``image`` (upright, decoded) as uint8 ``(channels, height, width)``, resized to ``size`` (height, width)."""
    image = _convert(image, channels)
    if size is not None and image.size != (size[1], size[0]):
        # Bilinear with Pillow's antialiasing, as torchvision's Resize on PIL images; a crop resamples only its box,
        # in the same one pass.
        box = _crop_box(*image.size, size) if resize_mode == "crop" else None
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(image)
    return np.ascontiguousarray(array[None] if channels == 1 else array.transpose(2, 0, 1))


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
