"""A formula of the Python API may use functions of the caller's scope, as statsmodels'
``eval_env`` allows; every other entry (files, jobs, saved results, the command line)
keeps the whitelist only (tests/test_data_is_never_code.py)."""

from __future__ import annotations

import json
import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.design import build_spec
from dmixed.design.scope import Environment, capture

from .._synth import make_data

pytestmark = pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")


def doubled(x):
    """A module-level function of the tests' scope."""
    return 2.0 * x


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = make_data(n_groups=40, seed=11, vc_sd=0.5)
    return df.assign(x1d=2.0 * df["x1"], x2h=df["x2"] / 2.0)


def _same_fit(res, ref, renamed: dict) -> None:
    """``res`` and ``ref`` are the same fit, ``res``'s parameters named as in ``renamed``."""
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)
    params = res.params.rename(index=renamed)
    np.testing.assert_allclose(params[ref.params.index], ref.params, rtol=1e-6, atol=1e-9)


def test_a_function_of_the_caller_is_called_as_statsmodels_does(frame):
    def times_two(x):  # local: found in the calling frame
        return 2 * x

    kw = dict(groups="g", re_formula="1 + x1")
    model = dmixed.mixedlm("y ~ times_two(x1) + x2", frame, **kw)
    res = model.fit()
    ref = dmixed.mixedlm("y ~ x1d + x2", frame, **kw).fit()
    assert "times_two(x1)" in model.exog_names
    _same_fit(res, ref, {"times_two(x1)": "x1d"})
    spec = model.spec
    assert dict(spec.caller_names) == {"times_two": times_two}  # only the names used
    assert spec.plain_plan("rhs") is None  # never the plain numeric path


def test_caller_functions_in_re_formula_and_vc_formula(frame):
    def halved(x):
        return x / 2.0

    fits = []
    for z, w in (("halved(x2)", "doubled(x1)"), ("x2h", "x1d")):  # a loop: this frame
        vc = {"s": "0 + C(sub)", "t": f"0 + {w}"}
        fits.append(
            dmixed.mixedlm("y ~ x1", frame, groups="g", re_formula=f"1 + {z}", vc_formula=vc)
        )
    res, ref = (m.fit() for m in fits)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-6)
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=1e-6)
    np.testing.assert_allclose(res.cov_re.to_numpy(), ref.cov_re.to_numpy(), rtol=1e-6)
    assert set(res.model.spec.caller_names) == {"halved", "doubled"}


def test_prediction_on_new_rows_calls_the_function_on_them(frame):
    def times_two(x):
        return 2 * x

    res = dmixed.mixedlm("y ~ times_two(x1) + x2", frame, groups="g").fit()
    ref = dmixed.mixedlm("y ~ x1d + x2", frame, groups="g").fit()
    new = frame.iloc[::7].copy()
    new["x1"] += 1.0
    new["x1d"] = 2.0 * new["x1"]
    for include_random in (False, True):
        np.testing.assert_allclose(
            res.predict(new, include_random=include_random),
            ref.predict(new, include_random=include_random),
            rtol=1e-8,
        )


def test_dask_partitions_get_the_function(frame):
    dd = pytest.importorskip("dask.dataframe")
    import dask

    def times_two(x):
        return 2 * x

    ddf = dd.from_pandas(frame, npartitions=3)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm("y ~ times_two(x1) + x2", ddf, groups="g").fit()
        fitted = res.fittedvalues.compute()
    ref = dmixed.mixedlm("y ~ times_two(x1) + x2", frame, groups="g").fit()
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)
    np.testing.assert_allclose(fitted.sort_index(), ref.fittedvalues.sort_index(), rtol=1e-8)


def test_the_spec_carries_the_functions_by_value(frame):
    """What a Dask worker in another process gets: the spec pickled with its functions
    (a local function too, which plain pickle cannot pickle)."""
    offset = 0.5

    def shifted(x):
        return x + offset

    model = dmixed.mixedlm("y ~ shifted(x1)", frame, groups="g")
    copy = pickle.loads(pickle.dumps(model.spec))
    assert copy.caller_names["shifted"] is not shifted
    a, b = model.spec.transform(frame), copy.transform(frame)
    np.testing.assert_array_equal(a.exog, b.exog)


class _Unpicklable:
    """A callable holding a lock: cloudpickle cannot pickle it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, x):
        return x


def test_functions_that_cannot_reach_dask_workers_are_refused(frame):
    dd = pytest.importorskip("dask.dataframe")
    ident = _Unpicklable()  # noqa: F841 - the formula calls it
    model = dmixed.mixedlm("y ~ ident(x1)", frame, groups="g")  # in memory: no shipping
    assert "ident(x1)" in model.exog_names
    with pytest.raises(dmixed.SpecError, match=r"\['ident'\].*cannot be pickled"):
        dmixed.mixedlm("y ~ ident(x1)", dd.from_pandas(frame, npartitions=2), groups="g")


def test_eval_env_as_statsmodels(frame):
    def times_two(x):
        return 2 * x

    def build(**kw):  # one frame further out than the scope that defines times_two
        return dmixed.mixedlm("y ~ times_two(x1)", frame, groups="g", **kw)

    with pytest.raises(dmixed.FormulaError, match=r"unknown function times_two\(\)"):
        build()
    assert "times_two(x1)" in build(eval_env=1).exog_names
    assert "times_two(x1)" in build(eval_env={"times_two": times_two}).exog_names
    with pytest.raises(dmixed.FormulaError, match="never from a file"):
        dmixed.mixedlm("y ~ times_two(x1)", frame, groups="g", eval_env=-1)
    with pytest.raises(dmixed.SpecError, match="eval_env must be"):
        build(eval_env="here")


def test_the_whitelist_still_holds_for_the_rest_of_the_formula(frame):
    def ident(x):
        return x

    for formula, match in (
        ("y ~ poly(ident(x1), 2)", "stateful transform poly"),
        ("y ~ I([ident(v) for v in x1])", "not a plain expression"),
        ("y ~ I(ident(x1).__class__)", "attribute .__class__"),
        ("y ~ np.sum(ident(x1))", "not an elementwise numpy function"),
    ):
        with pytest.raises(dmixed.FormulaError, match=match):
            dmixed.mixedlm(formula, frame, groups="g")


def test_data_of_the_caller_is_not_a_column(frame):
    extra = frame["x2"].to_numpy()  # noqa: F841 - the formula reads it
    three = 3.0  # noqa: F841 - the formula reads it
    with pytest.raises(
        dmixed.FormulaError,
        match="the data has no column 'extra', and 'extra' of the caller's scope is a ndarray",
    ):
        dmixed.mixedlm("y ~ x1 + extra", frame, groups="g")
    model = dmixed.mixedlm("y ~ I(three * x1)", frame, groups="g")  # a number is a constant
    np.testing.assert_allclose(model.exog[:, 1], 3.0 * frame["x1"].to_numpy())


def test_build_spec_looks_up_nothing_without_an_environment(frame):
    """Every entry but the Python API builds specs without an environment."""
    with pytest.raises(dmixed.FormulaError, match="never from a file, a job"):
        build_spec(frame, "y ~ doubled(x1)", "g")
    with pytest.raises(dmixed.FormulaError, match=r"unknown function round\(\)"):
        build_spec(frame, "y ~ round(x1)", "g")
    spec = build_spec(frame, "y ~ doubled(x1)", "g", env=Environment([{"doubled": doubled}]))
    assert list(spec.caller_names) == ["doubled"]
    assert capture(-1, None) is None


def test_saved_results_mark_the_functions_and_need_them_to_load(frame, tmp_path):
    def times_two(x):
        return 2 * x

    res = dmixed.mixedlm("y ~ times_two(x1) + x2", frame, groups="g").fit()
    res.save(tmp_path / "res")
    saved = json.loads((tmp_path / "res" / "estimates.json").read_text())
    assert saved["model"]["spec"]["caller_names"] == ["times_two"]  # names, never code
    with pytest.raises(dmixed.CheckpointError, match=r"uses times_two\(\).*eval_env="):
        dmixed.load(tmp_path / "res")
    with pytest.raises(dmixed.CheckpointError, match=r"lacks \['times_two'\]"):
        dmixed.load(tmp_path / "res", eval_env={"other": times_two})
    back = dmixed.load(tmp_path / "res", eval_env={"times_two": times_two, "os": object()})
    assert list(back.spec.caller_names) == ["times_two"]  # only the names marked
    new = frame.iloc[:20]
    np.testing.assert_allclose(back.predict(new), res.predict(new), rtol=1e-12)


@pytest.mark.slow
def test_a_worker_process_gets_a_local_function(frame):
    """A local function (pickled by value) reaches a Dask worker in another process."""
    dd = pytest.importorskip("dask.dataframe")
    from distributed import Client, LocalCluster

    def times_two(x):
        return 2 * x

    ddf = dd.from_pandas(frame, npartitions=2)
    model = dmixed.mixedlm("y ~ times_two(x1) + x2", ddf, groups="g")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        res = model.fit(client=client)
    ref = dmixed.mixedlm("y ~ times_two(x1) + x2", frame, groups="g").fit()
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-8)


def test_a_complex_constant_of_the_caller_is_refused(frame):
    """A complex number would enter the design with its imaginary part silently dropped
    (numpy's cast to float64): refused when the spec is built, as data is."""
    k = 1 + 2j  # noqa: F841 - the formula reads it
    with pytest.raises(dmixed.FormulaError, match="'k' of the caller's scope is a complex"):
        dmixed.mixedlm("y ~ I(k * x1)", frame, groups="g")
    half = 0.5  # noqa: F841 - a real number is a constant
    model = dmixed.mixedlm("y ~ I(half * x1)", frame, groups="g")
    np.testing.assert_allclose(model.exog[:, 1], 0.5 * frame["x1"].to_numpy())
