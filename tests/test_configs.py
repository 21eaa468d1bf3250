"""The recipes run through the real command on their data in the real file format: configs/cifar10_fast.yaml (Page's
ResNet-9, on the source's schedule), configs/mnist.yaml and configs/mnist_resnet18.yaml."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import yaml

from helpers import CONFIGS, run_cli, scalars
from synthetic import write_cifar10, write_mnist

FAST = CONFIGS / "cifar10_fast.yaml"


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_cifar10_fast_trains_a_step_and_tests_the_last_checkpoint(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=16, n_test=20)  # the official pickles: 80 training images
    tiny = [
        "--data.init_args.verify_md5=false",  # synthetic files
        "--data.init_args.batch_size=16",
        "--data.init_args.val_size=16",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.log_every_n_steps=1",
    ]
    run_cli("fit", "--config", str(FAST), *tiny, cwd=tmp_path)
    run = tmp_path / "runs" / "cifar10_fast" / "version_0"
    assert {"train/loss", "val/acc"} <= set(scalars(run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["net"] == "resnet9"
    assert saved["data"]["init_args"]["train_augment"] == "cifar_resnet9"

    test = run_cli("test", "--ckpt_path", "last", cwd=tmp_path)  # the header's command
    assert "Per-class test accuracy" in test.stdout
    assert "test/acc" in scalars(run)  # the test's curves are in the run it tested


def test_cifar10_fast_has_the_sources_rate_at_every_step():
    config = yaml.safe_load(FAST.read_text())
    data, model = config["data"]["init_args"], config["model"]["init_args"]
    # The source's epoch: 97 full batches of 512 out of the 50,000 training images, 24 epochs.
    steps, left_over = divmod(50_000 - data["val_size"], data["batch_size"])
    assert (steps, left_over, config["trainer"]["max_epochs"]) == (97, 0, 24)
    schedule_args = model["lr_scheduler"]["init_args"]
    assert "total_steps" not in schedule_args  # the Classifier sizes the cycle to the run: 24 x 97 steps

    optimizer = _class(model["optimizer"]["class_path"])([torch.zeros(1)], **model["optimizer"]["init_args"])
    schedule = _class(model["lr_scheduler"]["class_path"])(optimizer, total_steps=24 * 97, **schedule_args)
    rates = []
    for _ in range(24 * 97):
        rates.append(optimizer.param_groups[0]["lr"])
        assert optimizer.param_groups[0]["momentum"] == 0.9
        optimizer.step()
        schedule.step()
    # dawn.py: the rate of optimizer step s = 1, 2, ... is PiecewiseLinear([0, 5, 24], [0, 0.4, 0])(s / 97).
    source = np.interp(np.arange(1, 24 * 97 + 1) / 97, [0, 5, 24], [0, 0.4, 0])
    np.testing.assert_allclose(rates, source, rtol=0, atol=1e-12)
    group = optimizer.param_groups[0]
    assert (group["nesterov"], group["weight_decay"]) == (True, 5e-4)


@pytest.mark.parametrize("name, net", [("mnist", "mnist_cnn"), ("mnist_resnet18", "resnet18")])
def test_mnist_recipes_train_a_step_on_mnist_files_and_test_the_best_checkpoint(tmp_path, name, net):
    write_mnist(tmp_path / "data", n_train=48, n_test=20)  # the official IDX files, where data_dir points
    tiny = [
        "--data.init_args.batch_size=16",
        "--data.init_args.val_size=16",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.log_every_n_steps=1",
    ]
    run_cli("fit", "--config", str(CONFIGS / f"{name}.yaml"), *tiny, cwd=tmp_path)
    run = tmp_path / "runs" / name / "version_0"
    assert {"train/loss", "val/acc"} <= set(scalars(run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["net"] == net

    test = run_cli("test", "--ckpt_path", str(run / "best.ckpt"), cwd=tmp_path)  # the header's command
    assert "Per-class test accuracy" in test.stdout
    assert "test/acc" in scalars(run)  # the test's curves are in the run it tested
