"""How a `Classifier` trains its weights: the optimizer and learning-rate schedule its config gives, built once to
check them before a fit, a one-cycle schedule sized to the run, a learning rate the finder may set over the configured
one, and the config's settings over those of a checkpoint a fit continues.

A base class of `Classifier`, so that the model's module holds what the model computes (network, loss, metrics) and
this one how its settings become an optimizer and a schedule.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lit_cs201.errors import UserError


class ConfiguredOptimization(LightningModule):
    """A `LightningModule` that trains with the callables ``optimizer`` and ``lr_scheduler`` its subclass sets from
    its settings (LightningCLI's `OptimizerCallable` and `LRSchedulerCallable`; as ``{class_path, init_args}`` in
    ``hparams``), stepping the schedule every ``hparams.lr_scheduler_interval``.
    """

    optimizer: OptimizerCallable
    lr_scheduler: LRSchedulerCallable | None

    def __init__(self) -> None:
        super().__init__()
        self._run_steps: int | None = None  # optimizer steps of the whole run, when a one-cycle schedule uses them
        self._resumed_optimizer: Any = None  # the optimizer settings of the checkpoint a fit continues
        self._lr: float | None = None  # a rate set through `lr`, over the configured one

    @property
    def optimizer_name(self) -> str:
        """The optimizer's class path, as the config gives it (``torch.optim.SGD``)."""
        return self._class_path("optimizer")

    def _class_path(self, key: str) -> str:
        """The class path of ``optimizer`` or ``lr_scheduler``: the config's, else the class behind the callable."""
        given = self.hparams.get(key)
        if isinstance(given, dict) and "class_path" in given:
            return given["class_path"]
        value = getattr(self, key)
        # The class itself, a partial of it, or (rebuilt from a checkpoint) a partial of an instantiator and the class.
        candidates = (value, getattr(value, "func", None), *getattr(value, "args", ()))
        cls = next((c for c in candidates if isinstance(c, type)), None)
        return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else repr(value)

    def check_optimization(self) -> None:
        """Build the optimizer and the schedule once, on a throw-away optimizer, before a `fit`: torch checks their
        settings (a negative learning rate, a pct_start above 1) only when they are built, in the middle of `fit`,
        after the run folder exists. Only for a `fit`: an evaluation, a model rebuilt from a checkpoint, builds
        neither."""
        key = "optimizer"
        try:
            optimizer = self.optimizer(self.parameters())
            if callable(self.lr_scheduler):
                key = "lr_scheduler"
                # Any length will do for a one-cycle schedule here: `configure_optimizers` sizes the real one.
                self.lr_scheduler(optimizer, **({"total_steps": 1000} if self.cycle_spans_run else {}))
        except ValueError as err:
            raise UserError(f"{key} {self._class_path(key)}: {err}") from None
        except ZeroDivisionError:
            pass  # the stand-in length happened to give a one-step phase; `configure_optimizers` checks the real one

    @property
    def lr(self) -> float:
        """The learning rate training runs at: the optimizer's ``lr``, or the peak of a schedule that sets the rate
        itself (``max_lr`` of ``OneCycleLR`` or ``CyclicLR``). Setting it (as Lightning's learning-rate finder does)
        replaces the configured rate in the optimizer and schedule that `configure_optimizers` builds next."""
        if self._lr is not None:
            return self._lr
        if self.schedule_sets_lr:
            return self.lr_scheduler.keywords["max_lr"]
        return self.optimizer([nn.Parameter(torch.zeros(1))]).defaults["lr"]  # the configured or the class's default

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)

    @property
    def schedule_sets_lr(self) -> bool:
        """Whether the schedule sets the rate from its own ``max_lr`` (``OneCycleLR``, ``CyclicLR``), so that the
        optimizer's ``lr`` is not used."""
        return "max_lr" in getattr(self.lr_scheduler, "keywords", {})

    @property
    def cycle_spans_run(self) -> bool:
        """Whether the schedule is one cycle over the whole run (a ``OneCycleLR`` given neither ``total_steps`` nor
        ``epochs``), sized from the trainer's total number of optimizer steps."""
        settings = getattr(self.lr_scheduler, "keywords", {})
        return "total_steps" in settings and settings["total_steps"] is None and settings.get("epochs") is None

    def configure_optimizers(self) -> Any:
        optimizer_lr, schedule_lr = {}, {}
        if self._lr is not None and self.schedule_sets_lr:  # a rate set through `lr`
            schedule_lr = {"max_lr": self._lr}
        elif self._lr is not None:
            optimizer_lr = {"lr": self._lr}
        optimizer = self.optimizer(self.parameters(), **optimizer_lr)
        if self.lr_scheduler is None:
            return optimizer
        interval = self.hparams.lr_scheduler_interval
        schedule = functools.partial(self.lr_scheduler, **schedule_lr)
        if self.cycle_spans_run:
            # OneCycleLR and the like: one cycle over the whole run, however long the config makes it.
            self._run_steps = int(self.trainer.estimated_stepping_batches)
            try:
                scheduler = schedule(optimizer, total_steps=self._run_steps)
            except ZeroDivisionError:  # OneCycleLR interpolates over each phase, and a phase of one step has none
                pct_start = getattr(self.lr_scheduler, "keywords", {}).get("pct_start", 0.3)
                raise UserError(
                    f"a one-cycle schedule over this run's {self._run_steps} optimizer steps with pct_start "
                    f"{pct_start} has a warm-up of exactly one step, which OneCycleLR cannot interpolate; "
                    "train for more steps (max_epochs, limit_train_batches) or change pct_start"
                ) from None
            interval = "step"
        else:
            scheduler = schedule(optimizer)
        config = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_train_start(self) -> None:
        self._apply_new_optimizer_settings()
        # After a resume, the schedule is the checkpoint's: a cycle sized for the run as it was first started.
        cycle = getattr(self.lr_schedulers(), "total_steps", None) if self._run_steps else None
        if cycle is not None and cycle != self._run_steps:
            raise UserError(
                f"the run being resumed has a one-cycle schedule of {cycle} optimizer steps, but this run's settings "
                f"(max_epochs {self.trainer.max_epochs}) make {self._run_steps}; resume with the settings it was "
                "started with"
            )

    def _apply_new_optimizer_settings(self) -> None:
        """After a resume, set what the config changes of the optimizer's settings (a new ``lr``, ``momentum``,
        ``weight_decay``): Lightning has just loaded the checkpoint's, which would otherwise train on as before. (The
        CLI refuses a new ``lr`` under a schedule, which sets the rate from the run's start.)"""
        saved, configured = (init_args(value) for value in (self._resumed_optimizer, self.hparams.get("optimizer")))
        changed = {key: value for key, value in configured.items() if key in saved and saved[key] != value}
        for optimizer in self.trainer.optimizers if changed else []:
            for group in optimizer.param_groups:
                for key, value in changed.items():
                    if key in group:
                        group[key] = tuple(value) if isinstance(group[key], tuple) else value

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_optimizer = checkpoint.get("hyper_parameters", {}).get("optimizer")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # From a config, the CLI stores the optimizer and schedule as plain dicts. Callables passed from Python are
        # left out: checkpoints must load with torch.load(weights_only=True).
        hparams = checkpoint.get("hyper_parameters", {})
        for key in ("optimizer", "lr_scheduler"):
            if callable(hparams.get(key)):
                del hparams[key]


def init_args(value: Any) -> dict[str, Any]:
    """The settings of a ``{class_path, init_args}`` hyper-parameter; none for a callable passed from Python."""
    return dict(value.get("init_args") or {}) if isinstance(value, dict) else {}
