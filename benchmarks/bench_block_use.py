"""Thread CPU of a bd20-sized StatsBlock's ``use_*`` calls, two checkouts alternated.

Run:  python benchmarks/bench_block_use.py --make FILE
      python benchmarks/bench_block_use.py --alternate FILE BASE_DIR BRANCH_DIR [--rounds 5]

``--make`` writes the inputs once (1M groups of 20 rows, ``y ~ 1 + t + x2 + x3``, random
intercept and slope on ``t``, ~5% of the groups' slope nearly constant at an offset of
1e6: lossy): the per-group sums, the lossy groups' centred sums and their sums about
shifts.  ``--alternate`` runs ``--time`` in a fresh process per checkout (its directory
first on ``PYTHONPATH``), base then branch, ``--rounds`` times, and prints each call's
median over the rounds of each run's median of ``--reps`` calls (``time.thread_time``,
ms): a fresh block (62 chunks) per timed ``use_*`` call, the same block for the reads
and for the compiled BLUPs (``r = 2``, each chunk's rows placed by the block's spans).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pickle
import statistics
import subprocess
import sys
import time

import numpy as np

SHARED = (0, 1, -1, -1, -1)  # [X y]'s columns that are Z̃'s: the intercept and t


def make(path: str) -> None:
    from dmixed import kernels

    rng = np.random.default_rng(0)
    n_groups, per = 1_000_000, 20
    codes = np.repeat(np.arange(n_groups), per)
    n = codes.size
    near = rng.random(n_groups) < 0.05
    spread = np.where(near[codes], 1e-3, 1.0) * rng.normal(size=n)
    t = np.where(near[codes], 1e6, 0.0) + 10.0 * rng.normal(size=n_groups)[codes] + spread
    x = np.column_stack([np.ones(n), t, rng.normal(size=n), rng.normal(size=n)])
    z = x[:, :2].copy()
    y = 1.0 + 1e-4 * t + rng.normal(size=n_groups)[codes] + rng.normal(size=n)
    sums = kernels.accumulate_statistics(codes, n_groups, y, x, z)
    lossy = kernels.lossy_groups(np.moveaxis(sums["zz"], 0, -1), sums["nobs"])
    sel = np.flatnonzero(lossy)
    shifted = kernels.shifted_statistics(codes, n_groups, y, x, z)
    inputs = dict(
        zz=sums["zz"],
        zxy=sums["zxy"],
        nobs=sums["nobs"],
        centred=kernels.centred_statistics(codes, n_groups, y, x, z, lossy),
        sel=sel,
        shifted=tuple(np.ascontiguousarray(a[..., sel]) for a in shifted),
    )
    with open(path, "wb") as f:
        pickle.dump(inputs, f, protocol=5)
    print(f"{path}: {n_groups} groups, {sel.size} lossy")


def time_calls(path: str, reps: int) -> dict:
    import dmixed
    from dmixed import kernels
    from dmixed.kernels import compiled

    with open(path, "rb") as f:
        d = pickle.load(f)
    chunks = list(kernels.StatsBlock(d["zz"], d["zxy"]).chunks())
    nobs, sel, shifted, centred = d["nobs"], d["sel"], d["shifted"], d["centred"]

    def fresh():
        return kernels.StatsBlock.from_chunks(chunks)

    shifted_block = fresh().use_shifted(sel, shifted, 0, SHARED)
    pos, sums, _ = shifted_block.centred_sums()
    both = fresh().use_rank_one(nobs).use_shifted(sel, shifted, 0, SHARED)
    # the compiled BLUPs, placed by the block's chunk edges (a checkout before
    # spans-s55 takes the number of groups there)
    read = fresh()
    takes_edges = "edges" in inspect.signature(compiled.random_effects).parameters
    where = read.spans.edges if takes_edges else read.n_groups
    lam, w = np.array([[0.9, 0.0], [0.2, 0.4]]), np.array([-0.5, -1.0, -0.3, 0.2, 1.0])
    basis = np.zeros((3, 2, 2))
    basis[0, 0, 0] = basis[2, 1, 1] = basis[1, 0, 1] = basis[1, 1, 0] = 1.0
    compiled.random_effects(read.chunks(), lam, w, where)  # compiled or loaded: not timed
    compiled.hessian_random_effects(read.chunks(), lam, basis, w, where, upper=True)
    cases = {
        "use_rank_one": lambda b: b.use_rank_one(nobs),
        "use_centred": lambda b: b.use_centred(centred),
        "use_shifted": lambda b: b.use_shifted(sel, shifted, 0, SHARED),
        "use_centred_at": lambda b: b.use_centred_at(pos, sums),
        "centred_positions": lambda b: shifted_block.centred_positions(),
        "inexact_groups": lambda b: both.inexact_groups(nobs),
        "inexact_groups(rank_one)": lambda b: shifted_block.inexact_groups(nobs, True),
        "compiled.random_effects": lambda b: compiled.random_effects(read.chunks(), lam, w, where),
        "compiled.hessian_random_effects": lambda b: compiled.hessian_random_effects(
            read.chunks(), lam, basis, w, where, upper=True
        ),
    }
    out = {}
    for name, call in cases.items():
        times = []
        for _ in range(reps):
            block = fresh()
            start = time.thread_time()
            call(block)
            times.append(time.thread_time() - start)
        out[name] = 1e3 * statistics.median(times)
    return dict(tree=os.path.dirname(os.path.dirname(dmixed.__file__)), chunks=len(chunks), ms=out)


def alternate(path: str, trees: list[str], rounds: int, reps: int) -> None:
    runs: dict[str, list[dict]] = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            env = dict(os.environ, PYTHONPATH=tree)
            cmd = [sys.executable, __file__, "--time", path, "--reps", str(reps)]
            got = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            runs[tree].append(json.loads(got.stdout.splitlines()[-1]))
    base, branch = trees
    print(f"{'call':26s} {'base ms':>9s} {'branch ms':>9s} {'ratio':>6s}")
    for name in runs[base][0]["ms"]:
        b = statistics.median(r["ms"][name] for r in runs[base])
        w = statistics.median(r["ms"][name] for r in runs[branch])
        print(f"{name:26s} {b:9.3f} {w:9.3f} {w / b:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make", metavar="FILE")
    parser.add_argument("--time", metavar="FILE")
    parser.add_argument("--alternate", nargs=3, metavar=("FILE", "BASE_DIR", "BRANCH_DIR"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    if args.make:
        make(args.make)
    elif args.time:
        print(json.dumps(time_calls(args.time, args.reps)))
    elif args.alternate:
        path, base, branch = args.alternate
        alternate(path, [base, branch], args.rounds, args.reps)
    else:
        parser.error("one of --make, --time, --alternate")


if __name__ == "__main__":
    main()
