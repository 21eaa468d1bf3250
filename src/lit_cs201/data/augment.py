"""Batched, per-sample random augmentation as tensor ops, run on the device where the model runs.

A pipeline from :func:`build_augment` turns a uint8 batch ``(B, C, H, W)`` into a normalised float32 batch in
``on_after_batch_transfer``. Each random op draws its own parameters for every sample with torch on the batch's
device, so a call is a handful of tensor operations however large the batch, on CPU and CUDA alike. Random ops
split into ``draw(x) -> params`` (a NamedTuple of ``(B,)`` tensors) and ``apply(x, params)``, which is how the
tests check each against torchvision. They are written here (`lit_cs201.data.augment_geometry`,
`lit_cs201.data.augment_colour`) because torchvision draws one set of parameters per batch and kornia's are slower
or differ from torchvision (figures in ``docs/augmentation.md``); conversion, normalisation, resize and centre crop
are torchvision's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2 as T
from torch import Tensor, nn

from lit_cs201.data.augment_colour import ColorJitter
from lit_cs201.data.augment_geometry import CropFlipRotate, Cutout, RandomResizedCrop
from lit_cs201.errors import UserError


class Normalize(T.Normalize):
    """torchvision's ``Normalize``, ``(x - mean) / std`` per channel, that checks its statistics when it is built.

    ``mean`` and ``std`` have one value per channel (or one for all channels); ``std`` is positive. A batch with
    another channel count is refused: torchvision's would broadcast it to the statistics' count without a word.
    The statistics are buffers, so that ``.to(device)`` moves them with the pipeline (torchvision converts a list
    to a tensor on the batch's device at every call) and an export reads them from the module.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if not mean or len(mean) != len(std):
            raise ValueError(f"mean and std need the same number of channels, got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        super().__init__(mean, std)
        del self.mean, self.std  # torchvision's lists, replaced by the same values as buffers
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.mean.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"Normalize has {self.mean.shape[1]} channel statistics, the batch {x.shape[1]}")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


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
