"""Iris, as the course splits it: a stratified 20 % test set with seed 42, features standardised."""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from lit_cs201.data.base import ClassificationDataModule, TensorBatchDataset, check_val_size, split_count
from lit_cs201.data.flowers import nonfinite_reason, read_flowers
from lit_cs201.data.inputs import expand_paths
from lit_cs201.errors import MAX_SEED, UserError, check_range


def read_iris() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's copy of the Iris CSV, checked: rows of 4 finite features, one label in 0..2 for each."""
    source = resources.files("sklearn.datasets.data") / "iris.csv"
    try:
        features, labels = load_iris(return_X_y=True)
    except Exception as err:  # a damaged CSV fails with many error types
        raise UserError(f"{source} is not readable ({type(err).__name__}: {err}); reinstall scikit-learn") from None
    problem = (
        f"{features.shape[1:]} features per row, expected 4" if features.ndim != 2 or features.shape[1] != 4
        else f"{len(features)} rows but {len(labels)} labels" if len(labels) != len(features)
        else "features that are not finite numbers" if not np.isfinite(features).all()
        else f"labels outside 0..2 ({sorted(set(labels.tolist()))})" if not set(labels.tolist()) <= {0, 1, 2}
        else None
    )  # fmt: skip
    if problem:
        raise UserError(f"{source} holds {problem}; reinstall scikit-learn")
    return features, labels


class IrisDataModule(ClassificationDataModule):
    """The 150 Iris flowers shipped with scikit-learn (no download).

    The test split is the course's (stratified, ``test_size``, ``split_seed``); a stratified validation split is
    then carved from the remaining training part. The scaler is fitted on the training part only.

    Args:
        batch_size: Samples per batch.
        test_size: Fraction of all samples held out for `test`.
        val_size: Validation samples carved from the training part: a count or a fraction of it.
        split_seed: Seed of both splits.
        num_workers: DataLoader worker processes (0 is fastest for 150 samples).
        predict_path: CSV files of flowers to predict instead of the test split: a header naming the four
            measurements in cm (scikit-learn's ``sepal length (cm)``, or ``sepal_length``, ``SepalLengthCm``, ...)
            and one flower a row; other columns are ignored.
    """

    class_names = ("setosa", "versicolor", "virginica")
    input_shape = (4,)
    predict_unit = "rows"

    def __init__(
        self,
        batch_size: int = 16,
        test_size: float = 0.2,
        val_size: int | float = 0.2,
        split_seed: int = 42,
        num_workers: int = 0,
        predict_path: str | list[str] | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, predict_path=predict_path)
        self.save_hyperparameters()
        if not 0 < test_size < 1:
            raise UserError(f"test_size must be a fraction in (0, 1), got {test_size}")
        check_val_size(val_size)
        check_range("split_seed", split_seed, 0, MAX_SEED)
        self.test_size = test_size
        self.val_size = val_size
        self.split_seed = split_seed

    def _split(self, x: np.ndarray, y: np.ndarray, size: float, setting: str) -> list[np.ndarray]:
        """A stratified split of ``size`` off ``x, y``; a split too small or too large to hold every class in both
        parts is bad input, named by the setting that asked for it."""
        try:
            return train_test_split(x, y, test_size=size, random_state=self.split_seed, stratify=y)
        except ValueError as err:
            given = f"--data.init_args.{setting} {getattr(self, setting)}"
            raise UserError(f"{given}: {err}; every class needs a sample in each part") from None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        features, labels = read_iris()
        x_rest, x_test, y_rest, y_test = self._split(features, labels, self.test_size, "test_size")
        n_val = split_count(self.val_size, len(y_rest))
        x_train, x_val, y_train, y_val = self._split(x_rest, y_rest, n_val, "val_size")
        scaler = StandardScaler().fit(x_train)
        self.scaler = scaler  # an export puts its mean and scale inside the model
        self.test_measurements = x_test.astype(np.float32)  # in cm, as an exported model takes them

        def tensors(x, y) -> TensorBatchDataset:
            # float32: MPS has no float64, and the network is float32 anyway.
            return TensorBatchDataset(
                torch.as_tensor(scaler.transform(x), dtype=torch.float32),
                torch.as_tensor(y, dtype=torch.long),
            )

        self.train_set = tensors(x_train, y_train)
        self.val_set = tensors(x_val, y_val)
        self.test_set = tensors(x_test, y_test)
        if self.predict_path is not None:
            self._set_predict_rows(scaler)

    def _set_predict_rows(self, scaler: StandardScaler) -> None:
        """The flowers of `predict_path`, standardised as the training ones; a row that is not finite numbers then
        (``nan`` in the file, or 1e308 cm, which standardising overflows) gets an error of its own instead of a
        class: the model would otherwise answer a NaN input with a class of probability ``nan``."""
        rows: list[str] = []
        measured = []
        for path in expand_paths(self.predict_path, frozenset({".csv"})):
            names, features = read_flowers(path)
            rows += names
            measured.append(features)
        raw = np.concatenate(measured)
        with np.errstate(over="ignore", invalid="ignore"):  # the rows that overflow are reported below
            features = torch.as_tensor(scaler.transform(raw), dtype=torch.float32)
        finite = torch.isfinite(features).all(dim=1).tolist()
        errors = [(row, nonfinite_reason(values)) for row, values, ok in zip(rows, raw, finite, strict=True) if not ok]
        if len(errors) == len(rows):
            raise UserError(
                f"predict_path {self.predict_path}: none of its {len(rows)} flowers can be predicted "
                f"({'; '.join(f'{row}: {reason}' for row, reason in errors[:3])})"
            )
        kept = [row for row, ok in zip(rows, finite, strict=True) if ok]
        self.set_predict_files(TensorBatchDataset(features[torch.tensor(finite)]), kept, errors)
