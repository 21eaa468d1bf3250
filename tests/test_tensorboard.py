"""What a user sees in TensorBoard, read back from the event files the real entry point writes, and through
TensorBoard's own hparams plugin: one HPARAMS row per fit, with the settings a student compares and the run's real
scores (its best ``val/acc``, the newest test of its checkpoints; no ``hp_metric`` placeholder), the curves as the
first charts, one learning-rate curve whatever the optimizer, no empty runs from ``predict``, and figures whose text
is readable in a TensorBoard card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.data import DataLoader, TensorDataset
from werkzeug.test import Client

from helpers import CONFIGS, curves_by_step, scalars
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data import IrisDataModule
from lit_cs201.models import Classifier
from lit_cs201.report import figures
from lit_cs201.report.learning_rate import LearningRateLogger
from lit_cs201.report.tensorboard import METRICS, TensorBoardHparams
from lit_cs201.report.test_report import TestReport
from synthetic import write_mnist

QUIET = ["--trainer.enable_progress_bar=false"]
IRIS_COLUMNS = {"dataset", "net", "lr", "batch_size", "epochs", "precision", "optimizer", "schedule", "hidden_sizes"}
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
    """The hyper-parameters of ``run`` and the metrics they are compared by, as its event files hold them."""
    events = EventAccumulator(str(run))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    return values, sorted(metric.name.tag for metric in experiment.metric_infos)


def hparams_table(logdir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """TensorBoard's HPARAMS tab for ``tensorboard --logdir logdir``, through TensorBoard's own hparams plugin: the
    experiment (the columns) and, for each row (by run), its values and its metrics as ``(value, step)``."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    apps = hparams_plugin.HParamsPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=provider))
    apps = apps.get_plugin_apps()
    experiment = Client(apps["/experiment"]).post("/", json={"experimentName": ""}).get_json()
    columns = [{"hparam": info["name"], "includeInResult": True} for info in experiment["hparamInfos"]]
    columns += [{"metric": info["name"], "includeInResult": True} for info in experiment["metricInfos"]]
    request = {"colParams": columns, "startIndex": 0, "sliceSize": 100, "includeMetrics": True}
    request["allowedStatuses"] = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    groups = Client(apps["/session_groups"]).post("/", json=request).get_json()["sessionGroups"]
    rows = {
        group["name"]: {
            "hparams": group["hparams"],
            "metrics": {m["name"]["tag"]: (m["value"], m["trainingStep"]) for m in group["metricValues"]},
        }
        for group in groups
    }
    return experiment, rows


def test_a_fit_shows_its_settings_with_the_best_validation_accuracy(iris):
    curves = scalars(iris)
    assert "hp_metric" not in curves  # Lightning's -1 placeholder
    values, metrics = hparams(iris)
    assert metrics == sorted(METRICS)
    assert len(curves["val/acc_best"]) == EPOCHS  # the curve TensorBoard takes the metric's value from
    assert curves["val/acc_best"][-1] == max(curves["val/acc"])
    # The settings a student compares, readable, and only those of this run's kind.
    assert values == {
        "dataset": "Iris",
        "net": "mlp",
        "lr": 0.01,
        "batch_size": 16,
        "epochs": EPOCHS,
        "precision": "32-true",
        "optimizer": "Adam",
        "schedule": "none",
        "hidden_sizes": "[10]",
    }


def test_a_test_beside_its_run_scores_in_the_row_of_the_run(iris):
    _, rows = hparams_table(iris.parent.parent)
    assert list(rows) == ["iris/version_0"]  # not a row of its own: its scores are in the row of the run it tested
    run = curves_by_step(iris)
    assert "hp_metric" not in run and "test/acc/setosa" in run  # all the test's curves, the per-class ones too
    assert "test/acc_top5" not in run  # no top-5 of three classes
    # At the step of the tested checkpoint's validation: beside the best val/acc on the same axis.
    (step,) = run["test/acc"]
    assert run["val/acc"][step] == max(run["val/acc"].values())
    assert rows["iris/version_0"]["metrics"]["test/acc"] == (pytest.approx(run["test/acc"][step]), step)
    summary = json.loads((iris / "test" / "version_0" / "summary.json").read_text())
    assert summary["test_acc"] == pytest.approx(run["test/acc"][step])  # the test's own folder keeps its summary


def test_the_evaluations_of_a_run_show_in_its_own_tensorboard_run(tmp_path, monkeypatch):
    # A fit of a few digits; a test of its best and of its last checkpoint; a predict that draws a figure.
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", n_train=64, n_test=16)
    fit = ["--trainer.max_epochs=2", "--data.init_args.val_size=16", "--data.init_args.batch_size=16"]
    assert main(["fit", "--config", str(CONFIGS / "mnist_seed.yaml"), *fit, *QUIET]) == 0
    run = tmp_path / "runs" / "mnist_seed" / "version_0"
    settings = (run / "hparams.yaml").read_bytes()
    for subcommand, checkpoint in (("test", "best.ckpt"), ("test", "last.ckpt"), ("predict", "best.ckpt")):
        assert main([subcommand, "--ckpt_path", str(run / checkpoint), *QUIET]) == 0

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "runs"))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == ["mnist_seed/version_0"]  # one run in TensorBoard's list: the fit's
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0}).Reload()
    val = {e.step: e.value for e in events.Scalars("val/acc")}
    best, last = (e.step for e in events.Scalars("test/acc"))  # each test at the step of its checkpoint's validation
    assert val[best] == max(val.values()) and last == max(val)
    assert "test/acc/0" in events.Tags()["scalars"]  # all of a test's scores, the per-class accuracies too
    assert [e.step for e in events.Images("test/confusion_matrix")] == [best, last]
    assert [e.step for e in events.Images("test/predictions")] == [best, last]
    assert [e.step for e in events.Images("predict/predictions")] == [best]
    # The rest of each evaluation is in its own folder, as ever; the fit's settings are untouched.
    for version in ("version_0", "version_1"):
        test = run / "test" / version
        assert {"config.yaml", "hparams.yaml", "summary.json"} <= {p.name for p in test.iterdir()}
    assert (run / "predict" / "version_0" / "predictions.png").is_file()
    assert not [p for p in run.rglob("events.out.tfevents.*") if p.parent != run]
    assert (run / "hparams.yaml").read_bytes() == settings


def test_lightnings_epoch_curve_is_not_logged_and_the_curves_come_first(iris):
    assert "epoch" not in scalars(iris)  # neither the fit's nor its test's
    # TensorBoard groups charts by the name's part before the first "/", sorts the groups and opens the first two.
    groups = sorted({tag.split("/")[0] for tag in scalars(iris)} - {"test"})
    assert groups == ["train", "val"]


def test_the_hparams_table_has_a_row_per_fit_with_its_columns_and_its_newest_test(tmp_path, monkeypatch):
    # Two Iris fits and a ResNet on a few digits; two tests of the first run's checkpoints, on other test sets.
    monkeypatch.chdir(tmp_path)
    iris = ["fit", "--config", str(CONFIGS / "iris.yaml"), *QUIET]
    assert main([*iris, "--trainer.max_epochs=3"]) == 0
    assert main([*iris, "--trainer.max_epochs=2", "--model.init_args.optimizer.init_args.lr=0.05"]) == 0
    write_mnist(tmp_path / "data", n_train=16, n_test=8)
    one_step = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.num_sanity_val_steps=0"]
    small = ["--data.init_args.val_size=4", "--data.init_args.batch_size=4", "--trainer.enable_model_summary=false"]
    assert main(["fit", "--config", str(CONFIGS / "mnist_resnet18.yaml"), *one_step, *small, *QUIET]) == 0
    first = tmp_path / "runs" / "iris" / "version_0"
    older = ["test", "--ckpt_path", str(first / "best.ckpt"), "--data.init_args.test_size=0.5"]  # half the flowers
    assert main([*older, *QUIET]) == 0
    assert main(["test", "--ckpt_path", str(first / "last.ckpt"), *QUIET]) == 0

    experiment, rows = hparams_table(tmp_path / "runs")
    assert sorted(rows) == ["iris/version_0", "iris/version_1", "mnist_resnet18/version_0"]  # no row per test
    # The five columns TensorBoard shows at first (those marked as differing), then the others; the scores.
    shown = {info["name"] for info in experiment["hparamInfos"] if info["differs"]}
    assert shown == {"dataset", "net", "lr", "batch_size", "epochs"}
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == list(METRICS)
    # Each row lists the settings that apply to it: no hidden sizes for a ResNet.
    assert set(rows["iris/version_1"]["hparams"]) == IRIS_COLUMNS and rows["iris/version_1"]["hparams"]["lr"] == 0.05
    resnet = rows["mnist_resnet18/version_0"]["hparams"]
    assert set(resnet) == IRIS_COLUMNS - {"hidden_sizes"}
    assert resnet["net"] == "resnet18" and resnet["dataset"] == "MNIST" and resnet["schedule"] == "OneCycleLR"
    assert resnet["lr"] == 0.05 and resnet["batch_size"] == 4 and resnet["optimizer"] == "SGD"  # the one-cycle peak
    # The tested run's row has the newest test's scores (last.ckpt's), at the step of that checkpoint's validation.
    tests = scalars(first)  # both tests' points, the newest last
    assert len(tests["test/loss"]) == 2 and tests["test/loss"][0] != tests["test/loss"][1]  # two scores to tell apart
    scores = rows["iris/version_0"]["metrics"]
    curves = curves_by_step(first)
    assert scores["test/acc"] == (pytest.approx(tests["test/acc"][-1]), max(curves["val/acc"]))
    assert scores["test/loss"][0] == pytest.approx(tests["test/loss"][-1])
    assert scores["val/acc_best"][0] == pytest.approx(max(curves["val/acc"].values()))
    assert set(rows["iris/version_1"]["metrics"]) == {"val/acc_best"}  # not tested: empty test cells


def test_a_test_logged_elsewhere_is_a_row_of_its_own(iris, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    args = ["test", "--ckpt_path", str(iris / "best.ckpt"), f"--trainer.logger.init_args.save_dir={elsewhere}"]
    assert main([*args, *QUIET]) == 0
    _, rows = hparams_table(elsewhere)
    ((name, row),) = rows.items()
    # The settings it was trained with; not the epochs and precision of the test itself.
    assert set(row["hparams"]) == IRIS_COLUMNS - {"epochs", "precision"} and row["hparams"]["lr"] == 0.01
    assert set(row["metrics"]) == {"test/acc", "test/loss"}
    assert row["metrics"]["test/acc"][0] == pytest.approx(scalars(elsewhere / name)["test/acc"][-1])


def test_the_table_from_python_with_lightnings_logger_built_as_its_docs_say(tmp_path):
    # From Python, with Lightning's own logger built without the placeholder, as a user builds a Trainer.
    logger = LightningTensorBoardLogger(tmp_path, name="iris", default_hp_metric=False)
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
    assert metrics == sorted(METRICS) and values["net"] == "mlp" and values["dataset"] == "Iris"
    assert values["lr"] == 0.001 and values["optimizer"] == "Adam" and values["epochs"] == 1  # Adam's default rate


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
    figure = figures.confusion_figure(matrix, names)
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
    images = torch.zeros(figures.GRID_SIZE, 3, 32, 32, dtype=torch.uint8)
    targets = torch.arange(figures.GRID_SIZE) % 10
    predictions = targets.clone()
    predictions[[0, 9]] = torch.tensor([1, 1])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "a long class name"]
    figure = figures.prediction_grid(images, targets, predictions, names)
    figure.canvas.draw()
    cells = [ax for ax in figure.axes if ax.images]
    titles = [ax.title for ax in cells]
    assert len(titles) == figures.GRID_SIZE <= 25
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
    monkeypatch.setattr(figures, "prediction_grid", lambda *grid, class_names: drawn.append(grid) or Figure())
    trainer = Trainer(
        logger=LightningTensorBoardLogger(tmp_path),
        callbacks=[TestReport()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier(num_classes=4, input_shape=[1, 8, 8])
    trainer.test(model, DataLoader(TensorDataset(images, labels), batch_size=16))
    ((shown, targets, _),) = drawn
    assert len(targets) == figures.GRID_SIZE and set(targets.tolist()) == {0, 1, 2, 3}
    assert any(torch.equal(shown[-1], image) for image in images[90:])  # from the end of the test set too


def test_a_validate_is_a_run_of_its_own_and_leaves_the_fits_curves_alone(tmp_path):
    # Its val/ points would sit at the step of the fit's own, second points on the fit's curves.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main(["fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=2", *QUIET]) == 0
        run = tmp_path / "runs" / "iris" / "version_0"
        before = sorted(run.glob("events.out.tfevents.*"))
        assert main(["validate", "--ckpt_path", str(run / "best.ckpt"), *QUIET]) == 0
    assert sorted(run.glob("events.out.tfevents.*")) == before
    assert len(scalars(run)["val/acc"]) == 2  # one point an epoch
    assert "val/acc" in scalars(run / "validate" / "version_0")
