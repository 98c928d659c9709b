"""Design matrices straight from numpy columns, for formulas of plain numeric columns.

:meth:`ModelSpec.transform <dmixed.design.spec.ModelSpec.transform>` takes a pandas
frame and applies the column rules to every used column (text refused, numbers to
float64, the missing-value policy, infinite values refused) before the matrices are
built.  When every matrix of the spec is a plain plan of numeric columns (no factor, no
variance component, no weights: :func:`columns_design_applies`) and a partition's columns
are float or integer numpy arrays whose values are all finite, with integer group keys,
those rules change nothing: no row is dropped, no value refused, each column is its
float64 values.  :func:`columns_design` then builds the matrices from the arrays with the
very functions ``transform`` uses (:func:`~dmixed.design.matrices.fixed_effects`,
:func:`~dmixed.design.matrices.random_effects`), so they are the same numbers bit for
bit, at a fraction of the cost (one ``isfinite`` pass a column instead of the frame's
checks and masks).  Anything else returns None and the caller applies ``transform``,
which raises the errors or drops the rows as usual.

The arrays come from a pandas partition (:func:`frame_columns`: views of its numpy
columns) or from a Parquet file read without pandas (the Dask engine's chains).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .dtypes import NUMERIC, warn_rounded_integers
from .matrices import fixed_effects, needs_frame, random_effects
from .references import referenced_values
from .spec import DesignMatrices, ModelSpec

__all__ = [
    "column_sources",
    "columns_design",
    "columns_design_applies",
    "design_columns",
    "frame_columns",
]


def columns_design_applies(spec: ModelSpec) -> bool:
    """Whether :func:`columns_design` can build this spec's matrices: every matrix a
    plain plan (:func:`~dmixed.design.matrices.needs_frame` False: no factor, no
    function, no variance component), every formula column numeric, no weights."""
    return (
        spec.weights_name is None
        and not spec.vc_names
        and not needs_frame(spec)
        and all(spec.column_kinds.get(c) == NUMERIC for c in spec.formula_columns)
    )


def design_columns(spec: ModelSpec) -> list[str]:
    """The columns :func:`columns_design` reads: the formula columns and the group
    column, each once."""
    return list(dict.fromkeys([*spec.formula_columns, spec.group_name]))


def frame_columns(pdf: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray] | None:
    """``{name: values}`` of a pandas frame's columns ``names`` when each is a numpy
    column (no copy), else None (absent or repeated columns, extension dtypes)."""
    if not pdf.columns.is_unique:
        return None
    out = {}
    for name in names:
        if name not in pdf.columns or not isinstance(pdf.dtypes[name], np.dtype):
            return None
        out[name] = pdf[name].to_numpy()
    return out


def columns_design(
    spec: ModelSpec, columns: Mapping[str, np.ndarray], text_keys: bool = False
) -> DesignMatrices | None:
    """The design matrices of one partition given as numpy columns, or None.

    Parameters
    ----------
    spec : ModelSpec
        A spec for which :func:`columns_design_applies`.
    columns : mapping of str to ndarray (n,)
        At least :func:`design_columns`; the values of each column, in row order.
    text_keys : bool
        The group column, where it is an ``object`` array, holds Python ``str`` keys
        and none is missing (the caller read them from an Arrow text array whose
        ``null_count`` is 0) and is the caller's own array: it is taken as the keys as
        it is, as ``transform`` keeps such keys (no missing-value scan, no copy).
        False: object keys return None.

    Returns
    -------
    DesignMatrices or None
        What ``spec.transform`` returns for a frame of these columns (the same arrays
        bit for bit, no row dropped); None when a column is absent, not float or
        integer (booleans included), holds a value that is not finite, or the group
        keys are neither integers nor ``text_keys``' text (nor text where the spec
        converts an ``object`` group column's keys, ``group_native``):
        ``spec.transform`` then decides (and raises or drops).

    Raises
    ------
    DataError
        As ``transform``: a product of columns (``x1:x2``) that overflows.
    """
    values = {}
    for name in spec.formula_columns:
        col = columns.get(name)
        if col is None or col.ndim != 1 or col.dtype.kind not in "fiu":
            return None
        ref = spec.references.get(name)
        if ref is not None:  # as prepare_columns: exactly about the reference
            col = referenced_values(col, ref, name)
        else:
            warn_rounded_integers(col, name)  # as to_float
            col = np.asarray(col, dtype=np.float64)  # to_float's values (no copy for floats)
        centre = spec.centres.get(name)
        if centre is not None:  # as prepare_columns: about the column's centre
            col = col - centre
        if not np.isfinite(col).all():
            return None
        values[name] = col
    groups = columns.get(spec.group_name)
    text = text_keys and spec.group_native is None
    if groups is None or groups.ndim != 1 or groups.dtype.kind not in ("iuO" if text else "iu"):
        return None
    n = groups.shape[0]
    if any(v.shape[0] != n for v in values.values()):
        return None
    if groups.dtype.kind == "O":
        # text none of which is missing: what transform's group_keys gives (a copy of
        # the same objects; these are the caller's own already: no copy)
        keys = np.asarray(groups, dtype=object)
    else:
        # group_keys' dtypes: signed → int64, unsigned → uint64
        keys = np.asarray(groups, dtype=np.int64 if groups.dtype.kind == "i" else np.uint64)
    endog, exog = fixed_effects(spec, values, n)
    exog_re = random_effects(spec, values, n, exog)
    return DesignMatrices(endog, exog, exog_re, [], [], keys, None, 0, None)


def column_sources(spec: ModelSpec) -> tuple[list[str], list[int], list[int]] | None:
    """``(names, x_of, z_of)`` when every column of ``[X y]`` and of ``exog_re`` that
    :func:`columns_design` builds is a formula column's float values as they are or the
    intercept's ones: ``names`` the formula columns, ``x_of`` (``p + 1``, the response
    last) and ``z_of`` (``k_re``) each column's index in ``names``, −1 for the ones.
    None for anything else (a product of columns, a column with a reference, a spec
    :func:`columns_design_applies` refuses): the caller builds the matrices."""
    if not columns_design_applies(spec) or spec.re_kind == "none":
        return None
    rhs, lhs = spec.main_plans()
    re = [()] if spec.re_kind == "ones" else spec.plain_plan("re")
    if rhs is None or lhs is None or re is None or len(re) != len(spec.exog_re_names):
        return None
    entries = [*rhs, *lhs, *re]
    names = list(spec.formula_columns)
    if any(len(e) > 1 for e in entries) or any(
        c in spec.references or c in spec.centres for c in names
    ):
        return None
    if {e[0] for e in entries if e} != set(names):
        return None  # a formula column in no matrix: columns_design still checks it

    def of(plan) -> list[int]:
        return [names.index(e[0]) if e else -1 for e in plan]

    return names, of([*rhs, *lhs]), of(re)
