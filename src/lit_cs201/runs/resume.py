"""What makes a resumed fit continue as if it had never stopped, beyond what Lightning restores itself.

`RandomState` carries the random generators through a checkpoint; `RestoreWindow` marks where Lightning loads a
checkpoint's states into the run and checks what it loaded (a checkpoint is data, from anyone); `RunConfigSaver` saves
a resumed run's config beside the first one instead of over it. Which checkpoint ``--ckpt_path`` means and what it
restores of the settings is `lit_cs201.runs.restore`.
"""

from __future__ import annotations

import inspect
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from lit_cs201.errors import is_count


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
