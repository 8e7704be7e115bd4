"""mhss-ray: noise-robust multi-label image classification and its hyperparameter studies on Ray."""

import os

# OpenMP threads that spin while they wait collapse training when another process takes a core at the same
# priority (a desktop's other applications): threads that sleep at once train several times faster then, and
# about 8% slower on a quiet machine (benchmarks/threads_under_load.py). OpenMP reads the policy when torch
# loads it, so it is set here, before any torch import of the package; a policy set in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
