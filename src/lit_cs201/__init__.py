"""lit-cs201: PyTorch Lightning recipes for the programs of an introductory AI course."""

__version__ = "0.1.0"
