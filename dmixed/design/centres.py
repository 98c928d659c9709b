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
``x1:C(c)`` alone, whose columns span another space once centred), the matrix has an
intercept, and the column is read by no other formula (the response, ``re_formula``,
a variance component) and only as itself (not inside a function or ``C()``).  The
centres are part of the spec (:attr:`~dmixed.design.spec.ModelSpec.centres`, saved with
it), chosen from the first rows (a Dask collection's first partition), so every
partition, ``update`` batch and prediction reads the column alike.
"""

from __future__ import annotations

import math
import re
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CheckpointError
from .dtypes import NUMERIC

if TYPE_CHECKING:
    from .build import ParsedFormulas
    from .spec import ModelSpec

__all__ = [
    "CENTRE_ABOVE",
    "centre_of",
    "choose_centres",
    "column_basis",
    "design_rows",
    "formula_rows",
    "product_columns",
    "reads_column",
    "saved_centres",
]

#: A column inside a product is centred when its mean is more than this many standard
#: deviations from zero (the statistics' own shift test, for one column).
CENTRE_ABOVE = 8.0
#: Rows (from the start of the data) a centre is chosen from.
CENTRE_ROWS = 65536
#: The centre keeps the mean to within ``sd / 2**CENTRE_BITS`` (far inside the spread:
#: any value near the data's location serves), on a coarse binary grid so that
#: ``x − m`` is exact for every value of the magnitude of the sample's.
CENTRE_BITS = 10


def centre_of(values: np.ndarray) -> float | None:
    """The centre of a column from its first values (finite ones), or None where it is
    not far from zero next to its spread (:data:`CENTRE_ABOVE`) or does not vary.

    The mean rounded to a multiple of a power of two ``g`` near ``sd / 2**CENTRE_BITS``
    (and at least the spacing of float64 at the sample's largest magnitude): ``x − m``
    is then exact for every ``x`` of the sample's magnitude and sign (both are
    multiples of ``x``'s spacing, and the difference is smaller than ``x``).
    """
    v = np.asarray(values, dtype=np.float64).ravel()[:CENTRE_ROWS]
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    mean = float(np.mean(v))
    sd = float(np.std(v))
    if not (sd > 0.0 and abs(mean) > CENTRE_ABOVE * sd):
        return None
    top = float(np.max(np.abs(v)))
    grid = max(2.0 ** math.floor(math.log2(sd / 2.0**CENTRE_BITS)), math.ulp(top))
    grid = 2.0 ** math.ceil(math.log2(grid))  # a power of two
    centre = round(mean / grid) * grid
    return float(centre) if centre != 0.0 else None


def reads_column(expr: str, column: str) -> bool:
    """Whether a factor's code may read ``column`` (a name or a quoted name in it;
    conservative: a false yes only costs the reference)."""
    return re.search(r"(?<![\w.])" + re.escape(column) + r"(?!\w)", expr) is not None


def _plain_reads(terms, column: str) -> bool | None:
    """True: the formula's ``terms`` read ``column`` only as a factor of its own (a
    lookup of the column) and in at least one product; False: otherwise too (inside
    an expression or ``C()``); None: not in a product."""
    from formulaic.parser.types import Factor

    product = False
    for term in terms:
        for factor in term.factors:
            if factor.eval_method is Factor.EvalMethod.LITERAL:
                continue
            if factor.eval_method is Factor.EvalMethod.LOOKUP and factor.expr == column:
                product = product or len(term.factors) > 1
            elif reads_column(factor.expr, column):
                return False
    return True if product else None


def product_columns(spec: ModelSpec, parsed: ParsedFormulas) -> list[str]:
    """The numeric columns a centre may be taken for: read by the fixed-effects
    formula in a product term and only as themselves, by no other formula, in a matrix
    with an intercept."""
    if spec.intercept_columns()[0] < 0 or not parsed.rhs_terms:
        return []
    others = set(parsed.lhs.columns)
    others |= {c for info in parsed.vc.values() for c in info.columns}
    if spec.re_kind == "formula":
        others |= set(parsed.re.columns)
    out = []
    for c in spec.formula_columns:
        if spec.column_kinds.get(c) != NUMERIC or c in others or c not in parsed.rhs.columns:
            continue
        if _plain_reads(parsed.rhs_terms, c):
            out.append(c)
    return out


def _basis(names: list[str], intercept: int, centres: dict[str, float]) -> np.ndarray | None:
    """``D − I`` (p × p) for the columns ``names`` with these centres, or None where a
    column a product needs is not among them."""
    p = len(names)
    index = {n: j for j, n in enumerate(names)}
    out = np.zeros((p, p))
    for j, name in enumerate(names):
        parts = name.split(":")
        shifted = [i for i, f in enumerate(parts) if f in centres]
        if not shifted or len(set(parts)) != len(parts):
            continue
        for size in range(1, len(shifted) + 1):
            for taken in combinations(shifted, size):
                rest = [f for i, f in enumerate(parts) if i not in taken]
                k = index.get(":".join(rest)) if rest else intercept
                if k is None:
                    return None
                out[k, j] += math.prod(centres[parts[i]] for i in taken)
    return out


def _complete(names: list[str], intercept: int, centres: dict[str, float]) -> dict[str, float]:
    """The centres whose every product's lower-order columns are among ``names``: a
    column with a product that lacks one is read as it is."""
    centres = dict(centres)
    while centres:
        kept = {}
        for c, m in centres.items():
            if _basis(names, intercept, {c: m}) is not None:
                kept[c] = m
        if kept == centres and _basis(names, intercept, kept) is not None:
            return kept
        if kept == centres:  # one column at a time fits, together not: none centred
            return {}
        centres = kept
    return centres


def choose_centres(spec: ModelSpec, parsed: ParsedFormulas, data, dask_input: bool):
    """``{column: centre}`` for the spec's product columns (:func:`product_columns`)
    whose first rows lie far from zero (:func:`centre_of`), a Dask collection's from
    its first partition; empty (and no read of the data) when there is none."""
    columns = product_columns(spec, parsed)
    if not columns:
        return {}
    if dask_input:
        import dask

        (part,) = dask.compute(data[columns].partitions[0])
    else:
        part = data[columns].iloc[:CENTRE_ROWS]
    found = {}
    for c in columns:
        try:
            values = part[c].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # the design refuses such a column with its words
            continue
        centre = centre_of(values)
        if centre is not None:
            found[c] = centre
    x_int = spec.intercept_columns()[0]
    return _complete(list(spec.exog_names), x_int, found)


def column_basis(spec: ModelSpec | None) -> np.ndarray | None:
    """``D − I`` (p × p): the design's columns ``X_d`` of a spec with centres give the
    formula's ``X = X_d D`` (see the module); None without centres."""
    centres = getattr(spec, "centres", None)
    if not centres or spec is None:
        return None
    out = _basis(list(spec.exog_names), spec.intercept_columns()[0], centres)
    if out is None:
        raise CheckpointError("the spec's centres need columns its design does not have")
    return out


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
    if _basis(list(spec.exog_names), spec.intercept_columns()[0], out) is None:
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
