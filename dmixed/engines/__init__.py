"""Execution engines: they hold the per-group statistics and evaluate kernels on them.

An engine exposes ``step(lam, q)``, ``hessian(lam, basis, w)`` and
``random_effects(lam, w)``, each returning sums (or per-group arrays) computed by
:mod:`dmixed.kernels`.  Engines move statistics and contributions; they know no
statistics theory.
"""

from .local import LocalEngine

__all__ = ["LocalEngine"]
