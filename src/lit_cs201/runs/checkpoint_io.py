"""Checkpoint files that are always whole: written beside their destination, then renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_cs201.data.safe_load import load_plain
from lit_cs201.errors import StorageError
from lit_cs201.runs.checkpoint import Checkpoint, checked, file_stamp
from lit_cs201.runs.stop import CtrlCHold


class SafeCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local writes replace the old file in one step, and whose reads are checked.

    Lightning's own writer stages a checkpoint in the system temp folder and moves it over the destination; when
    that folder is on another file system (a tmpfs ``/tmp``, a cluster's node-local disk) the move is a copy into the
    destination, so a crash, a second Ctrl-C or a scheduler's SIGKILL during it leaves a truncated ``last.ckpt``
    where a good one was. Here the checkpoint is written and flushed to disk under a hidden name in the same folder
    and then renamed, which is atomic: the path holds the old checkpoint or the new one, never a part of either.
    Remote paths (``s3://`` and the like) go through Lightning's writer unchanged.

    Checkpoints are read as data (`lit_cs201.runs.checkpoint`), bounded and checked, also where Lightning reads them to
    restore a run; the one ``--ckpt_path`` named, already read and checked by the CLI, is not read twice.
    """

    def __init__(self, preloaded: Checkpoint | None = None) -> None:
        super().__init__()
        self.preloaded = preloaded

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not _is_local_file_protocol(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        preloaded, self.preloaded = self.preloaded, None  # once: Lightning changes what it is given
        if preloaded is not None and Path(path) == preloaded.path and file_stamp(path) == preloaded.stamp:
            return preloaded.content
        content = load_plain(Path(path), "checkpoint", "checkpoint")
        if isinstance(content, dict) and "state_dict" in content:
            return checked(Checkpoint(Path(path), content, "checkpoint")).content
        return content  # the weights a process of a ddp_spawn run hands back, which it wrote itself

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The process id keeps two writers of one folder off each other's file; the next fit of the run removes what
        # a killed one left (runs.remove_stale_partials).
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with _ctrl_c_after():
                with partial.open("wb") as f:
                    torch.save(checkpoint, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, path)
        except Exception as err:
            full = _storage_errno(err)
            if full is None:
                raise
            kept = f"the {path.name} already there is unchanged" if path.is_file() else f"no {path.name} was written"
            last = path.parent / "last.ckpt"  # the run folder's resume point (checkpoints.last_checkpoint)
            then = f"continue with: lit-cs201 fit --ckpt_path {shlex.quote(str(last))}" if last.is_file() else "rerun"
            raise StorageError(
                f"cannot write the checkpoint {path}: {os.strerror(full)}; {kept}. Free space on that disk, then {then}"
            ) from err
        finally:
            partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C back until the block has ended: raised inside torch.save, it broke the file torch was writing,
    which torch then reported as a RuntimeError ("unexpected pos"), a traceback and exit 1 instead of the stop that
    says how to continue. A checkpoint takes a second or so to write; the stop comes right after it."""
    held = CtrlCHold()
    held.hold()
    try:
        yield
    except BaseException:
        held.release(deliver=False)  # the block's own error is the one to report
        raise
    held.release()


def _storage_errno(err: BaseException | None) -> int | None:
    """The errno of a full disk behind ``err``: torch's writer reports the ``OSError`` of a short write as a
    ``RuntimeError`` ("unexpected pos") raised while handling it."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err.errno
        err = err.__cause__ or err.__context__
    return None
