"""In-process engine for variance components held structured (:mod:`dmixed.kernels.vc_blocks`).

Where the variance-component block of every group's ``Z̃_i'Z̃_i`` is diagonal (indicator
components: ``0 + C(level)``), the statistics are kept ragged and every kernel costs time
linear in the number of levels per group; otherwise the dense
:class:`~dmixed.engines.local.LocalEngine` is used
(:func:`dmixed.engines.local.local_engine` picks).
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..kernels.vc_blocks import RaggedVC, diagonal_vc_block
from ..stats import Layout
from ..stats.blup_cov import RaggedBlup, RaggedCov
from ..stats.ragged_stats import RaggedArrays


class StructuredVCEngine:
    """An :class:`~dmixed.engines.base.Engine` on ragged variance-component statistics.

    Its sums have one slot per variance component: the optimizer works in
    ``FittedStatistics.fit_layout`` (``collapsed_vc``), and every method accepts a factor
    Λ (and basis ``E_j``) of that width or of the padded design's width.

    Parameters
    ----------
    ragged : RaggedVC
        The statistics, one entry per slot a group uses.
    """

    name = "local"
    #: the sums come with one slot per variance component
    collapsed_vc = True

    def __init__(self, ragged: RaggedVC) -> None:
        self.ragged = ragged

    @classmethod
    def from_dense(cls, zz: np.ndarray, zxy: np.ndarray, layout: Layout) -> StructuredVCEngine:
        """On padded statistics whose variance-component block is diagonal."""
        return cls(RaggedVC.from_dense(zz, zxy, layout.k_re, layout.slot_component))

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4)."""
        return self.ragged.step(lam)

    def hessian(
        self,
        lam: np.ndarray,
        basis: np.ndarray,
        w: np.ndarray,
        a_inv: np.ndarray | None = None,
        reml: bool = True,
    ) -> kernels.HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5); ``a_inv`` and
        ``reml`` are not used (``a_jk`` comes as its (m, m, p, p) sums)."""
        return self.ragged.hessian(lam, basis, w)

    def moments(self) -> kernels.MomentSums:
        """The moment sums, one slot per variance component."""
        return self.ragged.moments()

    def re_gram(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'Z_i`` (q × q) of the ``exog_re`` columns (the rank check): the
        moment sums' leading block (one slot per component: a small computation)."""
        return self.moments().zz[:q, :q]

    def re_sums(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'[X y]`` (q × (p+1)) of the ``exog_re`` columns: the moment sums'
        leading rows."""
        return self.moments().zxy[:q]

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[RaggedBlup, RaggedCov]:
        """Per-group BLUPs and conditional covariances relative to σ², ragged
        (:class:`~dmixed.stats.blup_cov.RaggedBlup`, ``RaggedCov``)."""
        return self.ragged.random_effects(lam, w)

    @classmethod
    def of_arrays(cls, arrays: RaggedArrays) -> StructuredVCEngine:
        """On ragged statistics gathered on the driver (saved or merged)."""
        return cls(RaggedVC(**arrays.as_dict()))

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1), in group order (padded:
        G r² values; the saved statistics take :meth:`gather_ragged`)."""
        return self.ragged.dense()

    def gather_ragged(self) -> RaggedVC:
        """The statistics held ragged, in group order (for the saved statistics)."""
        return self.ragged

    def close(self) -> None:
        """Nothing to release in-process."""


def worth_structure(layout: Layout) -> bool:
    """Whether :class:`StructuredVCEngine` saves work on this layout: some component
    wider than one slot."""
    return layout.k_vc > 0 and layout.r > layout.k_re + layout.k_vc


def structured_layout(layout: Layout) -> bool:
    """Whether :class:`StructuredVCEngine` may hold statistics of this layout:
    :func:`worth_structure`, and more than one random-design column in all (with one,
    the objective reads the dense pass's within-group sums, which the one-slot sums do
    not match)."""
    return worth_structure(layout) and layout.k_re + layout.k_vc >= 2


def structured_vc(zz: np.ndarray, layout: Layout) -> bool:
    """Whether :class:`StructuredVCEngine` applies to these padded statistics
    (:func:`structured_layout`, and every group's variance-component block diagonal)."""
    return structured_layout(layout) and diagonal_vc_block(zz, layout.k_re)
