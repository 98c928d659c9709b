"""A Dask scheduler and workers as separate processes, as a user with a cluster runs them.

Everything listens on 127.0.0.1 only, the HTTP routes included (``--no-dashboard``
still serves /health and /metrics on every interface unless told otherwise): a
scheduler runs whatever its clients send.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

REPO = str(Path(__file__).resolve().parents[1])
_LOOPBACK = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]


#: Run ``python -m ARGS`` so that it is killed when the test process that started it
#: dies (Linux's parent-death signal, kept across the exec): a test run killed before
#: its teardown (a timeout, SIGKILL) otherwise leaves its scheduler and workers running
#: in their own sessions, loading the host for the runs after it.
_LAUNCH = (
    "import ctypes, os, sys\n"
    "parent = int(sys.argv[1])\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(1)  # the test process died before the signal was set\n"
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])\n"
)


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(log, "w") as fh:
        # own session: teardown kills the process and its children by group id
        return subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(os.getpid()), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=30)


@contextlib.contextmanager
def scheduler_and_workers(directory: Path, n_workers: int = 2) -> Iterator[SimpleNamespace]:
    """Start ``dask scheduler`` and ``n_workers`` single-thread ``dask worker`` processes.

    Yields ``file`` (the scheduler file), ``address``, ``dir`` and ``scheduler`` (its
    Popen, for tests that kill it); everything is stopped on exit.
    """
    from distributed import Client

    sfile = directory / "scheduler.json"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            _spawn(
                [
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--scheduler-file",
                    str(sfile),
                    *_LOOPBACK,
                ],
                directory / "scheduler.log",
                directory,
            )
        )
        address = None
        deadline = time.monotonic() + 60
        while address is None:
            if procs[0].poll() is not None:
                raise RuntimeError(
                    f"dask scheduler exited: {(directory / 'scheduler.log').read_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("dask scheduler wrote no scheduler file within 60 s")
            try:
                address = json.loads(sfile.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for i in range(n_workers):
            procs.append(
                _spawn(
                    [
                        "distributed.cli.dask_worker",
                        "--scheduler-file",
                        str(sfile),
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        *_LOOPBACK,
                    ],
                    directory / f"worker-{i}.log",
                    directory,
                )
            )
        with Client(scheduler_file=str(sfile), timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=90)
        yield SimpleNamespace(file=str(sfile), address=address, dir=directory, scheduler=procs[0])
    finally:
        _stop(procs)
