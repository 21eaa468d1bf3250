"""The Tiny ImageNet tree: check it, extract its zip if needed, and give val/ one folder per class, as loaders of class
folders need.

No torch here: `lit_cs201.course.tiny_imagenet_prepare` (the command ``python scripts/prepare_tiny_imagenet.py
DATA_DIR``) runs `prepare` without importing what training needs, and `TinyImageNetDataModule` runs it for ``download``.

The folder `prepare` is given holds ``tiny-imagenet-200/`` or ``tiny-imagenet-200.zip``. Nothing is ever deleted,
moved or overwritten: the zip is used once its md5 is right, extracted into ``tiny-imagenet-200.partial/`` and renamed
when complete; the whole tree is checked (`check`); ``val.new/<wnid>/`` gets hard links to the images of
``val/images/`` (copies where links fail), is flushed to disk and published by two renames, ``val/`` -> ``val.orig/``,
``val.new/`` -> ``val/``.
A rerun tells from the folder names alone where an earlier run stopped (`state`), and finishes the job:

    unprepared  val/images/                  check; build val.new/ (a leftover one is rebuilt); both renames
    renaming    val.orig/ and val.new/       check; the second rename
    prepared    val/ and val.orig/           check; change nothing
    foreign     val/ without images/ alone   made by another tool (the course's 14_tinyimagenet.sh): refused

``val.orig/`` costs no space with hard links, and tells a rerun and the datamodule that ``val/`` was made here.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from lit_cs201.data.archives import extract, members
from lit_cs201.data.download import Archive, fetch_archive
from lit_cs201.errors import UserError, first_few

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
DIR_NAME, ZIP_NAME = "tiny-imagenet-200", "tiny-imagenet-200.zip"
ARCHIVE = Archive(ZIP_NAME, MD5, (URL,), (f"{DIR_NAME}/wnids.txt",))
VAL, VAL_NEW, VAL_ORIG = "val", "val.new", "val.orig"
ANNOTATIONS, JPEG = "val_annotations.txt", ".JPEG"
# Flushing before a rename means a power cut cannot publish a folder of empty files. (Windows has no os.sync.)
_sync = getattr(os, "sync", lambda: None)


def _visible(folder: Path) -> list[Path]:
    # Hidden files (.DS_Store and the like) are not data; loaders skip them too.
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def read_wnids(dataset_dir: Path) -> list[str]:
    path = dataset_dir / "wnids.txt"
    if not path.is_file():
        raise UserError(f"{path} not found: {dataset_dir} is not an extracted Tiny ImageNet")
    return path.read_text(encoding="utf-8").split()


def read_annotations(path: Path) -> dict[str, str]:
    """``val_annotations.txt`` (file, wnid, four box numbers; tab-separated) as file name -> wnid."""
    if not path.is_file():
        raise UserError(f"{path} not found: the validation labels are missing; re-extract {ZIP_NAME}")
    labels: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, *rest = line.rstrip().split("\t")
        if len(rest) != 5 or name in labels or name != Path(name).name or name[:1] in ("", "."):
            raise UserError(f"{path} line {number}: expected a new file name, a wnid and 4 box numbers, found {line!r}")
        labels[name] = rest[0]
    return labels


def check(dataset_dir: Path, val_dir: Path) -> tuple[int, int, int]:
    """Check the tree, changing nothing; return its numbers of classes, training images and validation images.

    ``val_dir`` holds ``val_annotations.txt`` and either the zip's ``images/`` or one folder per class. As in the
    official zip, every class must have as many images as the fullest one. Raises a `UserError` naming every mismatch.
    """
    wnids, labels, train = read_wnids(dataset_dir), read_annotations(val_dir / ANNOTATIONS), dataset_dir / "train"
    per_class, folders = Counter(labels.values()), {p.name for p in _visible(train) if p.is_dir()}
    images = {w: _visible(train / w / "images") for w in wnids if w in folders}
    if (val_dir / "images").is_dir():
        where, wanted, found = val_dir / "images", set(labels), {p.name for p in _visible(val_dir / "images")}
    else:
        classes = [d for d in _visible(val_dir) if d.is_dir()]
        where, wanted = val_dir, {f"{w}/{n}" for n, w in labels.items()} | {f"{w}/" for w in per_class}
        found = {f"{d.name}/" for d in classes} | {f"{d.name}/{p.name}" for d in classes for p in _visible(d)}
    stray = [
        f"train/{w}/images/{p.name}" for w, ps in images.items() for p in ps if p.suffix != JPEG or not p.is_file()
    ]
    problems = [
        f"{before}{len(names)}{after}: {first_few(names)}"
        for names, before, after in (
            ([w for w, n in Counter(wnids).items() if n > 1], "wnids.txt names ", " classes twice"),
            ([w for w in wnids if w not in folders], "train/ has no folder for ", " classes of wnids.txt"),
            (sorted(folders - set(wnids)), "train/ has ", " class folders not in wnids.txt"),
            (stray, "", f" entries in train/<wnid>/images/ are not {JPEG} files"),
            (sorted(per_class.keys() - set(wnids)), f"{ANNOTATIONS} names ", " classes not in wnids.txt"),
            (sorted(wanted - found), "", f" files named in {ANNOTATIONS} are missing from {where}"),
            (sorted(found - wanted), "", f" entries in {where} are not in {ANNOTATIONS}"),
        )
        if names
    ]
    train_counts = {w: sum(p.suffix == JPEG for p in ps) for w, ps in images.items()}
    for kind, counts, folder in (
        ("training", train_counts, "train/<wnid>/images/"),
        ("validation", {w: per_class[w] for w in wnids}, ANNOTATIONS),
    ):
        most = max([1, *counts.values()])
        if short := [f"{w}: {n}" for w, n in counts.items() if n < most]:
            problems.append(f"expected {most} {kind} images per class in {folder}, found {first_few(short)}")
    if problems:
        raise UserError(
            f"{dataset_dir}: {'; '.join(problems)}. Nothing was changed. Re-extract {ZIP_NAME} into a fresh folder "
            "and run this again there"
        )
    return len(wnids), sum(train_counts.values()), len(labels)


def state(dataset_dir: Path) -> str:
    """Where ``dataset_dir`` stands, from its folder names: the module's table, or "missing" (no ``val/``)."""
    val, orig, new = (dataset_dir / name for name in (VAL, VAL_ORIG, VAL_NEW))
    if (val / "images").is_dir():
        return "unprepared"
    if val.is_dir():  # earlier releases marked their val/ with .prepared, and allowed deleting val.orig/
        return "prepared" if orig.is_dir() or (val / ".prepared").is_file() else "foreign"
    return "renaming" if orig.is_dir() and new.is_dir() else "missing"


def _discard(folder: Path, allowed: set[str]) -> None:
    """Remove a scratch folder an interrupted run left, once sure that it holds only entries named in ``allowed``."""
    if folder.is_symlink() or not folder.is_dir():
        raise UserError(f"{folder} is in the way and is not a folder this script made; move it away and run again")
    entries = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")}
    if foreign := sorted(name for name, p in entries.items() if name not in allowed or p.is_symlink()):
        raise UserError(
            f"{folder} is a scratch folder of this script but holds what it did not put there ({first_few(foreign)}); "
            "move it away and run again"
        )
    shutil.rmtree(folder)


def _extract(zip_path: Path, dataset_dir: Path, archive: Archive) -> None:
    """Extract ``tiny-imagenet-200/`` of the zip into a scratch folder, then rename that to ``dataset_dir``.

    Whatever the zip holds, nothing is written unless it is an archive whose members land inside the scratch folder
    and include ``wnids.txt``; a failed extraction removes what it wrote, and a killed one leaves the scratch folder,
    which the next run discards once sure it holds only what this zip would put there."""
    scratch = dataset_dir.with_name(DIR_NAME + ".partial")
    names = [PurePosixPath(name) for name in members(zip_path, prefix=DIR_NAME + "/")]
    if PurePosixPath("wnids.txt") not in names:
        raise UserError(
            f"{zip_path} holds no {DIR_NAME}/wnids.txt: it is not the Tiny ImageNet zip. Nothing was extracted; "
            f"delete it and download {archive.urls[0]} again (the official zip's md5 is {MD5})"
        )
    if scratch.exists() or scratch.is_symlink():
        # extract() writes each file as <name>.part first: a killed run may leave those too.
        parts = {name.with_name(name.name + ".part") for name in names}
        _discard(scratch, {p.as_posix() for name in (*names, *parts) for p in (name, *name.parents)})
    extract(zip_path, scratch, prefix=DIR_NAME + "/")
    _sync()
    os.rename(scratch, dataset_dir)


def _build_val_new(dataset_dir: Path) -> str:
    """Fill ``val.new/<wnid>/`` from ``val/images/`` (rebuilding a leftover ``val.new/``); say how."""
    val, new = dataset_dir / VAL, dataset_dir / VAL_NEW
    labels = read_annotations(val / ANNOTATIONS)
    if new.exists() or new.is_symlink():
        _discard(new, {ANNOTATIONS, *labels.values(), *(f"{w}/{n}" for n, w in labels.items())})
    for wnid in sorted(set(labels.values())):
        (new / wnid).mkdir(parents=True)
    files = [(val / ANNOTATIONS, new / ANNOTATIONS), *((val / "images" / n, new / w / n) for n, w in labels.items())]
    links = True
    for source, target in tqdm(files, "linking val/<wnid>/", unit=" files"):
        if links:
            try:
                os.link(source, target)
                continue
            except OSError:  # FAT/exFAT, some network shares: copying is the only way left
                links = False
        shutil.copy2(source, target)
    return "hard links to val.orig/images/" if links else "copies of val.orig/images/: this filesystem refused links"


def prepare(data_dir: str | os.PathLike[str], download: bool = False, archive: Archive = ARCHIVE) -> str:
    """Make ``data_dir/tiny-imagenet-200/`` exist, checked, with one folder per class in ``val/``; return a summary.
    A `UserError` says what is wrong and what to do; nothing was changed then."""
    root = Path(data_dir)
    if (root / "wnids.txt").is_file():
        raise UserError(f"{root} is the dataset folder itself; pass the folder that holds {DIR_NAME}/ ({root.parent})")
    dataset_dir, zip_path, done = root / DIR_NAME, root / archive.filename, []
    if not dataset_dir.exists() and not zip_path.is_file() and not download:
        raise UserError(
            f"neither {dataset_dir} nor {zip_path} exists: download {archive.urls[0]} (md5 {archive.md5}) and place "
            "it there, or run this again with --download"
        )
    if not dataset_dir.exists():
        if download and not zip_path.is_file():
            done.append(f"downloaded {ZIP_NAME}")
        _extract(fetch_archive(archive, root, download), dataset_dir, archive)
        done.append(f"extracted {ZIP_NAME}")
    where = state(dataset_dir)
    if where == "foreign":
        raise UserError(
            f"{dataset_dir / VAL} has no images/ and no {VAL_ORIG}/ beside it: it was reorganised by another tool "
            f"(the course's 14_tinyimagenet.sh, say). Nothing was changed. Extract {ZIP_NAME} afresh and run this there"
        )
    if where == "unprepared" and (dataset_dir / VAL_ORIG).exists():
        raise UserError(
            f"{dataset_dir / VAL_ORIG} already exists beside an unprepared val/; this script would keep the original "
            "val/ under that name. Nothing was changed. Move it away and run again"
        )
    classes, train, val = check(dataset_dir, dataset_dir / (VAL_NEW if where == "renaming" else VAL))
    if where == "unprepared":
        done.append(f"gave val/ one folder per class ({_build_val_new(dataset_dir)})")
        _sync()
        os.rename(dataset_dir / VAL, dataset_dir / VAL_ORIG)
    elif where == "renaming":
        done.append("published the val/ an interrupted run had built")
    if where != "prepared":
        os.rename(dataset_dir / VAL_NEW, dataset_dir / VAL)
        _sync()
    head = f"Tiny ImageNet is ready in {dataset_dir}" if done else f"{dataset_dir} is already prepared; nothing to do"
    counts = f"{classes} classes, {train} training images, {val} validation images in val/<wnid>/"
    return f"{head}: {counts}" + "".join(f"\n  this run: {step}" for step in done)
