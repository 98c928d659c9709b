"""A chain's exchange decision recalled for the same inputs (dmixed.engines.dask.routing).

A chain of plain Parquet reads whose files, model and layout are those of a chain of an
earlier pass in the same process starts in the form that chain ended in: the same form,
the same bytes and the same statistics, bit for bit, without routing its first files to
find it again.  Forced forms neither recall nor record, and a rewritten file is decided
afresh.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dmixed
from dmixed.engines.dask import partials, routing
from dmixed.engines.dask.graph import chain_recipes, project_columns
from dmixed.engines.dask.parquet_direct import files_identity, parquet_reads
from dmixed.engines.dask.partials import chain_partials
from dmixed.engines.dask.ragged import RaggedPacked
from dmixed.engines.dask.routing import Decisions, Router, decision_key
from dmixed.stats.packed import PackedLayout

FORMULA = "y ~ x1 + x2"
RE = "1 + x1"


def _frame(n_groups: int, rows_per_group: int, spread: bool = True, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows_per_group)
    if spread:
        g = rng.permutation(g)
    n = g.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    b0, b1 = rng.normal(size=n_groups), 0.5 * rng.normal(size=n_groups)
    y = 1.0 + 0.5 * x1 - 0.25 * x2 + b0[g] + b1[g] * x1 + rng.normal(size=n)
    return pd.DataFrame({"g": g.astype(np.int64), "x1": x1, "x2": x2, "y": y})


def _write(df: pd.DataFrame, path, n_files: int) -> None:
    path.mkdir(exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), n_files)):
        table = pa.Table.from_pandas(df.iloc[rows], preserve_index=False)
        pq.write_table(table, path / f"part-{i:03d}.parquet")


def _chain(path):
    ddf = dd.read_parquet(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = dmixed.mixedlm(FORMULA, ddf, groups="g", re_formula=RE).spec
    (recipe,) = chain_recipes(project_columns(ddf, spec), 1)
    return spec, recipe, parquet_reads(recipe, spec)


class _Switches:
    """Router.switch, counting the rows it hands back (rows routed, then summed here)."""

    def __init__(self) -> None:
        self.rows = 0
        self.calls = 0

    def install(self, monkeypatch) -> None:
        switch = Router.switch

        def counted(router):
            self.calls += 1
            got = switch(router)
            self.rows += sum(len(p.keys) for p in got)
            return got

        monkeypatch.setattr(Router, "switch", counted)


def _run(spec, recipe, reads, exchange="auto"):
    packed = PackedLayout(2, 4)
    return chain_partials(recipe, spec, None, packed, 2, np.dtype(np.int64), None, exchange, reads)


def _equal(a, b) -> None:
    """Equal bit for bit, through tuples and dataclasses of arrays."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            _equal(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, tuple | list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _equal(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    else:
        assert a == b


def _same(a, b) -> None:
    np.testing.assert_array_equal(a[1], b[1])  # global sums
    _equal(list(a[0]), list(b[0]))
    for rows_a, rows_b in zip(a[3], b[3], strict=True):
        assert (rows_a is None) == (rows_b is None)
        if rows_a is not None:
            for pa_, pb_ in zip(rows_a, rows_b, strict=True):
                np.testing.assert_array_equal(pa_.keys, pb_.keys)
                np.testing.assert_array_equal(pa_.cols, pb_.cols)
    assert a[4]["bytes"] == b[4]["bytes"]
    assert a[4]["form"] == b[4]["form"]


@pytest.fixture
def decisions(monkeypatch):
    """An empty :data:`~dmixed.engines.dask.routing.DECISIONS` for the test."""
    fresh = Decisions()
    monkeypatch.setattr(routing.DECISIONS, "entries", fresh.entries)
    return routing.DECISIONS


@pytest.mark.parametrize("spread", [True, False])
def test_a_chain_that_switched_starts_with_its_partial(tmp_path, monkeypatch, decisions, spread):
    """Many rows a group, spread over the files or contiguous in them: the chain
    switches to its partial (spread: after routing some rows); the same chain again starts
    with it, routing nothing, and sends the same bytes and statistics bit for bit."""
    _write(_frame(300, 16, spread), tmp_path / "d", 6)
    spec, recipe, reads = _chain(tmp_path / "d")
    switches = _Switches()
    switches.install(monkeypatch)
    first = _run(spec, recipe, reads)
    assert first[4]["form"] == "partials"
    assert "fewer bytes than the rows" in first[4]["why"]
    assert "earlier pass" not in first[4]["why"]
    assert switches.rows > 0 and len(decisions.entries) == 1
    routed_first = switches.rows
    second = _run(spec, recipe, reads)
    assert switches.rows == routed_first  # nothing routed, nothing handed back
    assert second[4]["why"].endswith("in an earlier pass over the same files")
    assert second[4]["why"].startswith("partial (")
    _same(first, second)
    forced = _run(spec, recipe, reads, "partials")
    _same(forced, second)  # the same bits as the forced form


def test_a_chain_that_routed_its_rows_routes_them_again(tmp_path, monkeypatch, decisions):
    """Two rows a group over many files: rows are the fewer bytes; the same chain again
    routes every row without counting its groups, and sends the same rows."""
    _write(_frame(2000, 2), tmp_path / "d", 4)
    spec, recipe, reads = _chain(tmp_path / "d")
    first = _run(spec, recipe, reads)
    assert first[4]["form"] == "rows"

    def not_counted(self, keys):
        raise AssertionError("groups counted for a recalled decision")

    monkeypatch.setattr(routing.DistinctKeys, "add", not_counted)
    second = _run(spec, recipe, reads)
    assert second[4]["why"].startswith("rows (")
    assert second[4]["why"].endswith("in an earlier pass over the same files")
    _same(first, second)
    assert first[4]["routed_rows"] == second[4]["routed_rows"] == 4000


@pytest.mark.parametrize("exchange", ["rows", "partials"])
def test_forced_forms_neither_recall_nor_record(tmp_path, decisions, exchange):
    _write(_frame(300, 16), tmp_path / "d", 6)
    spec, recipe, reads = _chain(tmp_path / "d")
    out = _run(spec, recipe, reads, exchange)
    assert not decisions.entries
    assert out[4]["why"] == f"dmixed.exchange={exchange!r}"
    _run(spec, recipe, reads)  # auto: decided and kept
    assert len(decisions.entries) == 1
    again = _run(spec, recipe, reads, exchange)
    assert again[4]["why"] == f"dmixed.exchange={exchange!r}"
    assert again[4]["form"] == exchange
    _same(out, again)


def test_a_rewritten_file_is_decided_afresh(tmp_path, monkeypatch, decisions):
    """A file rewritten (here with two rows a group, rows the fewer bytes) changes the
    chain's key: the chain routes and decides again, with the new data's form."""
    _write(_frame(300, 16), tmp_path / "d", 3)
    spec, recipe, reads = _chain(tmp_path / "d")
    key = decision_key(reads, "model")
    assert key is not None
    assert _run(spec, recipe, reads)[4]["form"] == "partials"
    _write(_frame(4000, 2, seed=4), tmp_path / "d", 3)
    assert decision_key(reads, "model") != key
    switches = _Switches()
    switches.install(monkeypatch)
    out = _run(spec, recipe, reads)
    assert out[4]["form"] == "rows" and "earlier pass" not in out[4]["why"]
    assert switches.calls > 0
    assert len(decisions.entries) == 2


def test_the_key_needs_every_file_and_the_same_inputs(tmp_path):
    _write(_frame(50, 4), tmp_path / "d", 2)
    _, _, reads = _chain(tmp_path / "d")
    assert decision_key(None, "model") is None
    assert decision_key(reads, "model") == decision_key(reads, "model")
    assert decision_key(reads, "model") != decision_key(reads, "other model")
    assert decision_key(reads, lambda: 0) is None  # does not pickle: decided as it reads
    (item, *_) = reads.items
    os.remove(item[0])
    assert files_identity(reads) is None


def test_decisions_keep_the_newest():
    kept = Decisions(kept=2)
    router = Router("auto", 4)
    for key in "abc":
        kept.record(key, router)
    assert list(kept.entries) == ["b", "c"]
    assert kept.recall("c") == ("rows", (0, 0)) and kept.recall("a") is None
    kept.record(None, router)
    kept.record("d", Router("partials", 4))  # a forced form: nothing to keep
    assert list(kept.entries) == ["b", "c"]


class _YieldingDict(dict):
    """A dict that lets other threads run between starting an iteration and its first
    step: where eviction is not locked, another thread's insertion lands in between."""

    def __iter__(self):
        it = super().__iter__()
        time.sleep(0.0002)
        return it


def test_decisions_record_and_recall_from_many_threads():
    """A worker's threads run chains at once: recording past the cap from many threads,
    switching threads often, raises nothing and keeps the cap."""
    kept = Decisions(kept=4)
    kept.entries = _YieldingDict()
    router = Router("auto", 4)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        for i in range(200):
            try:
                kept.record((t, i), router)
                kept.recall((t, i))
            except Exception as err:  # noqa: BLE001 - any error is the failure
                errors.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(kept.entries) == 4


def test_a_file_rewritten_with_its_size_and_mtime_put_back_is_decided_afresh(
    tmp_path, monkeypatch, decisions
):
    """A file rewritten in place with the same size and its modification time put back
    (as ``cp -p`` or ``touch -r`` leave it): its change time moved, so the key differs
    and the chain routes and decides again rather than recalling."""
    _write(_frame(300, 16), tmp_path / "d", 3)
    spec, recipe, reads = _chain(tmp_path / "d")
    key = decision_key(reads, "model")
    assert _run(spec, recipe, reads)[4]["form"] == "partials"
    path = reads.items[0][0]
    before = os.stat(path)
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    assert decision_key(reads, "model") != key
    switches = _Switches()
    switches.install(monkeypatch)
    out = _run(spec, recipe, reads)
    assert "earlier pass" not in out[4]["why"]
    assert switches.calls > 0
    assert len(decisions.entries) == 2


def test_an_entry_does_not_grow_with_the_reads(tmp_path, decisions):
    """The key is a digest: a chain of many files keeps as few bytes as one of two."""
    _write(_frame(300, 16), tmp_path / "few", 2)
    _write(_frame(300, 16), tmp_path / "many", 24)
    few, many = (_chain(tmp_path / name) for name in ("few", "many"))
    assert len(many[2].items) == 24
    keys = [decision_key(reads, "model") for _, _, reads in (few, many)]
    assert all(isinstance(key, bytes) for key in keys)
    assert len(keys[0]) == len(keys[1]) == 16
    for spec, recipe, reads in (few, many):
        _run(spec, recipe, reads)
    assert len(decisions.entries) == 2
    assert all(isinstance(key, bytes) and len(key) == 16 for key in decisions.entries)


def test_a_ragged_chain_builds_no_key(tmp_path, monkeypatch):
    """A ragged layout ignores the key: its files are not looked at, nor its inputs
    pickled."""
    _write(_frame(50, 4), tmp_path / "d", 2)
    spec, recipe, reads = _chain(tmp_path / "d")
    got = {}

    def no_key(*args):
        raise AssertionError("a key built for a ragged chain")

    def accumulate(*args):
        got["decided"] = args[-1]
        return "accumulated"

    monkeypatch.setattr(partials, "decision_key", no_key)
    monkeypatch.setattr(partials, "accumulate_frames", accumulate)
    ragged = RaggedPacked(2, 4, (3,))
    out = chain_partials(recipe, spec, None, ragged, 2, np.dtype(np.int64), None, "auto", reads)
    assert out == "accumulated" and got["decided"] is None
    with pytest.raises(AssertionError, match="a key built"):
        chain_partials(recipe, spec, None, PackedLayout(2, 4), 2, np.int64, None, "auto", reads)


def test_a_refit_logs_the_recalled_decision_and_gives_the_same_fit(tmp_path, caplog, decisions):
    _write(_frame(300, 16), tmp_path / "d", 4)
    fits, logs = [], []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dmixed"), dask.config.set(scheduler="sync"):
            model = dmixed.mixedlm(
                FORMULA, dd.read_parquet(tmp_path / "d"), groups="g", re_formula=RE
            )
            fits.append(model.fit())
        logs.append([r.getMessage() for r in caplog.records if "exchange:" in r.getMessage()])
    assert len(logs[0]) == len(logs[1]) == 1
    assert "partials: partial (" in logs[0][0] and "earlier pass" not in logs[0][0]
    assert "partials: partial (" in logs[1][0]
    assert "in an earlier pass over the same files" in logs[1][0]
    assert fits[0].llf == fits[1].llf
    np.testing.assert_array_equal(fits[0].fe_params, fits[1].fe_params)
    np.testing.assert_array_equal(fits[0].bse, fits[1].bse)
