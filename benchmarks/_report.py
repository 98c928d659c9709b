"""Shared by the benchmark scripts: writing their figures as JSON; the environment of a
measured subprocess."""

from __future__ import annotations

import json
import os
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
