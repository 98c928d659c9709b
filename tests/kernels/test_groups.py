"""Group kernels (statistics → contributions) against dense per-group linear algebra
written out in the test."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.stats import Layout


def _dense_reference(codes, y, x, z, lam):
    """Σ log|K_i|, [X y]'V*⁻¹[X y] and Σ S_i by explicit n_i × n_i matrices."""
    k = x.shape[1] + 1
    logdet, m, s_sum = 0.0, np.zeros((k, k)), np.zeros((z.shape[1], z.shape[1]))
    bstar = lam @ lam.T
    for g in np.unique(codes):
        idx = codes == g
        zi, xyi = z[idx], np.column_stack([x[idx], y[idx]])
        v = np.eye(idx.sum()) + zi @ bstar @ zi.T
        vinv = np.linalg.inv(v)
        logdet += np.linalg.slogdet(v)[1]
        m += xyi.T @ vinv @ xyi
        s_sum += zi.T @ vinv @ zi
    return logdet, m, s_sum


@pytest.mark.parametrize("r", [1, 2, 3, 4, 10, 17, 40])  # > 16: batched BLAS products
def test_step_matches_dense_linear_algebra(r):
    rng = np.random.default_rng(r)
    n_groups = 17
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 9, n_groups))
    n = codes.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    z = rng.normal(size=(n, r))
    y = rng.normal(size=n)
    lam = np.tril(rng.normal(size=(r, r)))
    st = kernels.accumulate_statistics(codes, n_groups, y, x, z)
    sums = kernels.step_contributions(kernels.StatsBlock(st["zz"], st["zxy"]), lam, r)
    logdet, vm, s_sum = _dense_reference(codes, y, x, z, lam)
    assert sums.logdet == pytest.approx(logdet, rel=1e-10)
    np.testing.assert_allclose(st["xyxy"] - sums.m, vm, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sums.s, s_sum, rtol=1e-9, atol=1e-9)


def test_singular_lambda_is_finite():
    """Λ = 0 (all variances on the boundary): K = I, nothing blows up."""
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(5), 4)
    st = kernels.accumulate_statistics(
        codes, 5, rng.normal(size=20), np.ones((20, 1)), rng.normal(size=(20, 2))
    )
    block = kernels.StatsBlock(st["zz"], st["zxy"])
    sums = kernels.step_contributions(block, np.zeros((2, 2)), 2)
    assert sums.logdet == 0.0
    assert np.all(np.isfinite(sums.m)) and np.all(sums.m == 0)
    blup, cov = kernels.random_effects_block(block, np.zeros((2, 2)), np.array([0.0, 1.0]))
    assert np.all(blup == 0) and np.all(cov == 0)


def test_padding_slots_is_exact():
    """A zero slot (a group without that column) changes nothing (DESIGN.md §2)."""
    rng = np.random.default_rng(5)
    codes = np.repeat(np.arange(6), 5)
    z = rng.normal(size=(30, 1))
    x, y = np.ones((30, 1)), rng.normal(size=30)
    lay = Layout(1, (1,))
    lam = lay.lam(np.array([0.7, 0.4]), True)
    zpad = np.column_stack([z, np.zeros(30)])
    st = kernels.accumulate_statistics(codes, 6, y, x, zpad)
    st1 = kernels.accumulate_statistics(codes, 6, y, x, z)
    padded = kernels.step_contributions(kernels.StatsBlock(st["zz"], st["zxy"]), lam, 1)
    plain = kernels.step_contributions(kernels.StatsBlock(st1["zz"], st1["zxy"]), lam[:1, :1], 1)
    assert padded.logdet == pytest.approx(plain.logdet, rel=1e-13)
    np.testing.assert_allclose(padded.m, plain.m, rtol=1e-13)


@pytest.mark.parametrize(("q", "widths"), [(1, ()), (2, ()), (2, (1,)), (3, (2, 1)), (2, (20,))])
def test_hessian_sums_match_their_definitions(monkeypatch, q, widths):
    """Each Hessian sum against its per-group definition (HessianSums' docstring), over
    several chunks of groups."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 7)
    rng = np.random.default_rng(q + len(widths))
    lay = Layout(q, widths)
    r, n_groups, k = lay.r, 23, 4
    zi = rng.normal(size=(n_groups, 5, r))
    zz = np.einsum("gia,gib->gab", zi, zi)
    zxy = rng.normal(size=(n_groups, r, k))
    lam = np.tril(rng.normal(size=(r, r))) + 1.5 * np.eye(r)
    lam[q:, :q] = 0.0  # variance components: diagonal block
    lam[q:, q:] = np.diag(np.diag(lam[q:, q:]))
    basis, w = lay.basis(), rng.normal(size=k)
    got = kernels.hessian_contributions(kernels.StatsBlock(zz, zxy), lam, basis, w)
    m, p = basis.shape[0], k - 1
    want = {
        "tr_ss": np.zeros((m, m)),
        "u_s_u": np.zeros((m, m)),
        "u_e_u": np.zeros(m),
        "g_e_u": np.zeros((m, p)),
        "a_j": np.zeros((m, p, p)),
        "a_jk": np.zeros((m, m, p, p)),
    }
    for i in range(n_groups):
        kmat = np.eye(r) + lam.T @ zz[i] @ lam
        pm = lam @ np.linalg.solve(kmat, lam.T)
        s = zz[i] - zz[i] @ pm @ zz[i]
        h = zxy[i] - zz[i] @ pm @ zxy[i]
        u, gm = h @ w, h[:, :p]
        for j in range(m):
            ej = basis[j]
            want["u_e_u"][j] += u @ ej @ u
            want["g_e_u"][j] += gm.T @ ej @ u
            want["a_j"][j] += gm.T @ ej @ gm
            for kk in range(m):
                ek = basis[kk]
                want["tr_ss"][j, kk] += np.trace(s @ ej @ s @ ek)
                want["u_s_u"][j, kk] += u @ ej @ s @ ek @ u
                want["a_jk"][j, kk] += 2 * gm.T @ ej @ s @ ek @ gm
    for name, value in want.items():
        np.testing.assert_allclose(getattr(got, name), value, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("r", [1, 2, 4])
def test_moment_sums_match_their_definitions(monkeypatch, r):
    """Σ ZZ, Σ ZZ ⊗ ZZ and Σ ZXy ⊗ ZXy against per-group sums, over several chunks."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 5)
    rng = np.random.default_rng(r)
    n_groups, k = 17, 4
    zi = rng.normal(size=(n_groups, 6, r))
    zz = np.einsum("gia,gib->gab", zi, zi)
    zxy = rng.normal(size=(n_groups, r, k))
    got = kernels.moment_contributions(kernels.StatsBlock(zz, zxy))
    assert got.n_groups == n_groups
    np.testing.assert_allclose(got.zz, zz.sum(axis=0), rtol=1e-12)
    want_zz = sum(np.multiply.outer(a, a) for a in zz)
    want_zxy = sum(np.multiply.outer(c, c) for c in zxy)
    np.testing.assert_allclose(got.zz_zz, want_zz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.zxy_zxy, want_zxy, rtol=1e-12, atol=1e-12)
    # sums over blocks add up: any split of the groups gives the same total
    halves = kernels.moment_contributions(kernels.StatsBlock(zz[:6], zxy[:6]))
    halves = halves + kernels.moment_contributions(kernels.StatsBlock(zz[6:], zxy[6:]))
    np.testing.assert_allclose(halves.zz_zz, got.zz_zz, rtol=1e-12, atol=1e-12)


def test_frobenius_gram_is_the_moment_equations_entries(monkeypatch):
    """Σ_i ⟨M_ij, M_ik⟩_F per pair of random-effects columns alone (Ψ_aa) and
    components, over several chunks: the moment equations' entries of those directions
    (Σ_i tr(E_j A_i E_k A_i))."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 5)
    rng = np.random.default_rng(7)
    layout = Layout(2, (2, 3))
    zi = rng.normal(size=(17, 6, layout.r))
    zz = np.einsum("gia,gib->gab", zi, zi)
    block = kernels.StatsBlock(zz, rng.normal(size=(17, layout.r, 3)))
    got = kernels.frobenius_gram(block, layout.k_re, layout.slot_component)
    rows, cols = layout.tril()
    used = np.concatenate([np.flatnonzero(rows == cols), layout.k_re2 + np.arange(layout.k_vc)])
    basis = layout.basis()[used]
    want = np.einsum("jab,kcd,gbc,gda->jk", basis, basis, zz, zz)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _random_statistics(r: int, seed: int):
    """Per-group ``zz`` (30, r, r) (positive semi-definite), ``zxy`` (30, r, 4) and a
    random lower-triangular Λ."""
    rng = np.random.default_rng(seed)
    zz = rng.normal(size=(30, r, r + 2))
    zz = np.einsum("gab,gcb->gac", zz, zz)
    zxy = rng.normal(size=(30, r, 4))
    return zz, zxy, np.tril(rng.normal(size=(r, r)))


@pytest.mark.parametrize("r", [1, 2, 3, 5])
@pytest.mark.parametrize("kept_bytes", [0, kernels.groups.KEPT_CONDITIONALS_BYTES])
def test_kept_conditionals_give_the_same_sums(monkeypatch, r, kept_bytes):
    """The Hessian and BLUPs after a step at the same Λ (reusing the step's per-group
    values) equal those of a fresh block bit for bit, and a step at another Λ is not
    served the kept values."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    monkeypatch.setattr(kernels.groups, "KEPT_CONDITIONALS_BYTES", kept_bytes)
    zz, zxy, lam = _random_statistics(r, seed=10 + r)
    other = lam * 1.5
    basis = Layout(r, ()).basis()
    w = np.array([-0.3, 0.2, -0.1, 1.0])
    used = kernels.StatsBlock(zz, zxy).keep_conditionals()
    kernels.step_contributions(used, other, r)
    step = kernels.step_contributions(used, lam, r)
    hess = kernels.hessian_contributions(used, lam, basis, w)
    blups = kernels.random_effects_block(used, lam, w)
    again = kernels.step_contributions(used, other, r)

    def fresh():
        return kernels.StatsBlock(zz, zxy)

    pairs = [
        (step, kernels.step_contributions(fresh(), lam, r)),
        (hess, kernels.hessian_contributions(fresh(), lam, basis, w)),
        (again, kernels.step_contributions(fresh(), other, r)),
    ]
    for got, want in pairs:
        for f in got.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    for got, want in zip(blups, kernels.random_effects_block(fresh(), lam, w), strict=True):
        np.testing.assert_array_equal(got, want)


def test_kept_conditionals_of_a_wide_layout(monkeypatch):
    """A random design wider than 255 columns (many variance-component slots) is keyed
    and served like any other: the second step at the same Λ equals the first."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    r = 300
    zz = np.zeros((3, r, r))
    zz[:, np.arange(r), np.arange(r)] = np.arange(1.0, 4.0)[:, None]
    zxy = np.random.default_rng(1).normal(size=(3, r, 3))
    block = kernels.StatsBlock(zz, zxy).keep_conditionals()
    lam = 0.5 * np.eye(r)
    first = kernels.step_contributions(block, lam, 0)
    second = kernels.step_contributions(block, lam, 0)
    assert (
        first.logdet == second.logdet == pytest.approx(r * np.log(np.arange(1.25, 2.0, 0.25)).sum())
    )
    np.testing.assert_array_equal(first.m, second.m)


@pytest.mark.parametrize("r", [1, 2, 3])
@pytest.mark.parametrize("chunk", [7, 16384])
def test_value_is_the_step_s_value_bit_for_bit(monkeypatch, r, chunk):
    """The sums that ℓ needs (log|K|, m, between) equal the whole step's bit for bit, in
    one chunk or several; the score's sums are NaN, not zeros that could pass for them."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    zz, zxy, lam = _random_statistics(r, seed=20 + r)
    block = kernels.StatsBlock(zz, zxy)
    value = kernels.value_contributions(block, lam, r)
    step = kernels.step_contributions(block, lam, r)
    assert value.logdet == step.logdet
    np.testing.assert_array_equal(value.m, step.m)
    np.testing.assert_array_equal(value.between, step.between)
    for name in ("s", "t_re", "t_vc"):
        got = getattr(value, name)
        assert got.shape == getattr(step, name).shape and np.all(np.isnan(got))


# the environment is set the same for every example: the fixture's scope does not matter
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    r=st.integers(1, 4),
    n_groups=st.integers(0, 40),
    scale=st.sampled_from([0.0, 1e-8, 1.0, 1e6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_blups_of_one_chunk_equal_those_of_the_chunks_joined(monkeypatch, r, n_groups, scale, seed):
    """The BLUPs and conditional covariances of a block of one chunk (its arrays copied
    as they are) equal, bit for bit and in the same layout, those of the same groups
    as a block of several chunks (joined): the one-chunk path changes no number."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    rng = np.random.default_rng(seed)
    zmat = rng.normal(size=(n_groups, 6, r))
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(r, 4, n_groups)))
    lam = scale * np.tril(rng.normal(size=(r, r)))
    w = np.append(-rng.normal(size=3), 1.0)
    one = kernels.StatsBlock.from_chunks([(zz, zxy)])
    empty = (np.zeros((r, r, 0)), np.zeros((r, 4, 0)))
    joined = kernels.StatsBlock.from_chunks([(zz, zxy), empty])
    for got, want in zip(
        kernels.random_effects_block(one, lam, w),
        kernels.random_effects_block(joined, lam, w),
        strict=True,
    ):
        assert got.flags.c_contiguous and want.flags.c_contiguous
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("chunk", [7, 16384])
def test_nbytes_counts_the_statistics_and_the_kept_values(monkeypatch, r, chunk):
    """A block's bytes are its statistics' in one chunk or several, and more while it
    keeps a step's per-group values."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    zz, zxy, lam = _random_statistics(r, seed=20 + r)
    block = kernels.StatsBlock(zz, zxy)
    assert block.nbytes == zz.nbytes + zxy.nbytes
    kept = kernels.StatsBlock(zz, zxy).keep_conditionals()
    kernels.step_contributions(kept, lam, r)
    cond = [c for *_, c in kept.conditionals(lam)]
    extra = sum(a.nbytes for c in cond for a in c if isinstance(a, np.ndarray))
    assert extra > 0 and kept.nbytes == block.nbytes + extra


@pytest.mark.parametrize("r, n_groups", [(1, 1), (1, 5), (2, 1), (3, 1), (2, 5)])
def test_blups_of_one_chunk_are_not_the_kept_conditionals(monkeypatch, r, n_groups):
    """The BLUPs' arrays of a block of one chunk are the caller's own (new, writeable),
    as those of several chunks joined: never the block's kept conditionals (read-only,
    given again to the next step at the same ``Λ``), which a moved axis of one group or
    one random effect leaves contiguous."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    rng = np.random.default_rng(r * 10 + n_groups)
    zmat = rng.normal(size=(n_groups, 6, r))
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(r, 4, n_groups)))
    lam = np.tril(rng.normal(size=(r, r)))
    w = np.append(-rng.normal(size=3), 1.0)
    block = kernels.StatsBlock.from_chunks([(zz, zxy)])
    block.keep_conditionals()
    kept = [arr for *_, cond in block.conditionals(lam) for arr in cond]
    for got in kernels.random_effects_block(block, lam, w):
        assert got.flags.writeable and got.flags.c_contiguous
        assert not any(np.shares_memory(got, arr) for arr in kept if isinstance(arr, np.ndarray))


def _random_block(rng, n_groups: int, r: int):
    """Entry-major ``zz`` (r, r, G) and ``zxy`` (r, 4, G) of random designs of 6 rows a
    group, and a random lower-triangular ``Λ`` (r, r)."""
    zmat = rng.normal(size=(n_groups, 6, r))
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(r, 4, n_groups)))
    return zz, zxy, np.tril(rng.normal(size=(r, r)))


@pytest.mark.parametrize("r", [1, 2, 3])
def test_blups_later_equal_those_made_now_whatever_the_kept_conditionals(monkeypatch, r):
    """The BLUPs made by :func:`~dmixed.kernels.groups.random_effects_later`'s function
    equal, bit for bit, those made at once, from the block's kept conditionals at that
    ``Λ`` or without them (P and H alone), after the block has gone on to other ``Λ``,
    with ``Λ`` and ``w`` changed in place meanwhile, and with the implementation chosen
    when the function was made (not asked again)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    rng = np.random.default_rng(40 + r)
    zz, zxy, lam = _random_block(rng, 30, r)
    w = np.append(-rng.normal(size=3), 1.0)
    fresh = kernels.random_effects_block(kernels.StatsBlock.from_chunks([(zz, zxy)]), lam, w)
    block = kernels.StatsBlock.from_chunks([(zz, zxy)]).keep_conditionals()
    kernels.step_contributions(block, lam, r)  # keeps the conditionals at lam
    kept = kernels.random_effects_block(block, lam, w)
    later = kernels.groups.random_effects_later(block, lam, w)
    kernels.step_contributions(block, 2.0 * lam, r)  # keeps those of another Λ
    lam[...], w[...] = 0.0, 0.0

    def refused(*args, **kwargs):
        raise AssertionError("the implementation is chosen when the function is made")

    monkeypatch.setattr(kernels.compiled, "backend", refused)
    for got, at_once, from_kept in zip(later(), fresh, kept, strict=True):
        assert got.tobytes() == at_once.tobytes() == from_kept.tobytes()


class _SteppedMeanwhile(np.ndarray):
    """A ``Λ`` whose bytes, when read for the kept conditionals' key, first let another
    fit of the same block step to another ``Λ`` (as a thread fitting the same model
    does while the BLUPs of an earlier fit are made on first read)."""

    meanwhile = None

    def tobytes(self, order="C"):
        step, type(self).meanwhile = type(self).meanwhile, None
        if step is not None:
            step()
        return np.asarray(self).tobytes(order)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_kept_conditionals_are_those_of_the_lam_asked_while_the_block_steps_on(monkeypatch, r):
    """:meth:`StatsBlock.kept_conditionals` gives the conditionals at the ``Λ`` asked
    for, or None, even where the block keeps those of another ``Λ`` between its look at
    the key and its read of the values (it reads what it keeps once)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    rng = np.random.default_rng(60 + r)
    zz, zxy, lam = _random_block(rng, 12, r)
    block = kernels.StatsBlock.from_chunks([(zz, zxy)]).keep_conditionals()
    kernels.step_contributions(block, lam, r)  # keeps the conditionals at lam
    asked = lam.copy().view(_SteppedMeanwhile)
    _SteppedMeanwhile.meanwhile = lambda: kernels.step_contributions(block, 2.0 * lam, r)
    got = block.kept_conditionals(asked)
    assert _SteppedMeanwhile.meanwhile is None  # the other step came between
    if got is not None:
        ((_, _, (p_mat, _, _, h)),) = list(got)
        want_p, _, _, want_h = kernels.conditionals.conditional(zz, zxy, lam)
        assert p_mat.tobytes() == want_p.tobytes() and h.tobytes() == want_h.tobytes()


class _KeptReadTwice(kernels.StatsBlock):
    """A block on whose second read of its kept values in one call another fit of the
    same block steps to another ``Λ`` right after the read (as a thread fitting the same
    model may)."""

    meanwhile = None
    reads = 0

    @property
    def _kept(self):
        kept = self.__dict__["kept_values"]
        type(self).reads += 1
        if type(self).reads == 2 and type(self).meanwhile is not None:
            step, type(self).meanwhile = type(self).meanwhile, None
            step()
        return kept

    @_kept.setter
    def _kept(self, value):
        self.__dict__["kept_values"] = value


@pytest.mark.parametrize("r", [1, 2, 3])
def test_conditionals_are_those_of_the_lam_asked_while_the_block_steps_on(monkeypatch, r):
    """:meth:`StatsBlock.conditionals` gives the conditionals at the ``Λ`` asked for,
    even where another step of the block keeps those of another ``Λ`` between two reads
    of what the block keeps (it reads them once)."""
    monkeypatch.setenv("DMIXED_KERNELS", "numpy")
    rng = np.random.default_rng(70 + r)
    zz, zxy, lam = _random_block(rng, 12, r)
    block = _KeptReadTwice.from_chunks([(zz, zxy)]).keep_conditionals()
    kernels.step_contributions(block, lam, r)  # keeps the conditionals at lam
    _KeptReadTwice.reads = 0
    _KeptReadTwice.meanwhile = lambda: kernels.step_contributions(block, 2.0 * lam, r)
    ((_, _, (p_mat, _, _, h)),) = list(block.conditionals(lam.copy()))
    want_p, _, _, want_h = kernels.conditionals.conditional(zz, zxy, lam)
    assert p_mat.tobytes() == want_p.tobytes() and h.tobytes() == want_h.tobytes()


def _shifted_and_centred(seed: int, weighted: bool):
    """Blocks of the same rows, some groups' random slope nearly constant (offsets of
    1e6, spreads down to 1e-3): one taking the centred sums of every group with ``W``
    (:meth:`StatsBlock.use_centred`), one taking its lossy groups' sums about shifts of
    their own (:meth:`StatsBlock.use_shifted`); with ``[X y]'[X y]`` and ``W``."""
    rng = np.random.default_rng(seed)
    n_groups = 40
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 7, n_groups))
    n = codes.size
    t = 1e6 + 1e4 * rng.normal(size=n_groups)[codes] + rng.normal(size=n)
    near = rng.random(n_groups) < 0.4
    spread = 10.0 ** rng.uniform(-3, 0, n_groups)
    t = np.where(near[codes], 1e6 + 1e4 * rng.normal(size=n_groups)[codes], t)
    t = t + np.where(near[codes], spread[codes] * rng.normal(size=n), 0.0)
    x = np.column_stack([np.ones(n), t, rng.normal(size=n)])
    z = x[:, :2].copy()
    y = 1.0 + 1e-4 * t + rng.normal(size=n_groups)[codes] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    st_ = kernels.accumulate_statistics(codes, n_groups, y, x, z, w)
    lossy = kernels.lossy_groups(np.moveaxis(st_["zz"], 0, -1), st_["nobs"])
    assert lossy.any() and not lossy.all()
    centred = kernels.centred_statistics(codes, n_groups, y, x, z, lossy, w)
    a = kernels.StatsBlock(st_["zz"], st_["zxy"]).use_centred(centred)
    shifted = kernels.shifted_statistics(codes, n_groups, y, x, z, w)
    sel = np.flatnonzero(lossy)
    b = kernels.StatsBlock(st_["zz"], st_["zxy"])
    b.use_shifted(sel, tuple(arr[..., sel] for arr in shifted), 0, (0, 1, -1, -1))
    plain = kernels.StatsBlock(st_["zz"], st_["zxy"])
    return a, b, plain, st_["xyxy"], centred.within, st_["nobs"]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shifted_sums_of_lossy_groups_give_the_centred_forms(seed, weighted):
    """A block whose lossy groups take the centred forms from their sums about shifts
    of their own (:meth:`StatsBlock.use_shifted`; the others their plain sums, the
    profile ``[X y]'[X y] − Σ m_i``) gives the numbers of the block of the same rows
    centred by two passes (:meth:`StatsBlock.use_centred`, the profile ``W + between``),
    to rounding of the sums' size; the other groups' BLUPs are the plain block's."""
    centred, shifted, plain, xyxy, within, nobs = _shifted_and_centred(seed, weighted)
    n_lossy = centred.centred_groups
    assert shifted.numpy_only and shifted.centred_groups == n_lossy
    assert shifted.inexact_groups(nobs) == 0
    rng = np.random.default_rng(seed)
    for scale in (1e-3, 1.0, 30.0):
        lam = np.tril(rng.normal(size=(2, 2))) * np.array([[1.0, 0.0], [1e-4, 1e-4]]) * scale
        want = kernels.step_contributions(centred, lam, 2)
        got = kernels.step_contributions(shifted, lam, 2)
        assert not got.rank_one
        size = np.abs(xyxy).max()
        np.testing.assert_allclose(xyxy - got.m, within + want.between, rtol=0, atol=1e-12 * size)
        assert got.logdet == pytest.approx(want.logdet, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(got.s, want.s, rtol=1e-10, atol=1e-12 * np.abs(want.s).max())
        w_vec = np.array([-1.0, -1e-4, 0.3, 1.0])
        blup_a, cov_a = kernels.random_effects_block(centred, lam, w_vec)
        blup_b, cov_b = kernels.random_effects_block(shifted, lam, w_vec)
        blup_p, cov_p = kernels.random_effects_block(plain, lam, w_vec)
        lossy = np.zeros(nobs.size, dtype=bool)
        for sel, _ in shifted._subset:  # one chunk
            lossy[sel] = True
        ba, bb = blup_a[lossy], blup_b[lossy]
        np.testing.assert_allclose(bb, ba, rtol=1e-8, atol=1e-10 * np.abs(ba).max())
        np.testing.assert_allclose(cov_b[lossy], cov_a[lossy], rtol=1e-8, atol=1e-14)
        # (the plain block's may be the compiled kernels': the same forms to rounding)
        np.testing.assert_allclose(blup_b[~lossy], blup_p[~lossy], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(cov_b[~lossy], cov_p[~lossy], rtol=1e-12, atol=1e-300)
    # pickled (a block sent to a worker) it keeps its forms
    import pickle

    again = pickle.loads(pickle.dumps(shifted))
    assert again.centred_groups == n_lossy


@pytest.mark.parametrize("first", ["rank_one", "shifted"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_rank_one_forms_keep_the_lossy_groups_centred_forms(seed, weighted, first):
    """A block told to take the rank-one forms (its rows kept ``W``: on Dask, a batch
    of one-row groups is constant within each) whose lossy groups take the centred
    forms from their sums about their shifts, in either order: both kept, nothing
    refused, and the profile ``W + between`` the centred block's to rounding of the
    sums' size (the lossy groups' part ``centred_between``, not ``F F'/U − m_i``);
    pickled, it keeps both."""
    import pickle

    centred, shifted, _, xyxy, within, nobs = _shifted_and_centred(seed, weighted)
    n_lossy = centred.centred_groups
    assert kernels.StatsBlock.from_chunks(list(shifted.chunks())).inexact_groups(nobs, True)
    if first == "rank_one":
        both = kernels.StatsBlock.from_chunks(list(shifted.chunks())).use_rank_one(nobs)
        both.use_shifted(*shifted.shifted)
    else:
        both = pickle.loads(pickle.dumps(shifted)).use_rank_one(nobs)
    for block in (both, pickle.loads(pickle.dumps(both))):
        assert block.rank_one and block.numpy_only and block.centred_groups == n_lossy
        assert block.inexact_groups(nobs) == 0 and block.inexact_groups(nobs, True) == 0
    rng = np.random.default_rng(seed)
    size = np.abs(xyxy).max()
    for scale in (1e-3, 1.0, 30.0):
        lam = np.tril(rng.normal(size=(2, 2))) * np.array([[1.0, 0.0], [1e-4, 1e-4]]) * scale
        want = kernels.step_contributions(centred, lam, 2)
        got = kernels.step_contributions(both, lam, 2)
        plain_shifted = kernels.step_contributions(shifted, lam, 2)
        assert got.rank_one
        np.testing.assert_allclose(
            within + got.between, within + want.between, rtol=0, atol=1e-12 * size
        )
        # the score's sums and ℓ's log-determinant are the shifted block's, bit for bit
        # where the rank-one groups' closed forms agree to rounding
        assert got.logdet == pytest.approx(plain_shifted.logdet, rel=1e-12)
        np.testing.assert_allclose(
            got.s, plain_shifted.s, rtol=1e-10, atol=1e-12 * np.abs(want.s).max()
        )


def test_a_rank_one_block_pickled_without_its_masks_is_refused():
    """A block pickled by a dmixed that judged rank one where it was evaluated carries
    ``True``, not the groups' masks: read as plain sums it would lose its closed forms
    without a word (a client and workers of two versions), so it is refused."""
    import pickle

    rng = np.random.default_rng(0)
    zz = rng.normal(size=(2, 2, 5))
    zxy = rng.normal(size=(2, 3, 5))
    block = kernels.StatsBlock(zz, zxy)
    state = block.__getstate__()
    back = pickle.loads(pickle.dumps(block))
    np.testing.assert_array_equal(back.dense()[0], block.dense()[0])
    old = kernels.StatsBlock.__new__(kernels.StatsBlock)
    with pytest.raises(ValueError, match="same dmixed"):
        old.__setstate__((state, True))


# ---------------------------------------------------------------------------
# ChunkSpans: the one owner of a block's chunk → position mapping
# ---------------------------------------------------------------------------


def _old_split(sizes, sel):
    """Each chunk's share of ``sel`` as ``use_shifted`` and ``use_centred_at`` derived
    it before :class:`~dmixed.kernels.groups.ChunkSpans` (one search per chunk)."""
    out, lo = [], 0
    for size in sizes:
        a, b = np.searchsorted(sel, [lo, lo + size])
        out.append((slice(a, b), sel[a:b] - lo))
        lo += size
    return out


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    data=st.data(),
)
def test_chunk_spans_split_join_and_slices_are_the_per_chunk_offsets(sizes, data):
    """Any chunk sizes (empty chunks too) and any increasing selection: the slices are
    each chunk's ``lo:hi``, :meth:`ChunkSpans.split` gives what one search per chunk
    gave, and :meth:`ChunkSpans.join` is its inverse."""
    from dmixed.kernels.groups import ChunkSpans

    spans = ChunkSpans(sizes)
    n = sum(sizes)
    assert spans.n_groups == n and spans.edges.dtype == np.int64
    lo = 0
    for size, at in zip(sizes, spans.slices(), strict=True):
        assert (at.start, at.stop) == (lo, lo + size)
        lo += size
    sel = np.array(sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))))
    sel = sel.astype(np.int64)[sel < n] if sel.size else np.zeros(0, dtype=np.int64)
    got, want = spans.split(sel), _old_split(sizes, sel)
    assert len(got) == len(want)
    for (at, local), (want_at, want_local) in zip(got, want, strict=True):
        assert (at.start, at.stop) == (want_at.start, want_at.stop)
        assert local.dtype == np.int64 and np.array_equal(local, want_local)
    joined = spans.join(local for _, local in got)
    assert joined.dtype == np.int64 and np.array_equal(joined, sel)


@functools.cache
def _lossy_rows(seed: int):
    """:func:`_shifted_and_centred`'s blocks (one chunk), with its sums about shifts."""
    return _shifted_and_centred(seed, False)


def _rechunked(block, cuts):
    """``block`` (one chunk) as chunks cut before the groups ``cuts``."""
    zz, zxy = next(block.chunks())
    edges = [0, *cuts, zz.shape[-1]]
    return kernels.StatsBlock.from_chunks(
        [
            (np.ascontiguousarray(zz[..., a:b]), np.ascontiguousarray(zxy[..., a:b]))
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.sets(st.integers(1, 39), max_size=5), seed=st.sampled_from([0, 1]))
def test_blocks_of_any_chunks_map_every_kind_of_group_as_one_chunk(cuts, seed):
    """A block cut into any chunks, its groups plain, shifted (:meth:`use_shifted`),
    centred at given positions (:meth:`use_centred_at`), centred about ``W``
    (:meth:`use_centred`) and rank one (:meth:`use_rank_one`), places every group where
    the one-chunk block does: the same positions, centred sums, lossy and inexact
    groups, bit for bit, and pickled it keeps them."""
    import pickle

    centred, shifted, _, _, _, nobs = _lossy_rows(seed)
    cuts = sorted(cuts)
    sel, sums_about_shifts, e, shared, lossy = shifted.shifted
    block = _rechunked(shifted, cuts)
    assert block.spans.n_groups == block.n_groups == nobs.size
    assert np.array_equal(block.spans.edges, [0, *cuts, nobs.size])
    masks = list(block.lossy_masks(nobs))
    assert [m.size for m in masks] == np.diff(block.spans.edges).tolist()
    assert np.array_equal(np.flatnonzero(np.concatenate(masks)), sel)
    mask = block.lossy_mask(nobs)
    assert mask is not None and mask.dtype == bool and np.array_equal(np.flatnonzero(mask), sel)
    assert block.inexact_groups(nobs) == kernels.StatsBlock.from_chunks(
        list(shifted.chunks())
    ).inexact_groups(nobs)
    # shifted: the lossy groups about their shifts
    block.use_shifted(sel, sums_about_shifts, e, shared, lossy)
    want_pos, want_sums, want_all = shifted.centred_sums()
    for again in (block, pickle.loads(pickle.dumps(block))):
        pos, sums, everyone = again.centred_sums()
        assert not everyone and np.array_equal(pos, want_pos) and pos.dtype == np.int64
        assert np.array_equal(again.centred_positions(), sel)
        for name in ("u", "mean", "c", "d", "zbar", "lossy"):
            assert np.asarray(getattr(sums, name)).tobytes() == (
                np.asarray(getattr(want_sums, name)).tobytes()
            ), name
        assert again.centred_groups == sel.size and again.inexact_groups(nobs) == 0
    # rank one on top: the lossy groups keep their centred forms
    block.use_rank_one(nobs)
    one_chunk = pickle.loads(pickle.dumps(shifted)).use_rank_one(nobs)
    assert np.array_equal(block.centred_positions(), one_chunk.centred_positions())
    assert block.inexact_groups(nobs) == one_chunk.inexact_groups(nobs) == 0
    assert block.inexact_groups(nobs, True) == one_chunk.inexact_groups(nobs, True)
    # centred at given positions (a drawn copy's), then about W (every group)
    at = _rechunked(shifted, cuts).use_centred_at(want_pos, want_sums)
    assert np.array_equal(at.centred_positions(), want_pos)
    assert np.asarray(at.centred_sums()[1].d).tobytes() == np.asarray(want_sums.d).tobytes()
    every = _rechunked(centred, cuts)
    every.use_centred(centred.centred_sums()[1])
    pos, sums, everyone = every.centred_sums()
    assert everyone and np.array_equal(pos, np.arange(nobs.size))
    assert np.array_equal(every.centred_positions(), centred.centred_positions())
    assert np.asarray(sums.c).tobytes() == np.asarray(centred.centred_sums()[1].c).tobytes()


def test_lossy_mask_is_the_chunks_masks_joined_or_none():
    """:meth:`StatsBlock.lossy_mask`: the lossy groups of every chunk, in the block's
    order (a random slope constant within its group next to the intercept), or None
    where no group is lossy."""
    rng = np.random.default_rng(5)
    zmat = rng.normal(size=(12, 6, 2))
    zmat[:, :, 0] = 1.0
    zmat[[3, 10], :, 1] = 7.0
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(2, 4, 12)))
    nobs = np.full(12, 6)
    chunks = [(zz[..., :5].copy(), zxy[..., :5].copy()), (zz[..., 5:].copy(), zxy[..., 5:].copy())]
    block = kernels.StatsBlock.from_chunks(chunks)
    mask = block.lossy_mask(nobs)
    assert mask is not None and mask.dtype == bool
    assert np.array_equal(np.flatnonzero(mask), [3, 10])
    assert np.array_equal(mask, np.concatenate(list(block.lossy_masks(nobs))))
    assert block.lossy_mask(np.ones(12)) is None  # one-row groups are never lossy


def test_a_bound_found_clear_is_kept_with_its_group_sizes(monkeypatch):
    """:meth:`StatsBlock.lossy_mask` keeps a bound that holds no group with a copy of
    the ``nobs`` it was asked with: asked again with the bound and equal sizes (the same
    array or another), None without a look at the chunks; another bound, other sizes
    (one-row groups clear only those they cover), or a block made again (pickled) look
    again, and a bound that holds groups is never kept."""
    import pickle

    rng = np.random.default_rng(5)
    zmat = rng.normal(size=(12, 6, 2))
    zmat[:, :, 0] = 1.0
    zmat[[3, 10], :, 1] = 7.0
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(2, 4, 12)))
    block = kernels.StatsBlock.from_entry_major(zz, zxy)
    looks = []
    made = kernels.StatsBlock.lossy_masks

    def counted(self, nobs, bound=kernels.conditionals.LOSSY_DETERMINANT):
        looks.append(bound)
        return made(self, nobs, bound)

    monkeypatch.setattr(kernels.StatsBlock, "lossy_masks", counted)
    sizes, ones = np.full(12, 6), np.ones(12)
    assert block.lossy_mask(ones, 1e-5) is None  # the two lossy groups are of one row
    assert block.lossy_mask(sizes, 1e-5) is not None  # not with these sizes
    assert block.lossy_mask(sizes, 1e-5) is not None  # (a mask found: nothing kept)
    assert len(looks) == 3
    clear = 1e-300
    assert block.lossy_mask(sizes, clear) is None
    assert block.lossy_mask(sizes, clear) is None
    assert len(looks) == 4  # the second answer without a look
    assert block.lossy_mask(sizes.copy(), clear) is None  # equal sizes: no look
    assert len(looks) == 4
    assert block.lossy_mask(sizes, 1e-5) is not None
    assert len(looks) == 5
    again = pickle.loads(pickle.dumps(block))
    assert again.lossy_mask(sizes, clear) is None
    assert len(looks) == 6


def test_a_clear_bound_is_not_kept_for_sizes_changed_in_place():
    """Group sizes changed in place after a clear answer are looked at again: the kept
    answer is for the sizes' values, not the array's identity (two groups of a design
    nearly singular are clear while of one row, lossy once of six)."""
    rng = np.random.default_rng(5)
    zmat = rng.normal(size=(12, 6, 2))
    zmat[:, :, 0] = 1.0
    zmat[[3, 10], :, 1] = 7.0
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    block = kernels.StatsBlock.from_entry_major(zz, np.zeros((2, 4, 12)))
    nobs = np.ones(12, dtype=np.int64)
    assert block.lossy_mask(nobs, 1e-5) is None
    nobs[:] = 6  # the same array, now six rows a group
    mask = block.lossy_mask(nobs, 1e-5)
    assert mask is not None
    assert np.flatnonzero(mask).tolist() == [3, 10]
    assert block.lossy_mask(nobs.copy(), 1e-5) is not None


def test_a_fit_checks_its_groups_coarsely_once(monkeypatch):
    """A fit of arrays (no lossy group) makes the coarse check of its groups once: the
    data pass's answer is the precision check's (the same chunks, the same group
    sizes, the same bound)."""
    import dmixed

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 8)
    x = np.column_stack([np.ones(g.size), rng.normal(size=g.size)])
    y = x @ [1.0, 0.5] + rng.normal(size=40)[g] + rng.normal(size=g.size)
    looks = []
    made = kernels.StatsBlock.lossy_masks

    def counted(self, nobs, bound=kernels.conditionals.LOSSY_DETERMINANT):
        looks.append(bound)
        return made(self, nobs, bound)

    monkeypatch.setattr(kernels.StatsBlock, "lossy_masks", counted)
    dmixed.MixedLM(y, x, g, exog_re=x).fit(reml=True)
    assert looks == [kernels.conditionals.CENTRED_DETERMINANT]


def test_chunk_spans_of_a_block_of_no_groups():
    """A block of no groups has one chunk of none: nothing to split or join."""
    block = kernels.StatsBlock(np.zeros((0, 2, 2)), np.zeros((0, 2, 3)))
    assert block.spans.n_groups == 0 and block.spans.slices() == [slice(0, 0)]
    assert block.centred_positions().size == 0 and next(block.lossy_masks(np.zeros(0))).size == 0
    assert block.lossy_mask(np.zeros(0)) is None


def test_spans_kept_by_a_block_leave_its_pickle_as_it_was():
    """A block's :attr:`StatsBlock.spans`, once made, is not pickled: the same bytes
    before and after (a block pickled by this version loads in one without spans and
    back), and a loaded block makes its own."""
    import pickle

    centred, shifted, plain, *_, nobs = _lossy_rows(0)
    for block in (centred, shifted, plain):
        copy = pickle.loads(pickle.dumps(block))
        before = pickle.dumps(copy)
        _ = _rechunked(copy, [7, 30]).spans, copy.spans
        assert pickle.dumps(copy) == before
        again = pickle.loads(before)
        assert np.array_equal(again.spans.edges, [0, nobs.size])
        assert np.array_equal(again.centred_positions(), block.centred_positions())


@pytest.mark.parametrize("n", [0, 1, 5, 16383, 16384, 16385, 3 * 16384 + 7])
def test_chunk_spans_cut_is_how_a_new_block_chunks_its_groups(n):
    """:meth:`ChunkSpans.cut`: chunks of :data:`GROUP_CHUNK` groups but the last, one of
    none for no groups; a block made from per-group or entry-major sums has those."""
    from dmixed.kernels.groups import GROUP_CHUNK, ChunkSpans

    spans = ChunkSpans.cut(n)
    want = [min(GROUP_CHUNK, n - lo) for lo in range(0, max(n, 1), GROUP_CHUNK)]
    assert np.diff(spans.edges).tolist() == want and spans.n_groups == n
    zz = np.arange(n, dtype=np.float64).reshape(n, 1, 1) + 1.0
    for block in (
        kernels.StatsBlock(zz, np.ones((n, 1, 2))),
        kernels.StatsBlock.from_entry_major(np.moveaxis(zz, 0, -1), np.ones((1, 2, n))),
    ):
        assert [c[0].shape[-1] for c in block.chunks()] == want
        assert np.array_equal(block.spans.edges, spans.edges) and block.n_groups == n
        assert np.array_equal(block.dense()[0], zz)


def test_chunk_spans_edges_are_read_only():
    """A block's spans are shared: an edited edge would misplace groups silently."""
    from dmixed.kernels.groups import ChunkSpans

    spans = ChunkSpans([3, 0, 2])
    with pytest.raises(ValueError):
        spans.edges[1] = 0


@pytest.mark.parametrize("size", [1, 3, 16])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 16, 17, 50])
def test_chunk_spans_cut_by_any_size(n, size):
    """:meth:`ChunkSpans.cut` with a chunk size of its own (a merge's): chunks of
    ``size`` groups but the last, one of none for no groups; a size below one refused."""
    from dmixed.kernels.groups import ChunkSpans

    spans = ChunkSpans.cut(n, size)
    want = [min(size, n - lo) for lo in range(0, max(n, 1), size)]
    assert np.diff(spans.edges).tolist() == want and spans.n_groups == n
    with pytest.raises(ValueError, match="size must be at least 1"):
        ChunkSpans.cut(n, 0)


def _entry_major(sizes: np.ndarray, weights=None, seed: int = 0) -> np.ndarray:
    """The entry-major ``Z̃'Z̃`` (2, 2, G) of ``1 + x`` random designs (x ~ N(0, 1)) of
    groups of ``sizes`` rows, ``weights`` (a function of the generator and the row
    count) or none: made by bincount, no fit."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=g.size)
    w = np.ones(g.size) if weights is None else weights(rng, g.size)
    n = sizes.size
    zz = np.empty((2, 2, n))
    zz[0, 0] = np.bincount(g, w, n)
    zz[0, 1] = zz[1, 0] = np.bincount(g, w * x, n)
    zz[1, 1] = np.bincount(g, w * x * x, n)
    return zz


def _near_block(zz: np.ndarray) -> kernels.StatsBlock:
    return kernels.StatsBlock.from_entry_major(zz, np.zeros((2, 1, zz.shape[-1])))


@pytest.mark.parametrize(
    "sizes, weights",
    [
        ((1, 4, 1_000_000), None),
        ((2, 3, 1_000_000), None),
        ((20, 21, 100_000), None),
        ((1, 4, 1_000_000), lambda rng, n: 10 ** rng.uniform(-2, 2, n)),
    ],
    ids=["1-3 rows", "2 rows", "20 rows", "weights over 4 decades"],
)
def test_ordinary_groups_are_lossy_or_not_near_lossy(sizes, weights):
    """Ordinary data (1M groups of 1-3 rows, 100k of 20, weights spanning decades) has
    groups below ``CENTRED_DETERMINANT`` by chance, but each is a tiny part of the
    totals: :meth:`StatsBlock.near_lossy_mask` holds the lossy groups only (those main
    already centres), none only near lossy."""
    from dmixed.kernels import CENTRED_DETERMINANT

    nobs = np.random.default_rng(1).integers(*sizes)
    block = _near_block(_entry_major(nobs, weights))
    near, lossy = block.near_lossy_mask(nobs), block.lossy_mask(nobs)
    if sizes[0] < 20:
        assert block.lossy_mask(nobs, CENTRED_DETERMINANT).sum() > 100  # the check has work
    if near is None:
        assert lossy is None
    else:
        assert lossy is not None and np.array_equal(near, lossy)


def test_a_group_most_of_the_block_is_near_lossy_at_the_coarse_bound():
    """The same determinant (about 1e-6) is near lossy where the group is most of its
    block's ``Z̃'Z̃`` diagonal and not where it is one of thousands."""
    nobs = np.full(2000, 3)
    zz = _entry_major(nobs, seed=3)
    x = -0.8 + 1e-3 * np.arange(3.0)  # scaled determinant 1.04e-6
    for weight, near in ((1.0, False), (1e6, True)):
        mine = zz.copy()
        mine[:, :, 0] = weight * np.array([[3.0, x.sum()], [x.sum(), (x * x).sum()]])
        mask = _near_block(mine).near_lossy_mask(nobs)
        assert (mask is not None and bool(mask[0])) is near


@pytest.mark.parametrize("lossy_second", [False, True])
def test_centred_masks_are_the_near_lossy_and_lossy_masks(lossy_second):
    """``StatsBlock.centred_masks``: the groups that take the centred forms and the lossy
    ones among them, as :meth:`near_lossy_mask` and :meth:`lossy_mask` give them (the
    lossy mask all False where none is lossy); None where no group takes the forms."""
    import dmixed

    from .._near_lossy import NEAR_KW, near_lossy_frame

    frame = near_lossy_frame(1e9, lossy_second=lossy_second)
    stats = dmixed.MixedLM.from_formula("y ~ x1", frame, **NEAR_KW).statistics()
    block, nobs = stats.engine.block, np.asarray(stats.group_sizes)
    near, lossy = block.centred_masks(nobs)
    np.testing.assert_array_equal(near, block.near_lossy_mask(nobs))
    expected = block.lossy_mask(nobs)
    assert (expected is not None) == lossy_second
    np.testing.assert_array_equal(lossy, np.zeros_like(near) if expected is None else expected)
    assert near[0] and not lossy[0]  # group 0 near lossy only
    assert bool(near[1]) == bool(lossy[1]) == lossy_second
    plain = near_lossy_frame(1.0, spread=1.0)
    stats = dmixed.MixedLM.from_formula("y ~ x1", plain, **NEAR_KW).statistics()
    assert stats.engine.block.centred_masks(np.asarray(stats.group_sizes)) is None
