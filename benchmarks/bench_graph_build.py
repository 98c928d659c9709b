"""The driver's CPU to build the out-of-core data pass's graph, nothing computed.

Run:  PYTHONPATH=<tree> python benchmarks/bench_graph_build.py [--dir /tmp/bd20]
                                                               [--blocks 2] [--repeat 5]

On :mod:`bench_dask`'s data (``--dir``, generated there): the model
``y ~ x1 + x2 + x3`` with a random intercept and slope on x1, the collection projected
as a fit projects it, then :func:`~dmixed.engines.dask.graph.block_graph` with
``--blocks`` chains and blocks and no client, once warm and ``--repeat`` times timed;
prints the thread CPU seconds of each build (``time.thread_time``).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/bd20")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import dask.dataframe as dd

    import dmixed
    from dmixed.engines.dask.data_pass import group_key_dtype
    from dmixed.engines.dask.graph import block_graph, project_columns
    from dmixed.stats.packed import PackedLayout

    ddf = dd.read_parquet(args.dir)
    spec = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1").spec
    ddf = project_columns(ddf, spec)
    key_dtype = group_key_dtype(ddf, spec)
    packed = PackedLayout(len(spec.exog_re_names), len(spec.exog_names) + 1)

    def build() -> list:
        return block_graph(ddf, spec, None, packed, key_dtype, args.blocks, args.blocks)

    build()  # warm: imports, the expression's caches
    seconds = []
    for _ in range(args.repeat):
        t0 = time.thread_time()
        build()
        seconds.append(time.thread_time() - t0)
    print("block_graph thread CPU s: " + ", ".join(f"{s:.4f}" for s in seconds))


if __name__ == "__main__":
    main()
