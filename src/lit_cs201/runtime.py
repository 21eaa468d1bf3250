"""Exported models without torch: ``from lit_cs201.runtime import ExportedModel``.

Needs only numpy, Pillow and onnxruntime (``pip install "lit-cs201[deploy]"``); see `lit_cs201.deploy.runtime`.
"""

from lit_cs201.deploy.results import Prediction
from lit_cs201.deploy.runtime import ExportedModel

__all__ = ["ExportedModel", "Prediction"]
