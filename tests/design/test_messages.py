"""dmixed.design.messages: the wording of messages shared by the data paths."""

from __future__ import annotations

import pytest

from dmixed.design.messages import check_enough_rows
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
