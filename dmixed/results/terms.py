"""The terms of a fit's fixed-effects design, and whether it holds a constant: what
statsmodels' ``wald_test_terms`` and ``k_constant`` read from the model's formula
(patsy's ``DesignInfo``) and data (``ModelData._handle_constant``)."""

from __future__ import annotations

import numpy as np

from ..design.labels import formulaic_spelling, patsy_spelling
from ..design.spec import dropped_columns
from ..errors import SpecError
from ..stats.statistics import constant_in_statistics

__all__ = [
    "constant_in_rows",
    "constant_in_spec",
    "constant_of_fit",
    "factor_term",
    "fe_terms",
]


def formula_structure(spec) -> list:
    """formulaic's ``(term, scoped terms, column names)`` of the fixed-effects formula."""
    main = spec.formulaic_spec("main")
    return list(getattr(main, "rhs", main).structure)


def fe_terms(spec, exog_names: list[str]) -> list[tuple[str, np.ndarray]]:
    """``(name, column positions in exog_names)`` of every term of the fixed-effects
    formula, in the formula's order (the intercept named ``"Intercept"`` as
    statsmodels'); one term per column without a formula (array models, as
    statsmodels does without a ``model_spec``).  Columns ``drop_cols`` took out of the
    design are out of their terms, and a term with none left is out of the list (as
    statsmodels' ``from_formula`` takes a dropped whole term out of its ``design_info``).
    Terms are named in the spelling of text of ``exog_names`` (patsy's, or formulaic's
    that a model saved before keeps: :mod:`~dmixed.design.labels`).

    Raises
    ------
    SpecError
        A column of a term that is not among ``exog_names`` and was not dropped.
    """
    if spec is None:
        return [(name, np.array([i])) for i, name in enumerate(exog_names)]
    return [(name, columns) for name, columns, _, _ in _named_terms(spec, exog_names)]


def _named_terms(spec, exog_names: list[str]) -> list[tuple[str, np.ndarray, list, list]]:
    """:func:`fe_terms` of a formula model, each with its scoped terms and its built
    columns (dropped ones included)."""
    # names as patsy spells them, whichever spelling a saved model keeps
    patsy_names = patsy_spelling(exog_names, spec.formula)
    position = {name: i for i, name in enumerate(patsy_names)}
    # terms named as the names kept: formulaic's spelling where a saved model keeps it
    kept_patsy = patsy_names == list(exog_names)
    dropped = set(patsy_spelling(dropped_columns(spec), spec.formula))
    out = []
    for term, scoped, built in formula_structure(spec):
        columns = [c for c in patsy_spelling(built, spec.formula) if c not in dropped]
        if not columns:
            continue
        missing = [c for c in columns if c not in position]
        if missing:
            raise SpecError(
                f"the term {str(term)!r} has columns {missing} that the fit's fixed effects "
                f"{list(exog_names)} do not have"
            )
        name = "Intercept" if str(term) == "1" else patsy_spelling([str(term)], spec.formula)[0]
        if not kept_patsy:
            name = formulaic_spelling([name], spec.formula)[0]
        positions = np.array([position[c] for c in columns], dtype=np.int64)
        out.append((name, positions, list(scoped), list(built)))
    return out


def factor_term(spec, exog_names: list[str], term_name: str) -> tuple[np.ndarray, list, np.ndarray]:
    """The columns, levels and coding of a fixed-effects term that is one categorical
    factor (what statsmodels' ``t_test_pairwise`` reads from the formula's
    ``model_spec``).

    Parameters
    ----------
    spec : ModelSpec
        The fit's formula spec.
    exog_names : list of str
        The fixed effects' names.
    term_name : str
        The term, named as :func:`fe_terms` names it (``"C(site)"``, ``"group"``).

    Returns
    -------
    columns : ndarray of int (p,)
        The term's positions in ``exog_names``.
    levels : list (L,)
        The factor's levels, in the coding's order.
    coding : ndarray (L, p)
        Row ``l``: the term's columns on a row of level ``l`` (the contrast coding
        matrix: treatment, sum, ... reduced or full rank as the formula codes it).

    Raises
    ------
    SpecError
        No formula (an array model); no such term; a term of more than one factor
        (an interaction) or of a factor that is not categorical; a term some of whose
        columns ``drop_cols`` took out of the design.
    """
    if spec is None:
        raise SpecError(
            "t_test_pairwise needs the levels of a factor from the model's formula; this "
            "model was made from arrays: test differences of its columns with t_test"
        )
    terms = _named_terms(spec, exog_names)
    found = [t for t in terms if t[0] == term_name]
    if not found:
        raise SpecError(
            f"term_name: {term_name!r} is not a term of the fixed effects (the terms: "
            f"{[t[0] for t in terms]})"
        )
    _, columns, scoped, built = found[0]
    factors = [sf for st in scoped for sf in st.factors]
    if len(factors) != 1:
        raise SpecError(
            f"term_name: {term_name!r} is an interaction of {len(factors)} factors; "
            "t_test_pairwise compares the levels of a main effect (statsmodels: "
            "interaction effects not yet supported)"
        )
    main = spec.formulaic_spec("main")
    rhs = getattr(main, "rhs", main)
    expr = factors[0].factor.expr
    state = rhs.encoder_state.get(expr)
    contrasts = [c for f, c in rhs.factor_contrasts.items() if f.expr == expr]
    if state is None or state[0].value != "categorical" or not contrasts:
        raise SpecError(
            f"term_name: {term_name!r} is not a categorical factor: t_test_pairwise "
            "compares the levels of a categorical term"
        )
    if len(columns) != len(built):
        raise SpecError(
            f"term_name: {term_name!r} has columns that drop_cols took out of the design; "
            "its levels can no longer be compared pairwise"
        )
    levels = list(state[1]["categories"])
    coding = np.asarray(
        contrasts[0].get_coding_matrix(reduced_rank=len(built) != len(levels)),
        dtype=np.float64,
    )
    if coding.shape != (len(levels), len(columns)):
        raise SpecError(
            f"term_name: {term_name!r}: its coding has shape {coding.shape}, not one row per "
            f"level ({len(levels)}) and one column per column of the term ({len(columns)})"
        )
    return columns, levels, coding


def constant_in_spec(spec) -> int:
    """1 if the fixed-effects formula has an intercept, or a term whose every factor is
    categorical with full-rank coding (``0 + C(a)``, ``0 + C(a):C(b)``: its columns
    span the cells' indicators, which sum to 1 on every row); else 0."""
    main = spec.formulaic_spec("main")
    states = getattr(main, "rhs", main).encoder_state
    for term, scoped, _ in formula_structure(spec):
        if str(term) == "1":
            return 1
        factors = [sf for st in scoped for sf in st.factors]
        if factors and all(
            not sf.reduced
            and states.get(sf.factor.expr, (None,))[0] is not None
            and states[sf.factor.expr][0].value == "categorical"
            for sf in factors
        ):
            return 1
    return 0


def constant_in_rows(exog: np.ndarray) -> int:
    """statsmodels' ``k_constant`` of a design (``ModelData._handle_constant`` with
    ``hasconst=None``): 1 if a column is constant and not zero, or (no such column)
    if a column of ones lies in the span of the columns (rank of ``[1, X]`` equal to
    that of ``X``); else 0.  ``exog`` (n, p)."""
    x = np.asarray(exog, dtype=np.float64)
    if x.shape[0] == 0:
        return 0
    # a column is constant when every row equals its first (as max == min: NaN never
    # is); only those not zero in the first row are looked at, one at a time, so that
    # a design with an intercept reads that one column, not every column twice
    for j in np.flatnonzero(x[0] != 0).tolist():
        column = x[:, j]
        if (column == column[0]).all():
            return 1
    augmented = np.column_stack([np.ones(x.shape[0]), x])
    return int(np.linalg.matrix_rank(augmented) == np.linalg.matrix_rank(x))


def constant_of_fit(model, stats) -> int | None:
    """statsmodels' ``k_constant`` of a fit's fixed-effects design, by its rule on the
    data: on the rows where the model holds them (1 where a column of ones was found
    with them, ``RowData.intercepts``, else :func:`constant_in_rows`), else on
    the statistics (:func:`~dmixed.stats.statistics.constant_in_statistics`: a Dask
    DataFrame, saved statistics), else from the formula (:func:`constant_in_spec`:
    neither design has a column of ones, or ``stats`` None); None for an array model
    without rows."""
    rows = getattr(model, "rows", None)
    if rows is not None:
        if rows.intercepts is not None and rows.intercepts[0] >= 0:
            return 1  # a column of ones (found with the rows): constant, not zero
        return constant_in_rows(rows.exog)
    found = None if stats is None else constant_in_statistics(stats)
    if found is not None:
        return found
    spec = getattr(model, "spec", None)
    return None if spec is None else constant_in_spec(spec)
