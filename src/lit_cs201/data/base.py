"""What every classification DataModule shares: class metadata, the split sizes, and the loaders."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lit_cs201.errors import UserError


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
        raise UserError(f"val_size={val_size!r} leaves {total - count} of {total} samples for training")
    return count


class ClassificationDataModule(LightningDataModule):
    """Base of the dataset modules: subclasses set `class_names` and `input_shape` and fill the datasets in `setup`.

    Args:
        batch_size: Samples per batch, for every stage.
        num_workers: DataLoader worker processes.
    """

    #: Readable name of each class, in label order.
    class_names: Sequence[str] = ()
    #: Shape of one sample without the batch dimension.
    input_shape: Sequence[int] = ()

    def __init__(self, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not prepared this split")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Predictions are made for the test split, so the CSV can show the true labels beside them."""
        return self._loader(self.test_set, shuffle=False)
