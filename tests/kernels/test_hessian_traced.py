"""The per-group Hessian sums with ``a_jk`` contracted against ``A⁻¹`` in the kernel
against the (m, m, p, p) sums contracted afterwards, and the Hessian made of each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.fit.objective import hessian_blocks
from dmixed.kernels import compiled, groups
from dmixed.stats import Layout

from .._synth import QUICK

RTOL = 1e-10

#: (q, variance-component widths): r = 1–4, with and without components
SHAPES = [
    (1, ()),
    (2, ()),
    (3, ()),
    (4, ()),
    (1, (1,)),
    (2, (1,)),
    (1, (1, 1)),
    (3, (1,)),
    (2, (2,)),
]


def _case(shape, p, n_groups, weighted, seed):
    q, widths = shape
    lay = Layout(q, widths)
    r, k = lay.r, p + 1
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_groups)
    zz, zxy = np.zeros((n_groups, r, r)), np.zeros((n_groups, r, k))
    for i, n_i in enumerate(sizes):
        z, xy = rng.normal(size=(n_i, r)), rng.normal(size=(n_i, k))
        wts = rng.uniform(0.2, 3.0, n_i) if weighted else np.ones(n_i)
        zz[i], zxy[i] = (z.T * wts) @ z, (z.T * wts) @ xy
    lam = np.tril(rng.normal(size=(r, r))) + 1.5 * np.eye(r)
    lam[q:, :q] = 0.0
    lam[q:, q:] = np.diag(np.diag(lam[q:, q:]))
    x = rng.normal(size=(3 * k, p))
    a = x.T @ x + np.eye(p)
    chol_inv = np.linalg.inv(np.linalg.cholesky(a))
    a_inv = chol_inv.T @ chol_inv  # as dmixed.fit.objective.profile makes it
    return kernels.StatsBlock(zz, zxy), lam, lay.basis(), np.r_[rng.normal(size=p), 1.0], a, a_inv


def _close(got, want, name):
    scale = np.max(np.abs(want), initial=0.0)
    assert got.shape == want.shape, name
    assert np.all(np.abs(got - want) <= RTOL * scale), (name, np.max(np.abs(got - want)) / scale)


@settings(max_examples=40, **QUICK)
@given(
    shape=st.sampled_from(SHAPES),
    p=st.integers(1, 40),
    n_groups=st.sampled_from([1, 7, 300]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_traced_sums_and_hessian_match_the_full_form(
    monkeypatch, shape, p, n_groups, weighted, seed
):
    """Every field and the ML and REML Hessians of :func:`hessian_blocks`, to 1e-10
    relative, over several chunks (r = 1–4, p = 1–40, weights, variance components)."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    monkeypatch.setattr(groups, "HESSIAN_MOMENTS_MAX_R", 0)  # the per-group form
    monkeypatch.setattr(groups, "GROUP_CHUNK", 97)
    block, lam, basis, w, a, a_inv = _case(shape, p, n_groups, weighted, seed)
    full = kernels.hessian_contributions(block, lam, basis, w)
    traced = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv)
    m = basis.shape[0]
    assert full.a_jk.shape == (m, m, p, p) and traced.a_jk.shape == (m, m)
    for name in ("tr_ss", "u_s_u", "u_e_u", "g_e_u", "a_j"):
        _close(getattr(traced, name), getattr(full, name), name)
    _close(traced.a_jk_traces(a_inv), full.a_jk_traces(a_inv), "a_jk")
    q_b = np.random.default_rng(seed).normal(size=p)
    for reml in (False, True):
        want = hessian_blocks(a, a_inv, q_b, 7.5, 100.0, reml, full)
        _close(hessian_blocks(a, a_inv, q_b, 7.5, 100.0, reml, traced), want, f"reml={reml}")


def test_traced_sums_add_as_the_traces():
    """Sums over no groups in the traced form are (m, m) zeros, and adding two blocks'
    traced sums is the traced sum of both."""
    zero = kernels.HessianSums.zeros(3, 5, traced=True)
    assert zero.a_jk.shape == (3, 3) and not zero.a_jk.any()
    assert zero.a_jk_traces(np.eye(5)) is zero.a_jk


def test_traced_and_full_sums_are_never_added():
    """A traced ``a_jk`` (m, m) added to a full one (m, m, p, p) would broadcast where
    m == p and give wrong sums: refused, both ways and in place."""
    traced = kernels.HessianSums.zeros(3, 3, traced=True)
    full = kernels.HessianSums.zeros(3, 3)
    for a, b in ((traced, full), (full, traced)):
        with pytest.raises(ValueError, match="different forms"):
            a + b
        with pytest.raises(ValueError, match="different forms"):
            a.add_in_place(b)
    assert (full + kernels.HessianSums.zeros(3, 3)).a_jk.shape == (3, 3, 3, 3)


#: compiled against numpy: r = 3–6 (the compiled per-group form runs from r = 3)
WIDE_SHAPES = [(3, ()), (4, ()), (5, ()), (6, ()), (2, (1,)), (3, (1,)), (2, (2,)), (1, (1, 1))]
#: the compiled and numpy traced sums: the same formulas, the additions over groups
#: (and within a group) in another order
JIT_RTOL = 1e-12
#: the compiled traced sums against the compiled (m, m, p, p) sums: the same per-group
#: conditionals, ``a_jk`` contracted before the sum over groups instead of after
SAME_KERNEL_RTOL = 1e-13


def _rel(got, want):
    scale = np.max(np.abs(want), initial=0.0)
    err = np.max(np.abs(got - want), initial=0.0)
    return err / scale if scale else err


@settings(max_examples=30, **QUICK)
@given(
    shape=st.sampled_from(WIDE_SHAPES),
    p=st.integers(1, 15),
    n_groups=st.sampled_from([1, 7, 300, 600]),
    weighted=st.booleans(),
    reml=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_compiled_traced_sums_match_numpy(monkeypatch, shape, p, n_groups, weighted, reml, seed):
    """The compiled per-group kernel with ``A⁻¹`` (``a_jk`` as (m, m) traces, and under ML
    neither it nor ``a_j``) against the compiled (m, m, p, p) form contracted afterwards
    (the same per-group conditionals: to 1e-13) and against numpy's per-group form with
    the same ``A⁻¹``: every field to 1e-12 relative, or, where the compiled (m, m, p, p)
    form itself differs from numpy's by more (a single group of a few rows at r = 5–6
    gives conditionals that the two paths' factorizations round apart by up to 1e-11),
    no further than it (r = 3–6, variance components, p = 1–15, weights, runs and chunks
    cut anywhere)."""
    pytest.importorskip("numba")
    monkeypatch.setattr(groups, "HESSIAN_MOMENTS_MAX_R", 0)  # numpy's per-group form
    monkeypatch.setattr(groups, "GROUP_CHUNK", 97)
    block, lam, basis, w, _, a_inv = _case(shape, p, n_groups, weighted, seed)
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    want = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv, reml=reml)
    want_full = kernels.hessian_contributions(block, lam, basis, w)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    got = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv, reml=reml)
    got_full = kernels.hessian_contributions(block, lam, basis, w)
    m = basis.shape[0]
    assert got.a_jk.shape == want.a_jk.shape == (m, m)

    def field(sums, name):
        return sums.a_jk_traces(a_inv) if name == "a_jk" else getattr(sums, name)

    for name in got.__dataclass_fields__:
        if reml or name not in ("a_j", "a_jk"):
            same = _rel(field(got, name), field(got_full, name))
            assert same <= SAME_KERNEL_RTOL, (name, same)
        paths = _rel(field(got_full, name), field(want_full, name))
        assert _rel(getattr(got, name), getattr(want, name)) <= max(JIT_RTOL, paths), name
    if not reml:
        assert not got.a_j.any() and not got.a_jk.any()
        assert not want.a_j.any() and not want.a_jk.any()


@pytest.mark.parametrize("shape", [(4, ()), (3, (1,)), (6, ())])
def test_compiled_traced_hessian_matches_the_full_sums(monkeypatch, shape):
    """The compiled traced sums make the ML and REML Hessians of the compiled (m, m, p, p)
    sums (to 1e-12 relative), and the ML sums are the REML ones without ``a_j``/``a_jk``
    (the other fields to the bit)."""
    pytest.importorskip("numba")
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    block, lam, basis, w, a, a_inv = _case(shape, 7, 500, True, 3)
    full = kernels.hessian_contributions(block, lam, basis, w)
    traced = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv)
    ml = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv, reml=False)
    assert full.a_jk.ndim == 4 and traced.a_jk.ndim == 2
    assert _rel(traced.a_jk_traces(a_inv), full.a_jk_traces(a_inv)) <= JIT_RTOL
    for name in ("tr_ss", "u_s_u", "u_e_u", "g_e_u"):
        np.testing.assert_array_equal(getattr(ml, name), getattr(traced, name))
    q_b = np.random.default_rng(3).normal(size=7)
    for reml, sums in ((False, ml), (True, traced)):
        want = hessian_blocks(a, a_inv, q_b, 7.5, 100.0, reml, full)
        assert _rel(hessian_blocks(a, a_inv, q_b, 7.5, 100.0, reml, sums), want) <= JIT_RTOL


@pytest.mark.parametrize("shape", [(3, ()), (4, ()), (3, (1,)), (2, (2,))])
@pytest.mark.parametrize("reml", [True, False])
def test_numpy_per_group_sums_match_their_definitions(monkeypatch, shape, reml):
    """numpy's per-group traced sums (their products with the basis made as matrix
    products) against their definitions written element-wise, group by group, from the
    same conditionals: Σ tr(S E_j S E_k), Σ u'E_j S E_k u, Σ u'E_j u, Σ G'E_j u,
    Σ G'E_j G and Σ 2 tr(G'E_j S E_k G A⁻¹) symmetrized, to 1e-12 relative."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    monkeypatch.setattr(groups, "HESSIAN_MOMENTS_MAX_R", 0)
    monkeypatch.setattr(groups, "TRACED_MOMENTS", False)
    monkeypatch.setattr(groups, "GROUP_CHUNK", 13)
    block, lam, basis, w, _, a_inv = _case(shape, 6, 40, True, 7)
    got = kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv, reml=reml)
    m, p = basis.shape[0], w.shape[0] - 1
    want = {
        "tr_ss": np.zeros((m, m)),
        "u_s_u": np.zeros((m, m)),
        "u_e_u": np.zeros(m),
        "g_e_u": np.zeros((m, p)),
        "a_j": np.zeros((m, p, p)),
        "a_jk": np.zeros((m, m)),
    }
    for _, _, (_, _, s, h) in block.conditionals(lam):
        for i in range(s.shape[-1]):
            s_i, g_i = s[:, :, i], h[:, :p, i]
            u_i = h[:, :, i] @ w
            se = [s_i @ e for e in basis]
            for j in range(m):
                want["u_e_u"][j] += u_i @ basis[j] @ u_i
                want["g_e_u"][j] += g_i.T @ basis[j] @ u_i
                if reml:
                    want["a_j"][j] += g_i.T @ basis[j] @ g_i
                for k in range(m):
                    want["tr_ss"][j, k] += np.trace(se[j] @ se[k])
                    want["u_s_u"][j, k] += u_i @ basis[j] @ se[k] @ u_i
                    if reml:
                        want["a_jk"][j, k] += 2 * np.trace(g_i.T @ basis[j] @ se[k] @ g_i @ a_inv)
    want["a_jk"] = (want["a_jk"] + want["a_jk"].T) / 2
    names = list(got.__dataclass_fields__)
    assert len(names) == len(want)
    for name, value in zip(names, want.values(), strict=True):
        assert _rel(getattr(got, name), value) <= 1e-12, (name, _rel(getattr(got, name), value))


@pytest.mark.parametrize("shape", WIDE_SHAPES + [(1, ()), (2, ())])
@pytest.mark.parametrize("reml", [True, False])
def test_traced_moment_sums_match_the_per_group_traced_sums(monkeypatch, shape, reml):
    """The numpy traced sums contracted from moments over the groups
    (``groups.TRACED_MOMENTS``, what numpy runs past ``HESSIAN_MOMENTS_MAX_R``) against
    the per-group traced form, field by field, to 1e-12 relative (the same products
    over the groups, added in another order), over several chunks, weighted, r = 1–6
    with and without variance components."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    monkeypatch.setattr(groups, "HESSIAN_MOMENTS_MAX_R", 0)
    monkeypatch.setattr(groups, "GROUP_CHUNK", 97)
    for p, seed in ((1, 3), (6, 11)):
        block, lam, basis, w, _, a_inv = _case(shape, p, 300, True, seed)
        sums = {}
        for moments in (False, True):
            monkeypatch.setattr(groups, "TRACED_MOMENTS", moments)
            sums[moments] = kernels.hessian_contributions(
                block, lam, basis, w, a_inv=a_inv, reml=reml
            )
        for f in sums[False].__dataclass_fields__:
            want, got = getattr(sums[False], f), getattr(sums[True], f)
            assert got.shape == want.shape, f
            assert _rel(got, want) <= JIT_RTOL, (f, _rel(got, want))
            if not reml and f in ("a_j", "a_jk"):
                assert not got.any(), f


def test_numpy_traced_sums_make_no_per_basis_temporaries(monkeypatch):
    """At r = 5 (m = 15) the numpy traced Hessian sums allocate less at their peak than
    one (m, r, r, G) array of per-group products ``S E_j``: the per-group form made
    several of them; the moment form sums the groups first (r² × 3r² a group)."""
    import tracemalloc

    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    block, lam, basis, w, _, a_inv = _case((5, ()), 2, 3000, False, 5)
    block.keep_conditionals().conditionals(lam)  # a fit's step leaves them kept at its Λ
    m, r = basis.shape[:2]
    tracemalloc.start()
    try:
        kernels.hessian_contributions(block, lam, basis, w, a_inv=a_inv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < m * r * r * block.n_groups * 8, peak
