"""The checkpoints a fit keeps in its run folder, and the early stopping that watches the same score.

``best.ckpt`` (the best ``val/acc``) and ``last.ckpt`` (the resume point) are written by `RunCheckpoint`s into the
run folder itself; `RunEarlyStopping` keeps the configured patience across a resume. These are the callbacks a run
needs whenever Lightning restores a checkpoint, so the CLI gives them to every command. Reading a checkpoint as data
is `lit_cs201.runs.checkpoint`; writing one whole is `lit_cs201.runs.checkpoint_io`.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import Tensor

from lit_cs201.errors import is_count


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
