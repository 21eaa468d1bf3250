"""The test report: after ``lit-cs201 test``, the per-class accuracy table in the terminal, and the confusion matrix
and a grid of test images with their predictions in TensorBoard.

A callback rather than a part of the model: the model computes and logs the scores (``test/acc``,
``test/acc/<class name>``, ...), and what a person reads of a test is drawn here, from the predictions that
``test_step`` returns and the batches it was given, through Lightning's hooks. The CLI adds it to every run.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_cs201.report import figures
from lit_cs201.report.logger import figure_step
from lit_cs201.report.tensorboard import tensorboards


class TestReport(Callback):
    """Print the per-class test accuracy, worst class first, and log ``test/confusion_matrix`` and
    ``test/predictions`` to TensorBoard at the trainer's global step.

    ``test_step`` returns ``{"predicted": class indices}`` for its batch of ``(images, labels)``; a module that
    returns nothing of the kind gets no report. Classes are named as the model logs them (its ``class_names``: a
    checkpoint's own, else the data's), else as the datamodule names them. The confusion matrix is combined across
    processes; only rank zero prints and draws, and its grid shows test images of its own share.
    """

    __test__ = False  # not a test class, though pytest takes a Test* class imported into a test file for one

    def __init__(self) -> None:
        self._confusion: MulticlassConfusionMatrix | None = None  # rows: true classes; columns: predicted
        self._names: list[str] = []
        self._grid: list[Tensor] = []  # images, targets, predictions of the test images the grid shows
        self._grid_step = 1  # the grid shows every n-th test image...
        self._grid_seen = 0  # ...counting the test images seen so far

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._names = _class_names(trainer, pl_module)
        self._confusion = MulticlassConfusionMatrix(len(self._names)).to(pl_module.device) if self._names else None
        self._grid, self._grid_seen = [], 0

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._confusion is None or not isinstance(outputs, dict) or "predicted" not in outputs:
            return
        x, y = batch
        predicted = outputs["predicted"]
        self._confusion.update(predicted, y)
        if x.dim() == 4:  # images (not Iris's measurements)
            self._keep_for_grid(trainer, x, y, predicted, batch_idx)

    def _keep_for_grid(self, trainer: Trainer, x: Tensor, y: Tensor, predicted: Tensor, batch_idx: int) -> None:
        """Keep every n-th test image, n such that the grid spans the test set: an image folder lists its test images
        class by class, and the first ones would all be of the first class."""
        if batch_idx == 0:
            batches = trainer.num_test_batches[0]  # this process's, after limit_test_batches
            # At least this many images (the last batch may be short), so that the grid is always filled.
            images = (batches - 1) * len(x) + 1 if batches != float("inf") else figures.GRID_SIZE
            self._grid_step = max(1, int(images) // figures.GRID_SIZE)
        positions = torch.arange(self._grid_seen, self._grid_seen + len(x), device=x.device)
        self._grid_seen += len(x)
        kept = positions % self._grid_step == 0
        new = [t[kept].detach().cpu() for t in (x, y, predicted)]
        self._grid = new if not self._grid else [torch.cat([a, b]) for a, b in zip(self._grid, new, strict=True)]
        self._grid = [t[: figures.GRID_SIZE] for t in self._grid]

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._confusion is None or not self._confusion.update_called:
            return
        confusion = self._confusion.compute()  # combined across processes: every process takes part
        self._confusion = None
        self._report(trainer, confusion.cpu())
        self._grid = []

    @rank_zero_only
    def _report(self, trainer: Trainer, confusion: Tensor) -> None:
        """Print the per-class table; log the confusion matrix and the prediction grid to TensorBoard."""
        support = confusion.sum(dim=1)
        # The share of each class's test images predicted as that class: as the model's per-class accuracy, 0 for a
        # class without test images.
        per_class = torch.where(support > 0, confusion.diag().float() / support.float(), 0.0)
        table = figures.accuracy_table(per_class.tolist(), self._names, support.tolist())
        print("\nPer-class test accuracy, worst class first\n" + table)
        tensorboard = next(iter(tensorboards(trainer)), None)
        if tensorboard is None:
            return
        drawn = {"test/confusion_matrix": figures.confusion_figure(confusion, self._names)}
        if self._grid:
            drawn["test/predictions"] = figures.prediction_grid(*self._grid, class_names=self._names)
        for tag, figure in drawn.items():
            tensorboard.experiment.add_figure(tag, figure, figure_step(tensorboard, trainer.global_step), close=True)


def _class_names(trainer: Trainer, pl_module: LightningModule) -> list[str]:
    """The model's class names (those it logs ``test/acc/<name>`` under), else the datamodule's; none if neither
    names them."""
    names = getattr(pl_module, "class_names", None) or getattr(trainer.datamodule, "class_names", None)
    return list(names) if names else []
