"""Parametric bootstrap from the statistics alone (lme4's ``bootMer``, MixedModels.jl's
``parametricbootstrap``), with no data pass.

Each replicate draws the statistics of a new response ``y* = Xβ̂ + Z̃b* + e*`` from the
fit (:class:`dmixed.stats.draw.ResponseSampler`: the design's statistics stay, the
response's are drawn in O(groups), see its derivation) and refits the model to them with
the same fitting code as any fit from statistics.  The rows are never read again:
a replicate costs an optimizer run over the groups, whatever the number of rows.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..engines.local import statistics_from_arrays
from ..errors import CheckpointError, DmixedError, DmixedWarning, SpecError
from ..files import jsonable, sibling_path
from ..fit.summary import ensure_progress_handler
from ..stats import GroupArrays, tril_indices
from ..stats.draw import ResponseSampler
from .simulate import StandardizedFit, as_rng, check_nsim, draw_effects

__all__ = ["BOOTSTRAP_FILE", "BootstrapResults", "parametric_bootstrap"]

#: the replicate table's file name in a results directory (``dmixed bootstrap``)
BOOTSTRAP_FILE = "bootstrap.parquet"
#: the Parquet metadata key of the table's description (format, estimate, method)
METADATA_KEY = b"dmixed.bootstrap"

logger = logging.getLogger("dmixed")

#: the columns of the replicate table after the parameters
SUMMARY_COLUMNS = ["scale", "llf", "converged"]


class BootstrapResults:
    """The replicates of a parametric bootstrap and their percentile intervals.

    Attributes
    ----------
    replicates : DataFrame (n, k)
        One row per replicate: the fixed effects (by ``exog_names``), the covariance
        parameters on the reported scale (``cov_re`` entries and ``vcomp``, named as
        statsmodels' ``summary()`` names them: ``"Group Var"``, ``"Group x x1 Cov"``,
        ``"sub Var"``), ``scale``, ``llf`` and ``converged``.  A replicate whose refit
        failed has NaN estimates and ``converged=False``.
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
        return self.replicates.drop(columns="converged").astype(np.float64)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Percentile intervals: the ``α/2`` and ``1 − α/2`` quantiles of each column
        over the replicates (failed replicates left out), as lme4's
        ``confint(bootMer(...), type = "perc")``.  Columns ``0`` and ``1`` (lower,
        upper) as :meth:`MixedLMResults.conf_int`.

        Raises
        ------
        SpecError
            ``alpha`` not in (0, 1).
        """
        if not 0.0 < float(alpha) < 1.0:
            raise SpecError(f"alpha must be in (0, 1), got {alpha!r}")
        vals = self.values
        lower = vals.quantile(alpha / 2.0)
        upper = vals.quantile(1.0 - alpha / 2.0)
        return pd.DataFrame({0: lower, 1: upper})

    def bse(self) -> pd.Series:
        """The replicates' standard deviation of each column (bootstrap standard errors)."""
        return self.values.std(ddof=1)

    def save(self, path) -> None:
        """Write the replicate table to the Parquet file ``path`` atomically (a hidden
        temporary beside it, synced, then renamed over it), with the estimate, the
        method and the timings in its metadata (read back by :meth:`load`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path).resolve()
        table = pa.Table.from_pandas(self.replicates, preserve_index=False)
        meta = {
            "format": "dmixed-bootstrap",
            "format_version": 1,
            "reml": self.reml,
            "estimate": dict(self.estimate.items()),
            "seconds": self.seconds,
            "replicate_seconds": self.replicate_seconds,
        }
        blob = json.dumps(jsonable(meta), allow_nan=True).encode()
        table = table.replace_schema_metadata({**table.schema.metadata, METADATA_KEY: blob})
        tmp = sibling_path(target, "tmp")
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path) -> BootstrapResults:
        """A replicate table written by :meth:`save`.

        Raises
        ------
        CheckpointError
            Not a dmixed replicate table (no such metadata), or unreadable.
        """
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[METADATA_KEY])
            replicates = table.to_pandas()
            estimate = pd.Series(meta["estimate"], dtype=np.float64)
            seconds = np.asarray(meta["replicate_seconds"], dtype=np.float64)
            return cls(replicates, estimate, bool(meta["reml"]), float(meta["seconds"]), seconds)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"{path} is not a readable dmixed bootstrap table: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        ok = int(self.replicates["converged"].sum())
        return (
            f"<dmixed BootstrapResults: {len(self)} replicates ({ok} converged), "
            f"{'REML' if self.reml else 'ML'}, {self.seconds:.2f}s>"
        )


def table_columns(results) -> list[str]:
    """The replicate table's parameter columns (see :class:`BootstrapResults`)."""
    names = results.names
    return [*names.exog_names, *results.param_names[results.k_fe :]]


def estimate_row(state, layout_q: int) -> list[float]:
    """Fixed effects, ``cov_re``'s lower triangle, ``vcomp``, scale, llf of a fit's state."""
    rows, cols = tril_indices(layout_q)
    cov = np.asarray(state.cov_re, dtype=np.float64)
    return [
        *np.asarray(state.fe_params, dtype=np.float64),
        *cov[rows, cols],
        *np.asarray(state.vcomp, dtype=np.float64),
        float(state.scale),
        float(state.llf),
    ]


def parametric_bootstrap(
    results, n: int, seed=None, progress: bool = False, use_re: bool = False
) -> BootstrapResults:
    """Refit ``results``' model to ``n`` responses drawn from it, from its statistics.

    Parameters
    ----------
    results : MixedLMResults
        A fit of this session (its model holds the statistics: in-process, loaded from
        a statistics directory, or on Dask workers, gathered once to this process where
        the replicates run).  Each replicate is refitted with the default optimizer
        settings (as lme4's ``refit``) and the fit's criterion (REML or ML).
    n : int
        Replicates.
    seed : int, numpy Generator or None
        The draws' seed (``numpy.random.default_rng(seed)``).
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
        ``n`` not a positive integer; results without their model's statistics
        (loaded results).
    """
    n = check_nsim(n, "n")
    model = results.model
    stats = None if model is None else model.cached_statistics
    if stats is None:
        raise SpecError(
            "bootstrap needs the fitted model's statistics (a fit of this session, or a "
            "model built from saved statistics); loaded results do not hold them"
        )
    t0 = time.perf_counter()
    rng = as_rng(seed)
    arrays = GroupArrays.from_statistics(stats)  # from the workers for Dask: no data read
    sampler = ResponseSampler(arrays)
    fit_std = StandardizedFit.of(results, arrays.columns, arrays.layout)
    if progress:
        ensure_progress_handler()
    level = logging.INFO if progress else logging.DEBUG
    g = len(arrays.labels)
    columns = [*table_columns(results), *SUMMARY_COLUMNS[:-1]]
    width = len(columns)
    rows, seconds = [], np.zeros(n)
    for k in range(n):
        t_rep = time.perf_counter()
        effects = fit_std.blups
        if not use_re:
            effects = fit_std.sigma * draw_effects(rng, fit_std.lam, g, arrays.slot_cols)
        drawn = sampler.draw(rng, fit_std.beta, effects, fit_std.sigma)
        row = _refit(model, drawn, results.reml, arrays.layout.k_re)
        rows.append(row if row is not None else [np.nan] * width + [False])
        seconds[k] = time.perf_counter() - t_rep
        logger.log(level, "bootstrap: replicate %d/%d in %.2fs", k + 1, n, seconds[k])
    table = pd.DataFrame([r[:-1] for r in rows], columns=columns, dtype=np.float64)
    table["converged"] = np.array([r[-1] for r in rows], dtype=bool)
    estimate = pd.Series(
        estimate_row(results.to_state(), arrays.layout.k_re), index=table.columns[:-1]
    )
    total = time.perf_counter() - t0
    return BootstrapResults(table, estimate, bool(results.reml), total, seconds)


def _refit(model, drawn: GroupArrays, reml: bool, q: int) -> list | None:
    """One replicate's row (:func:`estimate_row` and ``converged``): the model refitted
    to drawn statistics (its twin over them: the same names, no rows); None if the
    refit fails."""
    twin = copy.copy(model)
    twin.rows = None
    twin.source = None
    twin.cached_statistics, twin.cached_client = statistics_from_arrays(drawn), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DmixedWarning)
            fit = twin.fit(reml=reml, skip_hessian=True, check_nobs="ignore")
    except (DmixedError, np.linalg.LinAlgError) as exc:
        logger.debug("bootstrap: a replicate's refit failed: %s", exc)
        return None
    return [*estimate_row(fit.to_state(), q), bool(fit.converged)]
