"""Data / formula layer: one model spec for the whole dataset, applied per partition.

`build_spec` looks at the whole dataset once (a pandas DataFrame, or a Dask
DataFrame: its meta plus one cheap pass for the levels of categorical columns)
and returns a picklable `ModelSpec`.  `ModelSpec.transform` turns one pandas
partition into `DesignMatrices`; every partition yields the same columns in the
same order with the same names, whatever levels or dtypes the partition holds.

Conventions follow statsmodels' ``MixedLM.from_formula`` (see DESIGN.md §8-10):

* random-effects names replace ``Intercept`` by the group column's name;
  no ``re_formula`` and no ``vc_formula`` gives a random intercept, no
  ``re_formula`` with a ``vc_formula`` gives no ``exog_re`` at all;
* variance components are sorted by name; each component's design is evaluated
  with one global formulaic spec and returned sparsely (per row: global column
  indices and values of the non-zero entries), so that a component with 10^5
  levels never becomes a dense matrix.

Formulas are parsed by formulaic.  Before any partition reaches formulaic its
columns are normalised: strings (object, ``str``, ``string[pyarrow]``, Arrow
strings and dictionaries) and categoricals become pandas Categoricals with the
global levels, numbers (numpy, nullable and Arrow ints/floats/booleans) become
float64 with NaN for missing.  Raw strings never reach formulaic (it would
silently treat Arrow strings as numbers, DESIGN.md §10).
"""

from __future__ import annotations

import ast
import builtins
import difflib
import itertools
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DesignMatrices", "ModelSpec", "build_spec"]

# Column kinds (how a raw column is normalised before formulaic sees it).
_CAT = "categorical"  # labels -> pandas Categorical with the global levels
_NUM = "numeric"  # numbers -> float64, NaN = missing
_NUMCAT = "numeric-levels"  # numbers used inside C(): native dtype, global levels

# Transforms that learn state from the data they are applied to: evaluated per
# partition they would learn something different on every partition.
_LEARNING_TRANSFORMS = {
    "center": "centers the data with its mean",
    "scale": "scales the data with its mean and standard deviation",
    "standardize": "scales the data with its mean and standard deviation",
    "poly": "learns its orthogonal basis from the data",
    "bs": "learns its knots from the data",
    "cr": "learns its knots from the data",
    "cs": "learns its knots from the data",
    "cc": "learns its knots from the data",
}
_ROW_ORDER_TRANSFORMS = {"lag": "depends on the order of the rows"}
# numpy functions that are elementwise but not ufuncs.
_NUMPY_ELEMENTWISE = {"where", "clip", "round", "around", "nan_to_num", "select"}
# methods that may be called on a column inside an expression (elementwise).
_ELEMENTWISE_METHODS = {"clip", "round", "abs", "astype", "pow", "isin"}
_BUILTINS_OK = {"abs", "True", "False", "None"}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clean(msg: object) -> str:
    return _ANSI.sub("", str(msg)).replace("⧛", "").replace("⧚", "")


def _plural(k: int, word: str = "row") -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


# ---------------------------------------------------------------------------
# public containers
# ---------------------------------------------------------------------------


@dataclass
class DesignMatrices:
    """Model matrices of one partition (rows with missing values removed).

    ``vc_cols[l]`` / ``vc_vals[l]`` hold, for variance component ``l``, each
    row's non-zero entries: global column index into
    ``ModelSpec.vc_column_names[l]`` (``-1`` = no entry) and value (0 where the
    index is -1).  Their width ``k_l`` is the largest number of non-zero
    entries of a row *in this partition* (1 for a factor's indicators, 0 if no
    row of the partition has an entry), so it may differ between partitions.
    """

    endog: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray
    vc_cols: list[np.ndarray]
    vc_vals: list[np.ndarray]
    groups: np.ndarray
    weights: np.ndarray | None
    n_dropped: int

    @property
    def nobs(self) -> int:
        return int(self.endog.shape[0])


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build the model matrices of any partition.

    Built once from the whole dataset by `build_spec`; picklable (it is
    shipped to Dask workers).  Fields after ``columns_used`` are extra
    (provenance and per-column normalisation) and may be inspected.
    """

    endog_name: str
    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]
    vc_column_names: list[list[str]]
    group_name: str
    weights_name: str | None
    missing: str
    columns_used: list[str]
    formula: str = ""
    re_formula: str | None = None
    vc_formula: dict[str, str] | None = None
    column_kinds: dict[str, str] = field(default_factory=dict)
    levels: dict[str, list] = field(default_factory=dict, repr=False)
    _native: dict[str, str] = field(default_factory=dict, repr=False)
    _formula_columns: list[str] = field(default_factory=list, repr=False)
    _main_spec: Any = field(default=None, repr=False, compare=False)
    _re_spec: Any = field(default=None, repr=False, compare=False)
    _re_kind: str = "ones"  # "ones", "none" or "formula"
    _vc_plans: list = field(default_factory=list, repr=False, compare=False)

    # -- pickling: drop per-process caches ---------------------------------
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    def _cached(self, key: str, make):
        name = "_cache_" + key
        value = self.__dict__.get(name)
        if value is None:
            value = make()
            object.__setattr__(self, name, value)
        return value

    def _cat_dtype(self, col: str) -> pd.CategoricalDtype:
        return self._cached("dtype_" + col, lambda: pd.CategoricalDtype(self.levels[col]))

    def _level_index(self, col: str) -> pd.Index:
        return self._cached(
            "index_" + col, lambda: pd.Index(np.asarray(self.levels[col], dtype=object))
        )

    @property
    def k_fe(self) -> int:
        return len(self.exog_names)

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    # -- per-partition application ------------------------------------------
    def transform(self, df: pd.DataFrame) -> DesignMatrices:
        """Apply the spec to one pandas partition."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"transform expects a pandas DataFrame, got {type(df).__name__}")
        arrays, keep, n_dropped = self._prepare(df)
        n = int(keep.sum()) if keep is not None else len(df)
        if keep is not None:
            arrays = {c: a[keep] for c, a in arrays.items()}
        frame = self._frame(arrays, n)

        endog, exog = self._eval_main(frame, n)
        exog_re = self._eval_re(frame, n)
        vc_cols, vc_vals = [], []
        for name, plan in zip(self.vc_names, self._vc_plans):
            c, v = _eval_vc(plan, frame, self, n, name)
            vc_cols.append(c)
            vc_vals.append(v)

        groups = self._groups_array(df, keep)
        weights = None
        if self.weights_name is not None:
            weights = np.ascontiguousarray(arrays["\0w"], dtype=np.float64)
        return DesignMatrices(
            endog=endog,
            exog=exog,
            exog_re=exog_re,
            vc_cols=vc_cols,
            vc_vals=vc_vals,
            groups=groups,
            weights=weights,
            n_dropped=n_dropped,
        )

    # -- internals ----------------------------------------------------------
    def _prepare(self, df: pd.DataFrame):
        """Check and normalise the used columns of one frame.

        Returns (arrays, keep, n_dropped): arrays maps formula columns to
        codes (categorical), float64 (numeric) or native values (numeric
        levels), plus "\\0w" for weights; keep is None when no row is dropped.
        """
        absent = [c for c in self.columns_used if c not in df.columns]
        if absent:
            raise ValueError(
                "columns missing from the data: "
                + ", ".join(repr(c) for c in absent)
                + _suggest(absent[0], df.columns)
            )
        for c in self.columns_used:
            if isinstance(df[c], pd.DataFrame):
                raise ValueError(f"column {c!r} appears more than once in the data")

        arrays: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for c in self._formula_columns:
            kind = self.column_kinds[c]
            s = df[c]
            if kind == _CAT:
                codes = _codes(s, c, self._level_index(c), self.levels[c])
                arrays[c] = codes
                missing[c] = codes < 0
            else:
                vals = _to_float(s, c)
                miss = np.isnan(vals)
                _check_finite(vals, miss, c)
                missing[c] = miss
                if kind == _NUMCAT:
                    _check_known_numbers(vals, miss, c, self.levels[c])
                    arrays[c] = s  # converted to its native dtype after dropping
                else:
                    arrays[c] = vals
        g = df[self.group_name]
        missing[self.group_name] = np.asarray(g.isna(), dtype=bool) | missing.get(
            self.group_name, False
        )
        if self.weights_name is not None:
            w = df[self.weights_name]
            if _column_class(w.dtype) not in ("int", "float", "bool"):
                raise ValueError(
                    f"weights column {self.weights_name!r} is not numeric (dtype {w.dtype})"
                )
            wv = _to_float(w, self.weights_name)
            wmiss = np.isnan(wv)
            _check_finite(wv, wmiss, self.weights_name)
            missing[self.weights_name] = wmiss | missing.get(self.weights_name, False)
            arrays["\0w"] = wv

        counts = {c: int(m.sum()) for c, m in missing.items()}
        bad = [c for c in self.columns_used if counts.get(c, 0)]
        keep = None
        n_dropped = 0
        if bad:
            if self.missing == "raise":
                raise ValueError(
                    "missing values in "
                    + ", ".join(f"column {c!r} ({_plural(counts[c])})" for c in bad)
                    + '; pass missing="drop" to drop them'
                )
            keep = ~np.logical_or.reduce([missing[c] for c in bad])
            n_dropped = int(len(df) - keep.sum())

        if self.weights_name is not None:
            wv = arrays["\0w"] if keep is None else arrays["\0w"][keep]
            nz, neg = int((wv == 0).sum()), int((wv < 0).sum())
            if nz or neg:
                parts = []
                if nz:
                    parts.append(f"{_plural(nz, 'zero value')}")
                if neg:
                    parts.append(f"{_plural(neg, 'negative value')}")
                raise ValueError(
                    f"weights column {self.weights_name!r} has "
                    + " and ".join(parts)
                    + "; weights must be positive"
                )

        for c in self._formula_columns:
            if self.column_kinds[c] == _NUMCAT:
                s = arrays[c]
                if keep is not None:
                    s = s[keep]
                arrays[c] = _native(s, self._native[c])
                keep_native = True  # noqa: F841  (already filtered)
        if keep is not None:
            # numeric-level columns were filtered above; mark them so the
            # caller's filter does not apply twice.
            for c in self._formula_columns:
                if self.column_kinds[c] == _NUMCAT:
                    arrays[c] = _Prefiltered(arrays[c])
        return _FilterDict(arrays), keep, n_dropped

    def _frame(self, arrays, n: int) -> pd.DataFrame:
        data = {}
        for c in self._formula_columns:
            kind = self.column_kinds[c]
            a = arrays[c]
            if kind == _CAT:
                data[c] = pd.Categorical.from_codes(a, dtype=self._cat_dtype(c), validate=False)
            else:
                data[c] = a
        return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)

    def _eval_main(self, frame: pd.DataFrame, n: int):
        p = len(self.exog_names)
        if n == 0:
            return np.empty(0), np.empty((0, p))
        mm = _materialize(self._main_spec, frame, self.formula)
        endog = np.asarray(mm.lhs, dtype=np.float64).reshape(n, -1)[:, 0].copy()
        exog = np.ascontiguousarray(np.asarray(mm.rhs, dtype=np.float64).reshape(n, p))
        _check_output(endog[:, None], [self.endog_name], "response")
        _check_output(exog, self.exog_names, "fixed-effects design")
        return endog, exog

    def _eval_re(self, frame: pd.DataFrame, n: int) -> np.ndarray:
        if self._re_kind == "ones":
            return np.ones((n, 1))
        if self._re_kind == "none":
            return np.empty((n, 0))
        q = len(self.exog_re_names)
        if n == 0:
            return np.empty((0, q))
        mm = _materialize(self._re_spec, frame, self.re_formula)
        out = np.ascontiguousarray(np.asarray(mm, dtype=np.float64).reshape(n, q))
        _check_output(out, self.exog_re_names, "random-effects design")
        return out

    def _groups_array(self, df: pd.DataFrame, keep) -> np.ndarray:
        s = df[self.group_name]
        if keep is not None:
            s = s[keep]
        dt = s.dtype
        cls = _column_class(dt)
        if isinstance(dt, pd.CategoricalDtype):
            cats = dt.categories
            out = np.asarray(cats.to_numpy(dtype=object) if cats.dtype == object
                             or isinstance(cats.dtype, (pd.StringDtype, pd.ArrowDtype))
                             else cats.to_numpy())
            return out[s.cat.codes.to_numpy()]
        if cls in ("string", "arrow-dict"):
            return s.to_numpy(dtype=object)
        if cls == "int":
            return s.to_numpy(dtype=np.int64)
        if cls == "float":
            return s.to_numpy(dtype=np.float64)
        if cls == "bool":
            return s.to_numpy(dtype=bool)
        return s.to_numpy()


class _Prefiltered:
    """Marks an array that already has the row filter applied."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


class _FilterDict(dict):
    """dict whose filtering (in transform) skips pre-filtered entries."""


def _apply_keep(arrays: dict, keep) -> dict:
    out = {}
    for c, a in arrays.items():
        if isinstance(a, _Prefiltered):
            out[c] = a.values
        elif keep is None:
            out[c] = a
        else:
            out[c] = a[keep]
    return out


# Replace the simple filter in ModelSpec.transform with the marker-aware one.
def _transform(self: ModelSpec, df: pd.DataFrame) -> DesignMatrices:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"transform expects a pandas DataFrame, got {type(df).__name__}")
    arrays, keep, n_dropped = self._prepare(df)
    n = int(keep.sum()) if keep is not None else len(df)
    arrays = _apply_keep(arrays, keep)
    frame = self._frame(arrays, n)
    endog, exog = self._eval_main(frame, n)
    exog_re = self._eval_re(frame, n)
    vc_cols, vc_vals = [], []
    for name, plan in zip(self.vc_names, self._vc_plans):
        c, v = _eval_vc(plan, frame, self, n, name)
        vc_cols.append(c)
        vc_vals.append(v)
    groups = self._groups_array(df, keep)
    weights = None
    if self.weights_name is not None:
        weights = np.ascontiguousarray(arrays["\0w"], dtype=np.float64)
    return DesignMatrices(
        endog=endog,
        exog=exog,
        exog_re=exog_re,
        vc_cols=vc_cols,
        vc_vals=vc_vals,
        groups=groups,
        weights=weights,
        n_dropped=n_dropped,
    )
