"""Results on disk: the state record of fitted results and the results directory format.

- :mod:`~dmixed.io.state`: :class:`ResultsState`, every number a results object is
  built from (with the model's :class:`~dmixed.design.ModelNames`).
- :mod:`~dmixed.io.results_dir`: the directory (JSON estimates, Parquet BLUPs, summary
  text), written atomically; :func:`save_state` / :func:`load_state`.

This layer knows nothing of :class:`~dmixed.MixedLMResults`: ``dmixed.load`` (in
:mod:`dmixed.results`) builds one from :func:`load_state`.
"""

from .results_dir import FORMAT, FORMAT_VERSION, load_state, random_effects_table, save_state
from .state import ResultsState

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ResultsState",
    "load_state",
    "random_effects_table",
    "save_state",
]
