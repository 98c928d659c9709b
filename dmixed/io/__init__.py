"""Results saved to disk: the results directory format (JSON estimates, Parquet BLUPs)."""

from .results_dir import load, save_results

__all__ = ["load", "save_results"]
