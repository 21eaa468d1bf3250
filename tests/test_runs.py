"""``lit-cs201 runs`` and what ``--ckpt_path best`` says: a new user's second day (three Iris fits of different
settings, a test of one) replayed in this process, then the list's formats, filter, sort, and damaged run folders."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, run_cli, scalars
from lit_cs201.runs.records import MAX_SUMMARY_BYTES, dataset_name

IRIS = str(CONFIGS / "iris.yaml")
QUIET = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
LR = "--model.init_args.optimizer.init_args.lr"
# Three settings a student tries on the second day; the last, the newest run, scores lowest.
SETTINGS = [("0.01", 12), ("0.05", 6), ("0.001", 3)]


@pytest.fixture(scope="module")
def day_two(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("day_two")
    for lr, epochs in SETTINGS:
        run_cli("fit", "--config", IRIS, f"{LR}={lr}", f"--trainer.max_epochs={epochs}", *QUIET, cwd=root)
    tested = run_cli("test", "--ckpt_path", "best", *QUIET, cwd=root)  # the README's way: the newest run's
    return {"root": root, "test": tested}


def runs_cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("runs", *args, cwd=root, check=check)


def as_json(root: Path, *args: str) -> list[dict]:
    return json.loads(runs_cli(root, "--format", "json", *args).stdout)


def best_val_acc(run: Path) -> float:
    """The score best.ckpt was chosen by, as its checkpoint callback saved it; the val/acc curve's highest value."""
    saved = torch.load(run / "best.ckpt", weights_only=True)
    best = "RunCheckpoint{'monitor': 'val/acc'"
    score = next(state["best_model_score"] for key, state in saved["callbacks"].items() if key.startswith(best))
    assert float(score) == pytest.approx(max(scalars(run)["val/acc"]))
    return float(score)


def test_the_second_day_lists_every_fit_with_its_best_and_the_tested_ones_test_score(day_two):
    root = day_two["root"]
    runs = root / "runs" / "iris"
    rows = as_json(root)
    assert [row["version"] for row in rows] == ["version_0", "version_1", "version_2"]  # oldest first
    for row, (lr, epochs), version in zip(rows, SETTINGS, sorted(runs.iterdir()), strict=True):
        assert row["experiment"] == "iris" and row["dataset"] == "Iris" and row["net"] == "mlp"
        assert row["lr"] == float(lr) and row["epochs"] == row["max_epochs"] == epochs and row["status"] == "done"
        assert row["best_val_acc"] == pytest.approx(best_val_acc(version), abs=1e-6)
        assert 0 < row["wall_time_s"] < 300 and row["path"] == f"runs/iris/{version.name}"
    # The test scored the newest run's best.ckpt; its test/acc is the one the test logged and printed.
    logged = scalars(runs / "version_2")["test/acc"][-1]  # in TensorBoard, in the run it tested
    assert f"{logged}"[:6] in day_two["test"].stdout
    assert rows[2]["test_acc"] == pytest.approx(logged) and rows[2]["tested"] == "best.ckpt"
    assert rows[0]["test_acc"] is None and rows[1]["test_acc"] is None
    started = [row["started"] for row in rows]
    assert started == sorted(started) and all(s.startswith(time.strftime("%Y-")) for s in started)

    # The same in CSV, with the columns docs/runs.md documents...
    table = list(csv.DictReader(io.StringIO(runs_cli(root, "--format", "csv").stdout)))
    assert list(table[0]) == list(rows[0]) and len(table) == 3
    assert [float(r["best_val_acc"]) for r in table] == pytest.approx([r["best_val_acc"] for r in rows])
    assert table[0]["test_acc"] == "" and float(table[2]["test_acc"]) == pytest.approx(logged)

    # ...and as an aligned table, ending with what to run next.
    out = runs_cli(root).stdout
    lines = out.splitlines()
    assert lines[0].split() == [
        "experiment", "version", "dataset", "net", "lr", "epochs", "best_val_acc", "test_acc", "wall_time",
        "started", "status",
    ]  # fmt: skip
    for line, row in zip(lines[1:4], rows, strict=True):
        assert line.split()[:7] == [
            "iris", row["version"], "Iris", "mlp", f"{row['lr']:g}", f"{row['epochs']}/{row['epochs']}",
            f"{row['best_val_acc']:.4f}",
        ]  # fmt: skip
        assert len(line) == len(lines[0]) or line.index("done") == lines[0].index("status")  # aligned
    assert f"{rows[2]['test_acc']:.4f}" in lines[3] and f"{rows[2]['test_acc']:.4f}" not in lines[1] + lines[2]
    top = max(rows, key=lambda r: r["best_val_acc"])
    assert f"Test it with:    lit-cs201 test --ckpt_path {top['path']}/best.ckpt" in out


def test_best_names_the_run_it_picked_and_an_older_run_that_scored_higher(day_two):
    rows = {row["version"]: row for row in as_json(day_two["root"])}
    newest, higher = rows["version_2"], max(rows.values(), key=lambda r: r["best_val_acc"])
    assert higher["version"] != "version_2" and higher["best_val_acc"] > newest["best_val_acc"]
    said = day_two["test"].stderr
    assert (
        f"--ckpt_path best: using runs/iris/version_2/best.ckpt (the newest of 3), val/acc "
        f"{newest['best_val_acc']:.4f}." in said
    )
    assert f"scored higher: {higher['path']}/best.ckpt (val/acc {higher['best_val_acc']:.4f})" in said


def test_best_says_nothing_of_other_runs_when_the_newest_scored_highest(day_two, tmp_path):
    shutil.copytree(day_two["root"] / "runs", tmp_path / "runs")
    for version in ("version_0", "version_1"):
        shutil.rmtree(tmp_path / "runs" / "iris" / version)
    result = run_cli("validate", "--ckpt_path", "best", *QUIET, cwd=tmp_path)
    assert "(the newest of 1), val/acc " in result.stderr and "scored higher" not in result.stderr


def test_the_filter_and_the_sort(day_two, tmp_path):
    shutil.copytree(day_two["root"] / "runs", tmp_path / "runs")
    shutil.copytree(tmp_path / "runs" / "iris" / "version_1", tmp_path / "runs" / "other" / "version_0")
    assert {row["experiment"] for row in as_json(tmp_path)} == {"iris", "other"}
    assert [(r["experiment"], r["version"]) for r in as_json(tmp_path, "other")] == [("other", "version_0")]
    assert len(as_json(tmp_path, "iris", "other")) == 4

    scores = [row["best_val_acc"] for row in as_json(tmp_path, "iris", "--sort", "best_val_acc")]
    assert scores == sorted(scores, reverse=True)  # highest first
    assert [r["lr"] for r in as_json(tmp_path, "iris", "--sort", "lr")] == [0.001, 0.01, 0.05]
    assert [r["lr"] for r in as_json(tmp_path, "iris", "--sort", "lr", "--reverse")] == [0.05, 0.01, 0.001]
    tested = as_json(tmp_path, "--sort", "test_acc")
    assert tested[0]["test_acc"] is not None and all(r["test_acc"] is None for r in tested[1:])  # blanks last

    wrong = runs_cli(tmp_path, "irs", check=False)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.strip() == (
        "lit-cs201: error: no experiment irs under runs/ (experiments there: iris, other); did you mean iris?"
    )
    assert runs_cli(tmp_path, "--sort", "speed", check=False).returncode == 2


def test_damaged_half_written_and_old_run_folders_are_listed_with_blank_cells(day_two, tmp_path):
    iris = tmp_path / "runs" / "iris"
    shutil.copytree(day_two["root"] / "runs", tmp_path / "runs")
    good = iris / "version_0"
    (iris / "version_1" / "summary.json").write_bytes(b'{"kind": "fit", "epochs": \xff\x00')  # cut off
    with open(iris / "version_2" / "summary.json", "wb") as huge:  # sparse: nothing is written to disk
        huge.truncate(100 * 1024 * 1024)
    shutil.copytree(good, iris / "version_3")  # an old run: no summary, settings from its config.yaml
    (iris / "version_3" / "summary.json").unlink()
    (iris / "version_4").mkdir()  # a run stopped while starting: its config only
    shutil.copy(good / "config.yaml", iris / "version_4")
    shutil.copytree(good, iris / "version_5")  # values of the wrong kind
    (iris / "version_5" / "summary.json").write_text(
        '{"kind": "fit", "epochs": -3, "best_val_acc": "high", "lr": NaN, "started": 1e300, "wall_time_s": true,'
        ' "net": ["mlp"], "status": "\\u001b[2J"}'
    )
    shutil.copytree(good, iris / "version_6")  # a run whose process died without a word
    record = json.loads((good / "summary.json").read_text())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {**record, "status": "running", "pid": int(dead.stdout)}
    (iris / "version_6" / "summary.json").write_text(json.dumps(record))
    (iris / "version_7").mkdir()  # not a run: nothing in it
    (iris / "version_2" / "test" / "version_1").mkdir(parents=True)
    (iris / "version_2" / "test" / "version_1" / "summary.json").write_text("[1, 2]")
    if hasattr(os, "mkfifo"):
        os.mkfifo(iris / "version_4" / "summary.json")  # would block a reader that waits on it

    result = runs_cli(tmp_path, "--format", "json")
    rows = {row["version"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == [f"version_{i}" for i in range(7)]
    assert rows["version_1"]["best_val_acc"] is None and rows["version_1"]["dataset"] is not None  # from config
    assert rows["version_2"]["best_val_acc"] is None and rows["version_2"]["test_acc"] is not None
    old = rows["version_3"]
    assert (old["dataset"], old["net"], old["lr"], old["max_epochs"]) == ("Iris", "mlp", 0.01, 12)
    assert old["epochs"] is None and old["best_val_acc"] is None and old["started"] is not None
    assert rows["version_4"]["dataset"] == "Iris" and rows["version_4"]["status"] is None
    assert all(rows["version_5"][k] is None for k in ("epochs", "best_val_acc", "lr", "wall_time_s", "net", "status"))
    assert rows["version_5"]["started"] is not None  # the config's time instead
    assert rows["version_6"]["status"] == "killed"
    assert rows["version_6"]["best_val_acc"] == rows["version_0"]["best_val_acc"]
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 3 + hasattr(os, "mkfifo")
    assert all(w.startswith("Warning: runs/iris/version_") and w.endswith("; its cells are blank.") for w in warnings)
    assert any("version_1/summary.json: not valid JSON" in w for w in warnings)
    assert any(f"version_2/summary.json: larger than {MAX_SUMMARY_BYTES // 1024} KiB" in w for w in warnings)
    assert any("test/version_1/summary.json: not a summary" in w for w in warnings)
    table = runs_cli(tmp_path).stdout
    assert "\x1b" not in table and len(table.splitlines()) == 1 + 7 + 3


def test_a_run_still_training_a_stopped_one_and_a_resumed_one(day_two, tmp_path):
    shutil.copytree(day_two["root"] / "runs", tmp_path / "runs")
    run = tmp_path / "runs" / "iris" / "version_1"
    record = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**record, "status": "running", "pid": os.getpid()}))
    assert as_json(tmp_path)[1]["status"] == "running"

    before = as_json(tmp_path)[0]
    run_cli("fit", "--ckpt_path", "runs/iris/version_0/last.ckpt", "--trainer.max_epochs=14", *QUIET, cwd=tmp_path)
    after = as_json(tmp_path)[0]
    assert after["version"] == "version_0" and after["epochs"] == after["max_epochs"] == 14
    assert after["started"] == before["started"] and after["wall_time_s"] > before["wall_time_s"]
    assert after["best_val_acc"] >= before["best_val_acc"]

    exploding = ['--model.init_args.optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}',
                 '--model.init_args.lr_scheduler={"class_path": "torch.optim.lr_scheduler.ExponentialLR", '
                 '"init_args": {"gamma": 10.0}}']  # fmt: skip
    assert run_cli("fit", "--config", IRIS, *exploding, *QUIET, cwd=tmp_path, check=False).returncode == 1
    stopped = as_json(tmp_path, "--sort", "version")[-1]
    last = torch.load(tmp_path / stopped["path"] / "last.ckpt", weights_only=True)
    assert stopped["status"] == "stopped" and stopped["epochs"] == last["epoch"] + 1


def test_the_dataset_column_names_an_image_folder_by_its_folder():
    assert dataset_name("lit_cs201.data.ImageFolderDataModule", "data/digits/") == "ImageFolder (digits)"
    assert dataset_name("lit_cs201.data.MNISTDataModule", "data") == "MNIST"
    assert dataset_name(None) is None and dataset_name("x.Evil\x1b[2JDataModule") == "Evil\\x1b[2J"


def test_no_runs_yet_is_a_sentence_and_an_empty_list_for_scripts(tmp_path):
    result = runs_cli(tmp_path)
    assert result.stdout == "" and result.stderr.startswith("No runs: the folder runs does not exist.")
    assert result.stderr.strip().endswith(".")
    (tmp_path / "runs").mkdir()
    assert runs_cli(tmp_path).stderr.startswith("No runs under runs yet. Train one with: lit-cs201 fit --config")
    assert runs_cli(tmp_path, "--format", "json").stdout.strip() == "[]"
    assert runs_cli(tmp_path, "--format", "csv").stdout.startswith("experiment,version,dataset,net,lr,epochs,")


def test_runs_is_listed_in_the_help_and_answers_without_torch(day_two, tmp_path):
    assert "lit-cs201 runs" in run_cli("--help", cwd=tmp_path).stdout
    # 100 run folders, copies of the real ones (checkpoints, events, tests and all), listed in a fresh process.
    for i in range(100):
        source = day_two["root"] / "runs" / "iris" / f"version_{i % 3}"
        shutil.copytree(source, tmp_path / "runs" / f"exp{i % 4}" / f"version_{i}")
    probe = (
        "import sys, time; start = time.perf_counter(); from lit_cs201.cli.command import main;"
        "status = main(['runs']);"
        "assert not {'torch', 'lightning', 'tensorboard'} & set(sys.modules), 'imported torch';"
        "print(f'{time.perf_counter() - start:.3f}', file=sys.stderr); sys.exit(status)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 100 + 3
    assert float(result.stderr.strip().splitlines()[-1]) < 3  # about 0.05 s when the machine is idle


def test_odd_names_and_numbers_in_run_folders_are_data(day_two, tmp_path):
    """A process id no process can have, a resume config numbered with a superscript digit, and a folder name with
    an escape code: listed, escaped in every format, never a traceback."""
    good = day_two["root"] / "runs" / "iris" / "version_0"
    odd = tmp_path / "runs" / "esc\x1b[31mRED"
    shutil.copytree(good, odd / "version_0")
    record = json.loads((odd / "version_0" / "summary.json").read_text())
    (odd / "version_0" / "summary.json").write_text(json.dumps({**record, "status": "running", "pid": 2**40}))
    (odd / "version_0" / "config-².yaml").write_text("trainer: {max_epochs: 1}\n")

    rows = as_json(tmp_path)
    assert [row["status"] for row in rows] == ["running"]  # 2**40 is no process: it cannot be told dead either
    assert rows[0]["experiment"] == "esc\\x1b[31mRED" and rows[0]["max_epochs"] == 12  # config-².yaml: not a resume
    assert "\x1b" not in runs_cli(tmp_path, "--format", "csv").stdout


def test_a_runs_folder_that_is_a_file_is_bad_input(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    result = runs_cli(tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.strip().endswith(
        "is a file; give the folder the runs are in (runs by default)."
    )
