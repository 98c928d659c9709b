"""Shared by the benchmark scripts: writing their figures as JSON; the environment of a
measured subprocess; an A/B script's arguments, its out-of-core fit and its child run in
one checkout; callgrind's count of a snippet's ``functools.reduce``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def write_report(path: str, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` atomically (a temporary file in the same
    directory, then renamed), so an interrupted run leaves the previous file or none."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(report, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {path}")


def tree_env(tree: str, hash_seed: str | None = None) -> dict:
    """The environment of a subprocess measuring the source ``tree``: one BLAS/OpenMP
    thread, ``tree`` first on the import path, and ``PYTHONHASHSEED`` when given (the
    same dict and set orders in every run: instruction counts that repeat)."""
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONPATH"] = os.path.abspath(tree)
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return env


def run_child(script: str, tree: str, argv: list[str]) -> dict:
    """``script --child argv`` run with ``PYTHONPATH`` at ``tree`` (then the benchmarks
    folder) and ``tree`` as its working directory: the JSON of its ``RESULT`` line."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, here]))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(script), "--child", *argv],
        env=env,
        capture_output=True,
        text=True,
        cwd=tree,
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def callgrind_instructions(code: str, argv: list[str], env: dict) -> int:
    """Instructions valgrind's callgrind counts inside ``functools.reduce`` calls of
    ``python -c code *argv`` (the snippet runs the measured work in one, after an
    uncounted warm-up), run with ``env``."""
    args = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        code,
        *argv,
    ]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    line = next(ln for ln in out.stderr.splitlines() if "Collected" in ln)
    return int(line.split()[-1].replace(",", ""))


def ab_parser(doc: str, fits: int) -> argparse.ArgumentParser:
    """The arguments of a script that runs the same fits in two checkouts, alternated
    (``base``: the other checkout's root; ``--child``: the run inside one checkout)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("base", nargs="?", help="the other checkout's root")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fits", type=int, default=fits)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/bd20")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap


def ooc_fit(client, data_dir: str):
    """The out-of-core fit the A/B scripts time: ``y ~ x1 + x2 + x3``, a random intercept
    and slope on x1, groups ``g``, from the Parquet files of ``data_dir`` (bench_dask's)."""
    import dask.dataframe as dd

    import dmixed

    model = dmixed.mixedlm(
        "y ~ x1 + x2 + x3", dd.read_parquet(data_dir), groups="g", re_formula="1 + x1"
    )
    return model.fit(client=client)
