"""A fit's functions on the workers run with numpy's huge-page advice as the driver's fit.

The fit turns numpy's huge-page advice off in the driver
(:func:`dmixed.kernels.pages.ordinary_pages`); the workers are other processes, whose
numpy keeps its own setting.  Every function the engine runs on a worker for a fit is
sent as a :class:`~dmixed.kernels.pages.PagedCall`, made in the driver by
:func:`~dmixed.kernels.pages.paged`: at the graphs' tasks
(:meth:`~dmixed.engines.dask.graph._Graph.call` and the ``dask.delayed`` calls of
:mod:`~dmixed.engines.dask.graph`), at the ``client.map`` calls outside a round trip,
and, through :class:`PagedClient`, at every round trip of the evaluators, as tasks or
as direct calls (:mod:`~dmixed.engines.dask.direct_calls`, whose recorder it wraps).
"""

from __future__ import annotations

from ...kernels.pages import paged

__all__ = ["PagedClient"]


class PagedClient:
    """``client`` (a Dask client or a round trip's recorder) whose ``map`` and
    ``submit`` send their function as :func:`~dmixed.kernels.pages.paged` of it; every
    other attribute is ``client``'s own.

    Parameters
    ----------
    client : distributed.Client or direct_calls.Recorder
    """

    __slots__ = ("client",)

    def __init__(self, client) -> None:
        self.client = client

    def map(self, func, *iterables, **kwargs) -> list:
        """``client.map`` of ``paged(func)``."""
        return self.client.map(paged(func), *iterables, **kwargs)

    def submit(self, func, *args, **kwargs):
        """``client.submit`` of ``paged(func)``."""
        return self.client.submit(paged(func), *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.client, name)
