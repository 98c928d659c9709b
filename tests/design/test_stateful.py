"""patsy's stateful transforms center, standardize and scale: state learned once over
the rows the fit uses, frozen into the spec (dmixed.design.stateful)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import patsy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import ModelSpec, build_spec
from dmixed.design.stateful import validated_state
from dmixed.errors import BadValuesError, CheckpointError, DataError, FormulaError

# the fixture's two rows with a missing value are dropped, as statsmodels drops them
pytestmark = pytest.mark.filterwarnings("ignore::dmixed.errors.DroppedRowsWarning")

FORMULAS = [
    ("y ~ center(x)", None),
    ("y ~ standardize(x)", None),
    ("y ~ scale(x) + z", None),
    ("y ~ standardize(x, ddof=1) + center(z)", None),
    ("y ~ standardize(x, center=False)", None),
    ("y ~ standardize(x, rescale=False) * C(a)", None),
    ("y ~ center(np.log(x)) * z", None),
    ("y ~ scale(x)", "~scale(x)"),
    ("scale(y) ~ center(x)", None),
]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 180
    df = pd.DataFrame(
        {
            "g": np.repeat(np.arange(30), 6),
            "x": rng.lognormal(size=n),
            "z": rng.normal(size=n),
            "a": np.array(["p", "q", "r"], dtype=object)[rng.integers(0, 3, n)],
        }
    )
    df["y"] = np.log(df.x) + 0.3 * df.z + rng.normal(size=n) + np.repeat(rng.normal(size=30), 6)
    df.loc[3, "z"] = np.nan  # dropped by missing="drop": the state ignores that row
    df.loc[10, "y"] = np.nan
    return df


def _patsy(formula: str, re_formula: str | None, df: pd.DataFrame):
    """patsy's (statsmodels') matrices of the rows statsmodels fits."""
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm(formula, df, groups="g", re_formula=re_formula, missing="drop")
    return m


@pytest.mark.parametrize(("formula", "re_formula"), FORMULAS)
def test_design_is_patsys(frame, formula, re_formula):
    """The matrices are statsmodels' (patsy's state over the rows kept), names and values."""
    sm = _patsy(formula, re_formula, frame)
    model = dmixed.mixedlm(formula, frame, groups="g", re_formula=re_formula, missing="drop")
    assert list(model.exog_names) == list(sm.exog_names)
    np.testing.assert_allclose(model.exog, sm.exog, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.endog, sm.endog, rtol=1e-12, atol=1e-12)
    if re_formula is not None:
        np.testing.assert_allclose(model.exog_re, sm.exog_re, rtol=1e-12, atol=1e-12)


def _precomputed(frame: pd.DataFrame) -> pd.DataFrame:
    kept = frame.dropna()
    x = kept.x.to_numpy()
    sd = x.std(ddof=0)
    return kept.assign(sx=(x - x.mean()) / sd, zc=kept.z - kept.z.mean())


def test_fit_is_the_fit_of_the_precomputed_columns(frame):
    """The estimates are those of the columns centred and scaled beforehand over the rows
    the fit uses (the same design up to rounding): fe_params, cov_re, llf, bse to 1e-8."""
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    ref = dmixed.mixedlm("y ~ sx + zc", _precomputed(frame), groups="g").fit()
    np.testing.assert_allclose(fit.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(fit.cov_re), np.asarray(ref.cov_re), rtol=1e-8)
    np.testing.assert_allclose(fit.bse.to_numpy(), ref.bse.to_numpy(), rtol=1e-8)
    assert fit.llf == pytest.approx(ref.llf, rel=1e-10)


@pytest.mark.parametrize(
    "formula", ["y ~ scale(x) + center(z)", "y ~ standardize(x, ddof=1) * center(z)"]
)
def test_agrees_with_statsmodels(frame, formula):
    """statsmodels at gtol=1e-10 (where it reaches the optimum) on the same formula:
    fe_params, cov_re, llf and bse to 1e-8, and its predictions of new rows."""
    sm = _patsy(formula, None, frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sm.fit(reml=True, method="bfgs", gtol=1e-10)
    d = dmixed.mixedlm(formula, frame, groups="g", missing="drop").fit()
    assert list(d.fe_params.index) == list(s.fe_params.index)
    np.testing.assert_allclose(d.fe_params.to_numpy(), s.fe_params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(d.cov_re), np.asarray(s.cov_re), rtol=1e-8)
    np.testing.assert_allclose(d.bse.to_numpy(), s.bse.to_numpy(), rtol=1e-8)
    assert d.llf == pytest.approx(s.llf, rel=1e-12)
    new = frame.iloc[::7].dropna()
    np.testing.assert_allclose(
        np.asarray(d.predict(new)), np.asarray(s.predict(new)), rtol=1e-8, atol=1e-10
    )


def test_predict_uses_the_frozen_state(frame):
    """New rows, one at a time, are centred with the fit's mean (not their own)."""
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    new = frame.dropna().iloc[[5, 9, 40]]
    one_by_one = np.concatenate([np.asarray(fit.predict(new.iloc[[i]])) for i in range(3)])
    np.testing.assert_allclose(one_by_one, np.asarray(fit.predict(new)), rtol=1e-13)
    kept = _precomputed(frame)
    ref = dmixed.mixedlm("y ~ sx + zc", kept, groups="g").fit()
    np.testing.assert_allclose(
        np.asarray(fit.predict(new)), np.asarray(ref.predict(kept.loc[new.index])), rtol=1e-8
    )


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 177), max_size=6, unique=True))
def test_transform_does_not_depend_on_the_chunks(cuts):
    """Any cut of the frame into pieces builds the same rows as the whole frame."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {"g": np.arange(178) % 9, "x": rng.lognormal(size=178), "z": rng.normal(size=178)}
    )
    df["y"] = df.x + rng.normal(size=178)
    spec = build_spec(df, "y ~ scale(x) + center(z) + standardize(z, ddof=1)", groups="g")
    whole = spec.transform(df).exog
    edges = [0, *sorted(cuts), len(df)]
    pieces = [spec.transform(df.iloc[a:b]).exog for a, b in zip(edges, edges[1:], strict=False)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    patsy_x = patsy.dmatrix("scale(x) + center(z) + standardize(z, ddof=1)", df)
    np.testing.assert_allclose(whole, np.asarray(patsy_x), rtol=1e-12, atol=1e-12)


def test_row_order_does_not_change_the_fit(frame):
    f = "y ~ scale(x) + center(z)"
    a = dmixed.mixedlm(f, frame, groups="g", missing="drop").fit()
    b = dmixed.mixedlm(f, frame.iloc[::-1], groups="g", missing="drop").fit()
    np.testing.assert_allclose(a.fe_params.to_numpy(), b.fe_params.to_numpy(), rtol=1e-10)


def test_saved_results_keep_the_state_as_numbers(frame, tmp_path):
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    fit.save(tmp_path / "r")
    text = "".join(p.read_text() for p in (tmp_path / "r").glob("*.json"))
    assert '"scale(x)"' in text and '"center(z)"' in text
    back = dmixed.load(tmp_path / "r")
    new = frame.dropna().iloc[:20]
    np.testing.assert_array_equal(np.asarray(back.predict(new)), np.asarray(fit.predict(new)))
    # the state is that of the fit, whatever new data the spec later evaluates
    state = fit.model.spec.to_dict()
    assert set(state["stateful"]) == {"scale(x)", "center(z)"}
    kept = frame.dropna()
    assert state["stateful"]["center(z)"]["mean"] == pytest.approx(kept.z.mean(), rel=1e-14)
    assert state["stateful"]["scale(x)"]["scale"] == pytest.approx(kept.x.std(ddof=0), rel=1e-13)
    rebuilt = ModelSpec.from_dict(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(rebuilt.transform(new).exog, fit.model.spec.transform(new).exog)


@pytest.mark.parametrize(
    ("stateful", "match"),
    [
        ({"scale(x)": {"mean": "__import__('os')", "scale": 1.0}}, "finite number"),
        ({"scale(x)": {"mean": 1.0, "scale": 0.0}}, "above 0"),
        ({"scale(x)": {"mean": float("nan"), "scale": 1.0}}, "finite number"),
        ({"scale(x)": {"mean": True, "scale": 1.0}}, "finite number"),
        ({"scale(x)": [1.0, 2.0]}, "must be"),
        ({"scale(x)": {"mean": 1.0, "code": 2.0}}, "must be"),
        ({"os.system('x')": {"mean": 1.0}}, "not a call of"),
        ({"scale(x)": {"mean": 1.0, "scale": 2.0}}, r"center\(z\)"),
        ([1.0], "must be a mapping"),
    ],
)
def test_saved_state_is_checked_as_plain_numbers(frame, stateful, match):
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    state = fit.model.spec.to_dict()
    state["stateful"] = stateful
    with pytest.raises((CheckpointError, FormulaError), match=match):
        ModelSpec.from_dict(state)
    if "center" not in match:
        with pytest.raises(CheckpointError, match=match):
            validated_state(stateful, "file.json")


def test_saved_state_of_a_call_the_formulas_lack_is_refused(frame):
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    state = fit.model.spec.to_dict()
    state["stateful"]["center(x)"] = {"mean": 1.0}
    with pytest.raises(CheckpointError, match=r"center\(x\), which its formulas do not call"):
        ModelSpec.from_dict(state)


def test_saved_spec_without_the_state_is_refused(frame):
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    state = fit.model.spec.to_dict()
    state["stateful"] = {"scale(x)": state["stateful"]["scale(x)"]}
    with pytest.raises(CheckpointError, match=r"'y ~ scale\(x\) \+ center\(z\)' calls center\(z\)"):
        ModelSpec.from_dict(state, source="spec.json")


@pytest.mark.parametrize(
    "term",
    [
        "center(x, 1)",
        "center(x, ddof=1)",
        "scale(x, ddof=d)",
        "scale(x, ddof=1.5)",
        "scale(x, ddof=-1)",
        "scale(x, ddof=True)",
        "standardize(x, center=1)",
        "standardize(x, center=x > 0)",
        "standardize(x, rescale=__import__('os'))",
        "standardize(x, 'a')",
        "standardize(x, center=True, center=False)",
        "standardize(x, **k)",
        "standardize()",
    ],
)
def test_only_constant_arguments_are_allowed(frame, term):
    with pytest.raises(FormulaError):
        build_spec(frame.assign(d=1, k=1), f"y ~ {term}", groups="g", missing="drop")


def test_a_variance_component_refuses_them(frame):
    with pytest.raises(FormulaError, match=r"within a variance component.*I\(\(x - 1.5\) / 2\)"):
        build_spec(frame, "y ~ 1", groups="g", vc_formula={"c": "0 + center(x)"}, missing="drop")


def test_dask_refuses_them_naming_the_transform_and_what_to_do(frame):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(frame.dropna(), npartitions=3)
    with pytest.raises(FormulaError, match=r"scale\(\).*Dask.*precompute the column"):
        dmixed.mixedlm("y ~ scale(x)", ddf, groups="g")


def test_a_constant_column_is_refused_when_standardized(frame):
    with pytest.raises(DataError, match=r"scale\(x\) divides by the standard deviation"):
        dmixed.mixedlm("y ~ scale(x)", frame.assign(x=2.0), groups="g", missing="drop")
    model = dmixed.mixedlm("y ~ z + center(x)", frame.assign(x=2.0), groups="g", missing="drop")
    assert np.all(model.exog[:, -1] == 0)


def test_a_refusal_names_the_re_formula_that_calls_them(frame):
    """The re_formula's call is named with its role and text, not the main formula."""
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(frame.dropna(), npartitions=3)
    with pytest.raises(FormulaError, match=r"^re_formula '~center\(z\)': the stateful"):
        dmixed.mixedlm("y ~ x", ddf, groups="g", re_formula="~center(z)")
    with pytest.raises(DataError, match=r"^re_formula '~scale\(c\)': scale\(c\) divides"):
        dmixed.mixedlm(
            "y ~ x", frame.assign(c=1.0), groups="g", re_formula="~scale(c)", missing="drop"
        )


def _command_line_refusal(data, tmp_path, monkeypatch, formula, re_formula, vc=None) -> str:
    """stderr of ``dmixed fit`` of ``data``, asserting that it exits with status 2
    before :func:`dmixed.cluster.connect` is reached."""
    import contextlib
    import io

    import dmixed.cluster
    from dmixed import cli

    called = []
    monkeypatch.setattr(dmixed.cluster, "connect", lambda *a, **k: called.append(a))
    args = ["fit", "--data", data, "--groups", "g", "--quiet", "--formula", formula]
    args += ["--re-formula", re_formula] if re_formula else []
    args += ["--vc", vc] if vc else []
    args += ["--output", tmp_path / "out"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main([str(a) for a in args])
    assert code == 2, err.getvalue()
    assert not called
    return err.getvalue()


def test_the_command_line_refuses_them_before_a_cluster_starts(frame, tmp_path, monkeypatch):
    """Files are read in partitions: refused, naming the --re-formula, before
    :func:`dmixed.cluster.connect` is reached."""
    frame.dropna().to_parquet(tmp_path / "d.parquet")
    err = _command_line_refusal(tmp_path / "d.parquet", tmp_path, monkeypatch, "y ~ x", "~scale(z)")
    assert "re_formula '~scale(z)'" in err and "'y ~ x'" not in err


def _hive(frame, tmp_path) -> str:
    """A directory of Hive-partitioned Parquet files (``part=a/``, ``part=b/``)."""
    root = tmp_path / "hive"
    rows = frame.dropna()
    for i, key in enumerate(["a", "b"]):
        (root / f"part={key}").mkdir(parents=True)
        rows.iloc[i::2].to_parquet(root / f"part={key}" / "d.parquet")
    return str(root)


def _remote(frame, tmp_path) -> str:
    """A Parquet file on fsspec's in-memory filesystem: a URL with a scheme, whose
    columns the command does not read before a cluster starts (no network)."""
    import fsspec

    url = f"memory://{tmp_path.name}/d.parquet"
    with fsspec.open(url, "wb") as f:
        frame.dropna().to_parquet(f)
    return url


@pytest.mark.parametrize("where", [_hive, _remote])
@pytest.mark.parametrize(
    ("formula", "re_formula", "named"),
    [
        ("y ~ center(x) + z", None, "formula 'y ~ center(x) + z': the stateful transform center()"),
        ("y ~ x", "~scale(z)", "re_formula '~scale(z)': the stateful transform scale()"),
        ("y ~ standardize(np.log(x), ddof=1)", None, "transform standardize()"),
    ],
)
def test_the_command_line_refuses_them_on_hive_and_remote_parquet_before_a_cluster(
    frame, tmp_path, monkeypatch, where, formula, re_formula, named
):
    """Hive-partitioned and remote Parquet, whose columns are not read before the data
    is: refused from the formula's text, before a cluster starts, with the words of
    plain Parquet files."""
    err = _command_line_refusal(where(frame, tmp_path), tmp_path, monkeypatch, formula, re_formula)
    assert named in err and "not data read from files" in err
    assert "Dask collection" not in err
    if re_formula:
        assert f"'{formula}'" not in err


@pytest.mark.parametrize("where", [_hive, _remote, None])
@pytest.mark.parametrize(
    ("formula", "vc", "named"),
    [
        (
            "y ~ x",
            "a=0 + center(z)",
            "vc_formula['a'] '0 + center(z)': the stateful transform center()",
        ),
        ("y ~ x", "a=0 + C(a):scale(z, ddof=1)", "vc_formula['a'] '0 + C(a):scale(z, ddof=1)'"),
    ],
)
def test_the_command_line_refuses_them_in_a_variance_component_before_a_cluster(
    frame, tmp_path, monkeypatch, where, formula, vc, named
):
    """A variance component's formula (``--vc``) is checked too, naming the component,
    with the same words whether the columns are read first (plain Parquet files:
    ``where`` None) or not (Hive-partitioned, remote)."""
    if where is None:
        frame.dropna().to_parquet(tmp_path / "d.parquet")
        data = str(tmp_path / "d.parquet")
    else:
        data = where(frame, tmp_path)
    err = _command_line_refusal(data, tmp_path, monkeypatch, formula, None, vc)
    assert named in err and "within a variance component" in err
    assert f"'{formula}'" not in err


def test_the_text_check_finds_the_calls_the_full_check_finds():
    """:func:`frozen_calls` (the formula's text alone) finds what the parse on the
    columns finds; a column's ``center`` attribute is no call of the transform."""
    from dmixed.design.build import parse_formulas
    from dmixed.design.formula import frozen_calls

    columns = {"y", "x", "z", "a"}
    for formula, _ in FORMULAS:
        parsed = parse_formulas(formula, None, None, columns)
        assert frozen_calls(formula, "formula", lhs=True) == parsed.collected("stateful")
    assert frozen_calls("y ~ np.log(x) + C(a) + I(x ** 2)", "formula", lhs=True) == []


@pytest.mark.parametrize(
    ("formula", "re_formula", "what"),
    [
        ("y ~ center(np.log(x))", None, "fixed-effects design"),
        ("y ~ scale(np.log(x))", None, "fixed-effects design"),
        ("y ~ standardize(np.log(x), rescale=False)", None, "fixed-effects design"),
        ("center(np.log(x)) ~ z", None, "response"),
        ("y ~ z", "~center(np.log(x))", "random-effects design"),
    ],
)
def test_values_that_are_not_finite_are_refused_as_the_plain_call_refuses_them(
    frame, formula, re_formula, what
):
    """np.log of the values below 0 is NaN: refused as ``y ~ np.log(x)`` is (the same
    count of rows), not frozen as a NaN mean nor read as a column that does not vary."""
    df = frame.dropna().assign(x=frame.dropna().x - 1.0)
    bad = int((df.x <= 0).sum())
    assert bad > 0
    with pytest.raises(BadValuesError, match=rf"\({bad} rows\)") as plain:
        dmixed.mixedlm("y ~ np.log(x)", df, groups="g")
    assert str(plain.value).startswith("non-finite values in fixed-effects design column(s)")
    call = next(
        t for t in re.split(r"\s*[~+]\s*", formula + "+" + (re_formula or "")) if "log" in t
    )
    expected = rf"^non-finite values in {what} column\(s\) '{re.escape(call)}' \({bad} rows\)"
    with pytest.raises(BadValuesError, match=expected):
        dmixed.mixedlm(formula, df, groups="g", re_formula=re_formula)


def _saved_state(frame) -> dict:
    fit = dmixed.mixedlm("y ~ scale(x) + center(z)", frame, groups="g", missing="drop").fit()
    return fit.model.spec.to_dict()


@pytest.mark.parametrize(
    ("stateful", "match"),
    [
        # a JSON integer too large for a float
        (
            {"scale(x)": {"mean": 1.0, "scale": 1.0}, "center(z)": {"mean": int("1" * 400)}},
            r"saved mean of center\(z\) must be a finite number",
        ),
        # standardize needs its scale
        (
            {"scale(x)": {"mean": 1.0}, "center(z)": {"mean": 0.0}},
            r"saved state of scale\(x\) must be \{'mean': number, 'scale': number\}",
        ),
        # center has no scale
        (
            {"scale(x)": {"mean": 1.0, "scale": 1.0}, "center(z)": {"mean": 0.0, "scale": 7.0}},
            r"saved state of center\(z\) must be \{'mean': number\}",
        ),
    ],
)
def test_saved_state_holds_exactly_what_each_call_needs(frame, stateful, match):
    state = _saved_state(frame)
    state["stateful"] = stateful
    with pytest.raises(CheckpointError, match=r"^spec\.json: .*" + match):
        ModelSpec.from_dict(state, source="spec.json")


def test_standardize_without_rescale_keeps_only_its_mean(frame):
    state = dmixed.mixedlm(
        "y ~ standardize(x, rescale=False)", frame, groups="g", missing="drop"
    ).spec.to_dict()
    assert state["stateful"] == {
        "standardize(x, rescale=False)": {
            "mean": pytest.approx(frame.dropna(subset=["y"]).x.mean(), rel=1e-13)
        }
    }
    ModelSpec.from_dict(json.loads(json.dumps(state)))
    state["stateful"]["standardize(x, rescale=False)"]["scale"] = 1.0
    with pytest.raises(CheckpointError, match=r"must be \{'mean': number\}"):
        ModelSpec.from_dict(state)
