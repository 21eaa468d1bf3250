"""What accelerators torch sees, and which one Lightning's ``accelerator: "auto"`` will pick.

``python -m lit_cs201.course.devices`` prints CUDA availability with each GPU's name and memory, MPS (Apple silicon)
availability, the CPU thread count, and the accelerator and device count that a ``Trainer(accelerator="auto",
devices="auto")`` resolves to. ``--json`` prints the same as JSON.

The accelerator is resolved by Lightning's own code (see `lit_cs201.models.precision.auto_accelerator`), so the
answer cannot drift from what the Trainer does; the report says when a Lightning release moved that code and a
fallback rule answered instead.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lit_cs201.course.argtypes import ArgumentParser
from lit_cs201.errors import UserError, run_command

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device as torch reports it."""

    index: int
    name: str
    total_memory_bytes: int
    capability: tuple[int, int]


@dataclass(frozen=True)
class DeviceInfo:
    """Accelerators visible to torch and Lightning's automatic choice.

    Attributes:
        torch_version: ``torch.__version__``.
        lightning_version: ``lightning.__version__``, or None if Lightning is not installed.
        cuda_available: ``torch.cuda.is_available()``.
        cuda_version: CUDA version torch was built with (None for CPU-only builds).
        cuda_devices: The visible CUDA devices (respects ``CUDA_VISIBLE_DEVICES``).
        mps_built: Whether this torch build includes MPS support.
        mps_available: ``torch.backends.mps.is_available()``.
        cpu_threads: Threads torch uses for CPU work (``torch.get_num_threads()``).
        cpu_count: Logical CPUs of the machine (``os.cpu_count()``).
        auto_accelerator: What ``accelerator="auto"`` resolves to: "cpu", "cuda", "mps" or "tpu".
        auto_devices: How many devices ``devices="auto"`` uses with that accelerator (outside notebooks).
        resolved_by: "lightning" if Lightning's own code chose, "mirror" if the fallback rule did.
    """

    torch_version: str
    lightning_version: str | None
    cuda_available: bool
    cuda_version: str | None
    cuda_devices: tuple[CudaDevice, ...]
    mps_built: bool
    mps_available: bool
    cpu_threads: int
    cpu_count: int | None
    auto_accelerator: str
    auto_devices: int
    resolved_by: str

    def as_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists instead of tuples), ready for ``json.dumps``."""
        return json.loads(json.dumps(asdict(self)))


def device_info() -> DeviceInfo:
    """Collect what torch and Lightning see on this machine. Starts no computation on any device."""
    import torch

    try:
        import lightning

        lightning_version: str | None = str(lightning.__version__)
    except ImportError:
        lightning_version = None

    cuda_available = bool(torch.cuda.is_available())
    cuda_devices: list[CudaDevice] = []
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            cuda_devices.append(
                CudaDevice(
                    index=index,
                    name=str(props.name),
                    total_memory_bytes=int(props.total_memory),
                    capability=(int(props.major), int(props.minor)),
                )
            )
    from lit_cs201.models.precision import auto_accelerator  # imports Lightning: not at import time

    accelerator, devices, resolved_by = auto_accelerator()
    return DeviceInfo(
        torch_version=str(torch.__version__),
        lightning_version=lightning_version,
        cuda_available=cuda_available,
        cuda_version=torch.version.cuda,
        cuda_devices=tuple(cuda_devices),
        mps_built=bool(torch.backends.mps.is_built()),
        mps_available=bool(torch.backends.mps.is_available()),
        cpu_threads=int(torch.get_num_threads()),
        cpu_count=os.cpu_count(),
        auto_accelerator=accelerator,
        auto_devices=devices,
        resolved_by=resolved_by,
    )


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA, then MPS, then the CPU; any other must exist here.

    Raises:
        UserError: for an unknown device or one this machine lacks, naming it.
    """
    import torch

    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N, mps or auto") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(device)!r} requested but CUDA is not available here; use cpu or auto")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {str(device)!r} requested but MPS is not available here; use cpu or auto")
    return resolved


def format_device_info(info: DeviceInfo) -> str:
    """Human-readable report of :func:`device_info`, as ``python -m lit_cs201.course.devices`` prints it."""
    lines = [f"torch {info.torch_version}, lightning {info.lightning_version or 'not installed'}"]
    if info.cuda_available:
        lines.append(f"CUDA: True (torch built with CUDA {info.cuda_version}), {len(info.cuda_devices)} device(s)")
        for dev in info.cuda_devices:
            gib = dev.total_memory_bytes / 2**30
            major, minor = dev.capability
            lines.append(f"  cuda:{dev.index}  {dev.name}  {gib:.1f} GiB  compute capability {major}.{minor}")
    else:
        built = f"built with CUDA {info.cuda_version}" if info.cuda_version else "CPU-only build"
        lines.append(f"CUDA: False (torch {built})")
    lines.append(f"MPS: {info.mps_available} (built into torch: {info.mps_built})")
    lines.append(f"CPU: torch uses {info.cpu_threads} threads, {info.cpu_count} logical CPUs")
    how = "Lightning's own resolution" if info.resolved_by == "lightning" else "the fallback rule: CUDA, MPS, CPU"
    lines.append(
        f'Lightning accelerator="auto" -> {info.auto_accelerator}, devices="auto" -> {info.auto_devices} ({how})'
    )
    return "\n".join(lines)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lit_cs201.course.devices",
        description='Show the accelerators torch sees and what Lightning\'s accelerator="auto" picks.',
    )
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lit_cs201.course.devices``; returns the process exit status."""
    parser = _parser()
    return run_command(parser.prog, lambda: _show(parser.parse_args(argv).json))


def _show(as_json: bool) -> int:
    info = device_info()
    print(json.dumps(info.as_dict(), indent=2) if as_json else format_device_info(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
