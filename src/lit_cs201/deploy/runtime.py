"""Run a model exported by ``lit-cs201 export`` with onnxruntime, numpy and Pillow alone: no torch, no Lightning.

    image files, PIL images, uint8 arrays ──the package's one decoder──▶ uint8 (N, C, H, W)
        ──model.onnx (inversion rule, /255, mean/std, the net: all inside)──▶ probabilities ──▶ Prediction

The file is data: it is read as bytes (a regular file, at most `MAX_MODEL_BYTES`) and handed to onnxruntime, which
runs only the operators of the ONNX standard; a model that refers to weights in other files is refused (nothing is
read from paths a file names), and so is one without this package's metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lit_cs201.data.decode import MAX_PIXELS, RESIZE_MODES, ResizeMode, decode_readable
from lit_cs201.data.files import UnreadableFileError, open_regular
from lit_cs201.data.inputs import expand_paths
from lit_cs201.errors import UserError, first_line, printable
from lit_cs201.report.results import ImageInput, Prediction, image_sources, predictions

#: The metadata key of an exported model: a JSON object (see `lit_cs201.deploy.export`).
METADATA_KEY = "lit_cs201"
#: The newest version of the metadata's layout, which this runtime reads with the older ones. Format 2 adds
#: ``resize: crop``; an export that stretches (format 1 says nothing, which means that) stays format 1, so that a
#: runtime of format 1 refuses only the models it would decode differently.
METADATA_FORMAT = 2
METADATA_FORMATS = (1, 2)
#: Protocol buffers cannot hold more in one file; no export of this package is larger.
MAX_MODEL_BYTES = 2 << 30
#: The command that installs what exported models need.
INSTALL = 'pip install "lit-cs201[deploy]"'


def onnxruntime() -> Any:
    """The onnxruntime module, or a `UserError` saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"running an exported model needs onnxruntime: {INSTALL}") from None
    return ort


class ExportedModel:
    """A model file written by ``lit-cs201 export``, ready to predict.

    Attributes:
        path: The file.
        metadata: What the export recorded (class names, input, normalisation, inversion rule, source checkpoint).
        session: The onnxruntime session that runs it.

    Args:
        path: The ``.onnx`` file.
        threads: Threads onnxruntime computes with; 0 lets it choose (one per core).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        ort = onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its warnings name graph internals, not what a user can do
        data = read_model(self.path)
        _check_operators(self.path, data)
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for malformed graphs
            reason = first_line(err)
            if "external" in reason.lower():  # loaded from bytes, a graph cannot reach files beside it
                reason = "its weights are in other files, which are not read; lit-cs201 export writes one file"
            raise UserError(f"{printable(self.path)} is not an ONNX model onnxruntime can run ({reason})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = check_metadata(self.path, meta.get(METADATA_KEY))
        self._check_signature()

    def _check_signature(self) -> None:
        declared = self.metadata["input"]
        inputs = self.session.get_inputs()
        found = inputs[0] if len(inputs) == 1 else None
        expected_type = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}[declared["dtype"]]
        probabilities = next((o for o in self.session.get_outputs() if o.name == "probabilities"), None)
        if (
            found is None
            or found.name != declared["name"]
            or found.type != expected_type
            or _sizes(found.shape) != [None, *declared["shape"][1:]]
            or probabilities is None
            or probabilities.type != "tensor(float)"
            or _sizes(probabilities.shape)[1:] != [len(self.metadata["classes"])]
        ):
            raise UserError(
                f"{printable(self.path)}: its graph does not take the input its metadata describes "
                f"({declared['name']}: {declared['dtype']} {declared['shape']}) or does not give the probabilities "
                f"of its {len(self.metadata['classes'])} classes: it was changed after lit-cs201 export wrote it; "
                "export the checkpoint again"
            )

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self.metadata["classes"])

    @property
    def takes_images(self) -> bool:
        """Whether the model reads images (else rows of measurements, as Iris's)."""
        return self.metadata["input"]["name"] == "images"

    @property
    def resize(self) -> ResizeMode:
        """How images of another aspect ratio than the model's are resized (`lit_cs201.data.decode.to_uint8`)."""
        return self.metadata.get("resize", "stretch")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: (channels, height, width) of an image, or (features,)."""
        return tuple(self.metadata["input"]["shape"][1:])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """The class probabilities ``(n, classes)`` of a batch the model takes as it is: uint8 images
        ``(n, channels, height, width)`` (decoded, not yet inverted) or float32 measurements ``(n, features)``."""
        name = self.metadata["input"]["name"]
        try:
            probs = self.session.run(["probabilities"], {name: batch})[0]
        except Exception as err:  # onnxruntime's own types: a graph that fails on this input, or runs out of memory
            reason = first_line(err, 300)
            raise UserError(f"{printable(self.path)}: onnxruntime could not run it ({reason})") from None
        if probs.shape != (len(batch), len(self.metadata["classes"])):
            raise UserError(
                f"{printable(self.path)}: gave probabilities of shape {probs.shape} for {len(batch)} inputs of "
                f"{len(self.metadata['classes'])} classes; export the checkpoint again"
            )
        return probs

    def decode(
        self, sources: Sequence[ImageInput], workers: int = 0, max_pixels: int = MAX_PIXELS
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Files, PIL images or uint8 arrays as the uint8 batch the model takes, by the package's one decoder (on
        ``workers`` threads, 0 for one a core; files of at most ``max_pixels``); those that cannot be read are left
        out and returned as {index in ``sources``: reason}. Images of another aspect ratio are cropped or stretched
        as the model was trained (`resize`)."""
        return decode_readable(
            sources, self.input_shape, workers=workers, max_pixels=max_pixels, resize_mode=self.resize
        )

    def predict(self, inputs: Any, batch_size: int = 64) -> list[Prediction]:
        """The class of each input, as `lit_cs201.predict` gives it from the checkpoint.

        For an image model: image files, folders, globs, PIL images, uint8 arrays (height, width[, channels]) or
        the bytes of image files.
        For a model of measurements (Iris): rows of numbers, an array ``(n, features)``, or CSV files as
        ``lit-cs201 predict`` reads them. Inputs that cannot be read come back with ``error`` set, in order.
        """
        if self.takes_images:
            sources: list[Any] = image_sources(inputs)
            batch, errors = self.decode(sources)
        else:
            sources, batch, errors = self.measurements(inputs)
        rows = [self.probabilities(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
        probs = np.concatenate(rows) if rows else np.zeros((0, len(self.classes)), np.float32)
        return predictions(sources, probs, errors, self.classes)

    def measurements(self, inputs: Any) -> tuple[list[str], np.ndarray, dict[int, str]]:
        """Rows of measurements from numbers, arrays or CSV files: ``file:line`` (or ``<row i>``) of each, the finite
        rows as float32, and {index: why} for the others."""
        from lit_cs201.data.flowers import nonfinite_reason, read_flowers

        features = self.input_shape[0]
        if isinstance(inputs, str | os.PathLike):
            inputs = [inputs]
        if isinstance(inputs, Sequence) and inputs and all(isinstance(i, str | os.PathLike) for i in inputs):
            names, parts = [], []
            for path in expand_paths(list(inputs), frozenset({".csv"})):
                rows, values = read_flowers(path)
                names += rows
                parts.append(values)
            values = np.concatenate(parts)
        else:
            try:
                values = np.asarray(inputs, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
                raise UserError(f"inputs: expected rows of {features} numbers, or CSV files of them") from None
            values = values.reshape(1, -1) if values.ndim == 1 else values
            names = [f"<row {i}>" for i in range(len(values))]
        if values.ndim != 2 or values.shape[1] != features:
            raise UserError(f"inputs: expected rows of {features} measurements, got an array of shape {values.shape}")
        with np.errstate(over="ignore"):
            as_float32 = values.astype(np.float32)
        finite = np.isfinite(as_float32).all(axis=1)
        errors = {i: nonfinite_reason(values[i]) for i in np.flatnonzero(~finite).tolist()}
        return names, as_float32[finite], errors


def _sizes(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in shape]


def _check_operators(path: Path, data: bytes) -> None:
    """Refuse a graph that could loop for as long as the file says (`lit_cs201.deploy.graph`)."""
    from lit_cs201.deploy.graph import LOOPING, MalformedError, operators

    try:
        looping = sorted(operators(data) & LOOPING)
    except MalformedError as err:
        raise UserError(f"{printable(path)} is not an ONNX model onnxruntime can run ({err})") from None
    if looping:
        raise UserError(
            f"{printable(path)} runs {', '.join(looping)}: an operator that repeats as often as the file says, which "
            "lit-cs201 export never writes; refused"
        )


def read_model(path: Path) -> bytes:
    """The bytes of a model file: a regular file (not a FIFO a read would wait on for ever), of bounded size."""
    try:
        with open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_MODEL_BYTES:
                raise UserError(
                    f"{printable(path)} holds {size:,} bytes, more than an exported model ({MAX_MODEL_BYTES:,})"
                )
            return file.read(MAX_MODEL_BYTES + 1)
    except (OSError, UnreadableFileError) as err:
        raise UserError(f"cannot read the model {printable(path)} ({err})") from None


def check_metadata(path: Path, text: str | None) -> dict[str, Any]:
    """The package's metadata of a model file, checked to hold what the runtime relies on, with plain values."""
    where = printable(path)
    if text is None:
        raise UserError(f"{where} has no {METADATA_KEY} metadata: it was not written by lit-cs201 export")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"{where}: its {METADATA_KEY} metadata is not JSON") from None
    problem = _metadata_problem(meta)
    if problem:
        raise UserError(f"{where}: its {METADATA_KEY} metadata {problem}; export the checkpoint again")
    return meta


def _metadata_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict):
        return "is not an object"
    if meta.get("format") not in METADATA_FORMATS or isinstance(meta.get("format"), bool):
        readable = " and ".join(map(str, METADATA_FORMATS))
        return f"is of format {meta.get('format')!r}, this lit-cs201 reads formats {readable}"
    classes, declared = meta.get("classes"), meta.get("input")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        return "has no list of class names"
    if not isinstance(declared, dict):
        return "describes no input"
    shape = declared.get("shape")
    images = declared.get("name") == "images" and declared.get("dtype") == "uint8"
    rows = declared.get("name") == "measurements" and declared.get("dtype") == "float32"
    if not (images or rows):
        return "describes an input other than uint8 images or float32 measurements"
    sizes = shape[1:] if isinstance(shape, list) and shape and shape[0] is None else None
    valid = sizes is not None and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in sizes)
    if not valid or len(sizes) != (3 if images else 1) or (images and sizes[0] not in (1, 3)):
        return f"gives an input shape this runtime cannot feed ({shape!r})"
    if images and meta.get("invert") not in ("never", "always", "light_background"):
        return f"gives no inversion rule (never, always or light_background), but {meta.get('invert')!r}"
    if images and meta.get("resize", "stretch") not in RESIZE_MODES:
        return f"gives a resize mode this runtime does not know ({meta['resize']!r}, not {' or '.join(RESIZE_MODES)})"
    return None
