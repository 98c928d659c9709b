"""The fixed- and random-effects matrices (and the response) of one normalised partition.

When every term of a formula is the intercept, a numeric column or an interaction of
numeric columns, the matrix is built with numpy (column-major) instead of formulaic,
which costs several times more on large partitions; anything else (categoricals,
``I()``, functions) goes through formulaic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .coded import CodedPlan, coded_matrix
from .dtypes import NUMERIC
from .evaluate import check_output, materialize
from .vc import reads_columns

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "PlainPlan",
    "find_plain_plan",
    "fixed_effects",
    "main_plain_plans",
    "needs_frame",
    "plain_matrix",
    "random_effects",
    "shared_re_columns",
]

# Column j of a plain matrix is the product of the columns named in plan[j] (none: ones).
PlainPlan = list[tuple[str, ...]]


def find_plain_plan(spec: ModelSpec, which: str) -> PlainPlan | bool:
    """The plain plan of ``"rhs"`` (fixed effects), ``"lhs"`` (response) or ``"re"``;
    False when a term is not a product of numeric columns (``ModelSpec.plain_plan``
    caches this)."""
    fspec = spec.formulaic_spec("re") if which == "re" else None
    if which != "re":
        fspec = getattr(spec.formulaic_spec("main"), which, None)
    if fspec is None:
        return False
    plan = []
    for term in fspec.terms:
        names = []
        for factor in term.factors:
            method = getattr(factor.eval_method, "value", "")
            if method == "literal" and factor.expr == "1" and len(term.factors) == 1:
                continue
            if method != "lookup" or spec.column_kinds.get(factor.expr) != NUMERIC:
                return False
            names.append(factor.expr)
        plan.append(tuple(names))
    expected = [":".join(names) if names else "Intercept" for names in plan]
    if expected != list(fspec.column_names):
        return False  # a term with several columns, or an unexpected order
    return plan


def plain_matrix(plan: PlainPlan, frame, n: int, names: list[str], what: str) -> np.ndarray:
    """Model matrix of a plain plan, shape ``(n, len(plan))``, checked for non-finite values.

    ``frame``: the normalised partition, a DataFrame or a mapping of column name to its
    float values (:func:`needs_frame`).

    Only product columns are checked: the columns were checked finite (or their rows
    dropped) when the partition was prepared, so a copy or a column of ones is finite,
    while a product of finite values can overflow.
    """
    # column-major: every column is written (and later read by the kernels'
    # per-column sums) contiguously
    out = np.empty((n, len(plan)), order="F")
    for j, cols in enumerate(plan):
        if not cols:
            out[:, j] = 1.0
            continue
        np.copyto(out[:, j], np.asarray(frame[cols[0]], dtype=np.float64))
        if len(cols) == 1:
            continue  # a copy: no product, no floating-point state to set
        # an overflow is the error check_output raises below, naming the column, not
        # numpy's RuntimeWarning besides it
        with np.errstate(over="ignore", invalid="ignore"):
            for name in cols[1:]:
                out[:, j] *= np.asarray(frame[name], dtype=np.float64)
    products = [j for j, cols in enumerate(plan) if len(cols) > 1]
    if products:
        check_output(out[:, products], [names[j] for j in products], what)
    return out


def main_plain_plans(spec: ModelSpec):
    """``(rhs, lhs)`` plain plans when :func:`fixed_effects` builds ``exog`` with numpy
    (column-major, one column per plan entry), else ``(None, None)``."""
    rhs, lhs = spec.plain_plan("rhs"), spec.plain_plan("lhs")
    keep = spec.fixed_kept
    if rhs is not None and keep is not None:  # drop_cols: the plan of the kept columns
        rhs = [rhs[j] for j in keep] if len(rhs) == len(spec.exog_names_built) else None
    if rhs is not None and lhs is not None and len(lhs) == 1 and len(rhs) == len(spec.exog_names):
        return rhs, lhs
    return None, None


def needs_frame(spec: ModelSpec) -> bool:
    """Whether :func:`fixed_effects`, :func:`random_effects` or a variance component
    reads the partition as a DataFrame (formulaic); False when every matrix is a plain
    plan and every component reads columns only (:func:`~dmixed.design.vc.reads_columns`),
    which read the normalised columns as they are."""
    rhs, _ = spec.main_plans()
    if rhs is None or not all(reads_columns(plan) for plan in spec.vc_plans):
        return True
    if spec.re_kind != "formula":
        return False
    plan = spec.plain_plan("re")
    return plan is None or len(plan) != len(spec.exog_re_names)


def fixed_effects(
    spec: ModelSpec,
    frame: pd.DataFrame,
    n: int,
    response: bool = True,
    codes: dict[str, np.ndarray] | None = None,
):
    """``(endog, exog)`` of shapes ``(n,)`` and ``(n, k_fe)``; endog is NaN when
    ``response`` is False.

    ``codes``: the level codes of the factors of the spec's coded plan
    (:func:`~dmixed.design.coded.factor_codes`; None: not given), with which the
    matrix is built without formulaic where the plan applies
    (:func:`~dmixed.design.coded.coded_matrix`).

    Raises
    ------
    DataError
        If a value is not finite.
    """
    p = len(spec.exog_names)
    if n == 0:
        return np.empty(0), np.empty((0, p))
    rhs, lhs = spec.main_plans()
    if rhs is not None:
        exog = plain_matrix(rhs, frame, n, spec.exog_names, "fixed-effects design")
        if not response:
            return np.full(n, np.nan), exog
        endog = plain_matrix(lhs, frame, n, [spec.endog_name], "response")[:, 0]
        return endog, exog
    coded = spec.coded_plan() if codes is not None else None
    built = _coded_effects(spec, coded, frame, n, response, codes) if coded is not None else None
    if built is not None:
        return built
    if not response:
        mm = materialize(spec.formulaic_spec("main").rhs, frame, spec.formula, spec.context)
        exog = _kept_columns(spec, np.asarray(mm, dtype=np.float64).reshape(n, -1))
        check_output(exog, spec.exog_names, "fixed-effects design")
        return np.full(n, np.nan), exog
    mm = materialize(spec.formulaic_spec("main"), frame, spec.formula, spec.context)
    endog = np.array(np.asarray(mm.lhs, dtype=np.float64).reshape(n, -1)[:, 0])
    exog = _kept_columns(spec, np.asarray(mm.rhs, dtype=np.float64).reshape(n, -1))
    check_output(endog[:, None], [spec.endog_name], "response")
    check_output(exog, spec.exog_names, "fixed-effects design")
    return endog, exog


def _coded_effects(
    spec: ModelSpec, plan: CodedPlan, frame, n: int, response: bool, codes
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`fixed_effects` from a coded plan, checked as formulaic's matrices are;
    None where the plan does not apply to these rows (formulaic then builds them)."""
    lhs = spec.plain_plan("lhs")
    if response and (lhs is None or len(lhs) != 1):
        return None
    mat = coded_matrix(plan, frame, codes, n)
    if mat is None:
        return None
    exog = _kept_columns(spec, mat)
    if not response:
        check_output(exog, spec.exog_names, "fixed-effects design")
        return np.full(n, np.nan), exog
    assert lhs is not None
    endog = np.array(plain_matrix(lhs, frame, n, [spec.endog_name], "response")[:, 0])
    check_output(endog[:, None], [spec.endog_name], "response")
    check_output(exog, spec.exog_names, "fixed-effects design")
    return endog, exog


def _kept_columns(spec: ModelSpec, exog: np.ndarray) -> np.ndarray:
    """The formula's fixed-effects columns less those ``drop_cols`` dropped
    (:attr:`~dmixed.design.spec.ModelSpec.fixed_kept`), C-contiguous."""
    keep = spec.fixed_kept
    return np.ascontiguousarray(exog if keep is None else exog[:, keep])


def shared_re_columns(spec: ModelSpec, exog: np.ndarray) -> np.ndarray | None:
    """``exog_re`` as a view of ``exog`` when its columns are a run of the fixed-effects
    columns (``1 + x`` in both formulas), both built with numpy: no copy, and the
    statistics pass sees the shared columns as one (:func:`kernels.product_plan`)."""
    rhs, _ = spec.main_plans()
    if rhs is None or not exog.flags.f_contiguous:
        return None
    if spec.re_kind == "ones":
        plan: PlainPlan | None = [()]
    else:
        plan = spec.plain_plan("re")
    if plan is None:
        return None
    q = len(plan)
    for j in range(len(rhs) - q + 1):
        if rhs[j : j + q] == plan:
            return exog[:, j : j + q]
    return None


def random_effects(
    spec: ModelSpec, frame: pd.DataFrame, n: int, exog: np.ndarray | None = None
) -> np.ndarray:
    """``exog_re``, shape ``(n, k_re)``: ones (random intercept), none, or the
    ``re_formula``'s matrix (a view of ``exog`` where it can be).

    Raises
    ------
    DataError
        If a value is not finite.
    """
    if exog is not None and n and spec.re_kind != "none":
        view = spec.re_columns_of_exog(exog)
        if view is not None:
            return view
    if spec.re_kind == "ones":
        return np.ones((n, 1))
    if spec.re_kind == "none":
        return np.empty((n, 0))
    q = len(spec.exog_re_names)
    if n == 0:
        return np.empty((0, q))
    plan = spec.plain_plan("re")
    if plan is not None and len(plan) == q:
        return plain_matrix(plan, frame, n, spec.exog_re_names, "random-effects design")
    mm = materialize(spec.formulaic_spec("re"), frame, spec.re_formula, spec.context)
    out = np.ascontiguousarray(np.asarray(mm, dtype=np.float64).reshape(n, q))
    check_output(out, spec.exog_re_names, "random-effects design")
    return out
