"""Prepare Tiny ImageNet for class-folder loaders: verify it, extract it, give val/ one folder per class.

The official ``tiny-imagenet-200.zip`` keeps the training images in ``train/<wnid>/images/`` (a class folder
per wnid, which loaders that walk class folders already understand) but puts all validation images in one
folder, ``val/images/``, with the labels in ``val/val_annotations.txt``. This module builds the class-folder
layout of ``val/`` without ever deleting, moving or overwriting an image::

    python -m lit_cs201.data.tiny_imagenet_prepare ROOT [--download]
    python scripts/prepare_tiny_imagenet.py ROOT [--download]

``ROOT`` is the folder that holds ``tiny-imagenet-200/`` or ``tiny-imagenet-200.zip`` (the datamodule's
``data_dir``). Result, in ``ROOT/tiny-imagenet-200/``::

    wnids.txt words.txt                     unchanged
    train/<wnid>/images/<wnid>_<i>.JPEG      unchanged (and train/<wnid>/<wnid>_boxes.txt)
    test/images/test_<i>.JPEG                unchanged
    val/<wnid>/val_<i>.JPEG                  new: hard links to the originals (copies where links fail)
    val/val_annotations.txt                  new: hard link to the original
    val/.prepared                            new: marker written last, says the layout is complete
    val.orig/images/val_<i>.JPEG             the original val/ folder, renamed, untouched
    val.orig/val_annotations.txt

The original ``val/`` is kept, renamed to ``val.orig/``: with hard links that costs no disk space, it keeps
the folder exactly as the zip made it, and it is where a rerun finds the originals. It sits beside ``val/``,
not inside it, because a loader that walks class folders would take ``val/images/`` for a class. Once the
dataset works, ``val.orig/`` may be deleted; this script will then only check the finished layout.

Nothing changes before the whole dataset has been checked (classes, image counts, annotations; see
:func:`verify_original`), and every step that changes something is atomic (a rename) or happens in a scratch
folder that a rerun may discard, because it only holds links or copies of files that exist elsewhere.

States, and what a run does in each (:func:`val_state` tells them apart)
-------------------------------------------------------------------------

ROOT level (``tiny-imagenet-200/`` missing):

- ``tiny-imagenet-200.zip`` missing: with ``--download``, download it to ``tiny-imagenet-200.zip.part`` and
  rename it to ``tiny-imagenet-200.zip`` once its md5 is right; without, stop and say where to put the file.
- zip present: check its md5, refuse unsafe members (absolute paths, ``..``, links), extract everything
  under ``tiny-imagenet-200/`` into the scratch folder ``tiny-imagenet-200.partial/`` (a leftover one from an
  interrupted run is discarded first: it came from the zip), then rename it to ``tiny-imagenet-200/``.
  The zip is never changed.

Dataset level (``tiny-imagenet-200/`` present):

ORIGINAL  ``val/images/`` and no ``val/.prepared`` (the layout of the zip). Refuse if ``val.orig/`` exists.
          Verify everything; reuse a complete ``val.new/`` (see SWAPPED) or discard it and build it again:
          ``val.new/<wnid>/`` and links to the annotations and images, its marker last; rename ``val/`` ->
          ``val.orig/`` (now SWAPPED); rename ``val.new/`` -> ``val/`` (now PREPARED).
SWAPPED   no ``val/``; ``val.orig/images/`` (a crash between the two renames).
          Verify everything against ``val.orig/``; keep ``val.new/`` if it has its marker and matches the
          annotations and the original file sizes, else rebuild it; rename ``val.new/`` -> ``val/``.
PREPARED  ``val/.prepared`` exists. Check the layout and the counts; change nothing.
FOREIGN   ``val/`` without ``images/`` and without the marker (e.g. after the course's shell script). Refuse.
MISSING   neither ``val/`` nor ``val.orig/images/``. Refuse.

A crash at any point therefore leaves the original layout (perhaps with a scratch ``val.new/``), the finished
layout, or, for the instant between the two renames, SWAPPED; in each case all original images are in
``val/images/`` or ``val.orig/images/`` and a rerun finishes the job. The scratch folders
(``tiny-imagenet-200.partial/``, ``val.new/``) are only deleted after checking that they hold nothing but what
this script puts there; an interrupted download (``tiny-imagenet-200.zip.part``) is simply started again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import IO

from lit_cs201.argtypes import positive_int
from lit_cs201.errors import UserError, first_few

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ZIP_NAME = "tiny-imagenet-200.zip"
DIR_NAME = "tiny-imagenet-200"
EXTRACT_SCRATCH = "tiny-imagenet-200.partial"
DOWNLOAD_SCRATCH = "tiny-imagenet-200.zip.part"
VAL, VAL_NEW, VAL_ORIG = "val", "val.new", "val.orig"
ANNOTATIONS = "val_annotations.txt"
MARKER = ".prepared"
IMAGE_SUFFIX = ".JPEG"
PROG = "prepare_tiny_imagenet"

_CHUNK = 1 << 20


class PrepareError(UserError):
    """The dataset cannot be prepared as it is; the message names the problem and what to do."""


class ValState(Enum):
    """Layout of the validation images of a ``tiny-imagenet-200/`` folder (see the module docstring)."""

    ORIGINAL = "original"
    SWAPPED = "swapped"
    PREPARED = "prepared"
    FOREIGN = "foreign"
    MISSING = "missing"


@dataclass(frozen=True)
class Expected:
    """Counts the dataset must have; the defaults are those of the official Tiny ImageNet."""

    classes: int = 200
    train_per_class: int = 500
    val_per_class: int = 50


@dataclass(frozen=True)
class Inventory:
    """What a verified dataset folder holds."""

    #: Class ids in the order of ``wnids.txt``.
    wnids: tuple[str, ...]
    train_images: int
    #: Validation file name -> wnid, in the order of ``val_annotations.txt``.
    val_labels: dict[str, str]
    test_images: int


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare` found and did."""

    dataset_dir: Path
    classes: int
    train_images: int
    val_images: int
    test_images: int
    #: What this run changed, in order; empty when the dataset was already prepared.
    steps: tuple[str, ...]
    #: How ``val/<wnid>/`` was filled by this run: "hard links", "copies", or None if it did not fill it.
    val_files: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def __str__(self) -> str:
        head = (
            f"Tiny ImageNet is ready in {self.dataset_dir}"
            if self.changed
            else f"Tiny ImageNet in {self.dataset_dir} is already prepared; nothing to do."
        )
        lines = [
            head,
            f"  classes:      {self.classes}",
            f"  train images: {self.train_images}  (train/<wnid>/images/*{IMAGE_SUFFIX})",
            f"  val images:   {self.val_images}  (val/<wnid>/*{IMAGE_SUFFIX})",
            f"  test images:  {self.test_images}  (test/images/, unlabelled)",
        ]
        if (self.dataset_dir / VAL_ORIG).is_dir():
            free = " (hard links: no extra disk space)" if self.val_files == "hard links" else ""
            lines.append(f"  original val/ kept as {VAL_ORIG}/{free}")
        if self.steps:
            done = "; ".join(self.steps)
            lines.append(f"  this run: {done}" + (f" ({self.val_files})" if self.val_files else ""))
        return "\n".join(lines)


# -- progress ------------------------------------------------------------------------------------------------
#: Whether a progress line on the terminal waits for its end (the next message must start on a new line).
_line_open = False


class Progress:
    """A counter on stderr for long steps: redrawn in place on a terminal, a line per 10 % in a log."""

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "") -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.enabled = enabled and self.total > 0
        self.done = 0
        self._tty = sys.stderr.isatty()
        self._shown = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        percent = min(100, self.done * 100 // self.total)
        step = percent if self._tty else percent // 10 * 10
        if step != self._shown:
            self._shown = step
            global _line_open
            _line_open = self._tty and percent < 100
            prefix = "\r" if self._tty else ""
            done, total = self._format(self.done), self._format(self.total)
            text = f"{prefix}{self.label}: {done}/{total}{self.unit} ({percent}%)"
            print(text, end="" if _line_open else "\n", file=sys.stderr, flush=True)

    def _format(self, n: int) -> str:
        return f"{n / 2**20:.1f}" if self.unit == " MiB" else str(n)


def _stderr(message: str) -> None:
    """Print a line on stderr, below a progress line that a failure left unfinished."""
    global _line_open
    if _line_open:
        print(file=sys.stderr)
        _line_open = False
    print(message, file=sys.stderr)


def _info(message: str, enabled: bool) -> None:
    if enabled:
        _stderr(message)


def _visible(entries: Iterable[Path]) -> list[Path]:
    # Hidden files (macOS Finder's .DS_Store, editors' swap files) are not data; loaders skip them too.
    return [p for p in entries if not p.name.startswith(".")]


# -- reading and verifying -----------------------------------------------------------------------------------
def read_wnids(dataset_dir: Path) -> list[str]:
    """Class ids of ``wnids.txt``, in file order."""
    path = dataset_dir / "wnids.txt"
    if not path.is_file():
        raise PrepareError(f"{path} not found: {dataset_dir} is not an extracted Tiny ImageNet")
    wnids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    duplicates = [w for w, n in Counter(wnids).items() if n > 1]
    if duplicates:
        raise PrepareError(f"{path}: duplicate class ids {first_few(duplicates)}")
    return wnids


def read_val_annotations(path: Path) -> dict[str, str]:
    """``val_annotations.txt`` (file, wnid, four box numbers; tab-separated) as file name -> wnid."""
    if not path.is_file():
        raise PrepareError(f"{path} not found: the validation labels are missing; re-extract {ZIP_NAME}")
    labels: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")
        if len(fields) != 6 or not fields[0] or not fields[1]:
            raise PrepareError(
                f"{path} line {number}: expected 6 tab-separated fields (file, wnid, 4 box numbers), found {line!r}"
            )
        name, wnid = fields[0], fields[1]
        if name != Path(name).name or name.startswith("."):
            raise PrepareError(f"{path} line {number}: {name!r} is not a plain file name")
        if name in labels:
            raise PrepareError(f"{path} line {number}: {name} is annotated twice")
        labels[name] = wnid
    return labels


def _check_counts(expected: Expected) -> None:
    for name, value in vars(expected).items():
        if not isinstance(value, int) or value < 1:
            raise PrepareError(f"{name} must be a positive whole number, got {value!r}")


def _verify_train(dataset_dir: Path, wnids: Sequence[str], expected: Expected, progress: bool) -> tuple[list[str], int]:
    problems: list[str] = []
    train = dataset_dir / "train"
    if not train.is_dir():
        return [f"{train} not found"], 0
    folders = {p.name for p in _visible(train.iterdir()) if p.is_dir()}
    missing, extra = [w for w in wnids if w not in folders], sorted(folders - set(wnids))
    if missing:
        problems.append(f"train/ has no folder for {len(missing)} classes of wnids.txt: {first_few(missing)}")
    if extra:
        problems.append(f"train/ has {len(extra)} class folders not in wnids.txt: {first_few(extra)}")
    wrong: list[str] = []
    stray: list[str] = []
    total = 0
    counter = Progress("checking train/", len(wnids), progress)
    for wnid in wnids:
        counter.update()
        images = train / wnid / "images"
        if not images.is_dir():
            if wnid in folders:
                wrong.append(f"{wnid}: no images/ folder")
            continue
        files = _visible(images.iterdir())
        jpegs = [p for p in files if p.suffix == IMAGE_SUFFIX and p.is_file()]
        stray += [f"train/{wnid}/images/{p.name}" for p in sorted(set(files) - set(jpegs))]
        total += len(jpegs)
        if len(jpegs) != expected.train_per_class:
            wrong.append(f"{wnid}: {len(jpegs)}")
    if wrong:
        problems.append(
            f"expected {expected.train_per_class} training images per class in train/<wnid>/images/, "
            f"found {first_few(wrong)}"
        )
    if stray:
        problems.append(
            f"{len(stray)} entries in train/<wnid>/images/ are not {IMAGE_SUFFIX} files: {first_few(stray)}"
        )
    return problems, total


def _verify_labels(labels: dict[str, str], wnids: Sequence[str], expected: Expected) -> list[str]:
    problems: list[str] = []
    per_class = Counter(labels.values())
    unknown = sorted(set(per_class) - set(wnids))
    if unknown:
        problems.append(f"{ANNOTATIONS} names {len(unknown)} classes not in wnids.txt: {first_few(unknown)}")
    wrong = [f"{w}: {per_class.get(w, 0)}" for w in wnids if per_class.get(w, 0) != expected.val_per_class]
    if wrong:
        problems.append(
            f"expected {expected.val_per_class} validation images per class in {ANNOTATIONS}, found {first_few(wrong)}"
        )
    return problems


def _verify_val_images(images: Path, labels: dict[str, str]) -> list[str]:
    """Annotated files missing from ``images`` and files there that no annotation names."""
    if not images.is_dir():
        return [f"{images} not found"]
    present = {p.name: p for p in _visible(images.iterdir())}
    missing = [name for name in labels if name not in present or not present[name].is_file()]
    stray = sorted(name for name in present if name not in labels)
    problems = []
    if missing:
        problems.append(f"{len(missing)} files named in {ANNOTATIONS} are missing from {images}: {first_few(missing)}")
    if stray:
        problems.append(f"{len(stray)} entries in {images} are not in {ANNOTATIONS}: {first_few(stray)}")
    return problems


def _count_test(dataset_dir: Path) -> int:
    images = dataset_dir / "test" / "images"
    return sum(1 for p in _visible(images.iterdir()) if p.suffix == IMAGE_SUFFIX) if images.is_dir() else 0


def _raise_if(problems: list[str], where: Path, advice: str) -> None:
    if problems:
        raise PrepareError(f"{where}: " + "; ".join(problems) + f". {advice}")


_COUNTS = "if your copy has other counts, pass them (--classes, --train-per-class, --val-per-class)"
_NOTHING_CHANGED = f"Nothing was changed. Re-extract {ZIP_NAME} into a fresh folder, or, {_COUNTS}"


def verify_original(
    dataset_dir: Path, val_dir: Path, expected: Expected = Expected(), progress: bool = False
) -> Inventory:
    """Check a dataset in the layout of the zip, with its validation folder at ``val_dir``; change nothing.

    Raises:
        PrepareError: naming every mismatch found (classes, counts, missing or stray files).
    """
    wnids, train_images, labels, problems = _verify_classes_train_labels(dataset_dir, val_dir, expected, progress)
    problems += _verify_val_images(val_dir / "images", labels)
    _raise_if(problems, dataset_dir, _NOTHING_CHANGED)
    return Inventory(tuple(wnids), train_images, labels, _count_test(dataset_dir))


def _verify_classes_train_labels(
    dataset_dir: Path, val_dir: Path, expected: Expected, progress: bool
) -> tuple[list[str], int, dict[str, str], list[str]]:
    """What both layouts share: wnids.txt, train/, and the annotations in ``val_dir``; the problems found."""
    _check_counts(expected)
    wnids = read_wnids(dataset_dir)
    problems: list[str] = []
    if len(wnids) != expected.classes:
        problems.append(f"expected {expected.classes} classes in wnids.txt, found {len(wnids)}")
    train_problems, train_images = _verify_train(dataset_dir, wnids, expected, progress)
    labels = read_val_annotations(val_dir / ANNOTATIONS)
    problems += train_problems + _verify_labels(labels, wnids, expected)
    return wnids, train_images, labels, problems


def _prepared_problems(val_dir: Path, labels: dict[str, str], source: Path | None = None) -> list[str]:
    """How ``val_dir`` differs from the class folders of ``labels`` (and from the sizes of ``source``)."""
    wnids = set(labels.values())
    folders = {p.name for p in _visible(val_dir.iterdir()) if p.is_dir()}
    problems = []
    if folders != wnids:
        odd = sorted(folders ^ wnids)
        problems.append(f"class folders differ from {ANNOTATIONS}: {first_few(odd)}")
    present = {f"{p.parent.name}/{p.name}" for w in folders & wnids for p in _visible((val_dir / w).iterdir())}
    wanted = {f"{w}/{name}" for name, w in labels.items()}
    if wanted - present:
        problems.append(f"{len(wanted - present)} annotated images missing: {first_few(sorted(wanted - present))}")
    if present - wanted:
        problems.append(f"{len(present - wanted)} files not in {ANNOTATIONS}: {first_few(sorted(present - wanted))}")
    if source is not None and not problems:
        # A crash while copying can leave a truncated file: a size check catches it without reading images.
        short = [
            name for name, w in labels.items() if (val_dir / w / name).stat().st_size != (source / name).stat().st_size
        ]
        if short:
            problems.append(f"{len(short)} files differ from the originals: {first_few(short)}")
    return problems


def verify_prepared(dataset_dir: Path, expected: Expected = Expected(), progress: bool = False) -> Inventory:
    """Check a dataset whose ``val/`` already has one folder per class; change nothing."""
    val_dir = dataset_dir / VAL
    wnids, train_images, labels, problems = _verify_classes_train_labels(dataset_dir, val_dir, expected, progress)
    problems += [f"val/: {p}" for p in _prepared_problems(val_dir, labels)]
    _raise_if(
        problems,
        dataset_dir,
        f"Nothing was changed. If the layout was edited by hand, the original validation images are in "
        f"{VAL_ORIG}/; {_COUNTS}",
    )
    return Inventory(tuple(wnids), train_images, labels, _count_test(dataset_dir))


def val_state(dataset_dir: Path) -> ValState:
    """Which state of the module docstring's table ``dataset_dir`` (a ``tiny-imagenet-200/`` folder) is in."""
    val = dataset_dir / VAL
    if (val / MARKER).is_file():
        return ValState.PREPARED
    if val.is_dir():
        return ValState.ORIGINAL if (val / "images").is_dir() else ValState.FOREIGN
    if (dataset_dir / VAL_ORIG / "images").is_dir():
        return ValState.SWAPPED
    return ValState.MISSING


def is_prepared(dataset_dir: Path) -> bool:
    """Whether ``dataset_dir/val/`` has the finished class-folder layout (it does not re-check the files)."""
    return val_state(dataset_dir) is ValState.PREPARED


# -- changing things, one atomic step at a time -------------------------------------------------------------
def _sync() -> None:
    # A rename can reach the disk before the data it publishes; flushing first means a power cut cannot
    # publish a folder with missing or empty files. (Windows has no os.sync.)
    if hasattr(os, "sync"):
        os.sync()


def _rename(src: Path, dst: Path) -> None:
    # os.rename onto an existing empty folder succeeds silently on POSIX; nothing is ever renamed onto a name
    # that exists.
    if dst.exists() or dst.is_symlink():
        raise PrepareError(f"{dst} already exists; it would be replaced by {src}. Move it away and run again")
    os.rename(src, dst)


def _discard_scratch(folder: Path, allowed: set[str], why: str, say: bool) -> None:
    """Delete the scratch folder of an interrupted run, once sure it holds only what this script made."""
    if folder.is_symlink() or not folder.is_dir():
        raise PrepareError(f"{folder} is in the way and is not a folder this script made; move it away")
    foreign = [
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.relative_to(folder).as_posix() not in allowed or p.is_symlink()
    ]
    if foreign:
        raise PrepareError(
            f"{folder} is a scratch folder of this script but holds {len(foreign)} entries it did not put "
            f"there ({first_few(sorted(foreign))}); move it away and run again"
        )
    _info(f"removing {folder.name}/ left by an interrupted run ({why})", say)
    shutil.rmtree(folder)


class _Linker:
    """Hard-links files, falling back to copies for good on the first filesystem that refuses links."""

    def __init__(self) -> None:
        self.links = True

    def __call__(self, src: Path, dst: Path) -> None:
        if self.links:
            try:
                os.link(src, dst)
                return
            except FileExistsError:
                raise
            except OSError:  # FAT/exFAT, some network shares, cross-device: copying is the only way left
                self.links = False
        shutil.copy2(src, dst)

    @property
    def kind(self) -> str:
        return "hard links" if self.links else "copies (this filesystem refused hard links)"


def _write_marker(folder: Path, inventory: Inventory) -> None:
    # Written under a temporary name and renamed, so a marker that exists is always complete.
    text = (
        "Tiny ImageNet validation images, one folder per class, made from val.orig/images and "
        f"{ANNOTATIONS} by lit_cs201.data.tiny_imagenet_prepare.\n"
        f"classes: {len(inventory.wnids)}\nimages: {len(inventory.val_labels)}\n"
    )
    tmp = folder / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    _sync()
    os.replace(tmp, folder / MARKER)


def _scratch_val_entries(inventory: Inventory) -> set[str]:
    allowed = {ANNOTATIONS, MARKER, MARKER + ".tmp"} | set(inventory.wnids)
    return allowed | {f"{w}/{name}" for name, w in inventory.val_labels.items()}


def _build_val_new(dataset_dir: Path, source: Path, inventory: Inventory, progress: bool) -> str:
    new = dataset_dir / VAL_NEW
    new.mkdir()
    for wnid in inventory.wnids:
        (new / wnid).mkdir()
    link = _Linker()
    link(source / ANNOTATIONS, new / ANNOTATIONS)
    counter = Progress(f"linking val/<wnid>/ (from {source.name}/images)", len(inventory.val_labels), progress)
    for name, wnid in inventory.val_labels.items():
        link(source / "images" / name, new / wnid / name)
        counter.update()
    _write_marker(new, inventory)
    return link.kind


def prepare_dataset_dir(dataset_dir: Path, expected: Expected = Expected(), progress: bool = True) -> PrepareSummary:
    """Bring an extracted ``tiny-imagenet-200/`` folder to the class-folder layout (see the module doc)."""
    dataset_dir = Path(dataset_dir)
    state = val_state(dataset_dir)
    if state is ValState.PREPARED:
        inv = verify_prepared(dataset_dir, expected, progress)
        return _summary(dataset_dir, inv, ())
    if state is ValState.FOREIGN:
        raise PrepareError(
            f"{dataset_dir / VAL} has no images/ folder and no {MARKER} marker: it was reorganised by "
            "another tool (the course's 14_tinyimagenet.sh moves the images). Nothing was changed. For a "
            f"verified layout, extract {ZIP_NAME} into a fresh folder and run this again there"
        )
    if state is ValState.MISSING:
        raise PrepareError(f"{dataset_dir} has no val/ folder: re-extract {ZIP_NAME}")
    if state is ValState.ORIGINAL and (dataset_dir / VAL_ORIG).exists():
        raise PrepareError(
            f"{dataset_dir / VAL_ORIG} already exists beside an unprepared val/: this script keeps the "
            "original val/ under that name and will not replace it. Nothing was changed. Move it away and "
            "run again"
        )

    source = dataset_dir / (VAL if state is ValState.ORIGINAL else VAL_ORIG)
    _info(f"checking {dataset_dir}", progress)
    inventory = verify_original(dataset_dir, source, expected, progress)
    # Everything is verified; from here on each step is a rename or happens in the scratch folder val.new/.

    new = dataset_dir / VAL_NEW
    val_files: str | None = None
    if (
        new.exists()
        and (new / MARKER).is_file()
        and not _prepared_problems(new, inventory.val_labels, source / "images")
    ):
        _info(f"reusing the complete {VAL_NEW}/ of an interrupted run", progress)
    else:
        if new.exists() or new.is_symlink():
            _discard_scratch(new, _scratch_val_entries(inventory), "it only holds links to val images", progress)
        val_files = _build_val_new(dataset_dir, source, inventory, progress)
    _sync()
    if state is ValState.ORIGINAL:
        _rename(dataset_dir / VAL, dataset_dir / VAL_ORIG)
    _rename(new, dataset_dir / VAL)
    _sync()
    return _summary(dataset_dir, inventory, ("reorganised val/ into one folder per class",), val_files)


def _summary(dataset_dir: Path, inv: Inventory, steps: tuple[str, ...], val_files: str | None = None) -> PrepareSummary:
    return PrepareSummary(
        dataset_dir=dataset_dir,
        classes=len(inv.wnids),
        train_images=inv.train_images,
        val_images=len(inv.val_labels),
        test_images=inv.test_images,
        steps=steps,
        val_files=val_files,
    )


# -- the archive ---------------------------------------------------------------------------------------------
def file_md5(path: Path, progress: bool = False) -> str:
    """md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    counter = Progress(f"checking the md5 of {path.name}", path.stat().st_size, progress, unit=" MiB")
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            counter.update(len(chunk))
    return digest.hexdigest()


def _bad_md5_message(path: Path, found: str, md5: str, url: str) -> str:
    return (
        f"{path}: md5 is {found}, expected {md5}: the file is incomplete or not the official archive. "
        f"Nothing was extracted. Delete it and download {url} again (or run with --download once it is gone)"
    )


def download(url: str, dest: Path, md5: str = MD5, progress: bool = True) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``; ``dest`` only appears once its md5 is right."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            counter = Progress(f"downloading {url}", int(response.headers.get("Content-Length") or 0), progress, " MiB")
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                counter.update(len(chunk))
    except Exception as err:  # network failures come in many types (URLError, timeouts, HTTP errors, proxies)
        part.unlink(missing_ok=True)
        raise PrepareError(
            f"could not download {url} ({type(err).__name__}: {err}). On a machine with network, download it "
            f"and place it at {dest} (md5 {md5}), then run again (a placed file is used as it is)"
        ) from None
    found = digest.hexdigest()
    if found != md5:
        part.unlink()
        raise PrepareError(f"{url} gave a file with md5 {found}, expected {md5}; nothing was kept. Try again later")
    _sync()
    _rename(part, dest)


_DRIVE = re.compile(r"^[A-Za-z]:")


def _dataset_members(archive: zipfile.ZipFile, path: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Members under ``tiny-imagenet-200/``, with their path inside it; refuses the zip if any is unsafe."""
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    unsafe: list[str] = []
    seen: set[str] = set()
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name).parts
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        if name.startswith(("/", "\\")) or _DRIVE.match(name) or "\\" in name or ".." in parts or is_link:
            unsafe.append(name)
            continue
        if not parts or parts[0] != DIR_NAME or len(parts) == 1:
            continue  # the top folder itself, or something beside it: not part of the dataset
        relative = PurePosixPath(*parts[1:])
        if relative.as_posix() in seen:
            unsafe.append(f"{name} (twice)")
        seen.add(relative.as_posix())
        members.append((info, relative))
    if unsafe:
        raise PrepareError(
            f"{path} holds {len(unsafe)} members with an absolute path, '..', a link or a duplicate name "
            f"({first_few(unsafe)}); refusing to extract it. Nothing was extracted"
        )
    if "wnids.txt" not in seen:
        raise PrepareError(f"{path} has no {DIR_NAME}/wnids.txt: it is not the Tiny ImageNet archive")
    return members


def _copy_member(source: IO[bytes], target: Path) -> None:
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)


def extract(zip_path: Path, root: Path, progress: bool = True) -> Path:
    """Extract ``tiny-imagenet-200/`` from ``zip_path`` into ``root`` through a scratch folder; return it."""
    scratch = root / EXTRACT_SCRATCH
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _dataset_members(archive, zip_path)
            if scratch.exists() or scratch.is_symlink():
                allowed = {m.as_posix() for _, m in members}
                allowed |= {p.as_posix() for _, m in members for p in m.parents if p.as_posix() != "."}
                _discard_scratch(scratch, allowed, f"it only holds files of {ZIP_NAME}", progress)
            scratch.mkdir()
            counter = Progress(f"extracting {zip_path.name}", len(members), progress)
            for info, relative in members:
                target = scratch.joinpath(*relative.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source:
                        _copy_member(source, target)
                counter.update()
    except zipfile.BadZipFile as err:
        raise PrepareError(f"{zip_path} is not a readable zip archive ({err}); download it again") from None
    _sync()
    dataset_dir = root / DIR_NAME
    _rename(scratch, dataset_dir)
    return dataset_dir


# -- the whole job -------------------------------------------------------------------------------------------
def prepare(
    root: str | os.PathLike[str],
    *,
    download_missing: bool = False,
    expected: Expected = Expected(),
    url: str = URL,
    expected_md5: str = MD5,
    progress: bool = True,
) -> PrepareSummary:
    """Make ``root/tiny-imagenet-200/`` exist, verified, with one folder per class in ``val/``.

    Args:
        root: Folder that holds ``tiny-imagenet-200/`` or ``tiny-imagenet-200.zip`` (the data_dir).
        download_missing: Download the zip from ``url`` if neither the folder nor the zip is in ``root``.
        expected: Counts to verify against.
        url: Where to download the zip from.
        expected_md5: md5 the zip must have (a mirror or a test archive may have another).
        progress: Print progress and notes on stderr.

    Raises:
        PrepareError: with a one-line message naming the problem; nothing was changed unless it says so.
    """
    root = Path(root)
    _check_counts(expected)
    if (root / "wnids.txt").is_file() and (root / "train").is_dir():
        raise PrepareError(
            f"{root} is the dataset folder itself; pass the folder that holds {DIR_NAME}/ ({root.parent})"
        )
    dataset_dir = root / DIR_NAME
    zip_path = root / ZIP_NAME
    steps: list[str] = []
    if dataset_dir.exists():
        if not dataset_dir.is_dir():
            raise PrepareError(f"{dataset_dir} is not a folder; move it away and run again")
        if zip_path.exists():
            _info(f"using the extracted {DIR_NAME}/; {ZIP_NAME} is not needed", progress)
    else:
        if not zip_path.is_file():
            if not download_missing:
                where = "" if root.is_dir() else f" ({root} does not exist)"
                raise PrepareError(
                    f"neither {dataset_dir} nor {zip_path} exists{where}. Download {url} "
                    f"(md5 {expected_md5}) and place it at {zip_path}, or run again with --download"
                )
            created = [p for p in (root, *root.parents) if not p.exists()]
            root.mkdir(parents=True, exist_ok=True)
            if (root / DOWNLOAD_SCRATCH).exists():
                _info(f"replacing {DOWNLOAD_SCRATCH} left by an interrupted download", progress)
            try:
                download(url, zip_path, expected_md5, progress)
            except PrepareError:
                for folder in created:  # a failed attempt leaves no trace: they are empty again
                    folder.rmdir()
                raise
            steps.append(f"downloaded {ZIP_NAME}")
        else:
            found = file_md5(zip_path, progress)
            if found != expected_md5:
                raise PrepareError(_bad_md5_message(zip_path, found, expected_md5, url))
        extract(zip_path, root, progress)
        steps.append(f"extracted {ZIP_NAME}")
    summary = prepare_dataset_dir(dataset_dir, expected, progress)
    if steps:
        summary = replace(summary, steps=(*steps, *summary.steps))
    return summary


# -- command line --------------------------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    defaults = Expected()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Verify Tiny ImageNet, extract it from tiny-imagenet-200.zip if needed, and give val/ "
        "one folder per class (hard links; the original val/ is kept as val.orig/). Safe to interrupt and "
        "run again; a second run changes nothing.",
    )
    parser.add_argument("root", type=Path, metavar="ROOT", help=f"folder that holds {DIR_NAME}/ or {ZIP_NAME}")
    parser.add_argument(
        "--download",
        action="store_true",
        help=f"download {ZIP_NAME} into ROOT if neither it nor {DIR_NAME}/ is there",
    )
    parser.add_argument("--url", default=URL, help=f"where --download fetches the zip (default: {URL})")
    parser.add_argument("--md5", default=MD5, help=f"md5 the zip must have (default: {MD5}, the official one)")
    parser.add_argument(
        "--classes", type=positive_int, default=defaults.classes, metavar="N", help="classes expected (200)"
    )
    parser.add_argument(
        "--train-per-class",
        type=positive_int,
        default=defaults.train_per_class,
        metavar="N",
        help="training images expected per class (500)",
    )
    parser.add_argument(
        "--val-per-class",
        type=positive_int,
        default=defaults.val_per_class,
        metavar="N",
        help="validation images expected per class (50)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr, only errors and the summary")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command line entry point; returns the exit status (0 done or nothing to do, 2 refused, 1 failed)."""
    args = _parser(prog).parse_args(argv)
    expected = Expected(args.classes, args.train_per_class, args.val_per_class)
    try:
        summary = prepare(
            args.root,
            download_missing=args.download,
            expected=expected,
            url=args.url,
            expected_md5=args.md5.lower(),
            progress=not args.quiet,
        )
    except PrepareError as err:
        _stderr(f"{prog}: error: {err}")
        return 2
    except OSError as err:  # disk full, permissions: the state machine makes a rerun safe once it is fixed
        _stderr(f"{prog}: error: {err}. No image was lost; fix this and run again to finish")
        return 1
    except KeyboardInterrupt:
        _stderr(f"{prog}: interrupted. No image was lost; run again to finish")
        return 130
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m lit_cs201.data.tiny_imagenet_prepare"))
