"""How often a fit logs its training values (``log_every_n_steps``), where neither its config nor a flag says: from the
steps an epoch of the actual data takes, so that a small data set and a short run get a curve with points."""

from __future__ import annotations

import math

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

#: Points of the ``train/loss`` curve a run gets at least, when its length allows and no interval is set.
CURVE_POINTS = 50
#: Lightning's own interval, kept for runs long enough to get `CURVE_POINTS` with it.
LIGHTNING_INTERVAL = 50


def log_interval(steps_per_epoch: int, epochs: int | None, max_steps: int = -1) -> int:
    """Training steps between two logged values: `CURVE_POINTS` or more over a run of ``epochs`` (the fewest it may
    train: `shortest_run`), never fewer points than Lightning's interval would give, and at least one an epoch
    (Lightning warns of an epoch shorter than the interval)."""
    limits = [steps_per_epoch * epochs] if epochs is not None and epochs > 0 else []
    limits += [max_steps] if max_steps > 0 else []
    for_points = min(limits) // CURVE_POINTS if limits else LIGHTNING_INTERVAL
    return max(1, min(LIGHTNING_INTERVAL, steps_per_epoch, for_points))


def shortest_run(max_epochs: int | None, patience: int | None, check_val_every_n_epoch: int | None = 1) -> int | None:
    """The fewest epochs a run may train: ``max_epochs``, or fewer where early stopping may end it, ``patience``
    validations after the first; None for a run without an epoch limit or early stopping."""
    earliest = (patience + 1) * (check_val_every_n_epoch or 1) if patience is not None else None
    bounded = [n for n in (max_epochs, earliest) if n is not None and n > 0]
    return min(bounded) if bounded else None


def steps_per_epoch(trainer: Trainer) -> int | None:
    """The optimizer steps of one process in one epoch of ``trainer``'s fit, from its datamodule's training data
    (set up by now), or None where that has no length."""
    datamodule = trainer.datamodule
    try:
        batches = len(datamodule.train_dataloader()) if datamodule is not None else None
    except (TypeError, NotImplementedError, RuntimeError):  # an iterable dataset; a module without the split
        return None
    if batches is None:
        return None
    batches = math.ceil(batches / max(1, trainer.world_size))  # Lightning gives each process its share
    limit = trainer.limit_train_batches
    if limit is not None:
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    return math.ceil(batches / max(1, trainer.accumulate_grad_batches))


class LogInterval(Callback):
    """Set ``log_every_n_steps`` for a fit whose config does not, from the steps an epoch of the actual data takes
    (`log_interval`) and the fewest epochs early stopping lets it train (`shortest_run`), so that a small data set
    and a run that stops early get a curve too; and record it in the run's config (``settings``: the trainer's part
    of what `RunConfigSaver` saves when it sets up, after this callback), as the precision is, so that a resume or a
    repeat of the run keeps the same spacing and a resumed run's curves continue as an uninterrupted run's."""

    def __init__(self, settings: Namespace | None = None) -> None:
        self.settings = settings

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.fast_dev_run:
            return
        steps = steps_per_epoch(trainer)
        if not steps:
            return
        stopper = trainer.early_stopping_callback
        patience = stopper.patience if stopper is not None else None
        epochs = shortest_run(trainer.max_epochs, patience, trainer.check_val_every_n_epoch)
        trainer.log_every_n_steps = log_interval(steps, epochs, trainer.max_steps)
        if self.settings is not None:
            self.settings.log_every_n_steps = trainer.log_every_n_steps
