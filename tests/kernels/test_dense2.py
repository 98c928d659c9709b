"""The whole-block sums of two random-effect coordinates against the per-chunk kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels import compiled, native
from dmixed.kernels.dense2 import Dense2Statistics
from dmixed.kernels.hessian_moments import contract
from dmixed.stats import Layout

from .._synth import QUICK

RTOL = 1e-12

#: the factors Λ of the property tests: a plain one, one large next to ``U⁻¹``, a
#: singular one (a variance on the boundary), a small one
FACTORS = {
    "plain": np.array([[0.9, 0.0], [0.3, 0.5]]),
    "large": np.array([[300.0, 0.0], [-40.0, 90.0]]),
    "singular": np.array([[0.8, 0.0], [0.4, 0.0]]),
    "small": np.array([[1e-4, 0.0], [2e-5, 3e-4]]),
}


def _close(ours, theirs, name: str, floor: float = 1e-300, rtol: float = RTOL) -> None:
    """``ours`` equals ``theirs`` to ``rtol`` of its largest entry (or ``floor``)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), floor)
    assert float(np.max(np.abs(np.asarray(ours) - theirs), initial=0.0)) <= rtol * scale, name


@settings(max_examples=60, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 300]),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    factor=st.sampled_from(sorted(FACTORS)),
    chunk=st.sampled_from([None, 1, 7, 64]),
)
def test_step_and_hessian_sums_match_the_kernels(
    monkeypatch, seed, n_groups, one_row, factor, chunk
):
    """``Σ log|K|``, ``Σ ZXy'P ZXy``, ``Σ S``, ``t_re`` and every Hessian field, to 1e-12
    of each one's largest entry: groups of one row (rank-one ``U``), a Λ large next to
    ``U⁻¹``, a singular Λ (a variance on the boundary), a small one; the block in one
    chunk or in several (``chunk`` groups each: the sums added chunk by chunk)."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n_groups) < one_row, 1, rng.integers(2, 12, n_groups))
    zz, zxy = np.zeros((n_groups, 2, 2)), np.zeros((n_groups, 2, 4))
    for i, n_i in enumerate(sizes):
        z = np.column_stack([np.ones(n_i), rng.normal(size=n_i)])
        xy = np.column_stack([np.ones(n_i), rng.normal(size=(n_i, 3))])
        zz[i], zxy[i] = z.T @ z, z.T @ xy
    lam = FACTORS[factor]
    block = kernels.StatsBlock(zz, zxy)
    data = Dense2Statistics.of_chunks(block.chunks())
    assert data.n_groups == n_groups
    step = data.step(lam)
    ref = kernels.step_contributions(block, lam, 2)
    # Σ log d_i with d_i = 1 + …: each term is known to ε of 1, whatever its size
    _close(step.logdet, ref.logdet, "logdet", floor=float(n_groups))
    _close(step.s, ref.s, "s")
    # H = (F + adj(B) adj(U) F)/d cancels about |B||U| of its size where Λ is large
    # next to U⁻¹, summed in another association than the kernels' (adj(B) adj(U)
    # first): the products of H to that share of rounding
    rtol = 1e-10 if factor == "large" else RTOL
    # so does d F'PF's det(B) F'adj(U)F where U has rank one (a group of one row):
    # its sums and the kernels' are each some 5e-12 of the largest entry from the
    # exact m there (extended precision, 300 draws of seven such groups)
    _close(step.m, ref.m, "m", rtol=rtol)
    _close(step.gram.reshape(2, 4, 2, 4).transpose(0, 2, 1, 3), ref.t_re, "t_re", rtol=rtol)
    logdet, m = data.value(lam)
    assert logdet == step.logdet
    np.testing.assert_array_equal(m, step.m)
    basis = Layout(2, ()).basis()
    w = np.append(-rng.normal(size=3), 1.0)
    ours = data.hessian(step, basis, w)
    theirs = kernels.hessian_contributions(block, lam, basis, w)
    for name in theirs.__dataclass_fields__:
        _close(getattr(ours, name), getattr(theirs, name), name, rtol=rtol)
    # the moments in two products (V and A one product of the rows [v; S pairs], C
    # another) give the same fields
    va, c = step.moments(w)
    for name, got in zip(
        ("tr_ss", "u_s_u", "u_e_u", "g_e_u", "a_j", "a_jk"),
        contract(va[8:, 8:], va[:8, :8], c, basis, 2, 4),
        strict=True,
    ):
        _close(got, getattr(theirs, name), name, rtol=rtol)


def _sums_row_by_row(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray):
    """``(Σ log d, S at (0,0), (1,0), (1,1) over the groups, Σ ZXy'P ZXy)`` of one
    chunk with ``P F`` made one product and one sum per row of ``P`` (the formulas
    before the rows were stacked)."""
    b = lam @ lam.T
    det_b = float(np.linalg.det(lam)) ** 2
    (b00, b01), (_, b11) = b.tolist()
    coef = np.array(
        [
            [1.0, b00, 2.0 * b01, b11, det_b],
            [0.0, 1.0, 0.0, 0.0, b11],
            [0.0, 0.0, 1.0, 0.0, -b01],
            [0.0, 0.0, 0.0, 1.0, b00],
            [b00, 0.0, 0.0, det_b, 0.0],
            [b01, 0.0, -det_b, 0.0, 0.0],
            [b11, det_b, 0.0, 0.0, 0.0],
        ]
    )
    u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
    det_u = np.maximum(u00 * u11 - u01 * u01, 0.0)
    rows = coef @ np.stack([np.ones(u00.size), u00, u01, u11, det_u])
    d = rows[0]
    pairs = rows[1:]
    pairs *= 1.0 / d
    p00, p01, p11 = pairs[3], pairs[4], pairs[5]
    f0, f1 = zxy[0], zxy[1]
    pf0 = p00 * f0
    pf0 += p01 * f1
    pf1 = p01 * f0
    pf1 += p11 * f1
    m = f0 @ pf0.T + f1 @ pf1.T
    return float(np.log(d).sum()), pairs[:3], 0.5 * (m + m.T)


@settings(max_examples=40, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 300, 2000]),
    k=st.integers(2, 6),
    scale=st.sampled_from([1e-4, 0.5, 1.0, 300.0]),
    offset=st.sampled_from([0.0, 1e9]),
)
def test_step_sums_match_the_row_by_row_products(seed, n_groups, k, scale, offset):
    """The sums of one step (``Σ ZXy'P ZXy`` as one product of ``1/d`` with the fixed
    products ``F_a'F_b`` and ``F'adj(U)F``) equal those of one product per row of ``P``
    to rounding: ``Σ log d`` to ε of each term's 1, ``S`` and ``m`` to 1e-12 of their
    largest entries; ℓ alone (:meth:`Dense2Statistics.value`) takes the same numbers."""
    rng = np.random.default_rng(seed)
    zz = rng.normal(size=(n_groups, 6, 2))
    zz = np.einsum("gna,gnb->abg", zz, zz)
    zxy = np.ascontiguousarray(rng.normal(size=(2, k, n_groups)) + offset)
    lam = np.array([[rng.random(), 0.0], [rng.normal(), rng.random()]]) * scale
    logdet, s_pairs, m = _sums_row_by_row(zz, zxy, lam)
    data = Dense2Statistics(zz, zxy)
    step = data.step(lam)
    _close(step.logdet, logdet, "logdet", floor=float(n_groups))
    _close(step.m, m, "m")
    (s00, s01, s11) = s_pairs.sum(axis=1).tolist()
    _close(step.s, [[s00, s01], [s01, s11]], "s")
    assert data.value(lam)[0] == step.logdet
    np.testing.assert_array_equal(data.value(lam)[1], step.m)


def _statistics(monkeypatch, choice: str, chunks) -> Dense2Statistics:
    """:class:`Dense2Statistics` of ``chunks`` with ``DMIXED_NATIVE`` at ``choice``."""
    monkeypatch.setenv(native.ENV_VAR, choice)
    return Dense2Statistics.of_chunks(chunks)


@pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")
@settings(max_examples=80, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 5, 17, 300, 1100]),
    k=st.integers(1, 6),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    design=st.sampled_from(["plain", "near_singular", "offset"]),
    factor=st.sampled_from(sorted(FACTORS)),
    chunk=st.sampled_from([None, 7, 64]),
)
def test_c_sums_match_numpy(monkeypatch, seed, n_groups, k, one_row, design, factor, chunk):
    """The extension's sums (:mod:`dmixed.kernels.native`) against the numpy reference,
    to 1e-12 of each one's largest entry (``Σ log d`` to ε of each term's 1): ``Σ log|K|``,
    ``Σ S``, ``Σ ZXy'P ZXy``, ``1/d``, the rows ``[v; S pairs]`` and their products, the
    Hessian moments' ``C``, ``t_re``'s Gram and the Hessian sums; on groups of one row
    (rank-one ``U``), a nearly collinear random design (``U`` near singular), a column
    far from zero (1e6 + noise), for the factors of the test above, in one chunk or
    several.  The per-group values are the same formulas; where Λ is large next to
    ``U⁻¹``, ``H``'s cancellation (above) makes its products agree to 1e-10."""
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n_groups) < one_row, 1, rng.integers(2, 12, n_groups))
    zz, zxy = np.zeros((n_groups, 2, 2)), np.zeros((n_groups, 2, k))
    for i, n_i in enumerate(sizes):
        x1 = rng.normal(size=n_i)
        z1 = {"plain": x1, "near_singular": 1.0 + 1e-7 * x1, "offset": 1e6 + x1}[design]
        z = np.column_stack([np.ones(n_i), z1])
        xy = np.column_stack([np.ones(n_i), x1 + (1e6 if design == "offset" else 0.0)])
        xy = np.column_stack([xy, rng.normal(size=(n_i, k))])[:, :k]
        zz[i], zxy[i] = z.T @ z, z.T @ xy
    lam = FACTORS[factor]
    block = kernels.StatsBlock(zz, zxy)
    ref = _statistics(monkeypatch, "numpy", block.chunks())
    ours = _statistics(monkeypatch, "c", block.chunks())
    assert not ref.uses_extension and ours.uses_extension
    theirs, step = ref.step(lam), ours.step(lam)
    _close(step.logdet, theirs.logdet, "logdet", floor=float(n_groups))
    _close(step.s, theirs.s, "s")
    _close(step.m, theirs.m, "m")
    np.testing.assert_array_equal(step.m, step.m.T)
    for got, want in zip(step.inv_d, theirs.inv_d, strict=True):
        _close(got, want, "inv_d")
    rtol = 1e-10 if factor == "large" else RTOL
    _close(step.gram, theirs.gram, "gram", rtol=rtol)
    w = np.append(-rng.normal(size=k - 1), 1.0)
    va, c = step.moments(w)
    va_ref, c_ref = theirs.moments(w)
    _close(va, va_ref, "va", rtol=rtol)
    _close(c, c_ref, "c", rtol=rtol)
    assert step.rows is not None and theirs.rows is not None
    for got, want in zip(step.rows, theirs.rows, strict=True):
        for name, a, b in (("v", got[: 2 * k], want[: 2 * k]), ("s", got[2 * k :], want[2 * k :])):
            _close(a, b, name, rtol=rtol)
    basis = Layout(2, ()).basis()
    hs, hs_ref = ours.hessian(step, basis, w), ref.hessian(theirs, basis, w)
    for name in hs_ref.__dataclass_fields__:
        _close(getattr(hs, name), getattr(hs_ref, name), name, rtol=rtol)


@pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")
@pytest.mark.parametrize("scale", [0.0, 1e-3, 1.0, 1e30, 1e70])
def test_c_logdet_over_the_range_of_d(monkeypatch, scale):
    """``Σ log d`` through the extension (the log of the product, its exponent taken
    apart; a ``d`` past 2^400 its own log) is numpy's to ε of each term's size, from
    ``d = 1`` (Λ = 0) to ``d`` some 1e280 a group."""
    rng = np.random.default_rng(7)
    zz = rng.normal(size=(3000, 6, 2))
    zz = np.einsum("gna,gnb->abg", zz, zz)
    zxy = rng.normal(size=(2, 3, 3000))
    lam = np.array([[1.0, 0.0], [0.5, 0.7]]) * scale
    chunks = [(zz, zxy)]
    theirs = _statistics(monkeypatch, "numpy", chunks).step(lam).logdet
    ours = _statistics(monkeypatch, "c", chunks).step(lam).logdet
    _close(ours, theirs, "logdet", floor=3000.0, rtol=1e-14)


@pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")
def test_more_columns_than_the_extension_takes(monkeypatch):
    """``k`` past :data:`~dmixed.kernels.native.MAX_K` (64 fixed-effects columns
    and y) runs numpy, even where ``DMIXED_NATIVE=c`` (the extension refuses such a
    ``k``: a fit of 64 columns and two random coefficients once failed there), and
    ``k = MAX_K`` still runs C; both the numpy reference's sums."""
    rng = np.random.default_rng(5)
    for k in (native.MAX_K, native.MAX_K + 1):
        zz = rng.normal(size=(20, 6, 2))
        zz = np.einsum("gna,gnb->abg", zz, zz)
        zxy = rng.normal(size=(2, k, 20))
        ref = _statistics(monkeypatch, "numpy", [(zz, zxy)])
        ours = _statistics(monkeypatch, "c", [(zz, zxy)])
        assert ours.uses_extension == (k <= native.MAX_K)
        lam = FACTORS["plain"]
        _close(ours.step(lam).m, ref.step(lam).m, "m")


def _every_sum(data: Dense2Statistics, lam: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    """Every number :class:`Dense2Statistics` makes at ``lam`` and ``w``: the step's
    sums, ``t_re``'s gram, the rows and moments at ``w`` and the Hessian sums."""
    from dmixed.kernels.hessian_moments import full_sums

    step = data.step(lam)
    va, c = step.moments(w)
    assert step.rows is not None
    basis = Layout(2, ()).basis()
    k = data.k
    gathered = full_sums(va, c, np.eye(k - 1), basis, k)
    hs = data.hessian(step, basis, w)
    return [
        np.array([step.logdet]),
        step.m,
        step.s,
        step.gram,
        *step.rows,
        va,
        c,
        *gathered,
        *(getattr(hs, f) for f in hs.__dataclass_fields__),
    ]


@settings(max_examples=25, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 40]),
    k=st.integers(2, 7),
    chunk=st.sampled_from([None, 3]),
    factor=st.sampled_from(sorted(FACTORS)),
)
def test_shared_design_rows_are_the_own_rows(monkeypatch, seed, n_groups, k, chunk, factor):
    """Within :func:`~dmixed.kernels.dense2.sharing_design`, statistics of one design and
    several responses (the bootstrap's draws) make every sum to the bit as each made
    alone does, used in any order (one's ``y`` rows written back over another's before
    it reads them), in one chunk or several; statistics of another design share nothing."""
    from dmixed.kernels.dense2 import sharing_design

    monkeypatch.setenv(native.ENV_VAR, "numpy")
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    zz = rng.normal(size=(n_groups, 5, 2))
    zz = np.einsum("gna,gnb->gab", zz, zz)
    zxy = rng.normal(size=(n_groups, 2, k))
    other = zxy.copy()
    other[:, :, 0] += 1.0  # another design: the same y
    responses = []
    for _ in range(3):
        drawn = zxy.copy()
        drawn[:, :, -1] = rng.normal(size=(n_groups, 2))
        responses.append(drawn)
    lam, w = FACTORS[factor], np.append(rng.normal(size=k - 1), 1.0)

    def statistics(made):
        return Dense2Statistics.of_chunks(kernels.StatsBlock(zz, made).chunks())

    alone = [_every_sum(statistics(made), lam, w) for made in [*responses, other]]
    with sharing_design():
        with sharing_design():  # an inner scope shares the outer one's rows
            shared = [statistics(made) for made in [*responses, other]]
        for order in ([0, 1, 2, 3], [2, 0, 3, 1, 0]):
            for at in order:
                for ours, want in zip(_every_sum(shared[at], lam, w), alone[at], strict=True):
                    np.testing.assert_array_equal(ours, want)


@pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")
@settings(max_examples=40, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    k=st.sampled_from([1, 2, 3, 9, 70]),
    basis=st.sampled_from(["layout1", "layout2", "ones", "wide"]),
    scale=st.sampled_from([1e-300, 1.0, 1e300]),
)
def test_gathered_sums_in_c_are_numpys(seed, k, basis, scale):
    """:func:`~dmixed.kernels.hessian_moments.full_sums` with the extension's
    ``gathered_sums`` gives numpy's sums of its gathered rows to the bit: rows of every
    width a basis makes (padded with the zero; 1 to 8 numbers, and wider ones past the
    eight running sums), numbers of any magnitude, ``k`` past the extension's
    :data:`~dmixed.kernels.native.MAX_K`."""
    from dmixed.kernels.hessian_moments import full_gather, full_sums

    ext = native.extension()
    assert ext is not None
    rng = np.random.default_rng(seed)
    bases = {
        "layout1": Layout(1, ()).basis(),
        "layout2": Layout(2, ()).basis(),
        "ones": np.ones((2, 2, 2)),
        "wide": np.ones((2, 3, 3)),
    }
    e = bases[basis]
    r = e.shape[1]
    n_pair = r * (r + 1) // 2
    side = r * k + n_pair
    va = rng.normal(size=(side, side)) * scale
    c = rng.normal(size=(r * k * n_pair, r * k)) * scale
    a = rng.normal(size=(k - 1, k - 1)) * scale
    if full_gather(e, k).shape[1] == 0:
        return
    ours = full_sums(va, c, a, e, k, ext)
    want = full_sums(va, c, a, e, k)
    for got, expected in zip(ours, want, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not native.loaded(), reason="the C extension is not built")
def test_gathered_sums_refuse_bad_arguments():
    """The extension's ``gathered_sums`` refuses a position outside its numbers, an
    index of another size and a width out of range, naming what was wrong."""
    ext = native.extension()
    assert ext is not None
    flat, sums = np.ones(4), np.empty(2)
    with pytest.raises(ValueError, match="outside"):
        ext.gathered_sums(flat, np.array([[0, 1], [2, 4]]), 2, sums)
    with pytest.raises(ValueError, match="positions needed"):
        ext.gathered_sums(flat, np.zeros((3, 2), dtype=np.int64), 2, sums)
    with pytest.raises(ValueError, match="width"):
        ext.gathered_sums(flat, np.zeros((2, 0), dtype=np.int64), 0, sums)
    with pytest.raises(TypeError, match="int64"):
        ext.gathered_sums(flat, np.zeros((2, 2), dtype=np.int32), 2, sums)
    index = np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(TypeError, match="^flat: a float64 buffer is needed, got format f$"):
        ext.gathered_sums(flat.astype(np.float32), index, 2, sums)
    with pytest.raises(TypeError, match="^sums: a float64 buffer is needed, got format [lq]$"):
        ext.gathered_sums(flat, index, 2, np.empty(2, dtype=np.int64))
    read_only = np.empty(2)
    read_only.flags.writeable = False
    with pytest.raises((ValueError, BufferError), match="read-only"):
        ext.gathered_sums(flat, index, 2, read_only)
