"""The compiled (numba) step kernels against the numpy reference, and the switch."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed import kernels
from dmixed.kernels import compiled

from .._synth import QUICK, make_data

pytest.importorskip("numba")

RTOL = 1e-12


def _statistics(rng, n_groups: int, r: int, k: int, one_row: float):
    """Per-group ``zz`` (G, r, r), ``zxy`` (G, r, k) of groups of 1–6 rows (a share
    ``one_row`` of them with one row: rank-one ``zz``); some groups miss the last
    column (a zero slot, as a variance component's padding)."""
    rows = np.where(rng.random(n_groups) < one_row, 1, rng.integers(2, 7, n_groups))
    zz = np.zeros((n_groups, r, r))
    zxy = np.zeros((n_groups, r, k))
    for i, n_i in enumerate(rows):
        z = rng.normal(size=(n_i, r))
        if r > 1 and rng.random() < 0.2:
            z[:, -1] = 0.0
        xy = rng.normal(size=(n_i, k))
        zz[i] = z.T @ z
        zxy[i] = z.T @ xy
    return zz, zxy


def _lam(rng, r: int, q: int, log_cond: float) -> np.ndarray:
    """A Λ of condition about ``10**log_cond``: lower triangular on the ``exog_re``
    block, diagonal on the variance-component slots."""
    lam = np.tril(rng.normal(size=(r, r)))
    lam[np.diag_indices(r)] = 10.0 ** rng.uniform(-log_cond / 2, log_cond / 2, r)
    lam[q:, :] = 0.0
    lam[q:, q:] = np.diag(10.0 ** rng.uniform(-log_cond / 2, log_cond / 2, r - q))
    return lam


def _both(monkeypatch, block, lam, q, kernel=None):
    """The step sums (or ``kernel(block, lam)``) through numpy and through numba."""
    out = {}
    for which in ("numpy", "numba"):
        monkeypatch.setenv(compiled.ENV_VAR, which)
        out[which] = kernel(block, lam) if kernel else kernels.step_contributions(block, lam, q)
    return out["numpy"], out["numba"]


def _basis(r: int, q: int) -> np.ndarray:
    """``E_j`` (m, r, r): the ``q(q+1)/2`` entries of an unstructured ``Ψ`` on the
    ``exog_re`` block, then variance components over the slots ``q … r − 1`` (slots
    alternating between two components, so that one ``E_j`` has several entries)."""
    out = []
    for a, c in zip(*np.tril_indices(q), strict=True):
        e = np.zeros((r, r))
        e[a, c] = e[c, a] = 1.0
        out.append(e)
    for comp in range(min(2, r - q)):
        out.append(np.diag([1.0 if a >= q and (a - q) % 2 == comp else 0.0 for a in range(r)]))
    return np.array(out).reshape(-1, r, r)


def _assert_close(ref, got, rtol):
    """Each field (of a :class:`~dmixed.kernels.StepSums` or
    :class:`~dmixed.kernels.HessianSums`) to ``rtol`` relative to the field's largest
    entry (the sums over groups of the off-diagonal entries may cancel, so entry-wise
    relative error is not the measure; the fit uses each field as a whole)."""
    for name in ref.__dataclass_fields__:
        if isinstance(getattr(ref, name), bool):  # a flag (StepSums.rank_one): the same
            assert getattr(got, name) == getattr(ref, name), name
            continue
        a, b = np.asarray(getattr(ref, name)), np.asarray(getattr(got, name))
        assert a.shape == b.shape, name
        scale = np.max(np.abs(a), initial=0.0)
        assert np.all(np.abs(a - b) <= rtol * scale), (name, np.max(np.abs(a - b)) / scale)


def _cases(rs):
    """Blocks of 1–700 groups, r in ``rs``, any share of variance-component slots, Λ of
    condition up to 1e8, none, some or all groups with one row."""
    return given(
        r=st.sampled_from(rs),
        q_share=st.floats(0, 1),
        seed=st.integers(0, 2**16),
        log_cond=st.floats(0, 8),
        one_row=st.sampled_from([0.0, 0.3, 1.0]),
        n_groups=st.sampled_from([1, 7, 300, 700]),
    )


@settings(max_examples=40, **QUICK)
@_cases([1, 2, 3, 5])
def test_compiled_step_matches_numpy(monkeypatch, r, q_share, seed, log_cond, one_row, n_groups):
    """Every field of the step sums, over several chunks and runs, ill-conditioned Λ,
    groups of one row, variance-component slots (q < r)."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    rng = np.random.default_rng(seed)
    q = int(round(q_share * r))
    zz, zxy = _statistics(rng, n_groups, r, 4, one_row)
    lam = _lam(rng, r, q, log_cond if r <= 2 else min(log_cond, 2.0))
    ref, got = _both(monkeypatch, kernels.StatsBlock(zz, zxy), lam, q)
    _assert_close(ref, got, RTOL)


@settings(max_examples=30, **QUICK)
@given(
    k=st.integers(1, compiled.FUSED_MAX_K + 1),
    q=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    log_cond=st.floats(0, 8),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    n_groups=st.sampled_from([1, 7, 300, 700]),
)
def test_fused_step_at_two_coordinates_matches_numpy_and_the_run_kernel(
    monkeypatch, k, q, seed, log_cond, one_row, n_groups
):
    """``r = 2`` for every ``k = p + 1`` the fused pass takes (and one past it, the run
    kernel's): every field of the step sums against numpy's, and against the run
    kernel's (:func:`dmixed.kernels.jit.step`), over several chunks; the logarithms of
    the determinants, the same per-group values added in the same order, bit for bit."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    rng = np.random.default_rng(seed)
    zz, zxy = _statistics(rng, n_groups, 2, k, one_row)
    lam = _lam(rng, 2, q, log_cond)
    block = kernels.StatsBlock(zz, zxy)
    ref, got = _both(monkeypatch, block, lam, q)
    _assert_close(ref, got, RTOL)
    monkeypatch.setattr(compiled, "FUSED_MAX_K", 0)
    runs = kernels.step_contributions(block, lam, q)
    _assert_close(runs, got, RTOL)
    assert got.logdet == runs.logdet


@settings(max_examples=40, **QUICK)
@_cases([1, 2, 3, 4])
def test_compiled_hessian_and_blups_match_numpy(
    monkeypatch, r, q_share, seed, log_cond, one_row, n_groups
):
    """Every field of the Hessian sums, and the BLUPs and conditional covariances, over
    several chunks and runs: ill-conditioned Λ, groups of one row, variance-component
    slots (q < r, components spanning several slots)."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    rng = np.random.default_rng(seed)
    q = int(round(q_share * r))
    zz, zxy = _statistics(rng, n_groups, r, 4, one_row)
    lam = _lam(rng, r, q, log_cond if r <= 2 else min(log_cond, 2.0))
    basis, w = _basis(r, q), np.r_[rng.normal(size=3), 1.0]
    block = kernels.StatsBlock(zz, zxy)
    ref, got = _both(
        monkeypatch, block, lam, q, lambda b, lam: kernels.hessian_contributions(b, lam, basis, w)
    )
    _assert_close(ref, got, RTOL)
    ref, got = _both(
        monkeypatch, block, lam, q, lambda b, lam: kernels.random_effects_block(b, lam, w)
    )
    for a, b in zip(ref, got, strict=True):  # BLUPs (G, r), covariances (G, r, r)
        assert a.shape == b.shape
        assert np.all(np.abs(a - b) <= RTOL * np.max(np.abs(a), initial=0.0))


@settings(max_examples=30, **QUICK)
@given(
    r=st.sampled_from([1, 2]),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    log_cond=st.floats(0, 8),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    n_groups=st.sampled_from([1, 300, 700]),
)
def test_compiled_moment_hessian_matches_per_basis_form(
    monkeypatch, r, m, seed, log_cond, one_row, n_groups
):
    """For r ≤ 2 the compiled Hessian sums are contracted from moments of which the
    entries the contraction does not read into them are never summed: against the
    compiled per-``E_j`` form (what larger r runs) for any symmetric basis, over
    several chunks and runs."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    rng = np.random.default_rng(seed)
    zz, zxy = _statistics(rng, n_groups, r, 4, one_row)
    lam = _lam(rng, r, r, log_cond)
    basis = rng.normal(size=(m, r, r))
    basis = basis + basis.transpose(0, 2, 1)
    w = np.r_[rng.normal(size=3), 1.0]
    block = kernels.StatsBlock(zz, zxy)
    got = kernels.hessian_contributions(block, lam, basis, w)
    zeros = kernels.HessianSums.zeros(m, 3)
    outs = tuple(getattr(zeros, f) for f in zeros.__dataclass_fields__)
    ref = kernels.HessianSums(*compiled.per_basis_hessian_sums(block.chunks(), lam, basis, w, outs))
    _assert_close(ref, got, RTOL)


@pytest.mark.parametrize("r", [3, 5])
def test_compiled_general_r_ill_conditioned(monkeypatch, r):
    """For r > 2 both paths form ``S = ZZ − ZZ·P·ZZ`` from a factor of ``K`` (numpy by
    LU, the compiled one by Cholesky): they agree to about ``eps · cond(K)``, the
    accuracy of either."""
    rng = np.random.default_rng(r)
    zz, zxy = _statistics(rng, 200, r, 4, 0.3)
    lam = _lam(rng, r, r, 8.0)
    ref, got = _both(monkeypatch, kernels.StatsBlock(zz, zxy), lam, r)
    _assert_close(ref, got, 1e-6)


def test_singular_lambda_and_empty_block(monkeypatch):
    """Λ = 0 (boundary): K = I; an empty block sums to zeros, as numpy."""
    rng = np.random.default_rng(0)
    for r in (1, 2, 3):
        zz, zxy = _statistics(rng, 9, r, 3, 0.5)
        ref, got = _both(monkeypatch, kernels.StatsBlock(zz, zxy), np.zeros((r, r)), r)
        assert got.logdet == 0.0 and np.all(got.m == 0)
        _assert_close(ref, got, RTOL)
        empty = kernels.StatsBlock(np.zeros((0, r, r)), np.zeros((0, r, 3)))
        ref, got = _both(monkeypatch, empty, np.eye(r), r)
        _assert_close(ref, got, 0.0)


MODELS = {
    "intercept": ("y ~ x1 + x2", None, None),
    "slope": ("y ~ x1 + x2", "1 + x1", None),
    "vc": ("y ~ x1 + x2", "1", {"sub": "0 + C(sub)"}),
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("reml", [True, False])
def test_fit_agrees_through_both_paths(monkeypatch, model, reml):
    """The whole fit through numpy and through the compiled kernels: llf, fe_params,
    cov_re (and the variance components) to 1e-10."""
    formula, re_formula, vc_formula = MODELS[model]
    df = make_data(n_groups=80, min_size=1, max_size=12, vc_sd=0.6, seed=3)
    fits = {}
    for which in ("numpy", "numba"):
        monkeypatch.setenv(compiled.ENV_VAR, which)
        mod = dmixed.MixedLM.from_formula(
            formula, df, groups="g", re_formula=re_formula, vc_formula=vc_formula
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dmixed.DmixedWarning)
            fits[which] = mod.fit(reml=reml)
    ref, got = fits["numpy"], fits["numba"]
    assert got.llf == pytest.approx(ref.llf, rel=1e-10)
    for name in ("fe_params", "cov_re", "vcomp"):
        a, b = np.asarray(getattr(ref, name), float), np.asarray(getattr(got, name), float)
        np.testing.assert_allclose(
            b, a, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(a).max(initial=0.0))
        )


def test_backend_choice(monkeypatch):
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    assert compiled.backend(10**8, 2) == "numpy"
    monkeypatch.setenv(compiled.ENV_VAR, "NUMBA")
    assert compiled.backend(1, 2) == "numba"
    monkeypatch.setenv(compiled.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="DMIXED_KERNELS"):
        compiled.backend(1, 2)
    monkeypatch.delenv(compiled.ENV_VAR)
    monkeypatch.setattr(compiled, "numba_available", lambda: False)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    assert compiled.backend(10**8, 3) == "numpy"


def _fresh_ledger(monkeypatch) -> None:
    """The ledger of a process that has bought nothing yet."""
    monkeypatch.setitem(compiled.LEDGER, "owed_ns", 0.0)
    monkeypatch.setitem(compiled.LEDGER, "bought", False)


def test_backend_loads_numba_when_it_pays(monkeypatch):
    """numba not loaded: a fit large enough to repay the load picks it at once; smaller
    fits stay in numpy until the estimated cost of numpy reaches the load."""
    monkeypatch.delenv(compiled.ENV_VAR, raising=False)
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    _fresh_ledger(monkeypatch)
    assert compiled.backend(3 * 10**6, 2) == "numba"  # one fit repays the load
    _fresh_ledger(monkeypatch)
    assert compiled.backend(2 * 10**5, 3, "hessian") == "numba"
    _fresh_ledger(monkeypatch)
    picks = []
    for _ in range(200):  # fits of 20k groups, r = 2: 5 steps, 2 Hessians, BLUPs
        for kernel, calls in compiled.FIT_CALLS.items():
            picks += [compiled.backend(20_000, 2, kernel) for _ in range(calls)]
    first = picks.index("numba")
    assert 8 * 10 <= first < 8 * 200 and set(picks[first:]) == {"numba"}


def _one_fit(n_groups: int, r: int) -> list[str]:
    """The picks of one fit's typical calls (:data:`~dmixed.kernels.compiled.FIT_CALLS`)."""
    return [
        compiled.backend(n_groups, r, kernel)
        for kernel, calls in compiled.FIT_CALLS.items()
        for _ in range(calls)
    ]


def test_backend_buys_at_once_at_wide_r(monkeypatch):
    """Past r = 3 the compiled step's saving grows with r: a fit of 50k groups at r = 6
    or 30k at r = 8 picks the compiled kernels from its first call; at r = 5, 20k
    groups, the third fit does; at r ≤ 3 the estimate is the table's (r = 2 stays numpy
    for ten fits of that size).  The traced Hessian adds nothing past r = 3 (numpy's is
    the faster there, :data:`~dmixed.kernels.compiled.NUMPY_FROM_R`)."""
    monkeypatch.delenv(compiled.ENV_VAR, raising=False)
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    for r, n_groups in ((6, 50_000), (8, 30_000)):
        _fresh_ledger(monkeypatch)
        assert _one_fit(n_groups, r)[0] == "numba", r
    _fresh_ledger(monkeypatch)
    assert set(_one_fit(20_000, 5) + _one_fit(20_000, 5)) == {"numpy"}
    assert _one_fit(20_000, 5)[-1] == "numba"  # the ledger buys within the third fit
    _fresh_ledger(monkeypatch)
    assert "numba" not in sum((_one_fit(20_000, 2) for _ in range(10)), [])
    for kernel, saved in compiled.SAVED_NS.items():
        assert [compiled.saved_ns(kernel, r) for r in (1, 2, 3)] == list(saved)
        numpy_from = compiled.NUMPY_FROM_R.get(kernel, 12)
        wide = [compiled.saved_ns(kernel, r) for r in range(3, numpy_from)]
        assert wide == sorted(wide), kernel  # never less at a wider r
        assert not any(compiled.saved_ns(kernel, r) for r in range(numpy_from, 12)), kernel


@pytest.mark.parametrize("loaded", [False, True])
def test_traced_hessian_stays_numpy_past_r_3(monkeypatch, loaded):
    """From r = 4 the traced Hessian (an in-process fit's) runs numpy's moment form in
    ``auto``, with numba loaded or not and nothing charged to the ledger, and its sums
    are numpy's bit for bit; the full (m, m, p, p) Hessian, and the traced one at
    r = 3, still follow the ledger; ``DMIXED_KERNELS=numba`` still forces the compiled
    form (equal to numpy's to 1e-12)."""
    monkeypatch.delenv(compiled.ENV_VAR, raising=False)
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    _fresh_ledger(monkeypatch)
    monkeypatch.setitem(compiled.LEDGER, "bought", loaded)
    if not loaded:
        monkeypatch.delitem(sys.modules, "numba", raising=False)
    for r in (4, 5, 8):
        assert compiled.backend(10**7, r, "hessian_traced") == "numpy", r
    assert compiled.LEDGER["owed_ns"] == 0.0
    assert compiled.backend(10**7, 4, "hessian") == "numba"
    assert compiled.backend(10**7, 3, "hessian_traced") == "numba"
    monkeypatch.setitem(compiled.LEDGER, "bought", loaded)
    if not loaded:
        monkeypatch.delitem(sys.modules, "numba", raising=False)
    rng = np.random.default_rng(4)
    r, k, n_groups = 4, 4, 200
    z = rng.normal(size=(n_groups, 6, r))
    xy = rng.normal(size=(n_groups, 6, k))
    block = kernels.StatsBlock(np.einsum("gia,gib->gab", z, z), np.einsum("gia,gib->gab", z, xy))
    lam = np.tril(rng.normal(size=(r, r))) + 2.0 * np.eye(r)
    basis = dmixed.stats.Layout(r, ()).basis()
    w = np.r_[rng.normal(size=k - 1), 1.0]
    a_inv = np.linalg.inv(np.eye(k - 1) * 50.0 + 1.0)
    sums = {}
    for choice in ("auto", "numpy", "numba"):
        monkeypatch.setenv(compiled.ENV_VAR, choice)
        sums[choice] = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv)
    for f in sums["numpy"].__dataclass_fields__:
        want = getattr(sums["numpy"], f)
        assert np.array_equal(getattr(sums["auto"], f), want), f
        err = np.max(np.abs(getattr(sums["numba"], f) - want))
        assert err <= 1e-12 * np.max(np.abs(want)), (f, err)


def test_wide_estimate_starts_where_numpy_hessian_goes_per_group():
    """The growth of :func:`~dmixed.kernels.compiled.saved_ns` starts past r = 3, where
    numpy's Hessian leaves its moment form for the per-group one."""
    from dmixed.kernels.groups import HESSIAN_MOMENTS_MAX_R

    r = HESSIAN_MOMENTS_MAX_R
    assert compiled.saved_ns("hessian", r) == compiled.SAVED_NS["hessian"][2]
    assert compiled.saved_ns("hessian", r + 1) > compiled.saved_ns("hessian", r)


def test_import_does_not_load_numba():
    code = "import sys, dmixed; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rows_pass_leaves_large_tables_to_numpy(monkeypatch):
    """The compiled per-row pass only while its table of sums stays within the limit
    (past it numpy's per-term bincounts are faster); forcing still wins."""
    from dmixed.kernels.compiled import ROWS_MAX_TABLE_BYTES, rows_compiled

    monkeypatch.setenv("DMIXED_KERNELS", "auto")
    assert not rows_compiled(10**7, ROWS_MAX_TABLE_BYTES + 1)
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    assert rows_compiled(10**7, ROWS_MAX_TABLE_BYTES + 1)


def test_rows_pass_rents_numpy_until_the_ledger_buys(monkeypatch):
    """numba not loaded, buying by the ledger: a pass runs numpy and charges its rows'
    estimated saving; the pass that brings the ledger to the load runs compiled, and
    every step after it (numba bought).  A pass that alone saves the load buys at once;
    a pass against the C extension's (which saves nothing) or one too small or with too
    large a table charges nothing."""
    monkeypatch.delenv(compiled.ENV_VAR, raising=False)
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    monkeypatch.setitem(compiled.ROWS_POLICY, "eager", False)
    _fresh_ledger(monkeypatch)
    per_row = compiled.ROWS_SAVED_NS["numpy"]
    n = 10**6
    assert not compiled.rows_pass(n, against="c")
    assert not compiled.rows_pass(compiled.ROWS_MIN_LOADED - 1)
    assert not compiled.rows_pass(n, compiled.ROWS_MAX_TABLE_BYTES + 1)
    assert compiled.LEDGER["owed_ns"] == 0.0
    passes = []
    while not passes or not passes[-1]:
        passes.append(compiled.rows_pass(n))
        assert compiled.rows_compiled(n) is passes[-1]  # the steps answer as the pass
    assert len(passes) == -(-compiled.LOAD_NS // (n * per_row))
    assert compiled.LEDGER["bought"] and compiled.rows_compiled(compiled.ROWS_MIN_LOADED)
    assert compiled.backend(1, 1) == "numba"  # one ledger: the per-group kernels too
    _fresh_ledger(monkeypatch)
    assert compiled.rows_pass(int(compiled.LOAD_NS / per_row) + 1)  # one pass repays
    _fresh_ledger(monkeypatch)
    with pytest.raises(ValueError, match="against"):
        compiled.rows_pass(n, against="fortran")


def test_rows_pass_forced_and_eager(monkeypatch):
    """``DMIXED_KERNELS`` wins over the ledger (nothing charged); a process that buys
    eagerly (a Dask worker) runs compiled from :data:`ROWS_MIN_COLD` rows at once."""
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    monkeypatch.setitem(compiled.ROWS_POLICY, "eager", False)
    _fresh_ledger(monkeypatch)
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    assert not compiled.rows_pass(10**12)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    assert compiled.rows_pass(1)
    assert compiled.LEDGER == {"owed_ns": 0.0, "bought": False}
    monkeypatch.setenv(compiled.ENV_VAR, "auto")
    assert not compiled.rows_compiled(compiled.ROWS_MIN_COLD)  # renting: never cold
    compiled.load_eagerly()
    assert compiled.ROWS_POLICY["eager"]
    assert not compiled.rows_pass(compiled.ROWS_MIN_COLD - 1)
    assert compiled.rows_pass(compiled.ROWS_MIN_COLD)
    assert compiled.LEDGER == {"owed_ns": 0.0, "bought": False}


# A fresh interpreter's in-process fits of 600k rows: the first leaves numba unloaded
# and charges the ledger; forced numpy charges nothing; with the load made cheap the
# ledger buys numba after some more fits of numpy, a later fit's pass runs compiled,
# and it agrees with the first fit to 1e-12.
_RENT = """
import os, sys
import numpy as np
import dmixed
from dmixed.kernels import compiled
rng = np.random.default_rng(0)
n_groups, size = 60_000, 10
g = np.repeat(np.arange(n_groups), size)
x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, 2))])
b = rng.normal(size=(n_groups, 2)) * [1.0, 0.5]
y = x @ [1.0, 2.0, 3.0] + b[g, 0] + b[g, 1] * x[:, 1] + rng.normal(size=g.size)
def fit():
    model = dmixed.MixedLM(y, x, g, exog_re=x[:, :2])
    return model.fit(reml=True), model.statistics()
first, numpy_pass = fit()
assert "numba" not in sys.modules, "numba loaded by the first fit"
per_fit = compiled.LEDGER["owed_ns"]
assert per_fit > 0 and not compiled.LEDGER["bought"], compiled.LEDGER
os.environ[compiled.ENV_VAR] = "numpy"
compiled.LOAD_NS = 1.0
fit()
assert "numba" not in sys.modules and compiled.LEDGER["owed_ns"] == per_fit
del os.environ[compiled.ENV_VAR]
# a load that one fit's estimate does not repay and a few fits' charges do
estimate = n_groups * sum(c * compiled.SAVED_NS[k][1] for k, c in compiled.FIT_CALLS.items())
compiled.LOAD_NS = estimate + 1.5 * per_fit
rented = 0
while "numba" not in sys.modules:
    owed = compiled.LEDGER["owed_ns"]
    assert owed < compiled.LOAD_NS and rented < 40, "not bought once the ledger reached the load"
    fit()
    rented += 1
assert rented >= 2, rented
last, compiled_pass = fit()
assert "dmixed.kernels.rows_jit" in sys.modules, "the pass did not run compiled"
for a, b in zip(numpy_pass.engine.gather(), compiled_pass.engine.gather(), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
# the fits differ in the per-group kernels too (bought with the pass): to rounding
np.testing.assert_allclose(last.fe_params, first.fe_params, rtol=1e-12, atol=1e-12)
assert abs(last.llf - first.llf) <= 1e-12 * abs(first.llf)
"""


def test_fresh_process_rents_before_it_buys():
    env = {k: v for k, v in os.environ.items() if k != compiled.ENV_VAR}
    subprocess.run([sys.executable, "-c", _RENT], check=True, env=env)


@settings(max_examples=30, **QUICK)
@_cases([1, 2])
def test_hessian_and_blups_in_one_pass_are_the_two_calls(
    monkeypatch, r, q_share, seed, log_cond, one_row, n_groups
):
    """The Hessian sums and the BLUPs made in one pass over the groups are those of the
    two compiled calls bit for bit, over several chunks and runs."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    rng = np.random.default_rng(seed)
    q = int(round(q_share * r))
    zz, zxy = _statistics(rng, n_groups, r, 4, one_row)
    lam = _lam(rng, r, q, log_cond)
    basis, w = _basis(r, q), np.r_[rng.normal(size=3), 1.0]
    block = kernels.StatsBlock(zz, zxy)
    fields, blup, cov = compiled.hessian_random_effects(
        block.chunks(), lam, basis, w, block.spans.edges
    )
    ref = kernels.hessian_contributions(block, lam, basis, w)
    for name, got in zip(ref.__dataclass_fields__, fields, strict=True):
        np.testing.assert_array_equal(got, getattr(ref, name))
    for a, b in zip((blup, cov), kernels.random_effects_block(block, lam, w), strict=True):
        np.testing.assert_array_equal(a, b)
    upper = compiled.hessian_random_effects(block.chunks(), lam, basis, w, block.spans.edges, True)
    for name, got in zip(ref.__dataclass_fields__, upper[0], strict=True):
        np.testing.assert_array_equal(got, getattr(ref, name))
    np.testing.assert_array_equal(upper[1], blup)
    assert upper[2].shape == (block.n_groups, r * (r + 1) // 2)
    np.testing.assert_array_equal(compiled.upper_unfolded(upper[2]), cov)


def test_upper_triangles_unfold_to_the_symmetric_matrices():
    """``upper_unfolded`` gives back each symmetric matrix whose upper triangle (row by
    row) it takes, for r = 1 … 4 and no rows; a row that is no triangle is refused."""
    rng = np.random.default_rng(5)
    for r in range(1, 5):
        for n in (0, 7):
            a = rng.normal(size=(n, r, r))
            sym = a + a.transpose(0, 2, 1)
            rows, cols = np.triu_indices(r)
            got = compiled.upper_unfolded(np.ascontiguousarray(sym[:, rows, cols]))
            np.testing.assert_array_equal(got, sym)
            assert got.shape == (n, r, r)
    with pytest.raises(ValueError, match="no upper triangle"):
        compiled.upper_unfolded(np.ones((3, 2)))


def test_hessian_and_blups_in_one_pass_refuse_r_above_two():
    """r > 2 sums the Hessian per ``E_j``: no one pass for it."""
    block = kernels.StatsBlock(np.tile(np.eye(3), (4, 1, 1)), np.ones((4, 3, 4)))
    with pytest.raises(ValueError, match="r ≤ 2"):
        compiled.hessian_random_effects(
            block.chunks(), np.eye(3), _basis(3, 3), np.ones(4), block.spans.edges
        )


def _entry_major(zz: np.ndarray, zxy: np.ndarray, sizes: list[int]) -> list:
    """``zz`` (G, r, r) and ``zxy`` (G, r, k) cut into entry-major chunks of ``sizes``
    groups (empty ones allowed), each C-contiguous as a block holds them."""
    cut = np.cumsum(sizes)[:-1]
    return [
        (
            np.ascontiguousarray(np.moveaxis(a, 0, -1)),
            np.ascontiguousarray(np.moveaxis(b, 0, -1)),
        )
        for a, b in zip(np.split(zz, cut), np.split(zxy, cut), strict=True)
    ]


@settings(max_examples=25, **QUICK)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    r=st.sampled_from([1, 2]),
    native_choice=st.sampled_from(["c", "numpy"]),
    seed=st.integers(0, 2**16),
)
def test_blup_rows_are_where_chunk_spans_place_each_chunk(sizes, r, native_choice, seed):
    """The compiled BLUPs of a block of odd chunks (empty ones, one chunk, uneven sizes)
    write chunk ``c``'s rows at :class:`~dmixed.kernels.groups.ChunkSpans`'
    ``edges[c]:edges[c+1]`` (the block's ``spans``): each chunk's rows are those of the
    chunk alone, bit for bit, by :func:`compiled.random_effects` and by the one pass of
    :func:`compiled.hessian_random_effects` (C extension and numba at ``r = 2``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compiled.ENV_VAR, "numba")
        mp.setenv(kernels.native.ENV_VAR, native_choice)
        rng = np.random.default_rng(seed)
        zz, zxy = _statistics(rng, sum(sizes), r, 3, 0.3)
        block = kernels.StatsBlock.from_chunks(_entry_major(zz, zxy, sizes))
        spans = block.spans
        assert spans.n_groups == sum(sizes)
        lam, basis, w = _lam(rng, r, r, 2.0), _basis(r, r), np.r_[rng.normal(size=2), 1.0]
        whole = compiled.random_effects(block.chunks(), lam, w, spans.edges)
        one_pass = compiled.hessian_random_effects(block.chunks(), lam, basis, w, spans.edges)
        for chunk, at in zip(block.chunks(), spans.slices(), strict=True):
            alone = kernels.StatsBlock.from_chunks([chunk])
            edges = alone.spans.edges
            want = compiled.random_effects(alone.chunks(), lam, w, edges)
            want_pass = compiled.hessian_random_effects(alone.chunks(), lam, basis, w, edges)
            for got, ref in zip(whole, want, strict=True):
                np.testing.assert_array_equal(got[at], ref)
            for got, ref in zip(one_pass[1:], want_pass[1:], strict=True):
                np.testing.assert_array_equal(got[at], ref)


@pytest.mark.parametrize("native_choice", ["c", "numpy"])
@pytest.mark.parametrize(
    ("edges", "why"),
    [
        (np.array([0, 5, 9]), "a chunk of 4 groups at edges 0:5"),
        (np.array([0, 9]), "a chunk of 4 groups at edges 0:9"),
        (np.array([0, 4]), "2 entries for more than 1 chunks"),
        (np.array([0, 4, 9, 12]), "4 entries for 2 chunks"),
        (np.array([2, 6, 11]), "start at 2, not at 0"),
        (np.array([-8, -4, 1]), "start at -8, not at 0"),
        (np.array([0, 9, 4]), "go down from 9 to 4"),
        (np.array([], dtype=np.int64), "is empty"),
        (np.array([0.0, 4.0, 9.0]), "1-D integer"),
        (np.array([[0, 4, 9]]), "1-D integer"),
    ],
)
def test_blups_refuse_edges_that_are_not_the_chunks(native_choice, edges, why):
    """Edges that are not the chunks' (another block's, an edge too few or too many) or
    not edges at all (not from 0, going down, empty, not 1-D integers: rows of
    uninitialised memory given back, or written outside the BLUPs) are refused by the
    BLUPs and by the one pass (numba, and the C extension at ``r = 2``), each with a
    message naming ``edges``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compiled.ENV_VAR, "numba")
        mp.setenv(kernels.native.ENV_VAR, native_choice)
        rng = np.random.default_rng(3)
        zz, zxy = _statistics(rng, 9, 2, 3, 0.0)
        block = kernels.StatsBlock.from_chunks(_entry_major(zz, zxy, [4, 5]))
        lam, basis, w = np.eye(2), _basis(2, 2), np.array([0.5, -1.0, 1.0])
        with pytest.raises(ValueError, match="edges") as caught:
            compiled.random_effects(block.chunks(), lam, w, edges)
        assert why in str(caught.value)
        with pytest.raises(ValueError, match="edges") as caught:
            compiled.hessian_random_effects(block.chunks(), lam, basis, w, edges)
        assert why in str(caught.value)


def test_rows_pass_reads_the_kernel_switch_once(monkeypatch):
    """``rows_pass`` takes its charge and its answer from one reading of ``DMIXED_KERNELS``,
    so that both see the same choice."""
    calls = []
    read = compiled.env_choice

    def counted(*args, **kwargs):
        calls.append(args)
        return read(*args, **kwargs)

    monkeypatch.setattr(compiled, "env_choice", counted)
    compiled.rows_pass(1000)
    assert len(calls) == 1
