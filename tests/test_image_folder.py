"""ImageFolderDataModule and the shared decoder: what a user's folder of images becomes, the decode cache, the
checkpoint that carries the preprocessing, and fit -> test through the real entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from fake_image_folder import write_image, write_image_folder
from helpers import CONFIGS, snapshot
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data import ImageFolderDataModule, decode
from lit_cs201.data.folder import RowsDataset
from lit_cs201.errors import StorageError, UserError

CONFIG = str(CONFIGS / "image_folder.yaml")
PREFIX = "lit-cs201: error: "
# The config's pretrained ResNet18 at 256 px, shrunk to what a test affords: no weights, the images' own size.
FAST = [
    "--model.init_args.pretrained=null",
    "--data.init_args.image_size=null",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.mean=null",
    "--data.init_args.std=null",
    "--data.init_args.batch_size=8",
    "--data.init_args.val_size=4",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.log_every_n_steps=1",
    # The config's ResNet18 on 12x16 photos has 1x1 feature maps: in bf16 on a CPU, oneDNN now and then turns weights
    # it never applies there to NaN (the fit then stops, saying so); these tests are about the data, not that.
    "--trainer.precision=32-true",
]


def folder_module(root: Path, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(data_dir=str(root), **{"val_size": 4, **kwargs})


@pytest.fixture
def count_decodes(monkeypatch) -> list[Path]:
    """Every image file the decoder opens, from any thread."""
    opened: list[Path] = []
    to_uint8 = decode.to_uint8

    def counting(image, *args, **kwargs):
        if isinstance(image, str | Path):
            opened.append(Path(image).absolute())
        return to_uint8(image, *args, **kwargs)

    monkeypatch.setattr(decode, "to_uint8", counting)
    return opened


# -- one image: to_uint8 ---------------------------------------------------------------------------------------
def test_a_file_a_pil_image_and_an_array_give_the_same_pixels(tmp_path):
    path = tmp_path / "photo.png"
    write_image(path, (200, 100, 50), (10, 14), "PNG", "RGB", seed=0)
    pil = Image.open(path)
    from_file = decode.to_uint8(path, channels=3)
    assert from_file.dtype == np.uint8 and from_file.shape == (3, 10, 14)
    assert np.array_equal(decode.to_uint8(pil), from_file)
    assert np.array_equal(decode.to_uint8(np.asarray(pil)), from_file)
    assert np.array_equal(from_file, np.asarray(pil).transpose(2, 0, 1))  # no resize: the pixels as stored
    grey = decode.to_uint8(path, channels=1, size=(5, 7))
    assert grey.shape == (1, 5, 7)
    assert np.array_equal(grey, decode.to_uint8(pil.convert("L").resize((7, 5), Image.Resampling.BILINEAR), 1))
    assert decode.to_uint8(np.full((4, 4), 9, np.uint8), channels=3).tolist() == [[[9] * 4] * 4] * 3


def test_exif_orientation_transparency_and_16_bit_images_come_out_as_a_viewer_shows_them(tmp_path):
    # A phone photo stored sideways: 30 wide, 20 tall, with "rotate 90 degrees clockwise to view" (6).
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:, :10] = 255  # white left third as stored: the top third once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "sideways.jpg", quality=95, exif=exif)
    upright = decode.to_uint8(tmp_path / "sideways.jpg", channels=1)
    assert upright.shape == (1, 30, 20)
    assert decode.image_header(tmp_path / "sideways.jpg") == (30, 20, False)
    assert upright[0, :8].min() > 200 and upright[0, 12:].max() < 50
    # Transparent pixels are white (whatever colour they store); opaque ones keep theirs.
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (255, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "logo.png")
    pixels = decode.to_uint8(tmp_path / "logo.png")
    assert pixels[:, :2].reshape(3, -1).T.tolist() == [[255, 0, 0]] * 8 and (pixels[:, 2:] == 255).all()
    # 16-bit greyscale is scaled to 8 bits, not clipped at 255.
    Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(tmp_path / "scan.png")
    assert decode.to_uint8(tmp_path / "scan.png", channels=1).tolist() == [[[0, 128, 255]]]


def test_a_large_jpeg_is_decoded_at_reduced_size_to_nearly_the_same_pixels(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    y, x = np.mgrid[0:600, 0:800]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(path, quality=90)
    drafted = decode.to_uint8(path, size=(60, 80))
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: None)  # what a non-JPEG decoder does
    full = decode.to_uint8(path, size=(60, 80))
    assert drafted.shape == full.shape == (3, 60, 80)
    assert np.abs(drafted.astype(int) - full).mean() < 3


@pytest.mark.parametrize("bad", ["text", "truncated", "decompression bomb"])
def test_a_file_that_cannot_be_decoded_is_one_error_that_names_it(tmp_path, monkeypatch, bad):
    path = tmp_path / "broken.png"
    write_image(path, (1, 2, 3), (64, 64), "PNG", "RGB", seed=0)
    if bad == "text":
        path.write_text("not an image")
    elif bad == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(decode.BadImageError, match=f"cannot decode {path}") as refused:
        decode.to_uint8(path, size=8)
    assert refused.value.path == path and refused.value.reason


def test_find_images_searches_recursively_and_ignores_hidden_and_other_files(tmp_path):
    written = write_image_folder(tmp_path, splits=("train",))
    assert decode.find_images(tmp_path / "train") == sorted(written)
    assert any(p.suffix == ".JPG" for p in written) and any(p.parent.name == "more" for p in written)


# -- the folder ---------------------------------------------------------------------------------------------
def test_classes_labels_and_shapes_follow_the_folders(tmp_path):
    written = write_image_folder(tmp_path, splits=("train", "val", "test"), classes=("owl", "cat", "dog"))
    data = folder_module(tmp_path)
    assert data.class_names == ("cat", "dog", "owl") and data.num_classes == 3
    assert data.input_shape == (3, 12, 16)  # the images' own size; colour, as some are
    assert data.hparams["image_size"] == [12, 16] and data.hparams["channels"] == 3
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (24, 24, 24)  # val/ is used as it is
    images, labels = data.test_set.tensors
    for path in (p for p in written if "test" in p.parts):
        row = data.files["test"][0].index(path)
        assert labels[row] == data.class_names.index(path.relative_to(tmp_path).parts[1])
        assert torch.equal(images[row], torch.from_numpy(decode.to_uint8(path, 3, (12, 16))))


def test_without_val_a_stratified_seeded_split_is_held_out_of_train(tmp_path):
    write_image_folder(tmp_path, splits=("train",), classes=("cat", "dog", "owl"), per_class=10)
    data = folder_module(tmp_path, val_size=0.3, split_seed=7)
    data.setup("fit")
    _, labels = data.val_set.tensors
    assert torch.bincount(labels[data.val_set.index]).tolist() == [3, 3, 3]
    assert set(data.train_set.index.tolist()).isdisjoint(data.val_set.index.tolist())
    assert len(data.train_set) + len(data.val_set) == 30
    again = folder_module(tmp_path, val_size=0.3, split_seed=7)
    again.setup("fit")
    assert torch.equal(again.val_set.index, data.val_set.index)
    other = folder_module(tmp_path, val_size=0.3, split_seed=8)
    other.setup("fit")
    assert not torch.equal(other.val_set.index, data.val_set.index)


def test_greyscale_folders_default_to_one_channel_and_sizes_that_differ_need_image_size(tmp_path):
    write_image_folder(tmp_path / "grey", splits=("train",), grey=True)
    assert folder_module(tmp_path / "grey").input_shape == (1, 12, 16)
    assert folder_module(tmp_path / "grey", channels=3).input_shape == (3, 12, 16)
    write_image_folder(tmp_path / "odd", splits=("train",), size=None)
    with pytest.raises(UserError, match=r"have 8 different sizes, e\.g\. 11x9 \(.*0\.png\).*set image_size"):
        folder_module(tmp_path / "odd")
    data = folder_module(tmp_path / "odd", image_size=[10, 20], channels=1)
    data.setup("fit")
    assert data.input_shape == (1, 10, 20) and data.train_set.tensors[0].shape[1:] == (1, 10, 20)


def test_the_augmentation_sets_the_input_shape_and_train_and_eval_must_agree(tmp_path):
    write_image_folder(tmp_path, splits=("train",))
    data = folder_module(tmp_path, image_size=256, train_augment="imagenet_course", eval_augment="imagenet_eval")
    assert data.input_shape == (3, 224, 224)
    with pytest.raises(UserError, match="'imagenet_course' gives 224x224 images but eval_augment 'none' gives 16x12"):
        folder_module(tmp_path, train_augment="imagenet_course")


def test_mean_and_std_are_computed_from_the_training_images_and_saved_as_hyperparameters(tmp_path):
    write_image_folder(tmp_path, splits=("train",), classes=("cat", "dog"))
    data = folder_module(tmp_path)
    data.setup("fit")
    images, _ = data.train_set.tensors
    train = images[data.train_set.index].to(torch.float64) / 255
    assert data.hparams["mean"] == pytest.approx(train.mean(dim=(0, 2, 3)).tolist(), abs=1e-4)
    assert data.hparams["std"] == pytest.approx(train.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-4)
    assert all(type(v) is float for v in data.hparams["mean"] + data.hparams["std"])  # plain data in checkpoints
    batch = data.on_after_batch_transfer(data.train_set.__getitems__(list(range(len(data.train_set)))), 0)[0]
    assert batch.mean(dim=(0, 2, 3)).abs().max() < 1e-3  # normalised with them
    given = folder_module(tmp_path, mean=[0.5], std=[0.25])
    given.setup("fit")
    assert given.hparams["mean"] == [0.5] and given.hparams["std"] == [0.25]


def test_bad_images_are_named_together_or_skipped_when_asked(tmp_path):
    written = write_image_folder(tmp_path, splits=("train",), per_class=10)
    broken = sorted(written)[:5]
    for path in broken:
        path.write_bytes(path.read_bytes()[:60])
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as refused:
        folder_module(tmp_path).setup("fit")
    message = str(refused.value)
    assert message.startswith("cannot decode 5 of 20 images: ") and "and 2 more" in message
    assert all(str(p) in message for p in broken[:3]) and "skip_bad_images: true" in message
    assert snapshot(tmp_path) == before and not (tmp_path / "cache").exists()  # no cache of a failed decode

    for _ in range(2):  # decoded, then from the cache: the same rows are left out, with the same warning
        data = folder_module(tmp_path, skip_bad_images=True)
        with pytest.warns(UserWarning, match=f"skipping 5 of 20 images in {tmp_path / 'train'}"):
            data.setup("fit")
        assert len(data.train_set) + len(data.val_set) == 15
        kept = {*data.train_set.index.tolist(), *data.val_set.index.tolist()}
        assert {data.files["train"][0][i] for i in kept}.isdisjoint(broken)
    with pytest.raises(UserError, match="cannot decode 5 of 20 images"):  # the cache remembers them
        folder_module(tmp_path).setup("fit")


# -- what it refuses (the command-line cases are in test_bad_input.py) ------------------------------------------
def test_folder_problems_are_refused_naming_the_folder(tmp_path):
    write_image_folder(tmp_path / "ok", splits=("train", "val"))
    (tmp_path / "ok" / "val" / "zebra").mkdir()
    write_image(tmp_path / "ok" / "val" / "zebra" / "z.png", (0, 0, 0), (12, 16), "PNG", "RGB", seed=0)
    with pytest.raises(UserError, match=r"ok/val has class folders that train/ lacks \(zebra\)"):
        folder_module(tmp_path / "ok")
    shutil.rmtree(tmp_path / "ok" / "val" / "zebra")
    (tmp_path / "ok" / "train" / "ant" / "more").mkdir(parents=True)
    (tmp_path / "ok" / "train" / "ant" / "notes.txt").write_text("no images yet")
    with pytest.raises(UserError, match=r"class folders without images \(png, .*\): .*ok/train/ant;"):
        folder_module(tmp_path / "ok")
    shutil.rmtree(tmp_path / "ok" / "train" / "ant")
    with pytest.raises(UserError, match="data_dir .*nowhere does not exist"):
        folder_module(tmp_path / "nowhere")
    with pytest.raises(UserError, match="has no train/ folder"):
        folder_module(tmp_path / "ok" / "val" / "cat")
    with pytest.raises(UserError, match="channels must be 1 .* or 3"):
        folder_module(tmp_path / "ok", channels=2)
    with pytest.raises(UserError, match="mean has 2 values but the images have 3 channels"):
        folder_module(tmp_path / "ok", mean=[0.5, 0.5], std=[0.2])


def test_a_cache_that_does_not_fit_on_the_disk_is_refused_with_the_figures(tmp_path, monkeypatch):
    write_image_folder(tmp_path, splits=("train",))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 100, 100))
    before = snapshot(tmp_path)
    with pytest.raises(StorageError, match=r"needs 9\.12 KiB but its disk has 100 bytes free"):
        folder_module(tmp_path).setup("fit")
    assert snapshot(tmp_path) == before and not (tmp_path / "cache").exists()


def test_classes_are_recorded_and_a_folder_of_other_classes_is_refused(tmp_path):
    write_image_folder(tmp_path, splits=("train",))
    data = folder_module(tmp_path)
    assert data.hparams["classes"] == ["cat", "dog"]  # saved in checkpoints
    folder_module(tmp_path, classes=["cat", "dog"])
    with pytest.raises(UserError, match=r"the classes are ant, cat .* \(missing here: ant; new here: dog\)"):
        folder_module(tmp_path, classes=["ant", "cat"])


def test_rows_dataset_reads_only_its_rows():
    data = RowsDataset(torch.tensor([4, 1]), torch.arange(6) * 10, torch.arange(6))
    assert len(data) == 2 and data[0] == (40, 4)
    assert [t.tolist() for t in data.__getitems__([1, 0])] == [[10, 40], [1, 4]]


# -- through the command ------------------------------------------------------------------------------------
def test_fit_then_test_with_resnet18_and_a_checkpoint_that_carries_the_preprocessing(tmp_path, monkeypatch, capsys):
    write_image_folder(tmp_path / "photos", classes=("cat", "dog", "owl"))
    monkeypatch.chdir(tmp_path)
    net = ["--model.init_args.net=resnet18", "--data.init_args.data_dir=photos"]
    assert main(["fit", "--config", CONFIG, *FAST, *net]) == 0
    best = tmp_path / "runs" / "image_folder" / "version_0" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    saved = checkpoint["datamodule_hyper_parameters"]
    assert saved["image_size"] == [12, 16] and saved["channels"] == 3
    assert len(saved["mean"]) == len(saved["std"]) == 3 and all(0 < s < 1 for s in saved["std"])
    assert saved["classes"] == checkpoint["class_names"] == ["cat", "dog", "owl"]

    def recomputed(self):
        raise AssertionError("test must normalise with the checkpoint's statistics")

    monkeypatch.setattr(ImageFolderDataModule, "_statistics", recomputed)
    # Training images changed since: the statistics still come from the checkpoint, not from today's folder.
    for path in (tmp_path / "photos" / "train" / "cat").glob("*.png"):
        write_image(path, (0, 0, 0), (12, 16), "PNG", "RGB", seed=1)
    capsys.readouterr()
    assert main(["test", "--ckpt_path", str(best)]) == 0
    assert "test/acc" in capsys.readouterr().out


def test_images_are_decoded_once_for_every_epoch_and_run_and_again_when_the_folder_changes(
    tmp_path, monkeypatch, count_decodes
):
    written = write_image_folder(tmp_path / "photos")
    train = [p for p in written if "train" in p.parts]
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "--config", CONFIG, *FAST, "--model.init_args.net=mlp", "--data.init_args.data_dir=photos"]
    assert main(fit) == 0  # two epochs, setup called twice: each file decoded once
    assert sorted(count_decodes) == sorted(written)
    cache = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "photos" / "cache").iterdir()}
    assert sorted(name.split("_")[:2] for name in cache) == [["test", "3x12x16"], ["train", "3x12x16"]]

    count_decodes.clear()
    assert main(fit) == 0
    assert main(["test", "--ckpt_path", "best"]) == 0
    assert count_decodes == []  # a second run and a test run read no image file
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "photos" / "cache").iterdir()} == cache

    write_image(train[0], (1, 2, 3), (12, 16), "PNG", "RGB", seed=5)  # modified: train/ is decoded again
    assert main(fit) == 0
    assert sorted(count_decodes) == sorted(train)
    shutil.copy(train[0], train[0].with_name("added.png"))  # added: again, into a new cache that replaces the old
    count_decodes.clear()
    assert main(fit) == 0
    assert len(count_decodes) == len(train) + 1
    now = sorted((tmp_path / "photos" / "cache").iterdir())
    assert len(now) == 2 and now[0].name in cache and now[1].name not in cache


def test_test_without_a_test_folder_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    write_image_folder(tmp_path / "photos", splits=("train",))
    monkeypatch.chdir(tmp_path)
    assert (
        main(["fit", "--config", CONFIG, *FAST, "--model.init_args.net=mlp", "--data.init_args.data_dir=photos"]) == 0
    )
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["test", "--ckpt_path", "best"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(PREFIX) and "photos has no test/ folder to test on" in last and "validate" in last
    assert snapshot(tmp_path) == before
