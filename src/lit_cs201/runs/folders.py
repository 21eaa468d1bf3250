"""Where a run writes, and run folders that two processes never share: a version number taken with ``mkdir``, a lock
held while a run trains, and the clean-up of checkpoint files a killed writer left behind."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import IO, Any

from fsspec.utils import get_protocol
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lit_cs201.errors import STORAGE_ERRNOS, RunBusyError, StorageError
from lit_cs201.runs.records import is_run_folder

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: The runs folder and the experiment of a run whose logger's settings name none.
DEFAULT_RUNS_DIR, DEFAULT_EXPERIMENT = "runs", "default"
LOCK_NAME = ".lit-cs201.lock"
# What SafeCheckpointIO writes before the rename: ``.best.ckpt.<pid>.partial`` (``.best.ckpt.partial`` before).
PARTIAL = re.compile(r"^\..+\.ckpt(\.\d+)?\.partial$")


def log_place(subcommand: str, checkpoint: Path | None, save_dir: str) -> dict[str, str]:
    """The logger settings that put the logs of ``subcommand`` where they belong; empty where the logger's own
    (``save_dir/<experiment>/version_N``) do. The one place that decides where a run writes.

    A ``fit`` of a run's checkpoint continues in the run's own folder; of a checkpoint outside a run's folder
    (`lit_cs201.runs.records.is_run_folder`), it is a new run: nothing is written where the checkpoint lies, the
    file included. An evaluation logs beside the checkpoint it evaluates, ``<run>/<subcommand>/version_N``, unless
    ``save_dir`` names a folder of the user's (not the default runs folder, however spelled) that the checkpoint is
    not in: then in ``save_dir/<subcommand>/``, for a checkpoint in a folder this user cannot write to.
    """
    if checkpoint is None:
        return {}
    run = checkpoint.parent
    if subcommand == "fit":
        if not is_run_folder(run):
            return {}
        return {"save_dir": str(run.parent.parent), "name": run.parent.name, "version": run.name}
    folder = Path(save_dir).resolve()
    if folder != Path(DEFAULT_RUNS_DIR).resolve() and folder not in checkpoint.resolve().parents:
        return {"save_dir": save_dir, "name": subcommand}
    return {"save_dir": str(run), "name": subcommand}


def is_local(path: Any) -> bool:
    """Whether ``path`` is on this machine's file system rather than a remote store (``s3://...``)."""
    return get_protocol(str(path)) == "file"


def create_log_dir(logger: Any, subcommand: str) -> list[Path]:
    """Create ``logger``'s version folder now; return the folders this call created, deepest first.

    Lightning's loggers take the next free ``version_N`` when they first write, so two runs started together can
    both take ``version_0`` and mix their files. ``mkdir`` either creates a folder or fails because it exists, so
    the number is taken here, atomically, by trying the next one until a ``mkdir`` succeeds.
    """
    if not isinstance(logger, TensorBoardLogger | CSVLogger) or not is_local(logger.root_dir):
        return []
    root = Path(os.path.expanduser(os.path.expandvars(logger.root_dir)))
    missing = [p for p in (root, *root.parents) if not p.exists()]
    fixed = logger._version  # set by the user, or by restore_args for a resumed run's own folder
    version = logger._get_next_version() if fixed is None else fixed
    while True:
        folder = root / (version if isinstance(version, str) else f"version_{version}")
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:
            if fixed is not None:
                return []
            version += 1  # another run took this number since it was counted
        except OSError as err:
            if err.errno not in STORAGE_ERRNOS:
                raise
            raise StorageError(
                f"cannot create the {subcommand} log folder under {root}: {err.strerror}; write the logs elsewhere "
                "with --trainer.logger.init_args.save_dir DIR"
            ) from None
    logger._version = version
    return [folder, *missing]


def remove_created(folders: list[Path], with_contents: bool = False) -> None:
    """Remove ``folders`` (deepest first), which this run created, so that a run that failed leaves no empty
    ``version_N`` behind. ``with_contents``: also what the run wrote in them (its ``config.yaml``, event files) when
    it stopped on bad input that only showed once it had started, unless a checkpoint is among it."""
    for folder in folders:
        if with_contents and folder.is_dir() and not any(folder.rglob("*.ckpt")):
            shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.rmdir()  # refuses a folder that is not empty
        except FileNotFoundError:
            continue
        except OSError:
            return


class RunLock:
    """The run folder's lock, held while a ``fit`` writes into it, so that a second ``fit`` of the same run (two
    resumes, or a fixed ``--trainer.logger.version``) is refused instead of interleaving checkpoints.

    ``flock`` on an open file: the operating system releases it when the process ends, however it ends, so a killed
    run never keeps its folder locked. The file is removed on release; a process that opened it just before then
    checks, after locking, that it still holds the file at that path. Windows lacks ``fcntl``: there, nothing is
    locked and a second ``fit`` of the same run is not refused.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Take the lock; False where locks are unavailable."""
        if fcntl is None:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a logger's sub_dir is created later
        while True:
            file = self.path.open("a+b", buffering=0)  # unbuffered: a failed write is not retried on close
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().decode(errors="replace").strip() or "unknown"
                file.close()
                raise RunBusyError(
                    f"{self.path.parent} is being trained by another process (pid {holder}); wait for it to end, "
                    "stop it, or start a new run without --ckpt_path"
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            file.close()  # the holder released and removed this file while it was being opened: lock the new one
        self.file = file
        try:
            file.truncate(0)
            file.write(f"{os.getpid()}\n".encode())  # for the message of a refused fit
        except OSError as err:  # on a full disk, the first write of a fit
            self.release()
            raise StorageError(f"cannot write {self.path}: {err.strerror}; free space on that disk") from None
        return True

    def release(self) -> None:
        if self.file is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: whoever locks next, locks a file at this path
            self.file.close()
            self.file = None


def remove_stale_partials(folder: Path) -> None:
    """Remove the half-written checkpoints a killed ``fit`` left in ``folder``; call it only while holding the run's
    lock (only a ``fit`` writes checkpoints there, so no partial file is then being written)."""
    for path in folder.glob(".*.partial"):
        if PARTIAL.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
