"""The extension's Hessian moments and BLUPs at r = 2 (``moments_r2`` of ``c_sums.c``,
reached through :func:`dmixed.kernels.compiled.hessian_random_effects` and
:func:`~dmixed.kernels.compiled.hessian_sums`) against the numpy reference and the numba
pass, and its checks of what it is given."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.kernels import compiled, native

from .._native_marks import called
from .._synth import QUICK
from .test_compiled import _assert_close, _basis, _lam, _statistics

pytest.importorskip("numba")

#: the same sums over groups added in another order than the reference's
RTOL = 1e-12

#: ``k`` for the C pass: every ``k`` of the fused step, then a few up to the largest it
#: takes (past a power of two and at :data:`~dmixed.kernels.native.MAX_K`), where the
#: vectors of its pair sums span several lines
K_VALUES = st.one_of(
    st.integers(1, compiled.FUSED_MAX_K), st.sampled_from([7, 9, 17, 33, native.MAX_K])
)


def _block(rng, n_groups: int, k: int, one_row: float, q: int, log_cond: float):
    zz, zxy = _statistics(rng, n_groups, 2, k, one_row)
    return kernels.StatsBlock(zz, zxy), _lam(rng, 2, q, log_cond)


def _reference(monkeypatch, block, lam, basis, w):
    """The numpy kernels' Hessian sums, BLUPs and conditional covariances."""
    monkeypatch.setenv(compiled.ENV_VAR, "numpy")
    hs = kernels.hessian_contributions(block, lam, basis, w)
    blup, cov = kernels.random_effects_block(block, lam, w)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    return hs, blup, cov


def _assert_rows_close(ref, got):
    """Per-group values to ``RTOL`` of the largest entry (what numpy's ``einsum`` and the
    closed forms round differently)."""
    scale = np.max(np.abs(ref), initial=0.0)
    assert np.all(np.abs(ref - got) <= RTOL * scale), np.max(np.abs(ref - got)) / scale


@called
@settings(max_examples=40, **QUICK)
@given(
    k=K_VALUES,
    q=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**16),
    log_cond=st.floats(0, 8),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    n_groups=st.sampled_from([1, 3, 255, 257, 700]),
    upper=st.booleans(),
)
def test_c_pass_matches_numpy(monkeypatch, k, q, seed, log_cond, one_row, n_groups, upper):
    """The Hessian sums, BLUPs and conditional covariances of the C pass against the
    numpy reference, for k from 1 to ``MAX_K`` (64), any ``w``, several chunks, runs of
    groups not a multiple of the vector width, groups of one row (rank-one ``Z'Z``),
    zero slots, ill-conditioned Λ, variance-component bases (q < 2)."""
    _check_against_numpy(monkeypatch, k, q, seed, log_cond, one_row, n_groups, upper)


@called
@pytest.mark.parametrize("k", [7, 9, 17, 33, native.MAX_K])
@pytest.mark.parametrize("upper", [False, True])
def test_c_pass_matches_numpy_at_sampled_k(monkeypatch, k, upper):
    """Each sampled ``k`` past the fused step's, up to ``MAX_K``, on every run (the
    property above draws them among others)."""
    _check_against_numpy(monkeypatch, k, 2, k, 4.0, 0.3, 257, upper)


def _check_against_numpy(monkeypatch, k, q, seed, log_cond, one_row, n_groups, upper):
    """:func:`test_c_pass_matches_numpy`'s comparison for one example."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    monkeypatch.delenv(native.ENV_VAR, raising=False)
    rng = np.random.default_rng(seed)
    block, lam = _block(rng, n_groups, k, one_row, q, log_cond)
    basis, w = _basis(2, q), np.r_[rng.normal(size=k - 1) * 10.0 ** rng.uniform(-3, 3), 1.0]
    fields, blup, cov = compiled.hessian_random_effects(
        block.chunks(), lam, basis, w, block.spans.edges, upper
    )
    ref, ref_blup, ref_cov = _reference(monkeypatch, block, lam, basis, w)
    _assert_close(ref, kernels.HessianSums(*fields), RTOL)
    _assert_rows_close(ref_blup, blup)
    _assert_rows_close(ref_cov, compiled.upper_unfolded(cov) if upper else cov)


@called
@settings(max_examples=30, **QUICK)
@given(
    k=K_VALUES,
    q=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**16),
    one_row=st.sampled_from([0.0, 0.3, 1.0]),
    n_groups=st.sampled_from([1, 5, 700]),
)
def test_c_pass_against_numba(monkeypatch, k, q, seed, one_row, n_groups):
    """Against the numba pass it replaces: the BLUPs and covariances bit for bit (each
    group's values with the same operations), the Hessian sums (with and without the
    BLUPs) to rounding."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 293)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    rng = np.random.default_rng(seed)
    block, lam = _block(rng, n_groups, k, one_row, q, 4.0)
    basis, w = _basis(2, q), np.r_[rng.normal(size=k - 1), 1.0]
    out = {}
    for choice in ("numpy", "c"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        fields, blup, cov = compiled.hessian_random_effects(
            block.chunks(), lam, basis, w, block.spans.edges, True
        )
        alone = kernels.hessian_contributions(block, lam, basis, w)
        out[choice] = kernels.HessianSums(*fields), blup, cov, alone
    (ref, ref_blup, ref_cov, ref_alone), (got, blup, cov, alone) = out["numpy"], out["c"]
    _assert_close(ref, got, RTOL)
    _assert_close(ref_alone, alone, RTOL)
    _assert_close(got, alone, 0.0)  # one pass or the Hessian alone: the same bits
    np.testing.assert_array_equal(blup, ref_blup)
    np.testing.assert_array_equal(cov, ref_cov)


@called
@pytest.mark.parametrize("k", [1, 2, 5, 9])
@pytest.mark.parametrize("n_groups", [4, 6, 7, 259, 262, 263, 515])
def test_c_pass_vectors_and_tails_against_numba(monkeypatch, k, n_groups):
    """The C pass makes each group's conditional values four groups a vector with the
    groups past the last whole vector one by one: the BLUPs and covariances of every
    group, in whole vectors and in the tails of runs and chunks (none to three groups
    past them; chunks of 257 groups, runs of 256), are numba's bit for bit, the
    Hessian sums alone those of the pass with the BLUPs bit for bit, and numba's to
    rounding."""
    monkeypatch.setattr(kernels.groups, "GROUP_CHUNK", 257)
    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    rng = np.random.default_rng(n_groups * 100 + k)
    block, lam = _block(rng, n_groups, k, 0.3, 2, 2.0)
    basis, w = _basis(2, 2), np.r_[rng.normal(size=k - 1), 1.0]
    out = {}
    for choice in ("numpy", "c"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        fields, blup, cov = compiled.hessian_random_effects(
            block.chunks(), lam, basis, w, block.spans.edges, False
        )
        alone = kernels.hessian_contributions(block, lam, basis, w)
        out[choice] = kernels.HessianSums(*fields), blup, cov, alone
    (ref, ref_blup, ref_cov, _), (got, blup, cov, alone) = out["numpy"], out["c"]
    np.testing.assert_array_equal(blup, ref_blup)
    np.testing.assert_array_equal(cov, ref_cov)
    _assert_close(got, alone, 0.0)
    _assert_close(ref, got, RTOL)


def _moments_args(k: int = 3, g: int = 4, **change):
    """Arguments of the extension's ``moments_r2`` by name, ``change`` in place of some."""
    args = dict(
        zz=np.zeros((2, 2, g)),
        zxy=np.zeros((2, k, g)),
        k=k,
        g=g,
        b=np.eye(2),
        det_b=1.0,
        w=np.ones(k),
        a=np.zeros((3, 3)),
        v=np.zeros((2 * k, 2 * k)),
        c=np.zeros((6 * k, 2 * k)),
        blup=np.empty((g, 2)),
        cov=np.empty((g, 3)),
        cov_width=3,
    )
    args.update(change)
    return tuple(args.values())


@called
@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(k=0), ValueError, "k must be in"),
        (dict(k=65), ValueError, "k must be in"),
        (dict(zz=np.zeros((2, 2, 5))), ValueError, "zz: 16 numbers needed, got 20"),
        (dict(zxy=np.zeros((2, 3, 4), np.float32)), TypeError, "zxy: a float64 buffer"),
        (dict(w=np.ones(4)), ValueError, "w: 3 numbers needed"),
        (dict(c=np.zeros((6, 6))), ValueError, "c: 108 numbers needed"),
        (dict(blup=None), ValueError, "blup and cov: both None or both buffers"),
        (dict(cov_width=5), ValueError, "cov_width 3 or 4, got cov_width=5"),
        (dict(cov=np.empty((4, 4))), ValueError, "cov: 12 numbers needed, got 16"),
        (dict(a=np.zeros((3, 3))[::1, ::-1]), BufferError, "contiguous"),
    ],
)
def test_moments_r2_checks_its_arguments(change, error, message):
    """Each argument of another size, type or layout than ``k`` and ``g`` say is
    refused by name (a C-contiguous float64 buffer each)."""
    ext = native.extension()
    assert ext is not None
    with pytest.raises((error, ValueError), match=message):
        ext.moments_r2(*_moments_args(**change))


@called
def test_moments_r2_without_blups_and_without_groups():
    """``blup`` and ``cov`` None: the moments alone; no groups: nothing added."""
    ext = native.extension()
    assert ext is not None
    args = _moments_args(g=0, blup=None, cov=None)
    ext.moments_r2(*args)
    assert not any(np.any(x) for x in args[7:10])
    zz = np.tile(np.eye(2)[..., None], 4)
    args = _moments_args(zz=zz, zxy=np.ones((2, 3, 4)), blup=None, cov=None)
    ext.moments_r2(*args)
    assert args[7][0, 0] > 0.0 and args[8][0, 0] > 0.0


@called
def test_outputs_must_be_writable():
    ext = native.extension()
    assert ext is not None
    v = np.zeros((6, 6))
    v.flags.writeable = False
    with pytest.raises((BufferError, ValueError, TypeError)):
        ext.moments_r2(*_moments_args(v=v))


class _Spy:
    """The extension, counting its ``moments_r2`` calls."""

    def __init__(self, ext):
        self._ext, self.calls = ext, 0

    def moments_r2(self, *args):
        self.calls += 1
        return self._ext.moments_r2(*args)

    def __getattr__(self, name):
        return getattr(self._ext, name)


@called
@pytest.mark.parametrize(
    "kernels_choice, native_choice, k, runs_c",
    [
        ("numba", "auto", 3, True),
        ("numba", "auto", native.MAX_K, True),
        ("numba", "numpy", 3, False),  # numba's pass
        ("numba", "auto", native.MAX_K + 1, False),  # past what the C pass takes: numba's
        ("numpy", "auto", 3, False),  # the numpy reference's Hessian
        ("numpy", "numpy", 3, False),
    ],
)
def test_switches_choose_the_hessian_pass(monkeypatch, kernels_choice, native_choice, k, runs_c):
    """``DMIXED_KERNELS=numba`` runs the C pass at r = 2 and k ≤ ``MAX_K`` unless
    ``DMIXED_NATIVE=numpy`` (then numba's); ``DMIXED_KERNELS=numpy`` never does (the
    numpy reference, as with both set to ``numpy``): each time the same sums to
    ``RTOL``."""
    spy = None
    extension = native.extension

    def spied():
        nonlocal spy
        ext = extension()
        if ext is None:
            return None
        spy = spy or _Spy(ext)
        return spy

    monkeypatch.setattr(native, "extension", spied)
    rng = np.random.default_rng(k)
    block, lam = _block(rng, 300, k, 0.3, 2, 2.0)
    basis, w = _basis(2, 2), np.r_[rng.normal(size=k - 1), 1.0]
    ref, _, _ = _reference(monkeypatch, block, lam, basis, w)
    monkeypatch.setenv(compiled.ENV_VAR, kernels_choice)
    monkeypatch.setenv(native.ENV_VAR, native_choice)
    got = kernels.hessian_contributions(block, lam, basis, w)
    assert (spy is not None and spy.calls > 0) == runs_c
    _assert_close(ref, got, RTOL)
