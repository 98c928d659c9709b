"""The driver's view of the blocks: groups in sorted key order (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dmixed.engines.dask.blocks import (
    Block,
    NarrowInts,
    assemble_blocks,
    block_dense,
    block_summary,
    joined,
    lossy_shifts,
    packed_stats,
    reorder,
    reorder_parts,
    to_block,
)
from dmixed.kernels import StatsBlock
from dmixed.kernels.groups import GROUP_CHUNK
from dmixed.stats.keys import order_distinct
from dmixed.stats.packed import PackedLayout


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int16, object])
def test_assemble_sorts_groups_as_statsmodels(dtype):
    """Blocks' groups in sorted key order (statsmodels' order), whatever the key type;
    a key in two blocks is an error, not a silently doubled group."""
    rng = np.random.default_rng(3)
    ids = rng.permutation(40)
    keys = (
        ids.astype(dtype) if dtype is not object else np.array([f"k{i:02d}" for i in ids], object)
    )

    def block(sel):
        return Block(keys[sel], ids[sel] + 1, np.eye(2), int(ids[sel].sum()), 0.0)

    asm = assemble_blocks([block(slice(0, 15)), block(slice(15, 40))], 2)
    np.testing.assert_array_equal(asm.group_labels, np.sort(keys))
    np.testing.assert_array_equal(asm.group_labels[asm.position], keys)
    np.testing.assert_array_equal(asm.group_sizes[asm.position], ids + 1)
    assert asm.block_sizes == [15, 25]
    with pytest.raises(RuntimeError, match="occurs in two combined partitions"):
        assemble_blocks([block(slice(0, 15)), block(slice(10, 40))], 2)


def _narrowed(values: np.ndarray) -> np.ndarray:
    sent = NarrowInts.of(values)
    got = sent.array() if isinstance(sent, NarrowInts) else sent
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, values)
    assert len(sent) == len(values)
    return sent


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_narrow_ints_give_back_every_value_in_its_dtype(dtype):
    """Labels and row counts sent narrowed come back value for value, in their dtype:
    increasing or not, negative, at the dtype's ends, one value or none."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(2)
    cases = [
        np.sort(rng.choice(min(int(info.max), 10_000), 100, replace=False)),  # increasing ids
        rng.integers(0, min(int(info.max), 300), 200),  # counts, any order
        [info.min, info.max],
        [info.max],
        [info.min, 0, info.max],
        [],
        [3, 3, 4],  # repeated: not increasing
    ]
    for case in cases:
        _narrowed(np.array(case, dtype=dtype))


def test_narrow_ints_send_increasing_ids_in_a_byte_each():
    ids = np.flatnonzero(np.random.default_rng(4).uniform(size=200_000) < 0.5) + 10**12
    sent = _narrowed(ids.astype(np.int64))
    assert isinstance(sent, NarrowInts) and sent.values.dtype == np.uint8
    counts = _narrowed(np.random.default_rng(5).integers(1, 40, ids.size))
    assert isinstance(counts, NarrowInts) and counts.values.dtype == np.uint8


def test_narrow_ints_leave_what_they_cannot_narrow():
    wide = np.array([0, 2**63 + 5], dtype=np.uint64)  # past int64
    assert _narrowed(wide) is wide
    span = np.array([-(2**62) * 2, 2**62 * 2 - 1], dtype=np.int64)  # span past int64
    assert _narrowed(span) is span
    keys = np.array(["b", "a"], dtype=object)
    assert _narrowed(keys) is keys


def test_a_summary_assembles_as_its_block():
    """The driver assembles gathered summaries (labels and row counts narrowed) as it
    would the blocks themselves: the same labels, positions and row counts, dtypes too."""
    keys = np.array([2, 5, 9, 10, 400], dtype=np.int64)
    blocks = [
        Block(keys, np.array([3, 1, 7, 2, 9]), np.eye(2), 22, 0.0),
        Block(np.array([7, 1, 3], dtype=np.int64), np.array([5, 5, 6]), np.eye(2), 16, 0.0),
    ]
    summaries = [block_summary(b) for b in blocks]
    assert isinstance(summaries[0].labels, NarrowInts)
    assert isinstance(summaries[0].nobs, NarrowInts)
    _same_assembly(assemble_blocks(summaries, 2), assemble_blocks(blocks, 2))


def _same_assembly(got, want) -> None:
    for name in ("group_labels", "group_sizes", "position"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b)
    assert got.block_sizes == want.block_sizes
    assert got.glob.n == want.glob.n


def _reference_assembly(blocks: list):
    """What the driver made before the blocks were assembled in place: every part
    opened to its own array, concatenated, ordered and scattered."""
    labels = [b.labels.array() if isinstance(b.labels, NarrowInts) else b.labels for b in blocks]
    nobs = [b.nobs.array() if isinstance(b.nobs, NarrowInts) else b.nobs for b in blocks]
    order = order_distinct(np.concatenate(labels) if labels else np.empty(0, dtype=object))
    sizes = np.zeros(len(order.labels), dtype=np.int64)
    if blocks:
        sizes[order.position] = np.concatenate(nobs)
    return order.labels, sizes, order.position


_KEY_KINDS = ["int64", "int32", "uint64", "uint8", "object", "str", "datetime64[ns]"]


def _keys_of(kind: str, ids: np.ndarray) -> np.ndarray:
    if kind == "object":  # tuples
        keys = np.empty(ids.size, dtype=object)
        keys[:] = [(i % 3, f"k{i}") for i in ids.tolist()]
        return keys
    if kind == "str":
        return np.array([f"g{i:05d}" for i in ids.tolist()], dtype=object)
    if kind == "datetime64[ns]":
        return (np.datetime64("2020-01-01", "ns") + ids.astype("timedelta64[s]")).astype(kind)
    return ids.astype(kind)


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=0, max_size=5),
    kind=st.sampled_from(_KEY_KINDS),
    spread=st.sampled_from([1, 3, 10**6]),  # dense ids, ids with gaps, a wide range
    offset=st.sampled_from([0, 7, 10**12]),
    sent=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_assembly_in_place_is_the_assembly_of_opened_parts(sizes, kind, spread, offset, sent, seed):
    """Labels and row counts written straight into one array each (narrowed or not,
    increasing or not, empty blocks among them) give the labels, positions and row
    counts of the parts opened, concatenated, ordered and scattered, value for value
    and in the same dtypes, for every kind of key."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    if kind in ("uint8",):
        spread, offset = 1, 0
    ids = rng.choice(max(n * spread, 1), n, replace=False) + (offset if kind != "uint8" else 0)
    keys = _keys_of(kind, ids)
    nobs = rng.integers(1, 300, n)
    blocks, start = [], 0
    for size in sizes:
        sel = slice(start, start + size)
        part = keys[sel]
        if rng.random() < 0.5:  # a block's labels in increasing order: sent as steps
            part = np.sort(part) if kind != "object" else part
        keys[sel] = part
        blocks.append(Block(part, nobs[sel], np.eye(2), int(nobs[sel].sum()), 0.0))
        start += size
    if sent:
        blocks = [block_summary(b) for b in blocks]
    labels, group_sizes, position = _reference_assembly(blocks)
    asm = assemble_blocks(blocks, 2)
    assert asm.group_labels.dtype == labels.dtype
    np.testing.assert_array_equal(asm.group_labels, labels)
    np.testing.assert_array_equal(asm.group_sizes, group_sizes)
    np.testing.assert_array_equal(asm.position, position)
    assert asm.block_sizes == sizes
    if n:  # a key in two blocks
        twice = [*blocks, Block(keys[:1], nobs[:1], np.eye(2), 1, 0.0)]
        with pytest.raises(RuntimeError, match="occurs in two combined partitions"):
            assemble_blocks(twice, 2)


def test_no_summaries_assemble_to_no_groups():
    asm = assemble_blocks([], 2)
    assert asm.group_labels.size == 0 and asm.group_sizes.size == 0
    assert asm.group_labels.dtype == object and asm.block_sizes == []
    assert asm.glob.n == 0


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.lists(st.integers(-(2**40), 2**40), max_size=20),
            st.sampled_from(["int64", "int32", "uint32", "int8"]),
            st.booleans(),  # increasing (steps)
        ),
        max_size=4,
    ),
)
def test_joined_is_the_concatenation_of_the_parts_opened(parts):
    """``joined`` of parts sent narrowed or not is ``np.concatenate`` of their values:
    the same values in numpy's promoted dtype."""
    arrays = []
    for values, dtype, increasing in parts:
        info = np.iinfo(dtype)
        values = np.clip(np.array(values, dtype=np.int64), info.min, info.max)
        values = np.unique(values) if increasing else values
        arrays.append(values.astype(dtype))
    sent = [NarrowInts.of(a) for a in arrays]
    got = joined(sent)
    want = np.concatenate(arrays) if arrays else np.empty(0, dtype=object)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_narrow_ints_into_casts_as_an_assignment():
    steps = NarrowInts.of(np.array([10, 11, 300], dtype=np.int64))
    plain = NarrowInts.of(np.array([4, 1, 2], dtype=np.int32))
    assert isinstance(steps, NarrowInts) and steps.first == 10
    assert isinstance(plain, NarrowInts) and plain.first is None
    for out_dtype in (np.int64, np.float64, object):
        for sent in (steps, plain):
            out = np.empty(3, dtype=out_dtype)
            sent.into(out)
            want = np.empty(3, dtype=out_dtype)
            want[:] = sent.array()
            np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="into an array"):
        steps.into(np.empty(2, dtype=np.int64))


@pytest.mark.parametrize("shape", [(), (3,), (2, 2), (2, 5)])
def test_reorder_puts_every_group_at_its_position(shape):
    """``reorder`` is ``out[position] = values``, value for value (signed zeros too)."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 257):
        position = rng.permutation(n).astype(np.int64)
        values = rng.standard_normal((n, *shape))
        values.flat[::7] = -0.0
        expected = np.empty_like(values)
        expected[position] = values
        out = reorder(position, values)
        assert out.shape == values.shape and out.dtype == values.dtype
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    shape=st.sampled_from([(), (1,), (3,), (2, 2), (2, 5)]),
    dtype=st.sampled_from([np.float64, np.int64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_reorder_parts_is_reorder_of_the_concatenation(sizes, shape, dtype, seed):
    """``reorder_parts`` writes every block's rows where ``reorder`` of the blocks
    concatenated puts them, bit for bit (signed zeros too), whatever the blocks' sizes
    (empty ones among them), row shapes and dtypes; a view of a part, not
    contiguous, too."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    position = rng.permutation(n).astype(np.int64)
    parts = []
    for m in sizes:
        whole = (rng.standard_normal((2 * m, *shape)) * 8).astype(dtype)
        whole.reshape(-1)[::3] = -0.0
        parts.append(whole[::2])  # every other row: a view, not contiguous
    expected = reorder(position, np.concatenate(parts))
    out = reorder_parts(position, parts)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


def test_reorder_parts_each_is_each_of_the_reordered_whole_for_any_parts():
    """``each`` given: ``each`` of ``reorder`` of the concatenation, for like parts
    (placed one converted part at a time), unlike ones (concatenated first) and parts
    without rows."""
    from dmixed.kernels.compiled import upper_unfolded

    rng = np.random.default_rng(5)
    position = rng.permutation(6).astype(np.int64)
    tri = rng.standard_normal((6, 3))
    for parts in (
        [tri[:2], tri[2:2], tri[2:]],
        [tri[:2], tri[2:].astype(np.float32)],
    ):
        expected = upper_unfolded(reorder(position, np.concatenate(parts)))
        out = reorder_parts(position, parts, each=upper_unfolded)
        assert out.shape == expected.shape == (6, 2, 2)
        np.testing.assert_array_equal(out, expected)
    empty = reorder_parts(np.zeros(0, np.int64), [tri[:0], tri[:0]], each=upper_unfolded)
    assert empty.shape == (0, 2, 2)


def test_reorder_parts_of_unlike_parts_concatenates_first():
    """Parts of different dtypes take numpy's promotion, as their concatenation."""
    position = np.array([2, 0, 1, 3])
    parts = [np.array([1.5, -0.0]), np.array([3, 4], dtype=np.int64)]
    out = reorder_parts(position, parts)
    expected = reorder(position, np.concatenate(parts))
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


def _packed_rows(rng, g: int, packed):
    values = rng.standard_normal((g, packed.width))
    values[:, 0] = rng.integers(1, 9, g)
    values.flat[::5] = -0.0
    return values


@pytest.mark.parametrize("r, k", [(1, 3), (2, 5), (3, 2)])
@pytest.mark.parametrize("g", [0, 1, 7, GROUP_CHUNK + 3])
def test_packed_stats_is_the_unpacked_block_value_for_value(r, k, g):
    """``packed_stats`` gives the kernels' block of the unpacked ``zz`` and ``zxy``:
    the same chunks, value for value (signed zeros too), so every sum over them is
    the same bit for bit."""
    packed = PackedLayout(r, k)
    values = _packed_rows(np.random.default_rng(g + 10 * r), g, packed)
    held = packed_stats(values, packed)
    plain = StatsBlock(packed.unpack_zz(values), packed.unpack_zxy(values))
    assert held.n_groups == plain.n_groups == g
    pairs = list(zip(held.chunks(), plain.chunks(), strict=True))
    assert pairs
    for (zz_h, zxy_h), (zz_p, zxy_p) in pairs:
        for got, want in ((zz_h, zz_p), (zxy_h, zxy_p)):
            assert got.shape == want.shape and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_a_held_block_is_the_plain_block():
    """``to_block(held=True)`` keeps the sums as the kernels hold them, and gives back
    the same ``(zz, zxy)`` and everything else the plain block has."""
    packed = PackedLayout(2, 4)
    rng = np.random.default_rng(8)
    values = _packed_rows(rng, 50, packed)
    keys = np.arange(50, dtype=np.int64) * 3
    glob = rng.standard_normal(3 + 2 * 10)
    glob[:3] = [float(values[:, 0].sum()), 0.0, 2.0]
    glob[3 + 10 :] = np.nan  # no within-group sums
    plain = to_block((keys, values), packed, glob)
    held = to_block((keys, values), packed, glob, held=True)
    assert held.zz is None and held.zxy is None and held.stats is not None
    for got, want in zip(block_dense(held), block_dense(plain), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(held.labels, plain.labels)
    np.testing.assert_array_equal(held.nobs, plain.nobs)
    np.testing.assert_array_equal(held.xyxy, plain.xyxy)
    assert (held.n, held.n_dropped) == (plain.n, plain.n_dropped)
    summary = block_summary(held)
    assert summary.stats is None and summary.zz is None


# ---------------------------------------------------------------------------
# Lossy groups: random slopes nearly constant within a few groups
# ---------------------------------------------------------------------------


def _clicks(seed: int = 0, n_users: int = 2000, gap: float = 10.0, close: int = 3, weights=False):
    """A random slope on a timestamp (seconds over a year, near 1.7e9), users of 2–5
    events, ``close`` users with their two events ``gap`` seconds apart (their
    ``Z_i'Z_i`` close to singular: lossy)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = rng.integers(2, 6, n_users)
    g = np.repeat(np.arange(n_users), n)
    t = 1.7e9 + rng.uniform(0, 3e7, g.size)
    for c in np.flatnonzero(n == 2)[:close]:
        i = np.flatnonzero(g == c)
        t[i[1]] = t[i[0]] + gap
    y = 1 + 1e-7 * (t - 1.7e9) + rng.normal(size=n_users)[g] + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "t": t, "g": g})
    if weights:
        df["w"] = rng.uniform(0.5, 2.0, g.size)
    return df


def _same_fit(got, want, rtol: float = 1e-10) -> None:
    """Two fits' ℓ, parameters and random effects equal to ``rtol``."""
    assert got.converged and want.converged
    assert got.llf == pytest.approx(want.llf, rel=rtol)
    np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=rtol)
    a, b = got.random_effects, want.random_effects
    assert list(a) == list(b)
    re_a = np.array([np.asarray(a[k]) for k in a])
    re_b = np.array([np.asarray(b[k]) for k in b])
    for j in range(re_b.shape[1]):  # each random effect to its own size
        size = np.abs(re_b[:, j]).max()
        np.testing.assert_allclose(re_a[:, j], re_b[:, j], rtol=0, atol=rtol * size)


@pytest.fixture(scope="module")
def clicks_in_process():
    import dmixed

    df = _clicks()
    return df, dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit()


@pytest.mark.parametrize("n_parts", [1, 3, 7])
def test_lossy_groups_on_dask_fit_as_in_process(clicks_in_process, client, n_parts):
    """The clickstream of benchmarks/RESULTS.md ("Dask refuses a random slope whose
    values are nearly equal within a few groups"): on Dask, from 1, 3 or 7 partitions,
    its 3 lossy users take the centred forms from their sums about their own first
    event (the partials' sums about the groups' shifts), and the fit is the in-process
    fit's (ℓ −11472.3367)."""
    import dask.dataframe as dd

    import dmixed

    df, want = clicks_in_process
    assert want.llf == pytest.approx(-11472.3367, abs=1e-4)
    ddf = dd.from_pandas(df.sample(frac=1.0, random_state=n_parts), npartitions=n_parts)
    got = dmixed.mixedlm("y ~ t", ddf, groups="g", re_formula="1 + t").fit(client=client)
    _same_fit(got, want)


def _chains_fit(files: list, path, client, shifted: str = "auto", weights=None, **fit_kw):
    """The fit on ``client`` of the frames ``files`` written as Parquet files under
    ``path`` and read by chains (with the compiled sweep where ``DMIXED_KERNELS`` says
    so); ``(result, the "dmixed" logger's records of the fit)``."""
    import logging

    import dask
    import dask.dataframe as dd

    import dmixed

    path.mkdir(parents=True, exist_ok=True)
    for n, frame in enumerate(files):
        frame.reset_index(drop=True).to_parquet(path / f"part.{n}.parquet")
    records: list = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("dmixed")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        config = {"dmixed.data_pass": "chains", "dmixed.shifted_sweep": shifted}
        with dask.config.set(config):
            ddf = dd.read_parquet(path)
            model = dmixed.mixedlm("y ~ t", ddf, groups="g", re_formula="1 + t", weights=weights)
            got = model.fit(client=client, **fit_kw)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return got, records


def _passes_run(records: list) -> int:
    """Data passes a fit's log records tell of."""
    return sum(
        r.getMessage().startswith("data pass: ") and "partitions" in r.msg % r.args for r in records
    )


def _split(df, n_files: int, seed: int) -> list:
    """``df``'s rows shuffled into ``n_files`` frames."""
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return [shuffled.iloc[a::n_files] for a in range(n_files)]


def _scheduler_tasks(client) -> int:
    """Tasks the scheduler holds, once this process's garbage is collected."""
    import gc

    gc.collect()
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


@pytest.mark.parametrize("shifted", ["auto", "always"])
@pytest.mark.parametrize("n_files", [2, 3, 7])
def test_lossy_groups_of_chains_compiled_fit_as_in_process(
    clicks_in_process, client, tmp_path, monkeypatch, n_files, shifted
):
    """The same rows in Parquet files read by chains with the compiled sweep: by
    default (``"auto"``) the first pass's blocks refuse the 3 lossy groups and the
    pass runs again, keeping every group's slope about its first value (logged at
    INFO, once; nothing of the first pass left on the scheduler); with ``"always"`` in
    one pass.  Either way the in-process fit."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df, want = clicks_in_process
    before = _scheduler_tasks(client)
    files = _split(df, n_files, n_files)
    got, records = _chains_fit(files, tmp_path / "c", client, shifted)
    _same_fit(got, want)
    again = [r for r in records if r.getMessage().startswith("lossy groups")]
    if shifted == "auto":
        assert _passes_run(records) == 2 and len(again) == 1
        assert again[0].levelname == "INFO" and "random slope t nearly" in again[0].getMessage()
    else:
        assert _passes_run(records) == 1 and not again
    del got
    assert _scheduler_tasks(client) == before


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("keys", ["int", "text"])
def test_lossy_groups_of_chains_compiled_reml_ml_and_text_keys(
    client, tmp_path, monkeypatch, keys, reml
):
    """REML and ML, integer and text group keys: the default's second pass gives the
    in-process fit."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(2, n_users=600)
    if keys == "text":
        df = df.assign(g="u" + df["g"].astype(str))
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit(reml=reml)
    got, records = _chains_fit(_split(df, 3, 1), tmp_path / "c", client, reml=reml)
    assert _passes_run(records) == 2
    # (ML's top is flatter: from_pandas's reference rows give BLUPs 4e-10 of their size
    # off the in-process fit's, as the chains' do; ℓ within 2e-15 either way)
    _same_fit(got, want, 1e-10 if reml else 1e-9)


@pytest.mark.parametrize("keys", ["sparse", "negative", "text"])
@pytest.mark.parametrize("n_files", [3, 12])
def test_lossy_groups_of_chains_compiled_keys_out_of_order(
    client, tmp_path, monkeypatch, keys, n_files
):
    """Sparse or negative integer keys (a chain's look-up numbers its groups in the
    order they came, not by key) and text keys: the lossy groups of a block held as
    one table's rows still take their sums about their shifts, by the row they are
    on, and the fit is the one in process."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(2, n_users=600)
    g = df["g"].to_numpy()
    df = df.assign(g={"sparse": g * 1000 + 12345, "negative": -(g * 1000) - 7}.get(keys, None))
    if keys == "text":
        df = df.assign(g=[f"u{v:05d}" for v in g])
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit()
    got, records = _chains_fit(_split(df, n_files, 2), tmp_path / "c", client)
    assert _passes_run(records) == 2
    _same_fit(got, want)


def test_lossy_groups_of_chains_compiled_always_is_auto(client, tmp_path, monkeypatch):
    """``"always"`` (one pass keeping the sums) and ``"auto"`` (two) fit alike, bit
    for bit."""
    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    files = _split(_clicks(2, n_users=600), 3, 2)
    auto, _ = _chains_fit(files, tmp_path / "a", client, "auto")
    always, _ = _chains_fit(files, tmp_path / "b", client, "always")
    assert auto.llf == always.llf
    np.testing.assert_array_equal(np.asarray(auto.params), np.asarray(always.params))


@pytest.mark.parametrize("exchange", ["partials", "rows"])
def test_without_lossy_groups_the_data_pass_runs_once(client, tmp_path, monkeypatch, exchange):
    """No lossy group: one data pass, nothing logged of lossy groups, and the fit that
    of ``"never"`` (the sweep without the sums) and of ``"always"``, bit for bit, the
    exchange's form fixed (``"always"``'s partials are wider, so where the router
    picks, it may pick another form for them, which adds the same sums in another
    order)."""
    import dask

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(4, n_users=500, close=0)
    rng = np.random.default_rng(4)
    df["t"] = rng.normal(size=len(df))  # no slope nearly constant
    df["y"] += rng.normal(size=500)[df["g"].to_numpy()] * df["t"]  # a slope that varies
    files = _split(df, 3, 3)
    with dask.config.set({"dmixed.exchange": exchange}):
        auto, records = _chains_fit(files, tmp_path / "a", client)
        assert _passes_run(records) == 1
        assert not [r for r in records if "lossy" in r.getMessage()]
        for shifted in ("never", "always"):
            other, _ = _chains_fit(files, tmp_path / shifted, client, shifted)
            assert auto.llf == other.llf
            np.testing.assert_array_equal(np.asarray(auto.params), np.asarray(other.params))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(cuts=st.lists(st.integers(1, 1372), min_size=0, max_size=3, unique=True))
@example(cuts=[600, 601])  # a file of one row, second in its chain
@example(cuts=[1, 300, 301])  # files of one row, first and second in their chains
def test_lossy_groups_of_chains_compiled_any_split_into_files(client, tmp_path_factory, cuts):
    """However the rows are split into files (contiguous runs of any sizes, one row
    too), the default's fit is the in-process fit."""
    import dmixed

    df = _clicks(5, n_users=400)
    assert len(df) == 1373
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit()
    # at least two files (one file is not read by chains: Dask reads it as one
    # partition of its own kind)
    bounds = [0, *sorted({*cuts, len(df) // 2}), len(df)]
    files = [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert len(files) >= 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMIXED_KERNELS", "numba")
        got, _ = _chains_fit(files, tmp_path_factory.mktemp("split"), client)
    _same_fit(got, want)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shifted", ["auto", "always"])
def test_lossy_groups_of_chains_with_a_file_of_one_row_fit_as_in_process(
    client, tmp_path, monkeypatch, shifted, weighted
):
    """A file of one row read second in its chain: its one-row group is constant
    within it, so the chain keeps that file's within-group sums and its blocks take the
    rank-one forms, and the lossy groups, not of rank one, keep the centred forms from
    their sums about their shifts (they were refused).  The fit is the in-process fit,
    weighted rows too, the statistics gathered or kept on the workers, and
    ``"always"`` reads once."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(1, n_users=300, close=5) if weighted else _clicks(2, n_users=600)
    weights = None
    if weighted:
        df["w"] = _weights(np.random.default_rng(1), len(df), "uniform")
        weights = "w"
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t", weights=weights).fit()
    # three files, two chains: [400 rows, 1 row] and [the rest]
    files = [df.iloc[:400], df.iloc[400:401], df.iloc[401:]]
    got, records = _chains_fit(files, tmp_path / "c", client, shifted, weights=weights)
    assert _passes_run(records) == (2 if shifted == "auto" else 1)
    _same_fit(got, want)
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)
    # the statistics kept on the workers (held blocks) too
    kept, _ = _chains_fit(files, tmp_path / "d", client, shifted, weights, engine="distributed")
    _same_fit(kept, want)


@pytest.mark.parametrize("keys", ["int", "text"])
def test_lossy_groups_of_chains_compiled_on_the_design_path_fit_as_in_process(
    client, tmp_path, monkeypatch, keys
):
    """A categorical fixed effect sends the chains' partitions through the design,
    whose compiled pass keeps the sums about the groups' shifts too (in the default's
    second pass); text group keys, read as Arrow, go through the sweep."""
    import dask
    import dask.dataframe as dd

    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks()
    df = df.assign(k=np.array(["a", "b", "c"])[df["g"].to_numpy() % 3])
    if keys == "text":
        df = df.assign(g="u" + df["g"].astype(str))
    want = dmixed.mixedlm("y ~ t + C(k)", df, groups="g", re_formula="1 + t").fit()
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    dd.from_pandas(shuffled, npartitions=3).to_parquet(tmp_path / "clicks")
    with dask.config.set({"dmixed.data_pass": "chains"}):
        ddf = dd.read_parquet(tmp_path / "clicks")
        got = dmixed.mixedlm("y ~ t + C(k)", ddf, groups="g", re_formula="1 + t")
        got = got.fit(client=client)
    _same_fit(got, want)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    log_gap=st.floats(-3.0, 2.0),
    offset=st.sampled_from([0.0, 1e6, 1.7e9]),
    n_parts=st.integers(1, 5),
)
def test_lossy_groups_on_dask_any_spread_and_offset(seed, log_gap, offset, n_parts):
    """Random near-constant slopes (two events ``10^log_gap`` seconds apart, from 1e-3
    s, at offsets up to 1.7e9): the Dask fit (synchronous scheduler) is the in-process
    fit: the same ℓ, and the same parameters where the top is not on the boundary."""
    import warnings

    import dask
    import dask.dataframe as dd

    import dmixed

    df = _clicks(seed, n_users=300, gap=10.0**log_gap, close=4)
    df["t"] = df["t"] - 1.7e9 + offset
    ddf = dd.from_pandas(df.sample(frac=1.0, random_state=seed), npartitions=n_parts)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dmixed.BoundaryWarning)
        want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit()
        with dask.config.set(scheduler="sync"):
            got = dmixed.mixedlm("y ~ t", ddf, groups="g", re_formula="1 + t").fit()
    assert all(issubclass(w.category, dmixed.BoundaryWarning) for w in seen)
    assert got.llf == pytest.approx(want.llf, rel=1e-10)
    if not seen:  # (on the boundary the top is a ridge: the points may differ along it)
        np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-8)


def _weights(rng, size: int, kind: str) -> np.ndarray:
    """Prior weights: powers of 4 (``√w`` exact, ``4^±2``) or uniform in [0.5, 2]."""
    if kind == "powers of 4":
        return 4.0 ** rng.integers(-2, 3, size)
    return rng.uniform(0.5, 2.0, size)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    log_gap=st.floats(-1.0, 2.0),
    offset=st.sampled_from([0.0, 1e6, 1.7e9]),
    t_unit=st.sampled_from([1.0, 1e3, 1.0 / 3600]),
    unit=st.sampled_from([1.0, 1e-3, 1e3]),
    kind=st.sampled_from(["powers of 4", "uniform"]),
    n_parts=st.integers(1, 5),
)
def test_weighted_lossy_groups_on_dask_fit_as_in_process(
    seed, log_gap, offset, t_unit, unit, kind, n_parts
):
    """Prior weights and near-constant slopes (two events ``10^log_gap`` seconds apart,
    the timestamps at an offset up to 1.7e9 in seconds, milliseconds or hours, the
    weights in a unit ``unit``): the Dask fit (synchronous scheduler, any split into
    partitions) is the in-process weighted fit, which fits them in one pass: the same
    ℓ, and the same parameters and standard errors where the top is not on the
    boundary."""
    import warnings

    import dask
    import dask.dataframe as dd

    import dmixed

    df = _clicks(seed, n_users=300, gap=10.0**log_gap, close=4)
    df["t"] = (df["t"] - 1.7e9 + offset) * t_unit
    df["w"] = unit * _weights(np.random.default_rng(seed), len(df), kind)
    kw = {"groups": "g", "re_formula": "1 + t", "weights": "w"}
    ddf = dd.from_pandas(df.sample(frac=1.0, random_state=seed), npartitions=n_parts)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dmixed.BoundaryWarning)
        want = dmixed.mixedlm("y ~ t", df, **kw).fit()
        with dask.config.set(scheduler="sync"):
            got = dmixed.mixedlm("y ~ t", ddf, **kw).fit()
    assert all(issubclass(w.category, dmixed.BoundaryWarning) for w in seen)
    assert got.llf == pytest.approx(want.llf, rel=1e-10)
    if not seen:  # (on the boundary the top is a ridge: the points may differ along it)
        np.testing.assert_allclose(np.asarray(got.params), np.asarray(want.params), rtol=1e-8)
        np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-6)


@pytest.mark.parametrize("offset", [0.0, -1.7e9])
@pytest.mark.parametrize("kind", ["powers of 4", "eight decades"])
def test_two_slopes_of_weights_over_eight_decades_on_dask_near_in_process(kind, offset):
    """Two random slopes (``1 + t + t2``) and weights spread over 8 decades: many
    groups' weighted ``Z_i'Z_i`` are near singular (their weight on one row).  In
    process, a block with a lossy group takes the centred sums of all its groups; on
    Dask only the lossy ones (``LOSSY_DETERMINANT``) take them, and the groups just
    above that bound keep the rounding of the uncentred sums: ℓ agrees to a few
    1e-10 (moderate weights: to rounding, the tests above), the fixed effects to a
    small part of their standard errors."""
    import dask
    import dask.dataframe as dd

    import dmixed

    df = _clicks(4, n_users=600, close=6)
    rng = np.random.default_rng(11)
    df["x"] = rng.normal(size=len(df))
    df["t2"] = (df["t"] - 1.7e9) * 1e-3 + rng.normal(size=len(df)) * 1e3
    df["t"] += offset
    if kind == "powers of 4":
        df["w"] = 4.0 ** rng.integers(-6, 7, len(df))
    else:
        df["w"] = 10.0 ** rng.uniform(-4.0, 4.0, len(df))
    kw = {"groups": "g", "re_formula": "1 + t + t2", "weights": "w"}
    want = dmixed.mixedlm("y ~ t + x", df, **kw).fit()
    with dask.config.set(scheduler="sync"):
        got = dmixed.mixedlm("y ~ t + x", dd.from_pandas(df, npartitions=3), **kw).fit()
    assert got.converged and want.converged
    assert got.llf == pytest.approx(want.llf, rel=1e-9)
    fe = np.abs(np.asarray(got.fe_params) - np.asarray(want.fe_params))
    assert np.all(fe <= 1e-3 * np.asarray(want.bse_fe))


def test_weights_of_one_fit_lossy_groups_on_dask_as_no_weights():
    """Weights of 1 on lossy data: the Dask fit from partitions is the unweighted one's
    bit for bit (as it is without lossy groups)."""
    import dask
    import dask.dataframe as dd

    import dmixed

    df = _clicks(3, n_users=300, close=4).assign(w=1.0)
    ddf = dd.from_pandas(df, npartitions=3)
    kw = {"groups": "g", "re_formula": "1 + t"}
    with dask.config.set(scheduler="sync"):
        got = dmixed.mixedlm("y ~ t", ddf, weights="w", **kw).fit()
        want = dmixed.mixedlm("y ~ t", ddf, **kw).fit()
    assert got.llf == want.llf
    np.testing.assert_array_equal(np.asarray(got.params), np.asarray(want.params))
    np.testing.assert_array_equal(np.asarray(got.bse), np.asarray(want.bse))


def test_weighted_lossy_groups_of_chains_compiled_fit_as_in_process(client, tmp_path, monkeypatch):
    """Weighted rows read by chains with the compiled sweep: the default's first pass
    finds the lossy groups and the second keeps their weighted sums about their
    shifts; the fit (its statistics gathered, or kept on the workers) is the
    in-process weighted fit's, and ``"always"``'s bit for bit; ``"never"`` refuses
    them with their number."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(1, n_users=300, close=5)
    df["w"] = _weights(np.random.default_rng(1), len(df), "uniform")
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t", weights="w").fit()
    files = _split(df, 3, 0)
    got, records = _chains_fit(files, tmp_path / "a", client, weights="w")
    assert _passes_run(records) == 2
    assert any(r.getMessage().startswith("lossy groups (5: ") for r in records)
    _same_fit(got, want)
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)
    kept, _ = _chains_fit(files, tmp_path / "d", client, weights="w", engine="distributed")
    _same_fit(kept, want)
    np.testing.assert_allclose(np.asarray(kept.bse), np.asarray(want.bse), rtol=1e-8)
    always, records = _chains_fit(files, tmp_path / "b", client, "always", weights="w")
    assert _passes_run(records) == 1
    assert got.llf == always.llf
    np.testing.assert_array_equal(np.asarray(got.params), np.asarray(always.params))
    with pytest.raises(dmixed.DataError, match="'dmixed.shifted_sweep' is 'never'") as err:
        _chains_fit(files, tmp_path / "n", client, "never", weights="w")
    assert err.value.lossy_groups == 5


@pytest.mark.parametrize("shifted", ["auto", "always"])
def test_weighted_lossy_groups_of_chains_whose_weights_are_1_in_some_files(
    client, tmp_path, monkeypatch, shifted
):
    """Files whose weights are all 1 read by the same chains as weighted ones (the
    compiled table's plan changes between them, unweighted to weighted and back): the
    sums about the groups' shifts of every file are kept, and the lossy groups fit as
    in process (they were refused, all of a file's sums lost at the change)."""
    import pandas

    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(2, n_users=300, close=5)
    files = _split(df, 4, 0)
    for n, frame in enumerate(files):
        w = _weights(np.random.default_rng(n), len(frame), "uniform")
        files[n] = frame.assign(w=1.0 if n % 2 == 0 else w)
    whole = pandas.concat(files, ignore_index=True)
    kw = {"groups": "g", "re_formula": "1 + t", "weights": "w"}
    want = dmixed.mixedlm("y ~ t", whole, **kw).fit()
    got, records = _chains_fit(files, tmp_path / shifted, client, shifted, weights="w")
    assert _passes_run(records) == (2 if shifted == "auto" else 1)
    _same_fit(got, want)
    np.testing.assert_allclose(np.asarray(got.bse), np.asarray(want.bse), rtol=1e-8)


def test_lossy_groups_of_chains_compiled_are_refused_with_never(
    clicks_in_process, client, tmp_path, monkeypatch
):
    """``"never"``: the compiled sweep keeps no sums about the groups' shifts and the
    pass does not run again: its lossy groups are refused, the message naming the
    setting."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df, _ = clicks_in_process
    with pytest.raises(dmixed.DataError, match="'dmixed.shifted_sweep' is 'never'") as err:
        _chains_fit(_split(df, 3, 0), tmp_path / "c", client, shifted="never")
    assert err.value.lossy_groups == 3
    with pytest.raises(dmixed.SpecError, match="dmixed.shifted_sweep"):
        _chains_fit(_split(df, 3, 0), tmp_path / "d", client, shifted="sometimes")


def _worker_errors(client) -> int:
    """The records at ERROR in the workers' logs (distributed's "Compute Failed", with
    its traceback, of a task that raised)."""
    logs = client.get_worker_logs()
    return sum(level == "ERROR" for records in logs.values() for level, _ in records)


def test_lossy_groups_of_chains_compiled_fail_no_task(client, tmp_path, monkeypatch):
    """The default's first pass finds 12 lossy groups in the blocks of both workers,
    the statistics to be kept there: no task fails (nothing at ERROR in the workers'
    logs: the blocks' summaries count the groups and the driver decides), the INFO line
    gives their number over all the blocks, and the fit is ``"always"``'s (one pass)
    bit for bit, its ℓ the in-process fit's; ``"never"`` refuses them, the message
    naming the setting and the number the same, again with no task failed."""
    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(6, n_users=800, close=12)  # (the base logged "5 or more": one block's)
    want = dmixed.mixedlm("y ~ t", df, groups="g", re_formula="1 + t").fit()
    files = _split(df, 3, 6)
    errors = _worker_errors(client)
    got, records = _chains_fit(files, tmp_path / "a", client, engine="distributed")
    assert _worker_errors(client) == errors
    assert _passes_run(records) == 2
    again = [r for r in records if r.getMessage().startswith("lossy groups")]
    assert len(again) == 1 and again[0].levelname == "INFO"
    assert again[0].getMessage().startswith("lossy groups (12: random slope t")
    always, _ = _chains_fit(files, tmp_path / "b", client, "always", engine="distributed")
    assert got.llf == always.llf
    np.testing.assert_array_equal(np.asarray(got.params), np.asarray(always.params))
    assert got.llf == pytest.approx(want.llf, rel=1e-12)
    with pytest.raises(dmixed.DataError, match="'dmixed.shifted_sweep' is 'never'") as err:
        _chains_fit(files, tmp_path / "n", client, "never", engine="distributed")
    assert err.value.lossy_groups == 12
    assert _worker_errors(client) == errors


def _scheduler_tasks(client, deadline: float = 10.0) -> int:
    """The tasks the scheduler holds once the client's releases have reached it (polled:
    a release travels in the client's next batch), at most ``deadline`` seconds."""
    import time

    end = time.monotonic() + deadline
    while True:
        held = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        if held == 0 or time.monotonic() > end:
            return held
        time.sleep(0.05)


def test_lossy_groups_refused_on_the_driver_hold_nothing_on_the_cluster(tmp_path, monkeypatch):
    """Statistics to be gathered to the driver (a small fit, the default engine) whose
    lossy groups are refused there (``"never"``): while the error lives (its traceback
    holding the data pass's frames, as a notebook's last error does), the cluster holds
    none of the pass's blocks or summaries.  A cluster of its own: nothing of another
    test's is held there."""
    from distributed import Client, LocalCluster

    import dmixed

    monkeypatch.setenv("DMIXED_KERNELS", "numba")
    df = _clicks(6, n_users=800, close=12)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        with pytest.raises(dmixed.DataError, match="'dmixed.shifted_sweep' is 'never'") as err:
            _chains_fit(_split(df, 3, 6), tmp_path / "n", client, "never")
        assert err.value.lossy_groups == 12
        assert err.value.__traceback__ is not None
        assert _scheduler_tasks(client) == 0


def _traced(func):
    """``func()``, and the memory it kept and its peak beyond what was traced before
    (bytes, ``tracemalloc``: numpy's arrays included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        out = func()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, current - start, peak - start


def test_narrow_ints_into_int64_take_no_array_of_their_own():
    """Steps opened into an int64 array are cast and summed there: no int64 copy of the
    steps on the way (a copy as large as the labels on the driver, every refit)."""
    steps = NarrowInts.of(np.arange(5, 3_000_005, 3, dtype=np.int64))
    assert steps.first is not None and steps.values.dtype == np.uint8
    out = np.empty(len(steps), dtype=np.int64)
    # tracemalloc counts every thread's allocations: a thread left running by an earlier
    # test in the same process (a closing cluster's) adds to one attempt, never to all
    traced = [_traced(lambda: steps.into(out))[1:] for _ in range(3)]
    kept, peak = min(t[0] for t in traced), min(t[1] for t in traced)
    assert kept <= 1 << 16 and peak <= 1 << 16
    np.testing.assert_array_equal(out, np.arange(5, 3_000_005, 3))


def test_an_assembly_of_summaries_holds_little_beyond_its_result():
    """The assembly of two summaries of 500k groups each (ids with gaps, sent narrowed)
    keeps its labels, row counts and positions, and on the way holds only the table of
    the keys' range and its mask besides: no copies of the parts cast, of the running
    count cast or of the codes gathered."""
    rng = np.random.default_rng(11)
    n, span = 1_000_000, 1_050_000
    ids = np.sort(rng.choice(span, n, replace=False)).astype(np.int64)  # sent as steps
    nobs = rng.integers(1, 40, n)
    halves = (ids % 2 == 0), (ids % 2 == 1)
    summaries = [
        block_summary(Block(ids[h], nobs[h], np.eye(2), int(nobs[h].sum()), 0.0)) for h in halves
    ]
    want = assemble_blocks([Block(ids[h], nobs[h], np.eye(2), 0, 0.0) for h in halves], 2)
    asm, kept, peak = _traced(lambda: assemble_blocks(summaries, 2))
    result = asm.group_labels.nbytes + asm.group_sizes.nbytes + asm.position.nbytes
    assert kept <= result + (1 << 20)
    assert peak <= result + (span + 1) + (1 << 20)
    np.testing.assert_array_equal(asm.group_labels, want.group_labels)
    np.testing.assert_array_equal(asm.group_sizes, want.group_sizes)


def _near_lossy_block_call(monkeypatch):
    """The arguments ``(stats, nobs, side, packed)`` :func:`lossy_shifts` took for the
    block of a Dask fit (one partition, sync scheduler) of the near-lossy frame with a
    lossy group 1 (tests/_near_lossy.py): group 0 near lossy, group 1 lossy."""
    import dask
    import dask.dataframe as dd

    import dmixed
    from dmixed.engines.dask import blocks

    from ..._near_lossy import NEAR_KW, near_lossy_frame

    calls = []

    def recorded(*args):
        calls.append(args)
        return lossy_shifts(*args)

    monkeypatch.setattr(blocks, "lossy_shifts", recorded)
    frame = near_lossy_frame(1e9, lossy_second=True)
    with dask.config.set(scheduler="sync"):
        model = dmixed.MixedLM.from_formula(
            "y ~ x1", dd.from_pandas(frame, npartitions=1), **NEAR_KW
        )
        model.statistics()
    assert calls
    return calls[-1]


def test_a_near_lossy_group_without_all_its_rows_keeps_the_plain_forms(monkeypatch):
    """:func:`lossy_shifts` gives the lossy and near-lossy groups whose sums about their
    shifts hold all their rows; a near-lossy group whose sums lack a row keeps its
    plain sums (as below no bound) without taking the centred forms from the lossy
    group beside it; a lossy group whose sums lack a row: none (refused, as on main)."""
    import dataclasses

    stats, nobs, side, packed = _near_lossy_block_call(monkeypatch)
    nobs = np.asarray(nobs)
    sel, _, _, _, lossy = lossy_shifts(stats, nobs, side, packed)
    assert sel.tolist() == [0, 1] and lossy.tolist() == [False, True]

    def short_of_a_row(pos: int):
        count = np.array(side.count, copy=True)
        count[pos] -= 1
        return dataclasses.replace(side, count=count)

    got = lossy_shifts(stats, nobs, short_of_a_row(0), packed)
    assert got is not None
    assert got[0].tolist() == [1] and got[4].tolist() == [True]
    assert all(np.shape(a)[-1] == 1 for a in got[1])
    assert lossy_shifts(stats, nobs, short_of_a_row(1), packed) is None


def test_triangles_unfolded_as_their_pieces_are_placed_take_no_copy_of_the_whole():
    """``reorder_parts(position, pieces, each=upper_unfolded)`` (the BLUPs' covariances
    on the driver) is the triangles reordered, then unfolded, bit for bit, and holds no
    reordered copy of the triangles on the way: its peak is its result and about one
    piece unfolded."""
    import tracemalloc

    from dmixed.engines.dask.blocks import reorder_parts
    from dmixed.engines.dask.handover import RowPieces, rows
    from dmixed.kernels.compiled import upper_unfolded

    rng = np.random.default_rng(3)
    n = 300_000
    tri = rng.normal(size=(n, 3))
    position = rng.permutation(n)
    parts = rows([RowPieces.of(tri[: n // 3]), RowPieces.of(tri[n // 3 :])])
    assert len(parts) > 4
    expected = upper_unfolded(reorder_parts(position, parts))
    tracemalloc.start()
    try:
        got = reorder_parts(position, parts, each=upper_unfolded)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, expected)
    largest = max(p.nbytes for p in parts) * 4 // 3
    assert peak <= got.nbytes + 2 * largest + (1 << 20)
