"""Same data, same model, on every engine (issue 14): the data-layer cases of both rounds.

Each case builds the pandas frame and the Dask collection a user would have of the same
data (``dd.from_pandas``, ``dd.from_delayed``, Parquet written by pyarrow and read by
``pd.read_parquet`` / ``dd.read_parquet``, CSV), fits one formula in process and on Dask
(the synchronous scheduler) and asserts the same fixed-effect names, factor levels
(hence reference levels), group labels and estimates to 1e-10 relative, or the same
refusal (error class and message) from both engines.

The column-type rules these cases hold the engines to:

- object columns: all str -> labels; all numbers (int, float, Decimal, numpy) -> float64
  as plain terms; all bool -> a bool column; mixed Python types -> DataError naming the
  column and the types, whatever the role (groups, terms, ``C()``, variance components);
- Decimal values (object or Arrow decimal128) read by a term outside ``C()`` are refused
  with one message (statsmodels makes a factor of them); inside ``C()`` they are levels;
- categoricals of numbers (integer hive partition keys) are factors with levels in
  numeric order, and text columns whose levels all parse as numbers are factors with
  levels sorted as text; as plain terms both warn (``NumericFactorWarning``);
- ``C(h)`` on integers of any type and range is named as statsmodels names it.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dmixed

from .same_model import assert_same_model, assert_same_refusal, base_frame, fit, fit_both

SLOPE = {"groups": "g", "re_formula": "1 + x"}
U63 = 2**63


# --------------------------------------------------------------------------------------
# the collections users have
# --------------------------------------------------------------------------------------


def shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=seed)


def random_parts(frame: pd.DataFrame, seed: int, convert_string: bool = True):
    """``dd.from_pandas`` of the shuffled rows with a seeded random number of partitions."""
    nparts = int(np.random.default_rng(seed).integers(2, 12))
    with dask.config.set({"dataframe.convert-string": convert_string}):
        return dd.from_pandas(shuffled(frame, seed), npartitions=nparts, sort=False)


def delayed_pieces(pieces: list[pd.DataFrame], meta=None):
    """``dd.from_delayed`` of the pieces (meta from the first piece, not verified)."""
    parts = [dask.delayed(lambda p: p)(p) for p in pieces]
    meta = pieces[0].iloc[:0] if meta is None else meta
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def write_files(frame: pd.DataFrame, path, n_files: int = 3, **columns) -> None:
    """Parquet files written by pyarrow: ``columns`` maps a column to a function of the
    numpy values giving its Arrow array (dictionary encoding, large strings, decimals)."""
    order = np.random.default_rng(n_files).permutation(len(frame))
    for i, rows in enumerate(np.array_split(order, n_files)):
        part = frame.iloc[rows]
        arrays = {c: columns.get(c, pa.array)(part[c].to_numpy()) for c in part.columns}
        pq.write_table(pa.table(arrays), path / f"part-{i}.parquet", row_group_size=40)


def both_readers(path, **kw):
    return pd.read_parquet(path, **kw), dd.read_parquet(str(path), **kw)


def hive(frame: pd.DataFrame, path, key: str):
    """A hive-partitioned dataset (``key=value`` directories) read by both readers."""
    pq.write_to_dataset(pa.Table.from_pandas(frame, preserve_index=False), path, [key])
    return both_readers(path)


def frame_with(seed: int = 0, **columns) -> pd.DataFrame:
    """The base frame plus columns made from a seeded generator: ``name=f(rng, n)``."""
    frame = base_frame(seed=seed)
    rng = np.random.default_rng(seed + 100)
    for name, make in columns.items():
        frame[name] = make(rng, len(frame))
    return frame


def pick(values, dtype=None):
    """A column maker drawing each row's value from ``values`` (object unless ``dtype``)."""

    def make(rng, n):
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        col = pd.Series(arr[rng.integers(0, len(values), n)], dtype=object)
        return col if dtype is None else col.astype(dtype)

    return make


# --------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    """``make(tmp_path) -> (frame, ddf)``; ``refuse``: a regex both messages match;
    ``warn``: a warning class name of dmixed.errors both fits emit; ``names``: fixed
    effects that must be there; ``levels``: column -> its expected factor levels."""

    make: Callable
    formula: str = "y ~ x + C(site)"
    kw: dict = field(default_factory=lambda: dict(SLOPE))
    refuse: str | None = None
    warn: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    levels: dict = field(default_factory=dict)


def from_frame(frame: pd.DataFrame, seed: int = 7):
    """A case maker: the frame, and ``dd.from_pandas`` of its shuffled rows."""

    def make(tmp_path):
        return frame, random_parts(frame, seed)

    return make


def _unknown_categoricals(tmp_path):
    frame = base_frame(seed=1).astype({"g": "category", "site": "category"})
    ddf = dd.from_pandas(frame, npartitions=5, sort=False)
    return frame, ddf.assign(g=ddf.g.cat.as_unknown(), site=ddf.site.cat.as_unknown())


def _categories_per_partition(tmp_path):
    """Each piece declares only its own categories, in its own order; meta has the
    first piece's (so Dask believes the categories known and wrong)."""
    frame = shuffled(base_frame(seed=2), 2)
    pieces = []
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 4)):
        piece = frame.iloc[rows].copy()
        for c in ("g", "site"):
            cats = sorted(piece[c].unique(), reverse=bool(i % 2))
            piece[c] = pd.Categorical(piece[c], categories=cats)
        pieces.append(piece)
    return pd.concat(pieces), delayed_pieces(pieces)


def _arrow_strings(dtype):
    return from_frame(base_frame(seed=4).astype({"g": dtype, "site": dtype}))


def _dictionary_parquet(tmp_path):
    frame = base_frame(seed=5)
    write_files(
        frame,
        tmp_path,
        site=lambda v: pa.array(v).dictionary_encode(),
        g=lambda v: pa.array(v, type=pa.large_string()).dictionary_encode(),
    )
    return both_readers(tmp_path)


def _hive_groups(tmp_path):
    return hive(base_frame(seed=6), tmp_path, "g")


def _hive_int_groups(tmp_path):
    frame = base_frame(seed=7)
    frame["g"] = frame["g"].str[1:].astype(np.int64) * 10 + 5
    return hive(frame, tmp_path, "g")


def _hive_dose_filtered(tmp_path):
    """Both readers with filters=: the collection still declares the key it filtered out."""
    frame = frame_with(seed=8, dose=pick([5, 15, 25, 35], np.int64))
    pq.write_to_dataset(pa.Table.from_pandas(frame, preserve_index=False), tmp_path, ["dose"])
    return both_readers(tmp_path, filters=[("dose", "!=", 5)])


def _hive_dose(tmp_path):
    frame = frame_with(seed=8, dose=pick([5, 15, 25, 35], np.int64))
    return hive(frame, tmp_path, "dose")


def _tz_keys(tmp_path):
    frame = base_frame(seed=9)
    days = pd.date_range("2024-03-30", periods=16, freq="D", tz="Europe/Berlin")
    frame["g"] = days[frame["g"].str[1:].astype(int).to_numpy()]
    return frame, random_parts(frame, 9)


def _small_floats(tmp_path):
    frame = base_frame(seed=10).astype({"x": np.float32, "z": np.float16})
    return frame, random_parts(frame, 10)


def _unused_columns(tmp_path):
    frame = base_frame(seed=11)
    rng = np.random.default_rng(11)
    extra = {f"u{j:03d}": rng.normal(size=len(frame)) for j in range(300)}
    extra.update({f"s{j:02d}": np.array(["p", "q"], dtype=object)[j % 2] for j in range(20)})
    frame = pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1)
    return frame, dd.from_pandas(frame, npartitions=4)


def _empty_after_filter(tmp_path):
    """Eight partitions of one batch each; the filter empties three of them."""
    frame = shuffled(base_frame(seed=12), 12).reset_index(drop=True)
    frame["batch"] = frame.index // 30
    ddf = dd.from_pandas(frame, npartitions=8)
    keep = ~frame["batch"].isin([1, 4, 6])
    return frame[keep], ddf[~ddf.batch.isin([1, 4, 6])]


def _repartitioned(tmp_path):
    frame = base_frame(seed=13)
    return frame, dd.from_pandas(frame, npartitions=3).repartition(npartitions=7)


def _shuffled_on(column):
    def make(tmp_path):
        frame = base_frame(seed=14)
        return frame, dd.from_pandas(frame, npartitions=4).shuffle(column, npartitions=5)

    return make


def _csv_quoted_newlines(tmp_path):
    frame = base_frame(seed=15)
    frame["note"] = [f'line one\nline "two", row {i}' if i % 3 else "" for i in range(len(frame))]
    frame["site"] = frame["site"].map({"north": "north, upper", "south": "south", "east": "e"})
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_csv(tmp_path / f"part-{i}.csv", index=False, float_format="%.17g")
    files = sorted(tmp_path.glob("part-*.csv"))
    local = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    return local, dd.read_csv(str(tmp_path / "part-*.csv"), blocksize=None)


def _mixed_groups(tmp_path):
    """Group keys 5 and '5' in one object column (975 groups or 500, engine-dependent)."""
    frame = base_frame(seed=16)
    num = frame["g"].str[1:].astype(int).to_numpy()
    frame["g"] = pd.Series([int(v) if i % 2 else str(v) for i, v in enumerate(num)], dtype=object)
    return frame, random_parts(frame, 16, convert_string=False)


def _mixed_column(column, values):
    def make(tmp_path):
        frame = frame_with(seed=17, **{column: pick(values)})
        return frame, random_parts(frame, 17, convert_string=False)

    return make


def _decimal_prices(tmp_path):
    prices = [decimal.Decimal(p) for p in ("9.99", "14.99", "19.99", "24.99")]
    frame = frame_with(seed=18, price=pick(prices))
    return frame, random_parts(frame, 18, convert_string=False)


def _decimal_parquet(tmp_path):
    prices = [decimal.Decimal(p) for p in ("9.99", "14.99", "19.99", "24.99")]
    frame = frame_with(seed=19, price=pick(prices))
    write_files(frame, tmp_path, price=lambda v: pa.array(v, type=pa.decimal128(6, 2)))
    return both_readers(tmp_path)


def _integers(dtype, values):
    return from_frame(frame_with(seed=20, h=pick(values, dtype)))


def _big_uint64_groups(tmp_path):
    frame = base_frame(seed=21)
    frame["g"] = (frame["g"].str[1:].astype(np.uint64) + np.uint64(U63 - 3)).astype(np.uint64)
    return frame, random_parts(frame, 21)


def _nullable_with_na(tmp_path):
    frame = frame_with(
        seed=22,
        count=pick([0, 1, 2, 3, 4, None], "Int64"),
        flag=pick([True, False, None], "boolean"),
    )
    return frame, random_parts(frame, 22)


def _numeric_text(tmp_path):
    frame = frame_with(seed=23, lvl=pick(["1", "2", "10"], "str"))
    return frame, random_parts(frame, 23)


def _numeric_categories(categories, ordered=False):
    def make(tmp_path):
        frame = frame_with(seed=24, dose=pick([35, 5, 25, 15], np.int64))
        frame["dose"] = pd.Categorical(frame["dose"], categories=categories, ordered=ordered)
        return frame, random_parts(frame, 24)

    return make


def _object_numbers(tmp_path):
    values = [1, 2.5, np.int64(3), np.float32(0.5)]
    frame = frame_with(seed=25, m=pick(values))
    return frame, random_parts(frame, 25, convert_string=False)


def _object_number_groups(numbers):
    """Groups of Python and numpy numbers in an object column (group i: numbers[i])."""

    def make(tmp_path):
        frame = base_frame(seed=26)
        frame["g"] = pd.Series([numbers[int(v[1:])] for v in frame["g"]], dtype=object)
        return frame, random_parts(frame, 26, convert_string=False)

    return make


MIXED_NUMBERS = [
    f(v)
    for v in range(16)
    for f in [(int, float, np.int64, np.float32, lambda u: decimal.Decimal(f"{u}.25"))[v % 5]]
]


DOSE = [5, 15, 25, 35]
PRICE_LEVELS = ("C(price)[T.14.99]", "C(price)[T.19.99]", "C(price)[T.24.99]")
DECIMAL_REFUSAL = r"column 'price' holds decimal numbers(?s:.*)astype\(float\)(?s:.*)C\(price\)"
DROP = {**SLOPE, "missing": "drop"}

CASES = {
    # -- round 1: what held ------------------------------------------------------------
    **{
        f"from_pandas-random-npartitions-{seed}": Case(from_frame(base_frame(seed=0), seed))
        for seed in (0, 1, 2)
    },
    "unknown-categoricals": Case(_unknown_categoricals),
    "categories-differ-per-partition": Case(_categories_per_partition),
    "string[pyarrow]": Case(_arrow_strings("string[pyarrow]")),
    "arrow-string": Case(_arrow_strings(pd.ArrowDtype(pa.string()))),
    "arrow-large_string": Case(_arrow_strings(pd.ArrowDtype(pa.large_string()))),
    "parquet-dictionary-encoded": Case(_dictionary_parquet),
    "hive-key-as-groups": Case(_hive_groups),
    "hive-int-key-as-groups": Case(_hive_int_groups, "y ~ x"),
    "tz-aware-datetime-groups": Case(_tz_keys),
    "float16-float32": Case(_small_floats, "y ~ x + z + C(site)"),
    "hundreds-of-unused-columns": Case(_unused_columns),
    "empty-partitions-after-filter": Case(_empty_after_filter),
    "repartition": Case(_repartitioned),
    "shuffle-on-groups": Case(_shuffled_on("g")),
    "shuffle-on-site": Case(_shuffled_on("site")),
    "csv-quoted-newlines": Case(_csv_quoted_newlines),
    # -- round 2: the engine decided the model -----------------------------------------
    "object-groups-5-and-'5'": Case(_mixed_groups, refuse=r"'g'(?s:.*)\bint\b(?s:.*)\bstr\b"),
    "object-term-True-and-1": Case(
        _mixed_column("flag", [True, 1, False, 0]),
        "y ~ x + flag",
        refuse=r"'flag'(?s:.*)\bbool\b(?s:.*)\bint\b",
    ),
    "object-C-term-5-and-'5'": Case(
        _mixed_column("k", [5, "5", 6, "7"]),
        "y ~ x + C(k)",
        refuse=r"'k'(?s:.*)\bint\b(?s:.*)\bstr\b",
    ),
    "object-vc-5-and-'5'": Case(
        _mixed_column("sub", [1, "1", 2, "2"]),
        "y ~ x",
        kw={"groups": "g", "vc_formula": {"sub": "0 + C(sub)"}},
        refuse=r"'sub'(?s:.*)\bint\b(?s:.*)\bstr\b",
    ),
    "object-term-2.5-and-'a'": Case(
        _mixed_column("m", [2.5, "a", 1.0]), "y ~ x + m", refuse=r"'m'(?s:.*)\bfloat\b"
    ),
    "decimal-prices-object": Case(_decimal_prices, "y ~ x + price", refuse=DECIMAL_REFUSAL),
    "decimal-prices-parquet": Case(_decimal_parquet, "y ~ x + price", refuse=DECIMAL_REFUSAL),
    "decimal-prices-object-in-C": Case(_decimal_prices, "y ~ x + C(price)", names=PRICE_LEVELS),
    "decimal-prices-parquet-in-C": Case(_decimal_parquet, "y ~ x + C(price)", names=PRICE_LEVELS),
    "decimal-prices-object-re": Case(
        _decimal_prices,
        "y ~ x",
        kw={"groups": "g", "re_formula": "1 + price"},
        refuse=DECIMAL_REFUSAL,
    ),
    "decimal-prices-parquet-vc": Case(
        _decimal_parquet,
        "y ~ x",
        kw={"groups": "g", "vc_formula": {"p": "0 + price"}},
        refuse=DECIMAL_REFUSAL,
    ),
    "hive-int-key-as-term": Case(
        _hive_dose,
        "y ~ x + dose",
        warn=("NumericFactorWarning",),
        names=("dose[T.15]", "dose[T.25]", "dose[T.35]"),
        levels={"dose": DOSE},
    ),
    "hive-int-key-filtered": Case(
        _hive_dose_filtered,
        "y ~ x + C(dose)",
        names=("C(dose)[T.25]", "C(dose)[T.35]"),
        levels={"dose": [15, 25, 35]},
    ),
    "hive-int-key-in-C": Case(
        _hive_dose,
        "y ~ x + C(dose)",
        names=("C(dose)[T.15]", "C(dose)[T.25]", "C(dose)[T.35]"),
        levels={"dose": DOSE},
    ),
    "numeric-categories-as-term": Case(
        _numeric_categories([15, 25, 35, 5]),
        "y ~ x + dose",
        warn=("NumericFactorWarning",),
        names=("dose[T.15]", "dose[T.25]", "dose[T.35]"),
        levels={"dose": DOSE},
    ),
    "ordered-numeric-categories-in-C": Case(
        _numeric_categories([35, 5, 25, 15], ordered=True),
        "y ~ x + C(dose)",
        levels={"dose": [35, 5, 25, 15]},
    ),
    "object-numbers-as-term": Case(_object_numbers, "y ~ x + m", names=("Intercept", "x", "m")),
    "object-int-groups": Case(_object_number_groups(list(range(100, 116)))),
    "object-mixed-number-groups": Case(_object_number_groups(MIXED_NUMBERS)),
    "numeric-text-as-term": Case(
        _numeric_text,
        "y ~ x + lvl",
        warn=("NumericFactorWarning",),
        names=("lvl[T.10]", "lvl[T.2]"),
        levels={"lvl": ["1", "10", "2"]},
    ),
    "object-bool-term": Case(
        _mixed_column("flag", [True, False]), "y ~ x + flag", names=("flag[T.True]",)
    ),
    # Dask's from_pandas turns object booleans into 'True' and 'False': read as booleans
    "object-bool-as-text-term": Case(
        from_frame(frame_with(seed=21, flag=pick([True, False]))),
        "y ~ x + flag",
        names=("flag[T.True]",),
    ),
    "object-bool-as-text-in-expression": Case(
        from_frame(frame_with(seed=21, flag=pick([True, np.False_]))),
        "y ~ x + I(flag | (x > 0))",
        names=("I(flag | (x > 0))[T.True]",),
    ),
    "object-bool-as-text-NA-drop": Case(
        from_frame(frame_with(seed=22, flag=pick([True, False, None]))),
        "y ~ x + flag",
        kw=DROP,
        warn=("DroppedRowsWarning",),
        names=("flag[T.True]",),
    ),
    "uint64-2**63-in-C": Case(
        _integers(np.uint64, [U63 + 1, U63 + 7, 3]),
        "y ~ x + C(h)",
        names=(f"C(h)[T.{U63 + 1}]", f"C(h)[T.{U63 + 7}]"),
    ),
    "UInt64-2**63-in-C": Case(
        _integers("UInt64", [U63 + 1, 2**64 - 1, 0]),
        "y ~ x + C(h)",
        names=(f"C(h)[T.{U63 + 1}]", f"C(h)[T.{2**64 - 1}]"),
    ),
    "arrow-uint64-2**63-in-C": Case(
        _integers(pd.ArrowDtype(pa.uint64()), [U63 + 1, 9, 4]),
        "y ~ x + C(h)",
        names=("C(h)[T.9]", f"C(h)[T.{U63 + 1}]"),
    ),
    "uint64-2**63-groups": Case(_big_uint64_groups),
    "nullable-Int64-boolean-NA-drop": Case(
        _nullable_with_na,
        "y ~ x + count + flag",
        kw=DROP,
        warn=("DroppedRowsWarning",),
    ),
}
for _dtype, _values in {
    np.int8: [-128, 0, 127],
    np.int16: [-(2**15), 3, 2**15 - 1],
    np.int32: [-(2**31), 3, 2**31 - 1],
    np.int64: [-(2**63), 3, 2**63 - 1],
    np.uint8: [0, 3, 255],
    np.uint32: [0, 3, 2**32 - 1],
    "Int64": [-(2**63), 3, 2**63 - 1],
    pd.ArrowDtype(pa.int64()): [-(2**63), 3, 2**63 - 1],
}.items():
    CASES[f"{pd.Series(dtype=_dtype).dtype}-extremes-in-C"] = Case(
        _integers(_dtype, _values), "y ~ x + C(h)", names=(f"C(h)[T.{_values[1]}]",)
    )


def _warning_classes(case: Case) -> tuple[type, ...]:
    # looked up at run time: NumericFactorWarning is new with issue 14
    return tuple(getattr(dmixed.errors, name) for name in case.warn)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_same_model_on_both_engines(case: Case, tmp_path):
    frame, ddf = case.make(tmp_path)
    local, remote = fit_both(frame, ddf, case.formula, _warning_classes(case), **case.kw)
    if case.refuse is not None:
        assert_same_refusal(local, remote)
        assert issubclass(local.error_type, dmixed.errors.DataError)
        assert re.search(case.refuse, local.error), local.error
        return
    assert_same_model(local, remote)
    names = list(local.result.fe_params.index)
    assert set(case.names) <= set(names), names
    for col, expected in case.levels.items():
        assert list(local.spec.levels[col]) == expected
        if "NumericFactorWarning" in case.warn:  # says what happened and how to choose
            for out in (local, remote):
                assert any(col in m and f"C({col})" in m and "astype" in m for m in out.warnings), (
                    out.warnings
                )


# --------------------------------------------------------------------------------------
# the same data seen differently: Dask's string conversion of object columns
# --------------------------------------------------------------------------------------


def test_decimal_as_text_on_dask_is_refused_as_in_process_or_warns_in_C():
    """With Dask's default ``dataframe.convert-string``, ``dd.from_pandas`` turns Decimal
    objects into text: a term reading them outside ``C()`` fit a factor of the text on
    Dask, where the in-process fit refuses them (statsmodels makes a factor of them).
    The pandas frame behind the collection gives the Decimals: refused alike.  Inside
    ``C()`` the factor is asked for, but its levels are Dask's text: said
    (TextConversionWarning)."""
    frame, _ = _decimal_prices(None)
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=3)
    for data in (frame, ddf):
        refused = fit(data, "y ~ x + price", **SLOPE)
        assert refused.error_type is dmixed.errors.BadValuesError
        assert "holds decimal numbers" in refused.error, refused.error
    remote = fit(ddf, "y ~ x + C(price)", (dmixed.errors.TextConversionWarning,), **SLOPE)
    assert list(remote.spec.levels["price"]) == ["14.99", "19.99", "24.99", "9.99"]
    assert any("convert-string" in m and "Decimal" in m for m in remote.warnings)


@pytest.mark.parametrize("convert", [True, False])
def test_mixed_kinds_are_refused_on_dask_whatever_the_string_conversion(convert):
    """5 and '5' in an object column: Dask's from_pandas (with its default string
    conversion) makes one text of both; dmixed reads the pandas frame it was given and
    refuses as in process, with the same message."""
    frame = base_frame(seed=31)
    frame["g"] = pd.Series(
        [v if i % 2 else str(v) for i, v in enumerate(frame["g"].str[1:].astype(int))],
        dtype=object,
    )
    with dask.config.set({"dataframe.convert-string": convert}):
        ddf = dd.from_pandas(frame, npartitions=3)
    local, remote = fit(frame, "y ~ x", groups="g"), fit(ddf, "y ~ x", groups="g")
    assert local.error and "several Python types (int, str)" in local.error
    assert remote.error == local.error


#: group keys of an object column that Dask's from_pandas turns into text (key i)
TEXT_MADE_KEYS = {
    "bytes": lambda i: f"g{i}".encode(),
    "tuple": lambda i: (i % 4, f"g{i}"),
    "tuple_of_ints": lambda i: (i % 4, i),  # Arrow reads it as a list
    "int": lambda i: 100 + i,
}


@pytest.mark.parametrize("kind", sorted(TEXT_MADE_KEYS))
def test_group_keys_that_dask_made_text_keep_their_type(kind):
    """With Dask's default string conversion, ``dd.from_pandas`` turns group keys of
    bytes or tuples into text: the Dask fit's labels were that text, so
    ``random_effects[key]`` raised KeyError and ``predict(include_random=True)`` gave
    the rows of every original key the population prediction, with a warning.  The
    groups column is read as the pandas frame holds it: the labels and their types are
    the in-process fit's (and statsmodels'), in the fit and in prediction on Dask."""
    frame = base_frame(seed=33)
    keys = np.empty(len(frame), dtype=object)
    keys[:] = [TEXT_MADE_KEYS[kind](int(v[1:])) for v in frame["g"]]
    frame["g"] = keys
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = dd.from_pandas(frame, npartitions=3)
        new = dd.from_pandas(frame.iloc[::7], npartitions=2)
    local, remote = fit_both(frame, ddf, "y ~ x", **SLOPE)
    assert_same_model(local, remote)  # the group labels with their types
    a, b = local.result, remote.result
    for key in frame["g"].iloc[:3]:
        pd.testing.assert_series_equal(b.random_effects[key], a.random_effects[key], rtol=1e-8)
    expected = a.predict(frame.iloc[::7], include_random=True)
    np.testing.assert_allclose(b.predict(frame.iloc[::7], include_random=True), expected)
    with dask.config.set(scheduler="sync"):
        on_dask = b.predict(new, include_random=True).compute()
    np.testing.assert_allclose(on_dask.loc[expected.index], expected, rtol=1e-8)


def _tuple_keyed(seed: int) -> pd.DataFrame:
    frame = base_frame(seed=seed)
    keys = np.empty(len(frame), dtype=object)
    keys[:] = [(int(v[1:]) % 4, f"g{v[1:]}") for v in frame["g"]]
    frame["g"] = keys
    return frame


def _thirds(frame: pd.DataFrame, rename: dict | None = None) -> list[pd.DataFrame]:
    return [frame.iloc[i::3].rename(columns=rename or {}) for i in range(3)]


#: Dask collections of a frame's rows, tuple keys in ``g``, that are no plain
#: ``dd.from_pandas`` frame: Dask turns the keys into text in them
TUPLE_SOURCES = {
    "from_map": lambda f: dd.from_map(lambda p: p, _thirds(f)),
    "from_delayed": lambda f: dd.from_delayed(
        [dask.delayed(lambda p: p)(p) for p in _thirds(f)], meta=f.iloc[:0]
    ),
    "from_map, renamed": lambda f: dd.from_map(lambda p: p, _thirds(f, {"g": "k"})).rename(
        columns={"k": "g"}
    ),
    "from_pandas, renamed": lambda f: dd.from_pandas(
        f.rename(columns={"g": "k"}), npartitions=3
    ).rename(columns={"k": "g"}),
}


@pytest.mark.parametrize("source", sorted(TUPLE_SOURCES))
def test_tuple_keys_outside_a_plain_from_pandas_frame_are_the_tuples(source):
    """Tuple group keys of ``dd.from_map``, ``dd.from_delayed`` and renamed collections
    were the text Dask made of them (``'(0, 0)'``), silently: ``random_effects[key]``
    raised KeyError.  They are the frame's tuples, as in process."""
    frame = _tuple_keyed(seed=35)
    with dask.config.set({"dataframe.convert-string": True}):
        ddf = TUPLE_SOURCES[source](frame)
    local, remote = fit_both(frame, ddf, "y ~ x", **SLOPE)
    assert_same_model(local, remote)  # the group labels with their types
    key = frame["g"].iloc[0]
    pd.testing.assert_series_equal(
        remote.result.random_effects[key], local.result.random_effects[key], rtol=1e-8
    )


@pytest.mark.parametrize("steps", ["persisted", "filtered"])
def test_tuple_keys_dask_made_text_that_cannot_be_read_back_warn(steps):
    """Where Dask's text of tuple keys cannot be read back (a persisted collection holds
    only the text; a filter after ``dd.from_map``'s conversion), the fit's labels are that
    text, and it says so."""
    frame = _tuple_keyed(seed=37)
    with dask.config.set({"dataframe.convert-string": True}):
        if steps == "persisted":
            with dask.config.set(scheduler="sync"):
                ddf = dd.from_pandas(frame, npartitions=3).persist()
        else:
            ddf = dd.from_map(lambda p: p, _thirds(frame))
            ddf = ddf[ddf.x > -1e9]
    warns = (dmixed.errors.TextConversionWarning,)
    remote = fit(ddf, "y ~ x", warns, **SLOPE)
    assert remote.error is None, remote.error
    assert remote.result.group_labels[0] == str(sorted(frame["g"])[0])
    message = remote.warnings[0]
    assert message.startswith("the groups column 'g' reached the fit as text that reads as")
    assert "dask.config.set({'dataframe.convert-string': False})" in message


# --------------------------------------------------------------------------------------
# missing values and partitions (Dask-side rules)
# --------------------------------------------------------------------------------------


def _with_missing(seed: int = 27) -> pd.DataFrame:
    frame = frame_with(
        seed=seed,
        count=pick([0, 1, 2, 3, 4, None], "Int64"),
        flag=pick([True, False, False, None], "boolean"),
    )
    frame.loc[frame.index % 13 == 0, "x"] = np.nan
    return frame


MISSING_FORMULA = "y ~ x + count + flag"


def test_missing_drop_fitted_resid_predict_are_the_kept_rows():
    """``fittedvalues`` and ``resid`` of a Dask fit with missing="drop": the kept rows
    with their index and the in-process values; ``predict``: every row on both engines,
    NaN where a used column is missing."""
    frame = _with_missing()
    ddf = random_parts(frame, 27)
    warns = (dmixed.errors.DroppedRowsWarning,)
    local, remote = fit_both(frame, ddf, MISSING_FORMULA, warns, **DROP)
    assert_same_model(local, remote)
    kept = frame.dropna(subset=["x", "count", "flag"]).index
    a, b = local.result, remote.result
    with dask.config.set(scheduler="sync"):
        dask_values = {
            "fittedvalues": b.fittedvalues.compute(),
            "resid": b.resid.compute(),
        }
    in_process = {
        "fittedvalues": a.fittedvalues,
        "resid": a.resid,
    }
    for what, series in dask_values.items():
        expected = pd.Series(np.asarray(in_process[what]), index=kept)
        assert len(series) == len(kept), what
        assert sorted(series.index) == sorted(kept), what
        np.testing.assert_allclose(
            series.to_numpy(), expected.loc[series.index].to_numpy(), rtol=1e-8, atol=1e-9
        )
    with dask.config.set(scheduler="sync"):
        remote_pred = b.predict(ddf).compute()
    local_pred = a.predict(frame)
    pd.testing.assert_index_equal(local_pred.index, frame.index)
    assert sorted(remote_pred.index) == sorted(frame.index)
    remote_pred = remote_pred.loc[frame.index]
    np.testing.assert_array_equal(local_pred.isna(), ~frame.index.isin(kept))
    np.testing.assert_allclose(remote_pred, local_pred, rtol=1e-8, atol=1e-9)


def test_missing_raise_message_counts_the_whole_data():
    frame = _with_missing()
    local, remote = fit_both(frame, random_parts(frame, 28), MISSING_FORMULA, **SLOPE)
    # the Dask message also says which partitions hold them: otherwise the same
    where = re.compile(r": in (all \d+ )?partitions? [^)]*of the Dask DataFrame\)")
    assert where.search(remote.error), remote.error
    assert_same_refusal(local, dataclasses.replace(remote, error=where.sub(")", remote.error)))
    n_x = int(frame["x"].isna().sum())
    assert f"'x' ({n_x} rows)" in local.error


def test_partition_lacking_a_column_is_named():
    frame = base_frame(seed=29)
    pieces = [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), 4)]
    pieces[2] = pieces[2].drop(columns="z")
    out = fit(delayed_pieces(pieces), "y ~ x + z", **SLOPE)
    assert issubclass(out.error_type, dmixed.errors.DataError), out.error
    assert "'z'" in out.error and "partition" in out.error


def test_empty_partition_without_columns_contributes_nothing():
    frame = base_frame(seed=30)
    pieces = [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), 3)]
    ddf = delayed_pieces([*pieces[:2], pd.DataFrame(), pieces[2]], meta=frame.iloc[:0])
    assert_same_model(*fit_both(frame, ddf, "y ~ x + C(site)", **SLOPE))
