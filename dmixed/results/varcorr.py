"""Variances, standard deviations and correlations of the random effects (lme4's
``VarCorr``), from a results state record."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import ResultsState

__all__ = [
    "VARCORR_COLUMNS",
    "component_label",
    "held_correlations",
    "term_levels",
    "term_order",
    "varcorr_frame",
    "varcorr_text",
]

#: Columns of :func:`varcorr_frame`, as lme4's ``as.data.frame(VarCorr(fit))``.
VARCORR_COLUMNS = ["grp", "var1", "var2", "vcov", "sdcor"]


def term_levels(state: ResultsState) -> list[int]:
    """The number of levels of each random-effects term of a fit, as lme4 counts them:
    the groups, then each variance component's (group, level) pairs with rows (the
    component is lme4's ``(1 | group:level)``)."""
    slots = state.vc_slot_cols
    return [int(state.n_groups)] + [int(np.count_nonzero(np.asarray(t) >= 0)) for t in slots]


def term_order(levels, k_re: int, k_vc: int) -> list[int]:
    """lme4's order of the random-effects terms present (0: the groups' term, present
    when ``k_re`` > 0; ``l`` + 1: variance component ``l``): ``mkReTrms`` sorts them by
    decreasing number of levels, ``rev(order(nl))``, when they are not so already.
    ``levels`` (k_vc + 1 entries, :func:`term_levels`); None: this order kept."""
    order = ([0] if k_re else []) + list(range(1, k_vc + 1))
    if levels is not None:
        nl = np.asarray([levels[t] for t in order], dtype=np.int64)
        if np.any(np.diff(nl) > 0):
            order = [order[i] for i in np.argsort(nl, kind="stable")[::-1]]
    return order


def component_label(group: str, name: str, n_groups: int, k_re: int) -> str:
    """The ``grp`` label of variance component ``name`` in lme4's ``VarCorr``.

    A component is lme4's term ``(1 | group:component)``, printed ``"<group>:<name>"``.
    In a model of exactly one group (statsmodels' idiom for crossed effects: ``groups``
    a constant column, one component per factor) ``group:component`` has the levels of
    ``component`` alone: the term is lme4's ``(1 | component)``, printed ``"<name>"``
    (``(1|subj) + (1|item)`` gives ``subj`` and ``item``, not ``one:subj``).  Where the
    one group also has random effects (``k_re > 0``, terms labelled ``group``), the
    prefix stays: a component named as the group's column would otherwise print as
    the group's own term.
    """
    return name if n_groups == 1 and k_re == 0 else f"{group}:{name}"


def held_correlations(state: ResultsState) -> list[tuple[int, int]]:
    """The ``(row, column)`` pairs (row > column) of ``cov_re`` that the fit held at 0
    with ``free`` (``state.held``: independent random effects, lme4's ``||``,
    MixedModels.jl's ``zerocorr``): no parameter of the model, so :func:`varcorr_frame`,
    the summary and ``confint`` show no row for them, as lme4 and MixedModels.jl show
    none.  A covariance held at another value stays shown (it is part of the model)."""
    held = getattr(state, "held", None)
    if held is None:
        return []
    q = len(state.names.exog_re_names)
    rows, cols = np.tril_indices(q)  # the packing order of ``held``: vech_lt, row by row
    cov = np.asarray(state.cov_re, dtype=np.float64).reshape(q, q)
    return [
        (int(rows[i]), int(cols[i]))
        for i in np.flatnonzero(np.asarray(held, dtype=bool)[: rows.size])
        if rows[i] != cols[i] and cov[rows[i], cols[i]] == 0.0
    ]


def varcorr_frame(state: ResultsState) -> pd.DataFrame:
    """The random-effects covariance as lme4's ``as.data.frame(VarCorr(fit))``.

    One row per variance (``var2`` missing: ``vcov`` the variance, ``sdcor`` its
    square root), then one per covariance of ``exog_re`` (``vcov`` the covariance,
    ``sdcor`` the correlation ``Ψ_jk / sqrt(Ψ_jj Ψ_kk)``, NaN where a variance is 0;
    none for a covariance the fit held at 0 with ``free``, :func:`held_correlations`),
    then one per variance component (``grp`` :func:`component_label`: ``"<group>:<name>"``,
    as lme4 names the term ``(1 | group:component)``, or ``"<name>"`` in a model of one
    group with no random effects; ``vcomp`` keeps statsmodels' name), the terms in lme4's order
    (:func:`term_order`: by decreasing number of levels), then the residual
    (``grp = "Residual"``, ``vcov = σ̂²``, ``sdcor = σ̂``).  Variances are on the data's
    scale (``cov_re`` and ``vcomp`` as reported, not relative to σ̂²).

    Returns
    -------
    DataFrame (k_re + k_re(k_re−1)/2 − held + k_vc + 1, 5)
        Columns :data:`VARCORR_COLUMNS`.
    """
    names = list(state.names.exog_re_names)
    group = state.names.group_name
    cov = np.asarray(state.cov_re, dtype=np.float64).reshape(len(names), len(names))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    terms = [[(group, n, None, cov[j, j], sd[j]) for j, n in enumerate(names)]]
    held = set(held_correlations(state))
    for j in range(len(names)):
        for k in range(j + 1, len(names)):
            if (k, j) in held:
                continue
            denom = sd[j] * sd[k]
            corr = cov[k, j] / denom if denom > 0 else np.nan
            terms[0].append((group, names[j], names[k], cov[k, j], corr))
    for name, var in zip(state.names.vc_names, np.asarray(state.vcomp), strict=True):
        grp = component_label(group, name, int(state.n_groups), len(names))
        terms.append([(grp, None, None, float(var), float(np.sqrt(max(var, 0.0))))])
    order = term_order(term_levels(state), len(names), len(terms) - 1)
    rows = [row for t in order for row in terms[t]]
    rows.append(("Residual", None, None, state.scale, float(np.sqrt(state.scale))))
    frame = pd.DataFrame(rows, columns=VARCORR_COLUMNS)
    frame[["vcov", "sdcor"]] = frame[["vcov", "sdcor"]].astype(np.float64)
    for c in ("var1", "var2"):  # lme4's NA: NaN in every row, whatever pandas inferred
        frame[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    return frame


def varcorr_text(state: ResultsState) -> str:
    """lme4's printed ``VarCorr`` block: Groups, Name, Variance, Std.Dev. and the
    correlations of each group's random effects (lower triangle)."""
    names = list(state.names.exog_re_names)
    frame = varcorr_frame(state)
    variances = frame[frame["var2"].isna()]
    corr = frame[frame["var2"].notna()]
    table = []
    shown_corr = len(corr) > 0  # none where every correlation was held at 0 (``||``)
    for i, row in enumerate(variances.itertuples(index=False)):
        first = i == 0 or row.grp != variances["grp"].iloc[i - 1]
        cells = [
            row.grp if first else "",
            "" if pd.isna(row.var1) else str(row.var1),
            f"{row.vcov:.4g}",
            f"{row.sdcor:.4g}",
        ]
        if shown_corr and row.grp == state.names.group_name and row.var1 in names:
            j = names.index(row.var1)
            for k in range(j):
                found = corr[(corr.var1 == names[k]) & (corr.var2 == row.var1)].sdcor
                cells.append(f"{found.iloc[0]:.2f}" if len(found) else ".")  # "." held
        table.append(cells)
    header = ["Groups", "Name", "Variance", "Std.Dev.", *(["Corr"] if shown_corr else [])]
    width = max(len(r) for r in [*table, header])
    cols = [[r[c] if c < len(r) else "" for r in [header, *table]] for c in range(width)]
    sizes = [max(len(v) for v in col) for col in cols]
    lines = []
    for r in [header, *table]:
        cells = [(r[c] if c < len(r) else "") for c in range(width)]
        left = [cells[0].ljust(sizes[0]), cells[1].ljust(sizes[1])]
        right = [cells[c].rjust(sizes[c]) for c in range(2, width)]
        lines.append(" ".join(left + right).rstrip())
    return "\n".join(lines)
