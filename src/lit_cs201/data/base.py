"""What every classification DataModule shares: class metadata, the split sizes, and the loaders."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_cs201.data.inputs import none_readable
from lit_cs201.errors import UserError, check_range


def check_val_size(val_size: int | float) -> None:
    """Refuse a ``val_size`` that is neither a whole count nor a fraction in (0, 1)."""
    is_fraction = isinstance(val_size, float) and 0 < val_size < 1
    is_count = not isinstance(val_size, bool) and float(val_size).is_integer() and val_size >= 1
    if not (is_fraction or is_count):
        raise UserError(f"val_size must be a sample count (e.g. 5000) or a fraction in (0, 1), got {val_size!r}")


def split_count(val_size: int | float, total: int) -> int:
    """Number of samples a ``val_size`` (a count, or a fraction of ``total``) stands for."""
    check_val_size(val_size)
    count = round(val_size * total) if val_size < 1 else int(val_size)
    if not 0 < count < total:
        raise UserError(
            f"--data.init_args.val_size {val_size!r} is {'all' if count >= total else 'none'} of the {total} training "
            f"samples; hold out fewer, e.g. --data.init_args.val_size 0.1 (a tenth)"
        )
    return count


class TensorBatchDataset(Dataset):
    """Tensors indexed together, like `TensorDataset`, but a whole batch is one indexing operation.

    The DataLoader hands `__getitems__` the batch's indices; with `collate_batch` as collate function there is
    no per-sample Python work: for CIFAR-10 that is the difference between a few thousand and a few hundred
    thousand samples per second. Samplers, shuffling and distributed sampling work as with any dataset.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchDataset needs tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


def collate_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """`__getitems__` already returns a batch."""
    return batch


class ClassificationDataModule(LightningDataModule):
    """Base of the dataset modules: subclasses set `class_names` and `input_shape` and fill the datasets in `setup`.

    Args:
        batch_size: Samples per batch, for every stage.
        num_workers: DataLoader worker processes.
        predict_path: What ``predict`` predicts: files (a file, a folder, a glob, or a list of them) instead of the
            test split. The dataset itself is then not needed: the checkpoint has what the files need.
    """

    #: Readable name of each class, in label order.
    class_names: Sequence[str] = ()
    #: Shape of one sample without the batch dimension.
    input_shape: Sequence[int] = ()
    #: What ``predict_path`` holds one prediction per, in the predictions' summary line.
    predict_unit: str = "files"
    #: Write nothing where the data is (no download, extraction or decode cache), only read it: set for a
    #: ``data_dir`` that came from a checkpoint, which says where a model was trained, never where to write now.
    read_only: bool = False

    def __init__(self, batch_size: int = 64, num_workers: int = 0, predict_path: str | list[str] | None = None) -> None:
        super().__init__()
        check_range("batch_size", batch_size, 1)
        check_range("num_workers", num_workers, 0, hint="0 loads batches in the main process")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_path = predict_path
        self.predict_set: Dataset | None = None
        #: The files of ``predict_set``, in its order, and those that could not be read, with the reason.
        self.predict_files: list[str] = []
        self.predict_errors: list[tuple[str, str]] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not prepared this split")
        sampler: Sampler | None = None
        trainer = self.trainer
        if not shuffle and trainer is not None and trainer.world_size > 1:
            # Lightning's DistributedSampler pads every process to the same length with repeated samples, so a
            # multi-process val/test score would count some samples twice and differ from a single-process one.
            # This split gives each sample to exactly one process (shards differ in length by at most one; the
            # metrics' sync adds up uneven shards). Lightning leaves a DistributedSampler it is given in place.
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=collate_batch if isinstance(dataset, TensorBatchDataset) else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The files of ``predict_path``; else the test split, so the CSV can show the true labels beside them."""
        return self._loader(self.test_set if self.predict_path is None else self.predict_set, shuffle=False)

    def set_predict_files(self, dataset: Dataset, files: Sequence[str], errors: Sequence[tuple[str, str]]) -> None:
        """Hold the decoded files of ``predict_path``; refuse when not one could be read."""
        if not files:
            raise none_readable(self.predict_path, errors)
        self.predict_set, self.predict_files, self.predict_errors = dataset, list(files), list(errors)
