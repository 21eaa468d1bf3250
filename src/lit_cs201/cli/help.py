"""What ``lit-cs201`` says: about itself (the subcommands, the ``--ckpt_path`` option, the help layout and its group
titles, the closest valid flag to a mistyped one, what was wrong with a command line) and what it lets through of
Lightning's own messages."""

from __future__ import annotations

import ast
import difflib
import importlib
import logging
import os
import re
import shlex
import textwrap
import warnings
from argparse import ArgumentError
from pathlib import Path

import yaml
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser
from PIL import Image

from lit_cs201.cli.flag_errors import CONFIG_SUFFIXES, check_positional, explain, given_configs, read_problem
from lit_cs201.errors import UserError, first_few

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
        "lit-cs201 test --ckpt_path best.ckpt logs beside the checkpoint, in <run>/test/version_N/, and its "
        "TensorBoard curves and figures into the run's own.",
    ),
    "predict": (
        "Classify your files (or the test split) with a checkpoint: predictions.csv and a picture",
        "lit-cs201 predict --ckpt_path best.ckpt --data.predict_path 'photos/*.jpg' (files, folders, globs or a "
        "CSV of paths) writes predictions.csv and predictions.png in <run>/predict/version_N/. With an exported "
        "model (--ckpt_path model.onnx) it needs no torch and writes them in predict/version_N/ beside the file.",
    ),
    "lr_find": (
        "Find a learning rate: a short sweep of growing rates, the suggested rate and the fit command that uses it",
        "lit-cs201 lr_find --config configs/iris.yaml trains nothing it keeps; it writes the loss against the rate "
        "(lr_find.png, lr_find.csv, TensorBoard) in runs/<experiment>/lr_find/version_N/.",
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


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with the subcommand descriptions' lines kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hang = indent + " " * (len(line) - len(line.lstrip()) + 2)
            lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hang) or indent)
        return "\n".join(lines)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


# The titles of the option groups in a subcommand's --help, by jsonargparse's group name (it titles a group with
# the first line of its class's docstring, which speaks to whoever maintains the class), and a line under each.
GROUPS = {
    "trainer": (
        "Training (--trainer.NAME VALUE)",
        "How long to train, on which devices, at which precision, how often to log.",
    ),
    "model": (
        "Model (--model.init_args.NAME VALUE)",
        "The network and how it learns; --model.help Classifier lists every option.",
    ),
    "data": (
        "Data (--data NAME, then --data.init_args.NAME VALUE)",
        "--data.help NAME lists a dataset's options: --data.help MNISTDataModule.",
    ),
    "early_stopping": (
        "Early stopping (--early_stopping.NAME VALUE)",
        "A fit ends once val/acc has not improved for patience validations.",
    ),
}


def retitle_groups(parser: LightningArgumentParser, subcommand: str) -> None:
    """Give the option groups of ``subcommand``'s help titles that read as help (`GROUPS`). The subcommand's own
    group, which Lightning titles with its Trainer method's docstring, holds --ckpt_path or the subcommand's
    settings."""
    for name, group in parser.groups.items():
        if name in GROUPS:
            group.title, group.description = GROUPS[name]
        elif name == subcommand:
            group.title = "Checkpoint" if "--ckpt_path" in parser._option_string_actions else f"{subcommand} settings"


def asks_for_help(args: list[str]) -> bool:
    """Whether ``args`` ask for help (``--help``, ``--data.help NAME``, ``--model.help``): shown whatever else the
    command line lacks, a checkpoint included."""
    return any(arg in ("-h", "--help") or arg.split("=", 1)[0].endswith(".help") for arg in args)


def relay(
    err: ArgumentError, parser: LightningArgumentParser | None, args: list[str], choices: dict[str, list[type]]
) -> UserError:
    """jsonargparse's refusal of ``lit-cs201 SUBCOMMAND ARGS`` (``parser`` the subcommand's) as one line that names
    the flag and what it takes: for a class that does not exist, this package's ``choices`` of it; for a config that
    is not YAML, the file and the line."""
    subcommand = parser.prog.split()[-1] if parser is not None else "<subcommand>"
    settings = [o[2:] for o in parser._option_string_actions if o.startswith("--")] if parser is not None else []
    line = _no_such_class(err.message, choices) or _not_yaml(err.message, args)
    return UserError(line or explain(err.message, subcommand, args, settings) or " ".join(str(err).split()))


# The class-valued settings whose class the message names, by the keys jsonargparse reports them under.
CLASS_KEYS = {("data",): "data", ("model",): "model", ("model", "optimizer"): "model.init_args.optimizer"}
OPTIMIZER_EXAMPLES = "e.g. torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW"


#: A class path in jsonargparse's repr of ``--data.class_path X`` (``NestedArg(key='class_path', val='X')``) or of
#: ``--model.init_args.optimizer.class_path X`` (``Namespace(class_path='X')``).
_SHOWN_CLASS_PATH = re.compile(r"(?:key='class_path', val=|class_path=)'([^']*)'")


def _no_such_class(message: str, choices: dict[str, list[type]]) -> str | None:
    """A data, model or optimizer class that does not exist, with this package's choices (by the import path its
    package exports them under: ``lit_cs201.data.MNISTDataModule``)."""
    problem = read_problem(message)
    option = CLASS_KEYS.get(tuple(problem.keys)) if problem is not None and problem.value is not None else None
    if option is None:
        return None
    try:
        value = ast.literal_eval(problem.value) if problem.value.startswith("{") else problem.value
    except (ValueError, SyntaxError):
        return None
    class_path = value.get("class_path") if isinstance(value, dict) else value
    if isinstance(class_path, str) and (shown := _SHOWN_CLASS_PATH.search(class_path)):
        class_path = shown.group(1)  # given as --data.class_path X: jsonargparse shows it by its repr
    if not isinstance(class_path, str) or _exists(class_path):
        return None
    names = [f"{cls.__module__.rpartition('.')[0]}.{cls.__name__}" for cls in choices.get(option, [])]
    if class_path in {name.rpartition(".")[2] for name in names}:
        return None  # a short name of one of them: refused for another reason
    hint = f"available: {', '.join(names)}" if names else OPTIMIZER_EXAMPLES
    return f"{option}: no class {class_path} ({hint})"


def _exists(class_path: str) -> bool:
    module, _, name = class_path.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), name) if module else False
    except ImportError:
        return False


def unreadable_config(err: RecursionError | UnicodeDecodeError, args: list[str]) -> UserError:
    """What jsonargparse raises, rather than reports, on a config it cannot read (a config nested deeper than Python
    recurses, a file that is not text), as one line naming the config. Only on that error path is a config read
    here, to find which one."""
    for value in given_configs(args):
        try:
            yaml.safe_load(Path(value).read_text(encoding="utf-8")) if Path(value).is_file() else None
        except RecursionError:  # the YAML parser recurses once per level of nesting
            return UserError(f"--config {value}: its values are nested too deeply to read; no config needs that")
        except UnicodeDecodeError as bad:
            return UserError(f"--config {value}: not UTF-8 text (byte {bad.start}); a config is a YAML file")
        except (OSError, yaml.YAMLError):
            continue
    if isinstance(err, UnicodeDecodeError):
        return UserError("a setting given is not UTF-8 text; a config is a YAML file")
    return UserError("the settings given are nested too deeply to read; no config needs that")


def _not_yaml(message: str, args: list[str]) -> str | None:
    """A ``--config`` that is not YAML, with the line (jsonargparse's report names neither the file nor its line)."""
    if not message.startswith("Problems parsing config"):
        return None
    for value in given_configs(args):
        path = Path(value)
        try:
            yaml.safe_load(path.read_text()) if path.is_file() else None
        except yaml.YAMLError as err:
            parts = [
                f"{text} at line {mark.line + 1}" if mark is not None else text
                for text, mark in (
                    (getattr(err, "context", None), getattr(err, "context_mark", None)),
                    (getattr(err, "problem", None), getattr(err, "problem_mark", None)),
                )
                if text
            ]
            return f"--config {value}: not valid YAML ({': '.join(parts) or err})"
        except (OSError, RecursionError, UnicodeDecodeError):
            continue
    return None


def check_flags(parser: LightningArgumentParser, args: list[str]) -> None:
    """Refuse a mistyped flag, suggesting the closest valid one (jsonargparse lists the unrecognized arguments), a
    bare argument (``fit configs/iris.yaml``), and a missing ``--config`` file, suggesting the closest name."""
    check_positional(parser.prog.split()[-1], args)
    check_configs(args)
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


_LISTED = 10_000  # at most this many names of a folder are compared with a missing config's (a folder is data)


def check_configs(args: list[str]) -> None:
    """Refuse a ``--config`` file that does not exist, suggesting the closest name in its folder."""
    for value in given_configs(args):
        if value == "-":  # the standard input
            continue
        if os.path.isdir(value):
            configs = _configs_in(Path(value))
            raise UserError(f"--config {value} is a folder, not a file" + (f" (it holds {configs})" if configs else ""))
        if value and not os.path.lexists(value) and not _inline_config(value):
            raise UserError(_missing_config(value))


def _inline_config(value: str) -> bool:
    """jsonargparse also takes the settings themselves as ``--config '{trainer: {max_epochs: 3}}'``."""
    try:
        return isinstance(yaml.safe_load(value), dict | list)
    except yaml.YAMLError:
        return False


def _missing_config(value: str) -> str:
    path = Path(value)
    folder = path.parent
    if not folder.is_dir():
        return f"--config {value} does not exist (there is no folder {folder})"
    close = difflib.get_close_matches(path.name, _names(folder), n=1, cutoff=0.6)
    if close:
        return f"--config {value} does not exist; did you mean --config {shlex.quote(str(folder / close[0]))}?"
    configs = _configs_in(folder)
    where = "this folder" if str(folder) == "." else str(folder)
    return f"--config {value} does not exist" + (f" ({where} holds {configs})" if configs else "")


def _names(folder: Path) -> list[str]:
    """The names in ``folder``, at most `_LISTED` of them."""
    names: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= _LISTED:
                    break
    except OSError:  # unreadable: nothing to suggest from it
        pass
    return names


def _configs_in(folder: Path) -> str:
    """The config files in ``folder``, a few of them: ``a.yaml, b.yaml and 3 more``."""
    return first_few(sorted(name for name in _names(folder) if name.endswith(CONFIG_SUFFIXES)))


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
    # The model summary's size estimate of a bf16 run counts 32 bits a parameter; the run itself is bf16.
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")
    # Pillow's warning about a very large image: the decoder refuses such a file itself, naming it (MAX_PIXELS).
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Lightning's suggestions to install its cloud packages.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not any(name in record.getMessage() for name in ("litlogger", "litmodels"))
    )
