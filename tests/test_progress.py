"""What a run shows while it runs, in a terminal and in a file, and how many points its curves get: one line an epoch
where the output is not a terminal (a log file, a notebook cell, a cluster job), bars with epochs counted from 1 in a
terminal, a line of counts after a test or predict, the epoch a resumed fit continues from, and a train/loss curve of
about 50 points or more however small the data, unless the config or a flag sets the interval."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import rich
import yaml
from lightning.pytorch import Trainer

from fake_image_folder import write_image_folder
from helpers import CONFIGS, curves_by_step, run_cli
from lit_cs201.data import IrisDataModule
from lit_cs201.models import Classifier
from lit_cs201.report.log_interval import CURVE_POINTS, log_interval, shortest_run
from lit_cs201.report.progress import LineProgress, RichRunProgressBar, TQDMRunProgressBar

IRIS = str(CONFIGS / "iris.yaml")
TIME = r"\d+:\d\d:\d\d"
NUMBER = r"\d\.\d{4}"
EPOCH_LINE = re.compile(
    rf"Epoch (\d+)/(\d+): train/loss {NUMBER}, val/loss {NUMBER}, val/acc {NUMBER} \[{TIME} elapsed, {TIME} left\]"
)


def epoch_lines(output: str) -> list[tuple[int, int]]:
    """(k, n) of every ``Epoch k/n: ...`` line; a line that starts so but does not read as one fails the test."""
    found = []
    for line in output.splitlines():
        if line.startswith("Epoch "):
            match = EPOCH_LINE.fullmatch(line)
            assert match, f"not an epoch line: {line!r}"
            found.append((int(match[1]), int(match[2])))
    return found


# -- a fit whose output goes to a file --------------------------------------------------------------------------
def test_a_fit_sent_to_a_file_shows_one_plain_line_an_epoch(tmp_path):
    """``lit-cs201 fit ... > fit.log``, as under nohup or in a cluster job: the file says how far the run is."""
    log = tmp_path / "fit.log"
    with log.open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", "lit_cs201", "fit", "--config", IRIS, "--trainer.max_epochs", "3"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.PIPE,
            check=True,
            timeout=600,
        )
    written = log.read_bytes()
    assert b"\r" not in written and b"\x1b" not in written  # no bar redrawn in place, no colour codes
    assert epoch_lines(written.decode()) == [(1, 3), (2, 3), (3, 3)]
    # The model summary before them lists the network, not the metric objects and the loss kept beside it.
    assert re.search(r"\b0\b\W+net\W+Sequential\W+83\b", written.decode())
    assert not re.search(rb"train_acc|val_loss|train_loss_fn", written)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Path:
    """An Iris fit of 9 epochs (output captured, not a terminal): the folder it ran in."""
    folder = tmp_path_factory.mktemp("iris")
    result = run_cli("fit", "--config", IRIS, "--trainer.max_epochs=9", cwd=folder)
    assert epoch_lines(result.stdout) == [(k, 9) for k in range(1, 10)]
    return folder


def test_test_and_predict_end_with_a_line_of_counts(iris_run):
    tested = run_cli("test", "--ckpt_path", "best", cwd=iris_run)
    assert re.search(rf"^Tested 30 samples in 2 batches \[{TIME}\]$", tested.stdout, re.MULTILINE), tested.stdout
    predicted = run_cli("predict", "--ckpt_path", "best", cwd=iris_run)
    assert re.search(rf"^Predicted 30 samples in 2 batches \[{TIME}\]$", predicted.stdout, re.MULTILINE)
    for output in (tested.stdout, predicted.stdout):
        assert "\r" not in output and "\x1b" not in output and "Testing" not in output


def test_a_resumed_fit_says_from_which_epoch_it_continues(iris_run, tmp_path):
    shutil.copytree(iris_run / "runs", tmp_path / "runs")
    resumed = run_cli("fit", "--ckpt_path", "last", "--trainer.max_epochs=11", cwd=tmp_path)
    assert "Continuing runs/iris/version_0 from epoch 10 of 11 (last.ckpt)." in resumed.stdout.splitlines()
    assert epoch_lines(resumed.stdout) == [(10, 11), (11, 11)]

    finished = run_cli("fit", "--ckpt_path", "last", "--trainer.max_epochs=11", cwd=tmp_path)
    assert "runs/iris/version_0 has trained all 11 of its epochs (last.ckpt): nothing to continue; give " in (
        finished.stdout
    )
    assert epoch_lines(finished.stdout) == []


def test_iris_logs_every_step(iris_run):
    """configs/iris.yaml sets log_every_n_steps 1: 6 batches an epoch, 9 epochs, 54 points."""
    curves = curves_by_step(iris_run / "runs" / "iris" / "version_0")
    assert len(curves["train/loss"]) == 54 >= CURVE_POINTS


# -- bars in a terminal -----------------------------------------------------------------------------------------
def fit_iris(bar, max_epochs: int = 2) -> None:
    trainer = Trainer(
        max_epochs=max_epochs,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Classifier(num_classes=3, input_shape=[4]), datamodule=IrisDataModule())


def test_the_rich_bar_counts_epochs_from_1():
    screen = io.StringIO()
    try:
        fit_iris(RichRunProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 120}))
    finally:
        # Lightning's bar reconfigures rich's one global console: without this, every later rich print (the test
        # results table of later tests) would go to this test's screen.
        rich.reconfigure()
    shown = set(re.findall(r"Epoch \d+/\d+", screen.getvalue()))
    assert shown == {"Epoch 1/2", "Epoch 2/2"}  # Lightning's own: Epoch 0/1, Epoch 1/1


def test_the_tqdm_bar_counts_epochs_from_1(capsys):
    fit_iris(TQDMRunProgressBar())
    # tqdm redraws the line at each change: Lightning's label shows in the frames before the first batch only.
    frames = re.findall(r"(Epoch \d+(?:/\d+)?):\s+(\d+)%", capsys.readouterr().out)
    assert {label for label, percent in frames if int(percent) > 0} == {"Epoch 1/2", "Epoch 2/2"}


def test_a_long_epoch_shows_lines_while_it_runs(capsys):
    """An epoch that takes longer than ``every_s`` adds lines with the batches done; here every batch does."""
    fit_iris(LineProgress(every_s=0), max_epochs=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines[:6]] == [f"Epoch 1/1: batch {k}/6" for k in range(1, 7)]
    assert re.fullmatch(rf"Epoch 1/1: batch 6/6, train/loss \d\.\d{{4}} \[{TIME} elapsed, {TIME} left\]", lines[5])
    assert epoch_lines("\n".join(lines[6:])) == [(1, 1)]


# -- points on the curves ---------------------------------------------------------------------------------------
FOLDER_FIT = [
    "--config",
    str(CONFIGS / "image_folder.yaml"),
    "--data.init_args.data_dir=folder",
    "--model.init_args.pretrained=null",
    "--model.init_args.net=mlp",
    "--data.init_args.image_size=null",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.mean=null",
    "--data.init_args.std=null",
    "--data.init_args.batch_size=4",
    "--data.init_args.val_size=4",  # 40 training images: 10 batches an epoch
    "--early_stopping.patience=20",
]


@pytest.fixture
def small_folder(tmp_path) -> Path:
    write_image_folder(tmp_path / "folder", splits=("train",), per_class=22, clutter=False)
    return tmp_path


def fit_folder(folder: Path, *args: str) -> tuple[int, dict[str, int], list[str]]:
    """Fit the small folder: the interval config.yaml records, the points of each curve, the warnings shown."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = run_cli("fit", *FOLDER_FIT, *args, cwd=folder)
    run = folder / "runs" / "image_folder" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["log_every_n_steps"]
    messages = [str(w.message) for w in shown] + result.stderr.splitlines()
    return saved, {tag: len(points) for tag, points in curves_by_step(run).items()}, messages


def test_a_small_folder_gets_a_curve_of_50_points_without_a_warning(small_folder):
    """Lightning's interval, 50 steps, would give this 120-step run 2 points, and a warning with a path in
    site-packages; the interval from the run's length gives 60 and is kept in config.yaml for a resume."""
    saved, points, messages = fit_folder(small_folder, "--trainer.max_epochs=12")
    assert saved == 2
    assert points["train/loss"] == 60 >= CURVE_POINTS
    assert not [message for message in messages if "log_every_n_steps" in message]


@pytest.mark.parametrize("how", ["flag", "config"])
def test_an_interval_given_by_a_flag_or_a_config_wins(small_folder, how):
    if how == "flag":
        given = ["--trainer.log_every_n_steps=5"]
    else:
        (small_folder / "every5.yaml").write_text("trainer:\n  log_every_n_steps: 5\n")
        given = ["--config", str(small_folder / "every5.yaml")]
    saved, points, _ = fit_folder(small_folder, "--trainer.max_epochs=3", *given)
    assert saved == 5
    assert points["train/loss"] == 6  # 30 steps; the interval of the run's length would give 30 points


# Training images of each config's data set (before the validation split): configs/*.yaml and the README. The
# image_folder.yaml figure is the PyTorch transfer-learning tutorial's ants-and-bees folder, whose recipe it follows.
TRAIN_IMAGES = {
    "IrisDataModule": 120,
    "MNISTDataModule": 60_000,
    "CIFAR10DataModule": 50_000,
    "TinyImageNetDataModule": 100_000,
    "ImageFolderDataModule": {"image_folder_digits": 4_000, "image_folder": 244},
}


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_config_logs_50_points_however_early_it_stops(config):
    """At the config's own length, and at the shortest run its early stopping allows (patience + 1 epochs)."""
    settings = yaml.safe_load(config.read_text())
    data = settings["data"]["init_args"]
    images = TRAIN_IMAGES[settings["data"]["class_path"].rsplit(".", 1)[-1]]
    images = images[config.stem] if isinstance(images, dict) else images
    val = data.get("val_size", 0.2 if "Iris" in settings["data"]["class_path"] else 0.1)
    val = round(images * val) if isinstance(val, float) else val
    steps = math.ceil((images - val) / data["batch_size"])
    epochs = shortest_run(settings["trainer"]["max_epochs"], settings["early_stopping"]["patience"])
    interval = settings["trainer"].get("log_every_n_steps") or log_interval(steps, epochs)
    assert interval <= steps  # a point every epoch, and nothing for Lightning to warn about
    assert epochs * steps // interval >= CURVE_POINTS


def test_the_interval_gives_50_points_or_lightnings_50_steps():
    assert log_interval(10, 12) == 2  # 120 steps: 60 points
    assert log_interval(430, 800) == 50  # a long run keeps Lightning's interval
    assert log_interval(3, 1000) == 3  # at least a point an epoch
    assert log_interval(7, 2) == 1  # a run of fewer than 50 steps: every step
    assert log_interval(100, -1, max_steps=500) == 10  # a run limited by steps
    assert log_interval(100, -1) == 50  # one without an end
    assert shortest_run(25, 10) == 11 and shortest_run(25, 30) == 25 and shortest_run(-1, 4, 2) == 10


def test_a_config_adding_callbacks_still_gets_the_lines_and_the_layer_summary(tmp_path):
    """Lightning appends its default bar and summary to the callbacks list a config gives: with one added by
    --trainer.callbacks+, they passed for the user's own and were kept (Rich frames in a file, metrics as layers)."""
    result = run_cli(
        "fit", "--config", IRIS, "--trainer.max_epochs=2", "--trainer.callbacks+=LearningRateMonitor", cwd=tmp_path
    )
    assert epoch_lines(result.stdout) == [(1, 2), (2, 2)]
    assert "net" in result.stdout and "train_acc" not in result.stdout
