"""A checkpoint is data, whatever it says: what it names is never imported, called or built unless this package
trusts it, it costs a bounded amount to read, and a malformed one is refused with one line.

Each hostile checkpoint is a real one (a one-epoch Iris run) edited as an attacker would, with ``torch.load`` and
``torch.save``. Its payloads either run a command that creates a marker file or name a module whose import creates
one; every case asserts that neither marker appears, through ``test``, ``predict``, ``validate``, ``fit`` and the
Python API alike, and that the command stops with exit status 2 and one line that names the file and the setting.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fake_image_folder import write_image_folder
from helpers import CONFIGS, snapshot
from lit_cs201 import predict
from lit_cs201.cli.lightning_cli import main
from lit_cs201.data.safe_load import load_plain
from lit_cs201.deploy.from_checkpoint import load
from lit_cs201.errors import UserError
from lit_cs201.runs.checkpoint import Checkpoint, checked
from synthetic import write_mnist

IRIS = str(CONFIGS / "iris.yaml")
QUIET = "--trainer.enable_progress_bar=false"
PREFIX = "lit-cs201: error: "
BEST = "runs/iris/version_0/best.ckpt"
EVIL = "lit_cs201_evil_module"  # a module on the import path whose import creates a marker


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["fit", "--config", IRIS, "--trainer.max_epochs=1", QUIET]) == 0
    (root / "flowers.csv").write_text("sepal length,sepal width,petal length,petal width\n5,3,1,0\n")
    return root


@pytest.fixture
def work(trained, tmp_path, monkeypatch) -> Path:
    """A copy of the trained run, the working folder, and the two markers an attack would create."""
    folder = tmp_path / "work"
    shutil.copytree(trained, folder)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / f"{EVIL}.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef run(*args, **kwargs):\n    pass\nclass X:\n    pass\n"
    )
    yield folder
    sys.modules.pop(EVIL, None)
    assert not (tmp_path / "imported").exists(), "a module named by a checkpoint was imported"
    assert not (tmp_path / "owned").exists(), "a command in a checkpoint ran"


def command(tmp_path: Path) -> str:
    return f"touch {shlex.quote(str(tmp_path / 'owned'))}"


def saved() -> dict[str, Any]:
    return torch.load(BEST, weights_only=True)


def write(checkpoint: dict[str, Any], name: str = "shared.ckpt") -> str:
    torch.save(checkpoint, name)
    return name


def refused(args: list[str], capsys, *fragments: str) -> str:
    """Run the command; it must stop with exit status 2 and one line holding ``fragments``, writing nothing."""
    before = snapshot(Path.cwd())
    status = main(args)
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1] if err else ""
    assert status == 2, err[-2000:]
    assert last.startswith(PREFIX), err[-2000:]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in last, last
    assert snapshot(Path.cwd()) == before  # nothing written or removed
    return last


def hostile_settings(tmp_path: Path) -> dict[str, tuple[str, Any, str]]:
    """Where an attacker can put a class or a callable in a checkpoint's settings, and what the refusal names:
    (settings key, value, the key named in the message)."""
    shell = {"class_path": "os.system", "init_args": {"command": command(tmp_path)}}
    return {
        "optimizer runs a command": ("optimizer", shell, "hyper_parameters.optimizer.class_path"),
        "schedule runs a command": ("lr_scheduler", shell, "hyper_parameters.lr_scheduler.class_path"),
        "optimizer imports a module": ("optimizer", {"class_path": f"{EVIL}.X"}, "optimizer.class_path"),
        "optimizer named by a string": ("optimizer", f"{EVIL}.run", "hyper_parameters.optimizer"),
        "schedule named by a string": ("lr_scheduler", f"{EVIL}.run", "hyper_parameters.lr_scheduler"),
        "a class inside a trusted optimizer's settings": (
            "optimizer",
            {"class_path": "torch.optim.SGD", "init_args": {"lr": {"class_path": f"{EVIL}.X"}}},
            "optimizer.init_args.lr.class_path",
        ),
        "a callable of a trusted schedule given as a string": (
            "lr_scheduler",
            {"class_path": "torch.optim.lr_scheduler.CyclicLR", "init_args": {"scale_fn": f"{EVIL}.run"}},
            "lr_scheduler.init_args.scale_fn",
        ),
        "a class in a setting that is not used": ("unused", [{"class_path": "os.system"}], "unused[0].class_path"),
        "a trusted class where it does not belong": (
            "net",
            {"class_path": "torch.optim.SGD"},
            "hyper_parameters.net names 'torch.optim.SGD', which is not a class this setting takes",
        ),
    }


CASES = list(hostile_settings(Path("/")))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("subcommand", ["test", "predict", "validate"])
def test_a_checkpoint_naming_code_runs_and_imports_nothing(work, tmp_path, capsys, case, subcommand):
    key, value, named = hostile_settings(tmp_path)[case]
    checkpoint = saved()
    checkpoint["hyper_parameters"][key] = value
    refused([subcommand, "--ckpt_path", write(checkpoint)], capsys, "--ckpt_path shared.ckpt", named)


@pytest.mark.parametrize("case", CASES)
def test_the_python_api_refuses_the_same_checkpoints(work, tmp_path, case):
    key, value, named = hostile_settings(tmp_path)[case]
    checkpoint = saved()
    checkpoint["hyper_parameters"][key] = value
    with pytest.raises(UserError, match="checkpoint shared.ckpt: ") as refusal:
        predict(write(checkpoint), "flowers.csv")
    assert named in str(refusal.value)


def test_a_resume_refuses_the_same_checkpoints(work, tmp_path, capsys):
    """``fit --ckpt_path`` of a run folder whose checkpoint was replaced by a hostile one."""
    checkpoint = saved()
    checkpoint["hyper_parameters"]["optimizer"] = hostile_settings(tmp_path)["optimizer runs a command"][1]
    write(checkpoint, BEST.replace("best", "last"))
    refused(["fit", "--ckpt_path", BEST.replace("best", "last"), "--trainer.max_epochs=2"], capsys, "os.system")


@pytest.mark.parametrize(
    "class_path",
    [
        "os.system",
        "lit_cs201.cli.lightning_cli.os.system",
        f"{EVIL}.X",
        "lit_cs201.runs.restore.Path",
        "torch.optim.SGD",
        42,
    ],
)
@pytest.mark.parametrize("key", ["hyper_parameters", "datamodule_hyper_parameters"])
def test_a_checkpoint_naming_another_model_or_datamodule_class_is_refused(work, capsys, class_path, key):
    checkpoint = saved()
    checkpoint[key]["_class_path"] = class_path
    last = refused(["test", "--ckpt_path", write(checkpoint)], capsys, f"{key}._class_path names {class_path!r}")
    with pytest.raises(UserError, match=f"{key}._class_path"):
        predict("shared.ckpt", "flowers.csv")
    assert "shared.ckpt" in last


def test_a_model_class_given_as_the_datamodule_is_refused(work, capsys):
    checkpoint = saved()
    checkpoint["datamodule_hyper_parameters"]["_class_path"] = "lit_cs201.models.Classifier"
    named = "names 'lit_cs201.models.Classifier', which is not a datamodule"
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, named)


def test_an_evaluation_builds_no_optimizer_or_schedule(work, monkeypatch):
    """Even the trusted optimizer a checkpoint names is never built by ``test`` or the Python API."""
    built = []
    monkeypatch.setattr(torch.optim.Adam, "__init__", lambda self, *a, **k: built.append("optimizer"))
    assert main(["test", "--ckpt_path", BEST, QUIET]) == 0
    load(BEST)  # what lit_cs201.predict evaluates (it takes images; this checkpoint is Iris)
    assert built == []


def test_a_checkpoints_settings_still_train_and_evaluate(work, capsys):
    """The checks refuse what is not plain: a real run's settings pass them (test, predict, a resume)."""
    assert main(["test", "--ckpt_path", BEST, QUIET]) == 0
    assert main(["predict", "--ckpt_path", BEST, "--data.predict_path", "flowers.csv", QUIET]) == 0
    assert main(["fit", "--ckpt_path", BEST.replace("best", "last"), "--trainer.max_epochs=2", QUIET]) == 0
    assert torch.load(BEST.replace("best", "last"), weights_only=True)["epoch"] == 1


# -- malformed checkpoints: one line each -------------------------------------------------------------------------
def _without(key: str):
    def edit(checkpoint):
        del checkpoint[key]

    return edit


def _set(key: str, value: Any):
    def edit(checkpoint):
        checkpoint[key] = value

    return edit


def _nan_weights(checkpoint):
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))


def _text_weights(checkpoint):
    checkpoint["state_dict"]["net.0.weight"] = "weights"


MALFORMED = {
    "no Lightning version": (_without("pytorch-lightning_version"), "records no pytorch-lightning_version"),
    "an old Lightning version": (_set("pytorch-lightning_version", "0.5.0"), "written by Lightning 0.5.0"),
    "a version that is not one": (_set("pytorch-lightning_version", "two"), "'two' is not a version number"),
    "a version that is not text": (_set("pytorch-lightning_version", 2), "records no pytorch-lightning_version"),
    "settings that are a list": (_set("hyper_parameters", [1, 2]), "hyper_parameters are a list, not a mapping"),
    "data settings that are text": (_set("datamodule_hyper_parameters", "x"), "datamodule_hyper_parameters are a str"),
    "weights that are a list": (_set("state_dict", [1, 2]), "not a Lightning checkpoint (no state_dict)"),
    "weights that are not tensors": (_text_weights, "maps 'net.0.weight' to a str, not a tensor"),
    "NaN weights": (_nan_weights, "are not all finite numbers"),
    "settings of a far larger model than its weights": (
        lambda checkpoint: checkpoint["hyper_parameters"].update(hidden_sizes=[10**9]),
        "settings describe Classifier(net=mlp, hidden_sizes=[1000000000]",
    ),
    "settings of another number of classes": (
        lambda checkpoint: checkpoint["hyper_parameters"].update(num_classes=5),
        "but its weights are not that model's (net.",
    ),
    "an input of billions of values": (
        lambda checkpoint: checkpoint["hyper_parameters"].update(input_shape=[4, 10**5, 10**5]),
        "input_shape must be sizes of at least 1, at most 50,331,648 values",
    ),
    "class names that are not text": (_set("class_names", [1, 2, 3]), "class_names are not a list of names: [1, 2, 3]"),
    "a checkpoint that is a list": (None, "not a Lightning checkpoint"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_checkpoint_is_refused_with_one_line(work, capsys, case):
    edit, fragment = MALFORMED[case]
    checkpoint: Any = [1, 2]
    if edit is not None:
        checkpoint = saved()
        edit(checkpoint)
    for subcommand in ("test", "predict"):
        refused([subcommand, "--ckpt_path", write(checkpoint)], capsys, "--ckpt_path shared.ckpt", fragment)
    with pytest.raises(UserError, match="checkpoint shared.ckpt: "):
        predict("shared.ckpt", "flowers.csv")


@pytest.mark.parametrize("where", ["hyper_parameters", "class_names", "callbacks"])
def test_shared_lists_that_expand_without_end_are_refused_quickly(work, capsys, where):
    """A "billion laughs" through pickle's shared references: 30 levels of a list holding its inner list ten times
    are a few hundred bytes on disk and 10**30 values once expanded."""
    laughs: list[Any] = ["ha"]
    for _ in range(30):
        laughs = [laughs] * 10
    checkpoint = saved()
    if where == "hyper_parameters":
        checkpoint[where]["hidden_sizes"] = laughs
    else:
        checkpoint[where] = laughs
    path = write(checkpoint)
    assert os.path.getsize(path) < 100_000
    started = time.monotonic()
    refused(["test", "--ckpt_path", path], capsys, "holds more than 1,000,000 values")
    assert time.monotonic() - started < 20


def test_settings_nested_without_end_are_refused(work, capsys):
    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]
    checkpoint = saved()
    checkpoint["hyper_parameters"]["hidden_sizes"] = deep
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, "nested more than 64 deep")


def _repacked(source: str, target: str, compress: int, member: str = "") -> None:
    """``source`` rewritten with its members (or only ``member``) compressed, as a zip tool might."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            squeeze = compress if member in info.filename else zipfile.ZIP_STORED
            new.writestr(info, data, compress_type=squeeze)


def test_a_checkpoint_with_compressed_members_is_refused_before_it_inflates(work, capsys):
    """A member that inflates to gigabytes from a small file (a zip bomb): torch.save never compresses."""
    checkpoint = saved()
    checkpoint["state_dict"]["net.0.weight"] = torch.zeros(64, 1024, 1024)  # 256 MiB of zeros
    torch.save(checkpoint, "big.ckpt")
    _repacked("big.ckpt", "bomb.ckpt", zipfile.ZIP_DEFLATED, member="/data/")
    os.remove("big.ckpt")
    assert os.path.getsize("bomb.ckpt") < 2 << 20
    refused(["test", "--ckpt_path", "bomb.ckpt"], capsys, "holds compressed members", "torch.save never writes")


def test_a_checkpoint_whose_settings_take_more_than_8_mib_is_refused_unread(work, capsys):
    checkpoint = saved()
    checkpoint["hyper_parameters"]["notes"] = [f"note {i}" for i in range(1_000_000)]
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, "more than the 8 MiB any checkpoint needs")


def test_a_deeply_nested_config_is_one_line(work, capsys):
    Path("deep.yaml").write_text("trainer:\n  max_epochs: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(["fit", "--config", "deep.yaml"], capsys, "--config deep.yaml: its values are nested too deeply")


def test_a_resume_deletes_no_file_its_checkpoint_names(work, capsys):
    """Lightning deletes the checkpoint a new best replaces by the path its restored state gives: a checkpoint that
    names another file there (or the run folder's ../..) must not make the resume delete it."""
    run = Path(BEST).parent
    victims = [Path("keep.txt"), run / "notes.txt"]
    for victim in victims:
        victim.write_text("the user's")
    checkpoint = torch.load(run / "last.ckpt", weights_only=True)
    for key, state in checkpoint["callbacks"].items():
        if "val/acc" in key:  # best.ckpt's callback: the next better epoch replaces its file
            state["best_model_score"] = torch.tensor(-1.0)
            state["best_model_path"] = state["kth_best_model_path"] = str(run / "../../../keep.txt")
            state["best_k_models"] = {str(run / "../../../keep.txt"): torch.tensor(-1.0)}
        else:  # last.ckpt's: each epoch replaces the file it names
            state["best_model_path"] = state["last_model_path"] = str(run / "notes.txt")
    torch.save(checkpoint, run / "last.ckpt")
    assert main(["fit", "--ckpt_path", str(run / "last.ckpt"), "--trainer.max_epochs=2", QUIET]) == 0
    assert all(victim.read_text() == "the user's" for victim in victims)
    assert (run / "best.ckpt").is_file() and torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 1


def test_the_reader_bounds_hold_for_a_large_model(tmp_path):
    """What the bounds allow: the layout of a ResNet-152 checkpoint (its 1,400 tensors under their names, an SGD
    state of one momentum buffer per parameter, a schedule) reads, well inside them."""
    names = [f"net.layer{i // 100}.{i % 100}.weight" for i in range(1400)]
    state_dict = {name: torch.zeros(2) for name in names}
    content = {
        "state_dict": state_dict,
        "optimizer_states": [
            {
                "state": {i: {"momentum_buffer": torch.zeros(2)} for i in range(len(names))},
                "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": list(range(len(names)))}],
            }
        ],
        "lr_schedulers": [{"last_epoch": 3, "_last_lr": [0.1]}],
        "pytorch-lightning_version": "2.6.6",
    }
    torch.save(content, tmp_path / "large.ckpt")
    checkpoint = checked(Checkpoint(tmp_path / "large.ckpt", load_plain(tmp_path / "large.ckpt", "c", "checkpoint")))
    assert list(checkpoint.state_dict) == names


# -- paths a checkpoint names: read there, never written ------------------------------------------------------------
IMAGE_FOLDER = str(CONFIGS / "image_folder.yaml")
TINY_FIT = [
    "--model.init_args.net=mlp",
    "--model.init_args.pretrained=null",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.val_size=4",
    "--trainer.max_epochs=1",
    QUIET,
]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """A one-epoch fit on a small image folder (``photos/``, its cache in ``photos/cache/``)."""
    root = tmp_path_factory.mktemp("folder_run")
    write_image_folder(root / "photos", size=(8, 8), clutter=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        fit = ["fit", "--config", IMAGE_FOLDER, "--data.init_args.data_dir=photos", *TINY_FIT]
        assert main([*fit, "--trainer.logger.init_args.name=photos"]) == 0
    return root


@pytest.fixture
def pointed(folder_run, tmp_path, monkeypatch) -> Path:
    """The run's best.ckpt, edited to say its data is in ``elsewhere/`` (a copy of the folder, without a cache) and
    its cache in ``victim/``, beside a user's own files there."""
    shutil.copytree(folder_run, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    shutil.copytree("photos", "elsewhere", ignore=shutil.ignore_patterns("cache"))
    Path("victim").mkdir()
    for name in ("train_notes.txt", "test_results.csv", "val_log.md"):
        (Path("victim") / name).write_text("the user's")
    best = "runs/photos/version_0/best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["datamodule_hyper_parameters"].update(data_dir="elsewhere", cache_dir="victim")
    torch.save(checkpoint, best)
    return tmp_path


def test_an_evaluation_writes_nothing_where_its_checkpoint_says_the_data_is(pointed, capsys):
    before = {folder: snapshot(Path(folder)) for folder in ("elsewhere", "victim")}
    assert main(["test", "--ckpt_path", "runs/photos/version_0/best.ckpt", QUIET]) == 0
    assert "test/acc" in capsys.readouterr().out  # it tested, reading the images from elsewhere/
    assert {folder: snapshot(Path(folder)) for folder in before} == before
    assert not Path("elsewhere/cache").exists()


def test_an_evaluation_caches_where_the_user_says(pointed):
    best = "runs/photos/version_0/best.ckpt"
    assert main(["test", "--ckpt_path", best, "--data.init_args.cache_dir=mycache", QUIET]) == 0
    assert any(Path("mycache").glob("test_*.npy"))
    # Naming the checkpoint's folder again is the user's word: the cache goes where it does for a fit.
    assert main(["test", "--ckpt_path", best, "--data.init_args.data_dir=elsewhere", QUIET]) == 0
    assert any(Path("elsewhere/cache").glob("test_*.npy"))
    assert sorted(p.name for p in Path("victim").iterdir()) == ["test_results.csv", "train_notes.txt", "val_log.md"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist_run")
    write_mnist(root / "mnist", n_train=64, n_test=16)
    small = ["--data.init_args.data_dir=mnist", "--data.init_args.val_size=16", "--trainer.limit_train_batches=1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["fit", "--config", str(CONFIGS / "mnist.yaml"), *small, "--trainer.max_epochs=1", QUIET]) == 0
    return root


def test_an_evaluation_downloads_and_extracts_nothing_into_a_folder_its_checkpoint_names(
    mnist_run, tmp_path, monkeypatch, capsys
):
    shutil.copytree(mnist_run, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    best = next(Path("runs").rglob("best.ckpt"))
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["datamodule_hyper_parameters"].update(data_dir="somewhere/else", download=True)
    torch.save(checkpoint, best)
    refused(["test", "--ckpt_path", str(best)], capsys, "not found in somewhere/else/MNIST/raw", "only read")
    assert not Path("somewhere").exists()
    # Given by the user, the same folder is theirs to fill: the usual offline message (download is off here).
    given = ["--data.init_args.data_dir=somewhere/else", "--data.init_args.download=false"]
    refused(["test", "--ckpt_path", str(best), *given], capsys, "download is off")


def test_an_image_size_a_checkpoint_gives_is_bounded(pointed, capsys):
    """A conv net's weights do not depend on the image size: a checkpoint asking for 100,000-pixel sides would make
    every prediction decode (and the model's example input take) tens of gigabytes."""
    best = "runs/photos/version_0/best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["image_size"] = [100_000, 100_000]
    torch.save(checkpoint, best)
    image = next(p for p in sorted(Path("photos/test").rglob("*")) if p.is_file())
    for subcommand in (["test"], ["predict", "--data.predict_path", str(image)]):
        refused([*subcommand, "--ckpt_path", best], capsys, "larger than the 4096 pixels a side that are decoded")
    with pytest.raises(UserError, match="larger than the 4096 pixels a side"):
        predict(best, image)


# -- what an attack on the reader found: tensors, lists and states that cost or fail late ---------------------------
def _repeated(count: int) -> torch.Tensor:
    """One stored number standing for ``count`` through a stride of 0: eight bytes in the file."""
    return torch.as_strided(torch.ones(1, dtype=torch.float64), (count,), (0,))


def _in_optimizer_state(checkpoint):
    checkpoint["optimizer_states"][0]["state"][0]["junk"] = _repeated(2**31)


def _in_weights(checkpoint):
    checkpoint["state_dict"]["net.0.weight"] = _repeated(2**31)


def _sparse(checkpoint):
    checkpoint["state_dict"]["net.0.weight"] = torch.sparse_coo_tensor([[0]], [1.0], (10**12,))


def _complex_nan(checkpoint):
    checkpoint["state_dict"]["net.0.weight"] = torch.full((10, 4), complex(float("nan"), 0))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_in_weights, "holds a tensor of shape [2147483648] made of 8 bytes"),
        (_in_optimizer_state, "holds a tensor of shape [2147483648] made of 8 bytes"),
        (_sparse, "holds a torch.sparse_coo tensor"),
        (_complex_nan, "are not all finite numbers"),
    ],
    ids=["repeated weights", "repeated optimizer state", "sparse", "complex NaN"],
)
def test_tensors_that_claim_more_than_the_file_holds_are_refused_unexpanded(work, capsys, edit, fragment):
    checkpoint = saved()
    edit(checkpoint)
    path = write(checkpoint)
    assert os.path.getsize(path) < 1 << 20
    started = time.monotonic()
    refused(["test", "--ckpt_path", path], capsys, fragment)
    assert time.monotonic() - started < 20  # expanded, each would be 16 GiB


def test_a_tensor_record_cut_short_is_refused(work, capsys):
    """torch checks a record's length only when it reads it whole: mapped, it would take the bytes that follow."""
    torch.save(saved(), "whole.ckpt")
    with zipfile.ZipFile("whole.ckpt") as old, zipfile.ZipFile("short.ckpt", "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info, data[:4] if "/data/" in info.filename and len(data) > 64 else data)
    refused(["test", "--ckpt_path", "short.ckpt"], capsys, "not a readable checkpoint")


def test_an_old_format_checkpoint_whose_pickle_is_too_large_is_refused_unread(work, capsys):
    checkpoint = saved()
    checkpoint["junk"] = list(range(3_000_000))  # about 14 MiB of pickle
    torch.save(checkpoint, "old.ckpt", _use_new_zipfile_serialization=False)
    refused(["test", "--ckpt_path", "old.ckpt"], capsys, "take more than the 8 MiB any checkpoint needs")


def test_a_long_list_setting_is_refused_before_the_parser_sees_it(work, capsys):
    """jsonargparse checks a list default in time that grows with its square: 6,000 values took two minutes."""
    checkpoint = saved()
    checkpoint["hyper_parameters"]["hidden_sizes"] = [10] * 6000
    started = time.monotonic()
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, "hidden_sizes holds 6,000 values; a setting holds")
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("net", None, "hyper_parameters.net is None, which is not a value this setting takes (str)"),
        ("hidden_sizes", 5, "hidden_sizes is 5, which is not a value this setting takes (list[int])"),
        ("num_classes", 3.5, "num_classes is 3.5, which is not a value this setting takes (int)"),
        ("stem", 3, "stem is 3, which is not a value this setting takes (Literal['imagenet', 'cifar'])"),
        ("input_shape", [-4], "input_shape must be sizes of at least 1"),
    ],
)
def test_a_setting_of_the_wrong_type_is_one_line(work, capsys, key, value, fragment):
    checkpoint = saved()
    checkpoint["hyper_parameters"][key] = value
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, fragment)
    with pytest.raises(UserError, match=re.escape(fragment)):
        load("shared.ckpt")


def test_an_evaluation_does_not_compile_what_a_checkpoint_asks_to(work, monkeypatch):
    """compile: true would run torch's compiler, which writes and loads native code, for a checkpoint's say-so."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    checkpoint = saved()
    checkpoint["hyper_parameters"]["compile"] = True
    assert main(["test", "--ckpt_path", write(checkpoint), QUIET]) == 0
    load("shared.ckpt")
    assert compiled == []


def test_the_python_api_says_which_command_predicts_a_checkpoint_of_measurements(work):
    with pytest.raises(UserError, match=r"is of IrisDataModule, not of images: predict its inputs with lit-cs201"):
        predict(BEST, "flowers.csv")


RESUME_STATES = {
    "random state": (
        lambda c: c["callbacks"]["RandomState"]["numpy"].update(key=torch.zeros(16 << 20, dtype=torch.int64)),
        "the random generators' states are not those of this program",
    ),
    "early stopping score": (lambda c: _callback(c, "RunEarlyStopping").update(best_score="x"), "early-stopping"),
    "checkpoint score": (
        lambda c: _callback(c, "RunCheckpoint{'monitor': 'val/acc'").update(best_model_score="high"),
        "scores are not",
    ),
    "optimizer rate": (lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr="fast"), "lr is 'fast'"),
    "optimizer buffer": (
        lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg=torch.zeros(3)),
        "exp_avg is a float32 tensor of shape [3], not a float32 tensor of shape [10, 4]",
    ),
    "optimizer groups": (lambda c: c["optimizer_states"][0].update(param_groups=[]), "parameter groups"),
    "loop counts": (
        lambda c: c["loops"]["fit_loop"]["epoch_progress"]["current"].update(processed=-5),
        "progress holds -5, not a count",
    ),
    "no loops": (lambda c: c["loops"].pop("fit_loop"), "KeyError: 'fit_loop'"),
    "validation counts": (
        lambda c: c["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"].update(ready="x"),
        "progress holds 'x', not a count",
    ),
    "optimizer betas": (
        lambda c: c["optimizer_states"][0]["param_groups"][0].update(betas=(0.9, 0.99, 0.999)),
        "betas is (0.9, 0.99, 0.999), not (0.9, 0.999)",
    ),
    "optimizer buffer missing": (
        lambda c: c["optimizer_states"][0]["state"][0].pop("exp_avg"),
        "state holds ['exp_avg_sq', 'step'] where a step makes ['exp_avg', 'exp_avg_sq', 'step']",
    ),
    "optimizer buffer of one value": (
        lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg=torch.tensor(1.0)),
        "exp_avg is a float32 tensor of shape [] holding 1, not a float32 tensor of shape [10, 4]",
    ),
    "optimizer step count": (
        lambda c: c["optimizer_states"][0]["state"][0].update(step=torch.tensor(-4.0)),
        "step is a float32 tensor of shape [] holding -4",
    ),
}


def _callback(checkpoint, fragment: str) -> dict[str, Any]:
    return next(state for key, state in checkpoint["callbacks"].items() if fragment in key)


@pytest.mark.parametrize("case", list(RESUME_STATES))
def test_a_resume_from_a_checkpoint_whose_training_state_does_not_fit_is_one_line(work, capsys, case):
    """Lightning loads these states into the run's own objects; what it does not check fails at the first step or at
    the end of the first epoch, with a traceback, and left a config-1.yaml for the next resume to take."""
    edit, fragment = RESUME_STATES[case]
    last = BEST.replace("best", "last")
    checkpoint = torch.load(last, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, last)
    status = main(["fit", "--ckpt_path", last, "--trainer.max_epochs=2", QUIET])
    err = capsys.readouterr().err.strip()
    assert status == 2, err[-2000:]
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"{PREFIX}--ckpt_path {last}: its training state does not fit this run")
    assert fragment in err.splitlines()[-1]
    assert not Path(last).with_name("config-1.yaml").exists()


def test_a_resume_with_a_config_of_its_own_writes_nothing_where_the_checkpoint_says_the_data_is(pointed):
    """A checkpoint copied out of its run folder (no config.yaml) is continued with the user's --config; the
    checkpoint's data_dir is still only read."""
    Path("alone").mkdir()
    shutil.copy("runs/photos/version_0/last.ckpt", "alone/model.ckpt")
    Path("settings.yaml").write_text("trainer:\n  max_epochs: 2\n  enable_progress_bar: false\n")
    before = snapshot(Path("elsewhere"))
    assert main(["fit", "--ckpt_path", "alone/model.ckpt", "--config", "settings.yaml"]) == 0
    assert snapshot(Path("elsewhere")) == before


def test_an_optimizer_flag_a_checkpoint_turns_on_is_the_configs_again(work):
    """amsgrad: true in the saved group (and not in the config) made the first step look for a buffer no step made."""
    last = BEST.replace("best", "last")
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["optimizer_states"][0]["param_groups"][0]["amsgrad"] = True
    torch.save(checkpoint, last)
    assert main(["fit", "--ckpt_path", last, "--trainer.max_epochs=2", QUIET]) == 0
    resumed = torch.load(last, weights_only=True)["optimizer_states"][0]["param_groups"][0]
    assert resumed["amsgrad"] is False


def test_tensors_sharing_one_block_many_times_over_are_refused(work, capsys):
    """Thousands of views of one stored block each pass the storage check; loading would copy each (11 GB)."""
    block = torch.zeros(1 << 20)
    checkpoint = saved()
    checkpoint["optimizer_states"][0]["state"][0].update({f"junk{i}": block for i in range(300)})
    started = time.monotonic()
    refused(["test", "--ckpt_path", write(checkpoint)], capsys, "many tensors share the same stored values")
    assert time.monotonic() - started < 20


def test_the_machine_settings_a_checkpoint_records_are_not_taken(pointed, monkeypatch):
    """num_workers: 400 in a checkpoint started 400 processes on test; it is this machine's choice."""
    best = "runs/photos/version_0/best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["num_workers"] = 400
    torch.save(checkpoint, best)
    started = []
    real = torch.utils.data.DataLoader.__init__

    def counting(self, *args, **kwargs):
        started.append(kwargs.get("num_workers", 0))
        real(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", counting)
    assert main(["test", "--ckpt_path", best, QUIET]) == 0
    assert started and set(started) == {0}
    assert load(best)[1].num_workers == 0


def test_data_settings_that_inflate_the_model_are_refused_before_it_is_built(pointed, capsys):
    """The data's image size sets an MLP's first layer: a 91 KB checkpoint asking for 4096-pixel sides took 13.7 GB
    before its weights were compared."""
    best = "runs/photos/version_0/best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["image_size"] = [4096, 4096]
    torch.save(checkpoint, best)
    fragment = "does not fit the configured Classifier(net=mlp, hidden_sizes=[10], num_classes=2, input_shape=[3, 4096,"
    started = time.monotonic()
    refused(["test", "--ckpt_path", best], capsys, fragment)
    assert time.monotonic() - started < 30
    with pytest.raises(UserError, match=re.escape(fragment)):
        load(best)


@pytest.mark.parametrize("inputs", [None, 5, [None], {"a": 1}])
def test_the_python_api_refuses_what_is_not_an_image_in_one_line(pointed, inputs):
    with pytest.raises(UserError, match="is not an image: give image files, folders, globs, PIL images, uint8"):
        predict("runs/photos/version_0/best.ckpt", inputs)


def test_the_settings_a_datamodule_hands_to_its_base_class_are_checked_and_kept(tmp_path):
    """CIFAR10DataModule takes its data_dir through **kwargs: dropped as unknown, a CIFAR-10 checkpoint's test read
    (and downloaded into) ./data instead of only reading the folder it names."""
    content = {
        "state_dict": {},
        "pytorch-lightning_version": "2.6.6",
        "datamodule_hyper_parameters": {
            "_class_path": "lit_cs201.data.CIFAR10DataModule",
            "data_dir": "elsewhere",
            "batch_size": 32,
            "verify_md5": True,
        },
    }
    torch.save(content, tmp_path / "cifar.ckpt")
    checkpoint = checked(Checkpoint(tmp_path / "cifar.ckpt", load_plain(tmp_path / "cifar.ckpt", "c", "checkpoint")))
    assert checkpoint.settings("data")["init_args"] == {"data_dir": "elsewhere", "batch_size": 32, "verify_md5": True}
    content["datamodule_hyper_parameters"]["data_dir"] = {"class_path": "os.system"}
    torch.save(content, tmp_path / "cifar.ckpt")
    checkpoint = checked(Checkpoint(tmp_path / "cifar.ckpt", load_plain(tmp_path / "cifar.ckpt", "c", "checkpoint")))
    with pytest.raises(UserError, match="data_dir.class_path names 'os.system'"):
        checkpoint.settings("data")
