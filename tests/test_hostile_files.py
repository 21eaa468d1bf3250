"""A data file or a cached weight file that would run code when read is refused, and its code never runs.

Each payload would create a marker file when unpickled; every test asserts the marker never appears, and the
command stops with exit status 2 and one line that names the file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import CONFIGS
from lit_cs201.cli.lightning_cli import main
from lit_cs201.errors import UserError
from lit_cs201.models.nets import hub_weights
from synthetic import write_cifar10, write_mnist

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
    from lit_cs201.deploy.from_checkpoint import load

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


class EmptyArray:
    """Unpickled, numpy's ``_reconstruct`` of an array of ``shape``: allocated, with no values from the file."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, self.shape, np.dtype("u1"))


def test_a_cifar10_batch_declaring_an_array_without_its_values_is_refused(tmp_path, monkeypatch, capsys):
    """A few bytes of pickle asked numpy for gigabytes (150,000 images of 3,072 bytes from a 2 MB folder)."""
    monkeypatch.chdir(tmp_path)
    folder = write_cifar10(Path("data"), per_batch=8, n_test=8)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": EmptyArray((150_000, 3072)), "labels": [0] * 8}))
    args = ["fit", "--config", str(CONFIGS / "cifar10.yaml"), "--data.init_args.data_dir=data"]
    last = refused([*args, "--data.init_args.verify_md5=false"], capsys)
    assert "data_batch_1 is refused, not read: it declares an array of shape (150000, 3072) without its values" in last


def test_an_mnist_file_whose_dimensions_overflow_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    raw = write_mnist(Path("mnist"), n_train=64, n_test=16)
    images = raw / "train-images-idx3-ubyte"
    header = (2051).to_bytes(4, "big") + b"".join((2**31 - 1).to_bytes(4, "big") for _ in range(3))
    images.write_bytes(header + images.read_bytes()[16:])
    last = refused(["fit", "--config", str(CONFIGS / "mnist.yaml"), "--data.init_args.data_dir=mnist"], capsys)
    assert "train-images-idx3-ubyte is truncated: header says (2147483647, 2147483647, 2147483647)" in last


def test_an_image_that_declares_more_pixels_than_are_decoded_is_refused_before_decoding(tmp_path):
    """A PNG of one colour is a few hundred KB however large it says it is: 13,000 x 13,000 pixels took 700 MB."""
    from PIL import Image

    from lit_cs201.data.decode import BadImageError, to_uint8

    Image.new("L", (9000, 8000)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 1 << 20
    with pytest.raises(BadImageError, match=r"9000x8000 pixels to decode, more than the 67,108,864 read at most"):
        to_uint8(tmp_path / "bomb.png", 1, 28)


def test_a_squad_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    from lit_cs201.course.squad import load_squad

    os.mkfifo(tmp_path / "dev.json")

    def blocked(*_):
        raise AssertionError("reading the FIFO blocked")

    previous = signal.signal(signal.SIGALRM, blocked)  # a blocked open() is interrupted, not waited out
    signal.alarm(20)
    try:
        with pytest.raises(UserError, match=r"cannot read SQuAD file .*dev.json.*: a FIFO, not a regular file"):
            load_squad(tmp_path / "dev.json")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_downloaded_weights_are_read_as_plain_data_only(marker, monkeypatch):
    """A file the download brings is read by the same bounded reader as one found in the cache: a server (or a cache
    proxy) that serves a pickle with code gets it refused, not run."""
    content = _saved({"fc.weight": Payload(marker)})
    digest = hashlib.sha256(content).hexdigest()[:8]

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        assert hash_prefix == digest  # torch checks the name's hash prefix as it downloads
        Path(dst).write_bytes(content)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    with pytest.raises(UserError, match=r"holds objects that are not plain data \(exec\), so it is not loaded"):
        hub_weights(f"https://download.pytorch.org/models/evil-{digest}.pth")
    assert not marker.exists()
