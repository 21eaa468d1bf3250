"""MNIST from the official IDX files, in torchvision's layout: ``<data_dir>/MNIST/raw/*-ubyte``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lit_cs201.data.download import Archive, ensure_archive
from lit_cs201.data.images import ImageDataModule
from lit_cs201.errors import UserError

_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
# (file, md5 of its .gz), as torchvision lists them.
_FILES = (
    ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
)
ARCHIVES = tuple(Archive(f"{name}.gz", md5, tuple(m + f"{name}.gz" for m in _MIRRORS), (name,)) for name, md5 in _FILES)
_IDX_MAGIC = {2051: 3, 2049: 1}  # images: 3 dimensions (n, rows, cols); labels: 1


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format): big-endian magic, dimension sizes, then data."""
    data = path.read_bytes()
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise UserError(f"{path} is not an MNIST IDX file (magic number {magic}, expected 2051 or 2049)")
    ndim = _IDX_MAGIC[magic]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: header says {shape}, found {len(data) - offset} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


class MNISTDataModule(ImageDataModule):
    """MNIST handwritten digits: 60,000 training (validation held out of them) and 10,000 test images, 28x28."""

    class_names = tuple(str(i) for i in range(10))
    input_shape = (1, 28, 28)
    dataset_mean = (0.1307,)
    dataset_std = (0.3081,)

    @property
    def raw_dir(self) -> Path:
        return Path(self.data_dir) / "MNIST" / "raw"

    def prepare_data(self) -> None:
        for archive in ARCHIVES:
            ensure_archive(archive, self.raw_dir, self.raw_dir, self.download)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        prefix = "train" if train else "t10k"
        images = read_idx(self.raw_dir / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(self.raw_dir / f"{prefix}-labels-idx1-ubyte")
        if len(images) != len(labels):
            raise UserError(f"{self.raw_dir}: {len(images)} {prefix} images but {len(labels)} labels")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
