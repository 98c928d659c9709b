"""Comparisons shared by the variance-component kernel tests (structured against dense)."""

from __future__ import annotations

import numpy as np

from dmixed.stats import Layout


def close(a, b, rtol: float = 1e-10) -> None:
    """``a`` within ``rtol`` of ``b``'s largest magnitude, entry by entry."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    assert np.abs(a - b).max(initial=0.0) <= rtol * scale


def per_component(values, layout: Layout) -> np.ndarray:
    """Per-slot ``values`` summed over each variance component's slots."""
    return np.stack([values[layout.slot_component == c].sum(axis=0) for c in range(layout.k_vc)])
