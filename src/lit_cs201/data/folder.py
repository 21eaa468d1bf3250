"""Your own images in class folders (torchvision's ImageFolder layout), decoded once into a uint8 cache::

    data_dir/
        train/<class>/**/<image>     required: the sorted names of these folders are the classes
        val/<class>/**/<image>       optional: without it, `val_size` images are held out of train/ (stratified)
        test/<class>/**/<image>      optional: what `lit-cs201 test` reports on

Images are searched recursively inside each class folder (png, jpg/jpeg, bmp, gif, webp, tif/tiff, any case;
hidden files and other files are ignored: `lit_cs201.data.folder_layout` reads the folder), decoded once at
`image_size` (cropped or stretched to it: `resize`) with `channels` by `lit_cs201.data.decode.to_uint8` into
``<cache_dir>/<split>_<C>x<H>x<W>_<fingerprint>.npy`` and memory-mapped from then on: later epochs and runs read
no image files, and a folder larger than memory still trains. A folder that changed since (files added, removed
or modified) gets a new cache.

What a model trained on it needs to see new images the same way ends up in the checkpoint, as the datamodule's
hyper-parameters: `image_size` and `channels` (also when they were found from the images), `resize`, and
`mean`/`std` (also when they were computed from the training images), so ``test --ckpt_path`` and predictions from
the checkpoint resize, convert and normalise exactly as training did.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from lit_cs201.data.base import TensorBatchDataset, split_count
from lit_cs201.data.cache import cached_images
from lit_cs201.data.folder_layout import find_image_shape, list_classes, list_split
from lit_cs201.data.images import ImageDataModule, augment_setting, image_args
from lit_cs201.data.inputs import light_background
from lit_cs201.data.pixels import RESIZE_MODES, ResizeMode
from lit_cs201.errors import UserError

SPLITS = ("train", "val", "test")
SKIP_HINT = "fix or delete them, or set skip_bad_images: true to leave them out"
# Normalisation before the statistics are known: identity, only to build (and so check) the presets early.
_IDENTITY = ([0.0], [1.0])


class RowsDataset(TensorBatchDataset):
    """The rows ``index`` of tensors that stay as they are: a memory-mapped cache is read a batch at a time."""

    def __init__(self, index: Tensor, *tensors: Tensor) -> None:
        super().__init__(*tensors)
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return super().__getitem__(int(self.index[index]))

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        return super().__getitems__(self.index[torch.as_tensor(indices)].tolist())


class ImageFolderDataModule(ImageDataModule):
    """Images in class folders: ``data_dir/train/<class>/...``, optional ``val/<class>/...`` and ``test/<class>/...``.

    The classes are the sorted folder names of ``train/``; ``val/`` and ``test/`` may lack some of them but hold no
    others. Without ``val/``, ``val_size`` images are held out of ``train/``, stratified by class (each class keeps
    its share) and seeded by ``split_seed``. Without ``test/``, ``test`` refuses to run. Images are resized once
    when they are decoded and cached (see the module's documentation); augmentation then runs on the device.

    The model's input shape is the output of the augmentation presets: ``image_size`` for size-keeping presets
    (``none``, ``cifar_crop_flip``, ``tiny_crop_flip``, ``mnist_course``), 224 for ``imagenet_course`` with
    ``imagenet_eval`` (decode at 256 for those, as torchvision's ImageNet recipe resizes to 256 and crops 224).

    Args:
        data_dir: Folder holding ``train/<class>/`` (and optionally ``val/<class>/``, ``test/<class>/``).
        image_size: Size images are resized to when decoded: an int for squares or [height, width] (see
            ``resize`` for images of another shape). ``null``: the images' own size, which must then be the same for
            all of them.
        resize: How an image whose aspect ratio differs from ``image_size``'s (a 4:3 photo for a square model) is
            resized, when decoded and for predictions: ``crop`` scales it until it covers the size and keeps the
            centre (nothing is distorted; the edges of a wide photo are cut off); ``stretch`` scales its width and
            height each on its own (all of it is kept, squeezed). Checkpoints record it; one written before this
            setting existed was trained stretched, and is still used so.
        channels: 1 (greyscale) or 3 (RGB); images are converted. ``null``: 1 if every image is greyscale, else 3.
        classes: Class names in label order; ``null``: the sorted folder names of ``train/``, which must otherwise
            be these. Checkpoints record them, so predictions need no folder.
        batch_size: Images per batch.
        val_size: Images held out of ``train/`` for validation when there is no ``val/``: a count or a fraction.
        split_seed: Seed of that validation split.
        train_augment: Augmentation preset for training batches (see `lit_cs201.data.augment`).
        eval_augment: Preset for validation, test and predict batches (deterministic; same output size).
        mean: Per-channel mean for normalisation, in [0, 1] units; ``null``: computed from the training images.
            Pretrained networks expect ImageNet's [0.485, 0.456, 0.406].
        std: Per-channel standard deviation; ``null``: computed from the training images ([0.229, 0.224, 0.225]
            for ImageNet).
        skip_bad_images: Leave out images that cannot be decoded (with a warning that counts them) instead of
            stopping with an error that names them.
        cache_dir: Folder of the decoded-image cache; ``null``: ``<data_dir>/cache``. It may be deleted at any time.
        num_workers: DataLoader worker processes; batches are single indexing operations, so 0 is usually best.
        predict_path: Image files for ``predict`` (a file, a folder searched recursively, a glob, or a list of
            them) instead of ``test/``; each is converted to ``channels`` and ``image_size``. With ``classes``,
            ``image_size`` and ``channels`` given (a checkpoint gives them), the folder itself is not needed.
        invert: Invert the colours of ``predict_path`` images: ``auto`` does so where the training images are
            light figures on a dark background (``dark_background``) and a file is darker in its centre than on
            its border (a digit written on paper, for a folder of MNIST-like digits); ``always``; ``never``.
        dark_background: Whether the images show light figures on a dark background, as MNIST's digits do;
            ``null``: found from the training images (at least 95 % of them darker on their border than in their
            centre). Checkpoints record it.
    """

    #: Settings added since checkpoints were first written, with the value that a checkpoint lacking one was trained
    #: with where today's default differs (`lit_cs201.runs.checkpoint.Checkpoint.settings` fills them in).
    old_checkpoint_defaults: ClassVar[dict[str, Any]] = {"resize": "stretch"}

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int | list[int] | None = None,
        resize: Literal["crop", "stretch"] = "crop",
        channels: int | None = None,
        classes: list[str] | None = None,
        batch_size: int = 64,
        val_size: int | float = 0.1,
        split_seed: int = 42,
        train_augment: str = "none",
        eval_augment: str = "none",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        skip_bad_images: bool = False,
        cache_dir: str | None = None,
        num_workers: int = 0,
        predict_path: str | list[str] | None = None,
        invert: Literal["auto", "always", "never"] = "auto",
        dark_background: bool | None = None,
    ) -> None:
        # Predicting with what a checkpoint records needs nothing of the folder, which may be gone.
        known = predict_path is not None and None not in (classes, image_size, channels)
        if not known and not Path(data_dir).exists():
            raise UserError(f"data_dir {data_dir} does not exist; give the folder that holds train/<class>/<images>")
        # Identity statistics for now: the presets are built again below, once the channels are known.
        super().__init__(**image_args(locals(), mean=_IDENTITY[0], std=_IDENTITY[1], download=False))
        # The base class's call also records its `download`, which this class does not take: a checkpoint holding
        # it could not rebuild this datamodule.
        self.save_hyperparameters(ignore=["download"])
        if channels not in (None, 1, 3):
            raise UserError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels!r}")
        if resize not in RESIZE_MODES:
            raise UserError(f"resize must be {' or '.join(RESIZE_MODES)}, got {resize!r}")
        self.resize: ResizeMode = resize
        self.root = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / "cache"
        self.skip_bad_images = skip_bad_images
        self.dark_background = bool(dark_background)
        # The CLI sizes the model from class_names and input_shape as soon as this object exists, before
        # prepare_data: list the folders and read the image headers now (cheap: no pixels are decoded).
        self.class_names = tuple(classes) if known else tuple(list_classes(self.root, classes))
        self.hparams["classes"] = list(self.class_names)
        self.files: dict[str, tuple[list[Path], list[int]]] = {
            split: list_split(self.root / split, self.class_names)
            for split in SPLITS
            if not known and (self.root / split).is_dir()
        }
        every_file = [path for split_files, _ in self.files.values() for path in split_files]
        height, width, channels = find_image_shape(self.root, every_file, image_size, channels)
        self._image_shape = (channels, height, width)
        self.hparams["image_size"] = [height, width]
        self.hparams["channels"] = channels
        for name, values in (("mean", mean), ("std", std)):
            if values is not None and len(values) not in (1, channels):
                raise UserError(f"{name} has {len(values)} values but the images have {channels} channels")
        if std is not None and min(std) <= 0:
            raise UserError(f"std must be positive, got {std}")
        self._set_normalisation(mean, std)
        self._decoded_splits: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images as decoded; `input_shape` is what augmentation makes of them."""
        return self._image_shape

    # -- normalisation and the input shape --------------------------------------------------------------------
    def _set_normalisation(self, mean: list[float] | None, std: list[float] | None) -> None:
        """Build the presets for these statistics (identity until known) and find the model's input shape."""
        mean_, std_ = (mean, std) if mean is not None and std is not None else _IDENTITY
        self.train_augment = augment_setting("train_augment", self.hparams["train_augment"], mean_, std_)
        self.eval_augment = augment_setting("eval_augment", self.hparams["eval_augment"], mean_, std_)
        train_shape, eval_shape = self.augment_shapes()
        if train_shape != eval_shape:
            (h, w), (eh, ew) = train_shape[1:], eval_shape[1:]
            raise UserError(
                f"train_augment {self.hparams['train_augment']!r} gives {w}x{h} images but eval_augment "
                f"{self.hparams['eval_augment']!r} gives {ew}x{eh}: the model sees one size; pair imagenet_course "
                "with imagenet_eval, the other presets with none"
            )
        self.input_shape = eval_shape

    def _statistics(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the training images (after the validation split)."""
        images, _ = self.train_set.tensors
        rows = self.train_set.index
        channels = images.shape[1]
        total = torch.zeros(channels, dtype=torch.float64)
        squares = torch.zeros(channels, dtype=torch.float64)
        step = max(1, (32 << 20) // images[0].numel())  # 32 MiB of uint8 at a time: the cache may not fit memory
        for start in range(0, len(rows), step):
            batch = images[rows[start : start + step]].to(torch.float32).div_(255)
            total += batch.sum(dim=(0, 2, 3), dtype=torch.float64)
            squares += batch.square_().sum(dim=(0, 2, 3), dtype=torch.float64)
        count = len(rows) * images.shape[2] * images.shape[3]
        mean = total / count
        # A channel that is the same everywhere has no spread: one grey level keeps the division finite.
        std = (squares / count - mean.square()).clamp_(min=0).sqrt_().clamp_(min=1 / 255)
        return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]

    # -- decoding and the splits --------------------------------------------------------------------------------
    def _decoded(self, split: str) -> tuple[Tensor, Tensor, Tensor]:
        """Images, labels and the rows that decoded of ``split``, from the cache (built first if needed)."""
        if split not in self._decoded_splits:
            files, labels = self.files[split]
            decoded = cached_images(
                files,
                labels,
                self.image_shape,
                self.cache_dir,
                split,
                self.root,
                skip_bad=self.skip_bad_images,
                hint=SKIP_HINT,
                read_only=self._cache_read_only(),
                resize_mode=self.resize,
            )
            if decoded.skipped:
                first = min(decoded.skipped)
                warnings.warn(
                    f"skipping {len(decoded.skipped)} of {len(files)} images in {self.root / split} that cannot be "
                    f"decoded, e.g. {files[first]} ({decoded.skipped[first]})",
                    stacklevel=2,
                )
            rows = torch.tensor([i for i in range(len(files)) if i not in decoded.skipped], dtype=torch.int64)
            if not len(rows):
                raise UserError(f"none of the {len(files)} images in {self.root / split} can be decoded")
            images = torch.from_numpy(decoded.images)
            self._decoded_splits[split] = (images, torch.tensor(labels, dtype=torch.int64), rows)
        return self._decoded_splits[split]

    def ensure_raw_files(self) -> None:
        """Decode every split into the cache once (on one process per machine), so `setup` only maps it."""
        existing = next(p for p in (self.cache_dir, *self.cache_dir.parents) if p.exists())
        # Else (a read-only folder, or one only to be read) `setup` decodes into memory, once, not twice.
        if os.access(existing, os.W_OK) and self._cache_read_only() is None:
            for split in self.files:
                self._decoded(split)

    def _cache_read_only(self) -> str | None:
        """Why the cache may not be written, if so: the default one lies in a data folder that is only read."""
        if self.read_only and self.hparams["cache_dir"] is None:
            return "the data folder is only read (set cache_dir to cache its images elsewhere)"
        return None

    def _split_train(self) -> tuple[Tensor, Tensor]:
        """Rows of train/ for training and for validation (stratified by class, seeded)."""
        _, labels, rows = self._decoded("train")
        n_val = split_count(self.hparams["val_size"], len(rows))
        try:
            train, val = train_test_split(
                rows.numpy(), test_size=n_val, random_state=self.hparams["split_seed"], stratify=labels[rows].numpy()
            )
        except ValueError as err:  # too few images of a class, or fewer validation images than classes
            raise UserError(
                f"val_size={self.hparams['val_size']!r} cannot split {self.root / 'train'} by class ({err}); add "
                "images, change val_size, or give a val/ folder"
            ) from None
        return torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_path is not None:
            return super().setup(stage)  # the files, as the base class decodes them: nothing of the folder
        if stage in ("test", "predict") and "test" not in self.files:
            raise UserError(
                f"{self.root} has no test/ folder to {stage} on: put test images in {self.root / 'test'}/<class>/ "
                "(the class names of train/), or evaluate on the validation images with `lit-cs201 validate`"
            )
        needs_statistics = None in (self.hparams["mean"], self.hparams["std"])
        needs_background = self.hparams["dark_background"] is None
        if (stage in ("fit", "validate", None) or needs_statistics or needs_background) and self.train_set is None:
            images, labels, rows = self._decoded("train")
            if "val" in self.files:
                train = rows
                val_images, val_labels, val = self._decoded("val")
            else:
                (train, val), (val_images, val_labels) = self._split_train(), (images, labels)
            self.train_set = RowsDataset(train, images, labels)
            self.val_set = RowsDataset(val, val_images, val_labels)
        if stage in ("test", "predict", None) and self.test_set is None and "test" in self.files:
            images, labels, rows = self._decoded("test")
            self.test_set = RowsDataset(rows, images, labels)
        if needs_statistics:
            mean, std = self._statistics()
            # Into the hyper-parameters Lightning saves in every checkpoint (it saves them as they are then, not
            # as they were given): `test --ckpt_path` and predictions normalise with these same numbers.
            self.hparams["mean"] = self.hparams["mean"] or mean
            self.hparams["std"] = self.hparams["std"] or std
            self._set_normalisation(self.hparams["mean"], self.hparams["std"])
        if needs_background:  # from the first thousand training images: enough to tell digits from photos
            images, _ = self.train_set.tensors
            self.dark_background = bool(light_background(images[self.train_set.index[:1000]].numpy()).mean() <= 0.05)
            self.hparams["dark_background"] = self.dark_background
