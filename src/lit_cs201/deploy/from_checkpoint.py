"""Predictions on your own files, with nothing but a checkpoint.

    files, folders, globs ──expand_paths──▶ image files
        ──to_uint8 (the datamodule's image shape, cropped or stretched to it)──▶ uint8 batch
        ──datamodule.eval_augment (its normalisation)──▶ Classifier ──▶ class probabilities

The checkpoint holds the model's weights, its class names and the datamodule's settings (its image shape, how
images are resized to it, mean and std); `load` rebuilds both from it (a setting added since the checkpoint was
written takes the value it was trained with: `Checkpoint.settings`). The command (``lit-cs201 predict --ckpt_path
CKPT --data.predict_path PATH``) and `predict` below prepare images through the same datamodule methods, so they
see the same pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_cs201.errors import UserError
from lit_cs201.report.results import ImageInput, Prediction, image_sources, predictions


def load(checkpoint: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The `Classifier` and its datamodule, rebuilt from ``checkpoint`` alone (no training data needed).

    The checkpoint is data (`lit_cs201.runs.checkpoint`): its settings are checked, nothing it names beyond this
    package's classes is built, and no optimizer or schedule is: the model is only evaluated.
    """
    from lit_cs201.runs.checkpoint import read_checkpoint
    from lit_cs201.runs.restore import MACHINE_SETTINGS, UNBUILT, check_describes_weights, check_fits_before_building

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
    sources = image_sources(inputs)
    images, errors = datamodule.decode_for_predict(sources)
    augment = datamodule.eval_augment.to(device)
    with torch.no_grad():
        probs = [
            model(augment(torch.from_numpy(images[start : start + batch_size]).to(device))).softmax(dim=-1).cpu()
            for start in range(0, len(images), batch_size)
        ]
    decoded = torch.cat(probs).float().numpy() if probs else np.zeros((0, model.hparams.num_classes), np.float32)
    return predictions(sources, decoded, errors, model.class_names)
