"""Random slopes on columns constant within every group (``Z_i = e z̄_i'``: ``Z_i'Z_i``
of rank one) next to a between-group spread far above the residual sd.

``[X y]'[X y] − Σ_i m_i`` cancels there (benchmarks/RESULTS.md, bugs-s28: ``loglike`` off
by up to 171 units, optimizers reporting rounding as converged maxima).  The data pass
keeps the within-group sums ``W`` for such designs and the kernels take closed forms, so
ℓ, its score, the Hessian and the fits are checked here against the within/between form
evaluated independently in float64 (``_exact_llf``: sums of positive terms, nothing
cancelled) and its finite differences.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import dmixed
from dmixed import MixedLMParams
from dmixed.design import build_spec
from dmixed.engines.local import statistics_from_arrays
from dmixed.model import MixedLM
from dmixed.stats import GroupArrays
from dmixed.stats.checkpoint import load_statistics, save_statistics
from dmixed.stats.checkpoint_merge import merge


def _design(seed=188, n_groups=50, sizes=(2, 21), n_slopes=1, spread=7500.0, weights=False):
    """(y, exog, groups, zbar, weights): a random intercept of sd ``spread`` and
    ``n_slopes`` integer columns constant within each group (``zbar`` (G, 1 + n_slopes),
    the groups' random-design rows), residual sd 1, a covariate varying within groups."""
    rng = np.random.default_rng(seed)
    size = rng.integers(*sizes, n_groups)
    g = np.repeat(np.arange(n_groups), size)
    cols = rng.integers(-17, 22, (n_groups, n_slopes)).astype(float)
    x2 = rng.normal(size=g.size)
    y = 1 + cols[g] @ (0.5 + np.arange(n_slopes)) + spread * rng.normal(size=n_groups)[g]
    y = y + x2 + rng.normal(size=g.size)
    exog = np.column_stack([np.ones(g.size), cols[g], x2])
    zbar = np.column_stack([np.ones(n_groups), cols])
    w = rng.uniform(0.5, 2.0, g.size) if weights else None
    return y, exog, g, zbar, w


def _model(y, exog, g, zbar, w, **kwargs):
    q = zbar.shape[1]
    return dmixed.MixedLM(y, exog, g, exog_re=exog[:, :q].copy(), weights=w, **kwargs)


def _exact_llf(y, exog, g, zbar, w, psi, reml=True, beta=None):
    """ℓ at Ψ* = ``psi`` (β profiled, or at ``beta``), σ² profiled, from the weighted
    within-group sums and the group sums: ``[X y]'V*⁻¹[X y] = W + Σ_i F_iF_i'/(U_i d_i)``,
    ``d_i = 1 + U_i z̄_i'Ψ*z̄_i``, ``log|V*_i| = log d_i`` (rows scaled by √w)."""
    n, p = exog.shape
    w = np.ones(n) if w is None else w
    xy = np.column_stack([exog, y])
    u = np.bincount(g, weights=w)
    f = np.zeros((u.size, p + 1))
    np.add.at(f, g, w[:, None] * xy)
    dev = xy - (f / u[:, None])[g]
    d = 1 + u * np.einsum("ga,ab,gb->g", zbar, psi, zbar)
    t = (w[:, None] * dev).T @ dev + np.einsum("g,ga,gb->ab", 1 / (u * d), f, f)
    a, b = t[:p, :p], t[:p, p]
    if beta is None:
        q = t[p, p] - b @ np.linalg.solve(a, b)
    else:
        wv = np.append(-np.asarray(beta), 1.0)
        q = wv @ t @ wv
    fac = n - p if reml else n
    llf = -0.5 * np.log(d).sum() - 0.5 * fac * np.log(q)
    llf += 0.5 * fac * (np.log(fac) - np.log(2 * np.pi) - 1) + 0.5 * np.log(w).sum()
    if reml:
        llf -= 0.5 * np.linalg.slogdet(a)[1]
    return llf


def _psi(packed, q):
    lmat = np.zeros((q, q))
    lmat[np.tril_indices(q)] = packed
    return lmat @ lmat.T


def _points(q):
    if q == 2:
        return [np.array([5000.0, 0.0, 10.0]), np.array([18000.0, 900.0, 23.0])]
    return [np.array([5000.0, 40.0, 10.0, -30.0, 3.0, 2.0])]


CASES = [
    pytest.param(dict(n_slopes=1), True, id="q2-reml"),
    pytest.param(dict(n_slopes=1), False, id="q2-ml"),
    pytest.param(dict(n_slopes=1, weights=True), True, id="q2-weights-reml"),
    pytest.param(dict(n_slopes=2, seed=7), True, id="q3-reml"),
    pytest.param(dict(n_slopes=2, seed=7, weights=True), False, id="q3-weights-ml"),
]


def _case(kind, reml):
    """The design of ``kind``, its model (``reml``), q and the points to check."""
    y, exog, g, zbar, w = _design(**kind)
    model = _model(y, exog, g, zbar, w)
    model.reml = reml
    return (y, exog, g, zbar, w), model, zbar.shape[1], _points(zbar.shape[1])


@pytest.mark.parametrize(("kind", "reml"), CASES)
def test_loglike_is_the_within_between_form(kind, reml):
    data, model, q, points = _case(kind, reml)
    for packed in points:
        want = _exact_llf(*data, _psi(packed, q), reml)
        assert model.loglike(packed) == pytest.approx(want, abs=1e-7)


@pytest.mark.parametrize(("kind", "reml"), CASES)
def test_score_is_the_gradient_of_the_exact_loglike(kind, reml):
    data, model, q, points = _case(kind, reml)
    y, exog, g, zbar, w = data
    for packed in points:
        got = model.score(packed)
        want = np.empty_like(packed)
        for j in range(packed.size):
            h = 1e-5 * max(abs(packed[j]), 1.0)
            up, down = packed.copy(), packed.copy()
            up[j] += h
            down[j] -= h
            llf_up = _exact_llf(y, exog, g, zbar, w, _psi(up, q), reml)
            llf_down = _exact_llf(y, exog, g, zbar, w, _psi(down, q), reml)
            want[j] = (llf_up - llf_down) / (2 * h)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def _maximum(y, exog, g, zbar, w, reml=True):
    """The maximum of the exact ℓ over the factor L (several starts, then Powell)."""
    q = zbar.shape[1]

    def neg(packed):
        return -_exact_llf(y, exog, g, zbar, w, _psi(packed, q), reml)

    starts = [np.array([7500.0, 0.0, 1.0]), np.array([7500.0, 50.0, 0.1])]
    best = None
    for start in starts:
        res = optimize.minimize(
            neg,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000},
        )
        res = optimize.minimize(neg, res.x, method="Powell", options={"xtol": 1e-10, "ftol": 1e-14})
        if best is None or res.fun < best.fun:
            best = res
    return -best.fun


# the test data's maximum lies on a ridge (L₁₁ → 0; along L₀₀ ℓ's curvature is 1.6e-6 per
# unit², and the optimizer's gradient test is met 16 units away: 2e-4 below the maximum);
# the other design's maximum is interior
FIT_DATA = [
    pytest.param(dict(), 1e-3, id="bugs-s28-test-data"),
    pytest.param(dict(sizes=(1, 21), spread=7800.0, seed=1188), 1e-6, id="interior"),
]


@pytest.mark.parametrize(("kind", "below"), FIT_DATA)
@pytest.mark.parametrize("method", [None, "lbfgs", "bfgs"])
def test_fit_reaches_the_maximum_of_the_exact_loglike(kind, below, method):
    """Every method ends converged, without a warning, at a point whose reported ℓ is
    the exact ℓ there, within the optimizer's tolerance of the maximum (before: `lbfgs`
    −1300.60 converged against a maximum of −1337.37)."""
    y, exog, g, zbar, w = _design(**kind)
    model = _model(y, exog, g, zbar, w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(method=method) if method else model.fit()
    assert res.converged
    psi = np.asarray(res.cov_re) / res.scale
    assert res.llf == pytest.approx(_exact_llf(y, exog, g, zbar, w, psi), abs=1e-7)
    top = _maximum(y, exog, g, zbar, w)
    assert top - below <= res.llf <= top + 1e-7


@pytest.mark.parametrize("slope_first", [False, True], ids=["rank-one", "centred"])
def test_hessian_is_the_second_derivative_of_the_exact_loglike(slope_first):
    """``hessian`` at the estimates against central differences of the exact ℓ(β, Ψ*)
    (σ² profiled), each entry scaled by its parameters' sizes; with the slope column
    first, from the centred sums (``StatsBlock.use_centred``)."""
    y, exog, g, zbar, w = _design(sizes=(1, 21), spread=7800.0, seed=1188)
    if slope_first:
        zbar = zbar[:, ::-1]
        model = dmixed.MixedLM(y, exog, g, exog_re=exog[:, 1::-1].copy())
        assert model.statistics().engine.block.centred_groups
    else:
        model = _model(y, exog, g, zbar, w)
    res = model.fit()
    beta = np.asarray(res.fe_params)
    psi = np.asarray(res.cov_re) / res.scale
    rows, cols = np.tril_indices(2)
    x0 = np.concatenate([beta, psi[rows, cols]])
    p = beta.size

    def llf(x):
        mat = np.zeros((2, 2))
        mat[rows, cols] = x[p:]
        mat[cols, rows] = x[p:]
        return _exact_llf(y, exog, g, zbar, w, mat, beta=x[:p])

    size = np.maximum(np.abs(x0), 1.0)
    # the intercept's second difference is about 1e-11 of ℓ at a step of 1e-4: ℓ's
    # rounding made the reference's standard errors move by 1e-4 with the fit's last
    # digits; at 1e-3 the rounding is 100 times smaller and the truncation still ~1e-6
    step = 1e-3 * size
    want = np.empty((x0.size, x0.size))
    for i in range(x0.size):
        for j in range(x0.size):
            ei, ej = np.eye(x0.size)[i] * step[i], np.eye(x0.size)[j] * step[j]
            want[i, j] = (
                llf(x0 + ei + ej) - llf(x0 + ei - ej) - llf(x0 - ei + ej) + llf(x0 - ei - ej)
            ) / (4 * step[i] * step[j])
    got, _ = model.hessian(MixedLMParams.from_components(beta, cov_re=psi))
    scaled = np.outer(size, size)
    np.testing.assert_allclose(
        got * scaled, want * scaled, rtol=0, atol=1e-5 * np.abs(want * scaled).max()
    )
    np.testing.assert_allclose(
        np.sqrt(np.diag(np.linalg.inv(-got))), np.sqrt(np.diag(np.linalg.inv(-want))), rtol=1e-4
    )


def test_fit_is_the_same_whatever_the_row_order():
    """(The interior design: on the other's ridge, a last-bit change in a sum moves the
    end point by the optimizer's tolerance, ~1e-9 in ℓ.)"""
    y, exog, g, zbar, w = _design(sizes=(1, 21), spread=7800.0, seed=1188, weights=True)
    order = np.random.default_rng(5).permutation(y.size)
    one = _model(y, exog, g, zbar, w).fit()
    two = _model(y[order], exog[order], g[order], zbar, w[order]).fit()
    assert two.llf == pytest.approx(one.llf, abs=1e-8)
    np.testing.assert_allclose(two.fe_params, one.fe_params, rtol=1e-6)
    np.testing.assert_allclose(two.cov_re, one.cov_re, rtol=1e-6)


def test_random_effects_are_the_closed_form():
    """BLUPs ``Ψ̂* z̄_i Σ_rows w(y − xβ̂) / d_i`` (the group's residual sum through
    ``V*_i⁻¹ = I − U_iλ_i² ee'/(U_i d_i)``)."""
    y, exog, g, zbar, w = _design(sizes=(1, 21), spread=7800.0, seed=1188, weights=True)
    res = _model(y, exog, g, zbar, w).fit()
    psi = np.asarray(res.cov_re) / res.scale
    u = np.bincount(g, weights=w)
    resid = np.bincount(g, weights=w * (y - exog @ np.asarray(res.fe_params)))
    d = 1 + u * np.einsum("ga,ab,gb->g", zbar, psi, zbar)
    want = (zbar @ psi) * (resid / d)[:, None]
    got = np.array([np.asarray(res.random_effects[k]) for k in range(zbar.shape[0])])
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


def _frame(y, exog, g):
    return pd.DataFrame({"y": y, "c": exog[:, 1], "x2": exog[:, 2], "g": g})


def _merged_model(spec, first: pd.DataFrame, second: pd.DataFrame):
    """The model of the statistics of ``first`` and ``second`` added by group key (as
    ``dmixed update`` adds a batch to saved statistics)."""
    old = GroupArrays.from_statistics(MixedLM.from_spec(spec, first).statistics())
    new = MixedLM.from_spec(spec, second).statistics(standardization=old.columns, partial=True)
    merged = merge(old, GroupArrays.from_statistics(new))
    assert merged.glob.within is not None
    return MixedLM.from_statistics(statistics_from_arrays(merged), spec)


def test_statistics_of_groups_split_between_batches_fit_as_all_rows():
    """Rows of every group split between two batches (each group's constant in both):
    the merged statistics fit as all the rows at once."""
    y, exog, g, zbar, w = _design(sizes=(2, 21), spread=7800.0, seed=1188)
    df = _frame(y, exog, g)
    spec = build_spec(df, "y ~ c + x2", "g", re_formula="1 + c")
    half = np.random.default_rng(3).random(len(df)) < 0.5
    whole = MixedLM.from_spec(spec, df).fit()
    split = _merged_model(spec, df[half], df[~half]).fit()
    assert split.converged and whole.converged
    assert split.llf == pytest.approx(whole.llf, abs=1e-8)
    np.testing.assert_allclose(split.fe_params, whole.fe_params, rtol=1e-6)


def llf_one_group_general(y, exog, g, zrows, psi, odd):
    """REML ℓ at Ψ* where group ``odd`` has rows of different ``Z`` rows (``zrows``
    (n, q)): its ``[X_i y_i]'V*_i⁻¹[X_i y_i]`` and ``log|V*_i|`` in 40 digits, the other
    groups' by the within/between form."""
    n, p = exog.shape
    xy = np.column_stack([exog, y])
    t, logdet = np.zeros((p + 1, p + 1)), 0.0
    with mpmath.workdps(40):
        for k in np.unique(g):
            rows = g == k
            if k != odd:
                nk, s = rows.sum(), xy[rows].sum(axis=0)
                dev = xy[rows] - s / nk
                dk = 1 + nk * zrows[rows][0] @ psi @ zrows[rows][0]
                t += dev.T @ dev + np.outer(s, s) / (nk * dk)
                logdet += np.log(dk)
                continue
            z = mpmath.matrix(zrows[rows].tolist())
            v = mpmath.eye(int(rows.sum())) + z * mpmath.matrix(psi.tolist()) * z.T
            d = mpmath.matrix(xy[rows].tolist())
            part = d.T * mpmath.inverse(v) * d
            t += np.array([[float(part[i, j]) for j in range(p + 1)] for i in range(p + 1)])
            logdet += float(mpmath.log(mpmath.det(v)))
    a, b = t[:p, :p], t[:p, p]
    q = t[p, p] - b @ np.linalg.solve(a, b)
    fac = n - p
    llf = -0.5 * logdet - 0.5 * np.linalg.slogdet(a)[1] - 0.5 * fac * np.log(q)
    return llf + 0.5 * fac * (np.log(fac) - np.log(2 * np.pi) - 1)


def test_a_group_whose_batches_carry_different_constants():
    """A group whose rows in the two batches carry different constants is not rank
    one: its part of ``[X y]'V*⁻¹[X y]`` comes from its own statistics
    (``F F'/U − m``), the other groups' stay exact."""
    y, exog, g, zbar, w = _design(sizes=(2, 21), spread=7800.0, seed=1188)
    odd = 3
    rows = np.flatnonzero(g == odd)
    second = np.zeros(len(y), dtype=bool)
    second[rows[: rows.size // 2]] = True
    exog = exog.copy()
    exog[second, 1] += 5.0  # the other batch's constant of group `odd`
    df = _frame(y, exog, g)
    spec = build_spec(df, "y ~ c + x2", "g", re_formula="1 + c")
    model = _merged_model(spec, df[~second], df[second])
    for packed in ([5000.0, 0.0, 10.0], [7000.0, 60.0, 3.0]):
        lmat = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
        want = llf_one_group_general(y, exog, g, exog[:, :2], lmat @ lmat.T, odd)
        assert model.loglike(np.array(packed)) == pytest.approx(want, abs=1e-6)


def test_dask_loglike_of_a_slope_constant_within_groups():
    dd = pytest.importorskip("dask.dataframe")
    import dask

    y, exog, g, zbar, w = _design()
    df = _frame(y, exog, g)
    ddf = dd.from_pandas(df, npartitions=3)
    packed = np.array([18000.0, 900.0, 23.0])
    with dask.config.set(scheduler="sync"):
        model = dmixed.MixedLM.from_formula("y ~ c + x2", data=ddf, groups="g", re_formula="1 + c")
        got = model.loglike(packed)
    assert got == pytest.approx(_exact_llf(y, exog, g, zbar, w, _psi(packed, 2)), abs=1e-6)


def test_saved_statistics_keep_the_within_group_sums(tmp_path):
    """Statistics saved and loaded again hold ``W`` and give the same ℓ and score."""
    y, exog, g, zbar, w = _design(weights=True)
    df = _frame(y, exog, g).assign(w=w)
    spec = build_spec(df, "y ~ c + x2", "g", re_formula="1 + c", weights="w")
    model = MixedLM.from_spec(spec, df)
    arrays = GroupArrays.from_statistics(model.statistics())
    save_statistics(arrays, tmp_path / "stats", {})
    back, _ = load_statistics(tmp_path / "stats")
    np.testing.assert_array_equal(back.glob.within, arrays.glob.within)
    loaded = MixedLM.from_statistics(statistics_from_arrays(back), spec)
    packed = np.array([18000.0, 900.0, 23.0])
    assert loaded.loglike(packed) == model.loglike(packed)
    np.testing.assert_array_equal(loaded.score(packed), model.score(packed))
    assert model.loglike(packed) == pytest.approx(
        _exact_llf(y, exog, g, zbar, w, _psi(packed, 2)), abs=1e-7
    )


def intercept_elsewhere(order: str):
    """The data of :func:`_design` and its model with the random intercept after the
    slope (``order`` "slope-first") or a column of twos ("scaled"), ``zbar`` to match."""
    y, exog, g, zbar, w = _design()
    if order == "slope-first":
        zbar = zbar[:, ::-1]
        exog_re = exog[:, 1::-1].copy()
    else:
        zbar = zbar * np.array([2.0, 1.0])
        exog_re = exog[:, :2] * np.array([2.0, 1.0])
    return (y, exog, g, zbar, w), dmixed.MixedLM(y, exog, g, exog_re=exog_re)


@pytest.mark.parametrize(
    "order", [pytest.param("slope-first", id="slope-first"), pytest.param("scaled", id="2-not-1")]
)
def test_loglike_where_the_intercept_is_not_column_0_of_ones(order):
    """The same model with the intercept column elsewhere or scaled: its groups take the
    centred sums (``kernels.lossy_groups``), as exact as the rank-one forms."""
    (y, exog, g, zbar, w), model = intercept_elsewhere(order)
    for packed in _points(2):
        want = _exact_llf(y, exog, g, zbar, w, _psi(packed, 2))
        assert model.loglike(packed) == pytest.approx(want, abs=1e-7)


def test_a_group_whose_rows_carry_different_constants_in_one_pass():
    """The rows of test_a_group_whose_batches_carry_different_constants in one data
    pass: the model is the same, so is ℓ (the lossy groups take the centred sums, the
    varying one its own statistics)."""
    y, exog, g, zbar, w = _design(sizes=(2, 21), spread=7800.0, seed=1188)
    odd = 3
    rows = np.flatnonzero(g == odd)
    exog = exog.copy()
    exog[rows[: rows.size // 2], 1] += 5.0
    df = _frame(y, exog, g)
    model = MixedLM.from_spec(build_spec(df, "y ~ c + x2", "g", re_formula="1 + c"), df)
    for packed in ([5000.0, 0.0, 10.0], [7000.0, 60.0, 3.0]):
        lmat = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
        want = llf_one_group_general(y, exog, g, exog[:, :2], lmat @ lmat.T, odd)
        assert model.loglike(np.array(packed)) == pytest.approx(want, abs=1e-6)
