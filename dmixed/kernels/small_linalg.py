"""numpy.linalg's factorizations of one small float64 matrix, without its wrappers.

``np.linalg.cholesky`` and its kin check and convert their arguments in Python before
they call the LAPACK gufunc of ``numpy.linalg._umath_linalg`` that does the work: on the
3 × 3 and 2 × 2 matrices of a Newton step that checking costs two to three times the
factorization.  These functions call the same gufunc with the same signature on the
same array, inside the same error state, so they return the same bits and raise the
same ``np.linalg.LinAlgError`` (tests/kernels/test_small_linalg.py), also where the
argument is not a (stack of) square matrices (the gufunc's ``ValueError`` turned into
``np.linalg``'s own refusal, on that path only); they take float64 arrays only (what
the callers have), and any other argument goes to ``np.linalg`` itself.  Where numpy
no longer has the gufuncs under these names, ``np.linalg``'s own functions stand in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

import numpy as np

__all__ = [
    "cholesky",
    "cholesky_2",
    "definite_share_3",
    "det",
    "eigh",
    "eigvalsh",
    "inv",
    "smallest_eigenvalue",
    "solve",
    "spd_inverse_3",
]

try:  # numpy's own LAPACK gufuncs (numpy >= 1.8; what np.linalg calls)
    from numpy.linalg import _umath_linalg as _gufuncs

    _CHOLESKY = _gufuncs.cholesky_lo
    _DET = _gufuncs.det
    _EIGH = _gufuncs.eigh_lo
    _EIGVALSH = _gufuncs.eigvalsh_lo
    _INV = _gufuncs.inv
    _SOLVE = _gufuncs.solve
    _SOLVE1 = _gufuncs.solve1
    # the function of np.linalg that calls each: its checks refuse what the gufunc does
    _NUMPY: dict[object, Callable[..., object]] = {
        _CHOLESKY: np.linalg.cholesky,
        _DET: np.linalg.det,
        _EIGH: np.linalg.eigh,
        _EIGVALSH: np.linalg.eigvalsh,
        _INV: np.linalg.inv,
        _SOLVE: np.linalg.solve,
        _SOLVE1: np.linalg.solve,
    }
except (ImportError, AttributeError):  # pragma: no cover - another numpy
    _gufuncs = None  # type: ignore[assignment]


try:  # numpy >= 2: the floating-point error state of np.errstate, a context variable
    from numpy._core._multiarray_umath import _extobj_contextvar as _ERROR_STATE
    from numpy._core._multiarray_umath import _make_extobj as _make_error_state
except (ImportError, AttributeError):  # pragma: no cover - another numpy
    _ERROR_STATE = None


def _refused(gufunc, args: tuple, error: ValueError) -> NoReturn:
    """Raise what ``np.linalg`` raises for ``args`` that ``gufunc`` refused with
    ``error`` (not a LAPACK failure: a shape that is not a (stack of) square matrices,
    which np.linalg's checks refuse first with a ``LinAlgError`` of its own); ``error``
    itself where np.linalg takes them.

    The frame lets go of ``error`` as it leaves: a frame that holds the exception it
    raises is in a cycle with it (the traceback holds the frame), and that cycle keeps
    every caller's frame and their locals (a fit's model and statistics, futures on a
    cluster) until Python's cyclic garbage collector runs, where a caller catches it
    (a Cholesky that fails on the way to a fallback)."""
    try:
        if isinstance(error, np.linalg.LinAlgError):
            raise error
        _NUMPY[gufunc](*args)
        raise error
    finally:
        del error


def _guarded(message: str):
    """``run(gufunc, signature, *args)``: ``gufunc(*args)`` in np.linalg's error state,
    ``np.linalg.LinAlgError(message)`` raised where LAPACK fails (the gufunc's
    invalid-value flag), no warning of overflow or division.

    Where numpy keeps its error state in a context variable (numpy >= 2), that state is
    made once here and set and reset around each call: what ``np.errstate`` does, less
    the building of the state object, which costs more than a 3 × 3 factorization.
    The state takes numpy's buffer size as it is at import (the gufuncs here do not
    buffer); elsewhere ``np.errstate`` as a decorator."""

    def raise_error(err, flag):
        raise np.linalg.LinAlgError(message)

    if _ERROR_STATE is None:  # pragma: no cover - numpy < 2

        @np.errstate(
            call=raise_error, invalid="call", over="ignore", divide="ignore", under="ignore"
        )
        def run_in_errstate(gufunc, signature: str, *args: np.ndarray):
            try:
                return gufunc(*args, signature=signature)
            except ValueError as error:
                _refused(gufunc, args, error)

        return run_in_errstate

    state = _make_error_state(
        call=raise_error, invalid="call", over="ignore", divide="ignore", under="ignore"
    )

    def run(gufunc, signature: str, *args: np.ndarray):
        token = _ERROR_STATE.set(state)
        try:
            return gufunc(*args, signature=signature)
        except ValueError as error:
            _refused(gufunc, args, error)
        finally:
            _ERROR_STATE.reset(token)

    return run


_NOT_POSITIVE_DEFINITE = _guarded("Matrix is not positive definite")
_SINGULAR = _guarded("Singular matrix")
_NOT_CONVERGED = _guarded("Eigenvalues did not converge")


def _plain(a: np.ndarray) -> bool:
    """Whether ``a`` is what these functions take: a float64 ndarray."""
    return _gufuncs is not None and type(a) is np.ndarray and a.dtype == np.float64


def cholesky(a: np.ndarray) -> np.ndarray:
    """``np.linalg.cholesky(a)`` (the lower factor)."""
    if not _plain(a):
        return np.linalg.cholesky(a)
    return _NOT_POSITIVE_DEFINITE(_CHOLESKY, "d->d", a)


def cholesky_2(a00: float, a10: float, a11: float) -> tuple[float, float, float]:
    """The lower Cholesky factor ``(l00, l10, l11)`` of the symmetric 2 × 2 matrix
    ``[[a00, a10], [a10, a11]]``, the numbers of :func:`cholesky` of it, bit for bit.

    LAPACK's unblocked factorization (``dpotf2``, as OpenBLAS runs it for a matrix this
    small) in floats: ``l00 = √a00``, the column below scaled by the reciprocal of the
    pivot, ``l10 = a10 · (1/l00)`` (not ``a10 / l00``: the two differ in the last bit
    for about a quarter of matrices), ``l11 = √(a11 − l10²)``
    (tests/kernels/test_small_linalg.py compares them on random matrices of scales
    1e±150 and subnormal ones).  Where a pivot is not positive or a number not finite,
    :func:`cholesky` itself: its numbers, or its ``np.linalg.LinAlgError`` where the
    matrix is not positive definite.  Three float operations and two square roots where
    the call costs some microseconds (a Newton step of a 2 × 2 Ψ* factors one)."""
    if a00 > 0.0:
        l00 = math.sqrt(a00)
        l10 = a10 * (1.0 / l00)
        pivot = a11 - l10 * l10
        if pivot > 0.0 and math.isfinite(l00 + l10 + pivot):
            return l00, l10, math.sqrt(pivot)
    (l00, _), (l10, l11) = cholesky(np.array([[a00, a10], [a10, a11]])).tolist()
    return l00, l10, l11


def definite_share_3(t: list[list[float]]) -> float | None:
    """A lower bound of ``min |λ| / max |λ|`` over the eigenvalues ``λ`` of the symmetric
    ``t`` (nested lists, 1 × 1 to 3 × 3, its lower triangle read) where ``t`` or ``−t``
    is positive definite by Sylvester's criterion (its leading minors positive), in
    floats; None where neither is shown so (indefinite, singular, not finite, or minors
    lost to rounding): then ask :func:`eigvalsh`.

    For a positive definite ``M`` of order ``n``: ``λmax ≤ tr M`` and ``λmin ≥ det M /
    λmax^(n−1)``, so ``λmin / λmax ≥ det M / (tr M)^n``.  The bound is returned only
    where it is above ``1e-6`` (else None): the determinant's rounding, some ``10 ε (tr
    M)^n`` at most (every entry of a positive definite matrix is at most its trace),
    then moves it by under 1e-14, and an eigenvalue solver's by as little, so that a
    test of the share against a threshold well below ``1e-6`` (as
    :func:`~dmixed.fit.lean.singular`'s 1e-8) decides as the eigenvalues would."""
    n = len(t)
    if not 1 <= n <= 3:
        raise ValueError(f"definite_share_3 takes 1 to 3 rows, not {n}")
    trace = sum(t[i][i] for i in range(n))
    for sign in (1.0, -1.0):  # M = t, then M = −t
        size = sign * trace  # tr M
        if not (size > 0.0 and math.isfinite(size) and sign * t[0][0] > 0.0):
            continue
        if n == 1:
            return 1.0
        # M's entries over its trace (at most 1 in size where M is positive definite):
        # the minors neither overflow nor underflow unless the share is far below 1e-6
        scale = sign / size
        m00, m10, m11 = t[0][0] * scale, t[1][0] * scale, t[1][1] * scale
        det_m = m00 * m11 - m10 * m10
        if n == 3 and det_m > 0.0:
            m20, m21, m22 = t[2][0] * scale, t[2][1] * scale, t[2][2] * scale
            det_m = m00 * (m11 * m22 - m21 * m21) - m10 * (m10 * m22 - m21 * m20)
            det_m += m20 * (m10 * m21 - m11 * m20)
        return det_m if 1e-6 < det_m <= 1.0 else None  # not where 1/tr M overflowed
    return None


def smallest_eigenvalue(a: np.ndarray, bound: float, initial: float = 1.0) -> float:
    """``eigvalsh(a).min(initial=initial)`` of a symmetric float64 ``a`` (n × n) where
    that is at most ``bound``; where it is shown above ``bound`` without the
    eigenvalues, a lower bound of it above ``bound`` (so that comparisons with ``bound``
    decide as the eigenvalues do).

    For ``1 ≤ n ≤ 3``, ``a`` positive definite by its leading minors: ``λmin ≥ det a /
    (tr a)^(n−1)`` (``λmax ≤ tr a``), from :func:`definite_share_3`'s normalized
    determinant, less ``10⁻¹⁴ tr a`` for the rounding of both it and an eigenvalue
    solver's; :func:`eigvalsh` where that is not above ``bound`` (its
    ``np.linalg.LinAlgError`` where it fails).  The Newton steps ask whether a 2 × 2 Ψ*
    is well inside the parameter space three or four times a fit."""
    n = a.shape[0]
    if 1 <= n <= 3 and a.shape == (n, n) and initial > bound:
        t = a.tolist()
        share = definite_share_3(t)
        trace = sum(t[i][i] for i in range(n))
        if share is not None and trace > 0.0:
            lower = min((share - 1e-14) * trace, initial)
            if lower > bound:
                return lower
    return float(eigvalsh(a).min(initial=initial))


def inv(a: np.ndarray) -> np.ndarray:
    """``np.linalg.inv(a)``."""
    if not _plain(a):
        return np.linalg.inv(a)
    return _SINGULAR(_INV, "d->d", a)


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(a, b)``."""
    if not (_plain(a) and _plain(b)):
        return np.linalg.solve(a, b)
    return _SINGULAR(_SOLVE1 if b.ndim == 1 else _SOLVE, "dd->d", a, b)


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh(a)`` (the lower triangle) as a tuple ``(eigenvalues, vectors)``."""
    if not _plain(a):
        values, vectors = np.linalg.eigh(a)
        return values, vectors
    return _NOT_CONVERGED(_EIGH, "d->dd", a)


def eigvalsh(a: np.ndarray) -> np.ndarray:
    """``np.linalg.eigvalsh(a)`` (the lower triangle)."""
    if not _plain(a):
        return np.linalg.eigvalsh(a)
    return _NOT_CONVERGED(_EIGVALSH, "d->d", a)


def det(a: np.ndarray) -> float:
    """``float(np.linalg.det(a))`` of one square matrix."""
    if not _plain(a):
        return float(np.linalg.det(a))
    try:
        value = _DET(a, signature="d->d")
    except ValueError as error:
        _refused(_DET, (a,), error)
    return float(value)


def spd_inverse_3(t: list[list[float]], p: int) -> tuple[float, list[list[float]]] | None:
    """``(log|A|, A⁻¹)`` of the symmetric leading ``p × p`` block ``A`` of the nested
    lists ``t`` (``1 ≤ p ≤ 3``; its lower triangle read), in floats: the Cholesky
    factor ``A = LL'`` column by column (LAPACK's ``dpotf2``, a block of ``p < 3``
    completed by the identity, which adds exact zeros and ones), then
    ``A⁻¹ = L⁻ᵀL⁻¹``; None where a pivot is not positive (or is NaN): where
    ``np.linalg.cholesky`` fails, up to the rounding of a pivot within a few units of
    rounding of zero (its dot products may add in another order).  On a 3 × 3 block
    the arithmetic costs less than the calls of numpy that would run it."""
    row0 = t[0]
    a00 = row0[0]
    if p == 3:
        row1, row2 = t[1], t[2]
        a10, a11 = row1[0], row1[1]
        a20, a21, a22 = row2[0], row2[1], row2[2]
    elif p == 2:
        row1 = t[1]
        a10, a11 = row1[0], row1[1]
        a20, a21, a22 = 0.0, 0.0, 1.0
    elif p == 1:
        a10, a11, a20, a21, a22 = 0.0, 1.0, 0.0, 0.0, 1.0
    else:
        raise ValueError(f"spd_inverse_3 takes blocks of 1 to 3 rows, not {p}")
    if not a00 > 0.0:
        return None
    l00 = math.sqrt(a00)
    l10 = a10 / l00
    l20 = a20 / l00
    pivot = a11 - l10 * l10
    if not pivot > 0.0:
        return None
    l11 = math.sqrt(pivot)
    l21 = (a21 - l20 * l10) / l11
    pivot = a22 - (l20 * l20 + l21 * l21)
    if not pivot > 0.0:
        return None
    l22 = math.sqrt(pivot)
    logdet = 2.0 * (math.log(l00) + math.log(l11) + math.log(l22))
    # L⁻¹ (lower triangular), then A⁻¹ = L⁻ᵀL⁻¹
    i00, i11, i22 = 1.0 / l00, 1.0 / l11, 1.0 / l22
    i10 = -(l10 * i00) * i11
    i21 = -(l21 * i11) * i22
    i20 = -(l20 * i00 + l21 * i10) * i22
    v00 = i00 * i00 + i10 * i10 + i20 * i20
    v10 = i10 * i11 + i20 * i21
    v20 = i20 * i22
    v11 = i11 * i11 + i21 * i21
    v21 = i21 * i22
    if p == 3:
        return logdet, [[v00, v10, v20], [v10, v11, v21], [v20, v21, i22 * i22]]
    if p == 2:
        return logdet, [[v00, v10], [v10, v11]]
    return logdet, [[v00]]
