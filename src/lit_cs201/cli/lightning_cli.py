"""The ``lit-cs201`` command: a LightningCLI with this project's run layout and checkpoint handling.

Every run writes to ``runs/<experiment>/version_N/``: TensorBoard events, the resolved ``config.yaml``,
``best.ckpt`` (highest ``val/acc``) and ``last.ckpt`` (every epoch). Given ``--ckpt_path``, the checkpoint's model
and datamodule settings become the parser's defaults, so ``lit-cs201 test --ckpt_path best.ckpt`` needs no config,
while a ``--config`` or a flag still wins by jsonargparse's own precedence. ``fit --ckpt_path`` continues the run in
its own folder, from the run's latest saved config.
"""

from __future__ import annotations

import os
import signal
import sys
from argparse import ArgumentError
from typing import Any, Literal

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

import lit_cs201.data
from lit_cs201.cli import restoring
from lit_cs201.cli.checks import check_accelerator
from lit_cs201.cli.help import (
    CKPT_PATH_HELP,
    SUBCOMMANDS,
    HelpFormatter,
    asks_for_help,
    check_flags,
    description,
    quiet_known_noise,
    relay,
    retitle_groups,
    set_log_level,
    unreadable_config,
)
from lit_cs201.cli.lr_find import LR_FIND, FinderTrainer, adopt_finders
from lit_cs201.cli.running import RunFolder, leave_process_group, preflight, say_where
from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.errors import EXIT_BAD_INPUT, UserError, printable, report, run_command
from lit_cs201.models.classifier import Classifier
from lit_cs201.report.learning_rate import LearningRateLogger
from lit_cs201.report.log_interval import LogInterval
from lit_cs201.report.model_summary import LIGHTNING_SUMMARIES, run_model_summary
from lit_cs201.report.prediction_writer import PredictionWriter
from lit_cs201.report.progress import run_progress_bar
from lit_cs201.report.tensorboard import TensorBoardHparams
from lit_cs201.report.test_report import TestReport
from lit_cs201.runs.checkpoint import Checkpoint
from lit_cs201.runs.checkpoint_io import SafeCheckpointIO
from lit_cs201.runs.checkpoints import RunEarlyStopping, best_checkpoint, last_checkpoint
from lit_cs201.runs.folders import DEFAULT_RUNS_DIR
from lit_cs201.runs.records import latest_config
from lit_cs201.runs.restore import (
    PINNED_CHECKPOINT_ENV,
    UNBUILT,
    check_fits_before_building,
)
from lit_cs201.runs.resume import RandomState, RestoreWindow, RunConfigSaver
from lit_cs201.runs.stop import GracefulStop
from lit_cs201.runs.summary import RunSummary

# Lightning's own progress bars, which the run's replace (lit_cs201.report.progress.run_progress_bar).
LIGHTNING_BARS = (RichProgressBar, TQDMProgressBar)


def _choices() -> dict[str, list[type]]:
    """This package's datamodules and models, imported so that jsonargparse knows them by their short names
    (``--data MNISTDataModule``) and ``--help`` lists them."""
    data = [getattr(lit_cs201.data, name) for name in lit_cs201.data.__all__ if name != "ClassificationDataModule"]
    return {"data": data, "model": [Classifier]}


class LitCS201CLI(LightningCLI):
    """`LightningCLI` with the project's trainer defaults, checkpoint restore and a fitting final report."""

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        self.checkpoint: Checkpoint | None = None  # what --ckpt_path named, read and checked
        self._data_read_only = False  # the data folder came from the checkpoint: only read it
        self._restoring = RestoreWindow()
        self._run_folder = RunFolder()
        self._args = list(args)
        # Only the parser of the subcommand being run is built: each takes a noticeable part of a second.
        self._building = [args[0]] if args and args[0] in SUBCOMMANDS else list(SUBCOMMANDS)
        self._choices = _choices()
        super().__init__(  # parses, then runs the subcommand
            model_class=Classifier,
            trainer_class=FinderTrainer,  # Lightning's, with the lr_find subcommand
            datamodule_class=ClassificationDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            trainer_defaults={
                "logger": {
                    "class_path": restoring.TENSORBOARD,
                    "init_args": {"save_dir": DEFAULT_RUNS_DIR, "name": "default"},
                },
                # Inert outside fit (checkpoints) and predict (the CSV), and Lightning wants the checkpoint
                # callbacks present whenever it restores a checkpoint.
                "callbacks": [best_checkpoint(), last_checkpoint(), PredictionWriter()],
            },
            # allow_abbrev=False: argparse would otherwise take --trainer.max_epoch as --trainer.max_epochs.
            parser_kwargs={
                "prog": "lit-cs201",
                "exit_on_error": False,
                "allow_abbrev": False,
                "formatter_class": HelpFormatter,
                "description": "Train, test and use image and tabular classifiers. "
                "Run lit-cs201 <subcommand> --help for one subcommand's options. "
                "Take a model elsewhere with lit-cs201 export --ckpt_path best (one ONNX file), and show it with "
                "lit-cs201 serve MODEL (a page to draw or drop images on); see their --help. "
                "Compare your runs with lit-cs201 runs.",
                **{
                    name: {
                        "description": description(name, self._choices),
                        "usage": f"lit-cs201 {name} [--config FILE] "
                        + ("" if name == LR_FIND else "[--ckpt_path FILE|best|last] ")
                        + "[options]",
                    }
                    for name in self._building
                },
            },
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  (a staticmethod in Lightning)
        subcommands = {**super().subcommands(), LR_FIND: {"model", "datamodule"}}
        return {name: skip for name, skip in subcommands.items() if name in self._building}

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if not add_subcommands:
            return  # LitCS201CLI(args, run=False): the classes only, for Python
        # Lightning lists the subcommands with the first lines of Trainer's docstrings, cut mid-sentence.
        for choice in self.parser._subcommands_action._choices_actions:
            choice.help = SUBCOMMANDS[choice.dest][0]
        for name, parser in self._subcommand_parsers.items():
            retitle_groups(parser, name)
            if "--ckpt_path" in parser._option_string_actions:  # lr_find has none
                parser._option_string_actions["--ckpt_path"].help = CKPT_PATH_HELP

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--log_level",
            type=Literal["debug", "info", "warning", "error"],
            default="warning",
            help="Lightning's messages to show: info adds the seed, the devices and checkpoint restores.",
        )
        parser.add_lightning_class_args(RunEarlyStopping, "early_stopping")
        parser.set_defaults(
            {
                "model": {"class_path": "lit_cs201.models.Classifier"},  # the one model: --data alone will do
                "early_stopping.monitor": "val/acc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 10,
            }
        )
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments(
            ("data.num_classes", "data.input_shape"),
            "model.init_args.input_shape",
            compute_fn=self._input_shape,
            apply_on="instantiate",
        )

    def _input_shape(self, num_classes: int, input_shape: Any) -> Any:
        """The model's input shape, the datamodule's; with a checkpoint, once the model these and the configured
        settings make is known to fit its weights (built on the meta device, before the real one takes memory)."""
        if self.checkpoint is not None:
            settings = self.config[self.subcommand].model.init_args.as_dict()
            built = {key: value for key, value in settings.items() if key not in UNBUILT}
            shapes = {"num_classes": num_classes, "input_shape": list(input_shape)}
            check_fits_before_building(self.checkpoint, {**built, **shapes})
        return input_shape

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str]) -> None:
        subcommand = args[0] if args and args[0] in SUBCOMMANDS else None
        subparser = self._subcommand_parsers.get(subcommand) if subcommand is not None else None
        try:
            if subparser is None or asks_for_help(args):
                self.config = parser.parse_args(args)
                return
            check_flags(subparser, args[1:])
            args, printing = restoring.without_print_config(args)
            self.config = self._parse(parser, subparser, subcommand, args)
        except ArgumentError as err:  # jsonargparse's, with exit_on_error=False
            raise relay(err, subparser, args[1:], self._choices) from None
        except (RecursionError, UnicodeDecodeError) as err:  # a config nested thousands deep, or not text
            raise unreadable_config(err, args[1:]) from None
        config = self.config[subcommand]
        set_log_level(config.get("log_level") or "warning")
        self._data_read_only = restoring.settle(subcommand, config, self.checkpoint)
        if printing is not None:  # the config as the command would run it: the checkpoint's settings, settled
            flags = set(printing.split(","))
            print(subparser.dump(config, skip_none="skip_null" in flags, skip_default="skip_default" in flags), end="")
            raise SystemExit(0)

    def _parse(
        self, parser: LightningArgumentParser, subparser: LightningArgumentParser, subcommand: str, args: list[str]
    ) -> Namespace:
        """``args`` parsed; with a checkpoint, twice: its settings are the defaults of the second parse."""
        parsed, error, only_flags = restoring.first_parse(parser, subparser, args, self._choices["data"])
        config = parsed[subcommand]
        if config.get("ckpt_path") is None and not only_flags:
            if subcommand not in ("fit", LR_FIND):
                # Lightning would silently evaluate the freshly initialised, untrained model.
                raise UserError(
                    f"{subcommand} needs --ckpt_path: a checkpoint file, or best/last for the newest run's checkpoint"
                )
            if error is not None:
                raise error
            return parsed
        path, self.checkpoint = restoring.locate_checkpoint(config, error if only_flags else None)
        defaults = restoring.checkpoint_defaults(self.checkpoint)
        if error is not None and "data" not in defaults:
            raise error
        subparser.set_defaults(defaults)
        if subcommand == "fit":
            saved = latest_config(path.parent)
            if saved is None and not (config.get("config") or only_flags):  # only_flags: configs were given
                raise UserError(
                    f"--ckpt_path {path}: its run folder holds no config.yaml, so the settings to continue with "
                    "(max_epochs, ...) are unknown; give them with --config FILE"
                )
            subparser.default_config_files = [saved] if saved else []
        return parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """Lightning would put the checkpoint's model settings over the parsed ones, flags included (its issue
        #20801); here they are the parser's defaults instead (`_parse`)."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except MisconfigurationException as err:
            # Lightning's classes check their settings as they are built (EarlyStopping's mode, ...): bad input.
            raise UserError(" ".join(str(err).split())) from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        settings = self._get(self.config_init, "trainer", default={})
        check_accelerator(settings.get("accelerator"))
        # The config's own callbacks, before the trainer is built: Lightning appends its default bar and summary to
        # the very list it is given.
        given = list(settings.get("callbacks") or [])
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError) as err:
            # Lightning checks devices, strategy and precision here, before anything is written.
            chosen = ", ".join(f"{k}={settings.get(k)}" for k in ("accelerator", "devices", "strategy", "precision"))
            raise UserError(f"trainer ({chosen}): {err}") from None
        # Added here rather than as trainer defaults, so that a config listing its own callbacks keeps them.
        trainer.callbacks += [
            RandomState(),
            GracefulStop(),
            LearningRateLogger(),
            TestReport(),
            TensorBoardHparams(),
            RunSummary(),
            self._restoring,
        ]
        bar = trainer.progress_bar_callback
        if type(bar) in LIGHTNING_BARS and bar not in given:  # Lightning's default
            trainer.callbacks[trainer.callbacks.index(bar)] = run_progress_bar(bar)
        summary = next((cb for cb in trainer.callbacks if type(cb) in LIGHTNING_SUMMARIES), None)
        if summary is not None and summary not in given:  # Lightning's default
            trainer.callbacks[trainer.callbacks.index(summary)] = run_model_summary(summary)
        if settings.get("log_every_n_steps") is None:  # neither a config nor a flag set it
            # First: it records the interval in the config that RunConfigSaver saves when it sets up.
            trainer.callbacks.insert(0, LogInterval(self._get(self.config, "trainer")))
        adopt_finders(trainer, self._args)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the user chose
            trainer.strategy.checkpoint_io = SafeCheckpointIO(preloaded=self.checkpoint)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        if self.datamodule is not None:
            self.datamodule.read_only = self._data_read_only  # in every process: each one decodes
        try:
            try:
                preflight(self.trainer, self.model, self.datamodule, self.checkpoint, subcommand)
                self._run_folder.claim(self.trainer, subcommand)
                super()._run_subcommand(subcommand)
            except Exception as err:
                if self._restoring.open and report(err) is None:
                    # The checkpoint's own state failed to load: it is data that does not fit this run, not a bug.
                    raise self.checkpoint.refuse(
                        f"its training state does not fit this run ({type(err).__name__}: {printable(err)}); "
                        "continue from a checkpoint this run wrote"
                    ) from err
                raise
        except BaseException as err:
            self._run_folder.abandon(self.trainer, subcommand, (report(err) or (None,))[0] == EXIT_BAD_INPUT)
            raise
        finally:
            self._run_folder.release()
        leave_process_group()
        say_where(self.trainer, subcommand)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit-cs201`` and ``python -m lit_cs201``.

    Exit status: 0 done, 1 training diverged, 2 bad input, 74 the file system failed (disk full, a read-only
    folder; sysexits' EX_IOERR), 75 the run is being trained by another process (EX_TEMPFAIL: try again later), 130
    Ctrl-C, 143 SIGTERM (128 + the signal, as a shell reports a process the signal killed).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    pinned = os.environ.get(PINNED_CHECKPOINT_ENV)
    quiet_known_noise()
    try:
        return run_command("lit-cs201", lambda: _run(args))
    except SIGTERMException:  # Lightning's, raised at a batch boundary after the signal; the report is printed
        return 128 + signal.SIGTERM
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):  # Lightning turns Ctrl-C during a run into exit(1)
            return 128 + signal.SIGINT
        raise
    except KeyboardInterrupt:  # before or after the trainer runs
        print("\nInterrupted.", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:  # the processes this run started have read it; a next run in this process resolves afresh
        if pinned is None:
            os.environ.pop(PINNED_CHECKPOINT_ENV, None)
        else:
            os.environ[PINNED_CHECKPOINT_ENV] = pinned


def _run(args: list[str]) -> int:
    LitCS201CLI(args=args)  # parses, then runs the subcommand
    return 0


if __name__ == "__main__":
    sys.exit(main())
