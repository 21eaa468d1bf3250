"""Every bad input the CLI knows of: exit status 2, one actionable line, and no file written or changed.

Each case runs the real entry point, ``lit_cs201.cli.lightning_cli.main``, in this process (a fresh process costs
seconds of imports); one case also goes through ``python -m lit_cs201`` to show that the console path says the same.
Every case runs in its own copy of a folder holding what a user has on disk (a trained run, datasets, configs), and each
expected fragment is what a user needs to act: the offending key or value, and what to do or the valid choices.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_image_folder import write_image, write_image_folder
from fake_tiny_imagenet import make_fake_tiny_imagenet
from helpers import CONFIGS, run_cli, snapshot
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data.mnist import write_idx
from synthetic import write_cifar10, write_mnist

IRIS, MNIST, MNIST_SEED, CIFAR10, TINY, IMAGES = (
    str(CONFIGS / f"{name}.yaml")
    for name in ("iris", "mnist", "mnist_seed", "cifar10", "tiny_imagenet", "image_folder")
)
MNIST_RESNET18 = str(CONFIGS / "mnist_resnet18.yaml")  # a torchvision net: it takes pretrained weights
PREFIX = "lit-cs201: error: "
# A real one-epoch Iris run: outside runs/, so that `best`/`last` still find no checkpoint there.
RUN = "trained/iris/version_0"
MNIST_RUN = "trained/mnist_seed/version_0"
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
        mnist = ["--data.init_args.data_dir=mnist", "--data.init_args.val_size=16", "--trainer.limit_train_batches=2"]
        write_mnist(training / "mnist", n_train=64, n_test=20)
        assert (
            main(
                ["fit", "--config", MNIST_SEED, *mnist, "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]
            )
            == 0
        )
    shutil.copytree(training / "runs" / "iris" / "version_0", root / RUN)
    shutil.copytree(training / "runs" / "mnist_seed" / "version_0", root / MNIST_RUN)
    best = (root / BEST).read_bytes()
    (root / "truncated.ckpt").write_bytes(best[: len(best) // 2])  # an interrupted copy of a real checkpoint
    checkpoint = torch.load(root / BEST, weights_only=True)
    torch.save(checkpoint, root / "legacy.ckpt", _use_new_zipfile_serialization=False)  # torch < 1.6's format
    legacy = (root / "legacy.ckpt").read_bytes()
    (root / "legacy_truncated.ckpt").write_bytes(legacy[: len(legacy) // 2])
    hparams = {**checkpoint["hyper_parameters"], "data_dir": Path("data")}  # a Path: not plain data
    torch.save({**checkpoint, "hyper_parameters": hparams}, root / "objects.ckpt")

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
    (root / "binary.yaml").write_bytes(bytes(range(128, 256)))  # not text at all

    write_mnist(root / "mnist", n_train=64, n_test=20)
    raw = write_mnist(root / "mnist_truncated", n_train=64, n_test=20) / "train-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:1000])
    batch = write_cifar10(root / "cifar10_truncated", per_batch=8, n_test=8) / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    make_fake_tiny_imagenet(root / "tiny_unprepared")  # as extracted from the zip; val/ not yet one folder per class
    write_wrong_data_files(root)
    write_wrong_image_folders(root / "images")
    return root


def write_wrong_data_files(root: Path) -> None:
    """One dataset folder per way a raw file can be wrong; each differs from a good synthetic set in one file."""
    for name, content in WRONG_CIFAR_BATCHES.items():
        folder = write_cifar10(root / f"cifar10_{name}", per_batch=8, n_test=8)
        target = "batches.meta" if name.startswith("meta") else "data_batch_2"
        good = pickle.loads((folder / target).read_bytes())
        with (folder / target).open("wb") as f:
            pickle.dump(content(good), f)
    raw = write_mnist(root / "mnist_swapped", n_train=64, n_test=20)
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    swapped = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(swapped)
    rng = np.random.default_rng(0)
    write_idx(
        write_mnist(root / "mnist_20px", n_train=64) / "train-images-idx3-ubyte", rng.integers(0, 255, (64, 20, 20))
    )
    write_idx(
        write_mnist(root / "mnist_test_32px", n_train=64) / "t10k-images-idx3-ubyte", rng.integers(0, 255, (50, 32, 32))
    )
    write_idx(write_mnist(root / "mnist_label_12", n_train=64) / "train-labels-idx1-ubyte", np.full(64, 12))
    floats = write_mnist(root / "mnist_float", n_train=64) / "train-images-idx3-ubyte"
    header = bytes([0, 0, 0x0D, 3]) + b"".join(d.to_bytes(4, "big") for d in (64, 28, 28))
    floats.write_bytes(header + np.zeros((64, 28, 28), ">f4").tobytes())


def write_wrong_image_folders(root: Path) -> None:
    """One image folder per way a user's folder can be wrong (`ImageFolderDataModule`)."""
    (root / "no_train" / "cat").mkdir(parents=True)  # class folders, but not inside train/
    write_image_folder(root / "val_only_class", splits=("train", "val"), per_class=2)
    write_image(root / "val_only_class" / "val" / "zebra" / "0.png", (0, 0, 0), (12, 16), "PNG", "RGB", seed=0)
    write_image_folder(root / "empty_class", splits=("train",), per_class=2)
    (root / "empty_class" / "train" / "owl").mkdir()
    write_image_folder(root / "unreadable", splits=("train",), per_class=4, clutter=False)
    (root / "unreadable" / "train" / "cat" / "broken.png").write_text("saved from a browser as HTML, not PNG")
    write_image_folder(root / "sizes", splits=("train",), per_class=2, size=None, clutter=False)


# How a CIFAR-10 batch (data_batch_2) or batches.meta is changed from a good one.
WRONG_CIFAR_BATCHES = {
    "fewer_labels": lambda batch: {**batch, "labels": batch["labels"][:-1]},
    "more_labels": lambda batch: {**batch, "labels": [*batch["labels"], 0]},
    "not_a_dict": lambda batch: [batch["data"], batch["labels"]],
    "wrong_shape": lambda batch: {**batch, "data": batch["data"][:, :1000]},
    "float_data": lambda batch: {**batch, "data": batch["data"].astype(np.float32)},
    "no_labels": lambda batch: {k: v for k, v in batch.items() if k != "labels"},
    "label_99": lambda batch: {**batch, "labels": [99, *batch["labels"][1:]]},
    "meta_not_a_dict": lambda meta: meta["label_names"],
    "meta_9_classes": lambda meta: {**meta, "label_names": meta["label_names"][:9]},
}


@pytest.fixture
def workdir(template, tmp_path, monkeypatch) -> Path:
    work = tmp_path / "work"
    # Hard links: a copy in a fraction of the time. A case that wrote into a file would change the template's too,
    # but its own snapshot comparison fails first.
    shutil.copytree(template, work, copy_function=os.link)
    monkeypatch.chdir(work)
    # An empty hub cache: the ResNet50 weights are missing here whatever this machine's own cache holds.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return work


def folders(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
MNIST_MD5 = "md5 f68b3c2dcbeaaa9fbdd348bbdeb94873"
PRESETS = ("none", "mnist_course", "cifar_crop_flip")
# The 64 MNIST digits written by `template`, with a validation split they can afford.
SMALL_MNIST = ["--data.init_args.data_dir=mnist", "--data.init_args.val_size=16"]

# id -> (arguments, fragments the last stderr line must contain besides the prefix)
CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # -- config: keys, files, types, choices, classes -------------------------------------------------------
    "unknown config key": (
        ["fit", "--config", "bad_key.yaml"],
        ("trainer.max_epoch in bad_key.yaml", "did you mean trainer.max_epochs?"),
    ),
    "unknown flag": (["fit", "--config", IRIS, "--trainer.nope", "3"], ("--trainer.nope",)),
    "abbreviated flag": (["fit", "--config", IRIS, "--trainer.max_epoch", "3"], ("--trainer.max_epoch",)),
    "no subcommand": ([], ("fit", "validate", "test", "predict")),
    "unknown subcommand": (["train", "--config", IRIS], ("'train'", "fit", "test")),
    "missing config file": (["fit", "--config", "missing.yaml"], ("--config missing.yaml does not exist",)),
    "config is a folder": (["fit", "--config", "trained"], ("trained", "not a file")),
    "config is not YAML": (["fit", "--config", "not_yaml.yaml"], ("not_yaml.yaml", "line 2")),
    "config is not YAML, resuming": (
        ["fit", "--config", "not_yaml.yaml", "--ckpt_path", "last"],
        ("not_yaml.yaml", "line 2"),
    ),
    "max_epochs not a number": (
        ["fit", "--config", IRIS, "--trainer.max_epochs", "many"],
        ("--trainer.max_epochs: 'many' is not an integer or null",),
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
        ["fit", "--config", IRIS, "--model.init_args.net", "resnet_9"],
        ("net", "resnet_9", "did you mean resnet9", "mlp", "resnet18"),
    ),
    "unknown stem": (
        ["fit", "--config", IRIS, "--model.init_args.stem", "nope"],
        ("stem", "nope", "imagenet", "cifar"),
    ),
    "hidden_sizes not a list": (
        ["fit", "--config", IRIS, "--model.init_args.hidden_sizes", "ten"],
        ("--model.init_args.hidden_sizes: 'ten' is not a list",),
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
    "unknown datamodule class_path flag": (
        ["fit", "--config", IRIS, "--data.class_path", "lit_cs201.data.Nope"],
        ("data: no class lit_cs201.data.Nope (available: lit_cs201.data.IrisDataModule",),
    ),
    "unknown optimizer class_path flag": (
        ["fit", "--config", IRIS, "--model.init_args.optimizer.class_path", "torch.optim.Nope"],
        ("no class torch.optim.Nope (e.g. torch.optim.SGD",),
    ),
    "config is not text": (["fit", "--config", "binary.yaml"], ("--config binary.yaml: not UTF-8 text",)),
    "Iris test split holds no flower of a class": (
        ["test", "--ckpt_path", BEST, "--data.init_args.test_size", "0.001"],
        ("--data.init_args.test_size 0.001", "every class needs a sample in each part"),
    ),
    "option the datamodule lacks": (
        ["fit", "--config", IRIS, "--data.init_args.data_dir", "x"],
        ("--data.init_args.data_dir: IrisDataModule takes no option data_dir", "--data.help IrisDataModule"),
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
            "python -m lit_cs201.course.tiny_imagenet_prepare tiny_unprepared",
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
        ["fit", "--config", MNIST_RESNET18, "--model.init_args.pretrained", "IMAGENET1K_V9"],
        ("IMAGENET1K_V9", "IMAGENET1K_V1"),
    ),
    "pretrained weights file missing": (
        ["fit", "--config", MNIST_RESNET18, "--model.init_args.pretrained", "weights/r18.pth"],
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
        ("val_size 64 is all of the 64", "--data.init_args.val_size 0.1"),
    ),
    "val_size not a number": (
        ["fit", "--config", MNIST, "--data.init_args.val_size=half"],
        ("--data.init_args.val_size: 'half' is not a number",),
    ),
    "test_size out of range": (["fit", "--config", IRIS, "--data.init_args.test_size", "1.5"], ("test_size", "1.5")),
    "log folder is a file": (
        ["fit", "--config", IRIS, "--trainer.logger.init_args.save_dir=afile"],
        ("save_dir", "afile"),
    ),
    # -- data files that are wrong: refused at setup, before the run folder exists --------------------------
    "CIFAR-10 batch not the official file": (
        ["fit", "--config", CIFAR10, "--data.init_args.data_dir=cifar10_truncated"],
        ("cifar10_truncated/cifar-10-batches-py/batches.meta", "not the official", "5ff9c542aee3614f3951f8cda6e48888"),
    ),
    **{
        f"CIFAR-10 {name.replace('_', ' ')}": (
            [
                "fit",
                "--config",
                CIFAR10,
                f"--data.init_args.data_dir=cifar10_{name}",
                "--data.init_args.verify_md5=false",
            ],
            (
                f"cifar10_{name}/cifar-10-batches-py/{'batches.meta' if name.startswith('meta') else 'data_batch_2'}",
                *expected,
            ),
        )
        for name, expected in {
            "fewer_labels": ("8 images but 7 labels",),
            "more_labels": ("8 images but 9 labels",),
            "not_a_dict": ("expected a dict", "list"),
            "wrong_shape": ("uint8 array [N, 3072]", "[8, 1000]"),
            "float_data": ("uint8 array [N, 3072]", "float32"),
            "no_labels": ("no labels",),
            "label_99": ("labels must be in 0..9", "99"),
            "meta_not_a_dict": ("expected a dict",),
            "meta_9_classes": ("list of 10 names",),
        }.items()
    },
    "MNIST images and labels swapped": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist_swapped"],
        ("mnist_swapped/MNIST/raw/train-images-idx3-ubyte holds labels", "expected images", "swapped"),
    ),
    "MNIST images not 28x28": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist_20px"],
        ("mnist_20px/MNIST/raw/train-images-idx3-ubyte", "20x20", "28x28"),
    ),
    "MNIST test images of another shape": (
        ["test", "--ckpt_path", f"{MNIST_RUN}/best.ckpt", "--data.init_args.data_dir=mnist_test_32px"],
        ("mnist_test_32px/MNIST/raw/t10k-images-idx3-ubyte", "32x32", "28x28"),
    ),
    "MNIST label out of range": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist_label_12"],
        ("mnist_label_12/MNIST/raw/train-labels-idx1-ubyte", "0..9", "12"),
    ),
    "MNIST float images": (
        ["fit", "--config", MNIST, "--data.init_args.data_dir=mnist_float"],
        ("mnist_float/MNIST/raw/train-images-idx3-ubyte", "float", "unsigned bytes"),
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
        ("does not fit", "net=mlp", "net=mnist_cnn", "input_shape=[1, 28, 28]"),
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
    # -- settings with a range --------------------------------------------------------------------------------
    "seed_everything negative": (
        ["fit", "--config", IRIS, "--seed_everything", "-1"],
        ("seed_everything must be between 0 and 4294967295", "got -1"),
    ),
    "seed_everything above 2**32 - 1": (
        ["fit", "--config", IRIS, f"--seed_everything={2**32}"],
        ("seed_everything must be between 0 and 4294967295", "got 4294967296"),
    ),
    "split_seed negative": (
        ["fit", "--config", IRIS, "--data.init_args.split_seed", "-1"],
        ("split_seed must be between 0 and 4294967295", "got -1"),
    ),
    "split_seed negative, image data": (
        ["fit", "--config", MNIST, *SMALL_MNIST, "--data.init_args.split_seed", "-1"],
        ("split_seed must be between 0 and 4294967295", "got -1"),
    ),
    "label_smoothing 2": (
        ["fit", "--config", IRIS, "--model.init_args.label_smoothing", "2"],
        ("label_smoothing must be at least 0 and below 1", "got 2"),
    ),
    "num_workers negative": (
        ["fit", "--config", IRIS, "--data.init_args.num_workers", "-1"],
        ("num_workers must be at least 0", "got -1"),
    ),
    "learning rate negative": (
        ["fit", "--config", IRIS, "--model.init_args.optimizer.init_args.lr", "-1"],
        ("optimizer torch.optim.Adam", "learning rate", "-1"),
    ),
    "weight_decay negative": (
        ["fit", "--config", IRIS, "--model.init_args.optimizer.init_args.weight_decay", "-1"],
        ("optimizer torch.optim.Adam", "weight_decay", "-1"),
    ),
    "one-cycle pct_start above 1": (
        ["fit", "--config", MNIST, *SMALL_MNIST, "--model.init_args.lr_scheduler.init_args.pct_start", "2"],
        ("lr_scheduler torch.optim.lr_scheduler.OneCycleLR", "pct_start", "2"),
    ),
    "one-cycle schedule without an end": (
        ["fit", "--config", MNIST, *SMALL_MNIST, "--trainer.max_epochs", "-1"],
        ("one-cycle", "max_epochs -1", "max_steps"),
    ),
    "accumulate_grad_batches 0": (
        ["fit", "--config", IRIS, "--trainer.accumulate_grad_batches", "0"],
        ("trainer.accumulate_grad_batches must be at least 1", "got 0"),
    ),
    "gradient_clip_val negative": (
        ["fit", "--config", IRIS, "--trainer.gradient_clip_val", "-1"],
        ("trainer.gradient_clip_val must be at least 0", "got -1"),
    ),
    "check_val_every_n_epoch 0": (
        ["fit", "--config", IRIS, "--trainer.check_val_every_n_epoch", "0"],
        ("trainer.check_val_every_n_epoch must be at least 1", "got 0"),
    ),
    "val_check_interval 0": (
        ["fit", "--config", IRIS, "--trainer.val_check_interval", "0"],
        ("trainer.val_check_interval", "(0, 1]", "got 0"),
    ),
    "min_epochs above max_epochs": (
        ["fit", "--config", IRIS, "--trainer.min_epochs", "5", "--trainer.max_epochs", "3"],
        ("trainer.min_epochs 5 is more than max_epochs 3",),
    ),
    "early_stopping patience negative": (
        ["fit", "--config", IRIS, "--early_stopping.patience", "-1"],
        ("early_stopping.patience must be at least 0", "got -1"),
    ),
    # Nothing trained means no checkpoint to test: refused rather than reported as a success.
    "max_epochs 0": (["fit", "--config", IRIS, "--trainer.max_epochs", "0"], ("trainer.max_epochs 0 trains nothing",)),
    "max_steps 0": (["fit", "--config", IRIS, "--trainer.max_steps", "0"], ("trainer.max_steps 0 trains nothing",)),
    "limit_train_batches 0": (
        ["fit", "--config", IRIS, "--trainer.limit_train_batches", "0"],
        ("trainer.limit_train_batches 0 trains nothing",),
    ),
    # Early stopping and best.ckpt choose by val/acc: a run that never validates cannot have either.
    "limit_val_batches 0": (
        ["fit", "--config", IRIS, "--trainer.limit_val_batches", "0"],
        ("limit_val_batches 0 turns validation off", "val/acc", "val_size"),
    ),
    "check_val_every_n_epoch beyond max_epochs": (
        ["fit", "--config", IRIS, "--trainer.check_val_every_n_epoch", "5", "--trainer.max_epochs", "3"],
        ("check_val_every_n_epoch 5 with max_epochs 3 never validates", "val/acc"),
    ),
    # The checkpoint's Adam state lacks SGD's momentum: Lightning would fail on the first step (KeyError).
    "resume with another optimizer": (
        [
            "fit",
            "--ckpt_path",
            LAST,
            "--model.init_args.optimizer",
            "torch.optim.SGD",
            "--model.init_args.optimizer.init_args.momentum",
            "0.9",
        ],
        (LAST, "trained with torch.optim.Adam", "configured torch.optim.SGD", "--model.init_args.optimizer"),
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
    # -- environment and concurrency ------------------------------------------------------------------------
    # torch's weights_only loader refuses to import a class; the message says why, not "truncated".
    "checkpoint holding objects that are not plain data": (
        ["test", "--ckpt_path", "objects.ckpt"],
        ("objects.ckpt", "not plain data", "pathlib.PosixPath", "for safety"),
    ),
    # The legacy format cannot be memory-mapped: the model check reads it whole instead of crashing.
    "legacy checkpoint of another model": (
        ["test", "--ckpt_path", "legacy.ckpt", "--model.init_args.hidden_sizes", "[32]"],
        ("legacy.ckpt", "does not fit", "hidden_sizes=[10]", "hidden_sizes=[32]"),
    ),
    "legacy checkpoint truncated": (
        ["test", "--ckpt_path", "legacy_truncated.ckpt"],
        ("legacy_truncated.ckpt", "not a readable checkpoint", "truncated"),
    ),
    # -- image folders --------------------------------------------------------------------------------------
    "image folder missing": (
        ["fit", "--config", IMAGES, *PRETRAINED_OFF, "--data.init_args.data_dir", "images/nowhere"],
        ("data_dir images/nowhere does not exist", "train/<class>/"),
    ),
    "image folder without train/": (
        ["fit", "--config", IMAGES, *PRETRAINED_OFF, "--data.init_args.data_dir", "images/no_train"],
        ("images/no_train has no train/ folder", "images/no_train/train/<class name>/"),
    ),
    "image folder with a class only in val/": (
        ["fit", "--config", IMAGES, *PRETRAINED_OFF, "--data.init_args.data_dir", "images/val_only_class"],
        ("images/val_only_class/val has class folders that train/ lacks (zebra)",),
    ),
    "image folder with an empty class folder": (
        ["fit", "--config", IMAGES, *PRETRAINED_OFF, "--data.init_args.data_dir", "images/empty_class"],
        ("class folders without images", "images/empty_class/train/owl"),
    ),
    "image folder with an unreadable file": (
        ["fit", "--config", IMAGES, *PRETRAINED_OFF, "--data.init_args.data_dir", "images/unreadable"],
        ("cannot decode images/unreadable/train/cat/broken.png", "skip_bad_images: true"),
    ),
    "image folder of different sizes without image_size": (
        [
            "fit",
            "--config",
            IMAGES,
            *PRETRAINED_OFF,
            "--data.init_args.data_dir",
            "images/sizes",
            "--data.init_args.image_size",
            "null",
        ],
        ("images in images/sizes have 2 different sizes", "set image_size"),
    ),
    "image folder channels 2": (
        [
            "fit",
            "--config",
            IMAGES,
            *PRETRAINED_OFF,
            "--data.init_args.data_dir",
            "images/sizes",
            "--data.init_args.channels",
            "2",
        ],
        ("channels must be 1 (greyscale) or 3 (RGB), got 2",),
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
    result = run_cli(*args, cwd=workdir, check=False, process=True)
    assert result.returncode == 2, result.stderr[-4000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lit-cs201: error: train-images-idx3-ubyte not found in nothing_here/MNIST/raw")
    assert MNIST_MD5 in last
    assert (snapshot(workdir), folders(workdir)) == before
    assert all(fragment in last for fragment in expected)


def test_a_one_cycle_with_a_one_step_warm_up_is_refused(workdir, capsys):
    """OneCycleLR divides by zero when its warm-up is exactly one step (pct_start 0.25 of 4 steps). The number of
    steps is Lightning's to count, inside `fit`, after the run folder exists: refused there, before any checkpoint,
    and the run folder is removed again."""
    one_batch_epochs = ["--data.init_args.batch_size=8", "--trainer.limit_train_batches=4", "--trainer.max_epochs=1"]
    fast = ["--model.init_args.net=mlp", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false"]
    before = snapshot(workdir), folders(workdir)
    assert main(["fit", "--config", MNIST, *SMALL_MNIST, *one_batch_epochs, *fast]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(PREFIX) and "4 optimizer steps with pct_start 0.25" in last and "warm-up" in last
    assert (snapshot(workdir), folders(workdir)) == before


@pytest.mark.parametrize(
    "features, labels, expected",
    [
        (np.zeros((150, 3)), np.zeros(150, int), "features per row, expected 4"),
        (np.zeros((150, 4)), np.zeros(149, int), "150 rows but 149 labels"),
        (np.full((150, 4), np.nan), np.zeros(150, int), "not finite"),
        (np.zeros((150, 4)), np.full(150, 7), "labels outside 0..2"),
    ],
    ids=["3 features", "a label short", "NaN features", "label 7"],
)
def test_a_damaged_iris_csv_is_refused(workdir, capsys, monkeypatch, features, labels, expected):
    """The Iris CSV is scikit-learn's copy: checked like any other data file, and named in the error."""
    monkeypatch.setattr("lit_cs201.data.iris.load_iris", lambda return_X_y: (features, labels))
    before = snapshot(workdir), folders(workdir)
    assert main(["fit", "--config", IRIS]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(PREFIX) and "sklearn/datasets/data/iris.csv holds" in last and expected in last
    assert (snapshot(workdir), folders(workdir)) == before
