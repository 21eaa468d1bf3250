"""Checks of a run's settings that Lightning makes too late (in the middle of ``fit``, after the run folder exists)
or not at all, made before anything is written."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lit_cs201.errors import UserError, check_range
from lit_cs201.models.classifier import Classifier

ACCELERATORS = {"cuda": CUDAAccelerator, "mps": MPSAccelerator, "tpu": XLAAccelerator}


def check_accelerator(name: Any) -> None:
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
    """Refuse settings that Lightning accepts but that crash in the middle of ``fit`` or train nothing, before the
    run folder exists."""
    model.check_optimization()
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
