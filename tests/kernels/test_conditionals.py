"""gram_rows: the groups' sums of products a a' (gemm on a copy, or syrk past its size);
the per-group conditionals, and their closed forms for groups whose ``Z̃_i'Z̃_i`` has rank
one (a random design of the intercept and columns constant within the group)."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.kernels import StatsBlock, step_contributions
from dmixed.kernels.conditionals import conditional, gram_rows, rank_one_groups


@pytest.mark.parametrize("k, g", [(1, 1), (3, 200), (8, 2_000), (4, 17), (8, 20_000)])
def test_gram_rows_is_a_a_transposed_to_rounding_and_symmetric(k, g):
    rng = np.random.default_rng(k * g)
    a = rng.normal(size=(k, g)) * rng.uniform(0.1, 10.0, size=(k, 1))
    out = gram_rows(a)
    exact = np.array([[float(np.dot(a[i], a[j])) for j in range(k)] for i in range(k)])
    scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))
    assert out.shape == (k, k)
    np.testing.assert_array_equal(out, out.T)
    assert np.max(np.abs(out - exact) / scale) <= 1e-13
    assert np.max(np.abs(out - a @ a.T) / scale) <= 1e-13


@pytest.mark.parametrize("r", [1, 2, 3, 9])
@pytest.mark.parametrize("scale", [0.0, 1.0, 1e6])
def test_blups_only_gives_p_and_h_bit_for_bit(r, scale):
    """``conditional(..., blups_only=True)`` gives the full call's ``P`` and ``H``, the
    same bytes, and no ``log|K|`` or ``S`` (which the BLUPs do not read)."""
    rng = np.random.default_rng(r)
    zmat = rng.normal(size=(25, 8, r))
    zz = np.ascontiguousarray(np.einsum("gia,gib->abg", zmat, zmat))
    zxy = np.ascontiguousarray(rng.normal(size=(r, 4, 25)))
    lam = scale * np.tril(rng.normal(size=(r, r)))
    p_all, logdet, s, h_all = conditional(zz, zxy, lam)
    p_mat, no_logdet, no_s, h = conditional(zz, zxy, lam, blups_only=True)
    assert logdet is not None and s is not None
    assert no_logdet is None and no_s is None
    assert p_mat.tobytes() == p_all.tobytes() and h.tobytes() == h_all.tobytes()


def _rank_one_chunk(rng, n_groups=30, r=3, k=4, vary=()):
    """Entry-major ``zz``, ``zxy`` of groups whose random design is ``[1, c_i...]``
    (constant within each group) but for the groups in ``vary``."""
    zz = np.zeros((r, r, n_groups))
    zxy = np.zeros((r, k, n_groups))
    for i in range(n_groups):
        n = 1 + i % 6
        z = np.column_stack([np.ones(n), np.repeat(rng.integers(-9, 10, (1, r - 1)), n, 0)])
        if i in vary:
            z[:, 1] += np.arange(n)
        d = rng.normal(size=(n, k)) * 100.0
        zz[..., i] = z.T @ z
        zxy[..., i] = z.T @ d
    return zz, zxy


@pytest.mark.parametrize("c", [1e-7, 1.0, 1e7])
def test_rank_one_is_judged_against_the_rows_whatever_the_weights(c):
    """Ten rows of weight ``c·1e7`` whose slope has a relative spread of 1e-7 (resolved by
    sums of ten terms) are not rank one in any weight unit; rows of one constant slope
    are, however many (a sum of ``n`` terms rounds by up to ``n·ε``) and whatever the
    weight.  The base judged the first against ``ε·U_i`` (U_i = 1e8): rank one, its
    spread dropped from the fit."""
    rng = np.random.default_rng(0)
    x = 5 + 5 * np.sqrt(1e-7) * rng.normal(size=10)
    z_spread = np.column_stack([np.ones(10), x]) * np.sqrt(c * 1e7)
    n_const = 100_000
    z_const = np.column_stack([np.ones(n_const), np.full(n_const, 0.1)]) * np.sqrt(c * 3.0)
    zz = np.stack([z_spread.T @ z_spread, z_const.T @ z_const], axis=-1)
    np.testing.assert_array_equal(rank_one_groups(zz, np.array([10, n_const])), [False, True])


def test_rank_one_groups_are_those_of_constant_columns():
    rng = np.random.default_rng(1)
    zz, _ = _rank_one_chunk(rng, vary=(6, 13))
    zz[..., 20] = 0.0  # a group of no weight
    one = rank_one_groups(zz, zz[0, 0])  # unweighted: U_i is the rows
    want = np.ones(zz.shape[-1], dtype=bool)
    want[[13, 20]] = False  # group 6 has one row: rank one all the same
    np.testing.assert_array_equal(one, want)


@pytest.mark.parametrize("r", [2, 3])
@pytest.mark.parametrize("mode", ["all", "value_only", "blups_only"])
def test_rank_one_closed_forms_are_the_general_forms(r, mode):
    """Where nothing cancels (Λ of order 1), the closed forms give the general forms'
    values to rounding; the groups not rank one keep the general values bit for bit."""
    rng = np.random.default_rng(r)
    zz, zxy = _rank_one_chunk(rng, r=r, vary=(13,))
    lam = np.tril(rng.normal(size=(r, r)))
    one = rank_one_groups(zz, zz[0, 0])  # unweighted: U_i is the rows
    kw = {"value_only": mode == "value_only", "blups_only": mode == "blups_only"}
    general = conditional(zz, zxy, lam, **kw)
    closed = conditional(zz, zxy, lam, one=one, **kw)
    for got, want in zip(closed, general, strict=True):
        assert (got is None) == (want is None)
        if want is None:
            continue
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
        assert got[..., ~one].tobytes() == np.ascontiguousarray(want[..., ~one]).tobytes()


def test_a_rank_one_block_keeps_its_forms_when_pickled():
    rng = np.random.default_rng(3)
    zz, zxy = _rank_one_chunk(rng)
    block = StatsBlock.from_entry_major(zz, zxy).use_rank_one(zz[0, 0])
    back = pickle.loads(pickle.dumps(block))
    assert back.rank_one and not pickle.loads(pickle.dumps(StatsBlock(*block.dense()))).rank_one
    lam = np.tril(rng.normal(size=(3, 3))) * 1e3
    got, want = step_contributions(back, lam, 3), step_contributions(block, lam, 3)
    assert got.rank_one and got.between.tobytes() == want.between.tobytes()


def test_plain_rounding_charges_the_groups_below_its_bound_only():
    """``plain_rounding`` charges the groups below ``PLAIN_CHARGED_DETERMINANT`` only,
    and nothing for one below ``LOSSY_DETERMINANT``."""
    from dmixed.kernels.conditionals import plain_rounding

    rng = np.random.default_rng(4)
    n, k = 12, 3
    zs = []
    for i in range(n):  # rows of groups of 10: some nearly constant slopes
        z = np.column_stack([np.ones(10), 5 + (1e-2 if i % 3 == 0 else 1.0) * rng.normal(size=10)])
        zs.append(z)
    zz = np.stack([z.T @ z for z in zs], axis=-1)
    zxy = np.stack([z.T @ rng.normal(size=(10, k)) for z in zs], axis=-1)
    nobs = np.full(n, 10)
    got = plain_rounding(zz, zxy, nobs)
    assert got.sizes.any() and got.logdet > 0 and got.gamma > 0
    assert np.all(np.linalg.eigvalsh(got.sizes) >= -1e-12 * np.abs(got.sizes).max())
    ordinary = [i for i in range(n) if i % 3]
    assert not plain_rounding(zz[..., ordinary], zxy[..., ordinary], nobs[ordinary]).sizes.any()
    # below LOSSY_DETERMINANT (refused or exact forms elsewhere; structural here)
    singular = zz[..., ordinary].copy()
    singular[..., 0] = np.array([[2.0, 2.0], [2.0, 2.0]])
    assert not plain_rounding(singular, zxy[..., ordinary], nobs[ordinary]).sizes.any()


@settings(max_examples=40, deadline=None)
@given(
    log_weight=st.floats(0.0, 13.0),
    log_spread=st.floats(-3.5, -1.0),
    seed=st.integers(0, 2**16),
)
def test_plain_rounding_bounds_the_rounding_of_a_groups_sums(log_weight, log_spread, seed):
    """Worst-case: a group of 10 rows weighted ``10^log_weight`` with ``x`` = 5 ±
    ``10^log_spread`` (scaled determinants 1e-9 to 1e-4): what its float64 sums (``G``,
    ``F``) move ``w'[X y]'V*⁻¹[X y]w`` by, against the exact sums of the same rows (60
    digits), at random ``Λ`` (1e-3 to 1e3) and ``w``, is within ``w'Pw + 8γk
    w'diag(H)w`` (:class:`PlainRounding`), and ``log det K`` within its ``logdet``."""
    import mpmath

    from dmixed.kernels.conditionals import LOSSY_DETERMINANT, plain_rounding

    rng = np.random.default_rng(seed)
    m, k = 10, 3
    x = 5 + 10.0**log_spread * rng.normal(size=m)
    e = np.full(m, np.sqrt(10.0**log_weight))
    z = np.column_stack([e, e * x])
    r_rows = e[:, None] * np.column_stack([np.ones(m), x, x + rng.normal(size=m)])
    zz, zxy = z.T @ z, z.T @ r_rows
    got = plain_rounding(zz[..., None], zxy[..., None], np.array([m]), bound=1.0)
    a = zz / np.sqrt(np.outer(np.diag(zz), np.diag(zz)))
    if np.linalg.det(a) < LOSSY_DETERMINANT:
        assert not got.sizes.any()
        return
    mpmath.mp.dps = 60
    zm, rm = mpmath.matrix(z.tolist()), mpmath.matrix(r_rows.tolist())
    g_exact, f_exact = zm.T * zm, zm.T * rm
    g_float, f_float = mpmath.matrix(zz.tolist()), mpmath.matrix(zxy.tolist())
    h = np.diag(r_rows.T @ r_rows)
    for _ in range(3):
        lam = np.tril(rng.normal(size=(2, 2))) * 10.0 ** rng.uniform(-3, 3)
        w = rng.normal(size=k)
        lm, wm = mpmath.matrix(lam.tolist()), mpmath.matrix(w.tolist())

        def form(g, f, lm=lm, wm=wm):
            kk = mpmath.eye(2) + lm.T * g * lm
            u = lm.T * f * wm
            return (u.T * mpmath.lu_solve(kk, u))[0], mpmath.log(mpmath.det(kk))

        (q_exact, ld_exact), (q_float, ld_float) = form(g_exact, f_exact), form(g_float, f_float)
        bound = w @ got.sizes @ w + 8 * got.gamma * k * (w * w) @ h
        assert float(abs(q_exact - q_float)) <= bound
        assert float(abs(ld_exact - ld_float)) <= got.logdet


def test_plain_rounding_unbounded_is_the_one_no_bound_holds_for_and_stays_so_summed():
    from dmixed.kernels.conditionals import PlainRounding

    zero, unbounded = PlainRounding.zero(3), PlainRounding.unbounded(3)
    assert zero.bounded and not unbounded.bounded
    assert unbounded.sizes.shape == (3, 3) and not unbounded.sizes.any()
    assert not (zero + unbounded).bounded and (zero + zero).bounded


@settings(max_examples=60, deadline=None)
@given(
    log_weight=st.floats(0.0, 13.0),
    log_spread=st.floats(-3.0, 0.5),
    log_cancellation=st.floats(0.0, 14.0),
)
def test_heavy_bounds_charge_a_group_by_weight_condition_and_cancellation(
    log_weight, log_spread, log_cancellation
):
    """``heavy_bounds``: group 0 of 31 (10 rows, weight ``10**log_weight``, its slope's
    column 5 ± ``10**log_spread``) is charged (its determinant below its bound) exactly
    where ``γ r share cancellation / det`` exceeds ``PLAIN_NEGLIGIBLE`` and it holds all
    but ``DOMINANT_REST`` of the totals; a one-row group never, and nothing at a
    cancellation of 0.  The 30 ordinary groups of one weight each are never charged,
    whatever the cancellation."""
    from dmixed.kernels.conditionals import (
        DOMINANT_REST,
        PLAIN_NEGLIGIBLE,
        PLAIN_ROUNDINGS,
        heavy_bounds,
    )

    rng = np.random.default_rng(11)
    weight, spread, cancel = 10.0**log_weight, 10.0**log_spread, 10.0**log_cancellation
    zs = [np.column_stack([np.ones(10), 5 + spread * rng.normal(size=10)])]
    zs += [np.column_stack([np.ones(10), rng.normal(size=10)]) for _ in range(30)]
    zz = np.stack([z.T @ z for z in zs], axis=-1)
    zz[..., 0] *= weight
    nobs = np.full(31, 10)
    totals = np.einsum("aag->a", zz)
    bounds = heavy_bounds(zz, nobs, totals, cancel)
    det = 1.0 - zz[0, 1] ** 2 / (zz[0, 0] * zz[1, 1])
    share = np.max(np.stack([zz[0, 0], zz[1, 1]]) / totals[:, None], axis=0)
    eps = float(np.finfo(float).eps)
    gamma = (10 + PLAIN_ROUNDINGS + 4) * eps / (1 - (10 + PLAIN_ROUNDINGS + 4) * eps)
    estimate = gamma * 2 * share * cancel / det
    decided = np.abs(np.log(estimate / PLAIN_NEGLIGIBLE)) > 1e-9
    decided &= np.abs(share - (1.0 - DOMINANT_REST)) > 1e-12
    expected = (estimate > PLAIN_NEGLIGIBLE) & (share > 1.0 - DOMINANT_REST)
    np.testing.assert_array_equal((det < bounds)[decided], expected[decided])
    assert not (det < bounds)[1:].any()
    assert not heavy_bounds(zz, nobs, totals, 0.0).any()
    nobs[0] = 1
    assert heavy_bounds(zz, nobs, totals, cancel)[0] == 0.0


@settings(max_examples=80, deadline=None)
@given(
    r=st.integers(1, 7),
    most_rows=st.one_of(st.integers(0, 10**7), st.floats(0.0, 1e7)),
    cancellation=st.one_of(st.just(0.0), st.floats(-1.0, 1e300, allow_nan=False), st.just(np.inf)),
)
def test_largest_heavy_bound_is_heavy_bounds_of_a_group_holding_the_block(
    r, most_rows, cancellation
):
    """``largest_heavy_bound``: the same float as ``heavy_bounds`` gives a group of
    ``most_rows`` rows holding the whole block (a share of 1), made without arrays:
    0 where none is charged, the largest float64 where the bound overflows."""
    from dmixed.kernels.conditionals import heavy_bounds, largest_heavy_bound

    with np.errstate(over="ignore", invalid="ignore"):
        expected = heavy_bounds(
            np.eye(r)[:, :, None], np.array([most_rows]), np.ones(r), cancellation
        )[0]
    got = largest_heavy_bound(r, float(most_rows), cancellation)
    assert type(got) is float
    assert got == float(expected)
