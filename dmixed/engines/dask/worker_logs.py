"""Workers' logs without dmixed's own refusals.

A task that raises one of dmixed's errors (a :class:`~dmixed.errors.DataError` naming
the partition, its file and column) is reported by the client, in one line; the
worker's log of it ("Compute Failed", the task, the exception and a traceback) printed
before that line, on the terminal of a local cluster, says the same thing worse.
:class:`QuietDmixedErrors` drops those records from the ``distributed.worker`` logger;
a failure of any other kind is logged as before.  :class:`QuietDmixedErrorsPlugin`
installs it on every worker of a cluster, those that join later included
(:func:`dmixed.cluster.connect`); a worker of a cluster the caller started installs it
as it imports :mod:`dmixed.engines.dask` to run a task of the pass.  :class:`QuietRuns`
drops a worker's records of dmixed's own calls of its ``run`` handler
(:mod:`~dmixed.engines.dask.direct_calls`).
"""

from __future__ import annotations

import inspect
import logging
import weakref

from distributed import WorkerPlugin

from ... import errors

__all__ = [
    "QuietClosing",
    "QuietDmixedErrors",
    "QuietDmixedErrorsPlugin",
    "QuietRuns",
    "install_quiet_closing",
    "install_quiet_errors",
    "install_quiet_runs",
]

_LOGGER = "distributed.worker"
#: distributed's records of what a worker closed while its tasks run cuts short, by
#: logger, as the start and the end of the message: a heartbeat to the scheduler under
#: way (its connection closed under it) and the tasks running, cancelled ("This should
#: exclusively happen in Worker.close()"; the message names the exception, the record
#: holds none; an instruction that ended otherwise is kept)
_CLOSING_RECORDS = {
    "distributed.worker": ("Failed to communicate with scheduler during heartbeat", ""),
    "distributed.worker.state_machine": ("Async instruction for ", " ended with CancelledError"),
}


class QuietDmixedErrors(logging.Filter):
    """Drop distributed's "Compute Failed" record of a task that raised a
    :class:`~dmixed.errors.DmixedError`; keep every other record.

    The record holds only the exception's text (``DataError("partition 3 ...")``), the
    same for pandas' ``DataError`` or a caller's own class of that name; the exception
    itself is a local of distributed's ``Worker.execute`` that logs it (``task_exc``),
    found among the callers of this filter, and the record is dropped only where it
    is one of dmixed's.  Where that frame is not found (another version of distributed
    names it otherwise) the record is kept: logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed"):
            return True
        return not isinstance(_logged_exception(), errors.DmixedError)


#: frames between the filter and the code that logs: Filterer.filter, Logger.handle,
#: Logger._log, Logger.error and their like, with room to spare
_CALLER_DEPTH = 12


def _logged_exception() -> BaseException | None:
    """The exception of the task whose failure distributed's worker is logging: the
    local ``task_exc`` of the nearest caller holding one, else None."""
    # From the caller: this frame's own locals would hold the walk's frame, a cycle that
    # keeps the failed task's frames (and its data) alive until the cyclic collector runs.
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    del here
    try:
        for _ in range(_CALLER_DEPTH):
            if frame is None:
                return None
            exc = frame.f_locals.get("task_exc")
            if isinstance(exc, BaseException):
                return exc
            frame = frame.f_back
        return None
    finally:
        del frame


def install_quiet_errors() -> None:
    """Add :class:`QuietDmixedErrors` to this process's ``distributed.worker`` logger
    (once)."""
    log = logging.getLogger(_LOGGER)
    if not any(isinstance(f, QuietDmixedErrors) for f in log.filters):
        log.addFilter(QuietDmixedErrors())


class QuietRuns(logging.Filter):
    """Drop distributed's records of a ``run`` call of the function named ``name`` (the
    call, at INFO, one a call; "Run Failed", with the arguments and the traceback,
    where it raised); keep every other record.

    Parameters
    ----------
    name : str
        The function's ``__name__``.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("Run ") and args[:1] == (self.name,))


def install_quiet_runs(name: str) -> None:
    """Add :class:`QuietRuns` of ``name`` to this process's ``distributed.worker``
    logger (once)."""
    log = logging.getLogger(_LOGGER)
    if not any(isinstance(f, QuietRuns) and f.name == name for f in log.filters):
        log.addFilter(QuietRuns(name))


class QuietClosing(logging.Filter):
    """Drop distributed's records of what closing a worker cuts short
    (:data:`_CLOSING_RECORDS`: a heartbeat whose connection the closing worker closed
    under it, a ``CommClosedError`` and its traceback; each running task cancelled), as
    a worker closed by an interrupted command logs while its tasks still run, once the
    worker is closing; keep every record while the workers of the process run (several
    share one logger where they are threads: a record is dropped once one of them
    closes)."""

    def __init__(self, start: str, end: str = "") -> None:
        super().__init__()
        self.start = start
        self.end = end
        self.workers: weakref.WeakSet = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if not (msg.startswith(self.start) and msg.endswith(self.end)):
            return True
        states = {getattr(getattr(w, "status", None), "name", "") for w in self.workers}
        return not states & {"closing", "closing_gracefully", "closed", "failed"}


def install_quiet_closing(worker) -> None:
    """Add :class:`QuietClosing` to this process's loggers of :data:`_CLOSING_RECORDS`
    (once), watching ``worker``."""
    for name, (start, end) in _CLOSING_RECORDS.items():
        log = logging.getLogger(name)
        found = [f for f in log.filters if isinstance(f, QuietClosing)]
        if not found:
            found = [QuietClosing(start, end)]
            log.addFilter(found[0])
        found[0].workers.add(worker)


class QuietDmixedErrorsPlugin(WorkerPlugin):
    """:func:`install_quiet_errors` and :func:`install_quiet_closing` on every worker
    (``client.register_plugin``)."""

    name = "dmixed-quiet-errors"

    def setup(self, worker) -> None:
        install_quiet_errors()
        install_quiet_closing(worker)
