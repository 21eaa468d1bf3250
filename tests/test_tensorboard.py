"""What a user sees in TensorBoard, read back from the event files the real entry point writes: the hyper-parameters
with the run's real scores (no ``hp_metric`` placeholder), one learning-rate curve whatever the optimizer, no empty
runs from ``predict``, and figures whose text is readable in a TensorBoard card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.data import DataLoader, TensorDataset

from helpers import CONFIGS, scalars
from lit_cs201 import viz
from lit_cs201.callbacks import LearningRateLogger, TensorBoardHparams
from lit_cs201.cli import main
from lit_cs201.data import IrisDataModule
from lit_cs201.models import Classifier

QUIET = ["--trainer.enable_progress_bar=false"]
EPOCHS = 3
CARD = (310, 215)  # pixels: the box a TensorBoard card fits an image into (until "actual image size" is toggled)
LEGIBLE = 7  # pixels: the least height of text that reads there


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    """A short Iris run (Adam), then a test and a predict of its best checkpoint; the run folder."""
    work = tmp_path_factory.mktemp("iris")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["fit", "--config", str(CONFIGS / "iris.yaml"), f"--trainer.max_epochs={EPOCHS}", *QUIET]) == 0
        run = work / "runs" / "iris" / "version_0"
        for subcommand in ("test", "predict"):
            assert main([subcommand, "--ckpt_path", str(run / "best.ckpt"), *QUIET]) == 0
    return run


def hparams(run: Path) -> tuple[dict[str, Any], list[str]]:
    """The hyper-parameters of ``run`` and the metrics they are compared by, as TensorBoard's HPARAMS tab reads them."""
    events = EventAccumulator(str(run))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    return values, sorted(metric.name.tag for metric in experiment.metric_infos)


def test_a_fit_shows_its_hyperparameters_with_the_best_validation_accuracy(iris):
    curves = scalars(iris)
    assert "hp_metric" not in curves  # Lightning's -1 placeholder
    values, metrics = hparams(iris)
    assert metrics == ["val/acc_best"]
    assert len(curves["val/acc_best"]) == EPOCHS  # the curve TensorBoard takes the metric's value from
    assert curves["val/acc_best"][-1] == max(curves["val/acc"])
    # The model's and the datamodule's settings, flat and readable: a class from the config by its path.
    assert values["model"] == "Classifier" and values["data"] == "IrisDataModule"
    assert values["net"] == "mlp" and values["hidden_sizes"] == "[10]" and values["batch_size"] == 16
    assert values["optimizer"] == "torch.optim.Adam" and values["optimizer/lr"] == 0.01
    assert values["lr_scheduler"] == "None" and values["channels_last"] == "False" and values["input_shape"] == "[4]"


def test_a_test_run_shows_the_hyperparameters_with_its_scores(iris):
    evaluation = iris / "test" / "version_0"
    curves = scalars(evaluation)
    assert "hp_metric" not in curves
    values, metrics = hparams(evaluation)
    assert metrics == ["test/acc", "test/loss"]  # not the per-class accuracies; no top-5 of three classes
    assert all(metric in curves for metric in metrics)
    assert values["net"] == "mlp" and values["optimizer/lr"] == 0.01 and values["data"] == "IrisDataModule"


def test_the_placeholder_is_off_whatever_the_logger_was_built_with(tmp_path):
    # From Python, with Lightning's own logger and its defaults (default_hp_metric=True), as a user builds a Trainer.
    logger = LightningTensorBoardLogger(tmp_path, name="iris")
    trainer = Trainer(
        max_epochs=1,
        logger=logger,
        callbacks=[TensorBoardHparams(), LearningRateLogger()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Classifier(num_classes=3, input_shape=[4]), datamodule=IrisDataModule())
    curves = scalars(Path(logger.log_dir))
    assert "hp_metric" not in curves and "train/lr" in curves
    values, metrics = hparams(Path(logger.log_dir))
    assert metrics == ["val/acc_best"] and values["net"] == "mlp" and values["split_seed"] == 42


def test_predict_without_a_figure_adds_no_run_to_tensorboard(iris):
    # Iris has no images to draw: the predictions are in the CSV, and TensorBoard has no run to list.
    folder = iris / "predict" / "version_0"
    assert (folder / "predictions.csv").is_file()
    assert not list(folder.rglob("events.out.tfevents.*"))


def test_the_learning_rate_is_one_curve_whatever_the_optimizer(iris, tmp_path, monkeypatch):
    adam = scalars(iris)
    assert adam["train/lr"] == pytest.approx([0.01] * EPOCHS)  # a constant rate: once an epoch
    monkeypatch.chdir(tmp_path)
    schedule = [
        "--model.init_args.optimizer=torch.optim.SGD",
        "--model.init_args.optimizer.init_args.momentum=0.9",
        "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
        "--model.init_args.lr_scheduler.init_args.max_lr=0.05",
    ]
    assert main(["fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=4", *schedule, *QUIET]) == 0
    stepped = scalars(tmp_path / "runs" / "iris" / "version_0")
    for curves in (adam, stepped):
        assert not [tag for tag in curves if tag.startswith("lr-")]  # Lightning's lr-Adam, lr-SGD
    # Iris trains 6 batches an epoch, logged every step: the one-cycle schedule's rise and fall, not 4 samples of it.
    lr = stepped["train/lr"]
    assert len(lr) == 24
    peak = lr.index(max(lr))
    assert max(lr) == pytest.approx(0.05, rel=0.05) and 0 < peak < len(lr) - 1
    assert lr[:peak] == sorted(lr[:peak]) and lr[peak:] == sorted(lr[peak:], reverse=True)


def in_card(figure: Figure, points: float) -> float:
    """Pixels high that text of ``points`` is in a TensorBoard card, which scales a figure down to fit `CARD`."""
    width, height = figure.get_figwidth() * figure.dpi, figure.get_figheight() * figure.dpi  # the image it receives
    return points / 72 * figure.dpi * min(1.0, CARD[0] / width, CARD[1] / height)


def overlaps(a: Text | Axes, b: Text | Axes) -> bool:
    return a.get_window_extent().overlaps(b.get_window_extent())


@pytest.mark.parametrize("classes", [3, 10])
def test_the_confusion_matrix_shows_each_true_class_as_fractions_with_its_counts(classes):
    matrix = torch.arange(classes * classes).reshape(classes, classes) % 7
    matrix[0] = 0  # a class without test images: a row of zeros, not NaN
    names = ["setosa", "versicolor", "virginica"] if classes == 3 else [str(i) for i in range(classes)]
    figure = viz.confusion_figure(matrix, names)
    ax, colorbar = figure.axes
    shown = ax.images[0].get_array()
    assert shown.sum(axis=1).tolist() == pytest.approx([0.0] + [1.0] * (classes - 1))
    assert ax.images[0].get_clim() == (0, 1) and colorbar.get_ylabel() == "fraction of the true class"
    assert [int(text.get_text()) for text in ax.texts] == matrix.flatten().tolist()
    correct, total = int(matrix.trace()), int(matrix.sum())
    assert ax.get_title() == f"Confusion matrix\n{100 * correct / total:.1f} % of {total} correct"
    # In the card: the title always; with a few classes, every name and count too (else in the full-size view).
    assert in_card(figure, ax.title.get_fontsize()) >= LEGIBLE
    if classes <= 5:
        for text in [*ax.texts, *ax.get_xticklabels(), *ax.get_yticklabels()]:
            assert in_card(figure, text.get_fontsize()) >= LEGIBLE, text.get_text()


def test_the_prediction_grid_is_readable_in_a_card():
    images = torch.zeros(viz.GRID_SIZE, 3, 32, 32, dtype=torch.uint8)
    targets = torch.arange(viz.GRID_SIZE) % 10
    predictions = targets.clone()
    predictions[[0, 9]] = torch.tensor([1, 1])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "a long class name"]
    figure = viz.prediction_grid(images, targets, predictions, names)
    figure.canvas.draw()
    cells = [ax for ax in figure.axes if ax.images]
    titles = [ax.title for ax in cells]
    assert len(titles) == viz.GRID_SIZE <= 25
    assert [title.get_text() for title in titles[:3]] == ["airplane\n→ automobi…", "automobile", "bird"]
    assert [title.get_color() for title in titles[:3]] == ["red", "black", "black"]  # wrong predictions in red
    assert titles[9].get_text() == "a long cla…\n→ automobi…"  # long names cut to fit the cell
    for title in titles:
        assert title.get_fontsize() >= 11 and in_card(figure, title.get_fontsize()) >= LEGIBLE
        assert not [other for other in [*titles, *cells] if other is not title and overlaps(title, other)]


def test_the_test_grid_spans_a_test_set_listed_class_by_class(tmp_path, monkeypatch):
    # An image folder's test split comes class by class: its first images are all of the first class.
    images = torch.rand(120, 1, 8, 8)
    labels = torch.arange(4).repeat_interleave(30)
    drawn = []
    monkeypatch.setattr(viz, "prediction_grid", lambda *grid, class_names: drawn.append(grid) or Figure())
    trainer = Trainer(
        logger=LightningTensorBoardLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False
    )
    model = Classifier(num_classes=4, input_shape=[1, 8, 8])
    trainer.test(model, DataLoader(TensorDataset(images, labels), batch_size=16))
    ((shown, targets, _),) = drawn
    assert len(targets) == viz.GRID_SIZE and set(targets.tolist()) == {0, 1, 2, 3}
    assert any(torch.equal(shown[-1], image) for image in images[90:])  # from the end of the test set too
