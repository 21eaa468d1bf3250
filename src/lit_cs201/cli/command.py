"""The ``lit-cs201`` command's entry point: what needs neither a Trainer nor Lightning's imports runs without them.

``export`` loads torch but not Lightning's trainer machinery; ``predict`` with an exported ``.onnx`` model,
``serve`` of one, and ``runs`` (the list of runs) import neither torch nor Lightning (and so start in about a
second); everything else is the LightningCLI of `lit_cs201.cli.lightning_cli`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from lit_cs201.errors import run_command


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit-cs201`` and ``python -m lit_cs201``; exit statuses as `lit_cs201.cli.lightning_cli.main`
    documents."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["export"]:
        return _plain(lambda: _export(args[1:]))
    if args[:1] == ["serve"]:
        return _plain(lambda: _serve(args[1:]))
    if args[:1] == ["runs"]:
        return _plain(lambda: _runs(args[1:]))
    if args[:1] == ["predict"]:
        from lit_cs201.deploy.predict import names_exported_model

        if names_exported_model(args[1:]):
            return _plain(lambda: _predict(args[1:]))
    with _bars_off_in_files():
        from lit_cs201.cli.lightning_cli import main as lightning_main

    return lightning_main(args)


@contextlib.contextmanager
def _bars_off_in_files() -> Iterator[None]:
    """Output to files (nohup, a batch job's log): progress is one line per epoch (report/progress), and a bar would
    be a line of carriage returns per frame, as Lightning's learning-rate sweep draws with tqdm. tqdm reads its
    ``TQDM_*`` settings once, when it is imported (by the import this wraps): the setting is made for that import
    only, and the processes this one starts get the environment it was given."""
    if sys.stdout.isatty() or sys.stderr.isatty() or "tqdm" in sys.modules or "TQDM_DISABLE" in os.environ:
        yield
        return
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        del os.environ["TQDM_DISABLE"]


def _plain(command) -> int:  # type: ignore[no-untyped-def]
    try:
        return run_command("lit-cs201", command)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


def _export(args: list[str]) -> int:
    from lit_cs201.deploy.export import main

    return main(args)


def _predict(args: list[str]) -> int:
    from lit_cs201.deploy.predict import main

    return main(args)


def _runs(args: list[str]) -> int:
    from lit_cs201.report.runs_table import main

    return main(args)


def _serve(args: list[str]) -> int:
    from lit_cs201.deploy.serve import main

    return main(args)
