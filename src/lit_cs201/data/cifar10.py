"""CIFAR-10 from the official python batches, in torchvision's layout: ``<data_dir>/cifar-10-batches-py/``."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lit_cs201.data.download import Archive, ensure_archive
from lit_cs201.data.images import ImageDataModule
from lit_cs201.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
ARCHIVE = Archive(
    "cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    tuple(f"{FOLDER}/{name}" for name in (*TRAIN_BATCHES, "test_batch", "batches.meta")),
)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        message = f"{path} is not a readable CIFAR-10 batch ({err}); delete the folder to fetch it again"
        raise UserError(message) from None


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50,000 training (validation held out of them) and 10,000 test colour images, 32x32, 10 classes.

    Class names come from ``batches.meta`` once the data is there.
    """

    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    input_shape = (3, 32, 32)
    dataset_mean = (0.4914, 0.4822, 0.4465)
    dataset_std = (0.2470, 0.2435, 0.2616)

    @property
    def batches_dir(self) -> Path:
        return Path(self.data_dir) / FOLDER

    def prepare_data(self) -> None:
        ensure_archive(ARCHIVE, Path(self.data_dir), Path(self.data_dir), self.download)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        meta = self.batches_dir / "batches.meta"
        if meta.is_file():
            self.class_names = tuple(_unpickle(meta)["label_names"])
        images, labels = [], []
        for name in TRAIN_BATCHES if train else ("test_batch",):
            batch = _unpickle(self.batches_dir / name)
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
