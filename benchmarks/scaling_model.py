"""Fit ÷ scan at 1–16 workers, predicted from the CPU time of each part on 2 cores.

Run:  python benchmarks/scaling_model.py SCALING_JSON [--rows 100_000_000]
                                        [--workers 1,2,4,8,16] [--scan-ns 36]

Reads the JSON of ``bench_scaling.py`` (a series at 1 and 2 workers for each number of
groups; it records the CPU seconds of the driver and of the workers in the data pass
and in the optimization, and one step's round trip) and predicts the wall time of a fit
of ``--rows`` rows on ``W`` single-threaded workers of an otherwise idle machine as

    T(W) = D + C_data · R / W + X(G) + O / W + n · L(W)

- ``D``: the driver's CPU seconds (graph, scheduler, the assembly of the blocks, the
  optimizer's own work): serial;
- ``C_data``: the workers' CPU seconds of the data pass per row (read, design, per-group
  sums, the exchange and the combine), divided among the workers;
- ``X(G)``: what does not shrink with ``W``: each chain takes its partial of all the
  groups it saw from its table (``--extract-ns`` a group) and each bucket's owner adds
  one row per group of its bucket from every chain (``W × G / W`` rows, ``--combine-ns``
  a group); with every group's rows in every file, both are ``∝ G`` whatever ``W``
  (``C``, measured at 1–2 workers, holds them once too: a small overcount there);
- ``O``: the workers' CPU seconds of the optimization (per-group kernels), divided
  among the workers;
- ``n · L(W)``: ``n`` round trips (``--round-trips``, :data:`ROUND_TRIPS`) of latency
  ``L(W) = L(2) + (W − 2) · l``, ``l`` the growth of the measured latency from 1 to 2
  workers (the scheduler's time per task);
- the scan: ``--scan-ns`` CPU ns a row (pyarrow, warm page cache), divided among ``W``
  threads.

``D``, ``C_data`` and ``O`` come from the series at ``--cpu-from`` workers (2 by
default: two workers sharing the memory); ``C_data`` is per row, ``D`` is taken as it
was (it holds no per-row work).  The prediction is optimistic: no idle worker, memory
bandwidth per worker as on 2 cores.  Prints, per number of groups and ``W``, the parts,
the fit, the scan, fit ÷ scan, the efficiency against 1 worker
(``T(1) / (W · T(W))``), the largest part, and the bytes sent to the bucket nodes by the
exchange each chain would pick (``min(rows · 40, W · G · 120)``: never more than the
data's compact rows, so not ``∝ W × G``; each chain logs its pick and the two sizes it
compared, the engine's ``exchange:`` line).

Constants measured on 2 cores (benchmarks/RESULTS.md, twelfth session): a chain's
partial ≈ 200 ns a group of CPU (its expansion into packed rows, the buckets' hash; 47–234
ms a million groups, one process), the owner's combine by position ≈ 25 ns a group and
partial (21 ms a bucket of 459k groups from two partials, eleventh session).
"""

from __future__ import annotations

import argparse
import json

#: Bytes a row sends when routed, and a group when in a partial (``y ~ x1 + x2 + x3``
#: with a random intercept and slope on x1: routing.py).
ROW_BYTES, GROUP_BYTES = 40, 120
#: Round trips of one fit whose statistics stay on the workers (``--round-trips``): the
#: blocks' summaries (the evaluators and their moments made meanwhile), the moments'
#: gather, and the optimizer's two (the starts' steps with the Hessian there; a step,
#: the chained secant step and the last Hessian with the random effects).  Ten before
#: the steps were chained on the workers.
ROUND_TRIPS = 4


def constants(entries: dict[int, dict], rows: int, groups: int, args) -> dict:
    """The model's constants for one number of groups (entries by number of workers)."""
    e1, e2 = entries[1], entries[2]
    cpu2 = entries[args.cpu_from]["cpu_seconds"]
    distributed = e2["step"]["engine"] == "DaskEngine"
    lat1, lat2 = e1["step"]["latency_seconds"], e2["step"]["latency_seconds"]
    return {
        "driver": cpu2["data_pass"]["driver"] + cpu2["optimization"]["driver"],
        "data_per_row": cpu2["data_pass"]["workers"] / rows,
        "fixed": groups * (args.extract_ns + args.combine_ns) * 1e-9,
        "optimization": cpu2["optimization"]["workers"],
        "latency": (lat2, max(0.0, lat2 - lat1)) if distributed else (0.0, 0.0),
        "engine": e2["step"]["engine"],
    }


def predict(
    c: dict, rows: int, workers: int, scan_ns: float, round_trips: int = ROUND_TRIPS
) -> dict:
    """Parts (seconds) of a fit of ``rows`` rows on ``workers`` workers, and the scan."""
    latency = c["latency"][0] + (workers - 2) * c["latency"][1]
    parts = {
        "driver": c["driver"],
        "data pass": c["data_per_row"] * rows / workers,
        "partials by group": c["fixed"],
        "optimization": c["optimization"] / workers,
        "round trips": round_trips * max(0.0, latency),
    }
    return {"parts": parts, "fit": sum(parts.values()), "scan": rows * scan_ns * 1e-9 / workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scaling_json")
    ap.add_argument("--rows", type=int, default=100_000_000, help="rows to predict for")
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--scan-ns", type=float, default=36.0, help="scan CPU ns a row")
    ap.add_argument("--extract-ns", type=float, default=200.0, help="a chain's partial, a group")
    ap.add_argument("--combine-ns", type=float, default=25.0, help="an owner's combine, a group")
    ap.add_argument("--round-trips", type=int, default=ROUND_TRIPS, help="round trips a fit")
    ap.add_argument(
        "--cpu-from",
        type=int,
        default=2,
        choices=(1, 2),
        help="the series (workers) whose CPU seconds give D, C_data and O",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with open(args.scaling_json) as fh:
        report = json.load(fh)
    measured_rows = int(report["argv"][report["argv"].index("--rows") + 1])
    series = [e for e in report["series"] if e["exchange"] == "auto" and "cpu_seconds" in e]
    table = []
    for groups in sorted({e["groups"] for e in series}):
        entries = {e["workers"]: e for e in series if e["groups"] == groups}
        if not {1, 2} <= set(entries):
            continue
        c = constants(entries, measured_rows, groups, args)
        print(
            f"{groups:,} groups (measured at {measured_rows:,} rows; engine {c['engine']}): "
            f"driver {c['driver']:.2f} s, data pass {1e9 * c['data_per_row']:.0f} ns a row "
            f"(workers' CPU), partials by group {c['fixed']:.2f} s, optimization "
            f"{c['optimization']:.2f} worker-s, latency {1e3 * c['latency'][0]:.1f} ms "
            f"+ {1e3 * c['latency'][1]:.1f} ms a worker"
        )
        base = predict(c, args.rows, 1, args.scan_ns, args.round_trips)["fit"]
        for w in (int(x) for x in args.workers.split(",")):
            pr = predict(c, args.rows, w, args.scan_ns, args.round_trips)
            ratio, eff = pr["fit"] / pr["scan"], base / (w * pr["fit"])
            largest = max(pr["parts"], key=pr["parts"].get)
            sent = min(args.rows * ROW_BYTES, w * groups * GROUP_BYTES)
            print(
                f"  W={w:2d}: fit {pr['fit']:6.2f} s  scan {pr['scan']:5.2f} s  fit/scan "
                f"{ratio:5.1f}  efficiency {eff:4.2f}  largest: {largest}  ("
                + ", ".join(f"{k} {v:.2f}" for k, v in pr["parts"].items())
                + f"); exchange {sent / 1e6:,.0f} MB"
            )
            table.append(
                {"groups": groups, "workers": w, "fit_over_scan": ratio, "efficiency": eff, **pr}
            )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"rows": args.rows, "predictions": table}, fh, indent=1)


if __name__ == "__main__":
    main()
