"""Formulas of plain numeric columns, read without formulaic.

``"y ~ x1 + x2"``, ``"~ 0 + x1"``, ``"y ~ x1 - 1"``: a response that is one column name,
and terms that are column names joined by ``+`` with the intercept switched by ``1``,
``0``, ``+ 1``, ``- 1`` or ``+ 0``.  Such a formula means the same to formulaic (its
column names, their order, the intercept first) and its matrices are copies of the
columns, so the spec is built without formulaic's parse and prototype evaluation, which
cost milliseconds on every small fit.  Anything else (``C()``, ``I()``, functions, ``:``,
``*``, removing a named term, names that are not columns of the data, ``Intercept`` as a
column name, a formula with no column) is left to formulaic: :func:`read_plain` returns
None.

The whitelist of :mod:`dmixed.design.formula` still holds: every factor of a plain
formula is a name looked up in the data, which is exactly what the whitelist accepts
for a lookup factor (it must name a column of the data); nothing is evaluated.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from .formula import FactorInfo

__all__ = ["PlainFormula", "indicator_info", "read_plain", "read_plain_indicator"]

_TOKEN = re.compile(r"[A-Za-z_]\w*|[+\-]|[01]", re.ASCII)
# Each name is read whole ((?!\w) after it): a name split into shorter names (x10 as x1
# and 0) would match too, and a formula that fails to match (one with C() in it) made
# the engine try every split, exponential in the number of names.
_ALLOWED = re.compile(r"(?:\s*(?:[A-Za-z_]\w*(?!\w)|[+\-]|[01](?!\w)))*\s*", re.ASCII)


@dataclass(frozen=True)
class PlainFormula:
    """A formula of plain columns: ``response`` (None: one-sided), ``intercept`` and the
    term ``columns`` in formulaic's order (first use, duplicates dropped)."""

    response: str | None
    intercept: bool
    columns: tuple[str, ...]

    def names(self) -> list[str]:
        """formulaic's column names of the right-hand side (``Intercept`` first)."""
        return ["Intercept"] * self.intercept + list(self.columns)

    def plan(self) -> list[tuple[str, ...]]:
        """The plain plan (:data:`dmixed.design.matrices.PlainPlan`) of the right-hand
        side: ``()`` for the intercept, ``(column,)`` for a column."""
        return [()] * self.intercept + [(c,) for c in self.columns]


def _tokens(text: str) -> list[str] | None:
    if not _ALLOWED.fullmatch(text):
        return None
    return _TOKEN.findall(text)


def _items(tokens: list[str]) -> list[tuple[str, str]] | None:
    """``[(sign, item), ...]`` of ``[sign] item (sign item)*``; None otherwise."""
    items = []
    pos = 0
    while pos < len(tokens):
        sign = "+"
        if tokens[pos] in "+-":
            sign = tokens[pos]
            pos += 1
        elif items:
            return None  # two items without an operator between them
        if pos == len(tokens) or tokens[pos] in "+-":
            return None
        items.append((sign, tokens[pos]))
        pos += 1
    return items


def _is_column(name: str, columns) -> bool:
    return (
        name in columns
        and name != "Intercept"
        and name.isidentifier()
        and name.isascii()
        and not keyword.iskeyword(name)
    )


def _rhs(text: str, columns) -> tuple[bool, tuple[str, ...]] | None:
    tokens = _tokens(text)
    items = _items(tokens) if tokens else None
    if not items:
        return None
    intercept = True
    names: list[str] = []
    for sign, item in items:
        if item == "1":
            intercept = sign == "+"
        elif item == "0":
            if sign == "-":
                return None
            intercept = False
        elif sign == "-" or not _is_column(item, columns):
            return None
        elif item not in names:
            names.append(item)
    if not names:
        return None
    return intercept, tuple(names)


def read_plain(formula, columns, *, lhs: bool) -> PlainFormula | None:
    """The formula as a :class:`PlainFormula` when it is one (see the module docstring),
    else None (formulaic reads it; so it does for anything malformed, and its errors
    are the ones raised).

    ``columns``: the data's column names (a set); ``lhs``: whether the formula has a
    response (the main formula) or is one-sided (``re_formula``).
    """
    if not isinstance(formula, str):
        return None
    parts = formula.split("~")
    if lhs:
        if len(parts) != 2:
            return None
        response = parts[0].strip()
        if not _is_column(response, columns):
            return None
        rhs = parts[1]
    else:
        if len(parts) > 2 or (len(parts) == 2 and parts[0].strip()):
            return None
        response, rhs = None, parts[-1]
    read = _rhs(rhs, columns)
    if read is None:
        return None
    return PlainFormula(response, read[0], read[1])


#: ``0 + C(col)`` or ``0 + col``: a variance component of one indicator per level
_INDICATOR = re.compile(r"\s*0\s*\+\s*(C\()?([A-Za-z_][A-Za-z_0-9]*)(?(1)\))\s*", re.ASCII)


def read_plain_indicator(formula, columns) -> tuple[str, bool] | None:
    """``(column, called)`` of a variance-component formula ``0 + C(column)``
    (``called``) or ``0 + column`` naming a column of the data (``columns``), else None
    (formulaic reads it).  Where the data has a column named ``C``, ``C(...)`` could
    read it: None too."""
    match = _INDICATOR.fullmatch(formula) if isinstance(formula, str) else None
    if match is None:
        return None
    called, col = match.group(1) is not None, match.group(2)
    if not _is_column(col, columns) or (called and "C" in columns):
        return None
    return col, called


def indicator_info(formula, columns, env=None) -> FactorInfo | None:
    """What :func:`~dmixed.design.formula.analyze_terms` finds in a variance-component
    formula ``0 + C(column)`` or ``0 + column`` (:func:`read_plain_indicator`), without
    formulaic's parser; None for any other formula, or where the caller's scope
    (``env``) has a name ``C`` (the analysis decides whether that is refused)."""
    read = read_plain_indicator(formula, columns)
    if read is None:
        return None
    col, called = read
    if not called:
        return FactorInfo(columns=[col], plain_columns=[col])
    if env is not None and "C" in env:
        return None
    return FactorInfo(columns=[col], c_columns=[col], transforms=["C"])
