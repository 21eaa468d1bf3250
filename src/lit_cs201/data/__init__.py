"""The dataset modules, imported on first use.

Lazy, so that ``python -m lit_cs201.course.tiny_imagenet_prepare`` (and the other commands of this package) start
without importing every dataset module (and Lightning) first, and without Python's warning about running a module
that its package has already imported.
"""

from importlib import import_module
from typing import Any

_MODULES = {
    "ClassificationDataModule": "lit_cs201.data.base",
    "IrisDataModule": "lit_cs201.data.iris",
    "MNISTDataModule": "lit_cs201.data.mnist",
    "CIFAR10DataModule": "lit_cs201.data.cifar10",
    "TinyImageNetDataModule": "lit_cs201.data.tiny_imagenet",
    "ImageFolderDataModule": "lit_cs201.data.folder",
}
__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'lit_cs201.data' has no attribute {name!r}")
    return getattr(import_module(_MODULES[name]), name)


def __dir__() -> list[str]:
    return __all__
