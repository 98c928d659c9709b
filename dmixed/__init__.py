"""dmixed: exact linear mixed models (statsmodels' MixedLM) from per-group statistics,
in-process or on Dask.
"""

from .inference import compare_lr_test
from .io import load
from .model import MixedLM, mixedlm
from .optimize import BoundaryWarning, FitConvergenceWarning
from .results import MixedLMResults

__all__ = [
    "MixedLM",
    "MixedLMResults",
    "mixedlm",
    "BoundaryWarning",
    "FitConvergenceWarning",
    "compare_lr_test",
    "load",
]
__version__ = "0.1.0"
