"""What ``lit-cs201 predict`` writes from a checkpoint: ``predictions.csv``, ``predictions.png`` and the rows shown.

A callback of its own module: the table and the picture are made by `lit_cs201.report.predictions`, which an exported
model uses without torch, and this writer needs Lightning and torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from lit_cs201.errors import UserError, printable
from lit_cs201.report import figures
from lit_cs201.report.logger import figure_step
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
from lit_cs201.report.results import NONFINITE
from lit_cs201.report.tensorboard import tensorboards


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
        shown = grid_rows(rows, figures.GRID_SIZE)
        if not shown:
            return
        images = dataset.__getitems__([row[0] for row in shown])[0]  # through the dataset: a folder's maps its rows
        if images.dim() != 4:
            return  # not images (Iris)
        figure = figures.image_grid(images, grid_titles(shown, names, datamodule.predict_files if given else None))
        figure.savefig(log_dir / "predictions.png", dpi=120)
        tensorboard = next(iter(tensorboards(trainer)), None)
        if tensorboard is not None:
            step = figure_step(tensorboard, trainer.global_step)
            tensorboard.experiment.add_figure("predict/predictions", figure, step, close=True)
