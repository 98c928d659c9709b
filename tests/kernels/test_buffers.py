"""numpy's ufunc buffer around the group kernels: set for large blocks, restored after,
and the kernels' numbers the same whatever it is."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed import kernels
from dmixed.kernels import compiled
from dmixed.kernels.buffers import KERNEL_BUFSIZE, in_group_buffers


def test_buffer_is_set_for_large_blocks_and_restored():
    default = np.getbufsize()
    seen = []
    assert in_group_buffers(KERNEL_BUFSIZE, lambda a: seen.append(np.getbufsize()) or a, 7) == 7
    in_group_buffers(KERNEL_BUFSIZE - 1, lambda: seen.append(np.getbufsize()))
    assert seen == [KERNEL_BUFSIZE, default]
    assert np.getbufsize() == default


def test_buffer_is_restored_when_the_kernel_raises():
    default = np.getbufsize()

    def fail():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        in_group_buffers(10 * KERNEL_BUFSIZE, fail)
    assert np.getbufsize() == default


@pytest.mark.parametrize("n_groups", [1500, 3000])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_kernels_give_the_same_numbers_whatever_the_buffer(monkeypatch, n_groups, r):
    """Step, Hessian and BLUP sums bit for bit with numpy's default buffer and the
    kernels' (element-wise products and contiguous sums do not depend on it)."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    rng = np.random.default_rng(n_groups + r)
    codes = np.repeat(np.arange(n_groups), rng.integers(1, 6, n_groups))
    n = codes.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    z = np.column_stack([np.ones(n), rng.normal(size=(n, r - 1))])
    st = kernels.accumulate_statistics(codes, n_groups, rng.normal(size=n), x, z)
    lam = np.tril(rng.normal(size=(r, r))) + np.eye(r)
    basis = np.stack([np.eye(r)[:, [i]] @ np.eye(r)[[i]] for i in range(r)])
    w = np.array([-0.5, 0.2, 0.1, 1.0])

    def sums():
        block = kernels.StatsBlock(st["zz"], st["zxy"])
        step = kernels.step_contributions(block, lam, r)
        hess = kernels.hessian_contributions(block, lam, basis, w)
        blups = kernels.random_effects_block(block, lam, w)
        return (
            [getattr(step, f) for f in step.__dataclass_fields__]
            + [getattr(hess, f) for f in hess.__dataclass_fields__]
            + list(blups)
        )

    default = sums()
    small = in_group_buffers(n_groups, sums)
    for a, b in zip(default, small, strict=True):
        np.testing.assert_array_equal(a, b)
