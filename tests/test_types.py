"""The numerical layers (errors, files, stats, kernels, fit) type-check with mypy.

The files and settings are ``[tool.mypy]`` in pyproject.toml; this test runs it so that
CI's one test command checks the types too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[1]


def test_numerical_layers_type_check(tmp_path):
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path)]
    )
    assert status == 0, out + err
