"""Run folders written by release 0.1 keep working: their checkpoints test and predict, the run resumes, and
``lit-cs201 runs`` lists it.

The fixture is a 3-epoch Iris fit and a test of its best checkpoint, made by the 0.1 code (before the modules moved
into folders by role). Its ``config.yaml`` names the logger by its 0.1 class path, ``lit_cs201.loggers
.TensorBoardLogger``; its checkpoints name ``lit_cs201.models.Classifier`` and ``lit_cs201.data.IrisDataModule`` and
the callbacks' states by their 0.1 class names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "release_0_1"
QUIET = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")


@pytest.fixture
def old_runs(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_the_config_names_the_loggers_old_class_path():
    assert (
        "class_path: lit_cs201.loggers.TensorBoardLogger"
        in (FIXTURE / "runs" / "iris" / "version_0" / "config.yaml").read_text()
    )


def test_an_old_best_checkpoint_tests_and_predicts(old_runs):
    run = old_runs / "runs" / "iris" / "version_0"
    tested = run_cli("test", "--ckpt_path", "best", *QUIET, cwd=old_runs)
    assert "runs/iris/version_0/best.ckpt" in tested.stderr
    summary = json.loads((run / "test" / "version_1" / "summary.json").read_text())
    assert summary["checkpoint"] == "best.ckpt" and 0.0 <= summary["test_acc"] <= 1.0
    run_cli("predict", "--ckpt_path", str(run / "best.ckpt"), *QUIET, cwd=old_runs)
    rows = (run / "predict" / "version_0" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 30  # a header, then the 30 flowers of Iris's test split


def test_an_old_run_resumes_in_its_own_folder_with_its_own_settings(old_runs):
    run = old_runs / "runs" / "iris" / "version_0"
    run_cli("fit", "--ckpt_path", "last", "--trainer.max_epochs=5", *QUIET, cwd=old_runs)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["epochs"], summary["max_epochs"]) == ("done", 5, 5)
    assert (run / "config-1.yaml").is_file() and not (old_runs / "runs" / "iris" / "version_1").exists()


def test_the_list_of_runs_shows_the_old_run_with_its_test(old_runs):
    listed = json.loads(run_cli("runs", "--format", "json", cwd=old_runs).stdout)
    (row,) = listed
    assert (row["experiment"], row["version"], row["epochs"]) == ("iris", "version_0", 3)
    assert row["test_acc"] == pytest.approx(0.7, abs=1e-6)
