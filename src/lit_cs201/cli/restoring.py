"""``--ckpt_path`` on the command line: the checkpoint's settings as the parser's defaults, and the parsed config
completed before anything is built.

jsonargparse is the one reader of the command line and of the configs it names, so that every spelling and order it
accepts means the same here (``--trainer.logger.save_dir``, ``--trainer.logger.init_args.save_dir``, the same in a
``--config``, ``ckpt_path:`` in a config, the last one given winning). A first parse tells which checkpoint and which
runs folder the command names; the checkpoint's settings then become the defaults of a second parse, which flags and
configs override by jsonargparse's own precedence.
"""

from __future__ import annotations

import importlib
import os
import random
from argparse import ArgumentError
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.loggers import TensorBoardLogger

from lit_cs201.cli.flag_errors import CONFIG_FLAGS
from lit_cs201.cli.lr_find import LR_FIND, place_logs
from lit_cs201.errors import MAX_SEED, UserError, check_range
from lit_cs201.models.precision import training_precision
from lit_cs201.runs.checkpoint import Checkpoint, read_checkpoint
from lit_cs201.runs.folders import DEFAULT_EXPERIMENT, DEFAULT_RUNS_DIR, log_place
from lit_cs201.runs.restore import LINKED_MODEL_ARGS, MACHINE_SETTINGS, check_describes_weights, resolve_checkpoint

# The runs' logger: Lightning's, with an event file only once there is something to show (a predict of Iris has not).
TENSORBOARD = "lit_cs201.report.logger.TensorBoardLogger"
# The default data_dir while a checkpoint's settings are parsed: no path a user can give (it holds NUL bytes), so that
# after the parse it tells the checkpoint's folder from the same folder named by a flag or a config.
CHECKPOINT_DATA_DIR = "\0the checkpoint's data_dir\0"
# What jsonargparse's --print_config takes: comma-separated flags.
PRINT_FLAGS = {"skip_null", "skip_default", "comments"}


def first_parse(
    parser: ArgumentParser, subparser: ArgumentParser, args: list[str], data: list[type]
) -> tuple[Namespace, ArgumentError | None, bool]:
    """``args`` parsed, for what they say about the checkpoint and the runs folder; with the error of their parse
    where only `locating_args` could be parsed, and whether only their flags could (the configs left out).

    A command that takes its settings from a checkpoint may set options of a class that only the checkpoint (or the
    run's config) names, ``--data.init_args.data_dir`` or ``--model.init_args.lr_scheduler.init_args.step_size``,
    which jsonargparse reads only once it knows the class. Such a command is first parsed without those options, and
    with each of this package's datamodules in turn as the default until one is taken: the checkpoint and the
    logger's folder depend on neither. The error of the parse as given is raised if nothing parses.
    """
    try:
        return parser.parse_args(args), None, False
    except ArgumentError as err:
        error = err
    locating = args[:1] + locating_args(args[1:])
    # A config may itself set such options (a scheduler's step_size): then the flags alone locate the checkpoint.
    for tokens in (locating, _without_configs(locating)):
        for cls in data:
            subparser.set_defaults({"data": {"class_path": f"{cls.__module__}.{cls.__name__}"}})
            try:
                return parser.parse_args(tokens), error, tokens is not locating
            except ArgumentError:
                continue
    raise error


def locate_checkpoint(config: Namespace, unparsed: ArgumentError | None) -> tuple[Path, Checkpoint]:
    """The checkpoint the parsed ``config`` names, read (once, whole: torch checks a tensor's record only when it
    reads it) and checked. ``unparsed``: the error of the command as given, where only its flags located the
    checkpoint; when they locate none, that error is the one to report (a config that is not YAML, say)."""
    if config.get("ckpt_path") is None and unparsed is not None:
        raise unparsed
    try:
        path = resolve_checkpoint(str(config.ckpt_path), *logs_folder(config))
        checkpoint = read_checkpoint(path)
    except UserError:
        if unparsed is not None:
            raise unparsed from None
        raise
    check_describes_weights(checkpoint)
    return path, checkpoint


def _without_configs(args: list[str]) -> list[str]:
    return [token for name, span in _options(args) if name not in CONFIG_FLAGS for token in span]


def without_print_config(args: list[str]) -> tuple[list[str], str | None]:
    """``args`` without ``--print_config[=FLAGS]``, and its flags ("" when given bare; None when not given).

    jsonargparse prints the config in the middle of the parse that meets the option, before the checkpoint's
    settings are the defaults and before `settle`: the command prints it itself once the config is complete."""
    kept, printing, at = [], None, 0
    while at < len(args):
        name, has_value, value = args[at].partition("=")
        if name != "--print_config":
            kept.append(args[at])
        elif has_value:
            printing = value
        elif at + 1 < len(args) and set(args[at + 1].split(",")) <= PRINT_FLAGS:
            printing, at = args[at + 1], at + 1
        else:
            printing = ""
        at += 1
    return kept, printing


def locating_args(args: list[str]) -> list[str]:
    """The options of ``args`` that name the checkpoint and the logger's folder, with their values, in their order:
    ``--config`` (a config may name both), ``--ckpt_path`` and every ``--trainer.logger`` option. Only chosen here;
    what they say, and which one wins, is jsonargparse's to read."""
    return [token for name, span in _options(args) if _locates(name) for token in span]


def _locates(name: str) -> bool:
    return name in (*CONFIG_FLAGS, "--ckpt_path", "--trainer.logger") or name.startswith("--trainer.logger.")


def _options(args: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Each option of ``args`` with the tokens it spans: ``--name value``, ``--name=value``, or a bare token."""
    at = 0
    while at < len(args):
        name, has_value, _ = args[at].partition("=")
        takes_next = name.startswith("-") and not has_value and at + 1 < len(args)
        span = args[at : at + 2] if takes_next and not args[at + 1].startswith("--") else args[at : at + 1]
        yield name, span
        at += len(span)


def logs_folder(config: Namespace) -> tuple[str, str | None]:
    """The runs folder and the experiment the parsed logger settings name (None: any experiment, where they name
    none but the default)."""
    logger = config.trainer.get("logger")
    settings = logger.get("init_args") if isinstance(logger, Namespace) else None
    if settings is None:
        return DEFAULT_RUNS_DIR, None
    name = settings.get("name")
    experiment = str(name) if name and str(name) != DEFAULT_EXPERIMENT else None
    return str(settings.get("save_dir") or DEFAULT_RUNS_DIR), experiment


def checkpoint_defaults(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's model and data settings as parser defaults. A checkpoint is data: its settings arrive
    checked (`Checkpoint.settings`), without those that would fetch weights (``pretrained``), run the compiler
    (``compile``), or are this machine's to choose (`MACHINE_SETTINGS`: which files, where to cache, how many
    processes)."""
    model = checkpoint.settings("model", drop=(*LINKED_MODEL_ARGS, "pretrained", "compile"))
    # The class names are set after the parse (`settle`): jsonargparse checks a list default in time that grows with
    # the square of its length (a minute for 3,000 names).
    data = checkpoint.settings("data", drop=(*MACHINE_SETTINGS, "classes"))
    if data is not None and "data_dir" in checkpoint.hyper_parameters("data"):
        data["init_args"]["data_dir"] = CHECKPOINT_DATA_DIR  # replaced after the parse: see `settle`
    return {key: value for key, value in (("model", model), ("data", data)) if value is not None}


def settle(subcommand: str, config: Namespace, checkpoint: Checkpoint | None) -> bool:
    """Complete the parsed ``config`` of ``subcommand``: the one place that edits it, before Lightning seeds and builds
    anything, so that the run's ``config.yaml`` records the settings it ran with. Returns whether the data folder
    came from the checkpoint, and so is only read."""
    seed = config.get("seed_everything")
    if seed is True:
        # `true` (the default when a config gives no seed) makes Lightning draw a seed and print it. A fit gets a
        # seed of its own, which config.yaml records so that the run can be repeated; an evaluation a fixed one.
        config.seed_everything = fresh_seed() if subcommand == "fit" else 0
    elif isinstance(seed, int) and not isinstance(seed, bool):
        check_range("seed_everything", seed, 0, MAX_SEED, hint="or true for a fresh seed of the run's own")
    if subcommand in ("fit", LR_FIND) and config.trainer.get("precision") is None:
        # No precision given: the one this machine computes fastest. (Evaluations keep float32, as
        # lit_cs201.deploy.predict computes.)
        accelerator = config.trainer.get("accelerator")
        config.trainer.precision, why = training_precision(accelerator if isinstance(accelerator, str) else None)
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"Precision: {config.trainer.precision} ({why}; --trainer.precision chooses)", flush=True)
    logger = config.trainer.get("logger")
    tensorboard = isinstance(logger, Namespace) and _is_tensorboard(logger.class_path)
    if tensorboard:
        logger.class_path = TENSORBOARD
        # No hp_metric placeholder (-1 in every run): the HPARAMS table shows real scores (TensorBoardHparams).
        logger.init_args.default_hp_metric = False
        if subcommand == LR_FIND:
            place_logs(logger.init_args)
    if checkpoint is None:
        return False
    config.ckpt_path = str(checkpoint.path)
    if config.model.init_args.get("pretrained"):
        config.model.init_args.pretrained = None  # the weights come from the checkpoint, not from a download
    if tensorboard:
        save_dir, _ = logs_folder(config)
        for key, value in log_place(subcommand, checkpoint.path, save_dir).items():
            logger.init_args[key] = value
    # A run reads its data where the checkpoint says it was trained unless a flag or a config names a folder (the
    # same one included: a resume's config.yaml does); a checkpoint never says where to write, so nothing is
    # downloaded, extracted or cached there.
    settings = config.data.get("init_args") if isinstance(config.data, Namespace) else None
    if settings is None:
        return False
    classes = checkpoint.hyper_parameters("data").get("classes")
    if "classes" in settings and settings.classes is None and classes is not None:
        settings.classes = list(classes)
    if settings.get("data_dir") != CHECKPOINT_DATA_DIR:
        return False
    settings.data_dir = checkpoint.hyper_parameters("data")["data_dir"]
    return True


def _is_tensorboard(class_path: str) -> bool:
    """Whether a config's logger is a TensorBoard one: Lightning's (the configs name it), this package's, or the
    path a 0.1 run's config names it by. A config is code, so its class is imported."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, TensorBoardLogger)


def fresh_seed() -> int:
    """A seed for a run that gave none, the same in every process of the run.

    Every process must agree: the distributed sampler shuffles with it, and processes with different seeds would
    split different permutations of the data. Processes that Lightning starts from the first one inherit its seed;
    torchrun and srun start all processes at once, before they can talk, so those keep Lightning's fixed 0.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" and "PL_GLOBAL_SEED" in os.environ:
        return int(os.environ["PL_GLOBAL_SEED"])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return 0
    return random.SystemRandom().randrange(2**31)


def given_configs(config: Namespace) -> list[Path]:
    """The ``--config`` files the parse read, as jsonargparse recorded them."""
    return [Path(str(path)) for path in config.get("config") or [] if path is not None]
