"""Saving and loading fitted results as a self-describing directory.

Layout of a results directory::

    estimates.json       estimates, covariances, fit log, model names/spec, versions
    random_effects.parquet   one row per group: key, size, BLUPs and their conditional
                             covariances (padded layout, see ``columns`` in the JSON)
    summary.txt          the printed summary

The directory is written under a temporary name beside the target and renamed into
place, so an interrupted save leaves either the previous complete directory or none,
never a partial one.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import jsonable, read_versioned_json, replace_dir, sibling_path, sweep_stale
from ..stats import Layout, n_tril

FORMAT = "dmixed-results"
FORMAT_VERSION = 1


def _matrix(value) -> np.ndarray:
    return np.array(
        [[np.nan if v is None else v for v in row] for row in value], dtype=np.float64
    ).reshape(len(value), -1 if value else 0)


def _versions() -> dict:
    from importlib.metadata import version

    import dask
    import scipy

    return {
        "dmixed": version("dmixed"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "dask": dask.__version__,
    }


def _state(results) -> dict:
    names = results.names
    spec = results.spec
    spec_state = spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "model": {
            "endog_name": names.endog_name,
            "exog_names": names.exog_names,
            "exog_re_names": names.exog_re_names,
            "vc_names": names.vc_names,
            "vc_column_names": names.vc_column_names,
            "group_name": names.group_name,
            "use_sqrt": results.use_sqrt,
            "spec": spec_state,
        },
        "fit": {
            "method": results.method,
            "reml": results.reml,
            "converged": results.converged,
            "n_iter": results.n_iter,
            "n_evals": results.n_evals,
            "optimizer_methods": results.optimizer_methods,
            "boundary": results.boundary,
            "fit_seconds": results.fit_seconds,
            "data_pass_seconds": results.data_pass_seconds,
            "cov_fe": results.cov_fe,
            "history": results.fit_history,
        },
        "estimates": {
            "nobs": results.nobs,
            "n_groups": results.n_groups,
            "n_dropped": results.n_dropped,
            "k_fe": results.k_fe,
            "k_re": results.k_re,
            "k_vc": results.k_vc,
            "llf": results.llf,
            "aic": results.aic,
            "bic": results.bic,
            "scale": results.scale,
            "param_names": results.param_names,
            "params": results.params.to_numpy(),
            "packed_params": results.packed_params,
            "fe_params": results.fe_params.to_dict(),
            "bse": results.bse.to_numpy(),
            "cov_re": results.cov_re.to_numpy(),
            "cov_re_unscaled": results.cov_re_unscaled,
            "vcomp": dict(zip(names.vc_names, np.asarray(results.vcomp).tolist(), strict=True)),
            "cov_params": results._cov,
            "a_inv": results._a_inv,
            "vc_slot_widths": [int(t.shape[1]) for t in results._vc_slot_cols],
        },
    }


def _random_effects_table(results) -> pd.DataFrame:
    """Padded per-group BLUPs (``re[j]``), conditional covariances (``cov[a,b]``, a ≤ b)
    and, per variance component, the column index each slot stands for."""
    g = results.group_labels
    labels = pd.Series(np.asarray(g))
    if labels.dtype == object:
        labels = labels.astype(str) if all(isinstance(v, str) for v in g) else labels
    cols = {"group": labels.to_numpy(), "group_size": np.asarray(results.group_sizes)}
    r = results._blup.shape[1]
    for j in range(r):
        cols[f"re[{j}]"] = results._blup[:, j]
    for a in range(r):
        for b in range(a + 1):
            cols[f"cov[{a},{b}]"] = results._blup_cov[:, a, b]
    for comp, table in enumerate(results._vc_slot_cols):
        for s in range(table.shape[1]):
            cols[f"vc_column[{comp}][{s}]"] = table[:, s]
    return pd.DataFrame(cols)


def save_results(results, path) -> None:
    """Write ``results`` to the directory ``path`` atomically (replacing an old one)."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = sibling_path(target, "tmp")
    tmp.mkdir()
    try:
        with open(tmp / "estimates.json", "w") as fh:
            json.dump(jsonable(_state(results)), fh, indent=1, allow_nan=False)
        _random_effects_table(results).to_parquet(tmp / "random_effects.parquet", index=False)
        (tmp / "summary.txt").write_text(str(results.summary()))
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        replace_dir(tmp, target, marker="estimates.json", kind="results")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(path):
    """Restore results saved with :meth:`MixedLMResults.save`.

    The restored object prints ``summary()``, gives every estimate, covariance and
    the fit log, the random effects, and predicts on new data (formula models) or new
    arrays, without the original data.  Profile likelihoods need the statistics and
    are not available on loaded results.
    """
    from ..results.results import MixedLMResults, ModelNames

    target = Path(path)
    state = read_versioned_json(
        target / "estimates.json", FORMAT, FORMAT_VERSION, "a dmixed results directory"
    )
    table = pd.read_parquet(target / "random_effects.parquet")
    m, f, e = state["model"], state["fit"], state["estimates"]
    res = MixedLMResults.__new__(MixedLMResults)
    res.model = None
    res.names = ModelNames(
        m["endog_name"],
        m["exog_names"],
        m["exog_re_names"],
        m["vc_names"],
        m["vc_column_names"],
        m["group_name"],
    )
    res.spec = None
    if m.get("spec") is not None:
        from ..design import ModelSpec

        res.spec = ModelSpec.from_dict(m["spec"])
    res.use_sqrt = m["use_sqrt"]
    res.reml = f["reml"]
    res.method = f["method"]
    res.converged = f["converged"]
    res.n_iter = f["n_iter"]
    res.n_evals = f["n_evals"]
    res.optimizer_methods = f["optimizer_methods"]
    res.boundary = f["boundary"]
    res.fit_seconds = f["fit_seconds"]
    res.data_pass_seconds = f["data_pass_seconds"]
    res.cov_fe = f["cov_fe"]
    res.fit_history = f["history"]
    res.nobs = e["nobs"]
    res.n_groups = e["n_groups"]
    res.n_dropped = e["n_dropped"]
    res.k_fe, res.k_re, res.k_vc = e["k_fe"], e["k_re"], e["k_vc"]
    res.k_re2 = n_tril(res.k_re)
    res.llf = e["llf"]
    res.scale = e["scale"]
    res.param_names = e["param_names"]
    res.params = pd.Series(e["params"], index=res.param_names, name="params", dtype=float)
    res.packed_params = np.asarray(e["packed_params"], dtype=np.float64)
    res.fe_params = pd.Series(e["fe_params"], name="fe_params", dtype=float)
    res.cov_re = pd.DataFrame(
        _matrix(e["cov_re"]).reshape(res.k_re, res.k_re),
        index=res.names.exog_re_names,
        columns=res.names.exog_re_names,
    )
    res.cov_re_unscaled = _matrix(e["cov_re_unscaled"]).reshape(res.k_re, res.k_re)
    res.vcomp = np.array([e["vcomp"][v] for v in res.names.vc_names], dtype=np.float64)
    res._cov = _matrix(e["cov_params"])
    res._a_inv = _matrix(e["a_inv"])
    res._hessian = None

    widths = tuple(e["vc_slot_widths"])
    res._boundary_params = Layout(res.k_re, widths).boundary_mask(res.boundary, use_sqrt=False)
    res.group_labels = table["group"].to_numpy()
    res.group_sizes = table["group_size"].to_numpy()
    r = res.k_re + int(sum(widths))
    res._blup = (
        np.column_stack([table[f"re[{j}]"] for j in range(r)]) if r else np.zeros((len(table), 0))
    )
    cov = np.zeros((len(table), r, r))
    for a in range(r):
        for b in range(a + 1):
            cov[:, a, b] = cov[:, b, a] = table[f"cov[{a},{b}]"].to_numpy()
    res._blup_cov = cov
    res._vc_slot_cols = [
        np.column_stack([table[f"vc_column[{comp}][{s}]"].to_numpy() for s in range(w)]).astype(
            np.int64
        )
        if w
        else np.zeros((len(table), 0), dtype=np.int64)
        for comp, w in enumerate(widths)
    ]
    return res
