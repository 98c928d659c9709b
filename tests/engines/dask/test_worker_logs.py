"""Workers' logs without dmixed's own refusals (``dmixed/engines/dask/worker_logs.py``):
a task raising a DmixedError logs no "Compute Failed" traceback on the worker (the
command reports it in one line); any other failure is logged as before."""

from __future__ import annotations

import logging

import pytest
from distributed.core import Status

from dmixed.cluster import connect
from dmixed.engines.dask.worker_logs import (
    QuietClosing,
    QuietDmixedErrors,
    QuietDmixedErrorsPlugin,
    QuietRuns,
    install_quiet_closing,
)
from dmixed.errors import DataError


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _data_error():
    raise DataError("partition 1 of the Dask DataFrame (file b.parquet): column 'x' ...")


def _key_error():
    raise KeyError("something else")


def test_workers_log_no_traceback_of_dmixed_errors(client):
    """Without --quiet, a partition's DataError printed distributed's worker log (task,
    exception, traceback) before dmixed's own message."""
    log = logging.getLogger("distributed.worker")
    handler = _Records()
    log.addHandler(handler)
    before = _remove_quiet_errors(log)  # the one this process's import of dmixed added
    client.register_plugin(QuietDmixedErrorsPlugin())
    try:
        for task, kind in ((_data_error, DataError), (_key_error, KeyError)):
            with pytest.raises(kind):
                client.submit(task, pure=False).result()
        failed = [r.getMessage() for r in handler.records if str(r.msg).startswith("Compute")]
        assert len(failed) == 1 and "KeyError('something else')" in failed[0], failed
    finally:
        log.removeHandler(handler)
        client.unregister_worker_plugin(QuietDmixedErrorsPlugin.name)
        _remove_quiet_errors(log)
        for f in before:
            log.addFilter(f)


def _pandas_data_error():
    import pandas as pd

    pd.DataFrame({"a": ["x", "y"]}).rolling(2).sum()  # pandas.errors.DataError


class PathError(Exception):  # a caller's own class of the name of one of dmixed's
    pass


def _own_path_error():
    raise PathError("my file is gone")


def test_a_users_errors_of_the_names_of_dmixeds_are_still_logged(client):
    """The filter, installed in every process that imports dmixed.engines.dask, once
    dropped any failure whose exception's text started with the name of one of
    dmixed's errors: a caller's task raising pandas' DataError or a class of their own
    named PathError left no record on their own cluster.  Only dmixed's are dropped."""
    import pandas as pd

    from dmixed.engines.dask.worker_logs import install_quiet_errors

    log = logging.getLogger("distributed.worker")
    handler = _Records()
    log.addHandler(handler)
    install_quiet_errors()
    try:
        for task, kind in (
            (_pandas_data_error, pd.errors.DataError),
            (_own_path_error, PathError),
            (_data_error, DataError),
        ):
            with pytest.raises(kind):
                client.submit(task, pure=False).result()
        failed = [r.getMessage() for r in handler.records if str(r.msg).startswith("Compute")]
    finally:
        log.removeHandler(handler)
    assert len(failed) == 2, failed
    assert "DataError(" in failed[0] and "PathError('my file is gone')" in failed[1], failed


def _remove_quiet_errors(log: logging.Logger) -> list[logging.Filter]:
    found = [f for f in log.filters if isinstance(f, QuietDmixedErrors)]
    for f in found:
        log.removeFilter(f)
    return found


def test_connect_quiets_the_workers_of_the_cluster_it_connects_to(client):
    def plugins(dask_scheduler):
        return list(dask_scheduler.worker_plugins)

    with connect(client.scheduler.address) as other:
        assert QuietDmixedErrorsPlugin.name in other.run_on_scheduler(plugins)
    client.unregister_worker_plugin(QuietDmixedErrorsPlugin.name)


class _Worker:  # what the filter reads of a worker: its status
    def __init__(self, status) -> None:
        self.status = status


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def _remove_quiet_closing() -> None:
    for name in ("distributed.worker", "distributed.worker.state_machine"):
        log = logging.getLogger(name)
        for f in [f for f in log.filters if isinstance(f, QuietClosing)]:
            log.removeFilter(f)


@pytest.fixture
def no_quiet_closing():
    """No filter before the test (in-process workers of other tests, closed since,
    install one) and none left after it, on every logger they go on."""
    _remove_quiet_closing()
    yield
    _remove_quiet_closing()


@pytest.mark.parametrize(
    ("name", "msg"),
    [
        ("distributed.worker", "Failed to communicate with scheduler during heartbeat."),
        (
            "distributed.worker.state_machine",
            "Async instruction for <Task> ended with CancelledError",
        ),
    ],
)
def test_a_closing_workers_cut_heartbeat_and_cancelled_tasks_are_not_logged(
    name, msg, no_quiet_closing
):
    """What a worker closed under running tasks logs of them is dropped once it is
    closing; a running worker's records, and other records, are kept."""
    worker = _Worker(Status.running)
    install_quiet_closing(worker)
    install_quiet_closing(worker)  # once
    log = logging.getLogger(name)
    quiet = [f for f in log.filters if isinstance(f, QuietClosing)]
    assert len(quiet) == 1
    assert quiet[0].filter(_record(name, msg))
    worker.status = Status.closing
    assert not quiet[0].filter(_record(name, msg))
    assert quiet[0].filter(_record(name, "Compute Failed"))


def test_a_closing_workers_instruction_that_ended_otherwise_is_logged(no_quiet_closing):
    """Only the cancelled instructions of a closing worker are dropped: an instruction
    that ended with another exception is still reported."""
    name = "distributed.worker.state_machine"
    worker = _Worker(Status.closing)
    install_quiet_closing(worker)
    log = logging.getLogger(name)
    quiet = [f for f in log.filters if isinstance(f, QuietClosing)]
    assert not quiet[0].filter(
        _record(name, "Async instruction for <Task> ended with CancelledError")
    )
    assert quiet[0].filter(_record(name, "Async instruction for <Task> ended with OSError"))


def test_quiet_runs_drops_only_the_named_functions_run_records():
    quiet = QuietRuns("_run_stage")

    def record(level, msg, *args):
        return logging.LogRecord("distributed.worker", level, "", 0, msg, args, None)

    assert not quiet.filter(record(logging.INFO, "Run out-of-band function %r", "_run_stage"))
    failed = "Run Failed\nFunction: %s\nargs:     %s\nkwargs:   %s\n"
    assert not quiet.filter(record(logging.WARNING, failed, "_run_stage", "(...)", "{}"))
    assert quiet.filter(record(logging.INFO, "Run out-of-band function %r", "other"))
    assert quiet.filter(record(logging.WARNING, failed, "other", "(...)", "{}"))
    assert quiet.filter(record(logging.INFO, "Starting Worker plugin %s", "_run_stage"))


def test_a_fit_on_a_users_own_cluster_logs_no_traceback_of_missing_values(tmp_path, capfd):
    """A Dask fit with missing="raise" on a cluster the caller started (no
    :func:`dmixed.cluster.connect`, so no plugin) refused the data cleanly on the driver,
    and each worker logged distributed's "Compute Failed" block with a traceback into
    ``partials.py`` as well (printed on the terminal: the worker processes write to this
    process's stderr)."""
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import Client, LocalCluster

    import dmixed
    from dmixed.errors import BadValuesError

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=80), "x": rng.normal(size=80), "g": np.arange(80) % 8})
    df.loc[::7, "x"] = np.nan
    for i in range(2):
        df.iloc[40 * i : 40 * (i + 1)].to_parquet(tmp_path / f"p{i}.parquet", index=False)
    ddf = dd.read_parquet(sorted(str(p) for p in tmp_path.iterdir()))
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        with pytest.raises(BadValuesError, match="column 'x'"):
            dmixed.mixedlm("y ~ x", ddf, groups="g").fit(client=client)
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "BadValuesError" not in err, err


@pytest.mark.parametrize("kind", ["dmixed", "other"])
def test_the_filter_keeps_no_failed_tasks_frames_alive(kind):
    """The filter's walk over its callers must not tie their frames into a cycle: a
    failed task's data goes when the logging call returns, not at the next collection."""
    import gc
    import weakref

    class Held:  # stands for the failed task's partition
        pass

    log = logging.getLogger("dmixed-test-filter-frames")
    log.addFilter(QuietDmixedErrors())
    log.propagate = False
    log.addHandler(logging.NullHandler())

    def execute():
        data = Held()
        task_exc = DataError("boom") if kind == "dmixed" else RuntimeError("boom")
        log.error("Compute Failed\nException: %r", repr(task_exc))
        return weakref.ref(data)

    enabled = gc.isenabled()
    gc.disable()
    try:
        ref = execute()
        assert ref() is None
    finally:
        if enabled:
            gc.enable()
