"""Reads of a CSV input by ``dmixed fit``'s steps: the label pass, the spec's scan and
the data pass, counted as pandas parses and bytes parsed, with their wall times.

    python benchmarks/bench_csv_reads.py [--rows 1000000] [--groups 10000] [--repeats 2]

A CSV file of ``--rows`` rows (``g`` integer group keys below ``--groups``, ``c`` an
integer factor of 20 levels used inside ``C()``, three floats) is written to a temporary
directory; then, as the command line runs them (Dask's threaded scheduler, in this
process): the label pass (:func:`dmixed.input_data.label_types`, through
:func:`~dmixed.input_data.read_data`), the model's construction (the spec's scan of the
levels and the response's range), and the fit (its data pass).  Every call of pandas'
CSV parser is counted with the bytes it was given (Dask hands it blocks of bytes), so
the figures are reads, not times of a shared machine; wall times (best of
``--repeats``) and the load (``uptime``) are printed beside them.

With ``--fold``, the parses a fold of the label pass into the scan would trade instead,
as pandas parses of the whole file (what every Dask partition does with its block),
the alternatives interleaved in each repeat: the label pass (label columns as Python
strings), the scan and the data pass as they are (each parses every column, the label
columns as int64), the scan folded (the label columns as text, their distinct values
matched) and the data pass folded (the label columns held as text, cast to int64 by
Arrow).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd


def _write_csv(path: str, rows: int, groups: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, rows)
    df = pd.DataFrame(
        {
            "g": g,
            "c": rng.integers(0, 20, rows),
            "x1": rng.normal(size=rows),
            "x2": rng.normal(size=rows),
            "y": rng.normal(size=rows) + rng.normal(size=groups)[g],
        }
    )
    df.to_csv(path, index=False)


class _Parses:
    """Counts pandas' CSV parses and the bytes given to them (``pandas.io.parsers.
    readers._read``, looked up at every ``read_csv`` call)."""

    def __init__(self) -> None:
        import pandas.io.parsers.readers as readers

        self.readers, self.original = readers, readers._read
        self.calls, self.nbytes = 0, 0

    def __enter__(self) -> _Parses:
        def counted(source, kwds):
            self.calls += 1
            if isinstance(source, io.BytesIO):
                self.nbytes += source.getbuffer().nbytes
            elif isinstance(source, (str, os.PathLike)) and os.path.exists(source):
                self.nbytes += os.path.getsize(source)
            return self.original(source, kwds)

        self.readers._read = counted
        return self

    def __exit__(self, *exc) -> None:
        self.readers._read = self.original


_LABELS = ("g", "c")
#: a plain integer, as :mod:`dmixed.input_data` matches the label pass's values
_PLAIN = r"^-?(?:0|[1-9][0-9]{0,17})$"


def _label_pass(path: str) -> None:
    labels = {"dtype": object, "keep_default_na": False, "na_values": dict.fromkeys(_LABELS, [""])}
    df = pd.read_csv(path, usecols=list(_LABELS), **labels)
    for c in _LABELS:
        pd.Series(df[c].unique(), dtype=object).str.fullmatch(_PLAIN[1:-1]).all()


def _scan_folded(path: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    df = pd.read_csv(path, dtype=dict.fromkeys(_LABELS, str))
    for c in _LABELS:  # the distinct values the scan finds anyway, matched
        pc.all(pc.match_substring_regex(pc.unique(pa.array(df[c].array)), _PLAIN))


def _data_folded(path: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    df = pd.read_csv(path, dtype=dict.fromkeys(_LABELS, str))
    for c in _LABELS:
        pc.cast(pa.array(df[c].array), pa.int64())


def _fold_costs(path: str, repeats: int) -> None:
    """Best wall time of each parse a fold trades, interleaved in every repeat."""
    runs = {
        "label pass (now)": lambda: _label_pass(path),
        "scan or data pass (now)": lambda: pd.read_csv(path, dtype=dict.fromkeys(_LABELS, "int64")),
        "scan (folded)": lambda: _scan_folded(path),
        "data pass (folded)": lambda: _data_folded(path),
    }
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"{'pandas parse of the file':<26} {'best s':>8}")
    for name, sec in best.items():
        print(f"{name:<26} {sec:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fold", action="store_true", help="the parses a fold would trade")
    args = parser.parse_args()

    import dask

    import dmixed
    from dmixed.input_data import read_data
    from dmixed.job import Job

    dask.config.set(scheduler="threads")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        _write_csv(path, args.rows, args.groups)
        size = os.path.getsize(path)
        job = Job.model_validate(
            {"data": path, "formula": "y ~ x1 + x2 + C(c)", "groups": "g", "output": tmp}
        )
        print(f"file: {args.rows} rows, {size / 1e6:.1f} MB; load: {_uptime()}")
        if args.fold:
            _fold_costs(path, args.repeats)
            print(f"load after: {_uptime()}")
            return
        best: dict[str, float] = {}
        counts: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeats):
            steps = {}
            with _Parses() as p:
                t = time.perf_counter()
                ddf = read_data(job)[0]
                steps["label pass (read_data)"] = (time.perf_counter() - t, p.calls, p.nbytes)
            with _Parses() as p:
                t = time.perf_counter()
                model = dmixed.mixedlm(job.formula, ddf, groups="g")
                steps["spec (scan)"] = (time.perf_counter() - t, p.calls, p.nbytes)
            with _Parses() as p:
                t = time.perf_counter()
                model.fit()
                steps["fit (data pass)"] = (time.perf_counter() - t, p.calls, p.nbytes)
            for name, (sec, calls, nbytes) in steps.items():
                best[name] = min(best.get(name, np.inf), sec)
                counts[name] = (calls, nbytes)
        print(f"{'step':<24} {'parses':>7} {'bytes parsed / file':>20} {'best s':>8}")
        for name, sec in best.items():
            calls, nbytes = counts[name]
            print(f"{name:<24} {calls:>7} {nbytes / size:>20.2f} {sec:>8.2f}")
        print(f"load after: {_uptime()}")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
