"""What a run folder says about its run, read without torch: the ``summary.json`` that ``fit`` (every epoch) and
``test`` (when it ends) write into their folders, and for runs without one the run's saved ``config.yaml``.

A run folder is data: each file is read up to a bound, a file that cannot be read leaves its cells blank with one
line saying why, and nothing in it is imported or called. ``lit-cs201 runs`` lists what this module reads, and
``--ckpt_path best`` names the runs that scored higher than the one it picked.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_cs201.errors import first_line, is_count, printable

SUMMARY = "summary.json"
# A summary is a few hundred bytes, a run's config.yaml a few kilobytes: anything much larger is not one of them.
MAX_SUMMARY_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
# Files a fit writes into its own folder as it starts: not its checkpoints, which anyone may copy anywhere.
RUN_RECORDS = ("config.yaml", SUMMARY, "hparams.yaml")
# Files that make a folder a run's in the list (a fit's, or one that was stopped after writing its config).
RUN_FILES = (*RUN_RECORDS, "best.ckpt", "last.ckpt")
TEST_FOLDER = "test"  # <run>/test/version_M/: the tests of the run's checkpoints


@dataclass
class Run:
    """One run folder, as far as it could be read; ``None`` where a value is unknown."""

    path: Path
    experiment: str
    version: str
    dataset: str | None = None
    net: str | None = None
    lr: float | None = None
    epochs: int | None = None
    max_epochs: int | None = None
    best_val_acc: float | None = None
    test_acc: float | None = None
    tested: str | None = None  # the checkpoint file the newest test scored: best.ckpt, last.ckpt
    wall_time_s: float | None = None
    started: float | None = None  # seconds since the epoch
    status: str | None = None  # done, stopped, running, killed
    problems: list[str] = field(default_factory=list)  # why some cells are blank


def write_summary(folder: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as ``folder/summary.json`` atomically: written under a temporary name, then renamed, so a
    reader sees the previous summary or this one, never half of one."""
    partial = folder / f".{SUMMARY}.{os.getpid()}.partial"
    text = json.dumps({"format": 1, **record}, indent=1, allow_nan=False) + "\n"
    try:
        with open(partial, "wb") as file:
            file.write(text.encode())
        os.replace(partial, folder / SUMMARY)
    finally:
        partial.unlink(missing_ok=True)


def read_summary(path: Path) -> tuple[dict[str, Any], str | None]:
    """The summary at ``path``, and why it could not be read (``{}`` then); ``({}, None)`` where there is none."""
    text, problem = _read_bounded(path, MAX_SUMMARY_BYTES)
    if text is None:
        return {}, problem
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as err:
        return {}, f"{printable(path)}: not valid JSON ({first_line(err, 80)})"
    if not isinstance(record, dict):
        return {}, f"{printable(path)}: not a summary (a JSON object)"
    return record, None


def _read_bounded(path: Path, limit: int) -> tuple[str | None, str | None]:
    """The text of the regular file ``path`` if it holds at most ``limit`` bytes; else why not. Opened without
    waiting, and checked to be a file before it is read: a named pipe or a device in its place is never read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, None
    except OSError as err:
        return None, f"{printable(path)}: cannot be read ({err.strerror or type(err).__name__})"
    try:
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, f"{printable(path)}: not a regular file, not read"
            data = file.read(limit + 1)
    except OSError as err:
        return None, f"{printable(path)}: cannot be read ({err.strerror or type(err).__name__})"
    if len(data) > limit:
        return None, f"{printable(path)}: larger than {limit // 1024} KiB, not read"
    return data.decode("utf-8", "replace"), None


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a fit's own folder, by what a fit writes there itself (`RUN_RECORDS`)."""
    return any((folder / name).is_file() for name in RUN_RECORDS)


def list_runs(root: Path, experiments: list[str] | None = None) -> list[Run]:
    """Every run folder under ``root`` (``root/<experiment>/<version>/``), of ``experiments`` where given."""
    runs = []
    for experiment in experiments if experiments is not None else experiment_names(root):
        for version in _folders(root / experiment):
            folder = root / experiment / version
            if any((folder / name).exists() for name in RUN_FILES):
                runs.append(read_run(folder))
    return runs


def experiment_names(root: Path) -> list[str]:
    return sorted(_folders(root))


def _folders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def read_run(folder: Path) -> Run:
    """What ``folder`` says about its run: its summary, else its saved config; the newest test of its checkpoints."""
    run = Run(path=folder, experiment=folder.parent.name, version=folder.name)
    record, problem = read_summary(folder / SUMMARY)
    if problem:
        run.problems.append(problem)
    if record.get("kind") == "fit":
        _take_fit(run, record)
    else:
        _take_config(run, folder)
    if run.started is None:
        run.started = _mtime(folder / "config.yaml") or _mtime(folder)
    _take_newest_test(run, folder / TEST_FOLDER)
    return run


def _take_fit(run: Run, record: dict[str, Any]) -> None:
    run.dataset, run.net = _text(record.get("dataset")), _text(record.get("net"))
    run.lr, run.best_val_acc = _number(record.get("lr")), _number(record.get("best_val_acc"))
    run.wall_time_s, run.started = _seconds(record.get("wall_time_s")), _seconds(record.get("started"))
    run.epochs, run.max_epochs = _count(record.get("epochs")), _count(record.get("max_epochs"))
    status = record.get("status")
    run.status = status if status in ("done", "stopped", "running") else None
    if run.status == "running" and _ended_unannounced(record):
        run.status = "killed"


def _ended_unannounced(record: dict[str, Any]) -> bool:
    """Whether the process that was training the run ended without saying so (killed, or its machine stopped): only
    known for a process of this machine, and only where processes can be asked about (POSIX)."""
    pid = record.get("pid")
    if os.name != "posix" or record.get("host") != socket.gethostname() or _count(pid) is None or pid < 1:
        return False
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, sends nothing
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # exists, owned by another user; a number no process id can be
        return False
    return False


def _take_config(run: Run, folder: Path) -> None:
    """The settings of a run without a summary (trained before runs wrote one, or stopped before its first epoch
    ended), from its newest saved config."""
    path = latest_config(folder)
    if path is None:
        return
    text, problem = _read_bounded(path, MAX_CONFIG_BYTES)
    if text is None:
        run.problems += [problem] if problem else []
        return
    import yaml  # only for runs without a summary

    try:
        config = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError) as err:
        run.problems.append(f"{printable(path)}: not valid YAML ({first_line(err, 80)})")
        return
    config = config if isinstance(config, dict) else {}
    data, model = _mapping(config.get("data")), _mapping(config.get("model"))
    data_args, model_args = _mapping(data.get("init_args")), _mapping(model.get("init_args"))
    run.dataset = dataset_name(data.get("class_path"), data_args.get("data_dir"))
    run.net = _text(model_args.get("net"))
    run.lr = _number(_mapping(_mapping(model_args.get("optimizer")).get("init_args")).get("lr"))
    run.max_epochs = _count(_mapping(config.get("trainer")).get("max_epochs"))


def latest_config(run: Path) -> Path | None:
    """The run's newest saved config: ``config.yaml``, then ``config-1.yaml``, ... for each resume."""
    found = {0: run / "config.yaml"} if (run / "config.yaml").is_file() else {}
    for path in run.glob("config-*.yaml"):
        if (number := path.stem.removeprefix("config-")).isascii() and number.isdigit():  # not "config-².yaml"
            found[int(number)] = path
    return found[max(found)] if found else None


def _take_newest_test(run: Run, tests: Path) -> None:
    newest: tuple[float, dict[str, Any]] | None = None
    for version in _folders(tests):
        record, problem = read_summary(tests / version / SUMMARY)
        if problem:
            run.problems.append(problem)
        finished = _number(record.get("finished"))
        if record.get("kind") == "test" and finished is not None and (newest is None or finished > newest[0]):
            newest = (finished, record)
    if newest is not None:
        run.test_acc, run.tested = _number(newest[1].get("test_acc")), _text(newest[1].get("checkpoint"))


def dataset_name(class_path: Any, data_dir: Any = None) -> str | None:
    """A datamodule as the runs list names it: ``Iris``, ``MNIST``, ``ImageFolder (digits)``."""
    if not isinstance(class_path, str) or not class_path:
        return None
    name = class_path.rsplit(".", 1)[-1].removesuffix("DataModule") or class_path
    if name == "ImageFolder" and isinstance(data_dir, str) and Path(data_dir).name:
        name += f" ({Path(data_dir).name})"
    return printable(name)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int = 200) -> str | None:
    return printable(value[:limit]) if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok and abs(value) < 1e15 else None


def _seconds(value: Any) -> float | None:
    """A duration, or a time as seconds since the epoch: not negative."""
    seconds = _number(value)
    return seconds if seconds is not None and seconds >= 0 else None


def _count(value: Any) -> int | None:
    return value if is_count(value) and value < 2**53 else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def version_key(name: str) -> tuple[str, int, str]:
    """``version_10`` after ``version_9``."""
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match[1], int(match[2]), "") if match else (name, -1, name)
