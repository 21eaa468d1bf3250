"""CIFAR-10 from the official python batches, in torchvision's layout: ``<data_dir>/cifar-10-batches-py/``.

The batches are pickles, and unpickling runs whatever a file asks for. So each file is checked against its
official md5 before it is read, and read with an unpickler that builds only what these files hold (dicts, lists,
strings, numbers and numpy arrays); what it reads is checked for the shapes, types and label range of CIFAR-10.
"""

from __future__ import annotations

import functools
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import CIFAR10

from lit_cs201.data.download import Archive, ensure_archive, md5
from lit_cs201.data.images import ImageDataModule
from lit_cs201.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
META = "batches.meta"
ARCHIVE = Archive(
    "cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    tuple(f"{FOLDER}/{name}" for name in (*TRAIN_BATCHES, "test_batch", META)),
)
# md5 of every file of the official archive, as torchvision lists them.
OFFICIAL_MD5 = dict([*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], CIFAR10.meta["md5"])])
NUM_CLASSES = 10
IMAGE_BYTES = 3 * 32 * 32


class RefusedPickle(pickle.UnpicklingError):
    """A pickle that asks to build something other than plain data."""


class _BatchUnpickler(pickle.Unpickler):
    """Builds the plain containers pickle makes by itself, plus numpy arrays; refuses every other global.

    The official batches were written by Python 2 (``numpy.core``); files written since may name ``numpy._core``,
    use protocol 5's ``_frombuffer``, or ``_codecs.encode`` for bytes at protocol 2.
    """

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise RefusedPickle(f"it asks to run {module}.{name}, which a CIFAR-10 batch never holds")
        found = super().find_class(module, name)
        return functools.partial(_empty_array, found) if name == "_reconstruct" else found


def _empty_array(reconstruct: Any, subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` for the empty array numpy pickles an array as, before it fills it with the bytes that
    follow in the file. Given a shape of its own, it would allocate that array from nothing: a few bytes of pickle
    could ask for gigabytes."""
    if not (isinstance(shape, tuple) and all(isinstance(n, int) for n in shape) and math.prod(shape) == 0):
        raise RefusedPickle(f"it declares an array of shape {shape!r:.40} without its values")
    return reconstruct(subtype, shape, dtype)


def read_batch(path: Path, verify_md5: bool = True) -> dict[str, Any]:
    """One CIFAR-10 pickle as a dict, refused with a one-line `UserError` unless it is safe and whole."""
    if not path.is_file():
        raise UserError(f"{path} not found; delete {path.parent} to fetch the whole set again")
    official = OFFICIAL_MD5.get(path.name)
    if verify_md5 and official is not None and (found := md5(path)) != official:
        raise UserError(
            f"{path} is not the official CIFAR-10 file (md5 {found}, expected {official}); delete {path.parent} to "
            "fetch it again (for a CIFAR-10-format set of your own, set data.init_args.verify_md5 false)"
        )
    try:
        with path.open("rb") as f:
            content = _BatchUnpickler(f, encoding="latin1").load()
    except RefusedPickle as err:
        raise UserError(f"{path} is refused, not read: {err}") from None
    except Exception as err:  # truncated or garbled pickles fail in many ways (EOFError, ValueError, ...)
        message = f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}); delete {path.parent} "
        raise UserError(message + "to fetch it again") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} is not a CIFAR-10 batch: expected a dict, found {type(content).__name__}")
    return content


def read_images(path: Path, verify_md5: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A data or test batch: uint8 images (N, 3, 32, 32) and int64 labels in [0, 10), counts agreeing."""
    batch = read_batch(path, verify_md5)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise UserError(f"{path} is not a CIFAR-10 batch: no {' or '.join(missing)} (keys: {sorted(map(str, batch))})")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        found = f"{data.dtype} array {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: data must be a uint8 array [N, {IMAGE_BYTES}], found {found}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: labels must be a list of whole numbers, found {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(data):
        raise UserError(f"{path}: {len(data)} images but {len(labels)} labels")
    if len(labels) and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise UserError(f"{path}: labels must be in 0..{NUM_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_class_names(path: Path, verify_md5: bool = True) -> tuple[str, ...]:
    """The ten class names of ``batches.meta``."""
    names = read_batch(path, verify_md5).get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES or not all(isinstance(n, str) for n in names):
        raise UserError(f"{path}: label_names must be a list of {NUM_CLASSES} names, found {names!r:.80}")
    return tuple(names)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50,000 training (validation held out of them) and 10,000 test colour images, 32x32, 10 classes.

    Class names come from ``batches.meta`` once the data is there.

    Args:
        verify_md5: Refuse batch files whose md5 is not the official one. Turn it off only for a set of your own
            in the CIFAR-10 format (the files are still read safely and checked).
        **kwargs: The options of `ImageDataModule`.
    """

    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    input_shape = (3, 32, 32)
    dataset_mean = (0.4914, 0.4822, 0.4465)
    dataset_std = (0.2470, 0.2435, 0.2616)

    def __init__(self, *, verify_md5: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verify_md5 = verify_md5

    @property
    def batches_dir(self) -> Path:
        return Path(self.data_dir) / FOLDER

    def ensure_raw_files(self) -> None:
        ensure_archive(ARCHIVE, Path(self.data_dir), Path(self.data_dir), self.download, self.read_only)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        meta = self.batches_dir / META
        if meta.is_file():
            self.class_names = read_class_names(meta, self.verify_md5)
        names = TRAIN_BATCHES if train else ("test_batch",)
        batches = [read_images(self.batches_dir / name, self.verify_md5) for name in names]
        images, labels = (np.concatenate(parts) for parts in zip(*batches, strict=True))
        return torch.from_numpy(images), torch.from_numpy(labels)
