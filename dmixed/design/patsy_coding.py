"""statsmodels' (patsy's) coding of factors, for formulaic.

Users compare dmixed's parameters with ``statsmodels.MixedLM.from_formula`` by name,
so a name must mean what it means there.  formulaic's contrasts differ from patsy's
where patsy is statsmodels' formula engine:

* ``Diff``: patsy labels backward difference ``k`` by the level *below* it
  (``[D.a]`` for b − a), formulaic by the level above (``[D.b]``): the same
  columns under shifted labels;
* ``Poly``: patsy names ``.Linear``, ``.Quadratic``, ``.Cubic``, ``^4``… without
  brackets, formulaic ``[.L]``, ``[.Q]``, ``[.C]``, ``[^4]``;
* a factor coded in full rank (no intercept, or an interaction without its main
  effect): patsy adds a constant column to the contrast (``[mean]`` for ``Sum``,
  ``[H.intercept]`` for ``Helmert``, ``.Constant`` for ``Poly``, ``[D.<first level>]``
  for ``Diff``), formulaic uses one indicator per level: another parametrization, so
  other estimates;
* ``Sum(omit=...)`` (patsy) picks the level coded -1; formulaic has no such argument;
* ``Treatment(reference)``: patsy takes an integer that is not a level as a position
  (``Treatment(-1)``: the last level), formulaic only a level;
* a boolean factor (``I(x > 0)``, ``np.logical_and(a, b)``, a boolean column) is a
  factor of levels False and True for patsy (``I(x > 0)[T.True]``), a number for
  formulaic; so is ``C()`` of booleans (``C(x > 0)[T.True]``), whose levels formulaic
  learns from the data;
* patsy compares text columns by their values (``a == b``); dmixed holds them as
  categoricals of their global levels, which pandas compares only when both columns
  have the same levels;
* patsy names a factor by the formula's own text, its quoted text as written
  (``Q("my col")``), formulaic by its Python rendering (``Q('my col')``):
  :func:`dmixed.design.labels.patsy_spelling` spells formulaic's names as patsy does.

The classes here compute patsy's matrices and column suffixes (``Contrasts`` of
formulaic, so formulaic encodes with them); :data:`PATSY_TRANSFORMS` replaces
formulaic's names of the same meaning in every evaluation
(:func:`dmixed.design.formula.transforms`); :class:`PatsyMaterializer` reads boolean
factors as patsy does.  Source: patsy ``contrasts.py``
(``Sum``, ``Helmert``, ``Diff``, ``Poly``) and ``categorical.py`` (booleans).
"""

from __future__ import annotations

import ast
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic.materializers import PandasMaterializer
from formulaic.parser.types import Factor
from formulaic.transforms import C
from formulaic.transforms.contrasts import UNSET, Contrasts, TreatmentContrasts
from formulaic.transforms.identity import identity
from formulaic.utils.code import sanitize_variable_names
from formulaic.utils.layered_mapping import LayeredMapping

from ..errors import SpecError, shorten
from .messages import plural
from .stateful import standing_in

__all__ = [
    "BOOLEAN_LEVELS",
    "PATSY_TRANSFORMS",
    "PatsyDiff",
    "PatsyHelmert",
    "PatsyMaterializer",
    "PatsyPoly",
    "PatsySum",
    "PatsyTreatment",
    "patsy_boolean",
    "patsy_c",
    "patsy_identity",
    "patsy_treatment",
]

#: the levels of a boolean factor, always both (patsy: ``flag[T.True]``)
BOOLEAN_LEVELS = [False, True]


def _suffixes(prefix: str, levels: Sequence[Hashable]) -> list[str]:
    """patsy's ``_name_levels``: ``[<prefix><level>]`` per level."""
    return [f"[{prefix}{level}]" for level in levels]


class _PatsyContrasts(Contrasts):
    """A patsy contrast: ``_coding`` gives ``(matrix, suffixes)`` for the reduced
    (``code_without_intercept``) or full-rank (``code_with_intercept``) coding; a
    column's name is the factor's followed by its suffix, as patsy writes it."""

    FACTOR_FORMAT = "{name}{field}"
    FACTOR_FORMAT_REDUCED = "{name}{field}"

    def _coding(self, levels: Sequence[Hashable], reduced_rank: bool) -> tuple[np.ndarray, list]:
        raise NotImplementedError

    @Contrasts.override
    def _get_coding_matrix(
        self, levels: Sequence[Hashable], reduced_rank: bool = True, sparse: bool = False
    ) -> Any:
        matrix = self._coding(list(levels), reduced_rank)[0]
        if sparse:
            import scipy.sparse as spsparse

            return spsparse.csc_matrix(matrix)
        return matrix

    @Contrasts.override
    def get_coding_column_names(
        self, levels: Sequence[Hashable], reduced_rank: bool = True
    ) -> Sequence[Hashable]:
        return self._coding(list(levels), reduced_rank)[1]

    @Contrasts.override
    def get_coefficient_row_names(
        self, levels: Sequence[Hashable], reduced_rank: bool = True
    ) -> Sequence[Hashable]:
        return self.get_coding_column_names(levels, reduced_rank)

    @Contrasts.override
    def get_drop_field(self, levels: Sequence[Hashable], reduced_rank: bool = True) -> Hashable:
        # None: formulaic encodes the reduced coding on its own rather than dropping a
        # column of the full one (patsy's reduced Diff is not the full one less a column)
        return None


def _with_constant(matrix: np.ndarray, suffixes: list, first: str) -> tuple[np.ndarray, list]:
    """patsy's ``code_with_intercept`` of a contrast: a column of ones first."""
    return np.column_stack((np.ones(matrix.shape[0]), matrix)), [first, *suffixes]


@dataclass
class PatsySum(_PatsyContrasts):
    """patsy's ``Sum(omit=None)``: deviation coding, the level ``omit`` (default the
    last) coded -1; full rank adds ``[mean]``."""

    omit: Hashable = None

    @_PatsyContrasts.override
    def _coding(self, levels, reduced_rank):
        n = len(levels)
        i = n - 1 if self.omit is None else _level_index(levels, self.omit)
        matrix = np.delete(np.eye(n), i, axis=1)
        matrix[i, :] = -1
        suffixes = _suffixes("S.", levels[:i] + levels[i + 1 :])
        return (matrix, suffixes) if reduced_rank else _with_constant(matrix, suffixes, "[mean]")


@dataclass
class PatsyHelmert(_PatsyContrasts):
    """patsy's ``Helmert()``: level k against the mean of the levels before it
    (unscaled, R's); full rank adds ``[H.intercept]``."""

    @_PatsyContrasts.override
    def _coding(self, levels, reduced_rank):
        n = len(levels)
        matrix = np.zeros((n, n - 1))
        matrix[1:][np.diag_indices(n - 1)] = np.arange(1, n)
        matrix[np.triu_indices(n - 1)] = -1
        suffixes = _suffixes("H.", levels[1:])
        if reduced_rank:
            return matrix, suffixes
        return _with_constant(matrix, suffixes, "[H.intercept]")


@dataclass
class PatsyDiff(_PatsyContrasts):
    """patsy's ``Diff()``: backward differences, level k+1 − level k labelled by level
    k (``[D.<levels[:-1]>]``); full rank adds a constant column and labels the n
    columns by all levels in order (patsy's labels, the first one the constant)."""

    @_PatsyContrasts.override
    def _coding(self, levels, reduced_rank):
        n = len(levels)
        # column k: -(n - k - 1)/n on levels 0..k, (k + 1)/n on levels k+1..n-1
        k = np.arange(n - 1)
        rows = np.arange(n)[:, None]
        matrix = np.where(rows <= k, (k + 1 - n) / n, (k + 1) / n)
        if reduced_rank:
            return matrix, _suffixes("D.", levels[:-1])
        return np.column_stack((np.ones(n), matrix)), _suffixes("D.", levels)


@dataclass
class PatsyPoly(_PatsyContrasts):
    """patsy's ``Poly(scores=None)``: orthogonal polynomials in the (centred) scores,
    default 0..n-1, named ``.Linear``, ``.Quadratic``, ``.Cubic``, ``^4``…; full rank
    adds ``.Constant`` (ones)."""

    scores: Sequence[float] | None = None

    @_PatsyContrasts.override
    def _coding(self, levels, reduced_rank):
        n = len(levels)
        scores = np.arange(n, dtype=float) if self.scores is None else np.array(self.scores, float)
        if len(scores) != n:
            raise ValueError(f"Poly: {n} levels but {len(scores)} scores")
        scores = scores - scores.mean()
        q, r = np.linalg.qr(scores[:, None] ** np.arange(n)[None, :])
        q = q * np.sign(np.diag(r))
        q[:, 0] = 1  # the constant column is ones, not normalised
        names = [".Constant", ".Linear", ".Quadratic", ".Cubic"][:n]
        names += [f"^{i}" for i in range(4, n)]
        return (q[:, 1:], names[1:]) if reduced_rank else (q, names)


@dataclass
class PatsyTreatment(TreatmentContrasts):
    """patsy's ``Treatment(reference=None)``: dummy coding against ``reference``, a
    level if it is one, else an integer position (negative from the end); default the
    first level."""

    @TreatmentContrasts.override
    def _find_base_index(self, levels: Sequence[Hashable]) -> int:
        if self.base is UNSET or self.base is None:
            return 0
        return _level_index(list(levels), self.base)

    @TreatmentContrasts.override
    def get_drop_field(self, levels: Sequence[Hashable], reduced_rank: bool = True) -> Hashable:
        return None if reduced_rank else list(levels)[self._find_base_index(levels)]


def patsy_treatment(reference: Hashable = None) -> PatsyTreatment:
    """patsy's ``Treatment(reference=None)`` (its one argument, by position or name)."""
    return PatsyTreatment(base=UNSET if reference is None else reference)


def _level_index(levels: list, level: Hashable) -> int:
    """patsy's ``_get_level``: a level, or else an integer position (negative from
    the end)."""
    if level in levels:
        return levels.index(level)
    if (
        isinstance(level, int)
        and not isinstance(level, bool)
        and -len(levels) <= level < len(levels)
    ):
        return level % len(levels)
    raise ValueError(f"{level!r} is not one of the levels {levels}")


def _is_boolean(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (dtype == np.bool_ or isinstance(dtype, pd.BooleanDtype))


def patsy_boolean(value: Any) -> Any:
    """A factor's value as patsy reads it: booleans are a factor of levels False and
    True, whatever the data holds (``flag[T.True]``); anything else, and a value that
    already says its kind (``C(...)``), as it is."""
    meta = getattr(value, "__formulaic_metadata__", None)
    if meta is not None and meta.kind is not Factor.Kind.UNKNOWN:
        return value
    return C(value, levels=BOOLEAN_LEVELS) if _is_boolean(value) else value


class _Unlisted(Exception):
    """Values of ``C(..., levels=[...])`` that ``levels=`` does not list (``values``, the
    first few, of ``count`` distinct values; a missing value is one), raised by
    :func:`patsy_c` for :class:`PatsyMaterializer`, which names the factor."""

    def __init__(self, values: list, count: int):
        super().__init__(values)
        self.values, self.count = values, count


#: how many of the values outside ``levels=`` an error shows
_SHOWN = 5


def _listed(data: Any, levels: Any) -> Any:
    """``data``, whose values ``levels`` must all list: a value it does not list, or a
    missing value, is refused (formulaic would cast it to missing, which its treatment
    coding encodes as the reference level, and warn, a warning silenced only by
    changing the filters every thread shares); patsy refuses such rows too.  On a
    stand-in frame (:func:`~dmixed.design.stateful.stand_in`), whose rows pair values
    the data may never hold, such a value is replaced by the first level: the spec
    learned there takes its levels from ``levels=``, not from the values."""
    listed = list(levels)
    raw = getattr(data, "__wrapped__", data)
    present = pd.Series(raw.unique() if isinstance(raw, pd.Series) else pd.unique(np.ravel(raw)))
    unlisted = present.isna() | ~present.isin(listed)  # (hashed: many levels stay cheap)
    if not unlisted.any():
        return data
    outside = [v.item() if isinstance(v, np.generic) else v for v in present[unlisted]]
    if not standing_in():
        raise _Unlisted(outside[:_SHOWN], len(outside))
    if not listed:
        return data  # (formulaic refuses a factor of no levels)
    values = np.array(raw, dtype=object).ravel()  # (a copy: the caller's stays)
    values[pd.isna(values) | ~pd.Series(values).isin(listed).to_numpy()] = listed[0]
    return pd.Series(values, index=getattr(raw, "index", None))


def patsy_c(
    data: Any, contrasts: Any = None, *, levels: Any = None, spans_intercept: bool = True
) -> Any:
    """patsy's ``C()``: formulaic's, except that booleans are a factor of levels False
    and True whatever the data holds (``C(a == b)[T.True]``), as patsy reads them, and
    that a value ``levels=`` does not list, or a missing value, is refused (patsy's
    "does not match any of the expected levels"), where formulaic would encode it as
    the reference level.  Missing values of the data's columns never get here: they are
    refused or their rows dropped (``missing=``) before the formula is evaluated."""
    if levels is None and _is_boolean(data):
        levels = BOOLEAN_LEVELS
    elif levels is not None:
        data = _listed(data, levels)
    return C(data, contrasts, levels=levels, spans_intercept=spans_intercept)


def patsy_identity(data: Any) -> Any:
    """patsy's ``I()``: the value as it is, except that booleans are a factor of levels
    False and True (patsy reads any boolean factor so: ``I(x > 0)[T.True]``)."""
    return patsy_boolean(identity(data))


class PatsyMaterializer(PandasMaterializer):
    """formulaic's pandas materializer, reading every boolean factor as patsy does
    (:func:`patsy_boolean`): a column (``flag``), a call (``np.logical_and(a, b)``) or
    ``I()``.  The response (``response``, its factors' expressions) stays a number:
    dmixed takes a boolean response as 0 and 1 where patsy would give two columns.
    An expression that compares reads categorical columns as their values
    (:class:`_CategoryValues`), as patsy compares text.
    """

    # formulaic's model spec keeps a materializer by its registered name; no input
    # types are registered, so formulaic never picks it for anyone else's data
    REGISTER_NAME = "dmixed_patsy"

    @PandasMaterializer.override
    def _lookup(self, name: str) -> tuple[Any, Any]:
        value, variables = super()._lookup(name)
        return self._as_patsy(name, value), variables

    @PandasMaterializer.override
    def _evaluate(self, expr: str, metadata: Any, spec: Any) -> tuple[Any, Any]:
        try:
            return self._evaluate_patsy(expr, metadata, spec)
        except _Unlisted as e:
            shown = ", ".join(shorten(repr(v)) for v in e.values)
            more = f" (and {e.count - len(e.values)} more)" if e.count > len(e.values) else ""
            raise SpecError(
                f"the categorical factor {shorten(expr, repr)} gives "
                f"{plural(e.count, 'value')} that its levels= does not list: {shown}{more} "
                "(a missing value is one: missing= drops only rows whose columns are "
                "missing); add them to levels=, or filter those rows out of the data"
            ) from None

    def _evaluate_patsy(self, expr: str, metadata: Any, spec: Any) -> tuple[Any, Any]:
        if not _compares(expr):
            value, variables = super()._evaluate(expr, metadata, spec)
            return self._as_patsy(expr, value), variables
        plain = self.layered_context
        values = LayeredMapping(_CategoryValues(self.data), name="data")
        self.layered_context = LayeredMapping(values, plain)
        try:
            value, variables = super()._evaluate(expr, metadata, spec)
        finally:
            self.layered_context = plain
        return self._as_patsy(expr, value), variables

    def _as_patsy(self, expr: str, value: Any) -> Any:
        return value if expr in self.params.get("response", ()) else patsy_boolean(value)


def _compares(expr: str) -> bool:
    """Whether a factor's expression holds a comparison (``a == b``, ``x > 0``)."""
    try:
        tree = ast.parse(sanitize_variable_names(expr, {}, {}), mode="eval")
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Compare) for node in ast.walk(tree))


class _CategoryValues(Mapping):
    """The categorical columns of a frame as their values (``object``), one column
    converted when an expression reads it; other names are not here (they are read
    from the frame itself)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def __contains__(self, key: object) -> bool:
        return key in self.frame.columns and isinstance(self.frame[key].dtype, pd.CategoricalDtype)

    def __getitem__(self, key: str) -> pd.Series:
        if key not in self:
            raise KeyError(key)
        return self.frame[key].astype(object)

    def __iter__(self) -> Iterator[str]:
        return (c for c in self.frame.columns if c in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: formulaic's names that patsy means otherwise, with patsy's meaning
PATSY_TRANSFORMS: dict[str, Any] = {
    "Sum": PatsySum,
    "Treatment": patsy_treatment,
    "Helmert": PatsyHelmert,
    "Diff": PatsyDiff,
    "Poly": PatsyPoly,
    "I": patsy_identity,
    "C": patsy_c,
}
