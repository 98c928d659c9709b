"""The driver's view of the blocks: groups in sorted key order (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from dmixed.engines.dask.blocks import Block, assemble_blocks


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
