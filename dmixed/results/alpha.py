"""The one check of an interval's ``alpha`` (every results method taking one)."""

from __future__ import annotations

import numpy as np

from ..errors import SpecError

__all__ = ["check_alpha"]


def check_alpha(alpha) -> float:
    """``alpha`` as a float in (0, 1), else SpecError naming the argument (outside it
    the normal quantiles are ±inf or NaN: intervals of ±inf, not an error)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = np.nan
    if not 0.0 < value < 1.0:
        raise SpecError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return value
