"""In-process engine for crossed variance components (:mod:`dmixed.kernels.vc_border`).

Where the components' entries share rows (crossed within a group, continuous
``exog_vc`` columns), the variance-component block of ``Z̃_i'Z̃_i`` is not diagonal, but
an indicator component's own block still is: its slots are eliminated by a Schur
complement and the rest of each group (``exog_re`` and the other components' slots) is a
dense border of the group's own width.  Detected once from the statistics
(:func:`crossed_vc`); what has no such component stays on the dense
:class:`~dmixed.engines.local.LocalEngine` (:func:`dmixed.engines.local.local_engine`
picks).
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..design.arrays import RowData
from ..kernels.vc_border import CrossedVC, choose_diagonal, diagonal_components
from ..kernels.vc_border_pass import border_statistics, crossed_from_slots
from ..stats import Layout
from ..stats.blup_cov import RaggedBlup
from ..stats.border_cov import BorderCov
from ..stats.crossed_stats import CrossSums, overlap, slot_index
from ..stats.ragged_stats import RaggedArrays
from ..stats.standardize import Standardization
from .vc_local import structured_layout


class CrossedVCEngine:
    """An :class:`~dmixed.engines.base.Engine` on crossed variance-component statistics.

    As :class:`~dmixed.engines.vc_local.StructuredVCEngine`, its sums have one slot per
    variance component (``collapsed_vc``: the optimizer works in
    ``FittedStatistics.fit_layout``, with the moment start and Newton steps), and every
    method accepts a factor Λ (and basis ``E_j``) of that width or of the padded
    design's.  The BLUPs and their covariances come unpadded (read as the dense
    engine's (G, r) and (G, r, r)); the statistics are gathered padded (:meth:`gather`)
    or crossed (:meth:`gather_ragged`, for the saved statistics, which are held crossed
    again on load: :meth:`of_arrays`).

    Parameters
    ----------
    crossed : CrossedVC
        The statistics in buckets of equal border width.
    """

    name = "local"
    #: the sums come with one slot per variance component
    collapsed_vc = True

    def __init__(self, crossed: CrossedVC) -> None:
        self.crossed = crossed

    @classmethod
    def from_dense(
        cls, zz: np.ndarray, zxy: np.ndarray, layout: Layout, diag_comps
    ) -> CrossedVCEngine:
        """On padded statistics, the components ``diag_comps`` (:func:`crossed_vc`)
        forming the diagonal block."""
        return cls(CrossedVC.from_dense(zz, zxy, layout.k_re, layout.slot_component, diag_comps))

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4)."""
        return self.crossed.step(lam)

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
        return self.crossed.hessian(lam, basis, w)

    def moments(self) -> kernels.MomentSums:
        """The moment sums, one slot per variance component."""
        return self.crossed.moments()

    def re_gram(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'Z_i`` (q × q) of the ``exog_re`` columns (the rank check): the
        moment sums' leading block (one slot per component: a small computation)."""
        return self.moments().zz[:q, :q]

    def re_sums(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'[X y]`` (q × (p+1)) of the ``exog_re`` columns: the moment sums'
        leading rows."""
        return self.moments().zxy[:q]

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[RaggedBlup, BorderCov]:
        """Per-group BLUPs and conditional covariances relative to σ², unpadded
        (:class:`~dmixed.stats.blup_cov.RaggedBlup`,
        :class:`~dmixed.stats.border_cov.BorderCov`: read as (G, r) and (G, r, r))."""
        return self.crossed.random_effects(lam, w)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1), in group order."""
        return self.crossed.dense()

    def gather_ragged(self) -> CrossedVC:
        """The statistics held crossed, never padded (for the saved statistics:
        :meth:`~dmixed.kernels.vc_border.CrossedVC.to_slots`)."""
        return self.crossed

    @classmethod
    def of_arrays(cls, ragged: RaggedArrays, cross: CrossSums) -> CrossedVCEngine:
        """The engine of saved crossed statistics: every used slot's ragged entry and the
        co-occurrence sums, the diagonal components those of the data pass
        (``cross.diagonal``), else chosen from the sums as the data pass chooses
        (:func:`~dmixed.kernels.vc_border.choose_diagonal`).

        Raises
        ------
        ValueError
            No component can be the diagonal block, the given ``cross.diagonal`` share
            rows, or a co-occurrence of a slot that ``ragged`` does not hold.
        """
        widths = np.diff(np.append(ragged.offsets, ragged.r))
        shared = overlap(cross, ragged.offsets, widths.size)
        if cross.diagonal is None:
            diag_comps = choose_diagonal(widths, shared)
        else:
            diag_comps = sorted(int(c) for c in cross.diagonal)
            if shared[np.ix_(diag_comps, diag_comps)].any():
                raise ValueError(f"the diagonal components {diag_comps} share rows")
        if not diag_comps:
            raise ValueError("crossed statistics with no component for the diagonal block")
        local = (
            slot_index(ragged, cross.group, cross.s),
            slot_index(ragged, cross.group, cross.t),
            cross.value,
        )
        slot_component = np.repeat(np.arange(widths.size), widths)
        return cls(crossed_from_slots(ragged, local, slot_component, diag_comps))

    def close(self) -> None:
        """Nothing to release in-process."""


#: Up to this padded random-design width the dense engine is kept for components that
#: share rows: its kernels (compiled for many groups) are as fast there
#: (benchmarks/RESULTS.md, eleventh session: 20,000 groups at r = 9, dense 1.0–1.8 s
#: against 2.3–2.8 s crossed); above it the padding costs r³ per group.
CROSSED_MIN_R = 16


def worth_crossing(layout: Layout) -> bool:
    """Whether :class:`CrossedVCEngine` may hold and is worth holding statistics of this
    layout: :func:`~dmixed.engines.vc_local.structured_layout` and a padded width above
    :data:`CROSSED_MIN_R`."""
    return structured_layout(layout) and layout.r > CROSSED_MIN_R


def crossed_vc(zz: np.ndarray, layout: Layout) -> list[int]:
    """The components that form the diagonal block of :class:`CrossedVCEngine` for these
    padded statistics (G, r, r) (:func:`~dmixed.kernels.vc_border.diagonal_components`),
    or ``[]`` where it does not apply: the layout is not worth it (:func:`worth_crossing`)
    or no component qualifies."""
    if not worth_crossing(layout):
        return []
    return diagonal_components(zz, layout.k_re, layout.slot_component)


def crossed_statistics(
    rows: RowData,
    codes: np.ndarray,
    n_groups: int,
    nums: list,
    layout: Layout,
    std: Standardization,
) -> tuple[CrossedVCEngine, dict] | None:
    """The data pass of rows whose variance-component entries share rows, held crossed
    (:func:`~dmixed.kernels.vc_border_pass.border_statistics`: no padded design), and
    its global sums; None where :class:`CrossedVCEngine` does not apply (the caller
    takes the dense pass)."""
    if not worth_crossing(layout):
        return None
    out = border_statistics(
        codes, n_groups, rows.endog, rows.exog, rows.exog_re, nums, rows.vc_vals, rows.weights, std
    )
    if out is None:
        return None
    return CrossedVCEngine(out[0]), out[1]
