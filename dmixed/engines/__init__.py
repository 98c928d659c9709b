"""Execution engines: they hold the per-group statistics and evaluate kernels on them.

- :mod:`~dmixed.engines.base`: :class:`Engine`, the members every engine has
  (``name``, ``step``, ``hessian``, ``moments``, ``random_effects``, ``gather``,
  ``close``), each returning sums (or per-group arrays) computed by :mod:`dmixed.kernels`.
- :mod:`~dmixed.engines.local`: :class:`LocalEngine` and the in-process data pass.
- :mod:`~dmixed.engines.dask`: the data pass over a Dask DataFrame, and
  :class:`~dmixed.engines.dask.DaskEngine`, which keeps the statistics on the workers.

Engines move statistics and contributions; they know no statistics theory.
"""

from .base import Engine
from .local import LocalEngine

__all__ = ["Engine", "LocalEngine"]
