"""statsmodels' model API on ``dmixed.MixedLM``: loglike, score, score_full, score_sqrt,
hessian and get_fe_params agree with statsmodels 0.15 at random parameter points.

Three models (random intercept; correlated random slope; random intercept plus a
variance component), REML and ML, both ``use_sqrt`` packings; columns far from zero
(means near 1e3 next to spreads near 1), so that the map into the statistics'
standardized coordinates is exercised.  Tolerances: loglike 1e-8 relative, score and
Hessian 1e-6 relative to their largest entry.

Where statsmodels' own derivative is not the derivative of its own likelihood, a
central finite difference of statsmodels' function is the reference instead (each case
says so and checks that statsmodels' own value differs there):

- ``score`` of a packed vector whose ``L`` has a negative diagonal entry: statsmodels
  re-factors Ψ* to a positive diagonal first, so its score is that of another point
  (DESIGN.md §4); the reference is the finite difference of its ``loglike``;
- ``hessian`` away from the GLS estimate: statsmodels' β rows leave out the ``∂Q/∂β``
  terms (zero only at β̂); the reference is the finite difference of its
  ``score_full(params, calc_fe=True)``, itself checked against its ``loglike``.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import statsmodels.regression.mixed_linear_model as smlm

import dmixed
from dmixed import MixedLMParams
from dmixed.errors import SpecError

RTOL_LLF = 1e-8
RTOL_DERIV = 1e-6
FD_STEP = 1e-4


@functools.cache
def _data(kind: str):
    """(endog, exog, groups, exog_re, exog_vc) of a small synthetic model ``kind``."""
    rng = np.random.default_rng({"intercept": 1, "slope": 2, "vc": 3}[kind])
    n_groups, per = 25, 7
    n = n_groups * per
    g = np.repeat(np.arange(n_groups), per)
    x = np.column_stack([np.ones(n), 1e3 + rng.normal(size=n), rng.normal(size=n)])
    z = x[:, :2] if kind == "slope" else np.ones((n, 1))
    b = rng.normal(size=(n_groups, z.shape[1])) * ([1.0, 0.3] if kind == "slope" else [1.0])
    y = 5e3 + x @ [1.0, 2.0, -1.0] + np.sum(z * b[g], axis=1) + rng.normal(size=n)
    exog_vc = None
    if kind == "vc":
        sub = rng.integers(0, 3, size=n)
        effect = rng.normal(size=(n_groups, 3)) * 0.7
        y += effect[g, sub]
        exog_vc = {
            "sub": {
                # 3.0, not 1.0: the component's columns get a scale of 4 in the statistics
                k: 3.0 * (sub[g == k][:, None] == np.arange(3))
                for k in range(n_groups)
            }
        }
    return y, x, g, z, exog_vc


def _models(kind: str, reml: bool, use_sqrt: bool):
    """The statsmodels model and the dmixed model of the same data and settings."""
    y, x, g, z, exog_vc = _data(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' deprecation note on dict exog_vc
        ref = smlm.MixedLM(y, x, g, exog_re=z, exog_vc=exog_vc, use_sqrt=use_sqrt)
    # what statsmodels' fit sets before it evaluates anything
    ref.reml, ref.cov_pen, ref.fe_pen, ref._freepat, ref._cov_sing = reml, None, None, None, 0
    ours = dmixed.MixedLM(y, x, g, exog_re=z, exog_vc=exog_vc, use_sqrt=use_sqrt)
    ours.reml = reml
    return ref, ours


def _points(ours, count: int, seed: int, negative_diag: bool = False):
    """``count`` random points (β, Ψ* = LL', τ*) of the model's dimensions."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        q = ours.k_re
        lmat = np.tril(rng.normal(size=(q, q)) * 0.3)
        lmat[np.diag_indices(q)] = rng.uniform(0.3, 1.5, size=q)
        if negative_diag:
            lmat[q - 1, q - 1] *= -1.0
        if q == 2:
            lmat[1, :] *= 0.2  # the slope's column is ~1e3 times the intercept's spread
        beta = np.array([5e3, 2.0, -1.0]) + rng.normal(size=ours.k_fe) * [1.0, 1e-3, 0.1]
        tau = rng.uniform(0.1, 1.5, size=ours.k_vc)
        yield beta, lmat, tau


def _both(beta, lmat, tau, packed=False, use_sqrt=True):
    """The point as statsmodels' and dmixed's ``MixedLMParams`` (or one packed vector)."""
    if packed:
        rows, cols = np.tril_indices(lmat.shape[0])
        cov = lmat[rows, cols] if use_sqrt else (lmat @ lmat.T)[rows, cols]
        return np.concatenate([cov, np.sqrt(tau) if use_sqrt else tau])
    kw = dict(fe_params=beta, cov_re=lmat @ lmat.T, vcomp=tau)
    return smlm.MixedLMParams.from_components(**kw), MixedLMParams.from_components(**kw)


def _close(actual, expected, rtol=RTOL_DERIV, what=""):
    """Entries within ``rtol`` of the largest entry of ``expected``."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


def _fd_gradient(func, x, curvature):
    """Central finite differences of ``func`` at ``x``, each step :data:`FD_STEP` times
    the coordinate's natural length ``1/√|curvature_j|`` (the β of a column near 1e3
    needs a step 1e3 times smaller than the intercept's)."""
    x = np.asarray(x, dtype=float)
    steps = FD_STEP / np.sqrt(np.maximum(np.abs(curvature), 1e-12))
    out = []
    for j in range(x.size):
        h = steps[j]
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        out.append((np.asarray(func(up)) - np.asarray(func(down))) / (2 * h))
    return np.array(out)


CASES = [
    (kind, reml, use_sqrt)
    for kind in ("intercept", "slope", "vc")
    for reml in (True, False)
    for use_sqrt in (True, False)
]


def _case_id(case) -> str:
    kind, reml, use_sqrt = case
    return f"{kind}-{'reml' if reml else 'ml'}-{'sqrt' if use_sqrt else 'plain'}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_loglike_and_score_agree_with_statsmodels(case):
    kind, reml, use_sqrt = case
    ref, ours = _models(kind, reml, use_sqrt)
    for beta, lmat, tau in _points(ours, 3, seed=CASES.index(case)):
        packed = _both(beta, lmat, tau, packed=True, use_sqrt=use_sqrt)
        np.testing.assert_allclose(ours.loglike(packed), ref.loglike(packed), rtol=RTOL_LLF)
        _close(ours.score(packed), ref.score(packed), what="score, profiled")
        sm_pa, pa = _both(beta, lmat, tau)
        np.testing.assert_allclose(
            ours.loglike(pa, profile_fe=False),
            ref.loglike(sm_pa.copy(), profile_fe=False),
            rtol=RTOL_LLF,
        )
        np.testing.assert_allclose(ours.loglike(pa), ref.loglike(sm_pa.copy()), rtol=RTOL_LLF)
        _close(
            ours.score(pa, profile_fe=False),
            ref.score(sm_pa.copy(), profile_fe=False),
            what="score, β given",
        )
        for name in ("score_full", "score_sqrt"):
            expected = np.concatenate(getattr(ref, name)(sm_pa.copy(), True))
            _close(np.concatenate(getattr(ours, name)(pa, True)), expected, what=name)
        fe_ref, sing_ref = ref.get_fe_params(sm_pa.cov_re, sm_pa.vcomp)
        fe, sing = ours.get_fe_params(pa.cov_re, pa.vcomp)
        _close(fe, fe_ref, rtol=1e-9, what="get_fe_params")
        assert sing == sing_ref


@pytest.mark.parametrize("case", [c for c in CASES if c[2]], ids=_case_id)
def test_get_scale_agrees_with_statsmodels(case):
    """At the GLS estimate and at a β away from it; the model's attributes too."""
    kind, reml, use_sqrt = case
    ref, ours = _models(kind, reml, use_sqrt)
    assert (ours.k_params, ours.n_totobs) == (ref.k_params, ref.n_totobs)
    for beta, lmat, tau in _points(ours, 2, seed=200 + CASES.index(case)):
        cov_re = lmat @ lmat.T
        fe, _ = ref.get_fe_params(cov_re, tau)
        for point in (fe, beta):
            np.testing.assert_allclose(
                ours.get_scale(point, cov_re, tau), ref.get_scale(point, cov_re, tau), rtol=1e-9
            )
    with pytest.raises(SpecError):
        ours.get_scale(beta[:1], cov_re, tau)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_hessian_agrees_with_statsmodels_at_the_gls_estimate(case):
    kind, reml, use_sqrt = case
    ref, ours = _models(kind, reml, use_sqrt)
    for beta, lmat, tau in _points(ours, 2, seed=100 + CASES.index(case)):
        sm_pa, pa = _both(beta, lmat, tau)
        fe, _ = ref.get_fe_params(sm_pa.cov_re, sm_pa.vcomp)
        sm_pa.fe_params = fe
        pa.fe_params = fe
        hess_ref, sing_ref = ref.hessian(sm_pa)
        hess, sing = ours.hessian(pa)
        _close(hess, hess_ref, what="hessian at β̂")
        assert sing == sing_ref
        # a packed vector [β, cov] in the model's packing: the same point
        packed = np.concatenate([fe, _both(beta, lmat, tau, packed=True, use_sqrt=use_sqrt)])
        _close(ours.hessian(packed)[0], hess_ref, what="hessian of a packed vector")


@pytest.mark.parametrize("kind", ["intercept", "slope", "vc"])
def test_information_is_minus_statsmodels_hessian(kind):
    """statsmodels' ``information`` is unimplemented for MixedLM; its documented value,
    ``-1 * Hessian of the log-likelihood``, is checked against its ``hessian``."""
    ref, ours = _models(kind, True, True)
    beta, lmat, tau = next(_points(ours, 1, seed=31))
    sm_pa, pa = _both(beta, lmat, tau)
    fe, _ = ref.get_fe_params(sm_pa.cov_re, sm_pa.vcomp)
    sm_pa.fe_params = fe
    pa.fe_params = fe
    _close(ours.information(pa), -ref.hessian(sm_pa)[0], what="information")
    np.testing.assert_array_equal(ours.information(pa), -ours.hessian(pa)[0])


@pytest.mark.parametrize("case", [c for c in CASES if c[2]], ids=_case_id)
def test_hessian_away_from_the_gls_estimate_is_the_derivative_of_the_score(case):
    """Reference: finite differences of statsmodels' ``score_full(calc_fe=True)`` (whose
    own agreement with its ``loglike`` is checked here too); statsmodels' ``hessian``
    differs there (its β rows omit the ∂Q/∂β terms)."""
    kind, reml, _ = case
    ref, ours = _models(kind, reml, True)
    beta, lmat, tau = next(_points(ours, 1, seed=11))
    sm_pa, pa = _both(beta, lmat, tau)
    k_fe, k_re = ours.k_fe, ours.k_re

    def sm_point(vec):
        return smlm.MixedLMParams.from_packed(vec, k_fe, k_re, use_sqrt=False, has_fe=True)

    x0 = sm_pa.get_packed(use_sqrt=False, has_fe=True)
    sm_score = np.concatenate(ref.score_full(sm_point(x0), True))
    curvature = np.diag(ref.hessian(sm_pa.copy())[0])
    fd_llf = _fd_gradient(lambda v: ref.loglike(sm_point(v), profile_fe=False), x0, curvature)
    _close(sm_score, fd_llf, rtol=1e-5, what="statsmodels' score_full vs its loglike")
    fd_hess = _fd_gradient(
        lambda v: np.concatenate(ref.score_full(sm_point(v), True)), x0, curvature
    )
    fd_hess = 0.5 * (fd_hess + fd_hess.T)
    hess, _ = ours.hessian(pa)
    _close(hess, fd_hess, rtol=1e-5, what="hessian away from β̂ vs finite differences")
    hess_ref, _ = ref.hessian(sm_pa.copy())
    scale = np.max(np.abs(fd_hess))
    assert np.max(np.abs(hess_ref - fd_hess)) > 1e-4 * scale  # statsmodels' is off here


@pytest.mark.parametrize("case", [c for c in CASES if c[2] and c[0] == "slope"], ids=_case_id)
def test_score_of_a_factor_with_a_negative_diagonal_is_the_gradient(case):
    """Reference: finite differences of statsmodels' ``loglike`` at the packed vector;
    statsmodels' ``score`` re-factors Ψ* first and returns the score of another point."""
    kind, reml, _ = case
    ref, ours = _models(kind, reml, True)
    beta, lmat, tau = next(_points(ours, 1, seed=5, negative_diag=True))
    packed = _both(beta, lmat, tau, packed=True)
    fd = _fd_gradient(ref.loglike, packed, np.ones(packed.size))
    _close(ours.score(packed), fd, rtol=1e-5, what="score vs finite differences")
    assert np.max(np.abs(ref.score(packed) - fd)) > 1e-3 * np.max(np.abs(fd))


def test_reml_follows_the_last_fit_as_statsmodels():
    _, ours = _models("intercept", True, True)
    assert ours.reml is True  # statsmodels' default before any fit
    res = ours.fit(reml=False)
    assert ours.reml is False
    np.testing.assert_allclose(ours.loglike(res.packed_params), res.llf, rtol=1e-10)
    point = MixedLMParams.from_components(
        np.asarray(res.fe_params), np.asarray(res.cov_re) / res.scale
    )
    np.testing.assert_allclose(ours.loglike(point, profile_fe=False), res.llf, rtol=1e-10)


def test_bad_parameters_are_refused_or_outside_the_space():
    _, ours = _models("slope", True, False)
    with pytest.raises(SpecError, match="k_fe, k_re, k_vc"):
        ours.loglike(MixedLMParams.from_components(np.zeros(3), np.eye(3)))
    with pytest.raises(SpecError, match=r"expected \(3,\)"):
        ours.loglike(np.ones(5))
    with pytest.raises(SpecError, match=r"expected \(6,\)"):
        ours.hessian(np.ones(3))  # the Hessian's vector starts with β
    indefinite = np.array([1.0, 2.0, 1.0])  # vech of [[1, 2], [2, 1]]
    assert ours.loglike(indefinite) == -np.inf
    assert np.all(np.isnan(ours.score(indefinite)))
    with pytest.raises(SpecError, match="positive semi-definite"):
        ours.get_fe_params(np.array([[1.0, 2.0], [2.0, 1.0]]), np.zeros(0))


def test_asymmetric_or_non_finite_points_are_refused():
    """An asymmetric cov_re used to give a likelihood read from one triangle (two
    values for the two triangles), and NaN a likelihood of −inf with numpy warnings."""
    _, ours = _models("slope", True, False)
    upper = np.array([[1.0, 0.5], [0.0, 1.0]])
    for cov in (upper, upper.T):
        with pytest.raises(SpecError, match="cov_re that is not symmetric"):
            ours.loglike(MixedLMParams.from_components(np.zeros(3), cov))
    with pytest.raises(SpecError, match="non-finite values in cov_re"):
        ours.loglike(np.array([np.nan, 0.0, 1.0]))
    with pytest.raises(SpecError, match="non-finite values in fe_params"):
        ours.score_full(MixedLMParams.from_components([np.inf, 0, 0], np.eye(2)), calc_fe=True)


# --------------------------------------------------------------------------------------
# Dask data: one data pass, whatever is asked afterwards
# --------------------------------------------------------------------------------------


class CountingReader:
    """Partition reader for ``dd.from_map`` that counts the partitions it reads."""

    def __init__(self, frame, nparts: int) -> None:
        self.frame = frame
        self.parts = np.array_split(np.arange(len(frame)), nparts)
        self.reads = 0

    def __call__(self, i: int):
        self.reads += 1
        return self.frame.iloc[self.parts[i]].reset_index(drop=True)


def test_dask_statistics_are_computed_once_and_reused():
    """The first call makes the data pass; loglike, score, score_full, score_sqrt,
    hessian, get_fe_params and a fit afterwards read no partition again, and give
    what the same model of the pandas frame gives."""
    dd = pytest.importorskip("dask.dataframe")
    import dask
    import pandas as pd

    y, x, g, z, _ = _data("slope")
    frame = pd.DataFrame({"y": y, "x1": x[:, 1], "x2": x[:, 2], "g": g})
    nparts = 4
    reader = CountingReader(frame, nparts)
    ddf = dd.from_map(reader, range(nparts), meta=frame.iloc[:0], enforce_metadata=False)
    kw = dict(groups="g", re_formula="1 + x1")
    with dask.config.set(scheduler="sync"):
        model = dmixed.MixedLM.from_formula("y ~ x1 + x2", data=ddf, **kw)
        reader.reads = 0  # building the spec may read: not the likelihood's business
        local = dmixed.MixedLM.from_formula("y ~ x1 + x2", data=frame, **kw)
        points = [_both(*p) for p in _points(local, 2, seed=3)]
        for _, pa in points:
            packed = pa.get_packed(use_sqrt=True)
            np.testing.assert_allclose(model.loglike(packed), local.loglike(packed), rtol=1e-10)
            _close(model.score(pa, profile_fe=False), local.score(pa, profile_fe=False), 1e-9)
            _close(model.score_full(pa, True)[1], local.score_full(pa, True)[1], 1e-9)
            _close(model.score_sqrt(pa, True)[1], local.score_sqrt(pa, True)[1], 1e-9)
            _close(model.hessian(pa)[0], local.hessian(pa)[0], 1e-9)
            _close(
                model.get_fe_params(pa.cov_re, pa.vcomp)[0],
                local.get_fe_params(pa.cov_re, pa.vcomp)[0],
                1e-9,
            )
        assert reader.reads == nparts  # one pass, for the first call
        res = model.fit()
        model.loglike(res.packed_params)
    assert reader.reads == nparts  # the fit and the calls after it reused the statistics


def test_boundary_values_are_the_limits():
    """At τ* = 0 statsmodels divides by zero; dmixed's value is the limit (statsmodels at
    τ* = 1e-10 as the reference), and at a singular Ψ* the limit of nearby points."""
    ref, ours = _models("vc", True, True)
    beta, lmat, _ = next(_points(ours, 1, seed=9))
    tau = np.zeros(1)
    sm_pa, pa = _both(beta, lmat, tau)
    sm_pa.vcomp = np.array([1e-10])
    np.testing.assert_allclose(ours.loglike(pa), ref.loglike(sm_pa), rtol=1e-8)
    _close(ours.score_full(pa, True)[1], ref.score_full(sm_pa, True)[1], 1e-6)
    hess, sing = ours.hessian(pa)
    assert sing and np.all(np.isfinite(hess))
    _, ours_slope = _models("slope", False, True)
    beta, lmat, _ = next(_points(ours_slope, 1, seed=9))
    lmat[1, 1] = 0.0  # Ψ* of rank one: the slope is a multiple of the intercept
    near = lmat.copy()
    near[1, 1] = 1e-7
    on, off = (_both(beta, m, np.zeros(0), packed=True) for m in (lmat, near))
    np.testing.assert_allclose(ours_slope.loglike(on), ours_slope.loglike(off), rtol=1e-10)
    _close(ours_slope.score(on)[:2], ours_slope.score(off)[:2], 1e-6)
    fe, sing = ours_slope.get_fe_params(lmat @ lmat.T, np.zeros(0))
    assert sing and np.all(np.isfinite(fe))


def test_statsmodels_own_params_objects_are_accepted():
    """Code ported with ``from statsmodels...import MixedLMParams`` kept still runs."""
    _, ours = _models("vc", True, True)
    beta, lmat, tau = next(_points(ours, 1, seed=2))
    sm_pa, pa = _both(beta, lmat, tau)
    assert ours.loglike(sm_pa, profile_fe=False) == ours.loglike(pa, profile_fe=False)
    np.testing.assert_array_equal(ours.hessian(sm_pa)[0], ours.hessian(pa)[0])


def _slope_constant_within_groups():
    """A random slope on a column constant within every group (integers -17..21), the
    intercept's variance 7500² next to a residual variance of 1 (50 groups, 2..20 rows)."""
    rng = np.random.default_rng(188)
    sizes = rng.integers(2, 21, 50)
    g = np.repeat(np.arange(50), sizes)
    c = rng.integers(-17, 22, 50).astype(float)
    x2 = rng.normal(size=g.size)
    y = 1 + 0.5 * c[g] + 7500 * rng.normal(size=50)[g] + x2 + rng.normal(size=g.size)
    return y, np.column_stack([np.ones(g.size), c[g], x2]), g, c


def _reml_within_between(y, exog, g, c, packed):
    """REML ℓ of a random intercept and slope on ``c`` (constant within the groups) from
    the within-group cross-products and the group sums: ``[X y]'V*⁻¹[X y] = W +
    Σ_i s_i s_i' / (n_i (1 + n_i v_i))`` with ``v_i = (L₀₀ + L₁₀ c_i)² + (L₁₁ c_i)²``,
    no cancellation (within 1e-12 of a 60-digit evaluation at the points below)."""
    n, p = exog.shape
    xy = np.column_stack([exog, y])
    sizes = np.bincount(g).astype(float)
    sums = np.zeros((sizes.size, p + 1))
    np.add.at(sums, g, xy)
    dev = xy - sums[g] / sizes[g, None]
    v = (packed[0] + packed[1] * c) ** 2 + (packed[2] * c) ** 2
    t = dev.T @ dev + np.einsum("g,ga,gb->ab", 1 / (sizes * (1 + sizes * v)), sums, sums)
    a, b = t[:p, :p], t[:p, p]
    q = t[p, p] - b @ np.linalg.solve(a, b)
    f = n - p
    logdet_a = np.linalg.slogdet(a)[1]
    return (-np.log1p(sizes * v).sum() - logdet_a - f * np.log(q)) / 2 + f / 2 * (
        np.log(f) - np.log(2 * np.pi) - 1
    )


@pytest.mark.parametrize("packed", [[5000.0, 0.0, 10.0], [18000.0, 900.0, 23.0]])
def test_loglike_of_a_slope_constant_within_groups(packed):
    """``loglike`` where ``Z_i'Z_i`` has rank one and Ψ* is large: as the within/between
    form gives it (``[X y]'[X y] − Σ m_i`` was off by 0.1 and 4 units: benchmarks/
    RESULTS.md, bugs-s28)."""
    y, exog, g, c = _slope_constant_within_groups()
    model = dmixed.MixedLM(y, exog, g, exog_re=exog[:, :2].copy())
    want = _reml_within_between(y, exog, g, c, packed)
    assert model.loglike(np.array(packed)) == pytest.approx(want, abs=1e-4)
