"""Checkpoint files that are always whole: written beside their destination, then renamed into place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local writes replace the old file in one step.

    Lightning's own writer stages a checkpoint in the system temp folder and moves it over the destination; when
    that folder is on another file system (a tmpfs ``/tmp``, a cluster's node-local disk) the move is a copy into the
    destination, so a crash, a second Ctrl-C or a scheduler's SIGKILL during it leaves a truncated ``last.ckpt``
    where a good one was. Here the checkpoint is written and flushed to disk under a hidden name in the same folder
    and then renamed, which is atomic: the path holds the old checkpoint or the new one, never a part of either.
    Remote paths (``s3://`` and the like) go through Lightning's writer unchanged.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # one fixed name: a killed write leaves at most one
        try:
            with partial.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
