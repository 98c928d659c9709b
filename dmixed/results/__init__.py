"""Fitted results: estimates and inference, prediction, the printed summary.

- :mod:`~dmixed.results.results`: :class:`MixedLMResults` (estimates, Wald and
  likelihood inference, BLUPs) and :func:`load`.
- :mod:`~dmixed.results.covariance`: the covariance of the estimates from the Hessian.
- :mod:`~dmixed.results.prediction`: :class:`Predictor`, in memory and on Dask.
- :mod:`~dmixed.results.prediction_error`: ``get_prediction``'s standard errors and
  intervals.
- :mod:`~dmixed.results.summary`: :class:`Summary`, the printed table.
"""

from .prediction import Predictor
from .results import MixedLMResults, load
from .summary import Summary

__all__ = ["MixedLMResults", "Predictor", "Summary", "load"]
