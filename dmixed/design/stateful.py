"""patsy's stateful transforms ``center``, ``standardize`` and ``scale``, their state
learned once over the rows a fit uses and frozen into the spec.

patsy (statsmodels' formula engine) centres and rescales a column by the mean and
standard deviation of the whole data the model is built from, and remembers them for
new data.  Evaluated on each partition they would learn another mean on every
partition; so dmixed learns them once, over the rows the fit uses (after missing
values are dropped), keeps them as plain numbers in the spec
(:attr:`~dmixed.design.spec.ModelSpec.stateful`) and evaluates every partition, new
rows to predict and saved results with those numbers.

Learned only from a pandas frame (the whole data in memory): a Dask collection would
need a second pass over the data, so there they are refused
(:func:`refuse_on_partitions`).

Definitions (patsy ``state.py``): ``center(x) = x - mean(x)``;
``standardize(x, center=True, rescale=True, ddof=0)`` subtracts the mean (``center``)
and divides by ``sqrt(sum((x - mean(x))**2) / (n - ddof))`` (``rescale``; the deviations
always from the mean, also without ``center``); ``scale`` is ``standardize``.  These
replace formulaic's ``center`` and ``scale`` (whose ``ddof`` is 1, and whose scale
without centring is the root mean square): a name means what it means in patsy.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from ..errors import BadValuesError, CheckpointError, DataError, FormulaError, shorten
from .messages import plural
from .splines import (
    CUBIC_SPLINES,
    CubicCall,
    SplineCall,
    cubic_basis,
    free_cubic_basis,
    spline_basis,
    spline_call,
)

__all__ = [
    "FROZEN_KEYWORDS",
    "SPLINES",
    "blank_state",
    "checked_saved_state",
    "frozen_keys",
    "frozen_transforms",
    "learned_state",
    "learns",
    "refuse_on_partitions",
    "stand_in",
    "standing_in",
    "validated_state",
    "with_state",
]

#: the keywords each frozen transform takes, with the kind of constant each must be
FROZEN_KEYWORDS: dict[str, dict[str, tuple[type, ...]]] = {
    "center": {},
    "standardize": {"center": (bool,), "rescale": (bool,), "ddof": (int,)},
    "scale": {"center": (bool,), "rescale": (bool,), "ddof": (int,)},
}

#: the spline transforms whose knots are learned (:mod:`dmixed.design.splines`) unless
#: every knot is given as a number (and, for ``cr``/``cc``, no ``constraints="center"``,
#: whose constraint is learned); their arguments are checked by
#: :func:`~dmixed.design.splines.spline_call`
SPLINES = frozenset({"bs"}) | CUBIC_SPLINES

#: the key under which :func:`_learn` counts the values it was given that are not
#: finite (removed by :func:`learned_state`, which refuses them)
_NONFINITE = "nonfinite"

#: whether the transforms are evaluated on a stand-in frame (:func:`stand_in`)
_STAND_IN: ContextVar[bool] = ContextVar("dmixed_stand_in", default=False)

#: the keys of each transform's state: ``{"mean"}``, and ``"scale"`` where it rescales
_STATE_KEYS = ("mean", "scale")


@contextmanager
def stand_in() -> Iterator[None]:
    """Transforms evaluated inside are given a stand-in frame's values (a prototype,
    :func:`~dmixed.design.levels.prototype`), not rows of the data: formulaic's specs
    are learned from them, and any state learned is replaced before anything is
    fitted.  bs() then does not refuse values outside bounds given in the formula
    (the stand-in's values are not the data's); on the data's rows it does."""
    token = _STAND_IN.set(True)
    try:
        yield
    finally:
        _STAND_IN.reset(token)


def standing_in() -> bool:
    """Whether this thread evaluates a stand-in frame's values now (:func:`stand_in`)."""
    return _STAND_IN.get()


def _learn(values: np.ndarray, ddof: int, rescale: bool, state: dict) -> None:
    """Fill ``state`` with the mean (and the standard deviation, ``rescale``) of
    ``values``: the rows the fit uses, or a prototype frame's (replaced by the frozen
    state before anything is fitted)."""
    finite = np.isfinite(values)
    if not finite.all():
        # counted for learned_state's refusal (never saved): a mean or standard
        # deviation of such values would be frozen as NaN
        state[_NONFINITE] = int(values.size - np.count_nonzero(finite))
    n = values.shape[0]
    mean = float(values.mean()) if n else 0.0
    state["mean"] = mean
    if rescale:
        m2 = float(np.sum((values - mean) ** 2))
        state["scale"] = math.sqrt(m2 / (n - ddof)) if n > ddof else float("nan")


def _apply(x: Any, center: bool, rescale: bool, ddof: int, state: dict) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64)
    if not state:
        _learn(values, ddof, rescale, state)
    out = values - state["mean"] if center else values.copy()
    if rescale:
        out = out / state["scale"]
    return out


def center(x: Any, _state: dict | None = None) -> np.ndarray:
    """patsy's ``center(x)``: ``x`` minus the mean of the rows the fit uses (shape of
    ``x``, float64)."""
    return _apply(x, True, False, 0, {} if _state is None else _state)


def standardize(
    x: Any, center: bool = True, rescale: bool = True, ddof: int = 0, _state: dict | None = None
) -> np.ndarray:
    """patsy's ``standardize(x, center=True, rescale=True, ddof=0)``: ``(x - mean) /
    sd`` with ``sd = sqrt(sum((x - mean)**2) / (n - ddof))`` over the rows the fit uses
    (shape of ``x``, float64)."""
    return _apply(x, center, rescale, ddof, {} if _state is None else _state)


#: the key under which :func:`bs` records why no knots could be learned from the values
#: it was given (removed by :func:`learned_state`, which refuses them)
_PROBLEM = "problem"


def _knots_of(call: Any, values: np.ndarray, finite: np.ndarray, state: dict) -> tuple:
    """``(knots, learned)`` of a spline ``call`` (:class:`~dmixed.design.splines.SplineCall`
    or :class:`~dmixed.design.splines.CubicCall`) over ``values``: all given (nothing
    learned), frozen in ``state``, or learned now from the finite ``values`` and frozen
    there (``learned`` True); ``knots`` None where none can be learned (why, frozen as
    ``state[_PROBLEM]``, and how many values were not finite)."""
    if not call.learns:
        return call.all_knots(values[finite])[0], False
    if "knots" in state:
        return np.asarray(state["knots"], dtype=np.float64), False
    if _PROBLEM in state:
        return None, False
    if not finite.all():
        state[_NONFINITE] = int(values.size - np.count_nonzero(finite))
    knots, problem = call.all_knots(values[finite])
    if knots is None:
        state[_PROBLEM] = problem
        return None, False
    state["knots"] = [float(k) for k in knots]
    return knots, True


def bs(
    x: Any,
    df: int | None = None,
    knots: Any = None,
    degree: int = 3,
    include_intercept: bool = False,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    _state: dict | None = None,
) -> Any:
    """patsy's ``bs(x, df=None, knots=None, degree=3, include_intercept=False,
    lower_bound=None, upper_bound=None)``: the B-spline basis of ``x``
    (:mod:`dmixed.design.splines`), shape ``(len(x), columns)`` as formulaic's
    columns ``bs(...)[0]``, ``bs(...)[1]``, ... (one column: ``bs(...)``, as patsy
    names it); its knots learned from ``x`` (the
    rows the fit uses) where not all given, or ``_state["knots"]`` (frozen).

    Raises
    ------
    BadValuesError
        If a value lies outside the knots' bounds (patsy refuses them too).
    """
    call = SplineCall(
        df=df,
        knots=None if knots is None else tuple(float(k) for k in knots),
        degree=degree,
        include_intercept=include_intercept,
        lower_bound=lower_bound,
        upper_bound=upper_bound,
    )
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    state = {} if _state is None else _state
    finite = np.isfinite(values)
    all_knots, _ = _knots_of(call, values, finite, state)
    if all_knots is None:
        # knots not learned from these values (refused by learned_state where they
        # are the fit's rows): columns of the basis's shape, never fitted
        basis = np.zeros((values.size, call.columns))
    else:
        lo, hi = float(all_knots[0]), float(all_knots[-1])
        # (values not finite are left NaN rows, refused as the design's: named by call)
        outside = finite & ((values < lo) | (values > hi))
        if outside.any() and _STAND_IN.get():
            # a stand-in's values, which bounds given in the formula need not cover:
            # its columns are those of a value within them (the spec is what is learned)
            values = np.clip(values, lo, hi)
        elif outside.any():
            raise BadValuesError(
                f"bs() is given {plural(int(np.count_nonzero(outside)))} outside the "
                f"bounds of its knots [{lo!r}, {hi!r}] (first: {float(values[outside][0])!r}), "
                "which patsy refuses too: give lower_bound and upper_bound that cover "
                "every value to predict"
            )
        basis = spline_basis(values, all_knots, call)
    return _columns(basis)


def _columns(basis: np.ndarray) -> Any:
    """A spline's basis (shape ``(n, columns)``) as formulaic's factor values, named
    ``name[0]``, ``name[1]``, ... as patsy names them; one column is named ``name``,
    as patsy names a single column."""
    from formulaic.materializers.types import FactorValues

    if basis.shape[1] == 1:
        return FactorValues(basis[:, 0], kind="numerical", spans_intercept=False, encoded=False)

    return FactorValues(
        {i: basis[:, i] for i in range(basis.shape[1])},
        kind="numerical",
        spans_intercept=False,
        format="{name}[{field}]",
        encoded=False,
    )


def _cubic(
    cyclic: bool,
    x: Any,
    df: int | None,
    knots: Any,
    lower_bound: float | None,
    upper_bound: float | None,
    constraints: Any,
    state: dict,
) -> Any:
    """:func:`cr` (``cyclic`` False) or :func:`cc`."""
    call = CubicCall(
        cyclic=cyclic,
        df=df,
        knots=None if knots is None else tuple(float(k) for k in np.unique(np.asarray(knots))),
        lower_bound=lower_bound,
        upper_bound=upper_bound,
        center=constraints is not None,
    )
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    constraint: np.ndarray | None = None
    all_knots, learned = _knots_of(call, values, finite, state)
    if call.center and all_knots is not None:
        if learned:
            # patsy's centring constraint: the free basis's column means over the
            # rows the fit uses
            constraint = free_cubic_basis(values[finite], all_knots, cyclic).mean(axis=0)
            state["constraint"] = [float(c) for c in constraint]
        else:  # frozen with the knots (a centred call always learns)
            constraint = np.asarray(state["constraint"], dtype=np.float64)
    if all_knots is None:
        # knots not learned from these values (refused by learned_state where they
        # are the fit's rows): columns of the basis's shape, never fitted
        return _columns(np.zeros((values.size, call.columns)))
    # values beyond the bounds are extrapolated (cr) or wrapped (cc), as patsy does;
    # values not finite are left NaN rows, refused as the design's
    return _columns(cubic_basis(values, all_knots, constraint, cyclic))


def cr(
    x: Any,
    df: int | None = None,
    knots: Any = None,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    constraints: str | None = None,
    _state: dict | None = None,
) -> Any:
    """patsy's ``cr(x, df=None, knots=None, lower_bound=None, upper_bound=None,
    constraints=None)``: the natural cubic regression spline basis of ``x``
    (:mod:`dmixed.design.splines`), shape ``(len(x), columns)`` as formulaic's
    columns ``cr(...)[0]``, ``cr(...)[1]``, ... (one column: ``cr(...)``, as patsy
    names it); its knots (and with ``constraints="center"`` its columns' means)
    learned from ``x`` (the rows the fit uses) where not all given, or
    ``_state["knots"]`` and ``_state["constraint"]`` (frozen).  Values beyond the
    bounds are extrapolated linearly, as patsy does.

    Raises
    ------
    FormulaError
        Not from here: an argument that makes no basis (``df=1``, ``constraints``
        other than ``"center"``, a knot count that disagrees with ``df``) is refused
        where the formula is read (:func:`~dmixed.design.splines.spline_call`),
        naming the argument.
    DataError
        Not from here either: knots the rows cannot give (every value equal, a given
        knot not strictly within the bounds) are kept in ``_state`` and refused by
        :func:`learned_state`, naming the call; so are values not finite
        (:class:`~dmixed.errors.BadValuesError`).
    """
    return _cubic(
        False, x, df, knots, lower_bound, upper_bound, constraints, {} if _state is None else _state
    )


def cc(
    x: Any,
    df: int | None = None,
    knots: Any = None,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    constraints: str | None = None,
    _state: dict | None = None,
) -> Any:
    """patsy's ``cc(x, df=None, knots=None, lower_bound=None, upper_bound=None,
    constraints=None)``: the cyclic cubic regression spline basis of ``x``, as
    :func:`cr`; values beyond the bounds are wrapped around (the upper bound is the
    lower one), as patsy does.

    Raises
    ------
    FormulaError
        Not from here: as :func:`cr`'s (``df=0``, ``constraints`` other than
        ``"center"``, ...), where the formula is read, naming the argument.
    DataError
        Not from here either: as :func:`cr`'s, by :func:`learned_state`.
    """
    return _cubic(
        True, x, df, knots, lower_bound, upper_bound, constraints, {} if _state is None else _state
    )


_TRANSFORMS: dict[str, Any] = {}


def frozen_transforms() -> dict[str, Any]:
    """The transforms as formulaic calls them (its stateful transforms, handed their
    state), by the names a formula calls them (``scale`` is ``standardize``); made on
    first use: a fit of plain columns never imports formulaic."""
    if not _TRANSFORMS:
        from formulaic.utils.stateful_transforms import stateful_transform

        made = stateful_transform(standardize)
        _TRANSFORMS.update(
            center=stateful_transform(center),
            standardize=made,
            scale=made,
            bs=stateful_transform(bs),
            cr=stateful_transform(cr),
            cc=stateful_transform(cc),
        )
    return _TRANSFORMS


def _frozen_call(key: str) -> bool:
    """Whether formulaic's state key ``key`` (a call's text, from a checked formula)
    is a call of a frozen transform."""
    try:
        node = ast.parse(key, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):
        return False
    return isinstance(node, ast.Call) and learns(node)


def learns(node: ast.Call) -> bool:
    """Whether the call ``node`` is one of a frozen transform that learns its state
    from the data: ``center``, ``standardize``, ``scale``, and ``bs``, ``cr`` and
    ``cc`` unless their ``knots``, ``lower_bound`` and ``upper_bound`` are all given
    and ``cr``/``cc`` has no ``constraints="center"`` (as constants:
    :func:`~dmixed.design.splines.spline_call`; a call whose arguments are not
    constants is not one, and is refused by the formula's check)."""
    if not isinstance(node.func, ast.Name):
        return False
    if node.func.id in FROZEN_KEYWORDS:
        return True
    if node.func.id in SPLINES:
        try:
            return spline_call(node).learns
        except ValueError:
            return False
    return False


def _parts(fspec) -> list:
    """The formulaic specs of ``fspec`` (one, or a structure's ``lhs`` and ``rhs``)."""
    if hasattr(fspec, "transform_state"):
        return [fspec]
    return [getattr(fspec, k) for k in ("lhs", "rhs") if hasattr(fspec, k)]


def frozen_keys(fspec) -> list[str]:
    """The state keys of the frozen transforms a formulaic spec evaluates."""
    if fspec is None:
        return []
    return sorted({k for part in _parts(fspec) for k in part.transform_state if _frozen_call(k)})


def with_state(fspec, state: Mapping[str, Mapping[str, Any]], formula: str | None):
    """``fspec`` (formulaic's spec of ``formula``) evaluating its frozen transforms with
    ``state`` (:attr:`ModelSpec.stateful`: ``{"mean": m}``, ``{"mean": m, "scale": s}``
    or the splines' ``{"knots": [k, ...]}``, with ``"constraint": [c, ...]`` for a
    centred ``cr``/``cc``, by the call's text), whatever the data it is given.

    Raises
    ------
    FormulaError
        If a frozen transform of ``fspec`` has no state in ``state``.
    """
    from formulaic.model_spec import ModelSpec as FormulaicSpec

    keys = frozen_keys(fspec)
    if not keys:
        return fspec
    missing = [k for k in keys if k not in state]
    if missing:
        raise FormulaError(
            f"formula {formula!r}: no learned state for {', '.join(missing)}: the mean and "
            "standard deviation of center(), standardize() and scale(), and the knots of "
            "bs(), cr() and cc(), are learned once from a pandas frame; fit the model on one"
        )
    merged: dict[str, Any] = {}
    for part in _parts(fspec):
        merged.update(part.transform_state)
    merged.update({k: dict(state[k]) for k in keys})
    return FormulaicSpec.from_spec(fspec, transform_state=merged)


def learned_state(fspecs: list[tuple[Any, str, str]]) -> dict[str, dict[str, Any]]:
    """The frozen state of the model matrices ``fspecs``: ``(spec, role, formula)``,
    formulaic's spec of the formula ``formula`` (``role``: ``"formula"`` or
    ``"re_formula"``), evaluated on the rows the fit uses.

    Raises
    ------
    BadValuesError
        If a transform's input values are not all finite over those rows (named as the
        design's non-finite values are: the call, and how many rows).
    DataError
        If a column standardized has no spread over those rows.
    FormulaError
        If a transform learned no state (values of several columns, which the
        formula's check refuses first).
    """
    out: dict[str, dict[str, Any]] = {}
    for fspec, role, formula in fspecs:
        for part in _parts(fspec):
            for key, value in part.transform_state.items():
                if not _frozen_call(key) or key in out:
                    continue
                bad = int(value.get(_NONFINITE, 0))
                if bad:
                    raise BadValuesError(
                        f"non-finite values in {_design_of(fspec, key, role)} column(s) "
                        f"{key!r} ({plural(bad)}): the values {key} transforms, in {role} "
                        f"{formula!r}"
                    )
                if _PROBLEM in value:
                    raise DataError(
                        f"{role} {formula!r}: {key} learns its knots from the values over "
                        f"the rows the fit uses, but {value[_PROBLEM]}"
                    )
                call = ast.parse(key, mode="eval").body
                spline = isinstance(call, ast.Call) and getattr(call.func, "id", "") in SPLINES
                need = _spline_keys(call) if spline else ("mean", "scale")[: 1 + _needs_scale(key)]
                if any(k not in value for k in need):
                    # formulaic keeps a per-column state when a transform is handed
                    # several columns; a state saved without its numbers would be
                    # learned again from whatever rows are predicted (the formula's
                    # check refuses such values first)
                    raise FormulaError(
                        f"{role} {formula!r}: {key} learned no {' and '.join(need)} from "
                        "its values over the rows the fit uses (they are not one column); "
                        "transform one column"
                    )
                if spline:
                    out[key] = {k: [float(v) for v in value[k]] for k in need}
                    continue
                state = {k: float(value[k]) for k in _STATE_KEYS if k in value}
                sd = state.get("scale")
                if sd is not None and not (math.isfinite(sd) and sd > 0):
                    raise DataError(
                        f"{role} {formula!r}: {key} divides by the standard deviation of "
                        f"its values over the rows the fit uses, which is {sd!r}: the values "
                        "do not vary (or too few rows for ddof); leave the column unscaled"
                    )
                out[key] = state
    return out


def _spline_keys(node: ast.expr) -> tuple[str, ...]:
    """The keys of the state of the spline call ``node`` (checked: it learns):
    ``("knots",)``, and ``"constraint"`` for ``cr``/``cc`` with ``constraints="center"``."""
    assert isinstance(node, ast.Call)
    call = spline_call(node)
    return ("knots", "constraint") if isinstance(call, CubicCall) and call.center else ("knots",)


def _design_of(fspec, key: str, role: str) -> str:
    """The matrix whose columns the call ``key`` of ``fspec`` (``role``'s) builds, in
    the words of :func:`~dmixed.design.evaluate.check_output` (formulaic shares one
    state between a formula's two sides: the side is the one whose factors call it)."""
    if role != "formula":
        return "random-effects design"
    lhs = getattr(fspec, "lhs", None)
    factors = [] if lhs is None else [str(f) for term in lhs.formula for f in term.factors]
    return "response" if any(key in f for f in factors) else "fixed-effects design"


def blank_state(fspec):
    """``fspec`` with the state of its frozen transforms emptied: evaluated on a frame,
    they learn it from that frame (the rows the fit uses)."""
    from formulaic.model_spec import ModelSpec as FormulaicSpec

    keys = frozen_keys(fspec)
    if not keys:
        return fspec
    merged: dict[str, Any] = {}
    for part in _parts(fspec):
        merged.update(part.transform_state)
    merged.update({k: {} for k in keys})
    return FormulaicSpec.from_spec(fspec, transform_state=merged)


def _needs_scale(key: str) -> bool:
    """Whether the call ``key`` (checked: :func:`_frozen_call`) rescales, so that its
    state holds a ``"scale"``: ``standardize``/``scale`` unless ``rescale=False``."""
    node = ast.parse(key, mode="eval").body
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    if node.func.id == "center":
        return False
    return not any(
        k.arg == "rescale" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in node.keywords
    )


def validated_state(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """The frozen state read from a file (``source`` names it), checked to be plain
    numbers: a mapping from the text of a call of ``center``, ``standardize`` or
    ``scale`` to exactly the state that call needs: ``{"mean": m}`` (``center``,
    ``rescale=False``) or ``{"mean": m, "scale": s}``, ``m`` a finite number, ``s`` a
    finite number above 0 (each representable as a float); or from the text of a call
    of ``bs`` that learns its knots to ``{"knots": [k, ...]}``, as many finite numbers
    as the call's basis has knots, sorted, each bound repeated ``degree + 1`` times
    and equal to the call's own where it gives it, the inner ones its ``knots`` where
    it gives them (:func:`_validated_knots`); or of ``cr``/``cc`` that learns to
    :func:`_validated_cubic`'s state.  Nothing in it is evaluated.

    Raises
    ------
    CheckpointError
        If it is anything else, naming ``source`` and the entry.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{source}: the saved state of the stateful transforms must be a mapping, "
            f"got {type(raw).__name__}"
        )
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _frozen_call(key):
            raise CheckpointError(
                f"{source}: the saved state names {key!r}, which is not a call of "
                f"{', '.join(sorted(FROZEN_KEYWORDS))}, or of bs(), cr() or cc() that "
                "learns its knots"
            )
        node = ast.parse(key, mode="eval").body
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if node.func.id in SPLINES:
            call = spline_call(node)
            if isinstance(call, CubicCall):
                out[key] = _validated_cubic(call, key, value, source)
            else:
                out[key] = {"knots": _validated_knots(call, key, value, source)}
            continue
        need = ("mean", "scale") if _needs_scale(key) else ("mean",)
        if not isinstance(value, dict) or set(value) != set(need):
            shape = ", ".join(f"{k!r}: number" for k in need)
            raise CheckpointError(
                f"{source}: the saved state of {key} must be {{{shape}}}, got {value!r}"
            )
        state: dict[str, float] = {}
        for name in need:
            number = value[name]
            try:
                ok = isinstance(number, (int, float)) and not isinstance(number, bool)
                as_float = float(number) if ok else math.nan
            except OverflowError:  # a JSON integer too large for a float
                as_float = math.nan
            if not math.isfinite(as_float) or (name == "scale" and as_float <= 0):
                raise CheckpointError(
                    f"{source}: the saved {name} of {key} must be a finite number"
                    f"{' above 0' if name == 'scale' else ''}, got {shorten(repr(number))}"
                )
            state[name] = as_float
        out[key] = state
    return out


def _numbers(raw: Any, count: int, what: str, key: str, source: str) -> list[float]:
    """``raw``, a list of ``count`` finite numbers (each representable as a float), as
    floats.

    Raises
    ------
    CheckpointError
        If it is anything else, naming ``source``, ``key`` and ``what`` it holds.
    """
    if not isinstance(raw, list) or len(raw) != count:
        raise CheckpointError(
            f"{source}: the saved {what} of {key} must be a list of {count} numbers, got "
            f"{shorten(repr(raw))}"
        )
    out: list[float] = []
    for number in raw:
        try:
            ok = isinstance(number, (int, float)) and not isinstance(number, bool)
            as_float = float(number) if ok else math.nan
        except OverflowError:  # a JSON integer too large for a float
            as_float = math.nan
        if not math.isfinite(as_float):
            raise CheckpointError(
                f"{source}: the saved {what} of {key} must be finite numbers, got "
                f"{shorten(repr(number))}"
            )
        out.append(as_float)
    return out


def _validated_cubic(call: CubicCall, key: str, value: Any, source: str) -> dict[str, list]:
    """The saved state of the ``cr``/``cc`` call ``key`` (``call``, its arguments):
    ``{"knots": [...]}``, with ``"constraint": [...]`` where it centres; the knots
    strictly increasing, as many as the call has, its own bounds and inner knots where
    it gives them; the constraint as long as the basis before it is, finite and not
    all zero (:func:`validated_state`).

    Raises
    ------
    CheckpointError
        If it is not the state such a call learns.
    """
    keys = {"knots", "constraint"} if call.center else {"knots"}
    if not isinstance(value, dict) or set(value) != keys:
        shape = ", ".join(f"{k!r}: [numbers]" for k in sorted(keys, key=len))
        raise CheckpointError(
            f"{source}: the saved state of {key} must be {{{shape}}}, got {shorten(repr(value))}"
        )
    knots = _numbers(value["knots"], call.knot_count, "knots", key, source)
    wrong = (
        any(b <= a for a, b in zip(knots[:-1], knots[1:], strict=True))
        or (call.lower_bound is not None and knots[0] != call.lower_bound)
        or (call.upper_bound is not None and knots[-1] != call.upper_bound)
        or (call.knots is not None and tuple(knots[1:-1]) != call.knots)
    )
    if wrong:
        raise CheckpointError(
            f"{source}: the saved knots of {key} are not knots it learns (strictly "
            f"increasing, its own bounds and knots where it gives them): "
            f"{shorten(repr(value['knots']))}"
        )
    out = {"knots": knots}
    if call.center:
        constraint = _numbers(value["constraint"], call.free_columns, "constraint", key, source)
        if not any(constraint):
            raise CheckpointError(f"{source}: the saved constraint of {key} is all zeros")
        out["constraint"] = constraint
    return out


def _validated_knots(call: SplineCall, key: str, value: Any, source: str) -> list[float]:
    """The saved knots ``value["knots"]`` of the ``bs`` call ``key`` (``call``, its
    arguments), checked (:func:`validated_state`).

    Raises
    ------
    CheckpointError
        If they are not the knots such a call learns.
    """
    raw = value.get("knots") if isinstance(value, dict) and set(value) == {"knots"} else None
    if not isinstance(raw, list) or len(raw) != call.knot_count:
        raise CheckpointError(
            f"{source}: the saved state of {key} must be {{'knots': [{call.knot_count} "
            f"numbers]}}, got {shorten(repr(value))}"
        )
    knots = _numbers(raw, call.knot_count, "knots", key, source)
    order = call.degree + 1
    lower, upper = knots[0], knots[-1]
    wrong = (
        any(b > a for a, b in zip(knots[1:], knots[:-1], strict=True))
        or any(k != lower for k in knots[:order])
        or any(k != upper for k in knots[-order:])
        or (call.lower_bound is not None and lower != call.lower_bound)
        or (call.upper_bound is not None and upper != call.upper_bound)
        or (call.knots is not None and knots[order:-order] != sorted(call.knots))
    )
    if wrong:
        raise CheckpointError(
            f"{source}: the saved knots of {key} are not knots it learns (sorted, each "
            f"bound {order} times, its own bounds and knots where it gives them): "
            f"{shorten(repr(raw))}"
        )
    return knots


def checked_saved_state(
    state: Mapping[str, Any], fspecs: list[tuple[Any, str, str]], source: str
) -> None:
    """Check that the saved state ``state`` (:func:`validated_state`) holds exactly the
    calls of the frozen transforms that ``fspecs`` (``(spec, role, formula)``, as
    :func:`learned_state` takes them) evaluate.

    Raises
    ------
    CheckpointError
        If a call lacks its state, or a state names a call no formula makes.
    """
    used: set[str] = set()
    for fspec, role, formula in fspecs:
        keys = frozen_keys(fspec)
        used.update(keys)
        missing = [k for k in keys if k not in state]
        if missing:
            raise CheckpointError(
                f"{source}: {role} {formula!r} calls {', '.join(missing)}, whose learned "
                "state it does not hold"
            )
    unused = sorted(set(state) - used)
    if unused:
        raise CheckpointError(
            f"{source}: it holds the state of {', '.join(unused)}, which its formulas do not call"
        )


def _uncentred_advice(call: str, factors: list[str] | None) -> str:
    """The end of :func:`refuse_on_partitions`'s words for ``cr``/``cc`` (``call``):
    how to write the formula without ``constraints='center'``.  The basis's columns then
    sum to one in every row, so the formula must hold no other constant: no intercept,
    and (without one) no factor coded with an indicator per level, which sum to one too
    (formulaic codes the first factor term so where the intercept is left out).
    ``factors``: the formula's factors as it writes them (from its parsed terms; None
    where they are not known)."""
    example = f"{call}(x, knots=(1, 2, 3), lower_bound=0, upper_bound=10)"
    head = (
        ", and no constraints='center', whose column means need the data; without it the "
        "basis's columns sum to one in every row, as the intercept does"
    )
    if not factors:
        unknown = (
            "; where a factor is in the formula (C() or a text column), its indicators, "
            "one per level without the intercept, sum to one too: keep the intercept and "
            "use bs() instead, or pass mixedlm's drop_cols one of the factor's indicators"
            if factors is None
            else ""
        )
        return f"{head}: leave out the intercept, '0 + ...'{unknown}), e.g. {example}"
    name = factors[0]
    return (
        f"{head}, and so do the indicators of {name} (one per level) once the intercept "
        "is left out, so '0 + ...' is collinear too: keep the intercept and use "
        "bs(x, knots=..., lower_bound=..., upper_bound=...) instead (its basis leaves out "
        "its first column), or write '0 + ...' and pass mixedlm's drop_cols one indicator "
        f"of {name}, e.g. drop_cols=[{name + '[<a level>]'!r}]), e.g. {example}"
    )


def refuse_on_partitions(
    calls: list[str], role: str, formula: str, where: str, factors: list[str] | None = None
) -> None:
    """Refuse the frozen transforms ``calls`` (their names) of a formula evaluated on
    data they cannot learn from once (``where``: a Dask collection, a variance
    component's groups).  ``factors``: the formula's factors as it writes them, which
    the advice for ``cr``/``cc`` names (None: not known).

    Raises
    ------
    FormulaError
        If ``calls`` is not empty.
    """
    if not calls:
        return
    splines = [c for c in calls if c in SPLINES]
    if splines:
        names = ", ".join(f"{c}()" for c in splines)
        if "variance component" in where:
            # (the full check's words: FactorVisitor.check_spline_call)
            raise FormulaError(
                f"{role} {formula!r}: {names} is not supported in a variance component: "
                "it makes several columns from one factor (and learns its knots there "
                "within groups); add its columns to the data and name them in the formula"
            )
        first = splines[0]
        cubic = first in CUBIC_SPLINES
        raise FormulaError(
            f"{role} {formula!r}: the stateful transform {names} learns its knots and "
            "bounds where not all given"
            + (", and with constraints='center' its columns' means" if cubic else "")
            + f", from the whole data once, which dmixed does only for a pandas frame, not "
            f"{where}; fit the "
            "model on a pandas DataFrame, or give every knot as numbers (patsy's arguments "
            "knots, lower_bound and upper_bound"
            + (
                _uncentred_advice(first, factors)
                if cubic
                else "), e.g. bs(x, knots=(1, 2, 3), lower_bound=0, upper_bound=10)"
            )
        )
    names = ", ".join(f"{c}()" for c in calls)
    raise FormulaError(
        f"{role} {formula!r}: the stateful transform {names} learns the mean and standard "
        f"deviation of the whole data once, which dmixed does only for a pandas frame, not "
        f"{where}; fit the model on a pandas DataFrame, precompute the column, or give "
        "the centre and scale as numbers, e.g. I((x - 1.5) / 2)"
    )
