"""patsy's B-spline basis ``bs(x, df=None, knots=None, degree=3, include_intercept=False,
lower_bound=None, upper_bound=None)`` and its natural and cyclic cubic regression splines
``cr``/``cc(x, df=None, knots=None, lower_bound=None, upper_bound=None,
constraints=None)``: their arguments read from a formula's syntax tree as constants
only, their knots learned from values, and their bases evaluated at given knots.

The numbers are patsy's (``patsy/splines.py``, R's ``splines::bs``): with ``df`` given,
``df - degree - 1`` inner knots (one more without ``include_intercept``) at the
quantiles ``linspace(0, 1, n + 2)[1:-1]`` of the values (numpy's linear percentile),
the bounds their minimum and maximum unless given, each bound repeated ``degree + 1``
times; the basis is scipy's ``splev`` of each unit coefficient vector, the first column
dropped without ``include_intercept``.  Values outside the bounds are refused, as patsy
refuses them.

``cr`` and ``cc`` are patsy's ``mgcv_cubic_splines`` (Wood, *Generalized Additive
Models*, 2017, section 5.3.1): with ``df`` given, ``df - 2`` inner knots (one more with
``constraints="center"``, one more for ``cc``) at the percentiles
``linspace(0, 100, n + 2)[1:-1]`` of the distinct values within the bounds; the bounds
the values' minimum and maximum unless given; every knot distinct.  The basis is the
cubic spline interpolating unit values at the knots, its second derivatives ``F @ beta``
(zero at the ends for ``cr``, periodic for ``cc``); values beyond the bounds are
extrapolated linearly (``cr``) or wrapped around (``cc``), as patsy does.
``constraints="center"`` makes the basis orthogonal to the mean ``c`` of its columns
over the rows the fit uses: the basis times the last columns of the complete QR
factor ``Q`` of ``c^T``.  The learning and freezing of the knots (and of ``c``) is
:mod:`dmixed.design.stateful`'s.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CUBIC_PARAMETERS",
    "CUBIC_SPLINES",
    "MAX_SPLINE_COLUMNS",
    "MAX_SPLINE_DEGREE",
    "SPLINE_PARAMETERS",
    "CubicCall",
    "SplineCall",
    "cubic_basis",
    "cubic_call",
    "free_cubic_basis",
    "spline_basis",
    "spline_call",
]

#: ``bs``'s parameters after the values, in patsy's order (positional arguments too)
SPLINE_PARAMETERS = ("df", "knots", "degree", "include_intercept", "lower_bound", "upper_bound")
#: ``cr``'s and ``cc``'s parameters after the values, in patsy's order
CUBIC_PARAMETERS = ("df", "knots", "lower_bound", "upper_bound", "constraints")
#: patsy's cubic regression splines: natural (``cr``) and cyclic (``cc``)
CUBIC_SPLINES = frozenset({"cr", "cc"})
#: the most columns (and inner knots) a formula's ``bs`` may make: a bound on what a
#: formula read from a file may allocate
MAX_SPLINE_COLUMNS = 1000
#: the highest degree a formula's ``bs`` may ask for
MAX_SPLINE_DEGREE = 30


@dataclass(frozen=True)
class SplineCall:
    """The constant arguments of one ``bs`` call (patsy's names and defaults)."""

    df: int | None = None
    knots: tuple[float, ...] | None = None
    degree: int = 3
    include_intercept: bool = False
    lower_bound: float | None = None
    upper_bound: float | None = None

    @property
    def inner_count(self) -> int:
        """How many inner knots the basis has."""
        if self.knots is not None:
            return len(self.knots)
        assert self.df is not None
        return self.df - self.degree - 1 + (0 if self.include_intercept else 1)

    @property
    def knot_count(self) -> int:
        """How many knots in all (each bound ``degree + 1`` times)."""
        return self.inner_count + 2 * (self.degree + 1)

    @property
    def columns(self) -> int:
        """How many columns the basis has (``df`` where given)."""
        return self.inner_count + self.degree + (1 if self.include_intercept else 0)

    @property
    def learns(self) -> bool:
        """Whether some knot is learned from the values (``knots``, ``lower_bound``
        or ``upper_bound`` not given)."""
        return self.knots is None or self.lower_bound is None or self.upper_bound is None

    def all_knots(self, values: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """The knots (sorted, shape ``(knot_count,)``) learned from the finite
        ``values`` (1-d float64), with None; or None and why none can be learned from
        them (no values, a given knot outside the bounds learned)."""
        if self.learns and values.size == 0:
            return None, "it has no values to learn its knots from"
        if self.knots is not None:
            inner = np.asarray(self.knots, dtype=np.float64)
        else:
            probs = np.linspace(0, 1, self.inner_count + 2)[1:-1]
            inner = np.asarray([np.percentile(values, 100 * p) for p in probs], dtype=np.float64)
        lower = float(np.min(values)) if self.lower_bound is None else float(self.lower_bound)
        upper = float(np.max(values)) if self.upper_bound is None else float(self.upper_bound)
        if lower > upper:
            return None, f"its lower bound {lower!r} is above its upper bound {upper!r}"
        if np.any(inner < lower) or np.any(inner > upper):
            return None, (
                f"its knots {[float(k) for k in inner]} are not all within its bounds "
                f"[{lower!r}, {upper!r}] (the values' range where a bound is not given)"
            )
        order = self.degree + 1
        return np.sort(np.concatenate(([lower, upper] * order, inner))), None


def _number(node: ast.expr | None) -> float | None:
    """The finite number ``node`` writes (``2``, ``-1.5``), else None."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if not isinstance(node, ast.Constant):
        return None
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = sign * float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def _whole(node: ast.expr | None) -> int | None:
    """The whole number ``node`` writes (an int constant, not a bool), else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def spline_call(node: ast.Call) -> SplineCall | CubicCall:
    """The constant arguments of the call ``node`` of ``bs``
    (:func:`bs_call`), or of ``cr`` or ``cc`` (:func:`cubic_call`), by the name it calls.

    Raises
    ------
    ValueError
        If they are not constants that make a basis (the message says which).
    """
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    if name in CUBIC_SPLINES:
        return cubic_call(node, cyclic=name == "cc")
    return bs_call(node)


def _given(node: ast.Call, parameters: tuple[str, ...]) -> dict[str, ast.expr]:
    """The arguments of the call ``node`` after its values, by ``parameters``' names
    (by position or keyword).

    Raises
    ------
    ValueError
        If there are no values, too many arguments, an unknown or repeated one.
    """
    if not node.args or isinstance(node.args[0], ast.Starred):
        raise ValueError("it takes the values to transform as its first argument")
    if len(node.args) > 1 + len(parameters):
        raise ValueError(f"it takes at most {1 + len(parameters)} arguments")
    given: dict[str, ast.expr] = dict(zip(parameters, node.args[1:], strict=False))
    for k in node.keywords:
        if k.arg not in parameters:
            raise ValueError(f"it has no argument {k.arg or '**'}")
        if k.arg in given:
            raise ValueError(f"its argument {k.arg} is given twice")
        given[k.arg] = k.value
    return given


def _knots(value: ast.expr) -> tuple[float, ...] | None:
    """The numbers of a tuple or list ``value`` of at most :data:`MAX_SPLINE_COLUMNS`
    numbers written out, else None."""
    items = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
    if items is None or len(items) > MAX_SPLINE_COLUMNS:
        return None
    numbers = [_number(e) for e in items]
    if None in numbers:
        return None
    return tuple(n for n in numbers if n is not None)


def bs_call(node: ast.Call) -> SplineCall:
    """The constant arguments of the call ``node`` of ``bs``: one expression (the
    values), then ``df``, ``knots``, ``degree``, ``include_intercept``,
    ``lower_bound``, ``upper_bound`` by position or keyword, each a constant written
    out: ``None``, a whole number (``df``, ``degree``), a tuple or list of numbers
    (``knots``), ``True``/``False``, a number (the bounds).  Nothing is evaluated.

    Raises
    ------
    ValueError
        If an argument is anything else, or they do not make a basis (patsy's checks
        that need no data: ``df`` and ``knots`` both None, ``df`` too small for the
        degree, ``knots`` not ``df``'s count, a knot outside given bounds, no column,
        more than :data:`MAX_SPLINE_COLUMNS` columns or a degree above
        :data:`MAX_SPLINE_DEGREE`); the message says which.
    """
    given = _given(node, SPLINE_PARAMETERS)
    out: dict = {}
    for name, value in given.items():
        if isinstance(value, ast.Constant) and value.value is None:
            if name in ("degree", "include_intercept"):
                raise ValueError(f"its {name} may not be None")
            continue
        if name in ("df", "degree"):
            got: object = _whole(value)
            ok = got is not None and got >= (1 if name == "df" else 0)
        elif name == "include_intercept":
            got = value.value if isinstance(value, ast.Constant) else None
            ok = isinstance(got, bool)
        elif name == "knots":
            got = _knots(value)
            ok = got is not None
        else:
            got = _number(value)
            ok = got is not None
        if not ok:
            raise ValueError(f"its {name} must be {_KINDS[name]}, got {ast.unparse(value)}")
        out[name] = got
    call = SplineCall(**out)
    if call.degree > MAX_SPLINE_DEGREE:
        raise ValueError(f"its degree must be at most {MAX_SPLINE_DEGREE}, got {call.degree}")
    if call.df is not None and call.df > MAX_SPLINE_COLUMNS:
        raise ValueError(f"its df must be at most {MAX_SPLINE_COLUMNS}, got {call.df}")
    if call.df is None and call.knots is None:
        raise ValueError("it needs df or knots")
    if call.df is not None:
        need = call.df - call.degree - 1 + (0 if call.include_intercept else 1)
        if need < 0:
            raise ValueError(
                f"df={call.df} is too small for degree={call.degree} and "
                f"include_intercept={call.include_intercept}; must be >= {call.df - need}"
            )
        if call.knots is not None and len(call.knots) != need:
            raise ValueError(
                f"df={call.df} with degree={call.degree} implies {need} knots, but "
                f"{len(call.knots)} knots were given"
            )
    if call.columns < 1:
        raise ValueError("it makes no column")
    lo, hi = call.lower_bound, call.upper_bound
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"its lower_bound {lo!r} is above its upper_bound {hi!r}")
    inner = call.knots or ()
    if (lo is not None and any(k < lo for k in inner)) or (
        hi is not None and any(k > hi for k in inner)
    ):
        raise ValueError("its knots are not all within its lower_bound and upper_bound")
    return call


_KINDS = {
    "df": "None or a whole number above 0",
    "degree": "a whole number, 0 or more",
    "include_intercept": "True or False",
    "knots": f"None or a tuple of at most {MAX_SPLINE_COLUMNS} numbers written out",
    "lower_bound": "None or a number written out",
    "upper_bound": "None or a number written out",
    "center": "None or 'center'",
}


def spline_basis(x: np.ndarray, knots: np.ndarray, call: SplineCall) -> np.ndarray:
    """patsy's B-spline basis of the values ``x`` (1-d float64) at the knots ``knots``
    (all of them, sorted): shape ``(len(x), call.columns)``; NaN rows where ``x`` is
    not finite.  Finite values outside ``[knots[0], knots[-1]]`` must be refused
    before."""
    from scipy.interpolate import splev

    n_bases = len(knots) - (call.degree + 1)
    out = np.full((x.shape[0], n_bases), np.nan)
    ok = np.isfinite(x)
    for i in range(n_bases):
        coefs = np.zeros(n_bases)
        coefs[i] = 1
        out[ok, i] = splev(x[ok], (knots, coefs, call.degree))
    return out if call.include_intercept else out[:, 1:]


@dataclass(frozen=True)
class CubicCall:
    """The constant arguments of one ``cr`` (``cyclic`` False) or ``cc`` call
    (patsy's names and defaults; ``knots`` its distinct inner knots, sorted;
    ``center`` whether ``constraints="center"``)."""

    cyclic: bool
    df: int | None = None
    knots: tuple[float, ...] | None = None
    lower_bound: float | None = None
    upper_bound: float | None = None
    center: bool = False

    @property
    def name(self) -> str:
        """The name a formula calls it by."""
        return "cc" if self.cyclic else "cr"

    @property
    def inner_count(self) -> int:
        """How many inner knots the basis has."""
        if self.knots is not None:
            return len(self.knots)
        assert self.df is not None
        return self.df - 2 + int(self.center) + int(self.cyclic)

    @property
    def knot_count(self) -> int:
        """How many knots in all (the inner ones and the two bounds)."""
        return self.inner_count + 2

    @property
    def free_columns(self) -> int:
        """How many columns the basis has before the centring constraint (the length
        of the constraint's row)."""
        return self.knot_count - int(self.cyclic)

    @property
    def columns(self) -> int:
        """How many columns the basis has (``df`` where given)."""
        return self.free_columns - int(self.center)

    @property
    def learns(self) -> bool:
        """Whether something is learned from the values: a knot (``knots``,
        ``lower_bound`` or ``upper_bound`` not given) or the centring constraint."""
        return (
            self.knots is None
            or self.lower_bound is None
            or self.upper_bound is None
            or self.center
        )

    def all_knots(self, values: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """The knots (sorted, distinct, shape ``(knot_count,)``) learned from the
        finite ``values`` (1-d float64), with None; or None and why none can be
        learned from them."""
        if values.size == 0 and self.learns:
            return None, "it has no values to learn its knots from"
        lower = float(np.min(values)) if self.lower_bound is None else float(self.lower_bound)
        upper = float(np.max(values)) if self.upper_bound is None else float(self.upper_bound)
        if not lower < upper:
            return None, (
                f"its lower bound {lower!r} is not below its upper bound {upper!r} (the "
                "values' range where a bound is not given)"
            )
        if self.knots is not None:
            inner = np.asarray(self.knots, dtype=np.float64)
            if np.any(inner <= lower) or np.any(inner >= upper):
                return None, (
                    f"its knots {[float(k) for k in inner]} are not all strictly within its "
                    f"bounds ({lower!r}, {upper!r}) (the values' range where a bound is "
                    "not given)"
                )
        else:
            within = np.unique(values[(values >= lower) & (values <= upper)])
            if within.size == 0:
                return None, f"it has no values within its bounds [{lower!r}, {upper!r}]"
            q = np.linspace(0, 100, self.inner_count + 2)[1:-1]
            inner = np.asarray(np.percentile(within, q), dtype=np.float64).reshape(-1)
            inner = inner[(inner > lower) & (inner < upper)]
        out = np.unique(np.concatenate(([lower, upper], inner)))
        if out.size != self.knot_count:
            return None, (
                f"its {self.inner_count} inner knots and 2 bounds are not "
                f"{self.knot_count} distinct numbers: its values have too few distinct "
                f"values within [{lower!r}, {upper!r}] for df={self.df}"
            )
        return out, None


def cubic_call(node: ast.Call, cyclic: bool) -> CubicCall:
    """The constant arguments of the call ``node`` of ``cr`` (``cyclic`` False) or
    ``cc``: one expression (the values), then ``df``, ``knots``, ``lower_bound``,
    ``upper_bound``, ``constraints`` by position or keyword, each a constant written
    out: ``None``, a whole number (``df``), a tuple or list of numbers (``knots``), a
    number (the bounds), ``"center"`` (``constraints``, patsy's only string form; its
    matrix of constraint rows is not read).  Nothing is evaluated.

    Raises
    ------
    ValueError
        If an argument is anything else, or they do not make a basis (patsy's checks
        that need no data: ``df`` and ``knots`` both None, ``df`` too small, the
        distinct ``knots`` not ``df``'s count, a knot not strictly within given bounds,
        bounds not increasing; and fewer than 3 knots for ``cr``, with which patsy
        fails; more than :data:`MAX_SPLINE_COLUMNS` knots); the message says which.
    """
    given = _given(node, CUBIC_PARAMETERS)
    out: dict = {}
    for name, value in given.items():
        if isinstance(value, ast.Constant) and value.value is None:
            continue
        got: object
        if name == "df":
            got = _whole(value)
            ok = got is not None and got >= 1
        elif name == "knots":
            got = _knots(value)
            ok = got is not None
            if got is not None:
                got = tuple(float(k) for k in np.unique(np.asarray(got, dtype=np.float64)))
        elif name == "constraints":
            got = value.value if isinstance(value, ast.Constant) else None
            ok = got == "center"
            if not ok:
                raise ValueError(
                    f"its constraints must be None or 'center', got {ast.unparse(value)} "
                    "(patsy's matrix of constraint rows is not supported: use "
                    "constraints='center')"
                )
            name, got = "center", True
        else:
            got = _number(value)
            ok = got is not None
        if not ok:
            raise ValueError(f"its {name} must be {_KINDS[name]}, got {ast.unparse(value)}")
        out[name] = got
    call = CubicCall(cyclic=cyclic, **out)
    if call.df is None and call.knots is None:
        raise ValueError("it needs df or knots")
    least = 1 if call.cyclic or call.center else 2
    if call.df is not None:
        if call.df > MAX_SPLINE_COLUMNS:
            raise ValueError(f"its df must be at most {MAX_SPLINE_COLUMNS}, got {call.df}")
        if call.df < least:
            raise ValueError(f"its df={call.df} must be at least {least}")
        if call.knots is not None and len(call.knots) != call.df - 2 + int(call.center) + int(
            call.cyclic
        ):
            raise ValueError(
                f"df={call.df} implies {call.df - 2 + int(call.center) + int(call.cyclic)} "
                f"distinct inner knots, but {len(call.knots)} were given"
            )
    if not call.cyclic and call.knot_count < 3:
        # patsy's natural spline needs an inner knot: it fails without one
        raise ValueError(
            "it needs at least one inner knot (df >= 3, or df >= 2 with "
            "constraints='center', or a knot given)"
        )
    lo, hi = call.lower_bound, call.upper_bound
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"its lower_bound {lo!r} is not below its upper_bound {hi!r}")
    inner = call.knots or ()
    if (lo is not None and any(k <= lo for k in inner)) or (
        hi is not None and any(k >= hi for k in inner)
    ):
        raise ValueError("its knots are not all strictly within its lower_bound and upper_bound")
    return call


def _cubic_f(knots: np.ndarray, cyclic: bool) -> np.ndarray:
    """The matrix ``F`` mapping a cubic spline's values at ``knots`` to its second
    derivatives there (Wood 2017, section 5.3.1): shape ``(m, m)`` for ``m`` knots
    (``cr``: zero first and last rows, the natural spline's ends), ``(m - 1, m - 1)``
    for ``cc`` (the knots around a circle, the last one the first)."""
    h = np.diff(knots)
    if not cyclic:
        m = knots.size
        inner = m - 2
        b = np.zeros((inner, inner))
        d = np.zeros((inner, m))
        rows = np.arange(inner)
        b[rows, rows] = (h[:-1] + h[1:]) / 3.0
        b[rows[1:], rows[:-1]] = h[1:-1] / 6.0
        b[rows[:-1], rows[1:]] = h[1:-1] / 6.0
        d[rows, rows] = 1.0 / h[:-1]
        d[rows, rows + 2] = 1.0 / h[1:]
        d[rows, rows + 1] = -1.0 / h[:-1] - 1.0 / h[1:]
        out = np.zeros((m, m))
        out[1:-1] = np.linalg.solve(b, d)
        return out
    n = h.size
    b = np.zeros((n, n))
    d = np.zeros((n, n))
    # assigned in order, knot by knot, so that with one or two knots around the circle
    # (a neighbour on both sides) the matrices are patsy's
    for i in range(n):
        p = (i - 1) % n
        b[i, i] = (h[p] + h[i]) / 3.0
        b[i, p] = b[p, i] = h[p] / 6.0
        d[i, i] = -1.0 / h[p] - 1.0 / h[i]
        d[i, p] = d[p, i] = 1.0 / h[p]
    return np.linalg.solve(b, d)


def free_cubic_basis(x: np.ndarray, knots: np.ndarray, cyclic: bool) -> np.ndarray:
    """patsy's cubic regression spline basis of the values ``x`` (1-d float64) at the
    knots ``knots`` (sorted, distinct), before any constraint: shape ``(len(x), m)``
    for ``m`` knots (``cr``) or ``m - 1`` (``cc``); NaN rows where ``x`` is not
    finite.  Values beyond the bounds: extrapolated linearly (``cr``), wrapped around
    the circle (``cc``)."""
    x = np.array(x, dtype=np.float64, copy=True)
    lo, hi = float(knots[0]), float(knots[-1])
    n = knots.size - int(cyclic)
    if cyclic:
        period = hi - lo
        above, below = x > hi, x < lo
        x[above] = lo + (x[above] - hi) % period
        x[below] = hi - (lo - x[below]) % period
    j = np.clip(np.searchsorted(knots, x) - 1, 0, knots.size - 2)
    h = knots[j + 1] - knots[j]
    right = knots[j + 1] - x
    left = x - knots[j]
    c_minus = np.where(x > hi, 0.0, right**3 / (6.0 * h)) - h * right / 6.0
    c_plus = np.where(x < lo, 0.0, left**3 / (6.0 * h)) - h * left / 6.0
    j1 = j + 1
    if cyclic:
        j1[j1 == n] = 0
    f = _cubic_f(knots, cyclic)
    rows = np.arange(x.size)
    out = np.zeros((x.size, n))
    np.add.at(out, (rows, j), right / h)
    np.add.at(out, (rows, j1), left / h)
    out += c_minus[:, None] * f[j] + c_plus[:, None] * f[j1]
    out[~np.isfinite(x)] = np.nan
    return out


def cubic_basis(
    x: np.ndarray, knots: np.ndarray, constraint: np.ndarray | None, cyclic: bool
) -> np.ndarray:
    """patsy's ``cr``/``cc`` basis of ``x`` (:func:`free_cubic_basis`), with the
    centring constraint ``constraint`` (the columns' mean over the fit's rows, shape
    ``(columns,)``) absorbed where given: shape ``(len(x), columns - 1)`` then."""
    out = free_cubic_basis(x, knots, cyclic)
    if constraint is None:
        return out
    q, _ = np.linalg.qr(np.asarray(constraint, dtype=np.float64).reshape(-1, 1), mode="complete")
    return out @ q[:, 1:]
