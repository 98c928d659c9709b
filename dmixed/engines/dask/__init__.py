"""The Dask engine: one data pass to per-group statistics, kept on the workers.

- :mod:`~dmixed.engines.dask.data_pass`: :func:`statistics_from_dask`, the steps of one
  pass and where it runs (client and engine resolution);
- :mod:`~dmixed.engines.dask.graph`: the pass's graph on dask-expr (chains of
  partitions, resident chains, one task per partition, the block graph);
- :mod:`~dmixed.engines.dask.pieces`: the tasks of one partition, culled from a graph;
- :mod:`~dmixed.engines.dask.partials`: what the tasks compute from pandas partitions;
- :mod:`~dmixed.engines.dask.combine`: adding partial statistics by group key (numpy
  and pandas only);
- :mod:`~dmixed.engines.dask.blocks`: the combined blocks and their assembly on the
  driver;
- :mod:`~dmixed.engines.dask.evaluator`: :class:`DaskEngine`, the kernels on the workers;
- :mod:`~dmixed.engines.dask.progress`: progress events and lines;
- :mod:`~dmixed.engines.dask.tuning`: glibc malloc settings of the workers;
- :mod:`~dmixed.engines.dask.placement`: the sizes Dask counts for the statistics held,
  and the optimizer's tasks' keys (each on the worker of its block).
"""

from . import placement  # noqa: F401  (registers the held statistics' sizes with Dask)
from .data_pass import AUTO_LOCAL_MAX_VALUES, level_scan_chains, statistics_from_dask
from .evaluator import DaskEngine
from .worker_logs import install_quiet_errors

# a worker imports this package as it unpickles the first task of a pass: its log of a
# task that raised one of dmixed's errors (which the driver reports in one line) is
# dropped on clusters the caller started too, not only those of dmixed.cluster.connect
install_quiet_errors()

__all__ = ["AUTO_LOCAL_MAX_VALUES", "DaskEngine", "level_scan_chains", "statistics_from_dask"]
