"""formulaic's evaluation, wrapped: its failures become dmixed's errors, outputs are
checked finite."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DmixedError, FormulaError
from .messages import clean_message, plural

__all__ = [
    "PATSY_ORDER",
    "check_output",
    "materialize",
    "model_matrix",
    "patsy_term_order",
    "reordered",
    "term_order",
]

#: the order of a design's columns: ``"patsy"`` (statsmodels'), or ``"degree"``
#: (formulaic's, that of specs saved by earlier versions, which carry no order)
PATSY_ORDER = "patsy"
_ORDER: ContextVar[str] = ContextVar("dmixed_term_order", default=PATSY_ORDER)


@contextmanager
def term_order(order: str) -> Iterator[None]:
    """Designs built inside order their columns by ``order`` (:data:`PATSY_ORDER`, or
    ``"degree"``: formulaic's order, that of specs saved by earlier versions)."""
    if order not in (PATSY_ORDER, "degree"):
        raise ValueError(f"unknown order of terms {order!r}")
    token = _ORDER.set(order)
    try:
        yield
    finally:
        _ORDER.reset(token)


def patsy_term_order(terms: list, numeric: set) -> list:
    """``terms`` (formulaic's, in the formula's own order) in the order patsy gives
    them: grouped by the set of their numeric factors (``numeric``: their
    expressions), the groups in the order each first appears, the group without
    numeric factors first; within a group by degree, ties in the formula's order
    (patsy's ``_make_subterm_infos``, which statsmodels' names follow)."""
    buckets: dict[frozenset, list] = {}
    for term in terms:
        exprs = {f.expr for f in term.factors if f.expr != "1" or len(term.factors) > 1}
        buckets.setdefault(frozenset(exprs & numeric), []).append(term)
    order = sorted(buckets, key=lambda b: bool(b))  # (stable: the empty set first)
    return [t for b in order for t in sorted(buckets[b], key=lambda t: t.degree)]


class _Column:
    """patsy's ``Q("name")`` on one frame: the column of that name.  formulaic's own
    ``Q`` is a stateful transform, whose expression formulaic writes into code it
    parses again, between double quotes, without escaping them: ``Q("it's")`` and
    ``Q('say "hi"')`` fail there.  This one is a plain function of the frame, so
    nothing is written back into code."""

    __slots__ = ("frame",)

    def __init__(self, frame) -> None:
        self.frame = frame

    def __call__(self, name):
        return self.frame[name]


def _context(context, frame) -> dict:
    """formulaic's evaluation context on ``frame``: patsy's meaning of the names it
    means otherwise (:mod:`dmixed.design.patsy_coding`; formulaic looks names up in the
    context before its own transforms) and its ``Q``, then the caller's names."""
    from .patsy_coding import PATSY_TRANSFORMS

    return {**PATSY_TRANSFORMS, "Q": _Column(frame), **(context or {})}


def _response_factors(formula: str) -> tuple[str, ...]:
    """The expressions of the response's factors (none for a one-sided formula), which
    :class:`~dmixed.design.patsy_coding.PatsyMaterializer` leaves numbers."""
    from formulaic import Formula

    parsed = Formula(formula)
    if not hasattr(parsed, "lhs"):
        return ()
    return tuple(factor.expr for term in parsed.lhs for factor in term.factors)


def model_matrix(formula: str, frame: pd.DataFrame, role: str, output: str, context=None):
    """formulaic's model matrix of ``formula`` on ``frame`` (a prototype), with its spec.

    ``context``: the names of the caller's code the formula uses
    (:class:`~dmixed.design.scope.CallerNames`; None: none).

    Raises
    ------
    FormulaError
        If formulaic cannot evaluate the formula, e.g. a term of one value rather than
        one per row (``I(3)``, a caller's function that reduces its column); dmixed's
        own errors pass as they are.
    """
    from formulaic import model_matrix as formulaic_model_matrix

    from .patsy_coding import PatsyMaterializer

    def build(spec):
        return formulaic_model_matrix(
            spec,
            frame,
            na_action="ignore",
            output=output,
            context=_context(context, frame),
            materializer=PatsyMaterializer,
            materializer_params={"response": _response_factors(formula)},
        )

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            mm = build(formula)
            if _ORDER.get() == PATSY_ORDER:
                reordered = _patsy_formula(formula, mm.model_spec)
                if reordered is not None:
                    mm = build(reordered)
            return mm
    except DmixedError:
        raise
    except Exception as e:
        why = clean_message(e)
        if "same shape" in why:
            why += " (a term gives one value, not one per row?)"
        raise FormulaError(f"cannot evaluate {role} {formula!r}: {why}") from None


def reordered(model_spec) -> bool:
    """Whether formulaic's spec ``model_spec`` (of a formula, or of its two sides)
    holds its terms in patsy's order where that is not formulaic's own."""
    from formulaic.formula import OrderingMethod

    formula = getattr(getattr(model_spec, "rhs", model_spec), "formula", None)
    return getattr(formula, "ordering", None) is OrderingMethod.NONE


def _expanded_order(formula: str) -> dict[str, int]:
    """The position of each right-hand-side term of ``formula`` as patsy expands it:
    formulaic's expansion, except that ``(a + b + c)**k`` gives its terms by degree
    (``a, b, c, a:b, ...``, patsy's) where formulaic gives them depth first
    (``a, a:b, ...``); ``^`` is ``**`` to formulaic.  Empty where formulaic's parser
    cannot say."""
    import copy

    from formulaic.parser import DefaultFormulaParser
    from formulaic.parser.types import ASTNode

    def by_degree(to_terms):
        def expanded(*args, **kwargs):
            out = to_terms(*args, **kwargs)
            return type(out)(sorted(out, key=lambda t: t.degree))

        return expanded

    try:
        ast = DefaultFormulaParser().get_ast(formula)
        todo = [ast]
        while todo:  # (a loop, not recursion: formulas may nest deeply)
            node = todo.pop()
            if isinstance(node, ASTNode):
                todo.extend(node.args)
                if node.operator.symbol in ("**", "^"):
                    node.operator = copy.copy(node.operator)
                    node.operator.to_terms = by_degree(node.operator.to_terms)
        terms = ast.to_terms()
        rhs = terms.rhs if hasattr(terms, "rhs") else terms
        return {str(t): i for i, t in enumerate(rhs)}
    except Exception:  # formulaic's own parse then stands
        return {}


def _patsy_formula(formula: str, model_spec):
    """formulaic's formula of ``formula`` with its right-hand side in patsy's order
    (:func:`patsy_term_order`; the numeric factors as ``model_spec``, formulaic's spec
    of it on a prototype, reads them), or None where that is formulaic's order."""
    from formulaic import Formula
    from formulaic.formula import SimpleFormula
    from formulaic.parser.types import Factor

    rhs_spec = getattr(model_spec, "rhs", model_spec)
    numeric = {
        expr for expr, (kind, _) in rhs_spec.encoder_state.items() if kind is Factor.Kind.NUMERICAL
    }
    degree_order = list(rhs_spec.formula)
    if all(t.degree <= 1 for t in degree_order):
        # (terms of one factor: formulaic's order is the formula's, intercept first)
        parsed, raw = None, degree_order
    else:
        parsed = Formula(formula, _ordering="none")
        raw = list(parsed.rhs if hasattr(parsed, "lhs") else parsed)
        if "**" in formula or "^" in formula:
            written = _expanded_order(formula)
            raw.sort(key=lambda t: written.get(str(t), len(written)))
    terms = patsy_term_order(raw, numeric)
    if [str(t) for t in terms] == [str(t) for t in degree_order]:
        return None
    rhs = SimpleFormula(terms, _ordering="none")
    if hasattr(model_spec, "lhs"):
        lhs = model_spec.lhs.formula if parsed is None else parsed.lhs
        return Formula(lhs=lhs, rhs=rhs, _ordering="none")
    return rhs


def materialize(spec, frame: pd.DataFrame, formula: str | None, context=None):
    """A formulaic spec's model matrix on one normalised partition (``context`` as
    :func:`model_matrix`'s).

    Raises
    ------
    FormulaError
        If formulaic cannot evaluate it.
    """
    try:
        with np.errstate(all="ignore"):
            return spec.get_model_matrix(frame, context=_context(context, frame))
    except Exception as e:
        raise FormulaError(f"cannot evaluate formula {formula!r}: {clean_message(e)}") from None


def check_output(mat: np.ndarray, names: list[str], what: str) -> None:
    """Refuse non-finite values in a model matrix, naming the columns that hold them.

    Raises
    ------
    DataError
        If ``mat`` (shape ``(n, len(names))``) holds NaN or ±inf.
    """
    if mat.size == 0:
        return
    bad = ~np.isfinite(mat)
    if bad.any():
        per_col = bad.sum(axis=0)
        parts = [f"{names[j]!r} ({plural(int(per_col[j]))})" for j in np.flatnonzero(per_col)]
        raise BadValuesError(f"non-finite values in {what} column(s) " + ", ".join(parts))
