"""MNIST and CIFAR-10 DataModules on files written in the official raw formats."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile

import pytest
import torch

from lit_cs201.data import CIFAR10DataModule, MNISTDataModule
from lit_cs201.data import cifar10 as cifar10_module
from lit_cs201.data import mnist as mnist_module
from lit_cs201.data.download import Archive
from lit_cs201.errors import UserError
from synthetic import CIFAR_NAMES, write_cifar10, write_mnist


def test_mnist_reads_idx_files_into_uint8_tensors(tmp_path):
    write_mnist(tmp_path, n_train=120, n_test=30)
    data = MNISTDataModule(data_dir=str(tmp_path), val_size=20)
    data.prepare_data()  # files present: no download attempted (the network guard would fail it)
    data.setup("fit")
    data.setup("test")
    images, labels = data.train_set.tensors
    assert images.dtype == torch.uint8 and images.shape == (100, 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.max() < 10
    assert len(data.val_set) == 20 and len(data.test_set) == 30


def test_cifar10_reads_python_batches_and_class_names(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=10, n_test=8)
    renamed = ["plane", *CIFAR_NAMES[1:]]  # the course's name for class 0; must come from batches.meta
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": renamed}, f)
    data = CIFAR10DataModule(data_dir=str(tmp_path), val_size=0.2, verify_md5=False)
    data.prepare_data()
    data.setup("fit")
    images, _ = data.train_set.tensors
    assert images.shape == (40, 3, 32, 32) and images.dtype == torch.uint8
    assert list(data.class_names) == renamed


def test_validation_split_is_seeded_disjoint_and_sized(tmp_path):
    write_cifar10(tmp_path, per_batch=20, n_test=5)

    def split(seed, val_size):
        data = CIFAR10DataModule(data_dir=str(tmp_path), val_size=val_size, split_seed=seed, verify_md5=False)
        data.setup("fit")
        return data.train_set.tensors[0], data.val_set.tensors[0]

    train, val = split(0, 30)
    assert len(val) == 30 and len(train) == 70
    train_again, val_again = split(0, 30)
    assert torch.equal(val, val_again) and torch.equal(train, train_again)
    _, val_other = split(1, 30)
    assert not torch.equal(val, val_other)
    assert len(split(0, 0.1)[1]) == 10
    # Disjoint: no training image equals a validation image (the fake images are all distinct).
    flat_train = {bytes(t.flatten().tolist()) for t in train}
    assert not any(bytes(v.flatten().tolist()) in flat_train for v in val)


def test_missing_files_offline_name_file_url_md5_and_destination(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(UserError) as err:
        data.prepare_data()  # tries to download: the test guard refuses the connection
    message = str(err.value)
    archive = mnist_module.ARCHIVES[0]
    for part in (archive.provides[0], archive.urls[0], archive.md5, str(tmp_path / "MNIST" / "raw")):
        assert part in message
    assert not (tmp_path / "MNIST" / "raw" / archive.provides[0]).exists()

    data = CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(UserError, match="c58f30108f718f92721af3b95e74349a"):
        data.prepare_data()


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_placed_archives_are_verified_and_extracted_without_network(tmp_path, monkeypatch):
    # MNIST: the four .gz files placed in MNIST/raw.
    source = write_mnist(tmp_path / "src", n_train=50, n_test=10)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    archives = []
    for archive in mnist_module.ARCHIVES:
        name = archive.provides[0]
        placed = raw / f"{name}.gz"
        placed.write_bytes(gzip.compress((source / name).read_bytes()))
        archives.append(Archive(placed.name, _md5(placed), archive.urls, archive.provides))
    monkeypatch.setattr(mnist_module, "ARCHIVES", tuple(archives))
    data = MNISTDataModule(data_dir=str(tmp_path / "data"), val_size=10)
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_set) == 40

    # CIFAR-10: the tarball placed in data_dir; a damaged one is refused, naming the md5 it should have.
    write_cifar10(tmp_path / "csrc", per_batch=4, n_test=4)
    tarball = tmp_path / "cdata" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "csrc" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    good = Archive(tarball.name, _md5(tarball), cifar10_module.ARCHIVE.urls, cifar10_module.ARCHIVE.provides)
    monkeypatch.setattr(cifar10_module, "ARCHIVE", Archive(tarball.name, "0" * 32, good.urls, good.provides))
    with pytest.raises(UserError, match="0{32}"):
        CIFAR10DataModule(data_dir=str(tarball.parent)).prepare_data()
    monkeypatch.setattr(cifar10_module, "ARCHIVE", good)
    data = CIFAR10DataModule(data_dir=str(tarball.parent), val_size=4, verify_md5=False)
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_set) == 16


def test_truncated_idx_file_is_refused(tmp_path):
    raw = write_mnist(tmp_path, n_train=20, n_test=5)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    data = MNISTDataModule(data_dir=str(tmp_path), val_size=5)
    with pytest.raises(UserError, match="truncated"):
        data.setup("fit")


def test_batches_are_augmented_only_in_training(tmp_path):
    write_cifar10(tmp_path, per_batch=8, n_test=8)
    data = CIFAR10DataModule(
        data_dir=str(tmp_path), val_size=8, batch_size=8, train_augment="cifar_crop_flip", verify_md5=False
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (8, 3, 32, 32)  # a single indexing operation

    class FakeTrainer:
        training = False

    data.trainer = FakeTrainer()
    first = data.on_after_batch_transfer(batch, 0)[0]
    second = data.on_after_batch_transfer(batch, 0)[0]
    assert first.dtype == torch.float32 and torch.equal(first, second)  # evaluation: deterministic
    mean = torch.tensor(data.dataset_mean).view(1, 3, 1, 1)
    std = torch.tensor(data.dataset_std).view(1, 3, 1, 1)
    assert torch.allclose(first, (batch[0].float() / 255 - mean) / std, atol=1e-5)
    FakeTrainer.training = True
    augmented = [data.on_after_batch_transfer(batch, 0)[0] for _ in range(3)]
    assert not all(torch.equal(augmented[0], a) for a in augmented[1:])


def test_bad_augment_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="cifar_crop_flip"):
        CIFAR10DataModule(data_dir=str(tmp_path), train_augment="cifar_flip_crop")
