"""Predicting on your own files with a checkpoint alone: ``lit-cs201 predict --data.predict_path`` and
``lit_cs201.predict``, for MNIST, CIFAR-10 and Iris checkpoints whose training data is gone."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lit_cs201
from helpers import CONFIGS
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data.inputs import light_background
from lit_cs201.data.mnist import read_idx
from synthetic import write_cifar10, write_mnist

PREFIX = "lit-cs201: error: "
QUIET = ["--trainer.enable_progress_bar=false"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fit(work: Path, config: str, *extra: str) -> Path:
    """Train a tiny run in ``work`` and delete its data: what is left to predict with is the checkpoint."""
    args = ["--data.init_args.data_dir=data", "--data.init_args.val_size=16", "--trainer.max_epochs=1", *QUIET]
    assert main(["fit", "--config", str(CONFIGS / f"{config}.yaml"), *args, *extra]) == 0
    shutil.rmtree(work / "data")
    return work / "runs" / config / "version_0" / "best.ckpt"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """An MNIST checkpoint whose data is deleted, and test digits that were never written as image files."""
    work = tmp_path_factory.mktemp("mnist")
    raw = write_mnist(work / "data", n_train=64, n_test=16)
    digits = read_idx(raw / "t10k-images-idx3-ubyte", ndim=3).copy()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        return fit(work, "mnist_seed", "--trainer.limit_train_batches=2"), digits


def predicted(path: Path) -> dict[str, dict[str, str]]:
    return {Path(row["path"]).name: row for row in read_csv(path)}


def test_mnist_checkpoint_predicts_a_folder_of_images_without_its_data(mnist, tmp_path, monkeypatch, capsys):
    checkpoint, digits = mnist
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my digits"
    (folder / "nested").mkdir(parents=True)
    for i, digit in enumerate(digits[:6]):
        Image.fromarray(digit).resize((56, 56)).save(folder / f"{i}.png")  # another size: resized to 28x28
    Image.fromarray(np.stack([digits[6]] * 3, axis=-1)).save(folder / "nested" / "6.jpg", quality=95)  # colour
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    assert main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(folder), *QUIET]) == 0

    out = checkpoint.parent / "predict" / "version_0"
    rows = predicted(out / "predictions.csv")
    assert set(rows) == {"0.png", "1.png", "2.png", "3.png", "4.png", "5.png", "6.jpg", "broken.png"}
    header = list(read_csv(out / "predictions.csv")[0])
    assert header[:5] == ["path", "predicted", "probability", "top1", "top1_probability"]
    assert header[-3:] == ["top5", "top5_probability", "error"]
    assert rows["broken.png"]["error"] and not rows["broken.png"]["predicted"]
    for name, row in rows.items():
        if name != "broken.png":
            assert row["predicted"] == row["top1"] in [str(d) for d in range(10)] and not row["error"]
            probabilities = [float(row[f"top{k}_probability"]) for k in range(1, 6)]
            assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    said = capsys.readouterr()
    assert f"Wrote 7 predictions to {out / 'predictions.csv'}; 1 file could not be read" in said.out + said.err
    assert (out / "predictions.png").stat().st_size > 0
    events = EventAccumulator(str(checkpoint.parent))  # in TensorBoard, in the run whose checkpoint predicted
    events.Reload()
    assert "predict/predictions" in events.Tags()["images"]

    # The Python API prepares images the same way: same classes and probabilities, files or arrays alike.
    from_python = lit_cs201.predict(checkpoint, sorted(folder.glob("*.png")))
    by_name = {Path(p.source).name: p for p in from_python}
    for name in ("0.png", "3.png"):
        assert by_name[name].predicted == rows[name]["predicted"]
        assert by_name[name].probability == pytest.approx(float(rows[name]["probability"]), abs=1e-4)
    assert by_name["broken.png"].error and by_name["broken.png"].predicted is None
    Image.fromarray(digits[7]).save(tmp_path / "7.png")  # at MNIST's own size: the very pixels of the array
    from_file, from_array = lit_cs201.predict(checkpoint, [tmp_path / "7.png", digits[7]])
    assert (from_file.predicted, from_file.probability) == (from_array.predicted, from_array.probability)
    assert from_file.source.endswith("7.png") and from_array.source == "<ndarray 1>"


def test_a_dark_digit_on_paper_is_inverted_for_an_mnist_checkpoint(mnist, tmp_path):
    checkpoint, _ = mnist
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a light stroke on black, as MNIST's digits are
    paper = 255 - digit  # the same digit in ink on paper
    assert not light_background(digit[None, None])[0] and light_background(paper[None, None])[0]
    for name, image in (("mnist_like.png", digit), ("paper.png", paper)):
        Image.fromarray(image).save(tmp_path / name)
    original, on_paper = lit_cs201.predict(checkpoint, [tmp_path / "mnist_like.png", tmp_path / "paper.png"])
    assert on_paper.predicted == original.predicted
    assert on_paper.probability == pytest.approx(original.probability)


def test_a_cifar10_checkpoint_predicts_image_files_without_its_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar10(tmp_path / "data", per_batch=16, n_test=8)
    checkpoint = fit(tmp_path, "cifar10_seed", "--data.init_args.verify_md5=false", "--trainer.limit_train_batches=2")
    photo = (np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    Image.fromarray(photo[..., 0]).save(tmp_path / "grey.png")  # greyscale: converted to RGB
    pattern = str(tmp_path / "*.[jp][pn]g")  # a glob
    assert main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", pattern, *QUIET]) == 0
    rows = predicted(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    assert set(rows) == {"photo.jpg", "grey.png"} and {row["predicted"] for row in rows.values()} <= names


def test_an_iris_checkpoint_predicts_flowers_from_a_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=40", *QUIET]) == 0
    checkpoint = tmp_path / "runs" / "iris" / "version_0" / "best.ckpt"
    (tmp_path / "flowers.csv").write_text(
        "Id,SepalLengthCm,SepalWidthCm,PetalLengthCm,PetalWidthCm\n1,5.1,3.5,1.4,0.2\n2,6.7,3.0,5.2,2.3\n\n"
    )
    (tmp_path / "sklearn.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.0,3.4,1.5,0.2\n"
    )
    args = ["predict", "--ckpt_path", str(checkpoint), *QUIET]
    assert main([*args, "--data.predict_path", "[flowers.csv, sklearn.csv]"]) == 0
    rows = read_csv(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    assert [row["path"] for row in rows] == ["flowers.csv:2", "flowers.csv:3", "sklearn.csv:2"]
    assert [row["predicted"] for row in rows] == ["setosa", "virginica", "setosa"]
    assert list(rows[0])[-1] == "error" and "top3_probability" in rows[0]

    (tmp_path / "short.csv").write_text("sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n")
    capsys.readouterr()
    assert main([*args, "--data.predict_path", "short.csv"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(PREFIX) and "short.csv has no column for petal width" in last
    assert not (checkpoint.parent / "predict" / "version_1").exists()


@pytest.mark.parametrize(
    "target, expected",
    [
        ("missing.png", "predict_path missing.png matches no file"),
        ("empty", "holds no files"),
        ("unreadable", "none of the 2 files could be read"),
    ],
)
def test_predicting_nothing_is_refused_and_writes_nothing(mnist, tmp_path, monkeypatch, capsys, target, expected):
    checkpoint, _ = mnist
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    (tmp_path / "unreadable").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "unreadable" / name).write_bytes(b"garbage")
    before = sorted(checkpoint.parent.rglob("*"))
    assert main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", target, *QUIET]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(PREFIX) and expected in last
    assert sorted(checkpoint.parent.rglob("*")) == before
    assert torch.load(checkpoint, weights_only=True)["class_names"] == [str(d) for d in range(10)]


def test_an_image_folder_checkpoint_predicts_without_its_folder(tmp_path, monkeypatch):
    from fake_image_folder import write_image_folder

    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "photos", classes=("cat", "dog", "owl"), splits=("train",))
    args = ["--data.init_args.data_dir=photos", "--data.init_args.image_size=16", "--data.init_args.train_augment=none"]
    args += ["--data.init_args.eval_augment=none", "--data.init_args.val_size=6", "--model.init_args.net=mlp"]
    args += ["--model.init_args.pretrained=null"]
    assert main(["fit", "--config", str(CONFIGS / "image_folder.yaml"), *args, "--trainer.max_epochs=2", *QUIET]) == 0
    shutil.copy(next(p for p in (tmp_path / "photos" / "train" / "owl").glob("[!.]*.png")), tmp_path / "mine.png")
    shutil.rmtree(tmp_path / "photos")
    checkpoint = tmp_path / "runs" / "image_folder" / "version_0" / "best.ckpt"
    assert main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", "mine.png", *QUIET]) == 0
    (row,) = read_csv(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    assert row["path"] == "mine.png" and row["predicted"] in {"cat", "dog", "owl"}
    assert {row["top1"], row["top2"], row["top3"]} == {"cat", "dog", "owl"}
    assert torch.load(checkpoint, weights_only=True)["datamodule_hyper_parameters"]["dark_background"] is False
    (python,) = lit_cs201.predict(checkpoint, "mine.png")
    # The CSV rounds to 4 decimals: within 5e-5 of the probability, whatever its size.
    assert python.predicted == row["predicted"]
    assert python.probability == pytest.approx(float(row["probability"]), abs=1e-4)


def test_tiny_imagenet_files_are_predicted_at_its_stored_size_without_the_dataset(tmp_path):
    """Files become 64x64 RGB, as Tiny ImageNet's images are; the presets then make the model's 224 of them."""
    from lit_cs201.data import TinyImageNetDataModule

    Image.new("L", (300, 200), 128).save(tmp_path / "grey.png")
    data = TinyImageNetDataModule(data_dir=str(tmp_path / "nowhere"), predict_path=str(tmp_path))
    data.prepare_data()  # nothing to fetch: the network guard would fail a download
    data.setup("predict")
    (images,) = data.predict_set.tensors
    assert images.shape == (1, 3, 64, 64) and images.dtype == torch.uint8
    assert data.eval_augment(images).shape == (1, 3, 224, 224)
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_of_light_strokes_on_black_inverts_photos_of_ink_on_paper(tmp_path, monkeypatch):
    """`invert: auto` for a folder of your own digits: the training images tell that they are light on dark."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for label, stroke in (("bar", np.s_[3:13, 7:9]), ("dash", np.s_[7:9, 3:13])):
        for i in range(12):
            image = rng.integers(0, 30, (16, 16)).astype(np.uint8)
            image[stroke] = 255
            (tmp_path / "strokes" / "train" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "strokes" / "train" / label / f"{i}.png")
            if i == 0:
                Image.fromarray(image).save(tmp_path / f"{label}.png")
                Image.fromarray(255 - image).save(tmp_path / f"{label}_on_paper.png")
    args = [
        "--data.init_args.data_dir=strokes",
        "--data.init_args.train_augment=none",
        "--data.init_args.image_size=null",
    ]
    args += ["--data.init_args.eval_augment=none", "--data.init_args.val_size=4", "--data.init_args.mean=null"]
    args += ["--data.init_args.std=null", "--data.init_args.channels=null", "--model.init_args.net=mlp"]
    args += ["--model.init_args.pretrained=null"]
    assert main(["fit", "--config", str(CONFIGS / "image_folder.yaml"), *args, "--trainer.max_epochs=3", *QUIET]) == 0
    checkpoint = tmp_path / "runs" / "image_folder" / "version_0" / "best.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["dark_background"] is True and saved["channels"] == 1
    names = ["bar.png", "bar_on_paper.png", "dash.png", "dash_on_paper.png"]
    bar, bar_paper, dash, dash_paper = lit_cs201.predict(checkpoint, names)
    assert (bar.predicted, bar.probability) == (bar_paper.predicted, pytest.approx(bar_paper.probability))
    assert (dash.predicted, dash.probability) == (dash_paper.predicted, pytest.approx(dash_paper.probability))


def test_the_prediction_grid_shows_the_dataset_rows_it_predicted(tmp_path, monkeypatch):
    # An image folder's test split is a view of its cache (RowsDataset): sample i is cache row index[i], not row i.
    from types import SimpleNamespace

    from lit_cs201.data.folder import RowsDataset
    from lit_cs201.report import figures, prediction_writer

    cache = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    dataset = RowsDataset(torch.tensor([5, 3, 1]), cache, torch.zeros(6, dtype=torch.int64))
    shown = {}

    def image_grid(images, titles):
        shown["images"] = images
        return _Figure()

    monkeypatch.setattr(figures, "image_grid", image_grid)
    datamodule = SimpleNamespace(predict_path=None, test_set=dataset)
    rows = [(0, 0, [0], [0.9]), (1, 0, [0], [0.8]), (2, 0, [0], [0.7])]
    prediction_writer.PredictionWriter._draw(SimpleNamespace(loggers=[]), datamodule, rows, None, tmp_path)
    assert shown["images"][:, 0, 0, 0].tolist() == [5, 3, 1]


class _Figure:
    def savefig(self, *args, **kwargs):
        pass


def test_the_prediction_picture_spreads_across_classes_and_names_its_files():
    """A folder listed class by class filled predictions.png with its first class; each image now also says which
    file it is."""
    from lit_cs201.report import figures
    from lit_cs201.report.predictions import grid_rows, grid_titles, ranked_rows

    predicted = [0] * 20 + [1] * 3 + [2] * 3  # 20 zeros first, as in a test folder listed by name
    probs = np.full((len(predicted), 3), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    probs[5] = np.nan  # no prediction: never drawn
    rows = ranked_rows(probs, range(len(predicted)))
    files = [f"digits/{c}/{i:04d}.png" for i, c in enumerate(predicted)]

    shown = grid_rows(rows, figures.GRID_SIZE)
    assert [row[2][0] for row in shown[:6]] == [0, 1, 2, 0, 1, 2]
    assert len(shown) == figures.GRID_SIZE and all(row[2] for row in shown)
    assert sorted(row[0] for row in shown if row[2][0] != 0) == list(range(20, 26))  # every image of a rare class
    titles = grid_titles(shown, ["zero", "one", "two"], files)
    assert titles[1] == "0020.png\none (0.80)"
    assert grid_titles(shown[:1], ["zero", "one", "two"]) == ["zero (0.80)"]
    # Where the true classes are known (the test split), those are what it spreads across.
    labelled = ranked_rows(probs[:6], range(6), [2, 2, 1, 1, 0, 0])
    assert [row[1] for row in grid_rows(labelled, 3)] == [0, 1, 2]
