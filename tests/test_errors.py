"""dmixed.errors: one root for errors and one for warnings, exported from ``dmixed``,
and the command's exit status decided by class (``cli.exit_status``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed import cli, errors

from ._synth import make_data


def test_every_class_is_exported_and_has_its_root():
    assert set(errors.__all__) <= set(dmixed.__all__)
    for name in errors.__all__:
        cls = getattr(dmixed, name)
        assert cls is getattr(errors, name)
        root = dmixed.DmixedWarning if issubclass(cls, Warning) else dmixed.DmixedError
        assert issubclass(cls, root)
    # existing ``except ValueError`` / ``UserWarning`` filters keep working
    assert issubclass(dmixed.DmixedError, ValueError)
    assert issubclass(dmixed.DmixedWarning, UserWarning)
    assert issubclass(dmixed.FormulaError, dmixed.SpecError)
    assert issubclass(dmixed.CheckpointMismatch, dmixed.CheckpointError)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_data(n_groups=20, seed=3)


@pytest.mark.parametrize(
    ("call", "cls"),
    [
        (lambda df: dmixed.mixedlm("y ~ x1 +", df, groups="g"), dmixed.FormulaError),
        (lambda df: dmixed.mixedlm("y ~ nope", df, groups="g"), dmixed.FormulaError),
        (lambda df: dmixed.mixedlm("y ~ x1", df, groups="g", missing="x"), dmixed.SpecError),
        (
            lambda df: dmixed.mixedlm("y ~ x1 + I(2 * x1)", df, groups="g").fit(),
            dmixed.DataError,
        ),
        (
            lambda df: dmixed.mixedlm("y ~ x1", df.assign(x1=np.nan), groups="g"),
            dmixed.DataError,
        ),
        (lambda df: dmixed.mixedlm("y ~ x1", df, groups="g").fit(method="x"), dmixed.SpecError),
    ],
    ids=["syntax", "unknown column", "missing option", "rank", "missing values", "method"],
)
def test_refusals_are_dmixed_errors(frame, call, cls):
    with pytest.raises(cls):
        call(frame)


def test_dmixed_warnings_can_be_turned_into_errors(frame):
    df = frame.copy()
    df.loc[df.index[:3], "x1"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.DmixedWarning)
        with pytest.raises(dmixed.DroppedRowsWarning, match="dropped 3 rows"):
            dmixed.mixedlm("y ~ x1", df, groups="g", missing="drop")


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (cli.JobError("x", cli.EXIT_DATA), cli.EXIT_DATA),
        (ConnectionError("x"), cli.EXIT_CLUSTER),
        (dmixed.ClusterConfigError("x"), cli.EXIT_CONFIG),
        (dmixed.CheckpointMismatch("x"), cli.EXIT_CONFIG),
        (dmixed.FormulaError("x"), cli.EXIT_CONFIG),
        (FileNotFoundError("x"), cli.EXIT_CONFIG),
        (dmixed.PathNotFoundError("x"), cli.EXIT_CONFIG),
        (dmixed.PathExistsError("x"), cli.EXIT_CONFIG),
        (RuntimeError("x"), 1),
    ],
)
def test_the_command_maps_error_classes_to_exit_statuses(exc, status):
    assert cli.exit_status(exc) == status


def _dask(df: pd.DataFrame):
    import dask.dataframe as dd

    return dd.from_pandas(df, npartitions=3)


def _with(df: pd.DataFrame, column: str, rows, value) -> pd.DataFrame:
    out = df.copy()
    if isinstance(value, str):
        out[column] = out[column].astype(object)
    out.loc[out.index[rows], column] = value
    return out


BAD_VALUES = {
    "missing": lambda df: _with(df, "x1", [3, 7], np.nan),
    "infinite": lambda df: _with(df, "y", [4], np.inf),
    "text in numbers": lambda df: _with(df, "x1", [5], "abc"),
    "no rows": lambda df: df.head(0),
    "no row left": lambda df: df.assign(x1=np.nan),
    "log of zero": lambda df: _with(df, "x1", [2], 0.0),
}


@pytest.mark.parametrize("dask", [False, True], ids=["pandas", "dask"])
@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_raise_bad_values_error_in_process_and_on_dask(frame, case, dask):
    """Bad values of the input are a ``BadValuesError`` (the command exits 3 for them by
    class), whatever the path that finds them."""
    df = BAD_VALUES[case](frame)
    formula = "y ~ np.log(np.abs(x1))" if case == "log of zero" else "y ~ x1"
    missing = "drop" if case == "no row left" else "none"
    with pytest.raises(dmixed.BadValuesError):
        dmixed.mixedlm(formula, _dask(df) if dask else df, groups="g", missing=missing).fit()


@pytest.mark.parametrize("dask", [False, True], ids=["pandas", "dask"])
def test_a_model_that_asks_the_impossible_is_no_bad_values_error(frame, dask):
    with pytest.raises(dmixed.DataError) as exc:
        dmixed.mixedlm("y ~ x1 + I(2 * x1)", _dask(frame) if dask else frame, groups="g").fit()
    assert not isinstance(exc.value, dmixed.BadValuesError)
