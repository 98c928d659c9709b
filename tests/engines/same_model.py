"""Fit one formula in process and on Dask and compare everything a user sees.

Shared by the "same data, same model, on every engine" tests (issue 14): the
parametrized data-layer cases (``test_same_model.py``) and the hypothesis property
test (``test_same_model_property.py``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field

import dask
import numpy as np
import pandas as pd
import pytest

import dmixed

#: relative agreement of the estimates of the two engines
RTOL = 1e-10


@dataclass
class Outcome:
    """What one engine made of the data: results, or the message of its refusal."""

    result: object = None
    error: str | None = None
    error_type: type | None = None
    warnings: list = field(default_factory=list)

    @property
    def spec(self):
        return self.result.model.spec


def fit(data, formula: str, warns=(), **kw) -> Outcome:
    """Build and fit ``formula`` on ``data`` (pandas or Dask; Dask on the sync scheduler).

    ``warns`` are the dmixed warning classes the fit must emit (each asserted with
    ``pytest.warns``); any other dmixed warning is an error (pyproject's filterwarnings).
    A :class:`dmixed.DmixedError` is caught and returned as the outcome.
    """
    out = Outcome()
    with contextlib.ExitStack() as stack:
        records = [stack.enter_context(pytest.warns(w)) for w in warns]
        stack.enter_context(dask.config.set(scheduler="sync"))
        try:
            out.result = dmixed.mixedlm(formula, data, **kw).fit()
        except dmixed.DmixedError as exc:
            out.error, out.error_type = str(exc), type(exc)
    out.warnings = [str(r.message) for rec in records for r in rec]
    return out


def fit_recording(data, formula: str, **kw) -> Outcome:
    """As :func:`fit`, but dmixed's warnings are recorded (``"Class: message"``), not
    asserted: for comparing the two engines' warnings when which ones to expect is not
    known in advance."""
    out = Outcome()
    with warnings.catch_warnings(record=True) as caught, dask.config.set(scheduler="sync"):
        warnings.simplefilter("always", dmixed.DmixedWarning)
        try:
            out.result = dmixed.mixedlm(formula, data, **kw).fit()
        except dmixed.DmixedError as exc:
            out.error, out.error_type = str(exc), type(exc)
    out.warnings = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, dmixed.DmixedWarning)
    ]
    return out


def fit_both(frame, ddf, formula: str, warns=(), **kw) -> tuple[Outcome, Outcome]:
    """The in-process fit of ``frame`` and the Dask fit of ``ddf``."""
    return fit(frame, formula, warns, **kw), fit(ddf, formula, warns, **kw)


def levels_of(out: Outcome) -> dict:
    """Every factor column's levels, as the values and their Python types."""
    return {col: [(type(v).__name__, v) for v in vals] for col, vals in out.spec.levels.items()}


def labels_of(out: Outcome) -> list:
    return [(type(v).__name__, v) for v in np.asarray(out.result.group_labels).tolist()]


def assert_same_refusal(local: Outcome, remote: Outcome) -> None:
    """Both engines refused with the same dmixed error and the same message (on Dask
    it may be led by the Parquet file whose declared type it reads)."""
    assert local.error is not None, "the in-process fit did not refuse"
    assert remote.error is not None, "the Dask fit did not refuse"
    assert local.error_type is remote.error_type, (local.error_type, remote.error_type)
    same = local.error == remote.error or (
        remote.error.endswith(f".parquet: {local.error}") and os.path.isabs(remote.error)
    )
    assert same, f"in process: {local.error}\non Dask: {remote.error}"


def assert_same_model(local: Outcome, remote: Outcome, rtol: float = RTOL) -> None:
    """Same fixed-effect names, factor levels (so reference levels), group labels and
    estimates (``rtol`` relative) from both engines."""
    assert local.error is None, f"in process: {local.error}"
    assert remote.error is None, f"on Dask: {remote.error}"
    a, b = local.result, remote.result
    for what, get in (
        ("fixed-effect names", lambda out: list(out.result.fe_params.index)),
        ("factor levels", levels_of),
        ("group labels", labels_of),
        ("nobs", lambda out: out.result.nobs),
    ):
        mine, theirs = get(local), get(remote)
        assert mine == theirs, f"{what}: in process {mine}, on Dask {theirs}"
    atol = rtol * max(1.0, float(np.max(np.abs(a.fe_params))))
    np.testing.assert_allclose(b.fe_params, a.fe_params, rtol=rtol, atol=atol)
    var_tol = rtol * float(a.scale)
    np.testing.assert_allclose(b.cov_re, a.cov_re, rtol=rtol, atol=var_tol)
    np.testing.assert_allclose(b.vcomp, a.vcomp, rtol=rtol, atol=var_tol)
    assert b.scale == pytest.approx(a.scale, rel=rtol)
    assert b.llf == pytest.approx(a.llf, rel=rtol)


def base_frame(n: int = 240, n_groups: int = 16, seed: int = 0) -> pd.DataFrame:
    """A random intercept and slope model's data: y, x, z (float64), g and site (object
    str; groups and a three-level factor).  Unbalanced groups, no estimate on a boundary."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    x = rng.normal(size=n)
    b0 = 1.5 * rng.normal(size=n_groups)
    b1 = 0.7 * rng.normal(size=n_groups)
    site = rng.integers(0, 3, n)
    y = 1.0 + 0.5 * x + 0.3 * site + b0[g] + b1[g] * x + rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "z": rng.uniform(-1.0, 1.0, n),
            "g": np.array([f"g{v:02d}" for v in g], dtype=object),
            "site": np.array(["north", "south", "east"], dtype=object)[site],
        }
    )
