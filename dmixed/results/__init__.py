"""Fitted results: estimates and inference, prediction, the printed summary.

- :mod:`~dmixed.results.results`: :class:`MixedLMResults` (estimates, Wald and
  likelihood inference, BLUPs) and :func:`load`.
- :mod:`~dmixed.results.covariance`: the covariance of the estimates from the Hessian.
- :mod:`~dmixed.results.prediction`: :class:`Predictor`, in memory and on Dask.
- :mod:`~dmixed.results.prediction_error`: ``get_prediction``'s standard errors and
  intervals.
- :mod:`~dmixed.results.summary`: :class:`Summary`, the printed table.

The names below are imported on first use (PEP 562, as ``dmixed``'s own): a Dask
worker that unpickles a :class:`Predictor` (fitted values, predictions) imports
:mod:`~dmixed.results.prediction` alone, not the results class and its inference.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers (imported on first use)
    from .prediction import Predictor
    from .results import MixedLMResults, load
    from .summary import Summary

#: public name → the module it comes from (imported on first use)
_LAZY = {
    "MixedLMResults": ".results",
    "Predictor": ".prediction",
    "Summary": ".summary",
    "load": ".results",
}

__all__ = ["MixedLMResults", "Predictor", "Summary", "load"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # the next use finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
