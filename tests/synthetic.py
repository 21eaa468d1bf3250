"""Synthetic MNIST and CIFAR-10 sets written in the official raw formats and file names.

For the tests and the benchmark scripts, on machines without the real data: the real loading code reads these files
exactly as it reads the downloaded ones. The images are learnable (each class has its own pattern plus noise), so a few
training steps already move accuracy.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from lit_cs201.data.mnist import write_idx


def class_images(labels: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 images whose mean brightness pattern depends on the label."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    noise = rng.integers(0, 60, size=(n, *shape))
    patterns = np.random.default_rng(1234).integers(0, 196, size=(10, *shape))
    return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)


def write_mnist(data_dir: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, as torchvision lays them out."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (prefix, n) in enumerate((("train", n_train), ("t10k", n_test))):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", class_images(labels, (28, 28), seed + 1000 * i))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(data_dir: Path, per_batch: int = 40, n_test: int = 50, seed: int = 0) -> Path:
    """``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (python pickles)."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for i, (name, n) in enumerate(batches):
        labels = rng.integers(0, 10, size=n)
        images = class_images(labels, (3, 32, 32), seed + 1000 * i).reshape(n, 3072)
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images,
            "filenames": [f"{i}.png" for i in range(n)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return folder
