"""Responses drawn from a fitted model: on its rows (lme4's ``simulate``), and the
fitted parameters in the statistics' columns for draws made from the statistics alone
(:mod:`dmixed.stats.draw`).

A draw is ``y* = Xβ̂ + Z̃b* + e*`` with ``e*_j ~ N(0, σ̂²/w_j)`` (``w`` the prior weights)
and either ``b*_i ~ N(0, σ̂² B̂*)`` redrawn for every group (lme4's default,
``use.u = FALSE``) or ``b*_i`` the BLUPs (``use_re=True``, lme4's ``use.u = TRUE``:
conditional on the fitted random effects).

The draws do not depend on how the rows are partitioned: the random effects are drawn
on the driver in the order of the fit's groups, and the noise of the row numbered j
among the drawn rows (all partitions in order) comes from block ``j // NOISE_BLOCK``,
whose generator is seeded by ``SeedSequence([seed, block])``; so an in-process fit and
a Dask fit of the same rows, in any number of partitions, draw the same responses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..design.partitions import check_persisted, select_columns
from ..design.prepare import needed_columns, prepare_columns
from ..design.references import design_coordinates, design_effects
from ..errors import SpecError, shorten
from ..fit.coordinates import Coordinates
from ..fit.options import check_flag, check_integer
from ..fit.params import MixedLMParams
from ..stats import Layout, Standardization
from .prediction import Predictor

__all__ = [
    "NOISE_BLOCK",
    "RowDistribution",
    "StandardizedFit",
    "as_rng",
    "block_noise",
    "draw_seed",
    "draw_effects",
    "row_distribution",
    "simulate_fitted",
    "simulate_dask",
    "simulate_rows",
    "simulated_partition",
    "simulation_frame",
]


#: what a seed may be, as messages say it
SEED_KINDS = (
    "None, a non-negative integer, a sequence of them, a numpy SeedSequence, "
    "BitGenerator, Generator or RandomState"
)


def as_rng(seed, name: str = "seed"):
    """A random generator: ``seed`` itself if it is one (a numpy ``Generator``, or a
    legacy ``RandomState`` as statsmodels accepts), else ``numpy.random.default_rng(seed)``.

    Raises
    ------
    SpecError
        If numpy cannot seed a generator with ``seed`` (a float, a text, a negative
        integer), naming the argument ``name`` and what it accepts."""
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{name} must be {SEED_KINDS}; got {shorten(repr(seed))} ({e})") from None


#: rows per noise block: each block's draws come from their own seed
NOISE_BLOCK = 4096


def draw_seed(rng) -> int:
    """A seed (0 ≤ s < 2**62) drawn from ``rng`` (a ``Generator`` or ``RandomState``)."""
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(2**62, dtype=np.int64))
    return int(rng.integers(2**62))


def block_noise(seed: int, start: int, stop: int, nsim: int) -> np.ndarray:
    """Standard normal draws (stop − start, nsim) of the rows numbered ``start`` …
    ``stop − 1``: the rows of block ``b`` (``b·NOISE_BLOCK`` … ``(b+1)·NOISE_BLOCK − 1``)
    take their draws from ``default_rng(SeedSequence([seed, b]))`` (NOISE_BLOCK × nsim,
    row-major), whoever asks for them: the draws of a row do not depend on the range
    asked for."""
    if stop <= start:
        return np.zeros((0, nsim))
    first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
    blocks = [
        np.random.default_rng(np.random.SeedSequence([seed, b])).standard_normal(
            (NOISE_BLOCK, nsim)
        )
        for b in range(first, last + 1)
    ]  # one block per 4096 rows: the loop's cost is the draws'
    lo = start - first * NOISE_BLOCK
    return np.concatenate(blocks)[lo : lo + stop - start]


def draw_effects(rng, lam: np.ndarray, n_groups: int, slot_cols) -> np.ndarray:
    """Random effects ``b_i = Λ z_i`` of every group (G, r), drawn in statsmodels' order
    (``_mixedlm_distribution.rvs``): the ``exog_re`` effects of all groups (G × q,
    row-major), then for each variance component the slots each group uses, group by
    group; unused slots get 0.

    ``lam`` (r × r): a factor of the effects' covariance in the padded layout
    (:meth:`Layout.lam`: the ``exog_re`` block, then one diagonal entry per slot);
    ``slot_cols``: per component, the column each group's slot holds (G, m_l; −1 unused).
    """
    q = lam.shape[0] - sum(t.shape[1] for t in slot_cols)
    out = np.zeros((n_groups, lam.shape[0]))
    out[:, :q] = rng.standard_normal((n_groups, q)) @ lam[:q, :q].T
    offset = q
    for table in slot_cols:
        used = np.asarray(table) >= 0
        block = np.zeros(used.shape)
        block[used] = rng.standard_normal(int(used.sum()))
        width = used.shape[1]
        out[:, offset : offset + width] = block * np.diag(lam)[offset : offset + width]
        offset += width
    return out


def absolute_factor(layout: Layout, cov_re: np.ndarray, vcomp: np.ndarray) -> np.ndarray:
    """Λ with ``Λ Λ' = blockdiag(cov_re, vcomp_l I, …)`` (zero variances allowed)."""
    packed = layout.pack(np.asarray(cov_re, dtype=np.float64), np.asarray(vcomp), use_sqrt=False)
    return layout.lam(packed, use_sqrt=False)


def simulate_rows(predictor: Predictor, rows, effects, scale: float, noise: np.ndarray):
    """Draws of the response on the rows ``rows`` (RowData-like: ``exog``, ``exog_re``,
    ``groups``, ``vc_cols``, ``vc_vals``, ``weights``): (n, nsim).

    ``effects``: per draw, the random effects (G, r) in the predictor's groups
    (:func:`draw_effects`), or None for the predictor's own BLUPs (``use_re=True``);
    ``noise`` (n, nsim): standard normal draws, ``e*_j = sqrt(scale/w_j)·noise_j``.
    """
    n, nsim = noise.shape
    out = np.empty((n, nsim))
    sd = np.sqrt(scale) if rows.weights is None else np.sqrt(scale / rows.weights)
    fixed = rows.exog @ predictor.fe_params
    idx = predictor.positions(rows.groups, "groups")
    for k in range(nsim):
        drawn = predictor
        if effects is not None:
            drawn = Predictor(
                predictor.fe_params,
                predictor.group_labels,
                effects[k],
                predictor.slot_cols,
                predictor.vc_ncols,
                predictor.k_re,
            )
        random = drawn.random_part(idx, rows.exog_re, rows.vc_cols, rows.vc_vals)
        out[:, k] = fixed + random + sd * noise[:, k]
    return out


def kept_rows(pdf, spec) -> int:
    """How many rows of one partition the fit kept (``missing="drop"`` drops some)."""
    if len(pdf) == 0:
        return 0
    return len(pdf) - prepare_columns(spec, pdf).n_dropped


def row_offsets(counts) -> np.ndarray:
    """The number of the first kept row of every partition (``counts``: kept rows per
    partition, in order)."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))[:-1]])


def simulated_partition(pdf, spec, state, scale, base_seed, nsim, offsets, number):
    """One partition's draws (:func:`simulate_dask`), the kept rows indexed like ``pdf``;
    its noise that of its rows' numbers among all kept rows (:func:`block_noise`), the
    first of them ``offsets[number]`` (``number``: the partition's place among the
    partitions that ``offsets`` counted)."""
    predictor, effects = state
    names = [f"sim_{k + 1}" for k in range(nsim)]
    if len(pdf) == 0:
        values, index = np.zeros((0, nsim)), pdf.index
    else:
        dm = spec.transform(pdf)
        index = pdf.index if dm.keep is None else pdf.index[dm.keep]
        start = int(offsets[number])
        noise = block_noise(base_seed, start, start + len(index), nsim)
        values = simulate_rows(predictor, dm, effects, scale, noise)
    return pd.DataFrame(values, index=index, columns=names)


def simulate_dask(predictor: Predictor, spec, ddf, effects, scale: float, rng, nsim: int):
    """Lazy draws on the rows of a Dask fit: a Dask DataFrame (``sim_1 …``, one column
    for ``nsim = 1`` too, unknown divisions) indexed like the kept rows.  The random
    effects are drawn here (``effects``, shared by every partition); the noise of a row
    is that of its number among the kept rows (:func:`block_noise`, a seed drawn here),
    so a computed result is the same whatever the scheduler and the partitioning.

    The numbers need every partition's count of kept rows, counted on the very
    partitions that are drawn: Dask's optimizer may read a collection in fewer, fused
    partitions (Parquet read for a few of its columns) depending on what is computed
    from it, so the counts and the draws are tasks on one list of partitions
    (``to_delayed``), the counting tasks on a clone of it
    (``dask.graph_manipulation.clone``: the same partitions under other keys).
    Computing the draws thus reads the rows twice, once to count and once to draw, and
    holds no partition in memory waiting for the counts of the others.
    """
    import dask  # only here: dmixed imports without Dask
    import dask.dataframe as dd
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.graph_manipulation import clone, clone_key
    from dask.highlevelgraph import HighLevelGraph

    check_persisted(ddf)
    data = select_columns(ddf, needed_columns(spec, response=True, random=True), spec.group_name)
    from ..design.persisted_task import checked_task

    state = checked_task((predictor, effects), ddf)  # refuses persisted data gone, computed
    parts = data.to_delayed()  # one graph shared by all, one layer (Dask's to_delayed)
    base_seed = draw_seed(rng)
    # Cloning one part clones the whole shared layer, every partition's key renamed by
    # clone_key; the other parts are picked from that one clone by their renamed keys
    # (cloning each part would clone the whole layer once per partition).
    first = clone(parts[0], seed=base_seed)
    (layer,) = first.__dask_layers__()
    counted = [Delayed(clone_key(part.key, base_seed), first.dask, layer=layer) for part in parts]
    # Keys named here, once: a pure call would tokenize its arguments per partition, and
    # spec is one task (not traversed) rather than unpacked into every call.
    token = tokenize(parts[0].key, base_seed, nsim, scale, state.key)
    spec_task = dask.delayed(spec, name=f"simulate-spec-{token}", traverse=False)
    count, draw = dask.delayed(kept_rows), dask.delayed(simulated_partition)
    counts = [
        count(part, spec_task, dask_key_name=(f"kept-rows-{token}", number))
        for number, part in enumerate(counted)
    ]
    summed = dask.delayed(row_offsets)(counts, dask_key_name=f"row-offsets-{token}")
    # One layer for the counting (as to_delayed's): every draw depends on the offsets,
    # and a graph of one layer per count would be merged again into each draw's.
    name = f"counted-{token}"
    offsets = Delayed(
        summed.key,
        HighLevelGraph.from_collections(name, dict(summed.dask), dependencies=()),
        layer=name,
    )
    names = [f"sim_{k + 1}" for k in range(nsim)]
    meta = pd.DataFrame({c: pd.Series(dtype="float64") for c in names})
    drawn = [
        draw(
            part,
            spec_task,
            state,
            scale,
            base_seed,
            nsim,
            offsets,
            number,
            dask_key_name=(f"simulated-{token}", number),
        )
        for number, part in enumerate(parts)
    ]  # one task per partition: the graph's size, not the data's
    return dd.from_delayed(drawn, meta=meta, verify_meta=False)


def simulation_frame(values: np.ndarray, index, pandas_output: bool):
    """lme4's shape of draws: ``sim_1 … sim_nsim`` columns indexed like the fitted
    rows (pandas input; a DataFrame of one column for one draw, as lme4's data.frame);
    an ndarray (n, nsim) else, two-dimensional for one draw too."""
    nsim = values.shape[1]
    if not pandas_output:
        return values
    names = [f"sim_{k + 1}" for k in range(nsim)]
    index = pd.RangeIndex(values.shape[0]) if index is None else index
    return pd.DataFrame(values, index=index, columns=names)


def check_nsim(nsim, what: str = "nsim") -> int:
    """``nsim`` as a positive int (SpecError otherwise)."""
    return check_integer(nsim, what, 1)


@dataclass(frozen=True)
class StandardizedFit:
    """A fit's estimates in the statistics' columns (:mod:`dmixed.stats.standardize`):
    ``β̃`` (p,), ``Λ̃`` (r × r) with ``σ̃² Λ̃Λ̃' = Cov(b̃)``, ``σ̃``, and the BLUPs ``b̃``
    (G, r): what :class:`dmixed.stats.draw.ResponseSampler` draws with."""

    beta: np.ndarray
    lam: np.ndarray
    sigma: float
    blups: np.ndarray

    @classmethod
    def of(cls, results, columns: Standardization, layout: Layout) -> StandardizedFit:
        """From fitted results (the model's own coordinates), by the exact column map:
        ``β̃ = (Tβ − c_y e_0)/s_y``, ``Ψ̃* = AΨ*A'``, ``τ̃* = s_l² τ*``, ``σ̃ = σ/s_y``,
        ``b̃ = A b / s_y`` (a component's slot: ``s_l b / s_y``); with the weights'
        scale ``s_w``, ``σ̃ = σ / (s_y √s_w)`` and ``Ψ̃* = s_w AΨ*A'``."""
        s_y = columns.y_scale
        state = results.to_state()
        beta = columns.fe_matrix() @ np.asarray(state.fe_params, dtype=np.float64)
        if columns.x_intercept >= 0:
            beta[columns.x_intercept] -= columns.y_shift
        elif columns.y_shift != 0.0 and (ones := columns.y_ones()) is not None:
            beta -= columns.y_shift * ones  # the constant made by columns (0 + C(c))
        coords = Coordinates.for_fit(columns, layout, all_free=True)
        packed = coords.to_opt(results.packed_params, results.use_sqrt)
        lam = layout.lam(packed, results.use_sqrt)
        q = layout.k_re
        blup = np.array(state.blup, dtype=np.float64)
        blup[:, :q] = blup[:, :q] @ columns.re_matrix().T
        blup[:, q:] *= columns.slot_scales(layout.vc_widths)
        sigma = float(np.sqrt(results.scale)) / columns.sigma_scale  # weights w / s_w
        return cls(beta / s_y, lam, sigma, blup / s_y)


def simulate_fitted(results, nsim: int = 1, seed=None, use_re: bool = False):
    """``nsim`` responses drawn from the fitted model on the fitted rows.

    ``y* = Xβ̂ + Z̃b* + e*``, ``e*_j ~ N(0, σ̂²/w_j)``; ``b*_i ~ N(0, blockdiag(cov_re,
    vcomp_l I))`` redrawn for every group and draw (lme4's ``simulate``), or the BLUPs
    with ``use_re=True`` (``use.u = TRUE``).  Rows dropped by ``missing="drop"`` are not
    drawn.

    Parameters
    ----------
    results : MixedLMResults
        A fit of this session (its model's rows are needed).
    nsim : int
    seed : None, int, sequence of ints, SeedSequence, BitGenerator, Generator or RandomState
        ``numpy.random.default_rng(seed)`` (a numpy ``Generator`` or ``RandomState`` is
        used as it is; integers non-negative; None: fresh entropy, other draws each
        call): the random effects, then the seed of the noise blocks
        (:func:`block_noise`).  The draws do not depend on the partitioning of the
        rows: a Dask fit draws what an in-process fit of the same rows in the same
        order draws (the noise is drawn by row number: the same rows in another order,
        as files listed in another order give, draw other noise).
    use_re : bool

    Returns
    -------
    pandas.DataFrame (n, nsim) with columns ``sim_1 …`` indexed like the fitted rows
    (pandas or formula input), as lme4's data.frame: one column ``sim_1`` for
    ``nsim = 1`` too; ndarray (n, nsim) for arrays; for a Dask fit the same as a lazy
    Dask DataFrame (:func:`simulate_dask`).

    Raises
    ------
    SpecError
        ``nsim`` not a positive integer; ``seed`` not one numpy seeds a generator with
        (a float, a text, a negative integer); ``use_re`` not a Python or numpy bool; no rows
        at hand (loaded results, a model built from statistics, or after
        ``remove_data()``; the message says whether
        :func:`~dmixed.results.bootstrap.bootstrap` can run instead).
    """
    nsim = check_nsim(nsim)
    use_re = check_flag(use_re, "use_re")
    model = results.fitted_model
    source = None if model is None else model.source
    rows = None if model is None else model.rows
    if rows is None and source is None:
        if model is None:
            why = (
                "loaded results, which hold neither them nor the statistics that "
                "bootstrap() needs: fit the model again on its data"
            )
        elif model.cached_statistics is not None:
            why = (
                "a model built from statistics, or after remove_data(); bootstrap() "
                "needs only the statistics, which the model holds"
            )
        else:
            why = model.lost_statistics()
        raise SpecError(
            f"simulate() draws on the fitted rows, which these results do not have: {why}"
        )
    rng = as_rng(seed)
    predictor = results.predictor()
    effects = None
    if not use_re:
        layout = Layout(results.k_re, tuple(t.shape[1] for t in predictor.slot_cols))
        state = results.to_state()
        lam = absolute_factor(layout, state.cov_re, state.vcomp)
        n_groups = len(predictor.group_labels)
        effects = [
            design_effects(model.spec, draw_effects(rng, lam, n_groups, predictor.slot_cols))
            for _ in range(nsim)
        ]  # drawn in the model's coordinates, used on the spec's rows
    if source is not None:
        return simulate_dask(predictor, model.spec, source, effects, results.scale, rng, nsim)
    noise = block_noise(draw_seed(rng), 0, rows.exog.shape[0], nsim)
    values = simulate_rows(predictor, rows, effects, results.scale, noise)
    return simulation_frame(values, rows.index, results.pandas_output)


class RowDistribution:
    """The distribution of a model's response on its rows at given parameters, with
    statsmodels' ``_mixedlm_distribution`` interface (``MixedLM.get_distribution``):
    :meth:`rvs` draws ``y* = Xβ + Z̃b* + e*`` with ``b*_i ~ N(0, blockdiag(cov_re,
    vcomp_l I))`` and ``e*_j ~ N(0, scale/w_j)`` (statsmodels has no weights).

    Parameters
    ----------
    predictor : Predictor
        ``β`` (``fe_params``), the groups and the variance-component slots of the rows.
    rows : RowData-like
        The rows (``exog`` may be another fixed-effects design of the same rows).
    cov_re : ndarray (q, q)
    vcomp : ndarray (d,)
    scale : float
    spec : ModelSpec, optional
        The model's spec: the effects are drawn in the model's coordinates and used on
        rows about its integer references (:func:`~dmixed.design.references.design_effects`).
    """

    def __init__(self, predictor: Predictor, rows, cov_re, vcomp, scale: float, spec=None) -> None:
        self.predictor = predictor
        self.spec = spec  # its references: the draws are used on its rows
        self.rows = rows
        layout = Layout(predictor.k_re, tuple(t.shape[1] for t in predictor.slot_cols))
        self.lam = absolute_factor(layout, cov_re, vcomp)
        self.fe_params = predictor.fe_params
        self.cov_re = np.asarray(cov_re, dtype=np.float64)
        self.vcomp = np.asarray(vcomp, dtype=np.float64)
        self.scale = float(scale)

    def rvs(self, n=None, rng=None) -> np.ndarray:
        """One draw of the response (n,): ``n`` is ignored, as statsmodels' (its
        interface); ``rng`` a seed, ``Generator`` or ``RandomState``."""
        del n
        rng = as_rng(rng, "rng")
        n_groups = len(self.predictor.group_labels)
        drawn = draw_effects(rng, self.lam, n_groups, self.predictor.slot_cols)
        effects = [design_effects(self.spec, drawn)]
        noise = rng.standard_normal(self.rows.exog.shape[0])[:, None]  # statsmodels' order
        return simulate_rows(self.predictor, self.rows, effects, self.scale, noise)[:, 0]


def row_distribution(model, params, scale: float, exog=None) -> RowDistribution:
    """statsmodels' ``MixedLM.get_distribution(params, scale, exog)`` for a dmixed model.

    Parameters
    ----------
    model : MixedLM
        A model of in-memory rows (its statistics give the groups and the
        variance-component slots: one data pass unless cached).
    params : array_like
        ``[fe_params, vech_lt(Ψ*), τ*]``: statsmodels' packing ``has_fe=True,
        use_sqrt=False`` with the covariance parameters divided by ``scale``.
    scale : float
        The residual variance σ².
    exog : array_like (n, p), optional
        Another fixed-effects design of the same rows (default the model's).

    Returns
    -------
    RowDistribution

    Raises
    ------
    SpecError
        A model without rows (Dask data, or built from statistics); ``exog`` of
        another shape; a negative ``scale``.
    """
    if model.rows is None:
        raise SpecError(
            "get_distribution draws on the model's rows, which a model of Dask data or "
            "of statistics does not hold in memory"
        )
    if not float(scale) >= 0:
        raise SpecError(f"scale must be a non-negative variance, got {scale!r}")
    point = MixedLMParams.from_packed(params, model.k_fe, model.k_re, False, True)
    rows = model.rows
    if exog is not None:
        x = np.asarray(exog, dtype=np.float64).reshape(rows.exog.shape[0], -1)
        if x.shape != rows.exog.shape:
            raise SpecError(f"exog has shape {x.shape}; the model's rows are {rows.exog.shape}")
        rows = replace(rows, exog=x, intercepts=None)
    stats = model.statistics()
    fe_params = point.fe_params  # the spec's rows are about its references: β there
    if exog is None:
        fe_params = design_coordinates(getattr(model, "spec", None), fe_params, None)[0]
    predictor = Predictor(
        fe_params,
        stats.group_labels,
        np.zeros((len(stats.group_labels), stats.layout.r)),
        stats.vc_slot_cols,
        [len(c) for c in model.vc_column_names],
        model.k_re,
    )
    return RowDistribution(
        predictor,
        rows,
        scale * point.cov_re,
        scale * np.asarray(point.vcomp),
        scale,
        getattr(model, "spec", None),
    )
