"""The Newton steps on whole-block sums (:mod:`dmixed.fit.lean`) against the general
path: the same fit to rounding, and the general path wherever they do not apply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed import kernels
from dmixed.fit import lean
from dmixed.fit.lean import LeanSteps, block_step, scalar_step, singular
from dmixed.fit.newton_coords import newton_step
from dmixed.fit.newton_rules import modified_newton_step
from dmixed.stats import Layout
from tests._native_marks import built, called
from tests._synth import QUICK, make_data

#: what the lean steps may move the fit by: rounding of sums added in another order
RTOL = 1e-12


def _fit(
    df,
    q: int,
    reml: bool,
    use_lean: bool,
    monkeypatch,
    weights: float = 0.0,
    p: int = 3,
    **kw,
):
    """The fit of ``y ~ x1 + x2`` with ``q`` random-effect columns (1, x1, x2), with the
    lean steps where they apply or without them (``weights``: the column ``w`` times
    that, 0 for none; ``p`` fixed-effect columns of 1, x1, x2, x1 x2, x2²); and how
    many times they ran."""
    x1, x2 = np.asarray(df["x1"]), np.asarray(df["x2"])
    exog_re = np.column_stack([np.ones(len(df)), x1, x2])[:, :q]
    exog = np.column_stack([np.ones(len(df)), x1, x2, x1 * x2, x2 * x2])[:, :p]
    runs = []
    original = LeanSteps.run

    def counted(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        runs.append(out is not None)
        return out

    with monkeypatch.context() as patch:
        patch.setattr(LeanSteps, "run", counted)
        if not use_lean:
            patch.setattr(LeanSteps, "of", classmethod(lambda cls, obj: None))
        model = dmixed.MixedLM(
            np.array(df["y"], dtype=np.float64),
            exog,
            np.array(df["g"]),
            exog_re=exog_re,
            weights=weights * np.array(df["w"], dtype=np.float64) if weights else None,
        )
        with warnings.catch_warnings(record=True) as seen:
            # the fits' warnings (boundary, convergence, singular Hessian) are compared
            warnings.simplefilter("always", dmixed.errors.DmixedWarning)
            res = model.fit(reml=reml, **kw)
            out = {
                "params": res.params,
                "bse": res.bse,
                "cov_re": res.cov_re,
                "llf": res.llf,
                "scale": res.scale,
                "re": np.array([np.asarray(v) for v in res.random_effects.values()]),
                "n_iter": res.n_iter,
                "converged": res.converged,
                "methods": [h["method"] for h in res.fit_history],
                "history_llf": [h["llf"] for h in res.fit_history],
                "history_grad": [h["grad_norm"] for h in res.fit_history],
                "n_evals": res.n_evals,
                "warnings": sorted({w.category.__name__ for w in seen}),
            }
    return out, runs


def _rel(a, b) -> float:
    a = np.ravel(np.asarray(a, dtype=np.float64))
    b = np.ravel(np.asarray(b, dtype=np.float64))
    # NaN (a standard error with no meaning at the boundary) in the same places
    assert np.array_equal(np.isnan(a), np.isnan(b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-300))


def _numpy_kernels_chosen(monkeypatch) -> None:
    """The kernels' choice pinned to numpy, where the lean steps run over several
    chunks: with numba in ``sys.modules`` (another test module of the same run imports
    it) or the process's ledger past its cost, :func:`dmixed.kernels.compiled.backend`
    picks the compiled kernels and the several chunks take the general path."""
    monkeypatch.setattr(kernels.compiled, "backend", lambda n_groups, r, kernel="step": "numpy")


def _assert_same_fit(a, b) -> None:
    for name in ("n_iter", "converged", "methods", "warnings"):
        assert a[name] == b[name], name
    for name in ("params", "bse", "cov_re", "llf", "scale", "re", "history_llf"):
        assert _rel(a[name], b[name]) <= RTOL, name
    # the gradient's norm: of rounding's size at the optimum
    np.testing.assert_allclose(a["history_grad"], b["history_grad"], rtol=1e-6, atol=1e-9)


@settings(max_examples=25, **QUICK)
@given(
    n_groups=st.integers(10, 300),
    max_size=st.integers(4, 30),
    slope_sd=st.sampled_from([0.0, 1e-4, 0.05, 0.5, 2.0]),
    intercept_sd=st.sampled_from([1e-3, 0.3, 1.0, 5.0]),
    reml=st.booleans(),
    weights=st.sampled_from([0.0, 1.0, 1e6, 1e-6]),
    seed=st.integers(0, 2**16),
)
def test_lean_steps_give_the_general_fit(
    n_groups, max_size, slope_sd, intercept_sd, reml, weights, seed, monkeypatch
):
    """Random models with a dense 2 × 2 ``cov_re`` (groups of unequal size, variances near
    the boundary, REML and ML, with and without weights, in units that put the optimizer
    in coordinates other than the statistics'): the same params, standard errors, ℓ,
    ``cov_re``, scale, BLUPs, iterations and warnings."""
    df = make_data(
        n_groups=n_groups,
        max_size=max_size,
        slope_sd=slope_sd,
        intercept_sd=intercept_sd,
        seed=seed,
    )
    fast, runs = _fit(df, 2, reml, True, monkeypatch, weights)
    slow, none = _fit(df, 2, reml, False, monkeypatch, weights)
    assert not none
    _assert_same_fit(fast, slow)


@settings(max_examples=12, **QUICK)
@given(
    n_groups=st.integers(10, 200),
    p=st.sampled_from([1, 2, 4, 5]),
    slope_sd=st.sampled_from([0.0, 0.05, 1.0]),
    reml=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_lean_steps_give_the_general_fit_of_other_fixed_widths(
    n_groups, p, slope_sd, reml, seed, monkeypatch
):
    """One, two, four and five fixed-effect columns: the profile in floats for
    ``p ≤ 3`` (:func:`~dmixed.kernels.small_linalg.spd_inverse_3`) and through LAPACK
    above it gives the general path's fit."""
    df = make_data(n_groups=n_groups, max_size=12, slope_sd=slope_sd, seed=seed)
    fast, runs = _fit(df, 2, reml, True, monkeypatch, p=p)
    slow, none = _fit(df, 2, reml, False, monkeypatch, p=p)
    assert runs and not none
    _assert_same_fit(fast, slow)


@settings(max_examples=12, **QUICK)
@given(
    n_groups=st.integers(20, 200),
    chunk=st.sampled_from([7, 16, 61]),
    slope_sd=st.sampled_from([0.0, 0.05, 1.0]),
    reml=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_lean_steps_over_several_chunks_give_the_general_fit(
    n_groups, chunk, slope_sd, reml, seed, monkeypatch
):
    """The groups held in several chunks (as a block of more than
    ``GROUP_CHUNK`` groups is): the steps run on the chunks' sums, and give the
    general path's fit."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    _numpy_kernels_chosen(monkeypatch)
    df = make_data(n_groups=n_groups, max_size=12, slope_sd=slope_sd, seed=seed)
    fast, runs = _fit(df, 2, reml, True, monkeypatch)
    slow, none = _fit(df, 2, reml, False, monkeypatch)
    assert runs and not none
    _assert_same_fit(fast, slow)


@pytest.mark.parametrize("chunk", [None, 16])
def test_compiled_kernels_chosen_for_several_chunks_take_the_general_path(chunk, monkeypatch):
    """Where the kernels' choice is the compiled ones (numba loaded, or worth loading
    for the block), a block of several chunks runs the general path; one chunk keeps
    the lean steps."""
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    monkeypatch.setattr(kernels.compiled, "backend", lambda n_groups, r, kernel="step": "numba")
    df = make_data(n_groups=40, max_size=10, seed=4)
    _, runs = _fit(df, 2, True, True, monkeypatch)
    assert bool(runs) == (chunk is None)


def test_many_groups_take_the_general_path(monkeypatch):
    """Fixed rows over :data:`~dmixed.fit.lean.LEAN_ROWS_BYTES`: the general path."""
    monkeypatch.setattr(lean, "LEAN_ROWS_BYTES", 1000)
    df = make_data(n_groups=40, max_size=10, seed=4)
    fast, runs = _fit(df, 2, True, True, monkeypatch)
    slow, _ = _fit(df, 2, True, False, monkeypatch)
    assert not runs
    assert np.array_equal(fast["params"], slow["params"])


def test_lean_steps_run_on_the_common_fit(monkeypatch):
    """They do run where they apply (else the property test compares nothing), and
    the fit's evaluations are counted as the general path counts them."""
    df = make_data(n_groups=80, max_size=12, seed=3)
    fast, runs = _fit(df, 2, True, True, monkeypatch)
    slow, _ = _fit(df, 2, True, False, monkeypatch)
    assert runs and all(runs)
    _assert_same_fit(fast, slow)
    assert fast["n_evals"] == slow["n_evals"]


@settings(max_examples=25, **QUICK)
@given(
    n_groups=st.integers(10, 300),
    max_size=st.integers(2, 30),
    intercept_sd=st.sampled_from([0.0, 1e-4, 1e-3, 0.3, 1.0, 5.0]),
    reml=st.booleans(),
    weights=st.sampled_from([0.0, 1.0, 1e6, 1e-6]),
    offset=st.sampled_from([0.0, 1e9]),
    chunk=st.sampled_from([None, 7]),
    seed=st.integers(0, 2**16),
)
def test_lean_steps_give_the_general_fit_of_a_random_intercept(
    n_groups, max_size, intercept_sd, reml, weights, offset, chunk, seed, monkeypatch
):
    """``q = 1`` (a random intercept): random models (groups of unequal size, some of one
    row, the variance near or at the boundary, REML and ML, weights, a column offset by
    1e9, the groups in one chunk or several): the general path's fit."""
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
        _numpy_kernels_chosen(monkeypatch)
    df = make_data(
        n_groups=n_groups,
        min_size=1,
        max_size=max_size,
        slope_sd=0.0,
        intercept_sd=intercept_sd,
        seed=seed,
    )
    df["x2"] = df["x2"] + offset
    fast, runs = _fit(df, 1, reml, True, monkeypatch, weights)
    slow, none = _fit(df, 1, reml, False, monkeypatch, weights)
    assert not none
    _assert_same_fit(fast, slow)


def test_lean_steps_run_on_a_random_intercept(monkeypatch):
    """They run on ``q = 1`` (else the property test compares nothing), with the
    general path's evaluation count."""
    df = make_data(n_groups=80, max_size=12, seed=3)
    fast, runs = _fit(df, 1, True, True, monkeypatch)
    slow, _ = _fit(df, 1, True, False, monkeypatch)
    assert runs and all(runs)
    _assert_same_fit(fast, slow)
    assert fast["n_evals"] == slow["n_evals"]


@pytest.mark.parametrize("q", [3])
def test_other_widths_take_the_general_path(q, monkeypatch):
    """``q = 3``: not the case they cover; the general path, unchanged."""
    df = make_data(n_groups=40, max_size=10, seed=q)
    fast, runs = _fit(df, q, True, True, monkeypatch)
    slow, _ = _fit(df, q, True, False, monkeypatch)
    assert not runs
    assert np.array_equal(fast["params"], slow["params"])


@pytest.mark.parametrize(
    "kw",
    [dict(free=[1, 0, 1]), dict(method="bfgs"), dict(start_params=[1.0, 0.0, 0.5])],
)
def test_handover_cases_agree(kw, monkeypatch):
    """A ``free`` mask (the general path), a quasi-Newton method first and a given
    start (the lean steps in the polish only): the general path's fit."""
    df = make_data(n_groups=50, max_size=10, seed=11)
    fast, runs = _fit(df, 2, True, True, monkeypatch, **kw)
    slow, _ = _fit(df, 2, True, False, monkeypatch, **kw)
    if "free" in kw:
        assert not runs
    _assert_same_fit(fast, slow)


def test_numba_forced_takes_the_general_path(monkeypatch):
    """``DMIXED_KERNELS=numba`` asks for the compiled kernels: the lean steps stand back."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    pytest.importorskip("numba")
    df = make_data(n_groups=20, max_size=8, seed=5)
    _, runs = _fit(df, 2, True, True, monkeypatch)
    assert not runs


@settings(max_examples=300)
@given(
    theta=st.one_of(st.floats(-1.0, 1e6), st.sampled_from([0.0, 1e-300, 5e-324, 1e300])),
    grad=st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1e300, -1e300])),
    curvature=st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -1e-300, 1e300])),
    shift=st.sampled_from([0.0, 1e-3, 0.2, 5.0]),
    shifted=st.booleans(),
    fraction=st.sampled_from([1.0, 0.5, 2.0**-10]),
)
def test_scalar_step_is_newton_step_bit_for_bit(theta, grad, curvature, shift, shifted, fraction):
    """The 1 × 1 step written out gives :func:`newton_step`'s decrement and trial points
    bit for bit (any variance, gradient, curvature and shift; the plain log scale
    without ``shifted``), and None where that steps in θ itself or gives no step."""
    hess = np.array([[curvature]])
    c = np.array([shift if shifted else 0.0])
    ours = scalar_step(np.array([theta]), np.array([grad]), hess, c)
    with np.errstate(all="ignore"):
        theirs = newton_step(
            Layout(k_re=1, vc_widths=()),
            np.ones(1, dtype=bool),
            np.array([theta]),
            np.array([grad]),
            hess,
            modified_newton_step,
            c,
            shifted,
        )
    if ours is None:
        assert theirs is None or not theta > 0.0
        return
    assert theirs is not None
    assert ours.rise == theirs.rise
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(ours.point(fraction), theirs.point(fraction))


@pytest.mark.parametrize("n", [2, 3])
def test_singular_is_the_eigenvalue_test(n):
    """A 2 × 2 or 3 × 3 curvature is singular exactly where the share of its smallest
    absolute eigenvalue is at most :data:`~dmixed.fit.lean.SINGULAR_CURVATURE` (those
    shown definite by their minors without eigenvalues too): definite, indefinite and
    nearly singular matrices of scales 1e±100, shares about the threshold among them."""
    rng = np.random.default_rng(n)
    for i in range(3000):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        values = -(10.0 ** rng.uniform(-12, 0, size=n))
        if i % 4 == 0:
            values[-1] = -values[-1]  # indefinite
        if i % 4 == 1:
            values[-1] = values[0] * 1e-8 * rng.uniform(0.5, 2.0)  # about the threshold
        hess = (q * values) @ q.T * 10.0 ** rng.uniform(-100, 100)
        hess = 0.5 * (hess + hess.T)
        size = np.abs(np.linalg.eigvalsh(hess))
        expected = bool(size.min() <= lean.SINGULAR_CURVATURE * size.max())
        assert singular(hess) == expected


@pytest.mark.parametrize("value", [1.0, -2.5, 1e-300, 0.0, np.inf, np.nan])
def test_singular_of_one_entry_is_its_eigenvalue_test(value):
    """A 1 × 1 curvature is singular exactly where its eigenvalue test says so."""
    hess = np.array([[value]])
    with np.errstate(all="ignore"):
        size = np.abs(np.linalg.eigvalsh(hess)) if np.isfinite(value) else None
    expected = size is None or bool(size.min() <= lean.SINGULAR_CURVATURE * size.max())
    assert singular(hess) == expected


#: :func:`block_step`'s cases: Ψ* = LL' + ridge I (``factor`` L's entries), a gradient,
#: a negative definite curvature −RR' − 1e-6 I (``curvature`` R's entries) and shifts
_BLOCK_CASES = dict(
    factor=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3),
    ridge=st.sampled_from([1e-8, 1e-3, 1.0]),
    grad=st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    curvature=st.lists(st.floats(-3.0, 3.0), min_size=9, max_size=9),
    shift=st.lists(st.sampled_from([0.0, 1e-3, 0.2, 5.0]), min_size=3, max_size=3),
)


def _block_case(factor, ridge, curvature) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Ψ*, θ = vech_lt(Ψ*), hess)`` of a case of :data:`_BLOCK_CASES`."""
    lmat = np.array([[factor[0], 0.0], [factor[1], factor[2]]])
    psi = lmat @ lmat.T + ridge * np.eye(2)
    root = np.array(curvature).reshape(3, 3)
    hess = -(root @ root.T) - 1e-6 * np.eye(3)
    return psi, np.array([psi[0, 0], psi[1, 0], psi[1, 1]]), hess


@settings(max_examples=300)
@given(**_BLOCK_CASES, fraction=st.sampled_from([1.0, 0.5, 2.0**-10]))
def test_block_step_is_newton_step_bit_for_bit(factor, ridge, grad, curvature, shift, fraction):
    """The 2 × 2 step written out gives :func:`newton_step`'s decrement and trial points
    bit for bit (a positive definite Ψ*, any gradient, curvature and shifts)."""
    _, theta, hess = _block_case(factor, ridge, curvature)
    ours = block_step(theta, np.array(grad), hess, np.array(shift))
    theirs = newton_step(
        Layout(k_re=2, vc_widths=()),
        np.ones(3, dtype=bool),
        theta,
        np.array(grad),
        hess,
        modified_newton_step,
        np.array(shift),
        True,
    )
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    assert ours.rise == theirs.rise
    np.testing.assert_array_equal(ours.point(fraction), theirs.point(fraction))


@pytest.mark.parametrize("seed", [6, 18])
def test_explicit_method_starts_from_the_objectives_own_evaluation(seed, monkeypatch):
    """An explicit quasi-Newton method from the moment start (timestamps and revenue in
    the columns): the start's evaluation is the general path's own, so its iterations,
    and the fit, are the general path's."""
    df = make_data(n_groups=30, max_size=8, seed=seed)
    df["x1"] = df["x1"] * 1e-3 + 1.7e9
    df["y"] = df["y"] + 1e6
    fast, _ = _fit(df, 2, False, True, monkeypatch, method="cg")
    slow, _ = _fit(df, 2, False, False, monkeypatch, method="cg")
    _assert_same_fit(fast, slow)


@pytest.mark.parametrize("kw", [{}, dict(start_params=[1.0, 0.0, 0.5])])
@pytest.mark.parametrize("seed", [2, 3])
def test_rank_deficient_random_design_takes_the_general_path(seed, kw, monkeypatch):
    """Three groups, each with its slope column constant (``Z_i`` of rank 1): ℓ is flat
    to rounding along a direction of ``cov_re`` (a singular Hessian), where sums added in
    another order would end the steps elsewhere on the ridge; the general path's fit."""
    df = make_data(n_groups=3, min_size=2, max_size=10, seed=seed)
    df["x1"] = df.groupby("g")["x1"].transform("mean")
    fast, _ = _fit(df, 2, True, True, monkeypatch, **kw)
    slow, _ = _fit(df, 2, True, False, monkeypatch, **kw)
    _assert_same_fit(fast, slow)


@settings(max_examples=200, **QUICK)
@given(
    values=st.lists(
        st.sampled_from([0.0, -0.0, 1.0, -2.5, 1e-300, 3e300, np.inf, -np.inf, np.nan])
        | st.floats(-1e3, 1e3),
        min_size=9,
        max_size=9,
    )
)
def test_shift_of_is_log_shift_bit_for_bit(values):
    """The shifts in floats are :func:`~dmixed.fit.newton_coords.log_shift`'s, bit for
    bit (zeros of either sign, infinities and NaN among θ and the traces)."""
    from dmixed.fit.lean import shift_of
    from dmixed.fit.newton_coords import log_shift

    theta, trace_s, trace_ss = (np.array(values[i : i + 3]) for i in (0, 3, 6))
    with np.errstate(all="ignore"):
        want = log_shift(theta, trace_s, trace_ss)
        ours = shift_of(theta, trace_s, trace_ss)
    assert ours.tobytes() == want.tobytes()


#: E_j of vech(Ψ*) for r = 2 (the lean steps' basis: each sum of full_sums 8 wide), of
#: one diagonal entry (2 wide: summed one after another) and of all four entries (32
#: wide: numpy's eight running sums)
_BASES = {
    "vech": [[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]],
    "one": [[[1, 0], [0, 0]]],
    "all": [[[1, 1], [1, 1]], [[0, 0], [0, 1]]],
}


def _moments_and_profile(p: int, reml: bool, near_singular: bool, offset: float, seed: int):
    """Moments (``va``, ``C``) of random per-group rows and the profile of a random
    ``[X y]'V*⁻¹[X y]`` with ``p`` fixed effects (``A`` and ``b`` as views of it, as
    :meth:`LeanSteps.profile` makes them; the first column offset by ``offset``; ``A``
    near singular where asked: two columns that differ by 1e-6 of each entry), and
    ``Q(0)``."""
    from dmixed.fit.objective import Profile

    rng = np.random.default_rng(seed)
    k = p + 1
    n_groups = 40
    rows = rng.normal(size=(2 * k + 3, n_groups))
    rows[2 * k :] = np.abs(rows[2 * k :])
    va = rows @ rows.T
    v, s = rows[: 2 * k], rows[2 * k :]
    c = (v[:, None, :] * s[None]).reshape(6 * k, n_groups) @ v.T
    design = rng.normal(size=(3 * k + 5, k))
    design[:, 0] += offset
    if near_singular and p >= 2:  # A's condition number 1e12 and more
        design[:, p - 1] = design[:, p - 2] * (1.0 + 1e-6 * rng.normal(size=design.shape[0]))
    t = design.T @ design
    a, b = t[:p, :p], t[:p, p]
    a_inv = np.linalg.inv(a) if p else np.zeros((0, 0))
    beta = a_inv @ b
    q = float(t[p, p] - b @ beta)
    fac = float(3 * k + 5 - (p if reml else 0))
    return va, c, Profile(a, b, a_inv, 0.0, beta, q, fac, None), float(t[p, p])


@called
@settings(max_examples=120, **QUICK)
@given(
    p=st.sampled_from([0, 1, 2, 5]),
    reml=st.booleans(),
    basis=st.sampled_from(sorted(_BASES)),
    near_singular=st.booleans(),
    offset=st.sampled_from([0.0, 10.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_hessian_of_moments_in_c_is_numpys(p, reml, basis, near_singular, offset, seed):
    """The extension's ``profiled_hessian`` against the numpy formulas of
    :func:`~dmixed.fit.lean.hessian_of_moments`: the moments' sums and what only
    scales them (the β rows, ``tr(S E_j S E_j)``) bit for bit, the rest (products with
    ``A⁻¹`` in another order than BLAS's) to 1e-12 of each array's largest entry (of
    the terms of the β block it eliminates, where those are larger)."""
    va, c, prof, q0 = _moments_and_profile(p, reml, near_singular, offset, seed)
    e = np.array(_BASES[basis], dtype=np.float64)
    ref = lean.hessian_of_moments(va, c, prof, e, q0, reml)
    ours = lean.hessian_of_moments(va, c, prof, e, q0, reml, kernels.native.extension())
    assert ref is not None and ours is not None
    np.testing.assert_array_equal(ours[0][:p], ref[0][:p])
    np.testing.assert_array_equal(ours[0][:, :p], ref[0][:, :p])
    np.testing.assert_array_equal(ours[2], ref[2])
    # the profiled Hessian is H_θθ less the β block eliminated, H_θβ H_ββ⁻¹ H_βθ: near
    # a singular A its terms nearly cancel, and its rounding is that of their sizes
    hess = ref[0]
    eliminated = np.zeros(0)
    if p:
        left = np.abs(np.linalg.solve(hess[:p, :p], hess[:p, p:]).T)
        eliminated = left @ np.abs(hess[:p, p:])
    for mine, theirs in zip(ours[:2], ref[:2], strict=True):
        scale = max(float(np.abs(theirs).max()), float(np.abs(eliminated).max(initial=0.0)))
        assert float(np.abs(mine - theirs).max()) <= 1e-12 * scale
        np.testing.assert_array_equal(mine, mine.T)


@called
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("reml", [True, False])
def test_hessian_of_moments_not_finite_is_none_in_c_as_in_numpy(bad, reml):
    """A moment that is not finite (``Σ u_0 u_0``): no Hessian either way (the steps
    hand over)."""
    va, c, prof, q0 = _moments_and_profile(2, reml, False, 0.0, 1)
    va[2, 2] = bad
    e = np.array(_BASES["vech"], dtype=np.float64)
    with np.errstate(all="ignore"):
        assert lean.hessian_of_moments(va, c, prof, e, q0, reml) is None
    assert lean.hessian_of_moments(va, c, prof, e, q0, reml, kernels.native.extension()) is None


def _lean_of(df, p: int, reml: bool, offset: float) -> LeanSteps:
    """The lean steps of ``y + offset`` on ``p`` fixed-effects columns (1, x1,
    x2 + offset, x1 x2) with a random intercept and slope on x1, arrays in (no
    ``re_map``)."""
    from dmixed.fit.coordinates import Coordinates
    from dmixed.fit.profiled import ProfiledObjective

    x1, x2 = np.asarray(df["x1"]), np.asarray(df["x2"]) + offset
    exog = np.column_stack([np.ones(len(df)), x1, x2, x1 * x2])[:, :p]
    model = dmixed.MixedLM(
        np.asarray(df["y"], dtype=np.float64) + offset,
        exog,
        np.asarray(df["g"]),
        exog_re=np.column_stack([np.ones(len(df)), x1]),
    )
    stats = model.statistics()
    coords = Coordinates.model(stats.columns, stats.layout)
    obj = ProfiledObjective(stats.engine, stats.glob, stats.layout, reml, True, coords.re_map)
    steps = LeanSteps.of(obj)
    assert steps is not None
    return steps


@called
@settings(max_examples=100, **QUICK)
@given(
    p=st.sampled_from([1, 2, 3]),
    reml=st.booleans(),
    offset=st.sampled_from([0.0, 1e4]),
    scale=st.sampled_from([1e-4, 1.0, 1e3]),
    kind=st.sampled_from(["data", "data", "resolved", "unresolved", "singular"]),
    seed=st.integers(0, 2**16),
)
def test_evaluate_fused_is_the_formulas(p, reml, offset, scale, kind, seed):
    """The extension's whole evaluation (:meth:`LeanSteps.evaluate_fused`) against
    :meth:`LeanSteps.evaluate`'s numpy formulas: the same rejection and
    ``Σ ZXy'P ZXy`` to rounding; and on that sum of its own, the profile, ℓ and the rows
    at ``w`` bit for bit, the score to rounding (its products in another order)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        df = make_data(n_groups=40, min_size=1, max_size=12, seed=seed)
        steps = _lean_of(df, p, reml, offset)
        fused = steps._fused
        if fused is None:  # the block in several chunks
            return
        rng = np.random.default_rng(seed)
        packed = scale * np.array([rng.uniform(0.1, 2.0), rng.normal(), rng.uniform(0.0, 2.0)])
        if kind == "singular":  # A not positive definite: ℓ not defined
            steps._xyxy = steps._xyxy.copy()
            steps._xyxy[0, 0] = -1.0
        elif kind != "data":
            # the resolution test's bound at 0.1% of its sums (_lean_share): the bound
            # fails, the sums pass it (or not)
            steps._fused = None
            there, _ = steps.evaluate(packed)
            assert there.prof is not None and there.step is not None
            ratio = _lean_share(steps, there.prof, there.step.m)
            monkeypatch.setattr(
                lean, "RESOLUTION_LIMIT", ratio * (1.001 if kind == "resolved" else 0.999)
            )
            steps._fused = fused
        ours, ours_unresolved = steps.evaluate(packed)
        steps._fused = None
        ref, ref_unresolved = steps.evaluate(packed)
        assert ref_unresolved == (kind == "unresolved")
        assert (ref.prof is None) == (kind in ("singular", "unresolved"))
        assert ours_unresolved == ref_unresolved
        assert (ours.prof is None) == (ref.prof is None)
        if ref.prof is None:
            assert ours.llf == ref.llf == -np.inf
            return
        assert ours.step is not None and ref.step is not None and ours.prof is not None
        for name in ("m", "s"):
            mine, theirs = getattr(ours.step, name), getattr(ref.step, name)
            assert float(np.abs(mine - theirs).max()) <= 1e-12 * float(np.abs(theirs).max()), name
        assert ours.step.logdet == ref.step.logdet
        np.testing.assert_array_equal(ours.step.inv_d[0], ref.step.inv_d[0])
        # the numpy formulas on the extension's own Σ ZXy'P ZXy (A, b and Q, differences of
        # [X y]'[X y] and it, carry its rounding far where they nearly cancel)
        data, made = steps.data, ours.step.m

        def step_with_its_m(lam):
            out = type(data).step(data, lam)
            out.m = made
            return out

        monkeypatch.setattr(data, "step", step_with_its_m)
        same, _ = steps.evaluate(packed)
        assert same.prof is not None and same.step is not None
        for name in ("a", "b", "a_inv", "beta", "q", "logdet_a", "w"):
            np.testing.assert_array_equal(getattr(ours.prof, name), getattr(same.prof, name), name)
        assert ours.llf == same.llf
        np.testing.assert_array_equal(ours.step.va, same.step.va)
        assert ours.step.rows is not None and same.step.rows is not None
        np.testing.assert_array_equal(ours.step.rows[0], same.step.rows[0])
        # ∂ℓ/∂Ψ* = −½ Σ S + the products of va's entries with the weights: to the rounding
        # of the larger of their sizes
        terms = np.abs(same.step.va.take(steps._score_at)) @ np.abs(steps._score_weights)
        size = max(float(np.abs(same.step.s).max()), float(terms.max()))
        assert ours.d_psi is not None and same.d_psi is not None
        for mine, theirs in ((ours.d_psi, same.d_psi), (ours.grad, same.grad)):
            assert float(np.abs(mine - theirs).max()) <= 1e-12 * size
        size_score = size * max(1.0, float(np.abs(packed).max()))
        assert float(np.abs(ours.score - same.score).max()) <= 1e-12 * size_score


@built
def test_the_steps_call_the_extension_their_statistics_chose(monkeypatch):
    """``DMIXED_NATIVE`` set to ``numpy`` (by another thread) after the statistics chose
    the extension and before the steps were made: the steps keep the statistics' choice
    (a second reading of the switch once left :meth:`LeanSteps.evaluate_fused` without
    the extension, an ``AssertionError``), and evaluate as the numpy formulas do."""
    from dmixed.kernels.dense2 import Dense2Statistics

    monkeypatch.setenv(kernels.native.ENV_VAR, "auto")
    made = Dense2Statistics.of_chunks.__func__

    def then_numpy(cls, chunks):
        out = made(cls, chunks)
        monkeypatch.setenv(kernels.native.ENV_VAR, "numpy")
        return out

    monkeypatch.setattr(Dense2Statistics, "of_chunks", classmethod(then_numpy))
    steps = _lean_of(make_data(n_groups=40, seed=1), 2, True, 0.0)
    assert steps.data.uses_extension and steps._fused is not None
    packed = np.array([1.0, 0.1, 0.5])
    ours, unresolved = steps.evaluate(packed)
    steps._fused = None
    ref, _ = steps.evaluate(packed)
    assert not unresolved and ours.prof is not None
    assert abs(ours.llf - ref.llf) <= 1e-12 * abs(ref.llf)


@called
@settings(max_examples=300)
@given(**_BLOCK_CASES)
def test_block_terms_in_c_are_numpys(factor, ridge, grad, curvature, shift):
    """:func:`~dmixed.fit.lean.block_terms` in the extension against its numpy products:
    to 1e-12 of the sizes of their terms; and so :func:`block_step`'s step, through
    the same direction, to rounding where the curvature is far from singular."""
    psi, theta, hess = _block_case(factor, ridge, curvature)
    g = np.array(grad)
    ext = kernels.native.extension()
    x0, d0 = psi[0, 0] + shift[0], psi[0, 0]
    big_l, x1 = psi[1, 0] / psi[0, 0], psi[1, 1] + shift[2]
    ours = lean.block_terms(g, hess, x0, big_l, d0, x1, ext)
    theirs = lean.block_terms(g, hess, x0, big_l, d0, x1)
    jac = np.abs(np.array([[x0, 0, 0], [x0 * big_l, d0, 0], [x0 * big_l**2, 2 * d0 * big_l, x1]]))
    second = (np.abs(g).sum() + 1.0) * (x0 + d0 + x1) * (1.0 + big_l**2 + x0 / d0)
    sizes = (float((jac.T @ np.abs(g)).max()), float((jac.T @ np.abs(hess) @ jac).max() + second))
    for mine, ref, size in zip(ours, theirs, sizes, strict=True):
        assert float(np.abs(mine - ref).max()) <= 1e-12 * size
    np.testing.assert_array_equal(ours[1], ours[1].T)
    step = block_step(theta, g, hess, np.array(shift), ext)
    ref_step = block_step(theta, g, hess, np.array(shift))
    assert (step is None) == (ref_step is None)
    if step is None or ref_step is None:
        return
    evals = np.abs(np.linalg.eigvalsh(theirs[1]))
    if evals.min() > 1e-6 * evals.max():
        np.testing.assert_allclose(step.delta, ref_step.delta, rtol=1e-8, atol=1e-8)


#: Points where ``A = X'V*⁻¹X`` is singular to the rounding of its entries (a random
#: intercept and slope variance near 1e16 at correlation −1 makes the fixed intercept and
#: slope indistinguishable): the extension, numpy and the general path gave ℓ 0.1 to 30
#: units apart there, and from the value of the rows in extended precision, all accepted
#: as resolved (seed of ``make_data``, p, REML, packed Λ)
_SINGULAR_A = [
    (2, 2, True, (1e6, -1e8, 1e-3)),
    (2, 2, True, (1e8, -1e8, 1e-3)),
    (2, 2, False, (1e8, -1e8, 1.0)),
    (1, 3, False, (1e7, -1e8, 1.0)),
    (1, 3, True, (1e7, -1e8, 1.0)),
    (2, 3, True, (1e9, -1e8, 1.0)),
]


@pytest.mark.parametrize(("seed", "p", "reml", "point"), _SINGULAR_A)
def test_points_whose_a_is_singular_to_rounding_are_refused_by_every_path(seed, p, reml, point):
    """The factor's share of the resolution test
    (:func:`~dmixed.fit.objective.factor_resolution`): the lean steps (the extension's
    whole evaluation where it is built, and numpy's) reject each point as unresolved,
    and so does the general path."""
    steps = _lean_of(make_data(n_groups=40, min_size=1, max_size=12, seed=seed), p, reml, 0.0)
    packed = np.array(point)
    fused = steps._fused
    if fused is not None:
        ours, unresolved = steps.evaluate(packed)
        assert unresolved and ours.prof is None and ours.llf == -np.inf
    steps._fused = None
    ref, unresolved = steps.evaluate(packed)
    assert unresolved and ref.prof is None and ref.llf == -np.inf
    # the general path: unresolved, or A not positive definite in its own sums (the
    # compiled kernels', where numba is loaded, round otherwise than numpy's)
    ev = steps.obj.evaluate(packed)
    assert ev.prof is None and ev.llf == -np.inf


#: Points where ``Q`` is resolved but ``A``'s factor is not (the resolution plus the
#: factor's share 1.1e-5 to 1.2e-5, ``K`` 2e-3 to 3e-3: REML's ``log|A|``): ℓ known to
#: about 3e-3 units (seed, p, REML, packed Λ)
_FACTOR_ONLY = [
    (0, 3, True, (1e6, 1.0, 1.0)),
    (0, 1, True, (1e6, -1.0, 1.0)),
    (1, 3, True, (1e6, 0.0, 1e-3)),
]


@pytest.mark.parametrize(("seed", "p", "reml", "point"), _FACTOR_ONLY)
def test_a_point_whose_factor_is_not_resolved_is_accepted_as_a_start_alone(seed, p, reml, point):
    """:func:`~dmixed.fit.objective.out_of_resolution`'s ``start``: the extension, numpy
    and the general path refuse such a point as one the optimizer moves to (a trial
    point), and accept it as one of the objective's starts, with the same ℓ to what the
    test promises there ((f/2) times the resolution and the factor's share)."""
    steps = _lean_of(make_data(n_groups=40, min_size=1, max_size=12, seed=seed), p, reml, 0.0)
    obj, packed = steps.obj, np.array(point)
    fused = steps._fused
    values = []
    for path in ("c", "numpy"):
        if path == "c" and fused is None:
            continue
        steps._fused = fused if path == "c" else None
        obj.starts.clear()
        ours, unresolved = steps.evaluate(packed)
        assert unresolved and ours.prof is None
        obj.add_start(packed)
        ours, unresolved = steps.evaluate(packed)
        assert not unresolved and ours.prof is not None
        values.append(ours)
    steps._fused = fused
    obj.starts.clear()
    assert obj.evaluate(packed).prof is None  # the general path, not a start
    obj.add_start(packed)
    ev = obj.evaluate(packed)
    assert ev.prof is not None
    ref = values[-1]
    promise = _promise(steps, ref)
    assert promise <= 0.5 * ref.prof.fac * 1e-4  # the factor's share: over the limit, not far
    for other in (*values, ev):
        assert abs(other.llf - ref.llf) <= max(1e-9 * abs(ref.llf), 2.0 * promise)


def _lean_share(steps: LeanSteps, prof, m: np.ndarray) -> float:
    """:func:`~dmixed.fit.objective.resolution` plus
    :func:`~dmixed.fit.objective.factor_resolution` as :meth:`LeanSteps.verdict`
    sums them (``S = |[X y]'[X y]| + |m|``, ``|δ'Aδ| = |T_pp − Q|``)."""
    eps = float(np.finfo(float).eps)
    p = prof.beta.size
    big_s = steps._abs_xyxy + np.abs(m)
    abs_w, abs_inv = np.abs(prof.w), np.abs(prof.a_inv)
    root = np.sqrt(np.abs(np.diagonal(prof.a)))
    made = abs((steps._xyxy_pp - m[p, p]) - prof.q)
    r = eps * (big_s[:p] @ abs_w)
    share = eps * float(abs_w @ big_s @ abs_w) + eps * float(root @ abs_inv @ root) * made
    share += float(r @ abs_inv @ r)
    if steps.obj.reml:
        share += eps * float((abs_inv * big_s[:p, :p]).sum()) * prof.q / prof.fac
    return share / prof.q


def _promise(steps: LeanSteps, point) -> float:
    """What the resolution test promises of ℓ at the lean point ``point``: off by about
    (f/2)(resolution + the factor's share)."""
    return 0.5 * point.prof.fac * _lean_share(steps, point.prof, point.step.m)


@called
@settings(max_examples=150, **QUICK)
@given(
    p=st.sampled_from([1, 2, 3]),
    reml=st.booleans(),
    seed=st.integers(0, 2**16),
    size=st.floats(-2.0, 9.0),
    corr=st.sampled_from([-1.0, -0.999999, -0.99, 0.0, 0.99, 1.0]),
    tail=st.floats(-3.0, 6.0),
    exact_family=st.booleans(),
)
def test_accepted_points_near_a_singular_psi_agree_in_c_and_numpy(
    p, reml, seed, size, corr, tail, exact_family
):
    """Near a singular Ψ* (variances up to 1e18, correlations at and near ±1; or the
    family l10 = −1e8 where ``A`` was found singular to rounding): where the extension
    and numpy both accept a point, the resolution test's promise holds there (ℓ off by
    (f/2) times the resolution and the factor's share, within the limit), and their ℓ
    agree to 1e-9 relative or, where it promises less (up to 1e-3 units at the limit),
    to that promise."""
    steps = _lean_of(make_data(n_groups=40, min_size=1, max_size=12, seed=seed), p, reml, 0.0)
    if steps._fused is None:
        return
    l00 = 10.0**size
    l10 = -1e8 if exact_family else corr * l00
    packed = np.array([l00, l10, 10.0**tail])
    ours, ours_unresolved = steps.evaluate(packed)
    fused, steps._fused = steps._fused, None
    ref, ref_unresolved = steps.evaluate(packed)
    steps._fused = fused
    if ours.prof is None or ref.prof is None:
        return
    promise = _promise(steps, ref)
    # accepted: the promise is within the test's limit (ℓ off by at most about
    # (f/2) RESOLUTION_LIMIT), and the two ℓ within it
    assert promise <= 0.5 * ref.prof.fac * lean.RESOLUTION_LIMIT * (1.0 + 1e-6)
    gap = abs(ours.llf - ref.llf)
    assert gap <= max(1e-9 * abs(ref.llf), 2.0 * promise), (gap, ours.llf, ref.llf)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_score_entries_are_the_positions_of_the_uu_and_gg_sums(k):
    """Every entry where the docstring puts it: ``u_a u_b`` first, then ``G_ax G_by``
    x-major, for (a, b) = (0, 0), (1, 0), (1, 1), in a (2 k + 3)² entry-major table."""
    p, n = k - 1, 2 * k + 3
    got = lean.score_entries(k)
    assert got.shape == (3, 1 + p * p) and got.dtype == np.intp and not got.flags.writeable
    for row, (a, b) in zip(got, ((0, 0), (1, 0), (1, 1)), strict=True):
        assert divmod(int(row[0]), n) == (a * k + p, b * k + p)
        pairs = [divmod(int(v), n) for v in row[1:]]
        assert pairs == [(a * k + x, b * k + y) for x in range(p) for y in range(p)]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_score_entries_are_made_once_per_k(k):
    """The positions every fit's lean steps read are made once per ``k`` and shared:
    the same read-only array on every call, the positions a fresh construction gives."""
    first = lean.score_entries(k)
    assert lean.score_entries(k) is first and not first.flags.writeable
    fresh = lean.score_entries.__wrapped__(k)
    assert fresh is not first and np.array_equal(fresh, first) and fresh.dtype == first.dtype
    with pytest.raises(ValueError):
        first[0, 0] = 0  # shared: no caller can change another fit's positions
