"""A/B of two checkouts on a bucket's root task: the chains' partials to a held block.

Run:  MALLOC_TRIM_THRESHOLD_=65536 OPENBLAS_NUM_THREADS=1 \\
      python benchmarks/bench_combine_ab.py BASE_TREE [--dir /tmp/bd20] [--parts 8]
                                             [--rounds 3] [--repeat 5]

``BASE_TREE`` is another checkout (a worktree of main); this checkout is the other
version.  First, in a child process of this checkout, two chains of ``--parts``
partitions each (the first and the last of ``dd.read_parquet(--dir)``, the data of
``bench_dask.py``; ``y ~ x1 + x2 + x3``, random intercept and slope on x1) are summed by
``chain_partials`` as a fit's chains sum them (two buckets, exchange ``partials``) and
their outputs pickled: every bucket's root task then gets the same inputs in both
versions.  Then for each of ``--rounds`` rounds the two versions run in turn (the order
alternating), each in a child process with ``PYTHONPATH`` set to its tree: per bucket,
``combined_block`` (the task of a bucket's root: the combine and the held block, as
on a cluster) ``--repeat`` times after a warm call, thread CPU time each, and, apart,
its two parts as the base does them (``combine_converted``, then ``to_block`` of its
result).  The parent prints each run, the best and median per version, and whether the
blocks (keys, row counts, every chunk of the held statistics) are the same bytes in
both versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_inputs(args) -> None:
    import dask.dataframe as dd

    import dmixed
    from dmixed.engines.dask.combine import target_map
    from dmixed.engines.dask.graph import chain_recipes, project_columns
    from dmixed.engines.dask.parquet_direct import parquet_reads
    from dmixed.engines.dask.partials import chain_partials
    from dmixed.engines.dask.pieces import Pieces
    from dmixed.engines.dask.tuning import tune_malloc
    from dmixed.stats.packed import PackedLayout

    tune_malloc()
    ddf = dd.read_parquet(args.dir)
    spec = dmixed.mixedlm("y ~ x1 + x2 + x3", ddf, groups="g", re_formula="1 + x1").spec
    (chain,) = chain_recipes(project_columns(ddf, spec), 1)
    items = chain.items
    packed = PackedLayout(2, 5)
    outs = []
    for part in (items[: args.parts], items[-args.parts :]):
        pieces = Pieces(part)
        reads = parquet_reads(pieces, spec)
        outs.append(
            chain_partials(
                pieces, spec, None, packed, 2, np.dtype("int64"), None, "partials", reads
            )
        )
    maps = [o[2] for o in outs]
    target = target_map(4, 2, *maps)
    empty = ((np.empty(0, dtype=np.int64), np.empty((0, packed.width))), None)
    buckets = [[(o[0][b], o[2]) for o in outs] + [empty] for b in range(2)]
    with open(args.inputs, "wb") as fh:
        pickle.dump({"packed": packed, "target": target, "buckets": buckets}, fh)
    print(f"inputs: {[[len(p[0][0]) for p in b] for b in buckets]} groups a part, by bucket")


def _digest(block) -> str:
    from dmixed.engines.dask.blocks import block_dense

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(block.labels).tobytes())
    h.update(np.ascontiguousarray(block.nobs).tobytes())
    for zz, zxy in block.stats.chunks():
        h.update(np.ascontiguousarray(zz).tobytes())
        h.update(np.ascontiguousarray(zxy).tobytes())
    zz, zxy = block_dense(block)
    h.update(zz.tobytes())
    h.update(zxy.tobytes())
    return h.hexdigest()[:16]


def child(args) -> None:
    import numba  # noqa: F401 - loaded, as in a worker whose chains ran

    import dmixed
    from dmixed.engines.dask.blocks import combined_block, to_block
    from dmixed.engines.dask.combine import combine_converted
    from dmixed.engines.dask.tuning import tune_malloc

    tune_malloc()
    with open(args.inputs, "rb") as fh:
        inputs = pickle.load(fh)
    packed, target = inputs["packed"], inputs["target"]
    out = {"dmixed": os.path.dirname(dmixed.__file__), "buckets": []}
    for pairs in inputs["buckets"]:
        block_args = {"packed": packed, "standardization": target, "held": True}
        conv = (target, packed, ())
        figures = {"root": [], "combine": [], "repack": []}
        for i in range(args.repeat + 1):
            t0 = time.thread_time()
            block = combined_block(block_args, combine_converted, *conv, *pairs)
            t1 = time.thread_time()
            combined = combine_converted(*conv, *pairs)
            t2 = time.thread_time()
            to_block(combined, **block_args)
            t3 = time.thread_time()
            if i:  # the first: warm (the kernels loaded)
                figures["root"].append(t1 - t0)
                figures["combine"].append(t2 - t1)
                figures["repack"].append(t3 - t2)
            del combined
        out["buckets"].append(
            {"groups": len(block.labels), "digest": _digest(block), "cpu": figures}
        )
    print("RESULT " + json.dumps(out))


def run_child(tree: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--inputs", args.inputs]
    cmd += ["--repeat", str(args.repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child of {tree} failed")
    return json.loads(line[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="?", help="the other checkout")
    ap.add_argument("--dir", default="/tmp/bd20", help="Parquet data (see bench_dask.py)")
    ap.add_argument("--parts", type=int, default=8, help="partitions a chain")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--inputs", default="/tmp/bench_combine_inputs.pkl")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--make", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.make:
        return make_inputs(args)
    if args.base is None:
        ap.error("BASE_TREE is required")
    if not os.path.exists(args.inputs):
        env = dict(os.environ, PYTHONPATH=ROOT)
        cmd = [sys.executable, os.path.abspath(__file__), "--make", "--inputs", args.inputs]
        cmd += ["--dir", args.dir, "--parts", str(args.parts)]
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    trees = {"base": os.path.abspath(args.base), "this": ROOT}
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    for rnd in range(args.rounds):
        order = ["base", "this"] if rnd % 2 == 0 else ["this", "base"]
        for name in order:
            res = run_child(trees[name], args)
            runs[name].append(res)
            cells = []
            for b, bucket in enumerate(res["buckets"]):
                cpu = {k: 1e3 * np.median(v) for k, v in bucket["cpu"].items()}
                cells.append(
                    f"bucket {b} ({bucket['groups']} groups): root {cpu['root']:.1f} ms "
                    f"(combine {cpu['combine']:.1f} + to_block {cpu['repack']:.1f}) "
                    f"digest {bucket['digest']}"
                )
            load = os.getloadavg()[0]
            print(f"round {rnd} {name:4s} load {load:5.2f}: " + "; ".join(cells), flush=True)
    print("per version, root task's thread CPU per bucket, ms: best / median of all runs")
    for name, results in runs.items():
        for b in range(len(results[0]["buckets"])):
            root = np.concatenate([r["buckets"][b]["cpu"]["root"] for r in results]) * 1e3
            print(f"  {name:4s} bucket {b}: {root.min():.1f} / {np.median(root):.1f}")
    same = all(
        rb["buckets"][b]["digest"] == rt["buckets"][b]["digest"]
        for rb, rt in zip(runs["base"], runs["this"], strict=True)
        for b in range(len(rb["buckets"]))
    )
    print(f"blocks the same bytes in both versions: {same}")


if __name__ == "__main__":
    main()
