"""The Dask engine: one data pass to per-group statistics, kept on the workers."""
