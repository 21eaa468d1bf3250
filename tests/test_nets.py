"""Network builders: shapes, stems, channels, and the pretrained-weights path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
