"""Your model elsewhere: export to one ONNX (or ``.pt2``) file, and the runtime that needs no torch.

    best.ckpt ──export──▶ model.onnx (uint8 (N, C, H, W) in; cast, /255, inversion rule, mean/std, net inside)
    image files ──the one decoder (lit_cs201.data.decode)──▶ uint8 ──onnxruntime──▶ Prediction

`lit_cs201.deploy.runtime` and `lit_cs201.report.results` import neither torch nor Lightning; `export` needs both.
"""

from importlib import import_module
from typing import Any

#: The torch-free API, imported on first use (``lit_cs201.deploy.export`` needs torch; this package must not).
_MODULES = {"ExportedModel": "lit_cs201.deploy.runtime", "Prediction": "lit_cs201.report.results"}
__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'lit_cs201.deploy' has no attribute {name!r}")
    return getattr(import_module(_MODULES[name]), name)


def __dir__() -> list[str]:
    return __all__
