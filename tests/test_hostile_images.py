"""Odd files among a user's images never hang, crash or lose data: FIFOs, devices and sockets named like images,
links that lead nowhere or loop, names that are not UTF-8, transparent drawings; and the decode cache deletes
only what it wrote, cleans up after a killed writer but never a live one, and notices a folder whose files were
swapped or edited even where sizes and modification times say nothing changed."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fake_image_folder import write_image, write_image_folder
from helpers import CONFIGS, snapshot
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data import ImageFolderDataModule, decode, files
from lit_cs201.data.cache import _temporary
from lit_cs201.data.inputs import expand_paths
from lit_cs201.data.mnist import MNISTDataModule
from lit_cs201.errors import StorageError, UserError

PREFIX = "lit-cs201: error: "
# Train an MLP for one batch on the images' own size: what is tested is what happens to the files.
FIT = [
    "fit",
    "--config",
    str(CONFIGS / "image_folder.yaml"),
    "--model.init_args.net=mlp",
    "--model.init_args.pretrained=null",
    "--data.init_args.image_size=null",
    "--data.init_args.channels=null",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.mean=null",
    "--data.init_args.std=null",
    "--data.init_args.batch_size=8",
    "--data.init_args.val_size=4",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.enable_progress_bar=false",
]
# Longer than any run here takes; a read that blocks on a FIFO would block for ever.
BLOCKED_AFTER = 60


def fit(data_dir: Path, *extra: str) -> int:
    return main([*FIT, f"--data.init_args.data_dir={data_dir}", *extra])


def refusal(capsys) -> str:
    """The one line a refused command ends with, after checking it is one and no traceback came before it."""
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(PREFIX), err[-2000:]
    assert "Traceback" not in err
    return last


def predictions(run: Path) -> dict[str, dict[str, str]]:
    with (run / "predict" / "version_0" / "predictions.csv").open(newline="") as f:
        return {Path(row["path"]).name: row for row in csv.DictReader(f)}


@contextlib.contextmanager
def fails_if_blocked_on(fifo: Path, seconds: float = BLOCKED_AFTER) -> Iterator[None]:
    """Fail (rather than hang the suite) where something is still reading ``fifo`` after ``seconds``.

    A reader blocked on a FIFO (in ``open`` or in ``read``) is released by a writer that opens and closes it;
    opening for writing without waiting succeeds only while there is a reader, so it also tells that one was there.
    """
    done, blocked = threading.Event(), threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.wait(0.1):
            with contextlib.suppress(OSError):  # ENXIO: no reader at this moment
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                blocked.set()

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()
        watchdog.join()
    assert not blocked.is_set(), f"reading {fifo} blocked for {seconds} s"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model of a cat/dog folder, to predict with."""
    work = tmp_path_factory.mktemp("trained")
    write_image_folder(work / "photos", splits=("train",), clutter=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert fit(Path("photos")) == 0
    return work / "runs" / "image_folder" / "version_0" / "best.ckpt"


# -- the cache deletes only what it wrote ------------------------------------------------------------------------
def test_cache_dir_dot_deletes_none_of_the_users_files_only_the_previous_cache(tmp_path, monkeypatch):
    written = write_image_folder(tmp_path / "photos", splits=("train",), clutter=False)
    monkeypatch.chdir(tmp_path)
    mine = ["train_log.txt", "test_results.csv", "val_notes.md", "train_notes.txt", "train_features.npy"]
    for name in mine:
        Path(name).write_text(f"{name}: the user's own\n")
    Path("train_old").mkdir()
    before = {name: Path(name).read_text() for name in mine}

    assert fit(Path("photos"), "--data.init_args.cache_dir=.") == 0
    first = sorted(tmp_path.glob("train_3x12x16_*.npy"))
    assert len(first) == 1
    shutil.copy(written[0], written[0].with_name("added.png"))  # the folder changes: a new cache replaces the old
    assert fit(Path("photos"), "--data.init_args.cache_dir=.") == 0

    now = sorted(tmp_path.glob("train_3x12x16_*.npy"))
    assert len(now) == 1 and now != first
    assert {name: Path(name).read_text() for name in mine} == before and Path("train_old").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*mine, "photos", "runs", "train_old", now[0].name])


# -- a killed writer's temporary file ----------------------------------------------------------------------------
def test_a_temporary_file_of_a_killed_writer_is_removed_and_a_live_writers_is_not(tmp_path):
    write_image_folder(tmp_path, splits=("train",), clutter=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / "train_3x12x16_0123456789abcdef.npy"  # another fingerprint's: the folder as it was
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _temporary(target, pid=int(ended.stdout))  # what kill -9 during a decode leaves
    live = _temporary(target)  # this very process, still writing
    other_machine = target.with_name(f".{target.name}.abcdef012345.{os.getpid()}.0badc0de.tmp")
    old_release = target.with_name(f".{target.name}.{os.getpid()}.0badc0de.tmp")  # FORMAT_VERSION 2 named no machine
    long_idle = target.with_name(f".{target.name}.abcdef012345.77.0badc0de.tmp")
    skipped_dead = _temporary(target.with_suffix(".skipped.json"), pid=int(ended.stdout))
    users = [cache / ".train_notes.txt.1.tmp", cache / "train.tmp", cache / ".train_0.npy.1.tmp"]
    for path in [dead, live, other_machine, old_release, long_idle, skipped_dead, *users]:
        path.write_bytes(b"partial")
    os.utime(long_idle, (1e9, 1e9))  # unchanged since 2001

    ImageFolderDataModule(data_dir=str(tmp_path), val_size=4).setup("fit")

    left = {p.name for p in cache.iterdir()}
    assert not {dead.name, skipped_dead.name, long_idle.name} & left
    assert {live.name, other_machine.name, old_release.name, *(p.name for p in users)} <= left
    assert len([name for name in left if name.startswith("train_3x12x16_")]) == 1  # the new cache


# -- a changed folder is decoded again ---------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["swapped with mv", "replaced", "edited in place"])
def test_files_changed_with_the_same_size_and_time_are_decoded_again(tmp_path, change):
    # BMPs of one size and one time, as extracted from an archive: white ones are "light", black ones "dark".
    for i in range(4):
        for name, colour in (("dark", (0, 0, 0)), ("light", (255, 255, 255))):
            write_image(tmp_path / "train" / name / f"{i}.bmp", colour, (8, 8), "BMP", "RGB", seed=i)
    stamp = 1_600_000_000 * 10**9
    for path in tmp_path.rglob("*.bmp"):
        os.utime(path, ns=(stamp, stamp))
    before = ImageFolderDataModule(data_dir=str(tmp_path), val_size=2)
    before.setup("fit")
    files, _ = before.files["train"]
    light, dark = tmp_path / "train" / "light" / "0.bmp", tmp_path / "train" / "dark" / "0.bmp"
    assert before.train_set.tensors[0][files.index(light)].min() > 200

    if change == "swapped with mv":
        light.rename(tmp_path / "swap.bmp")
        dark.rename(light)
        (tmp_path / "swap.bmp").rename(dark)
    elif change == "replaced":
        shutil.copyfile(dark, light)
    else:
        with light.open("r+b") as f:
            content = f.read()
            f.seek(0)
            f.write(dark.read_bytes()[: len(content)])
    os.utime(light, ns=(stamp, stamp))
    assert {(p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.bmp")} == {
        (light.stat().st_size, stamp)
    }

    after = ImageFolderDataModule(data_dir=str(tmp_path), val_size=2)
    after.setup("fit")
    images = after.train_set.tensors[0]
    assert images[files.index(light)].max() < 50  # the pixels of the file there now, not the cached ones
    assert len(list((tmp_path / "cache").glob("train_*.npy"))) == 1


# -- FIFOs, devices and sockets ---------------------------------------------------------------------------------
def test_a_fifo_a_socket_and_a_link_to_a_device_among_the_images_are_passed_over(tmp_path, monkeypatch, capsys):
    written = write_image_folder(tmp_path / "photos", splits=("train",), clutter=False)
    cat = tmp_path / "photos" / "train" / "cat"
    fifo = cat / "x.png"
    os.mkfifo(fifo)
    (cat / "zero.png").symlink_to("/dev/zero")
    monkeypatch.chdir(cat)  # a socket's path must be short
    listening = socket.socket(socket.AF_UNIX)
    listening.bind("socket.png")
    monkeypatch.chdir(tmp_path)
    with listening, fails_if_blocked_on(fifo):
        assert fit(Path("photos")) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert decode.find_images(cat) == sorted(p for p in written if cat in p.parents)


def test_a_fifo_in_a_folder_to_predict_is_passed_over(checkpoint, tmp_path):
    write_image(tmp_path / "new" / "a.png", (220, 40, 40), (12, 16), "PNG", "RGB", seed=0)
    fifo = tmp_path / "new" / "b.png"
    os.mkfifo(fifo)
    with fails_if_blocked_on(fifo):
        status = main(["predict", "--ckpt_path", str(checkpoint), f"--data.predict_path={tmp_path / 'new'}"])
    assert status == 0
    assert list(predictions(checkpoint.parent)) == ["a.png"]


@pytest.mark.parametrize("kind", ["FIFO", "character device"])
def test_a_fifo_or_a_device_as_predict_path_is_refused_saying_what_it_is(checkpoint, tmp_path, capsys, kind):
    if kind == "FIFO":
        path = tmp_path / "photo.png"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    before = snapshot(checkpoint.parent)
    with fails_if_blocked_on(path) if kind == "FIFO" else contextlib.nullcontext():
        status = main(["predict", "--ckpt_path", str(checkpoint), f"--data.predict_path={path}"])
    assert status == 2
    assert f"predict_path {path} is a {kind}, not a regular file" in refusal(capsys)
    assert snapshot(checkpoint.parent) == before


def test_a_file_swapped_for_a_fifo_after_listing_is_a_bad_image_not_a_hang(tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    write_image(photo, (1, 2, 3), (4, 4), "PNG", "RGB", seed=0)
    fifo = tmp_path / "later.png"
    os.mkfifo(fifo)
    with fails_if_blocked_on(fifo), pytest.raises(decode.BadImageError, match=r"\(a FIFO, not a regular file\)"):
        decode.to_uint8(fifo)
    # Swapped between the check by name and the open: the open file itself is checked, and was opened without
    # waiting for a writer.
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: real_stat(photo if Path(path) == fifo else path, *a, **k))
    with fails_if_blocked_on(fifo), pytest.raises(decode.BadImageError, match=r"\(a FIFO, not a regular file\)"):
        decode.image_header(fifo)


# -- links that lead nowhere ------------------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["dangling", "looping"])
@pytest.mark.parametrize("skip", [False, True], ids=["refused", "skipped"])
def test_a_link_that_leads_nowhere_is_a_bad_image(tmp_path, monkeypatch, capsys, link, skip):
    write_image_folder(tmp_path / "photos", splits=("train",), clutter=False)
    path = tmp_path / "photos" / "train" / "dog" / "link.png"
    path.symlink_to("gone.png" if link == "dangling" else "link.png")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    reason = "a symbolic link to gone.png, which does not exist" if link == "dangling" else "a symbolic link that loops"
    if skip:
        with pytest.warns(UserWarning, match=rf"skipping 1 of 17 images in photos/train .*link\.png \({reason}\)"):
            assert fit(Path("photos"), "--data.init_args.skip_bad_images=true") == 0
        assert "Traceback" not in capsys.readouterr().err
    else:
        assert fit(Path("photos")) == 2
        last = refusal(capsys)
        assert f"cannot decode {Path('photos/train/dog/link.png')} ({reason}); fix or delete them" in last
        assert snapshot(tmp_path) == before and not (tmp_path / "photos" / "cache").exists()


# -- the figures of a refusal ------------------------------------------------------------------------------------
def test_a_small_cache_that_does_not_fit_is_refused_in_units_that_show_it(tmp_path, monkeypatch):
    write_image_folder(tmp_path, splits=("train",), clutter=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 100, 100))
    with pytest.raises(StorageError, match=r"needs 9\.12 KiB but its disk has 100 bytes free"):
        ImageFolderDataModule(data_dir=str(tmp_path), val_size=4).setup("fit")  # 16 x 3 x 12 x 16 + 128 bytes
    assert files.readable_size(3 * 2**30 + 2**29) == "3.50 GiB" and files.readable_size(2**20 * 512) == "512 MiB"


# -- transparency ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(0, 0, 0), (255, 255, 255)], ids=["stored black", "stored white"])
def test_a_white_digit_on_a_transparent_background_reaches_an_mnist_model_white_on_black(tmp_path, hidden):
    stroke = np.zeros((28, 28), bool)
    stroke[6:22, 12:16] = True
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = hidden  # what transparent pixels store is arbitrary
    rgba[stroke] = (255, 255, 255, 255)
    Image.fromarray(rgba).save(tmp_path / "drawn.png")
    ink = rgba.copy()
    ink[stroke] = (0, 0, 0, 255)  # the same digit in black ink: over white, as a viewer shows it
    Image.fromarray(ink).save(tmp_path / "ink.png")
    mnist_like = np.where(stroke, 255, 0).astype(np.uint8)

    assert np.array_equal(decode.to_uint8(tmp_path / "drawn.png", channels=1)[0], mnist_like)
    assert np.array_equal(decode.to_uint8(tmp_path / "ink.png", channels=1)[0], 255 - mnist_like)
    # What an MNIST checkpoint's datamodule gives the model: both as MNIST's white on black (ink inverted).
    mnist = MNISTDataModule(data_dir=str(tmp_path))
    images, errors = mnist.decode_for_predict([tmp_path / "drawn.png", tmp_path / "ink.png"])
    assert not errors and np.array_equal(images[0, 0], mnist_like) and np.array_equal(images[1, 0], mnist_like)


# -- names that are not UTF-8 ------------------------------------------------------------------------------------
def test_a_file_name_that_is_not_utf8_is_listed_and_decoded(tmp_path):
    write_image_folder(tmp_path, splits=("train",), clutter=False)
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: lone surrogates in Python
    path = tmp_path / "train" / "cat" / name
    try:
        shutil.copyfile(tmp_path / "train" / "dog" / "0.png", path)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes only UTF-8 names")
    data = ImageFolderDataModule(data_dir=str(tmp_path), val_size=4)
    files, labels = data.files["train"]
    assert labels[files.index(path)] == data.class_names.index("cat")
    data.setup("fit")
    images = data.train_set.tensors[0]
    assert np.array_equal(images[files.index(path)].numpy(), decode.to_uint8(path, 3, (12, 16)))
    assert path in expand_paths(str(tmp_path / "train" / "cat"), decode.IMAGE_SUFFIXES)
    path.write_bytes(b"not an image")  # named in the error, and in the cache's list of skipped files
    with pytest.raises(UserError, match="cannot decode"):
        ImageFolderDataModule(data_dir=str(tmp_path), val_size=4).setup("fit")
    for _ in range(2):  # decoded, then from the cache
        with pytest.warns(UserWarning, match="skipping 1 of 17 images"):
            ImageFolderDataModule(data_dir=str(tmp_path), val_size=4, skip_bad_images=True).setup("fit")
