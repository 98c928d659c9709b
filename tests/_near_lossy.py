"""A heavily weighted group whose random design is near lossy (below
``CENTRED_DETERMINANT``, above ``LOSSY_DETERMINANT``) among ordinary ones
(tests/fit/test_objective.py, tests/stats/test_checkpoint.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: group 0's spread of ``x1`` about 5 that puts its scaled determinant at about 6.7e-8
NEAR_SPREAD = 5 * math.sqrt(1e-7)

#: the model's keywords besides the formula ``y ~ x1``
NEAR_KW = dict(groups="g", re_formula="1 + x1", weights="w")


def near_lossy_frame(weight: float, spread: float = NEAR_SPREAD, lossy_second: bool = False):
    """31 groups of 10 rows, the random effects drawn before the noise (variances of
    about 3e4 where group 0 is weighted 1e7); group 0 weighted ``weight`` with ``x1`` =
    5 ± ``spread`` (its scaled determinant about 6.7e-8 at :data:`NEAR_SPREAD`, above
    ``LOSSY_DETERMINANT``), group 1's ``x1`` constant to 1e-6 (lossy) or spread."""
    rng = np.random.default_rng(3)
    n_groups, m = 31, 10
    g = np.repeat(np.arange(n_groups), m)
    x1 = rng.normal(size=g.size)
    x1[g == 0] = 5 + spread * rng.normal(size=m)
    x1[g == 1] = 3 + (1e-6 if lossy_second else 1.0) * rng.normal(size=m)
    w = np.ones(g.size)
    w[g == 0] = weight
    b0, b1 = rng.normal(size=n_groups), rng.normal(size=n_groups)
    y = x1 + b0[g] + 0.5 * b1[g] * x1 + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x1": x1, "y": y, "w": w})


def small_groups_frame() -> pd.DataFrame:
    """3000 ordinary groups of 1 to 3 rows (``x`` ~ N(0, 1), a random slope's design),
    group 7 of three rows with ``x`` spread by 1e-3 (a scaled determinant of about
    1e-6, below ``CENTRED_DETERMINANT`` but a small share of its block: not near lossy)."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 4, 3000)
    sizes[7] = 3
    g = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=g.size)
    x[g == 7] = -0.8 + 1e-3 * np.arange(3.0)  # a scaled determinant of 1e-6
    y = 0.5 * x + rng.normal(size=sizes.size)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y})


def offset_group_frame(offset: float, spread: float, n_groups: int = 300) -> pd.DataFrame:
    """``n_groups`` unweighted groups of 10 rows (``y ~ x1 + x2``, a random slope on
    ``x1``) whose group 3 has ``x1`` = 0.1 ± ``spread`` (a scaled determinant of about
    ``100 spread²``: near lossy by its design at 1e-4, ordinary at 1) and its ``y`` and
    ``x2`` moved by ``offset``: a group heavy by its response and a fixed-effect column,
    not by its weight (its mean part most of ``[X y]'[X y]``)."""
    rng = np.random.default_rng(7)
    m = 10
    g = np.repeat(np.arange(n_groups), m)
    x1 = rng.normal(size=g.size)
    x1[g == 3] = 0.1 + spread * rng.normal(size=m)
    b0, b1 = rng.normal(size=n_groups), rng.normal(size=n_groups)
    y = x1 + b0[g] + 0.5 * b1[g] * x1 + rng.normal(size=g.size)
    y[g == 3] += offset
    x2 = rng.normal(size=g.size)
    x2[g == 3] += offset
    return pd.DataFrame({"g": g, "x1": x1, "x2": x2, "y": y})
