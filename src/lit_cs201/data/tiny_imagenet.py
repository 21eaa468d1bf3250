"""Tiny ImageNet from the prepared tree ``<data_dir>/tiny-imagenet-200/``, decoded once into a uint8 cache.

The splits are those the course evaluates (see `TinyImageNetDataModule`: the official *val* set is the test
split). The tree must be prepared first (one folder per class in ``val/``; see ``docs/tiny_imagenet.md``)::

    python scripts/prepare_tiny_imagenet.py DATA_DIR [--download] [--cache]    # --cache: decode now, not at first use

Decoding all 110,000 JPEGs takes from tens of seconds to minutes, which every run and stage would pay again,
so each split is decoded once into ``tiny-imagenet-200/cache/<split>_3x64x64_<fingerprint>.npy`` (uint8,
N x 3 x 64 x 64; 1.2 GB for train) and memory-mapped afterwards (`lit_cs201.data.decode`, shared with
`ImageFolderDataModule`): a changed tree gets a new cache. The folder may be deleted at any time.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lit_cs201.data import tiny_imagenet_tree as tree
from lit_cs201.data.cache import cached_images
from lit_cs201.data.decode import MAX_SIDE
from lit_cs201.data.images import ImageDataModule, image_args, visible_dirs
from lit_cs201.errors import UserError, check_range, first_few

#: The preparation command, as messages name it: the form that works wherever the package is installed.
COMMAND = "python -m lit_cs201.course.tiny_imagenet_prepare"
NATIVE_SIZE = 64
OFFICIAL_CLASSES = 200
CACHE_DIR = "cache"


def dataset_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / tree.DIR_NAME


def _command(data_dir: str | os.PathLike[str]) -> str:
    return f"{COMMAND} {shlex.quote(str(data_dir))}"


def not_ready_message(data_dir: str | os.PathLike[str], fetch_hint: str = "") -> str | None:
    """Why ``data_dir`` cannot be loaded as it is, with what to do; None when its tree is prepared.

    ``fetch_hint`` ends the message for a missing dataset: how the caller could download it instead.
    """
    root, zip_path = dataset_dir(data_dir), Path(data_dir) / tree.ZIP_NAME
    run = f"run once: {_command(data_dir)}"
    if not root.exists() and zip_path.is_file():
        return f"{zip_path} is not extracted yet; {run} (it checks the md5 and extracts it)"
    if not root.exists():
        return (
            f"Tiny ImageNet not found: neither {root} nor {zip_path} exists. Download {tree.URL} (md5 {tree.MD5}), "
            f"place it at {zip_path} and {run}{fetch_hint}"
        )
    state = tree.state(root)
    if state == "prepared":
        return None
    if state == "foreign":
        return (
            f"{root / tree.VAL} was reorganised by another tool (the course's 14_tinyimagenet.sh moves the images "
            f"and flattens train/). Extract {tree.ZIP_NAME} into a fresh folder and {run}"
        )
    if state == "missing":
        return f"{root} has no val/ folder: re-extract {tree.ZIP_NAME} and {run}"
    return (
        f"{root} is not prepared: val/ does not have one folder per class yet (without it, the validation "
        f"images load as one class or with shifted labels). Run once: {_command(data_dir)} (or python "
        f"scripts/prepare_tiny_imagenet.py {shlex.quote(str(data_dir))}); it checks the dataset and links the "
        "images into val/<wnid>/ without moving or deleting any"
    )


def read_classes(root: Path) -> list[str]:
    """wnids in label order: the sorted class folders of ``train/`` (as ImageFolder orders them).

    Refuses a tree whose ``val/`` (or ``wnids.txt``) names other classes: every label would then mean a
    different class in the two splits.
    """
    train = visible_dirs(root / "train")
    lists = {"val/": visible_dirs(root / tree.VAL)}
    if (root / "wnids.txt").is_file():
        lists["wnids.txt"] = sorted(tree.read_wnids(root))
    for where, other in lists.items():
        if other == train:
            continue
        only_train, only_other = sorted(set(train) - set(other)), sorted(set(other) - set(train))
        found = [f"missing from {where}: {first_few(only_train)}"] if only_train else []
        found += [f"only in {where}: {first_few(only_other)}"] if only_other else []
        if where == "val/":
            advice = (
                "The prepared val/ has one folder per wnid of val/val_annotations.txt; if it was edited, the "
                f"original images are in {tree.VAL_ORIG}/: move val/ away, rename {tree.VAL_ORIG}/ to val/ and run "
                f"{_command(root.parent)}"
            )
        else:
            advice = f"Re-extract {tree.ZIP_NAME} into a fresh folder and run {_command(root.parent)}"
        raise UserError(
            f"{root}: the classes of train/ and {where} differ ({'; '.join(found)}), so labels would not match. "
            + advice
        )
    if not train:
        raise UserError(f"{root / 'train'} has no class folders: re-extract {tree.ZIP_NAME}")
    return train


def read_class_names(root: Path, wnids: Sequence[str]) -> tuple[str, ...]:
    """Readable names from ``words.txt``: the first synonym ("goldfish, Carassius auratus" -> "goldfish").

    A name that two classes share gets its wnid appended, so per-class metrics stay distinct; a class that
    ``words.txt`` lacks is named by its wnid.
    """
    words: dict[str, str] = {}
    path = root / "words.txt"
    if path.is_file():
        wanted = set(wnids)
        for line in path.read_text(encoding="utf-8").splitlines():
            wnid, _, names = line.partition("\t")
            if wnid in wanted:
                words[wnid] = names.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    counts = Counter(names)
    return tuple(f"{n} ({w})" if counts[n] > 1 else n for n, w in zip(names, wnids, strict=True))


def list_split(root: Path, split: str, wnids: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Image files of ``split`` ("train" or "val") and their labels, class by class, files sorted by name."""
    files: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images" if split == "train" else root / tree.VAL / wnid
        names = sorted(p.name for p in folder.iterdir() if p.suffix == tree.JPEG and not p.name.startswith("."))
        if not names:
            raise UserError(f"{folder} holds no {tree.JPEG} images: re-extract {tree.ZIP_NAME}")
        files += [folder / name for name in names]
        labels += [label] * len(names)
    return files, labels


def cached_split(
    root: Path, split: str, files: Sequence[Path], labels: Sequence[int], read_only: str | None = None
) -> np.ndarray:
    """The decoded images of ``split`` (uint8, N x 3 x 64 x 64), memory-mapped from ``root/cache``.

    Decoded and cached first if needed; every image must be a 64x64 JPEG (greyscale ones come out RGB, as with
    ImageFolder's loader). Where the cache cannot be written, the images are decoded into memory, with a warning.
    """
    shape, hint = (3, NATIVE_SIZE, NATIVE_SIZE), f"re-extract {tree.ZIP_NAME}"
    cache = root / CACHE_DIR
    return cached_images(files, labels, shape, cache, split, root, False, hint=hint, read_only=read_only).images


def cache_splits(data_dir: str | os.PathLike[str]) -> list[str]:
    """Decode the prepared train and val images into the cache now (training does it at first use otherwise); a line
    per split saying what was cached where."""
    message = not_ready_message(data_dir)
    if message is not None:
        raise UserError(message)
    root = dataset_dir(data_dir)
    wnids = read_classes(root)
    lines = []
    for split in ("train", "val"):
        files, labels = list_split(root, split, wnids)
        images = cached_split(root, split, files, labels)
        where = Path(images.filename).name if isinstance(images, np.memmap) else "memory only"
        lines.append(f"{split}: {len(files)} images, {images.nbytes / 2**20:.0f} MiB in {where}")
    return lines


class TinyImageNetDataModule(ImageDataModule):
    """Tiny ImageNet: 200 classes of 64x64 colour images (ImageNet photos), from the prepared tree.

    * ``fit``: the 100,000 official training images, of which ``val_size`` (seeded by ``split_seed``) are held
      out as the validation split that selects ``best.ckpt``.
    * ``test`` / ``predict``: the 10,000 images of the official *val* set. The official test labels are not
      public, so, as in the course (which reports its 80.14 % on val), val is where results are measured.

    Classes are the sorted wnids (the order of torchvision's ``ImageFolder``, so label indices match a model
    trained with it), named by the first synonym in ``words.txt``. Images are decoded once into a uint8 cache in
    ``tiny-imagenet-200/cache/`` and memory-mapped; ``setup("fit")`` copies the training split into memory
    (1.2 GB), the test split stays mapped.

    ``image_size`` is the size the model sees, after augmentation on the device: 224 with the course's presets
    ``imagenet_course`` (RandomResizedCrop(224) + flip) and ``imagenet_eval`` (Resize(256) + CenterCrop(224));
    64 with the native-resolution presets (``tiny_crop_flip``, ``none``). A preset that gives another size is
    refused.

    Args:
        data_dir: Folder holding ``tiny-imagenet-200/`` (prepared) or ``tiny-imagenet-200.zip``.
        batch_size: Images per batch.
        val_size: Training images held out for validation: a count or a fraction.
        split_seed: Seed of the validation split.
        image_size: Side of the images the model sees (224 for the course recipe, 64 native); sets ``input_shape``.
        train_augment: Augmentation preset for training batches (see `lit_cs201.data.augment`).
        eval_augment: Preset for validation, test and predict batches (deterministic).
        mean: Per-channel mean for normalisation; ``null`` for ImageNet's, which pretrained weights expect.
        std: Per-channel standard deviation; ``null`` for ImageNet's.
        download: Download the zip in `prepare_data` if neither it nor the tree is in ``data_dir``. A zip that
            is there is extracted and prepared either way; a tree you extracted yourself is never changed.
        num_workers: DataLoader worker processes; batches are single indexing operations, so 0 is usually best.
        predict_path: Image files for ``predict`` (a file, a folder searched recursively, a glob, or a list of
            them) instead of the official val set; each is resized to 64x64 RGB, as the dataset's images are. The
            dataset itself is then not needed.
        invert: Invert the colours of ``predict_path`` images: ``always`` or ``never`` (``auto``: never, for
            photos).
    """

    dataset_mean = (0.485, 0.456, 0.406)  # ImageNet's, which pretrained weights expect
    dataset_std = (0.229, 0.224, 0.225)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: int | float = 5000,
        split_seed: int = 42,
        image_size: int = 224,
        train_augment: str = "imagenet_course",
        eval_augment: str = "imagenet_eval",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        download: bool = True,
        num_workers: int = 0,
        predict_path: str | list[str] | None = None,
        invert: Literal["auto", "always", "never"] = "auto",
    ) -> None:
        super().__init__(**image_args(locals()))
        check_range("image_size", image_size, 1, MAX_SIDE, hint="224 for the course recipe, 64 native")
        self.input_shape = (3, image_size, image_size)
        # The model is built for image_size: refuse presets that give another size.
        for name, shape in zip((train_augment, eval_augment), self.augment_shapes(), strict=True):
            if shape[1:] != (image_size, image_size):
                raise UserError(
                    f"augmentation {name!r} gives {shape[1]}x{shape[2]} images but image_size is {image_size}. "
                    "Pair image_size 224 with imagenet_course/imagenet_eval, or 64 with tiny_crop_flip/none"
                )
        self._splits: dict[str, tuple[np.ndarray, list[int]]] = {}
        # The CLI sizes the model's head from num_classes as soon as this object exists, before prepare_data:
        # take the classes from train/ if it is there, else the official 200; setup checks them again.
        train = self.root / "train"
        self.wnids: tuple[str, ...] = tuple(visible_dirs(train)) if train.is_dir() else ()
        if self.wnids:
            self.class_names = read_class_names(self.root, self.wnids)
        else:
            self.class_names = tuple(f"class {i}" for i in range(OFFICIAL_CLASSES))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The images as stored, 64x64 RGB; the presets make `input_shape` of them."""
        return 3, NATIVE_SIZE, NATIVE_SIZE

    @property
    def root(self) -> Path:
        """The dataset folder, ``<data_dir>/tiny-imagenet-200``."""
        return dataset_dir(self.data_dir)

    def _require_prepared(self) -> None:
        if self.read_only:  # a folder a checkpoint names: nothing is fetched into it
            hint = "; or give the folder that holds the prepared dataset as data_dir"
        else:
            hint = "" if self.download else "; or set download: true to fetch it"
        message = not_ready_message(self.data_dir, hint)
        if message is not None:
            raise UserError(message)
        wnids = tuple(read_classes(self.root))
        if len(wnids) != self.num_classes:
            raise UserError(
                f"{self.root} has {len(wnids)} classes, but when this datamodule was created (and the model sized "
                f"for it) it had {self.num_classes}: the dataset was missing or changed since. Run the command again"
            )
        self.wnids = wnids
        self.class_names = read_class_names(self.root, wnids)

    def ensure_raw_files(self) -> None:
        """Extract and prepare a zip (downloading it if allowed), then decode both splits into the cache; in a data
        folder that is only read (`read_only`), only check that the dataset is prepared there."""
        root = self.root
        if self.read_only:
            self._require_prepared()
            return
        if not root.exists() and (self.download or (Path(self.data_dir) / tree.ZIP_NAME).is_file()):
            # Only a tree this call creates itself is reorganised; the zip is only read.
            print(tree.prepare(self.data_dir, download=self.download), file=sys.stderr)
        self._require_prepared()
        cache = root / CACHE_DIR
        if not os.access(cache if cache.is_dir() else root, os.W_OK):
            return  # a read-only shared copy: load_split decodes into memory (and says so), once, not twice
        for split in ("train", "val"):
            self._decoded(split)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """Training images (``train=True``) or the official val set, uint8 (N, 3, 64, 64), from the cache."""
        self._require_prepared()
        images, labels = self._decoded("train" if train else "val")
        return torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64)

    def _decoded(self, split: str) -> tuple[np.ndarray, list[int]]:
        """The cached images and labels of ``split``, listed and looked up once per datamodule.

        `prepare_data` and `setup` both need them, and the CLI runs both before the trainer does again: without
        this, each call would list and stat the 110,000 files anew.
        """
        if split not in self._splits:
            files, labels = list_split(self.root, split, self.wnids)
            read_only = "the data folder is only read" if self.read_only else None
            self._splits[split] = (cached_split(self.root, split, files, labels, read_only), labels)
        return self._splits[split]
