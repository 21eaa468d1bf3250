"""The learning-rate finder: ``lit-cs201 lr_find`` and Lightning's ``LearningRateFinder`` callback in a ``fit``.

Both run Lightning's range test (`Tuner.lr_find`, the callback's `lr_find`): a few training steps at rates growing
from ``min_lr`` to ``max_lr``, the loss after each, and the rate where the loss falls fastest as the suggestion. The
model's ``lr`` (`Classifier.lr`) is what the finder reads and sets: the optimizer's rate, or the peak ``max_lr`` of
a schedule that sets the rate itself (one cycle). The curve goes into the run folder as ``lr_find.png`` and
``lr_find.csv`` and into TensorBoard (``lr_find/loss`` and ``lr_find/lr`` per step, the figure ``lr_find/loss_vs_lr``).

``lr_find`` trains nothing that is kept: the model and its optimizer are put back as they were, no checkpoint is
written, and its log folder is ``runs/<experiment>/lr_find/version_N/``. It prints the ``fit`` command that trains
with the suggestion.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.tuner import Tuner
from matplotlib.figure import Figure

from lit_cs201.errors import UserError, check_range, printable
from lit_cs201.report.predictions import write_csv
from lit_cs201.report.tensorboard import tensorboards

LR_FIND = "lr_find"
#: The finder's own options (`FinderTrainer.lr_find`): not repeated in the fit command it prints.
OWN_FLAGS = ("--min_lr", "--max_lr", "--num_training", "--mode", "--early_stop_threshold")
#: Lightning's notes during a sweep that would mislead here: logger name -> the start of the message.
QUIET_NOTES = {
    "lightning.pytorch.trainer.connectors.checkpoint_connector": "`weights_only` was not set",
    "lightning.pytorch.tuner.lr_finder": "Learning rate set to",
}
#: Points of the curve left out at its start and end when the steepest fall is picked, as Lightning's suggestion
#: does: the smoothed loss of the first steps averages too few of them.
SKIP_BEGIN, SKIP_END = 10, 1
#: The fewest steps of a sweep: those left out, and enough to pick from.
MIN_STEPS = 20


class FinderTrainer(Trainer):
    # No docstring of its own: the trainer's options keep Lightning's title in --help.

    #: The command line that started this trainer (set by the CLI): the fit command lr_find prints repeats it.
    command: list[str] = []  # noqa: RUF012  (never changed in place)

    def lr_find(
        self,
        model: LightningModule,
        datamodule: Any = None,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_training: int = 100,
        mode: Literal["exponential", "linear"] = "exponential",
        early_stop_threshold: float | None = 4.0,
    ) -> float:
        """Find a learning rate: train a few steps at growing rates and suggest the one where the loss falls fastest.

        Args:
            model: The model, put back as it was afterwards.
            datamodule: Its data.
            min_lr: The first rate tried.
            max_lr: The last rate tried.
            num_training: Training steps, one rate each (at least 20).
            mode: How the rate grows from step to step: by the same factor (exponential) or the same amount.
            early_stop_threshold: End the sweep once the smoothed loss exceeds this many times its lowest value
                (null: never; a loss that is no longer finite always ends it).
        """
        check_settings(self, min_lr, max_lr, num_training, early_stop_threshold)
        model.check_optimization()
        # The sweep runs num_training steps, however many epochs that takes: the config's run length is a fit's.
        self.fit_loop.max_epochs, self.fit_loop.epoch_loop.max_steps = -1, num_training
        with sweeping(model):
            result = Tuner(self).lr_find(
                model,
                datamodule=datamodule,
                min_lr=min_lr,
                max_lr=max_lr,
                num_training=num_training,
                mode=mode,
                early_stop_threshold=early_stop_threshold,
                update_attr=False,
            )
        suggestion = suggest(result)
        if suggestion is None:
            steps = len(result.results.get("lr", [])) if result is not None else 0
            stopped = f"grew past {early_stop_threshold} times its lowest or " if early_stop_threshold else ""
            raise UserError(
                f"lr_find found no rate: the loss could be followed for {steps} of the {num_training} steps only (it "
                f"{stopped}stopped being finite); start lower (--min_lr), end lower (--max_lr) or take more steps "
                "(--num_training)"
            )
        if self.is_global_zero:
            plot = write_curve(Path(self.log_dir), self, result, suggestion)
            print(
                f"\nSuggested learning rate: {suggestion:.3g}, where the loss fell fastest {_swept(result)} (the "
                f"curve: {printable(plot)}).{_schedule_note(model)}\n"
                f"Train with it:   {fit_command(self.command, model, suggestion)}"
            )
        return suggestion


def suggest(result: Any) -> float | None:
    """The rate where the loss falls fastest against the logarithm of the rate (against the rate itself for a linear
    sweep); None without two finite points to compare.

    Lightning's own suggestion takes the slope against the rate itself also for an exponential sweep, where the rates
    are 1e-6 apart at the start and 0.2 at the end: a wobble of the loss among the smallest rates then outweighs the
    fall that matters (on Iris it picked 1e-5 on a flat stretch of the curve).
    """
    if result is None:
        return None
    rates = torch.tensor(result.results["lr"][SKIP_BEGIN:-SKIP_END], dtype=torch.float64)
    losses = torch.tensor(result.results["loss"][SKIP_BEGIN:-SKIP_END], dtype=torch.float64)
    finite = torch.isfinite(losses)
    rates, losses = rates[finite], losses[finite]
    if len(losses) < 2:
        return None
    spacing = rates.log() if result.mode == "exponential" else rates
    return float(rates[torch.gradient(losses, spacing=[spacing])[0].argmin()])


def _swept(result: Any) -> str:
    rates = result.results["lr"]
    return f"over {len(rates)} rates from {rates[0]:.3g} to {rates[-1]:.3g}"


def _schedule_note(model: Any) -> str:
    if not getattr(model, "schedule_sets_lr", False):
        return ""
    return " The config's schedule sets the rate itself: the suggestion is its peak, max_lr."


def fit_command(command: list[str], model: Any, lr: float) -> str:
    """The ``fit`` command that trains as ``lr_find`` searched, at ``lr``: the lr_find command line without the
    finder's own options, with the flag that sets the rate the model trains at (`Classifier.lr`)."""
    if getattr(model, "schedule_sets_lr", False):
        flag = "--model.init_args.lr_scheduler.init_args.max_lr"
    else:
        flag = "--model.init_args.optimizer.init_args.lr"
    dropped = (*OWN_FLAGS, flag)
    kept, skip = [], False
    for arg in command[1:] if command[:1] == [LR_FIND] else command:
        name, has_value, _ = arg.partition("=")
        if skip:
            skip = False
        elif name in dropped:
            skip = not has_value  # its value is the next argument
        else:
            kept.append(arg)
    return shlex.join(["lit-cs201", "fit", *kept, flag, f"{lr:.3g}"])


def write_curve(folder: Path, trainer: Trainer, result: Any, suggestion: float) -> Path:
    """The sweep's loss against rate in the run folder (``lr_find.png``, ``lr_find.csv``) and in ``trainer``'s
    TensorBoard (the figure ``lr_find/loss_vs_lr``, and ``lr_find/loss`` and ``lr_find/lr`` by step); the plot's
    path."""
    rates, losses = result.results["lr"], result.results["loss"]
    rows = [[step, rate, loss] for step, (rate, loss) in enumerate(zip(rates, losses, strict=True))]
    write_csv(folder / "lr_find.csv", [["step", "lr", "loss"], *rows])  # makes the folder
    figure = _figure(rates, losses, suggestion, exponential=result.mode == "exponential")
    plot = folder / "lr_find.png"
    figure.savefig(plot)
    for logger in tensorboards(trainer):
        writer = logger.experiment
        for step, (rate, loss) in enumerate(zip(rates, losses, strict=True)):
            writer.add_scalar("lr_find/lr", rate, step)
            if math.isfinite(loss):
                writer.add_scalar("lr_find/loss", loss, step)
        writer.add_figure("lr_find/loss_vs_lr", figure, close=False)
        writer.flush()
    return plot


def _figure(rates: list[float], losses: list[float], suggestion: float, exponential: bool) -> Figure:
    """Loss against rate, the suggestion marked: small in inches, as the other figures (viz), for a TensorBoard card."""
    figure = Figure(figsize=(4.8, 3.4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    # The points the suggestion is picked from: the first ones average too few steps to show the loss (`SKIP_BEGIN`).
    rates, losses = rates[SKIP_BEGIN:], losses[SKIP_BEGIN:]
    axes.plot(rates, losses, color="tab:blue")
    if exponential:
        axes.set_xscale("log")
    at = min(range(len(rates)), key=lambda i: abs(rates[i] - suggestion))
    axes.plot([suggestion], [losses[at]], "o", color="tab:red", label=f"suggested: {suggestion:.3g}")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (smoothed)")
    axes.legend()
    return figure


def check_settings(
    trainer: Trainer, min_lr: float, max_lr: float, num_training: int, early_stop_threshold: float | None
) -> None:
    """Refuse settings the sweep cannot run with, before it starts."""
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise UserError(f"--min_lr must be a rate above 0, got {min_lr}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise UserError(f"--max_lr must be above --min_lr ({min_lr:g}), got {max_lr}")
    check_range("--num_training", num_training, MIN_STEPS, hint="the first 10 steps are too early to judge by")
    if early_stop_threshold is not None:
        check_range("--early_stop_threshold", early_stop_threshold, 1, hint="null never stops early")
    if not trainer.loggers:
        raise UserError("lr_find writes its curve into its own log folder: leave the logger on (no --trainer.logger)")
    if trainer.fast_dev_run:
        raise UserError("lr_find does not run under --trainer.fast_dev_run (Lightning skips it); leave that off")
    if trainer.world_size > 1:
        raise UserError(f"lr_find runs in one process, this trainer has {trainer.world_size}; give --trainer.devices 1")


@contextlib.contextmanager
def sweeping(model: LightningModule) -> Iterator[None]:
    """Tell the model a sweep is on (`Classifier.sweeping_lr`): a loss that is no longer finite ends the sweep. And
    keep Lightning's notes on the sweep quiet: the checkpoint it starts from, and its own suggestion, which
    `suggest` replaces."""
    before = getattr(model, "sweeping_lr", False)
    model.sweeping_lr = True
    loggers = [logging.getLogger(name) for name in QUIET_NOTES]
    for logger in loggers:
        logger.addFilter(_not_quiet)
    try:
        yield
    finally:
        model.sweeping_lr = before
        for logger in loggers:
            logger.removeFilter(_not_quiet)


def _not_quiet(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(QUIET_NOTES.get(record.name, "\0"))


class FinderInFit(Callback):
    """Lightning's `LearningRateFinder` given to a fit (``--trainer.callbacks+ LearningRateFinder``), run so that the
    run trains at what it found: the optimizer and schedule are built again with the new rate (a one-cycle schedule
    peaks at it), the sweep ends where the loss stops being finite, and the curve goes into the run folder. A resumed
    run skips it: its checkpoint holds the rate the run found when it started, and Lightning's sweep would restart
    the run's epochs."""

    def __init__(self, finder: LearningRateFinder) -> None:
        self.finder = finder

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None:
            _say(trainer, "Learning-rate finder: skipped, the run continues at the rate of its checkpoint.")
            return
        configured, epochs = pl_module.lr, trainer.fit_loop.max_epochs
        trainer.fit_loop.max_epochs = -1  # the sweep's own steps end it, not the run's epochs
        try:
            with sweeping(pl_module):
                self.finder.lr_find(trainer, pl_module)
        finally:
            trainer.fit_loop.max_epochs = epochs
        suggestion = suggest(self.finder.optimal_lr)
        if suggestion is None:
            _say(
                trainer,
                "Learning-rate finder: no rate found (too few steps with a finite loss); training at the configured "
                f"rate {configured:.3g}.",
            )
            return
        if pl_module.lr != configured:  # the finder sets it unless given update_attr false: to this suggestion
            pl_module.lr = suggestion
        trainer.strategy.setup_optimizers(trainer)  # at the model's rate: a one-cycle schedule peaks at it
        folder = Path(trainer.log_dir)  # in every process: a collective call under DDP
        if trainer.is_global_zero:
            plot = write_curve(folder, trainer, self.finder.optimal_lr, suggestion)
            _say(
                trainer,
                f"Learning-rate finder: suggests {suggestion:.3g}, where the loss fell fastest "
                f"{_swept(self.finder.optimal_lr)} (the curve: {printable(plot)}); training at {pl_module.lr:.3g}.",
            )


def adopt_finders(trainer: Trainer, command: list[str]) -> None:
    """Give the trainer its command line; run each of Lightning's `LearningRateFinder` callbacks as `FinderInFit`."""
    trainer.command = list(command)
    trainer.callbacks = [FinderInFit(cb) if isinstance(cb, LearningRateFinder) else cb for cb in trainer.callbacks]


def place_logs(logger_args: Any) -> None:
    """An lr_find's log folder: ``<save_dir>/<experiment>/lr_find/version_N/``, beside the experiment's runs."""
    logger_args.save_dir = str(Path(logger_args.get("save_dir") or ".", logger_args.get("name") or "default"))
    logger_args.name = LR_FIND


def _say(trainer: Trainer, line: str) -> None:
    if trainer.is_global_zero:
        print(line, flush=True)
