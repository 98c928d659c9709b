"""Synthetic mixed-model data shared by the tests (seeded, unbalanced groups)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase

#: settings of the property tests whose examples are fits: no shrinking (each example
#: costs fits); which examples run (the same on every run, or new ones) is the profile's
#: (tests/conftest.py)
QUICK = dict(
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def make_data(
    n_groups: int = 60,
    min_size: int = 1,
    max_size: int = 40,
    slope_sd: float = 0.5,
    intercept_sd: float = 1.0,
    vc_sd: float = 0.0,
    n_sub: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Random intercept (+ slope on x1, + nested subgroup component) data.

    Columns: y, x1, x2, g (group), sub (subgroup label within the group), w (weights).
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_size, max_size + 1, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    n = g.size
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    sub = rng.integers(0, n_sub, n)
    b0 = intercept_sd * rng.normal(size=n_groups)
    b1 = slope_sd * rng.normal(size=n_groups)
    c = vc_sd * rng.normal(size=(n_groups, n_sub))
    y = 1.0 + 0.5 * x1 - 0.25 * x2 + b0[g] + b1[g] * x1 + c[g, sub] + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x1": x1,
            "x2": x2,
            "g": g,
            "sub": np.array(["a", "b", "c", "d", "e", "f"])[sub],
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


def design(df: pd.DataFrame, slope: bool = True):
    """(endog, exog, exog_re, groups) numpy arrays for ``y ~ 1 + x1 + x2``."""
    exog = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    exog_re = exog[:, :2] if slope else exog[:, :1]
    return df["y"].to_numpy(), exog, exog_re, df["g"].to_numpy()


def vc_dict(df: pd.DataFrame) -> dict:
    """statsmodels' dict form of a subgroup-indicator variance component."""
    out = {}
    for key, sub in df.groupby("g", sort=True):
        levels = sorted(sub["sub"].unique())
        out[key] = pd.DataFrame({lv: (sub["sub"] == lv).astype(float).to_numpy() for lv in levels})
    return {"sub": out}


def dyestuff2_arrays(seed: int):
    """6 batches of 5 with between-batch spread below chance: the REML optimum of the
    batch variance is 0, as for lme4's Dyestuff2."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(6), 5)
    y = 5 + 3 * rng.normal(size=30)
    y = y - (np.bincount(g, y) / 5)[g] + y.mean() + 0.05 * rng.normal(size=6)[g]
    return y, g


class CountingReader:
    """Partition reader for ``dd.from_map`` that appends a line to a file per read."""

    def __init__(self, df: pd.DataFrame, nparts: int, path: str) -> None:
        self.parts = np.array_split(np.arange(len(df)), nparts)
        self.df = df
        self.path = path

    def __call__(self, i: int) -> pd.DataFrame:
        with open(self.path, "a") as fh:
            fh.write(f"{i}\n")
        return self.df.iloc[self.parts[i]].reset_index(drop=True)

    def reads(self) -> int:
        if not os.path.exists(self.path):
            return 0
        with open(self.path) as fh:
            return sum(1 for _ in fh)

    def reset(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


def make_nested_ids(groups, ids=range(3), seed: int = 0, size: int = 5) -> pd.DataFrame:
    """Rows of ``groups`` (``g``), each with its own nested ids ``"gg-s"`` (``id``, ``size``
    rows each; the levels of a nested variance component ``0 + C(id)``): ``y = 1 + 2x +``
    a group effect ``+`` an id effect (SD 0.7) ``+`` noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in groups:
        effect = rng.normal()
        for s in ids:
            x = rng.normal(size=size)
            y = 1 + 2 * x + effect + 0.7 * rng.normal() + rng.normal(size=size)
            parts.append(pd.DataFrame({"g": g, "id": f"{g:02d}-{s}", "x": x, "y": y}))
    return pd.concat(parts, ignore_index=True)


def weighted_vc_fit(factor: float):
    """A REML fit with a random intercept, a nested component and the prior weights of
    :func:`make_data` times ``factor`` (30 groups; dmixed's warnings silenced): the fit
    whose profiles must not depend on the weights' unit."""
    import warnings

    import dmixed

    df = make_data(n_groups=30, min_size=2, max_size=10, vc_sd=0.6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        return dmixed.mixedlm(
            "y ~ x1 + x2", df.assign(w=factor * df["w"]), groups="g", re_formula="1",
            vc_formula={"sub": "0 + C(sub)"}, weights="w",
        ).fit()  # fmt: skip
