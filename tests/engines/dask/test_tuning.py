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


def _kernels_state(cold: int | None = None) -> tuple[bool, bool]:
    """On a worker: whether it buys numba eagerly and whether numba is loaded (with
    ``cold``, :data:`~dmixed.kernels.compiled.ROWS_MIN_COLD` set to it first)."""
    from dmixed.kernels import compiled

    if cold is not None:
        compiled.ROWS_MIN_COLD = cold
    return compiled.ROWS_POLICY["eager"], "numba" in sys.modules


def test_workers_buy_numba_at_their_first_large_pass():
    """The data pass's tasks have their worker processes buy numba eagerly
    (:func:`~dmixed.engines.dask.tuning.prepare_worker`): a worker that ran one loads
    numba during the first fit (a pass of ``ROWS_MIN_COLD`` rows, set small here)."""
    pytest.importorskip("numba")
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import dmixed

    from ..._synth import make_data

    ddf = dd.from_pandas(make_data(n_groups=200, seed=8), npartitions=4)
    with (
        dask.config.set({"dmixed.engine": "distributed"}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        before = client.run(_kernels_state, 100)
        assert not any(eager or loaded for eager, loaded in before.values()), before
        dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1").fit(client=client)
        after = client.run(_kernels_state)
    assert any(eager for eager, _ in after.values()), after
    assert all(loaded for eager, loaded in after.values() if eager), after


# A thread (as a worker's task runs on) that allocates and frees 60 arrays of 4 MB
# (below the mmap threshold: the heap) after the settings of MODE; prints the process's
# resident MB after the free, then after release_free_memory, and what that returned.
_RELEASE = """
import sys, threading
import numpy as np
from dmixed.engines.dask import tuning
if sys.argv[1] == "tuned":
    tuning.tune_malloc()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) >> 10
def churn():
    arrays = [np.ones(500_000) for _ in range(60)]
    del arrays
thread = threading.Thread(target=churn)
thread.start()
thread.join()
before = rss()
asked = tuning.release_free_memory()
print(before, rss(), asked)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc settings",
)
def test_release_free_memory_gives_a_tuned_heap_back():
    """A tuned worker keeps a freed heap (the trim threshold and top pad raised for its
    passes); :func:`~dmixed.engines.dask.tuning.release_free_memory`, which the design
    matrices' chains call at their start and end, gives it back to the OS.  Elsewhere
    (not tuned) it asks nothing."""
    nanny = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    plain = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    got = {}
    for mode, env in (("tuned", nanny), ("untuned", nanny), ("driver", plain)):
        done = subprocess.run(
            [sys.executable, "-c", _RELEASE, "untuned" if mode == "untuned" else "tuned"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        before, after, asked = done.stdout.split()
        got[mode] = (int(before), int(after), asked == "True")
    before, after, asked = got["tuned"]
    assert asked and before - after >= 64, got  # of the 240 MB freed, at most 128 kept
    assert not got["untuned"][2] and not got["driver"][2], got


def test_a_workers_chains_give_back_the_partitions_read_buffers(client, monkeypatch, tmp_path):
    """pyarrow's pool keeps the buffers of the partitions a worker read when they are
    freed, and Dask counts them in the worker's memory (a worker past its pause
    fraction runs nothing more): the level scan's chains and the data pass's chains
    each give them back once they have read their partitions."""
    import dask.dataframe as dd
    import numpy as np
    import pyarrow as pa

    import dmixed

    from ..._synth import make_data

    released: list = []
    real = pa.default_memory_pool

    class Counted:
        def __init__(self, pool) -> None:
            self.pool = pool

        def release_unused(self) -> None:
            released.append(1)
            self.pool.release_unused()

        def __getattr__(self, name):
            return getattr(self.pool, name)

    monkeypatch.setattr(pa, "default_memory_pool", lambda: Counted(real()))
    df = make_data(n_groups=30, min_size=5, max_size=10, seed=5)
    df["c"] = np.where(np.arange(len(df)) % 3 == 0, "u", "v")
    half = len(df) // 2
    df.iloc[:half].to_parquet(tmp_path / "a.parquet")
    df.iloc[half:].to_parquet(tmp_path / "b.parquet")
    model = dmixed.mixedlm("y ~ x1 + C(c)", dd.read_parquet(tmp_path), groups="g", client=client)
    after_build = len(released)
    model.fit()
    assert after_build >= 1  # the level scan's chains
    assert len(released) > after_build  # the data pass's chains


def test_a_workers_partition_columns_are_freed_once_its_design_is_built(monkeypatch):
    """formulaic keeps the frame it evaluates a partition's formula on (the partition's
    columns) in a reference cycle: a worker frees it once the partition's design is
    built, not at the collector's next full pass (which may come after the next
    partition is read, or after the chain).  Run in this thread as in a worker's (a
    Dask worker's profiler may hold a finished frame for a moment)."""
    import gc
    import weakref

    import distributed
    import numpy as np

    import dmixed
    from dmixed.design import matrices
    from dmixed.engines.dask import partials, tuning

    from ..._synth import make_data

    df = make_data(n_groups=30, min_size=5, max_size=10, seed=5)
    df["c"] = np.where(np.arange(len(df)) % 3 == 0, "u", "v")
    df["flag"] = np.arange(len(df)) % 2 == 0
    spec = dmixed.design.build_spec(df, "y ~ x1 + flag + C(c)", groups="g")
    frames: list = []
    real = matrices.materialize

    def recorded(fspec, frame, *args, **kwargs):
        frames.append(weakref.ref(frame))
        return real(fspec, frame, *args, **kwargs)

    monkeypatch.setattr(matrices, "materialize", recorded)
    monkeypatch.setattr(distributed, "get_worker", lambda: None)  # as in a worker
    monkeypatch.setattr(tuning, "COLLECT_ROWS", 0)  # a small partition
    enabled = gc.isenabled()
    gc.disable()  # no full pass of the collector's own comes to free it
    try:
        dm = partials.partition_design(df, spec)
        alive = [r for r in frames if r() is not None]
    finally:
        if enabled:
            gc.enable()
    assert dm is not None and dm.endog.shape[0] == len(df)
    assert frames  # the partition's design was evaluated by formulaic
    assert alive == []


def test_a_column_by_column_design_runs_no_collection(monkeypatch):
    """A numeric formula's design (column by column, no formulaic) leaves no cycle to
    free: no collection runs after it, even in a worker."""
    import gc

    import distributed

    import dmixed
    from dmixed.design.columnar import columns_design_applies
    from dmixed.engines.dask import partials, tuning

    from ..._synth import make_data

    df = make_data(n_groups=30, min_size=5, max_size=10, seed=5)
    spec = dmixed.design.build_spec(df, "y ~ x1 + x2", groups="g")
    assert columns_design_applies(spec)
    calls: list = []
    monkeypatch.setattr(distributed, "get_worker", lambda: None)  # as in a worker
    monkeypatch.setattr(tuning, "COLLECT_ROWS", 0)
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    dm = partials.partition_design(df, spec)
    assert dm is not None and dm.endog.shape[0] == len(df)
    assert calls == []
