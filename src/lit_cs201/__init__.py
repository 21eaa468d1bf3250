"""lit-cs201: PyTorch Lightning recipes for the programs of an introductory AI course."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["predict"]


def predict(*args: Any, **kwargs: Any) -> Any:
    """`lit_cs201.prediction.predict`: the class of each image, from a checkpoint alone. Imported on first use, so
    that ``import lit_cs201`` stays as quick as the side modules need."""
    from lit_cs201.prediction import predict as run

    return run(*args, **kwargs)
