"""gram_rows: the groups' sums of products a a' (gemm on a copy, or syrk past its size)."""

import numpy as np
import pytest

from dmixed.kernels.conditionals import gram_rows


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
