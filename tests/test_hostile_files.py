"""A data file or a cached weight file that would run code when read is refused, and its code never runs.

Each payload would create a marker file when unpickled; every test asserts the marker never appears, and the
command stops with exit status 2 and one line that names the file.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS
from lit_cs201.cli import main
from lit_cs201.errors import UserError
from lit_cs201.models.nets import hub_weights
from synthetic import write_cifar10

PREFIX = "lit-cs201: error: "


class Payload:
    """Unpickled, it runs ``exec`` on code that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = tmp_path / "code-ran"
    # The payload works: read without protection, it creates the marker.
    pickle.loads(pickle.dumps(Payload(path)))
    assert path.exists()
    path.unlink()
    return path


def refused(args: list[str], capsys) -> str:
    status = main(args)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2, last
    assert last.startswith(PREFIX)
    return last


@pytest.mark.parametrize("verify_md5", [True, False], ids=["md5 checked", "md5 check off"])
def test_a_cifar10_batch_holding_code_is_refused_unread(marker, capsys, verify_md5):
    folder = write_cifar10(Path("data"), per_batch=8, n_test=8)
    batch = pickle.loads((folder / "data_batch_4").read_bytes())
    (folder / "data_batch_4").write_bytes(pickle.dumps({**batch, "labels": Payload(marker)}))
    args = ["fit", "--config", str(CONFIGS / "cifar10.yaml"), "--data.init_args.data_dir=data"]
    if verify_md5:
        # Synthetic files are not the official ones: the first one read is refused by its md5 already.
        last = refused(args, capsys)
        assert "cifar-10-batches-py/batches.meta is not the official CIFAR-10 file" in last
    else:
        last = refused([*args, "--data.init_args.verify_md5=false"], capsys)
        assert "data/cifar-10-batches-py/data_batch_4 is refused, not read" in last
        assert "builtins.exec" in last
    assert not marker.exists()
    assert not Path("runs").exists()


def _hub_file(name: str, content: bytes) -> Path:
    """``content`` placed in the hub cache by hand as ``name``."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    return folder / name


def _saved(obj) -> bytes:
    path = Path("saved.pth")
    torch.save(obj, path)
    return path.read_bytes()


def test_cached_weights_whose_hash_differs_from_their_name_are_refused_unread(marker, capsys):
    """The file name a config's ``pretrained: IMAGENET1K_V1`` looks for in the cache, holding a payload."""
    _hub_file("resnet18-f37072fd.pth", _saved({"fc.weight": Payload(marker)}))
    last = refused(
        ["fit", "--config", str(CONFIGS / "mnist_resnet18.yaml"), "--model.init_args.pretrained", "IMAGENET1K_V1"],
        capsys,
    )
    assert "hub/checkpoints/resnet18-f37072fd.pth is not the published file" in last
    assert "the name says f37072fd" in last
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in last
    assert not marker.exists()
    assert not Path("runs").exists()


def test_cached_weights_are_read_as_plain_data_only(marker):
    """Even a file whose hash matches its name (here the payload's own hash) is never unpickled beyond tensors."""
    content = _saved({"fc.weight": Payload(marker)})
    digest = hashlib.sha256(content).hexdigest()[:8]
    path = _hub_file(f"evil-{digest}.pth", content)
    with pytest.raises(UserError, match=r"holds objects that are not plain data \(exec\), so it is not loaded"):
        hub_weights(f"https://download.pytorch.org/models/evil-{digest}.pth")
    assert not marker.exists()
    assert path.read_bytes() == content  # left as it was


def test_cached_weights_placed_by_hand_with_the_right_hash_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    state = {"fc.weight": torch.randn(3, 4), "fc.bias": torch.zeros(3)}
    content = _saved(state)
    digest = hashlib.sha256(content).hexdigest()[:8]
    _hub_file(f"tiny-{digest}.pth", content)
    loaded = hub_weights(f"https://download.pytorch.org/models/tiny-{digest}.pth")  # no network: it is cached
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_a_local_weight_file_holding_code_is_refused_unread(marker, capsys):
    Path("r18.pth").write_bytes(_saved({"fc.weight": Payload(marker)}))
    last = refused(
        ["fit", "--config", str(CONFIGS / "mnist_resnet18.yaml"), "--model.init_args.pretrained", "r18.pth"], capsys
    )
    assert "pretrained weights r18.pth: holds objects that are not plain data (exec)" in last
    assert not marker.exists()


def test_a_checkpoint_naming_another_datamodule_class_builds_nothing(tmp_path, marker):
    """`lit_cs201.predict` rebuilds the datamodule a checkpoint names only if it is one of this package's."""
    from lit_cs201.prediction import load

    torch.save(
        {
            "state_dict": {},
            "pytorch-lightning_version": "2.6.6",
            "datamodule_hyper_parameters": {
                "_class_path": "builtins.exec",
                "source": f"open({str(marker)!r}, 'w').close()",  # what exec(**settings) would run
            },
        },
        tmp_path / "odd.ckpt",
    )
    with pytest.raises(UserError, match="_class_path names 'builtins.exec', which is not a class a checkpoint may"):
        load(tmp_path / "odd.ckpt")
    assert not marker.exists()
