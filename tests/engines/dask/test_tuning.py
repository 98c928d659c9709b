"""glibc malloc settings of the worker processes (:mod:`dmixed.engines.dask.tuning`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A thread (as a worker's task runs on) that allocates and frees five 20 MB arrays
# (more than one 64 MB heap of its arena, each below the mmap threshold) ten times,
# after one warm round; prints the page faults of the ten rounds.
_CHURN = """
import resource, sys, threading
import numpy as np
from dmixed.engines.dask.tuning import tune_malloc
if sys.argv[1] == "tuned":
    tune_malloc()
def rounds(out):
    def once():
        arrays = [np.ones(2_500_000) for _ in range(5)]
        del arrays
    once()
    start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        once()
    out.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)
out = []
thread = threading.Thread(target=rounds, args=(out,))
thread.start()
thread.join()
print(out[0])
"""


def _faults(mode: str) -> int:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc settings",
)
def test_tuned_thread_keeps_its_heaps():
    # untuned, every round unmaps the arena's second heap and faults its pages in again
    untuned = _faults("untuned")
    if untuned < 1000:
        pytest.skip(f"this glibc keeps a thread's heaps untuned ({untuned} faults)")
    assert _faults("tuned") < untuned // 4
