from lit_cs201.models.classifier import Classifier
from lit_cs201.models.nets import build_net

__all__ = ["Classifier", "build_net"]
