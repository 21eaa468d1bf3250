"""Images per second of the augmentation presets against the course's way: torchvision transforms on PIL images.

Both sides get the same synthetic uint8 images in memory (random pixels: the cost of these transforms does not
depend on the content) and batches of 128:

* ``pil``: ``Image.fromarray`` + the preset's torchvision transforms in a ``DataLoader`` with 2 worker processes,
  as the course programs load CIFAR-10 and MNIST (for the 224-px presets the course also decodes a JPEG per
  image, which is left out here, so the PIL figure is an upper bound);
* ``ours``: a batch of the in-memory uint8 tensor through a ``DataLoader`` that indexes a whole batch at once
  (no per-image Python work), then :func:`lit_cs201.augment.build_augment`'s pipeline in the main process;
* ``augment``: the pipeline alone on ready uint8 batches, what runs in ``on_after_batch_transfer``.

Run ``python scripts/bench_augment.py`` (``--help`` for options). Timings skip a few warm-up batches.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_cs201.augment import AUGMENT_NAMES, build_augment

MEAN3, STD3 = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class PILDataset(Dataset):
    """uint8 images (N, H, W[, C]) handed out as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), 0


class BatchDataset(Dataset):
    """A uint8 tensor (N, C, H, W) indexed a batch at a time through ``__getitems__``."""

    def __init__(self, images: Tensor) -> None:
        self.images = images
        self.labels = torch.zeros(len(images), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def _identity(batch):
    return batch


class TensorCutout:
    """DeVries & Taylor's Cutout on a normalised (C, H, W) tensor, as in their code (numpy mask, one hole)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        y, x = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
        x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
        img[:, y1:y2, x1:x2] = 0
        return img


def torchvision_transform(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> T.Compose:
    """The course's torchvision transforms for a preset (on PIL images)."""
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    crop_flip = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    return T.Compose(
        {
            "none": tail,
            "mnist_course": [T.RandomRotation(10), *tail],
            "cifar_course": [*crop_flip, T.RandomRotation(10), T.ColorJitter(0.2, 0.2, 0.2, 0.2), *tail],
            "cifar_crop_flip": [*crop_flip, *tail],
            "cifar_crop_flip_cutout": [*crop_flip, *tail, TensorCutout(16)],
            "imagenet_course": [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *tail],
            "imagenet_eval": [T.Resize(256), T.CenterCrop(224), *tail],
            "tiny_crop_flip": [T.RandomCrop(64, padding=8), T.RandomHorizontalFlip(), *tail],
        }[name]
    )


def images_for(name: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic images of the dataset a preset is made for: MNIST 28x28x1, CIFAR 32x32x3, Tiny ImageNet 64."""
    if name == "mnist_course":
        return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    side = 64 if name.startswith(("imagenet", "tiny")) else 32
    return rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def rate(make_batches: Callable, count: int, repeats: int, warmup: int = 3) -> float:
    """Best images per second of ``repeats`` runs over ``count`` batches, each after ``warmup`` batches.

    ``make_batches()`` returns a fresh iterator of (images, labels). The best run is the one least disturbed by
    whatever else the machine does; both pipelines are measured the same way.
    """
    best = 0.0
    for _ in range(repeats):
        iterator = iter(make_batches())
        for _ in range(warmup):
            next(iterator)
        seen, start = 0, time.perf_counter()
        for _ in range(count):
            seen += len(next(iterator)[0])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def augmented(pipeline: torch.nn.Module, batches, device: str):
    """The pipeline applied to every batch, on ``device``; waits for CUDA so the time is the real one."""
    for x, y in batches:
        out = pipeline(x.to(device, non_blocking=True))
        if out.is_cuda:
            torch.cuda.synchronize()
        yield out, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(AUGMENT_NAMES), choices=AUGMENT_NAMES)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the PIL pipeline")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of our pipeline")
    parser.add_argument("--batches", type=int, default=100, help="timed batches per run (a quarter at 224 px)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best one counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-pil", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, device {args.device}, "
        f"best of {args.repeats}"
    )
    print("| preset | PIL + DataLoader (img/s) | ours: loader + augment (img/s) | ours: augment only (img/s) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.presets:
        pil, ours, alone = measure(name, args, rng)
        print(f"| `{name}` | {pil:,.0f} | {ours:,.0f} | {alone:,.0f} | {ours / pil:.1f}x |", flush=True)


def measure(name: str, args: argparse.Namespace, rng: np.random.Generator) -> tuple[float, float, float]:
    """Images per second of one preset: PIL + DataLoader, ours with its loader, ours alone."""
    batches = args.batches // 4 if name.startswith("imagenet") else args.batches
    images = images_for(name, (batches + 4) * args.batch_size, rng)
    channels = 1 if images.ndim == 3 else 3
    mean, std = MEAN3[:channels], STD3[:channels]

    pil = float("nan")
    if not args.skip_pil:
        dataset = PILDataset(images, torchvision_transform(name, mean, std))
        pil = rate(
            lambda: DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers),
            batches,
            args.repeats,
        )

    pipeline = build_augment(name, mean, std).to(args.device)
    tensor = torch.from_numpy(images).view(len(images), *images.shape[1:3], channels).permute(0, 3, 1, 2)
    tensor = tensor.contiguous()
    loader = DataLoader(BatchDataset(tensor), batch_size=args.batch_size, shuffle=True, collate_fn=_identity)
    ours = rate(lambda: augmented(pipeline, loader, args.device), batches, args.repeats)
    ready = [(x.to(args.device), None) for x in tensor.split(args.batch_size)]
    alone = rate(lambda: augmented(pipeline, ready, args.device), batches, args.repeats)
    return pil, ours, alone


if __name__ == "__main__":
    main()
