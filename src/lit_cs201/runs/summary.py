"""The ``summary.json`` of a run, written as it goes, so that ``lit-cs201 runs`` can list runs without reading
checkpoints or event files (which would need torch: seconds per call).

A fit writes it into its run folder when training starts, after every epoch and when it ends (how: done, or stopped
by Ctrl-C, SIGTERM or an error); a test writes one into its own folder, ``<run>/test/version_M/``, with its score.
The format is `lit_cs201.runs.records`'.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_cs201.errors import printable
from lit_cs201.runs.records import SUMMARY, dataset_name, read_summary, write_summary

MONITOR = "val/acc"


class RunSummary(Callback):
    """Keep ``summary.json`` of the run in its folder: settings, epochs done, best ``val/acc``, wall time (a fit);
    ``test/acc`` and the checkpoint scored (a test). Only the process of global rank zero writes."""

    def __init__(self) -> None:
        self._record: dict[str, Any] = {}
        self._folder: Path | None = None
        self._session_start = 0.0
        self._earlier_s = 0.0  # wall time of the run's earlier sessions (before a resume)
        self._training = False  # written from the start of training: before it, a resume has restored nothing yet
        self._warned = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._session_start = time.time()
        self._folder = _run_folder(trainer) if trainer.is_global_zero else None
        if self._folder is None:
            return
        earlier, _ = read_summary(self._folder / SUMMARY)  # a resumed run's: its start and its time so far
        if earlier.get("kind") != "fit":
            earlier = {}
        self._earlier_s = _seconds(earlier.get("wall_time_s"), 1e9)
        started = _seconds(earlier.get("started"), 1e11) or self._session_start
        hparams = dict(pl_module.hparams)
        optimizer = hparams.get("optimizer")
        lr = (optimizer.get("init_args") or {}).get("lr") if isinstance(optimizer, dict) else None
        datamodule = trainer.datamodule
        data_dir = getattr(datamodule, "hparams", {}).get("data_dir") if datamodule is not None else None
        self._record = {
            "kind": "fit",
            "status": "running",
            "dataset": dataset_name(type(datamodule).__name__, data_dir) if datamodule is not None else None,
            "net": hparams.get("net") if isinstance(hparams.get("net"), str) else None,
            "lr": lr if isinstance(lr, int | float) and not isinstance(lr, bool) else None,
            "max_epochs": trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None,
            "epochs": 0,
            "best_val_acc": None,
            "started": started,
            "wall_time_s": self._earlier_s,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After a resume's restore: the epochs already trained, and the best checkpoint's score. (Not before this
        # callback's on_fit_start: the sweep of Lightning's LearningRateFinder, which trains in its own.)
        if not self._record:
            return
        self._training = True
        self._record["epochs"] = trainer.current_epoch
        best = next((cb for cb in trainer.checkpoint_callbacks if _monitors(cb)), None)
        if best is not None and best.best_model_score is not None:
            self._record["best_val_acc"] = float(best.best_model_score)
        self._write()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(MONITOR)
        if not self._training or trainer.sanity_checking or value is None:
            return
        best = self._record.get("best_val_acc")
        if best is None or float(value) > best:  # NaN is never better, as for the best checkpoint
            self._record["best_val_acc"] = float(value)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._training:
            self._record["epochs"] = trainer.current_epoch + 1  # the epoch that just ended counts
            self._write()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._training:
            self._write(status="done")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit" and self._training:
            self._write(status="stopped")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get("test/acc")
        folder = _log_dir(trainer) if trainer.is_global_zero and trainer.state.fn == "test" else None
        if folder is None or value is None:
            return
        checkpoint = Path(trainer.ckpt_path).name if trainer.ckpt_path else None
        self._folder = folder
        self._record = {"kind": "test", "checkpoint": checkpoint, "test_acc": float(value), "finished": time.time()}
        self._write()

    def _write(self, status: str | None = None) -> None:
        if self._folder is None or not self._record:
            return
        if self._record["kind"] == "fit":
            self._record["wall_time_s"] = round(self._earlier_s + time.time() - self._session_start, 3)
            self._record["status"] = status or self._record["status"]
        try:
            write_summary(self._folder, self._record)
        except (OSError, ValueError) as err:  # a full disk: the checkpoints report it; this is only the listing's
            if not self._warned:
                reason = getattr(err, "strerror", None) or err
                print(
                    f"Warning: cannot write {printable(self._folder / SUMMARY)} ({reason}); lit-cs201 runs will show "
                    "this run without its latest scores.",
                    file=sys.stderr,
                )
                self._warned = True


def _monitors(callback: Any) -> bool:
    return isinstance(callback, ModelCheckpoint) and callback.monitor == MONITOR


def _run_folder(trainer: Trainer) -> Path | None:
    """Where the run's best checkpoint goes (its folder, ``runs/<experiment>/version_N/``), else its logs'."""
    best = next((cb for cb in trainer.checkpoint_callbacks if _monitors(cb) and cb.dirpath), None)
    folder = Path(best.dirpath) if best is not None else _log_dir(trainer)
    return folder if folder is not None and folder.is_dir() else None


def _log_dir(trainer: Trainer) -> Path | None:
    # The logger's own folder, not trainer.log_dir, which is a collective call and this runs on rank zero only.
    log_dir = trainer.loggers[0].log_dir if trainer.loggers else None
    return Path(log_dir) if log_dir is not None and Path(log_dir).is_dir() else None


def _seconds(value: Any, limit: float) -> float:
    """A number of seconds read back from an earlier summary, 0 where it is not one."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < limit
    return float(value) if ok else 0.0
