"""Fit ÷ scan at 1–16 workers, predicted from the CPU time of each part on 2 cores.

Run:  python benchmarks/scaling_model.py SCALING_JSON [SCALING_JSON ...]
                                        [--rows 100_000_000] [--workers 1,2,4,8,16]
                                        [--scan-ns 25] [--per-chain]

Reads the JSONs of ``bench_scaling.py`` (of repeated runs of one series, the one whose
median fit was fastest: :func:`least_disturbed`; each a series at 1 and 2 workers for one or
more numbers of groups, at the rows it names; it records the CPU seconds of the workers
in the data pass and in the optimization, the seconds of each fit in which no worker
computed, the driver's CPU and one step's round trip) and predicts the wall time of a
fit of ``--rows`` rows on ``W`` single-threaded workers of an otherwise idle machine as

    T(W) = a · R / W + b · G + O / W + S(W)

- ``a`` (ns a row) and ``b`` (ns a group a chain): the workers' CPU seconds of the
  data pass fitted as ``a · R + b · G · W`` over every series given (least squares:
  :func:`fit_data_pass`; two or more rows-per-group ratios are needed to tell them
  apart).  ``a`` is the read, the sweep, and whatever else a row costs; ``b`` what a
  chain pays for each group it saw (its table's rows, its end, the transfer of its
  partial, its share of the owners' merges and of the combined block).  With ``W``
  chains each worker runs one chain of ``R / W`` rows that saw nearly all ``G``
  groups, and owns ``G / W`` groups of each of ``W`` partials: ``b · G`` whatever ``W``.
  Where only one ratio is given, ``b`` is ``--extract-ns + --combine-ns`` and ``a`` the
  rest (the old model, which counted a chain's per-group work at 1–2 workers as per
  row).  ``--per-chain``: ``a_G · R + b · G · W + c · W`` instead, where two or more
  numbers of groups are each measured at two or more ``W``: a cost a row of its own
  for each ``G`` (the read of the group column costs more a row as its dictionary
  grows, as does the scan's) and ``c`` seconds a chain whatever its rows and groups
  (its worker's event loop: the tasks' messages and the housekeeping), a part of
  its own in the prediction;
- the exchange: at each ``W`` each chain's form is the engine's own rule
  (:func:`dmixed.engines.dask.routing.partial_is_cheaper`, applied after each of its
  ``--files / W`` files to the bytes of its rows so far and of the partial of the
  groups it has seen, ``G · (1 − exp(−n / G))`` for ``n`` rows drawn at random).
  A chain that keeps routing pays ``--route-ns`` a row of its rows instead of
  ``b · G`` (its rows are swept by their owners, as its own would have been);
- ``O``: the workers' CPU seconds of the optimization, divided among the workers;
- ``S(W)``: the serial part, the seconds of the fit in which **no worker computed**
  (``no_task_running``: the driver's graph, assembly and optimizer, the scheduler's
  turns, the transfers no computation overlaps), measured at ``--cpu-from`` workers,
  plus ``n · (W − cpu_from) · l`` for the scheduler's time per task (``n`` round
  trips, ``l`` = ``--task-ms``; the growth of one step's measured latency from 1 to 2
  workers, which the model used before, is printed but is the other load's noise on a
  shared 2-core host).
  ``--serial thread``: the driver's main thread CPU plus ``n`` step latencies instead
  (the gaps are wall time, which the other load on a shared host stretches).
  ``--serial calls``: ``no_task_running`` counts the optimizer's direct round trips
  whole, in which the workers compute (no task in the stream) what ``O`` counts again;
  instead the seconds with no task and no direct call plus the direct calls' seconds
  less ``O / cpu_from`` (their hops, the BLUPs' way to the driver).  Where a
  JSON predates both figures, the driver's process CPU plus ``n`` latencies (which
  hold distributed's IO-loop housekeeping, ∝ wall: RESULTS.md, drv2m-s55);
- the scan, two assumptions, both printed:

  * ``ideal``: ``--scan-ns`` CPU ns a row divided among ``W`` threads;
  * ``16-core``: the warm scan's speed-up measured on the 16-core machine
    (:data:`SCAN_16_CORES`, RESULTS.md, twenty-eighth session: it stops at ~4.1× from 4
    threads on), with the data pass's per-row part bounded below by the same scan
    (the data pass reads what the scan reads).

Prints, per number of groups and ``W``, the parts, the fit, the scan, fit ÷ scan, the
efficiency against 1 worker (``T(1) / (W · T(W))``), the largest part and the
exchange's form and bytes.  The prediction is optimistic: chains of equal length, no
idle worker, memory bandwidth per worker as on 2 cores (except the 16-core scan curve).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from dmixed.engines.dask.routing import partial_is_cheaper
from dmixed.stats.packed import PackedLayout

#: Bytes a row sends when routed: its int64 key and the four distinct columns that are
#: not all ones (``y ~ x1 + x2 + x3``, random intercept and slope on x1:
#: ``RoutedRows.columns_bytes``), and a group in a chain's partial as the rule
#: estimates it: its key and one packed row (``8 · width``, ``Router.partial_estimate``;
#: 2 random-design columns, ``[X y]`` 5 wide).  The engine's logged figures agree:
#: 250 MB for 6.25M rows and 229 MB for the 1.91M groups seen among them of 2M.
ROW_BYTES = 8 + 8 * 4
GROUP_BYTES = 8 + 8 * PackedLayout(2, 5).width
#: Round trips of one fit whose statistics stay on the workers (``--round-trips``): the
#: blocks' summaries (the evaluators and their moments made meanwhile), the moments'
#: gather, and the optimizer's two (the starts' steps with the Hessian there; a step,
#: the chained secant step and the last Hessian with the random effects).
ROUND_TRIPS = 4
#: The warm pyarrow scan of 100M rows (5 columns, 128 files) with W threads on the
#: 16-core machine, seconds, at 200k and 2M groups (RESULTS.md, twenty-eighth session).
SCAN_16_CORES = {
    1: (3.38, 3.44),
    2: (1.74, 1.55),
    4: (0.88, 0.91),
    8: (0.78, 0.87),
    16: (0.78, 0.86),
}


def scan_speedup(workers: int) -> float:
    """The 16-core machine's warm-scan speed-up at ``workers`` threads against one (the
    mean of its two series; linear in ``log2 W`` between the measured counts, flat
    beyond 16)."""
    counts = sorted(SCAN_16_CORES)
    speed = [np.mean(SCAN_16_CORES[1]) / np.mean(SCAN_16_CORES[w]) for w in counts]
    return float(np.interp(math.log2(workers), [math.log2(w) for w in counts], speed))


def groups_seen(rows: float, groups: int) -> float:
    """Expected distinct groups among ``rows`` rows whose groups are drawn uniformly
    from ``groups`` (the bench's data)."""
    return groups * -math.expm1(-rows / groups)


def chain_form(rows: int, groups: int, workers: int, files: int) -> tuple[str, float]:
    """The form one of ``workers`` chains sends, by the engine's rule applied after each
    of its files (``rows / files`` rows each), and the bytes it sends as the engine
    estimates them: ``("partials", partial)`` at the first file where the partial of
    the groups seen is the cheaper, else ``("rows", rows' bytes)``."""
    per_file = rows / files
    chain_files = max(1, round(files / workers))
    for k in range(1, chain_files + 1):
        routed = k * per_file * ROW_BYTES
        partial = groups_seen(k * per_file, groups) * GROUP_BYTES
        if partial_is_cheaper(int(routed), int(partial)):
            # the partial sent is of every group the whole chain saw
            return "partials", groups_seen(chain_files * per_file, groups) * GROUP_BYTES
    return "rows", chain_files * per_file * ROW_BYTES


def fit_data_pass(points: list[tuple[float, float, float, float]], per_chain: bool = False) -> dict:
    """Least squares of the workers' data-pass CPU seconds as ``a · R + b · G · W``.

    With ``per_chain``: as ``a_G · R + b · G · W + c · W``, a cost a row of its own for
    each number of groups ``G`` (the read of the group column, whose dictionary grows
    with ``G``, and the scatter into a table that leaves the caches: RESULTS.md, chainc)
    and ``c`` seconds a chain whatever its rows and groups (its worker's event loop:
    the tasks' messages and housekeeping).  Identified by two or more numbers of groups,
    each at two or more numbers of workers.

    Parameters
    ----------
    points : list of (rows R, groups G, workers W, seconds)
        One per series (number of groups, workers) measured.
    per_chain : bool
        Fit ``a_G`` and ``c`` as well (see above); ``a`` is then the mean of ``a_G``.

    Returns
    -------
    dict
        ``a`` (seconds a row), ``b`` (seconds a group a chain), ``c`` (seconds a chain;
        0 without ``per_chain``), ``a_by_groups`` (``{G: a_G}``; every ``G`` at ``a``
        without ``per_chain``), ``rank`` and ``unknowns`` (the rank of the design and
        its number of columns: the points tell the unknowns apart where they are
        equal: two or more ratios ``R / (G · W)`` for ``a`` and ``b``), and per point
        its fitted seconds and residual.
    """
    groups = sorted({g for _, g, _, _ in points})
    if per_chain:
        rows = [[r * (g == k) for k in groups] + [g * w, w] for r, g, w, _ in points]
    else:
        rows = [[r, g * w] for r, g, w, _ in points]
    x = np.array(rows, dtype=float)
    y = np.array([s for *_, s in points], dtype=float)
    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _, rank, _ = np.linalg.lstsq(x / scale, y, rcond=None)
    coef = coef / scale
    fitted = x @ coef
    if per_chain:
        a_by = dict(zip(groups, (float(v) for v in coef[: len(groups)]), strict=True))
        b, c = float(coef[-2]), float(coef[-1])
    else:
        a_by = {g: float(coef[0]) for g in groups}
        b, c = float(coef[1]), 0.0
    return {
        "a": float(np.mean(list(a_by.values()))),
        "b": b,
        "c": c,
        "a_by_groups": a_by,
        "rank": int(rank),
        "unknowns": x.shape[1],
        "points": [
            {"rows": r, "groups": g, "workers": w, "seconds": s, "fitted": float(f)}
            for (r, g, w, s), f in zip(points, fitted, strict=True)
        ],
    }


def constants(entries: dict[int, dict], groups: int, split: dict, args) -> dict:
    """The model's constants for one number of groups (entries by number of workers)."""
    e1, e2, ef = entries[1], entries[2], entries[args.cpu_from]
    distributed = e2["step"]["engine"] == "DaskEngine"
    lat1, lat2 = e1["step"]["latency_seconds"], e2["step"]["latency_seconds"]
    cpu = ef["cpu_seconds"]
    process_serial = (
        cpu["data_pass"]["driver"]
        + cpu["optimization"]["driver"]
        + (args.round_trips * lat2 if distributed else 0.0)
    )
    measured = "no_task_running" in ef
    if measured and args.serial == "thread":
        serial = ef["driver_thread_cpu"]["median"] + (
            args.round_trips * lat2 if distributed else 0.0
        )
        serial_from = "driver main thread CPU + latencies"
    elif measured and args.serial == "calls" and "direct_call_seconds" in ef:
        # the direct round trips' workers compute inside them (no task in the stream):
        # that compute is O, divided among the workers, not serial
        compute = cpu["optimization"]["workers"] / args.cpu_from
        inside = ef["direct_call_seconds"]["median"] - compute
        serial = ef["no_task_or_direct_call"]["median"] + max(inside, 0.0)
        serial_from = "no task or direct call + direct calls less O / W"
    elif measured:
        serial, serial_from = ef["no_task_running"]["median"], "no task running"
    else:
        serial, serial_from = process_serial, "driver process CPU + latencies"
    return {
        "per_row": split.get("a_by_groups", {}).get(groups, split["a"]),
        "per_group_chain": split["b"],
        "per_chain": split.get("c", 0.0),
        "optimization": cpu["optimization"]["workers"],
        "serial": serial,
        "serial_from": serial_from,
        "process_serial": process_serial,
        "driver_thread": ef.get("driver_thread_cpu", {}).get("median"),
        # the growth of one step's latency from 1 to 2 workers on a shared 2-core host
        # is the other load's noise (RESULTS.md, drv2m-s55: 52-66 ms a worker): a
        # round trip's scheduler time per task instead (``--task-ms``)
        "per_worker": args.task_ms * 1e-3 if distributed else 0.0,
        "latency_growth": lat2 - lat1,
        "groups": groups,
        "engine": e2["step"]["engine"],
    }


def predict(
    c: dict,
    rows: int,
    workers: int,
    scan_ns: float,
    *,
    curve: bool = False,
    files: int = 128,
    route_ns: float = 10.0,
    round_trips: int = ROUND_TRIPS,
    cpu_from: int = 2,
) -> dict:
    """Parts (seconds) of a fit of ``rows`` rows on ``workers`` workers, and the scan
    (``curve``: the 16-core machine's scan speed-up, the data pass's rows at least the
    scan; else the ideal ``scan_ns · rows / workers``)."""
    scan_one = rows * scan_ns * 1e-9
    scan = scan_one / (scan_speedup(workers) if curve else workers)
    form, sent = chain_form(rows, c["groups"], workers, files)
    per_row = c["per_row"] * rows / workers
    if curve:
        per_row = max(per_row, scan)
    parts = {
        "data pass rows": per_row,
        "groups a chain": c["per_group_chain"] * c["groups"] if form == "partials" else 0.0,
        "a chain": c.get("per_chain", 0.0),
        "routed rows": route_ns * 1e-9 * rows / workers if form == "rows" else 0.0,
        "optimization": c["optimization"] / workers,
        "serial": c["serial"] + round_trips * (workers - cpu_from) * c["per_worker"],
    }
    return {
        "parts": parts,
        "fit": sum(parts.values()),
        "scan": scan,
        "exchange": form,
        "sent_bytes": sent * workers,
    }


def least_disturbed(measured: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """One entry per (rows, groups, workers): of several runs of the same series (the
    JSONs of repeated runs), the one whose median fit was fastest.  On a shared host the
    other load stretches every figure, CPU time too (caches, memory bandwidth); the
    fastest run is the least stretched, and its figures are taken together."""
    best: dict[tuple, tuple[int, dict]] = {}
    for rows, e in measured:
        key = (rows, e["groups"], e["workers"])
        if key not in best or e["fit_seconds"]["median"] < best[key][1]["fit_seconds"]["median"]:
            best[key] = (rows, e)
    return [best[k] for k in sorted(best)]


def _load(paths: list[str]) -> list[tuple[int, dict]]:
    """``(measured rows, entry)`` of every ``auto`` series entry with CPU figures."""
    out = []
    for path in paths:
        with open(path) as fh:
            report = json.load(fh)
        rows = int(report["argv"][report["argv"].index("--rows") + 1])
        out += [
            (rows, e) for e in report["series"] if e["exchange"] == "auto" and "cpu_seconds" in e
        ]
    return least_disturbed(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scaling_json", nargs="+")
    ap.add_argument("--rows", type=int, default=100_000_000, help="rows to predict for")
    ap.add_argument("--groups", default="200000,2000000", help="groups to predict for")
    ap.add_argument("--files", type=int, default=128, help="files of the predicted data")
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--scan-ns", type=float, default=25.0, help="scan CPU ns a row")
    ap.add_argument("--extract-ns", type=float, default=15.0, help="one ratio only: a chain's end")
    ap.add_argument("--combine-ns", type=float, default=42.0, help="one ratio only: the merge")
    ap.add_argument("--route-ns", type=float, default=10.0, help="a routed row's extra CPU")
    ap.add_argument("--round-trips", type=int, default=ROUND_TRIPS, help="round trips a fit")
    ap.add_argument(
        "--task-ms", type=float, default=0.5, help="the scheduler's ms a task of a round trip"
    )
    ap.add_argument(
        "--cpu-from",
        type=int,
        default=2,
        choices=(1, 2),
        help="the series (workers) whose figures give O and S",
    )
    ap.add_argument(
        "--serial",
        choices=("gaps", "thread", "calls"),
        default="gaps",
        help="S: the seconds no task ran, or the driver's main thread CPU + n latencies, "
        "or the seconds with no task and no direct call plus the direct calls' seconds "
        "less the workers' optimization CPU each (their compute, in O)",
    )
    ap.add_argument(
        "--per-chain",
        action="store_true",
        help="fit the data pass as a_G R + b G W + c W (a cost a row per number of groups "
        "and a constant a chain) where the series tell them apart",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    measured = _load(args.scaling_json)
    points = [
        (rows, e["groups"], e["workers"], e["cpu_seconds"]["data_pass"]["workers"])
        for rows, e in measured
    ]
    split = fit_data_pass(points, args.per_chain)
    if args.per_chain and split["rank"] < split["unknowns"]:
        print(
            f"--per-chain: the {len(points)} series do not tell a_G, b and c apart (rank "
            f"{split['rank']} of {split['unknowns']}): a R + b G W instead"
        )
        split = fit_data_pass(points)
    ratios = {round(r / (g * w), 3) for r, g, w, _ in points}
    if not split["c"] and (split["rank"] < 2 or len(ratios) < 2):
        b = (args.extract_ns + args.combine_ns) * 1e-9
        a = float(np.median([(s - b * g) / r for r, g, w, s in points]))
        split = {**split, "a": a, "b": b, "a_by_groups": dict.fromkeys(split["a_by_groups"], a)}
        print(f"one ratio of rows a group a chain: b = --extract-ns + --combine-ns = {1e9 * b:.0f}")
    if split["c"]:
        per_g = ", ".join(f"{1e9 * a:.1f} at {g:,}" for g, a in split["a_by_groups"].items())
        print(
            f"data pass (workers' CPU) = a_G ns a row ({per_g} groups) + "
            f"{1e9 * split['b']:.1f} ns a group a chain + {split['c']:.3f} s a chain; fit "
            f"over {len(points)} series:"
        )
    else:
        print(
            f"data pass (workers' CPU) = {1e9 * split['a']:.1f} ns a row + "
            f"{1e9 * split['b']:.1f} ns a group a chain; fit over {len(points)} series:"
        )
    for p in split["points"]:
        print(
            f"  {p['rows']:>11,} rows {p['groups']:>9,} groups W={p['workers']}: measured "
            f"{p['seconds']:.3f} s, fitted {p['fitted']:.3f} s "
            f"({100 * (p['fitted'] / p['seconds'] - 1):+.0f}%)"
        )
    table = []
    for groups in (int(g) for g in args.groups.split(",")):
        # the serial part and the optimization from the series of the nearest groups
        near = min({e["groups"] for _, e in measured}, key=lambda g: abs(math.log(g / groups)))
        entries = {e["workers"]: e for _, e in measured if e["groups"] == near}
        if not {1, 2} <= set(entries):
            continue
        c = constants(entries, near, split, args)
        c["groups"] = groups
        print(
            f"\n{groups:,} groups at {args.rows:,} rows in {args.files} files (serial part and "
            f"optimization from the {near:,}-group series, engine {c['engine']}): serial "
            f"{c['serial']:.3f} s ({c['serial_from']}; driver process CPU + latencies "
            f"{c['process_serial']:.3f} s"
            + (
                f", driver main thread CPU {c['driver_thread']:.3f} s"
                if c["driver_thread"] is not None
                else ""
            )
            + f"), optimization {c['optimization']:.2f} worker-s, "
            f"{1e3 * c['per_worker']:.1f} ms a worker a round trip (measured latency "
            f"growth 1 to 2 workers {1e3 * c['latency_growth']:+.1f} ms, not used)"
        )
        for curve in (False, True):
            kw = dict(
                curve=curve,
                files=args.files,
                route_ns=args.route_ns,
                round_trips=args.round_trips,
                cpu_from=args.cpu_from,
            )
            label = "16-core scan curve" if curve else "ideal scan"
            print(f"  {label}:")
            base = predict(c, args.rows, 1, args.scan_ns, **kw)["fit"]
            for w in (int(x) for x in args.workers.split(",")):
                pr = predict(c, args.rows, w, args.scan_ns, **kw)
                ratio, eff = pr["fit"] / pr["scan"], base / (w * pr["fit"])
                largest = max(pr["parts"], key=pr["parts"].get)
                print(
                    f"    W={w:2d}: fit {pr['fit']:6.2f} s  scan {pr['scan']:5.2f} s  fit/scan "
                    f"{ratio:4.2f}  eff {eff:4.2f}  largest: {largest}  ("
                    + ", ".join(f"{k} {v:.2f}" for k, v in pr["parts"].items() if v)
                    + f"); {pr['exchange']} {pr['sent_bytes'] / 1e6:,.0f} MB"
                )
                table.append(
                    {
                        "groups": groups,
                        "workers": w,
                        "scan_assumption": label,
                        "fit_over_scan": ratio,
                        "efficiency": eff,
                        "largest": largest,
                        **pr,
                    }
                )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"rows": args.rows, "split": split, "predictions": table}, fh, indent=1)


if __name__ == "__main__":
    main()
