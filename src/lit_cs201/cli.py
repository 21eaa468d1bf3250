"""The ``lit-cs201`` command: a LightningCLI with this project's run layout and checkpoint handling.

Every run writes to ``runs/<experiment>/version_N/``: TensorBoard events, the resolved ``config.yaml``,
``best.ckpt`` (highest ``val/acc``) and ``last.ckpt`` (every epoch). Given ``--ckpt_path``, the checkpoint's model
and datamodule settings become the parser's defaults, so ``lit-cs201 test --ckpt_path best.ckpt`` needs no config,
while a ``--config`` or a flag still wins by jsonargparse's own precedence. ``fit --ckpt_path`` continues the run in
its own folder, from the run's latest saved config.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

import lit_cs201.data
from lit_cs201.callbacks import (
    GracefulStop,
    LearningRateLogger,
    PredictionWriter,
    RandomState,
    RestoreWindow,
    RunConfigSaver,
    RunEarlyStopping,
    best_checkpoint,
    last_checkpoint,
)
from lit_cs201.checkpoint import Checkpoint, read_checkpoint
from lit_cs201.checkpoint_io import SafeCheckpointIO
from lit_cs201.checks import check_accelerator, check_fit_settings
from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.devices import training_precision
from lit_cs201.errors import EXIT_BAD_INPUT, MAX_SEED, UserError, check_range, printable, report, run_command
from lit_cs201.lr_find import LR_FIND, FinderTrainer, adopt_finders, place_logs
from lit_cs201.models.classifier import Classifier
from lit_cs201.report.log_interval import LogInterval
from lit_cs201.report.model_summary import LIGHTNING_SUMMARIES, run_model_summary
from lit_cs201.report.progress import epochs_done, resume_line, run_progress_bar
from lit_cs201.report.run_records import latest_config
from lit_cs201.report.run_summary import RunSummary
from lit_cs201.report.tensorboard import TensorBoardHparams
from lit_cs201.restore import (
    ALIASES,
    DEFAULT_RUNS_DIR,
    LINKED_MODEL_ARGS,
    MACHINE_SETTINGS,
    PINNED,
    UNBUILT,
    Given,
    check_classes,
    check_describes_weights,
    check_fits,
    check_fits_before_building,
    check_resume,
    read_given,
    resolve_checkpoint,
)
from lit_cs201.runs import RunLock, create_log_dir, remove_created, remove_stale_partials
from lit_cs201.usage import (
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
)

# The runs' logger: Lightning's, with an event file only once there is something to show (a predict of Iris has not).
TENSORBOARD = "lit_cs201.loggers.TensorBoardLogger"
TENSORBOARDS = (TENSORBOARD, "lightning.pytorch.loggers.TensorBoardLogger")  # the configs name Lightning's
# The default data_dir while a checkpoint's settings are parsed: no path a user can give (it holds NUL bytes), so that
# after the parse it tells the checkpoint's folder from the same folder named by a flag or a config.
CHECKPOINT_DATA_DIR = "\0the checkpoint's data_dir\0"
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
        self.checkpoint: Path | None = None  # what --ckpt_path resolved to
        self._checkpoint: Checkpoint | None = None  # what it holds, checked
        self._data_read_only = False  # the data folder came from the checkpoint: only read it
        self._restoring = RestoreWindow()
        self._created: list[Path] = []  # log folders this run created (see _claim_run_folder)
        self._lock: RunLock | None = None
        self._given = Given()  # what the command line and its configs said (restore.read_given)
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
                    "class_path": TENSORBOARD,
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
        if self._checkpoint is not None:
            settings = self.config[self.subcommand].model.init_args.as_dict()
            built = {key: value for key, value in settings.items() if key not in UNBUILT}
            shapes = {"num_classes": num_classes, "input_shape": list(input_shape)}
            check_fits_before_building(self._checkpoint, {**built, **shapes})
        return input_shape

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str]) -> None:
        subcommand = args[0] if args and args[0] in SUBCOMMANDS else None
        if subcommand is not None and not asks_for_help(args):
            subparser = self._subcommand_parsers[subcommand]
            check_flags(subparser, args[1:])
            given = read_given(args[1:])
            check_classes(given, self._choices)
            if given.ckpt_path is not None:
                self._restore_defaults(subcommand, subparser, given)
            elif subcommand not in ("fit", LR_FIND):
                # Lightning would silently evaluate the freshly initialised, untrained model.
                raise UserError(
                    f"{subcommand} needs --ckpt_path: a checkpoint file, or best/last for the newest run's checkpoint"
                )
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as err:  # jsonargparse's, with exit_on_error=False
            raise relay(err, getattr(self, "_subcommand_parsers", {}).get(subcommand), args[1:]) from None

    def _parse_ckpt_path(self) -> None:
        """Lightning would put the checkpoint's model settings over the parsed ones, flags included (its issue
        #20801); here they are the parser's defaults instead (`_restore_defaults`)."""

    def _restore_defaults(self, subcommand: str, parser: LightningArgumentParser, given: Given) -> None:
        """Make the checkpoint's model and data settings, and for ``fit`` the run's latest config, the parser's
        defaults. A checkpoint is data: its settings arrive checked (`Checkpoint.settings`), without those that
        would fetch weights (``pretrained``), run the compiler (``compile``), or are this machine's to choose
        (`MACHINE_SETTINGS`: which files, where to cache, how many processes)."""
        path = resolve_checkpoint(given.ckpt_path, given.save_dir, given.experiment)
        # Read whole, not memory-mapped: torch checks each tensor's record in the file only when it reads it.
        self._checkpoint = read_checkpoint(path)
        check_describes_weights(self._checkpoint)
        model = self._checkpoint.settings("model", drop=(*LINKED_MODEL_ARGS, "pretrained", "compile"))
        # The class names are set after the parse (before_instantiate_classes): jsonargparse checks a list default
        # in time that grows with the square of its length (a minute for 3,000 names).
        data = self._checkpoint.settings("data", drop=(*MACHINE_SETTINGS, "classes"))
        if data is not None and isinstance(data["init_args"].get("data_dir"), str):
            data["init_args"]["data_dir"] = CHECKPOINT_DATA_DIR  # replaced after the parse: see _data_read_only
        parser.set_defaults({key: value for key, value in (("model", model), ("data", data)) if value is not None})
        if subcommand == "fit":
            saved = latest_config(path.parent)
            if saved is None and not given.has_config:
                raise UserError(
                    f"--ckpt_path {path}: its run folder holds no config.yaml, so the settings to continue with "
                    "(max_epochs, ...) are unknown; give them with --config FILE"
                )
            parser.default_config_files = [saved] if saved else []
        self.checkpoint, self._given = path, given

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except MisconfigurationException as err:
            # Lightning's classes check their settings as they are built (EarlyStopping's mode, ...): bad input.
            raise UserError(" ".join(str(err).split())) from None

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        if self.subcommand in ("fit", LR_FIND) and config.trainer.get("precision") is None:
            # No precision given: the one this machine computes fastest. config.yaml records it, so that a resume
            # or a repeat of the run uses the same. (Evaluations keep float32, as lit_cs201.predict computes.)
            accelerator = config.trainer.get("accelerator")
            config.trainer.precision, why = training_precision(accelerator if isinstance(accelerator, str) else None)
            if os.environ.get("LOCAL_RANK", "0") == "0":
                print(f"Precision: {config.trainer.precision} ({why}; --trainer.precision chooses)", flush=True)
        logger = config.trainer.logger
        if isinstance(logger, Namespace) and logger.class_path in TENSORBOARDS:
            logger.class_path = TENSORBOARD
        if self.subcommand == LR_FIND and isinstance(logger, Namespace) and logger.class_path == TENSORBOARD:
            place_logs(logger.init_args)
        if self.checkpoint is None:
            return
        config.ckpt_path = str(self.checkpoint)
        if config.model.init_args.get("pretrained"):
            config.model.init_args.pretrained = None  # the weights come from the checkpoint, not from a download
        # A run reads its data where the checkpoint says it was trained unless a flag or a config names a folder
        # (the same one included: a resume's config.yaml does); a checkpoint never says where to write, so nothing
        # is downloaded, extracted or cached there.
        settings = config.data.get("init_args") if isinstance(config.data, Namespace) else None
        if settings is not None and settings.get("data_dir") == CHECKPOINT_DATA_DIR:
            self._data_read_only = True
            settings.data_dir = self._checkpoint.hyper_parameters("data")["data_dir"]
        classes = self._checkpoint.hyper_parameters("data").get("classes")
        if settings is not None and "classes" in settings and settings.classes is None and classes is not None:
            settings.classes = list(classes)
        run = self.checkpoint.parent
        if isinstance(logger, Namespace) and logger.class_path == TENSORBOARD:
            # fit continues in the run's own folder. An evaluation logs beside the checkpoint, <run>/<subcommand>/
            # (its TensorBoard events into the run's own: TensorBoardHparams), or where
            # --trainer.logger.init_args.save_dir says, unless that flag named where to find best/last.
            if self.subcommand == "fit":
                place = {"save_dir": str(run.parent.parent), "name": run.parent.name, "version": run.name}
            elif self._given.save_dir_flag and self._given.ckpt_path not in ALIASES:
                place = {"save_dir": self._given.save_dir, "name": self.subcommand}
            else:
                place = {"save_dir": str(run), "name": self.subcommand}
            for key, value in place.items():
                logger.init_args[key] = value

    def _set_seed(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        set_log_level(config.get("log_level") or "warning")
        seed = config.get("seed_everything")
        if seed is True:
            # `true` (the default when a config gives no seed) makes Lightning draw a seed and print it. A fit gets a
            # seed of its own, which config.yaml records so that the run can be repeated; an evaluation a fixed one.
            config["seed_everything"] = _fresh_seed() if self.subcommand == "fit" else 0
        elif isinstance(seed, int) and not isinstance(seed, bool):
            check_range("seed_everything", seed, 0, MAX_SEED, hint="or true for a fresh seed of the run's own")
        super()._set_seed()

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
            trainer.strategy.checkpoint_io = SafeCheckpointIO(preloaded=self._checkpoint)
        return trainer

    def _preflight(self, stage: str) -> None:
        """Check the checkpoint and load the data before the trainer creates the run folder, so that bad input
        leaves nothing behind."""
        if self.datamodule is not None:
            self.datamodule.read_only = self._data_read_only  # in every process: each one decodes
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
        if self.checkpoint is not None:
            check_fits(self.model, self._checkpoint)
            if stage == "fit":
                check_resume(self.model, self._checkpoint)
                self._announce_resume()
        if self.datamodule is not None:
            self.datamodule.prepare_data()
            self.datamodule.setup(stage)

    def _announce_resume(self) -> None:
        """Say which run a fit continues, and from which epoch."""
        run, name = printable(self.checkpoint.parent), printable(self.checkpoint.name)
        line = resume_line(run, name, epochs_done(self._checkpoint.content), self.trainer.max_epochs)
        if line is not None:
            print(line, flush=True)

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
            try:
                self._preflight(subcommand)
                self._claim_run_folder(subcommand)
                super()._run_subcommand(subcommand)
            except Exception as err:
                if self._restoring.open and report(err) is None:
                    # The checkpoint's own state failed to load: it is data that does not fit this run, not a bug.
                    raise self._checkpoint.refuse(
                        f"its training state does not fit this run ({type(err).__name__}: {printable(err)}); "
                        "continue from a checkpoint this run wrote"
                    ) from err
                raise
        except BaseException as err:
            bad_input = (report(err) or (None,))[0] == EXIT_BAD_INPUT
            remove_created(self._created, with_contents=bad_input)
            if bad_input:
                self._remove_saved_config()
            raise
        finally:
            if self._lock is not None:
                self._lock.release()
        _leave_process_group()
        if not self.trainer.is_global_zero:
            return
        # The logger's own folder, not trainer.log_dir: that broadcasts, and a collective call after the run has
        # ended races the other processes' exit (gloo then aborts the process).
        log_dir = self.trainer.loggers[0].log_dir if self.trainer.loggers else None
        best = next((cb for cb in self.trainer.checkpoint_callbacks if cb.monitor == "val/acc"), None)
        if subcommand != "fit":
            print(f"\nLogs and results of this {subcommand}: {printable(log_dir)}")
        elif best is not None and best.best_model_path:
            print(
                f"\nBest checkpoint: {printable(best.best_model_path)} (val/acc {float(best.best_model_score):.4f})\n"
                f"Test it with:    lit-cs201 test --ckpt_path {printable(shlex.quote(best.best_model_path))}"
            )

    def _remove_saved_config(self) -> None:
        """Remove the config a resume that stopped on bad input saved in the run folder (``config-1.yaml``): a later
        resume would take its settings for the run's latest."""
        saver = next((cb for cb in self.trainer.callbacks if isinstance(cb, RunConfigSaver)), None)
        logger = self.trainer.loggers[0] if self.trainer.loggers else None
        if self.subcommand == "fit" and saver is not None and saver.already_saved and logger is not None:
            Path(logger.log_dir, saver.config_filename).unlink(missing_ok=True)


def _leave_process_group() -> None:
    """End a multi-process run together, as torch asks (``destroy_process_group`` before exit): a process group left
    to the interpreter's exit can abort a process whose peer has already gone (gloo: "terminate called without an
    active exception")."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit-cs201`` and ``python -m lit_cs201``.

    Exit status: 0 done, 1 training diverged, 2 bad input, 74 the file system failed (disk full, a read-only
    folder; sysexits' EX_IOERR), 75 the run is being trained by another process (EX_TEMPFAIL: try again later), 130
    Ctrl-C, 143 SIGTERM (128 + the signal, as a shell reports a process the signal killed).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    pinned = os.environ.get(PINNED)
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
            os.environ.pop(PINNED, None)
        else:
            os.environ[PINNED] = pinned


def _run(args: list[str]) -> int:
    LitCS201CLI(args=args)  # parses, then runs the subcommand
    return 0


if __name__ == "__main__":
    sys.exit(main())
