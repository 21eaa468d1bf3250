"""Stopping a run loses at most the epoch in progress: Ctrl-C and SIGTERM sent to a real `lit-cs201 fit` leave a
whole `last.ckpt` from which `fit --ckpt_path last` ends exactly where the run would have ended, and a crash while a
checkpoint is being written never leaves a truncated file in place of a good one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, assert_same, curves_by_step, run_cli, snapshot
from lit_cs201.runs.checkpoint_io import SafeCheckpointIO
from synthetic import write_cifar10

IMAGES = [
    "--data.init_args.data_dir=data",
    "--data.init_args.verify_md5=false",  # synthetic CIFAR-10 files
    "--data.init_args.val_size=16",
    "--data.init_args.batch_size=16",
    "--trainer.limit_train_batches=3",
    "--trainer.precision=32-true",
]

CASES = {
    # A cluster scheduler's SIGTERM, on a run with model-side augmentation and a one-cycle schedule.
    "SIGTERM": (signal.SIGTERM, "cifar10", 5, IMAGES, "by SIGTERM"),
    # Ctrl-C in a terminal.
    "Ctrl-C": (signal.SIGINT, "iris", 40, [], "by Ctrl-C"),
    # SIGTERM to the first of two DDP processes: both stop at the same step, and the resumed run is DDP again.
    "SIGTERM, 2 processes": (
        signal.SIGTERM,
        "iris",
        40,
        ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"],
        "by SIGTERM",
    ),
}


def start_fit(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lit_cs201", "fit", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts a background job (pytest ... &) with Ctrl-C ignored, and the ignoring is inherited: the
        # run would never see the SIGINT this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum, config, epochs, extra, said", CASES.values(), ids=CASES.keys())
def test_interrupted_fit_continues_exactly_from_last(tmp_path, signum, config, epochs, extra, said):
    args = ["--config", str(CONFIGS / f"{config}.yaml"), f"--trainer.max_epochs={epochs}", *extra]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for folder in (straight, stopped):
        folder.mkdir()
        if config == "cifar10":
            write_cifar10(folder / "data", per_batch=16, n_test=16)
    run_cli("fit", *args, cwd=straight, process=True)  # DDP starts its processes from the command line

    process = start_fit(args, cwd=stopped)
    last = stopped / "runs" / config / "version_0" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 128 + signum, stderr[-3000:]
    assert f"Interrupted {said} in epoch" in stdout
    assert f"lit-cs201 fit --ckpt_path runs/{config}/version_0/last.ckpt" in stdout
    interrupted_at = torch.load(last, weights_only=True)["epoch"]
    assert interrupted_at < epochs - 1
    assert not list(last.parent.glob(".*.partial"))

    run_cli("fit", "--ckpt_path", "last", cwd=stopped, process=True)
    for name in ("last.ckpt", "best.ckpt"):
        a, b = (
            torch.load(folder / "runs" / config / "version_0" / name, weights_only=True)
            for folder in (straight, stopped)
        )
        assert_same(a, b, name)
    # The interrupted epoch logged some steps that the resumed run logs again, with the same values.
    curves = [curves_by_step(folder / "runs" / config / "version_0") for folder in (straight, stopped)]
    assert curves[0] == curves[1]


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    io = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.arange(1000.0)}, path)
    before = snapshot(tmp_path)

    real_save = torch.save

    def save_half_then_die(obj, f, *args, **kwargs):
        real_save({"epoch": 2, "weights": torch.zeros(1000)}, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt  # a second Ctrl-C, or the process being killed, half way through the write

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()

    assert snapshot(tmp_path) == before  # no partial file left, the old checkpoint untouched
    assert torch.load(path, weights_only=True)["epoch"] == 1
    io.save_checkpoint({"epoch": 3}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_every_checkpoint_the_cli_writes_goes_through_the_atomic_writer(tmp_path, monkeypatch):
    written = []
    real = SafeCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, *args, **kwargs):
        written.append(Path(path).resolve())
        real(self, checkpoint, path, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointIO, "save_checkpoint", recording)
    monkeypatch.chdir(tmp_path)
    from lit_cs201.cli.lightning_cli import main

    assert main(["fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=2"]) == 0
    run = tmp_path / "runs" / "iris" / "version_0"
    assert {p.name for p in run.glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
    assert set(written) == {(run / "best.ckpt").resolve(), (run / "last.ckpt").resolve()}


def test_ctrl_c_while_a_checkpoint_is_written_stops_after_it_is_whole(tmp_path, monkeypatch):
    """A Ctrl-C inside torch.save broke the file torch was writing: torch reported it as a RuntimeError ("unexpected
    pos"), and the run ended with a traceback and exit 1 instead of the stop that says how to continue."""
    real = torch.save

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"")
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, in the middle of the write
        real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted)
    path = tmp_path / "last.ckpt"
    with pytest.raises(KeyboardInterrupt):
        SafeCheckpointIO().save_checkpoint({"epoch": 3, "weights": torch.arange(1000.0)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 3
    assert not list(tmp_path.glob(".*.partial"))


def test_ctrl_c_between_an_epochs_checkpoint_and_its_logs_loses_no_point(tmp_path, monkeypatch):
    """Lightning writes an epoch's checkpoints (after validation) before it logs the epoch's training scores and
    learning rate. A Ctrl-C in between left a last.ckpt counting the epoch as done while its train/acc and train/lr
    points were never logged, by the stopped run or the resumed one: the Ctrl-C waits until they are."""
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    args = ["--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=4"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for folder in (straight, stopped):
        folder.mkdir()
    run_cli("fit", *args, cwd=straight)

    real = _LoggerConnector.update_train_epoch_metrics
    calls = []

    def ctrl_c_in_the_window(self):
        calls.append(self.trainer.current_epoch)
        if len(calls) == 2:  # the second epoch: its checkpoints are written, its training scores not yet logged
            os.kill(os.getpid(), signal.SIGINT)
        real(self)

    monkeypatch.setattr(_LoggerConnector, "update_train_epoch_metrics", ctrl_c_in_the_window)
    try:
        result = run_cli("fit", *args, cwd=stopped, check=False)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C once it has stopped
    monkeypatch.undo()
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-3000:]
    run = stopped / "runs" / "iris" / "version_0"
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 1
    assert "Interrupted by Ctrl-C in epoch" in result.stdout

    run_cli("fit", "--ckpt_path", "last", cwd=stopped)
    curves = [curves_by_step(folder / "runs" / "iris" / "version_0") for folder in (straight, stopped)]
    assert curves[0]["train/acc"].keys() == curves[1]["train/acc"].keys()
    assert curves[0] == curves[1]
