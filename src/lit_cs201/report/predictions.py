"""``predictions.csv`` and ``predictions.png``: written the same way from a checkpoint (through Lightning, by
`lit_cs201.report.prediction_writer.PredictionWriter`) and from an exported model (`lit_cs201.deploy.predict`, without
torch).

For files the columns are ``path``, ``predicted``, ``probability``, the top classes with their probabilities
(``top1``, ``top1_probability``, ... up to five) and ``error``, filled for a file that could not be read (or a CSV row
that cannot be predicted) and for an input whose probabilities are not finite numbers. For the dataset's test split
they are ``index``, ``true_label``, ``predicted`` and ``probability``, and ``error`` where a row has one. Paths and
class names are written `printable`: the CSV is UTF-8 whatever the file names, and what it shows cannot drive the
terminal. It appears whole or not at all.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lit_cs201.errors import printable
from lit_cs201.report.results import NONFINITE, TOP_K

#: A prediction: (index in the dataset, true label or None, top classes, their probabilities); no classes where the
#: model's output was not a finite number.
Row = tuple[int, int | None, list[int], list[float]]


def ranked_rows(probs: np.ndarray, indices: Sequence[int], labels: Sequence[int | None] | None = None) -> list[Row]:
    """The rows of predicted probabilities ``(n, classes)``: the top classes of each, best first (the lower index
    first among equals), or none for a row that is not finite (it would rank a NaN first and show it as the class)."""
    labels = [None] * len(probs) if labels is None else labels
    rows: list[Row] = []
    for index, label, row in zip(indices, labels, probs, strict=True):
        if not np.isfinite(row).all():
            rows.append((index, label, [], []))
            continue
        top = np.argsort(-row, kind="stable")[: min(TOP_K, len(row))]
        rows.append((index, label, top.tolist(), row[top].astype(float).tolist()))
    return rows


def file_table(
    rows: list[Row], files: Sequence[str], errors: Sequence[tuple[str, str]], names: Sequence[str] | None
) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the CSV of predicted files: those predicted in ``rows`` order, then those that could
    not be read (``errors``: file, reason)."""
    k = max((len(row[2]) for row in rows), default=1)
    header = ["path", "predicted", "probability"]
    header += [column for j in range(1, k + 1) for column in (f"top{j}", f"top{j}_probability")]
    table: list[list[Any]] = []
    for sample, _, top, probs in rows:
        if not top:
            table.append([printable(files[sample]), "", "", *[""] * (2 * k), NONFINITE])
            continue
        ranked = [cell for c, p in zip(top, probs, strict=True) for cell in (class_name(c, names), f"{p:.4f}")]
        table.append([printable(files[sample]), class_name(top[0], names), f"{probs[0]:.4f}", *ranked, ""])
    table += [[printable(file), "", "", *[""] * (2 * k), printable(reason)] for file, reason in errors]
    return [*header, "error"], table


def split_table(rows: list[Row], names: Sequence[str] | None) -> tuple[list[str], list[list[Any]]]:
    """The test split's rows; the ``error`` column only where a row has one, so that a clean CSV keeps its shape."""
    header = ["index", "true_label", "predicted", "probability"]
    table: list[list[Any]] = [
        [index, "" if label is None else class_name(label, names)]
        + ([class_name(top[0], names), f"{probs[0]:.4f}", ""] if top else ["", "", NONFINITE])
        for index, (_, label, top, probs) in enumerate(rows)
    ]
    if all(top for _, _, top, _ in rows):
        return header, [row[:-1] for row in table]
    return [*header, "error"], table


def summary(path: Path, rows: list[Row], errors: Sequence[Any], unit: str) -> str:
    """``Wrote 7 predictions to PATH; 1 file could not be read; 2 have no finite output``; ``unit`` is a plural
    (``files``, ``rows``)."""
    nonfinite = sum(not top for _, _, top, _ in rows)
    written = len(rows) - nonfinite
    return (
        f"Wrote {written} prediction{'' if written == 1 else 's'} to {printable(path)}"
        + (f"; {len(errors)} {unit[:-1] if len(errors) == 1 else unit} could not be read" if errors else "")
        + (
            f"; {nonfinite} {'has' if nonfinite == 1 else 'have'} no finite output (see the error column)"
            if nonfinite
            else ""
        )
    )


def first_rows(header: list[str], table: list[list[Any]], shown: int) -> str:
    """The header and the first ``shown`` rows as CSV lines, with ``...`` when there are more."""
    lines = "\n".join(",".join(map(str, row)) for row in [header, *table[:shown]])
    return lines + ("\n..." if len(table) > shown else "")


def write_csv(path: Path, rows: list[list[Any]]) -> None:
    """Write ``rows`` to ``path`` as UTF-8 CSV, under a hidden name first and then renamed: ``path`` never holds a
    half-written file, whatever fails while writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as f:  # UTF-8 whatever the locale: CJK class names
            csv.writer(f).writerows(rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def grid_rows(rows: list[Row], size: int) -> list[Row]:
    """Up to ``size`` rows with a prediction for the picture, spread across the classes: the first row of each class
    in turn (its true class where known, else the predicted one), then the second of each, and so on. A folder
    listed class by class, or a test split in label order, would otherwise show its first class only."""
    by_class: dict[int, list[Row]] = {}
    for row in rows:
        if row[2]:
            by_class.setdefault(row[2][0] if row[1] is None else row[1], []).append(row)
    queues = [by_class[c] for c in sorted(by_class)]
    depth = max(map(len, queues), default=0)
    spread = [queue[i] for i in range(depth) for queue in queues if i < len(queue)]
    return spread[:size]


def grid_titles(rows: list[Row], names: Sequence[str] | None, files: Sequence[str] | None = None) -> list[str]:
    """The title of each predicted image in the picture: its class and probability; below its file's name where it
    has one, then without the probability if both do not fit on one line (the CSV has it)."""
    from lit_cs201.report import figures

    titles = []
    for index, _, top, probs in rows:
        name, probability = class_name(top[0], names), f"({probs[0]:.2f})"
        verdict = figures.caption(name, probability)
        if files:
            one_line = verdict if "\n" not in verdict else figures.caption(name)
            verdict = f"{figures.caption(Path(files[index]).name)}\n{one_line}"
        titles.append(verdict)
    return titles


def class_name(label: int, names: Sequence[str] | None) -> str:
    return names[label] if names else str(label)
