"""A/B of two dmixed checkouts against mixedlm-rs in one process, interleaved.

Run:  python benchmarks/bench_ab.py BASE_DIR [--repeats 7] [--groups 200 2000 ...]

``BASE_DIR`` holds an older copy of the package renamed ``dmixed_base`` (e.g.
``git archive <commit> dmixed | tar -x -C BASE_DIR && mv BASE_DIR/dmixed
BASE_DIR/dmixed_base``; the in-process path imports its own modules relatively).  At 2k,
20k, 200k and 2M rows (groups of 10, ``y ~ x1 + x2``, random intercept and slope, REML,
standard errors read) the base and this checkout fit in turn, each right after a
mixedlm-rs fit (:func:`each_after_peer`), warm; prints
the medians and each version's ratio to mixedlm-rs measured in the same rounds, so a
change is judged against a peer that shared the machine's load with it.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys

# bench_core pins the thread pools (BLAS, mixedlm-rs's rayon) before numpy is imported
from bench_core import FORMULA, RE_FORMULA, frame, make, rs_formula, summary, timed

import dmixed


def each_after_peer(versions: dict, peer, repeats: int) -> dict:
    """Warm (one untimed call each), then ``repeats`` rounds: for each version (in a
    seeded random order) a ``peer`` fit, then the version's.  So every version's fit
    follows a peer's and every peer's follows a version's: in a round of the three in
    turn, a version right after the other (the same numpy and pandas code hot) took
    6.2 ms at 20k rows where one after mixedlm-rs took 7.6, while mixedlm-rs followed a
    dmixed fit every time (RESULTS.md, thirteenth session).  Returns ``summary``'s
    figures by name (the peer as ``"rs"``)."""
    peer()
    for f in versions.values():
        f()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in (*versions, "rs")}
    rng = random.Random(0)
    for _ in range(repeats):
        for name in rng.sample(list(versions), len(versions)):
            times["rs"].append(timed(peer))
            times[name].append(timed(versions[name]))
    return {k: summary([w for w, _ in v], [c for _, c in v]) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_dir")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--groups",
        type=int,
        nargs="+",
        default=[200, 2_000, 20_000, 200_000],
        help="sizes in groups of 10 rows (default: 2k, 20k, 200k and 2M rows)",
    )
    args = ap.parse_args()
    sys.path.insert(0, args.base_dir)
    base = importlib.import_module("dmixed_base")

    def fit(mod, df):
        res = mod.MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA).fit()
        res.bse  # noqa: B018
        return res

    print(f"base {base.__file__}\nnew  {dmixed.__file__}")
    print(
        f"{'rows':>9} {'base ms':>9} {'new ms':>9} {'rs ms':>9} {'base x':>7} {'new x':>7}", end=""
    )
    print(f" {'CPU: base x':>11} {'new x':>7}")
    for n_groups in args.groups:
        y, x, _, g = make(n_groups, seed=1)
        df = frame(y, x, g)
        assert abs(fit(base, df).llf - fit(dmixed, df).llf) <= 1e-9 * abs(fit(base, df).llf)
        reps = args.repeats if n_groups < 200_000 else max(3, args.repeats - 2)
        t = each_after_peer(
            {"base": lambda df=df: fit(base, df), "new": lambda df=df: fit(dmixed, df)},
            lambda df=df: rs_formula(df),
            reps,
        )
        med = {k: v["median"] for k, v in t.items()}
        cpu = {k: v["cpu_median"] for k, v in t.items()}
        print(
            f"{10 * n_groups:>9} {1e3 * med['base']:9.1f} {1e3 * med['new']:9.1f} "
            f"{1e3 * med['rs']:9.1f} {med['rs'] / med['base']:7.2f} {med['rs'] / med['new']:7.2f}"
            f" {cpu['rs'] / cpu['base']:11.2f} {cpu['rs'] / cpu['new']:7.2f}"
        )


if __name__ == "__main__":
    main()
