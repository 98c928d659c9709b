"""The driver's view of the blocks: groups in sorted key order (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.engines.dask.blocks import Block, assemble_blocks, reorder


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int16, object])
def test_assemble_sorts_groups_as_statsmodels(dtype):
    """Blocks' groups in sorted key order (statsmodels' order), whatever the key type;
    a key in two blocks is an error, not a silently doubled group."""
    rng = np.random.default_rng(3)
    ids = rng.permutation(40)
    keys = (
        ids.astype(dtype) if dtype is not object else np.array([f"k{i:02d}" for i in ids], object)
    )

    def block(sel):
        return Block(keys[sel], ids[sel] + 1, np.eye(2), int(ids[sel].sum()), 0.0)

    asm = assemble_blocks([block(slice(0, 15)), block(slice(15, 40))], 2)
    np.testing.assert_array_equal(asm.group_labels, np.sort(keys))
    np.testing.assert_array_equal(asm.group_labels[asm.position], keys)
    np.testing.assert_array_equal(asm.group_sizes[asm.position], ids + 1)
    assert asm.block_sizes == [15, 25]
    with pytest.raises(RuntimeError, match="occurs in two combined partitions"):
        assemble_blocks([block(slice(0, 15)), block(slice(10, 40))], 2)


@pytest.mark.parametrize("shape", [(), (3,), (2, 2), (2, 5)])
def test_reorder_puts_every_group_at_its_position(shape):
    """``reorder`` is ``out[position] = values``, value for value (signed zeros too)."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 257):
        position = rng.permutation(n).astype(np.int64)
        values = rng.standard_normal((n, *shape))
        values.flat[::7] = -0.0
        expected = np.empty_like(values)
        expected[position] = values
        out = reorder(position, values)
        assert out.shape == values.shape and out.dtype == values.dtype
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))
