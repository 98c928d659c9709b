"""The whole-chunk sums of one random-effect coordinate against the per-chunk kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels import compiled, conditionals, native
from dmixed.kernels.dense1 import Dense1Statistics
from dmixed.stats import Layout

from .._native_marks import built
from .._synth import QUICK

RTOL = 1e-12


def _close(ours, theirs, name: str, floor: float = 1e-300) -> None:
    """``ours`` equals ``theirs`` to :data:`RTOL` of its largest entry (or ``floor``)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), floor)
    assert float(np.max(np.abs(np.asarray(ours) - theirs), initial=0.0)) <= RTOL * scale, name


@settings(max_examples=60, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 300]),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    lam=st.sampled_from([0.0, 1e-4, 0.7, 300.0]),
    chunk=st.sampled_from([None, 1, 7, 64]),
)
def test_step_and_hessian_sums_match_the_kernels(monkeypatch, seed, n_groups, one_row, lam, chunk):
    """``Σ log|K|``, ``Σ ZXy'P ZXy``, ``Σ S``, ``t_re`` and every Hessian field, to 1e-12
    of each one's largest entry: groups of one row, λ at zero (the boundary), small,
    plain and large next to ``1/U``; the block in one chunk or several."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n_groups) < one_row, 1, rng.integers(2, 12, n_groups))
    zz, zxy = np.zeros((n_groups, 1, 1)), np.zeros((n_groups, 1, 4))
    for i, n_i in enumerate(sizes):
        z = np.ones((n_i, 1)) if rng.random() < 0.9 else np.zeros((n_i, 1))
        xy = np.column_stack([np.ones(n_i), rng.normal(size=(n_i, 3))])
        zz[i], zxy[i] = z.T @ z, z.T @ xy
    factor = np.array([[lam]])
    block = kernels.StatsBlock(zz, zxy)
    data = Dense1Statistics(block.chunks())
    assert data.n_groups == n_groups
    step = data.step(factor)
    ref = kernels.step_contributions(block, factor, 1)
    _close(step.logdet, ref.logdet, "logdet", floor=float(n_groups))
    _close(step.m, ref.m, "m")
    _close(step.s, ref.s, "s")
    _close(step.gram.reshape(1, 1, 4, 4), ref.t_re, "t_re")
    _close(step.between, ref.between, "between")
    logdet, m, between = data.value(factor)
    assert logdet == step.logdet
    np.testing.assert_array_equal(m, step.m)
    np.testing.assert_array_equal(between, step.between)
    basis = Layout(1, ()).basis()
    w = np.append(-rng.normal(size=3), 1.0)
    ours = data.hessian(step, basis, w)
    theirs = kernels.hessian_contributions(block, factor, basis, w)
    for name in theirs.__dataclass_fields__:
        _close(getattr(ours, name), getattr(theirs, name), name)


@settings(max_examples=40, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 300, 2000]),
    k=st.integers(2, 6),
    lam=st.sampled_from([0.0, 1e-4, 0.7, 300.0]),
    offset=st.sampled_from([0.0, 1e9]),
)
def test_step_keeps_the_products_made_one_by_one(monkeypatch, seed, n_groups, k, lam, offset):
    """The numpy step's products of ``F`` with ``[P, 1/(u d), 1/d]`` made as one give
    the products made one by one (``p F`` for each sum, ``F / d`` for ``H``) bit for
    bit."""
    monkeypatch.setenv(native.ENV_VAR, "numpy")
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 12, n_groups).astype(np.float64)
    f = rng.normal(size=(k, n_groups)) + offset
    f[:, u == 0] = 0.0
    data = Dense1Statistics([(u.reshape(1, 1, -1), f[None])])
    step = data.step(np.array([[lam]]))
    b = lam**2
    d = b * u
    d += 1.0
    inv_d = 1.0 / d
    with np.errstate(divide="ignore"):
        inv_u = np.where(u > 0, 1.0 / u, 0.0)

    def m_sum(p):
        m = f @ (p * f).T
        return 0.5 * (m + m.T)

    h = f * inv_d
    assert step.logdet == float(np.log(d).sum())
    np.testing.assert_array_equal(step.m, m_sum(b * inv_d))
    np.testing.assert_array_equal(step.between, m_sum(inv_u * inv_d))
    np.testing.assert_array_equal(step.h[0], h)
    np.testing.assert_array_equal(step.gram, h @ h.copy().T)
    np.testing.assert_array_equal(step.s_pairs[0], (u * inv_d)[None])
    assert step.s[0, 0] == float((u * inv_d).sum())


@pytest.mark.parametrize("lam", [0.0, 0.7, 300.0])
def test_wide_sparse_f_sums_are_the_dense_sums(monkeypatch, lam):
    """A wide fixed factor (``F`` of 80 entries, each group meeting a few levels): the
    step, value and Hessian sums with the zeros skipped equal the dense products to
    1e-12, in chunks."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    monkeypatch.setenv(native.ENV_VAR, "numpy")  # the numpy path's sparse products
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 64)
    rng = np.random.default_rng(11)
    n_groups, k = 300, 80
    zz, zxy = np.zeros((n_groups, 1, 1)), np.zeros((n_groups, 1, k))
    for i in range(n_groups):
        n_i = int(rng.integers(1, 9))
        xy = np.zeros((n_i, k))
        xy[:, 0], xy[:, 1], xy[:, -1] = 1.0, rng.normal(size=n_i), rng.normal(size=n_i)
        xy[np.arange(n_i), rng.integers(2, k - 1, n_i)] = 1.0
        zz[i], zxy[i] = n_i, xy.sum(axis=0)
    factor = np.array([[lam]])
    block = kernels.StatsBlock(zz, zxy)
    assert all(conditionals.sparse_rows(f[0]) is not None for _, f in block.chunks())
    sparse = Dense1Statistics(block.chunks())
    monkeypatch.setattr(conditionals, "SPARSE_MIN_K", 10**9)
    dense = Dense1Statistics(block.chunks())
    a, b = sparse.step(factor), dense.step(factor)
    assert a.logdet == b.logdet and a.s.tobytes() == b.s.tobytes()
    for name in ("m", "gram", "between"):
        _close(getattr(a, name), getattr(b, name), name)
    for got, want in zip(sparse.value(factor)[1:], dense.value(factor)[1:], strict=True):
        _close(got, want, "value")
    basis = Layout(1, ()).basis()
    w = np.append(-rng.normal(size=k - 1), 1.0)
    monkeypatch.setattr(conditionals, "SPARSE_MIN_K", 64)
    ours = sparse.hessian(a, basis, w)
    monkeypatch.setattr(conditionals, "SPARSE_MIN_K", 10**9)
    theirs = dense.hessian(b, basis, w)
    for name in theirs.__dataclass_fields__:
        _close(getattr(ours, name), getattr(theirs, name), name)


@built
@settings(max_examples=40, **QUICK)
@given(
    seed=st.integers(0, 2**16),
    n_groups=st.sampled_from([1, 7, 300, 2000]),
    k=st.integers(2, 7),
    lam=st.sampled_from([0.0, 1e-4, 0.7, 300.0]),
    offset=st.sampled_from([0.0, 1e9]),
    chunk=st.sampled_from([None, 1, 64]),
)
def test_extension_step_is_the_numpy_step(monkeypatch, seed, n_groups, k, lam, offset, chunk):
    """The extension's ``dense1_step`` against the numpy products (the reference,
    ``DMIXED_NATIVE=numpy``): ``H``'s rows and ``S_i`` bit for bit (each the same
    operations), ``Σ log|K|``, ``Σ S``, ``Σ ZXy'P ZXy``, ``between``, ``t_re``, the
    value and every Hessian field to 1e-12 of each one's largest entry; groups with
    ``U = 0``, one or many chunks, ``F`` far from zero."""
    if chunk is not None:
        monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 12, n_groups).astype(np.float64)
    f = rng.normal(size=(n_groups, 1, k)) + offset
    f[u == 0] = 0.0
    block = kernels.StatsBlock(u.reshape(-1, 1, 1), f)
    monkeypatch.setenv(native.ENV_VAR, "c")
    ours = Dense1Statistics(block.chunks())
    monkeypatch.setenv(native.ENV_VAR, "numpy")
    theirs = Dense1Statistics(block.chunks())
    assert ours.uses_extension and not theirs.uses_extension
    factor = np.array([[lam]])
    a, b = ours.step(factor), theirs.step(factor)
    for got, want in zip(a.h + a.s_pairs, b.h + b.s_pairs, strict=True):
        np.testing.assert_array_equal(got, want)
    _close(a.logdet, b.logdet, "logdet", floor=float(n_groups))
    for name in ("s", "m", "between", "gram"):
        _close(getattr(a, name), getattr(b, name), name)
        np.testing.assert_array_equal(getattr(a, name), getattr(a, name).T)
    for got, want in zip(ours.value(factor), theirs.value(factor), strict=True):
        _close(got, want, "value", floor=float(n_groups))
    basis = Layout(1, ()).basis()
    w = np.append(-rng.normal(size=k - 1), 1.0)
    got_h, want_h = ours.hessian(a, basis, w), theirs.hessian(b, basis, w)
    for name in want_h.__dataclass_fields__:
        _close(getattr(got_h, name), getattr(want_h, name), name)


@built
def test_extension_step_refuses_buffers_of_the_wrong_size():
    """``dense1_step`` checks each buffer against ``k`` and ``g``: an error naming it."""
    from dmixed.kernels import c_sums as ext

    k, g = 3, 5
    args = [np.ones(g), np.ones((k, g)), np.ones(g), k, g, 0.5]
    with pytest.raises(ValueError, match="h: 15 numbers needed"):
        ext.dense1_step(*args, np.empty((k, g - 1)), np.empty(g), np.empty(1 + 3 * k * k))
    with pytest.raises(ValueError, match="k must be in"):
        ext.dense1_step(
            np.ones(g), np.ones(0), np.ones(g), 0, g, 0.5, np.empty(0), np.empty(g), np.empty(1)
        )
