"""The switch of the C extension (:mod:`dmixed.kernels.native`), its checks of what it
is given, and fits through it against fits through the numpy reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.kernels import native

from .._native_marks import built, called
from .._synth import QUICK, make_data

#: fits through the extension against fits through numpy: rounding of sums added in
#: another order (the Newton steps' own tolerance is far coarser)
RTOL = 1e-10


@pytest.mark.parametrize("value", ["", "auto", " Auto ", "numpy", "NUMPY"])
def test_forced_reads_the_switch(monkeypatch, value):
    """``DMIXED_NATIVE`` unset, empty or ``auto`` is ``auto``; case and spaces aside."""
    monkeypatch.setenv(native.ENV_VAR, value)
    assert native.forced() == (value.strip().lower() or "auto")
    if native.forced() == "numpy":
        assert native.extension() is None


def test_forced_refuses_anything_else(monkeypatch):
    monkeypatch.setenv(native.ENV_VAR, "numba")
    with pytest.raises(ValueError, match="DMIXED_NATIVE must be one of"):
        native.forced()


def test_c_asked_for_where_it_is_not_built(monkeypatch):
    """``c`` where the extension did not build (no compiler at install): an error that
    names the switch, while ``auto`` runs the numpy reference."""
    monkeypatch.setattr(native, "loaded", lambda: False)
    monkeypatch.setenv(native.ENV_VAR, "c")
    with pytest.raises(ValueError, match="DMIXED_NATIVE=c but the extension"):
        native.extension()


@built
def test_the_built_extension_is_the_version_called():
    from dmixed.kernels import c_sums

    assert c_sums.VERSION == native.VERSION


@built
def test_an_extension_built_from_another_version_is_not_used(monkeypatch):
    """An editable install keeps the library it built until it is rebuilt: one built
    from another ``c_sums.c`` is not called (its arguments may differ); ``auto`` runs
    numpy, ``c`` says to rebuild."""
    monkeypatch.setattr(native, "VERSION", native.VERSION + 1)
    monkeypatch.delenv(native.ENV_VAR, raising=False)
    assert not native.loaded()
    assert native.extension() is None
    monkeypatch.setenv(native.ENV_VAR, "c")
    with pytest.raises(ValueError, match="built from another version.*pip install -e"):
        native.extension()


@built
def test_the_extension_runs_by_default(monkeypatch):
    monkeypatch.delenv(native.ENV_VAR, raising=False)
    assert native.extension() is not None


@called
@pytest.mark.parametrize(
    "zz, message",
    [
        (np.zeros((2, 2, 3), dtype=np.float32), "zz: a float64 buffer is needed"),
        (np.zeros((2, 2, 4)), "zz: 12 numbers needed, got 16"),
        (np.zeros((2, 2, 6))[..., ::2], "contiguous"),
    ],
)
def test_buffers_are_checked(zz, message):
    """A buffer of another type, size or layout than the sizes say is refused by name."""
    ext = native.extension()
    assert ext is not None
    with pytest.raises((TypeError, ValueError, BufferError), match=message):
        ext.dense2_first(
            zz, np.zeros((2, 4, 3)), 4, 3, 1.0, 0.0, 0.0, 0.0, 0.0, np.zeros(3), np.zeros(25)
        )


@called
def test_sizes_are_checked():
    ext = native.extension()
    assert ext is not None
    with pytest.raises(ValueError, match="k must be in"):
        ext.dense2_moment_c(np.zeros(3), 0, 1, np.zeros(0))


@called
def test_sizes_whose_bytes_wrap_are_refused():
    """Sizes whose bytes pass Py_ssize_t (``4 g * 8`` wraps to 0 at ``g = 2**62``) are
    refused before any buffer is read: empty buffers must not pass for 2**62 groups."""
    ext = native.extension()
    assert ext is not None
    empty = np.empty(0)
    with pytest.raises(ValueError, match="g: 4611686018427387904 groups"):
        ext.dense2_first(empty, empty, 1, 2**62, 1.0, 0.0, 0.0, 0.0, 0.0, empty, np.zeros(9))
    with pytest.raises(ValueError, match="n_groups: 288230376151711744"):
        ext.term_sums(np.zeros(3, np.int64), [np.ones(3)], [(0, -1)] * 64, 2**58, empty)


@called
@pytest.mark.parametrize(
    "codes", [[-1, -1, 0, 1], [0, -1, 1, 1], [0, 1, 2, 1], [2, 0, 0, 1], [-(2**63), 0, 0, 1]]
)
def test_codes_out_of_range_are_refused(codes):
    """Every code outside ``[0, n_groups)`` is refused, as ``np.bincount`` refuses a
    negative one: leading rows of code -1 were once summed nowhere, without an error."""
    ext = native.extension()
    assert ext is not None
    with pytest.raises(ValueError, match=r"codes: a code outside \[0, 2\)"):
        ext.term_sums(np.array(codes, dtype=np.int64), [np.ones(4)], [(0, -1)], 2, np.empty((1, 2)))


@called
def test_terms_are_any_pairs():
    """``terms`` as lists or arrays of two (once a ``SystemError``: only tuples were
    read); anything but pairs is refused by name."""
    ext = native.extension()
    assert ext is not None
    codes, cols = np.array([0, 1, 1], dtype=np.int64), [np.array([1.0, 2.0, 3.0])]
    for pair in ([0, -1], np.array([0, -1]), (0, -1)):
        table = np.empty((1, 2))
        ext.term_sums(codes, cols, [pair], 2, table)
        np.testing.assert_array_equal(table, [[1.0, 5.0]])
    with pytest.raises(TypeError, match=r"terms: pairs \(u, v\)"):
        ext.term_sums(codes, cols, [(0,)], 2, np.empty((1, 2)))


def _hessian_args(**change):
    """Arguments of the extension's ``profiled_hessian`` for p = 2, m = 3 (the r = 2
    basis: index 85 rows, 8 wide), by name, with ``change`` in place of some."""
    from dmixed.kernels.hessian_moments import full_gather

    basis = np.array([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=np.float64)
    index = full_gather(basis, 3)
    args = dict(
        va=np.zeros((9, 9)),
        c=np.zeros((18, 6)),
        a=np.eye(2),
        b=np.zeros(2),
        a_inv=np.eye(2),
        beta=np.zeros(2),
        index=index,
        width=index.shape[1],
        p=2,
        m=3,
        q0=1.0,
        fac=10.0,
        reml=True,
        hess=np.empty((5, 5)),
        prof=np.empty((3, 3)),
        tr_ss=np.empty(3),
    )
    args.update(change)
    return tuple(args.values())


@called
def test_profiled_hessian_runs_on_its_arguments():
    """The arguments of :func:`_hessian_args` as they are: a finite Hessian (the checks
    below refuse only what they change)."""
    ext = native.extension()
    assert ext is not None
    args = _hessian_args()
    assert ext.profiled_hessian(*args) is True
    np.testing.assert_array_equal(args[-3][:2, :2], -10.0 * np.eye(2))


def _evaluate_args(**change):
    """Arguments of the extension's ``lean_evaluate`` for k = 3 (p = 2) and 4 groups,
    by name, with ``change`` in place of some."""
    k, g, n = 3, 4, 9
    zz = np.zeros((2, 2, g))
    zz[0, 0] = zz[1, 1] = 1.0
    xyxy = 10.0 * np.eye(k)
    score_at = np.zeros((3, 5), dtype=np.intp)
    args = dict(
        zz=zz,
        zxy=np.zeros((2, k, g)),
        k=k,
        g=g,
        l00=1.0,
        l10=0.0,
        l11=1.0,
        xyxy=xyxy,
        abs_xyxy=np.abs(xyxy),
        max_xyxy=10.0,
        score_at=score_at,
        fac=10.0,
        const=0.0,
        limit=1e-5,
        pivot_limit=0.1,
        reml=True,
        inv_d=np.empty(g),
        rows=np.empty((n, g)),
        va=np.empty((n, n)),
        m=np.empty((k, k)),
        t=np.empty((k, k)),
        a_inv=np.empty((2, 2)),
        beta=np.empty(2),
        scalars=np.empty(17),
    )
    args.update(change)
    return tuple(args.values())


@called
def test_lean_evaluate_runs_on_its_arguments():
    """The arguments of :func:`_evaluate_args` as they are: an evaluation (the checks
    below refuse only what they change); ``A`` not positive definite: 0."""
    ext = native.extension()
    assert ext is not None
    assert ext.lean_evaluate(*_evaluate_args()) == 2
    assert ext.lean_evaluate(*_evaluate_args(xyxy=-np.eye(3))) == 0


def _block_args(**change):
    """Arguments of the extension's ``block_terms``, by name, with ``change`` in place
    of some."""
    args = dict(
        hess=np.eye(3),
        g0=1.0,
        g1=0.0,
        g2=1.0,
        x0=1.0,
        big_l=0.0,
        d0=1.0,
        x1=1.0,
        g_v=np.empty(3),
        h_v=np.empty((3, 3)),
    )
    args.update(change)
    return tuple(args.values())


_PH, _LE, _BT = "profiled_hessian", "lean_evaluate", "block_terms"

#: the arguments of these entry points by name (:func:`_hessian_args`, ...)
_ARGS = {_PH: _hessian_args, _LE: _evaluate_args, _BT: _block_args}


@called
@pytest.mark.parametrize(
    "entry, change, error, message",
    [
        (_PH, dict(va=np.zeros((9, 9), np.float32)), TypeError, "va: a float64 buffer"),
        (_PH, dict(c=np.zeros((18, 12))[:, ::2]), ValueError, "not C-contiguous"),
        (_PH, dict(a=np.eye(3)), ValueError, r"a: shape \(2, 2\) needed"),
        (_PH, dict(a=np.eye(2, dtype=int)), TypeError, "a: a float64 buffer"),
        (_PH, dict(b=np.zeros((2, 1))), ValueError, r"b: shape \(2,\) needed"),
        (_PH, dict(a_inv=np.eye(2)[:1]), ValueError, r"a_inv: shape \(2, 2\) needed"),
        (_PH, dict(beta=np.zeros(3)), ValueError, r"beta: shape \(2,\) needed"),
        (_PH, dict(index=np.zeros((85, 8), np.int32)), TypeError, "index: an int64 buffer"),
        (_PH, dict(index=np.zeros((85, 7), np.intp)), ValueError, "index: 85 x 8 positions"),
        (_PH, dict(index=np.full((85, 8), 194, np.intp)), ValueError, "outside \\[0, 194\\)"),
        (_PH, dict(index=np.full((85, 8), -1, np.intp)), ValueError, "index: a position outside"),
        (_PH, dict(hess=np.empty((4, 4))), ValueError, "hess: 25 numbers needed, got 16"),
        (_PH, dict(prof=np.empty(8)), ValueError, "prof: 9 numbers needed, got 8"),
        (_PH, dict(tr_ss=np.empty(3)[::-1]), ValueError, "not C-contiguous"),
        (_PH, dict(tr_ss=None), TypeError, "buffer|bytes-like"),
        (_PH, dict(p=64), ValueError, r"p must be in \[0, 63\]"),
        (_PH, dict(p=-1), ValueError, r"p must be in \[0, 63\]"),
        (_PH, dict(m=0), ValueError, r"m in \[1, 64\]"),
        (_PH, dict(width=0), ValueError, r"width in \[1, 4096\]"),
        (_LE, dict(k=5), ValueError, r"k must be in \[2, 4\], got k=5"),
        (_LE, dict(k=1, zxy=np.ones((2, 1, 4))), ValueError, r"k must be in \[2, 4\]"),
        (_LE, dict(g=-1), ValueError, "k must be in .* and g >= 0"),
        (_LE, dict(zz=np.zeros((2, 2, 4), np.float32)), TypeError, "zz: a float64 buffer"),
        (_LE, dict(zxy=np.ones((2, 3, 5))), ValueError, "zxy: 24 numbers needed, got 30"),
        (_LE, dict(xyxy=np.eye(4)[:3, :3]), ValueError, "not C-contiguous"),
        (_LE, dict(abs_xyxy=np.eye(2)), ValueError, "abs_xyxy: 9 numbers needed, got 4"),
        (_LE, dict(score_at=np.zeros((3, 5), np.int32)), TypeError, "score_at: an int64"),
        (_LE, dict(score_at=np.zeros((3, 4), np.intp)), ValueError, "score_at: 15 positions"),
        (_LE, dict(score_at=np.full((3, 5), 81, np.intp)), ValueError, r"outside \[0, 81\)"),
        (_LE, dict(score_at=np.full((3, 5), -1, np.intp)), ValueError, r"outside \[0, 81\)"),
        (_LE, dict(rows=np.empty((9, 3))), ValueError, "rows: 36 numbers needed, got 27"),
        (_LE, dict(va=np.empty((9, 18))[:, ::2]), ValueError, "not C-contiguous"),
        (_LE, dict(a_inv=np.empty((3, 3))), ValueError, "a_inv: 4 numbers needed, got 9"),
        (_LE, dict(beta=np.empty(3)), ValueError, "beta: 2 numbers needed, got 3"),
        (_LE, dict(scalars=np.empty(16)), ValueError, "scalars: 17 numbers needed, got 16"),
        (_LE, dict(m=None), TypeError, "buffer|bytes-like"),
        (_BT, dict(hess=np.eye(3, dtype=np.float32)), TypeError, "hess: a float64"),
        (_BT, dict(hess=np.eye(2)), ValueError, "hess: 9 numbers needed, got 4"),
        (_BT, dict(hess=np.eye(6)[::2, ::2]), ValueError, "not C-contiguous"),
        (_BT, dict(g_v=np.empty(2)), ValueError, "g_v: 3 numbers needed, got 2"),
        (_BT, dict(h_v=np.empty(3)), ValueError, "h_v: 9 numbers needed, got 3"),
        (_BT, dict(h_v=None), TypeError, "buffer|bytes-like"),
    ],
)
def test_entry_points_check_their_arguments(entry, change, error, message):
    """A buffer of another type, size or layout, a position outside its inputs or a
    size out of range: refused by name, nothing read or written."""
    ext = native.extension()
    assert ext is not None
    with pytest.raises(error, match=message):
        getattr(ext, entry)(*_ARGS[entry](**change))


@called
@pytest.mark.parametrize(
    "entry, name, shape",
    [
        ("profiled_hessian", "hess", (5, 5)),
        ("lean_evaluate", "va", (9, 9)),
        ("block_terms", "h_v", (3, 3)),
    ],
)
def test_entry_points_want_writable_outputs(entry, name, shape):
    ext = native.extension()
    assert ext is not None
    out = np.empty(shape)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        getattr(ext, entry)(*_ARGS[entry](**{name: out}))


def _fit(df, reml: bool, monkeypatch, choice: str) -> dict:
    """``y ~ x1 + x2`` with a random intercept and slope on x1, arrays in, with
    ``DMIXED_NATIVE`` at ``choice``."""
    monkeypatch.setenv(native.ENV_VAR, choice)
    x1, x2 = np.asarray(df["x1"]), np.asarray(df["x2"])
    with warnings.catch_warnings(record=True) as seen:
        # the fits' warnings (boundary, convergence) are compared
        warnings.simplefilter("always", dmixed.errors.DmixedWarning)
        res = dmixed.MixedLM(
            np.asarray(df["y"], dtype=np.float64),
            np.column_stack([np.ones(len(df)), x1, x2]),
            np.asarray(df["g"]),
            exog_re=np.column_stack([np.ones(len(df)), x1]),
        ).fit(reml=reml)
    return {
        "warnings": sorted({w.category.__name__ for w in seen}),
        "params": res.params,
        "bse": res.bse,
        "cov_re": res.cov_re,
        "llf": res.llf,
        "scale": res.scale,
        "converged": res.converged,
        "n_iter": res.n_iter,
    }


@built
@settings(max_examples=15, **QUICK)
@given(
    n_groups=st.integers(2, 400),
    max_size=st.integers(1, 20),
    slope_sd=st.sampled_from([0.0, 0.05, 0.5, 2.0]),
    reml=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fits_through_c_and_numpy_agree(monkeypatch, n_groups, max_size, slope_sd, reml, seed):
    """The fit through the extension and through the numpy reference: the same
    iterations and convergence, params, standard errors, ``cov_re``, ℓ and scale to
    1e-10 (groups of one row among them, a slope variance at the boundary)."""
    df = make_data(n_groups=n_groups, min_size=1, max_size=max_size, slope_sd=slope_sd, seed=seed)
    try:
        ref = _fit(df, reml, monkeypatch, "numpy")
    except dmixed.errors.DmixedError:
        with pytest.raises(dmixed.errors.DmixedError):
            _fit(df, reml, monkeypatch, "c")
        return
    ours = _fit(df, reml, monkeypatch, "c")
    for name in ("converged", "n_iter", "warnings"):
        assert ours[name] == ref[name], name
    for name in ("params", "bse", "cov_re", "llf", "scale"):
        a = np.ravel(np.asarray(ours[name], dtype=np.float64))
        b = np.ravel(np.asarray(ref[name], dtype=np.float64))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        assert float(np.max(np.abs(a - b), initial=0.0)) <= RTOL * scale, name


@built
def test_a_fit_of_more_columns_than_the_extension_takes(monkeypatch):
    """Two random coefficients and 64 fixed-effects columns (``k = 65``, past
    :data:`~dmixed.kernels.native.MAX_K`): the fit runs (numpy's sums there) and is
    the numpy reference's fit (it once failed in the extension's check of ``k``)."""
    rng = np.random.default_rng(3)
    n_groups, size, p = 40, 20, native.MAX_K
    g = np.repeat(np.arange(n_groups), size)
    x = np.column_stack([np.ones(g.size), rng.normal(size=(g.size, p - 1))])
    z = np.column_stack([np.ones(g.size), rng.normal(size=g.size)])
    b = rng.normal(size=(n_groups, 2))
    y = 0.1 * x @ rng.normal(size=p) + (b[g] * z).sum(axis=1) + rng.normal(size=g.size)
    fits = {}
    for choice in ("numpy", "auto"):
        monkeypatch.setenv(native.ENV_VAR, choice)
        fits[choice] = dmixed.MixedLM(y, x, g, exog_re=z).fit()
    assert fits["auto"].converged and fits["auto"].n_iter == fits["numpy"].n_iter
    np.testing.assert_array_equal(fits["auto"].params, fits["numpy"].params)
