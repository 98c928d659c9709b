"""The state record of a fit (:mod:`dmixed.results.fit_record`): the BLUPs made from the
optimum's own factor equal those made from the packed estimate."""

from __future__ import annotations

import gc
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import DataError, mixedlm
from dmixed.fit.coordinates import is_identity
from dmixed.kernels import compiled
from dmixed.results import fit_record
from dmixed.results.fit_record import FitState
from dmixed.results.results import MixedLMResults

from .._synth import make_data

RE_FORMULAS = {1: "1", 2: "1 + x1", 3: "1 + x1 + x2"}
BLUP_FIELDS = ("blup", "blup_cov", "blup_cov_statistics")


def _recorded(fit):
    """``fit()``'s results and the keyword arguments its
    :meth:`MixedLMResults.from_fit` was called with."""
    seen = {}
    made = MixedLMResults.from_fit.__func__

    def capture(cls, **args):
        seen.update(args)
        return made(cls, **args)

    MixedLMResults.from_fit = classmethod(capture)
    try:
        res = fit()
    finally:
        MixedLMResults.from_fit = classmethod(made)
    return res, seen


def _fit_and_its_record_arguments(df, **kw):
    """The fit of ``y ~ x1 + x2`` on ``df`` and the keyword arguments its
    :meth:`MixedLMResults.from_fit` was called with."""
    fit_kw = {k: kw.pop(k) for k in ("reml", "method") if k in kw}

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mixedlm("y ~ x1 + x2", df, groups="g", **kw).fit(**fit_kw)

    return _recorded(fit)


@settings(max_examples=8)
@given(
    q=st.integers(1, 3),
    vc=st.booleans(),
    reml=st.booleans(),
    weights=st.booleans(),
    offset=st.sampled_from([0.0, 1e9]),
    slope_sd=st.sampled_from([0.0, 0.5]),
    use_sqrt=st.booleans(),
    bfgs=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_blups_of_the_optimum_factor_equal_those_of_the_estimate(
    q, vc, reml, weights, offset, slope_sd, use_sqrt, bfgs, seed
):
    """The fit hands its optimum's Λ̃ and unpacked Ψ, τ to the record (``from_fit(lam=...,
    unpacked=...)``); the BLUPs, their covariances and every other field equal, bit for
    bit, a record made from the packed estimate alone (both left out): unequal groups,
    variance components, weights, REML and ML, a column offset by 1e9, a slope variance
    near zero, either packing, Newton steps or BFGS."""
    df = make_data(
        n_groups=20, min_size=2, max_size=12, slope_sd=slope_sd, vc_sd=0.3 if vc else 0.0, seed=seed
    )
    df["x1"] = df["x1"] + offset
    kw = dict(re_formula=RE_FORMULAS[q], use_sqrt=use_sqrt, reml=reml)
    if vc:
        kw["vc_formula"] = {"sub": "0 + C(sub)"}
    if weights:
        kw["weights"] = "w"
    if bfgs:
        kw["method"] = "bfgs"
    res, args = _fit_and_its_record_arguments(df, **kw)
    assert args["lam"] is not None and args["unpacked"] is not None
    args.pop("lam")
    args.pop("unpacked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = MixedLMResults.from_fit(**args)
    got, want = res.to_state(), again.to_state()
    for name in BLUP_FIELDS:  # arrays, or ragged per component: the same bytes pickled
        assert pickle.dumps(getattr(got, name)) == pickle.dumps(getattr(want, name)), name
    np.testing.assert_array_equal(res.params, again.params)
    np.testing.assert_array_equal(res.bse, again.bse)


#: the fields a fit's state makes when first read (:class:`FitState`)
ON_FIRST_READ = (
    *BLUP_FIELDS,
    "a_inv",
    "history",
    "initial_params",
    "initial_llf",
    "optimizer_settings",
    "packed_params",
    "cov_fe_statistics",
    "cov_re_statistics",
)


def _fit_of(df):
    model = mixedlm("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    return model, model.fit()


def _made_on_first_read(res) -> list[bytes]:
    """Those fields' bytes (the log's without its clock times, which differ by fit)."""
    state = res.to_state()
    values = [getattr(state, name) for name in ON_FIRST_READ]
    values[ON_FIRST_READ.index("history")] = [
        {k: v for k, v in entry.items() if k != "elapsed"} for entry in state.history
    ]
    return [pickle.dumps(value) for value in values]


@pytest.mark.parametrize("change", ["delete", "refit", "data", "kernels"])
def test_what_a_fit_makes_on_first_read_does_not_change_after_the_fit(monkeypatch, change):
    """The BLUPs, ``(X'V*⁻¹X)⁻¹`` and the optimizer's log of a fit, made when first
    read, equal those of the same fit read at once, bit for bit, and the random effects
    and ``random_effects_cov`` too: after the model is deleted, refitted (which
    evaluates its statistics at other points), its data changed in place, or the
    kernels' implementation asked for elsewhere (not asked again)."""
    df = make_data(n_groups=40, min_size=4, max_size=12, slope_sd=1.0, seed=5)
    _, at_once = _fit_of(df.copy())
    want = _made_on_first_read(at_once)
    model, res = _fit_of(df)
    assert isinstance(res.to_state(), FitState)
    if change == "delete":
        del model
        gc.collect()
    elif change == "refit":
        model.fit(reml=False)
        model.fit(method="bfgs")
    elif change == "data":
        df.loc[:, ["y", "x1", "x2"]] = 0.0
        model.endog[:] = 0.0
    else:

        def refused(*args, **kwargs):
            raise AssertionError("the implementation is chosen at the fit")

        monkeypatch.setattr(compiled, "backend", refused)
    assert _made_on_first_read(res) == want
    for group in (at_once.group_labels[0], at_once.group_labels[-1]):
        pd.testing.assert_series_equal(res.random_effects[group], at_once.random_effects[group])
        pd.testing.assert_frame_equal(
            res.random_effects_cov[group], at_once.random_effects_cov[group]
        )


def test_a_fit_pickles_with_what_it_makes_on_first_read_made():
    """Pickled before anything is read, a fit's results come back with the BLUPs,
    ``(X'V*⁻¹X)⁻¹`` and the log made (arrays, not functions of the statistics), equal
    bit for bit to those read at once; the results themselves are unchanged."""
    df = make_data(n_groups=40, min_size=4, max_size=12, slope_sd=1.0, seed=6)
    _, at_once = _fit_of(df.copy())
    _, res = _fit_of(df)
    back = pickle.loads(pickle.dumps(res))
    held = back.to_state().__dict__
    made = (*BLUP_FIELDS, "a_inv", "packed_params", "cov_fe_statistics", "cov_re_statistics")
    assert all(isinstance(held[name], np.ndarray) for name in made)
    assert isinstance(held["history"], list) and isinstance(held["optimizer_settings"], dict)
    assert _made_on_first_read(back) == _made_on_first_read(at_once)
    assert _made_on_first_read(res) == _made_on_first_read(at_once)


@pytest.mark.parametrize("limit", [0, fit_record.DEFER_BLUPS_BYTES])
def test_blups_deferred_only_where_the_statistics_are_small(monkeypatch, limit):
    """A fit whose statistics hold more than ``DEFER_BLUPS_BYTES`` makes its BLUPs at the
    fit (arrays in the state, nothing that keeps the statistics alive once the model is
    gone); a smaller one on first read; both give the same bytes."""
    df = make_data(n_groups=40, min_size=4, max_size=12, slope_sd=1.0, seed=7)
    _, at_once = _fit_of(df.copy())
    monkeypatch.setattr(fit_record, "DEFER_BLUPS_BYTES", limit)
    model, res = _fit_of(df)
    nbytes = model.cached_statistics.engine.nbytes
    assert 0 < nbytes and (nbytes <= limit) == (limit > 0)
    held = res.to_state().__dict__
    made_at_fit = [isinstance(held[name], np.ndarray) for name in BLUP_FIELDS]
    assert made_at_fit == [limit == 0] * len(BLUP_FIELDS)
    assert _made_on_first_read(res) == _made_on_first_read(at_once)


def _same_bits(a, b) -> bool:
    """Equal arrays, NaN where NaN and each zero of the same sign."""
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.shape == b.shape
        and np.array_equal(a, b, equal_nan=True)
        and np.array_equal(np.signbit(a), np.signbit(b))
    )


@settings(max_examples=12)
@given(
    q=st.integers(1, 3),
    vc=st.booleans(),
    weights=st.booleans(),
    offset=st.sampled_from([0.0, 1e9]),
    scale=st.sampled_from([1.0, 1e-3, 3e5]),
    use_sqrt=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_diagonal_covariance_equals_the_coordinates_map(
    q, vc, weights, offset, scale, use_sqrt, seed
):
    """Where the Jacobian of a fit's coordinates is diagonal,
    :func:`fit_record.diagonal_covariance` maps a covariance back bit for bit as
    :meth:`~dmixed.fit.coordinates.Coordinates.covariance` does (signs of zeros too),
    and leaves arrays with zeros, NaN or infinities to it; with shifted or rescaled
    columns, weights and variance components."""
    df = make_data(n_groups=20, min_size=2, max_size=12, vc_sd=0.3 if vc else 0.0, seed=seed)
    df["x1"] = df["x1"] * scale + offset
    kw = dict(re_formula=RE_FORMULAS[q], use_sqrt=use_sqrt)
    if vc:
        kw["vc_formula"] = {"sub": "0 + C(sub)"}
    if weights:
        kw["weights"] = "w"
    _, args = _fit_and_its_record_arguments(df, **kw)
    coords = args["coords"]
    k = args["hessian"].shape[0]
    rng = np.random.default_rng(seed)
    cov = rng.standard_normal((k, k))
    cov = cov @ cov.T
    zeros = cov.copy()
    zeros[0, -1] = zeros[-1, 0] = 0.0
    zeros[1 % k, 1 % k] = -0.0
    # one entry set outright: a draw whose entries are all positive has none to replace
    nan = np.where(cov > 0, cov, np.nan)
    nan[-1, 0] = np.nan
    inf = np.where(cov > 0, cov, np.inf)
    inf[0, -1] = np.inf
    huge = cov * 1e306  # entries the map may take beyond float64's range
    diagonal = is_identity(coords.a_opt) and np.array_equal(
        coords.fe_matrix, np.diag(np.diagonal(coords.fe_matrix))
    )
    for value in (cov, zeros, nan, inf, huge):
        got = fit_record.diagonal_covariance(coords, value)
        if value is cov:
            assert (got is not None) == diagonal
        if got is not None:
            with np.errstate(all="ignore"):
                assert _same_bits(got, coords.covariance(value))
            assert value is cov or value is huge


def test_the_bench_fit_maps_its_covariance_back_entry_by_entry():
    """A fit of arrays whose columns need no shift (the benchmark's) maps its covariance
    back entry by entry, to the general map's bits."""
    from dmixed import MixedLM

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(50), 10)
    x = np.column_stack([np.ones(500), rng.standard_normal((500, 2))])
    z = x[:, :2]
    y = x @ [1.0, 0.5, -0.3] + (rng.standard_normal((50, 2))[g] * z).sum(1)
    y += rng.standard_normal(500)
    res, seen = _recorded(lambda: MixedLM(y, x, g, exog_re=z).fit())
    coords = seen["coords"]
    cov_opt = _cov_opt_of(seen)
    got = fit_record.diagonal_covariance(coords, cov_opt)
    assert got is not None
    assert _same_bits(got, coords.covariance(cov_opt))
    assert _same_bits(res.to_state().cov_params, got)


def _cov_opt_of(args):
    """The covariance of the optimizer's estimates a fit mapped back (its ``inv(−H)``)."""
    from dmixed.results.covariance import covariance_of_estimates

    prof = args["prof"]
    k = args["hessian"].shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return covariance_of_estimates(
            args["hessian"],
            k=k,
            k_fe=len(prof.beta),
            at_zero=np.zeros(k - len(prof.beta), dtype=bool),
            conditional=float(prof.scale) * prof.a_inv,
            cov_fe="hessian",
        )


@pytest.mark.parametrize(("y_unit", "x_unit"), [(1e200, 1e-150), (1e300, 1.0), (1.0, 1e-310)])
def test_estimates_beyond_float64_in_the_data_units_are_a_data_error_naming_them(y_unit, x_unit):
    """A fit whose estimates float64 cannot hold in the data's own units (a slope of
    ``y`` in units of 1e200 on ``x2`` in units of 1e-150 is near 1e350) is refused with
    a :class:`~dmixed.DataError` that names the estimates and why, not a
    ``LinAlgError`` from mapping their covariance back."""
    df = make_data(n_groups=30, min_size=4, max_size=10, seed=151)
    df = df.assign(y=df["y"] * y_unit, x2=df["x2"] * x_unit)
    want = "'x2'" if x_unit != 1.0 else "the residual variance"
    with pytest.raises(DataError, match=f"beyond float64's range.*{want}"):
        mixedlm("y ~ x1 + x2", df, groups="g").fit()


def test_blups_of_a_zero_variance_component_are_unsigned_zeros():
    """A variance component whose variance is zero has BLUPs 0 times sums of either
    sign: they are 0.0, never -0.0 (printed -0.000000)."""
    import warnings

    import pandas as pd

    import dmixed

    rng = np.random.default_rng(1)
    n, n_groups = 4000, 300
    g = rng.integers(0, n_groups, n)
    df = pd.DataFrame(
        {
            "g": g,
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "c": rng.choice(list("abc"), n),
            "sub": rng.integers(0, 3, n),
        }
    )
    df["y"] = 1 + 0.5 * df.x1 + 0.3 * df.x2 + rng.normal(size=n_groups)[g] + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.BoundaryWarning)
        res = dmixed.mixedlm(
            "y ~ x1 + x2 + C(c)",
            df,
            groups="g",
            re_formula="1 + x1",
            vc_formula={"sub": "0 + C(sub)"},
        ).fit()
    assert res.vcomp[0] == 0.0
    values = res.random_effects_frame(vc=True)["value"].to_numpy()
    assert (values == 0.0).all() and not np.signbit(values).any()
    first = next(iter(res.random_effects.values()))
    assert "-0.0" not in first.to_string()
