"""TinyImageNetDataModule on a fake Tiny ImageNet in the official layout, prepared by the real preparation code:
what it loads, what it refuses, its decode cache, and the course recipe through the real ``lit-cs201`` command."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from fake_tiny_imagenet import FakeTinyImageNet, make_fake_tiny_imagenet
from helpers import CONFIGS, run_cli, scalars, snapshot
from lit_cs201.course import tiny_imagenet_prepare as tip
from lit_cs201.data import TinyImageNetDataModule, decode
from lit_cs201.data import cache as image_cache
from lit_cs201.data import tiny_imagenet_tree as layout
from lit_cs201.errors import UserError

# Six classes: top-5 accuracy is only reported for more than five.
COUNTS = {"classes": 6, "train_per_class": 4, "val_per_class": 2}
PREPARE_COMMAND = "python -m lit_cs201.course.tiny_imagenet_prepare"


def fake_dataset(root: Path, prepared: bool = True, **kwargs) -> FakeTinyImageNet:
    fake = make_fake_tiny_imagenet(root, **{**COUNTS, **kwargs})
    if prepared:
        layout.prepare(root)
    return fake


def datamodule(fake: FakeTinyImageNet, **kwargs) -> TinyImageNetDataModule:
    return TinyImageNetDataModule(data_dir=str(fake.root), **{"val_size": 4, "batch_size": 4, **kwargs})


def loaded(fake: FakeTinyImageNet, **kwargs) -> TinyImageNetDataModule:
    data = datamodule(fake, **kwargs)
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    return data


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeTinyImageNet:
    """A prepared fake, shared by the tests that only read it."""
    return fake_dataset(tmp_path_factory.mktemp("tiny") / "data")


def pil_rgb(path: str | Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy())


# -- what it loads -----------------------------------------------------------------------------------------
def test_splits_are_uint8_images_with_train_minus_val_size_and_the_official_val_as_test(fake):
    data = loaded(fake)
    train_images, train_labels = data.train_set.tensors
    val_images, _ = data.val_set.tensors
    test_images, test_labels = data.test_set.tensors
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    assert train_images.shape == (6 * 4 - 4, 3, 64, 64) and val_images.shape == (4, 3, 64, 64)
    # The official val set (2 per class here, 50 in the real one) is the test split.
    assert test_images.shape == (6 * 2, 3, 64, 64) and sorted(test_labels.tolist()) == sorted(list(range(6)) * 2)
    assert data.input_shape == (3, 224, 224) and data.num_classes == 6


def test_classes_are_sorted_wnids_named_from_words_txt(fake):
    data = datamodule(fake)  # names are known before any loading: the CLI sizes the model from them
    wnids = sorted(fake.wnids)
    assert wnids != fake.wnids  # wnids.txt is not sorted: the order must come from sorting
    assert data.wnids == tuple(wnids)
    # words.txt: "rocking chair, rocker" -> "rocking chair"; "Egyptian cat" stays whole.
    assert data.class_names == tuple(fake.names[w].split(",")[0] for w in wnids)
    assert "rocking chair" in data.class_names and "bullfrog" in data.class_names


@pytest.mark.parametrize("split", ["train", "val"])
def test_rows_and_labels_match_torchvision_imagefolder_and_each_files_class_colour(fake, split):
    data = datamodule(fake)
    data.prepare_data()
    images, labels = data.load_split(train=split == "train")
    reference = torchvision.datasets.ImageFolder(str(fake.dataset_dir / split))
    assert tuple(reference.classes) == data.wnids
    assert len(reference.samples) == len(labels)
    for row, (path, label) in enumerate(reference.samples):
        assert labels[row] == label, path
        assert torch.equal(images[row], pil_rgb(path)), path
        # Independent of any loader: the fake's pixels are centred on the colour of the file's own class.
        wnid = Path(path).parent.name if split == "val" else Path(path).parent.parent.name
        mean_colour = images[row].float().mean(dim=(1, 2))
        assert data.wnids[label] == wnid
        if not (split == "train" and Path(path).name == f"{fake.wnids[0]}_0.JPEG"):  # the greyscale one
            assert (mean_colour - torch.tensor(fake.colours[wnid])).abs().max() < 12, path


def test_greyscale_images_come_out_rgb(fake):
    data = datamodule(fake)
    data.prepare_data()
    images, _ = data.load_split(train=True)
    reference = torchvision.datasets.ImageFolder(str(fake.dataset_dir / "train"))
    grey_file = fake.dataset_dir / "train" / fake.wnids[0] / "images" / f"{fake.wnids[0]}_0.JPEG"
    with Image.open(grey_file) as image:
        assert image.mode == "L"
    row = [Path(p) for p, _ in reference.samples].index(grey_file)
    grey = images[row]
    assert grey.shape == (3, 64, 64)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


@pytest.mark.parametrize("bad", ["not a JPEG", "truncated", "decompression bomb"])
def test_an_image_that_cannot_be_decoded_is_refused_naming_it(tmp_path, monkeypatch, bad):
    path = tmp_path / "n01443537_0.JPEG"
    Image.new("RGB", (64, 64), "red").save(path, "JPEG")
    if bad == "not a JPEG":
        path.write_text("a text file")
    elif bad == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    else:  # what Pillow refuses to decode at all: more than twice its pixel limit
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match=f"cannot decode {path}"):
        decode.to_uint8(path)


def test_image_size_must_match_the_augmentation_presets(fake):
    assert datamodule(fake, image_size=64, train_augment="tiny_crop_flip", eval_augment="none").input_shape == (
        3,
        64,
        64,
    )
    with pytest.raises(UserError, match=r"'imagenet_course' gives 224x224 images but image_size is 64"):
        datamodule(fake, image_size=64)
    with pytest.raises(UserError, match=r"'none' gives 64x64 images but image_size is 224"):
        datamodule(fake, eval_augment="none")
    # Checking a random preset draws no numbers from the seeded generator.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    datamodule(fake)
    assert torch.equal(torch.rand(3), expected)


# -- what it refuses ---------------------------------------------------------------------------------------
def test_an_unprepared_tree_is_refused_with_the_prepare_command_and_left_alone(tmp_path):
    fake = fake_dataset(tmp_path / "my data", prepared=False)
    before = snapshot(tmp_path)
    data = datamodule(fake)  # download=True: still, a tree the user extracted is never reorganised
    for action in (data.prepare_data, lambda: data.setup("fit")):
        with pytest.raises(UserError) as refused:
            action()
        message = str(refused.value)
        assert "is not prepared" in message
        assert f"{PREPARE_COMMAND} '{fake.root}'" in message
        assert "scripts/prepare_tiny_imagenet.py" in message
    assert snapshot(tmp_path) == before


def test_val_classes_that_differ_from_train_are_refused_naming_the_class(tmp_path):
    fake = fake_dataset(tmp_path / "data")
    moved = sorted(fake.wnids)[-1]
    (fake.dataset_dir / "val" / moved).rename(fake.dataset_dir / "val" / "n09999999")
    with pytest.raises(
        UserError,
        match=rf"classes of train/ and val/ differ \(missing from val/: {moved}; "
        r"only in val/: n09999999\)",
    ):
        loaded(fake)


def test_missing_dataset_without_download_says_where_to_put_the_zip(tmp_path):
    data = TinyImageNetDataModule(data_dir=str(tmp_path / "empty"), download=False)
    assert data.num_classes == 200  # the official count until the tree is there
    with pytest.raises(UserError) as refused:
        data.prepare_data()
    message = str(refused.value)
    assert layout.URL in message and layout.MD5 in message and str(tmp_path / "empty" / layout.ZIP_NAME) in message
    assert "set download: true" in message
    assert not (tmp_path / "empty").exists()


def test_prepare_data_extracts_and_prepares_a_zip_placed_in_data_dir(tmp_path, monkeypatch):
    fake = fake_dataset(tmp_path / "data", prepared=False, extracted=False, zipped=True)
    # The fake zip is not the official one: let the real prepare() expect its md5.
    archive = dataclasses.replace(layout.ARCHIVE, md5=fake.zip_md5)
    monkeypatch.setattr(layout, "prepare", functools.partial(layout.prepare, archive=archive))
    data = TinyImageNetDataModule(data_dir=str(fake.root), val_size=4, download=False)
    assert data.num_classes == 200  # nothing to read yet: the official count, which the model is sized for
    # A placed zip is used without download. The official zip has 200 classes; this one has 6, so a model
    # sized before extraction would be wrong: the run stops, and the next one reads the classes from the start.
    with pytest.raises(UserError, match="has 6 classes, but when this datamodule was created .* it had 200"):
        data.prepare_data()
    assert layout.state(fake.dataset_dir) == "prepared" and fake.zip_path.is_file()
    data = TinyImageNetDataModule(data_dir=str(fake.root), val_size=4, download=False)
    data.prepare_data()
    data.setup("test")
    assert data.num_classes == 6 and data.test_set.tensors[0].shape == (12, 3, 64, 64)


# -- the decode cache --------------------------------------------------------------------------------------
def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    fake = fake_dataset(tmp_path / "data")
    decoded: list[int] = []
    decode_images = image_cache.decode_images

    def counting(files, *args, **kwargs):
        decoded.append(len(files))
        return decode_images(files, *args, **kwargs)

    monkeypatch.setattr(image_cache, "decode_images", counting)
    cache = fake.dataset_dir / "cache"

    first = loaded(fake)
    assert decoded == [24, 12]  # train and val, once each
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert sorted(name.split("_")[0] for name in files) == ["train", "val"]

    second = loaded(fake)
    assert decoded == [24, 12]  # nothing decoded again
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files
    assert torch.equal(second.test_set.tensors[0], first.test_set.tensors[0])

    # Replace one training image (same name, new pixels): only train/ is decoded again, into a new cache file.
    changed = fake.dataset_dir / "train" / fake.wnids[1] / "images" / f"{fake.wnids[1]}_2.JPEG"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(changed, "JPEG", quality=95)
    data = datamodule(fake)
    data.prepare_data()
    assert decoded == [24, 12, 24]
    now = {p.name for p in cache.iterdir()}
    assert len(now) == 2 and now != set(files)  # the stale train cache is gone, val's is kept
    images, _ = data.load_split(train=True)
    reference = torchvision.datasets.ImageFolder(str(fake.dataset_dir / "train"))
    row = [Path(p) for p, _ in reference.samples].index(changed)
    assert torch.equal(images[row], pil_rgb(changed))

    # A file more: the count changes, so does the cache.
    shutil.copy(changed, changed.with_name(f"{fake.wnids[1]}_9.JPEG"))
    assert len(datamodule(fake).load_split(train=True)[1]) == 25
    assert decoded == [24, 12, 24, 25]


def test_where_the_cache_cannot_be_written_images_are_decoded_in_memory(tmp_path, monkeypatch):
    fake = fake_dataset(tmp_path / "data")

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(image_cache, "_write_cache", read_only)
    data = datamodule(fake)
    with pytest.warns(UserWarning, match="cannot write the decode cache .* decoding in memory, every run"):
        data.setup("test")
    reference = torchvision.datasets.ImageFolder(str(fake.dataset_dir / "val"))
    images, labels = data.test_set.tensors
    assert labels.tolist() == [label for _, label in reference.samples]
    assert all(torch.equal(images[i], pil_rgb(path)) for i, (path, _) in enumerate(reference.samples))


def test_prepare_command_with_cache_prepares_then_decodes_both_splits(tmp_path, capsys):
    fake = fake_dataset(tmp_path / "data", prepared=False)
    # A fresh process, as a user runs it: runpy must not warn that the module was imported first.
    result = subprocess.run(
        [sys.executable, "-m", "lit_cs201.course.tiny_imagenet_prepare", str(fake.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Tiny ImageNet is ready" in result.stdout
    assert "RuntimeWarning" not in result.stderr
    assert layout.state(fake.dataset_dir) == "prepared"

    assert tip.main([str(fake.root), "--cache"]) == 0
    out = capsys.readouterr().out
    assert "already prepared; nothing to do" in out and "train: 24 images" in out and "val: 12 images" in out
    assert len(list((fake.dataset_dir / "cache").glob("*.npy"))) == 2

    assert tip.main([str(tmp_path / "nothing"), "--cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"prepare_tiny_imagenet: error: neither {tmp_path / 'nothing' / 'tiny-imagenet-200'} nor ")
    assert err.count("\n") == 1


# -- the course recipe through the real command ------------------------------------------------------------
FAST = [
    "--model.init_args.pretrained=null",  # no network for the ImageNet weights here
    "--data.init_args.batch_size=2",
    "--data.init_args.val_size=4",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.log_every_n_steps=1",
]


def test_seed_config_fits_then_tests_best_on_the_official_val(fake, tmp_path):
    data_dir = f"--data.init_args.data_dir={fake.root}"
    fit = run_cli("fit", "--config", str(CONFIGS / "tiny_imagenet_seed.yaml"), data_dir, *FAST, cwd=tmp_path)
    run = tmp_path / "runs" / "tiny_imagenet_seed" / "version_0"
    assert "Best checkpoint: runs/tiny_imagenet_seed/version_0/best.ckpt" in fit.stdout
    assert {"train/loss", "val/acc", "val/loss"} <= set(scalars(run))

    # 224 px at batch 2 on a CPU: two test batches are enough to show the metrics.
    test = run_cli("test", "--ckpt_path", "best", "--trainer.limit_test_batches=2", cwd=tmp_path)
    assert "Per-class test accuracy" in test.stdout
    curves = scalars(run)  # the test's curves are in the run it tested
    assert {"test/acc", "test/acc_top5", "test/acc/bullfrog", "test/acc/rocking chair"} <= set(curves)


def test_missing_imagenet_weights_is_one_line_naming_file_and_folder_and_writes_nothing(fake, tmp_path, monkeypatch):
    torch_home = tmp_path / "torch home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(work), snapshot(fake.root)
    result = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "tiny_imagenet_seed.yaml"),
        f"--data.init_args.data_dir={fake.root}",
        cwd=work,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lit-cs201: error: pretrained weights resnet50 IMAGENET1K_V2: resnet50-11ad3fa6.pth")
    assert f"{torch_home}{os.sep}hub{os.sep}checkpoints" in last
    assert (snapshot(work), snapshot(fake.root)) == before
    assert not any(p.is_file() for p in torch_home.rglob("*"))
