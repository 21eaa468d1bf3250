"""``lit-cs201 runs``: one line per run under the runs folder, with its settings and scores, as an aligned table, CSV
or JSON. It reads the runs' ``summary.json`` files (`lit_cs201.runs.records`) and imports neither torch nor
Lightning, so it answers in well under a second."""

from __future__ import annotations

import csv
import difflib
import json
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from lit_cs201.errors import ArgumentParser, UserError, first_few, printable
from lit_cs201.runs.records import Run, experiment_names, list_runs, version_key

# The columns of --format csv and json, in order.
FIELDS = (
    "experiment",
    "version",
    "dataset",
    "net",
    "lr",
    "epochs",
    "max_epochs",
    "best_val_acc",
    "test_acc",
    "tested",
    "wall_time_s",
    "started",
    "status",
    "path",
)
# The table's: the same but max_epochs (epochs shows "3/10"), tested and path, with the wall time as a duration.
TABLE = tuple("wall_time" if f == "wall_time_s" else f for f in FIELDS if f not in ("max_epochs", "tested", "path"))
HIGHEST_FIRST = ("best_val_acc", "test_acc")  # sorted best first; every other column ascending
NUMERIC = {"lr", "epochs", "max_epochs", "best_val_acc", "test_acc", "wall_time_s"}
MAX_CELL = 32  # characters of a text cell in the table; CSV and JSON keep it whole
SHOWN_PROBLEMS = 5
_HOW = "Train one with: lit-cs201 fit --config configs/iris.yaml (or give the runs folder with --runs_dir)."


def main(args: list[str]) -> int:
    """``lit-cs201 runs ARGS``."""
    options = _parser().parse_args(args)
    root = Path(options.runs_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"--runs_dir {root} is a file; give the folder the runs are in (runs by default)")
    if not root.is_dir():
        return _none(options, f"No runs: the folder {printable(root)} does not exist. {_HOW}")
    experiments = _check_experiments(root, options.experiment)
    runs = list_runs(root, experiments)
    if not runs:
        where = f"{printable(root)}/{experiments[0]}" if experiments and len(experiments) == 1 else printable(root)
        return _none(options, f"No runs under {where} yet. {_HOW}")
    _sort(runs, options.sort, options.reverse)
    _warn(runs)
    try:
        _print(runs, options.format)
    except BrokenPipeError:  # the reader stopped early (| head): the rest is not wanted
        _quiet_stdout()
    return 0


def _print(runs: list[Run], form: str) -> None:
    if form == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows([["" if v is None else v for v in _fields(run).values()] for run in runs])
    elif form == "json":
        print(json.dumps([_fields(run) for run in runs], indent=1, ensure_ascii=False))
    else:
        print(_table([TABLE, *(_cells(run) for run in runs)]))
        _suggest(runs)
    sys.stdout.flush()


def _quiet_stdout() -> None:
    """Point stdout at the null device, so that Python's own flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (in-process tests)
        pass


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="lit-cs201 runs",
        description="List the runs under the runs folder, one line each: experiment, version folder, dataset, net, "
        "learning rate, epochs done, best val/acc, the newest test/acc of the run's checkpoints, wall time, start "
        "and status (done, running, stopped by Ctrl-C/SIGTERM/an error, or killed).",
        allow_abbrev=False,
    )
    parser.add_argument("experiment", nargs="*", help="only these experiments (the folders under the runs folder)")
    parser.add_argument("--runs_dir", default="runs", help="the runs folder (default: runs)")
    parser.add_argument(
        "--sort",
        default="started",
        choices=[*(name for name in FIELDS if name != "path"), "wall_time"],
        metavar="COLUMN",
        help="the column to sort by (default: started, oldest first); best_val_acc and test_acc sort highest "
        "first, the others ascending; blank cells last",
    )
    parser.add_argument("--reverse", action="store_true", help="reverse the order (blank cells stay last)")
    parser.add_argument(
        "--format",
        default="table",
        choices=["table", "csv", "json"],
        help="table (aligned, for reading) or csv / json (for scripts; columns: " + ", ".join(FIELDS) + ")",
    )
    return parser


def _none(options: Any, sentence: str) -> int:
    """No runs to list: the sentence for a reader; an empty list for a script."""
    print(sentence, file=sys.stderr)
    if options.format == "csv":
        print(",".join(FIELDS))
    elif options.format == "json":
        print("[]")
    return 0


def _check_experiments(root: Path, wanted: list[str]) -> list[str] | None:
    if not wanted:
        return None
    names = experiment_names(root)
    for name in wanted:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            there = f"experiments there: {first_few(names, 10)}" if names else "no experiments there yet"
            hint = f"; did you mean {close[0]}?" if close else "."
            raise UserError(f"no experiment {name} under {root}/ ({there}){hint}")
    return list(dict.fromkeys(wanted))


def _sort(runs: list[Run], column: str, reverse: bool) -> None:
    key = "wall_time_s" if column == "wall_time" else column
    runs.sort(key=lambda run: (run.experiment, version_key(run.version)))  # ties: in folder order
    known = [run for run in runs if _value(run, key) is not None]
    blank = [run for run in runs if _value(run, key) is None]
    descending = (key in HIGHEST_FIRST) != reverse
    known.sort(key=lambda run: _sort_key(run, key), reverse=descending)
    runs[:] = known + blank


def _sort_key(run: Run, key: str) -> Any:
    value = _value(run, key)
    return version_key(value) if key == "version" else value


def _value(run: Run, key: str) -> Any:
    return run.started if key == "started" else getattr(run, key)


def _fields(run: Run) -> dict[str, Any]:
    """The run as the CSV and JSON columns: numbers as numbers, ``None`` where unknown."""
    row = {name: getattr(run, name) for name in FIELDS if name not in ("started", "path")}
    row["started"] = _time(run.started, iso=True)
    row["path"] = printable(run.path)
    for name, value in row.items():  # folder and file names, and text from a config: as everything printed
        if isinstance(value, str):
            row[name] = printable(value)
    return {name: row[name] for name in FIELDS}


def _cells(run: Run) -> list[str]:
    epochs = "" if run.epochs is None else f"{run.epochs}" + (f"/{run.max_epochs}" if run.max_epochs else "")
    return [
        _short(run.experiment), _short(run.version), _short(run.dataset), _short(run.net), _number(run.lr, "g"),
        epochs, _number(run.best_val_acc, ".4f"), _number(run.test_acc, ".4f"), _duration(run.wall_time_s),
        _time(run.started), run.status or "",
    ]  # fmt: skip


def _table(rows: list[list[str] | tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = [name in NUMERIC or name == "wall_time" for name in rows[0]]
    return "\n".join(
        "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right, strict=True)).rstrip()
        for row in rows
    )


def _short(text: str | None) -> str:
    text = printable(text or "")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _time(timestamp: float | None, iso: bool = False) -> str | None:
    if timestamp is None:
        return None if iso else ""
    try:
        moment = datetime.fromtimestamp(timestamp).astimezone()
    except (OverflowError, OSError, ValueError):
        return None if iso else ""
    return moment.isoformat(timespec="seconds") if iso else moment.strftime("%Y-%m-%d %H:%M")


def _warn(runs: list[Run]) -> None:
    """One line per file that could not be read (the first few), on stderr: the cells it would fill are blank."""
    problems = [problem for run in runs for problem in run.problems]
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"Warning: {problem}; its cells are blank.", file=sys.stderr)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"Warning: {len(problems) - SHOWN_PROBLEMS} more such files.", file=sys.stderr)


def _suggest(runs: list[Run]) -> None:
    """What to run next: test the highest-scoring run, unless its best checkpoint already was."""
    scored = [run for run in runs if run.best_val_acc is not None and (run.path / "best.ckpt").is_file()]
    if not scored:
        return
    best = max(scored, key=lambda run: run.best_val_acc)
    print(f"\nHighest val/acc: {printable(best.path)} ({best.best_val_acc:.4f}).")
    if best.tested != "best.ckpt":
        print(f"Test it with:    lit-cs201 test --ckpt_path {printable(shlex.quote(str(best.path / 'best.ckpt')))}")
