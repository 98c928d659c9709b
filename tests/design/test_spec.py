"""dmixed.design.spec: the spec against statsmodels, its fields, pickling, partitions."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pandas as pd
import pytest

from dmixed.design import build_spec

from .frames import assert_same, by_name, make_df, mixedlm, vc_dense

DIETOX_CASES = [
    ("Weight ~ Time", {}),
    ("Weight ~ Time", {"re_formula": "1"}),
    ("Weight ~ Time", {"re_formula": "1 + Time"}),
    ("Weight ~ Time", {"re_formula": "0 + Time"}),
    ("Weight ~ Time + C(Evit) + C(Cu) + Time:C(Cu)", {}),
    ("Weight ~ Time * C(Cu) + I(Time**2) + np.log(Time)", {"re_formula": "1 + I(Time/10)"}),
    ("Weight ~ C(Cu, Treatment(reference=2)) + Time - 1", {}),
    ("Weight ~ 0 + C(Evit):C(Cu) + Time", {}),
    ("np.log(Weight) ~ Time + Feed", {"missing": "drop", "re_formula": "1 + Time"}),
]


@pytest.mark.parametrize(("formula", "kw"), DIETOX_CASES)
def test_dietox_matches_statsmodels(dietox, formula, kw):
    spec = build_spec(dietox, formula, groups="Pig", **kw)
    dm = spec.transform(dietox)
    mod = mixedlm(formula, dietox, groups="Pig", **kw)
    assert sorted(spec.exog_names) == sorted(mod.exog_names)
    np.testing.assert_allclose(dm.exog, by_name(mod.exog, mod.exog_names, spec.exog_names))
    np.testing.assert_allclose(dm.endog, mod.endog)
    assert spec.exog_re_names == list(mod.data.exog_re_names)
    np.testing.assert_allclose(dm.exog_re, mod.exog_re)
    np.testing.assert_array_equal(dm.groups, mod.groups)
    # one dense float64 block (column-major on the numeric fast path: the kernels sum
    # column by column)
    assert dm.exog.dtype == np.float64
    assert dm.exog.flags.c_contiguous or dm.exog.flags.f_contiguous
    assert dm.endog.shape == (mod.nobs,)
    assert spec.endog_name == mod.endog_names
    if kw.get("missing") == "drop":
        assert dm.n_dropped == len(dietox) - mod.nobs > 0


@pytest.mark.parametrize(
    ("re_formula", "vc_formula"),
    [
        ("1", {"cask": "0 + C(cask)"}),
        (None, {"cask": "0 + C(cask)"}),
        (None, {"cask": "0 + cask"}),
        ("1", {"cask": "0 + C(cask)", "slope": "0 + C(cask):xs", "lin": "0 + xs"}),
    ],
)
def test_pastes_vc_matches_statsmodels(pastes, re_formula, vc_formula):
    df = pastes.copy()
    df["xs"] = np.linspace(-1.0, 2.0, len(df))
    spec = build_spec(
        df, "strength ~ 1", groups="batch", re_formula=re_formula, vc_formula=vc_formula
    )
    dm = spec.transform(df)
    mod = mixedlm("strength ~ 1", df, groups="batch", re_formula=re_formula, vc_formula=vc_formula)
    assert spec.vc_names == list(mod.exog_vc.names) == sorted(vc_formula)
    assert spec.exog_re_names == list(mod.data.exog_re_names)
    if re_formula is None:
        assert dm.exog_re.shape == (len(df), 0)
    else:
        np.testing.assert_allclose(dm.exog_re, mod.exog_re)
    keys = sorted(df["batch"].unique())
    for l, name in enumerate(spec.vc_names):  # noqa: E741
        dense = vc_dense(dm, spec, l)
        assert dm.vc_cols[l].shape[1] == 1  # one non-zero entry per row
        for gi, key in enumerate(keys):
            rows = np.flatnonzero(dm.groups == key)
            sm_mat = np.asarray(mod.exog_vc.mats[l][gi])
            sm_names = list(mod.exog_vc.colnames[l][gi])
            ours = by_name(dense[rows], spec.vc_column_names[l], sm_names)
            np.testing.assert_allclose(ours, sm_mat, err_msg=f"{name} / {key}")
            # columns of the component not in statsmodels' group design are empty
            other = [c for c in spec.vc_column_names[l] if c not in sm_names]
            if other:
                assert not by_name(dense[rows], spec.vc_column_names[l], other).any()


def test_pastes_names_and_levels(pastes):
    spec = build_spec(pastes, "strength ~ 1", groups="batch", vc_formula={"cask": "0 + C(cask)"})
    assert spec.vc_column_names == [["C(cask)[a]", "C(cask)[b]", "C(cask)[c]"]]
    assert spec.exog_re_names == []
    assert spec.levels["cask"] == ["a", "b", "c"]
    assert spec.columns_used == ["strength", "cask", "batch"]
    dm = spec.transform(pastes)
    assert dm.groups.dtype == object and dm.groups[0] == "A"


def test_interface_fields_and_pickle():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ x1 * a + C(k) + I(x2**2)",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"z": "0 + C(cls)", "b": "0 + b"},
        weights="w",
    )
    assert spec.endog_name == "y"
    assert spec.exog_names[0] == "Intercept"
    assert "a[T.lo]" in spec.exog_names and "x1:a[T.lo]" in spec.exog_names
    assert "C(k)[T.2]" in spec.exog_names and "I(x2 ** 2)" in spec.exog_names
    assert spec.exog_re_names == ["g", "x1"]
    assert spec.vc_names == ["b", "z"]  # sorted
    assert spec.vc_column_names[0] == ["b[u]", "b[v]", "b[w]"]
    assert len(spec.vc_column_names[1]) == 40
    assert spec.group_name == "g" and spec.weights_name == "w" and spec.missing == "raise"
    assert set(spec.columns_used) == {"y", "x1", "a", "k", "x2", "cls", "b", "g", "w"}
    spec2 = pickle.loads(pickle.dumps(spec))
    assert spec2 == spec
    d1, d2 = spec.transform(df), spec2.transform(df)
    assert_same(d1, d2, spec)
    np.testing.assert_array_equal(d1.weights, df["w"].to_numpy())
    np.testing.assert_array_equal(d1.groups, df["g"].to_numpy())
    assert d1.groups.dtype == np.int64
    # the spec is frozen
    with pytest.raises(AttributeError):
        spec.missing = "drop"  # type: ignore[misc]


def test_partition_with_missing_levels_keeps_all_columns():
    df = make_df(300)
    spec = build_spec(df, "y ~ a + x1:a + C(k)", groups="g", vc_formula={"c": "0 + C(cls)"})
    part = df[(df["a"] == "mid") & (df["k"] == 2)]
    full = spec.transform(df)
    dm = spec.transform(part)
    assert dm.exog.shape == (len(part), len(spec.exog_names))
    mask = ((df["a"] == "mid") & (df["k"] == 2)).to_numpy()
    np.testing.assert_array_equal(dm.exog, full.exog[mask])
    np.testing.assert_array_equal(vc_dense(dm, spec, 0), vc_dense(full, spec, 0)[mask])
    # reordered rows: same rows, same matrices
    perm = np.random.default_rng(1).permutation(len(df))
    dmp = spec.transform(df.iloc[perm])
    np.testing.assert_array_equal(dmp.exog, full.exog[perm])


def test_empty_partition():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ x1 + a",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"c": "0 + C(cls)"},
        weights="w",
    )
    dm = spec.transform(df.iloc[:0])
    assert dm.exog.shape == (0, len(spec.exog_names))
    assert dm.exog_re.shape == (0, 2)
    assert dm.endog.shape == (0,)
    assert dm.vc_cols[0].shape[0] == 0 and dm.weights.shape == (0,)


def test_string_pyarrow_never_reaches_formulaic_as_numbers():
    df = make_df()
    df["a"] = df["a"].astype("string[pyarrow]")
    spec = build_spec(df, "y ~ a", groups="g")
    assert spec.exog_names == ["Intercept", "a[T.lo]", "a[T.mid]", "a[T.top]"]
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.exog[:, 1], (df["a"] == "lo").to_numpy(dtype=float))


def test_transform_speed_pandas():
    n = 500_000
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "a": pd.Series(np.array(list("abcde"), dtype=object)[rng.integers(0, 5, n)]),
            "g": rng.integers(0, 1000, n),
        }
    )
    spec = build_spec(df, "y ~ x1 + x2 + a", groups="g", re_formula="1 + x1")
    spec.transform(df)
    t0 = time.perf_counter()
    spec.transform(df)
    assert time.perf_counter() - t0 < 2.0


def test_quoted_column_names():
    df = make_df().rename(columns={"x1": "my x", "a": "the a"})
    spec = build_spec(
        df,
        "y ~ `my x` + I(`my x` * 2) + Q('my x') + `the a`",
        groups="g",
        re_formula="0 + `my x`",
        vc_formula={"v": "0 + C(`the a`)", "u": "0 + `the a`:`my x`"},
    )
    # (statsmodels' order: the factor's columns before the numeric terms)
    assert spec.exog_names[4:] == ["my x", "I(`my x` * 2)", "Q('my x')"]
    assert spec.exog_re_names == ["my x"]
    assert spec.vc_column_names[1][0] == "C(`the a`)[hi]"
    assert spec.vc_column_names[0][0] == "the a[hi]:my x"
    assert spec.columns_used == ["y", "my x", "the a", "g"]
    dm = spec.transform(df)
    np.testing.assert_array_equal(dm.exog[:, 4], df["my x"].to_numpy())
    np.testing.assert_array_equal(dm.exog[:, 6], df["my x"].to_numpy())
    np.testing.assert_array_equal(dm.vc_vals[0][:, 0], df["my x"].to_numpy())


def test_transform_without_response_for_prediction():
    df = make_df(60)
    spec = build_spec(
        df,
        "np.log(y + 10) ~ x1 + a",
        groups="g",
        re_formula="1 + x1",
        vc_formula={"c": "0 + C(cls)"},
        weights="w",
    )
    full = spec.transform(df)
    new = df.drop(columns=["y", "w"])
    new.loc[3, "x1"] = np.nan  # missing in a used column: still handled (raise)
    with pytest.raises(ValueError, match=r"missing values in column 'x1' \(1 row\)"):
        spec.transform(new, response=False)
    dm = spec.transform(new.dropna(), response=False)
    keep = new["x1"].notna().to_numpy()
    assert np.isnan(dm.endog).all() and dm.endog.shape == (keep.sum(),)
    assert dm.weights is None
    np.testing.assert_array_equal(dm.exog, full.exog[keep])
    np.testing.assert_array_equal(dm.exog_re, full.exog_re[keep])
    np.testing.assert_array_equal(dm.vc_cols[0], full.vc_cols[0][keep])
    with pytest.raises(ValueError, match=r"not found in the data: 'y', 'w'"):
        spec.transform(new)


CODING_CASES = [
    "y ~ C(a, Diff) + x1",
    "y ~ C(a, Poly) + C(b, Sum(omit='v'))",
    "y ~ C(a, Poly):x1 + C(b, Helmert):x2",
    "y ~ 0 + C(a, Diff) + I(x1 > 0)",
    "y ~ I(x1 > 0) * C(b, Diff)",
    # boolean columns inside an expression compute as booleans, as in patsy: ``+`` of
    # two is their ``or``, a factor of levels False and True (read as numbers,
    # ``I(f + h)`` was 0, 1 or 2 under patsy's name less its ``[T.True]``; ``|``,
    # ``^`` and ``~`` failed)
    "y ~ x1 + I(f + h)",
    "y ~ x1 + I(f | (x1 > 0))",
    "y ~ x1 + I(f ^ h) + I(~h)",
    "y ~ 0 + I(f * h):x1 + I(f)",
    "y ~ x1 + I(f != h)",
    # any boolean factor is one, as in patsy: a call outside I(), and a column read as
    # it is beside an expression that computes on it
    "y ~ x1 + np.logical_and(f, x1 > 0)",
    "y ~ f + I(f | h)",
    # C() of booleans is one too; text columns of other levels compare by value
    "y ~ C(x1 > 0) + C(a == b)",
    "y ~ x1 + I(a != b):x2 + a",
]


@pytest.mark.parametrize("formula", CODING_CASES)
@pytest.mark.parametrize("source", ["pandas", "dask"])
def test_factor_coding_matches_statsmodels(formula, source):
    """patsy's contrasts, boolean ``I()`` terms and boolean columns in expressions:
    statsmodels' names (patsy's spacing ``I( ~h)`` aside) and columns, from pandas and
    from Dask partitions (the spec pickled to each)."""
    df = make_df(300, seed=3)
    rng = np.random.default_rng(5)
    df["f"] = rng.random(len(df)) > 0.5
    df["h"] = rng.random(len(df)) > 0.3
    data = df
    if source == "dask":
        import dask.dataframe as dd

        data = dd.from_pandas(df, npartitions=3)
    spec = pickle.loads(pickle.dumps(build_spec(data, formula, groups="g")))
    mod = mixedlm(formula, df, groups="g")
    theirs = [n.replace("( ~", "(~") for n in mod.exog_names]
    assert sorted(spec.exog_names) == sorted(theirs)
    exog = np.vstack([spec.transform(df.iloc[i::3]).exog for i in range(3)])
    want = by_name(mod.exog, theirs, spec.exog_names)
    np.testing.assert_allclose(exog, np.vstack([want[i::3] for i in range(3)]), atol=1e-14)


def test_saved_spec_with_other_names_is_refused():
    """A spec saved under names that the formula no longer rebuilds to (earlier versions
    labelled Diff contrasts one level up) is refused, never read under the new names."""
    from dmixed.design import ModelSpec
    from dmixed.errors import CheckpointError

    formula = "y ~ C(a, Diff) + C(b, Poly):x1 + I(x1 > 0)"
    state = build_spec(make_df(), formula, groups="g").to_dict()
    assert ModelSpec.from_dict(state).exog_names == state["exog_names"]  # saved as built
    levels = state["levels"]["a"]
    diff = [f"C(a, Diff)[D.{v}]" for v in levels[:-1]]
    assert state["exog_names"][1 : len(levels)] == diff
    state["exog_names"][1 : len(levels)] = [f"C(a, Diff)[D.{v}]" for v in levels[1:]]
    with pytest.raises(CheckpointError, match=r"does not rebuild to the same exog_names.*earl"):
        ModelSpec.from_dict(state)


@pytest.mark.parametrize("ids", ["text", "categorical", "int"])
def test_formulaic_frame_leaves_out_columns_only_components_read(monkeypatch, ids):
    """A component that reads its columns (``0 + C(id)``) reads the prepared codes, so
    formulaic's frame holds only the columns its formulas read (no Categorical of the
    component's levels is built); the design is the one read from the whole frame."""
    import dmixed.design.spec as spec_module

    rng = np.random.default_rng(3)
    n = 200
    raw = rng.integers(0, 40, n)
    col = {
        "text": np.array([f"s{i}" for i in raw], dtype=object),
        "categorical": pd.Categorical(raw),
        "int": raw * 7,
    }[ids]
    df = pd.DataFrame(
        {
            "y": rng.standard_normal(n),
            "x": rng.standard_normal(n),
            "h": raw % 3,
            "g": raw % 5,
            "id": col,
        }
    )
    spec = build_spec(df, "y ~ x + C(h)", groups="g", vc_formula={"c": "0 + C(id)"})
    assert spec.dense_columns == ["y", "x", "h"]
    seen = []
    frame_of = spec_module.normalized_frame

    def recorded(spec, columns, n, only=None):
        frame = frame_of(spec, columns, n, only)
        seen.append(list(frame.columns))
        return frame

    monkeypatch.setattr(spec_module, "normalized_frame", recorded)
    design = spec.transform(df)
    assert seen == [["y", "x", "h"]]
    monkeypatch.setattr(
        spec_module, "normalized_frame", lambda s, c, n, only=None: frame_of(s, c, n)
    )
    whole = spec.transform(df)
    assert np.array_equal(design.vc_cols[0], whole.vc_cols[0])
    assert np.array_equal(design.exog, whole.exog) and np.array_equal(design.endog, whole.endog)


@pytest.mark.parametrize("dtype", ["str", "category"])
@pytest.mark.parametrize("missing", ["none", "drop", "label dropped"])
def test_text_codes_found_by_the_scan_are_those_of_a_look_up(monkeypatch, missing, dtype):
    """The codes of an Arrow-backed text column (or a categorical whose levels are its
    categories) found with its levels by the scan are what preparing the frame takes
    (no second look-up of its values) and equal those of the look-up, also where rows
    are dropped (``missing="drop"``: the levels are those of the rows kept; a value only
    in a dropped row is unknown, and its row dropped)."""
    import dmixed.design.levels as levels_module
    import dmixed.design.prepare as prepare_module
    from dmixed.design.prepare import prepare_columns
    from dmixed.design.spec import build_spec_prepared

    rng = np.random.default_rng(4)
    n = 300
    ids = np.array([f"é{i}" if i % 3 else f"s{i}" for i in rng.integers(0, 60, n)], dtype=object)
    x = rng.standard_normal(n)
    if missing != "none":
        ids[rng.random(n) < 0.05] = None
    if missing == "label dropped":  # the only row of level "zz" has a missing x
        ids[0], x[0] = "zz", np.nan
    df = pd.DataFrame(
        {"y": rng.standard_normal(n), "x": x, "g": np.arange(n) % 7, "id": pd.array(ids, dtype)}
    )
    kw = dict(groups="g", vc_formula={"c": "0 + C(id)"}, missing="drop")
    looked_up = []
    level_codes = levels_module.level_codes

    def recorded(s, *args, **kwargs):
        looked_up.append(s.name)
        return level_codes(s, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "level_codes", recorded)
    spec, prepared, _ = build_spec_prepared(df, "y ~ x", **kw)
    # (a categorical's category "zz" absent from the rows kept: looked up)
    assert looked_up == (["id"] if (dtype, missing) == ("category", "label dropped") else [])
    assert "zz" not in spec.levels["id"]
    if dtype == "str":  # the scan's Arrow levels kept by the spec, not rebuilt from the list
        import dmixed.design.spec as spec_module

        monkeypatch.setattr(spec_module, "text_array", None)
        assert spec.text_levels("id").to_pylist() == spec.levels["id"]
    again = prepare_columns(spec, df)
    assert again.columns["id"].dtype == prepared.columns["id"].dtype == np.int64
    np.testing.assert_array_equal(again.columns["id"], prepared.columns["id"])
    np.testing.assert_array_equal(again.keep, prepared.keep)


@pytest.mark.parametrize("formula", ["y ~ x1 * x2 + a", "y ~ x1 + np.log(x2) + a"])
def test_drop_cols_keeps_the_other_columns_and_survives_the_saved_form(formula):
    """``drop_cols``: the design is the full one less those columns (plain or formulaic
    matrices alike), and a saved spec rebuilds with them dropped."""
    from dmixed.design.spec import ModelSpec

    df = make_df()
    full = build_spec(df, formula, groups="g")
    drop = [full.exog_names[1], full.exog_names[-1]]
    spec = build_spec(df, formula, groups="g", drop_cols=drop)
    kept = [c for c in full.exog_names if c not in drop]
    assert spec.exog_names == kept
    want = full.transform(df).exog[:, [full.exog_names.index(c) for c in kept]]
    np.testing.assert_array_equal(spec.transform(df).exog, want)
    np.testing.assert_array_equal(spec.transform(df, response=False).exog, want)
    state = spec.to_dict()
    assert state["drop_cols"] == drop and "drop_cols" not in full.to_dict()
    again = ModelSpec.from_dict(state)
    assert again.exog_names == kept
    np.testing.assert_array_equal(again.transform(df).exog, want)


# -- the straight-line build of plain numeric formulas ------------------------------

PLAIN_CASES = [
    ("y ~ x1 + x2", None),
    ("y ~ x1 + x2", "~x1"),
    ("y ~ x1 - 1", "1"),
    ("y ~ 0 + x2 + x1", "0 + x1"),
    ("y~x1+x2+x1", "~ x2 + x1"),
]


def _plain_frame(group: str) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 60
    g = np.repeat(np.arange(12), 5)
    keys = {"int": g, "uint": g.astype(np.uint16), "str": pd.array(g.astype(str), dtype="str")}
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "g": keys[group],
        }
    )


def _built(data, formula, re_formula, general: bool, monkeypatch):
    from dmixed.design import spec as spec_module

    with monkeypatch.context() as m:
        if general:
            m.setattr(spec_module, "build_plain_numeric", lambda *args: None)
        return spec_module.build_spec_prepared(data, formula, "g", re_formula=re_formula)


@pytest.mark.parametrize("group", ["int", "uint", "str"])
@pytest.mark.parametrize(("formula", "re_formula"), PLAIN_CASES)
def testbuild_plain_numeric_build_is_the_general_one(formula, re_formula, group, monkeypatch):
    """A formula of float64 columns is built in a straight line: the same spec (every
    field, pickled bit for bit), prepared columns and design as the general steps."""
    data = _plain_frame(group)
    fast = _built(data, formula, re_formula, False, monkeypatch)
    slow = _built(data, formula, re_formula, True, monkeypatch)
    assert pickle.dumps(fast.spec) == pickle.dumps(slow.spec)
    assert list(fast.prepared.columns) == list(slow.prepared.columns)
    for c, values in fast.prepared.columns.items():
        np.testing.assert_array_equal(values, slow.prepared.columns[c], strict=True)
    assert fast.prepared.group.equals(slow.prepared.group)
    assert (fast.prepared.keep, fast.prepared.n_dropped) == (None, 0)
    a, b = fast.spec.transform(data, prepared=fast.prepared), slow.spec.transform(data)
    for name in ("endog", "exog", "exog_re", "groups"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), strict=True)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.assign(x1=d["x1"].where(d.index != 3)),  # a missing value
        lambda d: d.assign(y=1.5),  # a constant response
        lambda d: d.assign(x2=np.arange(len(d))),  # integers: references, rounding
        lambda d: d.assign(g=d["g"].astype(object)),  # objects: scanned for their kind
        lambda d: d.assign(g=d["g"].astype(float)),  # numbers that may be missing
    ],
)
def testbuild_plain_numeric_build_leaves_the_rest_to_the_general_steps(change, monkeypatch):
    """Data the straight line does not cover goes through the general steps, which raise
    and warn as before (the straight line returns None)."""
    from dmixed.design.spec import build_plain_numeric

    data = change(_plain_frame("int"))
    args = ("y ~ x1 + x2", "g", "~x1", None, None, "raise", None)
    assert build_plain_numeric(data, *args) is None
    assert build_plain_numeric(_plain_frame("int"), *args) is not None


@pytest.mark.parametrize("drop_cols", [None, ['Q("a b"):x']])
def test_saved_spec_in_formulaics_spelling_still_loads(drop_cols):
    """A spec saved before names followed patsy's spelling of text (``Q('a b')`` for
    ``Q("a b")``) loads, with the names it was saved under."""
    from dmixed.design import ModelSpec
    from dmixed.design.labels import formulaic_spelling

    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {"g": np.arange(60) % 6, "a b": rng.normal(size=60), "x": rng.normal(size=60)}
    )
    df["y"] = rng.normal(size=60)
    formula = 'y ~ Q("a b") + x + Q("a b"):x'
    vc_formula = {"v": '0 + Q("a b"):x'}
    spec = build_spec(
        df, formula, "g", re_formula='1 + Q("a b")', vc_formula=vc_formula, drop_cols=drop_cols
    )
    assert 'Q("a b")' in spec.exog_names and 'Q("a b")' in spec.exog_re_names
    assert [list(c) for c in spec.vc_column_names] == [['Q("a b"):x']]
    state = spec.to_dict()
    assert ModelSpec.from_dict(state).exog_names == spec.exog_names
    old = dict(state)
    old["exog_names"] = formulaic_spelling(state["exog_names"], formula)
    old["exog_re_names"] = formulaic_spelling(state["exog_re_names"], state["re_formula"])
    old["vc_column_names"] = [
        formulaic_spelling(c, vc_formula["v"]) for c in state["vc_column_names"]
    ]
    if drop_cols is not None:
        old["drop_cols"] = formulaic_spelling(state["drop_cols"], formula)
    loaded = ModelSpec.from_dict(old)
    assert loaded.exog_names == old["exog_names"]
    assert "Q('a b')" in loaded.exog_names
    assert loaded.exog_re_names == old["exog_re_names"]
    assert [list(c) for c in loaded.vc_column_names] == [["Q('a b'):x"]]
    if drop_cols is not None:
        from dmixed.design.spec import dropped_columns

        assert dropped_columns(loaded) == ["Q('a b'):x"]


def test_text_keys_numbered_only_for_the_rows_of_an_in_process_fit():
    # ModelSpec.transform keeps its signature and numbers no keys; the in-process
    # fit's transform_numbered numbers text keys from their column, read-only
    from dmixed.design.spec import transform_numbered
    from dmixed.stats.keys import sorted_codes

    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "y": rng.standard_normal(30),
            "x": rng.standard_normal(30),
            "g": pd.Series(rng.choice(["b", "é", "a", "日本", ""], 30), dtype="str"),
        }
    )
    spec = build_spec(df, "y ~ x", groups="g")
    plain = spec.transform(df)
    numbered = transform_numbered(spec, df)
    assert plain.group_codes is None
    np.testing.assert_array_equal(numbered.groups, plain.groups)
    codes, labels = numbered.group_codes
    want_codes, want_labels = sorted_codes(plain.groups)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(labels, want_labels)
    assert not any(a.flags.writeable for a in (numbered.groups, codes, labels))


@pytest.mark.parametrize(
    ("formula", "re_formula"),
    [
        ("y ~ bs(x, df=1, degree=1) + z", None),
        (
            "y ~ z + bs(x, knots=(), degree=1, lower_bound=-5, upper_bound=5):z",
            "~bs(x, df=1, degree=1)",
        ),
        ('y ~ bs(Q("a b"), df=1, degree=1) + z', None),  # (both earlier spellings at once)
    ],
)
def test_saved_spec_naming_a_one_column_spline_with_its_index_still_loads(formula, re_formula):
    """A spline of one column is named as patsy names it, ``bs(x, df=1, degree=1)``;
    a spec saved when it was named ``bs(x, df=1, degree=1)[0]`` loads, with the names
    it was saved under and the same columns, and a spec with the new name says that
    earlier versions rebuild it otherwise (saved statistics carry the names' format)."""
    from dmixed.design import ModelSpec
    from dmixed.design.labels import formulaic_spelling

    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {"g": np.arange(60) % 6, "x": rng.uniform(-3, 3, 60), "z": rng.normal(size=60)}
    )
    df["a b"], df["y"] = df["x"], rng.normal(size=60)
    spec = build_spec(df, formula, "g", re_formula=re_formula)
    ones = [n for n in [*spec.exog_names, *spec.exog_re_names] if "bs(" in n]
    assert ones and not any("[0]" in n for n in ones)
    assert spec.names_need_this_version()
    state = spec.to_dict()

    def earlier(names: list, formula: str | None) -> list:
        names = formulaic_spelling(names, formula)
        return [
            ":".join(f + "[0]" if f.startswith("bs(") else f for f in n.split(":")) for n in names
        ]

    old = {
        **state,
        "exog_names": earlier(state["exog_names"], formula),
        "exog_re_names": earlier(state["exog_re_names"], re_formula),
    }
    assert old["exog_names"] != state["exog_names"]
    loaded = ModelSpec.from_dict(old)
    assert loaded.exog_names == old["exog_names"]
    assert loaded.exog_re_names == old["exog_re_names"]
    assert not loaded.names_need_this_version()  # (earlier versions rebuild these names)
    new = df.assign(x=rng.uniform(-2.9, 2.9, 60)).assign(**{"a b": lambda d: d["x"]})
    np.testing.assert_array_equal(loaded.transform(new).exog, spec.transform(new).exog)
    np.testing.assert_array_equal(loaded.transform(new).exog_re, spec.transform(new).exog_re)
    # names that differ otherwise are still refused, naming this difference among others
    wrong = {**state, "exog_names": [n.replace("z", "w") for n in state["exog_names"]]}
    with pytest.raises(Exception, match=r"a spline of one column as name\[0\]"):
        ModelSpec.from_dict(wrong)


def test_first_codes_hold_only_for_the_groups_they_number():
    """A design's first-appearance codes of its keys are read back while its ``groups``
    are the array they number (also through pickle, and a replace of other columns),
    never for other ``groups`` put in by a replace."""
    import dataclasses

    from dmixed.design import DesignMatrices

    groups = np.array(["b", "a", "b"], dtype=object)
    x = np.ones((3, 1))
    dm = DesignMatrices(np.zeros(3), x, x, [], [], groups, None, 0)
    assert dm.first_numbered() is None
    coded = dm.with_first_codes(np.array([0, 1, 0]), np.array(["b", "a"], dtype=object))
    codes, labels = coded.first_numbered()
    assert labels[codes].tolist() == groups.tolist()
    assert pickle.loads(pickle.dumps(coded)).first_numbered()[0].tolist() == [0, 1, 0]
    assert dataclasses.replace(coded, weights=np.ones(3)).first_numbered() is not None
    other = np.array(["a", "b", "a"], dtype=object)
    assert dataclasses.replace(coded, groups=other).first_numbered() is None
