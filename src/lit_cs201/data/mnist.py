"""MNIST from the official IDX files, in torchvision's layout: ``<data_dir>/MNIST/raw/*-ubyte``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lit_cs201.data.download import Archive, ensure_archive
from lit_cs201.data.files import UnreadableFileError, open_regular
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
# IDX type codes (the third byte of the magic number); MNIST is unsigned bytes.
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}
_CONTENT = {3: "images (3 dimensions: count, rows, columns)", 1: "labels (1 dimension: count)"}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions (the MNIST format): a magic number that gives
    the type and the dimension count, the big-endian dimension sizes, then the data."""
    if not path.is_file():
        raise UserError(f"{path} not found; delete {path.parent} to fetch the MNIST files again")
    offset = 4 + 4 * ndim
    try:
        with open_regular(path) as file:
            data = file.read(offset)  # the header first: what it declares is checked against the file's size
            if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
                raise UserError(f"{path} is not an MNIST IDX file (magic number {data[:4].hex() or 'missing'})")
            if data[2] != 0x08:
                raise UserError(f"{path} holds {_IDX_TYPES[data[2]]} values; MNIST files hold unsigned bytes")
            if data[3] != ndim:
                found = _CONTENT.get(data[3], f"{data[3]}-dimensional data")
                raise UserError(
                    f"{path} holds {found}, expected {_CONTENT[ndim]}; are the images and labels files swapped?"
                )
            if len(data) < offset:
                raise UserError(f"{path} is truncated: its header is incomplete")
            shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            size = os.fstat(file.fileno()).st_size - offset
            if size != math.prod(shape):  # Python's integers: dimensions may multiply past 64 bits
                raise UserError(f"{path} is truncated: header says {shape}, found {size} bytes of data")
            values = file.read()
    except UnreadableFileError as err:
        raise UserError(f"{path} is not a readable file ({err})") from None
    return np.frombuffer(values, dtype=np.uint8).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 images (N, rows, cols) or labels (N,) as an IDX file, the format :func:`read_idx` reads."""
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


class MNISTDataModule(ImageDataModule):
    """MNIST handwritten digits: 60,000 training (validation held out of them) and 10,000 test images, 28x28."""

    class_names = tuple(str(i) for i in range(10))
    input_shape = (1, 28, 28)
    dataset_mean = (0.1307,)
    dataset_std = (0.3081,)
    dark_background = True  # white digits on black: photos of ink on paper are inverted to match

    @property
    def raw_dir(self) -> Path:
        return Path(self.data_dir) / "MNIST" / "raw"

    def ensure_raw_files(self) -> None:
        for archive in ARCHIVES:
            ensure_archive(archive, self.raw_dir, self.raw_dir, self.download, self.read_only)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        prefix = "train" if train else "t10k"
        images_path, labels_path = (
            self.raw_dir / f"{prefix}-{kind}" for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        )
        images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
        if images.shape[1:] != self.input_shape[1:]:
            raise UserError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images; MNIST's are 28x28")
        if len(images) != len(labels):
            raise UserError(f"{self.raw_dir}: {len(images)} {prefix} images but {len(labels)} labels")
        if len(labels) and labels.max() >= self.num_classes:
            raise UserError(f"{labels_path}: labels must be digits 0..9, found {labels.max()}")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
