"""Warnings that dask's own code raises under the pandas installed: the tests that run
that code filter them by their message (never a warning of dmixed's own calls)."""

#: dask's Parquet reader (``dask/dataframe/io/parquet/arrow.py``) calls
#: ``reset_index(inplace=True)`` on every partition it turns into pandas, which pandas
#: 3.1 deprecates (``Pandas4Warning``, a ``DeprecationWarning``): dask's call, made where
#: a partition is computed through dask's graph (``dask.compute``, or dmixed's chains
#: where they do not read the files themselves: ``engines.dask.pieces.compute_piece``)
DASK_INPLACE_RESET = (
    "ignore:The inplace keyword in DataFrame.reset_index is deprecated:DeprecationWarning"
)
#: the same reader's ``set_index(inplace=True)`` on its meta, for ``read_parquet(index=...)``
DASK_INPLACE_SET = (
    "ignore:The inplace keyword in DataFrame.set_index is deprecated:DeprecationWarning"
)
