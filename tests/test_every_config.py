"""Every config in configs/ builds its model and data and trains a step on its dataset, written in the real on-disk
format (MNIST IDX files, CIFAR-10 pickles, the Tiny ImageNet tree, an image folder), through the real command; and
the checkpoint it writes exports to an ONNX file that gives its answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fake_image_folder import write_image_folder
from fake_tiny_imagenet import make_fake_tiny_imagenet
from helpers import CONFIGS, run_cli, scalars
from lit_cs201.course import tiny_imagenet_prepare
from synthetic import write_cifar10, write_mnist

ONE_STEP = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def write_data(dataset: str, root: Path) -> list[str]:
    """A few images of ``dataset`` in its real format under ``root``; the flags that point the config at them."""
    if dataset == "IrisDataModule":
        return []  # ships with scikit-learn
    if dataset == "MNISTDataModule":
        write_mnist(root, n_train=16, n_test=8)
        return [f"--data.init_args.data_dir={root}", "--data.init_args.val_size=4"]
    if dataset == "CIFAR10DataModule":
        write_cifar10(root, per_batch=4, n_test=8)
        return [f"--data.init_args.data_dir={root}", "--data.init_args.val_size=4", "--data.init_args.verify_md5=false"]
    if dataset == "TinyImageNetDataModule":
        make_fake_tiny_imagenet(root, classes=2, train_per_class=4, val_per_class=2)
        tiny_imagenet_prepare.prepare(root)
        return [f"--data.init_args.data_dir={root}", "--data.init_args.val_size=2"]
    if dataset == "ImageFolderDataModule":
        write_image_folder(root, splits=("train", "test"), per_class=4)
        return [f"--data.init_args.data_dir={root}", "--data.init_args.val_size=2"]
    raise AssertionError(f"no data writer for {dataset}: add one here for the new config")


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_the_config_trains_a_step_on_its_data(config, tmp_path):
    settings = yaml.safe_load(config.read_text())
    dataset = settings["data"]["class_path"].rsplit(".", 1)[-1]
    data = write_data(dataset, tmp_path / "data")
    small = ["--data.init_args.batch_size=2"]
    if settings["model"]["init_args"].get("pretrained"):
        small.append("--model.init_args.pretrained=null")  # ImageNet weights cannot be downloaded here
    run_cli("fit", "--config", str(config), *data, *small, *ONE_STEP, cwd=tmp_path)

    experiment = settings["trainer"]["logger"]["init_args"]["name"]
    run = tmp_path / "runs" / experiment / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["net"] == settings["model"]["init_args"]["net"]
    assert saved["trainer"]["precision"] in ("32-true", "bf16-mixed", "16-mixed")  # resolved when the config has none
    assert {"train/loss", "val/acc"} <= set(scalars(run))
    assert (run / "last.ckpt").is_file()

    # Its checkpoint exports: the file gives the checkpoint's classes on its test inputs, at batch sizes 1, 2 and 1.
    result = run_cli("export", "--ckpt_path", str(run / "last.ckpt"), "--check_images", "4", cwd=tmp_path)
    assert re.search(r"the top-1 class agrees on (\d+) of \1 \(100.00 %\)", result.stdout), result.stdout
    assert (run / "last.onnx").is_file()
