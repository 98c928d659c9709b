"""formulaic's evaluation, wrapped: its failures become dmixed's errors, outputs are
checked finite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DmixedError, FormulaError, SpecError
from .messages import clean_message, plural

__all__ = [
    "PATSY_ORDER",
    "check_output",
    "nonfinite_kept",
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
#: whether :func:`check_output` keeps non-finite values (:func:`nonfinite_kept`)
_NONFINITE_KEPT: ContextVar[bool] = ContextVar("dmixed_nonfinite_kept", default=False)


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
    context before its own transforms), patsy's ``center``, ``standardize`` and ``scale``
    (:mod:`dmixed.design.stateful`) and its ``Q``, then the caller's names."""
    from .patsy_coding import PATSY_TRANSFORMS
    from .stateful import frozen_transforms

    return {**PATSY_TRANSFORMS, **frozen_transforms(), "Q": _Column(frame), **(context or {})}


def _response_factors(parsed) -> tuple[str, ...]:
    """The expressions of the response's factors of formulaic's formula ``parsed``
    (none for a one-sided formula), which
    :class:`~dmixed.design.patsy_coding.PatsyMaterializer` leaves numbers."""
    if not hasattr(parsed, "lhs"):
        return ()
    return tuple(factor.expr for term in parsed.lhs for factor in term.factors)


def model_matrix(formula: str, frame: pd.DataFrame, role: str, output: str, context=None):
    """formulaic's model matrix of ``formula`` on ``frame`` (a prototype), with its spec.

    ``context``: the names of the caller's code the formula uses
    (:class:`~dmixed.design.scope.CallerNames`; None: none).

    The caller's functions in the formula run here on the prototype's stand-in values
    (:func:`~dmixed.design.levels.prototype`): numpy's floating-point warnings are off
    (``np.errstate``, this thread's own), other warnings they raise pass to the caller, as
    hiding them (``warnings.catch_warnings``) would change the filters of every thread of
    the process for the time of the call.

    In patsy's order (:func:`term_order`) the order of the terms depends on which
    factors are numbers, which formulaic tells once it has evaluated them: the spec is
    built in the order the frame's columns suggest (:func:`_numeric_guess`) and built
    again only where formulaic's kinds order the terms otherwise.

    Raises
    ------
    FormulaError
        If formulaic cannot evaluate the formula, e.g. a term of one value rather than
        one per row (``I(3)``, a caller's function that reduces its column); dmixed's
        own errors pass as they are.
    """
    from formulaic import Formula
    from formulaic import model_matrix as formulaic_model_matrix

    from .patsy_coding import PatsyMaterializer
    from .stateful import stand_in

    def build(spec, response):
        return formulaic_model_matrix(
            spec,
            frame,
            na_action="ignore",
            output=output,
            context=_context(context, frame),
            materializer=PatsyMaterializer,
            materializer_params={"response": response},
        )

    try:
        with np.errstate(all="ignore"), stand_in():
            # (parsed once: formulaic's parse of n terms joined by + costs n squared)
            parsed = Formula(formula)
            response = _response_factors(parsed)
            if _ORDER.get() != PATSY_ORDER:
                return build(parsed, response)
            written = _written_terms(formula, parsed)
            guessed = _patsy_formula(written, _numeric_guess(written, frame))
            mm = build(parsed if guessed is None else guessed, response)
            wanted = _patsy_formula(written, _numeric(mm.model_spec))
            if _terms_of(wanted) == _terms_of(guessed):
                return mm
            return build(parsed if wanted is None else wanted, response)
    except DmixedError:
        raise
    except Exception as e:
        _raise_own(e)
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


class _WrittenTerms(NamedTuple):
    """A formula's right-hand-side terms as formulaic orders them (``degree``, its
    spec's order) and as the formula writes them (``written``, patsy's expansion), and
    the left-hand side (None: one-sided) that a reordered formula keeps."""

    degree: list
    written: list
    lhs: object


def _written_terms(formula: str, parsed) -> _WrittenTerms:
    """:class:`_WrittenTerms` of ``formula``, ``parsed`` its formulaic formula (no
    evaluation: the parse alone)."""
    from formulaic import Formula

    two_sided = hasattr(parsed, "lhs")
    degree = list(parsed.rhs if two_sided else parsed)
    if all(t.degree <= 1 for t in degree):
        # (terms of one factor: formulaic's order is the formula's, intercept first)
        return _WrittenTerms(degree, degree, parsed.lhs if two_sided else None)
    as_written = Formula(formula, _ordering="none")
    raw = list(as_written.rhs if two_sided else as_written)
    if "**" in formula or "^" in formula:
        position = _expanded_order(formula)
        raw.sort(key=lambda t: position.get(str(t), len(position)))
    return _WrittenTerms(degree, raw, as_written.lhs if two_sided else None)


def _numeric(model_spec) -> set:
    """The expressions of the factors formulaic's spec ``model_spec`` (of a formula,
    or of its two sides) encodes as numbers."""
    from formulaic.parser.types import Factor

    rhs_spec = getattr(model_spec, "rhs", model_spec)
    return {
        expr for expr, (kind, _) in rhs_spec.encoder_state.items() if kind is Factor.Kind.NUMERICAL
    }


def _numeric_guess(terms: _WrittenTerms, frame: pd.DataFrame) -> set:
    """The factors of ``terms`` that are numbers as far as the frame tells before
    formulaic evaluates them: a column of numbers (not booleans, which patsy reads as
    a factor), or an expression other than ``C()``.  A wrong guess costs a second
    build, never another order (:func:`model_matrix` checks it)."""
    from formulaic.parser.types import Factor

    numeric = set()
    dtypes = frame.dtypes
    for term in terms.written:
        for factor in term.factors:
            method = factor.eval_method
            if method is Factor.EvalMethod.LOOKUP:
                dtype = dtypes.get(factor.expr)
                if isinstance(dtype, np.dtype) and dtype.kind in "fiu":
                    numeric.add(factor.expr)
            elif method is Factor.EvalMethod.PYTHON and not factor.expr.startswith("C("):
                numeric.add(factor.expr)
    return numeric


def _patsy_formula(terms: _WrittenTerms, numeric: set):
    """formulaic's formula of ``terms`` with its right-hand side in patsy's order
    (:func:`patsy_term_order`; ``numeric``: the expressions of the factors that are
    numbers), or None where that is formulaic's order."""
    from formulaic import Formula
    from formulaic.formula import SimpleFormula

    ordered = patsy_term_order(terms.written, numeric)
    if [str(t) for t in ordered] == [str(t) for t in terms.degree]:
        return None
    rhs = SimpleFormula(ordered, _ordering="none")
    if terms.lhs is not None:
        return Formula(lhs=terms.lhs, rhs=rhs, _ordering="none")
    return rhs


def _terms_of(formula) -> list[str] | None:
    """The right-hand side's terms of a formula :func:`_patsy_formula` gives (None for
    None)."""
    if formula is None:
        return None
    return [str(t) for t in getattr(formula, "rhs", formula)]


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
        _raise_own(e)
        raise FormulaError(f"cannot evaluate formula {formula!r}: {clean_message(e)}") from None


def _raise_own(e: Exception) -> None:
    """Raise dmixed's own refusal of a factor's values (a :class:`SpecError`: values
    ``C(..., levels=[...])`` does not list) as it is where formulaic wrapped it in its
    own (``FactorEvaluationError`` raised from it); return otherwise: the caller's
    :class:`FormulaError` then says which formula could not be evaluated (a transform's
    refusal of its values, ``bs()`` beyond its knots, included, as before)."""
    if not isinstance(e, DmixedError) and isinstance(e.__cause__, SpecError):
        raise e.__cause__ from None


@contextmanager
def nonfinite_kept() -> Iterator[None]:
    """Model matrices built inside keep NaN and ±inf from a transform (``np.log`` of 0
    or of a negative number) rather than refuse them (:func:`check_output`): new rows
    to predict, whose caller makes those rows' predictions NaN and warns.  The
    variance components' values and stateful transforms' columns are refused still."""
    token = _NONFINITE_KEPT.set(True)
    try:
        yield
    finally:
        _NONFINITE_KEPT.reset(token)


def check_output(mat: np.ndarray, names: list[str], what: str) -> None:
    """Refuse non-finite values in a model matrix, naming the columns that hold them
    (not inside :func:`nonfinite_kept`).

    Raises
    ------
    DataError
        If ``mat`` (shape ``(n, len(names))``) holds NaN or ±inf.
    """
    if mat.size == 0 or _NONFINITE_KEPT.get():
        return
    bad = ~np.isfinite(mat)
    if bad.any():
        per_col = bad.sum(axis=0)
        parts = [f"{names[j]!r} ({plural(int(per_col[j]))})" for j in np.flatnonzero(per_col)]
        raise BadValuesError(f"non-finite values in {what} column(s) " + ", ".join(parts))
