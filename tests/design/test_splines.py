"""patsy's bs(): its basis equal to patsy's, its knots learned once over the rows the fit
uses and frozen into the spec (dmixed.design.splines, dmixed.design.stateful)."""

from __future__ import annotations

import ast
import json
import warnings

import numpy as np
import pandas as pd
import patsy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import ModelSpec, build_spec
from dmixed.design.build import refuse_frozen_in_text
from dmixed.design.stateful import frozen_transforms, learned_state, validated_state
from dmixed.errors import BadValuesError, CheckpointError, DataError, FormulaError

# the fixture's row with a missing value is dropped, as statsmodels drops it
pytestmark = pytest.mark.filterwarnings("ignore::dmixed.errors.DroppedRowsWarning")

#: a call whose knots are all given: it learns nothing
CONSTANT = "bs(x, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 240
    df = pd.DataFrame(
        {"g": np.repeat(np.arange(30), 8), "x": rng.uniform(0, 10, n), "z": rng.normal(size=n)}
    )
    df["y"] = np.sin(df.x) + 0.3 * df.z + rng.normal(size=n) + np.repeat(rng.normal(size=30), 8)
    df.loc[3, "x"] = np.nan  # dropped by missing="drop": the knots ignore that row
    # missing values in other columns on the rows of x's minimum and maximum: knots
    # learned before those rows are dropped would have other bounds
    df.loc[df.x.idxmin(), "z"] = np.nan
    df.loc[df.x.idxmax(), "y"] = np.nan
    return df


def _ours(x: np.ndarray, **kwargs) -> np.ndarray:
    """dmixed's bs of ``x`` (learning its knots from ``x``), as a matrix."""
    return _matrix(frozen_transforms()["bs"](x, **kwargs))


def _matrix(values) -> np.ndarray:
    """A spline's factor values as a matrix: its columns by index, or its one column."""
    if isinstance(values, dict):
        return np.column_stack([values[k] for k in sorted(values)])
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(
        st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False), min_size=2, max_size=40
    ),
    df=st.integers(1, 8),
    degree=st.integers(0, 4),
    include_intercept=st.booleans(),
)
def test_basis_with_df_is_patsys(x, df, degree, include_intercept):
    x = np.asarray(x)
    need = df - degree - (0 if include_intercept else 1)
    kwargs = dict(df=df, degree=degree, include_intercept=include_intercept)
    if need < 1 or np.ptp(x) == 0:  # patsy refuses too few df; no spread: no basis
        return
    ref = patsy.dmatrix(
        f"0 + bs(x, df={df}, degree={degree}, include_intercept={include_intercept})", {"x": x}
    )
    np.testing.assert_allclose(_ours(x, **kwargs), np.asarray(ref), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=40),
    knots=st.lists(st.floats(0.5, 9.5), min_size=0, max_size=5),
    degree=st.integers(0, 3),
)
def test_basis_with_knots_and_bounds_is_patsys(x, knots, degree):
    x = np.asarray(x)
    knots = tuple(sorted(knots))
    kwargs = dict(knots=knots, degree=degree, lower_bound=0.0, upper_bound=10.0)
    if len(knots) + degree < 1:
        return
    ref = patsy.dmatrix(
        f"0 + bs(x, knots={knots!r}, degree={degree}, lower_bound=0.0, upper_bound=10.0)", {"x": x}
    )
    np.testing.assert_allclose(_ours(x, **kwargs), np.asarray(ref), rtol=1e-12, atol=1e-12)


def _statsmodels(formula: str, df: pd.DataFrame, re_formula: str | None = None):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, df, groups="g", re_formula=re_formula, missing="drop")


@pytest.mark.parametrize(
    ("formula", "re_formula"),
    [
        ("y ~ bs(x, df=4) + z", None),
        ("y ~ bs(x, 5, degree=2, include_intercept=True) + z", None),
        ("y ~ bs(x, knots=(3, 6)) * z", None),
        # one column: named without its index, as patsy names it
        ("y ~ 0 + bs(x, df=1, degree=0, include_intercept=True) + z", None),
        ("y ~ z", "~bs(x, df=3)"),
    ],
)
def test_design_is_patsys(frame, formula, re_formula):
    """The matrices are statsmodels' (patsy's knots over the rows kept), names and values."""
    sm = _statsmodels(formula, frame, re_formula)
    model = dmixed.mixedlm(formula, frame, groups="g", re_formula=re_formula, missing="drop")
    assert list(model.exog_names) == list(sm.exog_names)
    np.testing.assert_allclose(model.exog, sm.exog, rtol=1e-12, atol=1e-12)
    if re_formula is not None:
        # (statsmodels names the random intercept after the groups)
        assert list(model.exog_re_names)[1:] == list(sm.data.exog_re_names)[1:]
        np.testing.assert_allclose(model.exog_re, sm.exog_re, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_fit_and_predict_agree_with_statsmodels(frame, kernels, monkeypatch):
    """statsmodels at gtol=1e-10 on ``y ~ bs(x, df=4) + z``: fe_params, llf, and its
    predictions of new rows (inside the training range)."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    formula = "y ~ bs(x, df=4) + z"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = _statsmodels(formula, frame).fit(reml=True, method="bfgs", gtol=1e-10)
    d = dmixed.mixedlm(formula, frame, groups="g", missing="drop").fit()
    assert list(d.fe_params.index) == list(s.fe_params.index)
    np.testing.assert_allclose(d.fe_params.to_numpy(), s.fe_params.to_numpy(), rtol=1e-9)
    assert d.llf == pytest.approx(s.llf, rel=1e-12)
    kept = frame.dropna()
    new = pd.DataFrame(
        {"x": np.linspace(kept.x.min(), kept.x.max(), 7), "z": np.arange(7.0), "g": 0}
    )
    np.testing.assert_allclose(
        np.asarray(d.predict(new)), np.asarray(s.predict(new)), rtol=1e-8, atol=1e-9
    )


def test_predict_one_row_uses_the_frozen_knots(frame):
    fit = dmixed.mixedlm("y ~ bs(x, df=4) + z", frame, groups="g", missing="drop").fit()
    new = frame.dropna().iloc[[5, 9, 40]]
    one_by_one = np.concatenate([np.asarray(fit.predict(new.iloc[[i]])) for i in range(3)])
    np.testing.assert_allclose(one_by_one, np.asarray(fit.predict(new)), rtol=1e-13)


def test_values_outside_the_knots_are_refused_as_patsy_refuses_them(frame):
    fit = dmixed.mixedlm("y ~ bs(x, df=4) + z", frame, groups="g", missing="drop").fit()
    beyond = pd.DataFrame({"x": [frame.x.max() + 1], "z": [0.0], "g": [0]})
    with pytest.raises(FormulaError, match=r"outside the bounds of its knots.*lower_bound"):
        fit.predict(beyond)
    design = patsy.dmatrix("bs(x, df=4)", frame.dropna()).design_info
    with pytest.raises(patsy.PatsyError, match="outside the outermost knots"):
        patsy.build_design_matrices([design], beyond)
    wide = "y ~ bs(x, df=4, lower_bound=-5, upper_bound=20) + z"
    ours = dmixed.mixedlm(wide, frame, groups="g", missing="drop").fit().predict(beyond)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _statsmodels(wide, frame).fit(reml=True, method="bfgs", gtol=1e-10)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs.predict(beyond)), rtol=1e-7)


def test_saved_results_keep_the_knots_as_numbers(frame, tmp_path):
    fit = dmixed.mixedlm("y ~ bs(x, df=4) + z", frame, groups="g", missing="drop").fit()
    fit.save(tmp_path / "r")
    text = "".join(p.read_text() for p in (tmp_path / "r").glob("*.json"))
    assert '"bs(x, df=4)"' in text
    back = dmixed.load(tmp_path / "r")
    new = frame.dropna().iloc[:20]
    np.testing.assert_array_equal(np.asarray(back.predict(new)), np.asarray(fit.predict(new)))
    state = fit.model.spec.to_dict()
    kept = frame.dropna().x
    assert (kept.min(), kept.max()) != (frame.x.min(), frame.x.max())
    knots = state["stateful"]["bs(x, df=4)"]["knots"]
    assert knots == [kept.min()] * 4 + [float(np.percentile(kept, 50))] + [kept.max()] * 4
    rebuilt = ModelSpec.from_dict(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(rebuilt.transform(new).exog, fit.model.spec.transform(new).exog)


@pytest.mark.parametrize(
    ("knots", "match"),
    [
        ("__import__('os')", "must be"),
        ([0.0, 0.0, 0.0, 0.0, "1", 9.0, 9.0, 9.0, 9.0], "finite numbers"),
        ([0.0, 0.0, 0.0, 0.0, float("nan"), 9.0, 9.0, 9.0, 9.0], "finite numbers"),
        ([0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0], r"9 numbers"),
        ([0.0, 0.0, 0.0, 0.0, 10.0, 9.0, 9.0, 9.0, 9.0], "not knots it learns"),
        ([0.0, 0.0, 0.0, 1.0, 5.0, 9.0, 9.0, 9.0, 9.0], "not knots it learns"),
    ],
)
def test_saved_knots_are_checked_as_plain_numbers(frame, knots, match):
    fit = dmixed.mixedlm("y ~ bs(x, df=4) + z", frame, groups="g", missing="drop").fit()
    state = fit.model.spec.to_dict()
    state["stateful"] = {"bs(x, df=4)": {"knots": knots}}
    with pytest.raises(CheckpointError, match=match):
        ModelSpec.from_dict(state)
    with pytest.raises(CheckpointError, match=match):
        validated_state(state["stateful"], "file.json")


#: a transform of the several columns bs() makes: formulaic would keep a state of each
#: column, which dmixed does not save
OF_SEVERAL_COLUMNS = [
    "center(bs(x, df=4))",
    "standardize(bs(x, df=4))",
    "scale(bs(x, df=4))",
    "bs(bs(x, df=4), df=4)",
]


@pytest.mark.parametrize("term", OF_SEVERAL_COLUMNS)
def test_a_transform_of_bs_columns_is_refused(frame, term):
    with pytest.raises(FormulaError, match=r"is not supported.*makes several columns.*before bs"):
        dmixed.mixedlm(f"y ~ {term} + z", frame, groups="g", missing="drop")


@pytest.mark.parametrize("term", OF_SEVERAL_COLUMNS)
def test_a_saved_formula_transforming_bs_columns_is_refused(frame, term):
    fit = dmixed.mixedlm("y ~ bs(x, df=4) + z", frame, groups="g", missing="drop").fit()
    state = fit.model.spec.to_dict()
    state["formula"] = f"y ~ {term} + z"
    with pytest.raises(FormulaError, match=r"is not supported.*makes several columns"):
        ModelSpec.from_dict(json.loads(json.dumps(state)))


@pytest.mark.parametrize("term", OF_SEVERAL_COLUMNS)
def test_a_state_not_learned_as_numbers_is_refused(frame, term):
    """Past the formula's check: formulaic's per-column state is never saved as empty."""
    from formulaic import model_matrix

    spec = model_matrix(term, frame.dropna(), context=frozen_transforms()).model_spec
    with pytest.raises(FormulaError, match=r"learned no (mean|knots)"):
        learned_state([(spec, "formula", f"y ~ {term}")])


def test_saved_state_of_a_call_that_learns_nothing_is_refused():
    with pytest.raises(CheckpointError, match="not a call of"):
        validated_state({CONSTANT: {"knots": [0.0] * 4 + [2.5, 5, 7.5] + [10.0] * 4}}, "f")


@pytest.mark.parametrize(
    "term",
    [
        "bs(x, df=__import__('os').system('true'))",
        "bs(x, df=10**9)",
        "bs(x, df=100000)",
        "bs(x, knots=(1,) * 100)",
        "bs(x, knots=k)",
        "bs(x, knots=(1, k))",
        "bs(x, df=4, lower_bound=x.min())",
        "bs(x, df=4, degree=True)",
        "bs(x, df=4, include_intercept=1)",
        "bs(x, df=4, df=5)",
        "bs(x, df=4, code=1)",
        "bs(x, df=4, **k)",
        "bs(x)",
        "bs(x, df=2)",
        "bs(x, df=5, knots=(1, 2, 3))",
        "bs(x, knots=(1, 20), lower_bound=0, upper_bound=10)",
        "bs()",
    ],
)
def test_only_constant_arguments_that_make_a_basis_are_allowed(frame, term):
    with pytest.raises(FormulaError, match=r"is not supported|not allowed"):
        build_spec(frame.assign(k=1), f"y ~ {term}", groups="g", missing="drop")


def test_poly_and_lag_are_refused_as_not_patsys(frame):
    for term in ("poly(x, 2)", "lag(x)", "cs(x, df=4)"):
        with pytest.raises(FormulaError, match="formulaic's, not patsy's"):
            build_spec(frame, f"y ~ {term}", groups="g", missing="drop")
    with pytest.raises(FormulaError, match=r"have bs\(\), cr\(\) and cc\(\)"):
        build_spec(frame, "y ~ cs(x, df=4)", groups="g", missing="drop")


def test_dask_refuses_learned_knots_naming_the_arguments_to_give(frame):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(frame.dropna(), npartitions=3)
    for formula in ("y ~ bs(x, df=4)", "y ~ bs(x, knots=(2, 5), lower_bound=0)"):
        with pytest.raises(FormulaError, match=r"bs\(\).*Dask.*knots, lower_bound and upper"):
            dmixed.mixedlm(formula, ddf, groups="g")
    with pytest.raises(FormulaError, match=r"^re_formula '~bs\(x, df=3\)'"):
        dmixed.mixedlm("y ~ z", ddf, groups="g", re_formula="~bs(x, df=3)")


def test_dask_accepts_every_knot_given_as_numbers(frame):
    dd = pytest.importorskip("dask.dataframe")
    kept = frame.dropna()
    on_dask = dmixed.mixedlm(f"y ~ {CONSTANT}", dd.from_pandas(kept, npartitions=3), groups="g")
    local = dmixed.mixedlm(f"y ~ {CONSTANT}", kept, groups="g")
    assert local.spec.stateful == {}
    a, b = on_dask.fit(), local.fit()
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=1e-9)
    assert a.llf == pytest.approx(b.llf, rel=1e-12)
    ref = patsy.dmatrix(f"0 + {CONSTANT}", kept)
    np.testing.assert_allclose(local.exog[:, 1:], np.asarray(ref), rtol=1e-12, atol=1e-12)


def test_a_variance_component_refuses_it(frame):
    for term in ("bs(x, df=3)", CONSTANT):
        with pytest.raises(FormulaError, match=r"in a variance component: bs\(\) makes several"):
            build_spec(frame, "y ~ 1", groups="g", vc_formula={"c": f"0 + {term}"}, missing="drop")
    with pytest.raises(FormulaError, match=r"bs\(\) is not supported in a variance component"):
        refuse_frozen_in_text("y ~ 1", None, {"c": "0 + bs(x, df=3)"}, "files")


def test_the_text_check_refuses_learned_knots_and_accepts_given_ones():
    with pytest.raises(FormulaError, match=r"bs\(\).*data read from files.*upper_bound"):
        refuse_frozen_in_text("y ~ bs(x, df=4)", None, None, "data read from files")
    refuse_frozen_in_text(f"y ~ {CONSTANT}", f"~{CONSTANT}", None, "files")


def _command_line(frame, tmp_path, monkeypatch, formula, cluster=None) -> tuple[int, str, list]:
    """``dmixed fit`` of ``frame`` as Parquet: its status, its stderr and the calls of
    :func:`dmixed.cluster.connect` (each stops the run there, unless ``cluster`` is
    given: a context manager of the client to run on)."""
    import contextlib
    import io

    import dmixed.cluster
    from dmixed import cli

    frame.dropna().to_parquet(tmp_path / "d.parquet")
    called: list = []

    def connect(*a, **k):
        called.append(a)
        if cluster is not None:
            return cluster()
        raise RuntimeError("stopped where the cluster would start")

    monkeypatch.setattr(dmixed.cluster, "connect", connect)
    args = ["fit", "--data", str(tmp_path / "d.parquet"), "--groups", "g", "--quiet"]
    args += ["--formula", formula, "--output", str(tmp_path / "out")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(args)
    return code, err.getvalue(), called


def test_the_command_line_refuses_learned_knots_before_a_cluster_starts(
    frame, tmp_path, monkeypatch
):
    code, err, called = _command_line(frame, tmp_path, monkeypatch, "y ~ bs(x, df=4)")
    assert code == 2 and not called
    assert "bs()" in err and "lower_bound and upper_bound" in err
    assert not (tmp_path / "out").exists()


def test_the_command_line_passes_every_knot_given_on_to_the_cluster(frame, tmp_path, monkeypatch):
    code, err, called = _command_line(frame, tmp_path, monkeypatch, f"y ~ {CONSTANT}")
    assert called and "bs()" not in err


def test_the_learned_call_is_told_apart_from_the_constant_one():
    from dmixed.design.stateful import learns

    def call(text):
        return ast.parse(text, mode="eval").body

    assert learns(call("bs(x, df=4)"))
    assert learns(call("bs(x, knots=(1, 2), lower_bound=0)"))
    assert not learns(call(CONSTANT))


def test_values_not_finite_are_refused_naming_the_call(frame):
    """A column's own non-finite values are refused before (naming the column); the
    values bs() is given may be computed (np.log(0))."""
    with pytest.raises(BadValuesError, match=r"'bs\(np.log\(x\), df=4\)' \(1 row\)"):
        dmixed.mixedlm(
            "y ~ bs(np.log(x), df=4)",
            frame.assign(x=frame.x.where(frame.index != 0, 0.0)),
            groups="g",
            missing="drop",
        )


#: every knot and both bounds given, the bounds covering the data's rows but not the
#: values of the stand-in frame formulaic's specs are learned from (1.0 to 1.75)
AWAY_FROM_THE_STAND_IN = (
    "y ~ bs(age, knots=(35, 50, 65), lower_bound=20, upper_bound=80) + z",
    "y ~ bs(p, knots=(0.5,), lower_bound=0, upper_bound=1) + z",
    "y ~ bs(age - 50, knots=(0,), lower_bound=-40, upper_bound=40) + z",
)


@pytest.fixture(scope="module")
def ages() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 240
    df = pd.DataFrame(
        {
            "g": np.repeat(np.arange(30), 8),
            "age": rng.uniform(20, 80, n),
            "p": rng.uniform(0.05, 0.95, n),
            "z": rng.normal(size=n),
        }
    )
    df["y"] = np.sin(df.age / 10) + 0.3 * df.z + rng.normal(size=n)
    df["y"] += np.repeat(rng.normal(size=30), 8)
    return df


@pytest.mark.parametrize("formula", AWAY_FROM_THE_STAND_IN)
def test_given_bounds_need_not_cover_the_stand_in_frame(ages, formula):
    """The bounds are checked on the data's rows, on pandas and on Dask alike; the
    design is patsy's."""
    dd = pytest.importorskip("dask.dataframe")
    local = dmixed.mixedlm(formula, ages, groups="g")
    on_dask = dmixed.mixedlm(formula, dd.from_pandas(ages, npartitions=3), groups="g")
    ref = patsy.dmatrix(formula.split("~")[1], ages)
    np.testing.assert_allclose(local.exog, np.asarray(ref), rtol=1e-12, atol=1e-12)
    a, b = on_dask.fit(), local.fit()
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=1e-9)
    assert a.llf == pytest.approx(b.llf, rel=1e-12)


def test_given_bounds_still_refuse_the_data_rows_outside_them(ages):
    formula = AWAY_FROM_THE_STAND_IN[0]
    with pytest.raises(FormulaError, match=r"1 row outside the bounds of its knots"):
        dmixed.mixedlm(formula, ages.assign(age=ages.age.where(ages.index != 7, 85.0)), groups="g")
    fit = dmixed.mixedlm(formula, ages, groups="g").fit()
    beyond = pd.DataFrame({"age": [50.0, 10.0], "z": [0.0, 0.0], "g": [0, 0]})
    with pytest.raises(FormulaError, match=r"1 row outside the bounds .*first: 10\.0"):
        fit.predict(beyond)
    assert np.isfinite(np.asarray(fit.predict(beyond.iloc[:1]))).all()


def test_the_command_line_fits_bounds_that_do_not_cover_the_stand_in(ages, tmp_path, monkeypatch):
    """``dmixed fit`` on an in-process cluster (threads): the formula's spec is learned
    there from the stand-in frame too."""
    import contextlib

    distributed = pytest.importorskip("distributed")

    @contextlib.contextmanager
    def in_process():
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
            ) as lc,
            distributed.Client(lc) as client,
        ):
            yield client

    formula = AWAY_FROM_THE_STAND_IN[0]
    code, err, _ = _command_line(ages, tmp_path, monkeypatch, formula, in_process)
    assert code == 0, err
    saved = json.loads((tmp_path / "out" / "estimates.json").read_text())
    local = dmixed.mixedlm(formula, ages, groups="g").fit()
    assert saved["estimates"]["llf"] == pytest.approx(local.llf, rel=1e-9)


# patsy's cubic regression splines cr() and cc()


def _cubic(x: np.ndarray, name: str, **kwargs) -> np.ndarray:
    """dmixed's cr/cc of ``x`` (learning from ``x``), as a matrix."""
    return _matrix(frozen_transforms()[name](x, **kwargs))


CUBIC_TERMS = [
    "cr(x, df=3)",
    "cr(x, 5)",
    "cr(x, df=2, constraints='center')",
    "cr(x, df=6, constraints='center')",
    "cr(x, knots=(3, 3, 6))",
    "cr(x, df=4, lower_bound=2, upper_bound=8)",
    "cr(x, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10, constraints='center')",
    "cc(x, df=1)",
    "cc(x, df=2)",
    "cc(x, df=5)",
    "cc(x, df=1, constraints='center')",
    "cc(x, df=4, constraints='center')",
    "cc(x, knots=(2, 5), lower_bound=-1, upper_bound=11)",
    # df and knots both given, agreeing (df=4 makes 2 inner knots): patsy's basis
    "cr(x, df=4, knots=(3, 5))",
]


@pytest.mark.parametrize("term", CUBIC_TERMS)
def test_cubic_basis_and_new_rows_are_patsys(frame, term):
    """The basis over the rows kept, and of new rows (beyond the bounds too: patsy
    extrapolates cr() and wraps cc() around), equal patsy's; the names are patsy's."""
    kept = frame.dropna()
    model = build_spec(kept, f"y ~ 0 + {term}", groups="g")
    ref = patsy.dmatrix(f"0 + {term}", kept)
    assert model.exog_names == ref.design_info.column_names
    np.testing.assert_allclose(model.transform(kept).exog, ref, rtol=1e-12, atol=1e-12)
    new = pd.DataFrame({"x": [-3.0, 0.0, 4.2, 10.0, 13.5], "y": 0.0, "g": 0})
    theirs = patsy.build_design_matrices([ref.design_info], new)[0]
    np.testing.assert_allclose(model.transform(new).exog, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "term",
    [
        "np.exp(bs(x, df=1, degree=1))",
        "I(bs(x, df=1, degree=1) * 2)",
        "np.log(cc(x, df=1) + 1)",
    ],
)
def test_a_one_column_spline_inside_an_expression_is_patsys(frame, term):
    """A spline of one column is one column of values, as patsy makes it, so an
    expression of it is evaluated (with the spline's state frozen: new rows use the
    knots learned from the fit's rows), as patsy evaluates it; names and values are
    patsy's, on the rows kept and on new rows."""
    kept = frame.dropna()
    model = build_spec(kept, f"y ~ {term}", groups="g")
    ref = patsy.dmatrix(term, kept)
    assert model.exog_names == ref.design_info.column_names
    np.testing.assert_allclose(model.transform(kept).exog, ref, rtol=1e-12, atol=1e-12)
    new = pd.DataFrame({"x": [0.5, 4.2, 7.0, 9.5], "y": 0.0, "g": 0})
    theirs = patsy.build_design_matrices([ref.design_info], new)[0]
    np.testing.assert_allclose(model.transform(new).exog, theirs, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    # values on a grid: knots closer than that make the spline's equations so
    # ill-conditioned that two exact solvers differ in the leading digits
    x=st.lists(st.integers(-4000, 4000), min_size=4, max_size=40),
    df=st.integers(1, 7),
    cyclic=st.booleans(),
    center=st.booleans(),
)
def test_cubic_basis_with_df_is_patsys(x, df, cyclic, center):
    x = np.asarray(x) / 4.0
    name = "cc" if cyclic else "cr"
    inner = df - 2 + center + cyclic
    # patsy needs df knots distinct within the values' range (and fails without an
    # inner knot for cr): dmixed refuses those too
    if (not cyclic and inner < 1) or inner < 0 or np.unique(x).size < inner + 2:
        return
    kwargs = dict(df=df, constraints="center" if center else None)
    try:
        ref = np.asarray(
            patsy.dmatrix(
                f"0 + {name}(x, df={df}, constraints=c)", {"x": x, "c": kwargs["constraints"]}
            )
        )
    except ValueError:  # quantiles that coincide: patsy refuses, dmixed records why
        state: dict = {}
        frozen_transforms()[name](x, _state=state, **kwargs)
        assert "problem" in state
        return
    np.testing.assert_allclose(_cubic(x, name, **kwargs), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(
    "formula",
    ["y ~ cr(x, df=4, constraints='center') + z", "y ~ cc(x, df=5, constraints='center') * z"],
)
def test_cubic_fit_and_predict_agree_with_statsmodels(frame, formula, kernels, monkeypatch):
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = _statsmodels(formula, frame).fit(reml=True, method="bfgs", gtol=1e-10)
    d = dmixed.mixedlm(formula, frame, groups="g", missing="drop").fit()
    assert list(d.fe_params.index) == list(s.fe_params.index)
    np.testing.assert_allclose(d.fe_params.to_numpy(), s.fe_params.to_numpy(), rtol=1e-8, atol=1e-9)
    assert d.llf == pytest.approx(s.llf, rel=1e-12)
    new = pd.DataFrame({"x": [-1.0, 2.5, 9.0, 12.0], "z": [0.0, 1, 2, 3], "g": 0})
    np.testing.assert_allclose(
        np.asarray(d.predict(new)), np.asarray(s.predict(new)), rtol=1e-8, atol=1e-9
    )
    one = np.concatenate([np.asarray(d.predict(new.iloc[[i]])) for i in range(4)])
    np.testing.assert_allclose(one, np.asarray(d.predict(new)), rtol=1e-12, atol=1e-12)


CENTERED = "cr(x, df=4, constraints='center')"


def test_cubic_state_is_saved_as_numbers_and_loaded(frame, tmp_path):
    fit = dmixed.mixedlm(
        f"y ~ 0 + {CENTERED} + cc(z, df=4)", frame, groups="g", missing="drop"
    ).fit()
    state = fit.model.spec.to_dict()["stateful"]
    kept = frame.dropna().x
    assert state[CENTERED]["knots"][0] == kept.min() and state[CENTERED]["knots"][-1] == kept.max()
    assert (
        set(state[CENTERED]) == {"knots", "constraint"} and len(state[CENTERED]["constraint"]) == 5
    )
    assert set(state["cc(z, df=4)"]) == {"knots"} and len(state["cc(z, df=4)"]["knots"]) == 5
    fit.save(tmp_path / "r")
    back = dmixed.load(tmp_path / "r")
    new = frame.dropna().iloc[:20]
    np.testing.assert_array_equal(np.asarray(back.predict(new)), np.asarray(fit.predict(new)))


@pytest.mark.parametrize(
    ("stored", "match"),
    [
        ({"knots": [0.0, 3.0, 6.0, 9.0, 10.0]}, "must be"),
        ({"knots": [0.0, 3.0, 6.0, 9.0, 10.0], "constraint": [0.2] * 5, "x": 1}, "must be"),
        ({"knots": [0.0, 3.0, 6.0, 9.0], "constraint": [0.2] * 5}, "list of 5 numbers"),
        ({"knots": [0.0, 3.0, 3.0, 9.0, 10.0], "constraint": [0.2] * 5}, "not knots it learns"),
        ({"knots": [0.0, 3.0, 6.0, 9.0, "10"], "constraint": [0.2] * 5}, "finite numbers"),
        ({"knots": [0.0, 3.0, 6.0, 9.0, 10.0], "constraint": [0.2] * 4}, "list of 5 numbers"),
        ({"knots": [0.0, 3.0, 6.0, 9.0, 10.0], "constraint": [0.0] * 5}, "all zeros"),
        ({"knots": [0.0, 3.0, 6.0, 9.0, 10.0], "constraint": "__import__('os')"}, "list of 5"),
    ],
)
def test_saved_cubic_state_is_checked_as_plain_numbers(stored, match):
    with pytest.raises(CheckpointError, match=match):
        validated_state({CENTERED: stored}, "file.json")


def test_saved_cubic_state_must_match_the_given_knots_and_bounds():
    call = "cr(x, knots=(2, 5), lower_bound=0, upper_bound=10, constraints='center')"
    good = {"knots": [0.0, 2.0, 5.0, 10.0], "constraint": [0.1, 0.4, 0.4, 0.1]}
    assert validated_state({call: good}, "f")[call] == good
    for knots in ([0.0, 2.0, 6.0, 10.0], [-1.0, 2.0, 5.0, 10.0]):
        with pytest.raises(CheckpointError, match="not knots it learns"):
            validated_state({call: {**good, "knots": knots}}, "f")
    with pytest.raises(CheckpointError, match="not a call of"):
        validated_state({"cc(x, knots=(2, 5), lower_bound=0, upper_bound=10)": good}, "f")


@pytest.mark.parametrize(
    ("term", "match"),
    [
        ("cr(x)", "needs df or knots"),
        ("cr(x, df=1)", "df=1 must be at least 2"),
        ("cr(x, df=2)", "at least one inner knot"),
        ("cc(x, df=0)", "its df must be None or a whole number above 0"),
        ("cr(x, df=4, constraints='centre')", "constraints must be None or 'center'"),
        ("cr(x, df=4, constraints=[[1, 1, 1, 1]])", "constraints must be None or 'center'"),
        ("cr(x, df=4, constraints=c)", "constraints must be None or 'center'"),
        ("cr(x, df=5, knots=(3, 3, 5))", "implies 3 distinct inner knots, but 2"),
        ("cr(x, knots=(0, 5), lower_bound=0)", "strictly within"),
        ("cc(x, df=4, lower_bound=5, upper_bound=5)", "lower_bound 5.0 is not below"),
        ("cr(x, df=100000)", "at most 1000"),
        ("cr(x, df=4, degree=3)", "no argument degree"),
        ("cr(x, df=k)", "its df must be"),
        ("cc(x, df=4, lower_bound=x.min())", "its lower_bound must be"),
        ("cr(x, df=4, df=5)", "given twice"),
    ],
)
def test_cubic_arguments_that_make_no_basis_are_refused_naming_the_argument(frame, term, match):
    with pytest.raises(FormulaError, match=match):
        build_spec(frame.assign(k=1, c=1), f"y ~ {term}", groups="g", missing="drop")


def test_cubic_knots_the_data_cannot_give_are_refused(frame):
    """A given knot outside the values' range (a bound not given): patsy refuses too."""
    with pytest.raises(ValueError, match="lower bound"):
        patsy.dmatrix("cr(x, knots=(-5, 5))", frame.dropna())
    with pytest.raises(
        dmixed.errors.DataError, match=r"cr\(x, knots=\(-5, 5\)\) learns its knots.*strictly within"
    ):
        build_spec(frame, "y ~ cr(x, knots=(-5, 5))", groups="g", missing="drop")


@pytest.mark.parametrize(
    "term", ["center(cr(x, df=4))", "cr(cc(x, df=4), df=4)", "bs(cr(x, df=4), df=4)"]
)
def test_a_transform_of_cubic_columns_is_refused(frame, term):
    with pytest.raises(FormulaError, match=r"is not supported.*makes several columns"):
        dmixed.mixedlm(f"y ~ {term} + z", frame, groups="g", missing="drop")


def test_cubic_of_a_transform_is_accepted(frame):
    spec = build_spec(frame, "y ~ cr(center(x), df=4)", groups="g", missing="drop")
    assert set(spec.stateful) == {"center(x)", "cr(center(x), df=4)"}


CUBIC_GIVEN = "cr(x, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)"


def test_dask_refuses_learned_cubic_state_naming_what_to_give(frame):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(frame.dropna(), npartitions=3)
    for formula in (
        "y ~ cr(x, df=4)",
        "y ~ cc(x, knots=(2, 5), lower_bound=0)",
        "y ~ cr(x, knots=(2, 5), lower_bound=0, upper_bound=10, constraints='center')",
    ):
        with pytest.raises(
            FormulaError, match=r"\(\).*Dask.*upper_bound, and no constraints='center'"
        ):
            dmixed.mixedlm(formula, ddf, groups="g")
    with pytest.raises(FormulaError, match="data read from files"):
        refuse_frozen_in_text(
            "y ~ cc(x, df=4, constraints='center')", None, None, "data read from files"
        )


def test_dask_refusal_of_a_centred_cubic_beside_a_factor_advises_a_design_that_fits(frame):
    """With a C() factor in the formula, leaving out the intercept (main's advice) gives
    the factor an indicator per level, which sum to one as the uncentred basis's columns
    do: the refusal says so and what fits instead (drop_cols, or bs() with the intercept),
    and both fit."""
    dd = pytest.importorskip("dask.dataframe")
    data = frame.dropna().assign(c=lambda d: np.array(list("abc"))[np.arange(len(d)) % 3])
    ddf = dd.from_pandas(data, npartitions=3)
    knots = "knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10"
    with pytest.raises(FormulaError) as refused:
        dmixed.mixedlm(f"y ~ C(c) + cr(x, {knots}, constraints='center')", ddf, groups="g")
    message = str(refused.value)
    assert "indicators of C(c)" in message
    assert "'0 + ...' is collinear too" in message
    assert "drop_cols=['C(c)[<a level>]']" in message
    with pytest.raises(DataError, match="rank deficient"):  # main's advice
        dmixed.mixedlm(f"y ~ 0 + C(c) + cr(x, {knots})", ddf, groups="g").fit()
    dropped = dmixed.mixedlm(
        f"y ~ 0 + C(c) + cr(x, {knots})", ddf, groups="g", drop_cols=["C(c)[a]"]
    ).fit()
    kept = dmixed.mixedlm(f"y ~ C(c) + bs(x, {knots})", ddf, groups="g").fit()
    assert np.isfinite(dropped.llf) and np.isfinite(kept.llf)
    with pytest.raises(FormulaError) as plain:
        dmixed.mixedlm(f"y ~ cr(x, {knots}, constraints='center')", ddf, groups="g")
    assert "leave out the intercept, '0 + ...'" in str(plain.value)


def test_dask_text_made_from_an_object_column_of_floats_is_read_as_numbers_by_a_spline():
    """``dd.from_pandas`` makes an ``object`` column of floats ``string`` (Dask's
    convert-string): the spline reads the values as numbers and the fit equals the fit of
    the floats, as on main (the refusal of text is for files of different types only)."""
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 400)
    data = pd.DataFrame({"y": np.sin(x) + rng.normal(size=400), "x": x, "g": np.arange(400) % 40})
    formula = "y ~ bs(x, knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10)"
    ddf = dd.from_pandas(data.assign(x=data["x"].astype(object)), npartitions=2)
    if str(ddf["x"].dtype) == "object":
        pytest.skip("this Dask keeps object columns (convert-string off)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.errors.TextConversionWarning)
        got = dmixed.mixedlm(formula, ddf, groups="g").fit()
    want = dmixed.mixedlm(formula, data, groups="g").fit()
    assert got.llf == pytest.approx(want.llf, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(got.fe_params.to_numpy(), want.fe_params.to_numpy(), rtol=1e-10)


def test_dask_refusal_of_a_centred_cubic_names_a_factor_of_nested_calls_or_a_text_column(frame):
    """The advice's factor is read from the parsed terms: ``C(c, Treatment('b'))``
    (nested parentheses) and a text column ``c`` without ``C()`` are named, with the
    ``drop_cols`` entry that fits (the older advice, '0 + ...', is collinear there)."""
    dd = pytest.importorskip("dask.dataframe")
    data = frame.dropna().assign(c=lambda d: np.array(list("abc"))[np.arange(len(d)) % 3])
    ddf = dd.from_pandas(data, npartitions=3)
    knots = "knots=(2.5, 5, 7.5), lower_bound=0, upper_bound=10"
    for factor in ("C(c, Treatment('b'))", "c"):
        with pytest.raises(FormulaError) as refused:
            dmixed.mixedlm(f"y ~ {factor} + cr(x, {knots}, constraints='center')", ddf, groups="g")
        message = str(refused.value)
        assert f"indicators of {factor} (one per level)" in message, message
        assert f"drop_cols=[{factor + '[<a level>]'!r}]" in message, message
    with pytest.raises(DataError, match="rank deficient"):
        dmixed.mixedlm(f"y ~ 0 + c + cr(x, {knots})", ddf, groups="g").fit()
    dropped = dmixed.mixedlm(
        f"y ~ 0 + c + cr(x, {knots})", ddf, groups="g", drop_cols=["c[a]"]
    ).fit()
    assert np.isfinite(dropped.llf)


def test_dask_accepts_a_cubic_with_every_knot_given(frame):
    dd = pytest.importorskip("dask.dataframe")
    kept = frame.dropna()
    formula = f"y ~ 0 + {CUBIC_GIVEN} + z"
    on_dask = dmixed.mixedlm(formula, dd.from_pandas(kept, npartitions=3), groups="g")
    local = dmixed.mixedlm(formula, kept, groups="g")
    assert local.spec.stateful == {}
    a, b = on_dask.fit(), local.fit()
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=1e-9)
    assert a.llf == pytest.approx(b.llf, rel=1e-12)
    refuse_frozen_in_text(formula, f"~{CUBIC_GIVEN}", None, "files")


def test_a_variance_component_refuses_a_cubic(frame):
    for term in ("cr(x, df=3)", CUBIC_GIVEN):
        with pytest.raises(FormulaError, match=r"in a variance component: c[rc]\(\) makes several"):
            build_spec(frame, "y ~ 1", groups="g", vc_formula={"c": f"0 + {term}"}, missing="drop")
    with pytest.raises(FormulaError, match=r"cc\(\) is not supported in a variance component"):
        refuse_frozen_in_text("y ~ 1", None, {"c": "0 + cc(x, df=3)"}, "files")


def test_the_command_line_refuses_a_learned_cubic_before_a_cluster_starts(
    frame, tmp_path, monkeypatch
):
    code, err, called = _command_line(
        frame, tmp_path, monkeypatch, "y ~ cr(x, df=4, constraints='center')"
    )
    assert code == 2 and not called
    assert "cr()" in err and "constraints='center'" in err
    assert not (tmp_path / "out").exists()


def test_the_command_line_passes_a_cubic_with_every_knot_given_on_to_the_cluster(
    frame, tmp_path, monkeypatch
):
    code, err, called = _command_line(frame, tmp_path, monkeypatch, f"y ~ 0 + {CUBIC_GIVEN}")
    assert called and "cr()" not in err


def test_cubic_values_not_finite_are_refused_naming_the_call(frame):
    data = frame.assign(x=frame.x.where(frame.index != 7, 0.0))
    with pytest.raises(BadValuesError, match=r"'cr\(np.log\(x\), df=4\)' \(1 row\)"):
        dmixed.mixedlm("y ~ cr(np.log(x), df=4)", data, groups="g", missing="drop")


def test_cubic_columns_summing_to_one_with_the_intercept_are_refused_as_rank_deficient(frame):
    with pytest.raises(dmixed.errors.DataError, match="rank deficient"):
        dmixed.mixedlm("y ~ cr(x, df=4) + z", frame, groups="g", missing="drop").fit()


def test_cubic_in_the_random_effects_is_patsys(frame):
    re_formula = "~cc(x, df=3, constraints='center')"
    sm = _statsmodels("y ~ z", frame, re_formula)
    model = dmixed.mixedlm("y ~ z", frame, groups="g", re_formula=re_formula, missing="drop")
    # (statsmodels names the random intercept after the groups)
    assert list(model.exog_re_names)[1:] == list(sm.data.exog_re_names)[1:]
    np.testing.assert_allclose(model.exog_re, sm.exog_re, rtol=1e-12, atol=1e-12)
    assert set(model.spec.stateful) == {"cc(x, df=3, constraints='center')"}
