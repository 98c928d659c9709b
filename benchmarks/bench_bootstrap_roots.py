"""Bootstrap of a random slope on a group-level column: one seed, one table in process
and on Dask; the sampler's set-up cost.

Run:  python benchmarks/bench_bootstrap_roots.py [--replicates 20] [--groups 200000]

1. ``y ~ x1 + gc``, ``re_formula="1 + gc"`` (``gc`` constant within each of 31 groups,
   one of 2 rows; the frame of ``tests/results/test_bootstrap.py::_group_level_frame``):
   the fit in process and on Dask (``dd.from_pandas(npartitions=3)``, sync scheduler),
   each bootstrapped with seed 0; the largest difference of the llf and of any column.
   A version whose Dask bootstrap refuses says so.
2. ``ResponseSampler``'s set-up on ``--groups`` groups of 3 rows of the same model
   (thread CPU seconds, median of 5), as the bootstrap builds it.
"""

from __future__ import annotations

import argparse
import time
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

import dmixed
from dmixed.errors import DmixedWarning
from dmixed.stats import GroupArrays
from dmixed.stats.draw import ResponseSampler


def group_level_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    sizes = [2] + [8] * 30
    g = np.repeat(np.arange(len(sizes)), sizes)
    gc = rng.normal(size=len(sizes))
    frame = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "gc": gc[g]})
    effects = rng.normal(size=len(sizes)) + rng.normal(size=len(sizes)) * gc
    frame["y"] = frame.x1 + frame.gc + rng.normal(size=g.size) + effects[g]
    return frame


def tables(replicates: int) -> None:
    frame = group_level_frame()
    kw = dict(groups="g", re_formula="1 + gc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        fit = dmixed.mixedlm("y ~ x1 + gc", frame, **kw).fit()
        local = fit.bootstrap(replicates, seed=0).replicates
        with dask.config.set(scheduler="sync"):
            ddf = dd.from_pandas(frame, npartitions=3)
            on_dask = dmixed.mixedlm("y ~ x1 + gc", ddf, **kw).fit()
            try:
                remote = on_dask.bootstrap(replicates, seed=0).replicates
            except dmixed.errors.DmixedError as exc:
                print(f"Dask bootstrap refused: {type(exc).__name__}")
                return
    diff = (local.drop(columns="converged") - remote.drop(columns="converged")).abs()
    print(
        f"max |llf| in process vs Dask {diff['llf'].max():.2g}, any column {diff.values.max():.2g}"
    )


def setup_cost(n_groups: int) -> None:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(n_groups), 3)
    gc = rng.normal(size=n_groups)
    df = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "gc": gc[g]})
    df["y"] = df.x1 + rng.normal(size=g.size)
    model = dmixed.mixedlm("y ~ x1 + gc", df, groups="g", re_formula="1 + gc")
    arrays = GroupArrays.from_statistics(model.statistics())
    try:
        from dmixed.engines.local import closed_form_groups
    except ImportError:  # a version without it

        def closed_form_groups(arrays):
            return None

    seconds = []
    for _ in range(5):
        t0 = time.thread_time()
        closed = closed_form_groups(arrays)
        ResponseSampler(arrays) if closed is None else ResponseSampler(arrays, closed)
        seconds.append(time.thread_time() - t0)
    print(f"ResponseSampler set-up, {n_groups} groups: median {np.median(seconds):.3f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--groups", type=int, default=200_000)
    args = parser.parse_args()
    print(dmixed.__file__)
    tables(args.replicates)
    setup_cost(args.groups)


if __name__ == "__main__":
    main()
