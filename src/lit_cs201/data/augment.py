"""Batched, per-sample random augmentation as tensor ops, run on the device where the model runs.

A pipeline from :func:`build_augment` turns a uint8 batch ``(B, C, H, W)`` into a normalised float32 batch in
``on_after_batch_transfer``. Each random op draws its own parameters for every sample with torch on the batch's
device, so a call is a handful of tensor operations however large the batch, on CPU and CUDA alike. Random ops
split into ``draw(x) -> params`` (a NamedTuple of ``(B,)`` tensors) and ``apply(x, params)``, which is how the
tests check each against torchvision. They are written here because kornia's are slower or differ from
torchvision (figures in ``docs/augmentation.md``); conversion, resize and centre crop are torchvision's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from lit_cs201.errors import UserError

#: How `CropFlipRotate` fills the border it pads.
PADDING_MODES = ("zeros", "reflect")


def _uniform(batch: int, low: float, high: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``batch`` numbers uniform in ``[low, high)`` on ``like``'s device; from ``generator`` if given."""
    device = like.device if generator is None else generator.device
    return torch.rand(batch, generator=generator, device=device).to(like.device) * (high - low) + low


def _randint(high: Tensor | int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One whole number in ``[0, high)`` per sample, as float32 ``(B,)``; ``high`` may differ per sample."""
    # rand * high can round up to high itself in float32.
    return (_uniform(like.shape[0], 0, 1, like, generator) * high).floor().clamp(max=high - 1)


class _RandomOp(nn.Module):
    """``draw(x)`` gives per-sample parameters, ``apply(x, params)`` uses them; calling the op does both."""

    def forward(self, x: Tensor) -> Tensor:
        return self.apply(x, self.draw(x))


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, like torchvision's ``Normalize``.

    ``mean`` and ``std`` have one value per channel (or one for all channels); ``std`` is positive.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
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
        return x.sub(self.mean.to(x.device)).div_(self.std.to(x.device))

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class GeometryParams(NamedTuple):
    """Per-sample parameters of :class:`CropFlipRotate`, each shaped ``(B,)``."""

    #: Top row and left column of the crop window in the padded input (whole numbers, float32).
    top: Tensor
    left: Tensor
    #: True where the crop is mirrored left-right.
    flip: Tensor
    #: Counter-clockwise rotation in degrees, or None for no rotation at all.
    angle: Tensor | None


class CropFlipRotate(_RandomOp):
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
        top = _randint(2 * self.padding + 1, x, self.generator)
        left = _randint(2 * self.padding + 1, x, self.generator)
        flip = _uniform(x.shape[0], 0, 1, x, self.generator) < self.flip_p
        angle = None if self.degrees == (0.0, 0.0) else _uniform(x.shape[0], *self.degrees, x, self.generator)
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


class JitterParams(NamedTuple):
    """Per-sample factors of :class:`ColorJitter`, each ``(B,)`` or None where that adjustment is off."""

    brightness: Tensor | None
    contrast: Tensor | None
    saturation: Tensor | None
    #: Shift of the hue as a fraction of the colour circle, in ``[-0.5, 0.5]``.
    hue: Tensor | None


def _blend(x: Tensor, other: Tensor | float, factor: Tensor) -> Tensor:
    """``factor * x + (1 - factor) * other`` clipped to [0, 1], one factor per sample (torchvision's ``_blend``)."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x).add_((1 - factor) * other).clamp_(0, 1)


def _hue(x: Tensor, shift: Tensor) -> Tensor:
    """Turn the HSV hue by ``shift`` turns, keeping HSV value and saturation: torchvision's ``adjust_hue``."""
    r, g, b = x.unbind(1)
    high, low = x.amax(dim=1), x.amin(dim=1)  # (B, H, W)
    chroma = high - low
    safe = chroma.clamp_min(1e-12)  # gray pixels: every numerator below is 0 as well
    # Hue in sixths of a turn from the largest channel; ties go to red, then green, as in torchvision. In place on
    # the op's own temporaries: on CPU each fresh batch-sized tensor costs page faults.
    hue = torch.where(high == g, (b - r).div_(safe).add_(2), (r - g).div_(safe).add_(4))
    hue = torch.where(high == r, (g - b).div_(safe), hue)
    hue = hue.add_(shift.view(-1, 1, 1), alpha=6).remainder_(6).unsqueeze(1)  # (B, 1, H, W) in [0, 6], 6 as 0
    # Closed form of hsv -> rgb: a channel is `high` within 1 (sixth of a turn) of its own hue (red 0, green 2,
    # blue 4), `low` beyond 2, linear between; ||hue - own| - 3| is 3 minus the distance around the circle.
    own = torch.arange(0.0, 6.0, 2.0, device=x.device).view(1, 3, 1, 1)  # made on the device: no copy from the host
    weight = (hue - own).abs_().sub_(3).abs_().sub_(1).clamp_(0, 1)
    return weight.mul_(chroma.unsqueeze(1)).add_(low.unsqueeze(1))


class ColorJitter(_RandomOp, T.ColorJitter):
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)`` with factors drawn per sample.

    The arguments, their checks and ranges are torchvision's: factors uniform in ``[max(0, 1 - x), 1 + x]`` (the
    hue shift in ``[-hue, hue]``, a fraction of the colour circle), a pair ``(min, max)`` gives the range, 0
    switches an adjustment off. The adjustments run in the fixed order brightness, contrast, saturation, hue
    (torchvision shuffles the order per image). Takes float batches in [0, 1]; saturation and hue leave 1-channel
    batches alone. ``generator``: source of randomness (tests); None uses torch's global generator.
    """

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.0,
        contrast: float | tuple[float, float] = 0.0,
        saturation: float | tuple[float, float] = 0.0,
        hue: float | tuple[float, float] = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(brightness, contrast, saturation, hue)
        self.generator = generator

    def draw(self, x: Tensor) -> JitterParams:
        ranges = (self.brightness, self.contrast, self.saturation, self.hue)
        return JitterParams(*(None if r is None else _uniform(x.shape[0], *r, x, self.generator) for r in ranges))

    def apply(self, x: Tensor, params: JitterParams) -> Tensor:
        rgb = x.shape[1] == 3
        if params.brightness is not None:
            x = _blend(x, 0.0, params.brightness)
        if params.contrast is not None:
            x = _blend(x, (TF.rgb_to_grayscale(x) if rgb else x).mean(dim=(1, 2, 3), keepdim=True), params.contrast)
        if params.saturation is not None and rgb:
            x = _blend(x, TF.rgb_to_grayscale(x), params.saturation)
        return _hue(x, params.hue) if params.hue is not None and rgb else x


class CutoutParams(NamedTuple):
    """Top-left corner of each sample's square, ``(B,)`` each; it may start outside the image (it is clipped)."""

    top: Tensor
    left: Tensor


class Cutout(_RandomOp):
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
            top = _randint(height - self.size + 1, x, self.generator)
            return CutoutParams(top, _randint(width - self.size + 1, x, self.generator))
        half = self.size // 2
        return CutoutParams(_randint(height, x, self.generator) - half, _randint(width, x, self.generator) - half)

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


class RandomResizedCrop(_RandomOp, T.RandomResizedCrop):
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
        area = height * width * _uniform(batch * 10, *self.scale, x, self.generator).view(batch, 10)  # 10 tries
        aspect = _uniform(batch * 10, *map(math.log, self.ratio), x, self.generator).exp().view(batch, 10)
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
        top = torch.where(found, _randint(height - box_h + 1, x, self.generator), float((height - fall_h) // 2))
        left = torch.where(found, _randint(width - box_w + 1, x, self.generator), float((width - fall_w) // 2))
        return CropBoxes(top, left, box_h, box_w)

    def apply(self, x: Tensor, boxes: CropBoxes) -> Tensor:
        batch, channels = x.shape[:2]
        out_h, out_w = self.size
        rows = _resize_weights(x.shape[-2], boxes.top, boxes.height, out_h)  # (B, out_h, H)
        cols = _resize_weights(x.shape[-1], boxes.left, boxes.width, out_w)  # (B, out_w, W)
        x = torch.matmul(rows.unsqueeze(1), x).view(batch, channels * out_h, -1)  # (B, C * out_h, W)
        return torch.bmm(x, cols.transpose(1, 2)).view(batch, channels, out_h, out_w)


class Pipeline(nn.Sequential):
    """The ops of a preset in order: a uint8 batch ``(B, C, H, W)`` in, a normalised float32 batch out.

    Runs without autograd. Random ops are random in ``eval()`` mode too: evaluation uses an evaluation preset.
    """

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise TypeError(f"augmentation expects a uint8 batch (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
        return super().forward(x)


#: Each preset of :func:`build_augment` with its evaluation preset: the same output size, no randomness.
EVAL_PRESET: dict[str, str] = {
    "none": "none",
    "mnist_course": "none",
    "mnist_shift_rotate": "none",
    "cifar_course": "none",
    "cifar_crop_flip": "none",
    "cifar_crop_flip_cutout": "none",
    "cifar_resnet9": "none",
    "imagenet_course": "imagenet_eval",
    "imagenet_eval": "imagenet_eval",
    "tiny_crop_flip": "none",
}
#: Names accepted by :func:`build_augment`.
AUGMENT_NAMES: tuple[str, ...] = tuple(EVAL_PRESET)


def _preset_ops(name: str, mean: Sequence[float], std: Sequence[float], gen: torch.Generator | None) -> list[nn.Module]:
    # Geometry runs on uint8, before the conversion: a quarter of the bytes of float32 to move.
    convert = [T.ToDtype(torch.float32, scale=True), Normalize(mean, std)]
    match name:
        case "none":
            return convert
        case "mnist_course":
            return [CropFlipRotate(degrees=10, generator=gen), *convert]
        case "mnist_shift_rotate":
            # An et al.'s MNIST shift and rotation (arXiv 2008.10400: 20 %, 20 degrees), milder: in 15 epochs on
            # 3,500 real digits, 3 px and 15 degrees beat 2 px and 10 degrees as well as 4 px and 20 degrees.
            return [CropFlipRotate(padding=3, degrees=15, generator=gen), *convert]
        case "cifar_course":
            jitter = ColorJitter(0.2, 0.2, 0.2, 0.2, generator=gen)
            return [CropFlipRotate(padding=4, flip_p=0.5, degrees=10, generator=gen), convert[0], jitter, convert[1]]
        case "cifar_crop_flip":
            return [CropFlipRotate(padding=4, flip_p=0.5, generator=gen), *convert]
        case "cifar_crop_flip_cutout":
            # After Normalize, as in DeVries & Taylor's code: the square is the dataset's mean colour.
            return [*_preset_ops("cifar_crop_flip", mean, std, gen), Cutout(16, generator=gen)]
        case "cifar_resnet9":
            # dawn.py of github.com/davidcpage/cifar10-fast: reflect-pads the normalised images (the same pixels as
            # padding the uint8 ones), crops, flips, then zeroes an 8x8 square that always fits in the image.
            geometry = CropFlipRotate(padding=4, flip_p=0.5, padding_mode="reflect", generator=gen)
            return [geometry, *convert, Cutout(8, generator=gen, inside=True)]
        case "imagenet_course":
            # Flipping before the crop has the distribution of flipping after it (the boxes' is mirror-symmetric),
            # and normalising before resampling is exact (weights sum to 1): both are cheaper at 64 px than at 224.
            return [CropFlipRotate(flip_p=0.5, generator=gen), *convert, RandomResizedCrop(224, generator=gen)]
        case "imagenet_eval":
            return [*convert, T.Resize(256, antialias=True), T.CenterCrop(224)]
        case "tiny_crop_flip":
            return [CropFlipRotate(padding=8, flip_p=0.5, generator=gen), *convert]
    raise UserError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_NAMES)}")


def build_augment(
    name: str,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator | None = None,
) -> Pipeline:
    """The uint8 -> normalised float32 pipeline of a named preset; an unknown name is a `UserError` listing them.

    - ``none``: convert and normalise only.
    - ``mnist_course``: rotation ±10° (the course's MNIST program).
    - ``mnist_shift_rotate``: 3-px padded crop (a shift of up to ±3 px) and rotation ±15°.
    - ``cifar_course``: 4-px padded crop, flip, rotation ±10°, colour jitter 0.2 (the course's CIFAR-10 program).
    - ``cifar_crop_flip``: 4-px padded crop and flip (the standard CIFAR baseline).
    - ``cifar_crop_flip_cutout``: the same, then a 16-px Cutout square (DeVries & Taylor's CIFAR-10).
    - ``cifar_resnet9``: 4-px reflect-padded crop, flip, an 8-px Cutout square inside the image (Page's ResNet-9).
    - ``imagenet_course``: RandomResizedCrop(224) and flip; ``imagenet_eval``: resize 256, centre crop 224.
    - ``tiny_crop_flip``: 8-px padded crop and flip at the native 64 px of Tiny ImageNet.

    Args:
        name: One of :data:`AUGMENT_NAMES`.
        mean: Per-channel mean of the dataset, in [0, 1] units.
        std: Per-channel standard deviation of the dataset, in [0, 1] units.
        generator: Source of randomness for every random op (tests); None uses torch's global generator.
    """
    return Pipeline(*_preset_ops(name, mean, std, generator))
