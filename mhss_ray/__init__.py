"""mhss-ray: noise-robust multi-label image classification and its hyperparameter studies on Ray."""

__version__ = "0.1.0"
