"""The steps of building a model spec from the whole dataset (:func:`~dmixed.design.build_spec`).

1. check the arguments against the data's columns (:func:`check_arguments`);
2. parse each formula and check it node by node (:func:`parse_formulas`);
3. decide how each used column is read (:func:`column_kinds`);
4. scan the data once for the levels of the factor columns
   (:func:`~dmixed.design.build_levels.scan_levels`);
5. learn formulaic's specs on a prototype frame holding every level
   (:func:`main_formula_spec`, :func:`re_formula_spec`), and plan the sparse
   variance components (:func:`plan_variance_components`);
6. check that the response varies (:func:`check_response_not_constant`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DataError, FormulaError, SpecError
from .dtypes import (
    CATEGORICAL,
    NUMERIC,
    NUMERIC_LEVELS,
    check_no_text,
    column_class,
    column_kind,
    is_arrow_decimal,
    native_class,
    only_in_c,
    to_float,
    unsupported_dtype,
)
from .evaluate import materialize, model_matrix, term_order
from .formula import (
    FactorInfo,
    add_unique,
    analyze_terms,
    c_call,
    categorical_factors,
    check_categorical_sources,
    check_explicit_levels,
    fixed_columns_at_least,
    frozen_calls,
    parse_formula,
    refuse_columns_named_as_transforms,
)
from .labels import patsy_spelling
from .levels import prototype
from .messages import check_design_fits, check_terms_within_rows, decimal_term, suggest
from .missing import missing_option
from .partitions import compute_with, select_columns
from .plain import PlainFormula, indicator_info, read_plain
from .prepare import needed_columns, normalized_frame, prepare_columns
from .scan import LevelScan, is_dask
from .stateful import refuse_on_partitions
from .vc import LevelNames, VCPlan, plan_variance_component

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "ParsedFormulas",
    "check_arguments",
    "check_response_not_constant",
    "constant_response",
    "dask_constant_response",
    "response_columns",
    "FormulaSpecs",
    "column_kinds",
    "formula_specs",
    "lazy_formulaic_spec",
    "main_formula_spec",
    "parse_formulas",
    "parse_plain",
    "plan_variance_components",
    "re_formula_spec",
    "refuse_frozen_in_text",
    "spline_of_text",
    "spline_text_columns",
    "used_columns",
]


def check_arguments(data, groups, weights, vc_formula, missing):
    """Check the arguments of ``build_spec`` against the data's columns.

    Returns ``(meta, dask_input, vc_formula)``: an empty frame with the data's columns
    and dtypes, whether the data is a Dask DataFrame, and ``vc_formula`` (None if empty).

    Raises
    ------
    SpecError
        For an unknown ``missing``, a ``groups``/``weights``/``vc_formula`` of the wrong
        type or naming no column of the data.
    DataError
        If ``data`` is not a DataFrame, ``groups``/``weights`` is duplicated in it, or
        the weights are not numeric.
    """
    missing = missing_option(missing)
    dask_input = is_dask(data)
    if not dask_input and not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas or Dask DataFrame, got {type(data).__name__}")
    meta = data._meta if dask_input else data
    all_columns = list(meta.columns)
    if not isinstance(groups, str):
        raise SpecError(f"groups must be a column name (str), got {type(groups).__name__}")
    if groups not in set(all_columns):
        if groups in _index_names(meta):
            raise SpecError(
                f"groups column {groups!r} is the index of the data, not one of its "
                "columns: make it a column again, e.g. data.reset_index() (with Dask, "
                "after set_index())"
            )
        raise SpecError(
            f"groups column {groups!r} not found in data" + suggest(groups, all_columns)
        )
    dup = duplicated_columns(meta)
    for c in (groups, weights):
        # a name only: weights given as values (unhashable) are refused just below
        if isinstance(c, str) and c in dup:
            raise DataError(f"column {c!r} appears more than once in the data")
    if weights is not None:
        _check_weights_argument(meta, weights, all_columns)
    return meta, dask_input, _checked_vc_formula(vc_formula)


def duplicated_columns(meta: pd.DataFrame) -> set:
    """Column labels that appear more than once (they only matter when used)."""
    if meta.columns.is_unique:  # cached by pandas: no count over the labels
        return set()
    return {c for c, k in Counter(meta.columns).items() if k > 1}


def _check_weights_argument(meta: pd.DataFrame, weights, all_columns: list) -> None:
    if not isinstance(weights, str):
        raise SpecError(f"weights must be a column name (str), got {type(weights).__name__}")
    if weights not in set(all_columns):
        raise SpecError(
            f"weights column {weights!r} not found in data" + suggest(weights, all_columns)
        )
    dtype = meta[weights].dtype
    # text (a CSV column of numbers with one '1,5' in it) in the words of text among
    # numbers, which the command line completes with the file and line
    check_no_text(meta[weights], weights, f"where the model reads weights (dtype {dtype})")
    if column_kind(dtype) != NUMERIC:
        raise BadValuesError(
            f"weights column {weights!r} is not numeric (dtype {meta[weights].dtype})"
        )


def _checked_vc_formula(vc_formula):
    if vc_formula is None:
        return None
    if not isinstance(vc_formula, dict):
        raise SpecError(
            f"vc_formula must be a dict of name -> formula, got {type(vc_formula).__name__}"
        )
    for k, v in vc_formula.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SpecError(f"vc_formula must map names (str) to formulas (str), got {k!r}: {v!r}")
    return vc_formula or None


@dataclass
class ParsedFormulas:
    """The terms of each formula and what their factors read.

    ``re_kind``: ``"ones"`` (random intercept), ``"none"`` (no ``exog_re``: no
    ``re_formula`` with a ``vc_formula``) or ``"formula"``.
    """

    lhs_terms: list
    rhs_terms: list
    lhs: FactorInfo
    rhs: FactorInfo
    re_kind: str = "ones"
    re_terms: list = field(default_factory=list)
    re: FactorInfo = field(default_factory=FactorInfo)
    vc_names: list[str] = field(default_factory=list)
    vc: dict[str, FactorInfo] = field(default_factory=dict)
    #: ``"main"``/``"re"``: the formula read without formulaic (:mod:`dmixed.design.plain`)
    plain: dict[str, PlainFormula] = field(default_factory=dict)

    def infos(self) -> list[FactorInfo]:
        return [self.lhs, self.rhs, self.re, *self.vc.values()]

    def collected(self, what: str) -> list[str]:
        """``FactorInfo.<what>`` of every formula, in order of first use."""
        out: list[str] = []
        for info in self.infos():
            for c in getattr(info, what):
                add_unique(out, c)
        return out

    def refuse_frozen(
        self, formula: str, re_formula: str | None, where: str, factor_columns=frozenset()
    ) -> None:
        """Refuse the frozen transforms (``center``, ``standardize``, ``scale``) of
        data they cannot learn from once (``where``), naming the formula that calls
        them (:func:`~dmixed.design.stateful.refuse_on_partitions`); its advice names
        the fixed-effects formula's factors (:func:`factor_terms`; ``factor_columns``:
        the columns that are factors as they are, text say)."""
        main: list[str] = []
        for c in [*self.lhs.stateful, *self.rhs.stateful]:
            add_unique(main, c)
        factors = factor_terms(self.rhs_terms, factor_columns)
        _refuse_frozen_calls(main, self.re.stateful, formula, re_formula, where, factors)

    def formula_columns(self) -> list[str]:
        """Every column a formula reads, in order of first use."""
        return self.collected("columns")

    def c_columns(self) -> set:
        """Columns used as ``C(column)`` outside the response."""
        out = set()
        for info in [self.rhs, self.re, *self.vc.values()]:
            out.update(info.c_columns)
        return out

    def plain_columns(self) -> set:
        """Columns read as they are by a term (``x``, ``Q('x')``) outside the response."""
        out = set()
        for info in [self.rhs, self.re, *self.vc.values()]:
            out.update(info.plain_columns)
        return out

    def bare_columns(self) -> set:
        """Columns that a term reads only as they are (``x``, ``Q('x')``, besides
        ``C(x)``) outside the response, never inside an expression: a column of booleans
        among them is a factor of levels False and True, as patsy (statsmodels) reads it
        (:func:`column_kinds`)."""
        computed = set(self.lhs.columns)
        for info in [self.rhs, self.re, *self.vc.values()]:
            computed.update(info.expr_columns)
        return self.plain_columns() - computed

    def value_columns(self) -> set:
        """Columns whose values some term reads outside ``C()`` (a factor that is the
        column, or an expression computing with it), in the fixed, random or variance-
        component formulas, not the response.  Judged per factor: ``C(z):x + z`` and
        ``y ~ z`` with ``re_formula="~C(z)"`` both read ``z`` outside ``C()``, although
        ``z`` is in :meth:`c_columns` too."""
        out: set = set()
        for info in [self.rhs, self.re, *self.vc.values()]:
            out.update(info.plain_columns, info.expr_columns)
        return out

    def dense_columns(self) -> list[str]:
        """The columns of the response, fixed- and random-effects formulas."""
        out = list(self.lhs.columns)
        for info in (self.rhs, self.re):
            for c in info.columns:
                add_unique(out, c)
        return out

    def fixed_columns(self) -> list[str]:
        """Columns the fixed-effects formula's right-hand side reads (``X β̂`` of new
        rows needs only them)."""
        return list(self.rhs.columns)

    def caller_names(self) -> list[str]:
        """The names of the caller's scope any formula uses (:mod:`dmixed.design.scope`)."""
        return self.collected("caller")

    def response_only(self, groups: str | None) -> list[str]:
        """Columns only the response reads (new rows to predict may lack them)."""
        others = [self.rhs, self.re, *self.vc.values()]
        return [
            c for c in self.lhs.columns if all(c not in i.columns for i in others) and c != groups
        ]


#: the kinds of column whose factor gives a column per level (less one)
LEVEL_KINDS = (CATEGORICAL, NUMERIC_LEVELS)

#: the distinct terms from which a formula's row count is read before formulaic parses
#: it (:func:`parse_formulas`): fewer parse in well under a second, and the data's own
#: check refuses them if the rows are too few
MANY_TERMS = 100


def factor_terms(terms, factor_columns=frozenset()) -> list[str]:
    """The factors of the parsed ``terms`` (formulaic's), as the formula writes them,
    once each in order: ``C(...)`` calls (``C(c, Treatment('b'))`` too) and lookups of
    ``factor_columns`` (a text column is a factor without ``C()``)."""
    import ast

    from formulaic.parser.types import Factor

    out: list[str] = []
    for term in terms or []:
        for factor in term.factors:
            if factor.eval_method is Factor.EvalMethod.LOOKUP:
                if factor.expr in factor_columns:
                    add_unique(out, factor.expr)
                continue
            try:
                node = ast.parse(factor.expr, mode="eval").body
            except SyntaxError:
                continue
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "C"
            ):
                add_unique(out, factor.expr)
    return out


def _refuse_frozen_calls(
    main: list[str],
    re_calls: list[str],
    formula: str,
    re_formula: str | None,
    where: str,
    factors: list[str] | None = None,
) -> None:
    """Refuse the frozen transforms the main formula (``main``) and the
    ``re_formula`` (``re_calls``) call, naming the formula that calls them (and, in
    the advice for ``cr``/``cc``, the main formula's ``factors``; None: not known)."""
    refuse_on_partitions(main, "formula", formula, where, factors)
    refuse_on_partitions(re_calls, "re_formula", str(re_formula), where)


def refuse_frozen_in_text(
    formula: str,
    re_formula: str | None,
    vc_formula: dict[str, str] | None,
    where: str,
) -> None:
    """:meth:`ParsedFormulas.refuse_frozen` from the formulas' text alone
    (:func:`~dmixed.design.formula.frozen_calls`), where the data's columns are not
    known before it is read (remote or Hive-partitioned Parquet): the same refusal, of
    every formula the model reads, variance components included (refused there as the
    parse on the columns refuses them, whatever the data).

    Parameters
    ----------
    formula : str
        The fixed-effects formula, ``"y ~ x"``.
    re_formula : str or None
        The random-effects formula (None: a random intercept).
    vc_formula : dict of str to str, or None
        The variance components' formulas, by component name.
    where : str
        What the data is read from, as the refusal names it (``"data read from files"``).

    Raises
    ------
    FormulaError
        If a formula calls ``center``, ``standardize`` or ``scale`` (the message names
        the formula: ``formula``, ``re_formula`` or ``vc_formula['name']``), or does not
        parse.
    """
    main = frozen_calls(formula, "formula", lhs=True)
    re_calls = [] if re_formula is None else frozen_calls(re_formula, "re_formula", lhs=False)
    factors = None  # (the columns' types are not known: C() calls only, where parsed)
    if main:
        factors = factor_terms(parse_formula(formula, "formula", lhs=True)[1])
    _refuse_frozen_calls(main, re_calls, formula, re_formula, where, factors)
    for name, text in (vc_formula or {}).items():
        role = f"vc_formula[{name!r}]"
        # the words of the parse on the columns (FactorVisitor.check_frozen_call)
        refuse_on_partitions(
            frozen_calls(text, role, lhs=False), role, text, "within a variance component"
        )


def parse_formulas(
    formula, re_formula, vc_formula, columns: set, env=None, rows=None, dropped: int = 0
) -> ParsedFormulas:
    """Parse and check every formula (:mod:`dmixed.design.formula`); VC names sorted.
    ``env``: the caller's scope (Python API only; :mod:`dmixed.design.scope`).
    ``rows``: the data's rows before any is dropped (an int, or a callable giving it or
    None where it is not known without reading the data, called only for a formula of
    at least :data:`MANY_TERMS` terms); ``dropped``: the fixed-effect columns
    ``drop_cols`` removes.  A formula of more distinct terms than rows is refused before
    formulaic parses it (:func:`~dmixed.design.messages.check_terms_within_rows`).

    Raises
    ------
    FormulaError
        If a formula does not parse, is refused, or has no response.
    SpecError
        If ``re_formula`` is not a string.
    DataError
        If the formula has more distinct terms than the data have rows.
    """
    _refuse_more_terms_than_rows(formula, re_formula, vc_formula, rows, dropped, columns)
    main = read_plain(formula, columns, lhs=True)
    if main is not None:
        parsed = ParsedFormulas([], [], _plain_info([main.response]), _plain_info(main.columns))
        parsed.plain["main"] = main
    else:
        lhs_terms, rhs_terms = parse_formula(formula, "formula", lhs=True, columns=columns)
        parsed = ParsedFormulas(
            lhs_terms=lhs_terms,
            rhs_terms=rhs_terms,
            lhs=analyze_terms(lhs_terms, columns, "formula", formula, env),
            rhs=analyze_terms(rhs_terms, columns, "formula", formula, env),
        )
        if not parsed.lhs.columns and not lhs_terms:
            raise FormulaError(f"formula {formula!r} has no response")
    if re_formula is not None:
        if not isinstance(re_formula, str):
            raise SpecError(f"re_formula must be a string, got {type(re_formula).__name__}")
        if re_formula.replace(" ", "") in ("0", "-1", "1-1") and vc_formula:
            parsed.re_kind = "none"  # statsmodels' re_formula="0": variance components only
        elif re_formula.strip() != "1":
            parsed.re_kind = "formula"
            re_plain = read_plain(re_formula, columns, lhs=False)
            if re_plain is not None:
                parsed.plain["re"] = re_plain
                parsed.re = _plain_info(re_plain.columns)
            else:
                _, parsed.re_terms = parse_formula(
                    re_formula, "re_formula", lhs=False, columns=columns
                )
                parsed.re = analyze_terms(parsed.re_terms, columns, "re_formula", re_formula, env)
    elif vc_formula is not None:
        parsed.re_kind = "none"
    # the fixed and random formulas are evaluated on one frame (the variance
    # components' apart, within groups): a column one reads shadows a transform of all
    shared = [("formula", formula, parsed.lhs), ("formula", formula, parsed.rhs)]
    refuse_columns_named_as_transforms([*shared, ("re_formula", re_formula, parsed.re)])
    parsed.vc_names = sorted(vc_formula) if vc_formula else []
    for name in parsed.vc_names:
        role = f"vc_formula[{name!r}]"
        info = indicator_info(vc_formula[name], columns, env)  # 0 + C(col): no parser
        if info is None:
            _, terms = parse_formula(vc_formula[name], role, lhs=False, columns=columns)
            info = analyze_terms(terms, columns, role, vc_formula[name], env)
        parsed.vc[name] = info
    return parsed


def _refuse_more_terms_than_rows(
    formula, re_formula, vc_formula, rows, dropped: int, columns: set
) -> None:
    """:func:`parse_formulas`' check of the terms against the rows, from the text."""
    terms = fixed_columns_at_least(formula, columns)
    if terms is None or rows is None or terms - dropped < MANY_TERMS:
        return
    n = rows() if callable(rows) else rows
    if n is None:
        return
    # a random intercept unless a re_formula or variance components say otherwise
    k_cov = 1 if re_formula is None and not vc_formula else 0
    check_terms_within_rows(formula, terms - dropped, k_cov, n)


def _columns_of_terms_at_least(terms, kinds: dict, levels: dict) -> int:
    """A lower bound on the columns formulaic gives ``terms``: the product over each
    term's factors of a lower bound on the factor's columns, summed over the terms.

    A factor that is itself categorical (``C(col)``, or a column of labels read as it
    is) gives at least its levels less one (none for one level: a reduced coding of one
    level has no column); ``C()`` with other arguments (``levels=`` or a contrast,
    which may give fewer columns) and any other expression give at least one.  A column of
    numbers read as it is gives one, though ``C()`` reads it elsewhere as levels: a bare
    boolean is read as levels, so one of a single value gives none.
    """
    total = 0
    for term in terms:
        width = 1
        for factor in getattr(term, "factors", ()):
            width *= _factor_columns_at_least(str(getattr(factor, "expr", factor)), kinds, levels)
        total += width
    return total


def _factor_columns_at_least(expr: str, kinds: dict, levels: dict) -> int:
    """:func:`_columns_of_terms_at_least`'s bound for one factor ``expr``."""
    if expr in kinds:
        if expr not in levels:
            return 1
        if kinds[expr] == CATEGORICAL:
            return max(len(levels[expr]) - 1, 0)
        return min(len(levels[expr]) - 1, 1) if kinds[expr] == NUMERIC_LEVELS else 1
    call = c_call(expr, kinds)
    if call is None or call.column is None or kinds.get(call.column) not in LEVEL_KINDS:
        return 1
    if call.extra:  # levels= or a contrast: at least one column unless one level is listed
        return 0 if isinstance(call.levels, list) and len(call.levels) <= 1 else 1
    if call.column not in levels:
        return 1
    return max(len(levels[call.column]) - 1, 0)


def check_design_size(
    formula, parsed: ParsedFormulas, kinds: dict, levels: dict, rows, dropped: int
) -> None:
    """Refuse, before formulaic learns the spec, a fixed part whose columns (at least
    as many as :func:`_columns_of_terms_at_least` counts from the levels) leave too few
    of ``rows`` (None for a Dask collection) or whose design could not be held in
    memory: the spec's prototype frame (one row per level of the factor of most levels,
    :func:`~dmixed.design.levels.prototype`) and the rows' design.

    Raises
    ------
    DataError
        Too few rows, or a design larger than this machine's memory.
    """
    if not parsed.rhs_terms:  # a plain formula: its columns are its terms, no prototype
        return
    p = _columns_of_terms_at_least(parsed.rhs_terms, kinds, levels) - dropped
    if rows is not None:
        k_cov = 1 if parsed.re_kind == "ones" and not parsed.vc_names else 0
        check_terms_within_rows(formula, p, k_cov, rows)
    factors = [c for c in parsed.dense_columns() if kinds.get(c) in LEVEL_KINDS]
    proto_rows = max([2] + [len(levels[c]) for c in factors if c in levels])
    check_design_fits(formula, proto_rows, p, exact=False, prototype=True)
    if rows is not None:
        check_design_fits(formula, rows, p, exact=False, prototype=False)


def parse_plain(formula, re_formula, columns) -> ParsedFormulas | None:
    """What :func:`parse_formulas` gives for a formula and a ``re_formula`` (None or
    ``"1"``: a random intercept) that are both plain (:mod:`dmixed.design.plain`),
    without a ``vc_formula``: the same record, read without formulaic; None for any
    other formulas (``columns``: the data's column names)."""
    main = read_plain(formula, columns, lhs=True)
    if main is None or not (re_formula is None or isinstance(re_formula, str)):
        return None
    parsed = ParsedFormulas([], [], _plain_info([main.response]), _plain_info(main.columns))
    parsed.plain["main"] = main
    if re_formula is not None and re_formula.strip() != "1":
        re_plain = read_plain(re_formula, columns, lhs=False)
        if re_plain is None:
            return None
        parsed.re_kind = "formula"
        parsed.plain["re"] = re_plain
        parsed.re = _plain_info(re_plain.columns)
    return parsed


def _plain_info(columns) -> FactorInfo:
    """What :func:`~dmixed.design.formula.analyze_terms` finds in terms that are plain
    column names (:mod:`dmixed.design.plain`): each is a column read as it is."""
    return FactorInfo(columns=list(columns), plain_columns=list(columns))


def used_columns(formula_columns: list[str], groups: str, weights, meta) -> list[str]:
    """The formula columns, the groups and the weights; each must appear once in the data."""
    columns_used = list(formula_columns)
    add_unique(columns_used, groups)
    if weights is not None:
        add_unique(columns_used, weights)
    dup = duplicated_columns(meta)
    for c in columns_used:
        if c in dup:
            raise DataError(f"column {c!r} appears more than once in the data")
    return columns_used


def column_kinds(
    meta, parsed: ParsedFormulas, formula_columns: list[str], dtypes=None, groups=None
):
    """How each formula column is read, from its dtype: ``(kinds, native, integers)``
    (see :mod:`dmixed.design.dtypes`; ``integers``: the numeric columns of an integer
    dtype, read as numbers, :mod:`dmixed.design.references`).  ``object`` columns are
    labels until the scan has seen their values
    (:func:`~dmixed.design.build_levels.scan_levels`).  Numbers inside ``C()`` and
    booleans that a term reads as they are (:meth:`ParsedFormulas.bare_columns`) are
    read as levels (patsy's reading of booleans: ``flag[T.True]``); other boolean
    columns are numbers kept as booleans (``native`` ``"bool"``), so that an expression
    computes on them what it computes in patsy (``I(a + b)``: ``a or b``, a factor of
    levels False and True; as numbers it would be 0, 1 or 2).  ``dtypes``: ``meta.dtypes``
    where the caller has it; ``groups``: the group column (not the response's alone).

    Raises
    ------
    BadValuesError
        For a column of an unsupported dtype (:func:`~dmixed.design.dtypes.unsupported_dtype`).
    FormulaError
        For a comparison that orders (``<``, ``>``) an ordered categorical column.
    """
    check_ordered_comparisons(meta, parsed)
    c_columns = parsed.c_columns()
    bare = parsed.bare_columns()
    values = parsed.value_columns()
    response_only = parsed.response_only(groups)
    kinds: dict[str, str] = {}
    native: dict[str, str] = {}
    integers: set[str] = set()
    if dtypes is None:  # one Series of dtypes, not a column (Series) per name
        dtypes = meta.dtypes
    for c in formula_columns:
        dt = dtypes[c]
        k = column_kind(dt)
        if k is None:
            raise unsupported_dtype(c, dt, in_c=only_in_c(c, values, response_only))
        if c in values and is_arrow_decimal(dt):
            raise decimal_term(c)
        if k == NUMERIC and (c in c_columns or (c in bare and native_class(dt) == "bool")):
            k = NUMERIC_LEVELS
            native[c] = native_class(dt)
        elif k == NUMERIC and native_class(dt) == "bool":
            native[c] = "bool"  # booleans inside expressions (I(a | b)), as patsy reads them
        elif k == NUMERIC and getattr(dt, "kind", "") in ("i", "u"):
            integers.add(c)
        kinds[c] = k
    return kinds, native, integers


def spline_text_columns(parsed: ParsedFormulas, dtypes) -> list[str]:
    """The columns a spline (``bs``, ``cr``, ``cc``) takes as its values whose dtype is
    text (string, Arrow string; not ``object``, whose values are judged where read).

    The spline reads such text as numbers, as a single frame's text is read; the caller
    refuses it only where the files behind a Dask collection declare the column with
    different types (:func:`~dmixed.design.origin.type_differs_across_files`): Dask took
    the text type from the first file and the other files' numbers would be refused as
    not text.
    """
    return [
        c
        for c in dict.fromkeys(parsed.collected("spline_columns"))
        if c in dtypes.index and column_class(dtypes[c]) == "string" and not is_object(dtypes[c])
    ]


def is_object(dtype) -> bool:
    """Whether ``dtype`` is numpy's ``object`` (not a text dtype)."""
    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def spline_of_text(column: str, dtype) -> BadValuesError:
    """The error for a text column a spline (``bs``, ``cr``, ``cc``) takes as its
    values, in the first of files that declare it with different types (text there,
    numbers in others): Dask took the type from that file, so the other files' numbers
    would be refused as not text; its ``column`` attribute is the column (the error then
    leads with the file that declared the type: :func:`~dmixed.design.origin.in_first_file`)."""
    err = BadValuesError(
        f"column {column!r} holds text ({dtype}) where the model reads numbers (a spline "
        "takes its values) and other files hold numbers: convert the column to numbers"
    )
    err.column = column  # type: ignore[attr-defined]
    return err


def check_ordered_comparisons(meta, parsed: ParsedFormulas) -> None:
    """Refuse a comparison that orders an ordered categorical column (``o > 'low'``).

    patsy orders such a column by its categories; dmixed holds every categorical and
    text column as categories without an order, and an expression that compares reads
    them as their values (:class:`~dmixed.design.patsy_coding.PatsyMaterializer`), so
    it would order the text instead (``'high' > 'low'`` is False).  Text columns are
    ordered by their text, as patsy orders them.

    Raises
    ------
    FormulaError
        Naming the column.
    """
    for c in parsed.collected("ordered_columns"):
        dt = meta[c].dtype
        if isinstance(dt, pd.CategoricalDtype) and dt.ordered:
            raise FormulaError(
                f"a formula orders the column {c!r} (<, <=, >, >=), an ordered "
                "categorical: patsy orders it by its categories, which dmixed does not "
                "keep, so it would order the text of its values; compare with == or != "
                f"(or {c}.isin([...])), or add the comparison as a boolean column"
            )


def main_formula_spec(formula: str, proto, rhs_terms, kinds: dict, levels: dict, context=None):
    """formulaic's spec of the main formula: ``(spec, endog_name, exog_names)``
    (``context``: the caller's names, :class:`~dmixed.design.scope.CallerNames`).

    Raises
    ------
    FormulaError
        If the response is not one numeric column, or a categorical factor is derived
        from an expression.
    SpecError
        If a fixed-effect factor has a single level, or ``levels=`` misses a value.
    """
    check_explicit_levels(rhs_terms, kinds, levels, "formula", formula)
    main_spec = model_matrix(formula, proto, "formula", "numpy", context).model_spec
    lhs_names = patsy_spelling(main_spec.lhs.column_names, formula)
    if len(lhs_names) != 1:
        raise FormulaError(
            f"formula {formula!r}: the response must be a single numeric column, got "
            f"{len(lhs_names)} columns {lhs_names}"
        )
    if categorical_factors(main_spec.lhs):
        raise FormulaError(f"formula {formula!r}: the response is not numeric")
    exog_names = patsy_spelling(main_spec.rhs.column_names, formula)
    check_categorical_sources(main_spec.rhs, rhs_terms, kinds, "formula", formula)
    for expr, cats in categorical_factors(main_spec.rhs):
        if len(cats) < 2:
            shown = f" ({cats[0]!r})" if cats else ""
            raise SpecError(
                f"formula {formula!r}: the fixed-effect factor {expr!r} has a single "
                f"level{shown}; a factor needs at least two levels"
            )
    return main_spec, lhs_names[0], exog_names


def re_formula_spec(
    parsed: ParsedFormulas, re_formula, proto, kinds, levels, groups: str, context=None
):
    """formulaic's spec of the random-effects formula (None for ``"ones"``/``"none"``)
    and the random-effects names (``Intercept`` named after the group column).

    Raises
    ------
    FormulaError
        If the formula yields no columns or derives a categorical from an expression.
    """
    if parsed.re_kind == "ones":
        return None, [groups]
    if parsed.re_kind == "none":
        return None, []
    check_explicit_levels(parsed.re_terms, kinds, levels, "re_formula", re_formula)
    re_spec = model_matrix(re_formula, proto, "re_formula", "numpy", context).model_spec
    check_categorical_sources(re_spec, parsed.re_terms, kinds, "re_formula", re_formula)
    exog_re_names = [
        x.replace("Intercept", groups) for x in patsy_spelling(re_spec.column_names, re_formula)
    ]
    if not exog_re_names:
        raise FormulaError(f"re_formula {re_formula!r} yields no columns")
    return re_spec, exog_re_names


@dataclass
class FormulaSpecs:
    """The names of the main and random-effects formulas and how their matrices are
    built: formulaic's specs (None where a formula is plain), and the plain plans
    (``"lhs"``, ``"rhs"``, ``"re"``) of the formulas read without formulaic."""

    endog_name: str
    exog_names: list[str]
    exog_re_names: list[str]
    main_spec: object = None
    re_spec: object = None
    plain_plans: dict = field(default_factory=dict)


def _usable_plain(
    parsed: ParsedFormulas, kinds: dict, native: dict, which: str
) -> PlainFormula | None:
    """The plain reading of a formula when every column it reads is numeric and no
    term is a column of booleans: such a column, kept booleans because an expression
    elsewhere computes on it (:func:`column_kinds`), is patsy's factor ``f[T.True]``,
    as formulaic reads it here (:class:`~dmixed.design.patsy_coding.PatsyMaterializer`);
    the plain reading would name it ``f``."""
    plain = parsed.plain.get(which)
    if plain is None or any(native.get(c) == "bool" for c in plain.columns):
        return None
    cols = [*plain.columns, *([plain.response] if plain.response is not None else [])]
    return plain if all(kinds[c] == NUMERIC for c in cols) else None


def formula_specs(
    parsed, formula, re_formula, kinds, native, levels, groups, context=None
) -> FormulaSpecs:
    """The specs of the main and random-effects formulas: plain formulas of numeric
    columns (:mod:`dmixed.design.plain`) without formulaic, the others by formulaic on
    a prototype frame holding every level (:func:`main_formula_spec`,
    :func:`re_formula_spec`; ``context``: the caller's names, which a plain formula
    never uses).

    Raises
    ------
    FormulaError, SpecError
        As :func:`main_formula_spec` and :func:`re_formula_spec`; two columns of the
        fixed- or random-effects design under one name.
    """
    main = _usable_plain(parsed, kinds, native, "main")
    re_plain = _usable_plain(parsed, kinds, native, "re") if parsed.re_kind == "formula" else None
    proto = None
    if main is None or (parsed.re_kind == "formula" and re_plain is None):
        proto = prototype(parsed.dense_columns(), kinds, native, levels, size=None)
    if main is not None:
        out = FormulaSpecs(main.response, main.names(), [])
        out.plain_plans.update(lhs=[(main.response,)], rhs=main.plan())
    else:
        main_spec, endog_name, exog_names = main_formula_spec(
            formula, proto, parsed.rhs_terms, kinds, levels, context
        )
        out = FormulaSpecs(endog_name, exog_names, [], main_spec=main_spec)
    if re_plain is not None:
        out.exog_re_names = [x.replace("Intercept", groups) for x in re_plain.names()]
        out.plain_plans["re"] = re_plain.plan()
    else:
        out.re_spec, out.exog_re_names = re_formula_spec(
            parsed, re_formula, proto, kinds, levels, groups, context
        )
    _check_unique_names(out.exog_names, "fixed effects", "formula", formula)
    _check_unique_names(out.exog_re_names, "random effects", "re_formula", re_formula)
    return out


def _index_names(frame: pd.DataFrame) -> list:
    """The names of the levels of ``frame``'s index (None where unnamed)."""
    return list(frame.index.names)


def _check_unique_names(names: list[str], what: str, arg: str, formula) -> None:
    """Refuse two columns of one design under one name (a data column named
    ``Intercept`` beside the intercept; in ``re_formula`` the intercept takes the group
    column's name): parameters, tests and results are read by name."""
    seen: set = set()
    dup = [n for n in names if n in seen or seen.add(n)]
    if dup:
        if arg == "re_formula":
            # (the group column as a random slope is the group intercept again)
            why = (
                "in re_formula the intercept is named after the group column, and so is "
                "the group column as a random slope (or a data column named 'Intercept'); "
                "leave that column out of re_formula"
            )
        else:
            why = (
                "the intercept is named 'Intercept', and so is a column of the data; "
                "rename the data column or leave the intercept out (0 + ...)"
            )
        raise FormulaError(f"{arg} {formula!r}: two {what} are named {dup[0]!r}: {why}")


def lazy_formulaic_spec(spec: ModelSpec, which: str):
    """formulaic's spec of the main (``"main"``) or random-effects (``"re"``) formula of
    a spec built without it (:func:`formula_specs`), learned on a prototype frame."""
    cols = [c for c in spec.formula_columns if c in spec.column_kinds]
    proto = prototype(cols, spec.column_kinds, spec.native, spec.levels, size=None)
    with term_order(spec.term_order):
        if which == "main":
            return model_matrix(spec.formula, proto, "formula", "numpy", spec.context).model_spec
        return model_matrix(spec.re_formula, proto, "re_formula", "numpy", spec.context).model_spec


def plan_variance_components(
    parsed: ParsedFormulas, vc_formula, levels, kinds, native, context=None, arrays=None
):
    """The sparse plan and the column names of each variance component (sorted by name;
    ``context``: the caller's names; ``arrays``: levels found as arrays, by column)."""
    plans: list[VCPlan] = []
    names: list[list[str]] = []
    for name in parsed.vc_names:
        cols = parsed.vc[name].columns
        plan, column_names = plan_variance_component(
            name, vc_formula[name], cols, levels, kinds, native, context, arrays
        )
        plans.append(plan)
        names.append(column_names)
    return plans, names


def check_distinct_components(
    vc_names: list[str],
    vc_column_names: list,
    exog_re_names: list[str],
    groups: str,
    re_formula: str | None,
) -> None:
    """Refuse a variance component whose columns are those of another component, or
    all among the random-effects columns (``exog_re``): the model is then not
    identifiable (only the sum of the two variances, or of the component's variance
    and that of the random effects, is), and a fit would split it arbitrarily.
    Columns are compared by name (formulaic's names: ``0 + C(c)`` and ``C(c) - 1`` give
    the same), the random intercept by ``Intercept`` (named after the group column in
    ``exog_re_names``).  Columns dependent within one component are identifiable and
    not refused.  Components of equal columns under different names (one factor under
    two names) are refused from the statistics, before the optimizer
    (:func:`dmixed.fit.start.check_distinct_component_values`).

    Raises
    ------
    SpecError
        Naming both components (or the component and ``re_formula``) and the columns.
    """
    re_columns = {"Intercept" if n == groups else n for n in exog_re_names}
    seen: dict[frozenset, str] = {}
    for i, (name, names) in enumerate(zip(vc_names, vc_column_names, strict=True)):
        if _apart(i, vc_column_names, re_columns):
            continue  # (a component of 10^4 levels: no names written, hashed, compared)
        columns = frozenset(names)
        if columns in seen:
            raise SpecError(
                f"vc_formula components {seen[columns]!r} and {name!r} have the same "
                f"columns ({_some_names(names)}): their variances cannot be told apart "
                "(only their sum is identified); drop one of them"
            )
        seen[columns] = name
        if columns <= re_columns:
            raise SpecError(
                f"vc_formula component {name!r} has only columns of the random effects "
                f"of re_formula {re_formula if re_formula is not None else '1'!r} "
                f"({_some_names(names)}): its variance cannot be told apart from theirs "
                "(cov_re); drop the component or those columns from re_formula"
            )


def _apart(i: int, vc_column_names: list, re_columns: set) -> bool:
    """Whether component ``i``'s columns, named on first use (:class:`LevelNames`), are
    told apart from every other component's and from ``re_columns`` by their prefix
    alone (:meth:`LevelNames.apart`): then neither check can refuse it, nor another
    component for being equal to it."""
    names = vc_column_names[i]
    return (
        isinstance(names, LevelNames)
        and names.apart(re_columns)
        and all(names.apart(other) for j, other in enumerate(vc_column_names) if j != i)
    )


def _some_names(names, shown: int = 5) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_response_not_constant(
    spec: ModelSpec, data, scan: LevelScan, dask_input: bool, frame_columns=None, prepared=None
):
    """Refuse a constant response (from the whole pandas frame, or the Dask scan's range;
    ``frame_columns``: the frame's columns read already, a
    :class:`~dmixed.design.prepare.FrameColumns`).

    Returns the prepared columns of the pandas frame
    (:func:`~dmixed.design.prepare.prepare_columns`; None for Dask data), which
    :meth:`ModelSpec.transform` can take instead of preparing them again; ``prepared``:
    those columns where the caller prepared them already.

    Raises
    ------
    DataError
        If every finite value of the response is the same.
    """
    if not dask_input:
        if prepared is None:
            prepared = prepare_columns(
                spec, data, label_codes=scan.codes, frame_columns=frame_columns
            )
        plan = spec.plain_plan("lhs")
        if plan is not None and len(plan) == 1 and len(plan[0]) == 1:
            endog = prepared.columns[plan[0][0]]  # a numeric column: no formulaic
        else:
            n = len(data) - prepared.n_dropped
            frame = normalized_frame(spec, prepared.columns, n, spec.dense_columns)
            endog = materialize(spec.formulaic_spec("main").lhs, frame, spec.formula, spec.context)
        err = constant_response(spec.endog_name, *_finite_range(endog))
        if err is not None:
            raise err
        return prepared
    if scan.response_range is not None:
        err = constant_response(spec.endog_name, *scan.response_range)
        if err is not None:
            raise err
    return None


def constant_response(name: str, low: float, high: float) -> DataError | None:
    """The refusal of a response whose finite values, from ``low`` to ``high``, are all
    one (the one owner of its words, in process and on Dask); None where they differ
    or there is none (NaN)."""
    if low == high:
        return DataError(f"the response {name!r} is constant (all values {float(low)!r})")
    return None


def _finite_range(endog) -> tuple[float, float]:
    """The smallest and largest finite value of a response (NaN, NaN: none)."""
    endog = np.asarray(endog, dtype=np.float64).reshape(-1)
    low, high = (endog.min(), endog.max()) if endog.size else (np.nan, np.nan)
    if not (np.isfinite(low) and np.isfinite(high)):  # NaN or ±inf: the finite ones
        finite = endog[np.isfinite(endog)]
        low, high = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
    return float(low), float(high)


def dask_constant_response(spec: ModelSpec, ddf, client=None) -> DataError | None:
    """:func:`constant_response` of a Dask collection's response as the spec reads it
    (rows dropped, the response's formula applied: the values a fit in process checks),
    from one task per partition.  For a refusal of the statistics (no residual
    variation) where the level scan read no response: one more read of the data, on
    that error's path only, of the columns the response needs (:func:`response_columns`).
    ``client``: the fit's Dask client (None: Dask's default)."""
    import dask

    column = _response_column(spec)
    parts = select_columns(ddf, response_columns(spec), spec.group_name).to_delayed()
    ranges = [dask.delayed(_partition_range)(part, spec, column) for part in parts]
    found = compute_with(ranges, client, "reading the response")
    lows = [low for low, _ in found if not np.isnan(low)]
    highs = [high for _, high in found if not np.isnan(high)]
    if not lows:
        return None
    return constant_response(spec.endog_name, min(lows), max(highs))


def response_columns(spec: ModelSpec) -> list[str]:
    """The columns of a Dask collection that :func:`dask_constant_response` reads: the
    response's column alone where the response is one numeric column read as it is and
    no row is dropped for a missing value in another column (``missing="drop"``
    decides the rows kept from every used column); else every used column (the
    response's formula is applied to the prepared columns)."""
    column = _response_column(spec)
    return [column] if column is not None else needed_columns(spec)


def _response_column(spec: ModelSpec) -> str | None:
    """The response's column where its values are the column's (see
    :func:`response_columns`), else None."""
    plan = spec.plain_plan("lhs")
    if spec.missing == "drop" or plan is None or len(plan) != 1 or len(plan[0]) != 1:
        return None
    column = plan[0][0]
    # an integer column read about a reference is not its values
    return None if column in spec.references else column


def _partition_range(pdf: pd.DataFrame, spec: ModelSpec, column: str | None) -> tuple[float, float]:
    """:func:`_finite_range` of one partition's response (NaN, NaN: no row); ``column``:
    the response's column, read as a fit in process reads it (None: the spec's
    transform of the partition)."""
    if not len(pdf):
        return np.nan, np.nan
    if column is not None:
        return _finite_range(to_float(pdf[column], column))
    return _finite_range(spec.transform(pdf).endog)
