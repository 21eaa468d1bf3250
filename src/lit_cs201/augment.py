"""Batched, per-sample random augmentation as tensor ops, run on the device where the model runs.

The DataLoader hands over uint8 batches ``(B, C, H, W)``; a pipeline from :func:`build_augment` turns one into a
normalised float32 batch in ``on_after_batch_transfer``. Every random op draws its own parameters for each sample
of the batch with torch on the batch's device, so one call costs a handful of tensor operations however large the
batch, and the same code runs on CPU and CUDA.

Each random op splits into ``draw(x) -> params`` and ``apply(x, params)``; calling the op does both. The params
are small per-sample tensors (a NamedTuple), which is how the tests check every op against a reference.

Semantics follow torchvision's transforms, with two deliberate differences (see ``docs/augmentation.md``):

* :class:`ColorJitter` applies brightness, contrast, saturation and hue in that fixed order; torchvision draws a
  random order for every image.
* :class:`CropFlipRotate` moves pixels with one gather for padded crop, flip and rotation together. It gives the
  pixels of applying the three in that order, except that nearest-neighbour rounding of the rotation may differ
  from torchvision's for points that land (within float error) halfway between two pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_cs201.errors import UserError

__all__ = [
    "AUGMENT_NAMES",
    "EVAL_PRESET",
    "PADDING_MODES",
    "PRESETS",
    "CenterCrop",
    "ColorJitter",
    "CropBoxes",
    "CropFlipRotate",
    "Cutout",
    "CutoutParams",
    "GeometryParams",
    "JitterParams",
    "Normalize",
    "Pipeline",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "Resize",
    "ToFloat",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "augment_names",
    "build_augment",
]

Size = int | tuple[int, int]
#: How `CropFlipRotate` fills the border it pads.
PADDING_MODES = ("zeros", "reflect")


def _pair(size: Size, name: str) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return int(height), int(width)


def _rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) float32 numbers on ``like``'s device; from ``generator`` (on its own device) if given."""
    if generator is None:
        return torch.rand(shape, device=like.device)
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


def _uniform(
    shape: tuple[int, ...], low: float, high: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    return _rand(shape, like, generator).mul_(high - low).add_(low)


def _randint(high: Tensor | int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One integer in ``[0, high)`` per sample, as float32 ``(B,)``; ``high`` may differ per sample."""
    if not isinstance(high, Tensor):
        # Filled on the device rather than copied from the host: a copy would wait for the GPU's queue.
        high = torch.full((like.shape[0],), float(high), device=like.device)
    # rand * high can round up to high itself in float32.
    return (_rand((like.shape[0],), like, generator) * high).floor_().minimum(high - 1)


# --------------------------------------------------------------------------------------------------------------
# Conversion and normalisation (deterministic)
# --------------------------------------------------------------------------------------------------------------


class ToFloat(nn.Module):
    """uint8 ``[0, 255]`` to float32 ``[0, 1]``, like ``ToTensor``: the one conversion of the pipeline."""

    def forward(self, x: Tensor) -> Tensor:
        return x.to(torch.float32).div_(255)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, like torchvision's ``Normalize``.

    Args:
        mean: One value per channel (or one for all channels).
        std: One value per channel (or one for all channels), all positive.
        inplace: Overwrite the input batch instead of copying it (presets do, after their float conversion).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if not mean or len(mean) != len(std):
            raise ValueError(f"mean and std need the same number of channels, got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mean.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"Normalize has {self.mean.shape[1]} channel statistics, the batch {x.shape[1]}")
        # A module left on the CPU still works on CUDA batches; .to() is free once it has been moved.
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.sub_(mean) if self.inplace else x - mean).div_(std)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


# --------------------------------------------------------------------------------------------------------------
# Geometry: padded crop, horizontal flip, rotation (nearest neighbour), as one gather
# --------------------------------------------------------------------------------------------------------------


class GeometryParams(NamedTuple):
    """Per-sample parameters of :class:`CropFlipRotate`, each shaped ``(B,)``."""

    #: Top row and left column of the crop window in the zero-padded input (whole numbers, float32).
    top: Tensor
    left: Tensor
    #: True where the crop is mirrored left-right.
    flip: Tensor
    #: Counter-clockwise rotation in degrees, or None for no rotation at all.
    angle: Tensor | None


class CropFlipRotate(nn.Module):
    """Padded random crop, then random horizontal flip, then random rotation: one gather for all three.

    The result is the pixels of torchvision's ``RandomCrop(size, padding, padding_mode=padding_mode)``,
    ``RandomHorizontalFlip(flip_p)`` and ``RandomRotation(degrees)`` (nearest, zero fill) applied in that order,
    with parameters drawn per sample. Pixels are only moved, never mixed, so it works on uint8 batches as well as
    float ones; presets run it before the conversion to float so that the gather moves a quarter of the bytes.

    Args:
        size: Output (crop) size ``h`` or ``(h, w)``; None keeps the input size.
        padding: Pixels added on every side before cropping.
        padding_mode: ``zeros``, or ``reflect``: the image mirrored at its border without repeating the edge pixel
            (torchvision's and numpy's ``reflect``), which needs ``padding`` smaller than the image.
        flip_p: Probability of a horizontal flip.
        degrees: Rotation angles are uniform in ``[-degrees, degrees]``, or in ``(min, max)``; 0 rotates nothing.
        generator: Source of randomness (tests); None uses torch's global generator of the batch's device.
    """

    def __init__(
        self,
        size: Size | None = None,
        padding: int = 0,
        flip_p: float = 0.0,
        degrees: float | tuple[float, float] = 0.0,
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
        low, high = (-degrees, degrees) if isinstance(degrees, int | float) else degrees
        low, high = float(low) + 0.0, float(high) + 0.0  # + 0.0 turns -0.0 into 0.0
        if low > high:
            raise ValueError(f"degrees must be a non-negative number or (min, max), got {degrees!r}")
        self.size = None if size is None else _pair(size, "size")
        self.padding = int(padding)
        self.padding_mode = padding_mode
        self.flip_p = float(flip_p)
        self.degrees = (low, high)
        self.generator = generator

    def _out_size(self, x: Tensor) -> tuple[int, int]:
        height, width = x.shape[-2:]
        out_h, out_w = self.size or (height, width)
        if out_h > height + 2 * self.padding or out_w > width + 2 * self.padding:
            raise ValueError(
                f"crop size {(out_h, out_w)} is larger than the padded input {(height, width)} + 2 * {self.padding}"
            )
        return out_h, out_w

    def draw(self, x: Tensor) -> GeometryParams:
        batch = x.shape[0]
        out_h, out_w = self._out_size(x)
        height, width = x.shape[-2] + 2 * self.padding, x.shape[-1] + 2 * self.padding
        no_offset = torch.zeros(batch, device=x.device)  # a window as large as the input: draw nothing
        top = _randint(height - out_h + 1, x, self.generator) if height > out_h else no_offset
        left = _randint(width - out_w + 1, x, self.generator) if width > out_w else no_offset
        if self.flip_p > 0:
            flip = _rand((batch,), x, self.generator) < self.flip_p
        else:
            flip = torch.zeros(batch, dtype=torch.bool, device=x.device)
        angle = None if self.degrees == (0.0, 0.0) else _uniform((batch,), *self.degrees, x, self.generator)
        return GeometryParams(top, left, flip, angle)

    def apply(self, x: Tensor, params: GeometryParams) -> Tensor:
        batch, channels, height, width = x.shape
        out_h, out_w = self._out_size(x)
        pad = self.padding
        if pad and self.padding_mode == "reflect":
            if pad >= min(height, width):
                raise ValueError(f"reflect padding of {pad} needs images larger than that, got {height}x{width}")
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        elif pad:
            x = F.pad(x, (pad, pad, pad, pad))
        pad_h, pad_w = height + 2 * pad, width + 2 * pad

        # Walk back from each output pixel to the padded-input pixel it shows: undo the rotation (about the window
        # centre, rounding to the nearest window pixel), undo the flip, add the window's offset. Whole-pixel
        # coordinates are exact in float32, which is faster than int64 arithmetic on CPU.
        kw = {"device": x.device, "dtype": torch.float32}
        ys = torch.arange(out_h, **kw).view(1, out_h, 1)
        xs = torch.arange(out_w, **kw).view(1, 1, out_w)
        flip = params.flip.to(torch.float32).view(batch, 1, 1)
        sign = 1 - 2 * flip  # column u of the window reads column out_w - 1 - u where flipped
        shift = flip * (out_w - 1) + params.left.view(batch, 1, 1)
        top = params.top.view(batch, 1, 1)
        if params.angle is None:
            # Separable: (B, 1, out_w) columns + (B, out_h, 1) rows.
            index = (ys + top).mul_(pad_w) + (xs * sign + shift)  # (B, out_h, out_w)
        else:
            theta = torch.deg2rad(params.angle.to(**kw)).view(batch, 1, 1)
            cos, sin = theta.cos(), theta.sin()
            cy, cx = (out_h - 1) / 2, (out_w - 1) / 2
            # The output is the window turned counter-clockwise by theta on screen (rows grow downwards), so
            # output pixel (y, x) shows the window pixel nearest to (y, x) turned back clockwise about the centre.
            cols = ((cos * (xs - cx) + cx) - sin * (ys - cy)).round_()  # (B, out_h, out_w)
            rows = ((cos * (ys - cy) + cy) + sin * (xs - cx)).round_()
            # Points that leave the window are zero, as when the cropped image is rotated, even where the padded
            # input has pixels there. Outside: a whole pixel or more beyond (size - 1) / 2 from the centre.
            outside = torch.maximum((cols - cx).abs_().sub_(cx), (rows - cy).abs_().sub_(cy))
            outside = outside.mul_(2).clamp_(0, 1)  # 0/1 floats: bool masks are slow on CPU
            index = rows.add_(top).mul_(pad_w).add_(cols.mul_(sign).add_(shift))
            # Index pad_h * pad_w is one zero appended to every image: "outside".
            index = index.lerp_(torch.full((), pad_h * pad_w, **kw), outside)
        flat = x.reshape(batch, channels, pad_h * pad_w)
        if params.angle is not None:
            flat = F.pad(flat, (0, 1))
        index = index.to(torch.int64).view(batch, 1, out_h * out_w).expand(batch, channels, -1)
        return flat.gather(2, index).view(batch, channels, out_h, out_w)

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))

    def extra_repr(self) -> str:
        parts = {"size": self.size, "padding": self.padding, "flip_p": self.flip_p}
        parts["padding_mode"] = None if self.padding_mode == "zeros" else self.padding_mode
        parts["degrees"] = None if self.degrees == (0.0, 0.0) else self.degrees
        return ", ".join(f"{key}={value}" for key, value in parts.items() if value)


class RandomCrop(CropFlipRotate):
    """torchvision's ``RandomCrop(size, padding, padding_mode=padding_mode)``, an offset per sample.

    Args:
        size: Crop size ``h`` or ``(h, w)``; None keeps the input size (a padded crop is then a random shift).
        padding: Pixels added on every side before cropping.
        generator: Source of randomness (tests); None uses torch's global generator.
        padding_mode: ``zeros`` or ``reflect`` (see `CropFlipRotate`).
    """

    def __init__(
        self, size: Size | None, padding: int = 0, generator: torch.Generator | None = None, padding_mode: str = "zeros"
    ) -> None:
        super().__init__(size=size, padding=padding, generator=generator, padding_mode=padding_mode)


class RandomHorizontalFlip(CropFlipRotate):
    """torchvision's ``RandomHorizontalFlip(p)``, a coin per sample.

    Args:
        p: Probability of mirroring a sample left-right.
        generator: Source of randomness (tests); None uses torch's global generator.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(flip_p=p, generator=generator)


class RandomRotation(CropFlipRotate):
    """torchvision's ``RandomRotation(degrees)`` (nearest, zero fill, about the centre), an angle per sample.

    Args:
        degrees: Angles are uniform in ``[-degrees, degrees]``, or in ``(min, max)``; counter-clockwise positive.
        generator: Source of randomness (tests); None uses torch's global generator.
    """

    def __init__(self, degrees: float | tuple[float, float], generator: torch.Generator | None = None) -> None:
        super().__init__(degrees=degrees, generator=generator)


# --------------------------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------------------------


class JitterParams(NamedTuple):
    """Per-sample factors of :class:`ColorJitter`, each ``(B,)`` or None where that adjustment is off."""

    brightness: Tensor | None
    contrast: Tensor | None
    saturation: Tensor | None
    #: Shift of the hue as a fraction of the colour circle, in ``[-0.5, 0.5]``.
    hue: Tensor | None


def _per_sample(factor: Tensor) -> Tensor:
    return factor.view(-1, 1, 1, 1)


def _grayscale(x: Tensor) -> Tensor:
    """Luma with torchvision's weights, (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)


# The in-place versions below are what ColorJitter chains on its own copy of the batch: on CPU a fresh
# batch-sized temporary per step can cost more than the arithmetic (page faults when memory is handed out anew).


def _brightness_(x: Tensor, factor: Tensor) -> Tensor:
    return x.mul_(_per_sample(factor)).clamp_(0, 1)


def _contrast_(x: Tensor, factor: Tensor) -> Tensor:
    gray = _grayscale(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    factor = _per_sample(factor)
    # factor * x + (1 - factor) * mean; lerp_ towards a per-sample scalar is ~7x slower on CPU.
    return x.mul_(factor).add_(mean * (1 - factor)).clamp_(0, 1)


def _saturation_(x: Tensor, factor: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x
    return x.lerp_(_grayscale(x), 1 - _per_sample(factor)).clamp_(0, 1)


def _is_positive(x: Tensor) -> Tensor:
    """1.0 where ``x > 0``, else 0.0, for ``x >= 0``, in place and without bool tensors.

    Exact unless ``x`` is subnormal (below 2**-126); for the channel differences this is used on, that only
    happens in pixels so dark that every hue gives the same colour within 1e-30.
    """
    return x.mul_(2.0**126).clamp_(max=1)


def _hue_(x: Tensor, shift: Tensor) -> Tensor:
    """Turn the HSV hue by ``shift`` turns per sample, keeping HSV value and saturation; see `adjust_hue`."""
    if x.shape[1] != 3:
        return x
    r, g, b = x.unbind(1)
    high, low = x.amax(dim=1), x.amin(dim=1)  # (B, H, W)
    chroma = high - low
    inv = chroma.clamp_min(1e-12).reciprocal_()  # gray pixels: every numerator below is 0 as well
    # Hue in sixths of a turn, from the largest channel (ties go to red, then green, as in torchvision):
    # (g - b) / chroma when red is largest, 2 + (b - r) / chroma for green, 4 + (r - g) / chroma for blue.
    # The choice is made with 0/1 float weights: bool masks and torch.where are several times slower on CPU.
    hue = torch.sub(g, b).mul_(inv)
    hue_g = torch.sub(b, r).mul_(inv).add_(2)
    hue_b = torch.sub(r, g).mul_(inv).add_(4)
    hue_g = hue_g.lerp_(hue_b, _is_positive(high - g))  # green unless green is below the max
    hue = hue.lerp_(hue_g, _is_positive(high - r))  # red unless red is below the max
    hue = hue.add_(shift.view(-1, 1, 1), alpha=6)
    hue = hue.sub_(hue.div(6).floor_().mul_(6)).unsqueeze(1)  # mod 6, in [0, 6); floor is vectorised
    # Closed form of hsv -> rgb: a channel is `high` within 1 (sixth of a turn) of its own hue (red 0, green 2,
    # blue 4), `low` beyond 2, linear between: low + chroma * clamp(2 - d, 0, 1) with d the distance around the
    # circle, d = 3 - ||hue - own| - 3| for hue in [0, 6); hence clamp(||hue - own| - 3| - 1, 0, 1).
    own = torch.arange(0.0, 6.0, 2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # 0, 2, 4
    t = torch.sub(hue, own, out=x).abs_().sub_(3).abs_()  # reuses x: its values are no longer needed
    return t.sub_(1).clamp_(0, 1).mul_(chroma.unsqueeze(1)).add_(low.unsqueeze(1))


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``x * factor`` clipped to [0, 1]; ``factor`` is one number per sample, ``(B,)``."""
    return _brightness_(x.clone(), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each sample with its mean luma by ``factor`` (``(B,)``), clipped to [0, 1]."""
    return _contrast_(x.clone(), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each pixel with its luma by ``factor`` (``(B,)``), clipped to [0, 1]; 1-channel batches pass."""
    return _saturation_(x.clone(), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Turn the HSV hue of every pixel by ``shift`` turns (``(B,)``, in [-0.5, 0.5]), as torchvision does.

    Value and saturation stay; the new colour comes from a closed form of hsv -> rgb instead of building the
    HSV image, which avoids ``torch.where`` over channels and integer remainders (slow on CPU). Equal to
    torchvision's ``adjust_hue`` within float rounding. 1-channel batches pass unchanged.
    """
    return _hue_(x.clone(), shift)


class ColorJitter(nn.Module):
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)`` with factors drawn per sample.

    Factors are uniform in ``[max(0, 1 - x), 1 + x]`` (the hue shift in ``[-hue, hue]``); a pair ``(min, max)``
    gives the range directly, 0 switches an adjustment off. The adjustments run in the fixed order brightness,
    contrast, saturation, hue (torchvision shuffles the order per image). Takes float batches in [0, 1].

    Args:
        brightness: Spread of the brightness factor.
        contrast: Spread of the contrast factor.
        saturation: Spread of the saturation factor (no effect on 1-channel batches).
        hue: Largest hue shift, a fraction of the colour circle in [0, 0.5] (no effect on 1-channel batches).
        inplace: Overwrite the input batch instead of copying it (presets do, after their float conversion).
        generator: Source of randomness (tests); None uses torch's global generator.
    """

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.0,
        contrast: float | tuple[float, float] = 0.0,
        saturation: float | tuple[float, float] = 0.0,
        hue: float | tuple[float, float] = 0.0,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.inplace = inplace
        self.brightness = self._range("brightness", brightness, centre=1.0, bound=(0.0, math.inf))
        self.contrast = self._range("contrast", contrast, centre=1.0, bound=(0.0, math.inf))
        self.saturation = self._range("saturation", saturation, centre=1.0, bound=(0.0, math.inf))
        self.hue = self._range("hue", hue, centre=0.0, bound=(-0.5, 0.5))
        self.generator = generator

    @staticmethod
    def _range(
        name: str, value: float | tuple[float, float], centre: float, bound: tuple[float, float]
    ) -> tuple[float, float] | None:
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
            low, high = max(centre - value, bound[0]), centre + value
        else:
            low, high = map(float, value)
        if not bound[0] <= low <= high <= bound[1]:
            raise ValueError(f"{name} range must lie in {list(bound)}, got {value!r}")
        return None if low == high == centre else (low, high)

    def draw(self, x: Tensor) -> JitterParams:
        batch = x.shape[0]

        def factor(bounds: tuple[float, float] | None) -> Tensor | None:
            return None if bounds is None else _uniform((batch,), *bounds, x, self.generator)

        return JitterParams(factor(self.brightness), factor(self.contrast), factor(self.saturation), factor(self.hue))

    def apply(self, x: Tensor, params: JitterParams) -> Tensor:
        if not self.inplace:
            x = x.clone()
        for adjust_, factor in zip((_brightness_, _contrast_, _saturation_, _hue_), params, strict=True):
            if factor is not None:
                x = adjust_(x, factor)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}"


# --------------------------------------------------------------------------------------------------------------
# Cutout
# --------------------------------------------------------------------------------------------------------------


class CutoutParams(NamedTuple):
    """Top-left corner of each sample's square, ``(B,)`` each; it may start outside the image (it is clipped)."""

    top: Tensor
    left: Tensor


class Cutout(nn.Module):
    """One ``size`` x ``size`` square of zeros per sample (DeVries & Taylor, 2017).

    By default the centre is uniform over all pixels, as in the paper's code, so squares near the border are
    clipped: partly outside. With ``inside``, the square lies wholly inside the image, its corner uniform over the
    positions where it fits, as in Page's ResNet-9 recipe. Placed after ``Normalize``, zero is the dataset's mean
    colour.

    Args:
        size: Side of the square in pixels.
        inplace: Overwrite the input batch instead of copying it.
        generator: Source of randomness (tests); None uses torch's global generator.
        inside: Keep every square wholly inside the image (images must be at least ``size`` on each side).
    """

    def __init__(
        self, size: int, inplace: bool = False, generator: torch.Generator | None = None, inside: bool = False
    ) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = int(size)
        self.inplace = inplace
        self.generator = generator
        self.inside = inside

    def draw(self, x: Tensor) -> CutoutParams:
        height, width = x.shape[-2:]
        if self.inside:
            if self.size > min(height, width):
                raise ValueError(f"a {self.size}-px square cannot lie inside {height}x{width} images")
            top = _randint(height - self.size + 1, x, self.generator)
            return CutoutParams(top, _randint(width - self.size + 1, x, self.generator))
        half = self.size // 2
        return CutoutParams(_randint(height, x, self.generator) - half, _randint(width, x, self.generator) - half)

    def apply(self, x: Tensor, params: CutoutParams) -> Tensor:
        batch, _, height, width = x.shape
        rows = torch.arange(height, device=x.device, dtype=torch.float32).view(1, 1, height, 1)
        cols = torch.arange(width, device=x.device, dtype=torch.float32).view(1, 1, 1, width)
        top, left = params.top.view(batch, 1, 1, 1), params.left.view(batch, 1, 1, 1)
        in_rows = ((rows >= top) & (rows < top + self.size)).to(x.dtype)  # (B, 1, H, 1)
        in_cols = ((cols >= left) & (cols < left + self.size)).to(x.dtype)  # (B, 1, 1, W)
        keep = 1 - in_rows * in_cols  # (B, 1, H, W); multiplying is faster than masked_fill on CPU
        return x.mul_(keep) if self.inplace else x * keep

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))

    def extra_repr(self) -> str:
        return f"size={self.size}" + (", inside=True" if self.inside else "")


# --------------------------------------------------------------------------------------------------------------
# Resampling: RandomResizedCrop, Resize, CenterCrop
# --------------------------------------------------------------------------------------------------------------


def _resize_weights(in_size: int, start: Tensor, length: Tensor, out_size: int) -> Tensor:
    """Rows of bilinear resampling weights, antialiased like ``F.interpolate(..., antialias=True)``.

    Resizing the window ``[start, start + length)`` of an axis of ``in_size`` pixels to ``out_size`` pixels is
    ``weights @ axis`` with the returned ``(B, out_size, in_size)`` matrix (``start``, ``length``: ``(B,)``).
    The triangle filter widens by the scale when shrinking, which is what antialiasing means here (and what PIL
    does); when enlarging it is plain bilinear interpolation with pixel centres at ``i + 0.5``.
    """
    kw = {"device": start.device, "dtype": torch.float32}
    start, length = start.to(**kw).view(-1, 1, 1), length.to(**kw).view(-1, 1, 1)
    scale = length / out_size  # input pixels per output pixel
    centres = (torch.arange(out_size, **kw).view(1, -1, 1) + 0.5) * scale  # (B, out, 1), window coordinates
    pixels = torch.arange(in_size, **kw).view(1, 1, -1) + 0.5 - start  # (B, 1, in), pixel centres
    in_window = ((pixels > 0) & (pixels < length)).to(torch.float32)
    # Triangle of half-width max(scale, 1), zero outside the window; in place: these are (B, out, in) large.
    weights = (pixels - centres).abs_().mul_(-1 / scale.clamp_min(1.0)).add_(1).clamp_(min=0).mul_(in_window)
    return weights.div_(weights.sum(dim=-1, keepdim=True))


def _resample(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ x @ cols^T`` per sample and channel: (B, C, H, W) -> (B, C, out_h, out_w).

    ``rows`` is ``(B, out_h, H)`` or ``(out_h, H)`` (shared), ``cols`` is ``(B, out_w, W)`` or ``(out_w, W)``.
    Two matrix products are far cheaper than a bilinear ``grid_sample`` on CPU, and they antialias for free.
    """
    batch, channels = x.shape[:2]
    out_h = rows.shape[-2]
    x = torch.matmul(rows.unsqueeze(1) if rows.dim() == 3 else rows, x)  # (B, C, out_h, W)
    if cols.dim() == 2:
        return torch.matmul(x, cols.T)
    x = torch.bmm(x.reshape(batch, channels * out_h, -1), cols.transpose(1, 2))
    return x.view(batch, channels, out_h, -1)


class CropBoxes(NamedTuple):
    """Per-sample crop boxes of :class:`RandomResizedCrop`, ``(B,)`` each, whole pixels as float32."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor


class RandomResizedCrop(nn.Module):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (bilinear, antialiased), a box per sample.

    Boxes are drawn as torchvision does: up to 10 tries of an area fraction in ``scale`` and a log-uniform
    aspect ratio in ``ratio``, the first box that fits wins, else the whole image cut to the nearest allowed
    ratio. Takes float batches; resampling is linear with weights that sum to 1, so normalising before it (on
    the small input) gives the same result as after.

    Args:
        size: Output size ``s`` or ``(h, w)``.
        scale: Range of the box area as a fraction of the image area.
        ratio: Range of the box aspect ratio, width / height.
        generator: Source of randomness (tests); None uses torch's global generator.
    """

    tries = 10

    def __init__(
        self,
        size: Size,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"scale and ratio must be increasing positive pairs, got {scale} and {ratio}")
        self.size = _pair(size, "size")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.generator = generator

    def draw(self, x: Tensor) -> CropBoxes:
        batch, _, height, width = x.shape
        shape = (batch, self.tries)
        area = height * width * _uniform(shape, *self.scale, x, self.generator)
        aspect = _uniform(shape, math.log(self.ratio[0]), math.log(self.ratio[1]), x, self.generator).exp_()
        box_w = (area * aspect).sqrt_().round_()
        box_h = (area / aspect).sqrt_().round_()
        fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
        first = fits.to(torch.int32).argmax(dim=1, keepdim=True)  # the first try that fits, as in torchvision
        found = fits.any(dim=1)
        box_w, box_h = box_w.gather(1, first).squeeze(1), box_h.gather(1, first).squeeze(1)
        # torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
        fall_w, fall_h = width, height
        if width / height < self.ratio[0]:
            fall_h = round(width / self.ratio[0])
        elif width / height > self.ratio[1]:
            fall_w = round(height * self.ratio[1])
        box_w = torch.where(found, box_w, float(fall_w))
        box_h = torch.where(found, box_h, float(fall_h))
        top = torch.where(found, _randint(height - box_h + 1, x, self.generator), float((height - fall_h) // 2))
        left = torch.where(found, _randint(width - box_w + 1, x, self.generator), float((width - fall_w) // 2))
        return CropBoxes(top, left, box_h, box_w)

    def apply(self, x: Tensor, boxes: CropBoxes) -> Tensor:
        out_h, out_w = self.size
        rows = _resize_weights(x.shape[-2], boxes.top, boxes.height, out_h)
        cols = _resize_weights(x.shape[-1], boxes.left, boxes.width, out_w)
        return _resample(x, rows, cols)

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}"


def _resized_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """torchvision's rule: an int is the new shorter side (the longer one is truncated), a pair is exact."""
    if not isinstance(size, int):
        return _pair(size, "size")
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _center_offset(size: int, crop: int) -> int:
    """torchvision's rounding of the centre-crop offset."""
    if crop > size:
        raise ValueError(f"cannot centre-crop {crop} pixels out of {size}")
    return int(round((size - crop) / 2.0))


class Resize(nn.Module):
    """torchvision's ``Resize(size)`` on tensors (bilinear, antialiased), optionally then ``CenterCrop(crop)``.

    With ``crop``, only the kept pixels are computed: ``Resize(256, crop=224)`` is the evaluation transform of
    the ImageNet recipes at three quarters of the cost of resizing and then cropping. Deterministic; float
    batches.

    Args:
        size: New shorter side (aspect ratio kept), or exact ``(h, w)``.
        crop: Size ``s`` or ``(h, w)`` of a centre crop of the resized image, or None.
    """

    def __init__(self, size: Size, crop: Size | None = None) -> None:
        super().__init__()
        _pair(size, "size")
        self.size = size
        self.crop = None if crop is None else _pair(crop, "crop")

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        out_h, out_w = _resized_size(self.size, height, width)
        zero = torch.zeros(1, device=x.device)
        rows = _resize_weights(height, zero, zero + height, out_h)[0]  # (out_h, height)
        cols = _resize_weights(width, zero, zero + width, out_w)[0]
        if self.crop is not None:
            top, left = _center_offset(out_h, self.crop[0]), _center_offset(out_w, self.crop[1])
            rows, cols = rows[top : top + self.crop[0]], cols[left : left + self.crop[1]]
        return _resample(x, rows, cols)

    def extra_repr(self) -> str:
        return f"size={self.size}" + ("" if self.crop is None else f", crop={self.crop}")


class CenterCrop(nn.Module):
    """torchvision's ``CenterCrop(size)`` (same rounding of the offset), for inputs at least that large.

    Args:
        size: Crop size ``s`` or ``(h, w)``.
    """

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.size = _pair(size, "size")

    def forward(self, x: Tensor) -> Tensor:
        (height, width), (out_h, out_w) = x.shape[-2:], self.size
        top, left = _center_offset(height, out_h), _center_offset(width, out_w)
        return x[..., top : top + out_h, left : left + out_w]

    def extra_repr(self) -> str:
        return f"size={self.size}"


# --------------------------------------------------------------------------------------------------------------
# Pipelines and presets
# --------------------------------------------------------------------------------------------------------------


class Pipeline(nn.Sequential):
    """The ops of a preset in order: a uint8 batch ``(B, C, H, W)`` in, a normalised float32 batch out.

    Runs without autograd. Random ops are random in ``eval()`` mode too: evaluation uses an evaluation preset
    (see :data:`EVAL_PRESET`), which has no random ops.
    """

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise TypeError(f"augmentation expects a uint8 batch (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
        return super().forward(x)


#: What each preset does, by name; :func:`build_augment` accepts these names.
PRESETS: dict[str, str] = {
    "none": "convert and normalise only",
    "mnist_course": "rotation +-10 degrees (the course's MNIST program)",
    "mnist_shift_rotate": "3-px padded crop (a shift of up to +-3 px) and rotation +-15 degrees (configs/mnist.yaml)",
    "cifar_course": "4-px padded crop, flip, rotation +-10 degrees, colour jitter 0.2 (the course's CIFAR-10 program)",
    "cifar_crop_flip": "4-px padded crop and flip (the standard CIFAR baseline)",
    "cifar_crop_flip_cutout": "4-px padded crop and flip, then a 16-px Cutout square (DeVries & Taylor's CIFAR-10)",
    "cifar_resnet9": "4-px reflect-padded crop and flip, then an 8-px Cutout square inside the image (Page's ResNet-9)",
    "imagenet_course": "RandomResizedCrop(224) and flip (the course's Tiny ImageNet program)",
    "imagenet_eval": "resize 256, centre crop 224 (the course's Tiny ImageNet evaluation)",
    "tiny_crop_flip": "8-px padded crop and flip at the native 64 px of Tiny ImageNet",
}

#: Names accepted by :func:`build_augment`.
AUGMENT_NAMES: tuple[str, ...] = tuple(PRESETS)

#: The evaluation preset that goes with each preset: same output size, no randomness.
EVAL_PRESET: dict[str, str] = {
    name: "imagenet_eval" if name.startswith("imagenet") else "none" for name in AUGMENT_NAMES
}


def augment_names() -> tuple[str, ...]:
    """Names accepted by :func:`build_augment`, in a readable order."""
    return AUGMENT_NAMES


def _preset_ops(name: str, mean: Sequence[float], std: Sequence[float], gen: torch.Generator | None) -> list[nn.Module]:
    # Geometry runs on uint8 (a quarter of the bytes to move); ops after ToFloat own their batch, so they work
    # in place.
    convert = [ToFloat(), Normalize(mean, std, inplace=True)]
    match name:
        case "none":
            return convert
        case "mnist_course":
            return [RandomRotation(10, generator=gen), *convert]
        case "mnist_shift_rotate":
            # Shift and rotation as An et al. train their MNIST nets with (arXiv 2008.10400: up to 20 % and 20
            # degrees), milder: in 15 epochs on 3,500 real digits, 3 px and 15 degrees beat 2 px and 10 degrees as
            # well as 4 px and 20 degrees.
            return [CropFlipRotate(padding=3, degrees=15, generator=gen), *convert]
        case "cifar_course":
            return [
                CropFlipRotate(padding=4, flip_p=0.5, degrees=10, generator=gen),
                ToFloat(),
                ColorJitter(0.2, 0.2, 0.2, 0.2, inplace=True, generator=gen),
                Normalize(mean, std, inplace=True),
            ]
        case "cifar_crop_flip":
            return [CropFlipRotate(padding=4, flip_p=0.5, generator=gen), *convert]
        case "cifar_crop_flip_cutout":
            # After Normalize, as in DeVries & Taylor's code: the square is the dataset's mean colour.
            return [*_preset_ops("cifar_crop_flip", mean, std, gen), Cutout(16, inplace=True, generator=gen)]
        case "cifar_resnet9":
            # dawn.py of github.com/davidcpage/cifar10-fast: reflect-pads the normalised images (the same pixels as
            # padding the uint8 ones), crops, flips, then zeroes an 8x8 square that always fits in the image.
            return [
                CropFlipRotate(padding=4, flip_p=0.5, padding_mode="reflect", generator=gen),
                *convert,
                Cutout(8, inplace=True, generator=gen, inside=True),
            ]
        case "imagenet_course":
            # Flipping the small input before the crop has the same distribution as flipping after it (the box
            # distribution is mirror-symmetric), and normalising before resampling is exact (weights sum to 1):
            # both are cheaper at 64 px than at 224.
            return [RandomHorizontalFlip(generator=gen), *convert, RandomResizedCrop(224, generator=gen)]
        case "imagenet_eval":
            return [*convert, Resize(256, crop=224)]  # Resize(256) then CenterCrop(224), in one pass
        case "tiny_crop_flip":
            return [CropFlipRotate(padding=8, flip_p=0.5, generator=gen), *convert]
    raise UserError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_NAMES)}")


def build_augment(
    name: str,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator | None = None,
) -> Pipeline:
    """The uint8 -> normalised float32 pipeline of a named preset (see :data:`PRESETS`).

    Args:
        name: One of :data:`AUGMENT_NAMES`.
        mean: Per-channel mean of the dataset, in [0, 1] units.
        std: Per-channel standard deviation of the dataset, in [0, 1] units.
        generator: Source of randomness for every random op (tests); None uses torch's global generator.

    Raises:
        UserError: (a ``ValueError``) for an unknown name; the message lists the valid ones.
    """
    return Pipeline(*_preset_ops(name, mean, std, generator))
