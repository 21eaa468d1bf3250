"""A wrong command line in a user's words: which flag, which value, what it should be, and the command that works.

jsonargparse reports a value of the wrong type as a nested text ("Parser key ...: Does not validate against any of
the Union subtypes ..."); `read_problem` is the one place that reads that text (its test fails if jsonargparse
changes it), and `explain` turns it into one line. `check_positional` refuses a bare argument before the parse.
Nothing here imports Lightning or reads a file.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lit_cs201.errors import UserError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# What a bare argument most likely meant, by its suffix: the option that takes it (and for predict, the files).
_MEANT = {**{suffix: "--config" for suffix in CONFIG_SUFFIXES}, ".ckpt": "--ckpt_path"}
_PREDICT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".csv")


def check_positional(subcommand: str, args: list[str]) -> None:
    """Refuse a bare argument right after the subcommand (``lit-cs201 fit configs/iris.yaml``), suggesting the
    option it was meant for. ``args`` are those after the subcommand."""
    if args and not args[0].startswith("-"):
        raise UserError(unexpected(subcommand, args, 0))


def unexpected(subcommand: str, args: list[str], at: int) -> str:
    """What to say of ``args[at]``, an argument that is no option nor an option's value: the command that was
    meant, where its suffix tells (a config, a checkpoint)."""
    arg = args[at]
    option = _MEANT.get(Path(arg).suffix.lower())
    if option == "--ckpt_path" and subcommand == "lr_find":
        option = None  # lr_find starts from the config's model, never from a checkpoint
    if subcommand == "predict" and (arg.lower().endswith(_PREDICT_SUFFIXES) or os.path.isdir(arg)):
        option = "--data.predict_path"
    if arg.startswith("-"):
        return f"unrecognized option {arg} (see lit-cs201 {subcommand} --help)"
    if option is None:
        return f"unexpected argument {arg!r}: options are given as --name value (see lit-cs201 {subcommand} --help)"
    meant = shlex.join([subcommand, *args[:at], option, *args[at:]])
    return f"{arg} is given without its option; did you mean lit-cs201 {meant}?"


#: The options that name a config file (jsonargparse's ``--config`` and its short form).
CONFIG_FLAGS = ("--config", "-c")


def given_configs(args: list[str]) -> list[str]:
    """The values of ``--config`` (``-c``) in ``args``, in their order."""
    configs = []
    for i, arg in enumerate(args):
        name, has_value, value = arg.partition("=")
        if name in CONFIG_FLAGS:
            configs.append(value if has_value else (args[i + 1] if i + 1 < len(args) else ""))
    return configs


# -- after the parse: what jsonargparse refused --------------------------------------------------------------


@dataclass
class Problem:
    """A value jsonargparse refused, as its message tells it."""

    keys: list[str]  # the setting, outermost first: ["model", "optimizer", "lr"] for model.init_args.optimizer...
    value: str | None = None  # the refused value, as jsonargparse shows it
    expected: list[str] = field(default_factory=list)  # the accepted types as Python writes them: "<class 'int'>"
    option: str | None = None  # an option the class does not take ("Option 'x' is not accepted")
    class_path: str | None = None  # the class that does not take it


_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS_PATH = re.compile(r"class_path[= ]'([^']+)'")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_SUBTYPES = re.compile(r"^\s*Subtypes: \[(.*)\]\s*$", re.MULTILINE)
_EXPECTED = re.compile(r"Expected a (.+?)(?:\. Got value: |$)", re.MULTILINE)
_GIVEN = re.compile(r"^\s*Given value: (.*?)(?:\. Got value: .*)?$", re.MULTILINE)
_GOT = re.compile(r"Got value: (.*?)(?:\. Got value: .*)?$", re.MULTILINE)
_NOT_A_SETTING = re.compile(r"^Subcommand '[^']+' does not accept option '([^']+)'")


def read_problem(message: str) -> Problem | None:
    """The setting, the value and the accepted types in jsonargparse's message for a refused value, or ``None`` for
    a message of another shape. The one reader of jsonargparse's wording (``tests/test_cli_errors.py`` checks it
    against the installed jsonargparse).

    The message nests: each ``Parser key "name":`` is followed by lines indented deeper than its own, which say
    why; a union lists each alternative's reason. The setting is the chain of keys down the first reason.
    """
    lines = message.splitlines()
    keys: list[str] = []
    row, col, end = 0, 0, len(lines)
    while (hit := _next_key(lines, row, col, end)) is not None:
        row, found = hit
        keys.append(found[1])
        indent = _indent(lines[row])
        end = next((j for j in range(row + 1, end) if lines[j].strip() and _indent(lines[j]) <= indent), end)
        col = found.end()
    if not keys:
        return None
    block = "\n".join([lines[row][col:], *lines[row + 1 : end]])
    problem = Problem(keys)
    if (option := _NOT_ACCEPTED.search(block)) is not None:
        problem.option = option[1]
        problem.class_path = next(iter(_CLASS_PATH.findall(block)), None)
        return problem
    if (subtypes := _SUBTYPES.search(block)) is not None:
        problem.expected = _split(subtypes[1])
    elif (expected := _EXPECTED.search(block)) is not None:
        problem.expected = [expected[1]]
    given = _GIVEN.search(block) or _GOT.search(block)
    problem.value = given[1] if given else None
    return problem


def _next_key(lines: list[str], row: int, col: int, end: int) -> tuple[int, re.Match] | None:
    for i in range(row, end):
        found = _KEY.search(lines[i], col if i == row else 0)
        if found is not None:
            return i, found
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split(text: str) -> list[str]:
    """``a, list[b, c], d`` -> ``["a", "list[b, c]", "d"]``: commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()] if text.strip() else parts


# jsonargparse's word for a required option no config or flag gave: "the following arguments are required: fit.data".
_REQUIRED = re.compile(r"the following arguments are required: ([\w.]+)$")


def explain(message: str, subcommand: str, args: list[str], settings: list[str] | None = None) -> str | None:
    """One line for jsonargparse's ``message`` about ``lit-cs201 SUBCOMMAND ARGS``: the flag (or the config key) and
    the value, and what it should be, or the closest of the ``settings`` (``trainer.max_epochs``, ...) to a key
    that is none; ``None`` where the message is of no shape known here."""
    if (unknown := _NOT_A_SETTING.match(message)) is not None:  # a config's key
        configs = given_configs(args)
        where = f"{unknown[1]} in {configs[0]}" if len(configs) == 1 else unknown[1]
        close = difflib.get_close_matches(unknown[1], settings or [], n=1, cutoff=0.6)
        return f"{where} is not a setting of {subcommand}" + (f"; did you mean {close[0]}?" if close else "")
    if (missing := _REQUIRED.match(message)) is not None and missing[1].endswith((".data", ".model")):
        what = "dataset" if missing[1].endswith(".data") else "model"
        return (
            f"lit-cs201 {subcommand} needs a {what}: give a config, e.g. --config configs/iris.yaml, or "
            f"--{missing[1].rsplit('.', 1)[1]} NAME (lit-cs201 {subcommand} --help lists them)"
        )
    if message.startswith("unrecognized arguments: "):
        rest = message.removeprefix("unrecognized arguments: ")
        at = next((i for i in range(len(args) - 1, -1, -1) if args[i] and rest.startswith(args[i])), None)
        return None if at is None else unexpected(subcommand, args, at)
    problem = read_problem(message)
    if problem is None:
        return None
    if problem.option is not None:
        where, _ = _where([*problem.keys, problem.option], args)
        owner = problem.class_path or "this class"
        if len(problem.keys) == 1 and problem.keys[0] in ("model", "data"):  # this package's: the short name
            owner = owner.rsplit(".", 1)[-1]
            return (
                f"{where}: {owner} takes no option {problem.option} "
                f"(lit-cs201 {subcommand} --{problem.keys[0]}.help {owner} lists its options)"
            )
        return f"{where}: {owner} takes no option {problem.option}"
    if not problem.expected or problem.value is None:
        # A refusal of one line ("Parser key "config": Path is not a file: ..."): said of the flag.
        _, _, rest = message.partition(":")
        return f"{_where(problem.keys, args)[0]}:{rest}" if "\n" not in message and rest.strip() else None
    where, typed = _where(problem.keys, args)
    value = repr(problem.value)
    if typed is not None and typed != problem.value:
        value = f"{value} in {typed}" if problem.value in typed else repr(typed)
    return f"{where}: {value} is not {accepted(problem.expected)}"


def _where(keys: list[str], args: list[str]) -> tuple[str, str | None]:
    """The flag that set ``keys`` and the value it gave, as typed; else the key, and the config it is in."""
    wanted = _plain(".".join(keys))
    for i in range(len(args) - 1, -1, -1):
        name, has_value, value = args[i].partition("=")
        if name.startswith("--") and _plain(name[2:].rstrip("+")) == wanted:
            return name, value if has_value else (args[i + 1] if i + 1 < len(args) else None)
    key = ".init_args.".join(keys)
    # Given inside a class's settings: --data '{"class_path": ..., "init_args": {...}}'.
    outer = {_plain(arg.partition("=")[0][2:]): arg.partition("=")[0] for arg in args if arg.startswith("--")}
    for n in range(len(keys) - 1, 0, -1):
        flag = outer.get(_plain(".".join(keys[:n])))
        if flag is not None:
            return f"{key} in {flag}", None
    configs = given_configs(args)
    if len(configs) == 1:
        return f"{key} in {configs[0]}", None
    return (f"{key} in a --config file" if configs else key), None


def _plain(key: str) -> str:
    """A setting's key without the ``init_args`` levels, which the flags may leave out."""
    return ".".join(part for part in key.split(".") if part not in ("init_args", "dict_kwargs"))


# -- the accepted types in words -------------------------------------------------------------------------------

_SIMPLE = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "pathlib.Path": "a path",
    "os.PathLike": "a path",
    "dict": "a mapping such as {name: value}",
    "datetime.timedelta": "a duration such as 00:12:00:00",
}
_PLURAL = {"int": ("integers", "[1, 2]"), "float": ("numbers", "[0.5, 1.0]"), "str": ("names", "[a, b]")}
_LIST = re.compile(r"^(?:list|typing\.List|collections\.abc\.Sequence|typing\.Sequence|tuple)\[(.*)\]$")
_LITERAL = re.compile(r"^(?:typing\.)?Literal\[(.*)\]$")
_CLASS = re.compile(r"^<class '([\w.]+)'>$")


def accepted(expected: list[str]) -> str:
    """``["<class 'int'>", "<class 'NoneType'>"]`` -> ``an integer or null``: the types a value may have, in words."""
    words: list[str] = []
    choices = 0  # how many of the words are values to pick from (a Literal's, true/false, null)
    for typehint in expected:
        for word, is_choice in _words(typehint):
            if word not in words:
                words.append(word)
                choices += is_choice
    if "a path" in words and "text" in words:
        words.remove("text")
    if "a number" in words and "an integer" in words:
        words.remove("an integer")
    if "null" in words:  # last
        words.remove("null")
        words.append("null")
    if not words:
        return "of a type this setting accepts"
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"one of {text}" if choices == len(words) and len(words) > 2 else text


def _name(typehint: str) -> str:
    """``<class 'int'>`` -> ``int``; a generic (``list[int]``, ``typing.Literal['a']``) as it is."""
    return found[1] if (found := _CLASS.fullmatch(typehint.strip())) is not None else typehint.strip()


def _words(typehint: str) -> list[tuple[str, bool]]:
    """The words for one accepted type, each with whether it is a value to pick (``true``, a Literal's value)."""
    name = _name(typehint)
    if name == "NoneType":
        return [("null", True)]
    if name == "bool":
        return [("true", True), ("false", True)]
    if name == "torch.Tensor":
        return []  # not something a command line or a config gives
    if name in _SIMPLE:
        return [(_SIMPLE[name], False)]
    if (literal := _LITERAL.fullmatch(name)) is not None:
        try:
            values = ast.literal_eval(f"[{literal[1]}]")
        except (ValueError, SyntaxError):
            return [(name, False)]
        return [("null" if v is None else str(v).lower() if isinstance(v, bool) else str(v), True) for v in values]
    if name in ("list", "tuple", "collections.abc.Sequence"):
        return [("a list such as [1, 2]", False)]
    if (items := _LIST.fullmatch(name)) is not None:
        plural, example = _PLURAL.get(_name(items[1]), (None, None))
        return [(f"a list of {plural} such as {example}" if plural else "a list", False)]
    return [(f"a {name.rsplit('.', 1)[-1]}", False)]
