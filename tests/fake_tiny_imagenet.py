"""A small Tiny ImageNet written in the exact layout of the official ``tiny-imagenet-200.zip``.

The images are real 64x64 JPEGs whose colour depends on the class (plus noise), so a classifier can learn
them, and the real preparation and loading code reads them exactly as it reads the downloaded dataset::

    <root>/tiny-imagenet-200/
        wnids.txt                                   one wnid per line, not sorted (as in the real file)
        words.txt                                   wnid<TAB>names, more lines than wnids.txt
        train/<wnid>/images/<wnid>_<i>.JPEG
        train/<wnid>/<wnid>_boxes.txt               <wnid>_<i>.JPEG<TAB>x0<TAB>y0<TAB>x1<TAB>y1
        val/images/val_<i>.JPEG                     classes interleaved, as in the real file
        val/val_annotations.txt                     val_<i>.JPEG<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
        test/images/test_<i>.JPEG
    <root>/tiny-imagenet-200.zip                    optional; members under tiny-imagenet-200/, folders too

Like the real data, one training image is greyscale (mode "L") unless ``greyscale=False``.
"""

from __future__ import annotations

import colorsys
import hashlib
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

DIR_NAME = "tiny-imagenet-200"
ZIP_NAME = "tiny-imagenet-200.zip"

# The first wnids of the real wnids.txt, in its order, with their words.txt names.
REAL_CLASSES = (
    ("n02124075", "Egyptian cat"),
    ("n04067472", "reel"),
    ("n04540053", "volleyball"),
    ("n04099969", "rocking chair, rocker"),
    ("n07749582", "lemon"),
    ("n01641577", "bullfrog, Rana catesbeiana"),
    ("n02802426", "basketball"),
    ("n09246464", "cliff, drop, drop-off"),
    ("n07920052", "espresso"),
    ("n03970156", "plunger, plumber's helper"),
)
# words.txt covers all of WordNet (82,115 lines), far more than the 200 classes.
EXTRA_WORDS = (
    ("n00001740", "entity"),
    ("n00001930", "physical entity"),
    ("n00002137", "abstraction, abstract entity"),
)


@dataclass(frozen=True)
class FakeTinyImageNet:
    """Where a fake dataset was written and what it holds."""

    #: The folder given to the preparation script / the datamodule's data_dir.
    root: Path
    #: ``root/tiny-imagenet-200`` (absent when written with ``extracted=False``).
    dataset_dir: Path
    #: Class ids in wnids.txt order.
    wnids: list[str]
    #: wnid -> name, as in words.txt.
    names: dict[str, str]
    #: wnid -> training image file names.
    train_files: dict[str, list[str]]
    #: Validation file name -> wnid, in annotation order.
    val_labels: dict[str, str]
    #: Test image file names.
    test_files: list[str]
    #: ``root/tiny-imagenet-200.zip`` if one was written.
    zip_path: Path | None = None
    #: md5 of that zip (pass it as ``expected_md5``: it is not the official one).
    zip_md5: str | None = None
    #: The RGB colour each class's images are centred on.
    colours: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def class_colour(index: int, classes: int) -> tuple[int, int, int]:
    """A distinct, saturated colour per class, spread round the hue circle."""
    r, g, b = colorsys.hsv_to_rgb(index / max(classes, 1), 0.8, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def fake_wnids(classes: int) -> list[tuple[str, str]]:
    """The first real (wnid, name) pairs, then made-up ones in the same format."""
    pairs = list(REAL_CLASSES[:classes])
    pairs += [(f"n9{i:07d}", f"synthetic class {i}") for i in range(len(pairs), classes)]
    return pairs


def _jpeg(path: Path, colour: tuple[int, int, int], rng: np.random.Generator, size: int, grey: bool) -> None:
    noise = rng.integers(-40, 41, size=(size, size, 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    (image.convert("L") if grey else image).save(path, "JPEG", quality=90)


def _box(rng: np.random.Generator, size: int) -> str:
    x0, y0 = rng.integers(0, size // 2, size=2)
    x1, y1 = rng.integers(size // 2, size, size=2)
    return f"{x0}\t{y0}\t{x1}\t{y1}"


def make_fake_tiny_imagenet(
    root: str | Path,
    *,
    classes: int = 3,
    train_per_class: int = 4,
    val_per_class: int = 2,
    test_images: int = 2,
    image_size: int = 64,
    greyscale: bool = True,
    extracted: bool = True,
    zipped: bool = False,
    seed: int = 0,
) -> FakeTinyImageNet:
    """Write a fake Tiny ImageNet under ``root`` (created if needed) and describe it.

    Args:
        root: Folder to write ``tiny-imagenet-200/`` (and the zip) into: the data_dir of the datamodule.
        classes: Number of classes; the first 10 use real wnids and names.
        train_per_class: Training images per class.
        val_per_class: Validation images per class.
        test_images: Unlabelled test images.
        image_size: Side of the square images (the real ones are 64).
        greyscale: Save the first training image of the first class in mode "L", as a few real images are.
        extracted: Leave ``tiny-imagenet-200/`` on disk (False: only the zip, which needs ``zipped=True``).
        zipped: Also write ``tiny-imagenet-200.zip`` with the same content.
        seed: Seed of the pixels, boxes and the order of the validation images.
    """
    if not (extracted or zipped):
        raise ValueError("nothing to write: pass extracted=True, zipped=True or both")
    root = Path(root)
    dataset_dir = root / DIR_NAME
    if dataset_dir.exists():
        raise FileExistsError(f"{dataset_dir} exists; the fake dataset is only written into a fresh folder")
    rng = np.random.default_rng(seed)
    pairs = fake_wnids(classes)
    wnids = [w for w, _ in pairs]
    names = dict(pairs)
    colours = {w: class_colour(i, classes) for i, w in enumerate(wnids)}

    dataset_dir.mkdir(parents=True)
    (dataset_dir / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = [*EXTRA_WORDS[:1], *pairs, *EXTRA_WORDS[1:]]
    (dataset_dir / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in words))

    train_files: dict[str, list[str]] = {}
    for c, wnid in enumerate(wnids):
        images = dataset_dir / "train" / wnid / "images"
        images.mkdir(parents=True)
        files = [f"{wnid}_{i}.JPEG" for i in range(train_per_class)]
        boxes = []
        for i, name in enumerate(files):
            _jpeg(images / name, colours[wnid], rng, image_size, grey=greyscale and c == 0 and i == 0)
            boxes.append(f"{name}\t{_box(rng, image_size)}\n")
        (dataset_dir / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
        train_files[wnid] = files

    # The real val_annotations.txt interleaves the classes; a loader must not rely on their order.
    order = rng.permutation(np.repeat(np.arange(classes), val_per_class))
    val_images = dataset_dir / "val" / "images"
    val_images.mkdir(parents=True)
    val_labels: dict[str, str] = {}
    lines = []
    for i, c in enumerate(order):
        name, wnid = f"val_{i}.JPEG", wnids[c]
        _jpeg(val_images / name, colours[wnid], rng, image_size, grey=False)
        val_labels[name] = wnid
        lines.append(f"{name}\t{wnid}\t{_box(rng, image_size)}\n")
    (dataset_dir / "val" / "val_annotations.txt").write_text("".join(lines))

    test_dir = dataset_dir / "test" / "images"
    test_dir.mkdir(parents=True)
    test_files = [f"test_{i}.JPEG" for i in range(test_images)]
    for name in test_files:
        _jpeg(test_dir / name, colours[wnids[int(rng.integers(classes))]], rng, image_size, grey=False)

    zip_path = zip_md5 = None
    if zipped:
        zip_path = root / ZIP_NAME
        write_zip(dataset_dir, zip_path)
        zip_md5 = hashlib.md5(zip_path.read_bytes()).hexdigest()
    if not extracted:
        shutil.rmtree(dataset_dir)
    return FakeTinyImageNet(
        root=root,
        dataset_dir=dataset_dir,
        wnids=wnids,
        names=names,
        train_files=train_files,
        val_labels=val_labels,
        test_files=test_files,
        zip_path=zip_path,
        zip_md5=zip_md5,
        colours=colours,
    )


def write_zip(dataset_dir: Path, zip_path: Path) -> None:
    """Zip ``dataset_dir`` as ``zip -r`` does: members under its name, an entry for every folder."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        archive.write(dataset_dir, f"{dataset_dir.name}/")
        for path in sorted(dataset_dir.rglob("*")):
            arcname = f"{dataset_dir.name}/{path.relative_to(dataset_dir).as_posix()}"
            archive.write(path, arcname + ("/" if path.is_dir() else ""))
