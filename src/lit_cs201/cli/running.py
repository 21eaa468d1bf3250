"""Around a subcommand's run: the checks and the data before anything is written, the run folder claimed, what is
left behind when the run stops on bad input, and the closing lines."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer

from lit_cs201.cli.checks import check_fit_settings
from lit_cs201.errors import UserError, printable
from lit_cs201.report.progress import epochs_done, resume_line
from lit_cs201.runs.checkpoint import Checkpoint
from lit_cs201.runs.folders import RunLock, create_log_dir, remove_created, remove_stale_partials
from lit_cs201.runs.restore import check_fits, check_resume
from lit_cs201.runs.resume import RunConfigSaver


def preflight(trainer: Trainer, model: Any, datamodule: Any, checkpoint: Checkpoint | None, stage: str) -> None:
    """Check the settings and the checkpoint and load the data before the trainer creates the run folder, so that
    bad input leaves nothing behind."""
    if trainer.local_rank != 0:
        return  # another process of a multi-process run on this machine: the first one checks and prepares
    for logger in trainer.loggers:
        if getattr(logger, "save_dir", None):
            folder = Path(logger.save_dir)
            blocked = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
            if blocked is not None:
                raise UserError(f"logger save_dir {folder}: {blocked} is a file; give a folder for the run logs")
    if stage == "fit":
        check_fit_settings(trainer, model)
    if checkpoint is not None:
        check_fits(model, checkpoint)
        if stage == "fit":
            check_resume(model, checkpoint)
            _announce_resume(checkpoint, trainer.max_epochs)
    if datamodule is not None:
        datamodule.prepare_data()
        datamodule.setup(stage)


def _announce_resume(checkpoint: Checkpoint, max_epochs: int | None) -> None:
    """Say which run a fit continues, and from which epoch."""
    run, name = printable(checkpoint.path.parent), printable(checkpoint.path.name)
    line = resume_line(run, name, epochs_done(checkpoint.content), max_epochs)
    if line is not None:
        print(line, flush=True)


@dataclass
class RunFolder:
    """The log folders a run created and, for ``fit``, the lock on its run folder: claimed after the checks, so that
    bad input leaves nothing behind, and before the trainer starts the other processes of a multi-process run, which
    learn the folder the first process created through ``trainer.log_dir``."""

    created: list[Path] = field(default_factory=list)
    lock: RunLock | None = None

    def claim(self, trainer: Trainer, stage: str) -> None:
        if trainer.node_rank != 0 or trainer.local_rank != 0:
            return  # not the process that becomes global rank zero, the only one that writes run files
        for logger in trainer.loggers:
            self.created += create_log_dir(logger, stage)
        if stage == "fit":
            run = Path(trainer.log_dir)  # where the checkpoints go (RunCheckpoint)
            self.lock = RunLock(run)
            if self.lock.acquire():
                remove_stale_partials(run)  # no other fit writes here now: what is left is a killed write's

    def abandon(self, trainer: Trainer, stage: str, bad_input: bool) -> None:
        """Remove the folders this run created; on bad input also what it wrote in them, and the config a resume
        saved in the run folder (``config-1.yaml``), which a later resume would take for the run's latest."""
        remove_created(self.created, with_contents=bad_input)
        saver = next((cb for cb in trainer.callbacks if isinstance(cb, RunConfigSaver)), None)
        logger = trainer.loggers[0] if trainer.loggers else None
        if bad_input and stage == "fit" and saver is not None and saver.already_saved and logger is not None:
            Path(logger.log_dir, saver.config_filename).unlink(missing_ok=True)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def leave_process_group() -> None:
    """End a multi-process run together, as torch asks (``destroy_process_group`` before exit): a process group left
    to the interpreter's exit can abort a process whose peer has already gone (gloo: "terminate called without an
    active exception")."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def say_where(trainer: Trainer, subcommand: str) -> None:
    """The closing lines: an evaluation's log folder; a fit's best checkpoint and the command that tests it."""
    if not trainer.is_global_zero:
        return
    # The logger's own folder, not trainer.log_dir: that broadcasts, and a collective call after the run has ended
    # races the other processes' exit (gloo then aborts the process).
    log_dir = trainer.loggers[0].log_dir if trainer.loggers else None
    best = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor == "val/acc"), None)
    if subcommand != "fit":
        print(f"\nLogs and results of this {subcommand}: {printable(log_dir)}")
    elif best is not None and best.best_model_path:
        print(
            f"\nBest checkpoint: {printable(best.best_model_path)} (val/acc {float(best.best_model_score):.4f})\n"
            f"Test it with:    lit-cs201 test --ckpt_path {printable(shlex.quote(best.best_model_path))}"
        )
