"""The state record of a fit: the estimates, their covariance and the BLUPs mapped back
from the optimizer's and the statistics' coordinates to the model's own
(:mod:`dmixed.fit.coordinates`), for :meth:`MixedLMResults.from_fit
<dmixed.results.results.MixedLMResults.from_fit>`."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from ..design import ModelNames
from ..design.arrays import empty_vc_columns
from ..errors import DataError
from ..fit.coordinates import Coordinates, is_identity
from ..io import ResultsState
from ..stats import check_identifiable
from ..stats.blup_cov import RaggedBlup
from .covariance import covariance_of_estimates
from .identification import ScaledInformation
from .terms import constant_of_fit

__all__ = [
    "FitState",
    "cov_fe_statistics",
    "cov_re_statistics",
    "data_digest",
    "diagonal_covariance",
    "empty_slots",
    "fit_state",
    "identifiable",
    "mapped_back",
    "record_fit",
    "row_digests",
]


#: the most bytes of statistics (the engine's ``nbytes``) for which a fit's BLUPs are
#: made on first read: until then the results keep the statistics alive (after the model
#: is gone too), so a larger fit makes them at once and an unread result holds only them
DEFER_BLUPS_BYTES = 8 * 2**20


class _Deferred:
    """The values of some fields of a :class:`FitState`, made by ``make`` (no arguments;
    a dict by field name) when one of them is first read."""

    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make


class _OnFirstRead:
    """A field of :class:`FitState` that may hold a :class:`_Deferred` until first read
    (a data descriptor: the dataclass' ``__init__`` sets it as any other field)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name]
        if isinstance(value, _Deferred):
            obj.__dict__.update(value.make())
            value = obj.__dict__[self.name]
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.name] = value


class FitState(ResultsState):
    """The :class:`~dmixed.io.ResultsState` of a fit in this session, whose BLUPs (with
    their conditional covariances; where the statistics in this process hold at most
    :data:`DEFER_BLUPS_BYTES`: a Dask fit's always, gathered at the fit and put in
    group order and units when read), ``(X'V*⁻¹X)⁻¹``, the optimizer's log and packed
    estimate in the model's coordinates, and the covariances of the estimates in the
    statistics' coordinates are made when first read (most fits never read them), each as
    it would have been made at the fit: from what the fit gave (copies, or arrays
    nothing changes afterwards) and the statistics in memory, never from the model,
    so that changing or deleting the model does not change them.  Pickled (and so
    copied) with all of them made."""

    blup = _OnFirstRead()
    blup_cov = _OnFirstRead()
    blup_cov_statistics = _OnFirstRead()
    a_inv = _OnFirstRead()
    history = _OnFirstRead()
    initial_params = _OnFirstRead()
    initial_llf = _OnFirstRead()
    optimizer_settings = _OnFirstRead()
    packed_params = _OnFirstRead()
    cov_fe_statistics = _OnFirstRead()
    cov_re_statistics = _OnFirstRead()
    data_digest = _OnFirstRead()
    row_digests = _OnFirstRead()

    def __getstate__(self) -> dict:
        for name, value in list(self.__dict__.items()):
            if isinstance(value, _Deferred):
                getattr(self, name)
        return dict(self.__dict__)


def data_digest(rows) -> str | None:
    """A digest of the rows a model fits (its :class:`~dmixed.design.rows.RowData`):
    their response, group keys and weights after dropping missing values, whatever their
    order; None for rows not held in memory (``rows`` None: files, Dask, statistics).

    What :func:`dmixed.compare_lr_test` and :func:`dmixed.anova` compare to refuse fits
    of different data that have the same row count and response name.  Each row's
    ``(y, key, weight)`` is hashed as one (``pandas.util.hash_pandas_object`` of the
    columns, exact values, not a tolerance) and the row hashes are summed modulo 2⁶⁴,
    so the same rows in another order give the same digest while a changed value, or a
    value moved to a row of another key or weight, gives another; the response values
    of rows that share a key and a weight may be exchanged unnoticed (the digest is of
    the rows as a set, not of their other columns).  O(rows); never made at a fit: the
    results make it when first read (:class:`FitState`)."""
    return _digest(rows, ("y", "g", "w"))


def row_digests(rows, exog_names, vc_names=()) -> dict[str, str] | None:
    """Digests of the rows' response (``"y"``), weights (``"w"``) and each fixed-effects
    design column (``"x:"`` and its name in ``exog_names``), each IN ROW ORDER (the
    data frame's, after dropping missing values), and of the partitions of the rows
    that the grouping (``"g"``, where there is more than one group) and each variance
    component (``"p:"`` and its name in ``vc_names``: rows alike where they share the
    group and the component's columns) make; None for rows not held in memory.

    What the likelihood-ratio tests compare between fits that group the rows
    differently (``groups="subj"`` and ``groups="one"`` with variance components of one
    data frame), whose group keys differ by construction: the response, the weights and
    the design columns both fits name must agree row by row, and each fit's grouping
    must partition the rows as the other's grouping or one of its variance components
    does.  Keeping the order makes a covariate, a response or a group label moved to
    another row count as other data; the price is that the same rows of a reordered
    frame are refused too (the safe way to be wrong).  A partition is digested as the
    rows' codes in order of first appearance (``pandas.factorize``), so the same
    partition under other labels (``subj`` keys, ``C(subj)`` columns) agrees.  Each
    column's values are hashed (``pandas.util.hash_array``, exact values, float32 and
    float64 of the same values alike) and the row hashes in order digested with
    BLAKE2b.  O(rows); made when first read, as :func:`data_digest`."""
    import pandas as pd  # noqa: PLC0415

    if rows is None:
        return None
    columns = {"y": rows.endog, "w": rows.weights}
    exog = np.asarray(rows.exog)
    columns.update({f"x:{name}": exog[:, j] for j, name in enumerate(exog_names)})
    out = {name: _ordered_digest(c) for name, c in columns.items() if c is not None}
    groups, _ = pd.factorize(pd.Series(rows.groups))
    if groups.max(initial=0) > 0:
        out["g"] = _ordered_digest(groups)
    for name, cols in zip(vc_names, rows.vc_cols, strict=False):
        parts = pd.DataFrame(
            {"g": groups, **{f"c{j}": c for j, c in enumerate(np.asarray(cols).T)}}
        )
        keys = pd.util.hash_pandas_object(parts, index=False).to_numpy()
        out[f"p:{name}"] = _ordered_digest(pd.factorize(keys)[0])
    return out


def _ordered_digest(column) -> str:
    """The digest of one column's values in their order (:func:`row_digests`)."""
    import pandas as pd  # noqa: PLC0415

    values = np.asarray(column)
    if values.dtype.kind == "f":  # float32 and float64 of the same values agree
        values = np.ascontiguousarray(values, dtype=np.float64)
    row_hashes = pd.util.hash_array(values, categorize=False)
    body = hashlib.blake2b(np.ascontiguousarray(row_hashes).tobytes(), digest_size=16)
    return f"{len(row_hashes)}:{body.hexdigest()}"


def _digest(rows, parts: tuple[str, ...]) -> str | None:
    """The order-free digest of ``parts`` of ``rows`` (``y`` response, ``g`` group keys,
    ``w`` weights: :func:`data_digest`)."""
    import pandas as pd  # noqa: PLC0415

    if rows is None:
        return None
    columns = {}
    for name, column in (("y", rows.endog), ("g", rows.groups), ("w", rows.weights)):
        if column is None or name not in parts:
            continue
        values = np.asarray(column)
        if values.dtype.kind == "f":  # float32 and float64 of the same values agree
            values = np.ascontiguousarray(values, dtype=np.float64)
        columns[name] = values
    row_hashes = pd.util.hash_pandas_object(pd.DataFrame(columns), index=False).to_numpy()
    # hash each row's hash again before the sum: pandas' combination of a row's
    # columns is near linear, and the sum must not split back into per-column sums
    mixed = pd.util.hash_array(row_hashes, categorize=False)
    total = int(mixed.sum(dtype=np.uint64))  # numpy's uint64 sum wraps modulo 2**64
    return f"{''.join(sorted(columns))}:{len(mixed)}:{total:016x}"


def fit_state(
    model,
    stats,
    reml,
    estimate,
    cov_fe,
    optimize_result,
    fit_seconds,
    coords: Coordinates,
    free: np.ndarray | None = None,
    checked: bool | None = None,
    at_zero: np.ndarray | None = None,
    lam: np.ndarray | None = None,
    information: ScaledInformation | None = None,
    unpacked: tuple[np.ndarray, np.ndarray] | None = None,
) -> ResultsState:
    """The state record of a fit (:meth:`MixedLMResults.from_fit
    <dmixed.results.results.MixedLMResults.from_fit>`): the covariance of the estimates
    (:func:`~dmixed.results.covariance.covariance_of_estimates`) and :func:`record_fit`.
    ``estimate`` is ``(packed, prof, llf, hessian)`` in the optimizer's and the
    statistics' coordinates.  ``free``: the covariance parameters estimated (default
    all; :func:`~dmixed.results.covariance.covariance_of_estimates`).  ``checked``:
    :func:`identifiable` where the caller has it; ``at_zero``: the covariance parameters
    at zero in θ (``layout.boundary_mask(boundary, use_sqrt=False)``) where it has them;
    ``lam``: Λ̃ at ``packed`` (:func:`record_fit`) where it has it; ``information``:
    :func:`~dmixed.results.identification.scaled_information` of the Hessian where it
    has it (with every parameter free); ``unpacked``: as :func:`record_fit`."""
    packed, prof, llf, hessian = estimate
    layout = stats.layout
    if at_zero is None:
        at_zero = layout.boundary_mask(list(optimize_result.boundary), use_sqrt=False)
    cov = covariance_of_estimates(
        hessian,
        k=model.k_fe + layout.n_params,
        k_fe=model.k_fe,
        at_zero=at_zero,
        conditional=float(prof.scale) * prof.a_inv,
        cov_fe=cov_fe,
        identifiable=identifiable(stats, model) if checked is None else checked,
        free=free,
        information=information,
    )
    return record_fit(
        model,
        stats,
        reml,
        (packed, prof, llf, cov),
        cov_fe,
        optimize_result,
        fit_seconds,
        coords,
        lam,
        unpacked,
    )


def mapped_back(
    coords: Coordinates, psi_opt, prof, exog_names=None
) -> tuple[np.ndarray, float, np.ndarray]:
    """``(Ψ*, σ², β)`` in the data's own units (``exog_names``: β's, for the error).

    Raises
    ------
    DataError
        They are beyond float64's range there (columns in units near 1e±300, or
        units of the response and a column far apart): the fit itself is fine, its
        numbers cannot be written in those units; the message names them.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            psi = coords.psi(psi_opt)
            beta = coords.beta(prof.beta)
            scale = coords.scale(prof.scale)
    except (OverflowError, np.linalg.LinAlgError):
        psi = np.full_like(psi_opt, np.inf)
        beta, scale = np.full_like(prof.beta, np.inf), np.inf
    # the few entries tested as Python floats (a numpy test of each costs more)
    if not (
        math.isfinite(scale)
        and all(map(math.isfinite, psi.ravel().tolist()))
        and all(map(math.isfinite, beta.tolist()))
    ):
        names = list(exog_names) if exog_names is not None else [f"x{j}" for j in range(len(beta))]
        # an infinite coefficient makes its solve's other entries NaN: name the cause
        bad = np.isinf(beta) if np.isinf(beta).any() else ~np.isfinite(beta)
        beyond = [f"the coefficient of {names[j]!r}" for j in np.flatnonzero(bad)]
        beyond += [] if math.isfinite(scale) else ["the residual variance"]
        beyond += [] if np.isfinite(psi).all() else ["the random effects' covariance"]
        raise DataError(
            f"the estimates are beyond float64's range in the data's own units ("
            f"{', '.join(beyond)}: the response's unit over a column's, or a column's "
            "values near 1e±300): rescale the response or that column (e.g. to other units)"
        )
    return psi, scale, beta


def diagonal_covariance(coords: Coordinates, cov_opt) -> np.ndarray | None:
    """:meth:`Coordinates.covariance <dmixed.fit.coordinates.Coordinates.covariance>`
    of ``cov_opt`` (not ``weighted``) where the Jacobian is diagonal (``A_o = I`` and
    ``T`` diagonal: no shifted column), entry by entry; None elsewhere.

    LAPACK's inverse of a diagonal ``J`` is ``diag(1 / J_ii)``, and each entry of
    ``J⁻¹ C J⁻ᵀ`` is then one product ``(d_i C_ij) d_j`` plus exact zeros: the same
    bits, without making and inverting ``J`` (a fit's own :class:`Coordinates`, so
    every fit).  An entry that comes out zero (whose sign the zeros may change) or not
    finite (which they may turn into NaN) leaves the case to the general map (None).
    """
    if not (is_identity(coords.a_opt) and type(cov_opt) is np.ndarray and cov_opt.ndim == 2):
        return None
    t = coords.fe_matrix
    p = t.shape[0]
    flat = t.ravel().tolist()
    if flat.count(0.0) != p * p - p:  # an entry off the diagonal, or a zero on it
        return None
    y_scale = float(coords.columns.y_scale)
    if y_scale == 0.0 or cov_opt.dtype != np.float64:
        return None
    # the diagonal of Coordinates.jacobian, entry by entry as it makes it
    jac = [v / y_scale for v in flat[:: p + 1]]
    jac += [1.0] * coords.layout.k_re2 + coords.tau_opt.tolist()
    if 0.0 in jac or cov_opt.shape != (len(jac), len(jac)):
        return None
    d = [1.0 / v for v in jac]
    # max|C_ij| max(d)² bounds every product: below float64's largest, none overflows,
    # and every C_ij is finite (else the maximum is not: NaN propagates)
    largest = float(np.maximum.reduce(np.abs(cov_opt), axis=None, initial=0.0))
    most = max(map(abs, d), default=1.0)
    bound = largest * most * most  # products: inf where beyond range (a power raises)
    if not bound < 1e300:
        return None
    d = np.array(d)
    out = d[:, None] * cov_opt * d
    if np.count_nonzero(out) != out.size:
        return None
    return 0.5 * (out + out.T)


def record_fit(
    model,
    stats,
    reml,
    estimate,
    cov_fe,
    optimize_result,
    fit_seconds,
    coords: Coordinates,
    lam: np.ndarray | None = None,
    unpacked: tuple[np.ndarray, np.ndarray] | None = None,
) -> ResultsState:
    """The state record of a fit: estimates in statsmodels' coordinates, the BLUPs.

    ``estimate`` is ``(packed, prof, llf, cov)`` in the optimizer's and the statistics'
    coordinates, mapped back here by ``coords``.  ``lam``: Λ̃ at ``packed`` in the
    statistics' coordinates (``coords.lam(packed, use_sqrt, stats.fit_layout)``, made
    here when not given), from which the BLUPs are made; ``unpacked``: ``(Ψ_o, τ_o)``
    of ``packed`` (``stats.layout.unpack(packed, model.use_sqrt)``), made here when not
    given.
    """
    packed, prof, llf_std, cov_opt = estimate
    layout = stats.layout
    use_sqrt = model.use_sqrt
    psi_opt, tau_opt = layout.unpack(packed, use_sqrt) if unpacked is None else unpacked
    # before the covariance: its map (J⁻¹) is singular where the estimates leave float64
    psi, scale, beta = mapped_back(coords, psi_opt, prof, model.exog_names)
    weight_scale = float(coords.columns.weight_scale)
    cov_weighted = None
    if weight_scale == 1.0:
        cov_params = diagonal_covariance(coords, cov_opt)
        if cov_params is None:
            cov_params = coords.covariance(cov_opt)
    else:  # θ's entries s_w⁻² times those of [β, s_w θ]: they may under- or overflow
        cov_weighted = coords.covariance(cov_opt, weighted=True)
        unit = np.full(cov_weighted.shape[0], weight_scale)
        unit[: model.k_fe] = 1.0
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            cov_params = cov_weighted / unit[:, None] / unit[None, :]
    n = int(stats.glob.n)
    tau = coords.tau(tau_opt)
    rows, cols = layout.tril()
    # BLUPs and their conditional covariances: one kernel call, no data pass; on first
    # read where the engine can make them later as it would now
    if lam is None:
        lam = coords.lam(packed, use_sqrt, stats.fit_layout)
    later = getattr(stats.engine, "random_effects_later", None)
    if later is None or getattr(stats.engine, "nbytes", DEFER_BLUPS_BYTES + 1) > DEFER_BLUPS_BYTES:
        random_effects = _random_effects(stats.engine.random_effects(lam, prof.w), coords, scale)
    else:
        made = later(lam, prof.w)
        random_effects = dict.fromkeys(
            ("blup", "blup_cov", "blup_cov_statistics"),
            _Deferred(lambda: _random_effects(made(), coords, scale)),
        )
    a_inv_std = np.array(prof.a_inv)
    llf = coords.llf(llf_std, n, reml)
    # the packed estimate and the memory-only covariances of the statistics'
    # coordinates (prediction variances) on first read: most fits read neither
    mapped = dict.fromkeys(
        ("packed_params", "cov_fe_statistics", "cov_re_statistics"),
        _Deferred(
            _mapped_later(coords, np.array(packed), use_sqrt, cov_opt, psi_opt, scale, model.k_fe)
        ),
    )
    log = dict.fromkeys(
        ("history", "initial_params", "initial_llf", "optimizer_settings"),
        _Deferred(_log_of(optimize_result, coords, n, reml, use_sqrt)),
    )
    fitted_rows = getattr(model, "rows", None)  # the model's own copy: nothing changes it
    names_of_rows = ([str(x) for x in model.exog_names], [str(x) for x in model.vc_names])
    return FitState(
        names=ModelNames.from_model(model),
        spec=getattr(model, "spec", None),
        use_sqrt=use_sqrt,
        pandas_output=bool(getattr(model, "pandas_output", True)),
        reml=reml,
        method="REML" if reml else "ML",
        converged=bool(optimize_result.converged),
        n_iter=optimize_result.n_iter,
        n_evals=optimize_result.n_evals,
        optimizer_methods=optimize_result.methods,
        boundary=list(optimize_result.boundary),
        fit_seconds=fit_seconds,
        data_pass_seconds=stats.data_pass_seconds,
        cov_fe=cov_fe,
        nobs=n,
        n_groups=int(len(stats.group_labels)),
        n_dropped=int(stats.n_dropped),
        k_fe=model.k_fe,
        k_re=layout.k_re,
        k_vc=layout.k_vc,
        llf=llf,
        scale=scale,
        param_names=model.param_names(),
        params=np.concatenate([beta, psi[rows, cols], tau]),
        fe_params=beta,
        cov_re=scale * psi,
        cov_re_unscaled=psi,
        vcomp=scale * tau,
        cov_params=cov_params,
        a_inv=_Deferred(lambda: {"a_inv": coords.a_inv(a_inv_std)}),
        data_digest=_Deferred(lambda: {"data_digest": data_digest(fitted_rows)}),
        row_digests=_Deferred(lambda: {"row_digests": row_digests(fitted_rows, *names_of_rows)}),
        group_labels=stats.group_labels,
        group_sizes=stats.group_sizes,
        vc_slot_cols=stats.vc_slot_cols,
        vc_empty_cols=empty_slots(model, stats.group_labels),
        k_constant=constant_of_fit(model, stats),
        grad_norm=float(optimize_result.grad_norm),
        final_rise=float(optimize_result.final_rise),
        resolution_edge=bool(optimize_result.resolution_edge),
        statistics_columns=coords.columns,
        weight_scale=weight_scale,
        cov_params_weighted=cov_weighted,
        **random_effects,
        **log,
        **mapped,
    )


def _mapped_later(
    coords: Coordinates, packed, use_sqrt: bool, cov_opt, psi_opt, scale: float, p: int
):
    """A function of no arguments that gives the state's ``packed_params`` (``packed``
    in the model's coordinates), ``cov_fe_statistics`` and ``cov_re_statistics`` from
    the optimizer's estimate and covariance (arrays nothing changes afterwards; ``p``
    fixed effects)."""

    def make() -> dict:
        (packed_params,) = coords.from_opt_all([packed], use_sqrt)
        return {
            "packed_params": packed_params,
            "cov_fe_statistics": cov_fe_statistics(coords, cov_opt, p),
            "cov_re_statistics": cov_re_statistics(coords, psi_opt, scale),
        }

    return make


def _random_effects(made, coords: Coordinates, scale: float) -> dict:
    """The state's BLUP fields of the engine's ``(blup, cond)`` in the statistics'
    coordinates (:meth:`~dmixed.engines.base.Engine.random_effects`)."""
    blup_std, cond_std = made
    blup, cond = coords.blups(blup_std, cond_std)
    blup = _unsigned_zeros(blup, blup_std)
    if (
        type(cond) is np.ndarray
        and cond.dtype == np.float64
        and cond.flags.writeable
        and not np.may_share_memory(cond, cond_std)
    ):
        # the map back's own array (not the statistics' kept one): scaled in place, the
        # same products without a second (G, r, r) array's fresh pages
        np.multiply(cond, scale, out=cond)
    else:
        cond = cond * scale
    if isinstance(cond, np.ndarray) and cond.shape[-1] > 1:
        # the map back (A⁻¹ C̃ A⁻ᵀ) rounds its two triangles apart; a results directory
        # keeps the lower one: take it as the covariance, so that a reload gives it
        # back bit for bit (one strided copy per entry, not a fancy index over groups)
        for upper, lower in zip(*np.triu_indices(cond.shape[-1], 1), strict=True):
            cond[:, upper, lower] = cond[:, lower, upper]
    return {"blup": blup, "blup_cov": cond, "blup_cov_statistics": cond_std}


def _unsigned_zeros(blup, blup_std):
    """``blup`` with its zeros unsigned: a component of variance zero has BLUPs 0 times
    a sum of either sign, which ``-0.0`` would print as ``-0.000000`` (adding ``0.0``
    changes no other value); in place where the array is the map back's own."""
    if isinstance(blup, RaggedBlup):
        return dataclasses.replace(blup, re=blup.re + 0.0, value=blup.value + 0.0)
    if type(blup) is not np.ndarray or blup.dtype != np.float64:
        return blup
    if blup.flags.writeable and not np.may_share_memory(blup, blup_std):
        np.add(blup, 0.0, out=blup)
        return blup
    return blup + 0.0


def _log_of(optimize_result, coords: Coordinates, n: int, reml: bool, use_sqrt: bool):
    """A function of no arguments that gives the state's fields of the optimizer's log
    (the start, the per-iteration history and the settings) in the model's coordinates,
    from what ``optimize_result`` holds now (its entries; its settings, which nothing
    changes: it is this fit's own record, :meth:`~dmixed.fit.summary.OptSummary.start`)."""
    entries = list(optimize_result.history)
    initial, initial_llf_std = optimize_result.initial, optimize_result.initial_llf
    log_sqrt = optimize_result.use_sqrt
    settings = optimize_result.settings

    def make() -> dict:
        # ℓ and the packed points mapped back once each (the offset, the map made once)
        initial_llf, *llfs = coords.llf_all(
            [initial_llf_std, *(e["llf"] for e in entries)], n, reml
        )
        if log_sqrt == use_sqrt:
            initial_params, *params = coords.from_opt_all(
                [initial, *(e["params"] for e in entries)], use_sqrt
            )
        else:  # the log in the optimizer's packing, the estimates in the model's
            (initial_params,) = coords.from_opt_all([initial], use_sqrt)
            params = coords.from_opt_all([e["params"] for e in entries], log_sqrt)
        history = [
            {**entry, "llf": value, "params": p.tolist()}
            for entry, value, p in zip(entries, llfs, params, strict=True)
        ]
        return {
            "history": history,
            "initial_params": initial_params,
            "initial_llf": initial_llf,
            "optimizer_settings": settings(),
        }

    return make


def empty_slots(model, group_labels) -> list[np.ndarray] | None:
    """Per variance component, the ``(group index, column)`` pairs (int64, (m, 2)) of
    columns that a group's ``exog_vc`` matrix holds but are zero on its rows
    (:func:`~dmixed.design.arrays.empty_vc_columns`; statsmodels reports them); None for
    a model of a formula or without its rows, or where there are none."""
    rows = getattr(model, "rows", None)
    if getattr(model, "spec", None) is not None or rows is None or not rows.vc_cols:
        return None
    position = {label: gi for gi, label in enumerate(np.asarray(group_labels).tolist())}
    pairs = [
        np.array([(position[g], c) for g, c in comp], dtype=np.int64).reshape(-1, 2)
        for comp in empty_vc_columns(rows)
    ]
    return pairs if any(p.size for p in pairs) else None


def cov_re_statistics(coords: Coordinates, psi_opt: np.ndarray, scale: float) -> np.ndarray:
    """``A Ψ̂ A' = σ̂² C Ψ_o C'`` (``C = A A_o⁻¹``): Ψ̂ in the statistics' coordinates
    from the optimizer's, not through the model's (which may have lost its digits)."""
    c = coords.re_map
    out = psi_opt if c is None else c @ psi_opt @ c.T
    # C maps to s_w AΨ*A' (the weights' scale, :mod:`dmixed.stats.standardize`)
    scale = scale / coords.columns.weight_scale
    return scale * 0.5 * (out + out.T)


def cov_fe_statistics(coords: Coordinates, cov_opt: np.ndarray, p: int) -> np.ndarray:
    """``T cov(β̂) T' = s_y² cov(β̃)``: the optimizer's β̃ = Tβ/s_y block, unmapped."""
    cov = np.asarray(cov_opt, dtype=np.float64)[:p, :p] * float(coords.columns.y_scale) ** 2
    return 0.5 * (cov + cov.T)


def identifiable(stats, model) -> bool:
    """Whether the model passes lme4's checks (else it was fitted with check_nobs="ignore")."""
    try:
        check_identifiable(stats, model.group_name, model.vc_names)
    except DataError:
        return False
    return True
