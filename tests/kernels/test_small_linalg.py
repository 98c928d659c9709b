"""numpy.linalg's factorizations without its wrappers: the same bits and the same errors."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import warnings
import weakref

import numpy as np
import pytest

from dmixed.kernels import small_linalg

from .._collector import Held, collector_off


def _matrices(n: int, count: int, seed: int) -> list[np.ndarray]:
    """Symmetric positive definite ``n × n`` matrices of widely different scales, some
    of them views (transposed, strided), as the Newton steps' slices are."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        x = rng.normal(size=(n, n)) * 10.0 ** rng.uniform(-6, 6, size=n)
        a = x @ x.T + 1e-3 * np.eye(n)
        if i % 3 == 1:
            a = np.asfortranarray(a)
        elif i % 3 == 2:
            big = np.zeros((n + 1, n + 1))
            big[:n, :n] = a
            a = big[:n, :n]  # not contiguous
        out.append(a)
    return out


def _same(ours, theirs) -> None:
    assert type(ours) is type(theirs) or np.isscalar(ours)
    assert np.asarray(ours).tobytes() == np.asarray(theirs).tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_the_same_bits_as_numpy_linalg(n: int) -> None:
    rng = np.random.default_rng(n)
    for a in _matrices(n, 90, seed=10 * n):
        _same(small_linalg.cholesky(a), np.linalg.cholesky(a))
        _same(small_linalg.inv(a), np.linalg.inv(a))
        b = rng.normal(size=(n, 2))
        _same(small_linalg.solve(a, b), np.linalg.solve(a, b))
        _same(small_linalg.solve(a, b[:, 0]), np.linalg.solve(a, b[:, 0]))
        w, v = small_linalg.eigh(a)
        ref = np.linalg.eigh(a)
        _same(w, ref.eigenvalues)
        _same(v, ref.eigenvectors)
        _same(small_linalg.eigvalsh(a), np.linalg.eigvalsh(a))
        assert small_linalg.det(a) == float(np.linalg.det(a))
        lower = np.tril(a)
        assert small_linalg.det(lower) == float(np.linalg.det(lower))


def test_the_same_errors_and_no_warning() -> None:
    not_pd = np.array([[1.0, 2.0], [2.0, 1.0]])
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning of a failed gufunc
        with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
            small_linalg.cholesky(not_pd)
        with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
            small_linalg.inv(singular)
        with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
            small_linalg.solve(singular, np.ones(2))
        # the error state is numpy's default again after them
        with pytest.raises(RuntimeWarning):
            np.log(np.array([-1.0]))


def _outcome(f, *args):
    """What ``f(*args)`` gives (its bits) or raises (type and message), with every
    warning an error (numpy's RuntimeWarning of a failed gufunc among them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = f(*args)
        except Exception as error:  # noqa: BLE001 - compared with numpy's below
            return type(error), str(error)
    parts = out if isinstance(out, tuple) else (out,)
    return tuple(np.asarray(part).tobytes() for part in parts)


@pytest.mark.parametrize(
    "a",
    [
        np.array([[np.nan, 0.0], [0.0, 1.0]]),
        np.array([[1.0, 0.0], [0.0, -1.0]]),
        np.array([[0.0, 0.0], [0.0, 0.0]]),
        np.full((3, 3), np.inf),
        np.array([[1e308, 1e308], [1e308, 1e-308]]),
    ],
    ids=["nan", "indefinite", "zero", "inf", "overflow"],
)
def test_failures_as_numpy_linalg_fails(a: np.ndarray) -> None:
    """Singular, indefinite, NaN, infinite and overflowing matrices: the same result or
    the same ``LinAlgError`` as np.linalg's, and no warning (the error state is made
    once: :func:`small_linalg._guarded`)."""
    b = np.ones(a.shape[0])
    pairs = [
        (small_linalg.cholesky, np.linalg.cholesky, (a,)),
        (small_linalg.inv, np.linalg.inv, (a,)),
        (small_linalg.solve, np.linalg.solve, (a, b)),
        (small_linalg.eigvalsh, np.linalg.eigvalsh, (a,)),
        (small_linalg.eigh, lambda m: tuple(np.linalg.eigh(m)), (a,)),
    ]
    for ours, theirs, args in pairs:
        assert _outcome(ours, *args) == _outcome(theirs, *args)


def test_the_callers_error_state_is_kept() -> None:
    """Inside a caller's own ``np.errstate`` the functions raise as np.linalg does, and
    the caller's state holds again after them, also after an error."""
    not_pd = np.array([[1.0, 2.0], [2.0, 1.0]])
    with np.errstate(all="raise"):
        with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
            small_linalg.cholesky(not_pd)
        _same(small_linalg.cholesky(np.eye(2)), np.linalg.cholesky(np.eye(2)))
        assert set(np.geterr().values()) == {"raise"}
        with pytest.raises(FloatingPointError):
            np.log(np.array([-1.0]))
    with np.errstate(invalid="ignore"):
        small_linalg.inv(np.eye(3))
        assert np.geterr()["invalid"] == "ignore"


def test_other_arguments_go_to_numpy() -> None:
    ints = np.array([[2, 1], [1, 2]])
    _same(small_linalg.cholesky(ints), np.linalg.cholesky(ints))
    _same(small_linalg.inv(ints), np.linalg.inv(ints))
    assert small_linalg.det(ints) == float(np.linalg.det(ints))
    _same(small_linalg.eigvalsh([[2.0, 1.0], [1.0, 2.0]]), np.linalg.eigvalsh(ints))


@pytest.mark.parametrize(
    "a", [np.ones((2, 3)), np.ones(3), np.ones((2, 3, 4))], ids=["2x3", "vector", "stack-2x3x4"]
)
def test_a_matrix_not_square_is_refused_as_numpy_linalg_refuses_it(a: np.ndarray) -> None:
    """Not a (stack of) square matrices: ``np.linalg.LinAlgError`` with numpy's message,
    as ``np.linalg`` raises it (not the gufunc's ``ValueError`` of a core dimension)."""
    calls = [
        (small_linalg.cholesky, np.linalg.cholesky, (a,)),
        (small_linalg.inv, np.linalg.inv, (a,)),
        (small_linalg.eigh, np.linalg.eigh, (a,)),
        (small_linalg.eigvalsh, np.linalg.eigvalsh, (a,)),
        (small_linalg.det, np.linalg.det, (a,)),
        (small_linalg.solve, np.linalg.solve, (a, np.ones(a.shape[-1]))),
        (small_linalg.solve, np.linalg.solve, (a, np.ones((a.shape[-1], 2)))),
    ]
    for ours, theirs, args in calls:
        with pytest.raises(np.linalg.LinAlgError) as want:
            theirs(*args)
        with pytest.raises(np.linalg.LinAlgError, match=re.escape(str(want.value))):
            ours(*args)


def test_without_numpy_gufuncs_numpy_linalg_stands_in(monkeypatch) -> None:
    """Where numpy has no ``numpy.linalg._umath_linalg`` (another numpy), the module
    imports and every function is np.linalg's: the same bits, the same errors."""
    monkeypatch.delattr(np.linalg, "_umath_linalg")
    monkeypatch.setitem(sys.modules, "numpy.linalg._umath_linalg", None)
    spec = importlib.util.spec_from_file_location("small_linalg_alone", small_linalg.__file__)
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    monkeypatch.undo()  # numpy as it was: np.linalg's own functions for the reference
    rng = np.random.default_rng(7)
    for a in _matrices(3, 12, seed=70):
        b = rng.normal(size=(3, 2))
        _same(alone.cholesky(a), np.linalg.cholesky(a))
        _same(alone.inv(a), np.linalg.inv(a))
        _same(alone.solve(a, b), np.linalg.solve(a, b))
        _same(alone.solve(a, b[:, 0]), np.linalg.solve(a, b[:, 0]))
        for ours, theirs in zip(alone.eigh(a), np.linalg.eigh(a), strict=True):
            _same(ours, theirs)
        _same(alone.eigvalsh(a), np.linalg.eigvalsh(a))
        assert alone.det(a) == float(np.linalg.det(a))
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        alone.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        alone.inv(np.array([[1.0, 2.0], [2.0, 4.0]]))
    asked = []
    numpy_cholesky = np.linalg.cholesky
    monkeypatch.setattr(np.linalg, "cholesky", lambda a: asked.append(a) or numpy_cholesky(a))
    alone.cholesky(np.eye(2))
    assert len(asked) == 1  # np.linalg's function did the work, not a gufunc


@pytest.mark.parametrize("p", [1, 2, 3])
def test_spd_inverse_3_is_the_lapack_inverse_to_rounding(p: int) -> None:
    """``(log|A|, A⁻¹)`` of the floats agree with LAPACK's factor to rounding on matrices
    of widely different scales (to ``ε`` times their condition number), read from the
    leading block of a larger one (the profile's ``[X y]'V*⁻¹[X y]``)."""
    for a in _matrices(p, 30, seed=p):
        cond = np.linalg.cond(a)
        t = np.full((p + 1, p + 1), np.nan)
        t[:p, :p] = a
        out = small_linalg.spd_inverse_3(t.tolist(), p)
        assert out is not None
        logdet, inverse = out
        chol = np.linalg.cholesky(a)
        assert abs(logdet - 2.0 * np.log(chol.diagonal()).sum()) <= 1e-14 * cond
        chol_inv = np.linalg.inv(chol)
        ref = chol_inv.T @ chol_inv
        np.testing.assert_allclose(
            np.array(inverse) @ a, np.eye(p), atol=1e-13 * cond, err_msg=str(cond)
        )
        assert np.array_equal(np.array(inverse), np.array(inverse).T)
        assert np.abs(np.array(inverse) - ref).max() <= 1e-12 * cond * np.abs(ref).max()


@pytest.mark.parametrize(
    "a",
    [
        np.array([[1.0, 2.0], [2.0, 1.0]]),  # indefinite: the second pivot negative
        np.array([[0.0, 0.0], [0.0, 1.0]]),  # a zero pivot
        np.array([[-1.0]]),
        np.array([[np.nan]]),
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),  # singular: pivot 0
        np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 3.0], [1.0, 3.0, 2.0]]),
        np.array([[1.0, 0.5, 0.5], [0.5, 1.0, np.nan], [0.5, np.nan, 1.0]]),
    ],
)
def test_spd_inverse_3_fails_where_cholesky_fails(a: np.ndarray) -> None:
    """None where ``np.linalg.cholesky`` refuses the matrix (a pivot not positive) or
    gives a factor that is not finite (OpenBLAS lets a NaN pivot through: the profile
    rejects the point then as ℓ is not finite), on matrices whose pivots are not within
    rounding of zero."""
    try:
        assert not np.isfinite(np.linalg.cholesky(a)).all()
    except np.linalg.LinAlgError:
        pass
    assert small_linalg.spd_inverse_3(a.tolist(), a.shape[0]) is None


def test_spd_inverse_3_takes_one_to_three_rows() -> None:
    with pytest.raises(ValueError, match="1 to 3 rows"):
        small_linalg.spd_inverse_3([[1.0] * 4] * 4, 4)


def _spd_2(count: int, seed: int) -> list[tuple[float, float, float]]:
    """Entries ``(a00, a10, a11)`` of symmetric positive definite 2 × 2 matrices: scales
    1e±150 on each coordinate, subnormal and nearly singular ones among them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        low = np.array([[rng.normal(), 0.0], [rng.normal(), rng.normal()]])
        scale = 10.0 ** rng.uniform(-150, 150, size=2) if i % 2 else np.exp(rng.normal(size=2))
        if i % 7 == 3:
            low[1, 1] *= 1e-9  # nearly singular
        a = (low @ low.T) * np.sqrt(np.outer(scale, scale))
        out.append((float(a[0, 0]), float(a[1, 0]), float(a[1, 1])))
    out += [(5e-324, 0.0, 5e-324), (1e-310, 1e-311, 1e-310), (1e300, 1e299, 1e300)]
    return out


def _same_as_cholesky(a00: float, a10: float, a11: float) -> None:
    """``cholesky_2`` of the entries gives ``np.linalg.cholesky``'s factor bit for bit,
    or raises where it raises."""
    a = np.array([[a00, a10], [a10, a11]])
    try:
        expected = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        with pytest.raises(np.linalg.LinAlgError):
            small_linalg.cholesky_2(a00, a10, a11)
        return
    l00, l10, l11 = small_linalg.cholesky_2(a00, a10, a11)
    _same(np.array([[l00, 0.0], [l10, l11]]), expected)


def test_cholesky_2_is_the_lapack_factor_bit_for_bit() -> None:
    """``cholesky_2`` gives :func:`cholesky`'s factor of the same matrix, bit for bit."""
    for entries in _spd_2(20_000, 5):
        _same_as_cholesky(*entries)


@pytest.mark.parametrize(
    "entries",
    [
        (0.0, 0.0, 1.0),
        (-1.0, 0.0, 1.0),
        (1.0, 2.0, 1.0),
        (1.0, 1.0, 1.0),
        (np.nan, 0.0, 1.0),
        (1.0, 0.0, np.nan),
        (np.inf, 0.0, 1.0),
        (1.0, np.inf, 1.0),
    ],
)
def test_cholesky_2_fails_or_not_as_cholesky(entries) -> None:
    """Where a pivot is not positive or an entry not finite, :func:`cholesky`'s numbers
    or its error."""
    _same_as_cholesky(*entries)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_definite_share_3_bounds_the_eigenvalue_share(n: int) -> None:
    """Where it gives a share, the matrix (or its negative) is definite and the share is
    at most ``min |λ| / max |λ|`` and above 1e-6; every definite matrix of a share above
    0.1 gets one; none for indefinite, singular or not finite matrices."""
    rng = np.random.default_rng(n)
    given = 0
    for i in range(4000):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        values = 10.0 ** rng.uniform(-9 if i % 2 else -2, 0, size=n)
        values[0] = 1.0
        if i % 5 == 0 and n > 1:
            values[-1] *= -1.0  # indefinite
        a = (q * values) @ q.T * 10.0 ** rng.uniform(-100, 100)
        a = 0.5 * (a + a.T)
        if i % 3 == 0:
            a = -a
        share = small_linalg.definite_share_3(a.tolist())
        size = np.abs(small_linalg.eigvalsh(a))
        true_share = size.min() / size.max()
        if share is None:
            definite = (values > 0).all()
            assert not (definite and true_share > 0.1 and n == len(values)), a
            continue
        given += 1
        assert share > 1e-6
        assert share <= true_share * (1.0 + 1e-9)
        assert (values > 0).all()
    assert given > 100
    bad = np.eye(n)
    bad[-1, -1] = np.nan
    assert small_linalg.definite_share_3(bad.tolist()) is None
    assert small_linalg.definite_share_3(np.zeros((n, n)).tolist()) is None


def test_definite_share_3_takes_one_to_three_rows() -> None:
    """Four rows are refused with the count."""
    with pytest.raises(ValueError, match="not 4"):
        small_linalg.definite_share_3(np.eye(4).tolist())


def test_definite_share_3_of_subnormal_entries() -> None:
    """A diagonal of subnormal entries (whose trace has no finite reciprocal) gets no
    share, however far apart its entries."""
    assert small_linalg.definite_share_3([[1e-310, 0.0], [0.0, 1e-320]]) is None
    assert small_linalg.definite_share_3([[-1e-310, 0.0], [0.0, -1e-320]]) is None


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("initial", [1.0, math.inf])
def test_smallest_eigenvalue_decides_as_the_eigenvalues(n: int, initial: float) -> None:
    """Compared with its bound (above, at most, below), ``smallest_eigenvalue`` decides
    as ``eigvalsh(a).min(initial=initial)`` does: definite, indefinite and nearly
    singular matrices of scales 1e±100, bounds about their smallest eigenvalue, above
    ``initial``, and matrices that are not finite."""
    rng = np.random.default_rng(10 + n)
    for i in range(3000):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        values = 10.0 ** rng.uniform(-10, 0, size=n) * 10.0 ** rng.uniform(-100, 100)
        if i % 4 == 0 and n:
            values[-1] = -values[-1]
        a = (q * values) @ q.T
        a = 0.5 * (a + a.T)
        if i % 50 == 7 and n:
            a[0, 0] = np.nan
        near = values.min(initial=1.0) * rng.choice([0.5, 1.0 - 1e-13, 1.0, 1.0 + 1e-13, 2.0])
        bound = float(near if i % 9 else rng.choice([0.5, 1.5, 1e-6, 1e-8]))
        with np.errstate(invalid="ignore"):
            try:
                expected = small_linalg.eigvalsh(a).min(initial=initial)
            except np.linalg.LinAlgError:
                with pytest.raises(np.linalg.LinAlgError):
                    small_linalg.smallest_eigenvalue(a, bound, initial)
                continue
            ours = small_linalg.smallest_eigenvalue(a, bound, initial)
        assert (ours > bound) == (expected > bound)
        assert (ours <= bound) == (expected <= bound)
        assert (ours < bound) == (expected < bound)
        if not ours > bound:
            _same(np.float64(ours), np.float64(expected))


@pytest.mark.parametrize(
    "refused",
    [np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones((2, 3))],
    ids=["not positive definite", "not square"],
)
def test_a_caught_refusal_leaves_no_reference_cycle(refused):
    """The ``LinAlgError`` of a matrix refused, caught by a caller (a fallback), leaves
    no reference cycle: the frame that raised it held it, which kept every caller's
    frame and their locals (a fit's model, its futures on a cluster) until Python's
    cyclic garbage collector ran."""

    def caller(held: Held) -> bool:
        try:
            small_linalg.cholesky(refused)
        except np.linalg.LinAlgError:
            return False
        return True

    with collector_off():
        held = Held()
        gone = weakref.ref(held)
        assert not caller(held)
        del held
        assert gone() is None
