"""Preparing Tiny ImageNet: the class-folder layout of val/, verified first, atomic, idempotent, and no image
ever lost, whatever point a run is interrupted at."""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fake_tiny_imagenet import FakeTinyImageNet, make_fake_tiny_imagenet
from lit_cs201.course import tiny_imagenet_prepare as tip
from lit_cs201.data import tiny_imagenet_tree as layout
from lit_cs201.data.archives import extract
from lit_cs201.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: sha256 of each file, "<dir>" for each folder."""
    return {
        p.relative_to(root).as_posix(): "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def fake(tmp_path: Path) -> FakeTinyImageNet:
    return make_fake_tiny_imagenet(tmp_path / "data with spaces", classes=3, train_per_class=4, val_per_class=2)


def prepare(root: Path, md5: str = layout.MD5, url: str = layout.URL, download: bool = False) -> str:
    """The summary of preparing ``root``, the zip being expected to have ``md5`` (the fake's is not the official)."""
    return layout.prepare(root, download, replace(layout.ARCHIVE, md5=md5, urls=(url,)))


def expected_after(before: dict[str, str]) -> dict[str, str]:
    """The tree a finished run must leave, given the tree of a freshly extracted dataset."""
    after = {}
    for path, digest in before.items():
        # The original val/ lives on, whole and untouched, as val.orig/.
        after[path.replace("tiny-imagenet-200/val", "tiny-imagenet-200/val.orig", 1)] = digest
    return after


def check_prepared(fake: FakeTinyImageNet, before: dict[str, str]) -> None:
    """``fake`` is in the finished layout and holds every original file with its original bytes."""
    d = fake.dataset_dir
    now = tree(fake.root)
    for path, digest in expected_after(before).items():
        assert now.get(path) == digest, path
    val = d / "val"
    assert layout.state(d) == "prepared"
    assert sorted(p.name for p in val.iterdir() if p.is_dir()) == sorted(fake.wnids)
    for wnid in fake.wnids:
        wanted = sorted(name for name, w in fake.val_labels.items() if w == wnid)
        assert sorted(p.name for p in (val / wnid).iterdir()) == wanted
    for name, wnid in fake.val_labels.items():
        assert now[f"tiny-imagenet-200/val/{wnid}/{name}"] == before[f"tiny-imagenet-200/val/images/{name}"]
    assert (val / "val_annotations.txt").read_bytes() == (d / "val.orig" / "val_annotations.txt").read_bytes()
    # Nothing else: no scratch folder, no stray file.
    new_paths = set(now) - set(expected_after(before)) - {"tiny-imagenet-200.zip"}
    assert new_paths == {
        "tiny-imagenet-200/val",
        "tiny-imagenet-200/val/val_annotations.txt",
        *(f"tiny-imagenet-200/val/{w}" for w in fake.wnids),
        *(f"tiny-imagenet-200/val/{w}/{name}" for name, w in fake.val_labels.items()),
    }


# -- the finished layout ------------------------------------------------------------------------------------
def test_val_gets_one_folder_per_class_and_keeps_every_original(fake):
    before = tree(fake.root)
    summary = prepare(fake.root)

    check_prepared(fake, before)
    assert summary.startswith(
        f"Tiny ImageNet is ready in {fake.dataset_dir}: 3 classes, 12 training images, 6 validation"
    )
    assert "gave val/ one folder per class (hard links to val.orig/images/)" in summary
    # Hard links: the kept originals cost no space.
    d = fake.dataset_dir
    name, wnid = next(iter(fake.val_labels.items()))
    assert (d / "val" / wnid / name).samefile(d / "val.orig" / "images" / name)
    # Training folders and their box files are left exactly as they were.
    for wnid in fake.wnids:
        assert (d / "train" / wnid / f"{wnid}_boxes.txt").is_file()
        assert sorted(p.name for p in (d / "train" / wnid / "images").iterdir()) == fake.train_files[wnid]


def test_second_run_changes_nothing(fake, capsys):
    prepare(fake.root)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in fake.root.rglob("*")}

    assert tip.main([str(fake.root)]) == 0

    assert "already prepared; nothing to do" in capsys.readouterr().out
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in fake.root.rglob("*")} == before


def test_copies_when_the_filesystem_refuses_hard_links(fake, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    before = tree(fake.root)
    summary = prepare(fake.root)

    check_prepared(fake, before)
    assert "(copies of val.orig/images/: this filesystem refused links)" in summary
    name, wnid = next(iter(fake.val_labels.items()))
    d = fake.dataset_dir
    assert not (d / "val" / wnid / name).samefile(d / "val.orig" / "images" / name)


def test_class_folder_loaders_read_the_result(fake):
    from torchvision.datasets import ImageFolder

    prepare(fake.root)
    train = ImageFolder(str(fake.dataset_dir / "train"))
    val = ImageFolder(str(fake.dataset_dir / "val"))

    assert train.classes == val.classes == sorted(fake.wnids)
    assert len(train) == 12 and len(val) == 6  # the *_boxes.txt files, annotations and marker are not images
    for path, label in val.samples:
        assert fake.val_labels[Path(path).name] == val.classes[label]


def test_the_fake_dataset_has_the_real_layout(fake):
    from PIL import Image, ImageStat

    d = fake.dataset_dir
    assert (d / "wnids.txt").read_text().split() == fake.wnids
    words = [line.split("\t") for line in (d / "words.txt").read_text().splitlines()]
    assert len(words) > len(fake.wnids) and {w for w, _ in words} >= set(fake.wnids)
    boxes = (d / "train" / fake.wnids[0] / f"{fake.wnids[0]}_boxes.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in boxes] == fake.train_files[fake.wnids[0]]
    annotations = [line.split("\t") for line in (d / "val" / "val_annotations.txt").read_text().splitlines()]
    assert all(len(fields) == 6 for fields in annotations)
    assert {f: w for f, w, *_ in annotations} == fake.val_labels
    assert sorted(p.name for p in (d / "test" / "images").iterdir()) == fake.test_files
    with Image.open(d / "train" / fake.wnids[0] / "images" / fake.train_files[fake.wnids[0]][0]) as grey:
        assert grey.mode == "L" and grey.size == (64, 64)
    means = []
    for wnid in fake.wnids:
        with Image.open(d / "train" / wnid / "images" / fake.train_files[wnid][1]) as image:
            assert image.mode == "RGB" and image.format == "JPEG"
            means.append(tuple(round(m) for m in ImageStat.Stat(image).mean))
    assert len(set(means)) == len(fake.wnids)  # each class has its own colour


# -- interrupted runs ---------------------------------------------------------------------------------------
class Crash(BaseException):
    """A kill at an exact point: BaseException, so no `except Exception` in the code under test catches it."""


MUTATIONS = (
    (os, "link"),
    (os, "rename"),
    (os, "replace"),
    (os, "mkdir"),
    (os, "unlink"),
    (os, "rmdir"),
    (shutil, "copy2"),
    (shutil, "copyfileobj"),
)


def crash_at(monkeypatch: pytest.MonkeyPatch, k: int) -> Callable[[], int]:
    """Make the k-th change to the filesystem crash before it happens; returns a count of changes so far."""
    calls = [0]

    def wrap(original):
        def changed(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                raise Crash(f"crash at change {k}: {original.__name__}{args[:2]}")
            return original(*args, **kwargs)

        return changed

    for module, name in MUTATIONS:
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    return lambda: calls[0]


def changes_in_clean_run(template: Path, tmp_path: Path, **kwargs) -> int:
    root = tmp_path / "count"
    shutil.copytree(template, root)
    with pytest.MonkeyPatch.context() as mp:
        count = crash_at(mp, 0)
        prepare(root, **kwargs)
        return count()


def check_nothing_lost(fake: FakeTinyImageNet, root: Path, before: dict[str, str]) -> None:
    """After a crash: old or new layout (or the two-rename gap), and every original image on disk."""
    d = root / "tiny-imagenet-200"
    state = layout.state(d)
    assert state in ("unprepared", "renaming", "prepared")
    originals = d / ("val" if state == "unprepared" else "val.orig")
    now = tree(root)
    for path, digest in before.items():
        if path == "tiny-imagenet-200/val" or path.startswith("tiny-imagenet-200/val/"):
            path = path.replace("tiny-imagenet-200/val", f"tiny-imagenet-200/{originals.name}", 1)
        assert now.get(path) == digest, f"{path} lost in state {state}"


def test_a_crash_at_any_change_is_finished_by_the_next_run(fake, tmp_path):
    before = tree(fake.root)
    total = changes_in_clean_run(fake.root, tmp_path)
    assert total >= 2 * len(fake.val_labels)  # sanity: the counter sees the links

    for k in range(1, total + 1):
        root = tmp_path / f"crash {k}"
        shutil.copytree(fake.root, root)
        with pytest.MonkeyPatch.context() as mp:
            crash_at(mp, k)
            with pytest.raises(Crash):
                prepare(root)
        check_nothing_lost(fake, root, before)
        # A second crash at the same point of the rerun (which starts from a different state).
        with pytest.MonkeyPatch.context() as mp:
            crash_at(mp, k)
            try:
                prepare(root)
            except Crash:
                check_nothing_lost(fake, root, before)
        prepare(root)
        check_prepared(replace(fake, root=root, dataset_dir=root / fake.dataset_dir.name), before)


def test_a_copy_cut_short_by_a_crash_is_redone(fake, monkeypatch):
    """Without hard links the files are copied; a half-written copy must never be published."""

    def no_links(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    copy2 = shutil.copy2
    copies = [0]

    def half_copy_then_crash(src, dst):
        copies[0] += 1
        if copies[0] == 4:
            Path(dst).write_bytes(Path(src).read_bytes()[:100])
            raise Crash("power cut during a copy")
        return copy2(src, dst)

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copy2", half_copy_then_crash)
    before = tree(fake.root)
    with pytest.raises(Crash):
        prepare(fake.root)
    monkeypatch.setattr(shutil, "copy2", copy2)
    prepare(fake.root)
    check_prepared(fake, before)


def test_a_complete_val_new_left_between_the_renames_is_published(fake, monkeypatch):
    rename = os.rename

    def crash_on_second(src, dst):
        if Path(src).name == "val.new":
            raise Crash("between the renames")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_second)
    before = tree(fake.root)
    with pytest.raises(Crash):
        prepare(fake.root)
    assert layout.state(fake.dataset_dir) == "renaming"
    monkeypatch.setattr(os, "rename", rename)
    inode = (fake.dataset_dir / "val.new").stat().st_ino

    prepare(fake.root)

    check_prepared(fake, before)
    assert (fake.dataset_dir / "val").stat().st_ino == inode  # renamed, not rebuilt


def test_an_operating_system_failure_exits_1_and_a_rerun_finishes(fake, monkeypatch, capsys):
    mkdir = os.mkdir

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(os, "mkdir", disk_full)
    before = tree(fake.root)
    assert tip.main([str(fake.root)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(os, "mkdir", mkdir)
    assert tip.main([str(fake.root)]) == 0
    check_prepared(fake, before)


# -- refusals: nothing changes ------------------------------------------------------------------------------
def _remove_annotated(f: FakeTinyImageNet) -> None:
    (f.dataset_dir / "val" / "images" / "val_3.JPEG").unlink()


def _stray_val_image(f: FakeTinyImageNet) -> None:
    shutil.copy(f.dataset_dir / "val" / "images" / "val_0.JPEG", f.dataset_dir / "val" / "images" / "val_99.JPEG")


def _stray_class_folder(f: FakeTinyImageNet) -> None:
    shutil.copytree(f.dataset_dir / "train" / f.wnids[0], f.dataset_dir / "train" / "n99999999")


def _missing_class_folder(f: FakeTinyImageNet) -> None:
    shutil.rmtree(f.dataset_dir / "train" / f.wnids[1])


def _missing_train_image(f: FakeTinyImageNet) -> None:
    (f.dataset_dir / "train" / f.wnids[2] / "images" / f.train_files[f.wnids[2]][0]).unlink()


def _unknown_annotated_class(f: FakeTinyImageNet) -> None:
    path = f.dataset_dir / "val" / "val_annotations.txt"
    path.write_text(path.read_text().replace(f.wnids[0], "n00000000", 1))


def _one_val_image_fewer(f: FakeTinyImageNet) -> None:
    """A class with fewer validation images than the others, its annotation gone too: a file lost in a copy."""
    path = f.dataset_dir / "val" / "val_annotations.txt"
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text("".join(rest))
    (f.dataset_dir / "val" / "images" / first.split("\t")[0]).unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_remove_annotated, "1 files named in val_annotations.txt are missing from"),
        (_stray_val_image, "val_99.JPEG"),
        (_stray_class_folder, "train/ has 1 class folders not in wnids.txt: n99999999"),
        (_missing_class_folder, "train/ has no folder for 1 classes of wnids.txt: n04067472"),
        (
            _missing_train_image,
            "expected 4 training images per class in train/<wnid>/images/, found n04540053: 3",
        ),
        (_unknown_annotated_class, "val_annotations.txt names 1 classes not in wnids.txt: n00000000"),
        (_one_val_image_fewer, "expected 2 validation images per class in val_annotations.txt, found "),
    ],
)
def test_a_damaged_dataset_is_refused_before_anything_changes(fake, damage, message, capsys):
    damage(fake)
    before = tree(fake.root)

    assert tip.main([str(fake.root)]) == 2

    err = capsys.readouterr().err
    assert message in err and "Nothing was changed" in err
    assert err.count("\n") == 1 and err.startswith("prepare_tiny_imagenet: error: ")
    assert tree(fake.root) == before


def test_missing_file_is_named(fake):
    _remove_annotated(fake)
    with pytest.raises(UserError, match="val_3.JPEG"):
        prepare(fake.root)


def test_a_val_folder_reorganised_by_another_tool_is_left_alone(fake):
    val = fake.dataset_dir / "val"
    for name, wnid in fake.val_labels.items():  # what the course's shell script does
        (val / wnid).mkdir(exist_ok=True)
        (val / "images" / name).rename(val / wnid / name)
    (val / "images").rmdir()
    before = tree(fake.root)
    with pytest.raises(UserError, match="reorganised by another tool"):
        prepare(fake.root)
    assert tree(fake.root) == before


def test_an_existing_val_orig_is_never_replaced(fake):
    (fake.dataset_dir / "val.orig").mkdir()
    (fake.dataset_dir / "val.orig" / "notes.txt").write_text("mine")
    before = tree(fake.root)
    with pytest.raises(UserError, match="val.orig already exists"):
        prepare(fake.root)
    assert tree(fake.root) == before


def test_a_scratch_folder_with_foreign_files_is_not_deleted(fake):
    (fake.dataset_dir / "val.new").mkdir()
    (fake.dataset_dir / "val.new" / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="thesis.tex"):
        prepare(fake.root)
    assert (fake.dataset_dir / "val.new" / "thesis.tex").read_text() == "mine"


def test_the_dataset_folder_itself_is_not_root(fake):
    with pytest.raises(UserError, match="pass the folder that holds tiny-imagenet-200/"):
        prepare(fake.dataset_dir)


# -- the zip ------------------------------------------------------------------------------------------------
@pytest.fixture
def zipped(tmp_path: Path) -> FakeTinyImageNet:
    return make_fake_tiny_imagenet(
        tmp_path / "zip root", classes=3, train_per_class=4, val_per_class=2, extracted=False, zipped=True
    )


def test_extracts_the_zip_then_prepares(zipped, tmp_path):
    reference = make_fake_tiny_imagenet(tmp_path / "reference", classes=3, train_per_class=4, val_per_class=2)
    zip_bytes = zipped.zip_path.read_bytes()
    before = tree(reference.root)

    summary = prepare(zipped.root, md5=zipped.zip_md5)

    assert "this run: extracted tiny-imagenet-200.zip" in summary
    check_prepared(zipped, before)  # same seed: the same images as the reference
    assert zipped.zip_path.read_bytes() == zip_bytes
    assert not (zipped.root / "tiny-imagenet-200.partial").exists()


def test_a_zip_with_the_wrong_md5_is_refused(zipped, capsys):
    assert tip.main([str(zipped.root)]) == 2
    err = capsys.readouterr().err
    assert f"md5 is {zipped.zip_md5}, expected {layout.MD5}" in err and "Nothing was extracted" in err
    assert sorted(p.name for p in zipped.root.iterdir()) == ["tiny-imagenet-200.zip"]


# -- archives are data: a member lands inside its folder or nothing is written ------------------------------------
P = "tiny-imagenet-200/"
# A member: its name exactly as stored, and its bytes (None: a folder).
Member = tuple[str, bytes | None]


def official_members(zip_path: Path) -> list[Member]:
    with zipfile.ZipFile(zip_path) as archive:
        return [(i.filename, None if i.is_dir() else archive.read(i)) for i in archive.infolist()]


def write_zip_members(path: Path, members: list[Member]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo()
            info.filename = name  # set as is: the constructor would cut a NUL byte off
            info.external_attr = (stat.S_IFDIR | 0o755 if data is None else stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data or b"")


def tar_info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.pax_headers = {"path": name}  # the name exactly as given, NUL bytes included
    info.type, info.size, info.linkname = kind, size, link
    return info


def write_tar_members(path: Path, members: list[Member], special: tuple[tarfile.TarInfo, ...] = ()) -> None:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            if data is None:  # tar stores folders without the trailing slash
                archive.addfile(tar_info(name.rstrip("/") or name, tarfile.DIRTYPE))
            else:
                archive.addfile(tar_info(name, size=len(data)), io.BytesIO(data))
        for info in special:
            archive.addfile(info)


def place(zipped: FakeTinyImageNet, fmt: str, extra: list[Member]) -> str:
    """Put the official members plus ``extra`` at the zip's place, as a zip or a tar.gz; return its md5 (what a user
    would pass with --md5, trusting whoever handed them the file)."""
    members = official_members(zipped.zip_path) + extra
    (write_zip_members if fmt == "zip" else write_tar_members)(zipped.zip_path, members)
    return hashlib.md5(zipped.zip_path.read_bytes()).hexdigest()


def refused(root: Path, md5: str, capsys) -> str:
    """The one line on stderr, after any progress bar, of a run that must exit 2."""
    capsys.readouterr()
    assert tip.main([str(root), "--md5", md5]) == 2
    *progress, line, end = capsys.readouterr().err.split("\n")
    assert line.startswith("prepare_tiny_imagenet: error: ") and end == ""
    assert all(bar.startswith("\rextracting ") for bar in progress), progress
    return line


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A user's file beside the data folder, where a crafted member aims."""
    path = tmp_path / "victim.txt"
    path.write_text("mine")
    return path


# Names that the old check let through or that only go wrong once the prefix is removed; each would land outside
# the scratch folder tmp_path/zip root/tiny-imagenet-200.partial (its ../.. is tmp_path, where the victim is).
ESCAPES = [
    ("{victim}", "an absolute path or a drive letter once 'tiny-imagenet-200/' is removed"),  # P + "/tmp/..."
    ("../../victim.txt", "'..'"),
    ("./../../victim.txt", "'..'"),
    ("train/../../../victim.txt", "'..'"),
    ("..\\..\\victim.txt", "a backslash"),
    ("C:/victim.txt", "an absolute path or a drive letter"),
    ("C:victim.txt", "an absolute path or a drive letter"),
    ("victim.txt\0.JPEG", "a NUL byte"),
    (".", "no file name once 'tiny-imagenet-200/' is removed"),
]


@pytest.mark.parametrize(
    ("fmt", "rest", "reason"),
    # Only a zip keeps a name of nothing but slashes: tarfile reads "tiny-imagenet-200///" as "tiny-imagenet-200".
    [*((fmt, *escape) for fmt in ("zip", "tar") for escape in ESCAPES), ("zip", "///", "an absolute path")],
)
def test_a_member_that_would_land_outside_its_folder_refuses_the_whole_archive(
    zipped, victim, tmp_path, capsys, fmt, rest, reason
):
    name = P + rest.format(victim=victim)
    md5 = place(zipped, fmt, [(name, b"written by the attacker")])
    before = tree(tmp_path)

    err = refused(zipped.root, md5, capsys)

    assert f"{zipped.zip_path}: refusing to extract it: " in err and f"{name!r} ({reason}" in err
    assert "Nothing was extracted" in err
    assert tree(tmp_path) == before  # nothing written anywhere: not beside the victim, not in the data folder
    assert victim.read_text() == "mine"


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "tiny-imagenet-200/../../evil.txt"])
def test_an_unsafe_member_outside_the_prefix_refuses_the_archive_too(zipped, tmp_path, capsys, fmt, name):
    md5 = place(zipped, fmt, [(name, b"x")])
    before = tree(tmp_path)
    assert "refusing to extract it" in refused(zipped.root, md5, capsys)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([(P + "wnids.txt", b"n00000000\n")], "'tiny-imagenet-200/wnids.txt' (a second member with the same path)"),
        ([(P + "train", b"a file where a folder is")], "('train' would be both a file and a folder)"),
        ([(P + "wnids.txt/x", b"")], "('wnids.txt' would be both a file and a folder)"),
    ],
)
@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile warns the attacker, and writes it all the same
def test_members_that_would_overwrite_each_other_refuse_the_archive(zipped, tmp_path, capsys, fmt, extra, reason):
    md5 = place(zipped, fmt, extra)
    before = tree(tmp_path)
    assert reason in refused(zipped.root, md5, capsys)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (tarfile.SYMTYPE, "a symbolic link"),
        (tarfile.LNKTYPE, "a hard link"),
        (tarfile.FIFOTYPE, "a FIFO"),
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
    ],
)
def test_a_tar_member_that_is_not_a_file_or_folder_is_refused_and_named_for_what_it_is(
    zipped, victim, tmp_path, capsys, kind, what
):
    write_tar_members(
        zipped.zip_path, official_members(zipped.zip_path), (tar_info(P + "wnids.txt.link", kind, link=str(victim)),)
    )
    before = tree(tmp_path)
    err = refused(zipped.root, hashlib.md5(zipped.zip_path.read_bytes()).hexdigest(), capsys)
    assert f"'tiny-imagenet-200/wnids.txt.link' ({what})" in err
    assert tree(tmp_path) == before


def test_a_zip_member_marked_as_a_symbolic_link_is_refused(zipped, victim, tmp_path, capsys):
    write_zip_members(zipped.zip_path, official_members(zipped.zip_path))
    with zipfile.ZipFile(zipped.zip_path, "a") as archive:
        info = zipfile.ZipInfo(P + "train/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, str(victim))
    before = tree(tmp_path)
    err = refused(zipped.root, hashlib.md5(zipped.zip_path.read_bytes()).hexdigest(), capsys)
    assert "'tiny-imagenet-200/train/link' (a symbolic link)" in err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("link", ["train", "wnids.txt", "wnids.txt.part"])
def test_extract_never_writes_through_a_symbolic_link_already_in_its_folder(zipped, tmp_path, link):
    """Into a folder that already holds files (MNIST/raw, a CIFAR data_dir), a link there must not carry a member
    elsewhere: not a folder on the way, not the file itself, not the name it is written under first."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "wnids.txt").write_text("mine")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / link).symlink_to(elsewhere if link == "train" else elsewhere / "wnids.txt")
    before = tree(tmp_path)
    with pytest.raises(UserError, match=re.escape(f"({dest / link} is already there as a symbolic link)")):
        extract(zipped.zip_path, dest, prefix=P)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "is not a zip, tar or gzip archive: it is empty (0 bytes)"),
        (b"<html>Not Found</html>\n", "is not a zip, tar or gzip archive: it starts with b'<html>No'"),
        (None, "it starts like a zip but has no zip directory at its end: a download cut short"),  # truncated zip
        (gzip.compress(b"not a tar\n" * 100), "holds no tiny-imagenet-200/wnids.txt: it is not the Tiny ImageNet zip"),
    ],
)
def test_a_file_that_is_not_the_archive_is_refused_before_anything_is_written_and_a_rerun_works(
    zipped, capsys, content, found
):
    good, good_md5 = zipped.zip_path.read_bytes(), zipped.zip_md5
    bad = good[: len(good) // 2] if content is None else content
    zipped.zip_path.write_bytes(bad)

    # The user passed the md5 of what they have: it matches, so the bytes themselves must be judged.
    err = refused(zipped.root, hashlib.md5(bad).hexdigest(), capsys)

    assert f"{zipped.zip_path} " in err and found in err and "Nothing was extracted" in err
    assert sorted(p.name for p in zipped.root.iterdir()) == ["tiny-imagenet-200.zip"]
    zipped.zip_path.write_bytes(good)
    assert tip.main([str(zipped.root), "--md5", good_md5]) == 0
    assert layout.state(zipped.dataset_dir) == "prepared"


def damage_last_member(zip_path: Path) -> str:
    """Flip a byte inside the data of the zip's last file, so that extraction fails on its CRC, part-way."""
    with zipfile.ZipFile(zip_path) as archive:
        info = [i for i in archive.infolist() if not i.is_dir()][-1]
    data = bytearray(zip_path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + info.compress_size // 2] ^= 0xFF
    zip_path.write_bytes(data)
    return info.filename


def test_an_extraction_that_fails_part_way_leaves_nothing_and_a_rerun_works(zipped, capsys):
    good, good_md5 = zipped.zip_path.read_bytes(), zipped.zip_md5
    damaged = damage_last_member(zipped.zip_path)

    err = refused(zipped.root, hashlib.md5(zipped.zip_path.read_bytes()).hexdigest(), capsys)

    assert f"{zipped.zip_path} is damaged (BadZipFile: Bad CRC-32 for file {damaged!r})" in err
    assert sorted(p.name for p in zipped.root.iterdir()) == ["tiny-imagenet-200.zip"]  # no .partial/ in the way
    zipped.zip_path.write_bytes(good)
    assert tip.main([str(zipped.root), "--md5", good_md5]) == 0
    assert layout.state(zipped.dataset_dir) == "prepared"


def test_an_archive_larger_than_the_free_space_is_refused_before_extracting(zipped, tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    before = tree(tmp_path)

    err = refused(zipped.root, zipped.zip_md5, capsys)

    assert re.search(r"would take [\d.]+ KiB once extracted .* but .* has 97\.7 KiB free; free space there", err)
    assert tree(tmp_path) == before


def test_a_scratch_folder_left_by_a_killed_extraction_is_discarded_by_the_next_run(zipped):
    scratch = zipped.root / "tiny-imagenet-200.partial"
    (scratch / "train").mkdir(parents=True)
    (scratch / "wnids.txt").write_text(zipped.wnids[0])
    (scratch / "words.txt.part").write_text("half a fi")  # the name a file is written under until complete
    summary = prepare(zipped.root, md5=zipped.zip_md5)
    assert "this run: extracted tiny-imagenet-200.zip" in summary
    assert not scratch.exists() and layout.state(zipped.dataset_dir) == "prepared"


def test_a_truncated_gzip_file_leaves_no_half_file_and_nothing_it_did_not_create_is_removed(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "notes.txt").write_text("mine")
    whole = gzip.compress(os.urandom(50_000))
    (raw / "images.gz").write_bytes(whole[:-1000])
    before = tree(tmp_path)
    with pytest.raises(UserError, match=r"images.gz is damaged \(EOFError: "):
        extract(raw / "images.gz", raw / "new folder")
    assert tree(tmp_path) == before  # not images, not images.part, not the folder it made
    (raw / "images.gz").write_bytes(whole)
    extract(raw / "images.gz", raw)
    assert gzip.decompress(whole) == (raw / "images").read_bytes()
    assert sorted(p.name for p in raw.iterdir()) == ["images", "images.gz", "notes.txt"]


def test_an_interrupted_extraction_is_redone(zipped, tmp_path):
    reference = make_fake_tiny_imagenet(tmp_path / "reference", classes=3, train_per_class=4, val_per_class=2)
    before = tree(reference.root)
    template = tmp_path / "template"
    shutil.copytree(zipped.root, template)
    zip_bytes = zipped.zip_path.read_bytes()
    total = changes_in_clean_run(template, tmp_path, md5=zipped.zip_md5)
    for k in range(1, total + 1):
        root = tmp_path / f"crash {k}"
        shutil.copytree(template, root)
        with pytest.MonkeyPatch.context() as mp:
            crash_at(mp, k)
            with pytest.raises(Crash):
                prepare(root, md5=zipped.zip_md5)
        assert (root / "tiny-imagenet-200.zip").read_bytes() == zip_bytes
        assert layout.state(root / "tiny-imagenet-200") in ("missing", "unprepared", "renaming")
        prepare(root, md5=zipped.zip_md5)
        check_prepared(replace(zipped, root=root, dataset_dir=root / "tiny-imagenet-200"), before)


# -- download -----------------------------------------------------------------------------------------------
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(zipped):
    """The URL of the fake zip, served over HTTP on the loopback interface as a mirror serves the real one."""
    handler = functools.partial(QuietHandler, directory=str(zipped.root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_port}/{zipped.zip_path.name}"
        server.shutdown()


def test_nothing_to_use_says_where_to_put_the_zip(tmp_path):
    root = tmp_path / "empty dir"
    root.mkdir()
    with pytest.raises(UserError) as info:
        prepare(root)
    message = str(info.value)
    assert layout.URL in message and layout.MD5 in message and str(root / "tiny-imagenet-200.zip") in message


def test_download_fetches_and_checks_the_zip(zipped, mirror, tmp_path):
    root = tmp_path / "fresh root"
    root.mkdir()
    (root / "tiny-imagenet-200.zip.part").write_bytes(b"the first bytes of an interrupted download")
    summary = prepare(root, download=True, url=mirror, md5=zipped.zip_md5)
    assert "this run: downloaded tiny-imagenet-200.zip\n  this run: extracted tiny-imagenet-200.zip" in summary
    assert layout.state(root / "tiny-imagenet-200") == "prepared"
    assert (root / "tiny-imagenet-200.zip").read_bytes() == zipped.zip_path.read_bytes()
    assert not (root / "tiny-imagenet-200.zip.part").exists()


def test_a_download_with_the_wrong_md5_is_not_kept(zipped, mirror, tmp_path):
    root = tmp_path / "fresh root"
    with pytest.raises(UserError, match=f"gave a file with md5 {zipped.zip_md5}, expected {layout.MD5}"):
        prepare(root, download=True, url=mirror)
    assert not root.exists()  # nothing kept, not even the folder it made for the zip


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):  # as on many course machines
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "offline"
    with pytest.raises(UserError) as info:
        prepare(root, download=True)
    message = str(info.value)
    assert f"(download failed: {layout.URL}: URLError: " in message
    assert f"Download {layout.URL} (md5 {layout.MD5}) and place it at {root / 'tiny-imagenet-200.zip'}" in message
    assert not root.exists()  # not even the folder it made for the zip


# -- the command line ---------------------------------------------------------------------------------------
def test_script_prepares_and_reports(fake):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_tiny_imagenet.py"), str(fake.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Tiny ImageNet is ready in {fake.dataset_dir}: 3 classes, 12 training images")
    assert "6 validation images in val/<wnid>/" in result.stdout and "hard links to val.orig/images/" in result.stdout
    assert "linking val/<wnid>/" in result.stderr  # progress goes to stderr
    assert layout.state(fake.dataset_dir) == "prepared"


def test_module_refuses_with_one_line_and_status_2(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_cs201.course.tiny_imagenet_prepare",
            str(tmp_path / "no such dir"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("prepare_tiny_imagenet: error: neither ")
    assert "or run this again with --download" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_the_command_starts_without_torch_or_lightning():
    """A command that does not train starts in well under a second: it must not import what training needs."""
    imported = "sorted({'torch', 'lightning'} & set(sys.modules))"
    code = f"import sys, lit_cs201.course.tiny_imagenet_prepare; print({imported})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_tree_prepared_by_an_earlier_release_without_val_orig_still_counts_as_prepared(fake):
    # Earlier releases marked val/ with .prepared and allowed deleting val.orig/ once the dataset worked.
    prepare(fake.root)
    shutil.rmtree(fake.dataset_dir / layout.VAL_ORIG)
    (fake.dataset_dir / layout.VAL / ".prepared").write_text("")
    assert layout.state(fake.dataset_dir) == "prepared"
    assert "already prepared; nothing to do" in prepare(fake.root)
