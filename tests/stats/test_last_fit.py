"""The last fit's estimates kept beside saved statistics (``dmixed/stats/last_fit.py``)."""

from __future__ import annotations

import pytest

from dmixed import CheckpointError
from dmixed.stats.last_fit import LAST_FIT_FILE, last_fit, remember_fit


def test_a_last_fit_file_nested_deeply_is_a_checkpoint_error_naming_it(tmp_path):
    """100000 nested arrays in ``last_fit.json`` raised a raw RecursionError."""
    file = tmp_path / LAST_FIT_FILE
    file.write_text('{"packed_params": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="nested deeper than dmixed ever writes") as info:
        last_fit(str(tmp_path))
    assert str(file) in str(info.value) and len(str(info.value)) < 1000


def test_a_last_fit_file_of_a_long_bad_value_is_named_in_a_short_message(tmp_path):
    (tmp_path / LAST_FIT_FILE).write_text('{"packed_params": ["' + "x" * 100_000 + '"]}')
    with pytest.raises(CheckpointError, match="is damaged") as info:
        last_fit(str(tmp_path))
    assert len(str(info.value)) < 1500
    remember_fit(str(tmp_path), [0.5, 1.0], "lbfgs", -3.0)
    assert last_fit(str(tmp_path)) == [0.5, 1.0]
