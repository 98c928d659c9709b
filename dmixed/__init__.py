"""dmixed: exact linear mixed models (statsmodels' MixedLM) from per-group statistics,
in-process or on Dask.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    BoundaryWarning,
    CheckpointError,
    CheckpointMismatch,
    ClusterConfigError,
    DataError,
    DmixedError,
    DmixedWarning,
    DroppedRowsWarning,
    FitConvergenceWarning,
    FormulaError,
    SingularHessianWarning,
    SpecError,
)
from .inference import compare_lr_test
from .model import MixedLM, mixedlm
from .results import MixedLMResults, load

__all__ = [
    "MixedLM",
    "MixedLMResults",
    "mixedlm",
    "compare_lr_test",
    "load",
    "DmixedError",
    "SpecError",
    "FormulaError",
    "DataError",
    "CheckpointError",
    "CheckpointMismatch",
    "ClusterConfigError",
    "DmixedWarning",
    "BoundaryWarning",
    "FitConvergenceWarning",
    "SingularHessianWarning",
    "DroppedRowsWarning",
]

try:
    __version__ = version("dmixed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0.1.0"
