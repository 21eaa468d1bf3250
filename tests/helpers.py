"""Running the real ``lit-cs201`` command and reading what it leaves behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def run_cli(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m lit_cs201 ARGS`` in ``cwd`` (a fresh process, as a user would)."""
    result = subprocess.run(
        [sys.executable, "-m", "lit_cs201", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
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
