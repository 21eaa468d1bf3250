"""Predictions as the Python API returns them, from a checkpoint (`lit_cs201.predict`) or an exported model
(`lit_cs201.deploy.ExportedModel`): the same inputs accepted, the same `Prediction` objects, without torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lit_cs201.data.decode import IMAGE_SUFFIXES
from lit_cs201.data.inputs import expand_paths
from lit_cs201.errors import UserError, printable

#: Classes listed per prediction besides the top one, at most.
TOP_K = 5
#: The error of an input whose class probabilities are not finite numbers. Checkpoints with NaN weights are refused
#: when read; finite weights can still overflow on an input far outside the training data (or on weights crafted so).
NONFINITE = (
    "the model's probabilities are not finite numbers (NaN or infinite): the input, or the checkpoint's weights, "
    "are far outside the range the model computes in; check the input, or predict with another checkpoint"
)
#: An image that is to be predicted: a file, an image already in memory, or the bytes of an image file.
ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray | bytes
_SINGLE = (str, os.PathLike, Image.Image, np.ndarray, bytes)


@dataclass
class Prediction:
    """The prediction for one input: the best class and its probability, the top classes, or why it failed."""

    source: str
    predicted: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def image_sources(inputs: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """The images ``inputs`` stands for, in order: each file a path, folder or glob names, and images in memory."""
    items = [inputs] if isinstance(inputs, _SINGLE) else list(inputs) if isinstance(inputs, Sequence) else [inputs]
    for item in items:
        if not isinstance(item, _SINGLE):
            raise UserError(
                f"inputs: a {type(item).__name__} is not an image: give image files, folders, globs, PIL images, "
                "uint8 arrays or the bytes of image files"
            )
    sources: list[ImageInput] = []
    for item in items:
        sources += expand_paths(item, IMAGE_SUFFIXES) if isinstance(item, str | os.PathLike) else [item]
    return sources


def top_classes(probs: np.ndarray, names: Sequence[str]) -> list[tuple[str, float]]:
    """The ``min(TOP_K, classes)`` most probable classes of one probability vector, best first (the lower index first
    among equals); the names `printable`, as a checkpoint's names are data and may hold escape codes."""
    order = np.argsort(-probs, kind="stable")[: min(TOP_K, len(probs))]
    return [(printable(names[int(i)]), float(probs[i])) for i in order]


def predictions(
    sources: Sequence[ImageInput], probs: np.ndarray, errors: dict[int, str], names: Sequence[str]
) -> list[Prediction]:
    """One `Prediction` per source: ``probs`` holds a row for each source not in ``errors`` (index -> why it could
    not be read), in order; a row that is not finite becomes an error rather than a class "predicted" with
    probability nan."""
    rows = iter(probs)
    results = []
    for i, source in enumerate(sources):
        name = str(source) if isinstance(source, str | os.PathLike) else f"<{type(source).__name__} {i}>"
        if i in errors:
            results.append(Prediction(name, error=printable(errors[i])))
            continue
        row = next(rows)
        if not np.isfinite(row).all():
            results.append(Prediction(name, error=NONFINITE))
            continue
        top = top_classes(row, names)
        results.append(Prediction(name, top[0][0], top[0][1], top))
    return results
