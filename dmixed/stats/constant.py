"""Columns of one value throughout, held as that value broadcast (every stride 0).

An indicator component ``0 + C(level)`` has the same entry on every row (its scale, 1
unless the formula says otherwise).  The design hands those entries down as one value
broadcast to the rows' shape (:func:`constant_entries`: no ``n`` floats written), and
the readers that would scan them (the component's scale, the check for zero entries,
the product plan's check for a column of ones) read the value once
(:func:`constant_value`) instead.  The array is read-only: nothing writes into a
design's entries.
"""

from __future__ import annotations

import numpy as np

__all__ = ["constant_entries", "constant_value"]


def constant_entries(value: float, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (as float64) broadcast to ``shape``: a read-only array of that shape
    whose every stride is 0, equal to ``numpy.full(shape, value)``."""
    return np.broadcast_to(np.float64(value), shape)


def constant_value(values: np.ndarray) -> float | None:
    """The one value of an array held as :func:`constant_entries` (not empty, every
    stride 0), else None (time independent of the size: an array of equal values
    held otherwise is not looked at)."""
    if values.size == 0 or any(values.strides):
        return None
    return float(values.flat[0])
