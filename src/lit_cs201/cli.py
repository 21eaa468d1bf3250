"""The ``lit-cs201`` command: a LightningCLI with this project's run layout and checkpoint handling.

Every run writes to ``runs/<experiment>/version_N/``: TensorBoard events, the resolved ``config.yaml``,
``best.ckpt`` (highest ``val/acc``) and ``last.ckpt`` (every epoch). Given ``--ckpt_path``, the model and the
datamodule are rebuilt from the checkpoint alone, so ``lit-cs201 test --ckpt_path runs/iris/version_0/best.ckpt``
needs no config; an explicit ``--config`` or ``--data.*`` still wins.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_cs201.callbacks import PredictionWriter, RunConfigSaver, best_checkpoint, last_checkpoint
from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.errors import UserError
from lit_cs201.models.classifier import Classifier

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_RUNS_DIR = "runs"
DEFAULT_EXPERIMENT = "default"
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
# Model arguments the CLI links from the datamodule; a restored checkpoint must not set them a second time.
LINKED_MODEL_ARGS = ("num_classes", "input_shape")


class LitCS201CLI(LightningCLI):
    """`LightningCLI` with the project's trainer defaults and a fitting final report."""

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(
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

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.loggers:  # LearningRateMonitor refuses to run without a logger
            trainer.callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        return trainer

    def _preflight(self, stage: str) -> None:
        """Load the data before the trainer creates the run folder, so bad input leaves nothing behind."""
        if self.datamodule is not None and os.environ.get("LOCAL_RANK", "0") == "0":
            self.datamodule.prepare_data()
            self.datamodule.setup(stage)

    def before_fit(self) -> None:
        self._preflight("fit")

    def before_validate(self) -> None:
        self._preflight("validate")

    def before_test(self) -> None:
        self._preflight("test")

    def before_predict(self) -> None:
        self._preflight("predict")

    def after_fit(self) -> None:
        best = next((cb for cb in self.trainer.checkpoint_callbacks if cb.monitor == "val/acc"), None)
        if best is None or not best.best_model_path or not self.trainer.is_global_zero:
            return
        score = best.best_model_score
        print(
            f"\nBest checkpoint: {best.best_model_path} (val/acc {float(score):.4f})\n"
            f"Test it with:    lit-cs201 test --ckpt_path {best.best_model_path}"
        )


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
    # Evaluation of a checkpoint draws no random numbers worth a seed.
    warnings.filterwarnings("ignore", message=r"No seed found, seed set to")
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


def _logger_location(args: list[str]) -> tuple[str, str | None]:
    """Runs folder and experiment name the user's configs and flags point at (for ``best``/``last``)."""
    save_dir, name = DEFAULT_RUNS_DIR, None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args) and Path(args[i + 1]).is_file():
            config = yaml.safe_load(Path(args[i + 1]).read_text()) or {}
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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a Lightning checkpoint safely (``weights_only``), with a clear error for anything else."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"--ckpt_path {path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _as_config(hparams: dict[str, Any], drop: tuple[str, ...] = ()) -> str | None:
    """A checkpoint's saved hyper-parameters as a ``{class_path, init_args}`` JSON value for the parser."""
    hparams = {k: v for k, v in hparams.items() if k != "_instantiator" and k not in drop}
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        return None
    return json.dumps({"class_path": class_path, "init_args": hparams})


def restore_args(args: list[str]) -> list[str]:
    """Resolve ``--ckpt_path`` and put the checkpoint's model and data config in front of the user's arguments.

    Arguments later on the command line win, so an explicit ``--config`` or ``--data.*`` overrides what the
    checkpoint holds. ``fit`` resumes into the checkpoint's own run folder, so the curves, ``best.ckpt`` and the
    early-stopping state carry on where they stopped.
    """
    if not args or args[0] not in SUBCOMMANDS:
        return args
    subcommand, rest = args[0], list(args[1:])
    found = _option(rest, "--ckpt_path")
    if found is None or found[1] in (None, "null"):
        if subcommand != "fit" and not any(a in ("-h", "--help") for a in rest):
            # Lightning would silently evaluate the freshly initialised, untrained model.
            raise UserError(f"{subcommand} needs --ckpt_path: a checkpoint file, or best/last for the newest run's")
        return args
    index, value = found
    path = resolve_checkpoint(value, *_logger_location(rest))
    if rest[index] == "--ckpt_path":
        rest[index + 1] = str(path)
    else:
        rest[index] = f"--ckpt_path={path}"
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


_UNION_ERROR = re.compile(
    r'Parser key "(?P<key>[^"]+)": Does not validate against any of the Union subtypes.*?Errors:(?P<errors>.*?)'
    r"Given value type:.*?Given value: (?P<value>.*)$"
)


def _one_line(message: str) -> str:
    """jsonargparse's report of a bad value, cut to what a user can act on, on one line."""
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    match = _UNION_ERROR.match(message)
    if match is None:
        return message
    key = match["key"]
    # Every optional argument is a Union with None; "not None either" is never the useful part.
    errors = [e.strip() for e in match["errors"].split(" - ") if e.strip() and "NoneType" not in e]
    detail = "; ".join(errors) or f"invalid value {match['value']}"
    if "has no attribute" in detail or "Problem with given class_path" in detail and "Parser key" not in detail:
        detail += f" (available: {', '.join(_available_classes(key))})"
    return f"{key}: {detail}"


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
    """Entry point of ``lit-cs201`` and ``python -m lit_cs201``."""
    args = list(sys.argv[1:] if argv is None else argv)
    _quiet_known_noise()
    try:
        LitCS201CLI(args=restore_args(args))
    except Exception as err:
        cause = _user_error(err)
        if cause is None:
            raise
        print(f"lit-cs201: error: {_one_line(str(cause))}", file=sys.stderr)
        return 2
    return 0


def _user_error(err: BaseException | None) -> BaseException | None:
    """The bad-input error behind ``err`` (jsonargparse wraps errors raised while instantiating), if any."""
    while err is not None:
        if isinstance(err, (UserError, ArgumentError)):
            return err
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
