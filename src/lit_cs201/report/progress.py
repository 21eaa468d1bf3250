"""What a run shows while it runs: progress bars in a terminal, plain lines anywhere else (a file, a pipe, a notebook
cell, a cluster job's log), epochs counted from 1, and the epoch a resumed fit continues from."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lit_cs201.errors import is_count

#: The metrics of an epoch's line, in this order, where the run has them.
EPOCH_METRICS = ("val/loss", "val/acc")


def run_progress_bar(lightning_default: ProgressBar) -> ProgressBar:
    """What replaces the bar Lightning would show: its own bar, epochs counted from 1, in a terminal; one line per
    epoch where the output is not a terminal, since a bar there is a file full of ``\\r`` and escape codes (or, from
    Rich, nothing until the run ends)."""
    if not sys.stdout.isatty():
        return LineProgress()
    return RichRunProgressBar() if isinstance(lightning_default, RichProgressBar) else TQDMRunProgressBar()


def epoch_label(epoch: int, max_epochs: int | None) -> str:
    """``Epoch 3/100`` for the epoch Lightning counts as 2, counted from 1 as people count (``Epoch 3`` in a run
    without an epoch limit)."""
    return f"Epoch {epoch + 1}" + (f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else "")


def _epoch(trainer: Trainer) -> str:
    return epoch_label(trainer.current_epoch, trainer.max_epochs)


class _WithoutRunNumber:
    """Lightning's bar without ``v_num``: the run folder is printed, and Rich shows the number as 0.000."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        metrics.pop("v_num", None)
        return metrics


class RichRunProgressBar(_WithoutRunNumber, RichProgressBar):
    """Rich's bar with epochs counted from 1: ``Epoch 100/100`` for the last of a 100-epoch run, where Lightning
    shows ``Epoch 99/99``."""

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's private method, the one place its Rich bar names the epoch (at the epoch's start, and when a
        # run restarts mid-epoch); relabelling after its public hook would show the old label for a frame.
        # tests/test_progress.py renders the bar, so a change in Lightning shows there.
        label = epoch_label(current_epoch, self.trainer.max_epochs)
        return f"{label:{len(self.validation_description)}}"  # as wide as the next label: the bar does not jump


class TQDMRunProgressBar(_WithoutRunNumber, TQDMProgressBar):
    """tqdm's bar with epochs counted from 1, and with the total: ``Epoch 3/100``."""

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(_epoch(trainer))


class LineProgress(ProgressBar):
    """Progress as whole lines of text, for output that is not a terminal.

    A fit prints one line an epoch, after its validation::

        Epoch 3/100: train/loss 0.5123, val/loss 0.4981, val/acc 0.8750 [0:00:02 elapsed, 0:01:05 left]

    (``train/loss`` is the mean of the epoch's batches; the time left assumes the epochs to come take as long as
    those so far, up to ``max_epochs``, which early stopping may cut short.) A validate, test or predict prints one
    line at its end with the samples and batches it went through. Any stage that runs for longer than ``every_s``
    seconds without a line adds one with the batches done so far, so a long epoch shows it is alive.
    """

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._fit_started = 0.0  # when the first epoch of this process started
        self._first_epoch = 0  # the epoch it started with (a resumed run's is not the first)
        self._stage_started = 0.0  # when the evaluation in progress started
        self._last_line = 0.0
        self._loss_sum: torch.Tensor | None = None  # the epoch's training loss so far, on the model's device
        self._batches = 0
        self._samples = 0
        self._validated = False  # whether this epoch ran validation (not every epoch must)

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    # -- fit --------------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_started = self._last_line = time.monotonic()
        self._first_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._loss_sum, self._batches, self._validated = None, 0, False

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            # Added up where it is: a GPU is not asked for the value until a line shows it.
            self._loss_sum = loss.detach().float() + (0 if self._loss_sum is None else self._loss_sum)
            self._batches += 1
        if self._due():
            total = self.total_train_batches
            shown = [f"batch {batch_idx + 1}/{total if math.isfinite(total) else '?'}", *self._train_loss()]
            self._say(f"{_epoch(trainer)}: {', '.join(shown)}", self._fit_times(trainer, batch_idx + 1))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._validated = self._validated or not trainer.sanity_checking
        else:
            self._evaluated("Validated")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = trainer.callback_metrics
        shown = self._train_loss()
        if self._validated:  # else the values in callback_metrics are those of an earlier epoch
            shown += [f"{name} {float(metrics[name]):.4f}" for name in EPOCH_METRICS if name in metrics]
        self._say(f"{_epoch(trainer)}: {', '.join(shown)}", self._fit_times(trainer, None))

    def _train_loss(self) -> list[str]:
        if self._loss_sum is None or not self._batches:
            return []
        return [f"train/loss {float(self._loss_sum) / self._batches:.4f}"]

    def _fit_times(self, trainer: Trainer, batches: int | None) -> str:
        """The time since the fit started and, where the run has an epoch limit, the time left to it, from the
        epochs (and the part of the epoch in progress) done so far; ``batches`` None at the end of an epoch."""
        elapsed = time.monotonic() - self._fit_started
        total = self.total_train_batches
        part = 1.0 if batches is None else batches / total if math.isfinite(total) and total > 0 else 0.0
        done = trainer.current_epoch - self._first_epoch + part  # epochs this process has trained
        times = f"{_clock(elapsed)} elapsed"
        if done > 0 and trainer.max_epochs is not None and trainer.max_epochs > 0:
            to_go = max(0.0, trainer.max_epochs - self._first_epoch - done)
            times += f", {_clock(elapsed / done * to_go)} left"
        return times

    # -- validate, test, predict ------------------------------------------------------------------------------------
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "fit":
            self._start_evaluation()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_evaluation()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_evaluation()

    def _start_evaluation(self) -> None:
        self._stage_started = self._last_line = time.monotonic()
        self._batches = self._samples = 0

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        if trainer.state.fn != "fit":
            self._evaluated_batch("Validating", batch)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._evaluated_batch("Testing", batch)

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._evaluated_batch("Predicting", batch)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._evaluated("Tested")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._evaluated("Predicted")

    def _evaluated_batch(self, doing: str, batch: Any) -> None:
        self._batches += 1
        try:
            self._samples += extract_batch_size(batch)
        except MisconfigurationException:  # a batch without a tensor to count: the batches are still counted
            pass
        if self._due():
            elapsed = time.monotonic() - self._stage_started
            self._say(f"{doing}: {self._done()} so far", f"{_clock(elapsed)} elapsed")

    def _evaluated(self, done: str) -> None:
        self._say(f"{done} {self._done()}", f"{_clock(time.monotonic() - self._stage_started)}")

    def _done(self) -> str:
        return f"{_count(self._samples, 'sample', 'samples')} in {_count(self._batches, 'batch', 'batches')}"

    # -- the lines --------------------------------------------------------------------------------------------------
    def _due(self) -> bool:
        return self._enabled and time.monotonic() - self._last_line >= self.every_s

    def _say(self, text: str, times: str) -> None:
        if self._enabled:
            self._last_line = time.monotonic()
            print(f"{text} [{times}]", flush=True)


def _clock(seconds: float) -> str:
    """``0:01:05``, as Lightning's bars show times."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _count(n: float, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}" if math.isfinite(n) else f"? {many}"


def epochs_done(checkpoint: dict[str, Any]) -> int | None:
    """The epochs a checkpoint's run has completed, from Lightning's loop counters; None where they are not counts
    (a checkpoint is data: the counts training goes on from are checked when Lightning restores them)."""
    value: Any = checkpoint
    for key in ("loops", "fit_loop", "epoch_progress", "current", "processed"):
        value = value.get(key) if isinstance(value, dict) else None
    return value if is_count(value) else None


def resume_line(run: str, checkpoint: str, done: int | None, max_epochs: int | None) -> str | None:
    """What a resumed fit says before it continues: ``Continuing runs/iris/version_0 from epoch 41 of 100
    (last.ckpt).``; None where the checkpoint does not say how many epochs it completed."""
    if done is None:
        return None
    bounded = max_epochs is not None and max_epochs > 0
    if bounded and done >= max_epochs:
        return (
            f"{run} has trained all {max_epochs} of its epochs ({checkpoint}): nothing to continue; give "
            f"--trainer.max_epochs above {max_epochs} to train it longer."
        )
    return f"Continuing {run} from epoch {done + 1}{f' of {max_epochs}' if bounded else ''} ({checkpoint})."
