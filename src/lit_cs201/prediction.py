"""Predictions on your own files, with nothing but a checkpoint.

    files, folders, globs ──expand_paths──▶ image files ──to_uint8 (the datamodule's image shape)──▶ uint8 batch
        ──datamodule.eval_augment (its normalisation)──▶ Classifier ──▶ class probabilities

The checkpoint holds the model's weights, its class names and the datamodule's settings (its image shape, mean
and std); `load` rebuilds both from it. The command (``lit-cs201 predict --ckpt_path CKPT --data.predict_path
PATH``) and `predict` below prepare images through the same datamodule methods, so they see the same pixels.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lit_cs201.data.decode import IMAGE_SUFFIXES, find_images
from lit_cs201.data.files import file_kind, listable
from lit_cs201.errors import UserError, printable

#: Classes listed per prediction besides the top one, at most.
TOP_K = 5
#: The error of an input whose class probabilities are not finite numbers. Checkpoints with NaN weights are refused
#: when read; finite weights can still overflow on an input far outside the training data (or on weights crafted so).
NONFINITE = (
    "the model's probabilities are not finite numbers (NaN or infinite): the input, or the checkpoint's weights, "
    "are far outside the range the model computes in; check the input, or predict with another checkpoint"
)
#: An image that is to be predicted: a file, or an image already in memory.
ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray


def expand_paths(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], suffixes: frozenset[str]
) -> list[Path]:
    """The files ``spec`` names: a file, a folder (searched recursively for ``suffixes``), a glob, or a list of them.

    Hidden files and files of other types inside folders are skipped; a file named directly is kept whatever its
    type, so that a wrong file gets its own error rather than vanishing (a link that leads nowhere too). FIFOs,
    devices and sockets, which could block or never end when read, are skipped inside folders and globs as
    `find_images` skips them. Refuses a ``spec`` that matches nothing, or that names such a file itself.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    found: list[Path] = []
    for item in map(str, specs):
        path = Path(item).expanduser()
        mode = _mode(path)
        if mode is not None and stat.S_ISDIR(mode):
            matches = find_images(path, suffixes)
        elif mode is not None and not stat.S_ISREG(mode):
            raise UserError(
                f"predict_path {item} is {file_kind(mode)}, not a regular file: give files of the types read here "
                f"({', '.join(sorted(suffixes))}), folders of them or a glob"
            )
        elif mode is not None or path.is_symlink():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if listable(p)]
        if not matches:
            what = "holds no files of the types read here" if path.is_dir() else "matches no file"
            raise UserError(f"predict_path {item} {what} ({', '.join(sorted(suffixes))})")
        found += matches
    return list(dict.fromkeys(found))  # a file named twice is predicted once


def _mode(path: Path) -> int | None:
    """``st_mode`` of what ``path`` names, following links; None if nothing is there (or a link leads nowhere)."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a name with a NUL character
        return None


def light_background(images: np.ndarray) -> np.ndarray:
    """Which of the uint8 images ``(N, C, H, W)`` are darker in their centre than on their border: a dark figure
    on a light background, as a photo of handwriting on paper is."""
    height, width = images.shape[-2:]
    border = np.ones((height, width), dtype=bool)
    border[max(1, height // 8) : -max(1, height // 8), max(1, width // 8) : -max(1, width // 8)] = False
    grey = images.astype(np.float32).mean(axis=1)
    return grey[:, border].mean(axis=1) > grey[:, ~border].mean(axis=1)


@dataclass
class Prediction:
    """The prediction for one input: the best class and its probability, the top classes, or why it failed."""

    source: str
    predicted: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def load(checkpoint: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The `Classifier` and its datamodule, rebuilt from ``checkpoint`` alone (no training data needed).

    The checkpoint is data (`lit_cs201.checkpoint`): its settings are checked, nothing it names beyond this
    package's classes is built, and no optimizer or schedule is: the model is only evaluated.
    """
    from lit_cs201.checkpoint import read_checkpoint
    from lit_cs201.restore import MACHINE_SETTINGS, UNBUILT, check_describes_weights, check_fits_before_building

    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    saved = read_checkpoint(path, what="checkpoint")
    check_describes_weights(saved)  # its own settings first: they size what is built next
    data = saved.settings("data", drop=MACHINE_SETTINGS)
    model = saved.settings("model", drop=UNBUILT)
    if data is None or model is None:
        missing = "datamodule" if data is None else "model"
        raise UserError(f"checkpoint {path}: records no {missing} class; it was not written by lit-cs201 fit")
    saved_class = saved.class_of("data")
    # For predictions only: nothing of the dataset itself is read, and nothing is written where it says.
    datamodule = saved_class(**data["init_args"], predict_path=[])
    datamodule.read_only = True
    # The model for the images the datamodule makes, as the command links them; first on the meta device.
    init_args = {
        **model["init_args"],
        "num_classes": datamodule.num_classes,
        "input_shape": list(datamodule.input_shape),
    }
    check_fits_before_building(saved, init_args)
    classifier = saved.class_of("model")(**init_args)
    classifier.on_load_checkpoint(saved.content)  # as Lightning's loading would: class names, older checkpoints
    classifier.load_state_dict(saved.state_dict)
    return classifier.eval(), datamodule


def predict(
    checkpoint: str | os.PathLike[str],
    inputs: ImageInput | Sequence[ImageInput],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Predict the class of each input with ``checkpoint``: image files, folders, globs, PIL images or uint8 arrays
    (height, width[, channels]), prepared exactly as ``lit-cs201 predict --data.predict_path`` prepares files.

    Inputs that cannot be read, and those the model gives no finite probabilities for (weights or an input so large
    that they overflow), come back with their ``error`` set and no class; all in the order given. ``source`` is a
    file's name as Python has it (a name that is not UTF-8 keeps its bytes: ``os.fsencode(source)``); class names and
    errors are `lit_cs201.errors.printable`, as the command's CSV has them.
    """
    model, datamodule = load(checkpoint)
    if not hasattr(datamodule, "decode_for_predict"):
        raise UserError(
            f"checkpoint {checkpoint} is of {type(datamodule).__name__}, not of images: predict its inputs with "
            f"lit-cs201 predict --ckpt_path {checkpoint} --data.predict_path FILE"
        )
    model.to(device)
    single = (str, os.PathLike, Image.Image, np.ndarray)
    items = [inputs] if isinstance(inputs, single) else list(inputs) if isinstance(inputs, Sequence) else [inputs]
    for item in items:
        if not isinstance(item, single):
            raise UserError(
                f"inputs: a {type(item).__name__} is not an image: give image files, folders, globs, PIL images or "
                "uint8 arrays"
            )
    sources: list[ImageInput] = []
    for item in items:
        sources += expand_paths(item, IMAGE_SUFFIXES) if isinstance(item, str | os.PathLike) else [item]
    images, errors = datamodule.decode_for_predict(sources)
    augment = datamodule.eval_augment.to(device)
    with torch.no_grad():
        probs = [
            model(augment(torch.from_numpy(images[start : start + batch_size]).to(device))).softmax(dim=-1).cpu()
            for start in range(0, len(images), batch_size)
        ]
    decoded = torch.cat(probs) if probs else torch.zeros(0, model.hparams.num_classes)
    rows = iter(zip(decoded, torch.isfinite(decoded).all(dim=-1).tolist(), strict=True))
    results = []
    for i, source in enumerate(sources):
        name = str(source) if isinstance(source, str | os.PathLike) else f"<{type(source).__name__} {i}>"
        if i in errors:
            results.append(Prediction(name, error=printable(errors[i])))
            continue
        row, ok = next(rows)
        if not ok:  # topk would rank a NaN first: a class "predicted" with probability nan
            results.append(Prediction(name, error=NONFINITE))
            continue
        top = top_classes(row, model.class_names)
        results.append(Prediction(name, top[0][0], top[0][1], top))
    return results


def top_classes(probs: torch.Tensor, names: Sequence[str]) -> list[tuple[str, float]]:
    """The ``min(TOP_K, classes)`` most probable classes of one probability vector, best first; the names
    `printable`, as a checkpoint's names are data and may hold escape codes."""
    values, indices = probs.topk(min(TOP_K, len(probs)))
    return [(printable(names[int(i)]), float(v)) for v, i in zip(values, indices, strict=True)]
