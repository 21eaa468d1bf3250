"""Figures logged at the end of `test`: a grid of test images titled ``true → predicted``, and the confusion
matrix; the grid of predicted images `predict` writes; and the per-class accuracy table the course prints."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # figures go to TensorBoard; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

#: Images in a grid (8x8).
GRID_SIZE = 64


def _displayable(image: Tensor) -> np.ndarray:
    """A (C, H, W) tensor as an (H, W[, 3]) array in [0, 1]: uint8 as it is, a normalised one stretched to fit,
    whatever normalisation was used."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        image = image.float() / 255
    else:
        image = image.float()
        low, high = image.min(), image.max()
        image = (image - low) / (high - low).clamp_min(1e-8)
    array = image.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def image_grid(images: Tensor, titles: Sequence[str], colors: Sequence[str] | None = None, columns: int = 8) -> Figure:
    """Images in a grid of ``columns``, each under its title."""
    n = len(images)
    rows = max(1, -(-n // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_displayable(images[i]), cmap="gray", vmin=0, vmax=1)
            ax.set_title(titles[i], fontsize=7, color=colors[i] if colors else "black")
    figure.tight_layout()
    return figure


def prediction_grid(
    images: Tensor, targets: Tensor, predictions: Tensor, class_names: Sequence[str], columns: int = 8
) -> Figure:
    """Images in a grid (8x8 for 64), each titled ``true → predicted``; wrong predictions in red."""
    pairs = [(int(t), int(p)) for t, p in zip(targets, predictions, strict=True)]
    titles = [f"{class_names[t]} → {class_names[p]}" for t, p in pairs]
    return image_grid(images, titles, ["black" if t == p else "red" for t, p in pairs], columns)


def confusion_figure(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted), counts written in the cells when they fit."""
    counts = matrix.detach().cpu().numpy()
    k = len(class_names)
    size = min(4 + 0.45 * k, 40)
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
        threshold = counts.max() / 2
        for (r, c), value in np.ndenumerate(counts):
            ax.text(
                c,
                r,
                int(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > threshold else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    figure.tight_layout()
    return figure


def accuracy_table(per_class: Sequence[float], class_names: Sequence[str], support: Sequence[int]) -> str:
    """The per-class accuracy table, as text, worst class first."""
    width = max(len("class"), *(len(n) for n in class_names))
    lines = [f"{'class':<{width}}  accuracy  images", f"{'-' * width}  --------  ------"]
    for i in sorted(range(len(class_names)), key=lambda i: per_class[i]):
        lines.append(f"{class_names[i]:<{width}}  {100 * per_class[i]:7.2f}%  {support[i]:6d}")
    return "\n".join(lines)
