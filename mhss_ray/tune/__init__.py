"""Ray Tune studies: search-space files (space.py). The study runner builds on these."""

from .space import Dimension, StudySpec, TuneSection, load_space

__all__ = ["Dimension", "StudySpec", "TuneSection", "load_space"]
