"""The learning-rate finder through the real command: ``lit-cs201 lr_find`` suggests a rate, writes its curve and
prints the fit command that trains with it; Lightning's ``LearningRateFinder`` callback in a fit trains at what it
found; bad settings are one line and leave nothing behind."""

from __future__ import annotations

import re
import shlex

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import CONFIGS, run_cli, scalars
from synthetic import write_mnist

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SWEEP = ["--num_training=24", *QUIET]


def tiny_mnist(tmp_path) -> list[str]:
    """12 training digits in MNIST's own files, in batches of 4: the config's one-cycle schedule has steps to span."""
    write_mnist(tmp_path / "data", n_train=16, n_test=8)
    return [
        f"--data.init_args.data_dir={tmp_path / 'data'}",
        "--data.init_args.val_size=4",
        "--data.init_args.batch_size=4",
        "--trainer.precision=32-true",
    ]


def printed_fit(stdout: str) -> tuple[list[str], float]:
    """The fit command lr_find printed, as arguments after ``lit-cs201``, and the rate it suggested."""
    suggested = float(re.search(r"Suggested learning rate: (\S+),", stdout).group(1))
    command = shlex.split(re.search(r"Train with it: +(.+)", stdout).group(1))
    assert command[:2] == ["lit-cs201", "fit"], command
    return command[1:], suggested


def figures(run) -> list[str]:
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    return events.Tags()["images"]


@pytest.mark.parametrize(
    ("config", "flag"),
    [
        ("iris.yaml", "--model.init_args.optimizer.init_args.lr"),  # Adam at a constant rate
        ("mnist.yaml", "--model.init_args.lr_scheduler.init_args.max_lr"),  # a one-cycle schedule sets the rate
    ],
)
def test_lr_find_suggests_a_rate_that_the_printed_fit_trains_with(config, flag, tmp_path):
    data = tiny_mnist(tmp_path) if config == "mnist.yaml" else []
    result = run_cli("lr_find", "--config", str(CONFIGS / config), *data, *SWEEP, cwd=tmp_path)
    fit, suggested = printed_fit(result.stdout)
    assert 1e-6 <= suggested <= 1
    assert fit[-2:] == [flag, f"{suggested:.3g}"] and "--num_training=24" not in fit

    experiment = config.removesuffix(".yaml")
    found = tmp_path / "runs" / experiment / "lr_find" / "version_0"
    assert (found / "lr_find.png").stat().st_size > 0
    assert (found / "lr_find.csv").read_text().startswith("step,lr,loss\n")
    curves = scalars(found)
    # One point a step, at growing rates, until the 24th or the step where the loss took off (MNIST's).
    assert 12 <= len(curves["lr_find/lr"]) <= 24 and curves["lr_find/lr"] == sorted(curves["lr_find/lr"])
    assert "lr_find/loss" in curves and figures(found) == ["lr_find/loss_vs_lr"]
    # Nothing trained is kept: no checkpoint (the sweep's own starting point included), no run of the experiment.
    assert not list(tmp_path.rglob("*.ckpt"))
    assert sorted(p.name for p in (tmp_path / "runs" / experiment).iterdir()) == ["lr_find"]

    # The printed command, run as printed (and shortened), trains at the suggested rate.
    run_cli(*fit, "--trainer.max_epochs=4", *QUIET, cwd=tmp_path)
    run = tmp_path / "runs" / experiment / "version_0"
    assert (run / "best.ckpt").is_file()
    rates = scalars(run)["train/lr"]
    assert max(rates) == pytest.approx(suggested, rel=1e-6)  # a one-cycle schedule peaks at it


def test_the_learning_rate_finder_callback_in_a_fit_trains_at_its_suggestion(tmp_path):
    result = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "mnist.yaml"),
        *tiny_mnist(tmp_path),
        "--trainer.max_epochs=2",  # fewer steps than the sweep's: the sweep is not bounded by the run's length
        "--trainer.callbacks+=LearningRateFinder",
        "--trainer.callbacks.init_args.num_training_steps=24",
        *QUIET,
        cwd=tmp_path,
    )
    suggested = float(re.search(r"Learning-rate finder: suggests (\S+),", result.stdout).group(1))
    run = tmp_path / "runs" / "mnist" / "version_0"
    assert (run / "best.ckpt").is_file() and (run / "lr_find.png").is_file()
    curves = scalars(run)
    assert len(curves["lr_find/lr"]) >= 12  # the sweep went past the run's 6 steps
    # The one-cycle schedule was built again around the suggestion: its warm-up starts at a 25th of it (div_factor)
    # and rises towards it (6 steps sample the peak only roughly).
    assert curves["train/lr"][0] == pytest.approx(suggested / 25, rel=5e-3)
    assert suggested / 2 < max(curves["train/lr"]) <= suggested * 1.005


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min_lr=0.1", "--max_lr=0.01"], "--max_lr must be above --min_lr"),
        (["--num_training=0"], "--num_training must be at least 20"),
        (["--min_lr=0"], "--min_lr must be a rate above 0"),
        (["--ckpt_path=best"], "unrecognized option --ckpt_path"),
        (["runs/iris/version_0/best.ckpt"], "unexpected argument 'runs/iris/version_0/best.ckpt'"),  # no --ckpt_path
        (["--trainer.logger=false"], "leave the logger on"),  # its curve would land in the current folder
        # Adam at rates of 10 and more: the loss explodes at once, and there is no fall to suggest a rate from.
        (["--min_lr=10", "--max_lr=1000", "--num_training=20"], "lr_find found no rate"),
    ],
)
def test_bad_settings_are_one_line_and_leave_nothing(flags, message, tmp_path):
    result = run_cli("lr_find", "--config", str(CONFIGS / "iris.yaml"), *flags, *QUIET, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lit-cs201")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_a_sweep_at_once(tmp_path, monkeypatch):
    """Lightning's sweep saves a checkpoint to start from and then runs with its own callback only: a Ctrl-C held
    back from that save on (as an epoch's are, until its logs are written) was never let go, and the sweep ran to
    its end and exited 0."""
    import os
    import signal

    from lightning.pytorch.tuner.lr_finder import _LRCallback

    real = _LRCallback.on_train_batch_end
    steps = []

    def ctrl_c_at_step_30(self, trainer, *args, **kwargs):
        steps.append(trainer.global_step)
        if len(steps) == 30:
            os.kill(os.getpid(), signal.SIGINT)
        real(self, trainer, *args, **kwargs)

    monkeypatch.setattr(_LRCallback, "on_train_batch_end", ctrl_c_at_step_30)
    try:
        result = run_cli(
            "lr_find", "--config", str(CONFIGS / "iris.yaml"), "--num_training=400", "--early_stop_threshold=null",
            cwd=tmp_path, check=False,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C once it has stopped
    assert result.returncode == 128 + signal.SIGINT, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(steps) == 30
    assert "Suggested learning rate" not in result.stdout


def test_a_sweep_written_to_files_has_no_bar_frames(tmp_path):
    # As under nohup or a batch job: stdout and stderr are files, not terminals; the sweep's tqdm bar stays off.
    result = run_cli("lr_find", "--config", str(CONFIGS / "iris.yaml"), *SWEEP, cwd=tmp_path, process=True)
    assert "Suggested learning rate" in result.stdout
    assert "\r" not in result.stdout + result.stderr and "Finding best initial lr" not in result.stderr
