"""The compiled numbering of a nested component against numpy's, and when it runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.kernels import compiled
from dmixed.stats.slots import NESTED_ABOVE, number_vc_cells

from .._synth import QUICK

pytest.importorskip("numba")


@settings(max_examples=60, **QUICK)
@given(
    st.integers(1, 200),
    st.integers(1, 300),
    st.integers(0, 400),
    st.integers(1, 2),
    st.sampled_from(["nested", "one shared column", "crossed"]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_nested_numbering_compiled_equals_numpy(n_groups, ncols, n, k, kind, zeros, seed):
    """``number_vc_cells`` with the compiled nested numbering gives numpy's pairs, slots,
    widths, tables and entry pairs; it is asked wherever numpy's nested numbering would
    be and numbers every nested component (None only where a column is in two groups):
    rows in any order, columns unused, a second entry column, absent and zero
    entries."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(-1 if zeros else 0, ncols, (n, k))
    codes = rng.integers(0, n_groups, ncols)[np.maximum(cols[:, 0], 0)]
    if k > 1:  # (the second entry in the first's column, or none: still nested)
        cols[:, 1:] = np.where(cols[:, 1:] >= 0, cols[:, :1], -1)
    if kind == "one shared column" and n > 1:
        cols[:2, 0] = ncols - 1
        codes[:2] = [0, n_groups - 1]
    elif kind == "crossed":
        codes = rng.integers(0, n_groups, n)
    vals = rng.standard_normal((n, k))
    if zeros:
        vals[rng.random((n, k)) < 0.1] = 0.0
    calls = []

    def spy(*args):
        out = _compiled()(*args)
        calls.append(out is not None)
        return out

    want = number_vc_cells(codes, cols, vals, n_groups)
    got = number_vc_cells(codes, cols, vals, n_groups, spy)
    for field in dataclasses.fields(want):
        a, b = getattr(got, field.name), getattr(want, field.name)
        np.testing.assert_array_equal(a, b, err_msg=field.name)
        assert np.asarray(a).dtype == np.asarray(b).dtype, field.name
    np.testing.assert_array_equal(got.table(n_groups), want.table(n_groups))
    present = (cols >= 0) & (vals != 0)
    groups_of = {}
    entry_groups = np.broadcast_to(codes[:, None], cols.shape)[present]
    for c, g in zip(cols[present], entry_groups, strict=True):
        groups_of.setdefault(c, set()).add(g)
    nested = all(len(g) == 1 for g in groups_of.values())
    m, used = int(present.sum()), max(int(cols.max()) + 1 if cols.size else 0, 1)
    asked = n_groups * used > NESTED_ABOVE * (m + used) and used <= 4 * m + (1 << 20)
    assert calls == ([nested] if asked else [])


def _compiled():
    from dmixed.kernels.slots_jit import nested_pairs

    return nested_pairs


def test_nested_numbering_chosen_as_the_per_row_pass(monkeypatch):
    """The compiled numbering runs where the per-row pass would: forced by
    ``DMIXED_KERNELS``, else by the number of entries (numba loaded or not)."""
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    assert compiled.nested_numbering(10) is _compiled()
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    assert compiled.nested_numbering(10**9) is None
    monkeypatch.setenv(compiled.ENV_VAR, "auto")
    assert compiled.nested_numbering(1) is None
    assert compiled.nested_numbering(compiled.ROWS_MIN_COLD) is _compiled()
