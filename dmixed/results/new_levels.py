"""Levels of variance components that new rows bring to prediction with
``include_random=True`` (lme4's ``allow.new.levels``, MixedModels.jl's ``new_re_levels``).

A row to predict may hold a level of a variance component's factor that the fit never
saw (``{"cask": "0 + C(cask)"}`` and a new cask): its random effect was not estimated.
By default (``new_levels="error"``) a row of a group the fit saw is refused, naming the
group and the level (lme4's ``allow.new.levels = FALSE``); ``"population"`` predicts it
with that random effect at its mean, zero (lme4's ``allow.new.levels = TRUE``,
MixedModels.jl's ``new_re_levels = :population``); ``"nan"`` gives the row NaN
(``:missing``).  Rows of groups the fit did not see follow ``new_groups``: all their
random effects are new.  Only columns read by the variance components alone can bring
new levels: a new level of a fixed or ``re_formula`` factor has no coefficient, and
stays an error of the design.

A level the fit saw, but not in this group, is new to the group all the same (nested
components: class ``"3"`` of another school is another class): its random effect in
this group was not estimated either, and it follows ``new_levels`` too
(:func:`entries_new_to_groups`, :func:`refuse_new_to_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..design.dtypes import NUMERIC_LEVELS, comparable_keys, py_scalars
from ..design.labels import level_in_group
from ..design.levels import UNKNOWN_CODE, level_codes, native_level_positions
from ..design.messages import check_present
from ..design.new_levels import vc_only_columns
from ..design.prepare import needed_columns
from ..design.vc import column_levels
from ..errors import DataError, SpecError

__all__ = [
    "NEW_LEVELS",
    "NewLevels",
    "NewToGroupsError",
    "check_new_levels",
    "entries_new_to_groups",
    "new_levels_of",
    "new_to_groups_problem",
    "refuse_new_to_groups",
]

#: What a refusal of new levels says to do.
REMEDY = (
    "the argument new_levels (default 'error') decides these rows (unseen groups are "
    "decided by new_groups, whose default 'population' predicts them with a warning): "
    "pass new_levels='population' to predict them with those random effects at zero "
    "(lme4's allow.new.levels=TRUE), or new_levels='nan'"
)


class NewToGroupsError(DataError):
    """The refusal of :func:`refuse_new_to_groups` (levels seen in other groups only);
    :attr:`problem` is its message without the remedy, for a refusal that also names
    levels the fit never saw (:func:`refuse_both`; the whole message when made from one
    alone, as where a partition's number is added)."""

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = message if problem is None else problem


#: What ``include_random=True`` gives rows (of groups the fit saw) with a level of a
#: variance component the fit did not see.
NEW_LEVELS = ("error", "population", "nan")


def check_new_levels(new_levels: str) -> None:
    """Refuse a ``new_levels`` that is not one of :data:`NEW_LEVELS` (SpecError)."""
    if new_levels not in NEW_LEVELS:
        shown = ", ".join(repr(v) for v in NEW_LEVELS)
        raise SpecError(f"new_levels must be one of {shown}, got {new_levels!r}")


@dataclass
class NewLevels:
    """The rows of a frame with new levels and the entries they clear.

    ``rows``: bool (n,), the rows holding a level the fit did not see; ``clear``: per
    such column and block reading it, ``(component, rows of that column, first global
    column, end)``: the entries of those rows in that range of the component's columns
    are dropped (their random effects are at zero).
    """

    rows: np.ndarray
    clear: list[tuple[int, np.ndarray, int, int]]
    #: with ``new_levels="error"``, what rows of fitted groups with levels the fit never
    #: saw are refused for (raised once the design shows whether the rows hold levels
    #: new to their groups as well: :func:`refuse_both`); None: no such row
    refusal: str | None = None

    def apply(self, dm) -> tuple[np.ndarray, np.ndarray]:
        """Drop the cleared entries of ``dm`` (design matrices of the frame's kept rows,
        ``dm.keep``) in place; the kept rows that hold new levels (bool), and per
        component the sum of the squares of each kept row's dropped values (n_kept,
        k_vc): each is a level of its own, whose random effect has the component's
        variance."""
        keep = dm.keep
        squares = np.zeros((len(dm.exog), len(dm.vc_cols)))
        for comp, rows, lo, hi in self.clear:
            at = rows if keep is None else rows[keep]
            cols, vals = dm.vc_cols[comp], dm.vc_vals[comp]
            sel = at[:, None] & (cols >= lo) & (cols < hi)
            squares[:, comp] += np.where(sel, vals, 0.0) ** 2 @ np.ones(sel.shape[1])
            # new arrays: the design's may be views of the caller's columns
            dm.vc_cols[comp] = np.where(sel, -1, cols)
            dm.vc_vals[comp] = np.where(sel, 0.0, vals)
        return (self.rows if keep is None else self.rows[keep]), squares


def _unseen(spec, s: pd.Series, c: str) -> np.ndarray:
    """Rows of ``s`` (column ``c``) holding a value that is not one of its levels."""
    if spec.column_kinds[c] != NUMERIC_LEVELS:
        codes = level_codes(
            s, spec.levels[c], lambda: spec.level_index(c), lambda: spec.text_levels(c)
        )
        return codes == UNKNOWN_CODE
    present = s.notna().to_numpy()
    out = np.zeros(len(s), dtype=bool)
    positions = native_level_positions(spec.level_array(c), s[present], spec.native[c])
    out[present] = positions == UNKNOWN_CODE
    return out


def _known_level(spec, s: pd.Series, c: str, rows: np.ndarray) -> pd.Series:
    """``s`` with the values of ``rows`` replaced by the first level (entries cleared
    later, :meth:`NewLevels.apply`): the design then reads every row."""
    first = spec.levels[c][0]
    if isinstance(s.dtype, pd.CategoricalDtype) and first not in s.cat.categories:
        s = s.cat.add_categories([first])
    return s.where(~rows, first)


def _reads_only_vc(spec) -> list[str]:
    """The factor columns only the variance components read (not the fixed effects,
    nor ``re_formula``)."""
    re_spec = spec.formulaic_spec("re")
    re_columns = set() if re_spec is None else set(re_spec.required_variables)
    return [c for c in vc_only_columns(spec) if c not in re_columns]


def _unseen_problem(spec, df: pd.DataFrame, c: str, rows: np.ndarray) -> str:
    """What rows of fitted groups with levels of ``c`` the fit never saw are refused
    for (without the remedy), naming each component that reads ``c`` and the levels
    of its term in those rows (an interaction's: every factor's value)."""
    readers = []
    shown: list[str] = []
    n_shown = 0
    for name, plan in zip(spec.vc_names, spec.vc_plans, strict=True):
        for block in plan.blocks:
            sources = [f.source for f in block.factors if f.kind == "cat"]
            if c not in sources:
                continue
            readers.append(name)
            pairs = df.loc[rows, [spec.group_name, *sources]].drop_duplicates()
            n_shown += len(pairs)
            cols = [py_scalars(pairs.iloc[:5, j].tolist()) for j in range(pairs.shape[1])]
            for g, *levels in zip(*cols, strict=True):
                shown.append(level_in_group(name, levels, g))
            break
    named = " and ".join(repr(r) for r in readers)
    what = "component" if len(readers) == 1 else "components"
    more = ", ..." if n_shown > 5 else ""
    return (
        f"{int(rows.sum())} row(s) of groups of {spec.group_name!r} the fit saw hold levels "
        f"of the variance {what} {named} (column {c!r}) that the fit did not "
        f"see ({', '.join(shown[:5])}{more})"
    )


def refuse_both(found: NewLevels, new_to_groups: str | None) -> None:
    """Raise the refusal of ``found`` (levels the fit never saw), joined with
    ``new_to_groups`` (:func:`new_to_groups_problem` of the same rows; None where
    they hold no level new to its group): one message naming both kinds.

    Raises
    ------
    DataError
        Always.
    """
    if new_to_groups is not None:
        raise DataError(f"{found.refusal}; and {new_to_groups}; {REMEDY}")
    raise DataError(f"{found.refusal}; {REMEDY}")


def new_levels_of(spec, df: pd.DataFrame, group_labels, new_levels: str):
    """``(frame, NewLevels or None)``: ``df`` with the new levels of the variance
    components' own columns replaced so that the design reads it, and which entries to
    clear (None: no new level).

    Raises
    ------
    DataError
        ``new_levels="error"`` and a row of a group the fit saw holds a new level
        (naming the column, groups and levels); group keys of another class than the
        fitted ones; columns the prediction reads absent from ``df`` (checked first, as
        the design checks them: the group column is read here).
    """
    check_present(needed_columns(spec, response=False, random=True), df.columns)
    found = {c: _unseen(spec, df[c], c) for c in _reads_only_vc(spec) if c in df.columns}
    found = {c: rows for c, rows in found.items() if rows.any()}
    if not found:
        return df, None
    labels = np.asarray(group_labels)
    keys = comparable_keys(np.asarray(df[spec.group_name]), labels, spec.group_name)
    known = pd.Index(labels).get_indexer(pd.Index(keys)) >= 0
    df = df.copy(deep=False)
    clear = []
    refusals = []
    for c, rows in found.items():
        if new_levels == "error" and (rows & known).any():
            refusals.append(_unseen_problem(spec, df, c, rows & known))
        df[c] = _known_level(spec, df[c], c, rows)
        for comp, plan in enumerate(spec.vc_plans):
            for block in plan.blocks:
                if any(f.source == c for f in block.factors):
                    width = int(np.prod([f.width for f in block.factors]))
                    clear.append((comp, rows, block.offset, block.offset + width))
    every = np.logical_or.reduce(list(found.values()))
    return df, NewLevels(every & known, clear, "; ".join(refusals) or None)


def entries_new_to_groups(idx: np.ndarray, slots, vc_cols, vc_vals) -> list[np.ndarray]:
    """Per variance component, the entries (n, k_l) of rows of fitted groups (``idx``
    ≥ 0) in a column their group did not have in the fit: present and non-zero, but
    without a slot (``slots``: :meth:`~dmixed.results.prediction.Predictor.vc_slots`)."""
    seen = (idx >= 0)[:, None]
    return [
        seen & (cols >= 0) & (vals != 0) & (slot < 0)
        for (_, slot), cols, vals in zip(slots, vc_cols, vc_vals, strict=True)
    ]


def new_to_groups_problem(
    entries, idx, vc_cols, group_labels, group_name, names, plans=None
) -> str | None:
    """What the rows of ``entries`` (:func:`entries_new_to_groups`) are refused for,
    naming every component concerned and the first groups and levels (five in all, as
    the refusal of levels the fit never saw), without the remedy (None: no such row);
    ``names``: ``(vc_names, vc_column_names)`` of the components, or None (then
    columns are shown by number); ``plans``: ``(vc_plans, levels)`` of the model's
    spec, the levels as the data holds them (None, a model of arrays: a column is
    shown by its name)."""
    readers: list[str] = []
    shown: list[str] = []
    n_shown = 0
    for comp, new in enumerate(entries):
        rows, ks = np.nonzero(new)
        if not rows.size:
            continue
        cols = vc_cols[comp][rows, ks]
        pairs = pd.DataFrame({"g": idx[rows], "c": cols}).drop_duplicates()
        n_shown += len(pairs)
        first = pairs.iloc[: max(5 - len(shown), 0)]
        labels = py_scalars(np.asarray(group_labels)[first["g"].to_numpy()].tolist())
        if names is None:
            component, levels = f"component {comp}", [(f"column {c}",) for c in first["c"]]
        else:
            component = names[0][comp]
            levels = [
                column_levels(plans[0][comp], plans[1], c)
                if plans is not None
                else (names[1][comp][c],)
                for c in first["c"]
            ]
        readers.append(component)
        shown += [level_in_group(component, v, g) for g, v in zip(labels, levels, strict=True)]
    if not readers:
        return None
    named = " and ".join(repr(r) for r in readers)
    what = "component" if len(readers) == 1 else "components"
    more = ", ..." if n_shown > len(shown) else ""
    n_rows = int(np.logical_or.reduce([e.any(axis=1) for e in entries]).sum())
    return (
        f"{n_rows} row(s) of groups of {group_name!r} the fit saw hold levels of the "
        f"variance {what} {named} that the fit saw in other groups but not in "
        f"theirs ({', '.join(shown)}{more}): their random effects in those groups were "
        "not estimated"
    )


def refuse_new_to_groups(
    entries, idx, vc_cols, group_labels, group_name, names, plans=None
) -> None:
    """Raise a DataError naming the first groups and levels of ``entries``
    (:func:`entries_new_to_groups`; :func:`new_to_groups_problem`).

    Raises
    ------
    DataError
        Always (when ``entries`` has one).
    """
    problem = new_to_groups_problem(entries, idx, vc_cols, group_labels, group_name, names, plans)
    if problem is not None:
        raise NewToGroupsError(
            f"{problem}; {REMEDY}",
            problem,
        )
