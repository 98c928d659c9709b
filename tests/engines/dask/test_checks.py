"""Partitions as Dask users really have them: missing values counted over the whole
data, partitions that lack a column or have none, persisted data that are gone."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, default_client, futures_of

import dmixed
from dmixed.errors import DataError

from ..._synth import make_data


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = make_data(n_groups=30, max_size=12, seed=5)
    df["f"] = np.random.default_rng(5).normal(size=len(df))
    df["site"] = np.array(["n", "s", "e"])[np.arange(len(df)) % 3]
    return df


def _message(excinfo) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize(
    ("vc", "source", "where"),
    [(False, "from_pandas", "sync"), (True, "from_pandas", "sync"), (False, "from_map", "sync")]
    + [(False, "from_pandas", "cluster")],
)
def test_missing_values_message_counts_the_whole_data(frame, vc, source, where, request):
    """missing="raise": the Dask fit's message counts every partition's missing rows,
    word for word the in-process message (the pass raised in one partition), and says
    which partitions hold them."""
    df = frame.copy()
    df.loc[df.index[::11], "x2"] = np.nan
    df.loc[df.index[3::29], "g"] = np.nan
    kw = {"vc_formula": {"sub": "0 + C(sub)"}} if vc else {}
    with pytest.raises(DataError) as in_process:
        dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **kw).fit()
    assert "(16 rows)" in _message(in_process)
    ddf = _collection(df, 4, source)
    if where == "cluster":
        kw["client"] = request.getfixturevalue("client")
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as on_dask:
        fit_kw = {"client": kw.pop("client")} if "client" in kw else {}
        dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", **kw).fit(**fit_kw)
    where = ": in all 4 partitions of the Dask DataFrame)"
    assert _message(on_dask).replace(where, ")") == _message(in_process)
    assert _message(on_dask).count(where) == 2  # both columns


def test_missing_values_message_names_the_files_or_partitions_holding_them(frame, tmp_path):
    """The message named the column, not the file (or partition) its missing values
    are in."""
    df = frame.copy()
    df.loc[df.index[-3:], "x2"] = np.nan  # in the last part only
    bounds = [0, len(df) // 3, 2 * len(df) // 3, len(df)]
    for i in range(3):
        df.iloc[bounds[i] : bounds[i + 1]].to_parquet(tmp_path / f"part{i}.parquet", index=False)
    files = dd.read_parquet(sorted(str(p) for p in tmp_path.iterdir()))
    in_memory = dd.from_pandas(df, npartitions=3, sort=False)
    for ddf, where in (
        (files, f"in {tmp_path / 'part2.parquet'}"),
        (in_memory, "in partition 2 of the Dask DataFrame"),
    ):
        with dask.config.set(scheduler="sync"), pytest.raises(DataError) as info:
            dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g").fit()
        assert f"missing values in column 'x2' (3 rows: {where}); pass" in _message(info)


def _from_parts(parts: list[pd.DataFrame], meta: pd.DataFrame, source: str = "from_delayed"):
    """A collection whose partitions Dask does not check against its columns: in
    memory (one task per partition in the data pass) or read by a function (chains)."""
    if source == "from_delayed":
        return dd.from_delayed([dask.delayed(p) for p in parts], meta=meta, verify_meta=False)
    return dd.from_map(_Read(parts), range(len(parts)), meta=meta, enforce_metadata=False)


class _Read:
    """Partition reader for ``dd.from_map`` (the data pass reads these in chains)."""

    def __init__(self, parts: list[pd.DataFrame]) -> None:
        self.parts = parts

    def __call__(self, i: int) -> pd.DataFrame:
        return self.parts[i]


def _collection(df: pd.DataFrame, nparts: int, source: str):
    if source == "from_pandas":
        return dd.from_pandas(df, npartitions=nparts)
    parts = [df.iloc[i] for i in np.array_split(np.arange(len(df)), nparts)]
    return _from_parts(parts, df.iloc[:0], source)


@pytest.mark.parametrize(
    ("formula", "source"),
    [
        ("y ~ x1 + f", "from_delayed"),
        ("y ~ x1 + f + C(site)", "from_delayed"),
        ("y ~ x1 + f", "from_map"),
    ],
)
def test_partition_without_a_model_column(frame, formula, source):
    """A partition lacking 'f' is named (column and partition), in the level scan
    (C(site) is scanned) and in the data pass, and for predictions."""
    parts = [frame.iloc[:60], frame.iloc[60:120].drop(columns="f"), frame.iloc[120:]]
    ddf = _from_parts(parts, frame.iloc[:0], source)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(DataError, match=r"partition 1 .*no column\(s\) 'f'"):
            dmixed.mixedlm(formula, ddf, groups="g").fit()
        whole = dd.from_pandas(frame, npartitions=2)
        res = dmixed.mixedlm(formula, whole, groups="g").fit()
        with pytest.raises(DataError, match=r"partition 1 .*no column\(s\) 'f'"):
            res.predict(ddf).compute()


def test_empty_partition_without_columns_contributes_nothing(frame):
    parts = [frame.iloc[:70], pd.DataFrame(), frame.iloc[70:]]
    ddf = _from_parts(parts, frame.iloc[:0])
    assert len(ddf.compute()) == len(frame)  # Dask's own compute accepts it
    ref = dmixed.mixedlm("y ~ x1 + f + C(site)", frame, groups="g").fit()
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm("y ~ x1 + f + C(site)", ddf, groups="g").fit()
        fitted = res.fittedvalues.compute()
        pred = res.predict(ddf).compute()
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(fitted.to_numpy(), ref.fittedvalues, rtol=1e-8)
    pd.testing.assert_index_equal(fitted.index, frame.index)
    np.testing.assert_allclose(pred.to_numpy(), ref.predict(frame), rtol=1e-8)


@pytest.fixture(scope="module")
def client():
    """Threads in this process: enough for futures to be released."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def test_persisted_data_released_are_refused(frame, client):
    """After client.cancel(futures_of(p)) Dask refuses p too ("lost dependencies"): the
    fit, and fittedvalues/predict of a fit made before, say the data are gone."""
    with client.as_current():
        p = client.persist(dd.from_pandas(frame, npartitions=3))
        res = dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        client.cancel(futures_of(p))
        gone = r"persisted data of this Dask DataFrame are gone.*persist the source"
        with pytest.raises(DataError, match=gone):
            dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        with pytest.raises(DataError, match=gone):
            res.fittedvalues.compute()
        with pytest.raises(DataError, match=gone):
            res.resid.compute()
        with pytest.raises(DataError, match=gone):
            res.predict(p).compute()
        # persisted again, it fits (other keys: the client may still hold the
        # cancelled state of the old ones for a moment)
        again = client.persist(dd.from_pandas(frame, npartitions=4))
        llf = dmixed.mixedlm("y ~ x1", again, groups="g").fit().llf
    assert llf == pytest.approx(res.llf, rel=1e-10)


def test_persisted_data_gone_after_a_restart(frame):
    """client.restart() (workers with a nanny) releases every future: the fit and the
    fitted values of a fit made before are refused with the same advice."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
        c.as_current(),
    ):
        p = c.persist(dd.from_pandas(frame, npartitions=2))
        res = dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        c.restart()
        gone = r"persisted data of this Dask DataFrame are gone"
        with pytest.raises(DataError, match=gone):
            dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        with pytest.raises(DataError, match=gone):
            res.fittedvalues.compute()


def test_persisted_by_another_client_is_refused_before_any_work(frame, client):
    """A frame persisted through one cluster's client and fitted with another's
    (``fit(client=B)``): refused naming the cause, before a task is submitted, not
    distributed's FuturesCancelledError ("lost dependencies") from the data pass."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as other_cluster,
        Client(other_cluster, set_as_default=False) as other,
    ):
        p = client.persist(dd.from_pandas(frame, npartitions=3))
        held = r"held by another client.*persist the collection with the client you fit with"
        with pytest.raises(DataError, match=held):
            dmixed.mixedlm("y ~ x1", p, groups="g").fit(client=other)
        assert not other.who_has()  # nothing ran there
        # no client given, another cluster's the default: that one is named as such
        with (
            Client(other_cluster) as default,
            pytest.raises(
                DataError, match=r"not on that of the fit's client \(given or the default"
            ),
        ):
            assert default_client() is default
            dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        # with the client that persisted it, the same collection fits
        assert np.isfinite(dmixed.mixedlm("y ~ x1", p, groups="g").fit(client=client).llf)


def test_persisted_by_another_client_of_the_same_scheduler_fits(frame):
    """Two clients of one scheduler, reached by two names (``127.0.0.1``, ``localhost``):
    the data one persisted fit with the other (the scheduler holds them)."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as first,
        Client(
            cluster.scheduler_address.replace("127.0.0.1", "localhost"), set_as_default=False
        ) as second,
    ):
        assert first.scheduler.address != second.scheduler.address
        p = first.persist(dd.from_pandas(frame, npartitions=3))
        got = dmixed.mixedlm("y ~ x1", p, groups="g").fit(client=second)
        want = dmixed.mixedlm("y ~ x1", frame, groups="g").fit()
    assert got.llf == pytest.approx(want.llf, rel=1e-10)


def test_persisted_data_gone_after_the_client_closed_say_so(frame):
    """After the client that persisted the data closed: the fit and the fitted values,
    residuals and predictions built then are refused with the causes named (the client
    closed or restarted, or the futures cancelled); those built while it was open fail
    when computed with the same error, not Dask's "Missing dependency"."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as c,
    ):
        p = c.persist(dd.from_pandas(frame, npartitions=3))
        res = dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        built = [res.fittedvalues, res.resid, res.predict(p), res.predict(p, include_random=True)]
        built.append(res.get_prediction(p, include_random=True).predicted_mean)
    gone = r"are gone \(3 partition\(s\) released: the client that persisted it was closed"
    with pytest.raises(DataError, match=gone):
        dmixed.mixedlm("y ~ x1", p, groups="g").fit()
    with pytest.raises(DataError, match=gone):
        res.fittedvalues.compute()
    for lazy in built:
        with dask.config.set(scheduler="sync"), pytest.raises(DataError, match=gone):
            lazy.compute()


def _in_new_process(code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` run by ``python -c`` in a new process with ``args``, importing this
    checkout's dmixed; its output captured."""
    root = str(Path(dmixed.__file__).parent.parent)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": root},
    )


def test_persisted_data_of_unpickled_results_say_they_are_gone(frame, tmp_path):
    """Results of a fit on persisted data, pickled and loaded where no client is (a new
    process; this one after the client closed): their fitted values are refused with
    dmixed's error, not Dask's "Missing dependency" (the futures hold no client)."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as c,
    ):
        p = c.persist(dd.from_pandas(frame, npartitions=3))
        blob = pickle.dumps(dmixed.mixedlm("y ~ x1", p, groups="g").fit())
    (tmp_path / "res.pkl").write_bytes(blob)
    code = (
        "import pickle, sys\n"
        "from dmixed.errors import DataError\n"
        "res = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "try:\n    res.fittedvalues.compute()\n"
        "except DataError as err:\n    print('DataError:', err)\n"
    )
    out = _in_new_process(code, str(tmp_path / "res.pkl"))
    assert out.stdout.startswith("DataError: the persisted data of this Dask DataFrame are gone")
    assert "Missing dependency" not in out.stderr
    gone = r"are gone \(3 partition\(s\) released: .*unpickled"
    loaded = pickle.loads(blob)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError, match=gone):
        loaded.fittedvalues.compute()


def test_unpickled_results_read_persisted_data_through_a_client_of_their_scheduler(frame, tmp_path):
    """Results of a fit on persisted data, loaded in another process that runs a client
    of the same scheduler while the data are still persisted there: their fitted values
    are computed there, not refused as gone (the unpickled futures hold no client)."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        p = c.persist(dd.from_pandas(frame, npartitions=3))
        res = dmixed.mixedlm("y ~ x1", p, groups="g").fit()
        expected = res.fittedvalues.compute().to_numpy()
        (tmp_path / "res.pkl").write_bytes(pickle.dumps(res))
        code = (
            "import pickle, sys\n"
            "import numpy as np\n"
            "from distributed import Client\n"
            "with Client(sys.argv[2]):\n"
            "    res = pickle.loads(open(sys.argv[1], 'rb').read())\n"
            "    np.save(sys.argv[3], res.fittedvalues.compute().to_numpy())\n"
        )
        out = _in_new_process(
            code, str(tmp_path / "res.pkl"), cluster.scheduler_address, str(tmp_path / "fitted.npy")
        )
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "fitted.npy"), expected)


@pytest.mark.parametrize("data_pass", ["chains", "tree"])
@pytest.mark.parametrize("missing", ["raise", "drop"])
def test_a_parquet_file_lacking_a_model_column_is_named(tmp_path, data_pass, missing):
    """Dask takes a dataset's columns from its first file; a later file without 'f'
    fails inside Dask's reader with pandas' KeyError, which dmixed words."""
    rng = np.random.default_rng(0)
    a = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.arange(60) % 6})
    a.assign(f=rng.normal(size=60)).to_parquet(tmp_path / "a.parquet", index=False)
    a.to_parquet(tmp_path / "b.parquet", index=False)
    config = {"dmixed.data_pass": data_pass, "scheduler": "sync"}
    b = tmp_path / "b.parquet"
    named = rf"partition 1 of the Dask DataFrame \(file {b}\): .*no column\(s\) \['f'\]"
    with dask.config.set(config), pytest.raises(DataError, match=named):
        dmixed.mixedlm("y ~ x + f", dd.read_parquet(tmp_path), groups="g", missing=missing).fit()


def _files_of_two_kinds(tmp_path, odd: int, column: str) -> tuple[list, pd.DataFrame]:
    """Three Parquet files of one model; ``column`` is text in file ``odd`` only."""
    df = make_data(n_groups=24, seed=8)
    df["site"] = np.arange(len(df)) % 3
    files, parts = [], []
    for i, rows in enumerate(np.array_split(np.arange(len(df)), 3)):
        part = df.iloc[rows]
        if i == odd:
            part = part.astype({column: str})
        files.append(str(tmp_path / f"p{i}.parquet"))
        part.to_parquet(files[-1], index=False)
        parts.append(part)
    return files, df


@pytest.mark.parametrize(("odd", "column"), [(0, "site"), (2, "site"), (1, "x1")])
@pytest.mark.parametrize("where", ["sync", "cluster"])
def test_a_column_of_text_in_one_file_and_numbers_in_the_others(
    tmp_path, odd, column, where, request
):
    """Dask takes the types from the first file: text there and numbers in the others
    was read as a factor silently (its levels '0' and 0 both); numbers there and text in
    another failed naming neither file nor type.  Now a DataError names the column, the
    file of the partition, the first file and both types."""
    files, _ = _files_of_two_kinds(tmp_path, odd, column)
    kw = {"client": request.getfixturevalue("client")} if where == "cluster" else {}
    ddf = dd.read_parquet(files)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as exc:
        dmixed.mixedlm(f"y ~ x1 + {column}", ddf, groups="g").fit(**kw)
    text, numbers = ("string", "int64") if column == "site" else ("string", "float64")
    message = _message(exc)
    # a numbers file after a text first one (either), or the text one
    starts = [f"partition {i} of the Dask DataFrame (file {files[i]}): " for i in (1, 2)]
    assert message.startswith(tuple(starts) if odd == 0 else starts[odd - 1])
    assert f"column {column!r} holds " in message and files[0] in message
    assert (f"({text})" in message and f"declares {numbers}" in message) or (
        f"({numbers})" in message and f"declares {text}" in message
    )


@pytest.mark.parametrize("where", ["sync", "cluster"])
def test_types_of_one_kind_across_files_fit_as_one_frame(tmp_path, where, request):
    """int32 in one file and int64 in another, integers where the others hold floats:
    the same numbers, the fit of the concatenated frame."""
    df = make_data(n_groups=24, seed=9)
    df["site"] = np.arange(len(df)) % 3
    df["x1"] = np.round(df["x1"] * 4)  # whole numbers: exact as integers
    files = []
    for i, rows in enumerate(np.array_split(np.arange(len(df)), 3)):
        part = df.iloc[rows]
        if i == 1:
            part = part.astype({"g": np.int32, "x1": np.int64, "site": np.int32})
        files.append(str(tmp_path / f"p{i}.parquet"))
        part.to_parquet(files[-1], index=False)
    formula = "y ~ x1 + C(site)"
    ref = dmixed.mixedlm(formula, df, groups="g").fit()
    kw = {"client": request.getfixturevalue("client")} if where == "cluster" else {}
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(formula, dd.read_parquet(files), groups="g").fit(**kw)
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-7)


def test_a_closed_client_is_refused_by_name():
    ddf = dd.from_pandas(make_data(n_groups=10, seed=2), npartitions=2)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        client = Client(cluster)
        client.close()
        with pytest.raises(ConnectionError, match="the Dask client given is closed"):
            dmixed.mixedlm("y ~ x1", ddf, groups="g").fit(client=client)


@pytest.mark.parametrize("text_first", [True, False])
@pytest.mark.parametrize("vc", [False, True])
def test_group_keys_of_two_kinds_across_partitions_are_refused(text_first, vc):
    """A partition whose group keys are text where the others' are numbers (or the
    other way round): refused, not fitted as other groups ("3" and 3 merged by a cast,
    or kept apart as two groups)."""
    df = make_data(n_groups=12, seed=6, n_sub=3) if vc else make_data(n_groups=12, seed=6)
    parts = [df.iloc[i::3].reset_index(drop=True) for i in range(3)]
    odd = 0 if text_first else 2
    parts[odd] = parts[odd].assign(g=parts[odd]["g"].astype(str))

    def read(i):
        return parts[i]

    ddf = dd.from_map(read, range(3), meta=parts[0].iloc[:0], enforce_metadata=False)
    kw = {"vc_formula": {"sub": "0 + C(sub)"}, "re_formula": "1"} if vc else {}
    with dask.config.set(scheduler="sync"), pytest.raises(DataError, match="group column 'g'"):
        dmixed.mixedlm("y ~ x1", ddf, groups="g", **kw).fit()


_WIDE_RANDOM_DESIGN = """
import resource, warnings
import dask, dask.dataframe as dd, numpy as np, pandas as pd
import dmixed
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
rng = np.random.default_rng(0)
df = pd.DataFrame({"g": np.repeat(np.arange(40), 8), "y": rng.normal(size=320)})
df["x"] = [f"{v:.6f}" for v in rng.normal(size=320)]  # numbers as text: 320 levels
warnings.simplefilter("ignore", dmixed.DmixedWarning)
with dask.config.set(scheduler="sync"):
    try:
        dmixed.mixedlm("y ~ 1", dd.from_pandas(df, npartitions=2), groups="g",
                       re_formula="1 + x").fit()
    except dmixed.DataError as err:
        print("DataError:", err)
    except MemoryError:
        print("MemoryError")
"""


def test_a_random_design_wider_than_the_rows_is_refused_on_dask_as_in_process():
    """A text column in ``re_formula`` (numbers Dask made text) is a factor of one
    column per value: "too few rows" (DataError) in process and on Dask, where the
    packed map of 320 random-design columns would ask for a width x width matrix
    (stats/packed.py, conversion) were the rows not counted first.  Run under an 8 GiB
    address-space limit, in a process of its own."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _WIDE_RANDOM_DESIGN], capture_output=True, text=True, timeout=300
    )
    assert "DataError: too few rows" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("where", "exchange"), [("sync", "auto"), ("cluster", "partials"), ("cluster", "rows")]
)
def test_too_few_rows_message_on_dask_is_the_in_process_one(
    frame, where, exchange, tmp_path, request
):
    """Nine rows for 3 fixed effects and 6 covariance parameters: the same DataError,
    word for word, in process and on Dask (partials sent, or rows routed to their
    bucket's owner: chains reading Parquet files)."""
    df = frame.iloc[:9].reset_index(drop=True)
    kw = {"groups": "g", "re_formula": "1 + x1 + x2"}
    with pytest.raises(DataError, match="too few rows") as in_process:
        dmixed.mixedlm("y ~ x1 + x2", df, **kw).fit()
    for i in range(3):
        df.iloc[i::3].to_parquet(tmp_path / f"part{i}.parquet")
    ddf = dd.read_parquet(tmp_path)
    fit_kw = {} if where == "sync" else {"client": request.getfixturevalue("client")}
    config = {"scheduler": "sync", "dmixed.exchange": exchange}
    with dask.config.set(config), pytest.raises(DataError) as on_dask:
        dmixed.mixedlm("y ~ x1 + x2", ddf, **kw).fit(**fit_kw)
    assert _message(on_dask) == _message(in_process)


def test_rows_checked_counts_the_rows_routed_and_leaves_no_rows_to_the_pass():
    """The rows of the pass are the tasks' global sums' counts plus the rows they
    routed; the map task's result is returned when they are enough."""
    from dmixed.engines.dask.checks import rows_checked
    from dmixed.stats.packed import PackedLayout

    packed = PackedLayout(2, 3)
    globs = [packed.empty_global(), packed.empty_global()]
    globs[0][0], globs[1][0] = 4, 3
    reports = [{"routed_rows": 0}, {"routed_rows": 3}]
    # 10 rows for 3 + 6 parameters: enough; 9 are not
    assert rows_checked(3, 6, False, globs, reports, None, "map") == "map"
    assert rows_checked(3, 6, False, globs, reports, max, 1, 2) == 2
    with pytest.raises(DataError, match="too few rows: 9 rows for 3 fixed effects and 6 "):
        rows_checked(3, 6, False, globs, reports[:1] + [{"routed_rows": 2}], None, "map")
    # no rows at all: the pass's own "no data" message follows
    empty = [packed.empty_global()]
    assert rows_checked(3, 6, False, empty, [{"routed_rows": 0}], None, "map") == "map"


def test_rows_checked_of_a_part_of_the_data_refuses_no_count():
    """A partial pass (``dmixed update``'s new files) is a part of the data: its rows
    are not judged too few for the model (the fit of the sum judges them)."""
    from dmixed.engines.dask.checks import rows_checked
    from dmixed.stats.packed import PackedLayout

    packed = PackedLayout(2, 3)
    globs = [packed.empty_global()]
    globs[0][0] = 6
    reports = [{"routed_rows": 0}]
    with pytest.raises(DataError, match="too few rows: 6 rows for 3 fixed effects and 3 "):
        rows_checked(3, 3, False, globs, reports, None, "map")
    assert rows_checked(3, 3, True, globs, reports, None, "map") == "map"


def _numbers_as_text(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": [f"{v:.3f}" for v in rng.normal(size=n)],
            "z": rng.normal(size=n),
            "g": np.arange(n) % 5,
        }
    )


def test_too_few_rows_of_a_factor_read_as_text_are_refused_at_the_level_scan():
    """A column of numbers as text (one level per row) left too few rows: the Dask fit
    refused them only after the data pass's sums, giving only the counts, where the
    in-process refusal names the column and why it has so many levels.  The level scan
    counts the rows: the model is refused as it is built, in the same words."""
    df = _numbers_as_text(60)
    text = pytest.warns(dmixed.errors.NumericFactorWarning)  # (expected: numbers as text)
    with text, pytest.raises(DataError) as in_process:
        dmixed.mixedlm("y ~ x + z", df, groups="g")
    cause = "; column 'x' is a factor of 60 levels because it was read as text (dtype "
    assert cause + "str)" in _message(in_process)
    ddf = dd.from_pandas(df, npartitions=2)
    text = pytest.warns(dmixed.errors.NumericFactorWarning)
    with dask.config.set(scheduler="sync"), text, pytest.raises(DataError) as on_dask:
        dmixed.mixedlm("y ~ x + z", ddf, groups="g")  # no fit: refused at the scan
    assert _message(on_dask) == _message(in_process).replace("(dtype str)", "(dtype string)")


def test_too_few_rows_left_by_dropped_rows_name_the_factor_on_a_cluster(client):
    """Rows dropped for missing values leave too few for the factor's levels: the
    scan's count (before dropping) is enough, the refusal comes from the data pass's
    counts on the cluster, and names the factor as the in-process refusal does."""
    df = _numbers_as_text(64)
    df.loc[df.index[:4], "y"] = np.nan  # 60 rows kept, x's 59 levels among them (two equal)
    with pytest.warns(dmixed.errors.NumericFactorWarning):
        model = dmixed.mixedlm(
            "y ~ x + z", dd.from_pandas(df, npartitions=2), groups="g", missing="drop"
        )
    with pytest.raises(DataError) as on_dask:
        model.fit(client=client)
    assert _message(on_dask) == (
        "too few rows: 60 rows for 60 fixed effects and 1 covariance parameter (plus the "
        "residual variance); column 'x' is a factor of 59 levels because it was read as "
        "text (dtype string): numbers written as text, from Dask's conversion of an object "
        "column (Decimal, say) or from files that hold the column as text in one and as "
        "numbers in another, give one level per distinct value; convert it to numbers"
    )


def test_too_few_rows_left_by_dropped_rows_are_worded_alike_in_process_and_on_dask(client):
    """Rows dropped for missing values leave too few for the factor's levels: the Dask
    refusal named the factor, the in-process one (the model's check of its rows) gave
    only the counts.  Both now say the same."""
    df = _numbers_as_text(64)
    df.loc[df.index[:4], "y"] = np.nan
    numbers = pytest.warns(dmixed.errors.NumericFactorWarning)
    dropped = pytest.warns(dmixed.errors.DroppedRowsWarning)
    with numbers, dropped, pytest.raises(DataError) as local:
        dmixed.mixedlm("y ~ x + z", df, groups="g", missing="drop")
    with pytest.warns(dmixed.errors.NumericFactorWarning):
        model = dmixed.mixedlm(
            "y ~ x + z", dd.from_pandas(df, npartitions=2), groups="g", missing="drop"
        )
    with pytest.raises(DataError) as on_dask:
        model.fit(client=client)
    assert "column 'x' is a factor of" in _message(local)
    assert _message(on_dask) == _message(local).replace("(dtype str)", "(dtype string)")
