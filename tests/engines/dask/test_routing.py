"""The exchange between the data pass's tasks: partials or routed rows, picked by bytes.

With every group's rows spread over all partitions, the bytes the tasks send to the
bucket nodes must not grow with the number of tasks (chains) past the data's own compact
rows, and the statistics must not depend on the routing.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from types import SimpleNamespace

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.dask import routing
from dmixed.engines.dask.blocks import assemble_blocks, reorder
from dmixed.engines.dask.data_pass import group_key_dtype
from dmixed.engines.dask.graph import block_graph, chain_recipes, project_columns
from dmixed.engines.dask.partials import chain_partials
from dmixed.engines.dask.routing import (
    SOURCES_BY_KEY,
    DistinctKeys,
    RoutedRows,
    Router,
    coalesced,
    column_hashes,
    exchange_mode,
    split_routed,
)
from dmixed.errors import SpecError
from dmixed.kernels.term_table import ColumnPlan
from dmixed.stats.packed import PackedLayout

FORMULA = "y ~ x1 + x2"
SLOPE = {"re_formula": "1 + x1"}
INTERCEPT = {"re_formula": "1"}


class _Parts:
    """``dd.from_map`` reader: partition i is every nparts-th row from i (groups spread
    over all partitions)."""

    def __init__(self, df: pd.DataFrame, nparts: int) -> None:
        self.df, self.nparts = df, nparts

    def __call__(self, i: int) -> pd.DataFrame:
        return self.df.iloc[i :: self.nparts].reset_index(drop=True)


def _frame(n_groups: int, rows_per_group: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.permutation(np.repeat(np.arange(n_groups), rows_per_group))
    n = g.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    b0, b1 = rng.normal(size=n_groups), 0.5 * rng.normal(size=n_groups)
    y = 1.0 + 0.5 * x1 - 0.25 * x2 + b0[g] + b1[g] * x1 + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g.astype(np.int64)})


def _ddf(df: pd.DataFrame, nparts: int):
    return dd.from_map(_Parts(df, nparts), range(nparts), meta=df.iloc[:0], enforce_metadata=False)


def _blocks(ddf, model_kw: dict, n_chains: int, n_blocks: int = 2, exchange: str = "auto"):
    """``(assembly, (zz, zxy) in sorted group order)`` of the data pass with ``n_chains`` chains."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", **model_kw).spec
    ddf = project_columns(ddf, spec)
    packed = PackedLayout(len(spec.exog_re_names), len(spec.exog_names) + 1)
    with dask.config.set({"dmixed.exchange": exchange, "scheduler": "sync"}):
        key_dtype = group_key_dtype(ddf, spec)
        graph = block_graph(ddf, spec, None, packed, key_dtype, n_blocks, n_chains, None)
        blocks = list(dask.compute(*graph))
    asm = assemble_blocks(blocks, packed.k)
    zz = reorder(asm.position, np.concatenate([b.zz for b in blocks]))
    zxy = reorder(asm.position, np.concatenate([b.zxy for b in blocks]))
    return asm, (zz, zxy)


def _compact_bytes(df: pd.DataFrame) -> int:
    """The rows as routed: the key and the columns y, x1, x2 (the intercept is ones)."""
    return len(df) * 8 * 4


@pytest.mark.parametrize("rows_per_group", [2, 12])
def test_bytes_do_not_grow_with_the_chains(rows_per_group):
    df = _frame(400, rows_per_group)
    ddf = _ddf(df, 8)
    sent, why = {}, {}
    for chains in (1, 2, 4):
        asm, _ = _blocks(ddf, SLOPE, chains)
        sent[chains], why[chains] = asm.exchange["bytes"], asm.exchange["why"]
        assert asm.exchange["rows"] + asm.exchange["partials"] == chains
    partials_only = {c: _blocks(ddf, SLOPE, c, exchange="partials")[0] for c in (1, 4)}
    partials_only = {c: a.exchange["bytes"] for c, a in partials_only.items()}
    width = PackedLayout(2, 4).width
    if rows_per_group == 2:
        # rows are the cheaper form from the start: the data once, whatever the chains
        assert sent[1] == sent[2] == sent[4] == _compact_bytes(df)
        assert why[4].startswith("rows: rows (") and "fewer bytes than a partial" in why[4]
    else:
        # one chain sends its partial (400 groups); more chains send rows once partials
        # would outweigh them: never more than the data's compact rows
        # packed rows, or the compiled pass's rows of terms (n, x1, x2, y, x1², x1·x2,
        # x1·y and a column of zeros: 8 for the packed 12)
        assert sent[1] in (400 * (8 + 8 * width), 400 * (8 + 8 * 8))
        assert why[1].startswith("partials: partial (") and "fewer bytes than the rows" in why[1]
        assert max(sent.values()) <= _compact_bytes(df)
    # partials alone grow as chains × groups
    assert partials_only[4] > 1.5 * partials_only[1]
    assert sent[4] <= min(partials_only[4], _compact_bytes(df))  # the fewer bytes


@pytest.mark.parametrize("model_kw", [SLOPE, INTERCEPT])
@pytest.mark.parametrize("rows_per_group", [2, 12])
def test_statistics_do_not_depend_on_the_routing(model_kw, rows_per_group):
    """Every exchange and number of chains: the same statistics to 1e-10 (the columns'
    map is the first partition's in every case)."""
    df = _frame(300, rows_per_group, seed=5)
    ddf = _ddf(df, 8)
    ref_asm, ref = _blocks(ddf, model_kw, 1, exchange="partials")
    for exchange in ("auto", "rows", "partials"):
        for chains in (1, 2, 4):
            asm, eng = _blocks(ddf, model_kw, chains, n_blocks=3, exchange=exchange)
            np.testing.assert_array_equal(asm.group_labels, ref_asm.group_labels)
            np.testing.assert_array_equal(asm.group_sizes, ref_asm.group_sizes)
            for got, want in zip(eng, ref, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * abs(want).max())
            np.testing.assert_allclose(asm.glob.xyxy, ref_asm.glob.xyxy, rtol=1e-10)
            assert asm.glob.n == ref_asm.glob.n
            if ref_asm.glob.within is None:
                assert asm.glob.within is None
            else:
                np.testing.assert_allclose(asm.glob.within, ref_asm.glob.within, rtol=1e-10)


@pytest.mark.parametrize("nparts", [3, 8])
def test_fits_do_not_depend_on_the_routing(nparts):
    df = _frame(200, 3, seed=9)
    fits = {}
    for exchange in ("rows", "partials", "auto"):
        with dask.config.set({"dmixed.exchange": exchange}), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dmixed.MixedLM.from_formula(
                FORMULA, data=_ddf(df, nparts), groups="g", weights=None, **SLOPE
            )
            fits[exchange] = model.fit()
    ref = fits["partials"]
    for res in fits.values():
        np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-10)
        np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=1e-10)
        np.testing.assert_allclose(res.scale, ref.scale, rtol=1e-10)
        np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)


def test_routed_rows_keep_the_design():
    rng = np.random.default_rng(1)
    n = 50
    x1, y, w = rng.normal(size=n), rng.normal(size=n), rng.uniform(1, 2, n)
    exog = np.asfortranarray(np.column_stack([np.ones(n), x1, rng.normal(size=n)]))
    dm = SimpleNamespace(endog=y, exog=exog, exog_re=exog[:, :2], weights=w)
    keys = rng.integers(0, 9, n)
    rows = RoutedRows.compact(keys, dm, dm.exog_re, None)
    assert rows.cols.shape == (n, 3)  # x1, x2, y: the intercept and Z̃ are not copied
    np.testing.assert_array_equal(rows.exog, exog)
    np.testing.assert_array_equal(rows.ztilde, exog[:, :2])
    np.testing.assert_array_equal(rows.endog, y)
    assert rows.nbytes == n * 8 * 5
    assert RoutedRows.sent_bytes(keys, dm, dm.exog_re) == rows.nbytes  # without copying
    pieces = split_routed([rows, rows.take(slice(0, 10))], 3)
    got = np.concatenate([p.keys for bucket in pieces if bucket for p in bucket])
    np.testing.assert_array_equal(np.sort(got), np.sort(np.concatenate([keys, keys[:10]])))


@pytest.mark.parametrize(
    ("x_of", "z_of"),
    [((-1, 0, 1, 2), (-1, 0)), ((0, 1, 0), (-1, 1)), ((-1, 2, 1), (0,))],
)
def test_routed_raw_columns_are_the_rows_of_their_design(x_of, z_of):
    """Rows buffered as raw columns (:meth:`RoutedRows.of_columns`) hold the values
    the design they make holds compacted, each raw column once, and weigh what
    :meth:`RoutedRows.columns_bytes` says."""
    rng = np.random.default_rng(4)
    n = 40
    columns = [rng.normal(size=n) for _ in range(3)]
    plan = ColumnPlan(x_of, z_of)
    y, exog, exog_re = plan.matrices(columns)
    keys = rng.integers(0, 7, n)
    rows = RoutedRows.of_columns(keys, columns, plan)
    want = RoutedRows.compact(keys, SimpleNamespace(endog=y, exog=exog, weights=None), exog_re)
    np.testing.assert_array_equal(rows.cols, want.cols)
    for name in ("x_src", "y_src", "z_src", "keys", "exog", "endog", "ztilde"):
        np.testing.assert_array_equal(getattr(rows, name), getattr(want, name))
    assert RoutedRows.columns_bytes(keys, plan) == rows.nbytes == want.nbytes


@pytest.mark.parametrize(
    "keys", [np.array([3, 5, 3, 2**40]), np.array(["a", "b", "a"], dtype=object)]
)
def test_distinct_keys_are_counted(keys):
    seen = DistinctKeys()
    seen.add(keys[:2])
    seen.add(keys)
    assert seen.count == len(set(keys.tolist()))


def test_router_switches_once_partials_are_cheaper():
    router = Router("auto", width=12)
    dm = SimpleNamespace(endog=np.zeros(100), exog=np.ones((100, 1)), weights=None)
    keys = np.zeros(100, dtype=np.int64)
    assert router.take(keys, dm, np.ones((100, 1)), None)
    (pending,) = router.switch()
    assert not router.routing
    assert pending.dm is dm and pending.keys is keys  # the rows as given: no copy
    assert not router.take(keys, dm, np.ones((100, 1)), None)


def test_a_chain_that_switches_sums_its_rows_as_a_chain_of_partials(monkeypatch):
    """The rows buffered before the switch are added as the design gave them: the
    chain's partial is that of a chain that never routed, bit for bit."""
    df = _frame(300, 12, seed=5)
    ddf = _ddf(df, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = dmixed.MixedLM.from_formula(FORMULA, data=ddf, groups="g", **SLOPE).spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    packed = PackedLayout(2, 4)
    switched = []
    switch = Router.switch

    def recorded(router):
        switched.append(switch(router))
        return switched[-1]

    monkeypatch.setattr(Router, "switch", recorded)
    out = {
        mode: chain_partials(recipe, spec, None, packed, 2, np.dtype(np.int64), None, mode)
        for mode in ("auto", "partials")
    }
    assert out["auto"][4]["form"] == "partials"
    assert max(len(rows) for rows in switched) >= 1  # it routed rows, then switched
    np.testing.assert_array_equal(out["auto"][1], out["partials"][1])
    for part_a, part_p in zip(out["auto"][0], out["partials"][0], strict=True):
        np.testing.assert_array_equal(part_a[0], part_p[0])
        np.testing.assert_array_equal(part_a[1], part_p[1])


def test_exchange_mode_is_checked():
    with dask.config.set({"dmixed.exchange": "shuffle"}):
        with pytest.raises(SpecError, match="exchange"):
            exchange_mode()


def test_routed_rows_send_variance_components_as_slots():
    """One variance-component entry per row: the rows carry its padded column and
    value, not the padded design's columns; the owner reads the same design back."""
    rng = np.random.default_rng(2)
    n, width = 60, 40
    y, x1 = rng.normal(size=n), rng.normal(size=n)
    exog = np.asfortranarray(np.column_stack([np.ones(n), x1]))
    ztilde = np.zeros((width + 1, n)).T
    ztilde[:, 0] = 1.0
    slot = rng.integers(-1, width, n)  # -1: a row without the component
    ztilde[np.flatnonzero(slot >= 0), 1 + slot[slot >= 0]] = rng.uniform(0.5, 2, n)[slot >= 0]
    dm = SimpleNamespace(endog=y, exog=exog, exog_re=exog[:, :1], weights=None)
    keys = rng.integers(0, 7, n)
    rows = RoutedRows.compact(keys, dm, ztilde, None)
    assert rows.cols.shape == (n, 2)  # x1, y
    assert rows.nbytes == n * 8 * 5  # keys, x1, y, the slot and its value
    assert RoutedRows.sent_bytes(keys, dm, ztilde) == rows.nbytes
    np.testing.assert_array_equal(rows.ztilde, ztilde)
    both = RoutedRows.concat([rows, rows.take(slice(5, 20))])
    np.testing.assert_array_equal(both.ztilde, np.concatenate([ztilde, ztilde[5:20]]))
    ztilde[0, 1:3] = 1.0  # two entries in a row: the padded columns as they are
    assert RoutedRows.compact(keys, dm, ztilde, None).vc_pos is None


def test_variance_component_fits_do_not_depend_on_the_routing():
    df = _frame(60, 8, seed=4)
    df["sub"] = np.random.default_rng(4).integers(0, 5, len(df))
    fits = {}
    for exchange in ("rows", "partials"):
        with dask.config.set({"dmixed.exchange": exchange}), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dmixed.MixedLM.from_formula(
                FORMULA, data=_ddf(df, 4), groups="g", vc_formula={"s": "0 + C(sub)"}, **INTERCEPT
            )
            fits[exchange] = model.fit()
    ref = fits["partials"]
    np.testing.assert_allclose(fits["rows"].params, ref.params, rtol=1e-10)
    np.testing.assert_allclose(fits["rows"].llf, ref.llf, rtol=1e-10)


def _one_hot_rows(rng, n: int, p: int):
    """Design rows of a wide factor (``p`` columns: the intercept, a covariate, one-hot
    levels), as a small partition of a ``y ~ x + C(level)`` design holds them."""
    exog = np.zeros((n, p))
    exog[np.arange(n), rng.integers(2, p, size=n)] = 1.0
    exog[:, 0] = 1.0
    exog[:, 1] = rng.normal(size=n)
    exog[:, 3] = -0.0  # equal to the zero columns by value
    exog = np.asfortranarray(exog)
    y = rng.normal(size=n) if n % 2 else exog[:, 1].copy()  # y equal to a column
    dm = SimpleNamespace(endog=y, exog=exog, exog_re=exog[:, :1], weights=None)
    return dm, rng.integers(0, 9, n)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_wide_sources_by_key_are_those_compared_one_by_one(n):
    """The distinct columns of a wide design, found through one key per column, are
    those of the comparison of each column with those before it, in the same order."""
    rng = np.random.default_rng(n)
    for p in (SOURCES_BY_KEY, 40, 300):
        dm, keys = _one_hot_rows(rng, n, p)
        got = RoutedRows.compact(keys, dm, dm.exog_re)
        distinct, x_src, y_src, z_src, *_ = RoutedRows.sources_one_by_one(dm, dm.exog_re)
        assert got.cols.shape[1] == len(distinct) <= n + 3  # x, zeros, the levels, y
        for j, col in enumerate(distinct):
            np.testing.assert_array_equal(got.cols[:, j], col)
        np.testing.assert_array_equal(got.x_src, x_src)
        np.testing.assert_array_equal(got.z_src, z_src)
        assert got.y_src == y_src
        np.testing.assert_array_equal(got.exog, dm.exog)
        assert RoutedRows.sent_bytes(keys, dm, dm.exog_re) == got.nbytes


def test_coalesced_joins_runs_of_small_pieces():
    """Pieces of fewer rows than ``[X y]`` has columns are joined, in order, into pieces
    of at least that many rows holding the same rows; a larger piece stays as it is."""
    rng = np.random.default_rng(2)
    p = 60
    pieces = []
    for n in (1, 2, 1, 3, 100, 1, 1, 2):
        dm, keys = _one_hot_rows(rng, n, p)
        pieces.append(RoutedRows.compact(keys, dm, dm.exog_re))
    assert not pieces[0].same_sources(pieces[1])  # no run of them is joined as it is
    out = list(coalesced(pieces, p + 1))
    assert [piece.keys.size for piece in out] == [7, 100, 4]
    assert out[1] is pieces[4]
    for got, run in ((out[0], pieces[:4]), (out[2], pieces[5:])):
        for name in ("keys", "exog", "endog", "ztilde"):
            want = np.concatenate([getattr(piece, name) for piece in run])
            np.testing.assert_array_equal(getattr(got, name), want)


def test_coalesced_makes_one_run_at_a_time():
    """The runs are made as they are taken: a run takes only its own pieces, and a run
    taken and dropped is not held while the next is made (one run at a time, each of
    fewer than twice ``k`` rows)."""
    rng = np.random.default_rng(3)
    p = 60
    pieces = []
    for n in (5, 30, 40, 20, 50, 7, 9):
        dm, keys = _one_hot_rows(rng, n, p)
        pieces.append(RoutedRows.compact(keys, dm, dm.exog_re))
    taken = []

    def source():
        for piece in pieces:
            taken.append(piece)
            yield piece

    runs = coalesced(source(), p + 1)
    run = next(runs)
    assert run.keys.size == 75 and len(taken) == 3  # 5 + 30 + 40: nothing past the run
    held = weakref.ref(run)
    del run
    rest = [next(runs).keys.size]
    assert held() is None
    assert len(taken) == 5
    rest += [piece.keys.size for piece in runs]
    assert rest == [70, 16]
    assert all(size < 2 * (p + 1) for size in [75, *rest])


def _same_as_one_by_one(dm, monkeypatch) -> RoutedRows:
    """:meth:`RoutedRows.compact` of ``dm``, asserted to hold the columns of
    :meth:`RoutedRows.sources_one_by_one` in its order (signed zeros too), found without
    it (the one-by-one comparison refused while compacting)."""
    distinct, x_src, y_src, z_src, *_ = RoutedRows.sources_one_by_one(dm, dm.exog_re)

    def refused(*args):
        raise AssertionError("compared one by one")

    with monkeypatch.context() as m:
        m.setattr(RoutedRows, "sources_one_by_one", staticmethod(refused))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = RoutedRows.compact(np.zeros(dm.exog.shape[0], dtype=np.int64), dm, dm.exog_re)
    assert got.cols.shape[1] == len(distinct)
    for j, col in enumerate(distinct):
        np.testing.assert_array_equal(got.cols[:, j], col)
        np.testing.assert_array_equal(np.signbit(got.cols[:, j]), np.signbit(col))
    np.testing.assert_array_equal(got.x_src, x_src)
    np.testing.assert_array_equal(got.z_src, z_src)
    assert got.y_src == y_src
    return got


@pytest.mark.parametrize("n", [62, 80, 200, 1000])
def test_wide_sources_of_taller_one_hot_partitions_are_found_by_key(n, monkeypatch):
    """One-hot columns of partitions of many rows (a row weight of the key per row) are
    grouped by key exactly, as one by one: the same columns, signs of zeros and order."""
    rng = np.random.default_rng(n)
    dm, _ = _one_hot_rows(rng, n, 1100)
    dm.exog[:, 5] = -0.0  # a zero column written first with −0.0: kept as it is
    dm.exog[:5, 5] = 0.0
    dm.exog[: n // 2, 2] = -0.0
    got = _same_as_one_by_one(dm, monkeypatch)
    assert got.cols.shape[1] <= n + 3


def test_wide_sources_split_keys_whose_columns_differ(monkeypatch):
    """Columns of the same key that differ (every hash the same) are told apart exactly,
    without the one-by-one comparison; values past the largest float raise no warning."""
    n, p = 4, 40
    exog = np.zeros((n, p))
    exog[:, 0] = 1.0
    exog[1, 4] = exog[2, 5] = 2.0
    exog[1, 6] = exog[2, 7] = 2.0
    exog[:, 8] = 1e308
    exog[:, 9] = np.inf
    exog[:, 10] = [1e308, -1e308, 1e308, 1e308]
    exog[:, 11] = exog[:, 10]
    exog[:, 12] = -0.0
    exog = np.asfortranarray(exog)
    dm = SimpleNamespace(endog=np.arange(n, dtype=np.float64), exog=exog, exog_re=exog[:, :1])
    dm.weights = None
    monkeypatch.setattr(routing, "column_hashes", lambda cols: np.zeros(cols.shape[1], np.uint64))
    got = _same_as_one_by_one(dm, monkeypatch)
    assert list(got.x_src[1:13]) == [0, 0, 0, 1, 2, 1, 2, 3, 4, 5, 5, 0]


def test_column_hashes_are_those_of_the_values_bits():
    """Columns of the same values hash alike wherever they are held; the hashes of
    one-hot columns of 2,000 rows all differ."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(1000, 3))
    b = np.ascontiguousarray(a[:, [2, 0, 1, 2]])
    np.testing.assert_array_equal(column_hashes(b), column_hashes(a)[[2, 0, 1, 2]])
    assert np.unique(column_hashes(np.eye(2000))).size == 2000


def test_wide_sources_with_a_nan_are_those_compared_one_by_one():
    """A NaN equals nothing but the same memory: columns holding one are compared one
    by one where they share a key, and are distinct columns where they do not."""
    n, p = 3, 40
    exog = np.zeros((n, p))
    exog[:, 0] = 1.0
    exog[:, 4] = [0.0, np.nan, 1.0]
    exog[:, 5] = [0.0, np.nan, 1.0]
    exog[:, 6] = [np.nan, 2.0, 1.0]
    exog = np.asfortranarray(exog)
    dm = SimpleNamespace(endog=np.ones(n), exog=exog, exog_re=exog[:, [0, 4]], weights=None)
    got = RoutedRows.compact(np.zeros(n, dtype=np.int64), dm, dm.exog_re)
    distinct, x_src, y_src, z_src, *_ = RoutedRows.sources_one_by_one(dm, dm.exog_re)
    assert got.cols.shape[1] == len(distinct)
    np.testing.assert_array_equal(got.x_src, x_src)
    np.testing.assert_array_equal(got.z_src, z_src)
    assert got.y_src == y_src == -1


def _wide_frame(seed: int = 6) -> pd.DataFrame:
    """``y ~ x + C(big)`` with 120 levels in 300 rows of 30 groups."""
    rng = np.random.default_rng(seed)
    n, levels, n_groups = 300, 120, 30
    big = np.concatenate([np.arange(levels), rng.integers(0, levels, n - levels)])
    g = rng.integers(0, n_groups, n)
    x = rng.normal(size=n)
    y = 0.5 * x + 0.3 * rng.normal(size=levels)[big] + rng.normal(size=n_groups)[g]
    y = y + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "big": big, "g": g.astype(np.int64)})


@pytest.mark.parametrize("exchange", ["rows", "auto", "partials"])
def test_wide_fixed_part_over_partitions_of_a_row_or_two(exchange):
    """A fixed part of 121 columns over partitions of one or two rows fits as in process
    and as statsmodels' likelihood has it, whatever the exchange."""
    df = _wide_frame()
    formula = "y ~ x + C(big)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dmixed.mixedlm(formula, df, groups="g").fit()
        with dask.config.set({"dmixed.exchange": exchange, "scheduler": "sync"}):
            res = dmixed.mixedlm(formula, _ddf(df, 200), groups="g").fit()
    assert len(ref.fe_params) == 121
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-12)
    np.testing.assert_allclose(res.scale, ref.scale, rtol=1e-10)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=1e-10)
    sm = pytest.importorskip("statsmodels.regression.mixed_linear_model")
    model = sm.MixedLM.from_formula(formula, df, groups="g")
    model.cov_pen = model.fe_pen = None  # what fit() sets before it evaluates
    model.reml = True
    params = sm.MixedLMParams.from_components(
        fe_params=np.asarray(res.fe_params), cov_re=np.asarray(res.cov_re) / res.scale
    )
    # statsmodels' own REML likelihood, its β̂ the GLS estimate at these parameters
    np.testing.assert_allclose(model.loglike(params, profile_fe=True), res.llf, rtol=1e-10)


@pytest.mark.parametrize("gather_at_most", [0, 100, routing.JOIN_GATHER_AT_MOST])
@pytest.mark.parametrize("order", ["F", "C"])
def test_joined_holds_every_value_of_its_pieces_bit_for_bit(order, gather_at_most, monkeypatch):
    """:meth:`RoutedRows.joined`, each piece gathered at once or column by column (the
    pieces over ``gather_at_most`` values): each column of ``[X y]`` and ``Z`` is its
    piece's column (ones for the sources −1), the bits kept (−0.0, NaN), whatever the
    memory order of a piece's held columns."""
    monkeypatch.setattr(routing, "JOIN_GATHER_AT_MOST", gather_at_most)
    rng = np.random.default_rng(5)
    p = 40
    pieces = []
    for n in (1, 3, 2, 1, 4):
        dm, keys = _one_hot_rows(rng, n, p)
        piece = RoutedRows.compact(keys, dm, dm.exog_re)
        cols = np.array(piece.cols, order=order)
        cols[0, -1] = -0.0 if n % 2 else np.nan
        pieces.append(dataclasses.replace(piece, cols=cols, weights=rng.uniform(size=n)))
    got = RoutedRows.joined(pieces)
    for name in ("keys", "exog", "endog", "ztilde", "weights"):
        want = np.concatenate([getattr(piece, name) for piece in pieces])
        assert getattr(got, name).shape == want.shape
        bits = np.ascontiguousarray(getattr(got, name)).view(np.uint8)
        np.testing.assert_array_equal(bits, np.ascontiguousarray(want).view(np.uint8))
    assert got.cols.shape == (11, p + 2) and got.cols.flags.f_contiguous
