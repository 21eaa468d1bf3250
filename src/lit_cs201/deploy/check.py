"""The check of an export: the written file against the checkpoint in torch, on real inputs where there are any.

The reference is the package's own torch path (as `lit_cs201.predict` computes), not the module exported, so the
check covers the preprocessing the file carries as well as the exporter. The file is run through the runtime users
get (`lit_cs201.deploy.ExportedModel`), in batches of 1, 2 and odd sizes.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lit_cs201.data.decode import IMAGE_SUFFIXES, decode_readable
from lit_cs201.data.inputs import apply_inversion, expand_paths, none_readable
from lit_cs201.deploy.runtime import ExportedModel
from lit_cs201.errors import UserError

#: Images (or rows) the check runs by default: enough to meet the rare input an exporter gets wrong, few enough to
#: take seconds for the small nets (a ResNet-50 at 224 px takes about a minute on two cores).
CHECK_IMAGES = 1000
#: The largest difference of a logit allowed between the file and the checkpoint, relative to the largest logit
#: (at least 1). float32 computed in another order (fused convolutions, another GEMM blocking) differs by about
#: 1e-6 relative per layer: a ResNet-50 stays below 1e-4. The exporter bugs this check is for (wrong outputs on
#: torchvision ResNets, BatchNorm in training mode) change logits by 1e-1 and more.
TOLERANCE = 1e-3
#: Image inputs bigger than this many values are checked in smaller batches than 64.
_BATCH_VALUES = 64 * 3 * 64 * 64


@dataclass
class Samples:
    """What the check runs: inputs as the file takes them, their labels where known, and where they came from."""

    inputs: np.ndarray
    labels: np.ndarray | None
    source: str
    whole_test_split: bool = False


@dataclass
class Check:
    """The outcome of the check: how many inputs, how many have the same top-1 class, the largest logit difference."""

    samples: Samples
    agree: int
    max_difference: float
    tolerance: float
    batch_sizes: list[int]

    @property
    def passed(self) -> bool:
        return self.agree == len(self.samples.inputs) and self.max_difference <= self.tolerance

    def line(self) -> str:
        n = len(self.samples.inputs)
        sizes = ", ".join(map(str, self.batch_sizes))
        return (
            f"Checked against the checkpoint on {self.samples.source}, at batch sizes {sizes}: the top-1 class agrees "
            f"on {self.agree} of {n} ({100 * self.agree / n:.2f} %); the largest logit difference is "
            f"{self.max_difference:.2e} (allowed: {self.tolerance:.2e})"
        )


def image_samples(datamodule: Any, predict_path: Any, limit: int) -> Samples:
    """The test split's first ``limit`` images where its data is there; else the images of ``predict_path``; else
    seeded random images (and the check says so)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), quiet_warnings():
            # Built again without files to predict: a datamodule made only to predict does not list its folders.
            with_data = type(datamodule)(**{**datamodule.hparams, "predict_path": None})
            with_data.read_only = True  # a folder a checkpoint names is only read
            with_data.setup("test")
        test_set, missing = with_data.test_set, "the test split is empty"
    except (UserError, OSError) as err:
        test_set, missing = None, f"no test split: {' '.join(str(err).split())[:200]}"
    if test_set is not None and len(test_set):
        n = min(limit, len(test_set))
        images, labels = test_set.__getitems__(list(range(n)))[:2]
        whole = n == len(test_set)
        what = f"the {n} test images" if whole else f"the first {n} of {len(test_set)} test images"
        return Samples(images.numpy(), labels.numpy(), what, whole)
    if predict_path:
        files = expand_paths(predict_path, IMAGE_SUFFIXES)[:limit]
        images, bad = decode_readable(files, datamodule.image_shape, resize_mode=datamodule.resize)
        if not len(images):
            raise none_readable(predict_path, [(str(files[i]), reason) for i, reason in sorted(bad.items())])
        return Samples(images, None, f"{len(images)} images of --data.predict_path")
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (16, *datamodule.image_shape), dtype=np.uint8)
    return Samples(
        images, None, f"16 random images only ({missing}; give real ones with --data.predict_path to check on them)"
    )


def at_most(samples: Samples, limit: int) -> Samples:
    if len(samples.inputs) <= limit:
        return samples
    labels = None if samples.labels is None else samples.labels[:limit]
    return Samples(samples.inputs[:limit], labels, f"the first {limit} of {samples.source}")


def at_least(samples: Samples, n: int) -> Samples:
    """``samples`` repeated to at least ``n`` inputs: enough for batches of 1, 2 and 3."""
    if len(samples.inputs) >= n:
        return samples
    times = -(-n // len(samples.inputs))
    labels = None if samples.labels is None else np.tile(samples.labels, times)
    source = f"{samples.source}, repeated to {len(samples.inputs) * times} inputs"
    return Samples(np.concatenate([samples.inputs] * times), labels, source, samples.whole_test_split)


def reference(classifier: nn.Module, datamodule: Any, inputs: np.ndarray) -> np.ndarray:
    """The logits the checkpoint gives in torch, by the package's own path (as `lit_cs201.predict` computes them)."""
    batch = max(1, min(64, _BATCH_VALUES // max(1, int(np.prod(inputs.shape[1:])))))
    parts = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            chunk = inputs[start : start + batch]
            if hasattr(datamodule, "decode_for_predict"):
                x = datamodule.eval_augment(torch.from_numpy(apply_inversion(chunk.copy(), datamodule.inversion)))
            else:
                x = torch.from_numpy((chunk - datamodule.scaler.mean_) / datamodule.scaler.scale_).float()
            parts.append(classifier(x).float().numpy())
    return np.concatenate(parts)


@contextlib.contextmanager
def quiet_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_check(path: Path, format: str, samples: Samples, reference: np.ndarray) -> Check:
    """Run the written file on ``samples`` in batches of 1, 2 and odd sizes, and compare with ``reference``."""
    if format == "onnx":
        model = ExportedModel(path)  # the runtime users get: also checks the metadata and the graph's input

        def run(batch: np.ndarray) -> np.ndarray:
            return model.session.run(["logits"], {model.metadata["input"]["name"]: batch})[0]
    else:
        program = torch.export.load(str(path)).module()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return program(torch.from_numpy(batch))[0].numpy()

    inputs = samples.inputs
    odd = max(1, min(63, _BATCH_VALUES // max(1, int(np.prod(inputs.shape[1:])))) | 1)
    bounds, start, sizes = [], 0, [1, 2]
    while start < len(inputs):
        size = sizes.pop(0) if sizes else odd
        bounds.append((start, min(len(inputs), start + size)))
        start += size
    logits = np.concatenate([run(np.ascontiguousarray(inputs[a:b])) for a, b in bounds])
    agree = int((logits.argmax(axis=1) == reference.argmax(axis=1)).sum())
    difference = float(np.abs(logits - reference).max())
    tolerance = TOLERANCE * max(1.0, float(np.abs(reference).max()))
    used = sorted({b - a for a, b in bounds}, key=lambda s: (s > 2, s))
    return Check(samples, agree, difference, tolerance, used)
