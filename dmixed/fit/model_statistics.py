"""The statistics of a model's data: one data pass, cached on the model.

:class:`ModelStatistics` is the mixin of :class:`dmixed.MixedLM` that reduces the
model's rows (in process) or its Dask source to per-group sufficient statistics
(:mod:`dmixed.engines`), checks them (full-rank design, varying response) and keeps them
for the fit and the likelihood methods while the client they were built with is alive.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from ..design.arrays import RowData
from ..design.build import dask_constant_response
from ..design.centres import vc_reads
from ..design.messages import plural
from ..design.partitions import warn_text_keys
from ..design.references import column_references
from ..engines.base import ENGINE_CHOICES, check_client
from ..engines.local import statistics_from_rows
from ..errors import DataError, DroppedRowsWarning, SpecError, caller_stacklevel
from ..stats import FittedStatistics, Standardization, check_designs
from .options import check_flag
from .summary import ensure_progress_handler

logger = logging.getLogger("dmixed")

__all__ = ["ModelStatistics", "check_in_memory_engine", "engine_alive", "engine_name"]


class ModelStatistics:
    """Mixin: :meth:`statistics` (cached) and the data pass of a fit (:meth:`fit_statistics`).

    The class using it provides ``rows``, ``source``, ``spec``, ``exog_names``,
    ``exog_re_names``, ``endog_name``, ``k_re``, ``k_vc``, ``cached_statistics``,
    ``cached_client``, ``client`` (the client the model was built with) and
    ``data_removed``.
    """

    # provided by the class using the mixin (annotations only: no attributes here)
    rows: RowData | None
    source: Any
    spec: Any
    exog_names: list[str]
    exog_re_names: list[str]
    endog_name: str
    k_re: int
    k_vc: int
    cached_statistics: FittedStatistics | None
    cached_client: Any
    client: Any
    data_removed: bool

    def __getstate__(self) -> dict:
        # the cached statistics hold the engine (on a cluster: futures): never pickled
        # ModelData's drops its per-group lists (object has none before Python 3.11)
        state: dict = dict(getattr(super(), "__getstate__", lambda: self.__dict__)() or {})
        state["cached_statistics"] = None
        state["cached_client"] = None
        state["client"] = None
        return state

    def statistics(
        self,
        client=None,
        progress: bool = False,
        engine: str | None = None,
        standardization: Standardization | None = None,
        partial: bool = False,
    ) -> FittedStatistics:
        """The per-group sufficient statistics (one data pass; cached on the model).

        ``engine`` (Dask data only): ``"auto"`` (default), ``"distributed"`` (keep the
        statistics on the workers) or ``"local"`` (gather them to this process).
        ``standardization``: the map of the columns the statistics are accumulated in
        (:mod:`dmixed.stats.standardize`); default chosen from the first rows.  Give the
        map of saved statistics to compute statistics that add to them
        (``GroupArrays.standardization``).
        ``client``: for Dask data, the client to run on (None: the client the model
        was built with, ``mixedlm(..., client=...)``, while it is open; else the current
        one, else Dask's scheduler); in-memory data use none, but it must still be None
        or a ``distributed.Client``.
        ``partial``: these rows are a part of the data whose statistics will be added
        to others' (``dmixed update``: one day's rows may all hold one level of a
        factor): the design's rank, the response's variation and (on Dask) the count of
        rows are not checked here but on the sum (:meth:`from_statistics`), and the
        statistics are not cached
        (a fit of this model alone computes and checks them again).

        On Dask, a group whose random slope is nearly constant within it (timestamps of
        events seconds apart, near 1.7e9: a "lossy" group, whose plain sums lose the
        digits of its centred ones) is fitted from sums about a shift of its own.  Data
        read from storage are summed by a compiled pass that keeps those sums only when
        asked, as they make it slower (benchmarks/RESULTS.md, lossy-s44): by default (the Dask
        config key ``dmixed.shifted_sweep`` = ``"auto"``) a data pass whose blocks find lossy groups
        runs once more keeping them, so such data are read twice (logged at INFO on logger
        ``"dmixed"``; the first pass's blocks are released first);
        ``"always"`` keeps them from the start (one pass, each a little longer),
        ``"never"`` refuses such groups.

        Raises
        ------
        DataError
            A rank-deficient fixed-effects design or a response without variation
            (unless ``partial``); lossy groups on Dask with
            ``dmixed.shifted_sweep`` = ``"never"`` where the compiled pass summed them
            (:func:`~dmixed.engines.local.refuse_inexact`); or
            a model built from statistics (no data) asked for them with another client
            or engine than they were built with.
        SpecError
            Neither rows nor statistics: a model unpickled after ``remove_data()``;
            ``client`` neither None nor a ``distributed.Client``, whatever the data
            (:func:`~dmixed.engines.base.check_client`); ``progress`` or ``partial``
            not a bool (:func:`~dmixed.fit.options.check_flag`).

        Warns
        -----
        TextConversionWarning
            Dask data whose group keys are text that may be Dask's text of tuples
            (:func:`~dmixed.design.partitions.warn_text_keys`).
        """
        # checked whatever the data: in-memory rows use no client, but an address or a
        # "no" given there is as much a mistake as on Dask data
        check_client(client)
        if client is None:
            client = self.built_client()
        progress = bool(check_flag(progress, "progress"))
        partial = bool(check_flag(partial, "partial"))
        cached = self.cached_statistics
        if standardization is not None and cached is not None:
            if cached.columns != standardization:
                cached = None
        if cached is not None and self.cached_client is client and engine_alive(cached.engine):
            if engine is None or getattr(cached.engine, "name", None) == engine_name(engine):
                return cached
        if self.source is not None:
            # imported here: a model of in-memory data never imports Dask
            from ..engines.dask import statistics_from_dask

            stats = statistics_from_dask(
                self.source,
                self.spec,
                client=client,
                progress=progress,
                engine=engine,
                standardization=standardization,
                partial=partial,
            )
            if stats.n_dropped:
                warnings.warn(
                    f"dropped {plural(stats.n_dropped)} with missing values",
                    DroppedRowsWarning,
                    stacklevel=caller_stacklevel(),
                )
            if self.spec is not None:  # keys that may be Dask's text of tuples
                warn_text_keys(self.source, stats.group_labels, self.spec.group_name)
        elif self.rows is not None:
            check_in_memory_engine(engine)
            spec = getattr(self, "spec", None)
            # the formula's intercepts, or those found with the arrays' rows
            intercepts = self.rows.intercepts if spec is None else spec.intercept_columns()
            refs = None if spec is None else column_references(spec)
            stats = statistics_from_rows(self.rows, standardization, intercepts, refs)
        elif cached is None:
            raise SpecError(self.lost_statistics())
        else:
            raise DataError(
                "this model holds statistics but no data (MixedLM.from_statistics, or "
                "remove_data()): they cannot be computed again for another client or engine"
            )
        if partial:
            return stats
        spec = getattr(self, "spec", None)
        re_formula = None if spec is None else spec.re_formula
        try:
            check_designs(
                stats,
                self.exog_names,
                self.exog_re_names,
                self.endog_name,
                re_formula,
                vc_reads(spec),
            )
        except DataError as err:
            if self.source is None or spec is None or not getattr(err, "no_residual_variation", 0):
                raise
            # the level scan reads the response only beside a factor: a constant one is
            # told apart here, in the words of a fit in process (naming its value)
            from ..engines.dask.progress import design_waits

            with design_waits():  # bounded as the data pass's waits
                constant = dask_constant_response(spec, self.source, client)
            raise (err if constant is None else constant) from None
        self.cached_statistics, self.cached_client = stats, client
        return stats

    def built_client(self) -> Any:
        """The client the model was built with (``mixedlm(..., client=...)``) while it
        is open, else None (the current client, else Dask's local scheduler, is used)."""
        # (getattr: a model pickled before the attribute was)
        built = getattr(self, "client", None)
        if built is None or getattr(built, "status", "running") in ("closing", "closed"):
            return None
        return built

    def lost_statistics(self) -> str:
        """Why this model holds no statistics, and how to get them back: for the errors
        of what needs them (the model was pickled, and statistics never are).

        Returns
        -------
        str
            A message tail: the data the model still holds or why it holds none
            (``remove_data()``, a model built from statistics), and what to do.
        """
        if self.rows is not None or self.source is not None:
            return (
                "a pickled model does not carry its statistics (they are never pickled): "
                "model.statistics() computes them again from its data (a data pass), or refit"
            )
        if self.data_removed:
            why, back = "its data were removed (remove_data())", "refit it from the data"
        else:
            why, back = "it was built from statistics", "build it from them again"
        return (
            f"this model holds neither its rows nor their statistics: {why}, and a pickled "
            f"model does not carry its statistics (they are never pickled); {back}"
        )

    def fit_statistics(self, client, progress: bool, engine: str | None) -> FittedStatistics:
        """The statistics a fit uses: :meth:`statistics` (one data pass unless cached),
        logged once (at INFO level with ``progress``: by the Dask engine for its own data
        pass, here for the rest), checked against the model's layout."""
        if progress:
            ensure_progress_handler()
        before = self.cached_statistics
        stats = self.statistics(client=client, progress=progress, engine=engine)
        # the cached statistics, unless they were made again (another client or engine)
        reused = before is not None and stats is before
        layout = stats.layout
        if layout.k_re != self.k_re or layout.k_vc != self.k_vc:
            raise RuntimeError("internal error: statistics layout does not match the model")
        if not reused and self.source is not None:
            # the Dask engine logged its data pass ("data pass done in ...": rows, groups)
            return stats
        if not reused:
            what = "data pass: %d rows, %d groups in %.2fs"
        elif self.rows is None and self.source is None and not self.data_removed:
            # MixedLM.from_statistics
            what = (
                "fitting the statistics the model was built from (no data pass): %d rows, %d groups"
            )
        else:  # model.statistics() or an earlier fit made them: a data pass did run
            what = "fitting the statistics of the model's earlier data pass: %d rows, %d groups"
        logger.log(
            logging.INFO if progress else logging.DEBUG,
            what,
            *(stats.glob.n, len(stats.group_labels)),
            *(() if reused else (stats.data_pass_seconds,)),
        )
        return stats


def engine_alive(engine) -> bool:
    """A cached Dask engine whose client has closed holds nothing any more."""
    client = getattr(engine, "client", None)
    return client is None or getattr(client, "status", "running") not in ("closing", "closed")


def check_in_memory_engine(engine) -> None:
    """In-memory data is fitted in this process: ``engine`` may only say so."""
    if engine is None or str(engine).lower() in ("auto", "local"):
        return
    if str(engine).lower() in ENGINE_CHOICES:
        raise SpecError(
            f"engine={engine!r} needs Dask data (the statistics of in-memory data stay in "
            "this process); use engine='local' or 'auto', or pass a Dask DataFrame"
        )
    raise SpecError(f"engine must be one of {ENGINE_CHOICES}, got {engine!r}")


def engine_name(engine: str) -> str:
    return {"distributed": "dask", "local": "local"}.get(str(engine).lower(), "")
