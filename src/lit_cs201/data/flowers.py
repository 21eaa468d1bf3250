"""Flowers to predict, read from CSV files without torch: for an Iris checkpoint and its exported model alike."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from lit_cs201.data.files import UnreadableFileError, open_regular
from lit_cs201.errors import UserError

FEATURES = ("sepal length", "sepal width", "petal length", "petal width")


def _key(column: str) -> str:
    """A column name as letters only, without a unit: ``Sepal.Length``, ``sepal_length`` and ``sepal length (cm)``
    are all ``sepallength``."""
    letters = "".join(c for c in column.lower() if c.isalpha())
    return letters.removesuffix("cm")


def _feature_columns(path: Path, header: list[str]) -> list[int]:
    """The column of each of `FEATURES` in ``header``; refuses a missing one, and one given twice (``petal_length``
    beside ``petal length (cm)``): which of the two the user meant cannot be known, so using either would predict
    with confidence from a guess."""
    where: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        where.setdefault(_key(name), []).append(i)
    missing = [name for name in FEATURES if _key(name) not in where]
    if missing:
        raise UserError(
            f"{path} has no column for {', '.join(missing)} (its header: {', '.join(header) or 'none'}); expected "
            f"{', '.join(FEATURES)} in cm, e.g. scikit-learn's '{FEATURES[0]} (cm)' or 'sepal_length'"
        )
    repeated = {name: where[_key(name)] for name in FEATURES if len(where[_key(name)]) > 1}
    if repeated:
        found = "; ".join(f"{name}: {', '.join(repr(header[i]) for i in both)}" for name, both in repeated.items())
        raise UserError(
            f"{path} has more than one column for a measurement ({found}); expected one column each for "
            f"{', '.join(FEATURES)}: remove or rename the others"
        )
    return [where[_key(name)][0] for name in FEATURES]


def read_flowers(path: Path) -> tuple[list[str], np.ndarray]:
    """The flowers of a CSV file: ``file:line`` of each row, and its four measurements in `FEATURES` order (``nan``
    or ``inf`` kept as such: such a row is refused on its own, when it is predicted)."""
    try:
        # -sig: a spreadsheet's byte-order mark. Only a regular file: a FIFO would be waited on for ever.
        with io.TextIOWrapper(open_regular(path), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            lines = list(reader)
    except (OSError, UnicodeDecodeError, UnreadableFileError, csv.Error) as err:
        raise UserError(f"{path} is not a readable CSV file ({err})") from None
    columns = _feature_columns(path, header)
    rows, features = [], []
    for number, line in enumerate(lines, start=2):
        if not any(cell.strip() for cell in line):
            continue  # a blank line, often the last
        try:
            values = [float(line[i]) for i in columns]
        except (IndexError, ValueError):
            raise UserError(f"{path}:{number}: expected four numbers ({', '.join(FEATURES)}), got {line}") from None
        rows.append(f"{path}:{number}")
        features.append(values)
    if not rows:
        raise UserError(f"{path} holds no flowers: a header and one row of measurements per flower are expected")
    return rows, np.asarray(features)


def nonfinite_reason(values: np.ndarray) -> str:
    """Why a row of measurements ``values`` (as in the file) is not finite once standardised."""
    measured = ", ".join(f"{value:g}" for value in values)
    if not np.isfinite(values).all():
        return f"expected four finite measurements in cm, got {measured}; fix or remove the row"
    return (
        f"a measurement too large to standardise (the training flowers measure 0.1 to 7.9 cm), got {measured}; "
        "check the row's numbers and units"
    )
