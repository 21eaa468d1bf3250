"""Network builders for the `Classifier`.

Every builder takes the class count and the shape of one input sample (without the batch dimension), so the
same `Classifier` serves Iris feature vectors, 28x28 digits and 224-px photos.
"""

from __future__ import annotations

import hashlib
import math
import pickle
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


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a weight file, read with ``weights_only``: a file that holds code is refused, not run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a weight file
        if isinstance(err, pickle.UnpicklingError) and str(err).startswith("Weights only load failed"):
            raise UserError(f"{path} holds objects that are not plain data; it is not loaded, for safety") from None
        raise UserError(f"{path} is not a readable weight file ({type(err).__name__}); download it again") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds no state dict (names mapped to tensors)")
    return state


def hub_weights(url: str) -> dict[str, torch.Tensor]:
    """The weights published at ``url``, from the torch hub cache (``$TORCH_HOME/hub/checkpoints/``).

    torch's hub checks the SHA-256 prefix in the file name (``resnet50-11ad3fa6.pth``) only when it downloads; a
    file placed in the cache by hand is checked here too, before it is read.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(urlparse(url).path).name
    match = torch.hub.HASH_REGEX.search(path.name)
    prefix = match.group(1) if match else None
    if not path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), prefix, progress=True)  # checks the hash too
        except Exception as err:  # offline: URLError, socket errors, a refused connection...
            raise UserError(
                f"{path.name} is not in {folder} and could not be downloaded ({type(err).__name__}). Download "
                f"{url} and place it in {folder}/ (set TORCH_HOME to use another cache folder)"
            ) from None
    elif prefix:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if not digest.hexdigest().startswith(prefix):
            raise UserError(
                f"{path} is not the published file: its SHA-256 starts {digest.hexdigest()[: len(prefix)]}, the "
                f"name says {prefix}; delete it and download {url} again"
            )
    return load_weights(path)


def pretrained_state_dict(name: str, pretrained: str) -> dict[str, torch.Tensor]:
    """Weights for torchvision's ``name`` network: a weight name such as ``IMAGENET1K_V2`` or a local ``.pth``.

    Named weights come from the torch hub cache and are downloaded there when missing; without network the error
    says which file to put where.
    """
    if pretrained.endswith((".pth", ".pt")) or "/" in pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise UserError(f"pretrained weights {pretrained}: no such file")
        return load_weights(path)
    try:
        weights = torchvision.models.get_model_weights(name)[pretrained]
    except KeyError:
        valid = ", ".join(w.name for w in torchvision.models.get_model_weights(name))
        raise UserError(f"unknown pretrained weights {pretrained!r} for {name}; choose one of {valid}") from None
    try:
        return hub_weights(weights.url)
    except UserError as err:
        raise UserError(f"pretrained weights {name} {pretrained}: {err}") from None


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
