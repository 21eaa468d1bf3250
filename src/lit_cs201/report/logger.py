"""The TensorBoard logger of the CLI's runs: one that adds a run to TensorBoard only once it has something to show,
and whose first charts are the run's curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's `TensorBoardLogger`, whose event file is created with the first thing logged to it, without
    Lightning's ``epoch`` curve.

    Lightning builds every logger's writer when a stage starts, and torch's writer creates its event file when it is
    built: every run gets one, and a ``predict`` of data that draws no figure (Iris) shows in TensorBoard as a run
    with nothing in it. With this logger such a run leaves no event file; its ``predictions.csv`` is written as ever.

    Lightning adds the epoch to every set of metrics it logs. TensorBoard groups charts by the part of the name before
    the first ``/``, sorts the groups by name and opens the first two: ``epoch``, a staircase of the epoch against the
    step, would be the first chart and keep the ``val`` curves closed. Each epoch is one point of every ``val/``
    curve, and the checkpoints record it.

    An evaluation (``validate``, ``test``, ``predict``) logs its scores and figures at `evaluated_step` when it is
    set (by `lit_cs201.report.tensorboard.TensorBoardHparams`, to the step of the evaluated checkpoint's validation),
    where Lightning logs them at step 0: on a chart, a test's point is at the step of the checkpoint it scored. Its
    event file goes to `events_dir` when that is set (by the same callback, to the folder of the run whose checkpoint
    it evaluates), so that TensorBoard lists one run per fit with its evaluations in it; everything else the
    evaluation writes stays in `log_dir`.
    """

    evaluated_step: int | None = None
    _events_dir: str | None = None

    @property
    def events_dir(self) -> str:
        """The folder of the event file: `log_dir` unless set. Setting it moves what is logged from then on."""
        return self.log_dir if self._events_dir is None else self._events_dir

    @events_dir.setter
    def events_dir(self, folder: str | None) -> None:
        self._events_dir = folder
        if self._experiment is not None:  # built by Lightning when the stage starts, usually before a thing is logged
            self._experiment.write_to(self.events_dir)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        kept = {name: value for name, value in metrics.items() if name != "epoch"}
        super().log_metrics(kept, step if self.evaluated_step is None else self.evaluated_step)

    @property
    @rank_zero_experiment
    def experiment(self) -> EventFileOnFirstWrite:
        if self._experiment is None:
            self._experiment = EventFileOnFirstWrite(log_dir=self.events_dir, **self._kwargs)
        return self._experiment


def figure_step(logger: Logger, step: int) -> int:
    """The step to log a figure of ``step`` at with ``logger``: in an evaluation with this package's logger, the
    evaluated checkpoint's (`TensorBoardLogger.evaluated_step`), beside its scores."""
    evaluated = logger.evaluated_step if isinstance(logger, TensorBoardLogger) else None
    return step if evaluated is None else evaluated


class EventFileOnFirstWrite(SummaryWriter):
    """torch's `SummaryWriter`, creating its event file when the first summary is written rather than when built.

    torch's writer already works without an open file (it closes it in `close` and opens a new one on the next
    write, through `_get_file_writer`); this one only skips the opening that its constructor does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._building = True
        super().__init__(*args, **kwargs)
        self._building = False

    def _get_file_writer(self) -> Any:
        return None if self._building else super()._get_file_writer()

    def write_to(self, log_dir: str) -> None:
        """Write what follows into an event file in ``log_dir``: the open file, if any, is closed, and the next
        write creates one there (as after `close`)."""
        self.close()
        self.log_dir = log_dir
