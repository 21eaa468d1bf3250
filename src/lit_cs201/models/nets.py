"""Network builders for the `Classifier`.

Every builder takes the class count and the shape of one input sample (without the batch dimension), so the
same `Classifier` serves Iris feature vectors and images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

NET_NAMES = ("mlp",)


def build_mlp(num_classes: int, input_shape: Sequence[int], hidden_sizes: Sequence[int] = (10,)) -> nn.Module:
    """Fully connected ReLU network, e.g. the course's Iris net 4-10-3 with ``hidden_sizes=(10,)``."""
    in_features = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    for width in hidden_sizes:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def build_net(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    hidden_sizes: Sequence[int] = (10,),
) -> nn.Module:
    """Build the network called ``name`` (one of `NET_NAMES`)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if name == "mlp":
        return build_mlp(num_classes, input_shape, hidden_sizes)
    raise ValueError(f"unknown net {name!r}; choose one of {', '.join(NET_NAMES)}")
