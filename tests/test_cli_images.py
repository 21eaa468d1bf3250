"""The MNIST and CIFAR-10 configs, seed and improved, through the real command on raw-format files."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import CONFIGS, run_cli, scalars
from synthetic import write_cifar10, write_mnist

TINY = [
    "--data.init_args.data_dir=data",
    "--data.init_args.val_size=16",
    "--data.init_args.batch_size=16",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("images")
    write_mnist(work / "data", n_train=64, n_test=40)
    write_cifar10(work / "data", per_batch=16, n_test=40)
    return work


@pytest.mark.parametrize(
    "config, names",
    [
        ("mnist_seed", ["0", "9"]),
        ("mnist", ["0", "9"]),
        ("cifar10_seed", ["airplane", "truck"]),
        ("cifar10", ["airplane", "truck"]),
    ],
)
def test_fit_then_test_from_the_checkpoint(workdir, config, names):
    synthetic = ["--data.init_args.verify_md5=false"] if config.startswith("cifar10") else []
    fit = run_cli("fit", "--config", str(CONFIGS / f"{config}.yaml"), *TINY, *synthetic, cwd=workdir)
    run = workdir / "runs" / config / "version_0"
    assert f"Best checkpoint: runs/{config}/version_0/best.ckpt" in fit.stdout
    assert {"train/loss", "val/acc", "val/loss"} <= set(scalars(run))

    test = run_cli("test", "--ckpt_path", str(run / "best.ckpt"), cwd=workdir)
    assert "Per-class test accuracy" in test.stdout
    curves = scalars(run)  # in TensorBoard, the test's curves and figures are in the run it tested
    assert {"test/acc", "test/acc_top5"} <= set(curves)
    assert {f"test/acc/{name}" for name in names} <= set(curves)
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"test/predictions", "test/confusion_matrix"} <= set(events.Tags()["images"])
