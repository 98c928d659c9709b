"""Numeric columns far from zero inside product terms, read about a centre.

A product of a column far from zero with another column is nearly that other column
times the offset: in ``y ~ x1*C(c)`` with ``x1`` near 1e6 and a spread of 1, the column
``x1:C(c)[T.b] = x1·1[c = b]`` is ``1e6·1[c = b]`` to six digits, nearly parallel to
``C(c)[T.b]``, and the statistics' own shift of each column (its mean, off that column
alone: :mod:`dmixed.stats.standardize`) cannot take the offset out of a product.  So a
numeric column ``x`` that the fixed-effects formula reads far from zero (its mean more
than :data:`CENTRE_ABOVE` standard deviations from zero) inside a product term is read
as ``x − m`` everywhere, ``m`` its *centre* (near the data's mean, with few significant
bits: :func:`centre_of`).  Every product of centred factors spans what the products of
the raw ones span, given the lower-order columns::

    x·1[c = b] = (x − m)·1[c = b] + m·1[c = b]
    x1·x2      = (x1 − m1)(x2 − m2) + m2 (x1 − m1) + m1 (x2 − m2) + m1 m2

so the design's columns are ``X_d`` with ``X = X_d D``, ``D`` unit on the diagonal with
the centres' products off it (:func:`column_basis`), a reparametrization of the model
that the column map (:class:`~dmixed.stats.standardize.Standardization`, its
``x_basis``) maps back exactly: the fitted values, the likelihood and every estimate
are those of the formula's own columns (``β = D⁻¹ β_d``).

A column is centred only where every column its products need is in the design (the
term with the centred factors taken out, coded as in the formula: ``x1*C(c)``, not
``x1:C(c)`` alone, whose columns span another space once centred; the intercept where
the term is the column alone, so ``0 + C(c) + C(c):x1``, each level's indicator in the
design, is centred without one; ``C(c) + C(c):x1`` with ``C(c)`` in treatment coding,
each level's indicator the intercept less the other levels' columns or one of them, is
centred too; and without an intercept, a column alone beside columns that give one
in every row: ``0 + C(c) + x1``, ``0 + c + x1`` with ``c`` text, ``0 + C(c, Sum) + x1``
and the other full codings with a constant column, ``0 + cr(u, ...) + x1``), and the
column is read by no other formula (the
response, ``re_formula``, a variance component: the random design reads the same
column values, so centring it there too would change ``Z``) and only as itself (``x``, or
``Q('x')`` where its name is no Python name; not inside a function or ``C()``).  The
centres are part of the spec (:attr:`~dmixed.design.spec.ModelSpec.centres`, saved with
it), chosen from the first rows (a Dask collection's first partitions, as many as hold
them up to :data:`CENTRE_PARTITIONS`: :func:`choose_centres`), so every
partition, ``update`` batch and prediction reads the column alike.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CheckpointError
from ..stats.statistics import exact_centre
from .dtypes import NUMERIC
from .formula import quoted_column
from .partitions import compute_with

if TYPE_CHECKING:
    from .build import ParsedFormulas
    from .spec import ModelSpec

__all__ = [
    "CENTRE_ABOVE",
    "EXACT_SOLVE_LEVELS",
    "centre_of",
    "centres_need_this_version",
    "choose_centres",
    "coding_weights",
    "column_basis",
    "constant_weights",
    "design_rows",
    "formula_rows",
    "own_column",
    "product_columns",
    "reads_column",
    "saved_centres",
    "shift_needs_this_version",
    "vc_reads",
]

#: A column inside a product is centred when its mean is more than this many standard
#: deviations from zero (the statistics' own shift test, for one column).
CENTRE_ABOVE = 8.0
#: Rows (from the start of the data) a centre is chosen from.
CENTRE_ROWS = 65536
#: At most this many partitions of a Dask collection are read for those rows (its
#: first ones; a bound on the extra reads where partitions are small).
CENTRE_PARTITIONS = 16


def centre_of(values: np.ndarray) -> float | None:
    """The centre of a column from its first values (finite ones), or None where it is
    not far from zero next to its spread (:data:`CENTRE_ABOVE`) or does not vary.

    The mean rounded by :func:`dmixed.stats.statistics.exact_centre` (to within
    ``sd / 2**CENTRE_BITS``, on a binary grid at least the spacing of float64 at the
    sample's largest magnitude): ``x − m`` is then exact for every ``x`` of the
    sample's magnitude and sign.
    """
    v = np.asarray(values, dtype=np.float64).ravel()[:CENTRE_ROWS]
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    mean = float(np.mean(v))
    sd = float(np.std(v))
    if not (sd > 0.0 and abs(mean) > CENTRE_ABOVE * sd):
        return None
    centre = exact_centre(mean, sd, float(np.max(np.abs(v))))
    return centre if centre != 0.0 else None


def reads_column(expr: str, column: str) -> bool:
    """Whether a factor's code may read ``column`` (a name or a quoted name in it;
    conservative: a false yes only costs the reference)."""
    return re.search(r"(?<![\w.])" + re.escape(column) + r"(?!\w)", expr) is not None


def vc_reads(spec: ModelSpec | None) -> dict[str, str]:
    """Each column of the data that a variance component's formula may read, mapped to
    the first such component's argument (``{"ts": "vc_formula['s']"}``), the
    components in name order; a name in the formula's text counts (:func:`reads_column`:
    a false yes only names the component in a refusal whose column is far from zero
    and read by the fixed effects where the fit's sums lose digits anyway).  Empty
    without a spec or components.  These columns are not centred here
    (:func:`product_columns`), and the statistics refuse them where their sums cannot
    take the offset out (:func:`dmixed.stats.statistics.check_designs`).  A column the
    fixed effects read as ``Q('ts x')`` is mapped under that factor's name in their
    columns' names too (``'Q("ts x")'``), the name those checks compare."""
    out: dict[str, str] = {}
    if spec is None:
        return out
    for name, formula in sorted((spec.vc_formula or {}).items()):
        for column in spec.columns_used:
            if column not in out and reads_column(str(formula), column):
                out[column] = f"vc_formula[{name!r}]"
    if out:
        factors = {f for n in spec.exog_names for f in str(n).split(":")}
        for factor in sorted(factors):
            column = quoted_column(factor, out)
            if column is not None:
                out.setdefault(factor, out[column])
    return out


def own_column(expr: str, lookup: bool, columns) -> str | None:
    """The column a factor reads as itself, else None.

    Parameters
    ----------
    expr : str
        The factor's expression (formulaic's ``Factor.expr``), or a model-matrix
        column's name of one factor (``ts``, ``Q("ts x")``).
    lookup : bool
        Whether formulaic reads ``expr`` as a lookup of a column (its ``eval_method``
        is ``LOOKUP``): then ``expr`` is the column's name (``ts``, and ```ts x``` as
        formulaic reads backticks).
    columns : collection of str
        The columns a quoted name may be.

    Returns
    -------
    str or None
        The lookup's name, or the name that ``Q('ts x')`` quotes where it is one of
        ``columns`` (parsed, never evaluated:
        :func:`~dmixed.design.formula.quoted_column`); None for any other expression
        (``np.log(ts)``, ``I(ts - 1)``, ``C(ts)``), which reads the column otherwise.
    """
    if lookup:
        return expr
    return quoted_column(expr, columns)


def _plain_reads(terms, column: str, alone: bool = False) -> bool | None:
    """True: the formula's ``terms`` read ``column`` only as a factor of its own (a
    lookup of the column) and in at least one product (or, with ``alone``, in any
    term); False: otherwise too (inside an expression or ``C()``); None: not in a
    product (with ``alone``: not read)."""
    from formulaic.parser.types import Factor

    product = False
    for term in terms:
        for factor in term.factors:
            if factor.eval_method is Factor.EvalMethod.LITERAL:
                continue
            lookup = factor.eval_method is Factor.EvalMethod.LOOKUP
            if own_column(factor.expr, lookup, (column,)) == column:
                product = product or len(term.factors) > 1 or alone
            elif reads_column(factor.expr, column):
                return False
    return True if product else None


def product_columns(spec: ModelSpec, parsed: ParsedFormulas) -> list[str]:
    """The numeric columns a centre may be taken for: read by the fixed-effects
    formula in a product term (or, in a formula without an intercept, in any term) and
    only as themselves, by no other formula (whether their products' lower-order
    columns, the intercept or columns that sum to it among them, are in the design is
    :func:`_basis`'s to say).

    With an intercept, a column read alone is the statistics' to shift
    (:mod:`dmixed.stats.standardize`); without one they shift nothing, so a column far
    from zero beside columns that sum to one in every row (``0 + C(c) + ts``,
    ``0 + cr(x, ...) + ts``) is read about a centre here."""
    alone = spec.intercept_columns()[0] < 0
    if not parsed.rhs_terms and not (alone and "main" in parsed.plain):
        return []
    others = set(parsed.lhs.columns)
    others |= {c for info in parsed.vc.values() for c in info.columns}
    if spec.re_kind == "formula":
        others |= set(parsed.re.columns)
    out = []
    for c in spec.formula_columns:
        if spec.column_kinds.get(c) != NUMERIC or c in others or c not in parsed.rhs.columns:
            continue
        # a plain formula (column names only, :mod:`dmixed.design.plain`; ``0 + c + ts``
        # with ``c`` text, a factor) reads each column alone, as itself
        if not parsed.rhs_terms or _plain_reads(parsed.rhs_terms, c, alone):
            out.append(c)
    return out


def _scoped_terms(spec: ModelSpec) -> list[tuple[tuple, float, int]] | None:
    """Per scoped term of the fixed-effects formula, in column order: its factors
    ``((expr, reduced, column), ...)`` (``column``: the column the factor reads as
    itself, ``ts`` or ``Q('ts x')``, else None: :func:`own_column`), its scale and its
    number of columns (formulaic's structure of the design); None where they do not add
    up to the design's columns."""
    fspec = getattr(spec.formulaic_spec("main"), "rhs", None)
    if fspec is None:
        return None
    out = []
    for structure in fspec.structure:
        widths = len(structure.columns)
        scoped = list(structure.scoped_terms)
        if len(scoped) != 1:  # (several scoped terms share the columns: not read here)
            return None
        factors = tuple(
            (
                sf.factor.expr,
                bool(sf.reduced),
                own_column(
                    sf.factor.expr,
                    getattr(getattr(sf.factor, "factor", sf.factor), "eval_method", None)
                    is _lookup(),
                    spec.formula_columns,
                ),
            )
            for sf in scoped[0].factors
        )
        out.append((factors, float(scoped[0].scale), widths))
    built = spec.exog_names_built if spec.exog_names_built is not None else spec.exog_names
    if sum(w for _, _, w in out) != len(built):
        return None
    return out


def _lookup():
    from formulaic.parser.types import Factor

    return Factor.EvalMethod.LOOKUP


def _unit_weights(
    spec: ModelSpec, expr: str, reduced: bool, width: int, earlier: bool = False
) -> np.ndarray | None:
    """Weights ``w`` (``width``) with which the columns ``X`` of the one-factor term
    ``expr`` give one in every row, ``X w = 1``, by construction; None where there are
    none known.

    - a factor (``C(c)``, ``C(c, Sum)``, a text column: a factor under dmixed's column
      rules) whose coding matrix ``C`` holds the constant: the rational ``w`` with
      ``C w = 1`` (:func:`coding_weights`: one indicator per level, every weight one; a
      constant column, ``[mean]`` of Sum, the intercept of Helmert and Diff,
      ``.Constant`` of Poly, that column alone; any other coding of full rank, its
      exact solution), each weight the float nearest it;
    - ``bs(..., include_intercept=True)`` (B-splines: a partition of unity), or
      ``cr``/``cc`` without ``constraints`` (interpolating bases of every knot's value:
      they reproduce a constant): every weight one.

    With ``earlier``, the rule of versions before :func:`coding_weights` solved a
    coding: only one indicator per level or a constant column.
    """
    import ast

    from .splines import CubicCall, SplineCall, spline_call

    fspec = getattr(spec.formulaic_spec("main"), "rhs", None)
    kind, state = getattr(fspec, "encoder_state", {}).get(expr, (None, {}))
    if getattr(kind, "value", None) == "categorical":
        coding = _coding_matrix(state, reduced)
        if coding is None or coding.shape[1] != width:
            return None
        exact = coding_weights(coding, solve=not earlier)
        return None if exact is None else np.array([float(v) for v in exact])
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("bs", "cr", "cc")
    ):
        return None
    try:
        call = spline_call(node)
    except ValueError:
        return None
    if isinstance(call, CubicCall):
        return None if call.center else np.ones(width)
    return np.ones(width) if isinstance(call, SplineCall) and call.include_intercept else None


#: The most levels of a factor whose coding (neither indicators nor one with a constant
#: column) :func:`coding_weights` solves in exact rational arithmetic (its cost grows as
#: the cube of the levels, in numbers of growing size).
EXACT_SOLVE_LEVELS = 32


def coding_weights(coding: np.ndarray, solve: bool = True) -> list[Fraction] | None:
    """The exact weights ``w`` with which a factor's coding matrix gives one for every
    level, ``C w = 1`` in rational arithmetic on ``C``'s float64 entries; None where
    there are none known.

    Parameters
    ----------
    coding : ndarray (levels, columns)
        The coding matrix: row ``l`` the values of the factor's columns at level ``l``.
    solve : bool, default True
        Whether to solve a coding that is neither of the first two kinds below (False:
        the rule of versions before this one, which knew those two only).

    Returns
    -------
    list of Fraction or None
        ``w`` (columns), found in this order: every weight one where ``C`` holds 0 and 1
        only with one 1 per row (one indicator per level: treatment coding of full rank,
        formulaic's codings without an intercept); ``e_j / v`` for the first column
        ``j`` equal to ``v ≠ 0`` at every level (patsy's full-rank Sum, Helmert, Diff and
        Poly: ``v = 1``); else, for a square ``C`` of at most
        :data:`EXACT_SOLVE_LEVELS` levels, the solution of ``C w = 1`` by Gauss-Jordan
        elimination in :class:`fractions.Fraction` (None where ``C`` is singular).  A
        reduced coding (levels × levels − 1: treatment, Sum, Helmert, Diff, Poly
        contrasts) holds no constant and gets None.

    The weights are exact rationals, so ``C w = 1`` holds exactly; the float nearest a
    weight that is not a binary fraction (``1/3`` where a coding's constant column is 3)
    then moves the estimates mapped back through it by about one unit in the last
    place of the constant's part (:func:`constant_weights`).
    """
    c = np.asarray(coding, dtype=np.float64)
    if c.ndim != 2 or not c.size or not np.isfinite(c).all():
        return None
    n, k = c.shape
    if np.isin(c, (0.0, 1.0)).all() and (c.sum(axis=1) == 1.0).all():
        return [Fraction(1)] * k  # integer sums: exact
    for j in range(k):
        v = c[0, j]
        if v != 0.0 and (c[:, j] == v).all():
            out = [Fraction(0)] * k
            out[j] = 1 / Fraction(v)
            return out
    if not solve or n != k or n > EXACT_SOLVE_LEVELS:
        return None
    rows = [[Fraction(float(x)) for x in row] + [Fraction(1)] for row in c]
    for col in range(k):
        pivot = next((r for r in range(col, n) if rows[r][col] != 0), None)
        if pivot is None:
            return None  # singular: the columns do not span every level
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [x / lead for x in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                f = rows[r][col]
                rows[r] = [x - f * y for x, y in zip(rows[r], rows[col], strict=True)]
    return [rows[j][k] for j in range(k)]


def _significant_bits(values: np.ndarray) -> int:
    """The most significant bits of any of ``values`` (finite float64): the width of its
    significand less the trailing zeros (0 for zero, 1 for a power of two)."""
    most = 0
    for v in np.unique(np.abs(values[values != 0.0])):
        num = Fraction(float(v)).numerator
        # numerator of v = m · 2^e in lowest terms: the significand's odd part
        most = max(most, (num // (num & -num)).bit_length())
    return most


def _coding_matrix(state: dict, reduced: bool) -> np.ndarray | None:
    """The coding matrix (levels × columns) of a categorical factor's encoder state;
    None where it is not known."""
    contrasts = getattr(state.get("contrasts"), "contrasts", None)
    levels = list(state.get("categories") or [])
    if contrasts is None or not levels or not hasattr(contrasts, "get_coding_matrix"):
        return None
    try:
        coding = np.asarray(
            contrasts.get_coding_matrix(levels, reduced_rank=reduced), dtype=np.float64
        )
    except (TypeError, ValueError):
        return None
    if coding.ndim != 2 or coding.shape[0] != len(levels):
        return None
    return coding


def _coding(state: dict, reduced: bool) -> np.ndarray | None:
    """The coding matrix (levels × columns) of a categorical factor's encoder state,
    where its entries are all 0 or 1 (exact weights); else None."""
    coding = _coding_matrix(state, reduced)
    if coding is None or not np.isin(coding, (0.0, 1.0)).all():
        return None
    return coding


def _cell_weights(
    spec: ModelSpec, factors, scale: float, width: int, earlier: bool = False
) -> np.ndarray | None:
    """Weights with which the columns of an interaction of factors, each coded in
    full (``0 + C(a):C(b)``, ``0 + C(a, Sum):C(b)``, ``0 + C(a):C(b, Helmert)``,
    ``0 + C(c):fl``), give one in every row by construction; None for any other term.

    Each column is the product of one column of each factor, so with each factor's
    exact weights ``w_i`` (:func:`coding_weights`, ``C_i w_i = 1``) the term's weights
    are their Kronecker product, ``Σ_j Π_i C_i[l_i, j_i] w_i[j_i] = Π_i (C_i w_i)[l_i] =
    1`` at every cell ``(l_1, l_2, ...)``, in formulaic's order of the term's columns
    (the first factor's varying fastest, as patsy's and R's).  That holds of the
    design's columns only where their values are the exact products of the codings'
    entries: the columns of nonzero weight hold entries whose significands' bits add
    up to at most 53 over the factors (indicators, constant columns of 1, Sum's ±1, so
    every product is exact); else None.  With ``earlier``, the rule of versions
    before this one: factors each coded with one 0/1 indicator per level only."""
    fspec = getattr(spec.formulaic_spec("main"), "rhs", None)
    states = getattr(fspec, "encoder_state", {})
    if len(factors) < 2 or scale != 1.0:
        return None
    per_factor = []
    bits = 0
    lowest = highest = 0
    for expr, reduced, _ in factors:
        kind, state = states.get(expr, (None, {}))
        if getattr(kind, "value", None) != "categorical":
            return None
        coding = _coding_matrix(state, reduced)
        weights = None if coding is None else coding_weights(coding, solve=not earlier)
        if coding is None or weights is None:
            return None
        if earlier and not (
            np.isin(coding, (0.0, 1.0)).all() and (coding.sum(axis=1) == 1.0).all()
        ):
            return None  # not one indicator per level: not known before
        used = coding[:, [w != 0 for w in weights]]
        held = np.abs(used[used != 0.0])
        if not held.size:
            return None
        bits += _significant_bits(used)
        lowest += math.frexp(float(held.min()))[1]
        highest += math.frexp(float(held.max()))[1]
        per_factor.append(weights)
    # exact products: within the significand and the exponents of normal float64
    if bits > 53 or lowest < -1000 or highest > 1000:
        return None
    if math.prod(len(w) for w in per_factor) != width:
        return None
    out = [Fraction(1)]
    for weights in per_factor:  # the first factor's columns vary fastest
        out = [w * v for w in weights for v in out]
    return np.array([float(v) for v in out])


def _constant(
    spec: ModelSpec,
    terms,
    built: list[str],
    index: dict[str, int],
    cells: bool = False,
    earlier: bool = False,
) -> list[tuple[int, float]] | None:
    """The design's columns, with weights, that give one in every row where it has no
    intercept: those of its first one-factor term that does (:func:`_unit_weights`),
    or, with ``cells``, also of an interaction of factors coded in full
    (:func:`_cell_weights`), all of them in the design; None where there is none.
    ``earlier``: by the rules of versions before this one (those functions')."""
    at = 0
    for factors, scale, width in terms:
        first = at
        at += width
        if width == 0:
            continue
        if len(factors) != 1:
            weights = _cell_weights(spec, factors, scale, width, earlier) if cells else None
        else:
            weights = _unit_weights(spec, factors[0][0], factors[0][1], width, earlier)
        if weights is None:
            continue
        cols = [index.get(built[first + r]) for r in range(width) if weights[r] != 0.0]
        if any(k is None for k in cols):
            return None  # a column dropped: the rest do not give one
        return [(int(k), float(w)) for k, w in zip(cols, weights[weights != 0.0], strict=True)]  # type: ignore[arg-type]
    return None


def _indicator(spec: ModelSpec, rest, level: int, width: int, start, built, index):
    """The indicator of level ``level`` of the one-factor term ``rest`` (a factor coded
    with one indicator per level, ``width`` levels, not a term of the design) from the
    design's intercept and the columns of the same factor in treatment coding (a term
    of the design): ``(True, [(k, -1), ...])`` for the base level (the intercept less
    every reduced column), ``(False, [(k, 1)])`` for another; None where the design does
    not hold them (another coding, a column dropped)."""
    if len(rest) != 1 or rest[0][1]:
        return None
    expr = rest[0][0]
    found = start.get(((expr, True, rest[0][2]),))
    fspec = getattr(spec.formulaic_spec("main"), "rhs", None)
    kind, state = getattr(fspec, "encoder_state", {}).get(expr, (None, {}))
    coding = _coding(state, reduced=True) if getattr(kind, "value", None) == "categorical" else None
    if (
        found is None
        or found[1] != 1.0
        or coding is None
        or coding.shape != (width, width - 1)
        or found[2] != width - 1
        # treatment coding: one level all zeros, every other level one column's 1
        or sorted(coding.sum(axis=1).tolist()) != [0.0] + [1.0] * (width - 1)
        or not (coding.sum(axis=0) == 1.0).all()
    ):
        return None
    cols = [index.get(built[found[0] + j]) for j in range(width - 1)]
    if any(k is None for k in cols):
        return None
    row = coding[level]
    if not row.any():  # the base level: 1 − Σ the others' indicators
        return True, [(k, -1.0) for k in cols]
    return False, [(cols[int(np.argmax(row))], 1.0)]


def _basis(spec: ModelSpec, centres: dict[str, float], earlier: bool = False) -> np.ndarray | None:
    """``D − I`` (p × p) for the columns of ``spec``'s design with these centres, or
    None where a column a product needs is not among them.

    Built from the formula's terms, not the columns' names (a level may hold ``:``):
    a column of a scoped term whose factors include centred columns (each a lookup of
    one column or ``Q('name')`` of it, one column wide) is, for every subset of those
    taken out, paired with the column at the same place of the scoped term of the other
    factors (in the same order, coding and scale; the intercept where none is left).
    ``earlier``: None where the centres need this version's rules
    (:func:`centres_need_this_version`)."""
    names = list(spec.exog_names)
    p = len(names)
    intercept = spec.intercept_columns()[0]
    terms = _scoped_terms(spec)
    if terms is None:
        return None
    built = spec.exog_names_built if spec.exog_names_built is not None else names
    index = {n: j for j, n in enumerate(names)}
    start = {}  # a scoped term's factors -> (its first column in ``built``, scale, width)
    at = 0
    for factors, scale, width in terms:
        start[factors] = (at, scale, width)
        at += width
    out = np.zeros((p, p))
    at = 0
    for factors, scale, width in terms:
        first = at
        at += width
        shifted = [i for i, f in enumerate(factors) if f[2] is not None and f[2] in centres]
        if not shifted or width == 0:
            continue
        for size in range(1, len(shifted) + 1):
            for taken in combinations(shifted, size):
                rest = tuple(f for i, f in enumerate(factors) if i not in taken)
                m = math.prod(centres[factors[i][2]] for i in taken)
                for r in range(width):
                    name = built[first + r]
                    if name not in index:
                        continue  # dropped (drop_cols): no column of the design
                    if not rest and width == 1 and intercept < 0:
                        if earlier:
                            return None
                        # no intercept: the constant is the sum of columns that make it
                        # (x = (x − m) + m·Σ_k X_k), where the design has them
                        ones = _constant(spec, terms, built, index)
                        if ones is None:
                            return None
                        for k, w in ones:
                            out[k, index[name]] += w * m * scale
                        continue
                    if not rest:
                        k = intercept if width == 1 and intercept >= 0 else None
                        lower_scale = 1.0
                    else:
                        found = start.get(rest)
                        if found is None and intercept >= 0:
                            if earlier:
                                return None
                            # C(c) + C(c):x: the level's indicator from the intercept and
                            # the reduced columns of C(c) (treatment coding)
                            lower = _indicator(spec, rest, r, width, start, built, index)
                            if lower is None:
                                return None
                            base, pairs = lower
                            for k, w in [(intercept, 1.0), *pairs] if base else pairs:
                                out[k, index[name]] += w * m * scale
                            continue
                        if found is None or found[2] != width:
                            return None
                        k = index.get(built[found[0] + r])
                        lower_scale = found[1]
                    if k is None:
                        return None
                    out[k, index[name]] += m * scale / lower_scale
    return out


def _complete(spec: ModelSpec, centres: dict[str, float]) -> dict[str, float]:
    """The centres whose every product's lower-order columns are in ``spec``'s design: a
    column with a product that lacks one is read as it is."""
    centres = dict(centres)
    while centres:
        kept = {}
        for c, m in centres.items():
            if _basis(spec, {c: m}) is not None:
                kept[c] = m
        if kept == centres and _basis(spec, kept) is not None:
            return kept
        if kept == centres:  # one column at a time fits, together not: none centred
            return {}
        centres = kept
    return centres


def _first_rows(data, columns: list[str], client=None):
    """The first :data:`CENTRE_ROWS` rows of ``columns`` of a Dask collection: its
    first partition, then the next ones (in batches of 1, 2, 4, ...) while they hold
    fewer rows, up to :data:`CENTRE_PARTITIONS` partitions in all, read on ``client``
    (:func:`~dmixed.design.partitions.compute_with`)."""
    import pandas as pd

    frame = data[columns]
    total = min(frame.npartitions, CENTRE_PARTITIONS)
    parts: list = []
    rows = 0
    read = 0
    batch = 1
    while read < total and rows < CENTRE_ROWS:
        take = range(read, min(read + batch, total))
        got = compute_with([frame.partitions[i] for i in take], client, "reading the first rows")
        parts.extend(got)
        rows += sum(len(p) for p in got)
        read += len(take)
        batch *= 2
    if len(parts) == 1:
        return parts[0].iloc[:CENTRE_ROWS]
    return pd.concat(parts).iloc[:CENTRE_ROWS]


def choose_centres(spec: ModelSpec, parsed: ParsedFormulas, data, dask_input: bool, client=None):
    """``{column: centre}`` for the spec's product columns (:func:`product_columns`)
    whose first :data:`CENTRE_ROWS` rows lie far from zero (:func:`centre_of`); empty
    (and no read of the data) when there is none.

    A Dask collection's first rows are read from its first partitions (as many as
    hold them, up to :data:`CENTRE_PARTITIONS`), so the same rows give the same centres
    however they are partitioned, unless those rows span more partitions than that:
    then the centres are those of the rows of the first :data:`CENTRE_PARTITIONS`
    partitions, and a column that does not vary over them (data partitioned by that
    column into more partitions than that) is read as it is, and an interaction of it
    far from zero is refused as nearly dependent (the message says how to centre it).
    """
    columns = product_columns(spec, parsed)
    if not columns:
        return {}
    part = _first_rows(data, columns, client) if dask_input else data[columns].iloc[:CENTRE_ROWS]
    found = {}
    for c in columns:
        try:
            values = part[c].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # the design refuses such a column with its words
            continue
        centre = centre_of(values)
        if centre is not None:
            found[c] = centre
    return _complete(spec, found)


def centres_need_this_version(spec: ModelSpec) -> bool:
    """Whether ``spec``'s centres need this version's rules to be read: versions
    before it centred a column only where its products' lower-order columns, the
    intercept among them, are in the design, and refuse others as malformed saved
    centres (a column alone in a formula without an intercept, ``C(c) + C(c):x``).
    Saved statistics say so in their format version, which those versions check."""
    centres = getattr(spec, "centres", None)
    if not centres:
        return False
    return _basis(spec, centres, earlier=True) is None or _quoted_centre(spec, centres)


def _quoted_centre(spec: ModelSpec, centres: dict[str, float]) -> bool:
    """Whether a centred column is read as ``Q('name')``: versions before this one read
    only a lookup as the column itself, so they would map such a design's estimates
    back without its centre."""
    terms = _scoped_terms(spec)
    return terms is not None and any(
        column is not None and column in centres and column != expr
        for factors, _, _ in terms
        for expr, _, column in factors
    )


def column_basis(spec: ModelSpec | None) -> np.ndarray | None:
    """``D − I`` (p × p): the design's columns ``X_d`` of a spec with centres give the
    formula's ``X = X_d D`` (see the module); None without centres."""
    centres = getattr(spec, "centres", None)
    if not centres or spec is None:
        return None
    out = _basis(spec, centres)
    if out is None:
        raise CheckpointError("the spec's centres need columns its design does not have")
    return out


def constant_weights(spec: ModelSpec | None, earlier: bool = False) -> np.ndarray | None:
    """``a`` (p,) with ``X a = 1`` in every row, by construction, for a design without
    an intercept whose columns give one: its first one-factor term that does, every
    column of it in the design (``0 + C(c)``, ``0 + C(c, Sum) + x``, ``0 + cr(u,
    ...)``: :func:`_unit_weights`), or a full interaction of factors coded in full
    (``0 + C(a):C(b)``, ``0 + C(a, Sum):C(b, Helmert)``: :func:`_cell_weights`); None
    for a design with an intercept or without such a term.

    There a shift of the response is the same model (``y − c = X (β − c a) + ...``), so
    the statistics shift ``y`` as they do beside an intercept
    (:attr:`~dmixed.stats.standardize.Standardization.x_ones`).  The columns of such a
    term are not centred (:func:`column_basis` centres only columns read alone beside
    it), so ``a`` holds for the design's columns ``X_d`` too.

    The weights come from the codings' exact rational weights
    (:func:`coding_weights`), so the constant lies in the design's column space
    exactly, which is all the shift needs to be the same model; ``a`` is each weight's
    nearest float (the weight itself for every coding patsy and formulaic define: 0, 1
    or a power of two).  A weight that is not a binary fraction (a user's coding whose
    constant column is 3) moves only the map back ``β = β̃ + c a``, by about one unit
    in the last place of ``c a`` (the weight's own rounding, half a unit, then that of
    the product and the sum).

    With ``earlier``, the weights by the rules of versions before this one (a factor
    coded with one indicator per level or with a constant column, an interaction of
    indicator-coded factors; None for the others): the weights those versions shifted
    the response beside (:func:`shift_needs_this_version`)."""
    if spec is None or spec.intercept_columns()[0] >= 0:
        return None
    terms = _scoped_terms(spec)
    if terms is None:
        return None
    names = list(spec.exog_names)
    built = spec.exog_names_built if spec.exog_names_built is not None else names
    index = {n: j for j, n in enumerate(names)}
    ones = _constant(spec, terms, built, index, cells=True, earlier=earlier)
    if not ones:
        return None
    out = np.zeros(len(names))
    for k, w in ones:
        out[k] = w
    return out


def shift_needs_this_version(spec: ModelSpec | None) -> bool:
    """Whether ``spec``'s design gives the constant (:func:`constant_weights`) only by
    this version's rules, or by other weights than earlier versions': those versions
    did not shift the response beside these weights (``0 + C(a, Sum):C(b)``, ``0 +
    C(a):C(b, Helmert)``, a user's square coding without a constant column), so their
    statistics of such a design are not this version's, and this version's statistics
    with the response shifted are of a newer format there."""
    weights = constant_weights(spec)
    if weights is None:
        return False
    before = constant_weights(spec, earlier=True)
    return before is None or not np.array_equal(before, weights)


def saved_centres(saved, spec: ModelSpec) -> dict[str, float]:
    """The centres of a saved spec (None: saved without), checked: each a finite
    number of a numeric column of the fixed-effects formula whose products' columns
    are all in the design.

    Raises
    ------
    CheckpointError
        A malformed entry.
    """
    if not saved:
        return {}
    if not isinstance(saved, dict):
        raise CheckpointError(f"malformed saved centres: {saved!r}")
    out = {}
    for c, v in saved.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or spec.column_kinds.get(c) != NUMERIC
            or c not in spec.formula_columns
        ):
            raise CheckpointError(f"malformed saved centre of column {c!r}: {v!r}")
        out[c] = float(v)
    if _basis(spec, out) is None:
        raise CheckpointError("malformed saved centres: their products' columns are missing")
    return out


def formula_rows(spec: ModelSpec | None, exog: np.ndarray) -> np.ndarray:
    """The formula's rows ``X = X_d D`` (n × p) of the design's rows ``exog`` (``X_d``)
    of a spec with centres (:func:`column_basis`); ``exog`` itself without."""
    basis = column_basis(spec)
    return exog if basis is None else exog + exog @ basis


def design_rows(spec: ModelSpec | None, exog):
    """The design's rows ``X_d = X D⁻¹`` of rows ``exog`` (n × p) of the formula's
    columns (what a user gives to ``predict(exog=...)``), for a spec with centres
    (:func:`column_basis`); ``exog`` itself without (or where it is not a matrix of p
    columns: the prediction refuses it in its own words)."""
    basis = column_basis(spec)
    if basis is None or exog is None:
        return exog
    x = np.asarray(exog, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != basis.shape[0]:
        return exog
    return np.linalg.solve((np.eye(basis.shape[0]) + basis).T, x.T).T
