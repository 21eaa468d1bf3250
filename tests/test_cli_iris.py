"""The foundation, end to end through the real command: fit, checkpoints, evaluation from a checkpoint alone,
best/last resolution, resume, predictions, and the clear refusal of bad input."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from helpers import CONFIGS, run_cli, scalars
from lit_cs201.data import IrisDataModule
from lit_cs201.models import Classifier

EPOCHS = 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short Iris run, shared by the tests that only read it."""
    work = tmp_path_factory.mktemp("iris")
    result = run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), f"--trainer.max_epochs={EPOCHS}", cwd=work)
    return work, work / "runs" / "iris" / "version_0", result


def test_fit_writes_checkpoints_config_and_curves(trained):
    _, run, result = trained
    for name in ("best.ckpt", "last.ckpt", "config.yaml"):
        assert (run / name).is_file(), name
    curves = scalars(run)
    for tag in ("train/loss", "val/loss", "val/acc", "val/acc_best"):
        assert tag in curves, f"{tag} missing from {sorted(curves)}"
    assert len(curves["val/acc"]) == EPOCHS
    assert curves["val/acc_best"] == [max(curves["val/acc"][: i + 1]) for i in range(EPOCHS)]
    assert f"Best checkpoint: runs/iris/version_0/best.ckpt (val/acc {max(curves['val/acc']):.4f})" in result.stdout
    last = torch.load(run / "last.ckpt", weights_only=True)
    assert last["epoch"] == EPOCHS - 1


def test_checkpoints_hold_plain_hyperparameters(trained):
    _, run, _ = trained
    checkpoint = torch.load(run / "best.ckpt", weights_only=True)  # fails on a Path, module or class inside
    assert checkpoint["hyper_parameters"]["_class_path"] == "lit_cs201.models.Classifier"
    assert checkpoint["datamodule_hyper_parameters"]["_class_path"] == "lit_cs201.data.IrisDataModule"


def test_test_from_checkpoint_alone_reproduces_the_selected_model(trained, tmp_path):
    work, run, _ = trained
    best = run / "best.ckpt"
    result = run_cli("test", "--ckpt_path", str(best), cwd=tmp_path)  # another folder, no config
    curves = scalars(run)  # the test's curves are in the run it tested
    reported = curves["test/acc"][-1]

    # The same checkpoint evaluated directly, in this process.
    model = Classifier.load_from_checkpoint(best, map_location="cpu").eval()
    data = IrisDataModule()
    data.setup("test")
    x, y = data.test_set.tensors
    with torch.no_grad():
        expected = (model(x).argmax(dim=1) == y).float().mean().item()
    assert reported == pytest.approx(expected)
    for name in IrisDataModule.class_names:
        assert f"test/acc/{name}" in curves
    assert "test/acc" in result.stdout


@pytest.mark.parametrize("which", ["best", "last"])
def test_best_and_last_resolve_to_the_newest_run(trained, tmp_path, which):
    work, run, _ = trained
    runs = tmp_path / "runs"
    shutil.copytree(work / "runs" / "iris", runs / "iris")
    older = runs / "iris" / "version_0"
    newer = runs / "other" / "version_0"
    newer.mkdir(parents=True)
    shutil.copy(older / f"{which}.ckpt", newer / f"{which}.ckpt")
    result = run_cli("test", "--ckpt_path", which, cwd=tmp_path)
    assert f"using runs/other/version_0/{which}.ckpt" in result.stderr
    assert (newer / "test" / "version_0").is_dir()

    # A config naming the experiment narrows the search to it.
    result = run_cli("test", "--config", str(CONFIGS / "iris.yaml"), "--ckpt_path", which, cwd=tmp_path)
    assert f"using runs/iris/version_0/{which}.ckpt" in result.stderr


def test_fit_resumes_the_run_from_last(trained, tmp_path):
    work, _, _ = trained
    shutil.copytree(work / "runs", tmp_path / "runs")
    run = tmp_path / "runs" / "iris" / "version_0"
    config_before = (run / "config.yaml").read_text()
    steps_before = torch.load(run / "last.ckpt", weights_only=True)["global_step"]

    run_cli("fit", "--ckpt_path", "last", f"--trainer.max_epochs={EPOCHS + 3}", cwd=tmp_path)

    last = torch.load(run / "last.ckpt", weights_only=True)
    assert last["epoch"] == EPOCHS + 2
    assert last["global_step"] == steps_before * (EPOCHS + 3) // EPOCHS  # continued, not restarted
    assert not (tmp_path / "runs" / "iris" / "version_1").exists()
    assert (run / "config.yaml").read_text() == config_before
    assert (run / "config-1.yaml").is_file()
    assert len(scalars(run)["val/acc"]) == EPOCHS + 3


def test_predict_writes_a_csv_in_the_run_folder(trained, tmp_path):
    work, run, _ = trained
    result = run_cli("predict", "--ckpt_path", str(run / "best.ckpt"), cwd=tmp_path)
    path = run / "predict" / "version_0" / "predictions.csv"
    assert str(path.relative_to(work)) in result.stdout + result.stderr or str(path) in result.stdout + result.stderr
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 30
    assert set(rows[0]) == {"index", "true_label", "predicted", "probability"}
    assert {r["predicted"] for r in rows} <= set(IrisDataModule.class_names)
    assert all(0 < float(r["probability"]) <= 1 for r in rows)
    accuracy = sum(r["true_label"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy > 0.5
