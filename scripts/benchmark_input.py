"""(a) input: training-input images/s of each augmentation preset at its configs' batch size.

Ours (in-memory uint8 batches, augmented as whole batches where the model runs) against the course's (PIL images
through torchvision transforms in a DataLoader with 2 workers), and the augmentation alone against the preset written
with kornia.augmentation where kornia is installed (kornia is imported only to measure).

    python scripts/benchmark.py --only input --presets cifar_course
"""

from __future__ import annotations

import importlib.util
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from itertools import islice

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lit_cs201.data.augment import build_augment
from lit_cs201.data.base import TensorBatchDataset, collate_batch

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
