"""The learning-rate curve: one ``train/lr`` chart whatever the optimizer, shown as the schedule steps."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback


class LearningRateLogger(Callback):
    """Log the learning rate as ``train/lr``, whatever the optimizer, so that runs with different optimizers share a
    chart (Lightning's `LearningRateMonitor` names the curve after the optimizer class: ``lr-Adam``, ``lr-SGD``).

    The rate is that of the first optimizer's first parameter group, the one a `Classifier` trains with: once an
    epoch, or at every logged step when the schedule steps every batch (a one-cycle schedule), so that the curve
    shows the schedule. It goes through `LightningModule.log`, to every logger, and needs none.
    """

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.optimizers and not _steps_every_batch(trainer):
            # The same on every process; sync_dist because Lightning asks it of an epoch value under DDP.
            pl_module.log("train/lr", _learning_rate(trainer), on_step=False, on_epoch=True, sync_dist=True)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.optimizers and _steps_every_batch(trainer):
            pl_module.log("train/lr", _learning_rate(trainer), on_step=True, on_epoch=False)


def _steps_every_batch(trainer: Trainer) -> bool:
    return any(config.interval == "step" for config in trainer.lr_scheduler_configs)


def _learning_rate(trainer: Trainer) -> float:
    return float(trainer.optimizers[0].param_groups[0]["lr"])
