"""The same model from pandas, Dask DataFrames and Parquet files written by pyarrow."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dmixed

from ..._synth import make_data

FORMULA = "y ~ x1 + x2 + C(site) + count"
KW = {"groups": "g", "re_formula": "1 + x1", "vc_formula": {"sub": "0 + C(sub)"}}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = make_data(n_groups=40, vc_sd=0.5, seed=17)
    rng = np.random.default_rng(17)
    df["site"] = np.array(["north", "south", "east"])[rng.integers(0, 3, len(df))]
    df["g"] = "grp" + df["g"].astype(str)
    df["count"] = rng.integers(0, 5, len(df))
    return df


@pytest.fixture(scope="module")
def reference(frame):
    return dmixed.mixedlm(FORMULA, frame, **KW).fit()


def _assert_same(res, ref, rtol=1e-8):
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=rtol)
    assert res.scale == pytest.approx(ref.scale, rel=rtol)
    assert res.llf == pytest.approx(ref.llf, rel=rtol)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-6)
    assert list(res.fe_params.index) == list(ref.fe_params.index)


@pytest.mark.parametrize("nparts", [1, 3, 17])
def test_dask_partitions_with_shuffled_rows(frame, reference, nparts):
    shuffled = frame.sample(frac=1.0, random_state=nparts)
    ddf = dd.from_pandas(shuffled, npartitions=nparts, sort=False)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(FORMULA, ddf, **KW).fit()
    _assert_same(res, reference)


def _write_arrow_zoo(frame: pd.DataFrame, path, n_files: int = 3) -> None:
    """Parquet as other tools write it: dictionary strings, large_string group keys,
    nullable integers, row groups of groups spread over files."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frame))
    for i, chunk in enumerate(np.array_split(order, n_files)):
        part = frame.iloc[chunk]
        table = pa.table(
            {
                "y": pa.array(part["y"].to_numpy()),
                "x1": pa.array(part["x1"].to_numpy(), type=pa.float64()),
                "x2": pa.array(part["x2"].to_numpy()),
                "site": pa.array(part["site"].to_numpy()).dictionary_encode(),
                "sub": pa.array(part["sub"].to_numpy(), type=pa.large_string()),
                "g": pa.array(part["g"].to_numpy(), type=pa.large_string()),
                "count": pa.array(part["count"].to_numpy(), type=pa.int32()),
                "sparse_ints": pa.array(
                    [None if j % 7 == 0 else int(j) for j in range(len(part))], type=pa.int64()
                ),
                "unused": pa.array(np.arange(len(part), dtype=np.float64)),
            }
        )
        pq.write_table(table, path / f"part-{i}.parquet", row_group_size=50)


@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow", None])
def test_parquet_written_by_pyarrow(frame, reference, tmp_path, backend):
    """Dictionary strings, large_string keys, int32 as nullable Int32 / Arrow int32.

    The same files read by pandas are the reference: with pandas' own dtypes the
    dictionary column is a categorical whose categories are the files' dictionaries in
    order of first appearance, so the reference level is the first file's first value,
    on both engines; the model (likelihood, covariance) is the strings' one.
    """
    _write_arrow_zoo(frame, tmp_path)
    kwargs = {} if backend is None else {"dtype_backend": backend}
    ddf = dd.read_parquet(str(tmp_path), **kwargs)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(FORMULA, ddf, **KW).fit()
    in_process = dmixed.mixedlm(FORMULA, pd.read_parquet(str(tmp_path), **kwargs), **KW).fit()
    _assert_same(res, in_process)
    assert res.llf == pytest.approx(reference.llf, rel=1e-8)
    np.testing.assert_allclose(res.cov_re, reference.cov_re, rtol=1e-8, atol=1e-10)


def test_csv_input(frame, reference, tmp_path):
    for i, rows in enumerate(np.array_split(np.random.default_rng(1).permutation(len(frame)), 3)):
        frame.iloc[rows].to_csv(tmp_path / f"part-{i}.csv", index=False, float_format="%.17g")
    ddf = dd.read_csv(str(tmp_path / "part-*.csv"))
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(FORMULA, ddf, **KW).fit()
    _assert_same(res, reference)


def test_only_used_columns_are_read(frame, tmp_path):
    """Column pruning: the Parquet read in the data pass asks for the model's columns."""
    _write_arrow_zoo(frame, tmp_path)
    ddf = dd.read_parquet(str(tmp_path))
    model = dmixed.mixedlm("y ~ x1", ddf, groups="g")
    reads = [
        node for node in model.source.optimize().expr.walk() if "ReadParquet" in type(node).__name__
    ]
    assert reads and all(sorted(node.columns) == ["g", "x1", "y"] for node in reads)
    with dask.config.set(scheduler="sync"):
        assert model.fit().nobs == len(frame)


def test_dask_fitted_values_are_lazy_and_aligned(frame, reference):
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(FORMULA, ddf, **KW).fit()
        fitted = res.fittedvalues
        resid = res.resid
        assert isinstance(fitted, dd.Series) and fitted.npartitions == 4
        np.testing.assert_allclose(fitted.compute().to_numpy(), reference.fittedvalues, rtol=1e-7)
        np.testing.assert_allclose(resid.compute().to_numpy(), reference.resid, rtol=1e-6)
        pred = res.predict(ddf.drop(columns=["y"]), include_random=False).compute()
    np.testing.assert_allclose(pred.to_numpy(), reference.predict(frame), rtol=1e-7)


def test_random_effects_frames(reference):
    wide = reference.random_effects_frame()
    assert list(wide.columns) == ["g", "x1"] and wide.index.name == "g"
    long = reference.random_effects_frame(vc=True)
    assert set(long.columns) == {"group", "component", "column", "value"}
    key = wide.index[3]
    one = reference.random_effects[key]
    mine = long[long["group"] == key]
    for _, row in mine.iterrows():
        assert one[f"sub[{row['column']}]"] == pytest.approx(row["value"])
    lazy = reference.random_effects_frame(dask=True)
    assert isinstance(lazy, dd.DataFrame)
    pd.testing.assert_frame_equal(lazy.compute(), wide, check_index_type=False)


def test_missing_drop_counts_for_pandas(frame):
    holes = frame.copy()
    holes.loc[holes.index[:5], "x2"] = np.nan
    with pytest.raises(ValueError, match=r"missing values in column 'x2' \(5 rows\)"):
        dmixed.mixedlm(FORMULA, holes, **KW)
    with pytest.warns(UserWarning, match="dropped 5 rows"):
        res = dmixed.mixedlm(FORMULA, holes, missing="drop", **KW).fit()
    assert res.nobs == len(frame) - 5 and res.n_dropped == 5


def test_missing_drop_counts_for_dask(frame):
    holes = frame.copy()
    holes.loc[holes.index[:5], "x2"] = np.nan
    ddf = dd.from_pandas(holes, npartitions=3, sort=False)
    with dask.config.set(scheduler="sync"), pytest.warns(UserWarning, match="dropped 5 rows"):
        res = dmixed.mixedlm(FORMULA, ddf, missing="drop", **KW).fit()
    assert res.nobs == len(frame) - 5 and res.n_dropped == 5
    ref = dmixed.mixedlm(FORMULA, holes.dropna(subset=["x2"]), **KW).fit()
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
