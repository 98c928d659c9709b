"""dmixed.design.messages: the wording of messages shared by the data paths."""

from __future__ import annotations

import pytest

from dmixed.design import messages
from dmixed.design.messages import NAMED_UNKNOWN, check_enough_rows, unknown_columns
from dmixed.errors import DataError


@pytest.mark.parametrize(
    ("n", "p", "k_cov", "message"),
    [
        (2, 1, 1, "too few rows: 2 rows for 1 fixed effect and 1 covariance parameter "),
        (1, 0, 1, "too few rows: 1 row for 0 fixed effects and 1 covariance parameter "),
        (5, 2, 3, "too few rows: 5 rows for 2 fixed effects and 3 covariance parameters "),
    ],
)
def test_too_few_rows_counts_in_words(n, p, k_cov, message):
    """One fixed effect or covariance parameter is singular ("1 covariance parameters"
    was the message of a random intercept model)."""
    with pytest.raises(DataError, match=f"^{message}"):
        check_enough_rows(n, p, k_cov)


def test_enough_rows_pass():
    assert check_enough_rows(3, 1, 1) is None


def test_unknown_columns_list_the_available_ones_once():
    parts = unknown_columns(["a1", "a2", "xx", "a1"], ["fc", "g", "x", "y"])
    message = "; ".join(parts)
    assert parts[0] == "unknown column 'xx'; close matches: 'x'"
    assert "unknown columns 'a1', 'a2'; available columns: 'fc', 'g', 'x', 'y'" in message
    assert message.count("available columns") == 1


def test_unknown_columns_past_the_named_ones_are_counted():
    names = [f"x{i}" for i in range(400)]
    parts = unknown_columns(names, ["x", "y"])
    assert len(parts) == NAMED_UNKNOWN + 1
    assert parts[-1] == f"and {400 - NAMED_UNKNOWN} more unknown names"
    assert len("; ".join(parts)) < 400


def test_a_formula_of_many_unknown_columns_gives_a_short_message():
    import numpy as np
    import pandas as pd

    import dmixed

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(np.arange(6), 10)}
    )
    formula = "y ~ " + " + ".join(f"v{i}" for i in range(400))
    with pytest.raises(ValueError, match=r"and 395 more unknown names") as exc:
        dmixed.mixedlm(formula, df, groups="g")
    assert str(exc.value).count("available columns") == 1
    assert len(str(exc.value)) < 1500


def test_a_design_larger_than_memory_is_refused_with_its_size(monkeypatch):
    monkeypatch.setattr(messages, "physical_memory", lambda: 2**30)
    messages.check_design_fits("y ~ C(a)", 1000, 1000, exact=True, prototype=False)  # 8 MB
    with pytest.raises(
        DataError,
        match=r"^formula 'y ~ C\(a\)': its fixed-effects design of "
        r"100000 rows and at least 2000 columns would take 1\.5 GiB, more than "
        r"this machine's 1\.0 GiB of memory; use Dask data",
    ):
        messages.check_design_fits("y ~ C(a)", 100_000, 2000, exact=False, prototype=False)
    with pytest.raises(
        DataError, match=r"one row per level of its factor of most levels \(60000\)"
    ):
        messages.check_design_fits("y ~ C(a)", 60_000, 60_000, exact=False, prototype=True)


def test_physical_memory_is_the_least_of_the_machine_and_a_cgroup_limit(tmp_path):
    machine = messages.physical_memory(())
    assert machine is not None and machine > 2**20
    limit = tmp_path / "memory.max"
    limit.write_text("1048576\n")
    assert messages.physical_memory([str(tmp_path / "absent"), str(limit)]) == 2**20
    # cgroup v2 without a limit, and v1's number beyond the machine's memory
    limit.write_text("max\n")
    unlimited = tmp_path / "memory.limit_in_bytes"
    unlimited.write_text(f"{machine * 4}\n")
    assert messages.physical_memory([str(limit), str(unlimited)]) == machine


def test_more_terms_than_rows_name_the_formula_cut():
    formula = "y ~ " + " + ".join(f"I(x1+{k})" for k in range(500))
    with pytest.raises(
        DataError,
        match=r"characters\): too few rows: at most 400 rows for at "
        r"least 501 fixed effects and 1 covariance parameter",
    ) as err:
        messages.check_terms_within_rows(formula, 501, 1, 400)
    assert len(str(err.value)) < 700
    messages.check_terms_within_rows(formula, 501, 1, 503)


def test_too_few_rows_names_the_factor_read_as_text():
    """A column of numbers read as text has one level per row: the refusal names it
    and the cause, and leaves out a factor whose levels are not the reason."""
    with pytest.raises(DataError) as err:
        check_enough_rows(
            600, 603, 1, factors={"dec": (600, "str", True), "k": (4, "int64", False)}
        )
    msg = str(err.value)
    assert "column 'dec' is a factor of 600 levels" in msg
    assert "read as text (dtype str)" in msg
    assert "'k'" not in msg


def test_numbers_as_text_reads_the_levels_not_the_dtype_alone():
    assert messages.numbers_as_text(["1.5", "2", "-3e4"], "str")
    assert messages.numbers_as_text(["1", "2"], "object")
    assert not messages.numbers_as_text(["1", "2"], "int64")  # not text
    assert not messages.numbers_as_text(["city_0", "city_1"], "str")
    assert not messages.numbers_as_text(["1", "city_1"], "object")  # a name among them
    assert not messages.numbers_as_text(["1", "nan"], "str")
    assert not messages.numbers_as_text([], "str")
    assert not messages.numbers_as_text([True, False], "object")  # booleans, not text
    assert not messages.numbers_as_text([b"1", b"2"], "object")  # bytes, not text


@pytest.mark.parametrize("dask", [False, True])
def test_too_few_rows_of_a_factor_of_names_is_not_told_to_convert_to_numbers(dask):
    """A text factor of names (cities) whose levels leave too few rows was said to be
    numbers written as text, to convert to numbers: only its level count is named."""
    import warnings

    import numpy as np
    import pandas as pd

    import dmixed

    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame(
        {
            "city": [f"city_{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "g": np.arange(n) % 5,
        }
    )
    if dask:
        import dask.dataframe as dd

        data = dd.from_pandas(df, npartitions=2)
    else:
        data = df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="column 'city' is a factor of 40 levels") as err:
            dmixed.mixedlm("y ~ x + city", data, groups="g").fit()
    assert "text" not in str(err.value) and "convert" not in str(err.value), err.value


def test_too_few_rows_in_process_names_text_column():
    """A frame whose column ``x`` is numbers as text (pd.read_parquet of files that hold
    it as text in one and as float in another) is refused at model build, naming ``x``."""
    import warnings

    import numpy as np
    import pandas as pd

    import dmixed

    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "g": np.arange(n) % 5,
            "x": pd.array([repr(float(v)) for v in rng.normal(size=n)], dtype="str"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"column 'x' is a factor of 60 levels.*read as text"):
            dmixed.mixedlm("y ~ x", df, groups="g")
