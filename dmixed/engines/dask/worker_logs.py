"""Workers' logs without dmixed's own refusals.

A task that raises one of dmixed's errors (a :class:`~dmixed.errors.DataError` naming
the partition, its file and column) is reported by the client, in one line; the
worker's log of it ("Compute Failed", the task, the exception and a traceback) printed
before that line, on the terminal of a local cluster, says the same thing worse.
:class:`QuietDmixedErrors` drops those records from the ``distributed.worker`` logger;
a failure of any other kind is logged as before.  :class:`QuietDmixedErrorsPlugin`
installs it on every worker of a cluster, those that join later included
(:func:`dmixed.cluster.connect`).
"""

from __future__ import annotations

import logging

from distributed import WorkerPlugin

from ... import errors

__all__ = ["QuietDmixedErrors", "QuietDmixedErrorsPlugin", "install_quiet_errors"]

#: the start of the text distributed logs for an exception of one of dmixed's errors
_PREFIXES = tuple(
    f"{name}("
    for name in errors.__all__
    if isinstance(getattr(errors, name), type)
    and issubclass(getattr(errors, name), errors.DmixedError)
)
_LOGGER = "distributed.worker"


class QuietDmixedErrors(logging.Filter):
    """Drop distributed's "Compute Failed" record of a task that raised a
    :class:`~dmixed.errors.DmixedError` (its exception's text starts with the class
    name: ``DataError("partition 3 ...")``); keep every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(a, str) and a.startswith(_PREFIXES) for a in args)


def install_quiet_errors() -> None:
    """Add :class:`QuietDmixedErrors` to this process's ``distributed.worker`` logger
    (once)."""
    log = logging.getLogger(_LOGGER)
    if not any(isinstance(f, QuietDmixedErrors) for f in log.filters):
        log.addFilter(QuietDmixedErrors())


class QuietDmixedErrorsPlugin(WorkerPlugin):
    """:func:`install_quiet_errors` on every worker (``client.register_plugin``)."""

    name = "dmixed-quiet-errors"

    def setup(self, worker) -> None:
        install_quiet_errors()
