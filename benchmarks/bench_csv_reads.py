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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
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
