"""dmixed: exact linear mixed models (statsmodels' MixedLM) from per-group statistics,
in-process or on Dask.
"""

from importlib.metadata import PackageNotFoundError, version

from . import errors
from .errors import *  # noqa: F403 - every class of errors.__all__
from .inference import anova, compare_lr_test
from .model import MixedLM, MixedLMParams, mixedlm
from .results import MixedLMResults, load

__all__ = [
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "mixedlm",
    "anova",
    "compare_lr_test",
    "load",
]
__all__ += errors.__all__

try:
    __version__ = version("dmixed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0.1.0"
