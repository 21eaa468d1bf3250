"""lit-cs201: PyTorch Lightning recipes for the programs of an introductory AI course."""

import sys
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_loader
from types import ModuleType
from typing import Any

__version__ = "0.1.0"
__all__ = ["predict"]


def predict(*args: Any, **kwargs: Any) -> Any:
    """`lit_cs201.deploy.from_checkpoint.predict`: the class of each image, from a checkpoint alone. Imported on first
    use, so that ``import lit_cs201`` stays as quick as the side modules need."""
    from lit_cs201.deploy.from_checkpoint import predict as run

    return run(*args, **kwargs)


#: Modules of release 0.1 whose classes moved, and the module each class is in now. Run folders of 0.1 name them
#: (``config.yaml``: ``lit_cs201.loggers.TensorBoardLogger``; a callback a user added by its class path), and a
#: program may import them (``from lit_cs201.runtime import ExportedModel``): those keep working, and what they
#: make is saved under the new paths.
MOVED = {
    "lit_cs201.loggers": {"TensorBoardLogger": "lit_cs201.report.logger"},
    "lit_cs201.runtime": {"ExportedModel": "lit_cs201.deploy.runtime", "Prediction": "lit_cs201.report.results"},
    "lit_cs201.callbacks": {
        "RunCheckpoint": "lit_cs201.runs.checkpoints",
        "RunEarlyStopping": "lit_cs201.runs.checkpoints",
        "RandomState": "lit_cs201.runs.resume",
        "RestoreWindow": "lit_cs201.runs.resume",
        "RunConfigSaver": "lit_cs201.runs.resume",
        "GracefulStop": "lit_cs201.runs.stop",
        "LearningRateLogger": "lit_cs201.report.learning_rate",
        "PredictionWriter": "lit_cs201.report.prediction_writer",
    },
}


class _MovedModules(MetaPathFinder, Loader):
    """Imports a `MOVED` module as a module whose attributes are the classes at their new homes, each imported on
    first use."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        return spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # Python's default module

    def exec_module(self, module: ModuleType) -> None:
        homes = MOVED[module.__name__]

        def moved(name: str) -> Any:
            if name not in homes:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            return getattr(import_module(homes[name]), name)

        module.__getattr__ = moved  # type: ignore[method-assign]
        module.__all__ = list(homes)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
