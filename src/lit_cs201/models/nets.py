"""Network builders for the `Classifier`.

Every builder takes the class count and the shape of one input sample (without the batch dimension), so the
same `Classifier` serves Iris feature vectors, 28x28 digits and 224-px photos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from lit_cs201.errors import UserError

NET_NAMES = ("mlp", "resnet18", "resnet50")
STEMS = ("imagenet", "cifar")


def build_mlp(num_classes: int, input_shape: Sequence[int], hidden_sizes: Sequence[int] = (10,)) -> nn.Module:
    """Fully connected ReLU network, e.g. the course's Iris net 4-10-3 with ``hidden_sizes=(10,)``."""
    if any(width < 1 for width in hidden_sizes):
        raise UserError(f"hidden_sizes must be positive layer widths, got {list(hidden_sizes)}")
    in_features = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    for width in hidden_sizes:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def pretrained_state_dict(name: str, pretrained: str) -> dict[str, torch.Tensor]:
    """Weights for torchvision's ``name`` network: a weight name such as ``IMAGENET1K_V2`` or a local ``.pth``.

    Named weights come from the torch hub cache (``$TORCH_HOME/hub/checkpoints/``) and are downloaded there when
    missing; without network the error says which file to put where.
    """
    if pretrained.endswith((".pth", ".pt")) or "/" in pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise UserError(f"pretrained weights {pretrained}: no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        weights = torchvision.models.get_model_weights(name)[pretrained]
    except KeyError:
        valid = ", ".join(w.name for w in torchvision.models.get_model_weights(name))
        raise UserError(f"unknown pretrained weights {pretrained!r} for {name}; choose one of {valid}") from None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    filename = Path(urlparse(weights.url).path).name
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # offline: URLError, socket errors, a refused connection...
        raise UserError(
            f"pretrained weights {name} {pretrained}: {filename} is not in {folder} and could not be downloaded "
            f"({type(err).__name__}). Download {weights.url} and place it in {folder}/ "
            "(set TORCH_HOME to use another cache folder)"
        ) from None


def build_resnet(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    stem: str = "imagenet",
    pretrained: str | None = None,
) -> nn.Module:
    """torchvision ResNet with ``in_channels`` from the input shape, a new head, and a choice of stem.

    ``imagenet``: 7x7/2 convolution and max-pool (the course's choice, right for 224-px photos); ``cifar``:
    3x3/1 convolution and no max-pool, which keeps 32x32 inputs from shrinking to 8x8 before the first block.
    """
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    net = torchvision.models.get_model(name, weights=None)
    if pretrained:
        net.load_state_dict(pretrained_state_dict(name, pretrained))
    in_channels = input_shape[0]
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        rgb = net.conv1.weight.data
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:  # a grey image is R = G = B: summing the RGB filters keeps their response
            net.conv1.weight.data = rgb.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def build_net(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    hidden_sizes: Sequence[int] = (10,),
    stem: str = "imagenet",
    pretrained: str | None = None,
) -> nn.Module:
    """Build the network called ``name`` (one of `NET_NAMES`)."""
    if num_classes < 2:
        raise UserError(f"num_classes must be at least 2, got {num_classes}")
    if name == "mlp":
        return build_mlp(num_classes, input_shape, hidden_sizes)
    if name in ("resnet18", "resnet50"):
        if len(input_shape) != 3:
            raise UserError(f"{name} needs image inputs (channels, height, width), got shape {list(input_shape)}")
        return build_resnet(name, num_classes, input_shape, stem=stem, pretrained=pretrained)
    raise UserError(f"unknown net {name!r}; choose one of {', '.join(NET_NAMES)}")
