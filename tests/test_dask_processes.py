"""The suite's own separate-process Dask cluster (``tests/_dask_processes.py``)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from tests._dask_processes import REPO

CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests._dask_processes import scheduler_and_workers
with scheduler_and_workers(Path({d!r})):
    print("UP", flush=True)
    time.sleep(600)
"""


def _started_in(directory) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(directory) in part for part in p.info["cmdline"] or ()):
            found.append(p)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_killed_test_process_leaves_no_scheduler_or_worker_running(tmp_path):
    """A test run killed before its teardown (a timeout's SIGKILL) left the scheduler and
    workers it had started running in their own sessions, loading the host for every run
    after it; they now die with the process that started them."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=REPO, d=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "UP"
        started = [p for p in _started_in(tmp_path) if p.pid != child.pid]
        assert len(started) == 3  # the scheduler and two workers
        child.kill()
        child.wait(timeout=30)
        gone, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for p in _started_in(tmp_path):
            p.kill()
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        child.stdout.close()
