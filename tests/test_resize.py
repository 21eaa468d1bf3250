"""Photos of another shape than the model's: ``resize: crop`` (the default of your own folders) keeps the centre
undistorted, ``stretch`` squeezes the whole; the choice travels with the checkpoint and the export, so training, the
cache, ``predict``, `lit_cs201.predict` and the exported model's runtime all see the same pixels, and a checkpoint or
export from before the choice existed is still used stretched, as it was trained."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

import lit_cs201
from fake_image_folder import write_image_folder
from helpers import CONFIGS, run_cli
from lit_cs201.data import ImageFolderDataModule, decode
from lit_cs201.deploy import ExportedModel
from lit_cs201.deploy import export as export_module
from lit_cs201.deploy.from_checkpoint import load
from lit_cs201.deploy.serve import CheckpointModel
from lit_cs201.errors import UserError

RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)
# A small net on 12x12 crops of the fake folder's 12x24 photos, trained for as long as a test affords.
FIT = [
    "--model.init_args.pretrained=null",
    "--model.init_args.net=mlp",
    "--data.init_args.image_size=12",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.mean=null",
    "--data.init_args.std=null",
    "--data.init_args.batch_size=8",
    "--data.init_args.val_size=4",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
]


def thirds(height: int, width: int, colours=(RED, GREEN, BLUE)) -> np.ndarray:
    """An RGB image whose left, centre and right thirds are ``colours``."""
    image = np.empty((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        image[:, i * width // 3 : (i + 1) * width // 3] = colour
    return image


def share(decoded: np.ndarray, colour: tuple[int, int, int]) -> float:
    """The share of the pixels of a (3, H, W) image that are within 40 of ``colour`` on every channel."""
    close = np.abs(decoded.astype(int) - np.array(colour)[:, None, None]) <= 40
    return float(close.all(axis=0).mean())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- the decoder -------------------------------------------------------------------------------------------------
def test_crop_keeps_the_centre_of_a_wide_photo_and_stretch_squeezes_all_of_it():
    wide = thirds(60, 180)
    cropped = decode.to_uint8(wide, 3, 20, resize_mode="crop")
    stretched = decode.to_uint8(wide, 3, 20, resize_mode="stretch")
    assert cropped.shape == stretched.shape == (3, 20, 20)
    assert share(cropped, GREEN) > 0.9 and share(cropped, RED) == share(cropped, BLUE) == 0
    assert np.array_equal(cropped[:, :, 3:-3], np.broadcast_to(np.array(GREEN, np.uint8)[:, None, None], (3, 20, 14)))
    for colour in (RED, GREEN, BLUE):  # a third each, squeezed
        assert 0.25 < share(stretched, colour) < 0.4
    assert np.array_equal(stretched, decode.to_uint8(wide, 3, 20))  # stretch is what callers got before

    # A tall photo keeps its middle band; a [height, width] size crops to that size's own shape.
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))  # bands from top to bottom
    assert share(decode.to_uint8(tall, 3, 20, resize_mode="crop"), GREEN) > 0.9
    banner = decode.to_uint8(wide, 3, (10, 30), resize_mode="crop")
    assert np.array_equal(banner, decode.to_uint8(wide, 3, (10, 30)))  # the same shape: nothing to cut


def test_an_image_of_the_models_shape_gives_the_same_pixels_either_way(tmp_path):
    rng = np.random.default_rng(0)
    for shape, size in (((28, 28), 20), ((30, 40, 3), (15, 20)), ((7, 7), 7)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        channels = 1 if len(shape) == 2 else 3
        crop = decode.to_uint8(image, channels, size, resize_mode="crop")
        assert np.array_equal(crop, decode.to_uint8(image, channels, size, resize_mode="stretch"))
    with pytest.raises(ValueError, match="resize_mode must be one of crop, stretch"):
        decode.to_uint8(image, 1, 7, resize_mode="fit")


def test_a_large_jpeg_is_cropped_at_reduced_size_to_nearly_the_pixels_of_a_png_of_it(tmp_path, monkeypatch):
    y, x = np.mgrid[0:480, 0:1440]
    pixels = np.stack([x % 256, y % 256, (x // 3 + y) % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=95)
    with Image.open(tmp_path / "photo.jpg") as full:  # the JPEG's own pixels, decoded whole, as a PNG
        full.save(tmp_path / "photo.png")
    drafted_to: list[tuple[int, int]] = []
    draft = JpegImageFile.draft

    def spy(self, mode, size):
        found = draft(self, mode, size)
        drafted_to.append(self.size)
        return found

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    from_jpeg = decode.to_uint8(tmp_path / "photo.jpg", 3, 48, resize_mode="crop")
    from_png = decode.to_uint8(tmp_path / "photo.png", 3, 48, resize_mode="crop")
    assert drafted_to == [(180, 60)]  # decoded at 1/8: the 60x60 centre still holds the 48x48 the crop makes
    assert from_jpeg.shape == from_png.shape == (3, 48, 48)
    assert np.abs(from_jpeg.astype(int) - from_png).mean() < 3


# -- a folder of photos: the cache, the checkpoint, predict, the export ------------------------------------------
def test_a_folder_caches_its_photos_cropped_unless_told_to_stretch(tmp_path):
    written = write_image_folder(tmp_path, size=(12, 24), clutter=False)
    tests = [p for p in written if "test" in p.relative_to(tmp_path).parts]
    caches = {}
    for mode in ("crop", "stretch"):
        data = ImageFolderDataModule(data_dir=str(tmp_path), image_size=12, val_size=4, resize=mode)
        assert data.hparams["resize"] == mode  # what checkpoints record
        data.setup("test")
        images, _ = data.test_set.tensors
        for path in tests:
            row = data.files["test"][0].index(path)
            assert np.array_equal(images[row].numpy(), decode.to_uint8(path, 3, 12, resize_mode=mode))
        caches[mode] = {p.name for p in (tmp_path / "cache").glob("test_*.npy")}
    assert caches["crop"] != caches["stretch"]  # each has a cache of its own
    crop, stretch = (decode.to_uint8(tests[0], 3, 12, resize_mode=m) for m in ("crop", "stretch"))
    assert not np.array_equal(crop, stretch)
    assert ImageFolderDataModule(data_dir=str(tmp_path), image_size=12).resize == "crop"  # the default
    with pytest.raises(UserError, match="resize must be crop or stretch, got 'fit'"):
        ImageFolderDataModule(data_dir=str(tmp_path), image_size=12, resize="fit")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A checkpoint trained on 12x24 photos cropped to 12x12, a new wide photo to predict, and the run's folder."""
    work = tmp_path_factory.mktemp("photos")
    write_image_folder(work / "photos", size=(12, 24), clutter=False)
    run_cli("fit", "--config", str(CONFIGS / "image_folder.yaml"), "--data.init_args.data_dir=photos", *FIT, cwd=work)
    # The classes' colours in the centre, the other's on the sides: cropping and stretching see different photos.
    Image.fromarray(thirds(30, 90, ((40, 40, 220), (220, 40, 40), (40, 40, 220)))).save(work / "wide.png")
    return work / "runs" / "image_folder" / "version_0" / "best.ckpt", work / "wide.png", work


def _old(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` as a release before ``resize`` wrote it: its datamodule settings lack the key."""
    content = torch.load(checkpoint, weights_only=True)
    del content["datamodule_hyper_parameters"]["resize"]
    torch.save(content, path)
    return path


def _predicted(work: Path, *args: str) -> dict[str, str]:
    result = run_cli("predict", *args, cwd=work)
    folder = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("Logs and results"))
    (row,) = read_csv(work / folder.strip() / "predictions.csv")
    return row


def test_predict_the_python_api_and_the_export_crop_a_new_photo_alike(photos):
    checkpoint, wide, work = photos
    assert torch.load(checkpoint, weights_only=True)["datamodule_hyper_parameters"]["resize"] == "crop"
    cropped = decode.to_uint8(wide, 3, 12, resize_mode="crop")
    assert not np.array_equal(cropped, decode.to_uint8(wide, 3, 12, resize_mode="stretch"))

    _, datamodule = load(checkpoint)  # the object both the command and lit_cs201.predict decode with
    from_checkpoint, _ = datamodule.decode_for_predict([wide])
    target = export_module.export(checkpoint, work / "model.onnx")
    model = ExportedModel(target)
    from_export, _ = model.decode([wide])
    assert np.array_equal(from_checkpoint[0], cropped) and np.array_equal(from_export[0], cropped)
    # serve's fallback for nets the exporter cannot handle: the checkpoint through torch, decoded by the runtime.
    assert np.array_equal(CheckpointModel(checkpoint).decode([wide])[0][0], cropped)
    assert model.metadata["resize"] == "crop" and model.metadata["format"] == 2

    (api,) = lit_cs201.predict(checkpoint, [wide])
    (exported,) = model.predict([wide])
    row = _predicted(work, "--ckpt_path", str(checkpoint), "--data.predict_path", str(wide))
    from_onnx = _predicted(work, "--ckpt_path", str(target), "--data.predict_path", str(wide))
    assert api.predicted == exported.predicted == row["predicted"] == from_onnx["predicted"]
    assert exported.probability == pytest.approx(api.probability, abs=1e-5)
    assert float(row["probability"]) == float(from_onnx["probability"]) == pytest.approx(api.probability, abs=1e-4)


def test_a_checkpoint_from_before_the_choice_predicts_stretched(photos, tmp_path):
    checkpoint, wide, work = photos
    old = _old(checkpoint, tmp_path / "old.ckpt")
    stretched = decode.to_uint8(wide, 3, 12, resize_mode="stretch")
    _, datamodule = load(old)
    assert datamodule.resize == "stretch"
    assert np.array_equal(datamodule.decode_for_predict([wide])[0][0], stretched)

    (new,), (before,) = lit_cs201.predict(checkpoint, [wide]), lit_cs201.predict(old, [wide])
    assert before.probability != pytest.approx(new.probability, abs=1e-3)  # the pixels differ, and so do the answers
    row = _predicted(work, "--ckpt_path", str(old), "--data.predict_path", str(wide))
    assert float(row["probability"]) == pytest.approx(before.probability, abs=1e-4)
    # The choice stays the user's: a flag crops with it all the same.
    row = _predicted(work, "--ckpt_path", str(old), "--data.predict_path", str(wide), "--data.init_args.resize=crop")
    assert float(row["probability"]) == pytest.approx(new.probability, abs=1e-4)

    target = export_module.export(old, tmp_path / "old.onnx")
    model = ExportedModel(target)
    assert model.metadata["resize"] == "stretch" and model.metadata["format"] == 1  # what older runtimes read
    assert np.array_equal(model.decode([wide])[0][0], stretched)


def _with_metadata(source: Path, path: Path, edit) -> Path:
    model = onnx.load(str(source))
    (entry,) = model.metadata_props
    meta = json.loads(entry.value)
    edit(meta)
    entry.value = json.dumps(meta)
    onnx.save(model, str(path))
    return path


def test_an_export_without_a_resize_mode_stretches_and_an_unknown_one_is_refused(photos, tmp_path):
    checkpoint, wide, _ = photos
    exported = export_module.export(checkpoint, tmp_path / "crop.onnx")

    def as_format_1(meta):
        del meta["resize"]
        meta["format"] = 1

    older = ExportedModel(_with_metadata(exported, tmp_path / "older.onnx", as_format_1))
    assert older.resize == "stretch"
    assert np.array_equal(older.decode([wide])[0][0], decode.to_uint8(wide, 3, 12, resize_mode="stretch"))

    unknown = _with_metadata(exported, tmp_path / "unknown.onnx", lambda meta: meta.update(resize="fit"))
    expected = (
        f"{unknown}: its lit_cs201 metadata gives a resize mode this runtime does not know ('fit', not crop or "
        "stretch); export the checkpoint again"
    )
    with pytest.raises(UserError, match=re.escape(expected)):
        ExportedModel(unknown)
    args = ["--ckpt_path", str(unknown), "--data.predict_path", str(wide)]
    result = run_cli("predict", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and expected in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "predict").exists()
