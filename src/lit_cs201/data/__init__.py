from lit_cs201.data.base import ClassificationDataModule
from lit_cs201.data.iris import IrisDataModule

__all__ = ["ClassificationDataModule", "IrisDataModule"]
