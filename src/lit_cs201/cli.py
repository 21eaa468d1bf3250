"""The ``lit-cs201`` command: a LightningCLI with this project's run layout and checkpoint handling.

Every run writes to ``runs/<experiment>/version_N/``: TensorBoard events, the resolved ``config.yaml``,
``best.ckpt`` (highest ``val/acc``) and ``last.ckpt`` (every epoch). Given ``--ckpt_path``, the model and the
datamodule are rebuilt from the checkpoint alone, so ``lit-cs201 test --ckpt_path runs/iris/version_0/best.ckpt``
needs no config; an explicit ``--config`` or ``--data.*`` still wins.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shlex
import signal
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from lit_cs201.callbacks import (
    GracefulStop,
    PredictionWriter,
    RandomState,
    RunConfigSaver,
    best_checkpoint,
    last_checkpoint,
)
from lit_cs201.checkpoint_io import AtomicCheckpointIO
from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.errors import MAX_SEED, NonFiniteLossError, RunBusyError, StorageError, UserError, check_range
from lit_cs201.models.classifier import Classifier
from lit_cs201.runs import STORAGE_ERRNOS, RunLock, create_log_dir, remove_created, remove_stale_partials
from lit_cs201.torch_files import load_plain

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_RUNS_DIR = "runs"
DEFAULT_EXPERIMENT = "default"
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
# Model arguments the CLI links from the datamodule; a restored checkpoint must not set them a second time.
LINKED_MODEL_ARGS = ("num_classes", "input_shape")


class LitCS201CLI(LightningCLI):
    """`LightningCLI` with the project's trainer defaults and a fitting final report."""

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        self._created: list[Path] = []  # log folders this run created (see _claim_run_folder)
        self._lock: RunLock | None = None
        super().__init__(  # parses, then runs the subcommand
            model_class=Classifier,
            datamodule_class=ClassificationDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            trainer_defaults={
                "logger": {
                    "class_path": TENSORBOARD,
                    "init_args": {"save_dir": DEFAULT_RUNS_DIR, "name": DEFAULT_EXPERIMENT},
                },
                # Inert outside fit (checkpoints) and predict (the CSV), and Lightning wants the checkpoint
                # callbacks present whenever it restores a checkpoint.
                "callbacks": [best_checkpoint(), last_checkpoint(), PredictionWriter()],
            },
            # allow_abbrev=False: argparse would otherwise take --trainer.max_epoch as --trainer.max_epochs.
            parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {
                "early_stopping.monitor": "val/acc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 10,
            }
        )
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning would overwrite the model config with the checkpoint's hyper-parameters after parsing, over
        # whatever the user gave; `restore_args` has already put them in front of the user's arguments instead.
        pass

    def _set_seed(self) -> None:
        # `seed_everything: true` (the default when a config gives no seed) makes Lightning seed 0, every run. A
        # run gets a seed of its own instead, which Lightning then records in the run's config.yaml, so any run can
        # be repeated.
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if seed is True:
            config["seed_everything"] = _fresh_seed()
        elif isinstance(seed, int) and not isinstance(seed, bool):
            check_range("seed_everything", seed, 0, MAX_SEED, hint="or true for a fresh seed of the run's own")
        super()._set_seed()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        settings = self._get(self.config_init, "trainer", default={})
        _check_accelerator(settings.get("accelerator"))
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError) as err:
            # Lightning checks devices, strategy and precision here, before anything is written.
            chosen = ", ".join(f"{k}={settings.get(k)}" for k in ("accelerator", "devices", "strategy", "precision"))
            raise UserError(f"trainer ({chosen}): {err}") from None
        # Added here rather than as trainer defaults, so that a config listing its own callbacks keeps them.
        trainer.callbacks += [RandomState(), GracefulStop()]
        if trainer.loggers:  # LearningRateMonitor refuses to run without a logger
            trainer.callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _preflight(self, stage: str) -> None:
        """Check the checkpoint and load the data before the trainer creates the run folder, so that bad input
        leaves nothing behind."""
        if self.trainer.local_rank != 0:
            return  # another process of a multi-process run on this machine: the first one checks and prepares
        for logger in self.trainer.loggers:
            if getattr(logger, "save_dir", None):
                folder = Path(logger.save_dir)
                blocked = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
                if blocked is not None:
                    raise UserError(f"logger save_dir {folder}: {blocked} is a file; give a folder for the run logs")
        if stage == "fit":
            check_fit_settings(self.trainer, self.model)
        ckpt_path = self._get(self.config, "ckpt_path")
        if ckpt_path:
            checkpoint = load_checkpoint(Path(ckpt_path), mmap=True)  # tensors are read only where compared
            check_fits(self.model, Path(ckpt_path), checkpoint)
            if stage == "fit":
                check_same_optimizer(self.model, Path(ckpt_path), checkpoint)
        if self.datamodule is not None:
            self.datamodule.prepare_data()
            self.datamodule.setup(stage)

    def _claim_run_folder(self, stage: str) -> None:
        """Create the log folders and, for ``fit``, lock the run folder: after the checks, so that bad input leaves
        nothing behind, and before the trainer starts the other processes of a multi-process run, which learn the
        folder the first process created through ``trainer.log_dir``."""
        if self.trainer.node_rank != 0 or self.trainer.local_rank != 0:
            return  # not the process that becomes global rank zero, the only one that writes run files
        for logger in self.trainer.loggers:
            self._created += create_log_dir(logger, stage)
        if stage == "fit":
            run = Path(self.trainer.log_dir)  # where the checkpoints go (RunCheckpoint)
            self._lock = RunLock(run)
            if self._lock.acquire():
                remove_stale_partials(run)  # no other fit writes here now: what is left is a killed write's

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            remove_created(self._created, with_contents=_user_error(err) is not None)
            raise
        finally:
            if self._lock is not None:
                self._lock.release()

    def before_fit(self) -> None:
        self._preflight("fit")
        self._claim_run_folder("fit")

    def before_validate(self) -> None:
        self._preflight("validate")
        self._claim_run_folder("validate")

    def before_test(self) -> None:
        self._preflight("test")
        self._claim_run_folder("test")

    def before_predict(self) -> None:
        self._preflight("predict")
        self._claim_run_folder("predict")

    def after_fit(self) -> None:
        best = next((cb for cb in self.trainer.checkpoint_callbacks if cb.monitor == "val/acc"), None)
        if best is None or not best.best_model_path or not self.trainer.is_global_zero:
            return
        score = best.best_model_score
        print(
            f"\nBest checkpoint: {best.best_model_path} (val/acc {float(score):.4f})\n"
            f"Test it with:    lit-cs201 test --ckpt_path {shlex.quote(best.best_model_path)}"
        )


ACCELERATORS = {"cuda": CUDAAccelerator, "mps": MPSAccelerator, "tpu": XLAAccelerator}


def _check_accelerator(name: Any) -> None:
    """Refuse an accelerator this machine lacks, saying which it has (Lightning's errors for ``gpu`` and ``tpu``
    name neither, and suggest installing torch_xla)."""
    if not isinstance(name, str) or name not in (*ACCELERATORS, "gpu"):
        return
    here = [n for n, accelerator in ACCELERATORS.items() if accelerator.is_available()]
    if name in here or name == "gpu" and {"cuda", "mps"} & set(here):  # Lightning's "gpu" is CUDA or Apple's MPS
        return
    raise UserError(
        f"--trainer.accelerator {name}: this machine has none; use auto or one it has: {', '.join(['cpu', *here])}"
    )


def check_fit_settings(trainer: Trainer, model: Classifier) -> None:
    """Refuse trainer settings that Lightning accepts but that crash in the middle of ``fit`` or train nothing, before
    the run folder exists."""
    check_range("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches, 1)
    if trainer.check_val_every_n_epoch is not None:  # None: validate every val_check_interval batches instead
        check_range("trainer.check_val_every_n_epoch", trainer.check_val_every_n_epoch, 1)
    if trainer.gradient_clip_val is not None:  # a negative bound flips the gradients: the model climbs the loss
        check_range("trainer.gradient_clip_val", trainer.gradient_clip_val, 0, hint="0 or null for no clipping")
    interval = trainer.val_check_interval
    if isinstance(interval, int | float) and interval <= 0:
        raise UserError(
            f"trainer.val_check_interval must be a fraction of an epoch in (0, 1] or a batch count of at least 1, "
            f"got {interval}"
        )
    for low, high, unit in (("min_epochs", "max_epochs", "epochs"), ("min_steps", "max_steps", "steps")):
        least, most = getattr(trainer, low), getattr(trainer, high)
        if least is not None and most is not None and most >= 0 and least > most:
            raise UserError(
                f"trainer.{low} {least} is more than {high} {most}: Lightning would stop after {most} {unit}; "
                f"raise {high} or lower {low}"
            )
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        if getattr(trainer, key) == 0:
            raise UserError(f"trainer.{key} 0 trains nothing and writes no checkpoint; give at least 1")
    stoppers = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)]
    for stopper in stoppers:
        check_range("early_stopping.patience", stopper.patience, 0, hint="the epochs without improvement to allow")
    # Early stopping (strict) fails at the first epoch end without its metric; best.ckpt would never be written.
    on_val = [
        cb.monitor
        for cb in [*stoppers, *trainer.checkpoint_callbacks]
        if isinstance(cb, EarlyStopping | ModelCheckpoint) and str(cb.monitor or "").startswith("val/")
    ]
    every = trainer.check_val_every_n_epoch
    if trainer.limit_val_batches == 0:
        never = "trainer.limit_val_batches 0 turns validation off"
        fix = "give a fraction in (0, 1] or a batch count (to hold out fewer samples, lower --data.init_args.val_size)"
    elif every is not None and every > trainer.max_epochs >= 0:
        never = f"trainer.check_val_every_n_epoch {every} with max_epochs {trainer.max_epochs} never validates"
        fix = "give a check_val_every_n_epoch of at most max_epochs"
    else:
        never = fix = None
    if never and on_val:
        raise UserError(f"{never}, but early stopping and best.ckpt choose epochs by {on_val[0]}; {fix}")
    if model.cycle_spans_run and trainer.max_epochs == -1 and trainer.max_steps == -1:
        raise UserError(
            "the one-cycle schedule (OneCycleLR) is sized to the whole run, but trainer.max_epochs -1 without "
            "max_steps never ends; give max_epochs or max_steps, or the schedule's own total_steps"
        )


def _fresh_seed() -> int:
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


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def _quiet_known_noise() -> None:
    """Silence messages that are expected in this project's layout and would only confuse a newcomer."""
    # The run folder already holds config.yaml and events when the checkpoints are first written there.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # restore_args rewrites the command line and passes it on explicitly.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within")
    # Emitted by Lightning itself on recent torch; nothing for a user to do.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Test and validate runs of a checkpoint log into their own sub-folder, never the training one.
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropMessages("litlogger", "litmodels"))


# --- checkpoint resolution and restoration -------------------------------------------------------------


def _option(args: list[str], name: str) -> tuple[int, str | None] | None:
    """Position and value of the last ``--name VALUE`` / ``--name=VALUE`` in ``args``."""
    found = None
    for i, arg in enumerate(args):
        if arg == name:
            found = (i, args[i + 1] if i + 1 < len(args) else None)
        elif arg.startswith(name + "="):
            found = (i, arg.split("=", 1)[1])
    return found


def read_config(path: Path) -> dict[str, Any]:
    """A YAML config, or the YAML error with its line (jsonargparse's own report names neither file nor line)."""
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        parts = [
            f"{text} at line {mark.line + 1}" if mark is not None else text
            for text, mark in (
                (getattr(err, "context", None), getattr(err, "context_mark", None)),
                (getattr(err, "problem", None), getattr(err, "problem_mark", None)),
            )
            if text
        ]
        raise UserError(f"--config {path}: not valid YAML ({': '.join(parts) or err})") from None
    if config is not None and not isinstance(config, dict):
        raise UserError(f"--config {path}: expected a mapping of settings (trainer:, model:, ...), got {config!r}")
    return config or {}


def _logger_location(args: list[str]) -> tuple[str, str | None]:
    """Runs folder and experiment name the user's configs and flags point at (for ``best``/``last``)."""
    save_dir, name = DEFAULT_RUNS_DIR, None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args) and Path(args[i + 1]).is_file():
            config = read_config(Path(args[i + 1]))
            logger = (config.get("trainer") or {}).get("logger") or {}
            init = logger.get("init_args", {}) if isinstance(logger, dict) else {}
            save_dir, name = init.get("save_dir", save_dir), init.get("name", name)
    for key in ("save_dir", "name"):
        found = _option(args, f"--trainer.logger.init_args.{key}") or _option(args, f"--trainer.logger.{key}")
        if found and found[1] is not None:
            save_dir, name = (found[1], name) if key == "save_dir" else (save_dir, found[1])
    return save_dir, name


def resolve_checkpoint(value: str, runs_dir: str = DEFAULT_RUNS_DIR, experiment: str | None = None) -> Path:
    """Turn ``best``/``last`` into the newest run's file, and check that a given path exists."""
    if value not in ("best", "last"):
        path = Path(value)
        if path.is_dir():
            inside = sorted(str(p) for p in path.glob("*.ckpt")) or ["none"]
            raise UserError(f"--ckpt_path {value} is a folder; give a checkpoint file (in it: {', '.join(inside)})")
        if not path.is_file():
            raise UserError(f"--ckpt_path {value}: no such file")
        return path
    pattern = f"{experiment or '*'}/*/{value}.ckpt"
    candidates = sorted(Path(runs_dir).glob(pattern), key=lambda p: p.stat().st_mtime)
    if not candidates:
        where = f"{runs_dir}/{experiment}" if experiment else runs_dir
        raise UserError(
            f"--ckpt_path {value}: no {value}.ckpt under {where}/; train first (lit-cs201 fit --config ...) "
            "or give the checkpoint's path"
        )
    chosen = candidates[-1]
    print(f"--ckpt_path {value}: using {chosen} (the newest of {len(candidates)})", file=sys.stderr)
    return chosen


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a Lightning checkpoint safely (``weights_only``), with a clear error for anything else."""
    checkpoint = load_plain(path, "--ckpt_path", "checkpoint", mmap=mmap)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def check_fits(model: Classifier, path: Path, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not fit ``model``, naming both models (Lightning's own error lists
    every mismatching tensor, hundreds of lines for a ResNet)."""
    model.on_load_checkpoint(checkpoint)  # fills what older checkpoints lack, as loading would
    saved, expected = checkpoint["state_dict"], model.state_dict()
    problem = next((f"{k} is missing from the checkpoint" for k in expected if k not in saved), None)
    problem = problem or next((f"the model has no {k}" for k in saved if k not in expected), None)
    problem = problem or next(
        (
            f"{k} is {list(saved[k].shape)} there and {list(v.shape)} here"
            for k, v in expected.items()
            if saved[k].shape != v.shape
        ),
        None,
    )
    if problem is not None:
        trained = _describe(checkpoint.get("hyper_parameters", {}))
        configured = _describe({"_class_path": type(model).__name__, **model.hparams})
        raise UserError(
            f"--ckpt_path {path} holds {trained}, which does not fit the configured {configured} ({problem}); "
            "drop the options that change the model or the data, or give a checkpoint of this model"
        )


def check_same_optimizer(model: Classifier, path: Path, checkpoint: dict[str, Any]) -> None:
    """Refuse to resume with another optimizer class: Lightning would load the checkpoint's optimizer state into it,
    and its first step would fail on a setting that state lacks (``KeyError: 'momentum'`` for SGD after Adam)."""
    saved = checkpoint.get("hyper_parameters", {}).get("optimizer")
    trained = saved.get("class_path") if isinstance(saved, dict) else None  # absent: passed from Python, unknown
    configured = model.optimizer_name
    if trained is not None and trained.rsplit(".", 1)[-1] != configured.rsplit(".", 1)[-1]:
        raise UserError(
            f"--ckpt_path {path} was trained with {trained}, not the configured {configured}, and an optimizer's "
            f"state does not carry over to another class; resume with --model.init_args.optimizer {trained}, or "
            "start a new run (without --ckpt_path) to train with the other optimizer"
        )


def _describe(hparams: dict[str, Any]) -> str:
    """A model as its architecture-defining hyper-parameters: ``Classifier(net=mlp, hidden_sizes=[10], ...)``."""
    name = str(hparams.get("_class_path", "model")).rsplit(".", 1)[-1]
    keys = ("net", "hidden_sizes" if hparams.get("net") == "mlp" else "stem", "num_classes", "input_shape")
    values = {k: list(v) if isinstance(v, tuple) else v for k in keys if (v := hparams.get(k)) is not None}
    return f"{name}({', '.join(f'{k}={v}' for k, v in values.items())})"


def _as_config(hparams: dict[str, Any], drop: tuple[str, ...] = ()) -> str | None:
    """A checkpoint's saved hyper-parameters as a ``{class_path, init_args}`` JSON value for the parser."""
    hparams = {k: v for k, v in hparams.items() if k != "_instantiator" and k not in drop}
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        return None
    return json.dumps({"class_path": class_path, "init_args": hparams})


def pin_checkpoint(args: list[str]) -> list[str]:
    """``args`` with ``--ckpt_path best|last`` replaced by the file it stands for now.

    Lightning starts the other processes of a DDP run by running the same command line again: pinned, they all
    load the checkpoint the first process chose, even if a newer run appears meanwhile.
    """
    if not args or args[0] not in SUBCOMMANDS:
        return args
    rest = list(args[1:])
    found = _option(rest, "--ckpt_path")
    if found is None or found[1] not in ("best", "last"):
        return args
    index, value = found
    path = str(resolve_checkpoint(value, *_logger_location(rest)))
    rest[index : index + 2 if rest[index] == "--ckpt_path" else index + 1] = ["--ckpt_path", path]
    return [args[0], *rest]


def restore_args(args: list[str]) -> list[str]:
    """Resolve ``--ckpt_path`` and put the checkpoint's model and data config in front of the user's arguments.

    Arguments later on the command line win, so an explicit ``--config`` or ``--data.*`` overrides what the
    checkpoint holds. ``fit`` resumes into the checkpoint's own run folder, so the curves, ``best.ckpt`` and the
    early-stopping state carry on where they stopped.
    """
    if not args or args[0] not in SUBCOMMANDS:
        return args
    subcommand, rest = args[0], list(pin_checkpoint(args)[1:])
    for i, arg in enumerate(rest):
        config = rest[i + 1] if arg in ("--config", "-c") and i + 1 < len(rest) else arg.partition("--config=")[2]
        if config and Path(config).is_file():
            read_config(Path(config))
    found = _option(rest, "--ckpt_path")
    if found is None or found[1] in (None, "null"):
        if subcommand != "fit" and not any(a in ("-h", "--help") for a in rest):
            # Lightning would silently evaluate the freshly initialised, untrained model.
            raise UserError(f"{subcommand} needs --ckpt_path: a checkpoint file, or best/last for the newest run's")
        return args
    path = resolve_checkpoint(found[1])  # a file: pin_checkpoint has already resolved best/last
    checkpoint = load_checkpoint(path)

    restored: list[str] = []
    run_dir = path.parent
    has_config = any(a in ("--config", "-c") or a.startswith("--config=") for a in rest)
    if subcommand == "fit" and not has_config and (run_dir / "config.yaml").is_file():
        restored += ["--config", str(run_dir / "config.yaml")]  # the run's own trainer settings
    model_hparams = dict(checkpoint.get("hyper_parameters", {}))
    if model_hparams.get("pretrained"):
        model_hparams["pretrained"] = None  # the checkpoint holds the weights; don't fetch the originals again
    model = _as_config(model_hparams, drop=LINKED_MODEL_ARGS)
    data = _as_config(checkpoint.get("datamodule_hyper_parameters", {}))
    restored += [f"--model={model}"] if model else []
    restored += [f"--data={data}"] if data else []

    logger_given = any(a.startswith("--trainer.logger") for a in rest)
    if subcommand == "fit":
        # Same folder as the interrupted run; after the user's arguments so a config's logger does not move it.
        logger = {
            "save_dir": str(run_dir.parent.parent),
            "name": run_dir.parent.name,
            "version": run_dir.name,
        }
        after = [] if logger_given else [f"--trainer.logger={_logger_json(logger)}"]
        return [subcommand, *restored, *rest, *after]
    # validate/test/predict results sit beside the checkpoint they evaluate: <run>/<subcommand>/version_N.
    logger = {"save_dir": str(run_dir), "name": subcommand}
    return [subcommand, *restored, f"--trainer.logger={_logger_json(logger)}", *rest]


def _logger_json(init_args: dict[str, str]) -> str:
    return json.dumps({"class_path": TENSORBOARD, "init_args": init_args})


# Lines of jsonargparse's reports that describe its own machinery rather than the user's input.
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: .*|Errors:|Given value.*"
    r"|Expected a <class 'NoneType'>|Expected a path but .* either not accessible or invalid"
    r"|Problem with given class_path '[^']*':)$"
)
# A class path that does not resolve, for the options whose classes come from torch rather than this project.
_EXAMPLES = {
    "optimizer": "e.g. torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW",
    "lr_scheduler": "e.g. torch.optim.lr_scheduler.StepLR, torch.optim.lr_scheduler.OneCycleLR",
}


def _one_line(message: str) -> str:
    """jsonargparse's report of a bad value, cut to what a user can act on, on one line."""
    text = str(message)
    keys = re.findall(r'Parser key "([^"]+)"', text)
    lines = [re.sub(r"^- ", "", line.strip()) for line in text.splitlines() if line.strip()]
    if not keys:
        return " ".join(lines)
    key = ".init_args.".join(keys)  # a nested report: model -> optimizer is model.init_args.optimizer
    got = re.search(r"Got value: (.*)$", text, re.MULTILINE)
    given = re.search(r"^\s*Given value: (?:NestedArg\(key='[^']*', val='(.*)'\)|(.*))$", text, re.MULTILINE)
    value = got[1] if got else (given[1] or given[2]) if given else None
    classes = re.findall(r"Problem with given class_path '([^']*)'", text)
    details = []
    for line in lines:
        line = re.sub(r'^Parser key "[^"]+":\s*', "", line)
        if not line or _NOISE.match(line):
            continue
        if classes:
            line = re.sub(r"^Option '(\w+)' is not accepted", rf"{classes[-1]} has no option '\1'", line)
        line = re.sub(r"^Type .*? expects a function or a callable class: ", "", line)
        line = re.sub(r"\. Got value: .*$", "", line)
        line = re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", line)
        details.append(re.sub(r"<class '([\w.]+)'>", r"\1", line).replace("Expected a ", "expected "))
    detail = "; ".join(details) or "invalid value"
    notes = [f"got {value}"] if value is not None else []
    if "has no attribute" in detail and keys[-1] in ("model", "data"):
        notes.append(f"available: {', '.join(_available_classes(keys[-1]))}")
    elif "has no attribute" in detail and keys[-1] in _EXAMPLES:
        notes.append(_EXAMPLES[keys[-1]])
    return f"{key}: {detail}" + (f" ({'; '.join(notes)})" if notes else "")


def _available_classes(key: str) -> list[str]:
    import lit_cs201.data
    import lit_cs201.models

    module, base = (lit_cs201.data, ClassificationDataModule) if key == "data" else (lit_cs201.models, Classifier)
    classes = (getattr(module, name) for name in module.__all__)
    return [
        f"{module.__name__}.{cls.__name__}"
        for cls in classes
        if isinstance(cls, type) and issubclass(cls, base) and cls is not ClassificationDataModule
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit-cs201`` and ``python -m lit_cs201``.

    Exit status: 0 done, 1 training diverged, 2 bad input, 74 the file system failed (disk full, a read-only
    folder; sysexits' EX_IOERR), 75 the run is being trained by another process (EX_TEMPFAIL: try again later), 130
    Ctrl-C, 143 SIGTERM (128 + the signal, as a shell reports a process the signal killed).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _quiet_known_noise()
    try:
        args = pin_checkpoint(args)
        if argv is None:
            sys.argv[1:] = args  # what the other processes of a DDP run will read
        LitCS201CLI(args=restore_args(args))
    except SIGTERMException:  # Lightning's, raised at a batch boundary after the signal; the report is printed
        return 128 + signal.SIGTERM
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):  # Lightning turns Ctrl-C during a run into exit(1)
            return 128 + signal.SIGINT
        raise
    except KeyboardInterrupt:  # before or after the trainer runs
        print("\nInterrupted.", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as err:
        if isinstance(err, NonFiniteLossError):
            print(f"lit-cs201: {err}", file=sys.stderr)
            return 1
        cause = _user_error(err)
        if cause is not None:
            print(f"lit-cs201: error: {_one_line(str(cause))}", file=sys.stderr)
            return 2
        fault = _environment_fault(err)
        if fault is None:
            raise
        status, message = fault
        print(f"lit-cs201: error: {message}", file=sys.stderr)
        return status
    return 0


def _user_error(err: BaseException | None) -> BaseException | None:
    """The bad-input error behind ``err`` (jsonargparse wraps errors raised while instantiating), if any."""
    while err is not None:
        if isinstance(err, (UserError, ArgumentError)):
            return err
        err = err.__cause__ or err.__context__
    return None


EXIT_STORAGE, EXIT_BUSY = 74, 75  # sysexits.h: EX_IOERR, EX_TEMPFAIL


def _environment_fault(err: BaseException | None) -> tuple[int, str] | None:
    """Exit status and one line for a failure of the machine rather than of the input: a full disk, a read-only
    folder, a run that another process holds. The project's own report wins over an ``OSError`` raised while
    cleaning up after it (a full disk fails the event files' flush too)."""
    chain = []
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for link in chain:
        if isinstance(link, StorageError):
            return EXIT_STORAGE, str(link)
        if isinstance(link, RunBusyError):
            return EXIT_BUSY, str(link)
    for link in chain:
        if isinstance(link, OSError) and link.errno in STORAGE_ERRNOS:
            where = f" ({link.filename})" if link.filename else ""
            todo = "free space on that disk" if link.errno in (errno.ENOSPC, errno.EDQUOT) else "use a writable folder"
            return EXIT_STORAGE, f"{link.strerror}{where}; {todo} (--trainer.logger.init_args.save_dir moves the logs)"
    return None


if __name__ == "__main__":
    sys.exit(main())
