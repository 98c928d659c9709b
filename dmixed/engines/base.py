"""What an engine is: the members the model, the fit, the results and the checkpoints use.

An engine holds the per-group statistics (``Z̃_i'Z̃_i``, ``Z̃_i'[X_i y_i]``) wherever
they live and evaluates :mod:`dmixed.kernels` on them.  It moves statistics and
contributions; it knows no statistics theory.  Two engines satisfy :class:`Engine`:
:class:`~dmixed.engines.local.LocalEngine` (in this process) and
:class:`~dmixed.engines.dask.DaskEngine` (on the workers of a Dask cluster).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import SpecError
from ..kernels import HessianSums, MomentSums, StepSums

#: the ``engine=`` a fit may ask for: ``"auto"`` (the default), ``"distributed"`` (Dask
#: data only: the statistics stay on the workers) or ``"local"`` (in this process)
ENGINE_CHOICES = ("auto", "distributed", "local")


def check_client(client) -> None:
    """Refuse a ``client`` that is neither None nor a ``distributed.Client``, whatever
    the data (pandas data never use one, but an address given there is as much a
    mistake as on Dask data).  ``distributed`` is imported only when a client is given:
    a fit of in-memory data never imports it.

    Raises
    ------
    SpecError
        ``client`` not a ``distributed.Client`` (an address such as
        ``"tcp://…:8786"``, a port number): the message names the value's type.
    """
    if client is None:
        return
    try:
        from distributed import Client
    except ImportError:  # no distributed here: nothing can be a Client
        Client = None  # noqa: N806
    if Client is None or not isinstance(client, Client):
        shown = f" {client!r}" if isinstance(client, str | bytes) else ""
        raise SpecError(
            f"client must be a distributed.Client, got{shown} "
            f"({type(client).__name__}); for a scheduler's address, pass "
            "distributed.Client(address) (and close it when done)"
        )


@runtime_checkable
class Engine(Protocol):
    """Per-group statistics, and the kernels evaluated on them.

    Sums are over all groups; per-group arrays are in sorted group order (the order of
    ``FittedStatistics.group_labels``).  Who uses what:

    - ``name``: the model, to reuse cached statistics only on the engine asked for;
    - ``step``: the optimizer and the profile intervals, once per evaluation;
    - ``hessian``: the optimizer, at the optimum;
    - ``moments``: the model, for the moment start;
    - ``re_gram``: the model, for the random design's rank check;
    - ``re_sums``: the results of a fit, for ``k_constant`` (the column sums of ``X``);
    - ``random_effects``: the results (BLUPs);
    - ``gather``: the checkpoints (saving statistics);
    - ``close``: whoever drops the statistics (releases them on a cluster).

    A Dask engine also has ``client``, which the model reads (``getattr``, default
    ``None``) to tell whether cached statistics died with their client, and ``steps``
    (several Λ in one round trip: the start selection's prefetch), and ``step_hessian``
    / ``steps_hessian`` (the step sums and the Hessian sums at a Λ in one round trip:
    the Newton steps' trial points, :mod:`dmixed.engines.dask.ahead`), and ``step_then``
    (the step sums at a Λ, with the next secant step's trial point made from them on the
    workers and evaluated in the same round trip: :mod:`dmixed.engines.dask.next_point`).
    The in-process engine also has ``value(lam, q)``: the sums of ``step`` that ℓ alone
    needs (the start selection's default point, :func:`dmixed.fit.start.start_value`).
    Engines of padded statistics also have ``frobenius_gram(q, slot_component)`` and
    ``collapsed_moments(q, slot_component)`` (kept as ``moments`` is): the moment
    equations' sums in the coordinates of one slot per variance component, where the
    padded design is too wide for ``moments`` (the model's moment start; ``None`` where
    the components are held structured, since ``moments`` gives these sums).
    All are optional (read with ``getattr``).
    """

    #: ``"local"`` or ``"dask"``.
    name: str

    def step(self, lam: np.ndarray, q: int) -> StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4) for the relative
        covariance factor ``lam`` (r, r); ``q`` random-effect columns."""
        ...

    def hessian(
        self,
        lam: np.ndarray,
        basis: np.ndarray,
        w: np.ndarray,
        a_inv: np.ndarray | None = None,
        reml: bool = True,
    ) -> HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5).  ``a_inv``:
        ``A⁻¹`` at ``lam`` where the caller has it; an engine may then return ``a_jk`` as
        its traces against it (:meth:`~dmixed.kernels.HessianSums.a_jk_traces` reads
        either form), and with ``reml`` False (an ML Hessian) leave ``a_j`` and ``a_jk``,
        which only the REML Hessian reads, zero."""
        ...

    def moments(self) -> MomentSums:
        """Σ over groups of the parameter-free moment sums (starting values)."""
        ...

    def re_gram(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'Z_i`` (q × q) over the first ``q`` (``exog_re``) columns."""
        ...

    def re_sums(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'[X y]`` (q × (p+1)) over the first ``q`` (``exog_re``) columns."""
        ...

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group BLUPs (G, r) and conditional covariances (G, r, r) relative to σ²
        (DESIGN.md §6); both ragged (:class:`~dmixed.stats.blup_cov.RaggedBlup`,
        ``RaggedCov``: read as those arrays) where the variance components are held
        structured."""
        ...

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1) in this process."""
        ...

    def close(self) -> None:
        """Release the statistics; the engine computes nothing afterwards."""
        ...
