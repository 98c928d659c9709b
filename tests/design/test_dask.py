"""dmixed.design on Dask DataFrames: one spec from the whole data, applied per partition."""

from __future__ import annotations

import pickle

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dmixed.design import DesignMatrices, ModelSpec, build_spec

from .frames import make_df, vc_dense


def partitions(ddf) -> list[pd.DataFrame]:
    return list(dask.compute(*ddf.to_delayed(), scheduler="synchronous"))


def reassemble(spec: ModelSpec, parts: list[pd.DataFrame]) -> dict:
    """Transform every partition (with a pickled copy of the spec) and stack.

    VC designs are stacked densely, since k_l may differ between partitions.
    """
    dms = [pickle.loads(pickle.dumps(spec)).transform(p) for p in parts]
    for dm in dms:
        assert dm.exog.shape[1] == len(spec.exog_names)
        assert dm.exog_re.shape[1] == len(spec.exog_re_names)
    return stack(spec, dms)


def stack(spec: ModelSpec, dms: list[DesignMatrices]) -> dict:
    return {
        "endog": np.concatenate([dm.endog for dm in dms]),
        "exog": np.vstack([dm.exog for dm in dms]),
        "exog_re": np.vstack([dm.exog_re for dm in dms]),
        "vc": [
            np.vstack([vc_dense(dm, spec, l) for dm in dms])
            for l in range(len(spec.vc_names))  # noqa: E741
        ],
        "groups": list(np.concatenate([dm.groups for dm in dms])),
        "weights": None if dms[0].weights is None else np.concatenate([d.weights for d in dms]),
        "n_dropped": sum(dm.n_dropped for dm in dms),
    }


def shuffled(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    perm = np.random.default_rng(seed).permutation(len(df))
    return df.iloc[perm].reset_index(drop=True)


MODEL = dict(
    formula="y ~ x1 * a + C(k) + np.log(x2)",
    groups="g",
    re_formula="1 + x1",
    vc_formula={"cls": "0 + C(cls)", "slope": "0 + C(b):x1"},
    weights="w",
)


@pytest.mark.parametrize("npartitions", [1, 3, 17])
@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_dask_partitions_match_pandas(npartitions, missing):
    df = shuffled(make_df(400, seed=npartitions))
    if missing == "drop":
        df.loc[[3, 50, 51], "x1"] = np.nan
        df.loc[[7, 300], "cls"] = None
        df.loc[[11], "g"] = np.nan
    ddf = dd.from_pandas(df, npartitions=npartitions, sort=False)
    assert ddf.npartitions == npartitions
    spec_d = build_spec(ddf, missing=missing, **MODEL)
    spec_p = build_spec(df, missing=missing, **MODEL)
    assert spec_d.exog_names == spec_p.exog_names
    assert spec_d.exog_re_names == spec_p.exog_re_names
    assert spec_d.vc_names == spec_p.vc_names
    assert spec_d.vc_column_names == spec_p.vc_column_names
    assert spec_d.levels == spec_p.levels
    assert spec_d.columns_used == spec_p.columns_used
    ref = stack(spec_p, [spec_p.transform(df)])
    got = reassemble(spec_d, partitions(ddf))
    for key in ("endog", "exog", "exog_re", "weights"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert got["groups"] == ref["groups"]
    for a, b in zip(got["vc"], ref["vc"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert got["n_dropped"] == ref["n_dropped"] == (6 if missing == "drop" else 0)


def test_dask_strings_become_arrow_and_still_work():
    df = make_df(200)
    ddf = dd.from_pandas(df, npartitions=4)
    assert str(ddf["a"].dtype) in ("string", "str")  # dask converts object strings
    spec = build_spec(ddf, "y ~ a + b", groups="g")
    assert spec.exog_names == [
        "Intercept",
        "a[T.lo]",
        "a[T.mid]",
        "a[T.top]",
        "b[T.v]",
        "b[T.w]",
    ]
    parts = partitions(ddf)
    for p in parts:
        dm = spec.transform(p)
        np.testing.assert_array_equal(dm.exog[:, 1], (p["a"] == "lo").to_numpy(dtype=float))


def test_dask_known_and_unknown_categories():
    df = make_df(300)
    df["a"] = pd.Categorical(df["a"], categories=["top", "mid", "lo", "hi"])
    ddf = dd.from_pandas(df, npartitions=5)
    assert ddf["a"].cat.known
    spec_known = build_spec(ddf, "y ~ a", groups="g")
    assert spec_known.levels["a"] == ["top", "mid", "lo", "hi"]  # declared order
    assert spec_known.exog_names == ["Intercept", "a[T.mid]", "a[T.lo]", "a[T.hi]"]

    unknown = ddf.assign(a=ddf["a"].cat.as_unknown())
    assert not unknown["a"].cat.known
    spec_unknown = build_spec(unknown, "y ~ a", groups="g")
    # the partitions still declare the categories: their order, as in process
    assert spec_unknown.levels["a"] == ["top", "mid", "lo", "hi"]
    assert spec_unknown.levels == build_spec(df, "y ~ a", groups="g").levels
    # partitions carry their own categories: still the global columns
    for p in partitions(unknown):
        dm = spec_unknown.transform(p)
        assert dm.exog.shape[1] == 4
        np.testing.assert_array_equal(dm.exog[:, 1], (p["a"] == "mid").to_numpy(dtype=float))


def test_dask_known_categories_unobserved():
    df = make_df(120)
    df["a"] = pd.Categorical(df["a"], categories=["top", "mid", "lo", "hi", "never"])
    ddf = dd.from_pandas(df, npartitions=3)
    # the levels are the declared categories that occur, in declared order, as in process
    # (a known categorical is read too: a filtered hive dataset declares keys it lacks)
    spec = build_spec(ddf, "y ~ x1", groups="g", vc_formula={"v": "0 + a"})
    assert spec.levels["a"] == ["top", "mid", "lo", "hi"]
    assert spec.levels == build_spec(df, "y ~ x1", groups="g", vc_formula={"v": "0 + a"}).levels
    spec = build_spec(ddf, "y ~ a", groups="g", missing="drop")
    assert spec.levels["a"] == ["top", "mid", "lo", "hi"]
    assert spec.levels == build_spec(df, "y ~ a", groups="g", missing="drop").levels


def test_dask_arrow_dictionary_and_nullable_columns():
    base = make_df(240)
    df = base.copy()
    df["a"] = pd.Series(
        pa.array(base["a"].tolist(), type=pa.string()).dictionary_encode(),
        dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string())),
    )
    df["k"] = base["k"].astype("Int64")
    df["x1"] = base["x1"].astype(pd.ArrowDtype(pa.float64()))
    df["g"] = base["g"].astype(pd.ArrowDtype(pa.int64()))
    formula = "y ~ a + C(k) + x1"
    spec_ref = build_spec(base, formula, groups="g", vc_formula={"c": "0 + C(cls)"})
    ref = spec_ref.transform(base)
    ddf = dd.from_pandas(df, npartitions=6, sort=False)
    spec = build_spec(ddf, formula, groups="g", vc_formula={"c": "0 + C(cls)"})
    assert spec.exog_names == spec_ref.exog_names
    parts = partitions(ddf)
    got = [spec.transform(p) for p in parts]
    np.testing.assert_array_equal(np.vstack([d.exog for d in got]), ref.exog)
    np.testing.assert_array_equal(np.concatenate([d.groups for d in got]), ref.groups)


def test_dask_levels_scan_is_one_compute(monkeypatch):
    calls = []
    real = dask.compute

    def counting(*args, **kwargs):
        calls.append(len(args))
        return real(*args, **kwargs)

    monkeypatch.setattr(dask, "compute", counting)
    ddf = dd.from_pandas(make_df(300), npartitions=7)
    spec = build_spec(ddf, "y ~ a + b + C(k)", groups="g", vc_formula={"c": "0 + C(cls)"})
    assert len(calls) == 1
    assert set(spec.levels) == {"a", "b", "k", "cls"}
    assert spec.levels["k"] == [1, 2, 3]


def test_dask_drop_levels_from_kept_rows():
    df = make_df(200)
    df.loc[df["a"] == "top", "x1"] = np.nan
    ddf = dd.from_pandas(df, npartitions=4)
    spec = build_spec(ddf, "y ~ x1 + a", groups="g", missing="drop")
    assert spec.levels["a"] == ["hi", "lo", "mid"]
    total = sum(spec.transform(p).n_dropped for p in partitions(ddf))
    assert total == int((df["a"] == "top").sum())


def test_dask_missing_raise_in_partition():
    df = make_df(100)
    df.loc[5, "x1"] = np.nan
    ddf = dd.from_pandas(df, npartitions=2, sort=False)
    spec = build_spec(ddf, "y ~ x1", groups="g")
    first = partitions(ddf)[0]
    with pytest.raises(ValueError, match=r"missing values in column 'x1' \(1 row\)"):
        spec.transform(first)


def test_dask_errors():
    df = make_df(100)
    ddf = dd.from_pandas(df, npartitions=3)
    # without categorical columns the spec reads no data; the data pass finds these
    import dmixed

    const = dd.from_pandas(df.assign(y=1.0), npartitions=3)
    with pytest.raises(ValueError, match=r"response 'y' is constant"):
        dmixed.mixedlm("y ~ x1", const, groups="g").fit()
    with pytest.raises(ValueError, match=r"no data"):
        dmixed.mixedlm("y ~ x1", ddf[ddf["x1"] > 100], groups="g").fit()
    with pytest.raises(ValueError, match=r"data is empty"):
        build_spec(ddf[ddf["x1"] > 100].assign(a="z"), "y ~ C(a)", groups="g")
    with pytest.raises(ValueError, match=r"unknown column 'x9'"):
        build_spec(ddf, "y ~ x9", groups="g")
    with pytest.raises(ValueError, match=r"groups column 'G' not found.*'g'"):
        build_spec(ddf, "y ~ x1", groups="G")
    with pytest.raises(ValueError, match=r"single level"):
        build_spec(dd.from_pandas(df.assign(a="z"), npartitions=3), "y ~ a", groups="g")


def test_text_levels_reach_the_partitions_as_an_arrow_array(monkeypatch):
    """A Dask frame's text levels travel with the spec as an Arrow array: an unpickled
    spec looks Arrow text up in it (no object index of the levels, no array rebuilt from
    the list), the same codes and levels as the pandas spec's."""
    from dmixed.design import levels as levels_module
    from dmixed.design import spec as spec_module
    from dmixed.design.levels import ArrayLevels

    df = make_df(seed=4)
    df["lab"] = pd.array([f"s{i % 37}" for i in range(len(df))], dtype="str")
    kw = dict(groups="g", vc_formula={"c": "0 + C(lab)"})
    spec = build_spec(dd.from_pandas(df, npartitions=3), "y ~ x1", **kw)
    local = build_spec(df, "y ~ x1", **kw)
    assert isinstance(spec.levels["lab"], ArrayLevels)
    assert spec.levels["lab"] == local.levels["lab"] == sorted(set(df["lab"]))
    shipped = pickle.loads(pickle.dumps(spec))

    def refused(*args, **kwargs):
        raise AssertionError("looked up as Python objects")

    for module in (levels_module, spec_module):
        monkeypatch.setattr(module, "object_index", refused)
        monkeypatch.setattr(module, "text_array", refused)
    got = shipped.transform(df)
    np.testing.assert_array_equal(got.vc_cols[0], local.transform(df).vc_cols[0])
