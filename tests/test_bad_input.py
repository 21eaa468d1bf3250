"""Every bad input the CLI knows of: exit status 2, one actionable line, and no file written or changed.

Each case runs the real entry point, ``lit_cs201.cli.main``, in this process (a fresh process costs seconds of
imports); one case also goes through ``python -m lit_cs201`` to show that the console path says the same. Every case
runs in its own copy of a folder holding what a user has on disk (a trained run, datasets, configs), and each
expected fragment is what a user needs to act: the offending key or value, and what to do or the valid choices.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fake_tiny_imagenet import make_fake_tiny_imagenet
from helpers import CONFIGS, run_cli, snapshot
from lit_cs201.cli import main
from lit_cs201.data.synthetic import write_cifar10, write_mnist

IRIS, MNIST, CIFAR10, TINY = (str(CONFIGS / f"{name}.yaml") for name in ("iris", "mnist", "cifar10", "tiny_imagenet"))
PREFIX = "lit-cs201: error: "
# A real one-epoch Iris run: outside runs/, so that `best`/`last` still find no checkpoint there.
RUN = "trained/iris/version_0"
BEST, LAST = f"{RUN}/best.ckpt", f"{RUN}/last.ckpt"
PRETRAINED_OFF = ["--model.init_args.pretrained", "null"]  # reach the Tiny ImageNet data without ResNet50 weights


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """What a user has on disk, written once: every case gets its own copy."""
    root = tmp_path_factory.mktemp("template")
    training = tmp_path_factory.mktemp("training")
    # In this process: a fresh one would first spend seconds importing what this one has loaded.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(training)
        assert main(["fit", "--config", IRIS, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]) == 0
    shutil.copytree(training / "runs" / "iris" / "version_0", root / RUN)
    best = (root / BEST).read_bytes()
    (root / "truncated.ckpt").write_bytes(best[: len(best) // 2])  # an interrupted copy of a real checkpoint

    earlier = root / "runs" / "iris" / "version_0"  # a run that never wrote a checkpoint
    earlier.mkdir(parents=True)
    (earlier / "config.yaml").write_text("seed_everything: 1\n")
    torch.save({"not": "a lightning checkpoint"}, earlier / "weights.ckpt")
    (root / "notes.ckpt").write_text("not a checkpoint at all")
    (root / "afile").write_text("a file where a folder is expected")

    iris = Path(IRIS).read_text()
    (root / "bad_key.yaml").write_text(iris.replace("max_epochs:", "max_epoch:"))
    (root / "bad_model.yaml").write_text(iris.replace("models.Classifier", "models.Nope"))
    (root / "bad_data.yaml").write_text(iris.replace("IrisDataModule", "IrisData"))
    (root / "not_yaml.yaml").write_text("trainer:\n  max_epochs: [1, 2\nmodel: {\n")

    write_mnist(root / "mnist", n_train=64, n_test=20)
    raw = write_mnist(root / "mnist_truncated", n_train=64, n_test=20) / "train-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:1000])
    batch = write_cifar10(root / "cifar10_truncated", per_batch=8, n_test=8) / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    make_fake_tiny_imagenet(root / "tiny_unprepared")  # as extracted from the zip; val/ not yet one folder per class
    return root


@pytest.fixture
def workdir(template, tmp_path, monkeypatch) -> Path:
    work = tmp_path / "work"
    shutil.copytree(template, work)
    monkeypatch.chdir(work)
    # An empty hub cache: the ResNet50 weights are missing here whatever this machine's own cache holds.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return work


def folders(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
MNIST_MD5 = "md5 f68b3c2dcbeaaa9fbdd348bbdeb94873"
PRESETS = ("none", "mnist_course", "cifar_crop_flip")

# id -> (arguments, fragments the last stderr line must contain besides the prefix)
CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # -- config: keys, files, types, choices, classes -------------------------------------------------------
    "unknown config key": (["fit", "--config", "bad_key.yaml"], ("trainer.max_epoch",)),
    "unknown flag": (["fit", "--config", IRIS, "--trainer.nope", "3"], ("--trainer.nope",)),
    "abbreviated flag": (["fit", "--config", IRIS, "--trainer.max_epoch", "3"], ("--trainer.max_epoch",)),
    "no subcommand": ([], ("fit", "validate", "test", "predict")),
    "unknown subcommand": (["train", "--config", IRIS], ("'train'", "fit", "test")),
    "missing config file": (["fit", "--config", "missing.yaml"], ("missing.yaml", "does not exist")),
    "config is a folder": (["fit", "--config", "trained"], ("trained", "not a file")),
    "config is not YAML": (["fit", "--config", "not_yaml.yaml"], ("not_yaml.yaml", "line 2")),
    "config is not YAML, resuming": (
        ["fit", "--config", "not_yaml.yaml", "--ckpt_path", "last"],
        ("not_yaml.yaml", "line 2"),
    ),
    "max_epochs not a number": (
        ["fit", "--config", IRIS, "--trainer.max_epochs", "many"],
        ("trainer.max_epochs", "int"),
    ),
    "max_epochs negative": (["fit", "--config", IRIS, "--trainer.max_epochs", "-5"], ("max_epochs", "-5")),
    "batch_size 0": (
        ["fit", "--config", IRIS, "--data.init_args.batch_size", "0"],
        ("batch_size must be at least 1", "got 0"),
    ),
    "batch_size negative": (
        ["fit", "--config", IRIS, "--data.init_args.batch_size", "-3"],
        ("batch_size must be at least 1", "got -3"),
    ),
    "unknown net": (
        ["fit", "--config", IRIS, "--model.init_args.net", "resnet9"],
        ("net", "resnet9", "mlp", "resnet18"),
    ),
    "unknown stem": (
        ["fit", "--config", IRIS, "--model.init_args.stem", "nope"],
        ("stem", "nope", "imagenet", "cifar"),
    ),
    "hidden_sizes not a list": (
        ["fit", "--config", IRIS, "--model.init_args.hidden_sizes", "ten"],
        ("hidden_sizes", "list"),
    ),
    "hidden layer of width 0": (
        ["fit", "--config", IRIS, "--model.init_args.hidden_sizes", "[0]", "--trainer.max_epochs", "1"],
        ("hidden_sizes", "[0]"),
    ),
    "hidden layer of negative width": (
        ["fit", "--config", IRIS, "--model.init_args.hidden_sizes", "[-1]"],
        ("hidden_sizes", "[-1]"),
    ),
    "unknown model class in config": (
        ["fit", "--config", "bad_model.yaml"],
        ("models.Nope", "lit_cs201.models.Classifier"),
    ),
    "unknown model class flag": (
        ["fit", "--config", IRIS, "--model", "lit_cs201.models.Nope"],
        ("models.Nope", "lit_cs201.models.Classifier"),
    ),
    "unknown datamodule class in config": (
        ["fit", "--config", "bad_data.yaml"],
        ("data.IrisData", "lit_cs201.data.IrisDataModule", "lit_cs201.data.MNISTDataModule"),
    ),
    "unknown datamodule class flag": (
        ["fit", "--config", IRIS, "--data", "lit_cs201.data.Nope"],
        ("data.Nope", "lit_cs201.data.IrisDataModule", "lit_cs201.data.MNISTDataModule"),
    ),
    "option the datamodule lacks": (
        ["fit", "--config", IRIS, "--data.init_args.data_dir", "x"],
        ("data_dir", "IrisDataModule"),
    ),
    "unknown optimizer class": (
        ["fit", "--config", IRIS, "--model.init_args.optimizer", "torch.optim.Nope"],
        ("optimizer", "torch.optim.Nope", "torch.optim.SGD"),
    ),
    "unknown optimizer argument": (
        ["fit", "--config", IRIS, "--model.init_args.optimizer.init_args.nope", "1"],
        ("optimizer", "nope"),
    ),
    # -- paths: datasets, splits, weights, logs -------------------------------------------------------------
    "MNIST missing offline": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=nothing_here"],
        (
            "train-images-idx3-ubyte not found in nothing_here/MNIST/raw",
            MNIST_URL,
            MNIST_MD5,
            "nothing_here/MNIST/raw/train-images-idx3-ubyte.gz",
        ),
    ),
    "MNIST missing with download off": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=nothing_here", "--data.init_args.download=false"],
        ("train-images-idx3-ubyte not found", "download is off", MNIST_URL, MNIST_MD5),
    ),
    "CIFAR-10 missing offline": (
        ["fit", "--config", CIFAR10, "--data.init_args.data_dir=nothing_here"],
        (
            "cifar-10-batches-py/data_batch_1",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "md5 c58f30108f718f92721af3b95e74349a",
            "nothing_here/cifar-10-python.tar.gz",
        ),
    ),
    "MNIST data_dir is a file": (["fit", "--config", MNIST, "--data.init_args.data_dir=afile"], ("data_dir", "afile")),
    "Tiny ImageNet data_dir is a file": (
        ["fit", "--config", TINY, "--data.init_args.data_dir=afile", *PRETRAINED_OFF],
        ("data_dir", "afile"),
    ),
    "MNIST raw file truncated": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist_truncated"],
        ("mnist_truncated/MNIST/raw/train-images-idx3-ubyte", "truncated"),
    ),
    "CIFAR-10 batch truncated": (
        [
            "fit",
            "--config",
            CIFAR10,
            "--data.init_args.data_dir=cifar10_truncated",
            "--data.init_args.verify_md5=false",
        ],
        ("cifar10_truncated/cifar-10-batches-py/data_batch_3", "not a readable CIFAR-10 batch", "delete"),
    ),
    "Tiny ImageNet not prepared": (
        ["fit", "--config", TINY, "--data.init_args.data_dir=tiny_unprepared", *PRETRAINED_OFF],
        (
            "tiny_unprepared/tiny-imagenet-200 is not prepared",
            "python -m lit_cs201.data.tiny_imagenet prepare tiny_unprepared",
        ),
    ),
    "Tiny ImageNet missing offline": (
        ["fit", "--config", TINY, "--data.init_args.data_dir=nothing_here", *PRETRAINED_OFF],
        (
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "md5 90528d7ca1a48142e341f4ef8d21d0de",
            "nothing_here/tiny-imagenet-200.zip",
        ),
    ),
    "Tiny ImageNet image_size without matching presets": (
        ["fit", "--config", TINY, "--data.init_args.data_dir=tiny_unprepared", "--data.init_args.image_size=64"],
        ("image_size is 64", "tiny_crop_flip"),
    ),
    "pretrained weights missing offline": (
        ["fit", "--config", TINY, "--data.init_args.data_dir=tiny_unprepared"],
        ("resnet50-11ad3fa6.pth", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", "hub/checkpoints"),
    ),
    "unknown pretrained weights": (
        ["fit", "--config", MNIST, "--model.init_args.pretrained", "IMAGENET1K_V9"],
        ("IMAGENET1K_V9", "IMAGENET1K_V1"),
    ),
    "pretrained weights file missing": (
        ["fit", "--config", MNIST, "--model.init_args.pretrained", "weights/r18.pth"],
        ("weights/r18.pth", "no such file"),
    ),
    "val_size not a count or fraction": (
        ["fit", "--config", IRIS, "--data.init_args.val_size", "2.5"],
        ("val_size", "2.5"),
    ),
    "val_size too large": (["fit", "--config", IRIS, "--data.init_args.val_size", "500"], ("val_size", "500")),
    "val_size 0": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist", "--data.init_args.val_size=0"],
        ("val_size", "got 0"),
    ),
    "val_size takes every image": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist", "--data.init_args.val_size=64"],
        ("val_size=64", "leaves 0 of 64"),
    ),
    "val_size not a number": (
        ["fit", "--config", MNIST, "--data.init_args.val_size=half"],
        ("val_size", "int", "float"),
    ),
    "test_size out of range": (["fit", "--config", IRIS, "--data.init_args.test_size", "1.5"], ("test_size", "1.5")),
    "log folder is a file": (
        ["fit", "--config", IRIS, "--trainer.logger.init_args.save_dir=afile"],
        ("save_dir", "afile"),
    ),
    # -- augmentation names -----------------------------------------------------------------------------------
    "unknown train augmentation": (
        ["fit", "--config", MNIST, "--data.init_args.train_augment", "nope"],
        ("train_augment", "'nope'", *PRESETS),
    ),
    "unknown eval augmentation": (
        ["fit", "--config", MNIST, "--data.init_args.eval_augment", "nope"],
        ("eval_augment", "'nope'", *PRESETS),
    ),
    # -- checkpoints ------------------------------------------------------------------------------------------
    "missing checkpoint": (["test", "--ckpt_path", "nope.ckpt"], ("nope.ckpt: no such file",)),
    "not a checkpoint": (["test", "--ckpt_path", "notes.ckpt"], ("notes.ckpt", "not a readable checkpoint")),
    "not a lightning checkpoint": (
        ["test", "--ckpt_path", "runs/iris/version_0/weights.ckpt"],
        ("weights.ckpt", "state_dict"),
    ),
    "truncated checkpoint": (
        ["test", "--ckpt_path", "truncated.ckpt"],
        ("truncated.ckpt", "not a readable checkpoint"),
    ),
    "run folder as checkpoint": (["test", "--ckpt_path", RUN], (RUN, "best.ckpt")),
    "best with no runs": (["test", "--ckpt_path", "best"], ("no best.ckpt", "lit-cs201 fit")),
    "last with no runs": (["fit", "--config", IRIS, "--ckpt_path", "last"], ("no last.ckpt under runs/iris",)),
    "test without checkpoint": (["test", "--config", IRIS], ("test needs --ckpt_path", "best/last")),
    "predict without checkpoint": (["predict"], ("predict needs --ckpt_path",)),
    "checkpoint of another model: data": (
        ["test", "--ckpt_path", BEST, "--data", "lit_cs201.data.MNISTDataModule", "--data.init_args.data_dir=mnist"],
        ("does not fit", BEST, "input_shape=[4]", "input_shape=[1, 28, 28]"),
    ),
    "checkpoint of another model: config": (
        ["test", "--ckpt_path", BEST, "--config", MNIST, "--data.init_args.data_dir=mnist"],
        ("does not fit", "net=mlp", "net=resnet18", "input_shape=[1, 28, 28]"),
    ),
    "checkpoint of another model: hidden_sizes": (
        ["test", "--ckpt_path", BEST, "--model.init_args.hidden_sizes", "[32]"],
        ("does not fit", "hidden_sizes=[10]", "hidden_sizes=[32]"),
    ),
    # The network asked for cannot even be built for the checkpoint's data: that is what the message says.
    "checkpoint of another model: net": (
        ["test", "--ckpt_path", BEST, "--model.init_args.net", "resnet18"],
        ("resnet18 needs image inputs", "[4]"),
    ),
    "resume with another model": (
        ["fit", "--ckpt_path", LAST, "--model.init_args.hidden_sizes", "[32]"],
        ("does not fit", "hidden_sizes=[10]", "hidden_sizes=[32]"),
    ),
    # -- devices (Lightning checks these while building the Trainer) ------------------------------------------
    "accelerator cuda without a GPU": (
        ["fit", "--config", IRIS, "--trainer.accelerator", "cuda"],
        ("accelerator", "cpu"),
    ),
    "accelerator gpu without a GPU": (["fit", "--config", IRIS, "--trainer.accelerator", "gpu"], ("gpu", "cpu")),
    "accelerator mps without Apple silicon": (
        ["fit", "--config", IRIS, "--trainer.accelerator", "mps"],
        ("accelerator", "cpu"),
    ),
    "accelerator tpu without a TPU": (["fit", "--config", IRIS, "--trainer.accelerator", "tpu"], ("tpu", "cpu")),
    "unknown accelerator": (["fit", "--config", IRIS, "--trainer.accelerator", "nope"], ("accelerator", "nope", "cpu")),
    "devices 0": (["fit", "--config", IRIS, "--trainer.devices", "0"], ("devices", "0")),
    "devices negative": (["fit", "--config", IRIS, "--trainer.devices", "-2"], ("devices", "-2")),
    "unknown strategy": (["fit", "--config", IRIS, "--trainer.strategy", "nope"], ("strategy", "nope", "ddp")),
    "unknown precision": (
        ["fit", "--config", IRIS, "--trainer.precision", "99"],
        ("trainer.precision", "32-true", "bf16-mixed"),
    ),
}


@pytest.mark.parametrize("args, expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_one_clear_line(workdir, capsys, args, expected):
    before = snapshot(workdir), folders(workdir)
    status = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err[-20:]
    last = err[-1]
    assert last.startswith(PREFIX)
    missing = [fragment for fragment in expected if fragment not in last]
    assert not missing, f"{missing} not in: {last}"
    assert (snapshot(workdir), folders(workdir)) == before


def test_the_console_command_refuses_the_same_way(workdir):
    """``python -m lit_cs201``, as a user runs it: same status, same line, nothing written."""
    args, expected = CASES["MNIST missing offline"]
    before = snapshot(workdir), folders(workdir)
    result = run_cli(*args, cwd=workdir, check=False)
    assert result.returncode == 2, result.stderr[-4000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lit-cs201: error: train-images-idx3-ubyte not found in nothing_here/MNIST/raw")
    assert MNIST_MD5 in last
    assert (snapshot(workdir), folders(workdir)) == before
    assert all(fragment in last for fragment in expected)
