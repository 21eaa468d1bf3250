"""Network builders for the `Classifier`.

Every builder takes the class count and the shape of one input sample (without the batch dimension), so the
same `Classifier` serves Iris feature vectors, 28x28 digits and 224-px photos.

Besides torchvision's models there are three of our own: ``mlp``; ``mnist_cnn``, a small plain CNN for 28x28 digits
after An et al.'s MNIST models (the network of ``configs/mnist.yaml``); and ``resnet9``, David Page's ResNet-9 from
"How to train your ResNet" (the network of ``configs/cifar10_fast.yaml``).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from lit_cs201.data.safe_load import load_plain
from lit_cs201.errors import UserError

#: Every classification model torchvision builds (``resnet18``, ``mobilenet_v3_small``, ``vit_b_16``, ...).
TORCHVISION_NETS = tuple(torchvision.models.list_models(module=torchvision.models))
STEMS = ("imagenet", "cifar")
#: The nets built here rather than by torchvision.
OWN_NETS = ("mlp", "mnist_cnn", "resnet9")


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


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """The unit of ResNet-9 and ``mnist_cnn``: 3x3 convolution (no bias: the batch norm's shift takes its place),
    batch norm, ReLU; torchvision's `Conv2dNormActivation` with its defaults."""
    return torchvision.ops.Conv2dNormActivation(in_channels, out_channels)


class Residual(nn.Module):
    """``x + body(x)``, with nothing after the sum (ResNet-9 adds after its units' ReLUs)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Scale(nn.Module):
    """Multiply by a constant: ResNet-9's logits are its linear layer's output times a fixed 0.125."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def _image_channels(net: str, input_shape: Sequence[int], halvings: str, min_side: int) -> int:
    """The channels of an image input a net that halves its maps ``halvings`` can take, or why it cannot."""
    if len(input_shape) != 3:
        raise UserError(f"{net} needs image inputs (channels, height, width), got shape {list(input_shape)}")
    channels, height, width = input_shape
    if min(height, width) < min_side:
        raise UserError(
            f"{net} halves the image {halvings} and needs at least {min_side}x{min_side} pixels, got "
            f"{height}x{width}; resize the images or choose another net"
        )
    return channels


#: mnist_cnn halves its feature maps twice.
MNIST_CNN_MIN_SIDE = 4


def build_mnist_cnn(num_classes: int, input_shape: Sequence[int]) -> nn.Sequential:
    """A small plain CNN for 28x28 digits: five 3x3 units, two max-pools, 0.28 M parameters for 10 classes.

    The design follows the single models of An et al., "An Ensemble of Simple Convolutional Neural Network Models
    for MNIST Digit Recognition" (arXiv 2008.10400, 2020; github.com/ansh941/MnistSimpleCNN): nothing but bias-free
    3x3 convolutions, each with batch norm and ReLU, widening as the maps shrink, then one linear layer; no
    residuals, no dropout. Their M3 stacks ten such units without padding or pooling (28x28 down to 8x8, widths 32
    to 176) and reaches 99.8 % on MNIST alone. Scaled here to a CPU budget: five units at widths 32-64-128 and two
    2x2 max-pools, so that only the first, one-channel unit runs at 28x28. That is 22 M multiply-adds an image
    (M3: 173 M; torchvision's ResNet18 with the course's ImageNet stem: 33 M in 20 layers, the deeper ones on
    7x7 to 1x1 maps), and on a CPU the number of layers costs as much as the arithmetic. The head is a global
    max-pool and a linear layer, as in ResNet-9, so that other image sizes pass too.
    """
    channels = _image_channels("mnist_cnn", input_shape, "twice", MNIST_CNN_MIN_SIDE)
    return nn.Sequential(
        OrderedDict(
            layer1=nn.Sequential(conv_bn_relu(channels, 32), nn.MaxPool2d(2)),  # (B, 32, 14, 14)
            layer2=nn.Sequential(conv_bn_relu(32, 64), conv_bn_relu(64, 64), nn.MaxPool2d(2)),  # (B, 64, 7, 7)
            layer3=nn.Sequential(conv_bn_relu(64, 128), conv_bn_relu(128, 128)),  # (B, 128, 7, 7)
            pool=nn.AdaptiveMaxPool2d(1),  # (B, 128, 1, 1)
            flatten=nn.Flatten(),  # (B, 128)
            linear=nn.Linear(128, num_classes),  # (B, num_classes)
        )
    )


#: ResNet-9 halves its feature maps three times, so smaller images would vanish before the last pooling.
RESNET9_MIN_SIDE = 8


def build_resnet9(num_classes: int, input_shape: Sequence[int]) -> nn.Sequential:
    """David Page's ResNet-9 (Myrtle.ai, "How to train your ResNet", 2018; the DAWNBench CIFAR-10 entry
    ``dawn.py`` of github.com/davidcpage/cifar10-fast), 6.57 M parameters for 10 classes.

    Widths 64-128-256-512, a max-pool after each of the last three widenings, residual pairs of units at 128 and
    512 channels, a global max-pool and a bias-free linear layer whose output is scaled by 0.125. The shapes in the
    comments are for a 32x32 CIFAR-10 image. The source's last pooling is ``MaxPool2d(4)``, the whole 4x4 map there;
    a global max-pool is the same at 32 px and lets other sizes through (28-px digits, 64-px Tiny ImageNet).
    Initialisation is torch's default, as in the source (batch-norm scales 1, shifts 0).
    """
    channels = _image_channels("resnet9", input_shape, "three times", RESNET9_MIN_SIDE)
    return nn.Sequential(
        OrderedDict(
            prep=conv_bn_relu(channels, 64),  # (B, 64, 32, 32)
            layer1=nn.Sequential(
                conv_bn_relu(64, 128),  # (B, 128, 32, 32)
                nn.MaxPool2d(2),  # (B, 128, 16, 16)
                Residual(nn.Sequential(conv_bn_relu(128, 128), conv_bn_relu(128, 128))),  # (B, 128, 16, 16)
            ),
            layer2=nn.Sequential(conv_bn_relu(128, 256), nn.MaxPool2d(2)),  # (B, 256, 8, 8)
            layer3=nn.Sequential(
                conv_bn_relu(256, 512),  # (B, 512, 8, 8)
                nn.MaxPool2d(2),  # (B, 512, 4, 4)
                Residual(nn.Sequential(conv_bn_relu(512, 512), conv_bn_relu(512, 512))),  # (B, 512, 4, 4)
            ),
            pool=nn.AdaptiveMaxPool2d(1),  # (B, 512, 1, 1)
            flatten=nn.Flatten(),  # (B, 512)
            linear=nn.Linear(512, num_classes, bias=False),  # (B, num_classes)
            scale=Scale(0.125),
        )
    )


def load_weights(path: Path, what: str = "pretrained weights") -> dict[str, torch.Tensor]:
    """A state dict from a weight file, read as plain data: a file that holds code is refused, not run."""
    state = load_plain(path, what, "weight file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{what} {path}: holds no state dict (names mapped to tensors)")
    return state


def hash_prefix(name: str) -> str | None:
    """The SHA-256 prefix in a file name by torch hub's convention, ``resnet50-11ad3fa6.pth``; None without one."""
    match = re.search(r"-([0-9a-f]{8,})\.[^.-]+$", name)
    return match[1] if match else None


def hub_weights(url: str, what: str = "pretrained weights") -> dict[str, torch.Tensor]:
    """The weights published at ``url``, from the torch hub cache (``$TORCH_HOME/hub/checkpoints/``).

    torch's hub checks the SHA-256 prefix in the file name only when it downloads; a file placed in the cache by hand
    is checked here too. Either way the file is read by `load_weights` (bounded, tensors only), never by torch's
    unbounded ``load_state_dict_from_url``.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(urlparse(url).path).name
    prefix = hash_prefix(path.name)
    if not path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), prefix, progress=True)  # checks the hash prefix too
        except Exception as err:  # offline: URLError, socket errors, a refused connection; a download gone wrong
            raise UserError(
                f"{what}: {path.name} is not in {folder} and could not be downloaded ({type(err).__name__}). Download "
                f"{url} and place it in {folder}/ (set TORCH_HOME to use another cache folder)"
            ) from None
    elif prefix:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if not digest.hexdigest().startswith(prefix):
            raise UserError(
                f"{what}: {path} is not the published file: its SHA-256 starts "
                f"{digest.hexdigest()[: len(prefix)]}, the name says {prefix}; delete it and download {url} again"
            )
    return load_weights(path, what)


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
    return hub_weights(weights.url, f"pretrained weights {name} {pretrained}")


def _load_pretrained(net: nn.Module, state: dict[str, torch.Tensor], source: str, num_classes: int) -> None:
    """Load ``state`` into ``net`` except its classification head, which is sized for other classes."""
    own = net.state_dict()
    # The head's tensors: the same but for their first dimension, which counts the classes.
    head = {
        k
        for k, v in state.items()
        if k in own and own[k].shape != v.shape and own[k].ndim and own[k].shape[1:] == v.shape[1:]
        and own[k].shape[0] == num_classes
    }  # fmt: skip
    fits = {k: v for k, v in state.items() if k in own and k not in head}
    missing = sorted(k for k in own if k not in state)
    # Auxiliary classifiers (GoogLeNet, Inception v3) are in the published files but not in these nets.
    foreign = sorted(k for k in state if k not in own and not k.startswith(("aux", "AuxLogits")))
    wrong = sorted(k for k, v in fits.items() if own[k].shape != v.shape)
    if missing or foreign or wrong:
        problem = (
            f"{missing[0]} is missing" if missing else f"it has {foreign[0]}, which the net lacks" if foreign
            else f"{wrong[0]} is {list(state[wrong[0]].shape)} there and {list(own[wrong[0]].shape)} here"
        )  # fmt: skip
        raise UserError(f"pretrained weights {source} do not fit this net: {problem}")
    net.load_state_dict({**own, **fits})


def _first_conv(net: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """The convolution that reads the image, with its parent module and attribute name."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attribute = name.rpartition(".")
            return net.get_submodule(parent_name), attribute, module
    raise UserError(f"{type(net).__name__} has no convolution to take the image's channels")


def _adapt_input(net: nn.Module, name: str, in_channels: int, stem: str, pretrained: bool) -> None:
    """Give the first convolution ``in_channels``; for ``stem: cifar``, a ResNet's 3x3/1 stem without max-pool."""
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if stem == "cifar":
        if not (isinstance(getattr(net, "conv1", None), nn.Conv2d) and hasattr(net, "maxpool")):
            raise UserError(f"stem cifar is for ResNet-style nets (resnet*, resnext*, wide_resnet*), not {name}")
        net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        return
    parent, attribute, conv = _first_conv(net)
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    if pretrained:  # a grey image is R = G = B: summing the RGB filters keeps their response
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    setattr(parent, attribute, new)


def build_torchvision_net(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    stem: str = "imagenet",
    pretrained: str | None = None,
) -> nn.Module:
    """A torchvision classification model with a head for ``num_classes`` and the input's channel count.

    ``stem`` applies to ResNets: ``imagenet`` is torchvision's 7x7/2 convolution and max-pool (the course's choice,
    right for 224-px photos); ``cifar`` is a 3x3/1 convolution and no max-pool, which keeps 32x32 inputs from
    shrinking to 8x8 before the first block. ``pretrained`` weights load into everything but the head.
    """
    if len(input_shape) != 3:
        raise UserError(f"{name} needs image inputs (channels, height, width), got shape {list(input_shape)}")
    options: dict[str, object] = {"num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):  # their training output is a tuple with auxiliary logits otherwise
        options |= {"aux_logits": False, "init_weights": True}
    net = torchvision.models.get_model(name, weights=None, **options)
    if pretrained:
        _load_pretrained(net, pretrained_state_dict(name, pretrained), f"{name} {pretrained}", num_classes)
    _adapt_input(net, name, input_shape[0], stem, bool(pretrained))
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    except Exception as err:  # shape errors come as RuntimeError, ValueError, AssertionError...
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{name} cannot take images of shape {list(input_shape)} ({detail}); resize them") from None
    return net.train()


def build_net(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    hidden_sizes: Sequence[int] = (10,),
    stem: str = "imagenet",
    pretrained: str | None = None,
) -> nn.Module:
    """Build the network called ``name``: one of `OWN_NETS` or of `TORCHVISION_NETS`."""
    if num_classes < 2:
        raise UserError(f"num_classes must be at least 2, got {num_classes}")
    if name in OWN_NETS and pretrained:
        raise UserError(f"pretrained weights are for torchvision nets; net {name} starts from random weights")
    if name == "mlp":
        return build_mlp(num_classes, input_shape, hidden_sizes)
    if name == "mnist_cnn":
        if stem != "imagenet":
            raise UserError(f"stem {stem} is for torchvision's ResNets; mnist_cnn has its own first layer")
        return build_mnist_cnn(num_classes, input_shape)
    if name == "resnet9":
        if stem != "imagenet":
            raise UserError(f"stem {stem} is for torchvision's ResNets; resnet9 has its own stem, made for 32 px")
        return build_resnet9(num_classes, input_shape)
    if name in TORCHVISION_NETS:
        return build_torchvision_net(name, num_classes, input_shape, stem=stem, pretrained=pretrained)
    close = difflib.get_close_matches(name, (*OWN_NETS, *TORCHVISION_NETS), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"unknown net {name!r}; {hint}Choose mlp, mnist_cnn, resnet9 or one of torchvision's {len(TORCHVISION_NETS)} "
        "classification models (torchvision.models.list_models(module=torchvision.models): resnet18, resnet50, "
        "mobilenet_v3_small, efficientnet_b0, convnext_tiny, ...)"
    )
