"""The estimates of the last fit on saved statistics, kept beside them
(``last_fit.json``): the warm start of a later ``dmixed update``."""

from __future__ import annotations

import json
import math
import os

from ..errors import CheckpointError, shorten
from ..files import before_commit

#: The file of the last fit's estimates in a statistics directory
LAST_FIT_FILE = "last_fit.json"


def remember_fit(stats_dir: str, packed_params: list, method: str, llf: float) -> None:
    """Record a fit's packed parameters, method and llf next to the statistics
    (written to a temporary file, then moved into place)."""
    path = os.path.join(stats_dir, LAST_FIT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"packed_params": list(packed_params), "method": method, "llf": llf}, fh)
    try:
        before_commit()
        os.replace(tmp, path)
    finally:  # (after the replace there is no tmp: nothing to remove)
        if os.path.exists(tmp):
            os.remove(tmp)


def last_fit(stats_dir: str) -> list | None:
    """The packed parameters of the last fit on these statistics, if recorded.

    Raises
    ------
    CheckpointError
        ``last_fit.json`` cannot be read, or its parameters are not finite numbers of a
        sensible size.
    """
    path = os.path.join(stats_dir, LAST_FIT_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            start = json.load(fh).get("packed_params")
        values = [float(v) for v in start]
        if not all(math.isfinite(v) and abs(v) < 1e150 for v in values):
            raise ValueError("packed_params must be finite numbers of a sensible size")
    except RecursionError:  # arrays nested deeper than Python's parser goes
        raise CheckpointError(
            f"{path} is damaged (it holds arrays or objects nested deeper than dmixed "
            "ever writes them); remove it (the next update then starts from moment "
            "estimates)"
        ) from None
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(
            f"{path} is damaged ({type(exc).__name__}: {shorten(str(exc))}); remove it "
            "(the next update then starts from moment estimates)"
        ) from exc
    return values
