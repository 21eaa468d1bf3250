"""Figures logged at the end of `test`: a grid of test images titled with their class (and, when wrong, what it was
taken for), and the confusion matrix; the grid of predicted images `predict` writes; and the per-class accuracy table
the course prints.

TensorBoard shows a figure in a card scaled to fit about 310 x 215 pixels, until "actual image size" is toggled: the
figures are small in inches (matplotlib draws 100 pixels to the inch) and large in points, so that their titles stay
readable in the card.
"""

from __future__ import annotations

import functools
import unicodedata
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # figures go to TensorBoard; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lit_cs201.errors import printable  # noqa: E402

if TYPE_CHECKING:  # torch is not needed to draw: predictions from an exported model draw numpy images
    from torch import Tensor

#: Images in a grid, in rows of `GRID_COLUMNS`: three rows of five have the shape of a TensorBoard card, and few
#: enough cells for each title to be read in it.
GRID_SIZE = 15
GRID_COLUMNS = 5
#: Classes up to which the confusion matrix names the classes and writes the count in each cell.
LABELLED_CLASSES = 30
#: Characters of a title line in a grid cell; longer class names are cut with an ellipsis.
LINE_LENGTH = 11
#: Fonts with CJK glyphs, which matplotlib's own DejaVu Sans lacks: the common ones of Linux (Noto / Source Han,
#: WenQuanYi, AR PL), macOS (PingFang, Hiragino, Heiti) and Windows (Microsoft YaHei, SimHei, MS Gothic, Malgun).
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Source Han Sans",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "Microsoft YaHei",
    "SimHei",
    "MS Gothic",
    "Malgun Gothic",
    "Arial Unicode MS",
)


def _add_cjk_fallbacks() -> None:
    """Append the installed `CJK_FONTS` to matplotlib's font families: a glyph the first family lacks is then drawn
    from the next that has it (matplotlib falls back glyph by glyph), so a Chinese class name is drawn, not boxes.
    Only installed ones: matplotlib logs a warning for every family it cannot find."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = list(matplotlib.rcParams["font.family"])
    matplotlib.rcParams["font.family"] = families + [f for f in CJK_FONTS if f in installed and f not in families]


_add_cjk_fallbacks()


@functools.cache
def _drawable() -> frozenset[int]:
    """The characters that the figures' fonts, fallbacks included, have glyphs for."""
    characters: set[int] = set()
    for family in matplotlib.rcParams["font.family"]:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=[family]), fallback_to_default=False)
        except ValueError:  # a family the user configured that is not installed
            continue
        characters.update(font_manager.get_font(path).get_charmap())
    return frozenset(characters)


@functools.cache  # once a process: every figure of a run has the same names
def _warn_missing_glyphs() -> None:
    warnings.warn(
        "no installed font draws some characters of the class names (Chinese, Japanese or Korean ones, say): the "
        "figures show them as \\uXXXX codes; install a font that has them, e.g. Noto Sans CJK (Debian/Ubuntu: "
        "apt-get install fonts-noto-cjk; macOS and Windows have one), then delete matplotlib's font list in "
        f"{matplotlib.get_cachedir()} so that it finds the font",
        stacklevel=3,
    )


def figure_text(name: str) -> str:
    """A class name or file name as the figures show it: `printable` (escape codes and bytes that are not UTF-8
    escaped), and a character no installed font has a glyph for as its ``\\uXXXX`` code, with a warning once
    saying how to install a font (matplotlib would draw an empty box, and two names would look alike)."""
    name = printable(name)
    if name.isascii():  # DejaVu Sans draws all of printable ASCII
        return name
    drawable = _drawable()
    if all(ord(c) in drawable for c in name):
        return name
    _warn_missing_glyphs()
    return "".join(c if ord(c) in drawable else c.encode("unicode_escape").decode("ascii") for c in name)


def _displayable(image: Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) tensor or array as an (H, W[, 3]) array in [0, 1]: uint8 as it is, a normalised one stretched to
    fit, whatever normalisation was used."""
    if not isinstance(image, np.ndarray):
        image = image.detach().cpu()
        image = (image.float() if image.is_floating_point() else image).numpy()  # numpy has no bfloat16
    array: Any = image
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    else:
        array = array.astype(np.float32)
        low, high = array.min(), array.max()
        array = (array - low) / max(high - low, 1e-8)
    array = array.transpose(1, 2, 0)
    return array[..., 0] if array.shape[-1] == 1 else array


def caption(name: str, detail: str = "", length: int = LINE_LENGTH) -> str:
    """The title of a grid cell: ``name`` cut to ``length`` characters with an ellipsis, then ``detail`` on the same
    line where both fit, else on a second one."""
    name = figure_text(name)
    name = name if len(name) <= length else name[: length - 1] + "…"
    if not detail:
        return name
    return f"{name} {detail}" if len(name) + 1 + len(detail) <= LINE_LENGTH else f"{name}\n{detail}"


def image_grid(images: Tensor | np.ndarray, titles: Sequence[str], colors: Sequence[str] | None = None) -> Figure:
    """Images in rows of `GRID_COLUMNS`, each under its title (`caption`)."""
    n = len(images)
    columns = max(1, min(GRID_COLUMNS, n))
    rows = max(1, -(-n // columns))
    # Cells of 1.4 x 1.65 inches with titles of up to two 16-point lines: 3 rows are 495 pixels high, shown 215
    # pixels high in a card, where a title is then 9 pixels high.
    figure, axes = plt.subplots(
        rows, columns, figsize=(columns * 1.4, rows * 1.65), squeeze=False, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_displayable(images[i]), cmap="gray", vmin=0, vmax=1)
            # parse_math=False: a ``$`` in a class or file name is a dollar sign, not the start of a formula.
            color = colors[i] if colors else "black"
            ax.set_title(titles[i], fontsize=16, color=color, linespacing=1.1, parse_math=False)
    return figure


def prediction_grid(images: Tensor, targets: Tensor, predictions: Tensor, class_names: Sequence[str]) -> Figure:
    """Images in a grid (3 rows of 5 for 15), each titled with its class; a wrong prediction in red, with the class
    it was taken for (``cat → dog``)."""
    pairs = [(int(t), int(p)) for t, p in zip(targets, predictions, strict=True)]
    titles = [
        caption(class_names[t], "" if t == p else f"→ {caption(class_names[p], length=LINE_LENGTH - 2)}")
        for t, p in pairs
    ]
    return image_grid(images, titles, ["black" if t == p else "red" for t, p in pairs])


def confusion_figure(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted), coloured by the fraction of each true class, with the
    counts written in the cells when there are at most `LABELLED_CLASSES` classes, and the accuracy in the title.

    Normalising each row makes a rare class's errors as visible as a frequent one's; the counts say how many images
    a fraction stands for. In a TensorBoard card the title stays readable, and the counts up to five classes; the
    card's full-size view shows every count.
    """
    counts = matrix.detach().cpu().numpy()
    k = len(class_names)
    support = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)  # a class with no image: 0
    labelled = k <= LABELLED_CLASSES
    # Inches a cell and points of its count and class names: a four-digit count fits its cell.
    cell, font = (0.8, 14) if k <= 5 else (0.55, 12) if k <= 10 else (0.4, 8)
    side = cell * k if labelled else 6.0
    figure, ax = plt.subplots(figsize=(side + 2.6, side + 2.0), layout="constrained")
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.9)
    colorbar.set_label("fraction of the true class", fontsize=12)
    colorbar.ax.tick_params(labelsize=10)
    if labelled:
        names = [caption(name) for name in class_names]
        turn = max(len(name) for name in names) > 3
        text = {"fontsize": font, "parse_math": False}  # a "$" in a class name is a dollar sign, not a formula
        ax.set_xticks(range(k), names, rotation=45 if turn else 0, ha="right" if turn else "center", **text)
        ax.set_yticks(range(k), names, **text)
        for (r, c), value in np.ndenumerate(counts):
            color = "white" if fractions[r, c] > 0.5 else "black"
            ax.text(c, r, int(value), ha="center", va="center", fontsize=font, color=color)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    total = int(counts.sum())
    accuracy = f"\n{100 * np.trace(counts) / total:.1f} % of {total} correct" if total else ""
    ax.set_title(f"Confusion matrix{accuracy}", fontsize=20)
    ax.set_xlabel("predicted", fontsize=14)
    ax.set_ylabel("true", fontsize=14)
    return figure


def accuracy_table(per_class: Sequence[float], class_names: Sequence[str], support: Sequence[int]) -> str:
    """The per-class accuracy table, as text, worst class first; names `printable` (a checkpoint's names are data)."""
    names = [printable(name) for name in class_names]
    width = max(len("class"), *map(_columns, names))
    lines = [f"{'class':<{width}}  accuracy  images", f"{'-' * width}  --------  ------"]
    for i in sorted(range(len(names)), key=lambda i: per_class[i]):
        padding = " " * (width - _columns(names[i]))
        lines.append(f"{names[i]}{padding}  {100 * per_class[i]:7.2f}%  {support[i]:6d}")
    return "\n".join(lines)


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes: two for a wide (CJK) character, so that the table's columns line up."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
