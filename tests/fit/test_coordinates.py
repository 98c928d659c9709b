"""The model's, the statistics' and the optimizer's coordinates (dmixed.fit.coordinates)."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.fit.coordinates import Coordinates, is_diagonal, is_identity, weight_factor
from dmixed.kernels import small_linalg
from dmixed.stats import GlobalStats, Layout
from dmixed.stats.standardize import Standardization, psi_map_matrix


def _columns(shift: float = 1.7e9, scale: float = 2.0**16) -> Standardization:
    """A timestamp-like covariate (in X and Z) and a revenue-like response."""
    return Standardization(
        x_shift=np.array([0.0, shift, 0.0]),
        x_scale=np.array([1.0, scale, 0.5]),
        y_shift=1e6,
        y_scale=4.0,
        z_shift=np.array([0.0, shift]),
        z_scale=np.array([1.0, scale]),
        x_intercept=0,
        z_intercept=0,
    )


@pytest.mark.parametrize("all_free", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_to_opt_and_from_opt_are_inverse(all_free, use_sqrt):
    """A round trip through the optimizer's coordinates (a moderate map: with a shift
    of 1.7e9 the model's own Ψ* is itself that ill-conditioned, see the invariance
    tests, which compare in the statistics' units)."""
    layout = Layout(2, (1,))
    coords = Coordinates.for_fit(_columns(shift=40.0, scale=4.0), layout, all_free)
    rng = np.random.default_rng(0)
    lmat = np.tril(rng.normal(size=(2, 2)))
    lmat[np.diag_indices(2)] = np.abs(lmat[np.diag_indices(2)])
    packed = layout.pack(lmat @ lmat.T, np.array([0.7]), use_sqrt)
    back = coords.from_opt(coords.to_opt(packed, use_sqrt), use_sqrt)
    np.testing.assert_allclose(back, packed, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("log10_c", [-300, -100, -7.3, 0, 0.4, 12, 300])
def test_the_weight_factor_is_the_power_of_four_nearest_the_geometric_mean(log10_c):
    w = 10.0**log10_c * np.array([0.5, 1.0, 3.0, 2.0])
    k = weight_factor(GlobalStats(np.eye(2), w.size, float(np.log(w).sum())))
    half = np.log2(k) / 2
    assert half == np.round(half)  # √k a power of two: A_o = √k A exactly
    assert abs(np.log2(k) - np.log2(w).mean()) <= 1.0 + 1e-9


def test_the_weight_factor_without_rows_or_weights_is_one():
    assert weight_factor(GlobalStats(np.eye(2), 0, 0.0)) == 1.0
    assert weight_factor(GlobalStats(np.eye(2), 5, 0.0)) == 1.0


@pytest.mark.parametrize("all_free", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_the_weight_factor_scales_the_optimizer_covariances_only(all_free, use_sqrt):
    """With ``k`` the optimizer's Ψ and τ are ``k`` times those without, and Λ̃ in the
    statistics' coordinates is the same (exactly: ``k`` is a power of four)."""
    layout = Layout(2, (1, 2))
    cols = _columns(shift=40.0, scale=4.0)
    plain = Coordinates.for_fit(cols, layout, all_free)
    scaled = Coordinates.for_fit(cols, layout, all_free, weight=2.0**40)
    packed = layout.pack(np.array([[2.0, 0.3], [0.3, 0.5]]), np.array([0.7, 1.5]), use_sqrt)
    opt, opt_k = plain.to_opt(packed, use_sqrt), scaled.to_opt(packed, use_sqrt)
    psi, tau = layout.unpack(opt, use_sqrt)
    psi_k, tau_k = layout.unpack(opt_k, use_sqrt)
    np.testing.assert_allclose(psi_k, 2.0**40 * psi, rtol=1e-13)
    np.testing.assert_allclose(tau_k, 2.0**40 * tau, rtol=1e-13)
    np.testing.assert_allclose(scaled.lam(opt_k, use_sqrt), plain.lam(opt, use_sqrt), rtol=1e-13)
    np.testing.assert_allclose(scaled.from_opt(opt_k, use_sqrt), packed, rtol=1e-12)
    moment = layout.pack(psi, tau, use_sqrt=True)
    np.testing.assert_array_equal(scaled.statistics_to_opt_sqrt(moment), 2.0**20 * moment)


def test_a_free_mask_keeps_its_zero_pattern_in_the_optimizer():
    """With a mask the optimizer's Ψ is the model's scaled only: a zero stays zero."""
    layout = Layout(2, ())
    coords = Coordinates.for_fit(_columns(), layout, all_free=False)
    packed = np.array([1.0, 0.0, 3e-5])  # L with L[1, 0] = 0: independent effects
    opt = coords.to_opt(packed, use_sqrt=True)
    assert opt[1] == 0.0
    assert coords.re_map is not None  # the shift is applied in the objective instead


def test_the_statistics_map_is_the_model_one_with_all_free():
    layout = Layout(2, ())
    cols = _columns(shift=40.0, scale=4.0)
    coords = Coordinates.for_fit(cols, layout, all_free=True)
    assert coords.re_map is None  # the optimizer works in the statistics' coordinates
    psi_opt = np.array([[2.0, 0.3], [0.3, 0.5]])
    a = cols.re_matrix()
    np.testing.assert_allclose(a @ coords.psi(psi_opt) @ a.T, psi_opt, rtol=1e-10)


@pytest.mark.parametrize("all_free", [True, False])
def test_the_maps_back_use_the_inverse_computed_once(all_free):
    """``A_o⁻¹`` and ``C`` are made once per instance, are ``np.linalg``'s bit for bit,
    and cannot be changed by a caller (every later map would see the change)."""
    layout = Layout(2, (1,))
    cols = _columns(shift=40.0, scale=4.0)
    coords = Coordinates.for_fit(cols, layout, all_free)
    inv = coords.a_opt_inv
    assert inv is coords.a_opt_inv and not inv.flags.writeable
    assert np.array_equal(inv, np.linalg.inv(coords.a_opt))
    c = coords.re_map
    assert c is coords.re_map
    if all_free:
        assert c is None
    else:
        assert not c.flags.writeable
        assert np.array_equal(c, cols.re_matrix() @ np.linalg.inv(coords.a_opt))
    psi_opt = np.array([[2.0, 0.3], [0.3, 0.5]])
    out = np.linalg.inv(coords.a_opt) @ psi_opt @ np.linalg.inv(coords.a_opt).T
    assert np.array_equal(coords.psi(psi_opt), 0.5 * (out + out.T))


def test_covariance_map_keeps_undefined_entries_apart():
    layout = Layout(1, ())
    cols = Standardization(
        np.array([0.0, 5.0]), np.array([1.0, 2.0]), 0.0, 1.0, np.zeros(1), np.ones(1), 0, 0
    )
    coords = Coordinates.for_fit(cols, layout, all_free=True)
    cov = np.diag([1.0, 2.0, 3.0])
    cov[2, 2] = np.nan  # the variance's own entry undefined (e.g. on the boundary)
    out = coords.covariance(cov)
    assert np.isnan(out[2, 2])
    assert np.all(np.isfinite(out[:2, :2]))  # β's block does not involve it
    jac = coords.jacobian()
    finite = np.linalg.inv(jac) @ np.diag([1.0, 2.0, 0.0]) @ np.linalg.inv(jac).T
    np.testing.assert_allclose(out[:2, :2], finite[:2, :2])


def test_llf_offset_is_the_jacobian():
    """ML: −n log s_y; REML: −(n − p) log s_y − Σ log s_x."""
    layout = Layout(2, ())
    coords = Coordinates.model(_columns(), layout)
    n, p = 1000, 3
    assert coords.llf(0.0, n, reml=False) == pytest.approx(-n * np.log(4.0))
    want = -(n - p) * np.log(4.0) - np.log(2.0**16) - np.log(0.5)
    assert coords.llf(0.0, n, reml=True) == pytest.approx(want)


def test_llf_offset_is_computed_once_per_rows_and_criterion(monkeypatch):
    """The objective's offset, the results' ℓ and the log's values read one offset per
    ``n`` and criterion, the column map's own bit for bit."""
    cols = _columns()
    coords = Coordinates.model(cols, Layout(2, ()))
    calls = []
    offset = Standardization.llf_offset
    monkeypatch.setattr(
        Standardization,
        "llf_offset",
        lambda self, n, reml: calls.append(n) or offset(self, n, reml),
    )
    first = coords.llf(0.0, 1000, True)
    assert coords.llf(-3.5, 1000.0, 1) == -3.5 + first
    assert coords.llf_all([0.0, 1.25], 1000, True) == [first, 1.25 + first]
    assert first == offset(cols, 1000, True)
    assert calls == [1000]
    assert coords.llf(0.0, 1000, False) == offset(cols, 1000, False)
    assert calls == [1000, 1000]


@pytest.mark.parametrize(
    "a",
    [np.eye(2), np.eye(1), np.eye(0), np.diag([1.0, 2.0]), np.array([[1.0, 0.0], [1e-300, 1.0]])],
)
def test_is_identity_tells_as_array_equal(a):
    assert is_identity(a) == np.array_equal(a, np.eye(a.shape[0]))


@pytest.mark.parametrize(
    "a",
    [
        np.eye(2),
        np.eye(0),
        np.diag([0.0, 2.0]),
        np.diag([-0.0, np.inf]),
        np.diag([1.0, np.nan]),
        np.diag([np.nan]),
        np.array([[1.0, -0.0], [0.0, 3.0]]),
        np.array([[1.0, 0.0], [1e-300, 1.0]]),
        np.array([[1.0, np.nan], [0.0, 1.0]]),
        np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]),
        np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]),
    ],
)
def test_is_diagonal_tells_as_array_equal(a):
    """The fit's test of a diagonal ``A_o`` gives numpy's answer: off-diagonal signed
    zeros are zeros, a NaN anywhere is not equal to itself, a non-square ``a`` is not
    diagonal."""
    assert is_diagonal(a) == np.array_equal(a, np.diag(np.diag(a)))


@pytest.mark.parametrize("shift", [0.0, 40.0])
def test_identity_maps_are_linalg_s_bit_for_bit(shift):
    """Where ``A_o = I`` (columns not rescaled) the inverse, ``C`` and the Jacobian made
    without ``np.linalg`` are the numbers it gives; the Jacobian's inverse is made once
    and serves both covariances where the weights' scale is 1."""
    cols = Standardization(
        np.array([0.0, shift]), np.ones(2), 0.0, 4.0, np.array([0.0, shift]), np.ones(2), 0, 0
    )
    layout = Layout(2, (1,))
    coords = Coordinates.for_fit(cols, layout, all_free=False)  # A_o = S_z = I
    assert np.array_equal(coords.a_opt, np.eye(2))
    assert np.array_equal(coords.a_opt_inv, np.linalg.inv(coords.a_opt))
    expected_c = cols.psi_matrix() @ np.linalg.inv(coords.a_opt)
    if shift:
        assert np.array_equal(coords.re_map, expected_c)
    else:
        assert coords.re_map is None
    jac = coords.jacobian()
    m = psi_map_matrix(coords.a_opt, layout.k_vc)
    m[3:, 3:] = np.diag(coords.tau_opt)
    assert np.array_equal(jac[2:, 2:], m)
    cov = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    inv = np.linalg.inv(jac)
    out = inv @ cov @ inv.T
    assert np.array_equal(coords.covariance(cov), 0.5 * (out + out.T))
    assert np.array_equal(coords.covariance(cov, weighted=True), coords.covariance(cov))


def test_the_weighted_covariance_divides_the_theta_block_by_the_weights_scale():
    """With ``s_w ≠ 1`` the weighted covariance maps through the inverse of ``J`` with its
    θ block divided by ``s_w`` (its own inverse, made once), bit for bit."""
    cols = Standardization(
        np.array([0.0, 3.0]),
        np.array([1.0, 2.0]),
        0.0,
        4.0,
        np.zeros(2),
        np.ones(2),
        0,
        0,
        weight_scale=16.0,
    )
    coords = Coordinates.for_fit(cols, Layout(2, ()), all_free=True)
    jac = coords.jacobian()
    jac[2:, 2:] /= 16.0
    inv = np.linalg.inv(jac)
    cov = np.diag([1.0, 2.0, 3.0, 4.0, 5.0])
    out = inv @ cov @ inv.T
    assert np.array_equal(coords.covariance(cov, weighted=True), 0.5 * (out + out.T))
    assert not np.array_equal(coords.covariance(cov, weighted=True), coords.covariance(cov))


def _former_jacobian(coords: Coordinates) -> np.ndarray:
    """The Jacobian as it was built before it was cached in pieces: ``M`` made whole
    (``np.eye`` or :func:`psi_map_matrix`), then placed beside ``T / s_y``."""
    cols = coords.columns
    p, k2 = cols.k_fe, coords.layout.k_re2
    if is_identity(coords.a_opt):
        m = np.eye(k2 + coords.layout.k_vc)
    else:
        m = psi_map_matrix(coords.a_opt, coords.layout.k_vc)
    m[k2:, k2:] = np.diag(coords.tau_opt)
    jac = np.zeros((p + m.shape[0], p + m.shape[0]))
    jac[:p, :p] = cols.fe_matrix() / cols.y_scale
    jac[p:, p:] = m
    return jac


@pytest.mark.parametrize("shift", [0.0, 40.0, 1.7e9])
@pytest.mark.parametrize("all_free", [True, False])
@pytest.mark.parametrize("weight", [1.0, 16.0])
@pytest.mark.parametrize("k_vc", [0, 2])
def test_the_jacobian_beta_and_covariance_are_the_former_bit_for_bit(shift, all_free, weight, k_vc):
    """``J`` from the cached ``T`` (its θ block's diagonal written in place where
    ``A_o = I``), β solved with that ``T``, and the covariance without the NaN copy where
    there is no NaN: the bytes of the former construction, ``Standardization.
    beta_from_std`` and ``np.linalg.inv``, whatever the columns, weights and components."""
    cols = Standardization(
        np.array([0.0, shift, 0.0]),
        np.array([1.0, 2.0**-3, 4.0]),
        -2.5e3,
        8.0,
        np.array([0.0, shift]),
        np.array([1.0, 2.0**-3 if shift else 1.0]),
        0,
        0,
        vc_scale=np.array([2.0, 0.25])[:k_vc],
        weight_scale=weight,
    )
    coords = Coordinates.for_fit(cols, Layout(2, (1,) * k_vc), all_free, weight=weight)
    assert coords.fe_matrix is coords.fe_matrix and not coords.fe_matrix.flags.writeable
    jac = coords.jacobian()
    assert jac.tobytes() == _former_jacobian(coords).tobytes()
    beta_std = np.array([0.3, -1.25e-4, 7.0])
    assert coords.beta(beta_std).tobytes() == cols.beta_from_std(beta_std).tobytes()
    rng = np.random.default_rng(3)
    half = rng.normal(size=(jac.shape[0], jac.shape[0]))
    cov = half @ half.T
    for weighted in (False, True):
        inv = np.linalg.inv(jac)
        if weighted and weight != 1.0:
            scaled = jac.copy()
            scaled[3:, 3:] /= weight
            inv = np.linalg.inv(scaled)
        with np.errstate(over="ignore", invalid="ignore"):
            out = inv @ np.where(np.isnan(cov), 0.0, cov) @ inv.T
        want = 0.5 * (out + out.T)
        assert coords.covariance(cov, weighted).tobytes() == want.tobytes()
        # a Fortran-ordered copy goes through np.where as before: the same numbers
        assert np.array_equal(coords.covariance(np.asfortranarray(cov), weighted), want)


@pytest.mark.parametrize("scales", [(1.0, 1.0, 1.0), (1.0, 2.0**-7, 2.0**12)])
def test_beta_and_psi_without_products_are_the_solves_bits(scales):
    """Where ``T`` is diagonal with powers of two (no shifted column) and ``A_o = I``,
    β and Ψ* are mapped back in floats: the very bits of the solve with ``T`` and of the
    products with ``I``, for entries of every size; an entry that is zero or not finite
    takes the solve (and the products)."""
    columns = Standardization(
        x_shift=np.zeros(3),
        x_scale=np.array(scales),
        y_shift=0.0,
        y_scale=2.0**-3,
        z_shift=np.zeros(2),
        z_scale=np.ones(2),
        x_intercept=0,
        z_intercept=0,
    )
    coords = Coordinates.for_fit(columns, Layout(2, ()), True)
    assert coords.fe_divisors == list(scales) and coords.a_opt_is_identity
    rng = np.random.default_rng(3)
    for _ in range(200):
        beta_std = rng.normal(size=3) * 10.0 ** rng.uniform(-300, 300, size=3)
        want = small_linalg.solve(coords.fe_matrix, columns.beta_rhs(beta_std))
        assert coords.beta(beta_std).tobytes() == want.tobytes()
        psi_opt = rng.normal(size=(2, 2)) * 10.0 ** rng.uniform(-150, 150)
        eye = np.eye(2)
        product = eye @ psi_opt @ eye.T
        assert coords.psi(psi_opt).tobytes() == (0.5 * (product + product.T)).tobytes()
    for odd in (0.0, -0.0, np.inf, np.nan):
        with np.errstate(invalid="ignore"):  # 0 · inf in the products
            beta_std = np.array([1.5, odd, -2.0])
            want = small_linalg.solve(coords.fe_matrix, columns.beta_rhs(beta_std))
            assert coords.beta(beta_std).tobytes() == want.tobytes()
            psi_opt = np.array([[1.0, odd], [odd, 2.0]])
            product = np.eye(2) @ psi_opt @ np.eye(2)
            assert coords.psi(psi_opt).tobytes() == (0.5 * (product + product.T)).tobytes()


def test_beta_with_a_shifted_column_is_the_solve():
    """A shifted column makes ``T`` not diagonal: the solve itself."""
    coords = Coordinates.for_fit(_columns(shift=40.0, scale=4.0), Layout(2, (1,)), True)
    assert coords.fe_divisors is None
    beta_std = np.array([0.3, -1.25, 2.0])
    want = small_linalg.solve(coords.fe_matrix, coords.columns.beta_rhs(beta_std))
    assert coords.beta(beta_std).tobytes() == want.tobytes()
