"""gram_rows: the groups' sums of products a a' (gemm on a copy, or syrk past its size)."""

import numpy as np
import pytest

from dmixed.kernels.conditionals import conditional, gram_rows


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
