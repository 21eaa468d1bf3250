"""(b) overhead, (c) gpu, (d) recipes: what training through lit-cs201 costs, and how fast it trains.

(b) the wall time of N epochs of configs/cifar10_seed.yaml through lit-cs201 against an equivalent plain PyTorch
loop; (c) with CUDA, training images/s of ResNet18 (32 px) and ResNet50 (224 px), bf16 and channels-last on and off;
(d) training images/s of the CIFAR-10 and MNIST configs through `lit-cs201 fit`, in float32 and bf16. (b) and (d)
write synthetic datasets in their official file formats, so the real loading code runs.

    python scripts/benchmark.py --only overhead --repeats 3
    python scripts/benchmark.py --only gpu
    python scripts/benchmark.py --only recipes --recipe-batches 4 --recipe-warmup 2
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from lit_cs201.cli.lightning_cli import LitCS201CLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT / "tests"))  # the tests' writers of synthetic MNIST and CIFAR-10 files


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
            *synthetic_data("CIFAR10DataModule", root, images + val_size), f"--data.init_args.val_size={val_size}",
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


def synthetic_data(datamodule: str, root: Path, images: int) -> list[str]:
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
            name: synthetic_data(
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
