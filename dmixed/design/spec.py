"""Data / formula layer: one model spec for the whole dataset, applied per partition.

`build_spec` looks at the whole dataset once (a pandas DataFrame, or a Dask
DataFrame: its meta plus one cheap pass for the levels of categorical columns)
and returns a picklable `ModelSpec`.  `ModelSpec.transform` turns one pandas
partition into `DesignMatrices`; every partition yields the same columns in the
same order with the same names, whatever levels or dtypes the partition holds.

Conventions follow statsmodels' ``MixedLM.from_formula`` (DESIGN.md §8-10):

* random-effects names replace ``Intercept`` by the group column's name;
  no ``re_formula`` and no ``vc_formula`` gives a random intercept, no
  ``re_formula`` with a ``vc_formula`` gives no ``exog_re`` at all;
* variance components are sorted by name; each component's design is evaluated
  with one global spec and returned sparsely (per row: global column indices
  and values of the non-zero entries), so that a component with 10^5 levels
  never becomes a dense matrix.  Every categorical factor of a VC formula must
  be coded with one indicator per level (statsmodels evaluates VC formulas
  within groups, where contrast coding would depend on the group).

Formulas are parsed by formulaic; column names are formulaic's.  Before any
partition reaches formulaic its columns are normalised: strings (object,
``str``, ``string[pyarrow]``, Arrow strings and dictionaries) and categoricals
become pandas Categoricals with the global levels, numbers (numpy, nullable and
Arrow ints/floats/booleans) become float64 with NaN for missing; numeric columns
used inside ``C()`` keep their integer/float/bool values and get global levels.
Raw strings never reach formulaic (it would silently treat Arrow strings as
numbers, DESIGN.md §10).

Levels: strings and unknown-category columns use their sorted distinct values;
categoricals use their declared categories that occur in the data, in declared
order (a Dask column with known categories uses the declared categories as they
are when ``missing="raise"``, since its data is not read).  With
``missing="drop"`` levels come from the rows kept.

Transforms that learn from the data they are given (``center``, ``scale``,
``standardize``, ``poly``, splines, ``lag``, numpy reductions, column methods
such as ``.mean()``) are refused: on partitions they would learn something
different each time.
"""

from __future__ import annotations

import ast
import difflib
import itertools
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DesignMatrices", "ModelSpec", "build_spec"]

# Column kinds: how a raw column is normalised before formulaic sees it.
_CAT = "categorical"  # labels -> pandas Categorical with the global levels
_NUM = "numeric"  # numbers -> float64 (NaN = missing)
_NUMCAT = "numeric-levels"  # numbers used inside C(): native dtype, global levels

# Transforms that learn state from the data: evaluated per partition they would
# learn something different on every partition.
_LEARNING_TRANSFORMS = {
    "center": "subtracts the mean of the data it is given",
    "scale": "uses the mean and standard deviation of the data it is given",
    "standardize": "uses the mean and standard deviation of the data it is given",
    "poly": "learns its orthogonal basis from the data it is given",
    "bs": "learns its knots from the data it is given",
    "cr": "learns its knots from the data it is given",
    "cs": "learns its knots from the data it is given",
    "cc": "learns its knots from the data it is given",
    "lag": "depends on the order of the rows and on partition boundaries",
}
# numpy functions that are elementwise but not ufuncs.
_NUMPY_ELEMENTWISE = {"where", "clip", "round", "around", "nan_to_num"}
# methods that may be called on a column inside an expression (elementwise).
_ELEMENTWISE_METHODS = {"clip", "round", "abs", "astype", "pow", "isin"}
_BUILTINS_OK = {"abs"}
_FORMULA_ROLES = ("formula", "re_formula", "vc_formula")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clean(msg: object) -> str:
    text = _ANSI.sub("", str(msg)).replace("⧛", "").replace("⧚", "")
    return " ".join(text.split())


def _plural(k: int, word: str = "row") -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _suggest(name: str, candidates) -> str:
    cands = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(name), cands, n=3, cutoff=0.5)
    if close:
        return "; close matches: " + ", ".join(repr(c) for c in close)
    shown = ", ".join(repr(c) for c in cands[:20])
    more = ", ..." if len(cands) > 20 else ""
    return f"; available columns: {shown}{more}"


# ---------------------------------------------------------------------------
# public containers
# ---------------------------------------------------------------------------


@dataclass
class DesignMatrices:
    """Model matrices of one partition (rows with missing values removed).

    ``vc_cols[l]`` / ``vc_vals[l]`` hold, for variance component ``l``, each
    row's non-zero entries: the global column index into
    ``ModelSpec.vc_column_names[l]`` (``-1`` = no entry) and the value (0 where
    the index is -1).  Their width ``k_l`` is the largest number of non-zero
    entries of a row *in this partition* (1 for the indicators of one factor;
    0 if no row of the partition has an entry), so it may differ between
    partitions.
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

    Built once from the whole dataset by `build_spec`; picklable (it is shipped
    to Dask workers).  The fields after ``columns_used`` are extras: the
    formulas (provenance), how each used column is normalised, and the global
    levels of categorical columns.
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
    _response_only: list[str] = field(default_factory=list, repr=False)
    _main_spec: Any = field(default=None, repr=False, compare=False)
    _re_spec: Any = field(default=None, repr=False, compare=False)
    _re_kind: str = field(default="ones", repr=False)  # "ones" | "none" | "formula"
    _vc_plans: list = field(default_factory=list, repr=False, compare=False)

    # -- pickling: drop per-process caches -----------------------------------
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        name = "_cache_" + key
        value = self.__dict__.get(name)
        if value is None:
            value = make()
            object.__setattr__(self, name, value)
        return value

    def _cat_dtype(self, col: str) -> pd.CategoricalDtype:
        return self._cached("dtype:" + col, lambda: pd.CategoricalDtype(self.levels[col]))

    def _level_index(self, col: str) -> pd.Index:
        return self._cached(
            "index:" + col, lambda: pd.Index(np.asarray(self.levels[col], dtype=object))
        )

    @property
    def k_fe(self) -> int:
        return len(self.exog_names)

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    @property
    def k_vc(self) -> int:
        return len(self.vc_names)

    # -- JSON round trip (saved results predict without the original data) ----
    def to_dict(self) -> dict:
        """What is needed to rebuild this spec, as JSON-serializable values.

        The formulas, the role of every column, how each column is normalised and
        the global levels of the categorical ones.  :meth:`from_dict` rebuilds the
        formulaic specs from a prototype frame holding exactly those levels.
        """

        def plain(values: list) -> list:
            return [v.item() if isinstance(v, np.generic) else v for v in values]

        return {
            "formula": self.formula,
            "re_formula": self.re_formula,
            "vc_formula": self.vc_formula,
            "groups": self.group_name,
            "weights": self.weights_name,
            "missing": self.missing,
            "column_kinds": dict(self.column_kinds),
            "native": dict(self._native),
            "levels": {c: plain(list(v)) for c, v in self.levels.items()},
            "exog_names": list(self.exog_names),
            "exog_re_names": list(self.exog_re_names),
            "vc_column_names": [list(c) for c in self.vc_column_names],
        }

    @classmethod
    def from_dict(cls, state: dict) -> ModelSpec:
        """Rebuild a spec saved with :meth:`to_dict` (no data needed)."""
        kinds = state["column_kinds"]
        levels = state["levels"]
        proto = _prototype(list(kinds), kinds, state["native"], levels, size=None)
        size = len(proto)
        proto[state["groups"]] = np.arange(size) % 2
        if state["weights"] is not None:
            proto[state["weights"]] = 1.0
        spec = build_spec(
            proto,
            state["formula"],
            state["groups"],
            re_formula=state["re_formula"],
            vc_formula=state["vc_formula"],
            weights=state["weights"],
            missing=state["missing"],
        )
        for key in ("exog_names", "exog_re_names", "vc_column_names"):
            if [list(x) if isinstance(x, list) else x for x in getattr(spec, key)] != state[key]:
                raise ValueError(
                    f"the saved model spec does not rebuild to the same {key}: "
                    f"{getattr(spec, key)} != {state[key]}"
                )
        return spec

    # -- per-partition application -------------------------------------------
    def transform(self, df: pd.DataFrame, *, response: bool = True) -> DesignMatrices:
        """Apply the spec to one pandas partition (any row order, any subset of levels).

        ``response=False`` is for new rows to predict: the columns only the
        response uses and the weights column may then be absent; ``endog`` is
        NaN and ``weights`` None, and neither takes part in missing-value
        handling.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"transform expects a pandas DataFrame, got {type(df).__name__}")
        arrays, keep, n_dropped = self._prepare(df, response)
        n = len(df) - n_dropped
        frame = self._frame(arrays, n)
        endog, exog = self._eval_main(frame, n, response)
        exog_re = self._eval_re(frame, n, exog)
        vc_cols, vc_vals = [], []
        for name, plan in zip(self.vc_names, self._vc_plans, strict=True):
            c, v = _eval_vc(plan, frame, n, name)
            vc_cols.append(c)
            vc_vals.append(v)
        return DesignMatrices(
            endog=endog,
            exog=exog,
            exog_re=exog_re,
            vc_cols=vc_cols,
            vc_vals=vc_vals,
            groups=self._groups_array(df, keep),
            weights=arrays.get("\0weights"),
            n_dropped=n_dropped,
        )

    # -- internals -----------------------------------------------------------
    def _prepare(self, df: pd.DataFrame, response: bool = True):
        """Check and normalise the used columns of one frame, dropping rows.

        Returns ``(arrays, keep, n_dropped)``: arrays maps each formula column
        to category codes / float64 / native values (rows already filtered),
        plus ``"\\0weights"``; keep is None when no row is dropped.
        """
        skip: set = set()
        if not response:
            skip.update(self._response_only)
            if self.weights_name not in self._formula_columns + [self.group_name]:
                skip.add(self.weights_name)
        used = [c for c in self.columns_used if c not in skip]
        formula_columns = [c for c in self._formula_columns if c not in skip]
        absent = [c for c in used if c not in df.columns]
        if absent:
            raise ValueError(
                "column(s) not found in the data: "
                + ", ".join(repr(c) for c in absent)
                + _suggest(absent[0], df.columns)
            )
        for c in used:
            if isinstance(df[c], pd.DataFrame):
                raise ValueError(f"column {c!r} appears more than once in the data")

        arrays: dict[str, Any] = {}
        missing: dict[str, np.ndarray] = {}
        unknown: dict[str, np.ndarray] = {}
        for c in formula_columns:
            kind = self.column_kinds[c]
            s = df[c]
            if kind == _CAT:
                codes = _codes(s, self._level_index(c))
                arrays[c] = codes
                missing[c] = codes == -1
                unknown[c] = codes == -2
            else:
                vals = _to_float(s, c)
                miss = np.isnan(vals)
                _check_finite(vals, miss, c)
                missing[c] = miss
                if kind == _NUMCAT:
                    unknown[c] = _unknown_numbers(vals, miss, self.levels[c])
                    arrays[c] = (s, vals)
                else:
                    arrays[c] = vals
        gmiss = np.asarray(df[self.group_name].isna(), dtype=bool)
        if self.group_name in missing:
            missing[self.group_name] = missing[self.group_name] | gmiss
        else:
            missing[self.group_name] = gmiss
        if self.weights_name is not None and response:
            wname = self.weights_name
            w = df[wname]
            if _column_class(w.dtype) not in ("int", "float", "bool"):
                raise ValueError(f"weights column {wname!r} is not numeric (dtype {w.dtype})")
            wv = _to_float(w, wname)
            wmiss = np.isnan(wv)
            _check_finite(wv, wmiss, wname)
            missing[wname] = missing[wname] | wmiss if wname in missing else wmiss
            arrays["\0weights"] = wv

        counts = {c: int(m.sum()) for c, m in missing.items()}
        bad = [c for c in used if counts.get(c, 0)]
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
        for c, unk in unknown.items():
            if keep is not None:
                unk = unk & keep
            if unk.any():
                values = df[c].to_numpy(dtype=object)[unk]
                raise ValueError(
                    f"column {c!r} has levels not seen when the model spec was built: "
                    + ", ".join(repr(_py([v])[0]) for v in list(dict.fromkeys(values))[:5])
                )

        out: dict[str, Any] = {}
        for c, a in arrays.items():
            if c != "\0weights" and self.column_kinds[c] == _NUMCAT:
                s, _vals = a
                if keep is not None:
                    s = s[keep]
                out[c] = _native(s, self._native[c])
            else:
                out[c] = a if keep is None else a[keep]

        if "\0weights" in out:
            wv = out["\0weights"]
            nz, neg = int((wv == 0).sum()), int((wv < 0).sum())
            if nz or neg:
                parts = [_plural(nz, "zero value")] if nz else []
                parts += [_plural(neg, "negative value")] if neg else []
                raise ValueError(
                    f"weights column {self.weights_name!r} has "
                    + " and ".join(parts)
                    + "; weights must be positive"
                )
            out["\0weights"] = np.ascontiguousarray(wv, dtype=np.float64)
        return out, keep, n_dropped

    def _frame(self, arrays: dict, n: int) -> pd.DataFrame:
        data = {}
        for c in self._formula_columns:
            if c not in arrays:
                continue
            a = arrays[c]
            if self.column_kinds[c] == _CAT:
                data[c] = pd.Categorical.from_codes(a, dtype=self._cat_dtype(c), validate=False)
            else:
                data[c] = a
        return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)

    def _plain_plan(self, which: str) -> list[tuple[str, ...]] | None:
        """Columns of a model matrix that are products of numeric columns, or None.

        ``"rhs"`` (fixed effects), ``"lhs"`` (response) or ``"re"``: when every term is
        the intercept, a numeric column or an interaction of numeric columns, column j
        is the product of the columns named in ``plan[j]`` (none: a column of ones), and
        the matrix is built with numpy instead of formulaic, which costs several times
        more on large partitions.  Anything else (categoricals, ``I()``, functions)
        goes through formulaic.
        """

        def make():
            spec = self._re_spec if which == "re" else getattr(self._main_spec, which, None)
            if spec is None:
                return False
            plan = []
            for term in spec.terms:
                names = []
                for factor in term.factors:
                    method = getattr(factor.eval_method, "value", "")
                    if method == "literal" and factor.expr == "1" and len(term.factors) == 1:
                        continue
                    if method != "lookup" or self.column_kinds.get(factor.expr) != _NUM:
                        return False
                    names.append(factor.expr)
                plan.append(tuple(names))
            expected = [":".join(names) if names else "Intercept" for names in plan]
            if expected != list(spec.column_names):
                return False  # a term with several columns, or an unexpected order
            return plan

        plan = self._cached("plain:" + which, make)
        return plan or None

    def _plain_matrix(
        self, plan: list[tuple[str, ...]], frame: pd.DataFrame, n: int, names: list[str], what: str
    ) -> np.ndarray:
        """Model matrix of a plain plan (:meth:`_plain_plan`), checked for non-finite values.

        Only product columns are checked: the columns were checked finite (or their rows
        dropped) by :meth:`_prepare`, so a copy or a column of ones is finite, while a
        product of finite values can overflow.
        """
        # column-major: every column is written (and later read by the kernels'
        # per-column sums) contiguously
        out = np.empty((n, len(plan)), order="F")
        for j, cols in enumerate(plan):
            if not cols:
                out[:, j] = 1.0
                continue
            np.copyto(out[:, j], frame[cols[0]].to_numpy(dtype=np.float64))
            for name in cols[1:]:
                out[:, j] *= frame[name].to_numpy(dtype=np.float64)
        products = [j for j, cols in enumerate(plan) if len(cols) > 1]
        if products:
            _check_output(out[:, products], [names[j] for j in products], what)
        return out

    def _main_plain_plans(self):
        """``(rhs, lhs)`` plain plans when :meth:`_eval_main` builds ``exog`` with numpy
        (column-major, one column per plan entry), else ``(None, None)``."""
        rhs, lhs = self._plain_plan("rhs"), self._plain_plan("lhs")
        if (
            rhs is not None
            and lhs is not None
            and len(lhs) == 1
            and len(rhs) == len(self.exog_names)
        ):
            return rhs, lhs
        return None, None

    def _eval_main(self, frame: pd.DataFrame, n: int, response: bool = True):
        p = len(self.exog_names)
        if n == 0:
            return np.empty(0), np.empty((0, p))
        rhs, lhs = self._main_plain_plans()
        if rhs is not None:
            exog = self._plain_matrix(rhs, frame, n, self.exog_names, "fixed-effects design")
            if not response:
                return np.full(n, np.nan), exog
            endog = self._plain_matrix(lhs, frame, n, [self.endog_name], "response")[:, 0]
            return endog, exog
        if not response:
            mm = _materialize(self._main_spec.rhs, frame, self.formula)
            exog = np.ascontiguousarray(np.asarray(mm, dtype=np.float64).reshape(n, p))
            _check_output(exog, self.exog_names, "fixed-effects design")
            return np.full(n, np.nan), exog
        mm = _materialize(self._main_spec, frame, self.formula)
        endog = np.array(np.asarray(mm.lhs, dtype=np.float64).reshape(n, -1)[:, 0])
        exog = np.ascontiguousarray(np.asarray(mm.rhs, dtype=np.float64).reshape(n, p))
        _check_output(endog[:, None], [self.endog_name], "response")
        _check_output(exog, self.exog_names, "fixed-effects design")
        return endog, exog

    def _re_columns_of_exog(self, exog: np.ndarray) -> np.ndarray | None:
        """``exog_re`` as a view of ``exog`` when its columns are a run of the fixed-effects
        columns (``1 + x`` in both formulas), both built with numpy: no copy, and the
        statistics pass sees the shared columns as one (:func:`kernels.product_plan`)."""
        rhs, _ = self._main_plain_plans()
        if rhs is None or not exog.flags.f_contiguous:
            return None
        if self._re_kind == "ones":
            plan: list[tuple[str, ...]] | None = [()]
        else:
            plan = self._plain_plan("re")
        if plan is None:
            return None
        q = len(plan)
        for j in range(len(rhs) - q + 1):
            if rhs[j : j + q] == plan:
                return exog[:, j : j + q]
        return None

    def _eval_re(self, frame: pd.DataFrame, n: int, exog: np.ndarray | None = None) -> np.ndarray:
        if exog is not None and n and self._re_kind != "none":
            view = self._re_columns_of_exog(exog)
            if view is not None:
                return view
        if self._re_kind == "ones":
            return np.ones((n, 1))
        if self._re_kind == "none":
            return np.empty((n, 0))
        q = len(self.exog_re_names)
        if n == 0:
            return np.empty((0, q))
        plan = self._plain_plan("re")
        if plan is not None and len(plan) == q:
            return self._plain_matrix(plan, frame, n, self.exog_re_names, "random-effects design")
        mm = _materialize(self._re_spec, frame, self.re_formula)
        out = np.ascontiguousarray(np.asarray(mm, dtype=np.float64).reshape(n, q))
        _check_output(out, self.exog_re_names, "random-effects design")
        return out

    def _groups_array(self, df: pd.DataFrame, keep) -> np.ndarray:
        s = df[self.group_name]
        if keep is not None:
            s = s[keep]
        dt = s.dtype
        if isinstance(dt, pd.CategoricalDtype):
            cats = dt.categories
            cls = _column_class(cats.dtype)
            if cls in ("int", "float", "bool"):
                values = cats.to_numpy()
            else:
                values = cats.to_numpy(dtype=object)
            return values[s.cat.codes.to_numpy()]
        cls = _column_class(dt)
        if cls in ("string", "arrow-dict"):
            return s.to_numpy(dtype=object)
        if cls == "int":
            # unsigned keys stay unsigned: ids above 2**63 must not wrap to negatives
            unsigned = pd.api.types.is_unsigned_integer_dtype(dt)
            return s.to_numpy(dtype=np.uint64 if unsigned else np.int64)
        if cls == "float":
            return s.to_numpy(dtype=np.float64)
        if cls == "bool":
            return s.to_numpy(dtype=bool)
        return s.to_numpy()


# ---------------------------------------------------------------------------
# dtype handling
# ---------------------------------------------------------------------------


def _column_class(dtype) -> str:
    """'categorical', 'arrow-dict', 'string', 'int', 'float', 'bool' or 'other'."""
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        if pa.types.is_dictionary(t):
            return "arrow-dict"
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t))
        ):
            return "string"
        if pa.types.is_integer(t):
            return "int"
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "float"
        if pa.types.is_boolean(t):
            return "bool"
        return "other"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    kind = getattr(dtype, "kind", "O")
    if kind == "O":
        return "string"
    if kind in "iu":
        return "int"
    if kind == "f":
        return "float"
    if kind == "b":
        return "bool"
    return "other"


def _kind_of(dtype) -> str | None:
    cls = _column_class(dtype)
    if cls in ("categorical", "arrow-dict", "string"):
        return _CAT
    if cls in ("int", "float", "bool"):
        return _NUM
    return None


def _to_float(s: pd.Series, name: str) -> np.ndarray:
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise ValueError(f"column {name!r} is not numeric (dtype {s.dtype}): {e}") from None


def _check_finite(vals: np.ndarray, miss: np.ndarray, name: str) -> None:
    inf = np.isinf(vals)
    if inf.any():
        raise ValueError(f"infinite values in column {name!r} ({_plural(int(inf.sum()))})")


def _native(s: pd.Series, native: str) -> np.ndarray:
    if native == "int":
        return s.to_numpy(dtype=np.int64)
    if native == "bool":
        return s.to_numpy(dtype=bool)
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _unknown_numbers(vals, miss, levels: list) -> np.ndarray:
    """Non-missing values that are not among the (sorted) numeric levels."""
    lv = np.asarray(levels, dtype=np.float64)
    unknown = np.zeros(vals.shape, dtype=bool)
    ok = ~miss
    v = vals[ok]
    if lv.size:
        pos = np.clip(np.searchsorted(lv, v), 0, lv.size - 1)
        unknown[ok] = lv[pos] != v
    else:
        unknown[ok] = True
    return unknown


def _codes(s: pd.Series, index: pd.Index) -> np.ndarray:
    """Codes of the values of `s` in the global levels: -1 missing, -2 unknown."""
    dt = s.dtype
    cls = _column_class(dt)
    if cls == "categorical":
        cats = dt.categories
        raw = s.cat.codes.to_numpy()
        if len(cats) == len(index) and cats.equals(index):
            return raw.astype(np.int64, copy=False)
        return _remap(raw, index.get_indexer(cats.to_numpy(dtype=object)))
    if cls in ("arrow-dict", "string") and (
        isinstance(dt, pd.ArrowDtype)
        or (isinstance(dt, pd.StringDtype) and dt.storage == "pyarrow")
    ):
        return _arrow_codes(s, index)
    if cls in ("int", "float", "bool"):
        # labels given as numbers (numeric labels, or an all-missing partition)
        values = s.to_numpy(dtype=object, na_value=None)
    else:
        values = s.to_numpy(dtype=object)
    fc, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = _remap(fc, index.get_indexer(np.asarray(uniques, dtype=object)))
    codes[pd.isna(values)] = -1
    return codes


def _remap(raw: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Local codes (-1 missing) -> global codes (-1 missing, -2 unknown)."""
    raw = np.asarray(raw, dtype=np.int64)
    if not len(mapping):
        return np.where(raw >= 0, -2, -1).astype(np.int64)
    mapping = np.where(mapping >= 0, mapping, -2)
    return np.where(raw >= 0, mapping[np.maximum(raw, 0)], -1).astype(np.int64, copy=False)


def _arrow_codes(s: pd.Series, index: pd.Index) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = s.array.__arrow_array__()
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = []
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        mapping = index.get_indexer(np.asarray(chunk.dictionary.to_pylist(), dtype=object))
        ind = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        out.append(_remap(ind, mapping))
    if not out:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(out)


def _missing_mask(s: pd.Series, kind: str) -> np.ndarray:
    """Missing values of a raw column (NaN counts as missing for numbers)."""
    if kind == _CAT:
        return np.asarray(s.isna(), dtype=bool)
    if _column_class(s.dtype) in ("int", "float", "bool"):
        return np.isnan(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(s.isna(), dtype=bool)


def _sorted_levels(values) -> list:
    vals = list(dict.fromkeys(values))
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=lambda v: (type(v).__name__, repr(v)))


def _py(values) -> list:
    """Python scalars (numpy scalars converted) of an iterable."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _unique_values(s: pd.Series) -> list:
    s = s[~_missing_mask(s, _CAT if _kind_of(s.dtype) == _CAT else _NUM)]
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = np.unique(s.cat.codes.to_numpy())
        return _py(s.dtype.categories[codes[codes >= 0]].tolist())
    return _py(s.drop_duplicates().tolist())


# ---------------------------------------------------------------------------
# formula analysis
# ---------------------------------------------------------------------------


def _transforms() -> dict:
    from formulaic.transforms import TRANSFORMS

    return TRANSFORMS


def _parse(formula: str, role: str, *, lhs: bool):
    """Parse with formulaic; returns (lhs terms or None, rhs terms)."""
    from formulaic import Formula
    from formulaic.parser.types import Term

    if not isinstance(formula, str):
        raise ValueError(f"{role} must be a string, got {type(formula).__name__}")
    try:
        parsed = Formula(formula)
    except Exception as e:  # formulaic's FormulaParsingError and friends
        raise ValueError(f"invalid {role} {formula!r}: {_clean(e)}") from None

    def terms(part) -> list:
        out = list(part) if hasattr(part, "__iter__") else None
        if out is None or not all(isinstance(t, Term) for t in out):
            raise ValueError(
                f"invalid {role} {formula!r}: multi-part formulas ('|') are not supported"
            )
        return out

    has_lhs = hasattr(parsed, "lhs")
    if lhs:
        if not has_lhs:
            raise ValueError(f"invalid {role} {formula!r}: it needs a response, e.g. 'y ~ x1 + x2'")
        return terms(parsed.lhs), terms(parsed.rhs)
    if has_lhs:
        raise ValueError(
            f"invalid {role} {formula!r}: it must be one-sided (no '~' with a left-hand side)"
        )
    return None, terms(parsed)


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class _FactorInfo:
    """What an expression reads and how (used for checks and C() levels)."""

    def __init__(self):
        self.columns: list[str] = []
        self.c_columns: list[str] = []  # first argument of C() when a plain column
        self.unknown: list[str] = []


def _python_factor(expr: str, columns: set, role: str, formula: str, info: _FactorInfo):
    from formulaic.utils.code import sanitize_variable_names

    transforms = _transforms()
    aliases: dict[str, str] = {}
    try:
        code = ast.parse(sanitize_variable_names(expr, {}, aliases), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"invalid {role} {formula!r}: cannot parse {expr!r}: {e.msg}") from None

    def name_of(n: str) -> str:
        return aliases.get(n, n)

    def refuse(what: str, why: str):
        raise ValueError(
            f"{role} {formula!r}: {what} is not supported: {why}, so it would give a "
            "different result on every partition; compute it once on the whole data "
            "and add it as a column"
        )

    def visit(node: ast.AST):
        if isinstance(node, ast.Call):
            parts = _dotted(node.func)
            if parts is None:
                if isinstance(node.func, ast.Attribute):
                    if node.func.attr not in _ELEMENTWISE_METHODS:
                        refuse(f"the method call .{node.func.attr}()", "it may not be elementwise")
                    visit(node.func.value)
                else:
                    refuse(f"the call {ast.unparse(node.func)}()", "it is not a known transform")
            else:
                root = name_of(parts[0])
                dotted = ".".join([root, *parts[1:]])
                if root in columns and len(parts) > 1:
                    if parts[-1] not in _ELEMENTWISE_METHODS:
                        refuse(f"the method call {dotted}()", "it may not be elementwise")
                    _add(info.columns, root)
                elif root in ("np", "numpy") and root in transforms:
                    obj: Any = np
                    for p in parts[1:]:
                        obj = getattr(obj, p, None)
                    if obj is None:
                        info.unknown.append(dotted + "()")
                    elif not isinstance(obj, np.ufunc) and parts[-1] not in _NUMPY_ELEMENTWISE:
                        refuse(f"{dotted}()", "it is not an elementwise numpy function")
                elif root in transforms:
                    if root in _LEARNING_TRANSFORMS:
                        refuse(f"the stateful transform {root}()", _LEARNING_TRANSFORMS[root])
                    if root == "Q":
                        if node.args and isinstance(node.args[0], ast.Constant):
                            col = node.args[0].value
                            if col in columns:
                                _add(info.columns, col)
                            else:
                                info.unknown.append(str(col))
                        return
                    if root == "C" and node.args:
                        first = node.args[0]
                        if isinstance(first, ast.Name) and name_of(first.id) in columns:
                            _add(info.c_columns, name_of(first.id))
                elif root in _BUILTINS_OK and len(parts) == 1:
                    pass
                elif root in columns:
                    refuse(f"calling column {root!r}", "it is not a function")
                else:
                    info.unknown.append(dotted + "()")
            for a in node.args:
                visit(a)
            for k in node.keywords:
                visit(k.value)
            return
        if isinstance(node, ast.Name):
            n = name_of(node.id)
            if n in columns:
                _add(info.columns, n)
            elif n not in transforms and n not in ("True", "False", "None"):
                info.unknown.append(n)
            return
        if isinstance(node, ast.Attribute):
            parts = _dotted(node)
            if parts is not None:
                root = name_of(parts[0])
                if root in columns:
                    _add(info.columns, root)
                elif root not in transforms:
                    info.unknown.append(".".join([root, *parts[1:]]))
                return
        if isinstance(
            node,
            (ast.Lambda, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.NamedExpr),
        ):
            refuse(f"the expression {ast.unparse(node)!r}", "it is not a plain expression")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(code)


def _add(lst: list, item) -> None:
    if item not in lst:
        lst.append(item)


def _analyze_terms(terms, columns: set, role: str, formula: str) -> _FactorInfo:
    from formulaic.parser.types import Factor

    info = _FactorInfo()
    for term in terms:
        for factor in term.factors:
            method = factor.eval_method
            if method is Factor.EvalMethod.LITERAL:
                continue
            if method is Factor.EvalMethod.LOOKUP:
                if factor.expr in columns:
                    _add(info.columns, factor.expr)
                else:
                    info.unknown.append(factor.expr)
                continue
            _python_factor(factor.expr, columns, role, formula, info)
    if info.unknown:
        unknown = list(dict.fromkeys(info.unknown))
        msgs = []
        for u in unknown:
            if u.endswith("()"):
                close = difflib.get_close_matches(u[:-2], sorted(_transforms()), n=3)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                msgs.append(f"unknown function {u}" + hint)
            else:
                msgs.append(f"unknown column {u!r}" + _suggest(u, sorted(columns)))
        raise ValueError(f"{role} {formula!r}: " + "; ".join(msgs))
    return info


# ---------------------------------------------------------------------------
# formulaic evaluation
# ---------------------------------------------------------------------------


def _model_matrix(formula: str, frame: pd.DataFrame, role: str, output: str):
    from formulaic import model_matrix

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return model_matrix(formula, frame, na_action="ignore", output=output, context={})
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"cannot evaluate {role} {formula!r}: {_clean(e)}") from None


def _materialize(spec, frame: pd.DataFrame, formula: str | None):
    try:
        with np.errstate(all="ignore"):
            return spec.get_model_matrix(frame, context={})
    except Exception as e:
        raise ValueError(f"cannot evaluate formula {formula!r}: {_clean(e)}") from None


def _check_output(mat: np.ndarray, names: list[str], what: str) -> None:
    if mat.size == 0:
        return
    bad = ~np.isfinite(mat)
    if bad.any():
        per_col = bad.sum(axis=0)
        parts = [f"{names[j]!r} ({_plural(int(per_col[j]))})" for j in np.flatnonzero(per_col)]
        raise ValueError(f"non-finite values in {what} column(s) " + ", ".join(parts))


def _categorical_factors(spec) -> list[tuple[str, list]]:
    from formulaic.parser.types import Factor

    out = []
    for expr, (kind, state) in spec.encoder_state.items():
        if kind is Factor.Kind.CATEGORICAL:
            out.append((expr, list(state.get("categories", []))))
    return out


def _check_categorical_sources(spec, terms, columns: dict, role: str, formula: str) -> None:
    """Categorical factors must take their levels from a column (or levels=)."""
    from formulaic.parser.types import Factor

    factors = {f.expr: f for t in terms for f in t.factors}
    for expr, _levels in _categorical_factors(spec):
        factor = factors.get(expr)
        if factor is None or factor.eval_method is Factor.EvalMethod.LOOKUP:
            continue
        call = _c_call(expr, columns)
        if call is not None and (call["column"] is not None or call["levels"] is not None):
            continue
        raise ValueError(
            f"{role} {formula!r}: the categorical factor {expr!r} is derived from an "
            "expression, so its levels would be learned separately on every partition; "
            "add it as a column, or pass levels=[...] to C()"
        )


def _c_call(expr: str, columns) -> dict | None:
    """Describe a ``C(...)`` factor expression, or None if it is not one.

    Returns ``column`` (the first argument when it is a data column, else
    None), ``levels`` (literal ``levels=`` list, None if absent, "?" if not a
    literal) and ``extra`` (whether arguments other than the data are given).
    """
    from formulaic.utils.code import sanitize_variable_names

    aliases: dict[str, str] = {}
    try:
        node = ast.parse(sanitize_variable_names(expr, {}, aliases), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and _dotted(node.func) == ["C"]):
        return None
    column = None
    if node.args and isinstance(node.args[0], ast.Name):
        name = aliases.get(node.args[0].id, node.args[0].id)
        if name in columns:
            column = name
    levels: Any = None
    for k in node.keywords:
        if k.arg == "levels":
            try:
                levels = list(ast.literal_eval(k.value))
            except (ValueError, SyntaxError, TypeError):
                levels = "?"
    return {
        "column": column,
        "levels": levels,
        "extra": len(node.args) > 1 or bool(node.keywords),
    }


# ---------------------------------------------------------------------------
# variance components: a sparse evaluator over formulaic's term structure
# ---------------------------------------------------------------------------


def _vc_plan(vc_name: str, formula: str, levels: dict, kinds: dict, proto: pd.DataFrame):
    """Plan of one VC formula: blocks of columns, one per formulaic scoped term.

    formulaic gives the terms and their scoping (evaluated on a tiny prototype
    with at most 3 levels per factor); the columns of the full-level design
    are generated here: one column per level combination, the first factor
    varying fastest (formulaic's order).
    """
    from formulaic.parser.types import Factor

    role = f"vc_formula[{vc_name!r}]"
    mm = _model_matrix(formula, proto, role, "sparse")
    spec = mm.model_spec
    blocks = []
    offset = 0
    names: list[str] = []
    for structure in spec.structure:
        for st in structure.scoped_terms:
            factors = []
            name_lists = []
            for sf in st.factors:
                evaled = sf.factor
                factor = evaled.factor
                expr = factor.expr
                kind = spec.encoder_state.get(expr, (Factor.Kind.NUMERICAL, {}))[0]
                if kind is Factor.Kind.CATEGORICAL:
                    if sf.reduced:
                        raise ValueError(
                            f"{role} {formula!r}: the factor {expr!r} would be coded with "
                            "contrasts (reduced rank); statsmodels evaluates variance-"
                            "component formulas within each group, where such coding "
                            "depends on the group. Write the formula so that every "
                            "factor is coded with one indicator per level: '0 + ...' "
                            "with one factor term or an interaction ('0 + C(a):C(b)'), "
                            "or use one component per factor"
                        )
                    if factor.eval_method is Factor.EvalMethod.LOOKUP:
                        col = expr
                    else:
                        call = _c_call(expr, kinds)
                        if call is None or call["column"] is None or call["extra"]:
                            raise ValueError(
                                f"{role} {formula!r}: the categorical factor {expr!r} is "
                                "not supported in a variance-component formula; use a "
                                "column or C(column) without further arguments"
                            )
                        col = call["column"]
                    lv = levels[col]
                    factors.append(("cat", col, len(lv), kinds[col]))
                    name_lists.append([f"{expr}[{v}]" for v in lv])
                elif kind is Factor.Kind.CONSTANT:
                    continue
                else:
                    lookup = factor.eval_method is Factor.EvalMethod.LOOKUP
                    factors.append(("num", expr, 1, "lookup" if lookup else "python"))
                    name_lists.append([expr])
            width = int(np.prod([f[2] for f in factors])) if factors else 1
            if factors:
                cols = [":".join(reversed(p)) for p in itertools.product(*reversed(name_lists))]
            else:
                cols = ["Intercept"]
            names.extend(cols)
            blocks.append({"offset": offset, "scale": float(st.scale), "factors": factors})
            offset += width
    return {"blocks": blocks, "names": names, "formula": formula, "tiny_matrix": mm}


def _vc_numeric(expr: str, how: str, frame: pd.DataFrame, n: int, role: str) -> np.ndarray:
    if how == "lookup":
        return np.asarray(frame[expr], dtype=np.float64)
    from formulaic.utils.layered_mapping import LayeredMapping
    from formulaic.utils.stateful_transforms import stateful_eval

    env = LayeredMapping(LayeredMapping(frame, name="data"), LayeredMapping(_transforms()))
    try:
        with np.errstate(all="ignore"):
            value = stateful_eval(expr, env, {}, {}, None)
    except Exception as e:
        raise ValueError(f"cannot evaluate {expr!r} in {role}: {_clean(e)}") from None
    value = getattr(value, "__wrapped__", value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{role}: {expr!r} does not evaluate to numbers") from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{role}: {expr!r} must evaluate to one value per row")
    return arr


def _eval_vc(plan: dict, frame: pd.DataFrame, n: int, name: str):
    role = f"vc_formula[{name!r}]"
    blocks = plan["blocks"]
    levels_arrays = plan["level_arrays"]
    if n == 0:
        k = 0
        return np.empty((0, k), dtype=np.int64), np.empty((0, k))
    idx = np.empty((n, len(blocks)), dtype=np.int64)
    val = np.empty((n, len(blocks)), dtype=np.float64)
    for b, block in enumerate(blocks):
        col = np.full(n, block["offset"], dtype=np.int64)
        v = np.full(n, block["scale"], dtype=np.float64)
        stride = 1
        for kind, src, width, how in block["factors"]:
            if kind == "cat":
                s = frame[src]
                if how == _CAT:
                    codes = s.cat.codes.to_numpy().astype(np.int64, copy=False)
                else:
                    lv = levels_arrays[src]
                    codes = np.searchsorted(lv, np.asarray(s, dtype=lv.dtype))
                col += codes * stride
            else:
                v = v * _vc_numeric(src, how, frame, n, role)
            stride *= width
        idx[:, b] = col
        val[:, b] = v
    bad = ~np.isfinite(val)
    if bad.any():
        raise ValueError(f"non-finite values in {role} ({_plural(int(bad.any(axis=1).sum()))})")
    nz = val != 0
    counts = nz.sum(axis=1)
    k = int(counts.max()) if n else 0
    if len(blocks) == 1:
        if k == 0:
            return np.empty((n, 0), dtype=np.int64), np.empty((n, 0))
        cols = np.where(nz, idx, -1)
        vals = np.where(nz, val, 0.0)
        return np.ascontiguousarray(cols), np.ascontiguousarray(vals)
    order = np.argsort(~nz, axis=1, kind="stable")[:, :k]
    cols = np.take_along_axis(np.where(nz, idx, -1), order, axis=1)
    vals = np.take_along_axis(np.where(nz, val, 0.0), order, axis=1)
    return np.ascontiguousarray(cols), np.ascontiguousarray(vals)


def _dense_from_sparse(cols: np.ndarray, vals: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((cols.shape[0], width))
    rows = np.repeat(np.arange(cols.shape[0]), cols.shape[1])
    c = cols.ravel()
    ok = c >= 0
    np.add.at(out, (rows[ok], c[ok]), vals.ravel()[ok])
    return out


# ---------------------------------------------------------------------------
# build_spec
# ---------------------------------------------------------------------------


def _is_dask(data) -> bool:
    mod = type(data).__module__ or ""
    if not mod.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


def build_spec(
    data,
    formula: str,
    groups: str,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    weights: str | None = None,
    missing: str = "raise",
) -> ModelSpec:
    """Build the model spec once from the whole dataset.

    Parameters follow statsmodels' ``MixedLM.from_formula``: ``formula`` is
    ``"response ~ fixed effects"``, ``groups`` the name of the grouping column,
    ``re_formula`` the random-effects formula (default: random intercept),
    ``vc_formula`` maps variance-component names to formulas evaluated within
    groups (e.g. ``{"cask": "0 + C(cask)"}``), ``weights`` names a column of
    positive weights, ``missing`` is ``"raise"`` or ``"drop"``.

    ``data`` is a pandas DataFrame or a Dask DataFrame.  For Dask, the meta
    gives the dtypes, and one ``dask.compute`` reads the categorical/string
    columns whose levels are not known (all used columns with
    ``missing="drop"``, because levels must come from the rows kept), plus the
    response column for the empty / constant-response checks.
    """
    if missing not in ("raise", "drop"):
        raise ValueError(f'missing must be "raise" or "drop", got {missing!r}')
    dask_input = _is_dask(data)
    if not dask_input and not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas or Dask DataFrame, got {type(data).__name__}")
    meta = data._meta if dask_input else data
    all_columns = list(meta.columns)
    colset = set(all_columns)
    # duplicated column labels only matter for the columns the model uses
    dup = {c for c, k in Counter(all_columns).items() if k > 1}

    if not isinstance(groups, str):
        raise ValueError(f"groups must be a column name (str), got {type(groups).__name__}")
    if groups not in colset:
        raise ValueError(
            f"groups column {groups!r} not found in data" + _suggest(groups, all_columns)
        )
    for c in (groups, weights):
        if c in dup:
            raise ValueError(f"column {c!r} appears more than once in the data")
    if weights is not None:
        if not isinstance(weights, str):
            raise ValueError(f"weights must be a column name (str), got {type(weights).__name__}")
        if weights not in colset:
            raise ValueError(
                f"weights column {weights!r} not found in data" + _suggest(weights, all_columns)
            )
        if _kind_of(meta[weights].dtype) != _NUM:
            raise ValueError(
                f"weights column {weights!r} is not numeric (dtype {meta[weights].dtype})"
            )
    if vc_formula is not None:
        if not isinstance(vc_formula, dict):
            raise ValueError(
                f"vc_formula must be a dict of name -> formula, got {type(vc_formula).__name__}"
            )
        for k, v in vc_formula.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(
                    f"vc_formula must map names (str) to formulas (str), got {k!r}: {v!r}"
                )
        if not vc_formula:
            vc_formula = None

    # -- parse and analyse the formulas ---------------------------------------
    lhs_terms, rhs_terms = _parse(formula, "formula", lhs=True)
    lhs_info = _analyze_terms(lhs_terms, colset, "formula", formula)
    rhs_info = _analyze_terms(rhs_terms, colset, "formula", formula)
    if not lhs_info.columns and not lhs_terms:
        raise ValueError(f"formula {formula!r} has no response")
    re_kind = "ones"
    re_terms: list = []
    re_info = _FactorInfo()
    if re_formula is not None:
        if not isinstance(re_formula, str):
            raise ValueError(f"re_formula must be a string, got {type(re_formula).__name__}")
        if re_formula.strip() == "1":
            re_kind = "ones"
        else:
            re_kind = "formula"
            _, re_terms = _parse(re_formula, "re_formula", lhs=False)
            re_info = _analyze_terms(re_terms, colset, "re_formula", re_formula)
    elif vc_formula is not None:
        re_kind = "none"
    vc_names = sorted(vc_formula) if vc_formula else []
    vc_terms = {}
    vc_infos = {}
    for name in vc_names:
        role = f"vc_formula[{name!r}]"
        _, vc_terms[name] = _parse(vc_formula[name], role, lhs=False)
        vc_infos[name] = _analyze_terms(vc_terms[name], colset, role, vc_formula[name])

    formula_columns: list[str] = []
    for info in [lhs_info, rhs_info, re_info, *vc_infos.values()]:
        for c in info.columns:
            _add(formula_columns, c)
    columns_used = list(formula_columns)
    _add(columns_used, groups)
    if weights is not None:
        _add(columns_used, weights)
    for c in columns_used:
        if c in dup:
            raise ValueError(f"column {c!r} appears more than once in the data")

    # -- column kinds ---------------------------------------------------------
    c_columns = set()
    for info in [rhs_info, re_info, *vc_infos.values()]:
        c_columns.update(info.c_columns)
    kinds: dict[str, str] = {}
    native: dict[str, str] = {}
    for c in formula_columns:
        dt = meta[c].dtype
        k = _kind_of(dt)
        if k is None:
            raise ValueError(f"column {c!r} has an unsupported dtype ({dt}) for a model formula")
        if k == _NUM and c in c_columns:
            k = _NUMCAT
            native[c] = _column_class(dt)
        kinds[c] = k
    for c in lhs_info.columns:
        if kinds[c] == _CAT:
            raise ValueError(
                f"response column {c!r} is not numeric (dtype {meta[c].dtype}); "
                "the response must be numeric"
            )

    # -- levels (and the whole-data checks) ------------------------------------
    level_cols = [c for c in formula_columns if kinds[c] in (_CAT, _NUMCAT)]
    resp_col = lhs_info.columns[0] if len(lhs_info.columns) == 1 else None
    if dask_input:
        levels, n_total, n_kept, resp_range = _dask_scan(
            data, meta, kinds, level_cols, columns_used, missing, resp_col
        )
    else:
        levels, n_total, n_kept, resp_range = _pandas_scan(
            data, kinds, level_cols, columns_used, missing
        )
    if n_total is not None and n_total == 0:
        raise ValueError("data is empty (0 rows)")
    if n_kept is not None and n_kept == 0:
        raise ValueError(
            f"no rows left after dropping rows with missing values ({n_total} rows dropped)"
        )
    for c in level_cols:
        if not levels[c]:
            raise ValueError(f"column {c!r} has no non-missing values")

    # -- formulaic specs from a prototype frame holding all levels ---------------
    dense_cols = list(lhs_info.columns)
    for info in (rhs_info, re_info):
        for c in info.columns:
            _add(dense_cols, c)
    proto = _prototype(dense_cols, kinds, native, levels, size=None)
    main_mm = _model_matrix(formula, proto, "formula", "numpy")
    main_spec = main_mm.model_spec
    lhs_names = list(main_spec.lhs.column_names)
    if len(lhs_names) != 1:
        raise ValueError(
            f"formula {formula!r}: the response must be a single numeric column, got "
            f"{len(lhs_names)} columns {lhs_names}"
        )
    if _categorical_factors(main_spec.lhs):
        raise ValueError(f"formula {formula!r}: the response is not numeric")
    exog_names = list(main_spec.rhs.column_names)
    _check_categorical_sources(main_spec.rhs, rhs_terms, kinds, "formula", formula)
    for expr, cats in _categorical_factors(main_spec.rhs):
        if len(cats) < 2:
            shown = f" ({cats[0]!r})" if cats else ""
            raise ValueError(
                f"formula {formula!r}: the fixed-effect factor {expr!r} has a single "
                f"level{shown}; a factor needs at least two levels"
            )
    _check_explicit_levels(main_spec.rhs, kinds, levels, "formula", formula)

    re_spec = None
    if re_kind == "ones":
        exog_re_names = [groups]
    elif re_kind == "none":
        exog_re_names = []
    else:
        re_mm = _model_matrix(re_formula, proto, "re_formula", "numpy")
        re_spec = re_mm.model_spec
        _check_categorical_sources(re_spec, re_terms, kinds, "re_formula", re_formula)
        _check_explicit_levels(re_spec, kinds, levels, "re_formula", re_formula)
        exog_re_names = [x.replace("Intercept", groups) for x in re_spec.column_names]
        if not exog_re_names:
            raise ValueError(f"re_formula {re_formula!r} yields no columns")

    # -- variance components ------------------------------------------------------
    vc_plans = []
    vc_column_names = []
    for name in vc_names:
        f = vc_formula[name]
        role = f"vc_formula[{name!r}]"
        cols = vc_infos[name].columns
        tiny_levels = {c: levels[c][:3] for c in cols if c in levels}
        tiny = _prototype(cols, kinds, native, tiny_levels, size=3)
        tiny_plan = _vc_plan(name, f, tiny_levels, kinds, tiny)
        _finish_plan(tiny_plan, tiny_levels, native)
        _self_check(tiny_plan, tiny, name, f)
        plan = _vc_plan(name, f, levels, kinds, tiny)
        plan.pop("tiny_matrix")
        _finish_plan(plan, levels, native)
        if not plan["names"]:
            raise ValueError(f"{role} {f!r} yields no columns")
        vc_plans.append(plan)
        vc_column_names.append(plan.pop("names"))

    spec = ModelSpec(
        endog_name=lhs_names[0],
        exog_names=exog_names,
        exog_re_names=exog_re_names,
        vc_names=vc_names,
        vc_column_names=vc_column_names,
        group_name=groups,
        weights_name=weights,
        missing=missing,
        columns_used=columns_used,
        formula=formula,
        re_formula=re_formula,
        vc_formula=dict(vc_formula) if vc_formula else None,
        column_kinds={c: kinds[c] for c in formula_columns},
        levels={c: levels[c] for c in level_cols},
        _native=native,
        _formula_columns=formula_columns,
        _response_only=[
            c
            for c in lhs_info.columns
            if c not in rhs_info.columns
            and c not in re_info.columns
            and all(c not in i.columns for i in vc_infos.values())
            and c != groups
        ],
        _main_spec=main_spec,
        _re_spec=re_spec,
        _re_kind=re_kind,
        _vc_plans=vc_plans,
    )

    # -- whole-data checks: constant response ---------------------------------------
    if not dask_input:
        arrays, _keep, n_dropped = spec._prepare(data)
        frame = spec._frame(arrays, len(data) - n_dropped)
        endog = np.asarray(_materialize(main_spec.lhs, frame, formula), dtype=np.float64).reshape(
            -1
        )
        finite = endog[np.isfinite(endog)]
        if finite.size and finite.min() == finite.max():
            raise ValueError(
                f"the response {lhs_names[0]!r} is constant (all values {finite[0]!r})"
            )
    elif resp_range is not None and resp_range[0] == resp_range[1]:
        raise ValueError(
            f"the response {lhs_names[0]!r} is constant (all values {resp_range[0]!r})"
        )
    return spec


def _check_explicit_levels(spec, kinds, levels, role, formula) -> None:
    """C(col, levels=[...]) must list every level of col found in the data."""
    for expr, _cats in _categorical_factors(spec):
        call = _c_call(expr, kinds)
        if call is None or not isinstance(call["levels"], list) or call["column"] is None:
            continue
        col = call["column"]
        if col in levels:
            allowed = set(call["levels"])
            extra = [v for v in levels[col] if v not in allowed]
            if extra:
                raise ValueError(
                    f"{role} {formula!r}: column {col!r} has values not listed in "
                    f"levels= of {expr!r}: {extra[:5]}"
                )


def _finish_plan(plan: dict, levels: dict, native: dict) -> None:
    arrays = {}
    for block in plan["blocks"]:
        for kind, src, _w, how in block["factors"]:
            if kind == "cat" and how == _NUMCAT:
                nat = native.get(src, "float")
                dtype = {"int": np.int64, "bool": bool}.get(nat, np.float64)
                arrays[src] = np.asarray(levels[src], dtype=dtype)
    plan["level_arrays"] = arrays


def _self_check(plan: dict, tiny: pd.DataFrame, name: str, formula: str) -> None:
    """The sparse evaluator must reproduce formulaic on the tiny prototype."""
    ref = plan.pop("tiny_matrix")
    ref_names = list(ref.model_spec.column_names)
    ref_dense = np.asarray(ref.toarray() if hasattr(ref, "toarray") else ref, dtype=np.float64)
    role = f"vc_formula[{name!r}]"
    if ref_names != plan["names"]:
        raise ValueError(
            f"{role} {formula!r} is not supported by the sparse variance-component "
            f"evaluator (columns {ref_names} vs {plan['names']})"
        )
    cols, vals = _eval_vc(plan, tiny, len(tiny), name)
    mine = _dense_from_sparse(cols, vals, len(ref_names))
    if mine.shape != ref_dense.shape or not np.allclose(mine, ref_dense, equal_nan=True):
        raise ValueError(
            f"{role} {formula!r} is not supported by the sparse variance-component evaluator"
        )


def _prototype(cols, kinds, native, levels, size) -> pd.DataFrame:
    """A small frame with every level of every categorical column."""
    if size is None:
        size = max([2] + [len(levels[c]) for c in cols if kinds[c] in (_CAT, _NUMCAT)])
    idx = np.arange(size)
    data = {}
    for c in cols:
        kind = kinds[c]
        if kind == _CAT:
            lv = levels[c]
            data[c] = pd.Categorical.from_codes(idx % len(lv), dtype=pd.CategoricalDtype(lv))
        elif kind == _NUMCAT:
            nat = native.get(c, "float")
            dtype = {"int": np.int64, "bool": bool}.get(nat, np.float64)
            lv = np.asarray(levels[c], dtype=dtype)
            data[c] = lv[idx % len(lv)]
        else:
            data[c] = 1.0 + (idx % 7) / 8.0
    return pd.DataFrame(data, index=pd.RangeIndex(size))


def _rows_with_missing(df, kinds, columns_used) -> np.ndarray:
    """Rows with a missing value in any used column (the rows missing="drop" drops)."""
    masks = []
    for c in columns_used:
        kind = kinds.get(c)
        if kind is None:
            kind = _kind_of(df[c].dtype) or _CAT
        masks.append(_missing_mask(df[c], _CAT if kind == _CAT else _NUM))
    return np.logical_or.reduce(masks)


def _pandas_scan(df, kinds, level_cols, columns_used, missing):
    n_total = len(df)
    keep = None
    if missing == "drop" and n_total:
        any_missing = _rows_with_missing(df, kinds, columns_used)
        if any_missing.any():
            keep = ~any_missing
    n_kept = n_total if keep is None else int(keep.sum())
    levels = {}
    for c in level_cols:
        s = df[c] if keep is None else df[c][keep]
        observed = _unique_values(s)
        if kinds[c] == _CAT and isinstance(s.dtype, pd.CategoricalDtype):
            levels[c] = _declared_observed(s.dtype, observed)
        else:
            levels[c] = _sorted_levels(observed)
    return levels, n_total, n_kept, None


def _declared_observed(dtype: pd.CategoricalDtype, observed) -> list:
    """Declared categories that occur in the data, in declared order."""
    seen = set(observed)
    return [v for v in _py(dtype.categories.tolist()) if v in seen]


def _partition_summary(pdf, kinds, level_cols, columns_used, drop, resp_col):
    n = len(pdf)
    if drop and n:
        any_missing = _rows_with_missing(pdf, kinds, columns_used)
        if any_missing.any():
            pdf = pdf[~any_missing]
    out = {"n": n, "n_kept": len(pdf), "levels": {}, "range": None}
    for c in level_cols:
        out["levels"][c] = _unique_values(pdf[c])
    if resp_col is not None and len(pdf):
        v = _to_float(pdf[resp_col], resp_col)
        v = v[np.isfinite(v)]
        if v.size:
            out["range"] = (float(v.min()), float(v.max()))
    return out


def _dask_scan(ddf, meta, kinds, level_cols, columns_used, missing, resp_col):
    import dask

    levels: dict[str, list] = {}
    to_scan = []
    declared: dict[str, pd.CategoricalDtype] = {}
    drop = missing == "drop"
    for c in level_cols:
        s = meta[c]
        # dd.read_parquet reports Arrow dictionary columns as "known" categoricals with
        # no categories (each file has its own dictionary): those must be scanned
        if (
            kinds[c] == _CAT
            and isinstance(s.dtype, pd.CategoricalDtype)
            and ddf[c].cat.known
            and len(s.dtype.categories) > 0
        ):
            declared[c] = s.dtype
            if drop:
                # the pass reads every used column anyway: keep the observed ones
                to_scan.append(c)
            else:
                levels[c] = _py(s.dtype.categories.tolist())
        else:
            to_scan.append(c)
    if not to_scan and not drop:
        # nothing to learn before the data pass: no extra read (the data pass itself
        # finds empty data and a constant response, from the statistics)
        return levels, None, None, None
    read = list(to_scan)
    if resp_col is not None:
        _add(read, resp_col)
    if drop:
        for c in columns_used:
            _add(read, c)
    parts = ddf[read].to_delayed()
    summarize = dask.delayed(_partition_summary)
    tasks = [
        summarize(p, kinds, to_scan, columns_used if drop else [], drop, resp_col) for p in parts
    ]
    results = dask.compute(*tasks)
    n_total = sum(r["n"] for r in results)
    n_kept = sum(r["n_kept"] for r in results)
    for c in to_scan:
        vals = itertools.chain.from_iterable(r["levels"][c] for r in results)
        if c in declared:
            levels[c] = _declared_observed(declared[c], vals)
        else:
            levels[c] = _sorted_levels(vals)
    ranges = [r["range"] for r in results if r["range"] is not None]
    resp_range = None
    if ranges:
        resp_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return levels, n_total, n_kept, resp_range
