"""How a fit stops: on SIGTERM with every process at the same step, on Ctrl-C never between a checkpoint and the
logging that belongs with it, and with a word on what is on disk after any stop.

`CtrlCHold` is the one place that holds a Ctrl-C back; `GracefulStop` uses it around the checkpoints of an epoch, and
`lit_cs201.runs.checkpoint_io` around the writing of one.
"""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_cs201.errors import NonFiniteLossError


class CtrlCHold:
    """Hold a Ctrl-C back from `hold` until `release`, then deliver it: what runs in between is never cut short.

    Holds nest: a hold taken while another is held sees the first one's handler, and hands the Ctrl-C on to it.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._pressed = False

    @property
    def holding(self) -> bool:
        return self._previous is not None

    def hold(self) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if self.holding or threading.current_thread() is not threading.main_thread() or not callable(handler):
            return  # signals reach the main thread only; a SIGINT that is ignored stays ignored
        self._previous = handler
        signal.signal(signal.SIGINT, self._press)

    def _press(self, signum: int, frame: Any) -> None:
        self._pressed = True

    def release(self, deliver: bool = True) -> None:
        """Put the earlier handler back and, if Ctrl-C was pressed meanwhile and ``deliver``, call it now (Python's
        own raises KeyboardInterrupt)."""
        if not self.holding:
            return
        previous, self._previous = self._previous, None
        pressed, self._pressed = self._pressed, False
        signal.signal(signal.SIGINT, previous)
        if pressed and deliver:
            previous(signal.SIGINT, None)


class GracefulStop(Callback):
    """Stop a fit on SIGTERM with every process at the same step, and say what is on disk after any stop.

    SIGTERM is what a cluster scheduler sends before it kills a job. Lightning's own handler broadcasts from inside
    the signal handler, which, with several processes, can meet another process's gradient all-reduce and hang them
    all (see Lightning-AI/pytorch-lightning#20806). Here the handler only raises a flag, the processes agree on it
    after each training batch, and all of them stop at the end of that batch. Ctrl-C stops at once (Lightning's
    handling), except between a checkpoint's writing and the end of the logging that belongs with it: Lightning
    saves an epoch's checkpoints before it logs the epoch's training scores and learning rate, and a Ctrl-C in
    between left a ``last.ckpt`` that counts the epoch as done and curves that lack its last point, which a resumed
    run never logs. There, from the end of the validation (or training epoch) after which they are saved, the Ctrl-C
    is held until the next batch, epoch or the end of training begins. Checkpoints are only written whole at the end
    of an epoch, so ``last.ckpt`` holds the last completed epoch and the run continues exactly from it.
    """

    def __init__(self) -> None:
        self._signalled = False
        self._ctrl_c = CtrlCHold()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning has just installed its handler; it restores the original one when the fit ends.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning runs the checkpoint callbacks after every other one: they save after this.
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._ctrl_c.hold()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ctrl_c.hold()  # where checkpoints are saved at the end of the training epoch (no validation there)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._ctrl_c.release()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ctrl_c.release()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ctrl_c.release()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._ctrl_c.release(deliver=False)  # a fit that failed while holding: the failure is what is reported

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        # One small all-reduce per step with several processes; none with one.
        if trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            # Lightning's loops check this flag and raise SIGTERMException at the end of this batch, everywhere.
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._ctrl_c.release(deliver=False)
        if trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        checkpoints = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
        last = next((Path(cb.dirpath) / f"{cb.filename}.ckpt" for cb in checkpoints if cb.monitor is None), None)
        best = next((cb for cb in checkpoints if cb.monitor is not None and cb.best_model_path), None)
        if isinstance(exception, KeyboardInterrupt | SIGTERMException):
            how = "by SIGTERM" if isinstance(exception, SIGTERMException) else "by Ctrl-C"
            print(f"\nInterrupted {how} in epoch {trainer.current_epoch + 1}.", flush=True)  # counted from 1
            if last is not None and last.is_file():
                print(
                    f"{last} holds the last completed epoch; continue exactly from it with:\n"
                    f"    lit-cs201 fit --ckpt_path {shlex.quote(str(last))}",
                    flush=True,
                )
            else:
                print("No epoch was completed, so there is no checkpoint to continue from.", flush=True)
        elif isinstance(exception, NonFiniteLossError) and best is not None:
            print(
                f"\nThe best checkpoint so far is unaffected: {best.best_model_path} "
                f"({best.monitor} {float(best.best_model_score):.4f}).",
                flush=True,
            )
