"""Both engines are an :class:`~dmixed.engines.Engine`."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dmixed.engines import Engine, LocalEngine
from dmixed.engines.base import check_client
from dmixed.engines.dask import DaskEngine
from dmixed.errors import SpecError


def test_engines_satisfy_the_protocol():
    local = LocalEngine(np.eye(2)[None], np.ones((1, 2, 3)))
    assert isinstance(local, Engine)
    detached = DaskEngine(None, [], [], np.arange(0))
    assert isinstance(detached, Engine)
    assert {local.name, detached.name} == {"local", "dask"}


def test_check_client_takes_none_and_refuses_an_address_even_without_distributed(
    monkeypatch,
):
    """None is no client; an address is refused naming its type, also where
    ``distributed`` cannot be imported (nothing there can be a Client)."""
    check_client(None)
    with pytest.raises(SpecError, match=r"^client must be a distributed.Client, got 'x' \(str\)"):
        check_client("x")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    check_client(None)
    with pytest.raises(SpecError, match=r"^client must be a distributed.Client, got \(int\)"):
        check_client(8786)


def _gram_cases():
    import pandas as pd

    rng = np.random.default_rng(4)
    n, g = 600, 25
    df = pd.DataFrame({f"z{j}": rng.normal(size=n) for j in range(9)})
    df["g"] = rng.integers(0, g, n)
    df["a"] = rng.integers(0, 4, n).astype(str)
    df["b"] = rng.integers(0, 3, n).astype(str)
    df["y"] = rng.normal(size=n) + rng.normal(size=g)[df["g"]]
    wide = " + ".join(f"z{j}" for j in range(9))  # q = 9 > MOMENT_MAX_R: no moment sums
    return df, [
        ("1 + z0", None),
        (wide, None),
        ("1 + z0", {"a": "0 + C(a)"}),  # structured variance components
    ]


def test_re_gram_and_re_sums_are_the_sums_of_the_groups_blocks(client):
    """``re_gram(q)`` = ``Σ_i Z_i'Z_i`` and ``re_sums(q)`` = ``Σ_i Z_i'[X y]`` over the
    ``exog_re`` columns on every engine: in
    process (dense, structured and crossed variance components) and on a cluster (from
    the data pass's moment sums, or a round trip where there are none)."""
    import dask.dataframe as dd

    import dmixed

    from .test_vc_crossed import CROSSED, crossed_data

    df, cases = _gram_cases()
    cases = [(df, *case) for case in cases] + [(crossed_data(seed=1), "1 + x", CROSSED)]
    engines = set()
    for frame, re_formula, vc in cases:
        on_cluster = {"client": client, "engine": "distributed"}
        for data, kw in ((frame, {}), (dd.from_pandas(frame, npartitions=3), on_cluster)):
            model = dmixed.mixedlm(
                "y ~ z1" if "z1" in frame else "y ~ x", data, groups="g", re_formula=re_formula,
                vc_formula=vc,
            )  # fmt: skip
            stats = model.statistics(**kw)
            engines.add(type(stats.engine).__name__)
            q = stats.layout.k_re
            zz, zxy = stats.engine.gather()
            np.testing.assert_allclose(
                stats.engine.re_gram(q), zz[:, :q, :q].sum(axis=0), rtol=1e-12, atol=1e-9
            )
            np.testing.assert_allclose(
                stats.engine.re_sums(q), zxy[:, :q, :].sum(axis=0), rtol=1e-12, atol=1e-9
            )
    assert engines == {"LocalEngine", "StructuredVCEngine", "CrossedVCEngine", "DaskEngine"}
