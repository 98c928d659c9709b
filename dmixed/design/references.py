"""Integer columns beyond 2**53 read exactly: an integer reference subtracted first.

float64, the type of every model matrix, holds every integer only up to 2**53 in
magnitude: nanosecond timestamps (about 1.7e18) or large ids used as covariates are
rounded (to a multiple of 256 near 1.7e18) when converted, and the fit is then that
of the rounded column, whatever the statistics' shift.  A column ``t`` of integers
(``int``/``uint`` of any width, nullable and Arrow integers too) that the formulas use
only *linearly*, as a term of its own (``y ~ t + x``, ``re_formula="1 + t"``) in a
matrix with an intercept, is read as ``t − r``: ``r`` an integer *reference* (the
first value of the column in the data, kept where its magnitude passes
:data:`REFERENCE_ABOVE`), subtracted in exact integer arithmetic before the conversion.
That is a reparametrization of the model (the intercept absorbs ``r β_t``), exact for
every row whose difference stays within 2**53: the statistics are those of ``t − r``,
and the column map (:class:`~dmixed.stats.standardize.Standardization`, its
``x_ref``/``z_ref``) maps the estimates back to the model in ``t`` (the slope,
standard errors and log-likelihood are those of the exact data; only the intercept,
``β_0 = β̃_0 − r β_t``, is rounded, as any float64 of that size).

The references are part of the spec (:attr:`~dmixed.design.spec.ModelSpec.references`,
saved with it), so every partition, saved statistics, ``dmixed update`` and
prediction on new rows read the column alike.  Every matrix the spec builds is in the
reference's coordinates; what multiplies such rows by estimates takes the estimates
there first (:func:`design_coordinates`).

A column the formulas use otherwise (``np.log(t)``, ``I(t - c)``, ``t:x``), the
response, a column of a variance component, or one whose matrix has no intercept is
read as float64 as before, with a :class:`~dmixed.errors.PrecisionWarning` where it
passes 2**53; inside ``C(t)`` integers are levels, compared exactly in their own dtype,
and group keys stay ``int64``/``uint64``: neither is rounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import CheckpointError, PrecisionWarning
from .centres import column_basis, constant_weights, own_column, reads_column
from .dtypes import EXACT_INTEGERS, NUMERIC, column_class, to_float
from .partitions import compute_located
from .warn_relay import warn_data

if TYPE_CHECKING:
    from .build import ParsedFormulas
    from .spec import ModelSpec

__all__ = [
    "REFERENCE_ABOVE",
    "choose_references",
    "column_references",
    "design_coordinates",
    "design_effects",
    "first_values",
    "linear_columns",
    "referenced_values",
    "saved_references",
]

#: A linear integer column gets a reference when the magnitude of its first value
#: passes this (2**53): below, its values are exact as they are unless they pass it
#: too, and no reference is taken (no cost for ordinary integer columns).
REFERENCE_ABOVE = EXACT_INTEGERS


def _linear_in(terms, column: str) -> bool | None:
    """True: ``column`` is read by ``terms`` only as a term of its own; False: read
    otherwise too; None: not read."""
    from formulaic.parser.types import Factor

    found = None
    for term in terms:
        for factor in term.factors:
            method = factor.eval_method
            if method is Factor.EvalMethod.LITERAL:
                continue
            lookup = method is Factor.EvalMethod.LOOKUP
            # ``t`` and ``Q('t x')`` alike: the column as itself
            if own_column(factor.expr, lookup, (column,)) == column:
                if len(term.factors) != 1:
                    return False
                found = True
            elif reads_column(factor.expr, column):
                return False
    return found


def _matrix_column(name, columns) -> str | None:
    """The column of ``columns`` that a model-matrix column named ``name`` holds as
    itself (``t``, or ``t x`` for ``Q("t x")``: :func:`~dmixed.design.centres.own_column`),
    else None."""
    name = str(name)
    return name if name in columns else own_column(name, False, columns)


def _in_matrix(names, column: str) -> bool:
    """Whether one of a matrix's column ``names`` holds ``column`` as itself."""
    return any(_matrix_column(n, (column,)) == column for n in names)


def _formula_use(parsed: ParsedFormulas, which: str, column: str) -> bool | None:
    """:func:`_linear_in` for the right-hand side of the main formula (``"main"``) or
    the ``re_formula`` (``"re"``)."""
    plain = parsed.plain.get(which)
    if plain is not None:  # plain column names: every term a column of its own
        return True if column in plain.columns else None
    info = parsed.rhs if which == "main" else parsed.re
    if column not in info.columns:
        return None
    return _linear_in(parsed.rhs_terms if which == "main" else parsed.re_terms, column)


def linear_columns(spec: ModelSpec, parsed: ParsedFormulas, integers) -> list[str]:
    """The integer columns a reference can be taken for: of ``integers`` (the numeric
    columns of an integer dtype, not inside ``C()``), not the response nor read by a
    variance component, and read only as a term of its own by the fixed-effects formula
    and the ``re_formula``, each of whose matrices holding it has an intercept."""
    candidates = [c for c in spec.formula_columns if c in integers]
    vc_columns = {c for info in parsed.vc.values() for c in info.columns}
    out = []
    for c in candidates:
        if spec.column_kinds.get(c) != NUMERIC or c in parsed.lhs.columns or c in vc_columns:
            continue
        uses = [_formula_use(parsed, "main", c)]
        if spec.re_kind == "formula":
            uses.append(_formula_use(parsed, "re", c))
        if False in uses or not any(uses):
            continue
        x_int, z_int = spec.intercept_columns()
        if uses[0] and (x_int < 0 or not _in_matrix(spec.exog_names, c)):
            continue
        if len(uses) > 1 and uses[1] and (z_int < 0 or not _in_matrix(spec.exog_re_names, c)):
            continue
        out.append(c)
    return out


def first_values(data, columns: list[str], dask_input: bool, client=None) -> dict[str, int]:
    """The first non-missing value of each column, in row order, as a Python int (a
    Dask collection's partitions are read in order until each column has one: usually
    one partition, on ``client``: :func:`~dmixed.design.partitions.compute_located`, its
    data errors named for their partition, file and line);
    columns with none are left out."""
    found: dict[str, int] = {}
    if not dask_input:
        for c in columns:
            _first_into(found, data[c], c)
        return found
    for i in range(data.npartitions):
        todo = [c for c in columns if c not in found]
        if not todo:
            break
        (part,) = compute_located(
            [data[todo].partitions[i]], data, client, "reading the first values", i
        )
        for c in todo:
            _first_into(found, part[c], c)
    return found


def _first_into(found: dict, s: pd.Series, c: str) -> None:
    if isinstance(s.dtype, np.dtype):  # numpy integers: none missing
        if len(s):
            found[c] = int(s.to_numpy()[0])
        return
    valid = s.notna().to_numpy(dtype=bool)
    if valid.any():
        found[c] = int(s.iloc[int(valid.argmax())])


def choose_references(
    spec: ModelSpec, parsed: ParsedFormulas, integers, data, dask_input: bool, client=None
):
    """``{column: reference}`` for the spec's linear integer columns
    (:func:`linear_columns`; ``integers``: the numeric columns of an integer dtype) whose
    first value passes :data:`REFERENCE_ABOVE` in magnitude; empty (and no read of the
    data) when there is none.  ``client``: where a Dask collection is read (None: the
    current client, else Dask's default scheduler)."""
    columns = linear_columns(spec, parsed, integers)
    if not columns:
        return {}
    firsts = first_values(data, columns, dask_input, client)
    return {c: v for c, v in firsts.items() if abs(v) > REFERENCE_ABOVE}


def saved_references(saved, spec: ModelSpec) -> dict[str, int]:
    """The references of a saved spec (``None``: saved without, as before they
    existed), checked: each a whole number in the 64-bit range, of a numeric column
    that is a column of the spec's fixed- or random-effects matrix.

    Raises
    ------
    CheckpointError
        A malformed entry.
    """
    if not saved:
        return {}
    if not isinstance(saved, dict):
        raise CheckpointError(f"malformed saved references: {saved!r}")
    out = {}
    for c, v in saved.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, int)
            or not -(2**63) <= v < 2**64
            or spec.column_kinds.get(c) != NUMERIC
            or not (_in_matrix(spec.exog_names, c) or _in_matrix(spec.exog_re_names, c))
        ):
            raise CheckpointError(f"malformed saved reference of column {c!r}: {v!r}")
        out[c] = v
    return out


def _integers(s: pd.Series) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(values, missing)`` of an integer column as int64 or uint64 (0 where missing;
    ``missing`` None when none is); None when the column is not of integers."""
    if column_class(s.dtype) != "int":
        return None
    unsigned = pd.api.types.is_unsigned_integer_dtype(s.dtype) or (
        isinstance(s.dtype, pd.ArrowDtype) and str(s.dtype).startswith("uint")
    )
    dtype = np.uint64 if unsigned else np.int64
    if isinstance(s.dtype, np.dtype):
        return s.to_numpy(dtype=dtype), None
    missing = s.isna().to_numpy(dtype=bool)
    return s.to_numpy(dtype=dtype, na_value=0), (missing if missing.any() else None)


def referenced_values(s: pd.Series | np.ndarray, ref: int, name: str) -> np.ndarray:
    """``s − ref`` as float64, NaN where missing: exact for every integer value within
    2**53 of ``ref`` (the difference is taken in 64-bit integers, modulo 2**64, and
    checked for overflow); a float column (new rows given as floats) is taken in
    float64 (:func:`~dmixed.design.dtypes.to_float`, and its errors).

    Warns
    -----
    PrecisionWarning
        Where a difference passes 2**53 (the column spans more than float64 holds
        exactly about its reference): those values are rounded.
    """
    if isinstance(s, np.ndarray):
        s = pd.Series(s, copy=False)
    got = _integers(s)
    if got is None:
        return to_float(s, name) - float(ref)
    values, missing = got
    diff, exact = _difference(values, ref)
    out = diff.astype(np.float64)
    if not exact.all():
        out[~exact] = values[~exact].astype(np.float64) - float(ref)
    far = ~exact | (diff > EXACT_INTEGERS) | (diff < -EXACT_INTEGERS)  # (no abs: -2**63)
    if missing is not None:
        out[missing] = np.nan
        far &= ~missing
    if far.any():
        warn_data(
            f"column {name!r} spans more than 2**53 about its reference {ref} (its "
            f"integers are read as differences from it, exactly up to 2**53): "
            f"{int(far.sum())} value(s) are rounded before the fit",
            PrecisionWarning,
            key=f"span {name}",
        )
    return out


def _difference(values: np.ndarray, ref: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values − ref)`` in int64 taken modulo 2**64, and where that is the true
    difference (it is unless the difference passes the int64 range)."""
    wrapped = (values.view(np.uint64) - np.uint64(ref % 2**64)).view(np.int64)
    info = np.iinfo(values.dtype)
    if info.min <= ref <= info.max:
        above = values >= values.dtype.type(ref)
    else:  # a reference outside this dtype (new rows of another integer dtype)
        above = np.full(values.shape, ref < info.min)
    return wrapped, (wrapped >= 0) == above


def column_references(spec: ModelSpec) -> tuple[np.ndarray, ...] | None:
    """``(x_ref (p,), z_ref (q,))``: each model-matrix column's reference as float64
    (0 for the others), then, where the spec has centres, the basis ``D − I`` (p × p)
    of its design (:func:`~dmixed.design.centres.column_basis`; zeros without), and,
    for a design without an intercept whose columns give one, their weights
    (:func:`~dmixed.design.centres.constant_weights`); None when the spec has none of
    them."""
    refs = getattr(spec, "references", None) or {}
    basis = column_basis(spec)
    ones = constant_weights(spec)
    if not refs and basis is None and ones is None:
        return None
    x = np.array([_reference(refs, c) for c in spec.exog_names])
    z = np.array([_reference(refs, c) for c in spec.exog_re_names])
    if ones is not None:  # a design without an intercept whose columns give one
        p = len(spec.exog_names)
        return (x, z, np.zeros((p, p)) if basis is None else basis, ones)
    return (x, z) if basis is None else (x, z, basis)


def _reference(refs: dict[str, int], name) -> float:
    """The reference of the column a model-matrix column holds as itself, 0 for none."""
    column = _matrix_column(name, refs)
    return float(refs[column]) if column is not None else 0.0


def design_coordinates(spec, fe_params, blup) -> tuple[np.ndarray, np.ndarray]:
    """The fixed effects (p,) and padded random effects (G, r) of the model in the
    columns ``t`` in the coordinates of the spec's matrices (``t − r``): the intercept
    gains ``Σ r_j β_j`` (the random intercept ``Σ r_a b_a``, :func:`design_effects`),
    in float64 (so within about ``ε |r β_t|`` of the exact values); the estimates as
    they are when the spec has no reference."""
    fe = np.asarray(fe_params, dtype=np.float64)
    refs = None if spec is None else column_references(spec)
    if refs is None:
        return fe, blup
    x_ref = refs[0]
    x_int = spec.intercept_columns()[0]
    raw = fe
    if x_int >= 0 and x_ref.any():
        fe = fe.copy()
        fe[x_int] += float(x_ref @ raw)
    if len(refs) > 2:  # products of centred columns: β_d = D β (dmixed.design.centres)
        fe = fe + refs[2] @ raw
    return fe, design_effects(spec, blup)


def design_effects(spec, effects):
    """Padded random effects (G, r) of the model in ``t`` in the coordinates of the
    spec's ``exog_re`` (:func:`design_coordinates`); as they are without a reference."""
    refs = None if spec is None else column_references(spec)
    if refs is None or effects is None or not np.size(effects) or not refs[1].any():
        return effects
    z_ref = refs[1]
    z_int = spec.intercept_columns()[1]
    if z_int < 0:
        return effects
    out = np.array(effects, dtype=np.float64)
    out[:, z_int] += out[:, : z_ref.size] @ z_ref
    return out
