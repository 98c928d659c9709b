"""dmixed's errors and warnings: one root of each, grouped by what went wrong.

Every error dmixed raises on purpose derives from :class:`DmixedError`, a ``ValueError``
subclass, so code written against statsmodels (``except ValueError``) keeps working, and
``except dmixed.DmixedError`` catches only dmixed's own refusals.  Every warning derives
from :class:`DmixedWarning` (a ``UserWarning``).  The command line maps these classes to
its exit codes (:mod:`dmixed.cli`); tests turn ``DmixedWarning`` into an error unless a
test expects it.

The hierarchy follows formulaic's ``errors.py`` (one root, grouped subclasses)::

    DmixedError (ValueError)
    ├── SpecError            the model as asked for cannot be built (formula, arguments)
    │   ├── FormulaError     a formula that fails the whitelist or does not parse
    │   ├── StartError       the log-likelihood cannot be evaluated at the fit's start
    │   └── NotOfferedError (also NotImplementedError, AttributeError)  a part of
    │                        statsmodels' MixedLM API that dmixed does not offer
    ├── DataError            the data cannot be fitted as given (missing values, rank,
    │   │                    a constant response, a column of the wrong kind)
    │   └── BadValuesError   the input's values themselves: missing, infinite, text
    │                        where numbers are read, no rows
    ├── PathError (also OSError)  a path that cannot be used as asked
    │   ├── PathExistsError (also FileExistsError)  an output path dmixed would not
    │   │                        replace (not a directory it wrote) or cannot create
    │   └── PathNotFoundError (also FileNotFoundError)  no results or statistics there
    ├── CheckpointError      saved statistics or results that cannot be used
    │   └── CheckpointMismatch   statistics of other data or of another model
    ├── ClusterConfigError   a cluster configuration that cannot be used
    └── ClusterError         the cluster cannot run the work
        ├── NoWorkersError   no worker for longer than the configured wait
        ├── WorkersPausedError  workers paused at their memory threshold, no progress
        ├── ClusterClosedError (also ConnectionError)  the cluster closed, or the
        │                    work was cancelled, while dmixed waited for it
        └── WorkersDiedError workers died running it (at their memory limit, say)

    DmixedWarning (UserWarning)
    ├── BoundaryWarning        the estimate is on the boundary (a variance at zero)
    ├── FitConvergenceWarning  the optimizer did not converge
    ├── SingularHessianWarning the Hessian is singular (a pseudo-inverse was used)
    ├── DroppedRowsWarning     rows with missing values were dropped (missing="drop")
    ├── PrecisionWarning       the statistics resolve the residual variance coarsely
    ├── NumericFactorWarning   a column of numbers (a categorical of numbers, numbers
    │                          written as text) is used as a factor in a plain term
    ├── TextConversionWarning  Dask turned an object column of numbers (Decimal, say)
    │                          or of tuple group keys into text that dmixed reads
    ├── ConstraintRankWarning  a joint Wald test's constraints are dependent: tested on
    │                          their rank (statsmodels' ValueWarning)
    ├── ProfileWarning         a profile-likelihood limit could not be found (NaN)
    ├── NotNestedWarning       a likelihood-ratio test's larger model fits clearly worse
    │                          (not nested, or not the same data): statistic 0
    └── RefitWarning           anova refitted REML fits by ML (refit not given; lme4's
                               "refitting model(s) with ML (instead of REML)")
"""

from __future__ import annotations

import inspect
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "DmixedError",
    "SpecError",
    "FormulaError",
    "StartError",
    "NoModelError",
    "NotOfferedError",
    "DataError",
    "BadValuesError",
    "PathError",
    "PathExistsError",
    "PathNotFoundError",
    "CheckpointError",
    "CheckpointMismatch",
    "ClusterConfigError",
    "ClusterClosedError",
    "ClusterError",
    "NoWorkersError",
    "WorkersDiedError",
    "WorkersPausedError",
    "DmixedWarning",
    "BoundaryWarning",
    "FitConvergenceWarning",
    "SingularHessianWarning",
    "DroppedRowsWarning",
    "NonFiniteRowsWarning",
    "PrecisionWarning",
    "NumericFactorWarning",
    "TextConversionWarning",
    "UnseenGroupsWarning",
    "ConstraintRankWarning",
    "ProfileWarning",
    "NotNestedWarning",
    "RefitWarning",
]


# ---------------------------------------------------------------------------
# Values shown in messages (the one owner of how long a shown text may be; not part
# of ``__all__``: dmixed's own modules use them, ``design.messages.shown`` among them)
# ---------------------------------------------------------------------------

#: the characters of a long text a message keeps at each end (:func:`shorten`)
SHOWN_ENDS = 200


def shorten(text: str, show=str) -> str:
    """``text`` for a message, cut in the middle when long: its first and last
    :data:`SHOWN_ENDS` characters, each passed through ``show`` (``repr`` quotes
    them), and its length; the whole of it, through ``show``, when short.  A value
    from a file or the command line (a formula of thousands of terms, a YAML or JSON
    value) is never echoed whole."""
    if len(text) <= 2 * SHOWN_ENDS + 40:
        return show(text)
    head, tail = show(text[:SHOWN_ENDS]), show(text[-SHOWN_ENDS:])
    return f"{head} ... {tail} ({len(text)} characters)"


def shown_value(value) -> str:
    """``repr(value)`` for a message, built bounded (:mod:`reprlib`: the first items
    of a collection, four levels deep, long strings and integers cut) and then cut
    by :func:`shorten`: a nested value read from a file is never made into its whole
    text first."""
    return shorten(_BOUNDED.repr(value))


def _bounded_repr():
    import reprlib

    class Bounded(reprlib.Repr):
        def repr_int(self, x, level):
            if x.bit_length() > 1000:  # repr of > 4300 digits raises; long anyway
                return f"<an integer of {x.bit_length()} bits>"
            return super().repr_int(x, level)

    bounded = Bounded()
    bounded.maxlevel = 4
    bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = 20
    bounded.maxstring = bounded.maxother = 2 * SHOWN_ENDS
    bounded.maxlong = 2 * SHOWN_ENDS
    return bounded


_BOUNDED = _bounded_repr()


class DmixedError(ValueError):
    """Root of dmixed's errors (a ``ValueError``, as statsmodels raises for bad input)."""


class SpecError(DmixedError):
    """The model as specified cannot be built: a bad argument, formula or term."""


class FormulaError(SpecError):
    """A formula that does not parse or uses something outside the whitelist."""


class StartError(SpecError):
    """The fit cannot start: the log-likelihood cannot be evaluated at its starting
    covariance parameters (given ``start_params``, or the default and moment starts).
    ``dmixed update`` takes it, for the last fit's estimates it starts from, as a sign
    to start from moment estimates instead."""


class NoModelError(SpecError, AttributeError):
    """``results.model`` of results without their model (loaded from a results
    directory, which holds neither the data nor the statistics a model is built on).
    Also an ``AttributeError``: ``hasattr(results, "model")`` is False for them."""


class NotOfferedError(SpecError, NotImplementedError, AttributeError):
    """A part of statsmodels' MixedLM API that dmixed does not offer (per-observation
    scores, penalty objects of ``fit_regularized``), its message saying why and what to
    use instead.  A
    ``NotImplementedError``; also an ``AttributeError``, so that ``hasattr`` is False
    for such an attribute (statsmodels raises ``AttributeError`` for most of them) and
    ``getattr(results, name, default)`` gives the default."""


class DataError(DmixedError):
    """The data cannot be fitted as given: missing values, a rank-deficient design,
    a response without residual variation, a column of the wrong kind.

    ``of_all_rows`` (True on the instance) marks a refusal of all the rows, not of the
    partition it is found in (the prior weights' span): it is not worded for a
    partition (:func:`dmixed.design.origin.in_partition`).  ``lossy_groups`` (set on the
    instance) counts the groups refused as lossy, a random slope nearly constant within
    the group (:func:`dmixed.engines.local.refuse_inexact`): a Dask fit reads the data
    again keeping their sums about shifts of their own (0: not that refusal).
    ``key_kinds`` (set on the instance): the found and declared dtypes of group keys of
    two kinds (:func:`dmixed.stats.keys.check_key_kind`), else None.  ``unnamed_keys``
    (True on the instance): a refusal of group keys made where the column's name is not
    known, for the driver to name it (:func:`dmixed.stats.keys.named_keys_error`).
    ``too_few_rows`` (set on the instance): ``(rows, fixed effects, covariance
    parameters, at_most)`` of a refusal of too few rows
    (:func:`dmixed.design.messages.check_enough_rows`), for the Dask driver to name the
    factors, else None.  ``new_levels`` (set on the instance): ``(column, levels)`` of a
    refusal of levels of a factor that the model was not built with
    (:func:`dmixed.design.prepare`), for the command line to say what to do, else None.
    ``of_statistics`` (True on the instance): a refusal of the
    statistics themselves, not of a data file (their plain sums give no fit:
    :func:`dmixed.fit.fit_warnings.plain_llf_error`), for the command line to name the
    statistics directory.  ``mixed_column`` (set on the instance): the column of a
    refusal of values of several Python types (:func:`dmixed.stats.keys.several_types_error`),
    for a message that knows the column's role (a response is numbers), else None."""

    of_all_rows: bool = False
    of_statistics: bool = False
    lossy_groups: int = 0
    key_kinds: tuple | None = None
    unnamed_keys: bool = False
    too_few_rows: tuple | None = None
    new_levels: tuple | None = None
    mixed_column: str | None = None


class BadValuesError(DataError):
    """The input's values cannot be used, whatever the model: missing values (without
    ``missing="drop"``), infinite values, text where numbers are read, no rows (none
    at all, or none left after dropping those with missing values), prior weights
    that are not positive or lie more than 2^53 apart, or a formula's column of values
    that are neither numbers nor labels (timestamps, dates, durations: their number
    would depend on a unit the data does not give).

    The command line exits 3 for these (bad data, as for unreadable files), and 2 for
    the other :class:`DataError` s: a model that asks the impossible of good data (a
    rank-deficient design, a response without residual variation)."""


class PathError(DmixedError, OSError):
    """A path given to dmixed that cannot be used as asked (the command line exits 2).

    Also an ``OSError``, and its subclasses the ``FileExistsError`` and
    ``FileNotFoundError`` that ``MixedLMResults.save`` and ``dmixed.load`` raised
    before: code that catches those keeps working."""


class PathExistsError(PathError, FileExistsError):
    """An output path that exists and is not a directory dmixed wrote (it is never
    replaced), or one under a file, which cannot be created."""


class PathNotFoundError(PathError, FileNotFoundError):
    """No results or statistics directory at a path: it does not exist, is a file, or
    lacks the file that makes it one of dmixed's."""


class CheckpointError(DmixedError):
    """Saved statistics or results that cannot be read or fail their checks."""


class CheckpointMismatch(CheckpointError):
    """Saved statistics do not belong to this data and model."""


class ClusterConfigError(DmixedError):
    """A cluster configuration (file, mapping or address) that cannot be used."""


class ClusterError(DmixedError):
    """The Dask cluster cannot run the work (the command line exits 5)."""


class NoWorkersError(ClusterError):
    """The scheduler has had no worker for longer than ``dmixed.no-workers-timeout``."""


class ClusterClosedError(ClusterError, ConnectionError):
    """The cluster closed, or the work was cancelled on it, while dmixed waited for it
    (the client or cluster closed, ``client.cancel()`` or ``client.restart()``); also a
    ``ConnectionError``, as a client given closed is.  Its cause is distributed's own
    error."""


class WorkersPausedError(ClusterError):
    """Workers of the cluster have stayed paused by Dask at their memory threshold, and
    the work waited for has not moved, for longer than ``dmixed.paused-workers-timeout``,
    no worker that is not paused running a task."""


class WorkersDiedError(ClusterError):
    """The workers running a task died; the message says if at their memory limit."""


class DmixedWarning(UserWarning):
    """Root of dmixed's warnings."""


class BoundaryWarning(DmixedWarning):
    """The MLE is on the boundary of the parameter space (a variance estimated at zero)."""


class FitConvergenceWarning(DmixedWarning):
    """The optimizer did not reach the gradient tolerance."""


class SingularHessianWarning(DmixedWarning):
    """The Hessian at the optimum is singular; a pseudo-inverse was used."""


class DroppedRowsWarning(DmixedWarning):
    """Rows with missing values were dropped (``missing="drop"``)."""


class NonFiniteRowsWarning(DmixedWarning):
    """Rows of new data whose model matrix holds a non-finite value (a transform such as
    ``np.log`` of 0 or of a negative number) are predicted as NaN."""


class PrecisionWarning(DmixedWarning):
    """The statistics resolve the residual variance only coarsely: σ̂² is so small next
    to the spread of the response that float64 sums carry a visible relative error
    (:func:`dmixed.fit.objective.resolution`); or the fit ended at its start, where
    ``X'V*⁻¹X`` is singular to the rounding of its sums
    (:func:`dmixed.fit.objective.factor_resolution`); or the reported estimates do not
    carry the fitted point in float64 (:func:`dmixed.fit.fit_warnings.reported_gap`)."""


class NumericFactorWarning(DmixedWarning):
    """A plain term reads a column whose values are numbers but whose dtype makes it a
    factor (a categorical of numbers, such as a hive partition key, or numbers written
    as text); ``C(column)`` says a factor is meant and silences this warning."""


class TextConversionWarning(DmixedWarning):
    """``dd.from_pandas`` turned an ``object`` column that holds numbers or booleans
    into text (Dask's ``dataframe.convert-string``), so the Dask collection holds labels
    where the pandas frame held values: the model reads what the collection holds.  Also
    a groups column whose keys are text that reads as tuples where Dask may have made
    that text of tuples that dmixed cannot read back (a persisted collection): the
    fit's group labels are the text."""


class UnseenGroupsWarning(DmixedWarning):
    """Rows to predict with ``include_random=True`` belong to groups the fit did not
    see; they get the population prediction ``X β̂`` (``new_groups="population"``)."""


class ConstraintRankWarning(DmixedWarning):
    """The constraints of a joint Wald test are linearly dependent (``R Σ R'`` is
    singular): the test uses its pseudo-inverse and its rank as degrees of freedom, as
    statsmodels' ``wald_test`` does after its ``ValueWarning``."""


class ProfileWarning(DmixedWarning):
    """A limit of a profile-likelihood interval (``confint(method="profile")``,
    ``profile_ci``) could not be found: the profile's maximization failed at a point
    or its ζ did not reach the cut-off; the limit is NaN and the message names the
    parameter and why (lme4's ``confint.merMod`` gives NA with a warning); and a
    bootstrap interval (``confint(method="boot")``) whose ``level`` asks for quantiles
    beyond what its replicates resolve, so that its limits are the extreme replicates
    (``boot.ci``'s "extreme order statistics used as endpoints")."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the function calling this one
    point at the innermost frame outside the dmixed package (the user's line, or Dask's
    on a worker), however deep the path that reaches it (the pandas and the Dask paths
    of a fit differ in depth).

    Returns
    -------
    int
        The ``stacklevel`` argument of :func:`warnings.warn` for the caller of this
        function: 1 plus the number of frames inside the package above it.
    """
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the function that warns
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

_dropping = threading.local()


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` pointing at the caller's line outside
    dmixed (:func:`caller_stacklevel`); nothing where :func:`warnings_dropped` drops
    it in this thread."""
    if any(message.startswith(start) for start in getattr(_dropping, "starts", ())):
        return
    warnings.warn(message, category, stacklevel=caller_stacklevel())


@contextmanager
def warnings_dropped(starting: str = "") -> Iterator[None]:
    """The warnings :func:`warn` raises in this thread whose message starts with
    ``starting`` (default: all) are dropped while the context is open: a bootstrap
    replicate's refit, whose warnings would repeat per replicate; the refit an
    analysis of deviance makes for its likelihood only.

    Thread-local where ``warnings.catch_warnings`` is not: its filters are the whole
    process's (Python before 3.14), so that in one thread they hide the warnings other
    threads raise meanwhile (a worker's tasks, the driver's ``DroppedRowsWarning``),
    and its exit puts back a list that another thread's own ``catch_warnings`` (pandas
    opens one per dtype it converts) may have saved after it, leaving its filters
    installed for good."""
    was = getattr(_dropping, "starts", ())
    _dropping.starts = (*was, starting)
    try:
        yield
    finally:
        _dropping.starts = was


class NotNestedWarning(DmixedWarning):
    """A likelihood-ratio test (:func:`dmixed.compare_lr_test`, :func:`dmixed.anova`)
    whose larger model has a log-likelihood clearly below the smaller one's: the models
    are not nested or not fitted to the same data (the statistic is reported as 0)."""


class RefitWarning(DmixedWarning):
    """:func:`dmixed.anova` refitted REML fits by maximum likelihood before comparing
    them, with ``refit`` not given (lme4's message "refitting model(s) with ML (instead
    of REML)"); ``refit=True`` says it is meant and silences this warning."""
