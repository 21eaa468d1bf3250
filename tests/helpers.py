"""Running the real ``lit-cs201`` command and reading what it leaves behind."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def run_cli(
    *args: str, cwd: Path, check: bool = True, timeout: float = 600, process: bool = False
) -> subprocess.CompletedProcess:
    """Run ``lit-cs201 ARGS`` in ``cwd``: its entry point ``main`` in this process (a fresh process first spends
    seconds importing what this one has loaded), or with ``process`` ``python -m lit_cs201`` in a fresh process,
    where the process boundary is what a test is about (signals, DDP, the console command itself)."""
    if process:
        result = subprocess.run(
            [sys.executable, "-m", "lit_cs201", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    else:
        from lit_cs201.cli.command import main

        out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(list(args))
                except SystemExit as exit_:
                    status = exit_.code if isinstance(exit_.code, int) else 1
                except Exception:  # a bug: a fresh process would print the traceback and exit with 1
                    traceback.print_exc(file=err)
                    status = 1
        finally:
            os.chdir(before)
        result = subprocess.CompletedProcess(["lit-cs201", *args], status, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"lit-cs201 {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar curve in the TensorBoard event files of ``run_dir``."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def curves_by_step(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar curve of ``run_dir`` as step -> value; a step logged again by a resumed run counts once."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``root``: compare two to prove nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def assert_same(a, b, where="checkpoint"):
    """Equal to the bit, with the first difference named."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
