"""patsy's B-spline basis ``bs(x, df=None, knots=None, degree=3, include_intercept=False,
lower_bound=None, upper_bound=None)``: its arguments read from a formula's syntax tree
as constants only, its knots learned from values, and its basis evaluated at given knots.

The numbers are patsy's (``patsy/splines.py``, R's ``splines::bs``): with ``df`` given,
``df - degree - 1`` inner knots (one more without ``include_intercept``) at the
quantiles ``linspace(0, 1, n + 2)[1:-1]`` of the values (numpy's linear percentile),
the bounds their minimum and maximum unless given, each bound repeated ``degree + 1``
times; the basis is scipy's ``splev`` of each unit coefficient vector, the first column
dropped without ``include_intercept``.  Values outside the bounds are refused, as patsy
refuses them.  The learning and freezing of the knots is
:mod:`dmixed.design.stateful`'s.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_SPLINE_COLUMNS",
    "MAX_SPLINE_DEGREE",
    "SPLINE_PARAMETERS",
    "SplineCall",
    "spline_basis",
    "spline_call",
]

#: ``bs``'s parameters after the values, in patsy's order (positional arguments too)
SPLINE_PARAMETERS = ("df", "knots", "degree", "include_intercept", "lower_bound", "upper_bound")
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


def spline_call(node: ast.Call) -> SplineCall:
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
    if not node.args or isinstance(node.args[0], ast.Starred):
        raise ValueError("it takes the values to transform as its first argument")
    if len(node.args) > 1 + len(SPLINE_PARAMETERS):
        raise ValueError(f"it takes at most {1 + len(SPLINE_PARAMETERS)} arguments")
    given: dict[str, ast.expr] = dict(zip(SPLINE_PARAMETERS, node.args[1:], strict=False))
    for k in node.keywords:
        if k.arg not in SPLINE_PARAMETERS:
            raise ValueError(f"it has no argument {k.arg or '**'}")
        if k.arg in given:
            raise ValueError(f"its argument {k.arg} is given twice")
        given[k.arg] = k.value
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
            items = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
            numbers = [_number(e) for e in items] if items is not None else None
            got = tuple(n for n in numbers if n is not None) if numbers is not None else None
            ok = numbers is not None and None not in numbers
            ok = ok and len(numbers or ()) <= MAX_SPLINE_COLUMNS
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
