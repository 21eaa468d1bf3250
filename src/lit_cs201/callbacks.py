"""Callbacks the CLI adds to every run: run-folder checkpoints, exact resume, the saved config, the report of a
stopped run, the predictions CSV, and what TensorBoard shows (one learning-rate curve, hyper-parameters with the
run's scores)."""

from __future__ import annotations

import inspect
import math
import random
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    EarlyStopping,
    ModelCheckpoint,
)
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from lit_cs201 import viz
from lit_cs201.checkpoint_io import CtrlCHold
from lit_cs201.deploy.results import NONFINITE
from lit_cs201.errors import NonFiniteLossError, UserError, is_count, printable
from lit_cs201.loggers import figure_step
from lit_cs201.report.predictions import (
    Row,
    file_table,
    first_rows,
    grid_rows,
    grid_titles,
    ranked_rows,
    split_table,
    write_csv,
)
from lit_cs201.report.predictions import summary as written
from lit_cs201.report.tensorboard import tensorboards


class RunCheckpoint(ModelCheckpoint):
    """A `ModelCheckpoint` that writes into the run folder itself (``runs/<name>/version_N/``), with a tie-breaker.

    Lightning's default is a ``checkpoints/`` subfolder; keeping ``best.ckpt`` next to ``config.yaml`` and the
    event files makes a run folder self-describing and its checkpoints easy to name.

    Accuracy on a small validation set ties often (Iris: 24 samples), and Lightning keeps the *first* epoch that
    reached the best value, often an under-trained one. With ``tie_breaker="val/loss"``, an epoch with equal
    ``monitor`` and lower loss replaces the saved best.
    """

    def __init__(self, *args: Any, tie_breaker: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tie_breaker = tie_breaker
        self.best_tie_value: float | None = None

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        better = super().check_monitor_top_k(trainer, current)
        tie = trainer.callback_metrics.get(self.tie_breaker) if self.tie_breaker else None
        if tie is None or current is None:
            return better
        if not better and self.save_top_k == 1 and self.best_model_score is not None:
            better = bool(current == self.best_model_score) and (
                self.best_tie_value is None or float(tie) < self.best_tie_value
            )
        if better:
            self.best_tie_value = float(tie)
        return better

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_tie_value": self.best_tie_value}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(self._own_paths_only(state_dict))
        self.best_tie_value = state_dict.get("best_tie_value")
        # Saved but not restored by Lightning: without it a resumed run's checkpoints differ from an uninterrupted
        # run's until the next best epoch.
        self.current_score = state_dict.get("current_score", self.current_score)

    def _own_paths_only(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """The saved state without the paths that are not this callback's own file in the run folder.

        Lightning deletes the checkpoint a new best replaces, by the path the restored state gives, and a
        checkpoint is data: a path in it says where it was trained, never what to delete now. Lightning's own check
        (a path under the run folder) passes ``<run>/../../anything``, another tool's file in the run folder, and
        any remote URL.
        """
        own = self.format_checkpoint_name({})  # as Lightning names the file it writes
        state = dict(state_dict)
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state and state[key] != own:
                state[key] = ""
        best = state.get("best_k_models")
        if isinstance(best, dict):
            state["best_k_models"] = {own: best[own]} if own in best else {}
            # Lightning takes the worst kept file from best_k_models by this path: it must be one of them.
            state["kth_best_model_path"] = own if state["best_k_models"] else ""
        scores = [state.get("best_model_score"), state.get("kth_value"), *state.get("best_k_models", {}).values()]
        if not all(score is None or (isinstance(score, Tensor) and score.numel() == 1) for score in scores):
            raise ValueError("the checkpoint callback's scores are not numbers")
        return state

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = trainer.log_dir  # rank zero's, on every process: a collective call, made once
        super().setup(trainer, pl_module, stage)


def best_checkpoint() -> RunCheckpoint:
    """``best.ckpt``: the epoch with the highest ``val/acc`` so far."""
    # enable_version_counter=False: a resumed run refreshes best.ckpt instead of adding best-v1.ckpt.
    return RunCheckpoint(
        monitor="val/acc",
        mode="max",
        tie_breaker="val/loss",
        filename="best",
        save_top_k=1,
        enable_version_counter=False,
    )


def last_checkpoint() -> RunCheckpoint:
    """``last.ckpt``: refreshed at the end of every epoch, the resume point.

    Lightning 2.6 only refreshes ``save_last`` of a monitored checkpoint when a new best is saved, so this is a
    separate, unmonitored checkpoint whose single top-1 file is called ``last``.
    """
    return RunCheckpoint(monitor=None, filename="last", save_top_k=1, enable_version_counter=False)


class RandomState(Callback):
    """Carry the random number generators through a checkpoint, so that a resumed run continues exactly.

    Lightning restores weights, optimizer, schedule, loop counters and callback states, but not the generators: a
    run resumed with ``fit --ckpt_path`` starts again from the seed, so it shuffles the training data (the sampler
    draws from torch's generator each epoch) and augments the images differently from the run it continues. The
    states of torch (CPU and the current CUDA device), numpy and Python are taken when a checkpoint is written and
    set again when it is restored: after the model is built, before the training loop draws anything (Lightning runs
    the sanity check with its generators isolated, and skips it on resume).
    """

    def state_dict(self) -> dict[str, Any]:
        key, pos, has_gauss, gauss = np.random.get_state()[1:]
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "key": torch.from_numpy(key.astype(np.int64)),
                "pos": pos,
                "has_gauss": has_gauss,
                "gauss": gauss,
            },
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _check_random_state(state_dict)
        torch.set_rng_state(state_dict["torch"])
        numpy = state_dict["numpy"]
        key = numpy["key"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", key, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
        random.setstate(_as_tuples(state_dict["python"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"])


def _check_random_state(state: dict[str, Any]) -> None:
    """The generators' states as `RandomState.state_dict` makes them: a checkpoint is data, and a state of another
    size would be taken as it is, or fail only when drawn from."""
    numpy, python = state.get("numpy"), state.get("python")
    key = numpy.get("key") if isinstance(numpy, dict) else None
    fits = (
        isinstance(state.get("torch"), Tensor)
        and isinstance(key, Tensor)
        and key.shape == (624,)  # MT19937's state: 624 words, and a position in them
        and not key.is_floating_point()
        and is_count(numpy.get("pos"))
        and numpy["pos"] <= 624
        and isinstance(python, list | tuple)
        and len(python) == 3
        and isinstance(python[1], list | tuple)
        and len(python[1]) == 625
    )
    if not fits:
        raise ValueError("the random generators' states are not those of this program")


def _as_tuples(value: Any) -> Any:
    """`random.setstate` wants the tuples `random.getstate` gave, whatever a checkpoint format made of them."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


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


class RunConfigSaver(SaveConfigCallback):
    """Save the resolved config in the run folder without ever overwriting an earlier one.

    A resumed run writes into its existing folder: its config goes to ``config-1.yaml`` (``-2``, ...) beside
    the original ``config.yaml``, without the checkpoint and the run folder it continued, so that ``fit --config``
    of a saved config starts a new run with the same settings rather than changing this one.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every process must make it, once
        if not self.already_saved and log_dir is not None:
            name = "config.yaml"
            if trainer.is_global_zero:
                log_dir = Path(log_dir)
                n = 0
                while (log_dir / name).exists():
                    n += 1
                    name = f"config-{n}.yaml"
            self.config_filename = trainer.strategy.broadcast(name)
            if self.config.get("ckpt_path"):
                self.config = self.config.clone()
                self.config.ckpt_path = None
                logger = self.config.trainer.get("logger")
                if isinstance(logger, Namespace) and "version" in (logger.get("init_args") or {}):
                    logger.init_args.version = None
        super().setup(trainer, pl_module, stage)


class RestoreWindow(Callback):
    """Whether Lightning is restoring a run from its checkpoint: from the first checkpoint hook until a loop starts.

    In between, Lightning loads the checkpoint's callback, optimizer, schedule and loop states into this run's
    objects; what fails there fails because the checkpoint (data, from anyone) does not fit the run, and the CLI
    says so in one line instead of a traceback.
    """

    def __init__(self) -> None:
        self.open = False

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self.open = True

    def _close(self, trainer: Trainer, *args: Any) -> None:
        if self.open and trainer.state.fn == TrainerFn.FITTING:  # what would fail only at the first step, or later
            _check_progress(trainer)
            for optimizer in trainer.optimizers:
                _check_optimizer_state(optimizer)
        self.open = False

    on_sanity_check_start = on_train_start = on_validation_start = on_test_start = on_predict_start = _close


def _check_progress(trainer: Trainer) -> None:
    """The loops' restored state is counts: never negative, and in each progress at most the stage before it
    (ready >= started >= processed >= completed)."""
    pending: list[Any] = [trainer.fit_loop.state_dict()]
    while pending:
        state = pending.pop()
        if isinstance(state, dict):
            stages = [state[name] for name in ("ready", "started", "processed", "completed") if name in state]
            if all(is_count(n) for n in stages) and stages != sorted(stages, reverse=True):
                raise ValueError(f"the loops' progress counts are out of order ({stages})")
            pending += state.values()
        elif not (isinstance(state, bool) or is_count(state)):
            raise ValueError(f"the loops' progress holds {state!r:.40}, not a count")


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """The restored state has the shape one step of this optimizer makes: in each group, the settings of the same
    kinds (numbers finite); for each parameter, the same buffers, of the same shapes and types, finite. torch checks
    none of this when it loads a state, only (with a traceback) at the first step. The flags (``amsgrad``,
    ``nesterov``, ``foreach``, ...) are the config's: they are settings of the run, not state."""
    fresh = _one_step(optimizer)
    if fresh is None:
        return
    for group, made in zip(optimizer.param_groups, fresh.param_groups, strict=True):
        for key, value in made.items():
            if key == "params":
                continue
            if isinstance(value, bool) or value is None:
                group[key] = optimizer.defaults.get(key, value)
            elif not _same_kind(value, group.get(key)):
                raise ValueError(f"the optimizer's {key} is {_described(group.get(key))}, not {_described(value)}")
        for key in group.keys() - made.keys():  # what a schedule adds (initial_lr, max_lr, ...): numbers
            if not _same_kind(0.0, group[key]) and not _same_kind((0.0, 0.0), group[key]):
                raise ValueError(f"the optimizer's {key} is {group[key]!r:.40}, not a number")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for parameter, copy in zip(params, [p for group in fresh.param_groups for p in group["params"]], strict=True):
        state, made = optimizer.state.get(parameter, {}), fresh.state.get(copy, {})
        if state and state.keys() != made.keys():
            raise ValueError(f"the optimizer's state holds {sorted(state)} where a step makes {sorted(made)}")
        for name, value in state.items():
            if not _same_kind(made[name], value) or (name == "step" and float(value) < 0):
                raise ValueError(f"the optimizer's {name} is {_described(value)}, not {_described(made[name])}")


def _one_step(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
    """An optimizer of the same class and settings, over zero copies of the parameters, after one step; None for
    one that cannot step so (LBFGS wants a closure, SparseAdam sparse gradients): its state is not checked."""
    groups = [{"params": [torch.zeros_like(p) for p in group["params"]]} for group in optimizer.param_groups]
    takes = inspect.signature(type(optimizer)).parameters
    try:
        fresh = type(optimizer)(groups, **{k: v for k, v in optimizer.defaults.items() if k in takes})
        for group in fresh.param_groups:
            for copy in group["params"]:
                copy.grad = torch.zeros_like(copy)
        fresh.step()
    except Exception:  # an optimizer of its own kind: torch's first step checks it, as without a checkpoint
        return None
    return fresh


def _described(value: Any) -> str:
    if isinstance(value, Tensor):
        held = f" holding {value.item():g}" if value.numel() == 1 and value.dtype.is_floating_point else ""
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}{held}"
    return f"{value!r:.40}"


def _same_kind(made: Any, value: Any) -> bool:
    """Whether a restored ``value`` is what this optimizer would have made in the place of ``made``."""
    if isinstance(made, Tensor):
        return (
            isinstance(value, Tensor)
            and value.shape == made.shape
            and value.dtype == made.dtype
            and bool(torch.isfinite(value).all())
        )
    if isinstance(made, tuple | list):
        return isinstance(value, tuple | list) and len(value) == len(made) and all(map(_same_kind, made, value))
    if isinstance(made, int | float) and not isinstance(made, bool):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return type(value) is type(made)


class RunEarlyStopping(EarlyStopping):
    """`EarlyStopping` whose ``patience`` is the configured one after a resume too (Lightning restores the saved
    one with the counters, so a new ``--early_stopping.patience`` would be recorded and ignored)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
        # A checkpoint is data: counters that are not counters would fail only at the end of the next epoch.
        score = self.best_score
        if not (is_count(self.wait_count) and is_count(self.stopped_epoch)) or not (
            isinstance(score, Tensor) and score.numel() == 1 and score.is_floating_point() and not score.isnan()
        ):
            raise ValueError("the early-stopping state holds no counts and score")


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


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv`` and ``predictions.png`` (the first images, titled with their prediction) to the
    run folder, log the picture to TensorBoard, and show the first rows.

    The columns are those of `lit_cs201.report.predictions`. Rows are in dataset order; with several processes
    (DDP), rank zero gathers every process's share first, so the files are the same as a single process writes.
    When no row got a prediction, the command fails instead.
    """

    def __init__(self, filename: str = "predictions.csv", shown: int = 5) -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.shown = shown

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Any, indices: Any) -> None:
        log_dir = trainer.log_dir  # broadcasts rank zero's folder: every process has to ask, or rank zero waits forever
        rows: list[Row] = []
        for batch, batch_indices in zip(predictions, indices[0], strict=True):
            target = batch.get("target")
            probs = batch["probs"].detach().float().cpu().numpy()
            rows += ranked_rows(probs, batch_indices, None if target is None else target.tolist())
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for shard in gathered for row in shard]
        datamodule = trainer.datamodule
        files = getattr(datamodule, "predict_files", []) if getattr(datamodule, "predict_path", None) else []
        errors = datamodule.predict_errors if files else []
        if not any(top for _, _, top, _ in rows):  # every process has every row now: all refuse together
            raise UserError(f"none of the {len(rows) + len(errors)} inputs got a prediction: {NONFINITE}")
        if not trainer.is_global_zero or log_dir is None:
            return
        rows.sort(key=lambda row: row[0])
        names = [printable(name) for name in getattr(pl_module, "class_names", [])] or None
        header, table = file_table(rows, files, errors, names) if files else split_table(rows, names)
        path = Path(log_dir) / self.filename
        write_csv(path, [header, *table])
        shown = first_rows(header, table, self.shown)
        what = "" if files else " (the test split, with its true labels: no --data.predict_path was given)"
        print(f"{written(path, rows, errors, datamodule.predict_unit)}{what}\n{shown}", flush=True)  # rank zero only
        self._draw(trainer, datamodule, rows, names, Path(log_dir))

    @staticmethod
    def _draw(trainer: Trainer, datamodule: Any, rows: list[Row], names: list[str] | None, log_dir: Path) -> None:
        """``predictions.png``: images with a prediction from across the classes, each titled with its file's name
        (where it has one), its class and probability."""
        given = getattr(datamodule, "predict_path", None)
        dataset = datamodule.predict_set if given else datamodule.test_set
        shown = grid_rows(rows, viz.GRID_SIZE)
        if not shown:
            return
        images = dataset.__getitems__([row[0] for row in shown])[0]  # through the dataset: a folder's maps its rows
        if images.dim() != 4:
            return  # not images (Iris)
        figure = viz.image_grid(images, grid_titles(shown, names, datamodule.predict_files if given else None))
        figure.savefig(log_dir / "predictions.png", dpi=120)
        tensorboard = next(iter(tensorboards(trainer)), None)
        if tensorboard is not None:
            step = figure_step(tensorboard, trainer.global_step)
            tensorboard.experiment.add_figure("predict/predictions", figure, step, close=True)
