"""Callbacks the CLI adds to every run: run-folder checkpoints, the saved config, and the predictions CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor


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
        super().load_state_dict(state_dict)
        self.best_tie_value = state_dict.get("best_tie_value")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None and trainer.log_dir is not None:
            self.dirpath = trainer.log_dir
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


class RunConfigSaver(SaveConfigCallback):
    """Save the resolved config in the run folder without ever overwriting an earlier one.

    A resumed run writes into its existing folder: its config goes to ``config-1.yaml`` (``-2``, ...) beside
    the original ``config.yaml``.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.already_saved and trainer.log_dir is not None:
            name = "config.yaml"
            if trainer.is_global_zero:
                log_dir = Path(trainer.log_dir)
                n = 0
                while (log_dir / name).exists():
                    n += 1
                    name = f"config-{n}.yaml"
            self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv`` (index, true label where known, predicted class, probability) to the run folder."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        if predictions and isinstance(predictions[0], list):  # several predict dataloaders
            predictions = [p for loader in predictions for p in loader]
        names = list(getattr(pl_module, "class_names", [])) or None
        path = Path(trainer.log_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        index = 0
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "true_label", "predicted", "probability"])
            for batch in predictions:
                probs, predicted = batch["probs"].max(dim=-1)
                target = batch.get("target")
                for i in range(len(predicted)):
                    label = "" if target is None else _name(int(target[i]), names)
                    writer.writerow([index, label, _name(int(predicted[i]), names), f"{float(probs[i]):.4f}"])
                    index += 1
        rank_zero_info(f"Wrote {index} predictions to {path}")


def _name(label: int, names: list[str] | None) -> str:
    return names[label] if names else str(label)
