"""The Hessian sums from moments over groups against the per-group numpy form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels import compiled, groups
from dmixed.kernels.hessian_moments import HessianMoments
from dmixed.stats import Layout

from .._synth import QUICK

RTOL = 1e-12


def _hessian(block, lam, basis, w, moments_max_r: int, monkeypatch):
    """The numpy Hessian sums, by moments (``moments_max_r`` ≥ r) or per group (0)."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    monkeypatch.setattr(groups, "HESSIAN_MOMENTS_MAX_R", moments_max_r)
    return kernels.hessian_contributions(block, lam, basis, w)


@settings(max_examples=60, **QUICK)
@given(
    shape=st.sampled_from(
        [(1, ()), (2, ()), (3, ()), (1, (1,)), (1, (2,)), (2, (1,)), (1, (1, 1))]
    ),
    seed=st.integers(0, 2**16),
    log_cond=st.floats(0, 8),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    n_groups=st.sampled_from([1, 7, 300, 700]),
)
def test_moments_match_the_per_group_form(monkeypatch, shape, seed, log_cond, one_row, n_groups):
    """Every field, to 1e-12 of its largest entry: r = 1–3 (random slopes, variance
    component slots, components spanning two slots), several chunks, groups of one
    row (rank-one ``S``), zero slots, Λ of condition up to 1e8 (1e2 past r = 2)."""
    q, widths = shape
    lay = Layout(q, widths)
    r = lay.r
    monkeypatch.setattr(groups, "GROUP_CHUNK", 293)
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n_groups) < one_row, 1, rng.integers(2, 7, n_groups))
    zz, zxy = np.zeros((n_groups, r, r)), np.zeros((n_groups, r, 4))
    for i, n_i in enumerate(sizes):
        z = rng.normal(size=(n_i, r))
        if r > 1 and rng.random() < 0.2:
            z[:, -1] = 0.0  # a zero slot
        zz[i], zxy[i] = z.T @ z, z.T @ rng.normal(size=(n_i, 4))
    cond = log_cond if r <= 2 else min(log_cond, 2.0)
    lam = np.tril(rng.normal(size=(r, r)))
    lam[np.diag_indices(r)] = 10.0 ** rng.uniform(-cond / 2, cond / 2, r)
    lam[q:, :q] = 0.0
    lam[q:, q:] = np.diag(np.diag(lam[q:, q:]))
    block, basis, w = kernels.StatsBlock(zz, zxy), lay.basis(), np.r_[rng.normal(size=3), 1.0]
    ref = _hessian(block, lam, basis, w, 0, monkeypatch)
    got = _hessian(block, lam, basis, w, r, monkeypatch)
    for name in ref.__dataclass_fields__:
        a, b = getattr(ref, name), getattr(got, name)
        assert a.shape == b.shape, name
        scale = np.max(np.abs(a), initial=0.0)
        assert np.all(np.abs(a - b) <= RTOL * scale), (name, np.max(np.abs(a - b)) / scale)


def test_moments_of_no_group_are_zero():
    """A chunk of no groups adds nothing; the contraction of zero moments is zero."""
    moments = HessianMoments(2, 4)
    moments.add(np.zeros((2, 2, 0)), np.zeros((2, 4, 0)), np.r_[0.5, -1.0, 2.0, 1.0])
    fields = moments.contract(Layout(2, ()).basis())
    shapes = [(3, 3), (3, 3), (3,), (3, 3), (3, 3, 3), (3, 3, 3, 3)]
    assert [f.shape for f in fields] == shapes
    assert all(not np.any(f) for f in fields)


@settings(max_examples=25, **QUICK)
@given(
    shape=st.sampled_from([(1, 3, 7), (1, 5, 5000), (2, 4, 300), (2, 6, 20000), (3, 5, 20000)]),
    seed=st.integers(0, 2**16),
)
def test_moments_sum_as_the_separate_products(shape, seed):
    """``V``, ``C`` and ``A`` bit for bit those of the separate products every fit made
    them with (``V`` the Gram matrix of ``v``, ``C`` the product of ``v S`` and ``v'``),
    ``u_i = H_i w`` summed as the dense kernels sum it (a matrix-vector product for
    r = 1, ``einsum`` past it), and :meth:`HessianMoments.add`'s ``u`` by ``einsum``
    whatever ``r``: the Newton steps' Hessian to the last bit, which a quasi-Newton fit
    after them is sensitive to (a taller single product differs in the last bits)."""
    from dmixed.kernels.conditionals import gram_rows

    r, k, g = shape
    rng = np.random.default_rng(seed)
    made = HessianMoments(r, k)
    n_pair = made.rows.size
    h = rng.normal(size=(r, k, g)) * 10.0 ** rng.uniform(-3, 3, (1, k, 1))
    s_pairs = rng.normal(size=(n_pair, g))
    w = rng.normal(size=k)
    made.add_pairs(s_pairs, h, w)
    v = h.copy()
    v[:, -1] = w @ h[0] if r == 1 else np.einsum("ajg,j->ag", h, w)
    v = v.reshape(r * k, g)
    assert np.array_equal(made.a, gram_rows(s_pairs))
    assert np.array_equal(made.v, gram_rows(v))
    assert np.array_equal(made.c, (v[:, None, :] * s_pairs[None]).reshape(-1, g) @ v.T)
    s = np.zeros((r, r, g))
    s[made.rows, made.cols] = s_pairs
    by_add = HessianMoments(r, k)
    by_add.add(s, h.copy(), w)
    v_add = h.copy()
    v_add[:, -1] = np.einsum("ajg,j->ag", h, w)
    assert np.array_equal(by_add.v, gram_rows(v_add.reshape(r * k, g)))


@settings(max_examples=25, **QUICK)
@given(k=st.integers(1, 6), n_groups=st.sampled_from([1, 7, 300]), seed=st.integers(0, 2**16))
def test_full_sums_are_the_contraction(k, n_groups, seed):
    """:func:`~dmixed.kernels.hessian_moments.full_sums` gathers the fields of
    :func:`~dmixed.kernels.hessian_moments.contract` (and ``half_q``'s blocks
    ``[A, g_e_u'; g_e_u, u_s_u]``) from the product of ``[v; S pairs]`` with itself
    and ``C``, to 1e-12 of each field's largest entry."""
    from dmixed.kernels.hessian_moments import contract, full_sums

    rng = np.random.default_rng(seed)
    made = HessianMoments(2, k)
    v = rng.normal(size=(2 * k, n_groups))
    s_pairs = rng.normal(size=(3, n_groups))
    made.add_pairs(s_pairs, v)
    top = np.concatenate([v, s_pairs])
    a = rng.normal(size=(k - 1, k - 1))
    basis = Layout(2, ()).basis()
    half_q, u_e_u, tr_ss, a_j, a_jk = full_sums(top @ top.T, made.c, a, basis, k)
    tr, usu, ueu, geu, aj, ajk = contract(made.a, made.v, made.c, basis, 2, k)
    p = k - 1
    want = np.block([[a, geu.T], [geu, usu]])
    for name, ours, theirs in [
        ("half_q", half_q, want),
        ("u_e_u", u_e_u, ueu),
        ("tr_ss", tr_ss, tr),
        ("a_j", a_j, aj),
        ("a_jk", a_jk, ajk),
    ]:
        assert ours.shape == theirs.shape, name
        scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-300)
        assert float(np.abs(ours - theirs).max(initial=0.0)) <= RTOL * scale, name
    assert half_q.shape == (p + 3, p + 3)


def _full_gather_by_loop(basis: np.ndarray, k: int) -> np.ndarray:
    """The positions of :func:`~dmixed.kernels.hessian_moments.full_gather` made entry by
    entry, one Python list a row (the form it had before it was made by index
    arithmetic): the reference its array must equal."""
    from dmixed.stats import tril_indices

    m, r, _ = basis.shape
    p, rk = k - 1, r * k
    rows, cols = tril_indices(r)
    n_pair = rows.size
    pair = np.empty((r, r), dtype=np.intp)
    pair[rows, cols] = pair[cols, rows] = np.arange(n_pair)
    side = rk + n_pair
    off_c = side * side
    off_a = off_c + rk * n_pair * rk
    zero = off_a + p * p
    support = [list(zip(*np.nonzero(basis[j]), strict=True)) for j in range(m)]

    def v(a, x, b, y):
        return (a * k + x) * side + b * k + y

    def h(j, i, x, y):
        return [
            off_c + ((a * k + x) * n_pair + pair[b, cc]) * rk + d * k + y
            for a, b in support[j]
            for cc, d in support[i]
        ]

    out: list[list[int]] = []
    n = p + m
    for i in range(n):
        for j in range(n):
            if i < p and j < p:
                out.append([off_a + i * p + j])
            elif i < p or j < p:
                x, jj = (i, j - p) if i < p else (j, i - p)
                out.append([v(a, x, b, p) for a, b in support[jj]])
            else:
                out.append(h(i - p, j - p, p, p))
    out += [[v(a, p, b, p) for a, b in support[j]] for j in range(m)]
    for j in range(m):
        for i in range(m):
            out.append(
                [
                    (rk + pair[a, b]) * side + rk + pair[cc, d]
                    for b, cc in support[j]
                    for d, a in support[i]
                ]
            )
    for j in range(m):
        out += [[v(a, x, b, y) for a, b in support[j]] for x in range(p) for y in range(p)]
    for j in range(m):
        for i in range(m):
            for x in range(p):
                out += [h(j, i, x, y) + h(i, j, y, x) for y in range(p)]
    width = max(len(o) for o in out)
    index = np.full((len(out), width), zero, dtype=np.intp)
    for i, o in enumerate(out):
        index[i, : len(o)] = o
    return index


@settings(max_examples=150, **QUICK)
@given(
    r=st.integers(1, 3),
    k=st.integers(1, 6),
    m=st.integers(0, 4),
    symmetric=st.booleans(),
    data=st.data(),
)
def test_full_gather_is_the_loop(r, k, m, symmetric, data):
    """:func:`~dmixed.kernels.hessian_moments.full_gather` is, entry for entry (order
    within a row, padding, width, dtype), the array of the loop that made it row by row,
    for any 0/1 basis: symmetric or not, empty matrices (rows of no entry), no fixed
    effect (``k = 1``), no basis matrix (``m = 0``)."""
    from dmixed.kernels.hessian_moments import full_gather

    if m == 0 and k == 1:  # no row at all: the loop had no width to take
        return
    flat = data.draw(st.lists(st.booleans(), min_size=m * r * r, max_size=m * r * r))
    basis = np.array(flat, dtype=np.float64).reshape(m, r, r)
    if symmetric:
        basis = np.maximum(basis, basis.transpose(0, 2, 1))
    made = full_gather(basis, k)
    want = _full_gather_by_loop(basis, k)
    assert made.dtype == want.dtype and made.shape == want.shape
    assert np.array_equal(made, want)
    assert not made.flags.writeable


@pytest.mark.parametrize("r", [1, 2])
def test_full_gather_of_a_layout_basis_is_the_loop(r):
    """The bases the fits use (:meth:`~dmixed.stats.Layout.basis`), at a wide ``k``
    (p = 40): the array of the loop."""
    from dmixed.kernels.hessian_moments import full_gather

    basis = Layout(r, ()).basis()
    assert np.array_equal(full_gather(basis, 41), _full_gather_by_loop(basis, 41))


def test_full_gather_refuses_other_entries():
    """A basis entry other than 0 or 1 is refused (each entry is a plain sum)."""
    from dmixed.kernels.hessian_moments import full_gather

    with pytest.raises(ValueError, match="0 or 1"):
        full_gather(np.full((1, 2, 2), 0.5), 3)


@pytest.mark.parametrize(("r", "k"), [(3, 97), (4, 61)])
def test_the_contraction_holds_memory_of_the_moments_size(r, k):
    """A wide model (k = 323, r = 3 or 4) spent most of its Hessian's time and memory
    building tables of r⁴ k² positions (several, with ``np.indices`` over six axes) to
    read ``C``; the contraction now reads ``C`` by views one ``c`` at a time, so that
    its peak allocation is a few times ``C``'s own size, and it sums what the per-group
    form sums (to rounding)."""
    import tracemalloc

    rng = np.random.default_rng(r * k)
    g = 40
    s = rng.normal(size=(r, r, g))
    s = s + s.transpose(1, 0, 2)
    h = rng.normal(size=(r, k, g))
    w = np.r_[rng.normal(size=k - 1), 1.0]
    moments = HessianMoments(r, k)
    moments.add(s, h.copy(), w)
    basis = Layout(r, ()).basis()
    m = basis.shape[0]
    tracemalloc.start()
    try:
        fields = moments.contract(basis)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = sum(f.nbytes for f in fields)
    assert peak < 3 * moments.c.nbytes + 3 * m * m * k * k * 8, (peak, moments.c.nbytes, outputs)
    # against the sums written out per group (E_j S E_k with numpy's einsum)
    u = np.einsum("ajg,j->ag", h, w)
    gm = h[:, : k - 1]
    want_a_jk = np.einsum("jab,bcg,kcd,dyg,axg->jkxy", basis, s, basis, gm, gm, optimize=True)
    want_a_jk = want_a_jk + want_a_jk.transpose(1, 0, 3, 2)
    want_u_s_u = np.einsum("ag,jab,bcg,kcd,dg->jk", u, basis, s, basis, u, optimize=True)
    scale = np.abs(want_a_jk).max()
    np.testing.assert_allclose(fields[5], want_a_jk, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fields[1], want_u_s_u, rtol=0, atol=1e-12 * np.abs(want_u_s_u).max())
