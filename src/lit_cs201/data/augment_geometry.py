"""The random ops that move pixels: padded crop, flip and rotation in one gather, Cutout, and RandomResizedCrop.

Each draws its own parameters for every sample of a batch with torch on the batch's device (`RandomOp`), so a call
is a handful of tensor operations however large the batch. The pipelines of `lit_cs201.data.augment` put them
together; the colour op, `lit_cs201.data.augment_colour.ColorJitter`, shares their base.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from torch import Tensor, nn

#: How `CropFlipRotate` fills the border it pads.
PADDING_MODES = ("zeros", "reflect")


def uniform(batch: int, low: float, high: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``batch`` numbers uniform in ``[low, high)`` on ``like``'s device; from ``generator`` if given."""
    device = like.device if generator is None else generator.device
    return torch.rand(batch, generator=generator, device=device).to(like.device) * (high - low) + low


def randint(high: Tensor | int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One whole number in ``[0, high)`` per sample, as float32 ``(B,)``; ``high`` may differ per sample."""
    # rand * high can round up to high itself in float32.
    return (uniform(like.shape[0], 0, 1, like, generator) * high).floor().clamp(max=high - 1)


class RandomOp(nn.Module):
    """A random op: ``draw(x)`` gives per-sample parameters, ``apply(x, params)`` uses them; calling it does both.

    Split in two so that tests can replay the drawn parameters through a reference implementation, sample by sample.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))


class GeometryParams(NamedTuple):
    """Per-sample parameters of :class:`CropFlipRotate`, each shaped ``(B,)``."""

    #: Top row and left column of the crop window in the padded input (whole numbers, float32).
    top: Tensor
    left: Tensor
    #: True where the crop is mirrored left-right.
    flip: Tensor
    #: Counter-clockwise rotation in degrees, or None for no rotation at all.
    angle: Tensor | None


class CropFlipRotate(RandomOp):
    """Padded random crop, then random horizontal flip, then random rotation: one gather for all three.

    The pixels of torchvision's ``RandomCrop((H, W), padding, padding_mode=padding_mode)``,
    ``RandomHorizontalFlip(flip_p)`` and ``RandomRotation(degrees)`` (nearest, zero fill) in that order, with
    parameters drawn per sample; with only ``flip_p`` or ``degrees``, that one transform. Pixels are only moved, so
    it takes uint8 batches as well as float ones. Rounding to the nearest pixel may differ from torchvision's for
    points that land (within float error) halfway between two pixels.

    Args:
        padding: Pixels added on every side before cropping.
        flip_p: Probability of a horizontal flip.
        degrees: Rotation angles are uniform in ``[-degrees, degrees]``, or in ``(min, max)``; 0 rotates nothing.
        generator: Source of randomness (tests); None uses torch's global generator of the batch's device.
        padding_mode: ``zeros``, or ``reflect``: the image mirrored at its border without repeating the edge pixel
            (torchvision's and numpy's ``reflect``), which needs ``padding`` smaller than the image.
    """

    def __init__(
        self,
        padding: int = 0,
        flip_p: float = 0.0,
        degrees: float | tuple[float, float] = 0,
        generator: torch.Generator | None = None,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if padding < 0:
            raise ValueError(f"padding must be at least 0, got {padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be a probability, got {flip_p}")
        self.degrees = tuple(map(float, (-degrees, degrees) if isinstance(degrees, int | float) else degrees))
        if self.degrees[0] > self.degrees[1]:
            raise ValueError(f"degrees must be a non-negative number or (min, max), got {degrees!r}")
        self.padding, self.padding_mode, self.flip_p, self.generator = int(padding), padding_mode, flip_p, generator

    def draw(self, x: Tensor) -> GeometryParams:
        top = randint(2 * self.padding + 1, x, self.generator)
        left = randint(2 * self.padding + 1, x, self.generator)
        flip = uniform(x.shape[0], 0, 1, x, self.generator) < self.flip_p
        angle = None if self.degrees == (0.0, 0.0) else uniform(x.shape[0], *self.degrees, x, self.generator)
        return GeometryParams(top, left, flip, angle)

    def apply(self, x: Tensor, params: GeometryParams) -> Tensor:
        batch, channels, height, width = x.shape
        pad = self.padding
        if pad and self.padding_mode == "reflect" and pad >= min(height, width):
            raise ValueError(f"reflect padding of {pad} needs images larger than that, got {height}x{width}")
        if pad:
            x = F.pad(x, (pad,) * 4, mode="reflect" if self.padding_mode == "reflect" else "constant")
        flat = x.reshape(batch, channels, -1)

        # Walk back from each output pixel to the padded-input pixel it shows: undo the rotation (about the window
        # centre, rounding to the nearest window pixel), undo the flip, add the window's offset.
        kw = {"device": x.device, "dtype": torch.float32}
        rows = torch.arange(height, **kw).view(1, height, 1)
        cols = torch.arange(width, **kw).view(1, 1, width)
        if params.angle is not None:
            theta = torch.deg2rad(params.angle.to(**kw)).view(batch, 1, 1)
            cos, sin = theta.cos(), theta.sin()
            cy, cx = (height - 1) / 2, (width - 1) / 2
            # The window turns counter-clockwise on screen (rows grow downwards), so output pixel (y, x) shows the
            # window pixel nearest to (y, x) turned back clockwise about the centre.
            dy, dx = rows - cy, cols - cx
            rows = (cos * dy + sin * dx).add_(cy).round_()  # (B, H, W)
            cols = (cos * dx - sin * dy).add_(cx).round_()
            # Points that leave the window are zero, as when the cropped image is rotated, even where the padded
            # input has pixels there: they read one zero appended to every image.
            outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
        cols = torch.where(params.flip.view(batch, 1, 1), width - 1 - cols, cols)
        index = (rows + params.top.view(batch, 1, 1)) * (width + 2 * pad) + cols + params.left.view(batch, 1, 1)
        if params.angle is not None:
            index.masked_fill_(outside, flat.shape[-1])
            flat = F.pad(flat, (0, 1))
        index = index.to(torch.int64).view(batch, 1, height * width).expand(batch, channels, -1)
        return flat.gather(2, index).view(batch, channels, height, width)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, padding_mode={self.padding_mode}, flip_p={self.flip_p}, degrees={self.degrees}"


class CutoutParams(NamedTuple):
    """Top-left corner of each sample's square, ``(B,)`` each; it may start outside the image (it is clipped)."""

    top: Tensor
    left: Tensor


class Cutout(RandomOp):
    """One ``size`` x ``size`` square of zeros per sample (DeVries & Taylor, 2017).

    By default the centre is uniform over all pixels, as in the paper's code, so squares near the border are
    clipped. With ``inside``, the square lies wholly inside the image, its corner uniform over the places where it
    fits, as in Page's ResNet-9 recipe. After ``Normalize``, zero is the dataset's mean colour.

    Args:
        size: Side of the square in pixels.
        generator: Source of randomness (tests); None uses torch's global generator.
        inside: Keep every square wholly inside the image (images must be at least ``size`` on each side).
    """

    def __init__(self, size: int, generator: torch.Generator | None = None, inside: bool = False) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size, self.generator, self.inside = int(size), generator, inside

    def draw(self, x: Tensor) -> CutoutParams:
        height, width = x.shape[-2:]
        if self.inside:
            if self.size > min(height, width):
                raise ValueError(f"a {self.size}-px square cannot lie inside {height}x{width} images")
            top = randint(height - self.size + 1, x, self.generator)
            return CutoutParams(top, randint(width - self.size + 1, x, self.generator))
        half = self.size // 2
        return CutoutParams(randint(height, x, self.generator) - half, randint(width, x, self.generator) - half)

    def apply(self, x: Tensor, params: CutoutParams) -> Tensor:
        rows = torch.arange(x.shape[-2], device=x.device).view(1, 1, -1, 1)
        cols = torch.arange(x.shape[-1], device=x.device).view(1, 1, 1, -1)
        top, left = params.top.view(-1, 1, 1, 1), params.left.view(-1, 1, 1, 1)
        square = (rows >= top) & (rows < top + self.size) & (cols >= left) & (cols < left + self.size)
        return x * ~square  # on CPU 2x faster than masked_fill

    def extra_repr(self) -> str:
        return f"size={self.size}" + (", inside=True" if self.inside else "")


def _resize_weights(in_size: int, start: Tensor, length: Tensor, out_size: int) -> Tensor:
    """``(B, out_size, in_size)`` bilinear weights that resize the window ``[start, start + length)``.

    Antialiased like ``F.interpolate(..., antialias=True)``: when shrinking, the triangle filter widens by the scale.
    """
    kw = {"device": start.device, "dtype": torch.float32}
    start, length = start.to(**kw).view(-1, 1, 1), length.to(**kw).view(-1, 1, 1)
    scale = length / out_size  # input pixels per output pixel
    centres = (torch.arange(out_size, **kw).view(1, -1, 1) + 0.5) * scale  # (B, out, 1), window coordinates
    pixels = torch.arange(in_size, **kw).view(1, 1, -1) + 0.5 - start  # (B, 1, in), pixel centres
    weights = (1 - (pixels - centres).abs() / scale.clamp_min(1.0)).clamp(min=0)
    weights = weights * ((pixels > 0) & (pixels < length))  # nothing from outside the window
    return weights / weights.sum(dim=-1, keepdim=True)


class CropBoxes(NamedTuple):
    """Per-sample crop boxes of :class:`RandomResizedCrop`, ``(B,)`` each, whole pixels as float32."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor


class RandomResizedCrop(RandomOp, T.RandomResizedCrop):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (bilinear, antialiased), a box per sample.

    Boxes are drawn as torchvision does: up to 10 tries of an area fraction in ``scale`` and a log-uniform
    aspect ratio in ``ratio``, the first box that fits wins, else the whole image cut to the nearest allowed
    ratio, centred. Each box is resized with two matrix products, ``rows @ image @ cols^T``. Takes float
    batches; the weights sum to 1, so normalising before it (on the small input) gives the same result as after.
    ``generator``: source of randomness (tests); None uses torch's global generator.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"scale and ratio must be increasing positive pairs, got {scale} and {ratio}")
        super().__init__(size, scale, ratio, antialias=True)
        self.generator = generator

    def draw(self, x: Tensor) -> CropBoxes:
        batch, _, height, width = x.shape
        area = height * width * uniform(batch * 10, *self.scale, x, self.generator).view(batch, 10)  # 10 tries
        aspect = uniform(batch * 10, *map(math.log, self.ratio), x, self.generator).exp().view(batch, 10)
        box_w, box_h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
        first = fits.int().argmax(dim=1, keepdim=True)  # the first try that fits
        found = fits.any(dim=1)
        fall_w, fall_h = width, height  # torchvision's fallback, centred
        if width / height < self.ratio[0]:
            fall_h = round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            fall_w = round(height * self.ratio[1])
        box_w = torch.where(found, box_w.gather(1, first).squeeze(1), float(fall_w))
        box_h = torch.where(found, box_h.gather(1, first).squeeze(1), float(fall_h))
        top = torch.where(found, randint(height - box_h + 1, x, self.generator), float((height - fall_h) // 2))
        left = torch.where(found, randint(width - box_w + 1, x, self.generator), float((width - fall_w) // 2))
        return CropBoxes(top, left, box_h, box_w)

    def apply(self, x: Tensor, boxes: CropBoxes) -> Tensor:
        batch, channels = x.shape[:2]
        out_h, out_w = self.size
        rows = _resize_weights(x.shape[-2], boxes.top, boxes.height, out_h)  # (B, out_h, H)
        cols = _resize_weights(x.shape[-1], boxes.left, boxes.width, out_w)  # (B, out_w, W)
        x = torch.matmul(rows.unsqueeze(1), x).view(batch, channels * out_h, -1)  # (B, C * out_h, W)
        return torch.bmm(x, cols.transpose(1, 2)).view(batch, channels, out_h, out_w)
