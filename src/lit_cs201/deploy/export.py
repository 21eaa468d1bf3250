"""``lit-cs201 export``: a checkpoint as one file that any ONNX runtime runs (or a ``.pt2`` program for PyTorch),
with its preprocessing inside, checked against the checkpoint on real images before it is written.

    best.ckpt ──load (as data)──▶ Classifier + datamodule settings
        ──Exported: uint8 (N, C, H, W) ─▶ inversion rule ─▶ cast, /255, mean/std (the eval preset) ─▶ net ─▶ logits,
                    probabilities
        ──torch.onnx.export (dynamo) / torch.export──▶ a hidden file beside the output
        ──the check: exported file vs the checkpoint in torch, on the test split / predict files / synthetic images,
                     at batch sizes 1, 2 and an odd n──▶ renamed to the output, or removed

What stays outside the file is what the package's one decoder does (`lit_cs201.data.decode`): EXIF orientation,
transparency, colour conversion and the resize to the model's image size (cropped or stretched, as the metadata's
``resize`` says). The check is `lit_cs201.deploy.check`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lit_cs201 import __version__
from lit_cs201.data.inputs import Inversion, border_mask
from lit_cs201.deploy.check import (
    CHECK_IMAGES,
    Samples,
    at_least,
    at_most,
    image_samples,
    quiet_warnings,
    run_check,
)
from lit_cs201.deploy.check import reference as reference_logits
from lit_cs201.deploy.runtime import INSTALL, METADATA_FORMAT, METADATA_KEY, ExportedModel
from lit_cs201.errors import ArgumentParser, UserError, first_line, printable

#: File endings of the formats.
FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


class Exported(nn.Module):
    """What an exported image model computes: uint8 images ``(N, C, H, W)`` in; the checkpoint's inversion rule, its
    evaluation preprocessing (cast, /255, mean/std, and any resize or crop of the preset) and its net in eval mode;
    ``logits`` and ``probabilities`` ``(N, classes)`` out."""

    def __init__(self, classifier: nn.Module, preprocess: nn.Module, rule: Inversion, size: tuple[int, int]) -> None:
        super().__init__()
        self.classifier, self.preprocess, self.rule = classifier, preprocess, rule
        border = border_mask(*size)
        self.register_buffer("border", torch.from_numpy(border).to(torch.int64), persistent=False)
        # Pixel counts as Python ints: constants of the graph, as `light_background` has them.
        self.n_border, self.n_inner = int(border.sum()), int(border.size - border.sum())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images
        if self.rule == "always":
            x = 255 - x
        elif self.rule == "light_background":  # `lit_cs201.data.inputs.light_background`, the same integer sums
            totals = x.to(torch.int64).sum(dim=1)
            on_border = (totals * self.border).sum(dim=(1, 2))
            inside = totals.sum(dim=(1, 2)) - on_border
            light = on_border * self.n_inner > inside * self.n_border
            x = torch.where(light[:, None, None, None], 255 - x, x)
        logits = self.classifier(self.preprocess(x)).float()
        return logits, logits.softmax(dim=-1)


class ExportedMeasurements(nn.Module):
    """What an exported model of measurements (Iris) computes: float32 rows in cm; standardised as in training."""

    def __init__(self, classifier: nn.Module, mean: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.classifier = classifier
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32), persistent=False)

    def forward(self, measurements: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.classifier((measurements - self.mean) / self.scale).float()
        return logits, logits.softmax(dim=-1)


def export(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    format: str = "onnx",
    predict_path: str | list[str] | None = None,
    check_images: int = CHECK_IMAGES,
) -> Path:
    """Export ``checkpoint`` to ``output`` (default: beside it, named like it with the format's ending), check the
    file against the checkpoint, and return its path. Prints what it checked. Nothing is left at ``output`` unless
    the check passed (an earlier export there stays as it was)."""
    from lit_cs201.deploy.from_checkpoint import load

    if format not in FORMATS:
        raise UserError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        _require_onnx()
    checkpoint = Path(checkpoint)
    target = _output_path(checkpoint, output, format)
    classifier, datamodule = load(checkpoint)
    classifier = classifier.float().eval()
    module, samples = _module_and_samples(classifier, datamodule, predict_path, check_images)
    samples = at_least(samples, 6)
    reference = reference_logits(classifier, datamodule, samples.inputs)
    metadata = _metadata(checkpoint, classifier, datamodule, samples, reference)
    # Hidden, a name no one can plant a link at first, and with the format's ending (torch.export.save warns
    # about any other).
    handle, name = tempfile.mkstemp(suffix=f".partial{target.suffix}", prefix=".export-", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        write = write_onnx if format == "onnx" else write_pt2
        write(module, samples.inputs, metadata, partial, classifier.hparams.net)
        check = run_check(partial, format, samples, reference)
        print(check.line())
        if not check.passed:
            raise UserError(
                f"the exported {classifier.hparams.net} gives other results than the checkpoint ({check.line()}); "
                f"nothing was written to {printable(target)}"
            )
        os.chmod(partial, 0o666 & ~_umask())  # mkstemp makes it private; an export is read as any written file
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size = target.stat().st_size / 2**20
    print(f"Exported {printable(checkpoint)} to {printable(target)} ({size:.1f} MiB, {format})")
    return target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _importable(name)]
    if missing:
        raise UserError(f"exporting to ONNX needs {', '.join(missing)}: {INSTALL}")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _output_path(checkpoint: Path, output: str | os.PathLike[str] | None, format: str) -> Path:
    suffix = FORMATS[format]
    target = checkpoint.with_suffix(suffix) if output is None else Path(output)
    if target.suffix.lower() != suffix:
        raise UserError(f"--output {printable(target)}: a {format} file's name ends in {suffix}")
    if target.is_dir():
        raise UserError(f"--output {printable(target)} is a folder; give the file to write, ending in {suffix}")
    if not target.parent.is_dir():
        raise UserError(f"--output {printable(target)}: no folder {printable(target.parent)} to write it in")
    if target == checkpoint or target.is_symlink() and target.resolve() == checkpoint.resolve():
        raise UserError(f"--output {printable(target)} is the checkpoint itself; give another file")
    return target


def _module_and_samples(
    classifier: nn.Module, datamodule: Any, predict_path: Any, limit: int
) -> tuple[nn.Module, Samples]:
    datamodule.predict_path = None  # the test split, not files to predict
    if not hasattr(datamodule, "decode_for_predict"):  # rows of measurements: Iris
        datamodule.setup("test")
        scaler = datamodule.scaler
        module = ExportedMeasurements(classifier, scaler.mean_, scaler.scale_)
        labels = datamodule.test_set.tensors[1].numpy()
        samples = Samples(datamodule.test_measurements, labels, f"the {len(labels)} flowers of the test split", True)
        return module.eval(), at_most(samples, limit)
    channels, height, width = datamodule.image_shape
    module = Exported(classifier, datamodule.eval_augment, datamodule.inversion, (height, width))
    return module.eval(), image_samples(datamodule, predict_path, limit)


def _metadata(
    checkpoint: Path, classifier: Any, datamodule: Any, samples: Samples, reference: np.ndarray
) -> dict[str, Any]:
    images = hasattr(datamodule, "decode_for_predict")
    shape = list(datamodule.image_shape if images else datamodule.input_shape)
    crop = images and datamodule.resize == "crop"
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT if crop else 1,  # see METADATA_FORMAT
        "package": f"lit-cs201 {__version__}",
        "classes": list(classifier.class_names),
        "input": {
            "name": "images" if images else "measurements",
            "dtype": "uint8" if images else "float32",
            "layout": "NCHW" if images else "NF",
            "shape": [None, *shape],
        },
        "outputs": ["logits", "probabilities"],
        "net": classifier.hparams.net,
        "checkpoint": {"file": checkpoint.name, "sha256": _sha256(checkpoint)},
    }
    if images:
        mean, std = _normalisation(datamodule)
        preset = datamodule.hparams.get("eval_augment", "none")
        meta |= {
            "channels": shape[0],
            "image_size": shape[1:],
            "mean": mean,
            "std": std,
            "invert": datamodule.inversion,
            "resize": datamodule.resize,
            "inside": f"the inversion rule, uint8 to float32 / 255, the evaluation preset {preset!r} (mean/std)",
            "outside": "EXIF orientation, transparency, greyscale/RGB conversion, antialiased bilinear resize "
            + ("of the image's centre in image_size's aspect ratio (resize: crop)" if crop else "(resize: stretch)"),
        }
    else:
        meta |= {"features": ["sepal length", "sepal width", "petal length", "petal width"], "units": "cm"}
        meta |= {"feature_mean": datamodule.scaler.mean_.tolist(), "feature_scale": datamodule.scaler.scale_.tolist()}
    if samples.whole_test_split and samples.labels is not None:
        meta["test/acc"] = float((reference.argmax(axis=1) == samples.labels).mean())
        meta["test_samples"] = len(samples.labels)
    return meta


def _normalisation(datamodule: Any) -> tuple[list[float], list[float]]:
    from lit_cs201.data.augment import Normalize

    found = next(op for op in datamodule.eval_augment if isinstance(op, Normalize))
    return [float(m) for m in found.mean.flatten()], [float(s) for s in found.std.flatten()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _example(inputs: np.ndarray) -> Tensor:
    # Two inputs: an example batch of one would fix the batch size of the graph to 1.
    example = inputs if len(inputs) >= 2 else np.concatenate([inputs, inputs])
    return torch.from_numpy(np.ascontiguousarray(example[:2]))


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch", min=1, max=1 << 16)},)


class ExporterError(UserError):
    """The exporter cannot handle a net."""


def _exporter_failed(net: str, format: str, err: Exception) -> UserError:
    reason = first_line(err, 300)
    return ExporterError(
        f"the {format} exporter cannot handle the net {net} ({type(err).__name__}: {reason}); nothing written"
    )


def write_onnx(module: nn.Module, inputs: np.ndarray, metadata: dict[str, Any], path: Path, net: str) -> None:
    """Export ``module`` (an `Exported` or `ExportedMeasurements`) to one ONNX file at ``path``, with ``metadata``
    under `METADATA_KEY`; ``inputs`` are example inputs (two are used), ``net`` names the net in errors."""
    name = "images" if isinstance(module, Exported) else "measurements"
    noise = io.StringIO()  # the exporter prints its steps; they matter only when it fails
    try:
        with contextlib.redirect_stdout(noise), quiet_warnings():
            program = torch.onnx.export(
                module,
                (_example(inputs),),
                dynamo=True,
                input_names=[name],
                output_names=["logits", "probabilities"],
                dynamic_shapes=_dynamic_batch(),
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types
        raise _exporter_failed(net, "ONNX", err) from None
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    # One file: the weights inside, not in a ``.data`` file beside it that a copy would leave behind. An error
    # here is the disk's (full, read-only), reported as such.
    program.save(str(path), external_data=False)


def write_pt2(module: nn.Module, inputs: np.ndarray, metadata: dict[str, Any], path: Path, net: str) -> None:
    """As `write_onnx`, a ``torch.export`` program, the metadata in its extra file ``lit_cs201.json``."""
    try:
        with quiet_warnings():
            program = torch.export.export(module, (_example(inputs),), dynamic_shapes=_dynamic_batch())
    except Exception as err:
        raise _exporter_failed(net, "torch.export", err) from None
    torch.export.save(program, str(path), extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})


def main(args: list[str]) -> int:
    """``lit-cs201 export ARGS``."""
    parser = ArgumentParser(
        prog="lit-cs201 export",
        description=(
            "Export a checkpoint to one ONNX file (uint8 images in, the preprocessing inside, class names in its "
            "metadata), or a .pt2 program, checked against the checkpoint on real images before it is written."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--ckpt_path", required=True, help="a checkpoint file, or best/last for the newest run's checkpoint"
    )
    parser.add_argument("--format", choices=list(FORMATS), default="onnx", help="onnx (default) or pt2")
    parser.add_argument("--output", help="the file to write (default: beside the checkpoint, e.g. best.onnx)")
    parser.add_argument(
        "--data.predict_path", dest="predict_path", nargs="+", help="images to check on where the test split is absent"
    )
    parser.add_argument("--check_images", type=int, default=CHECK_IMAGES, help="inputs checked at most (default 1000)")
    parser.add_argument("--runs_dir", default="runs", help="where best/last are looked for (default: runs)")
    options = parser.parse_args(args)
    if options.check_images < 1:
        raise UserError(f"--check_images must be at least 1, got {options.check_images}")
    from lit_cs201.runs.restore import resolve_checkpoint

    checkpoint = resolve_checkpoint(options.ckpt_path, options.runs_dir, pin=False)
    target = export(checkpoint, options.output, options.format, options.predict_path, options.check_images)
    if options.format == "onnx":
        files = "IMAGES" if ExportedModel(target).takes_images else "FLOWERS.csv"
        print(
            f"Predict with it (no torch needed): lit-cs201 predict --ckpt_path {printable(target)} "
            f"--data.predict_path {files}, or in Python: lit_cs201.deploy.ExportedModel(path).predict(...)",
            file=sys.stderr,
        )
    return 0
