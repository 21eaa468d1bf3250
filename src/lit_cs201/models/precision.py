"""Which accelerator Lightning's ``accelerator: "auto"`` picks on this machine, and which precision trains fastest.

Both are questions about how this machine computes a model's arithmetic, asked by the ``lit-cs201`` command (the
precision of a fit whose config gives none) and by the course's device report (``python -m
lit_cs201.course.devices``). They live here, with the models, because that is the lowest layer both may import: the
command sits above everything, and the course may import anything but the command.

The accelerator is resolved by Lightning's own code (``_AcceleratorConnector._choose_auto_accelerator``, listed in
`lit_cs201.private_api`), so the answer cannot drift from what the Trainer does. If a Lightning release moves that
function, `auto_accelerator` falls back to a rule of its own (CUDA, then MPS, then the CPU) and says so. Lightning's
own order is TPU, then MPS (on Apple silicon), then CUDA, then CPU: on a machine with both MPS and CUDA, ``auto``
picks MPS.
"""

from __future__ import annotations


def auto_accelerator() -> tuple[str, int, str]:
    """What ``Trainer(accelerator="auto", devices="auto")`` resolves to here: the accelerator's name ("cpu", "cuda",
    "mps" or "tpu"), the device count, and "lightning" if Lightning's own code chose or "mirror" if the fallback did.
    Starts no computation on any device."""
    import torch

    try:
        from lightning.pytorch.accelerators import AcceleratorRegistry
        from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

        name = str(_AcceleratorConnector._choose_auto_accelerator())
        return name, int(AcceleratorRegistry.get(name).auto_device_count()), "lightning"
    except (ImportError, AttributeError, KeyError, TypeError):
        if torch.cuda.is_available():
            return "cuda", torch.cuda.device_count(), "mirror"  # Lightning's "auto" devices: every visible GPU
        return ("mps" if torch.backends.mps.is_available() else "cpu"), 1, "mirror"


def training_precision(accelerator: str | None) -> tuple[str, str]:
    """`native_precision` for a Trainer's ``accelerator`` setting: ``auto`` (or none) is what Lightning picks here,
    ``gpu`` is CUDA or else Apple's MPS, as in Lightning."""
    if accelerator in (None, "auto"):
        accelerator = auto_accelerator()[0]
    elif accelerator == "gpu":
        import torch

        accelerator = "cuda" if torch.cuda.is_available() else "mps"
    return native_precision(str(accelerator))


def native_precision(accelerator: str) -> tuple[str, str]:
    """The precision a run on ``accelerator`` trains fastest in here, judged by what the hardware computes natively,
    and why: ``bf16-mixed`` on a CUDA GPU with bfloat16 and on a CPU with AMX or AVX512-BF16, ``16-mixed`` on an
    older CUDA GPU, ``32-true`` elsewhere (a CPU without native bfloat16 emulates it, slower than float32, and mixed
    precision on Apple's MPS is not measured faster)."""
    import torch

    if accelerator == "cuda":
        name = torch.cuda.get_device_name()
        if _cuda_bf16():
            return "bf16-mixed", f"{name} computes bfloat16"
        return "16-mixed", f"{name} has no bfloat16, float16 instead"
    if accelerator == "cpu":
        features = [name for name, supported in _cpu_bf16_features().items() if supported]
        if features:
            return "bf16-mixed", f"this CPU computes bfloat16 natively ({' and '.join(features)})"
        return "32-true", "this CPU has no native bfloat16, which autocast would emulate, slower than float32"
    return "32-true", f"mixed precision is not measured faster on {accelerator}"


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def _cpu_bf16_features() -> dict[str, bool]:
    """Which of the x86 instruction sets that compute bfloat16 this CPU has, as torch's ``get_capabilities`` sees
    them. A torch too old to have that function reports none: float32, slower where bfloat16 is native, never wrong."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return {"AMX": bool(capabilities.get("amx_bf16")), "AVX512-BF16": bool(capabilities.get("avx512_bf16"))}
