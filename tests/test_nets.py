"""Network builders: shapes, stems, channels, the pretrained-weights path, and ResNet-9 against its source."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lit_cs201.errors import UserError
from lit_cs201.models import Classifier, build_net


@pytest.mark.parametrize(
    "name, shape, stem",
    [
        ("resnet18", (1, 28, 28), "imagenet"),
        ("resnet18", (3, 32, 32), "cifar"),
        ("resnet50", (3, 64, 64), "imagenet"),
    ],
)
def test_resnets_take_the_input_shape_and_class_count(name, shape, stem):
    net = build_net(name, num_classes=7, input_shape=shape, stem=stem).eval()
    assert net.conv1.in_channels == shape[0]
    with torch.no_grad():
        assert net(torch.zeros(2, *shape)).shape == (2, 7)


def test_cifar_stem_keeps_resolution_and_imagenet_stem_quarters_it():
    features = {}
    for stem in ("cifar", "imagenet"):
        net = build_net("resnet18", 10, (3, 32, 32), stem=stem).eval()
        net.layer1.register_forward_hook(lambda m, i, o, stem=stem: features.__setitem__(stem, o.shape[-1]))
        with torch.no_grad():
            net(torch.zeros(1, 3, 32, 32))
    assert features == {"cifar": 32, "imagenet": 8}
    assert isinstance(build_net("resnet18", 10, (3, 32, 32), stem="cifar").maxpool, nn.Identity)


def test_mlp_matches_the_course_iris_net():
    net = build_net("mlp", 3, (4,), hidden_sizes=(10,))
    assert [tuple(p.shape) for p in net.parameters()] == [(10, 4), (10,), (3, 10), (3,)]


def test_missing_pretrained_weights_name_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as err:
        build_net("resnet50", 200, (3, 224, 224), pretrained="IMAGENET1K_V2")
    message = str(err.value)
    assert "resnet50-11ad3fa6.pth" in message
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        build_net("resnet50", 200, (3, 224, 224), pretrained="IMAGENET9K")


def test_pretrained_from_a_local_file_and_grey_inputs(tmp_path):
    source = build_net("resnet18", 1000, (3, 32, 32))
    source_state = {k: v for k, v in source.state_dict().items()}
    path = tmp_path / "weights.pth"
    torch.save(source_state, path)
    net = build_net("resnet18", 10, (1, 28, 28), pretrained=str(path))
    assert torch.equal(net.layer1[0].conv1.weight, source_state["layer1.0.conv1.weight"])
    assert torch.allclose(net.conv1.weight, source_state["conv1.weight"].sum(dim=1, keepdim=True))
    assert net.fc.out_features == 10


def test_compile_and_channels_last_keep_checkpoint_keys():
    plain = Classifier(num_classes=10, input_shape=[3, 32, 32], net="resnet18", stem="cifar")
    fast = Classifier(
        num_classes=10,
        input_shape=[3, 32, 32],
        net="resnet18",
        stem="cifar",
        channels_last=True,
        compile=True,
    )
    assert plain.state_dict().keys() == fast.state_dict().keys()
    fast.load_state_dict(plain.state_dict())


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mobilenet_v3_small", (1, 32, 32)),
        ("efficientnet_b0", (3, 32, 32)),
        ("squeezenet1_1", (1, 64, 64)),  # its head is a convolution
        ("shufflenet_v2_x0_5", (3, 48, 40)),
        ("googlenet", (3, 64, 64)),  # auxiliary heads off: training gives plain logits
    ],
)
def test_any_torchvision_model_takes_the_input_shape_and_class_count(name, shape):
    net = build_net(name, num_classes=7, input_shape=shape)
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == shape[0]
    assert net.training
    out = net(torch.rand(2, *shape))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    out.sum().backward()  # trains as it is


def test_pretrained_weights_load_into_every_layer_but_the_head(tmp_path):
    source = torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict()  # 1000 ImageNet classes
    torch.save(source, tmp_path / "mnv3.pth")
    net = build_net("mobilenet_v3_small", 5, (1, 64, 64), pretrained=str(tmp_path / "mnv3.pth"))
    state = net.state_dict()
    head = {"classifier.3.weight", "classifier.3.bias"}
    assert state["classifier.3.weight"].shape == (5, 1024)
    first = "features.0.0.weight"  # grey input: the RGB filters summed
    assert torch.allclose(state[first], source[first].sum(dim=1, keepdim=True))
    assert all(torch.equal(state[k], source[k]) for k in source if k not in head | {first})


def test_published_googlenet_weights_with_auxiliary_heads_load(tmp_path):
    source = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).state_dict()
    assert any(k.startswith("aux1.") for k in source)  # as in the published file
    torch.save(source, tmp_path / "googlenet.pth")
    net = build_net("googlenet", 3, (3, 64, 64), pretrained=str(tmp_path / "googlenet.pth"))
    assert torch.equal(net.state_dict()["conv1.conv.weight"], source["conv1.conv.weight"])


def test_weights_of_another_net_are_refused_naming_a_tensor(tmp_path):
    torch.save(build_net("resnet18", 1000, (3, 32, 32)).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match=r"r18.pth do not fit this net: .* is missing"):
        build_net("resnet34", 10, (3, 32, 32), pretrained=str(tmp_path / "r18.pth"))


@pytest.mark.parametrize(
    "name, shape, options, expected",
    [
        (
            "resnet_9",
            (3, 32, 32),
            {},
            r"unknown net 'resnet_9'; did you mean resnet9, .*Choose mlp, mnist_cnn, resnet9 or",
        ),
        ("mobilenet_v3_smal", (3, 32, 32), {}, "did you mean mobilenet_v3_small"),
        ("maxvit_t", (3, 64, 64), {}, r"maxvit_t cannot take images of shape \[3, 64, 64\]"),
        ("resnet18", (4,), {}, r"resnet18 needs image inputs .* \[4\]"),
        ("efficientnet_b0", (3, 32, 32), {"stem": "cifar"}, "stem cifar is for ResNet-style nets"),
        ("mlp", (4,), {"pretrained": "DEFAULT"}, "pretrained weights are for torchvision nets"),
        ("resnet9", (3, 32, 32), {"pretrained": "DEFAULT"}, "net resnet9 starts from random weights"),
        ("resnet9", (3, 32, 32), {"stem": "cifar"}, "resnet9 has its own stem"),
        ("resnet9", (3, 6, 32), {}, r"resnet9 halves the image three times and needs at least 8x8 pixels, got 6x32"),
        ("resnet9", (3072,), {}, r"resnet9 needs image inputs .* \[3072\]"),
        ("mnist_cnn", (1, 28, 28), {"pretrained": "DEFAULT"}, "net mnist_cnn starts from random weights"),
        ("mnist_cnn", (1, 28, 28), {"stem": "cifar"}, "mnist_cnn has its own first layer"),
        ("mnist_cnn", (1, 3, 28), {}, r"mnist_cnn halves the image twice and needs at least 4x4 pixels, got 3x28"),
        ("mnist_cnn", (784,), {}, r"mnist_cnn needs image inputs .* \[784\]"),
    ],
)
def test_nets_that_cannot_be_built_are_refused_with_what_to_do(name, shape, options, expected):
    with pytest.raises(UserError, match=expected):
        build_net(name, 10, shape, **options)


def test_any_nets_weights_by_name_come_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT.url
    with pytest.raises(UserError) as err:
        build_net("mobilenet_v3_small", 10, (3, 64, 64), pretrained="DEFAULT")  # offline: the guard refuses
    assert url in str(err.value) and url.rsplit("/", 1)[1] in str(err.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)


# Page's ResNet-9 (dawn.py of github.com/davidcpage/cifar10-fast, its net() in dawn_utils.py) measured with the
# source's own code: Network(net()) built on the CPU (torch 2.14), its parameter count and the forward FLOPs of one
# 32x32 image under torch.utils.flop_counter.FlopCounterMode. Loaded with that network's weights, ours gives the
# same logits to the last bit, in training and in evaluation mode.
SOURCE_RESNET9_PARAMETERS = 6_573_120
SOURCE_RESNET9_FLOPS = 758_523_904
#: (in, out) channels of its 3x3 convolutions in order, and the side of the map each one runs on at 32 px.
RESNET9_CONVS = [(3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
RESNET9_SIDES = [32, 32, 16, 16, 16, 8, 4, 4]


def test_resnet9_has_the_sources_parameter_count_and_flops():
    net = build_net("resnet9", 10, (3, 32, 32)).eval()
    # By hand from the layer list: bias-free convolutions with a batch norm each (scale and shift), and a bias-free
    # linear layer 512 -> 10.
    by_hand = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out in RESNET9_CONVS) + 512 * 10
    assert sum(p.numel() for p in net.parameters()) == by_hand == SOURCE_RESNET9_PARAMETERS
    # Two FLOPs per multiply-add; only convolutions and the linear layer count, as in FlopCounterMode.
    flops = sum(
        2 * 9 * c_in * c_out * side**2 for (c_in, c_out), side in zip(RESNET9_CONVS, RESNET9_SIDES, strict=True)
    )
    assert flops + 2 * 512 * 10 == SOURCE_RESNET9_FLOPS
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = net(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert counter.get_total_flops() == 2 * SOURCE_RESNET9_FLOPS


def source_resnet9(x: torch.Tensor, parameters: list[torch.Tensor]) -> torch.Tensor:
    """The source's graph in training mode, as functional ops over a parameter list: each unit is conv, batch
    norm, ReLU, then a 2x2 max-pool in the units that widen to 128, 256 and 512; a residual adds its input to its
    second unit's output; the logits are 0.125 x a bias-free linear layer of the 4x4 map's maximum."""
    weights = iter(parameters)

    def unit(x: torch.Tensor, pool: bool = False) -> torch.Tensor:
        conv, scale, shift = next(weights), next(weights), next(weights)
        x = F.relu(F.batch_norm(F.conv2d(x, conv, padding=1), None, None, scale, shift, training=True))
        return F.max_pool2d(x, 2) if pool else x

    x = unit(x)
    x = unit(x, pool=True)
    x = x + unit(unit(x))
    x = unit(x, pool=True)
    x = unit(x, pool=True)
    x = x + unit(unit(x))
    x = F.max_pool2d(x, 4).flatten(1)
    return 0.125 * F.linear(x, next(weights))


def test_resnet9_computes_the_sources_graph():
    net = build_net("resnet9", 10, (3, 32, 32))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), source_resnet9(x, list(net.parameters())))


@pytest.mark.parametrize("shape, classes", [((3, 32, 32), 10), ((1, 28, 28), 7), ((3, 64, 64), 200), ((3, 8, 8), 2)])
def test_resnet9_in_the_classifier_takes_the_input_shape_and_class_count(shape, classes):
    model = Classifier(num_classes=classes, input_shape=list(shape), net="resnet9")
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, classes)
    out.sum().backward()
    assert model.net.prep[0].weight.grad is not None


#: (in, out) channels of mnist_cnn's 3x3 convolutions for one-channel digits, and the side of the map each one runs on.
MNIST_CNN_CONVS = [(1, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
MNIST_CNN_SIDES = [28, 14, 14, 7, 7]


def test_mnist_cnn_has_the_parameters_and_flops_of_its_layer_list():
    net = build_net("mnist_cnn", 10, (1, 28, 28)).eval()
    # By hand: bias-free convolutions with a batch norm each (scale and shift), a linear layer 128 -> 10 with bias.
    by_hand = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out in MNIST_CNN_CONVS) + 128 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == by_hand == 278_890
    # The docstring's 22 M multiply-adds an image: convolutions and the linear layer, as FlopCounterMode counts.
    multiply_adds = sum(
        9 * c_in * c_out * side**2 for (c_in, c_out), side in zip(MNIST_CNN_CONVS, MNIST_CNN_SIDES, strict=True)
    )
    multiply_adds += 128 * 10
    assert round(multiply_adds / 1e6) == 22
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = net(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10)
    assert counter.get_total_flops() == 2 * 2 * multiply_adds  # two images, two FLOPs per multiply-add


@pytest.mark.parametrize("shape, classes", [((1, 28, 28), 10), ((3, 32, 32), 7), ((1, 4, 4), 2)])
def test_mnist_cnn_in_the_classifier_takes_the_input_shape_and_class_count(shape, classes):
    model = Classifier(num_classes=classes, input_shape=list(shape), net="mnist_cnn", channels_last=True)
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, classes)
    out.sum().backward()
    assert model.net.layer1[0][0].weight.grad is not None
