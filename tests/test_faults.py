"""When the machine fails a run, or two runs meet: one line with its own exit status, and nothing lost.

A full disk and a read-only folder are real where this machine lets the tests mount a small tmpfs (root, in a
container that allows it), and simulated otherwise at the lowest level that is honest: the write of the checkpoint
file fails with ENOSPC as the kernel fails it, and creating a folder fails with EROFS. Each test's id says which.
Two processes at once are real processes.
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, scalars, snapshot
from lit_cs201.cli.lightning_cli import main
from lit_cs201.runs.folders import LOCK_NAME
from lit_cs201.runs.resume import RandomState

IRIS = str(CONFIGS / "iris.yaml")
QUIET = "--trainer.enable_progress_bar=false"
PREFIX = "lit-cs201: error: "
RUN = Path("runs/iris/version_0")
ROOM = 64 * 1024  # free space on the full disk: the yaml and event files fit, a 200 kB checkpoint does not


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch Iris run whose checkpoints are about 200 kB (2000 hidden units), in ``<folder>/runs/iris``."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        wide = "--model.init_args.hidden_sizes=[2000]"
        assert main(["fit", "--config", IRIS, "--trainer.max_epochs=1", wide, QUIET]) == 0
    assert (folder / RUN / "last.ckpt").stat().st_size > 3 * ROOM
    return folder


def mount_tmpfs(folder: Path, size: str) -> bool:
    """Mount a small tmpfs at ``folder``; False where this machine does not allow it."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode == 0


@pytest.fixture
def disk(request, tmp_path):
    """A folder on a small file system of its own (``real``), or a plain folder (``simulated``)."""
    folder = tmp_path / "disk"
    if request.param == "real" and not mount_tmpfs(folder, "4m"):
        pytest.skip("mounting a tmpfs needs root on a machine that allows it")
    folder.mkdir(exist_ok=True)
    yield request.param, folder
    if request.param == "real":
        subprocess.run(["umount", "-l", str(folder)], check=True)


class FullDisk(io.FileIO):
    """A file on a disk with ``ROOM`` bytes left: a write past them fails with ENOSPC, as the kernel's does."""

    def write(self, data) -> int:
        if self.tell() + len(data) > ROOM:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def fill_up(kind: str, folder: Path, monkeypatch) -> None:
    """Leave ``ROOM`` bytes free on ``folder``'s disk; simulated, only the checkpoint files see the full disk."""
    if kind == "real":
        stat = os.statvfs(folder)
        (folder / "filler").write_bytes(bytes(stat.f_bavail * stat.f_frsize - ROOM))
        return
    real_open = Path.open

    def open_on_full_disk(path, mode="r", *args, **kwargs):
        if path.name.endswith(".partial"):  # what SafeCheckpointIO writes before renaming it into place
            return FullDisk(path, mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_on_full_disk)


def read_only(kind: str, folder: Path, monkeypatch) -> None:
    """Make ``folder`` read-only: remounted so (real), or refusing new folders as such a mount does (simulated:
    root writes anywhere whatever the permissions say, and a new folder is the first thing an evaluation writes)."""
    if kind == "real":
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        return
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


def folders(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# -- the environment fails ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("disk", ["real", "simulated"], indirect=True)
def test_a_full_disk_while_saving_keeps_the_checkpoints(trained, disk, monkeypatch, capsys):
    kind, folder = disk
    shutil.copytree(trained / "runs", folder / "runs")
    run = folder / RUN
    checkpoints = {name: (run / name).read_bytes() for name in ("best.ckpt", "last.ckpt")}
    before = folders(folder)
    fill_up(kind, folder, monkeypatch)
    monkeypatch.chdir(folder)

    assert main(["fit", "--ckpt_path", str(RUN / "last.ckpt"), "--trainer.max_epochs=3", QUIET]) == 74
    line = last_line(capsys)
    assert line.startswith(f"{PREFIX}cannot write the checkpoint {RUN}/"), line
    assert "No space left on device" in line and "already there is unchanged" in line
    assert line.endswith(f"continue with: lit-cs201 fit --ckpt_path {RUN}/last.ckpt")
    assert {name: (run / name).read_bytes() for name in checkpoints} == checkpoints
    assert not [p.name for p in run.iterdir() if p.name.endswith(".partial") or p.name == LOCK_NAME]
    assert folders(folder) == before


@pytest.mark.parametrize("disk", ["real", "simulated"], indirect=True)
def test_a_read_only_checkpoint_folder_names_the_flag_that_moves_the_logs(trained, disk, tmp_path, monkeypatch, capsys):
    kind, folder = disk
    shutil.copytree(trained / "runs", folder / "runs")
    best = folder / RUN / "best.ckpt"
    read_only(kind, folder, monkeypatch)
    before = snapshot(folder), folders(folder)
    monkeypatch.chdir(tmp_path)

    assert main(["test", "--ckpt_path", str(best), QUIET]) == 74
    line = last_line(capsys)
    assert line.startswith(f"{PREFIX}cannot create the test log folder under {best.parent}/test: Read-only file system")
    assert line.endswith("write the logs elsewhere with --trainer.logger.init_args.save_dir DIR.")
    assert (snapshot(folder), folders(folder)) == before

    elsewhere = tmp_path / "logs"
    assert main(["test", "--ckpt_path", str(best), f"--trainer.logger.init_args.save_dir={elsewhere}", QUIET]) == 0
    assert "test/acc" in scalars(elsewhere / "test" / "version_0")


@pytest.mark.parametrize("disk", ["real"], indirect=True)
def test_a_fit_on_a_full_disk_leaves_no_empty_run_folder(disk, monkeypatch, capsys):
    """Real only: every write fails, and the first one a fit makes is its lock file."""
    _, folder = disk
    stat = os.statvfs(folder)
    (folder / "filler").write_bytes(bytes(stat.f_bavail * stat.f_frsize))
    monkeypatch.chdir(folder)

    assert main(["fit", "--config", IRIS, "--trainer.max_epochs=1", QUIET]) == 74
    assert last_line(capsys) == (
        f"{PREFIX}cannot write {RUN}/{LOCK_NAME}: No space left on device; free space on that disk."
    )
    assert [p.name for p in folder.iterdir()] == ["filler"]


def test_a_legacy_checkpoint_is_tested_like_a_zip_one(trained, tmp_path, monkeypatch):
    """``torch.save(..., _use_new_zipfile_serialization=False)``, the format of torch before 1.6: no memory map."""
    for name in ("zip", "legacy"):
        shutil.copytree(trained / RUN, tmp_path / name)
    best = torch.load(tmp_path / "legacy" / "best.ckpt", weights_only=True)
    torch.save(best, tmp_path / "legacy" / "best.ckpt", _use_new_zipfile_serialization=False)
    monkeypatch.chdir(tmp_path)
    for name in ("zip", "legacy"):
        assert main(["test", "--ckpt_path", f"{name}/best.ckpt", QUIET]) == 0
    zip_scores, legacy_scores = (scalars(tmp_path / name) for name in ("zip", "legacy"))  # into the run tested
    assert legacy_scores["test/acc"] == zip_scores["test/acc"]


# -- two processes at once ------------------------------------------------------------------------------------------


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lit_cs201", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_fits_started_together_write_two_runs(tmp_path):
    runs = [start("fit", "--config", IRIS, "--trainer.max_epochs=2", QUIET, cwd=tmp_path) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], [err[-3000:] for _, err in outputs]

    folders_ = sorted((tmp_path / "runs" / "iris").iterdir())
    assert [p.name for p in folders_] == ["version_0", "version_1"]
    printed = sorted(out.split("Test it with:    lit-cs201 test --ckpt_path ")[1].split()[0] for out, _ in outputs)
    assert printed == [f"{RUN.parent}/{p.name}/best.ckpt" for p in folders_]  # each process reports its own run
    for run in folders_:
        events = [p.name for p in run.glob("events.out.tfevents.*")]
        assert len(events) == 1  # not the files of two processes in one folder
        assert sorted(p.name for p in run.iterdir() if p.name not in events) == [
            "best.ckpt",
            "config.yaml",
            "hparams.yaml",
            "last.ckpt",
            "summary.json",
        ]
        assert len(scalars(run)["val/acc"]) == 2
        assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_two_predicts_of_one_checkpoint_at_once_write_two_folders(trained, tmp_path):
    shutil.copytree(trained / RUN, tmp_path / "run")
    runs = [start("predict", "--ckpt_path", "run/best.ckpt", QUIET, cwd=tmp_path) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], [err[-3000:] for _, err in outputs]

    written = sorted((tmp_path / "run" / "predict").iterdir())
    assert [p.name for p in written] == ["version_0", "version_1"]
    assert all((p / "config.yaml").is_file() for p in written)
    assert (written[0] / "predictions.csv").read_text() == (written[1] / "predictions.csv").read_text()


@pytest.mark.slow
def test_a_second_fit_of_a_running_run_is_refused_until_it_dies(trained, tmp_path, monkeypatch, capsys):
    shutil.copytree(trained / "runs", tmp_path / "runs")
    run = tmp_path / RUN
    first = start("fit", "--ckpt_path", str(RUN / "last.ckpt"), "--trainer.max_epochs=10000", QUIET, cwd=tmp_path)
    lock = run / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[1][-3000:]
    monkeypatch.chdir(tmp_path)
    # Half-written checkpoints under the names two writers use: the refused fit must leave them alone.
    leftovers = [run / ".last.ckpt.999999.partial", run / ".best.ckpt.partial"]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")

    try:
        assert main(["fit", "--ckpt_path", str(RUN / "last.ckpt"), QUIET]) == 75
        assert last_line(capsys) == (
            f"{PREFIX}{RUN} is being trained by another process (pid {first.pid}); wait for it to end, stop it, or "
            "start a new run without --ckpt_path."
        )
        assert all(path.is_file() for path in leftovers)
        # Evaluating the best checkpoint so far still works while the fit writes.
        assert main(["test", "--ckpt_path", "best", QUIET]) == 0
    finally:
        first.send_signal(signal.SIGKILL)  # as a scheduler or the OOM killer does: no chance to clean up
        first.communicate(timeout=60)

    # A killed process holds no lock: the run continues, and what the killed writer left is removed first.
    epoch = torch.load(run / "last.ckpt", weights_only=True)["epoch"]
    assert main(["fit", "--ckpt_path", str(RUN / "last.ckpt"), f"--trainer.max_epochs={epoch + 2}", QUIET]) == 0
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == epoch + 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no partial, no lock


# -- printed commands -----------------------------------------------------------------------------------------------


def test_the_printed_commands_work_pasted_back_with_spaces_and_chinese_in_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_dir = "my runs/数据"
    real = RandomState.on_train_epoch_start

    def ctrl_c_in_the_second_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt
        real(self, trainer, pl_module)

    monkeypatch.setattr(RandomState, "on_train_epoch_start", ctrl_c_in_the_second_epoch, raising=False)
    args = ["fit", "--config", IRIS, "--trainer.max_epochs=3", f"--trainer.logger.init_args.save_dir={save_dir}"]
    assert main([*args, QUIET]) == 130
    out = capsys.readouterr().out
    resume = shlex.split(out.split("continue exactly from it with:\n")[1].splitlines()[0])
    assert resume == ["lit-cs201", "fit", "--ckpt_path", f"{save_dir}/iris/version_0/last.ckpt"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    assert main([*resume[1:], QUIET]) == 0
    test = shlex.split(capsys.readouterr().out.split("Test it with:")[1].splitlines()[0])
    assert test == ["lit-cs201", "test", "--ckpt_path", f"{save_dir}/iris/version_0/best.ckpt"]
    assert main([*test[1:], QUIET]) == 0
