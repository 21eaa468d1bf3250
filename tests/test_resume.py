"""`fit --ckpt_path last` continues exactly: a run stopped after k epochs and resumed to N ends where a run of N
epochs that was never stopped ends, down to the last bit of every weight, optimizer and schedule state, loop counter,
early-stopping counter and best checkpoint, and draws the same curves."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import CONFIGS, assert_same, run_cli, scalars
from synthetic import write_cifar10

STEP_LR = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2, "gamma": 0.5}}

CASES = {
    # Shuffled batches, an epoch-wise schedule and early stopping that is counting when the run stops.
    "iris": (
        "iris",
        6,
        3,
        [f"--model.init_args.lr_scheduler={json.dumps(STEP_LR)}", "--early_stopping.patience=5"],
    ),
    # The course's CIFAR-10 recipe: random crop, flip, rotation and colour jitter on the model's side, momentum SGD.
    # (A one-cycle schedule cannot be stretched from k to N epochs; the interrupt tests resume one exactly.)
    "cifar10 images": (
        "cifar10_seed",
        4,
        2,
        [
            "--data.init_args.data_dir=data",
            "--data.init_args.verify_md5=false",  # synthetic CIFAR-10 files
            "--data.init_args.val_size=16",
            "--data.init_args.batch_size=16",
            "--trainer.limit_train_batches=3",
            "--trainer.log_every_n_steps=1",
        ],
    ),
}


@pytest.mark.parametrize("config, epochs, stop_after, extra", CASES.values(), ids=CASES.keys())
def test_resumed_run_equals_uninterrupted_run(tmp_path, config, epochs, stop_after, extra):
    args = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), *extra]
    work = {}
    for name in ("straight", "resumed"):
        work[name] = tmp_path / name
        work[name].mkdir()
        if config.startswith("cifar10"):
            write_cifar10(work[name] / "data", per_batch=16, n_test=16)

    straight = run_cli(*args, f"--trainer.max_epochs={epochs}", cwd=work["straight"])
    run_cli(*args, f"--trainer.max_epochs={stop_after}", cwd=work["resumed"])
    resumed = run_cli("fit", "--ckpt_path", "last", f"--trainer.max_epochs={epochs}", cwd=work["resumed"])

    runs = {name: folder / "runs" / config / "version_0" for name, folder in work.items()}
    assert not (work["resumed"] / "runs" / config / "version_1").exists()  # continued in the same folder
    for checkpoint in ("last.ckpt", "best.ckpt"):
        a, b = (torch.load(runs[name] / checkpoint, weights_only=True) for name in ("straight", "resumed"))
        assert a["epoch"] == epochs - 1 or checkpoint == "best.ckpt"
        assert_same(a, b, checkpoint)
    assert straight.stdout.splitlines()[-2:] == resumed.stdout.splitlines()[-2:]  # "Best checkpoint: ..."

    # Every curve continues seamlessly.
    curves = {name: scalars(run) for name, run in runs.items()}
    assert curves["straight"] == curves["resumed"]
    assert len(curves["resumed"]["val/acc"]) == epochs


def test_a_one_cycle_run_is_not_stretched_on_resume(tmp_path):
    """A one-cycle schedule is sized for the run's length; resuming with more epochs would run off its end."""
    one_cycle = {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.05}}
    iris = ["--config", str(CONFIGS / "iris.yaml"), f"--model.init_args.lr_scheduler={json.dumps(one_cycle)}"]
    run_cli("fit", *iris, "--trainer.max_epochs=2", cwd=tmp_path)
    last = tmp_path / "runs" / "iris" / "version_0" / "last.ckpt"
    before = last.read_bytes()

    result = run_cli("fit", "--ckpt_path", "last", "--trainer.max_epochs=4", cwd=tmp_path, check=False)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("lit-cs201: error: the run being resumed has a one-cycle schedule of 12 optimizer")
    assert "max_epochs 4" in message and "make 24" in message
    assert last.read_bytes() == before
