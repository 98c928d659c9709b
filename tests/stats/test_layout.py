"""The packed orders' owner: the packing of the plain θ checked against the parameter
space (:meth:`dmixed.stats.Layout.pack_theta`)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dmixed.errors import SpecError
from dmixed.stats import Layout, tril_indices
from dmixed.stats.layout import BASIS_KEPT_MAX_R, symmetric_indices, tril_flat_indices

_LAYOUTS = [Layout(1, ()), Layout(2, ()), Layout(3, (2, 1)), Layout(0, (1,))]


@pytest.mark.parametrize("layout", _LAYOUTS)
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_pack_theta_is_pack_of_unpack_and_checks_as_lam(layout, use_sqrt):
    """Inside the parameter space: ``pack(*unpack(θ, False), use_sqrt)`` bit for bit
    (also on the boundary, a zero variance); outside it (an indefinite Ψ* or a negative
    τ*): ``LinAlgError``, where ``lam(θ, use_sqrt=False)`` raises."""
    rng = np.random.default_rng(layout.n_params)
    for trial in range(40):
        lmat = np.tril(rng.normal(size=(layout.k_re, layout.k_re)))
        if trial % 4 == 1 and layout.k_re:
            lmat[-1] = 0.0  # a zero variance: Ψ* singular
        psi = lmat @ lmat.T
        if trial % 4 == 2 and layout.k_re:
            psi[0, 0] = -0.5  # indefinite
        tau = rng.uniform(0.0, 2.0, layout.k_vc) - (0.5 if trial % 4 == 3 else 0.0)
        theta = layout.pack(psi, tau, use_sqrt=False)
        try:
            layout.lam(theta, use_sqrt=False)
        except np.linalg.LinAlgError:
            with pytest.raises(np.linalg.LinAlgError):
                layout.pack_theta(theta, use_sqrt)
            continue
        want = layout.pack(*layout.unpack(theta, False), use_sqrt=use_sqrt)
        np.testing.assert_array_equal(layout.pack_theta(theta, use_sqrt), want)


def test_cached_sizes_leave_equality_and_hash_alone():
    """The derived sizes are cached on the frozen instance without becoming fields."""
    a, b = Layout(2, (3, 1)), Layout(2, (3, 1))
    assert (a.r, a.n_params, a.k_re2) == (6, 5, 3)
    np.testing.assert_array_equal(a.slot_component, [0, 0, 0, 1])
    assert not a.slot_component.flags.writeable
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)


@pytest.mark.parametrize(
    "layout", _LAYOUTS + [Layout(2, (3, 4)), Layout(1, (8,)), Layout(0, (2, 2))]
)
def test_basis_is_dB_dtheta_and_kept_read_only_for_small_layouts(layout):
    """``E_j = ∂B*/∂θ_j``: ``Σ_j θ_j E_j`` is ``B*`` of the plain packing at any θ; the
    same array (read-only) on every call where the layout is small enough to keep, a new
    writeable one each call beyond."""
    rng = np.random.default_rng(layout.r)
    theta = rng.normal(size=layout.n_params)
    psi, tau = layout.unpack(theta, use_sqrt=False)
    b = np.zeros((layout.r, layout.r))
    b[: layout.k_re, : layout.k_re] = psi
    slots = layout.k_re + np.arange(layout.r - layout.k_re)
    b[slots, slots] = tau[layout.slot_component]
    basis = layout.basis()
    np.testing.assert_array_equal(np.tensordot(theta, basis, axes=1), b)
    again = Layout(layout.k_re, tuple(layout.vc_widths)).basis()
    kept = layout.r <= BASIS_KEPT_MAX_R
    assert (again is basis) == kept
    assert basis.flags.writeable == (not kept)
    np.testing.assert_array_equal(again, basis)


@pytest.mark.parametrize("layout", [Layout(1, ()), Layout(2, ()), Layout(3, (2, 1))])
def test_kept_basis_cannot_be_made_writeable(layout):
    """The kept basis is shared by every fit of the layout: its read-only flag cannot be
    turned off, so that no caller's write reaches another model's fit."""
    basis = layout.basis()
    with pytest.raises(ValueError, match="WRITEABLE"):
        basis.flags.writeable = True
    with pytest.raises(ValueError, match="read-only"):
        basis[0, 0, 0] = 7.0
    np.testing.assert_array_equal(Layout(layout.k_re, tuple(layout.vc_widths)).basis()[0], basis[0])
    assert basis[0, 0, 0] == 1.0


@pytest.mark.parametrize("q", [1, 2, 3, 4])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_unpack_gives_the_bits_of_the_triangle_placed_by_rows_and_columns(q, use_sqrt):
    """unpack places the triangle through its flat positions (and, plain, gathers the
    symmetric matrix): the numbers of the assignment by (rows, cols) and of
    ``mat + tril(mat, -1).T``, signed zeros and NaN included."""
    layout = Layout(q, (2,))
    rng = np.random.default_rng(q)
    packed = rng.normal(size=layout.n_params)
    packed[0] = -0.0
    if packed.size > 2:
        packed[2] = np.nan
    rows, cols = tril_indices(q)
    mat = np.zeros((q, q))
    mat[rows, cols] = packed[: layout.k_re2]
    if use_sqrt:
        psi_ref, tau_ref = mat @ mat.T, packed[layout.k_re2 :] ** 2
    else:
        psi_ref, tau_ref = mat + np.tril(mat, -1).T, packed[layout.k_re2 :].copy()
    psi, tau = layout.unpack(packed, use_sqrt)
    assert psi.tobytes() == psi_ref.tobytes()
    assert tau.tobytes() == tau_ref.tobytes()
    assert psi.flags.writeable and tau.flags.writeable  # the caller's own arrays
    if not use_sqrt:
        assert not np.signbit(psi[0, 0])  # −0 + 0.0, as the sum made it


@pytest.mark.parametrize("use_sqrt", [True, False])
def test_unpack_of_a_kept_point_is_a_new_copy_of_the_same_numbers(use_sqrt):
    """A point unpacked again (a fit unpacks its start and its optimum several times)
    gives the same bits in new arrays of the caller's own: changing them, or the
    packed vector, changes nothing unpacked later; the kept points are not pickled."""
    layout = Layout(2, (1,))
    packed = np.array([1.5, -0.25, 0.75, 0.5])
    first = layout.unpack(packed, use_sqrt)
    reference = [a.copy() for a in first]
    first[0][...] = 9.0  # the caller's own arrays
    first[1][...] = 9.0
    again = layout.unpack(packed.copy(), use_sqrt)
    for got, want in zip(again, reference, strict=True):
        assert got.tobytes() == want.tobytes()
        assert got.flags.writeable
    packed[1] = 0.5  # another point: unpacked anew
    other = layout.unpack(packed, use_sqrt)
    fresh = Layout(2, (1,)).unpack(packed, use_sqrt)
    assert other[0].tobytes() == fresh[0].tobytes()
    assert other[0].tobytes() != reference[0].tobytes()
    for point in ([0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0], [3.0, 0.0, 1.0, 1.0]):
        layout.unpack(np.array(point), use_sqrt)  # more points than are kept
    assert layout.unpack(packed, use_sqrt)[0].tobytes() == fresh[0].tobytes()
    restored = pickle.loads(pickle.dumps(layout))
    assert restored == layout
    assert "_unpacked" not in restored.__dict__
    assert restored.unpack(packed, use_sqrt)[0].tobytes() == fresh[0].tobytes()
    with pytest.raises(SpecError, match="expected 4 covariance parameters"):
        layout.unpack(packed[:3], use_sqrt)


@pytest.mark.parametrize("q", [0, 1, 2, 5])
def test_triangle_index_tables_match_tril_indices_and_are_read_only(q):
    rows, cols = tril_indices(q)
    flat = tril_flat_indices(q)
    assert flat.tolist() == (q * rows + cols).tolist()
    sym = symmetric_indices(q)
    assert sym.shape == (q, q)
    for k, (i, j) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        assert sym[i, j] == sym[j, i] == k
    for table in (flat, sym):
        with pytest.raises(ValueError):
            table[...] = 0
