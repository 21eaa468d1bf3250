"""What a folder of images in class folders holds, read before any pixel is decoded::

    data_dir/train/<class>/**/<image>    (and optionally val/, test/ alike)
        ──list_classes──▶ the class names ──list_split──▶ each split's files and labels
        ──find_image_shape (the image headers)──▶ the (height, width, channels) to decode to

`lit_cs201.data.folder.ImageFolderDataModule` asks these questions as soon as it is built: the CLI sizes the model from
the classes and the input shape before anything is decoded. Each answer that cannot be used is a `UserError` that
names the folder and says how to lay it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lit_cs201.data.decode import bad_images_message, default_workers
from lit_cs201.data.files import find_images
from lit_cs201.data.image_file import MAX_SIDE, BadImageError, image_header
from lit_cs201.data.images import visible_dirs
from lit_cs201.data.pixels import size_pair
from lit_cs201.errors import UserError, first_few, printable

#: The image types searched for, as a user reads them.
SUFFIXES = "png, jpg/jpeg, bmp, gif, webp, tif/tiff"


def class_folders(folder: Path) -> dict[str, str]:
    """The class folders of ``folder``: {class name: folder name}, in sorted order. The class name is the folder
    name `printable`: a name that is not UTF-8 (its bytes shown as ``\\xNN``) or holds control characters becomes
    one that a checkpoint, a TensorBoard tag, the CSV and the terminal can all hold, while its images are still
    read from the folder as it is named on disk."""
    folders: dict[str, str] = {}
    for on_disk in visible_dirs(folder):
        name = printable(on_disk)
        if name in folders:
            raise UserError(
                f"{folder} has two class folders that both show as the class {name!r} (one's name is not UTF-8 "
                "or holds control characters, shown escaped): rename one of them"
            )
        folders[name] = on_disk
    return folders


def list_classes(root: Path, expected: Sequence[str] | None) -> list[str]:
    """The class folders of ``root/train/``, which must be ``expected`` if given (a checkpoint's classes)."""
    train = root / "train"
    if not train.is_dir():
        raise UserError(
            f"{root} has no train/ folder: put the training images in {train}/<class name>/, one folder "
            "per class (val/ and test/ alike, optionally)"
        )
    classes = list(class_folders(train))
    if len(classes) < 2:
        found = f"only one class folder ({classes[0]})" if classes else "no class folders"
        raise UserError(f"{train} has {found}: a classifier needs at least two, one folder per class")
    if expected is not None and list(expected) != classes:
        missing, extra = sorted(set(expected) - set(classes)), sorted(set(classes) - set(expected))
        what = "; ".join(
            [f"missing here: {first_few(missing)}"] * bool(missing) + [f"new here: {first_few(extra)}"] * bool(extra)
        )
        raise UserError(
            f"the classes are {first_few(expected)} (the checkpoint's, or data.init_args.classes), but "
            f"{train} has {first_few(classes)} ({what or 'the same names in another order'}); use the folder "
            "it was trained on"
        )
    return classes


def list_split(folder: Path, class_names: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Image files of the split ``folder`` and their labels (indices in ``class_names``), class by class, files in
    sorted order."""
    classes = class_folders(folder)
    unknown = sorted(set(classes) - set(class_names))
    if unknown:
        raise UserError(
            f"{folder} has class folders that train/ lacks ({first_few(unknown)}): a model cannot learn a class "
            "it never sees; add them to train/, or rename or remove them"
        )
    files: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    for name, on_disk in classes.items():
        found = find_images(folder / on_disk)
        empty += [] if found else [str(folder / on_disk)]
        files += found
        labels += [list(class_names).index(name)] * len(found)
    if empty:
        raise UserError(f"class folders without images ({SUFFIXES}): {first_few(empty)}; add images or remove them")
    if not files:
        raise UserError(f"{folder} has no class folders with images: lay it out as {folder}/<class>/<images>")
    return files, labels


def find_image_shape(
    root: Path, files: Sequence[Path], image_size: int | list[int] | None, channels: int | None
) -> tuple[int, int, int]:
    """(height, width, channels) to decode the images of ``root`` to: as given, or found from the headers of
    ``files``; refused above the `MAX_SIDE` pixels a side that are decoded."""
    height, width, channels = _image_shape(root, files, image_size, channels)
    if max(height, width) > MAX_SIDE:
        raise UserError(
            f"images of {width}x{height} pixels are larger than the {MAX_SIDE} pixels a side that are decoded; set "
            "image_size (an int or [height, width]) to resize them when decoding, e.g. image_size: 224"
        )
    return height, width, channels


def _image_shape(
    root: Path, files: Sequence[Path], image_size: int | list[int] | None, channels: int | None
) -> tuple[int, int, int]:
    size = None if image_size is None else size_pair(image_size)
    if size is not None and channels is not None:
        return *size, channels
    with ThreadPoolExecutor(default_workers()) as pool:  # reading headers is mostly waiting for the disk
        headers = list(pool.map(_header, files))
    readable = {path: header for path, header in zip(files, headers, strict=True) if header is not None}
    if not readable:
        bad = {i: "not an image Pillow can identify" for i in range(len(files))}
        raise UserError(bad_images_message(files, bad, "put image files in the class folders"))
    if channels is None:
        channels = 1 if all(grey for _, _, grey in readable.values()) else 3
    if size is None:
        sizes: dict[tuple[int, int], Path] = {}
        for path, (height, width, _) in readable.items():
            sizes.setdefault((height, width), path)
        if len(sizes) > 1:
            examples = [f"{w}x{h} ({path})" for (h, w), path in list(sizes.items())[:3]]
            raise UserError(
                f"the images in {root} have {len(sizes)} different sizes, e.g. {', '.join(examples)}: set "
                "image_size (an int or [height, width]) to resize them all when decoding, e.g. image_size: 224"
            )
        size = next(iter(sizes))
    return *size, channels


def _header(path: Path) -> tuple[int, int, bool] | None:
    """`image_header`, or None for a file that decoding will report (or skip) with the others."""
    try:
        return image_header(path)
    except BadImageError:
        return None
