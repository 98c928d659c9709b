"""Parametric bootstrap from the statistics alone (lme4's ``bootMer``, MixedModels.jl's
``parametricbootstrap``), with no data pass.

Each replicate draws the statistics of a new response ``y* = Xβ̂ + Z̃b* + e*`` from the
fit (:class:`dmixed.stats.draw.ResponseSampler`: the design's statistics stay, the
response's are drawn in O(groups), see its derivation) and refits them with the fitting
code of any fit from statistics, less what a replicate does not use
(:mod:`dmixed.results.replicate`).  The rows are never read again: a replicate costs an
optimizer run over the groups, whatever the number of rows.  Statistics held on a Dask
cluster are bootstrapped on its workers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..engines.local import statistics_from_arrays
from ..errors import CheckpointError, DataError, SpecError, shorten
from ..files import before_commit, check_format_version, jsonable, sibling_path
from ..fit.options import check_flag
from ..fit.summary import ensure_progress_handler
from ..inference import check_alpha
from ..io.results_dir import BOOTSTRAP_FILE
from ..kernels.dense2 import sharing_design
from ..kernels.pages import paged
from ..stats import GroupArrays
from .replicate import ReplicateFitter, estimate_row, replicate_rngs
from .simulate import check_nsim

__all__ = [
    "BOOTSTRAP_FILE",
    "COV_RE_SUFFIX",
    "FORMAT_VERSION",
    "REPLICATES_LIMIT",
    "VCOMP_SUFFIX",
    "BootstrapResults",
    "parametric_bootstrap",
]

#: The most replicates one bootstrap runs (its generators and rows are held in memory,
#: ~2 KB a replicate before any runs): more is refused, in the API and the CLI alike.
REPLICATES_LIMIT = 1_000_000

#: the Parquet metadata key of the table's description (format, estimate, method)
METADATA_KEY = b"dmixed.bootstrap"

logger = logging.getLogger("dmixed")

#: the columns of the replicate table after the parameters
SUMMARY_COLUMNS = ["scale", "llf", "converged"]

#: after statsmodels' name of a ``cov_re`` entry (Ψ, not ``params``' Ψ/σ²) in the table
COV_RE_SUFFIX = " (cov_re)"

#: after statsmodels' name of a ``vcomp`` entry (τ², not ``params``' τ²/σ²) in the table
VCOMP_SUFFIX = " (vcomp)"

#: the replicate table's format: 2 names the covariance columns with :data:`COV_RE_SUFFIX`
#: and :data:`VCOMP_SUFFIX`; 1 (before) with statsmodels' bare names, renamed on load
FORMAT_VERSION = 2


class BootstrapResults:
    """The replicates of a parametric bootstrap and their percentile intervals.

    Attributes
    ----------
    replicates : DataFrame (n, k)
        One row per replicate: the fixed effects (by ``exog_names``), the covariance
        parameters on the response's scale (the entries of ``cov_re``, Ψ, and of
        ``vcomp``, τ²), ``scale``, ``llf`` and ``converged`` (:meth:`conf_int` and
        :attr:`bse` give intervals and standard errors for the parameters: every column
        but ``llf`` and ``converged``).  A replicate whose refit failed has NaN estimates
        and ``converged=False``.  The covariance columns are named by the attribute that
        holds the same number in the results: statsmodels' names with ``" (cov_re)"`` or
        ``" (vcomp)"`` after them (``"Group Var (cov_re)"``, ``"Group x x1 Cov
        (cov_re)"``, ``"sub Var (vcomp)"``: :data:`COV_RE_SUFFIX`, :data:`VCOMP_SUFFIX`),
        because ``results.params["Group Var"]`` is another number, Ψ/σ² (statsmodels'
        profile parametrization): ``estimate["Group Var (cov_re)"]`` is
        ``results.params["Group Var"] * results.scale``.  Tables saved by versions
        before this naming (``format_version`` 1, statsmodels' bare names holding the
        same Ψ and τ²) load with these names given the results bootstrapped
        (:meth:`load`).
    estimate : Series (k − 1,)
        The same quantities for the fit bootstrapped.
    reml : bool
    seconds : float
        Wall time of the whole bootstrap (the set-up included).
    replicate_seconds : ndarray (n,)
        Wall time of each replicate (its draw and refit).
    """

    def __init__(
        self,
        replicates: pd.DataFrame,
        estimate: pd.Series,
        reml: bool,
        seconds: float,
        replicate_seconds: np.ndarray,
    ) -> None:
        self.replicates = replicates
        self.estimate = estimate
        self.reml = reml
        self.seconds = seconds
        self.replicate_seconds = replicate_seconds

    def __len__(self) -> int:
        return len(self.replicates)

    @property
    def values(self) -> pd.DataFrame:
        """The replicates' estimates (every column but ``converged``), as floats."""
        # by position: a covariate may be named like a summary column
        return self.replicates.iloc[:, :-1].astype(np.float64)

    def _parameters(self) -> pd.DataFrame:
        """The parameters' replicates: :attr:`values` but its last column, ``llf``
        (:data:`SUMMARY_COLUMNS`), taken by position."""
        return self.values.iloc[:, :-1]

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Percentile intervals of the parameters on the response's scale: the
        ``α/2`` and ``1 − α/2`` quantiles over the replicates (failed replicates left
        out) of the fixed effects, the variances and covariances (the entries of
        ``cov_re``, Ψ, and of ``vcomp``, τ², under the columns' names of
        :attr:`replicates`: ``"g Var (cov_re)"``, not statsmodels' ``params`` entry
        ``"g Var"``, which is Ψ/σ²) and ``scale`` (σ², not σ).  The
        log-likelihood is no parameter: its replicates stay in :attr:`replicates`, with
        no interval here.  Columns ``0`` and ``1`` (lower, upper) as
        :meth:`MixedLMResults.conf_int`; rows those of :attr:`replicates` but ``llf``
        and ``converged``.  lme4's form (``confint(fit, method = "boot")``: SDs,
        correlations and σ in the rows ``.sig01``, …, ``.sigma``, columns ``"2.5 %"``,
        ``"97.5 %"``) is :meth:`MixedLMResults.confint` with ``method="boot"``
        (:func:`dmixed.results.profile.boot_intervals` of these replicates).

        Raises
        ------
        SpecError
            ``alpha`` not in (0, 1).
        """
        alpha = check_alpha(alpha)
        vals = self._parameters()
        lower = vals.quantile(alpha / 2.0)
        upper = vals.quantile(1.0 - alpha / 2.0)
        return pd.DataFrame({0: lower, 1: upper})

    @property
    def bse(self) -> pd.Series:
        """The replicates' standard deviation of each parameter (bootstrap standard
        errors), an attribute as :attr:`MixedLMResults.bse` is: the rows of
        :meth:`conf_int` (the log-likelihood is no parameter; its replicates stay in
        :attr:`replicates`)."""
        return self._parameters().std(ddof=1)

    def save(self, path) -> None:
        """Write the replicate table to the Parquet file ``path`` atomically (a hidden
        temporary beside it, synced, then renamed over it), with the estimate, the
        method and the timings in its metadata (read back by :meth:`load`); missing
        parent directories are made."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path).resolve()
        table = pa.Table.from_pandas(self.replicates, preserve_index=False)
        meta = {
            "format": "dmixed-bootstrap",
            "format_version": FORMAT_VERSION,
            "reml": self.reml,
            "estimate": dict(self.estimate.items()),
            "seconds": self.seconds,
            "replicate_seconds": self.replicate_seconds,
        }
        blob = json.dumps(jsonable(meta), allow_nan=True).encode()
        table = table.replace_schema_metadata({**table.schema.metadata, METADATA_KEY: blob})
        target.parent.mkdir(parents=True, exist_ok=True)  # as MixedLMResults.save
        tmp = sibling_path(target, "tmp")
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            before_commit()
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path, results=None) -> BootstrapResults:
        """A replicate table written by :meth:`save`.

        ``results``: the results bootstrapped, needed only for a table of
        ``format_version`` 1 (dmixed before its covariance columns were named
        ``"g Var (cov_re)"``, ``"sub Var (vcomp)"``), whose bare statsmodels names
        (``"g Var"``, holding Ψ where ``params["g Var"]`` is Ψ/σ²) are renamed as this
        version names them; the names alone do not tell a ``cov_re`` entry from a
        ``vcomp`` one.

        Raises
        ------
        CheckpointError
            Not a dmixed replicate table (no such metadata), or unreadable; written by
            a newer dmixed (a ``format_version`` this one does not know,
            :func:`dmixed.files.check_format_version`); of ``format_version`` 1
            without ``results``, or with the results of another model.
        """
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[METADATA_KEY])
            replicates = table.to_pandas()
            estimate = pd.Series(meta["estimate"], dtype=np.float64)
            seconds = np.asarray(meta["replicate_seconds"], dtype=np.float64)
            reml, total = bool(meta["reml"]), float(meta["seconds"])
            written = meta.get("format_version", 1)
        except RecursionError:  # metadata nested deeper than Python's parser goes
            raise CheckpointError(
                f"{path} is not a readable dmixed bootstrap table: its metadata holds "
                "arrays or objects nested deeper than dmixed ever writes them"
            ) from None
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
            why = shorten(str(exc))
            raise CheckpointError(
                f"{path} is not a readable dmixed bootstrap table: {type(exc).__name__}: {why}"
            ) from exc
        if check_format_version(path, written, FORMAT_VERSION, "a dmixed bootstrap table") < 2:
            names = _version_1_names(path, list(replicates.columns), results)
            replicates.columns = pd.Index([names[c] for c in replicates.columns])
            estimate.index = pd.Index([names.get(c, c) for c in estimate.index])
        return cls(replicates, estimate, reml, total, seconds)

    def __repr__(self) -> str:
        ok = int(self.replicates["converged"].sum())
        return (
            f"<dmixed BootstrapResults: {len(self)} replicates ({ok} converged), "
            f"{'REML' if self.reml else 'ML'}, {self.seconds:.2f}s>"
        )


def _version_1_names(path, columns: list[str], results) -> dict[str, str]:
    """``{bare name: this version's name}`` for the columns of a ``format_version`` 1
    table at ``path`` (statsmodels' bare names), from ``results``' model."""
    if results is None:
        raise CheckpointError(
            f"{path} is a bootstrap table of format version 1, whose covariance columns "
            "carry statsmodels' bare names (such as 'g Var') for cov_re's and vcomp's "
            "entries, while params under those names holds them divided by scale: load "
            "it with BootstrapResults.load(path, results), the results bootstrapped, to "
            "name them as this version does ('g Var (cov_re)', 'sub Var (vcomp)')"
        )
    new = [*table_columns(results), *SUMMARY_COLUMNS]
    bare = [c.removesuffix(COV_RE_SUFFIX).removesuffix(VCOMP_SUFFIX) for c in new]
    if columns != bare:
        raise CheckpointError(
            f"{path} is not a bootstrap table of these results: its columns are "
            f"{shorten(str(columns))}, the results' {shorten(str(bare))}"
        )
    return dict(zip(bare, new, strict=True))


def table_columns(results) -> list[str]:
    """The replicate table's parameter columns (see :class:`BootstrapResults`): the
    fixed effects' names, then statsmodels' names of the ``cov_re`` entries and of the
    ``vcomp`` entries with :data:`COV_RE_SUFFIX` and :data:`VCOMP_SUFFIX` (their values
    are Ψ and τ², where ``params`` under the bare names holds Ψ/σ² and τ²/σ²)."""
    names = results.names
    k_fe, k_re2 = results.k_fe, results.k_re2
    cov = [f"{name}{COV_RE_SUFFIX}" for name in results.param_names[k_fe : k_fe + k_re2]]
    vc = [f"{name}{VCOMP_SUFFIX}" for name in results.param_names[k_fe + k_re2 :]]
    return [*names.exog_names, *cov, *vc]


def parametric_bootstrap(
    results, n: int, seed=None, progress: bool = False, use_re: bool = False
) -> BootstrapResults:
    """Refit ``results``' model to ``n`` responses drawn from it, from its statistics.

    Each replicate draws the statistics of a response from the fit and refits them
    (:class:`dmixed.results.replicate.ReplicateFitter`: the ordinary fit from statistics,
    started at the fit's estimate or the replicate's moment estimate, whichever has the
    higher likelihood, with exact Newton steps; no standard errors).  Replicate ``k``
    draws from its own generator (the ``k``-th child of ``seed``, numpy's ``spawn``), so
    the table does not depend on where the replicates run.  The same seed gives the same
    table for the same statistics with one version of dmixed (and numpy): a fit of the
    same rows in process or on Dask, to rounding, where both chose the same column map
    (``Standardization``; the draw's roots are taken in those columns, so a map chosen
    otherwise, from other rows of a sample, draws other responses of the same
    distribution).  The map includes the centres that products of columns far from
    zero are read about (:mod:`dmixed.design.centres`): such a fit (``x*C(c)`` with
    ``x`` near 1e6) draws other replicates, of the same distribution, than the same
    model with ``x`` moved near zero, or than a fit whose first rows gave another
    centre (the draws are not yet taken in the formula's own columns).  On Dask each
    chain of partitions chooses its map from its own first partition's rows, so the
    same rows partitioned otherwise may choose another map (a column far from zero
    next to its spread, in ``X`` or ``re_formula``, is shifted by the mean of those
    rows; every column's scale is the power of two nearest their spread) and, for the
    same seed, draw other replicates of the same distribution (``re_formula="1 + ts"``
    with ``ts`` near 1.7e9: other tables from 1 and 3 partitions of the same rows).
    Groups fitted
    from centred sums (a random design close to singular within them, groups of fewer
    rows than random effects among them) have those sums drawn with the response, as
    the fit used them.  Which root of ``Z̃_i'Z̃_i`` a group draws with is one rule of its
    sums, whichever engine holds them
    (:class:`~dmixed.stats.draw.ResponseSampler`): a group whose random design is an
    intercept and columns constant within it (the rank-one closed form) draws
    ``√u z̄ z_e``, which scales with those columns, so such fits draw the same table in
    process and on Dask whatever the maps' scales of those columns.  A version that
    draws otherwise (another root, other optimizer coordinates, other degrees of
    freedom of the residual χ²) gives other replicates of the same distribution: to
    keep a table, save it (:meth:`BootstrapResults.save`) rather than its seed.  (The
    χ²'s degrees of freedom are ``n − rank[Z̃ X]``, the rank of the fixed effects'
    Schur complement judged against ``X'X``: for a fit whose fixed effects are all
    random, 0 for that complement, where earlier versions could count rounding as
    rank, e.g. 143 rather than 144 for a weighted ``1 + Days`` fit of 180 rows and 18
    groups, and drew another table for the same seed.)

    Parameters
    ----------
    results : MixedLMResults
        A fit of this session (its model holds the statistics: in-process, loaded from
        a statistics directory, or on Dask workers).  Statistics held on a Dask cluster
        (``engine="distributed"``) are gathered once (no data read), shipped once to
        every worker, and the replicates run there in batches (``client.map``); other
        fits run them in this process.  Each replicate is refitted with the default
        optimizer settings (as lme4's ``refit``) and the fit's criterion (REML or ML).
    n : int
        Replicates.
    seed : int, numpy Generator, SeedSequence or None
        The draws' seed (:func:`dmixed.results.replicate.replicate_rngs`).
    progress : bool
        Log one line per replicate at INFO level on logger ``"dmixed"``.
    use_re : bool
        Draw conditional on the BLUPs (lme4's ``use.u = TRUE``) rather than redraw the
        random effects (default, as ``bootMer``).

    Returns
    -------
    BootstrapResults

    Raises
    ------
    SpecError
        ``n`` not a positive integer or over :data:`REPLICATES_LIMIT`; ``progress`` or
        ``use_re`` not a Python or numpy bool; results without
        their model's statistics: loaded results, or pickled ones (the message says
        whether the model still holds its data and how to get the statistics back).
    DataError
        A fit whose statistics stay on the Dask workers (``engine="distributed"``)
        with groups that take centred sums, which the workers keep
        (:func:`refuse_kept_on_workers`): fit with ``engine="local"``.
    """
    n = check_nsim(n, "n")
    progress, use_re = check_flag(progress, "progress"), check_flag(use_re, "use_re")
    if n > REPLICATES_LIMIT:
        raise SpecError(
            f"n must be at most {REPLICATES_LIMIT} replicates, got {n}: run several "
            "bootstraps with different seeds and concatenate their replicates"
        )
    model = results.fitted_model
    stats = None if model is None else model.cached_statistics
    if stats is None:
        why = (
            "loaded results do not hold them: fit the model again (on its data, or "
            "built with MixedLM.from_statistics from saved statistics) and bootstrap "
            "those results"
            if model is None
            else model.lost_statistics()
        )
        raise SpecError(f"bootstrap needs the fitted model's statistics: {why}")
    t0 = time.perf_counter()
    rngs = replicate_rngs(seed, n)
    # from the workers for Dask (no data read), with the centred sums some groups take
    arrays = GroupArrays.from_statistics(stats, centred=True)
    if arrays.centred is None and getattr(stats.engine, "block", None) is None:
        refuse_kept_on_workers(arrays)
    fitter = ReplicateFitter.of(results, arrays, use_re)
    if progress:
        ensure_progress_handler()
    level = logging.INFO if progress else logging.DEBUG
    client = getattr(stats.engine, "client", None)
    batches = run_on_cluster(client, fitter, rngs) if client is not None else None
    if batches is None:
        batches = (fitter.run([rng]) for rng in rngs)
    rows, seconds = [], []
    with sharing_design():  # in process: every replicate's refit over the fit's design
        for batch_rows, batch_seconds in batches:
            for row, sec in zip(batch_rows, batch_seconds, strict=True):
                rows.append(row)
                seconds.append(sec)
                logger.log(level, "bootstrap: replicate %d/%d in %.2fs", len(rows), n, sec)
    columns = [*table_columns(results), *SUMMARY_COLUMNS[:-1]]
    table = pd.DataFrame([r[:-1] for r in rows], columns=columns, dtype=np.float64)
    table["converged"] = np.array([r[-1] for r in rows], dtype=bool)
    estimate = pd.Series(
        estimate_row(results.to_state(), arrays.layout.k_re), index=table.columns[:-1]
    )
    total = time.perf_counter() - t0
    return BootstrapResults(table, estimate, bool(results.reml), total, np.asarray(seconds))


def run_on_cluster(client, fitter: ReplicateFitter, rngs: list, per_thread: int = 2):
    """Replicates on the workers of ``client``: ``fitter`` shipped once to every worker
    (``scatter(broadcast=True)``), then one task per batch of generators
    (``client.map``; about ``per_thread`` batches per worker thread), each run with
    numpy's huge-page advice as a fit's (:func:`~dmixed.kernels.pages.paged`).  Yields each
    batch's ``(rows, seconds)``, in the order of ``rngs``; None when the client has no
    worker thread."""
    threads = sum(client.nthreads().values())
    if threads == 0:
        return None
    size = max(1, -(-len(rngs) // (per_thread * threads)))
    chunks = [rngs[i : i + size] for i in range(0, len(rngs), size)]
    shipped = client.scatter(fitter, broadcast=True, hash=False)
    futures = client.map(paged(run_batch), [shipped] * len(chunks), chunks, pure=False)
    return (f.result() for f in futures)


def run_batch(fitter: ReplicateFitter, rngs: list) -> tuple[list, list]:
    """A task on a worker: :meth:`ReplicateFitter.run` of one batch."""
    return fitter.run(rngs)


#: What a Dask fit whose statistics stay on the workers needs for its bootstrap
KEPT_ON_WORKERS_REMEDY = (
    "fit with engine='local' (or the dask config 'dmixed.engine' set to 'local'), "
    "whose statistics gathered on the driver keep those sums, and bootstrap that fit"
)


def refuse_kept_on_workers(arrays: GroupArrays) -> None:
    """Refuse, before any replicate, the bootstrap of statistics held away from the
    driver (a Dask fit with ``engine="distributed"`` or the dask config
    ``"dmixed.engine"`` set to ``"distributed"``: no driver-side block) whose lossy
    groups take centred sums there: ``arrays`` (gathered from the workers) hold the
    plain sums only, from which every replicate's refit would refuse those groups
    (:func:`~dmixed.engines.local.refuse_inexact`) and the table would be all NaN.

    Raises
    ------
    DataError
        Naming the number of such groups, the engine setting and what to do.
    """
    try:
        statistics_from_arrays(arrays)  # what each replicate's refit builds: O(groups)
    except DataError as exc:
        count = getattr(exc, "lossy_groups", 0)
        if not count:
            raise
        raise DataError(
            f"bootstrap: {count} group(s) of this fit take sums about their own means (a "
            "random design close to singular within them), which its statistics kept on "
            "the Dask workers (engine='distributed', or the dask config 'dmixed.engine' "
            "set to 'distributed') do not bring to the driver: every replicate's refit "
            f"would fail; {KEPT_ON_WORKERS_REMEDY}"
        ) from exc
