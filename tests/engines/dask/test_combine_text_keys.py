"""Text group keys in a chain: numbered once (their columns), never hashed again as
Python objects for the rows' sums about their groups' shifts; and Dask fits of text
keys the same, bit for bit, as of their integer codes and as the in-process fit."""

from __future__ import annotations

import contextlib

import distributed
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import kernels
from dmixed.design import DesignMatrices
from dmixed.engines.dask.combine import GroupAccumulator
from dmixed.errors import DroppedRowsWarning
from dmixed.stats.standardize import Standardization

LABELS = np.array(["", "é", "g1", "g10", "日本", "a\0b", "Z"] + [f"k{i}" for i in range(30)])


def _objects(keys) -> np.ndarray:
    out = np.empty(len(keys), dtype=object)
    out[:] = list(keys)
    return out


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("exact", [False, True])
def test_text_keys_are_factorized_at_most_once(monkeypatch, kernel, exact):
    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    factorized = []
    real = pd.factorize

    def counting(values, *args, **kwargs):
        if np.asarray(values).dtype == object:
            factorized.append(len(values))
        return real(values, *args, **kwargs)

    monkeypatch.setattr(pd, "factorize", counting)
    rng = np.random.default_rng(3)
    batches = [_objects(LABELS[rng.integers(0, LABELS.size, 200)]) for _ in range(4)]
    n = sum(k.size for k in batches)
    # slopes far from 0 (a time): the rows' sums about the groups' shifts are kept
    t = 1.7e9 + 3e7 * rng.random(n) + rng.normal(size=n)
    x = np.column_stack([np.ones(n), t])
    y = rng.normal(size=n)
    std = Standardization.choose(y, x, x)
    acc = GroupAccumulator(kernels.packed_width(2, 3), object, keep_shifts=True)
    if exact:
        acc.text = None  # the hash table of Python keys
    rows = 0
    for keys in batches:
        at = slice(rows, rows + keys.size)
        dm = DesignMatrices(y[at], x[at], x[at].copy(), [], [], keys, None, 0)
        acc.add(keys, dm, x[at].copy(), std)
        rows += keys.size
    parts = acc.result(2)
    assert sum(len(p[0]) for p in parts) == LABELS.size
    if kernel == "numpy":  # the reference's rows: the shifts' sums kept with each part
        assert all(len(p) == 4 and p[3] is not None for p in parts)
    for p in parts:
        if len(p) == 4 and p[3] is not None:
            assert p[3].keys.tolist() == p[0].tolist()
    if exact or kernel == "numpy":  # the hash table (the text hash runs compiled only)
        # only the keys a partition brought that were not known yet
        assert sum(factorized) < rows
    else:
        assert factorized == []


def _dask_fit(path, options, n_files):
    import dask
    import dask.dataframe as dd

    # one file: Dask's graph of one partition is not read in chains (the default pass)
    config = {"scheduler": "sync"} | ({"dmixed.data_pass": "chains"} if n_files > 1 else {})
    with dask.config.set(config):
        model = dmixed.mixedlm(
            "y ~ x", dd.read_parquet(path), groups="g", re_formula="1 + x", **options
        )
        with pytest.warns(DroppedRowsWarning) if options else contextlib.nullcontext():
            return model.fit()


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("n_files", [1, 3, 7])
@pytest.mark.parametrize("missing", [False, True])
def test_dask_fits_of_text_keys_and_of_their_codes_agree(
    monkeypatch, tmp_path, kernel, n_files, missing
):
    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    rng = np.random.default_rng(11)
    n = 700
    order = np.argsort(LABELS)  # codes in the keys' sorted order: the same group order
    rank = np.empty(LABELS.size, dtype=np.int64)
    rank[order] = np.arange(LABELS.size)
    code = rng.integers(0, LABELS.size, n)
    x = rng.normal(size=n)
    u, b = rng.normal(size=(2, LABELS.size))
    y = x + u[code] + b[code] * x + 0.5 * rng.normal(size=n)
    text = pd.Series(LABELS[code], dtype=object)
    ints = pd.Series(rank[code], dtype="float64" if missing else "int64")
    options = {}
    if missing:
        text[::40] = None
        ints[::40] = np.nan
        options["missing"] = "drop"
    fits = {}
    for name, g in (("text", text), ("ints", ints)):
        df = pd.DataFrame({"y": y, "x": x, "g": g})
        for i, part in enumerate(np.array_split(np.arange(n), n_files)):
            (tmp_path / name).mkdir(exist_ok=True)
            df.iloc[part].to_parquet(tmp_path / name / f"part.{i}.parquet")
        fits[name] = _dask_fit(tmp_path / name, options, n_files)
    df = pd.DataFrame({"y": y, "x": x, "g": text})
    with pytest.warns(DroppedRowsWarning) if missing else contextlib.nullcontext():
        model = dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + x", **options)
        fits["local"] = model.fit()
    got, ints, local = fits["text"], fits["ints"], fits["local"]
    # text keys and their codes: the same fit bit for bit
    assert got.llf == ints.llf
    np.testing.assert_array_equal(got.params, ints.params)
    labels = list(got.random_effects)
    assert labels == sorted(labels) == list(local.random_effects)
    for g in labels:
        code = rank[np.flatnonzero(LABELS == g)[0]]
        np.testing.assert_array_equal(
            np.asarray(got.random_effects[g]), np.asarray(ints.random_effects[code])
        )
    # the in-process fit: the same where one partition is summed in one pass, else
    # the same up to the order in which the partitions' sums are added
    if n_files == 1:
        assert got.llf == local.llf
        np.testing.assert_array_equal(got.params, local.params)
    else:
        np.testing.assert_allclose(got.llf, local.llf, rtol=1e-12)
        np.testing.assert_allclose(got.params, local.params, rtol=1e-8, atol=1e-10)


def _late_batches(rng) -> list[np.ndarray]:
    """Four batches of text keys with repeats; the last brings keys no batch before
    held (first seen late)."""
    early, late = LABELS[:-5], LABELS[-5:]
    batches = [early[rng.integers(0, early.size, 200)] for _ in range(3)]
    batches.append(np.concatenate([early[rng.integers(0, early.size, 100)], late, late[::-1]]))
    return [_objects(b) for b in batches]


def _accumulated(batches, how: str, exact: bool) -> list:
    """The partials of an accumulator fed ``batches`` of text keys as Python objects
    (``objects``), with their codes in sorted order (``sorted``) or in order of first
    appearance as a chain numbers them from their Arrow column (``first``), or as
    Arrow strings (``arrow``)."""
    import pyarrow as pa

    from dmixed.design.dtypes import coded_group_keys

    rng = np.random.default_rng(5)
    n = sum(b.size for b in batches)
    t = 1.7e9 + 3e7 * rng.random(n) + rng.normal(size=n)
    x = np.column_stack([np.ones(n), t])
    y = rng.normal(size=n)
    std = Standardization.choose(y, x, x)
    acc = GroupAccumulator(kernels.packed_width(2, 3), object, keep_shifts=True)
    if exact:
        acc.text = None  # the hash table of Python keys
    rows = 0
    for batch in batches:
        at = slice(rows, rows + batch.size)
        keys, coded = batch, None
        if how == "sorted":  # codes in another order than the rows bring the keys
            keys, coded = coded_group_keys(pd.Series(batch, dtype="str"))
        elif how == "first":  # as a chain numbers them from their Arrow column
            from dmixed.stats.keys import arrow_first_codes

            coded = arrow_first_codes(pa.array(list(batch), type=pa.string()))
        dm = DesignMatrices(y[at], x[at], x[at].copy(), [], [], keys, None, 0)
        if coded is not None:
            dm = dm.with_first_codes(*coded)
        added = pa.array(list(batch), type=pa.string()) if how == "arrow" else keys
        acc.add(added, dm, x[at].copy(), std)
        rows += batch.size
    return acc.result(2)


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("how", ["sorted", "first", "arrow"])
def test_text_keys_numbered_by_their_distinct_keys(monkeypatch, kernel, exact, how):
    """Keys a chain numbered from their column, or read as Arrow strings, are looked
    up in the hash table once per distinct key of a partition, not once a row; the
    partials (keys, their order of first appearance, sums, the sums about the groups'
    shifts) are those of the keys as Python objects, bit for bit."""
    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    lookups: list = []
    real = pd.Index.get_indexer

    def counting(self, target, *args, **kwargs):
        if self.dtype == object:
            lookups.append(len(target))
        return real(self, target, *args, **kwargs)

    batches = _late_batches(np.random.default_rng(7))
    want = _accumulated(batches, "objects", exact)
    monkeypatch.setattr(pd.Index, "get_indexer", counting)
    got = _accumulated(batches, how, exact)
    monkeypatch.setattr(pd.Index, "get_indexer", real)
    assert max(lookups, default=0) <= LABELS.size < min(b.size for b in batches)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0].tolist() == w[0].tolist()  # the same groups in the same order
        np.testing.assert_array_equal(np.asarray(g[1]), np.asarray(w[1]))
        assert len(g) == len(w)
        if len(w) == 4:
            assert g[3].keys.tolist() == w[3].keys.tolist()
            for field in ("count", "sums"):
                if hasattr(w[3], field):
                    np.testing.assert_array_equal(getattr(g[3], field), getattr(w[3], field))


def _key_column(kind: str, labels: np.ndarray, code: np.ndarray):
    if kind == "bytes":
        return pd.Series([s.encode() for s in labels[code]], dtype=object)
    if kind == "category":
        return pd.Series(pd.Categorical(labels[code], categories=sorted(labels)))
    return pd.Series(labels[code], dtype="str" if kind == "str" else object)


@pytest.fixture(scope="module")
def client():
    """One worker in this process (the kernels' setting of the test holds there)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as got,
    ):
        yield got


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["str", "object", "category", "bytes"])
@pytest.mark.parametrize("persisted", [False, True])
def test_dask_fits_of_late_text_keys_and_of_their_codes_agree(
    monkeypatch, tmp_path, client, kernel, kind, persisted
):
    """Text keys of several kinds, some first seen in the last partition, some missing
    (``missing="drop"``), read from Parquet files or from pandas partitions: the same
    Dask fit bit for bit as of their integer codes in the keys' sorted order."""
    import dask
    import dask.dataframe as dd

    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    rng = np.random.default_rng(13)
    n, n_files = 900, 4
    labels = LABELS[LABELS != "a\0b"] if kind == "category" else LABELS
    order = np.argsort([s.encode() for s in labels] if kind == "bytes" else labels)
    rank = np.empty(labels.size, dtype=np.int64)
    rank[order] = np.arange(labels.size)
    code = rng.integers(0, labels.size - 4, n)
    code[-40:] = labels.size - 1 - np.arange(40) % 4  # four keys only in the last part
    x = rng.normal(size=n)
    u, b = rng.normal(size=(2, labels.size))
    y = x + u[code] + b[code] * x + 0.5 * rng.normal(size=n)
    keys = _key_column(kind, labels, code)
    ints = pd.Series(rank[code], dtype="float64")
    keys[::50] = None
    ints[::50] = np.nan
    fits = []
    for g in (keys, ints):
        df = pd.DataFrame({"y": y, "x": x, "g": g})
        if persisted:  # pandas partitions held by the worker, read in chains there
            ddf = client.persist(dd.from_pandas(df, npartitions=n_files, sort=False))
            # held before pytest.warns opens: pandas opens catch_warnings in the worker's
            # thread, and a window opened before pytest.warns and closed inside it puts
            # back the filters that make the warning an error
            with client.as_current():
                distributed.wait(ddf)
            where = client.as_current()
        else:
            path = tmp_path / str(len(fits))
            path.mkdir()
            for i, part in enumerate(np.array_split(np.arange(n), n_files)):
                df.iloc[part].to_parquet(path / f"part.{i}.parquet")
            ddf = dd.read_parquet(path)
            where = dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"})
        with where, pytest.warns(DroppedRowsWarning):
            model = dmixed.mixedlm("y ~ x", ddf, groups="g", re_formula="1 + x", missing="drop")
            fits.append(model.fit(client=client) if persisted else model.fit())
    got, want = fits
    assert got.llf == want.llf
    np.testing.assert_array_equal(got.params, want.params)
    assert len(got.random_effects) == labels.size
    for g, re in got.random_effects.items():
        key = g.decode() if isinstance(g, bytes) else g
        at = rank[np.flatnonzero(labels == key)[0]]
        np.testing.assert_array_equal(np.asarray(re), np.asarray(want.random_effects[at]))


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["string", "large_string"])
@pytest.mark.parametrize("nan_x", [False, True])
def test_direct_reads_of_text_keys_fit_as_their_codes(monkeypatch, tmp_path, kernel, kind, nan_x):
    """Parquet files of text keys without nulls, read by the chain itself (keys
    numbered by :func:`~dmixed.stats.keys.arrow_first_codes`), some keys first seen in
    the last file, with NaN (not null) in ``x`` under ``missing="drop"`` (the codes of
    the rows kept): the same Dask fit bit for bit as of the keys' integer codes in
    their sorted order."""
    import dask
    import dask.dataframe as dd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dmixed.engines.dask import partials

    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    rng = np.random.default_rng(17)
    n, n_files = 900, 4
    rank = np.empty(LABELS.size, dtype=np.int64)
    rank[np.argsort(LABELS)] = np.arange(LABELS.size)
    code = rng.integers(0, LABELS.size - 4, n)
    code[-40:] = LABELS.size - 1 - np.arange(40) % 4  # four keys only in the last file
    x = rng.normal(size=n)
    u, b = rng.normal(size=(2, LABELS.size))
    y = x + u[code] + b[code] * x + 0.5 * rng.normal(size=n)
    if nan_x:
        x[::37] = np.nan  # NaN values, not Arrow nulls: the design drops their rows
    numbered: list = []
    real = partials.arrow_first_codes

    def counting(values):
        got = real(values)
        numbered.append(got is not None)
        return got

    monkeypatch.setattr(partials, "arrow_first_codes", counting)
    fits = []
    for keys in (pa.array(list(LABELS[code]), type=getattr(pa, kind)()), pa.array(rank[code])):
        path = tmp_path / str(len(fits))
        path.mkdir()
        for i, part in enumerate(np.array_split(np.arange(n), n_files)):
            table = pa.table(
                {"y": y[part], "x": pa.array(x[part], from_pandas=False), "g": keys.take(part)}
            )
            pq.write_table(table, path / f"part.{i}.parquet")
        warns = pytest.warns(DroppedRowsWarning) if nan_x else contextlib.nullcontext()
        config = dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"})
        with config, warns:
            model = dmixed.mixedlm(
                "y ~ x", dd.read_parquet(path), groups="g", re_formula="1 + x", missing="drop"
            )
            fits.append(model.fit())
        if kernel == "numpy" and not fits[1:]:
            # the text keys' files, every one read and numbered directly (with numba the
            # chain's column sweep hashes the Arrow keys itself instead)
            assert numbered and all(numbered), numbered
    got, want = fits
    assert got.llf == want.llf
    np.testing.assert_array_equal(got.params, want.params)
    assert len(got.random_effects) == LABELS.size
    for g, re in got.random_effects.items():
        at = rank[np.flatnonzero(LABELS == g)[0]]
        np.testing.assert_array_equal(np.asarray(re), np.asarray(want.random_effects[at]))


@pytest.mark.parametrize("first", ["string", "binary"])
def test_parquet_keys_binary_in_some_files_and_string_in_others_are_refused(tmp_path, first):
    """A group column ``binary`` in some Parquet files and ``string`` in others would
    make ``b"k1"`` and ``"k1"`` two groups: the fit is refused naming the column and
    both types, as the in-process fit refuses a column of bytes and str (where the
    first file is ``binary`` the collection's column is ``object`` and its partitions'
    values are checked already; where it is ``string`` the labels are)."""
    import dask
    import dask.dataframe as dd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dmixed.errors import BadValuesError

    rng = np.random.default_rng(3)
    other = "binary" if first == "string" else "string"
    for i, kind in enumerate([first, other, first, other]):
        keys = pa.array([f"k{j % 7}" for j in range(40)]).cast(getattr(pa, kind)())
        table = pa.table({"y": rng.normal(size=40), "x": rng.normal(size=40), "g": keys})
        pq.write_table(table, tmp_path / f"part.{i}.parquet")
    config = dask.config.set({"scheduler": "sync", "dmixed.data_pass": "chains"})
    with config, pytest.raises(BadValuesError, match=r"column 'g' .*\(bytes, str\)"):
        dmixed.mixedlm("y ~ x", dd.read_parquet(tmp_path), groups="g").fit()


def _clashing_hashes(clash: str):
    """A hash of text keys (as the accumulator's ``text_key_hashes``) that gives two
    distinct keys one hash: two keys of the first batch (``new``), or a key first seen
    in the last batch and one held since the first (``held``); distinct hashes
    otherwise (``none``)."""
    from dmixed.engines.dask import combine

    real = combine.text_key_hashes
    pairs = {"new": (LABELS[1], LABELS[2]), "held": (LABELS[-1], LABELS[0])}

    def hashes(keys):
        out = real(keys).copy()
        if clash in pairs:
            late, early = pairs[clash]
            out[keys == late] = real(np.array([early], dtype=object))[0]
        return out

    return hashes


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("how", ["objects", "first"])
@pytest.mark.parametrize("clash", ["none", "new", "held"])
def test_text_keys_looked_up_by_hashes_keep_two_keys_of_one_hash_apart(
    monkeypatch, kernel, how, clash
):
    """The hash table of text keys looks them up by 64-bit hashes of their bytes (no
    lookup in an Index of Python strings while no two keys share a hash); two keys
    given one hash stay two groups (the keys' own table from then on), and the
    partials are those of the keys' own table bit for bit (empty, non-ASCII and
    NUL-containing keys among them)."""
    from dmixed.engines.dask import combine

    monkeypatch.setenv("DMIXED_KERNELS", kernel)
    batches = _late_batches(np.random.default_rng(11))
    with monkeypatch.context() as clashing:  # one hash for all: the keys' own table
        clashing.setattr(combine, "text_key_hashes", lambda keys: np.zeros(len(keys), np.uint64))
        want = _accumulated(batches, "objects", True)
    monkeypatch.setattr(combine, "text_key_hashes", _clashing_hashes(clash))
    lookups: list = []
    real = pd.Index.get_indexer

    def counting(self, target, *args, **kwargs):
        if self.dtype == object:
            lookups.append(len(target))
        return real(self, target, *args, **kwargs)

    monkeypatch.setattr(pd.Index, "get_indexer", counting)
    got = _accumulated(batches, how, True)
    monkeypatch.setattr(pd.Index, "get_indexer", real)
    if clash == "none":
        assert lookups == []
    elif clash == "held":
        # the keys' own table only from the batch that brought the clash
        assert 0 < len(lookups) <= 2
    else:
        assert lookups
    assert sum(len(p[0]) for p in got) == LABELS.size
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0].tolist() == w[0].tolist()
        np.testing.assert_array_equal(np.asarray(g[1]), np.asarray(w[1]))
        assert len(g) == len(w)
        if len(w) == 4:
            assert g[3].keys.tolist() == w[3].keys.tolist()
            np.testing.assert_array_equal(g[3].count, w[3].count)
            np.testing.assert_array_equal(g[3].dsum, w[3].dsum)


def test_keys_not_all_text_are_not_hashed(monkeypatch):
    """Object keys that are not all ``str`` (bytes, a number among strings) take the
    keys' own table: no hash of their bytes is made, and each key has its column."""
    from dmixed.engines.dask import combine

    def refuse(keys):
        raise AssertionError("hashed")

    monkeypatch.setattr(combine, "text_key_hashes", refuse)
    for keys in (_objects(["a", "b", 2.5, "a"]), _objects([b"a", b"b", b"a"]), _objects(["a", 1])):
        n = keys.size
        x = np.column_stack([np.ones(n), np.arange(n, dtype=float)])
        y = np.arange(n, dtype=float)
        acc = GroupAccumulator(kernels.packed_width(2, 3), object)
        acc.text = None
        dm = DesignMatrices(y, x, x.copy(), [], [], keys, None, 0)
        acc.add(keys, dm, x.copy(), Standardization.choose(y, x, x))
        got = acc.result(1)[0]
        assert got[0].tolist() == list(dict.fromkeys(keys.tolist()))
        assert acc.by_hash is not None
