"""Shared by the benchmark scripts: writing their figures as JSON."""

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
