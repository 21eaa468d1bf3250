"""Image datasets held in memory as one uint8 tensor, augmented batch-wise where the model runs.

    files ──prepare_data──▶ verified raw files ──setup──▶ uint8 (N, C, H, W) + int64 labels in memory
          ──DataLoader──▶ uint8 batches ──on_after_batch_transfer──▶ augmented, normalised float32 batches

Subclasses only say how to fetch and read their raw files (`ensure_raw_files`, `load_split`) and what their
classes, shape and statistics are.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lit_cs201.data.augment import build_augment
from lit_cs201.data.base import ClassificationDataModule, TensorBatchDataset, check_val_size, split_count
from lit_cs201.data.decode import decode_readable
from lit_cs201.data.files import IMAGE_SUFFIXES
from lit_cs201.data.inputs import Inversion, apply_inversion, expand_paths, inversion
from lit_cs201.data.pixels import ResizeMode
from lit_cs201.errors import MAX_SEED, UserError, check_range


def augment_setting(option: str, name: str, mean: list[float], std: list[float]) -> nn.Module:
    """The pipeline of preset ``name`` for the datamodule setting ``option``, which an unknown name's error names."""
    try:
        return build_augment(name, mean=mean, std=std)
    except UserError as err:
        raise UserError(f"{option}: {err}") from None


def visible_dirs(folder: Path) -> list[str]:
    """The sorted names of the folders in ``folder``, hidden ones (a name starting with ".") left out."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_args(values: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The arguments of `ImageDataModule.__init__` in ``values`` (a subclass's ``locals()``), then ``overrides``.

    A datamodule whose shared options keep `ImageDataModule`'s defaults takes them as ``**kwargs`` (jsonargparse
    follows them to this signature for ``--data.help`` and configs); one that changes a default (a batch size, a
    preset) writes its whole signature, since only a signature shows a default, and passes it on with this."""
    names = inspect.signature(ImageDataModule.__init__).parameters.keys() - {"self"}
    return {name: values[name] for name in names if name in values} | overrides


class ImageDataModule(ClassificationDataModule):
    """Base of the image datasets: seeded validation split, batched device-side augmentation.

    Args:
        data_dir: Folder holding the dataset in torchvision's layout (an existing torchvision data folder works).
        batch_size: Images per batch.
        val_size: Validation images held out of the official training set: a count or a fraction.
        split_seed: Seed of the validation split.
        train_augment: Augmentation preset for training batches (see `lit_cs201.data.augment`).
        eval_augment: Preset for validation, test and predict batches (deterministic).
        mean: Per-channel mean for normalisation; ``null`` for the dataset's own statistics.
        std: Per-channel standard deviation; ``null`` for the dataset's own statistics.
        download: Download missing files (with checksum verification) in `prepare_data`.
        num_workers: DataLoader worker processes; batches are single indexing operations, so 0 is usually best.
        predict_path: Image files for ``predict`` (a file, a folder searched recursively, a glob, or a list of
            them) instead of the test split; each is converted to the dataset's channels and image size. The
            dataset itself is then not needed.
        invert: Invert the colours of ``predict_path`` images: ``auto`` does so for datasets of light figures on
            a dark background (MNIST) where an image is darker in its centre than on its border (a photo of a
            digit written on paper); ``always``; ``never``.
    """

    #: Per-channel statistics of the training images, used when ``mean``/``std`` are not given.
    dataset_mean: Sequence[float] = ()
    dataset_std: Sequence[float] = ()
    #: Whether the dataset shows light figures on a dark background (MNIST's digits): see ``invert``.
    dark_background: bool = False
    #: How files to predict of another aspect ratio than `image_shape` are resized (`lit_cs201.data.decode.to_uint8`):
    #: stretched, for the built-in datasets, whose own files all have that shape.
    resize: ResizeMode = "stretch"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: int | float = 5000,
        split_seed: int = 42,
        train_augment: str = "none",
        eval_augment: str = "none",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        download: bool = True,
        num_workers: int = 0,
        predict_path: str | list[str] | None = None,
        invert: Literal["auto", "always", "never"] = "auto",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, predict_path=predict_path)
        self.save_hyperparameters()  # lets `test --ckpt_path` rebuild this datamodule from the checkpoint
        check_val_size(val_size)
        check_range("split_seed", split_seed, 0, MAX_SEED)
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise UserError(f"data_dir {data_dir} is a file; give the folder that holds (or will hold) the dataset")
        self.data_dir = data_dir
        self.val_size = val_size
        self.split_seed = split_seed
        self.download = download
        self.invert = invert
        mean = list(self.dataset_mean if mean is None else mean)
        std = list(self.dataset_std if std is None else std)
        # Built now so that a bad preset name fails before anything runs.
        self.train_augment: nn.Module = augment_setting("train_augment", train_augment, mean, std)
        self.eval_augment: nn.Module = augment_setting("eval_augment", eval_augment, mean, std)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the uint8 images of the splits, before augmentation."""
        channels, height, width = self.input_shape
        return channels, height, width

    def augment_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes (C, H, W) that ``train_augment`` and ``eval_augment`` make of an `image_shape` image."""
        probe = torch.zeros(1, *self.image_shape, dtype=torch.uint8)
        with torch.random.fork_rng(devices=[]):  # a random preset must not shift the seeded run's numbers
            return tuple(self.train_augment(probe).shape[1:]), tuple(self.eval_augment(probe).shape[1:])

    def ensure_raw_files(self) -> None:
        """Make the dataset's raw files exist (use, extract or download them); run by `prepare_data`."""

    def prepare_data(self) -> None:
        if self.predict_path is None:  # files to predict need nothing of the dataset
            self.ensure_raw_files()

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """The official training (``train=True``) or test split: uint8 images (N, C, H, W), int64 labels (N,)."""
        raise NotImplementedError

    def decode_for_predict(self, sources: Sequence[Any]) -> tuple[np.ndarray, dict[int, str]]:
        """Files, PIL images or uint8 arrays as uint8 images ``(N, C, H, W)`` of `image_shape` (resized as `resize`
        says), inverted as ``invert`` says; those that cannot be read are left out and returned as {index in
        ``sources``: reason}."""
        images, errors = decode_readable(sources, self.image_shape, "images to predict", resize_mode=self.resize)
        return apply_inversion(images, self.inversion), errors

    @property
    def inversion(self) -> Inversion:
        """How the colours of images to predict are inverted (`lit_cs201.data.inputs.inversion`)."""
        return inversion(self.invert, self.dark_background)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_path is not None:
            if self.predict_set is None:
                files = expand_paths(self.predict_path, IMAGE_SUFFIXES)
                images, errors = self.decode_for_predict(files)
                kept = [str(f) for i, f in enumerate(files) if i not in errors]
                self.set_predict_files(
                    TensorBatchDataset(torch.from_numpy(images)), kept, [(str(files[i]), r) for i, r in errors.items()]
                )
            return
        if stage in ("fit", "validate", None) and self.train_set is None:
            images, labels = self.load_split(train=True)
            n_val = split_count(self.val_size, len(labels))
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val, train = order[:n_val], order[n_val:]
            self.train_set = TensorBatchDataset(images[train], labels[train])
            self.val_set = TensorBatchDataset(images[val], labels[val])
        if stage in ("test", "predict", None) and self.test_set is None:
            self.test_set = TensorBatchDataset(*self.load_split(train=False))

    def on_after_batch_transfer(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> tuple[Tensor, ...]:
        if isinstance(batch, Tensor):  # the model's example input, for the FLOPs of Lightning's model summary
            return batch
        images, *rest = batch
        training = self.trainer is not None and self.trainer.training
        augment = self.train_augment if training else self.eval_augment
        return (augment.to(images.device)(images), *rest)
