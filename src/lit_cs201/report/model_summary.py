"""The table of the model's layers a fit prints first: Lightning's, without the metric objects and loss functions.

The classifier keeps its metrics (``train_acc``, ``val_loss``, ``test_acc``, ...) and its loss as submodules,
so that they move to the model's device with it; Lightning's summary listed each of them as a layer with no
parameters, ten rows in which the network was one.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from torch import nn
from torchmetrics import Metric


def not_layers(module: nn.Module) -> set[str]:
    """The names of ``module``'s children that are metrics or loss functions."""
    return {
        name
        for name, child in module.named_children()
        if isinstance(child, Metric) or type(child).__name__.endswith("Loss")  # torch's losses: CrossEntropyLoss, ...
    }


class _LayersOnly:
    """A `ModelSummary` whose table leaves out the model's metrics and losses, and what is under them."""

    _hidden: frozenset[str] = frozenset()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hidden = frozenset(not_layers(pl_module))
        super().on_fit_start(trainer, pl_module)  # type: ignore[misc]

    def summarize(self, summary_data: list[tuple[str, list[str]]], *args: Any, **kwargs: Any) -> None:
        # Lightning's is a static method that it calls through the instance: this one sees what to leave out.
        names = dict(summary_data)["Name"]
        kept = [i for i, name in enumerate(names) if name.split(".")[0] not in self._hidden]
        columns = [(header, [values[i] for i in kept]) for header, values in summary_data]
        columns[0] = (columns[0][0], [str(n) for n in range(len(kept))])  # the row numbers
        super().summarize(columns, *args, **kwargs)  # type: ignore[misc]


class RunModelSummary(_LayersOnly, ModelSummary):
    """Lightning's plain summary, layers only."""


class RichRunModelSummary(_LayersOnly, RichModelSummary):
    """Lightning's Rich summary, layers only."""


#: Lightning's summaries, as its trainer adds them (``enable_model_summary``, depth 1), and what replaces each.
LIGHTNING_SUMMARIES: dict[type, type] = {ModelSummary: RunModelSummary, RichModelSummary: RichRunModelSummary}


def run_model_summary(lightning_default: ModelSummary) -> ModelSummary:
    """What replaces the summary Lightning would print: the same kind (Rich's table or plain), layers only."""
    return LIGHTNING_SUMMARIES[type(lightning_default)]()
