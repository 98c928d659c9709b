"""The model spec: one spec for the whole dataset, applied to every partition.

`build_spec` looks at the whole dataset once (a pandas DataFrame, or a Dask
DataFrame: its meta plus one cheap pass for the levels of categorical columns) and
returns a picklable `ModelSpec`; its steps are in :mod:`dmixed.design.build`.
`ModelSpec.transform` turns one pandas partition into `DesignMatrices`; every
partition yields the same columns in the same order with the same names, whatever
levels or dtypes the partition holds.

Conventions follow statsmodels' ``MixedLM.from_formula`` (DESIGN.md §8-10):

* random-effects names replace ``Intercept`` by the group column's name;
  no ``re_formula`` and no ``vc_formula`` gives a random intercept, no
  ``re_formula`` with a ``vc_formula`` gives no ``exog_re`` at all;
* variance components are sorted by name; each component's design is evaluated
  with one global plan and returned sparsely (:mod:`dmixed.design.vc`).

Formulas are parsed by formulaic and checked node by node before anything is evaluated
(:mod:`dmixed.design.formula`); column names are formulaic's.  Before any partition
reaches formulaic its columns are normalised (:mod:`dmixed.design.dtypes`,
:mod:`dmixed.design.prepare`); raw strings never reach formulaic (DESIGN.md §10).
Levels come from the whole data (:mod:`dmixed.design.levels`,
:mod:`dmixed.design.scan`); with ``missing="drop"`` from the rows kept
(:mod:`dmixed.design.missing`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import BadValuesError, CheckpointError, DataError, FormulaError, SpecError
from .build import (
    check_arguments,
    check_design_size,
    check_distinct_components,
    check_response_not_constant,
    column_kinds,
    formula_specs,
    lazy_formulaic_spec,
    parse_formulas,
    parse_plain,
    plan_variance_components,
    spline_of_text,
    spline_text_columns,
    used_columns,
)
from .build_levels import group_native, scan_levels
from .centres import centres_need_this_version, choose_centres, saved_centres
from .coded import CodedPlan, factor_codes, find_coded_plan, remember_plan, shared_plan
from .dtypes import NUMERIC, coded_group_keys, group_keys, native_dtype, py_scalars
from .evaluate import PATSY_ORDER, materialize, reordered, term_order
from .labels import (
    formulaic_spelling,
    indexed_spline_names,
    names_unindexed_splines,
    patsy_spelling,
)
from .levels import ArrayLevels, object_index, prototype, text_array
from .matrices import (
    PlainPlan,
    find_plain_plan,
    fixed_effects,
    main_plain_plans,
    needs_frame,
    random_effects,
    shared_re_columns,
)
from .messages import check_design_fits, check_enough_rows, fixed_factors, suggest
from .missing import missing_option
from .origin import columns_of_other_files, in_first_file, type_differs_across_files
from .partitions import restored_values
from .prepare import FrameColumns, PreparedColumns, normalized_frame, prepare_columns
from .references import choose_references, saved_references
from .scan import ScanChains
from .scope import CallerNames, Environment, caller_names_shippable, saved_environment
from .stateful import (
    SPLINES,
    blank_state,
    checked_saved_state,
    frozen_keys,
    learned_state,
    validated_state,
    with_state,
)
from .vc import LevelNames, VCPlan, eval_vc, reads_columns

__all__ = [
    "BuiltSpec",
    "DesignMatrices",
    "ModelDimensions",
    "ModelSpec",
    "build_plain_numeric",
    "build_spec",
    "build_spec_prepared",
]


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
    #: the rows of the frame kept (None: all; ``missing="drop"``)
    keep: np.ndarray | None = None
    #: :func:`~dmixed.stats.keys.sorted_codes` of ``groups``, read-only, where the
    #: design numbered the keys more cheaply from their column
    #: (:func:`~dmixed.design.dtypes.coded_group_keys`); None: not numbered
    group_codes: tuple[np.ndarray, np.ndarray] | None = None
    #: The keys as a Dask chain numbered them from their Arrow column
    #: (:func:`~dmixed.stats.keys.arrow_first_codes` of the rows read, those kept):
    #: ``(codes, labels, groups)``, ``labels[codes]`` equal to ``groups``, ``labels``
    #: distinct (some perhaps of no row kept), the codes in any order; unlike
    #: :attr:`group_codes` (the design's sorted numbering, every label a row's).  Set
    #: with :meth:`with_first_codes` and read with :meth:`first_numbered`, which holds
    #: them only for the ``groups`` array they were made for: rows replaced with other
    #: ``groups`` (``dataclasses.replace``) have none.  None: not numbered.
    first_codes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def nobs(self) -> int:
        return int(self.endog.shape[0])

    def with_first_codes(self, codes: np.ndarray, labels: np.ndarray) -> DesignMatrices:
        """These design matrices with :attr:`first_codes`: ``codes`` (int, one a row
        of ``groups``) into the distinct keys ``labels``, ``labels[codes]`` equal to
        ``groups``."""
        return dataclasses.replace(self, first_codes=(codes, labels, self.groups))

    def first_numbered(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(codes, labels)`` of :attr:`first_codes` while they number ``groups`` (the
        very array they were made for), else None: then the caller numbers ``groups``
        itself."""
        if self.first_codes is None or self.first_codes[2] is not self.groups:
            return None
        return self.first_codes[0], self.first_codes[1]


class ModelDimensions:
    """``k_fe``, ``k_re``, ``k_vc`` of anything with ``exog_names``, ``exog_re_names``
    and ``vc_names`` (a spec, a model)."""

    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]

    @property
    def k_fe(self) -> int:
        return len(self.exog_names)

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    @property
    def k_vc(self) -> int:
        return len(self.vc_names)


@dataclass(frozen=True)
class ModelNames(ModelDimensions):
    """The names of a model's parts: what a spec, a model and fitted results share.

    ``endog_name``; ``exog_names`` (p), ``exog_re_names`` (q), ``vc_names`` (one per
    variance component) and ``vc_column_names`` (each component's columns);
    ``group_name``.
    """

    endog_name: str
    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]
    vc_column_names: list[list[str]]
    group_name: str

    @staticmethod
    def from_model(model) -> ModelNames:
        """The names of a model (a :class:`~dmixed.MixedLM` or a spec), as plain strings."""
        return ModelNames(
            str(model.endog_name),
            [str(x) for x in model.exog_names],
            [str(x) for x in model.exog_re_names],
            [str(x) for x in model.vc_names],
            [_str_names(cols) for cols in model.vc_column_names],
            str(model.group_name),
        )


def _str_names(names) -> list[str] | LevelNames:
    """Column names as plain strings; names written on first use kept so."""
    return names if isinstance(names, LevelNames) else [str(c) for c in names]


@dataclass(frozen=True)
class ModelSpec(ModelNames):
    """Everything needed to build the model matrices of any partition.

    Built once from the whole dataset by `build_spec`; picklable (it is shipped
    to Dask workers).

    Configuration: the names (``endog_name`` … ``columns_used``), the formulas
    (provenance) and ``missing``.  State learned from the whole data: how each used
    column is normalised (``column_kinds``, ``native``), the global ``levels`` of the
    factor columns, formulaic's specs of the main and random-effects formulas
    (``main_spec``, ``re_spec``; ``re_kind`` is ``"ones"``, ``"none"`` or
    ``"formula"``) and the plans of the variance components (``vc_plans``).
    The names come first (:class:`ModelNames`).
    """

    weights_name: str | None
    missing: str
    columns_used: list[str]
    formula: str = ""
    re_formula: str | None = None
    vc_formula: dict[str, str] | None = None
    column_kinds: dict[str, str] = field(default_factory=dict)
    levels: dict[str, list] = field(default_factory=dict, repr=False)
    native: dict[str, str] = field(default_factory=dict, repr=False)
    formula_columns: list[str] = field(default_factory=list, repr=False)
    response_only: list[str] = field(default_factory=list, repr=False)
    #: the columns some term reads outside ``C()`` (``ParsedFormulas.value_columns``:
    #: ``p`` of ``C(p):x + p``), whose new rows' ``Decimal`` values are refused as a fit
    #: refuses them (None: not recorded, by a spec saved before: those not in ``C()``)
    value_columns: list[str] | None = field(default=None, repr=False)
    #: the columns the fixed-effects formula reads (None: not recorded, all used ones)
    fixed_columns: list[str] | None = field(default=None, repr=False)
    #: the columns the response, fixed- and random-effects formulas read (None: not
    #: recorded, all formula columns): what formulaic's frame needs beside the components
    dense_columns: list[str] | None = field(default=None, repr=False)
    main_spec: Any = field(default=None, repr=False, compare=False)
    re_spec: Any = field(default=None, repr=False, compare=False)
    re_kind: str = field(default="ones", repr=False)
    vc_plans: list[VCPlan] = field(default_factory=list, repr=False, compare=False)
    group_native: str | None = field(default=None, repr=False)
    #: the plain plans of formulas read without formulaic (``"lhs"``, ``"rhs"``, ``"re"``)
    plain_plans: dict[str, PlainPlan] = field(default_factory=dict, repr=False, compare=False)
    #: the names of the caller's code the formulas use (Python API only; None: none;
    #: :mod:`dmixed.design.scope`)
    caller_names: CallerNames | None = field(default=None, repr=False, compare=False)
    #: the integer reference of each linear integer column read as ``column − reference``
    #: (:mod:`dmixed.design.references`; empty: none)
    references: dict[str, int] = field(default_factory=dict, repr=False)
    #: the centre of each numeric column read far from zero inside a product term, read
    #: as ``column − centre`` (:mod:`dmixed.design.centres`; empty: none)
    centres: dict[str, float] = field(default_factory=dict, repr=False)
    #: the fixed-effects formula's columns before ``drop_cols`` took some out (statsmodels'
    #: argument; None: none dropped): ``exog_names`` are those kept, in this order
    exog_names_built: list[str] | None = field(default=None, repr=False)
    #: the order of the designs' columns: patsy's (statsmodels'), or ``"degree"``
    #: (formulaic's) for a spec saved by an earlier version, which keeps its own order
    term_order: str = field(default=PATSY_ORDER, repr=False)
    #: the state of the formulas' ``center``, ``standardize`` and ``scale`` calls, and
    #: of their ``bs`` calls that learn knots, learned once over the rows the fit uses,
    #: by the call's text (plain numbers: ``{"mean": m}`` or ``{"mean": m, "scale": s}``,
    #: ``{"knots": [k, ...]}`` for ``bs``, every knot with each bound repeated
    #: ``degree + 1`` times; :mod:`dmixed.design.stateful`)
    stateful: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    # -- pickling: drop per-process caches -----------------------------------
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_cache_")}
        if "_coded_plan_key" not in state:
            # the copies unpickled in a process share the coded plan learned there
            # first; the name is the state's digest, so a spec pickles the same bytes
            # however often it is pickled
            key = hashlib.sha256(pickle.dumps(state)).hexdigest()
            object.__setattr__(self, "_coded_plan_key", key)
            state["_coded_plan_key"] = key
            plan = self.__dict__.get("_cache_coded_plan")
            if plan is not None:
                remember_plan(key, plan)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        name = "_cache_" + key
        value = self.__dict__.get(name)
        if value is None:
            value = make()
            object.__setattr__(self, name, value)
        return value

    @property
    def context(self) -> Mapping[str, Any]:
        """formulaic's evaluation context: the caller's names (empty for a spec built
        from a file, a job or the command line)."""
        return self.caller_names or {}

    @property
    def fixed_kept(self) -> np.ndarray | None:
        """The positions of ``exog_names`` among the formula's fixed-effects columns
        (``exog_names_built``); None when ``drop_cols`` dropped none (cached)."""
        built = self.exog_names_built
        if built is None:
            return None
        return self._cached(
            "fixed_kept", lambda: np.array([built.index(c) for c in self.exog_names])
        )

    def categorical_dtype(self, col: str) -> pd.CategoricalDtype:
        """The pandas dtype of a label column: its global levels (cached)."""
        return self._cached("dtype:" + col, lambda: pd.CategoricalDtype(list(self.levels[col])))

    def level_index(self, col: str) -> pd.Index:
        """The global levels of a factor column as an object index (cached)."""
        return self._cached("index:" + col, lambda: object_index(self.levels[col]))

    def text_levels(self, col: str):
        """The global levels of a factor column as an Arrow string array, or None where
        they are not all text (cached): what Arrow-backed text columns are looked up in
        (:func:`~dmixed.design.levels.level_codes`)."""
        levels = self.levels[col]
        if isinstance(levels, ArrayLevels) and levels.text is not None:  # (found so)
            return levels.text
        return self._cached("text:" + col, lambda: (text_array(levels),))[0]

    def level_array(self, col: str) -> np.ndarray:
        """The levels of a numeric column used inside ``C()``, sorted, as an array of
        its native dtype (:func:`~dmixed.design.dtypes.native_dtype`; cached)."""
        dtype = native_dtype(self.native.get(col, "float"))
        planned = [p.level_arrays[col] for p in self.vc_plans if col in p.level_arrays]
        given = planned[0] if planned else self.levels[col]  # (a plan's: no conversion)
        return self._cached("array:" + col, lambda: np.asarray(given, dtype=dtype))

    def plain_plan(self, which: str) -> PlainPlan | None:
        """The numpy plan of ``"rhs"``, ``"lhs"`` or ``"re"`` (cached), None when
        formulaic builds that matrix (:func:`dmixed.design.matrices.find_plain_plan`)."""
        if which in self.plain_plans:
            return self.plain_plans[which] or None
        plan = self._cached("plain:" + which, lambda: find_plain_plan(self, which))
        return plan or None

    def main_plans(self) -> tuple[PlainPlan | None, PlainPlan | None]:
        """:func:`~dmixed.design.matrices.main_plain_plans` of this spec (cached: each
        partition's transform asks for them three times)."""
        return self._cached("main_plans", lambda: main_plain_plans(self))

    def coded_plan(self) -> CodedPlan | None:
        """The coded plan of the fixed-effects formula (cached), None when formulaic
        builds its matrix (:func:`dmixed.design.coded.find_coded_plan`)."""
        key = self.__dict__.get("_coded_plan_key")  # a pickled copy: shared in a process
        plan = self._cached(
            "coded_plan",
            lambda: (
                find_coded_plan(self)
                if key is None
                else shared_plan(key, lambda: find_coded_plan(self))
            ),
        )
        return plan or None

    def formulaic_spec(self, which: str) -> Any:
        """formulaic's spec of the main (``"main"``) or random-effects (``"re"``)
        formula; learned on first use (cached) when the formula was read without it
        (:mod:`dmixed.design.plain`); None for a random-effects design that is not a
        formula."""
        have = self.main_spec if which == "main" else self.re_spec
        if which == "re" and self.re_kind != "formula":
            return have
        if have is None:
            have = self._cached("formulaic:" + which, lambda: lazy_formulaic_spec(self, which))
        if not self.stateful:
            return have
        # every evaluation (partitions, new rows) with the state learned once
        formula = self.formula if which == "main" else self.re_formula
        return self._cached("frozen:" + which, lambda: with_state(have, self.stateful, formula))

    def re_columns_of_exog(self, exog: np.ndarray) -> np.ndarray | None:
        """``exog_re`` as a view of ``exog`` where it can be
        (:func:`dmixed.design.matrices.shared_re_columns`), else None."""
        return shared_re_columns(self, exog)

    # -- JSON round trip (saved results predict without the original data) ----
    def intercept_columns(self) -> tuple[int, int]:
        """The columns of ``exog`` and ``exog_re`` that are the formulas' intercepts
        (−1: none): where the statistics' column map may shift the other columns
        (:mod:`dmixed.stats.standardize`)."""
        x = self.exog_names.index("Intercept") if "Intercept" in self.exog_names else -1
        if self.re_kind == "ones":
            return x, 0
        plan = self.plain_plans.get("re")
        if plan is not None:
            return x, plan.index(()) if () in plan else -1
        names = list(getattr(self.formulaic_spec("re"), "column_names", []) or [])
        return x, names.index("Intercept") if "Intercept" in names else -1

    def to_dict(self) -> dict:
        """What is needed to rebuild this spec, as JSON-serializable values.

        The formulas, the role of every column, how each column is normalised and
        the global levels of the categorical ones.  :meth:`from_dict` rebuilds the
        formulaic specs from a prototype frame holding exactly those levels.  Formulas
        that use names of the caller's code are saved with those names listed
        (``caller_names``), never their code: :meth:`from_dict` needs them given.
        """
        marked = {"caller_names": sorted(self.caller_names)} if self.caller_names else {}
        if self.references:  # (absent when none: the saved form of older versions)
            marked["references"] = {c: int(v) for c, v in self.references.items()}
        if self.centres:  # (likewise)
            marked["centres"] = {c: float(v) for c, v in self.centres.items()}
        if self.exog_names_built is not None:  # (likewise)
            marked["drop_cols"] = dropped_columns(self)
        if self.stateful:  # (likewise)
            marked["stateful"] = {k: dict(v) for k, v in self.stateful.items()}
        return {
            **marked,
            "formula": self.formula,
            "re_formula": self.re_formula,
            "vc_formula": self.vc_formula,
            "groups": self.group_name,
            "weights": self.weights_name,
            "missing": self.missing,
            "column_kinds": dict(self.column_kinds),
            "native": dict(self.native),
            "group_native": self.group_native,
            "levels": {c: py_scalars(list(v)) for c, v in self.levels.items()},
            "exog_names": list(self.exog_names),
            "exog_re_names": list(self.exog_re_names),
            "vc_column_names": [list(c) for c in self.vc_column_names],
            "term_order": self.term_order,
        }

    @classmethod
    def from_dict(
        cls, state: dict, eval_env: Mapping[str, Any] | None = None, source: Any = None
    ) -> ModelSpec:
        """Rebuild a spec saved with :meth:`to_dict` (no data needed).

        ``eval_env``: the functions a spec saved with ``caller_names`` uses, by name (only
        those names are taken from it; :func:`dmixed.design.scope.saved_environment`).
        ``source``: the file the state was read from, named in the errors.

        Raises
        ------
        CheckpointError
            If the saved spec does not rebuild to the same column names (naming the
            file, the formula and the first name that differs, or that the order
            does), or lists names of the caller's code that ``eval_env`` does not give.
        """
        where = "" if source is None else f"{source}: "
        try:
            spec = _with_saved_spelling(_rebuilt(state, eval_env), state)
        except CheckpointError as err:
            raise CheckpointError(f"{where}{err}") from None
        for key in ("exog_names", "exog_re_names", "vc_column_names"):
            parts: list[tuple[str, list, list]]
            if key == "vc_column_names":
                saved_vc: list = list(state[key])
                vc_formula = state.get("vc_formula") or {}
                parts = [
                    (
                        f"vc_formula[{name!r}] {vc_formula.get(name)!r}",
                        list(spec.vc_column_names[i]) if i < len(spec.vc_names) else [],
                        list(saved_vc[i]) if i < len(saved_vc) else [],
                    )
                    for i, name in enumerate(spec.vc_names)
                ]
                if len(saved_vc) != len(spec.vc_names):
                    parts.append(("vc_formula", list(spec.vc_names), list(saved_vc)))
            else:
                formula = state["formula"] if key == "exog_names" else state["re_formula"]
                part = "formula" if key == "exog_names" else "re_formula"
                parts = [(f"{part} {formula!r}", list(getattr(spec, key)), list(state[key]))]
            for part, now, saved in parts:
                if now != saved:
                    raise CheckpointError(
                        f"{where}the saved model spec does not rebuild to the same "
                        f"{key}: of {part}, {_why_not_rebuilt(now, saved)} (earlier "
                        "versions of dmixed named and coded some factors unlike "
                        "statsmodels: Diff and Poly contrasts, full-rank Sum, Helmert, "
                        "Diff and Poly, boolean I() terms, boolean calls, boolean columns "
                        "also read in expressions, a spline of one column as name[0]; a "
                        "newer version may name them "
                        "otherwise); rebuild the statistics from the data"
                    )
        return spec

    def centres_need_this_version(self) -> bool:
        """Whether earlier versions refuse this spec's centres as malformed: a column
        read about a centre alone in a formula without an intercept (``0 + C(c) +
        ts``), or in ``C(c) + C(c):ts`` (:func:`~dmixed.design.centres.centres_need_this_version`).
        Saved statistics say so in their format version, which those versions check."""
        return centres_need_this_version(self)

    def names_need_this_version(self) -> bool:
        """Whether earlier versions rebuild this spec to other names:
        its columns in patsy's order where formulaic's differs, or a name with a text
        literal spelled as the formula writes it where formulaic spells it otherwise
        (``Q("my col")``), or a spline of one column, named without its index as
        patsy names it where earlier versions named it ``name[0]`` (or refused it
        inside another expression).  Saved results say so in their format version,
        which those versions check, rather than fail on the names."""
        own = [self.exog_names, self.exog_re_names, *map(list, self.vc_column_names)]
        if any(names_unindexed_splines(list(names), SPLINES) for names in own):
            return True
        if self.term_order == PATSY_ORDER and (
            any(reordered(s) for s in (self.main_spec, self.re_spec) if s is not None)
            or any(plan.reordered for plan in self.vc_plans)
        ):
            return True
        pairs = [(self.exog_names, self.formula), (self.exog_re_names, self.re_formula)]
        pairs += [
            (list(cols), (self.vc_formula or {}).get(name))
            for name, cols in zip(self.vc_names, self.vc_column_names, strict=True)
        ]
        return any(
            formula and formulaic_spelling(list(names), formula) != list(names)
            for names, formula in pairs
        )

    def with_levels(
        self, levels: Mapping[str, list], eval_env: Mapping[str, Any] | None = None
    ) -> ModelSpec:
        """This spec with other global ``levels`` of some factor columns read only by
        variance components (``dmixed update``: new groups bring their own nested
        levels); the variance components' columns are those of the new levels.

        Raises
        ------
        DataError
            The new levels would change the fixed or random effects' columns (a column
            of the fixed-effects or ``re_formula`` formula: its levels are those the
            model was fitted with).
        """
        state = self.to_dict()
        state["levels"] = {**state["levels"], **{c: py_scalars(list(v)) for c, v in levels.items()}}
        spec = _rebuilt(state, eval_env)
        for key in ("exog_names", "exog_re_names"):
            if list(getattr(spec, key)) != list(getattr(self, key)):
                changed = ", ".join(repr(c) for c in levels)
                raise DataError(
                    f"new levels of column(s) {changed} would change the model's {key} "
                    f"(from {list(getattr(self, key))} to {list(getattr(spec, key))}): only "
                    "the levels of columns read by variance components alone can grow"
                )
        return spec

    # -- per-partition application -------------------------------------------
    def transform(
        self,
        df: pd.DataFrame,
        *,
        response: bool = True,
        prepared: PreparedColumns | None = None,
        random: bool = True,
    ) -> DesignMatrices:
        """Apply the spec to one pandas partition (any row order, any subset of levels).

        ``response=False`` is for new rows to predict: the columns only the
        response uses and the weights column may then be absent; ``endog`` is
        NaN and ``weights`` None, and neither takes part in missing-value
        handling.  ``prepared``: :func:`~dmixed.design.prepare.prepare_columns` of this
        very ``df`` (with ``response``) when the caller has it (:func:`build_spec_prepared`).
        ``random=False`` (with ``response=False``: the fixed part ``X β̂`` of new rows)
        reads only the columns of the fixed-effects formula: the group column and the
        columns only the random part uses may be absent or missing; ``exog_re`` and
        the variance components are then empty and ``groups`` is None.

        Raises
        ------
        TypeError
            If ``df`` is not a pandas DataFrame.
        DataError
            For data the spec cannot use (see :func:`dmixed.design.prepare.prepare_columns`),
            or non-finite values in a model matrix.
        FormulaError
            If formulaic cannot evaluate a formula on the partition.
        """
        return self._transform(df, response, prepared, random, code_groups=False)

    def _transform(
        self,
        df: pd.DataFrame,
        response: bool,
        prepared: PreparedColumns | None,
        random: bool,
        code_groups: bool,
    ) -> DesignMatrices:
        """:meth:`transform`; ``code_groups``: :func:`transform_numbered`."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"transform expects a pandas DataFrame, got {type(df).__name__}")
        if prepared is None:
            prepared = prepare_columns(self, df, response, random)
        n = len(df) - prepared.n_dropped
        # components that read columns read the prepared ones (codes), not the frame:
        # then formulaic's frame holds only what its formulas read (no Categorical of a
        # component's many levels built for nothing)
        by_columns = all(reads_columns(plan) for plan in self.vc_plans)
        frame = (
            normalized_frame(self, prepared.columns, n, self.dense_columns if by_columns else None)
            if needs_frame(self)
            else prepared.columns
        )
        coded = self.coded_plan() if self.main_plans()[0] is None else None
        codes = (
            None if coded is None else factor_codes(self, coded, prepared.columns, prepared.codes)
        )
        endog, exog = fixed_effects(self, frame, n, response, codes)
        if not random:
            return DesignMatrices(
                endog,
                exog,
                np.empty((n, 0)),
                [],
                [],
                None,
                None,
                prepared.n_dropped,
                prepared.keep,
            )
        exog_re = random_effects(self, frame, n, exog)
        vc_cols, vc_vals = [], []
        for name, plan in zip(self.vc_names, self.vc_plans, strict=True):
            source = prepared.columns if by_columns else frame
            c, v = eval_vc(plan, source, n, name, self.caller_names, prepared.codes)
            vc_cols.append(c)
            vc_vals.append(v)
        groups = df[self.group_name] if prepared.group is None else prepared.group
        if prepared.keep is not None:
            groups = groups[prepared.keep]
        if code_groups:
            keys, coded = coded_group_keys(groups, self.group_native)
        else:
            keys, coded = group_keys(groups, self.group_native), None
        return DesignMatrices(
            endog=endog,
            exog=exog,
            exog_re=exog_re,
            vc_cols=vc_cols,
            vc_vals=vc_vals,
            groups=keys,
            weights=prepared.weights,
            n_dropped=prepared.n_dropped,
            keep=prepared.keep,
            group_codes=coded,
        )


def transform_numbered(
    spec: ModelSpec, df: pd.DataFrame, prepared: PreparedColumns | None = None
) -> DesignMatrices:
    """:meth:`ModelSpec.transform` of the rows of an in-process fit, which also numbers
    text group keys from their column (:attr:`DesignMatrices.group_codes`,
    :func:`~dmixed.design.dtypes.coded_group_keys`): the in-process fit numbers the
    groups in sorted order, Dask's partitions key their rows otherwise.

    Raises
    ------
    As :meth:`ModelSpec.transform`.
    """
    return spec._transform(df, True, prepared, True, code_groups=True)


def _why_not_rebuilt(now: list, saved: list) -> str:
    """Why the names rebuilt (``now``) are not those saved, in words."""
    if sorted(map(str, now)) == sorted(map(str, saved)):
        return f"the same columns in another order (saved {saved}, rebuilt {now})"
    lost = [n for n in saved if n not in now]
    new = [n for n in now if n not in saved]
    said = []
    if lost:
        said.append(f"saved {lost[0]!r}, which it does not rebuild")
    if new:
        said.append(f"it rebuilds {new[0]!r}, which was not saved")
    if not said:
        said.append(f"saved {len(saved)} columns, it rebuilds {len(now)}")
    return "; ".join(said)


def without_columns(spec: ModelSpec, drop_cols) -> ModelSpec:
    """``spec`` without the fixed-effects columns named in ``drop_cols``, as
    statsmodels' ``from_formula(..., drop_cols=...)`` drops them from the design it
    built (``spec`` itself for None or none).

    Raises
    ------
    SpecError
        A name is not a column of the fixed-effects design (statsmodels ignores it), or
        every column would be dropped.
    """
    if drop_cols is None:
        return spec
    names = [drop_cols] if isinstance(drop_cols, str) else list(drop_cols)
    if not names:
        return spec
    built = list(spec.exog_names)
    for name in names:
        if name not in built:
            raise SpecError(
                f"drop_cols names {name!r}, which is not a column of the fixed-effects "
                f"design{suggest(name, built)}"
            )
    kept = [c for c in built if c not in set(names)]
    if not kept:
        raise SpecError("drop_cols names every column of the fixed-effects design")
    return dataclasses.replace(spec, exog_names=kept, exog_names_built=built)


def _respelled(names, formula: str) -> list[str] | None:
    """Saved ``drop_cols`` names in patsy's spelling (:func:`patsy_spelling`)."""
    return None if names is None else patsy_spelling(list(names), formula)


def dropped_columns(spec: ModelSpec) -> list[str]:
    """The fixed-effects columns ``drop_cols`` took out of ``spec`` (:func:`without_columns`)."""
    kept = set(spec.exog_names)
    return [c for c in spec.exog_names_built or [] if c not in kept]


def _with_saved_spelling(spec: ModelSpec, state: dict) -> ModelSpec:
    """``spec``, rebuilt from ``state``, with the names ``state`` saved where they are
    its names as earlier versions spelled them: text literals as formulaic spells them
    (``Q('my col')``, where names now follow patsy, ``Q("my col")``:
    :func:`~dmixed.design.labels.patsy_spelling`), a spline of one column with its
    index (``bs(x, df=1)[0]``, now ``bs(x, df=1)`` as patsy names it:
    :func:`~dmixed.design.labels.indexed_spline_names`), or both: a model saved before
    keeps the names its estimates were saved under (the columns are the same)."""
    formula, re_formula = state["formula"], state["re_formula"]
    vc_formula = state.get("vc_formula") or {}

    def quoted(names: list, formula: str | None) -> list:
        return formulaic_spelling(names, formula)

    def indexed(names: list, formula: str | None) -> list:
        return indexed_spline_names(names, SPLINES)

    def both(names: list, formula: str | None) -> list:
        return indexed(quoted(names, formula), formula)

    now: dict[str, list] = {
        "exog_names": list(spec.exog_names),
        "exog_re_names": list(spec.exog_re_names),
        "vc_column_names": list(spec.vc_column_names),
    }
    for respelled in (quoted, indexed, both):
        old: dict[str, list] = {
            "exog_names": respelled(list(spec.exog_names), formula),
            "exog_re_names": respelled(list(spec.exog_re_names), re_formula),
            # (a component without text literals keeps their spelling, unlisted)
            "vc_column_names": [
                respelled(list(cols), vc_formula[name])
                if any(q in vc_formula.get(name, "") for q in "'\"")
                else cols
                if respelled is quoted
                else indexed(list(cols), None)
                for name, cols in zip(spec.vc_names, spec.vc_column_names, strict=True)
            ],
        }
        if now == old or any(old[key] != state[key] for key in old):
            continue  # (names that differ otherwise are refused by the caller)
        built = spec.exog_names_built
        return dataclasses.replace(
            spec,
            exog_names=old["exog_names"],
            exog_re_names=old["exog_re_names"],
            vc_column_names=old["vc_column_names"],
            exog_names_built=None if built is None else respelled(list(built), formula),
        )
    return spec


def _rebuilt(state: dict, eval_env: Mapping[str, Any] | None) -> ModelSpec:
    """The spec of a :meth:`ModelSpec.to_dict` state, built on a prototype frame
    holding exactly its levels (no check of its names)."""
    env = saved_environment(state.get("caller_names"), eval_env)
    # (absent: saved before the columns followed patsy's order, in formulaic's)
    order = state.get("term_order", "degree")
    if order not in (PATSY_ORDER, "degree"):
        raise CheckpointError(
            f"the saved model spec of formula {state.get('formula')!r} orders its columns "
            f"by {order!r}, which this version of dmixed does not know (saved by a newer "
            "version?)"
        )
    kinds = state["column_kinds"]
    stateful = validated_state(state.get("stateful"), "the saved model spec")
    proto = prototype(list(kinds), kinds, state["native"], state["levels"], size=None)
    proto[state["groups"]] = np.arange(len(proto)) % 2
    if state["weights"] is not None:
        proto[state["weights"]] = 1.0
    with term_order(order):
        spec = build_spec(
            proto,
            state["formula"],
            state["groups"],
            re_formula=state["re_formula"],
            vc_formula=state["vc_formula"],
            weights=state["weights"],
            missing=state["missing"],
            env=env,
            # (saved in formulaic's spelling of text literals by versions before patsy's)
            drop_cols=_respelled(state.get("drop_cols"), state["formula"]),
            stateful=stateful,
        )
    return dataclasses.replace(
        spec,
        term_order=order,
        group_native=state.get("group_native"),
        references=saved_references(state.get("references"), spec),
        centres=saved_centres(state.get("centres"), spec),
    )


def build_spec(
    data,
    formula: str,
    groups: str,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    weights: str | None = None,
    missing: str = "raise",
    env: Environment | None = None,
    drop_cols=None,
    scan_chains: ScanChains | None = None,
    stateful: dict[str, dict[str, Any]] | None = None,
) -> ModelSpec:
    """Build the model spec once from the whole dataset (see :func:`build_spec_prepared`)."""
    return build_spec_prepared(
        data,
        formula,
        groups,
        re_formula=re_formula,
        vc_formula=vc_formula,
        weights=weights,
        missing=missing,
        env=env,
        drop_cols=drop_cols,
        scan_chains=scan_chains,
        stateful=stateful,
    ).spec


class BuiltSpec(NamedTuple):
    """What :func:`build_spec_prepared` gives: the spec, the prepared columns of pandas
    data (None for Dask), and the data as the spec read it (a Dask collection with its
    columns that ``dd.from_pandas`` turned into text read back,
    :func:`~dmixed.design.partitions.restored_values`): the model reads that, so the
    keys are read back once."""

    spec: ModelSpec
    prepared: PreparedColumns | None
    data: Any


def build_plain_numeric(
    data, formula, groups, re_formula, vc_formula, weights, missing, drop_cols
) -> BuiltSpec | None:
    """:func:`build_spec_prepared` in a straight line where nothing in the data or the
    formulas needs its general steps (the formulaic parse, the dtype rules, the level
    scan, the preparation of each column): a pandas frame of unique column names, a
    formula and a ``re_formula`` that read plain columns (:func:`parse_plain`), each of
    them float64 with finite values and a response that varies, a group column of
    numpy integers or of text without a missing value that no formula reads, and no
    ``vc_formula``, ``weights`` or ``drop_cols``.  The same spec and prepared columns as
    the general steps; None for anything else (the general steps then build the spec,
    and raise or warn as they do)."""
    if vc_formula is not None or weights is not None or drop_cols is not None:
        return None
    if missing not in ("raise", "drop", "none") or not isinstance(groups, str):
        return None
    if not isinstance(data, pd.DataFrame) or isinstance(data.columns, pd.MultiIndex):
        return None
    if not len(data) or not data.columns.is_unique:
        return None
    parsed = parse_plain(formula, re_formula, data.columns)
    if parsed is None or groups not in data.columns:
        return None
    formula_columns = parsed.formula_columns()
    if groups in formula_columns:
        return None
    values = {}
    for c in formula_columns:
        s = data[c]
        dtype = s.dtype  # (a property of three calls under pandas 3)
        if not isinstance(dtype, np.dtype) or dtype != np.float64:
            return None
        v = s.to_numpy()  # (read only: the design matrices are copies)
        if not np.isfinite(v).all():  # missing or infinite: the general steps say so
            return None
        values[c] = v
    group = data[groups]
    dtype = group.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind not in "iu":  # numbers that may be missing, objects: scanned
            return None
    elif not isinstance(dtype, pd.StringDtype) or group.isna().any():
        return None
    endog = values[parsed.lhs.columns[0]]
    if endog.min() == endog.max():  # a constant response: refused by the general steps
        return None
    kinds = dict.fromkeys(formula_columns, NUMERIC)
    specs = formula_specs(parsed, formula, re_formula, kinds, {}, {}, groups)
    spec = ModelSpec(
        endog_name=specs.endog_name,
        exog_names=specs.exog_names,
        exog_re_names=specs.exog_re_names,
        vc_names=[],
        vc_column_names=[],
        group_name=groups,
        weights_name=None,
        missing=missing_option(missing),
        columns_used=[*formula_columns, groups],
        formula=formula,
        re_formula=re_formula,
        vc_formula=None,
        column_kinds=kinds,
        levels={},
        native={},
        formula_columns=formula_columns,
        response_only=parsed.response_only(groups),
        value_columns=sorted(parsed.value_columns()),
        fixed_columns=parsed.fixed_columns(),
        dense_columns=parsed.dense_columns(),
        main_spec=None,
        re_spec=None,
        re_kind=parsed.re_kind,
        vc_plans=[],
        group_native=None,
        plain_plans=specs.plain_plans,
        caller_names=None,
    )
    return BuiltSpec(spec, PreparedColumns(values, None, None, 0, {}, group), data)


def build_spec_prepared(
    data,
    formula: str,
    groups: str,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    weights: str | None = None,
    missing: str = "raise",
    env: Environment | None = None,
    drop_cols=None,
    scan_chains: ScanChains | None = None,
    fit_rows: bool = False,
    stateful: dict[str, dict[str, Any]] | None = None,
    client=None,
) -> BuiltSpec:
    """Build the model spec once from the whole dataset; with the prepared columns of a
    pandas ``data`` (None for Dask), which ``spec.transform(data, prepared=...)`` takes
    instead of preparing them a second time, and the data as the spec read it
    (:class:`BuiltSpec`).

    Parameters follow statsmodels' ``MixedLM.from_formula``: ``formula`` is
    ``"response ~ fixed effects"``, ``groups`` the name of the grouping column,
    ``re_formula`` the random-effects formula (default: random intercept without
    ``vc_formula``, none with it),
    ``vc_formula`` maps variance-component names to formulas evaluated within
    groups (e.g. ``{"cask": "0 + C(cask)"}``), ``weights`` names a column of
    positive weights, ``missing`` is ``"raise"`` or ``"drop"``.  ``env``: the caller's
    scope, where names the whitelist does not know are looked up; the Python API's
    switch (:mod:`dmixed.design.scope`), None for every formula from a file, a job,
    saved results or the command line.  ``drop_cols`` (statsmodels' argument): names of
    fixed-effects columns dropped once the design is built (:func:`without_columns`).
    ``scan_chains``: what reads a Dask collection's partitions in runs for the level
    scan (:data:`~dmixed.design.scan.ScanChains`, the Dask engine's chains; None: one
    task per partition).  ``fit_rows``: the rows of a pandas ``data`` are the ones the
    model fits (``MixedLM.from_formula``): too few of them for the fixed effects, or a
    design of them larger than memory, is refused before the design is built; for a
    Dask ``data``, too few rows as the level scan counts them (where it reads the data).
    ``stateful``: the state of the formulas' ``center``, ``standardize`` and ``scale``
    calls, and the knots of their ``bs`` calls that learn them (:attr:`ModelSpec.stateful`,
    validated numbers: saved results); None: learned
    here over the rows of a pandas ``data`` the fit uses (refused for Dask data,
    :func:`~dmixed.design.stateful.refuse_on_partitions`).  ``client``: the
    ``distributed.Client`` that reads a Dask ``data`` (None: Dask's default, the current
    client if any); data persisted on another scheduler, or persisted while none is
    given nor the default, are refused
    (:func:`~dmixed.design.partitions.check_persisted`).

    ``data`` is a pandas DataFrame or a Dask DataFrame.  For Dask, the meta
    gives the dtypes, and one ``dask.compute`` reads the categorical/string
    columns whose levels are not known (all used columns with
    ``missing="drop"``, because levels must come from the rows kept), plus the
    response column for the empty / constant-response checks.

    Raises
    ------
    SpecError
        For a bad argument, a factor with a single level, ``levels=`` that misses a
        value of the data, or ``drop_cols`` naming no fixed-effects column.
    FormulaError
        For a formula that does not parse, fails the whitelist, or cannot be evaluated.
    DataError
        For data that cannot be used: empty, all rows missing, a column of the wrong
        kind, a constant response (for Dask data, only where the level scan reads the
        data: a factor or an ``object`` column; else the data pass refuses them, from
        its statistics, :func:`~dmixed.design.scan.dask_scan`).
    """
    plain = build_plain_numeric(
        data, formula, groups, re_formula, vc_formula, weights, missing, drop_cols
    )
    if plain is not None:
        return plain
    meta, dask_input, vc_formula = check_arguments(data, groups, weights, vc_formula, missing)
    missing = missing_option(missing)
    # drop_cols as without_columns reads it; an iterator is not counted (nor checked early)
    dropped = (
        1
        if isinstance(drop_cols, str)
        else len(drop_cols)
        if drop_cols is not None and hasattr(drop_cols, "__len__")
        else 0
    )
    rows = (
        len(data)
        if fit_rows and not dask_input and (drop_cols is None or hasattr(drop_cols, "__len__"))
        else None
    )
    try:
        parsed = parse_formulas(
            formula, re_formula, vc_formula, set(meta.columns), env, rows, dropped
        )
    except FormulaError as exc:
        absent = getattr(exc, "absent", None)
        other = columns_of_other_files(data, absent) if dask_input and absent else None
        if other is not None:
            raise DataError(other) from exc
        raise
    caller = env.resolve(parsed.caller_names(), "formula") if parsed.caller_names() else None
    if dask_input:
        caller_names_shippable(caller)  # the spec goes to the workers
    formula_columns = parsed.formula_columns()
    columns_used = used_columns(formula_columns, groups, weights, meta)
    if dask_input:  # booleans and group keys that dd.from_pandas turned into text
        data = restored_values(data, columns_used, groups)
        meta = data._meta
    # each used column read once (pandas makes a Series anew on each ``data[c]``), its
    # dtype from it: not ``meta.dtypes``, a Series of every column's dtype
    frame_columns = None if dask_input else FrameColumns(data)
    dtypes = meta.dtypes if dask_input else frame_columns.dtypes(columns_used)
    try:
        kinds, native, integers = column_kinds(meta, parsed, formula_columns, dtypes, groups)
    except BadValuesError as exc:  # a column's type: Dask took it from the first file
        raise (in_first_file(exc, data) if dask_input else exc) from None
    if dask_input:  # text a spline reads where other files hold numbers
        for c in spline_text_columns(parsed, dtypes):
            if type_differs_across_files(data, c):
                raise in_first_file(spline_of_text(c, dtypes[c]), data)
    scan = scan_levels(
        data,
        meta,
        dask_input,
        kinds,
        native,
        parsed,
        columns_used,
        missing,
        dtypes,
        scan_chains,
        client,
    )
    levels = scan.levels
    check_design_size(formula, parsed, kinds, levels, rows, dropped)
    specs = formula_specs(parsed, formula, re_formula, kinds, native, levels, groups, caller)
    vc_plans, vc_column_names = plan_variance_components(
        parsed, vc_formula, levels, kinds, native, caller, scan.arrays
    )
    check_distinct_components(
        parsed.vc_names, vc_column_names, specs.exog_re_names, groups, re_formula
    )
    spec = ModelSpec(
        endog_name=specs.endog_name,
        exog_names=specs.exog_names,
        exog_re_names=specs.exog_re_names,
        vc_names=parsed.vc_names,
        vc_column_names=vc_column_names,
        group_name=groups,
        weights_name=weights,
        missing=missing,
        columns_used=columns_used,
        formula=formula,
        re_formula=re_formula,
        vc_formula=dict(vc_formula) if vc_formula else None,
        column_kinds={c: kinds[c] for c in formula_columns},
        levels={c: levels[c] for c in formula_columns if c in levels},
        native=native,
        formula_columns=formula_columns,
        response_only=parsed.response_only(groups),
        value_columns=sorted(parsed.value_columns()),
        fixed_columns=parsed.fixed_columns(),
        dense_columns=parsed.dense_columns(),
        main_spec=specs.main_spec,
        re_spec=specs.re_spec,
        re_kind=parsed.re_kind,
        vc_plans=vc_plans,
        group_native=group_native(scan, groups),
        plain_plans=specs.plain_plans,
        caller_names=caller,
    )
    spec = without_columns(spec, drop_cols)
    # before the design is built (the model checks its rows again); a Dask collection's
    # rows as the level scan counted them (None where it read no data): too few are
    # refused here, before the data pass's sums
    scanned = scan.n_total if dask_input and fit_rows else None
    if rows is not None or scanned is not None:
        q = len(spec.exog_re_names)
        k_cov = q * (q + 1) // 2 + len(spec.vc_names)
        factors = fixed_factors(spec, dtypes)
        n = len(data) if rows is not None else int(scanned or 0)
        check_enough_rows(
            n, len(spec.exog_names), k_cov, at_most=missing != "raise", factors=factors
        )
    if rows is not None:
        check_design_fits(formula, len(data), len(spec.exog_names), exact=True, prototype=False)
    references = choose_references(spec, parsed, integers, data, dask_input, client)
    if references:
        spec = dataclasses.replace(spec, references=references)
    centres = choose_centres(spec, parsed, data, dask_input, client)
    if centres:
        spec = dataclasses.replace(spec, centres=centres)
    prepared = None
    if stateful is not None:
        checked_saved_state(stateful, _frozen_formulas(spec), "the saved model spec")
        spec = dataclasses.replace(spec, stateful=dict(stateful))
    elif dask_input:
        parsed.refuse_frozen(
            formula,
            re_formula,
            "a Dask collection",
            {c for c, k in kinds.items() if k != NUMERIC},
        )
    elif parsed.collected("stateful"):
        prepared = prepare_columns(spec, data, label_codes=scan.codes, frame_columns=frame_columns)
        spec = dataclasses.replace(spec, stateful=_learned_state(spec, prepared, len(data)))
    prepared = check_response_not_constant(spec, data, scan, dask_input, frame_columns, prepared)
    return BuiltSpec(spec, prepared, data)


def _frozen_formulas(spec: ModelSpec) -> list[tuple[Any, str, str]]:
    """formulaic's specs of ``spec``'s formulas that call frozen transforms, each with
    its role and text (as :func:`~dmixed.design.stateful.learned_state` takes them)."""
    out = []
    for which, role, formula in (
        ("main", "formula", spec.formula),
        ("re", "re_formula", spec.re_formula),
    ):
        fspec = spec.formulaic_spec(which)
        if fspec is not None and frozen_keys(fspec):
            out.append((fspec, role, str(formula)))
    return out


def _learned_state(spec: ModelSpec, prepared: PreparedColumns, rows: int) -> dict:
    """The state of ``spec``'s frozen transforms, learned over the rows of ``prepared``
    (the rows the fit uses: missing values dropped) in one evaluation of its formulas
    (:func:`~dmixed.design.stateful.learned_state`)."""
    frame = normalized_frame(spec, prepared.columns, rows - prepared.n_dropped, spec.dense_columns)
    learned = [
        (materialize(blank_state(fspec), frame, formula, spec.context).model_spec, role, formula)
        for fspec, role, formula in _frozen_formulas(spec)
    ]
    return learned_state(learned)
