"""Colour jitter per sample: torchvision's ``ColorJitter`` with its factors drawn for every image of a batch.

Written here, not taken from torchvision or kornia, because torchvision draws one set of factors per call (per
batch, where the batch is augmented at once) and kornia's is slower or differs from torchvision's (figures in
``docs/augmentation.md``). The arithmetic follows torchvision's functional ops, which the tests compare against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from lit_cs201.data.augment_geometry import RandomOp, uniform


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


class ColorJitter(RandomOp, T.ColorJitter):
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
        return JitterParams(*(None if r is None else uniform(x.shape[0], *r, x, self.generator) for r in ranges))

    def apply(self, x: Tensor, params: JitterParams) -> Tensor:
        rgb = x.shape[1] == 3
        if params.brightness is not None:
            x = _blend(x, 0.0, params.brightness)
        if params.contrast is not None:
            x = _blend(x, (TF.rgb_to_grayscale(x) if rgb else x).mean(dim=(1, 2, 3), keepdim=True), params.contrast)
        if params.saturation is not None and rgb:
            x = _blend(x, TF.rgb_to_grayscale(x), params.saturation)
        return _hue(x, params.hue) if params.hue is not None and rgb else x
