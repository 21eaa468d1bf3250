"""What ``lit-cs201`` says: about itself (the subcommands, the ``--ckpt_path`` option, the help layout, the closest
valid flag to a mistyped one) and what it lets through of Lightning's own messages."""

from __future__ import annotations

import difflib
import logging
import textwrap
import warnings

from lightning.pytorch.cli import LightningArgumentParser
from PIL import Image

from lit_cs201.errors import UserError

SUBCOMMANDS = {  # name: (what it does, how it is used)
    "fit": (
        "Train a model, or continue a stopped run with --ckpt_path last",
        "lit-cs201 fit --config configs/iris.yaml writes runs/<experiment>/version_N/: best.ckpt (highest val/acc), "
        "last.ckpt (every epoch), config.yaml and the TensorBoard curves.",
    ),
    "validate": (
        "Score a checkpoint on its validation split",
        "lit-cs201 validate --ckpt_path best.ckpt logs beside the checkpoint, in <run>/validate/version_N/.",
    ),
    "test": (
        "Score a checkpoint on its test split: accuracy per class, confusion matrix, prediction grid",
        "lit-cs201 test --ckpt_path best.ckpt logs beside the checkpoint, in <run>/test/version_N/.",
    ),
    "predict": (
        "Classify your files (or the test split) with a checkpoint: predictions.csv and a picture",
        "lit-cs201 predict --ckpt_path best.ckpt --data.predict_path 'photos/*.jpg' (files, folders, globs or a "
        "CSV of paths) writes predictions.csv and predictions.png in <run>/predict/version_N/. With an exported "
        "model (--ckpt_path model.onnx) it needs no torch and writes them in predict/version_N/ beside the file.",
    ),
}
CKPT_PATH_HELP = (
    "Checkpoint to start from: a .ckpt file, or best / last (also best.ckpt / last.ckpt where no such file is in "
    "the current folder) for the newest run's under the runs folder, within the config's experiment when --config "
    "is given. The model and data settings come from the checkpoint; fit continues the run in its own folder."
)


def description(subcommand: str, classes: dict[str, list[type]]) -> str:
    """The subcommand's ``--help`` text: what it does, an example, and the datamodule and model classes."""
    summary, example = SUBCOMMANDS[subcommand]
    text = [f"{summary}.", "", example]
    for key, option in (("data", "--data"), ("model", "--model")):
        text += ["", f"{option} (the short name will do; {option}.help NAME lists its options):"]
        text += [f"  {cls.__name__}: {_first_line(cls.__doc__)}" for cls in classes[key]]
    return "\n".join(text)


class HelpFormatter(LightningArgumentParser().formatter_class):
    """jsonargparse's help, with the subcommand descriptions' lines kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hang = indent + " " * (len(line) - len(line.lstrip()) + 2)
            lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hang) or indent)
        return "\n".join(lines)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


def check_flags(parser: LightningArgumentParser, args: list[str]) -> None:
    """Refuse a mistyped flag, suggesting the closest valid one (jsonargparse lists the unrecognized arguments)."""
    options = parser._option_string_actions
    for arg in args:
        flag = arg.split("=", 1)[0]
        if not flag.startswith("--") or flag in options:
            continue
        # A nested setting of a class-valued option (--model.init_args.lr, --trainer.logger.init_args.name):
        # jsonargparse checks it against the class.
        parents = [flag[:i] for i, c in enumerate(flag) if c == "."]
        if any(p in options and options[p].metavar != "CONFIG" for p in parents):
            continue
        close = difflib.get_close_matches(flag, [o for o in options if o.startswith("--")], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; see lit-cs201 {parser.prog.split()[-1]} --help"
        raise UserError(f"unrecognized option {flag}{hint}")


def set_log_level(level: str) -> None:
    """Lightning announces the seed and the devices on every run; shown from ``--log_level info``."""
    for name in ("lightning.fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(level.upper())


def quiet_known_noise() -> None:
    """Silence messages that are expected in this project's layout and would only confuse a newcomer."""
    # The run folder already holds config.yaml and events when the checkpoints are first written there.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Emitted by Lightning itself on recent torch; nothing for a user to do.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Test and validate runs of a checkpoint log into their own sub-folder, never the training one.
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    # Pillow's warning about a very large image: the decoder refuses such a file itself, naming it (MAX_PIXELS).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Lightning's suggestions to install its cloud packages.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not any(name in record.getMessage() for name in ("litlogger", "litmodels"))
    )
