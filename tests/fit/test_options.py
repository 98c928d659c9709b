"""dmixed.fit.options: ``free=`` and the checks of a switch, a count and a tolerance."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from dmixed import MixedLM
from dmixed.errors import SpecError
from dmixed.fit.options import check_flag, check_integer, check_tolerance, parse_free

from .._synth import design, make_data


@pytest.fixture(scope="module")
def model():
    """Random intercept and slope: 3 covariance parameters after 3 fixed effects."""
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    return MixedLM(endog, exog, groups, exog_re=exog_re)


@pytest.mark.parametrize(
    ("free", "message"),
    [
        (np.ones((2, 3)), r"free must be one mask entry per parameter \(1-D\), got shape \(2, 3\)"),
        (np.ones((3, 1)), r"free must be one mask entry per parameter \(1-D\), got shape \(3, 1\)"),
        (["a", "b", "c"], r"free must be a mask of 0 \(held\) and 1 \(estimated\), got values"),
        ("110", r"free must be a mask of 0 \(held\) and 1 \(estimated\), got values"),
        ([np.nan, 1, 1], r"free must hold 0 .* or 1 .* for each parameter, got \[nan\]"),
        ([1, 2, 1], r"free must hold 0 .* or 1 .* for each parameter, got \[2.0\]"),
        ([1, 1], "free has 2 entries; expected 3 .* or 6"),
    ],
)
def test_a_bad_free_is_refused_naming_what_is_wrong(model, free, message):
    """A mask of the wrong shape, text, NaN or a number other than 0 and 1: refused
    (a (2, 3) matrix of ones had the length of fixed and covariance parameters together,
    and NaN read as "estimated")."""
    with pytest.raises(SpecError, match=message):
        model.fit(free=free)


@pytest.mark.parametrize("free", [[1, 0, 1], [True, False, True], np.array([1.0, 0.0, 1.0])])
def test_zeros_and_ones_of_any_kind_are_one_mask(free):
    np.testing.assert_array_equal(parse_free(free, 3, 2), [True, False, True])
    np.testing.assert_array_equal(parse_free([1, 1, *free], 3, 2), [True, False, True])


@pytest.mark.parametrize("value", ["yes", "False", None, 0, 1, 2.0])
def test_a_switch_is_a_bool(value):
    with pytest.raises(SpecError, match=f"use_sqrt must be True or False, not {value!r}"):
        check_flag(value, "use_sqrt")


@pytest.mark.parametrize(
    ("value", "minimum", "wanted"),
    [
        (0, 1, "a positive integer"),
        (-1, 0, "a non-negative integer"),
        (1, 2, "an integer of at least 2"),
        (1.0, 0, "a non-negative integer"),
        (np.float64(3), 0, "a non-negative integer"),
        (np.True_, 0, "a non-negative integer"),
        ("3", 0, "a non-negative integer"),
    ],
)
def test_a_count_is_an_integer_of_its_range(value, minimum, wanted):
    with pytest.raises(SpecError, match=f"n must be {wanted}, got"):
        check_integer(value, "n", minimum)


@pytest.mark.parametrize("value", [0, 3, np.int8(3), np.uint64(3)])
def test_integers_of_any_kind_are_counts(value):
    got = check_integer(value, "n", 0)
    assert got == int(value) and type(got) is int


@pytest.mark.parametrize(
    "value",
    [-1e-9, float("nan"), -float("inf"), float("inf"), True, "0.1", 1j]
    + [Decimal("-1e-8"), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Fraction(-1, 3)],
)
def test_a_tolerance_is_a_finite_number_at_least_zero(value):
    with pytest.raises(SpecError, match="tol must be a finite number >= 0"):
        check_tolerance(value, "tol")


@pytest.mark.parametrize(
    "value",
    [0, 1e-8, np.float32(0.5), np.int64(1), Decimal("1e-8"), Decimal(0), Fraction(1, 3)]
    + [np.array(Decimal("1e-6"), dtype=object)],
)
def test_real_numbers_are_tolerances(value):
    """Decimal and Fraction too, as their float, as they are read as data and as
    ``start_params``."""
    got = check_tolerance(value, "tol")
    assert got == float(value) and type(got) is float


def test_a_fit_takes_a_decimal_tolerance(model):
    want = model.fit(maxiter=50, gtol=1e-6, reml=False)
    got = model.fit(maxiter=50, gtol=Decimal("1e-6"), reml=False)
    np.testing.assert_array_equal(got.params, want.params)


@pytest.mark.parametrize(
    ("check", "value", "want"),
    [
        (lambda v: check_integer(v, "n", 0), np.array(3), 3),
        (lambda v: check_integer(v, "n", 0), np.array(3, dtype=np.uint8), 3),
        (lambda v: check_tolerance(v, "tol"), np.array(1e-6), 1e-6),
        (lambda v: check_tolerance(v, "tol"), np.array(2, dtype=np.int32), 2.0),
        (lambda v: check_flag(v, "flag"), np.array(True), True),
        (lambda v: check_flag(v, "flag"), np.array(False), False),
    ],
)
def test_zero_dimensional_arrays_are_their_scalar(check, value, want):
    """A 0-d array (``np.array(100)``, what numpy's reductions of arrays and ``np.load``
    give) is its one value, as numpy and scipy read it: it was refused."""
    got = check(value)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (lambda v: check_integer(v, "n", 0), np.array([3]), r"n must be a non-negative integer"),
        (lambda v: check_integer(v, "n", 0), np.array(2.5), r"n must be a non-negative integer"),
        (lambda v: check_integer(v, "n", 0), np.array(True), r"n must be a non-negative integer"),
        (lambda v: check_tolerance(v, "tol"), np.array([1e-6]), "tol must be a finite number"),
        (lambda v: check_tolerance(v, "tol"), np.array(np.nan), "tol must be a finite number"),
        (lambda v: check_flag(v, "flag"), np.array([True]), "flag must be True or False"),
        (lambda v: check_flag(v, "flag"), np.array(1), "flag must be True or False"),
    ],
)
def test_arrays_of_one_value_that_is_not_a_scalar_are_refused(check, value, message):
    with pytest.raises(SpecError, match=message):
        check(value)


def test_a_fit_takes_zero_dimensional_options(model):
    want = model.fit(maxiter=50, gtol=1e-6, reml=False)
    got = model.fit(maxiter=np.array(50), gtol=np.array(1e-6), reml=np.array(False))
    np.testing.assert_array_equal(got.params, want.params)


@pytest.mark.parametrize(
    "free", [np.array([1, 0, 1], dtype=object), pd.Series([1.0, 0.0, 1.0], dtype=object)]
)
def test_a_mask_held_as_objects_is_a_mask(free):
    """Zeros and ones in an object array are the mask their numbers are (statsmodels
    reads them so); they were refused as "not a mask" with the zeros and ones shown."""
    np.testing.assert_array_equal(parse_free(free, 3, 2), [True, False, True])


@pytest.mark.parametrize("free", [np.array([1, None, 1], dtype=object), [1, "1", 1]])
def test_missing_values_or_text_held_as_objects_are_not_a_mask(free):
    with pytest.raises(SpecError, match=r"free must be a mask of 0 \(held\) and 1 \(estimated\)"):
        parse_free(free, 3, 2)


@pytest.mark.parametrize(("value", "kind"), [("no", "str"), (1, "int"), (None, "NoneType")])
def test_check_flag_names_the_type_of_what_it_refuses(value, kind):
    with pytest.raises(SpecError, match=rf"^flag must be True or False, not .* \({kind}\)$"):
        check_flag(value, "flag")


def test_check_flag_reads_numpy_bools_as_python_bools():
    assert check_flag(np.True_, "flag") is True
    assert check_flag(np.False_, "flag") is False
