"""formulaic's evaluation, wrapped: its failures become dmixed's errors, outputs are
checked finite."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BadValuesError, DmixedError, FormulaError
from .messages import clean_message, plural

__all__ = ["check_output", "materialize", "model_matrix"]


def _context(context) -> dict:
    """formulaic's evaluation context: patsy's meaning of the names it means otherwise
    (:mod:`dmixed.design.patsy_coding`; formulaic looks names up in the context before
    its own transforms), then the caller's names."""
    from .patsy_coding import PATSY_TRANSFORMS

    return {**PATSY_TRANSFORMS, **(context or {})}


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

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return formulaic_model_matrix(
                formula,
                frame,
                na_action="ignore",
                output=output,
                context=_context(context),
                materializer=PatsyMaterializer,
                materializer_params={"response": _response_factors(formula)},
            )
    except DmixedError:
        raise
    except Exception as e:
        why = clean_message(e)
        if "same shape" in why:
            why += " (a term gives one value, not one per row?)"
        raise FormulaError(f"cannot evaluate {role} {formula!r}: {why}") from None


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
            return spec.get_model_matrix(frame, context=_context(context))
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
