"""dmixed.design.prepare: the columns of a frame checked and read for the design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DataError


@pytest.mark.parametrize(
    "formula, vc", [("y ~ x", {"cls": "0 + C(cls)"}), ("y ~ x + C(cls)", None)]
)
def test_text_in_a_factor_fitted_on_numbers_names_the_factor(formula, vc):
    """New rows with ``cls="0"`` where the fit read ``C(cls)`` of integers: the message
    says the column is a factor of numeric levels (it said the model "reads numbers")."""
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"g": rng.integers(0, 20, n), "cls": rng.integers(0, 3, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = df.x + rng.normal(size=20)[df.g] + rng.normal(size=n)
    res = dmixed.mixedlm(formula, df, groups="g", vc_formula=vc).fit()
    new = pd.DataFrame({"x": [0.1], "g": [0], "cls": ["0"]})
    with pytest.raises(
        DataError,
        match=r"^column 'cls' is read as a factor whose levels are "
        r"numbers \(such as 0\), but it holds text \(such as '0'\)",
    ):
        res.predict(new, include_random=True)
