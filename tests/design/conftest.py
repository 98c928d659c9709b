"""Fixtures of the design tests: statsmodels' example data sets."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from .frames import results_dir


@pytest.fixture(scope="module")
def dietox() -> pd.DataFrame:
    return pd.read_csv(os.path.join(results_dir(), "dietox.csv"))


@pytest.fixture(scope="module")
def pastes() -> pd.DataFrame:
    return pd.read_csv(os.path.join(results_dir(), "pastes.csv"))
