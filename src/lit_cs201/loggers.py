"""The TensorBoard logger of the CLI's runs: one that adds a run to TensorBoard only once it has something to show."""

from __future__ import annotations

from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's `TensorBoardLogger`, whose event file is created with the first thing logged to it.

    Lightning builds every logger's writer when a stage starts, and torch's writer creates its event file when it is
    built: every run gets one, and a ``predict`` of data that draws no figure (Iris) shows in TensorBoard as a run
    with nothing in it. With this logger such a run leaves no event file; its ``predictions.csv`` is written as ever.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        if self._experiment is None:
            self._experiment = EventFileOnFirstWrite(log_dir=self.log_dir, **self._kwargs)
        return self._experiment


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
