"""In-process engine: statistics held as numpy arrays in this process."""

from __future__ import annotations

import numpy as np

from .. import kernels


class LocalEngine:
    """Evaluate kernel contributions on statistics held in memory.

    Parameters
    ----------
    zz : ndarray (G, r, r)
        Per-group ``Z̃_i'Z̃_i``.
    zxy : ndarray (G, r, p+1)
        Per-group ``Z̃_i'[X_i, y_i]``.
    """

    name = "local"

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        self.block = kernels.StatsBlock(zz, zxy)

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4)."""
        return kernels.step_contributions(self.block, lam, q)

    def hessian(self, lam: np.ndarray, basis: np.ndarray, w: np.ndarray) -> kernels.HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5)."""
        return kernels.hessian_contributions(self.block, lam, basis, w)

    def moments(self) -> kernels.MomentSums:
        """Σ over groups of the parameter-free moment sums (starting values)."""
        return kernels.moment_contributions(self.block)

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group BLUPs and conditional covariances relative to σ² (DESIGN.md §6)."""
        return kernels.random_effects_block(self.block, lam, w)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1), in group order."""
        return self.block.dense()

    def close(self) -> None:
        """Nothing to release in-process."""
