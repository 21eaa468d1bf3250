"""Errors that suggest the fix: a wrong value names the flag, the value and what the flag takes; a bare config or
checkpoint suggests its option; a missing config suggests the closest name; every message ends as a sentence; and
the help is there under every subcommand, with group titles that read as help.

Each case runs the real entry point in this process (``helpers.run_cli``) in an empty folder holding a copy of
the shipped configs, and checks the one line on stderr, the exit status 2 and that nothing was written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import pytest
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from helpers import CONFIGS, run_cli, snapshot
from lit_cs201.cli.flag_errors import Problem, accepted, explain, read_problem
from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.errors import UserError, report

PREFIX = "lit-cs201: error: "
IRIS, MNIST = ["--config", "configs/iris.yaml"], ["--config", "configs/mnist.yaml"]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A folder holding only the shipped configs, as a fresh clone has them."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(work: Path, *args: str) -> str:
    """The one line ``lit-cs201 ARGS`` refuses with, after checking the exit status and that nothing was written."""
    before = snapshot(work)
    result = run_cli(*args, cwd=work, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    assert snapshot(work) == before
    return lines[0].removeprefix(PREFIX)


# -- a value of the wrong type: the flag, the value, what it takes -------------------------------------------------

WRONG_TYPES = {
    "trainer int": (
        ["fit", *IRIS, "--trainer.max_epochs", "two"],
        "--trainer.max_epochs: 'two' is not an integer or null.",
    ),
    "trainer int given a fraction": (
        ["fit", *IRIS, "--trainer.max_epochs=2.5"],
        "--trainer.max_epochs: '2.5' is not an integer or null.",
    ),
    "trainer int or float": (
        ["fit", *IRIS, "--trainer.limit_train_batches", "half"],
        "--trainer.limit_train_batches: 'half' is not a number or null.",
    ),
    "trainer bool": (
        ["fit", *IRIS, "--trainer.enable_progress_bar", "maybe"],
        "--trainer.enable_progress_bar: 'maybe' is not one of true, false or null.",
    ),
    "trainer choices": (
        ["fit", *IRIS, "--trainer.precision", "17"],
        "--trainer.precision: '17' is not one of 64, 32, 16, transformer-engine, transformer-engine-float16, 16-true, "
        "16-mixed, bf16-true, bf16-mixed, 32-true, 64-true, bf16 or null.",
    ),
    "trainer int or bool": (
        ["fit", *IRIS, "--trainer.fast_dev_run", "yes please"],
        "--trainer.fast_dev_run: 'yes please' is not an integer, true or false.",
    ),
    "logger path": (
        ["fit", *IRIS, "--trainer.logger.init_args.save_dir", "[1]"],
        "--trainer.logger.init_args.save_dir: '[1]' is not a path.",
    ),
    "seed": (["fit", *IRIS, "--seed_everything", "abc"], "--seed_everything: 'abc' is not true, false or an integer."),
    "choices of the command": (
        ["fit", *IRIS, "--log_level", "loud"],
        "--log_level: 'loud' is not one of debug, info, warning or error.",
    ),
    "early stopping int": (
        ["fit", *IRIS, "--early_stopping.patience", "ten"],
        "--early_stopping.patience: 'ten' is not an integer.",
    ),
    "model float": (
        ["fit", *IRIS, "--model.init_args.label_smoothing", "lots"],
        "--model.init_args.label_smoothing: 'lots' is not a number.",
    ),
    "model bool": (
        ["fit", *IRIS, "--model.init_args.channels_last", "2"],
        "--model.init_args.channels_last: '2' is not true or false.",
    ),
    "model Literal": (
        ["fit", *IRIS, "--model.init_args.stem", "nope"],
        "--model.init_args.stem: 'nope' is not imagenet or cifar.",
    ),
    "model list": (
        ["fit", *IRIS, "--model.init_args.hidden_sizes", "ten"],
        "--model.init_args.hidden_sizes: 'ten' is not a list such as [1, 2].",
    ),
    "model list item": (
        ["fit", *IRIS, "--model.init_args.hidden_sizes", "[16, b]"],
        "--model.init_args.hidden_sizes: 'b' in [16, b] is not an integer.",
    ),
    "optimizer float": (
        ["fit", *IRIS, "--model.init_args.optimizer.init_args.lr", "fast"],
        "--model.init_args.optimizer.init_args.lr: 'fast' is not a number.",
    ),
    "data int, short flag": (["fit", *IRIS, "--data.batch_size", "big"], "--data.batch_size: 'big' is not an integer."),
    "data int or float": (
        ["fit", *MNIST, "--data.init_args.val_size", "half"],
        "--data.init_args.val_size: 'half' is not a number.",
    ),
    "data bool": (
        ["fit", *MNIST, "--data.init_args.download", "sure"],
        "--data.init_args.download: 'sure' is not true or false.",
    ),
    "data list of floats": (
        ["fit", *MNIST, "--data.init_args.mean", "0.5"],
        "--data.init_args.mean: '0.5' is not a list of numbers such as [0.5, 1.0] or null.",
    ),
    "data Literal": (
        ["fit", *MNIST, "--data.init_args.invert", "sometimes"],
        "--data.init_args.invert: 'sometimes' is not one of auto, always or never.",
    ),
    "an option the datamodule lacks": (
        ["fit", *IRIS, "--data.init_args.data_dir", "x"],
        "--data.init_args.data_dir: IrisDataModule takes no option data_dir "
        "(lit-cs201 fit --data.help IrisDataModule lists its options).",
    ),
    "an option the optimizer lacks": (
        ["fit", *IRIS, "--model.init_args.optimizer.init_args.nope", "1"],
        "--model.init_args.optimizer.init_args.nope: torch.optim.Adam takes no option nope.",
    ),
}


@pytest.mark.parametrize("args, expected", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_wrong_value_names_the_flag_the_value_and_what_it_takes(work, args, expected):
    assert refused(work, *args) == expected


def test_a_wrong_value_in_a_config_names_the_key_and_the_file(work):
    bad = Path("configs/iris.yaml").read_text().replace("max_epochs: 100", "max_epochs: two")
    assert "max_epochs: two" in bad
    Path("bad.yaml").write_text(bad)
    assert (
        refused(work, "fit", "--config", "bad.yaml")
        == "trainer.max_epochs in bad.yaml: 'two' is not an integer or null."
    )
    Path("model.yaml").write_text("model:\n  init_args:\n    hidden_sizes: ten\n")
    assert refused(work, "fit", *IRIS, "--config", "model.yaml") == (
        "model.init_args.hidden_sizes in a --config file: 'ten' is not a list such as [1, 2]."
    )


def test_a_wrong_value_inside_a_class_flag_names_that_flag(work):
    data = '{"class_path": "IrisDataModule", "init_args": {"batch_size": "big"}}'
    assert refused(work, "fit", "--data", data, "--trainer.max_epochs=1") == (
        "data.init_args.batch_size in --data: 'big' is not an integer."
    )
    # Over a config's: the flag is named, not the config.
    step_lr = '{"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": "two"}}'
    assert refused(work, "fit", *IRIS, "--model.init_args.lr_scheduler", step_lr) == (
        "model.init_args.lr_scheduler.init_args.step_size in --model.init_args.lr_scheduler: 'two' is not an integer."
    )


def test_a_config_key_that_is_no_setting_suggests_the_closest(work):
    Path("typo.yaml").write_text(Path("configs/iris.yaml").read_text().replace("max_epochs:", "max_epoch:"))
    assert refused(work, "fit", "--config", "typo.yaml") == (
        "trainer.max_epoch in typo.yaml is not a setting of fit; did you mean trainer.max_epochs?"
    )


def test_a_setting_lightning_checks_when_it_builds_is_one_line(work):
    """EarlyStopping checks its mode itself, while it is built: a traceback and exit 1 before."""
    assert refused(work, "fit", *IRIS, "--early_stopping.mode", "maximum") == "`mode` can be min, max, got maximum."


# -- jsonargparse's wording: the one place that reads it -------------------------------------------------------------


def jsonargparse_message(parser: ArgumentParser, *args: str) -> str:
    with pytest.raises(ArgumentError) as refused_:
        parser.parse_args(list(args))
    return refused_.value.message


def test_jsonargparse_still_words_its_refusals_as_read_problem_reads_them():
    """If this fails, jsonargparse changed how it words a refused value: `read_problem` must follow it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--epochs", type=int | None)
    parser.add_argument("--mode", type=Literal["a", "b"])
    parser.add_argument("--sizes", type=list[int])
    parser.add_subclass_arguments(ClassificationDataModule, "data", required=False)
    iris = ["--data", "lit_cs201.data.IrisDataModule"]

    assert read_problem(jsonargparse_message(parser, "--epochs", "two")) == Problem(
        ["epochs"], "two", ["<class 'int'>", "<class 'NoneType'>"]
    )
    assert read_problem(jsonargparse_message(parser, "--mode", "c")) == Problem(
        ["mode"], "c", ["typing.Literal['a', 'b']"]
    )
    assert read_problem(jsonargparse_message(parser, "--sizes", "[1, x]")) == Problem(["sizes"], "x", ["<class 'int'>"])
    assert read_problem(jsonargparse_message(parser, *iris, "--data.init_args.batch_size", "big")) == Problem(
        ["data", "batch_size"], "big", ["<class 'int'>"]
    )
    assert read_problem(jsonargparse_message(parser, *iris, "--data.init_args.nope", "1")) == Problem(
        ["data"], option="nope", class_path="lit_cs201.data.IrisDataModule"
    )
    assert jsonargparse_message(parser, "extra") == "unrecognized arguments: extra"
    assert read_problem("unrecognized arguments: extra") is None


def test_jsonargparse_still_words_an_unknown_config_key_as_explain_reads_it(tmp_path):
    (tmp_path / "typo.yaml").write_text("epoch: 1\n")
    main, fit = ArgumentParser(exit_on_error=False), ArgumentParser(exit_on_error=False)
    fit.add_argument("--config", action=ActionConfigFile)
    fit.add_argument("--epochs", type=int)
    main.add_subcommands().add_subcommand("fit", fit)
    message = jsonargparse_message(main, "fit", "--config", str(tmp_path / "typo.yaml"))
    assert explain(message, "fit", ["--config", "typo.yaml"], ["config", "epochs"]) == (
        "epoch in typo.yaml is not a setting of fit; did you mean epochs?"
    )


@pytest.mark.parametrize(
    "expected, words",
    [
        (["<class 'int'>", "<class 'NoneType'>"], "an integer or null"),
        (["<class 'int'>", "<class 'float'>"], "a number"),
        (["<class 'str'>", "<class 'pathlib.Path'>"], "a path"),
        (["<class 'float'>", "<class 'torch.Tensor'>"], "a number"),
        (["typing.Literal['x', 'y', 'z']", "<class 'NoneType'>"], "one of x, y, z or null"),
        (["list[str]"], "a list of names such as [a, b]"),
        (["<class 'lightning.pytorch.loggers.logger.Logger'>", "<class 'bool'>"], "a Logger, true or false"),
    ],
)
def test_the_accepted_types_in_words(expected, words):
    assert accepted(expected) == words


# -- a config given without --config, or one that is not there ---------------------------------------------------


def test_a_bare_config_suggests_the_command_with_config(work):
    assert refused(work, "fit", "configs/iris.yaml") == (
        "configs/iris.yaml is given without its option; did you mean lit-cs201 fit --config configs/iris.yaml?"
    )
    assert refused(work, "fit", "configs/iris.yaml", "--trainer.max_epochs", "3") == (
        "configs/iris.yaml is given without its option; "
        "did you mean lit-cs201 fit --config configs/iris.yaml --trainer.max_epochs 3?"
    )
    # After other options (jsonargparse's "unrecognized arguments"), and a checkpoint for test.
    assert refused(work, "fit", "--trainer.max_epochs", "3", "configs/iris.yaml") == (
        "configs/iris.yaml is given without its option; "
        "did you mean lit-cs201 fit --trainer.max_epochs 3 --config configs/iris.yaml?"
    )
    assert refused(work, "test", "runs/iris/version_0/best.ckpt") == (
        "runs/iris/version_0/best.ckpt is given without its option; "
        "did you mean lit-cs201 test --ckpt_path runs/iris/version_0/best.ckpt?"
    )
    assert refused(work, "fit", *IRIS, "banana") == (
        "unexpected argument 'banana': options are given as --name value (see lit-cs201 fit --help)."
    )


def test_a_missing_config_suggests_the_closest_name(work):
    assert refused(work, "fit", "--config", "configs/iris.yml") == (
        "--config configs/iris.yml does not exist; did you mean --config configs/iris.yaml?"
    )
    assert refused(work, "fit", "--config=configs/Mnist.yaml") == (
        "--config configs/Mnist.yaml does not exist; did you mean --config configs/mnist.yaml?"
    )
    nothing_close = refused(work, "fit", "--config", "configs/xyz.yaml")
    assert nothing_close.startswith("--config configs/xyz.yaml does not exist (configs holds cifar10.yaml, ")
    assert nothing_close.endswith(" more).")
    assert refused(work, "fit", "--config", "confs/iris.yaml") == (
        "--config confs/iris.yaml does not exist (there is no folder confs)."
    )
    assert refused(work, "fit", "--config", "configs") == (
        "--config configs is a folder, not a file (it holds cifar10.yaml, cifar10_fast.yaml, cifar10_seed.yaml, "
        "image_folder.yaml, image_folder_digits.yaml and 6 more)."
    )


def test_settings_given_inline_with_config_are_not_taken_for_a_file(work):
    assert refused(work, "fit", "--config", "{trainer: {max_epochs: x}}", "--data", "IrisDataModule") == (
        "trainer.max_epochs in {trainer: {max_epochs: x}}: 'x' is not an integer or null."
    )


# -- every message ends as a sentence -----------------------------------------------------------------------------

RELAYED = {
    "argparse: a flag without its value": ["fit", *IRIS, "--trainer.max_epochs"],
    "argparse: no subcommand": [],
    "argparse: unknown subcommand": ["train", *IRIS],
    "a mistyped flag, no close one": ["fit", *IRIS, "--zzz"],
    "jsonargparse: a config that is not YAML": ["fit", "--config", "broken.yaml"],
    "the project's own": ["test", *IRIS],
    "a missing checkpoint": ["test", "--ckpt_path", "nowhere.ckpt"],
}


@pytest.mark.parametrize("args", RELAYED.values(), ids=RELAYED.keys())
def test_every_message_ends_as_a_sentence(work, args):
    Path("broken.yaml").write_text("trainer:\n  max_epochs: [1, 2\n")
    line = refused(work, *args)
    assert line.endswith((".", "?")) and not line.endswith(".."), line


def test_a_plain_command_ends_its_messages_as_sentences(work):
    """``lit-cs201 export`` parses with argparse: its usage errors end as sentences too."""
    assert refused(work, "export", "--nope").endswith("(see lit-cs201 export --help).")


def test_a_plain_command_says_a_wrong_number_as_the_flags_do(work):
    assert refused(work, "export", "--ckpt_path", "best", "--check_images", "many") == (
        "argument --check_images: 'many' is not an integer (see lit-cs201 export --help)."
    )


def test_a_message_ending_with_a_command_or_path_to_copy_gets_no_full_stop():
    """The stop would be copied with the command, and a path with a stop is another file."""
    assert report(UserError("then continue with: lit-cs201 fit --ckpt_path runs/a/last.ckpt"))[1].endswith(".ckpt")
    assert report(UserError('export needs onnxscript: pip install "lit-cs201[deploy]"'))[1].endswith('deploy]"')
    assert report(UserError("no run under runs/iris"))[1].endswith("runs/iris")
    assert report(UserError("takes no option x (lit-cs201 fit --data.help X lists them)"))[1].endswith(").")


def test_report_ends_a_message_once():
    assert report(UserError("no such file"))[1] == "error: no such file."
    assert report(UserError("did you mean x?"))[1] == "error: did you mean x?"
    assert report(UserError("done."))[1] == "error: done."


# -- help under every subcommand ----------------------------------------------------------------------------------


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_the_class_help_works_under_every_subcommand(work, subcommand):
    """``predict --data.help ImageFolderDataModule`` was refused for want of a checkpoint."""
    data = run_cli(subcommand, "--data.help", "ImageFolderDataModule", cwd=work, check=False)
    assert data.returncode == 0, data.stderr[-2000:]
    assert "--data.data_dir" in data.stdout and "--data.image_size" in data.stdout
    model = run_cli(subcommand, "--model.help=Classifier", cwd=work, check=False)
    assert model.returncode == 0, model.stderr[-2000:]
    assert "--model.hidden_sizes" in model.stdout


def test_the_help_group_titles_read_as_help(work):
    out = run_cli("fit", "--help", cwd=work).stdout
    titles = [line for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    groups = titles[titles.index("options:") :]
    assert groups == [
        "options:",
        "Training (--trainer.NAME VALUE):",
        "Model (--model.init_args.NAME VALUE):",
        "Data (--data NAME, then --data.init_args.NAME VALUE):",
        "Early stopping (--early_stopping.NAME VALUE):",
        "Linked arguments:",
        "Checkpoint:",
    ]
    # The class docstrings' first lines, which titled them, speak to whoever maintains the classes.
    assert "Base of the dataset modules" not in out and "`EarlyStopping` whose" not in out
    assert "Customize every aspect of training" not in out


def test_no_config_and_no_dataset_says_what_to_give(work):
    assert refused(work, "fit") == (
        "lit-cs201 fit needs a dataset: give a config, e.g. --config configs/iris.yaml, or --data NAME "
        "(lit-cs201 fit --help lists them)."
    )


def test_a_validation_split_of_everything_names_its_flag(work):
    message = refused(work, "fit", *IRIS, "--data.init_args.val_size=200")
    assert message.startswith("--data.init_args.val_size 200 is all of the ") and "val_size 0.1" in message
