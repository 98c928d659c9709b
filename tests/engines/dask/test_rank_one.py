"""The Dask data pass on random slopes constant within every group (``Z_i = e z̄_i'``):
the partitions keep the within-group sums ``W``, the combines add their Chan correction,
and the blocks take the rank-one forms, so that ℓ and the fits are those of the rows in
process (``tests/fit/test_rank_one.py``: exact where ``[X y]'[X y] − Σ_i m_i`` cancels).
"""

from __future__ import annotations

import contextlib
import warnings

import dask
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.design import DesignMatrices
from dmixed.engines.dask import DaskEngine, combine
from dmixed.kernels.rows import accumulate_packed_into
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import Standardization
from tests.fit.test_rank_one import llf_one_group_general

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

FORMULA = "y ~ c + x2"
RE = "1 + c"
ODD = 3  # the group whose rows carry two constants in the "different" case


def _frame(spread: float, split: str, seed: int = 1188) -> pd.DataFrame:
    """50 groups of 1..20 rows: an intercept of sd ``spread``, a slope on ``c`` (an
    integer constant within each group), a covariate ``x2``, residual sd 1.  Rows in a
    random order (groups spread over the partitions), but group :data:`ODD`'s first half
    first and its second half last (in different partitions of 3 or 7); ``split ==
    "different"``: that second half's ``c`` 5 more."""
    rng = np.random.default_rng(seed)
    n_groups = 50
    size = rng.integers(2, 21, n_groups)
    g = np.repeat(np.arange(n_groups), size)
    cols = rng.integers(-17, 22, n_groups).astype(float)
    x2 = rng.normal(size=g.size)
    y = 1 + 0.5 * cols[g] + spread * rng.normal(size=n_groups)[g] + x2 + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "c": cols[g], "x2": x2, "g": g})
    odd = np.flatnonzero(g == ODD)
    first, second = odd[: odd.size // 2], odd[odd.size // 2 :]
    if split == "different":
        df.loc[second, "c"] += 5.0
    rest = rng.permutation(np.flatnonzero(g != ODD))
    return df.iloc[np.concatenate([first, rest, second])].reset_index(drop=True)


def _llf_reference(df: pd.DataFrame, psi: np.ndarray) -> float:
    """REML ℓ at Ψ* (σ² and β profiled): every group by the within/between form but
    group :data:`ODD`, taken in 40 digits (whether its rows carry one constant or two)."""
    exog = np.column_stack([np.ones(len(df)), df["c"], df["x2"]])
    g = df["g"].to_numpy()
    return llf_one_group_general(df["y"].to_numpy(), exog, g, exog[:, :2], psi, ODD)


def _psi(packed) -> np.ndarray:
    lmat = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
    return lmat @ lmat.T


POINTS = [np.array([5000.0, 0.0, 10.0]), np.array([18000.0, 900.0, 23.0])]


@contextlib.contextmanager
def _scheduler(kind: str):
    """The synchronous scheduler, or a client of a LocalCluster of two workers (the
    statistics kept there: the workers' evaluators take the rank-one forms)."""
    if kind == "sync":
        with dask.config.set(scheduler="sync"):
            yield None
        return
    with (
        dask.config.set({"dmixed.engine": "distributed"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _ddf(df: pd.DataFrame, nparts: int, source: str, tmp_path):
    ddf = dd.from_pandas(df, npartitions=nparts, sort=False)
    if source == "pandas":
        return ddf
    ddf.to_parquet(tmp_path / "data.parquet", write_index=False)
    return dd.read_parquet(tmp_path / "data.parquet")


def _dask_model(ddf):
    return dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", re_formula=RE)


def _in_process(df):
    return dmixed.MixedLM.from_formula(FORMULA, data=df, groups="g", re_formula=RE)


SOURCES = [
    pytest.param("pandas", "tree", id="tree"),
    pytest.param("parquet", "chains", id="chains"),
]


@pytest.mark.parametrize("split", ["same", "different"])
@pytest.mark.parametrize("nparts", [1, 3, 7])
@pytest.mark.parametrize(("source", "mode"), SOURCES)
def test_loglike_is_exact_whatever_the_partitions(tmp_path, split, nparts, source, mode):
    """ℓ where a spread of 7,800 cancels ``[X y]'[X y] − Σ m_i`` (by about 4 units):
    the exact form, a group split between partitions with the same constant as all its
    rows, and one with different constants by the general form of that group alone
    (``F F'/U − m`` of its own statistics: its rounding, 2.6e-6 here, the same as in
    process from statistics merged of two batches).  In one partition, that group's rows
    are not constant: no partition keeps ``W``, and the lossy groups take their sums
    about shifts of their own (the profile ``[X y]'[X y] − Σ m_i``: its rounding, within
    the same 1e-5).  (One file is read as one task, not a chain.)"""
    df = _frame(7800.0, split)
    mode = "auto" if nparts == 1 else mode
    with dask.config.set(scheduler="sync"), dask.config.set({"dmixed.data_pass": mode}):
        model = _dask_model(_ddf(df, nparts, source, tmp_path))
        # (split "different" in one partition: no W; the lossy groups take the centred
        # forms from their sums about shifts of their own, as in process)
        got = [model.loglike(packed) for packed in POINTS]
    tol = 1e-7 if split == "same" else 1e-5
    for packed, value in zip(POINTS, got, strict=True):
        assert value == pytest.approx(_llf_reference(df, _psi(packed)), abs=tol)


FIT_CASES = [
    pytest.param("sync", 1, "same", id="sync-1-same"),
    pytest.param("sync", 3, "same", id="sync-3-same"),
    pytest.param("sync", 7, "same", id="sync-7-same"),
    pytest.param("sync", 3, "different", id="sync-3-different"),
    pytest.param("sync", 7, "different", id="sync-7-different"),
    pytest.param("cluster", 1, "same", id="cluster-1-same"),
    pytest.param("cluster", 3, "same", id="cluster-3-same"),
    pytest.param("cluster", 7, "different", id="cluster-7-different"),
]


@pytest.mark.parametrize(("where", "nparts", "split"), FIT_CASES)
def test_fit_is_the_in_process_fit(where, nparts, split):
    """The default fit on Dask equals the fit of the same rows in process (params, llf,
    bse within 1e-8 relative).  Different constants: a spread of 3, where the in-process
    fit (no ``W``: its rows are not constant within that group) is not cancelled
    either."""
    spread = 7800.0 if split == "same" else 3.0
    df = _frame(spread, split)
    with _scheduler(where) as client, warnings.catch_warnings():
        warnings.simplefilter("error")
        want = _in_process(df).fit()
        ddf = dd.from_pandas(df, npartitions=nparts, sort=False)
        kwargs = {} if client is None else {"client": client}
        model = _dask_model(ddf)
        got = model.fit(**kwargs)
        if client is not None:
            assert isinstance(model.statistics(client=client).engine, DaskEngine)
    assert got.converged and want.converged
    assert got.llf == pytest.approx(want.llf, rel=1e-8)
    np.testing.assert_allclose(got.fe_params, want.fe_params, rtol=1e-8)
    np.testing.assert_allclose(got.params, want.params, rtol=1e-8)
    np.testing.assert_allclose(got.bse, want.bse, rtol=1e-8)


def test_combines_correct_within_sums_only_of_marked_partials():
    """Partials of rows of several random-design columns that kept ``W``
    (:func:`~dmixed.engines.dask.combine.rank_one_partials`) get the Chan correction:
    ``W`` of two parts plus it is ``W`` of all the rows; unmarked partials of two
    columns none (None, nothing computed)."""
    rng = np.random.default_rng(2)
    g = rng.integers(0, 12, 200)
    zc = rng.integers(-5, 6, 12).astype(float)[g]
    exog = np.column_stack([np.ones(g.size), zc, rng.normal(size=g.size)])
    y = 50 * rng.normal(size=12)[g] + rng.normal(size=g.size)
    ztilde = exog[:, :2].copy()
    std = Standardization(np.zeros(3), np.ones(3), 0.0, 1.0, np.zeros(2), np.ones(2), 0, 0)
    packed = PackedLayout(2, 4)
    half = np.arange(g.size) < 90

    def part(rows):
        acc = np.zeros((packed.width, 12))
        glob = accumulate_packed_into(
            acc, g[rows], y[rows], exog[rows], ztilde[rows], std=std, rank_one=True
        )
        seen = np.flatnonzero(acc[0])
        return (seen, np.ascontiguousarray(acc[:, seen].T)), glob["within"]

    (whole, w_all), (first, w_1), (second, w_2) = part(slice(None)), part(half), part(~half)
    keys, values, corr = combine.combine_exact(
        std, packed, (), *combine.rank_one_partials([first, second])
    )
    np.testing.assert_array_equal(keys, whole[0])
    np.testing.assert_allclose(values, whole[1], rtol=1e-14)
    np.testing.assert_allclose(w_1 + w_2 + corr, w_all, rtol=1e-12)
    assert np.abs(corr).max() > 1.0  # the groups' means differ between the halves
    _, _, plain = combine.combine_exact(std, packed, (), first, second)
    assert plain is None


def test_accumulator_marks_its_partials_only_for_rank_one_rows():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 20, 100)
    exog = np.column_stack([np.ones(100), rng.integers(0, 4, 20)[keys], rng.normal(size=100)])
    y = rng.normal(size=100)
    std = Standardization(np.zeros(3), np.ones(3), 0.0, 1.0, np.zeros(2), np.ones(2), 0, 0)
    varying = exog.copy()
    varying[:, 1] = rng.normal(size=100)
    for design, marked in ((exog, True), (varying, False)):
        acc = combine.GroupAccumulator(PackedLayout(2, 4).width, np.int64)
        dm = DesignMatrices(y, design, design[:, :2].copy(), [], [], keys, None, 0, None)
        sums = acc.add(keys, dm, design[:, :2].copy(), std)
        assert (sums["within"] is not None) == marked
        parts = acc.result(2)
        # marked: a correction of zeros; unmarked: none (a fourth entry: the groups'
        # sums about their shifts)
        assert all((len(part) > 2 and part[2] is not None) == marked for part in parts)


def _compiled_loglike(monkeypatch, ddf, kernels: str, formula: str, mode: str) -> list:
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    with dask.config.set(scheduler="sync"), dask.config.set({"dmixed.data_pass": mode}):
        model = dmixed.MixedLM.from_formula(formula, data=ddf, groups="g", re_formula=RE)
        return [model.loglike(packed) for packed in POINTS]


@pytest.mark.parametrize(
    ("source", "formula"),
    [("pandas", FORMULA), ("parquet", FORMULA), ("parquet", "y ~ c + I(2 * x2)")],
    ids=["tree", "chains-sweep", "chains-design"],
)
def test_compiled_passes_leave_rank_one_rows_to_the_reference(
    tmp_path, monkeypatch, source, formula
):
    """With the compiled kernels forced, the chains' sweep of raw columns and the term
    table (a column the design makes: no sweep), which make no within-group sums,
    decline rows of a slope constant within the groups: ℓ is the numpy pass's."""
    pytest.importorskip("numba")
    ddf = _ddf(_frame(7800.0, "same"), 3, source, tmp_path)
    mode = "chains" if source == "parquet" else "tree"
    got = _compiled_loglike(monkeypatch, ddf, "numba", formula, mode)
    want = _compiled_loglike(monkeypatch, ddf, "numpy", formula, mode)
    np.testing.assert_allclose(got, want, rtol=1e-12)
