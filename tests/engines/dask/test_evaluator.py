"""dmixed.engines.dask.evaluator: several Λ in one round trip give each Λ's sums."""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
from distributed import Client, LocalCluster

import dmixed
from dmixed.engines.dask.evaluator import DaskEngine

from ..._synth import make_data


def test_steps_are_the_steps_and_the_fit_unchanged(monkeypatch):
    df = make_data(n_groups=200, seed=9)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as client,
        dask.config.set({"dmixed.engine": "distributed"}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        ddf = dd.from_pandas(df, npartitions=4)
        model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        engine = model.statistics(client=client).engine
        assert isinstance(engine, DaskEngine)
        layout = model.statistics(client=client).layout
        lams = [layout.lam(np.array(p), True) for p in ([1.0, 0.0, 1.0], [0.5, 0.2, 0.3])]
        for lam, sums in zip(lams, engine.steps(lams, layout.k_re), strict=True):
            one = engine.step(lam, layout.k_re)
            assert vars(one)
            for name in vars(one):
                np.testing.assert_array_equal(getattr(sums, name), getattr(one, name))
        res = model.fit(client=client)
        monkeypatch.delattr(DaskEngine, "steps")  # one round trip per start, as before
        ref = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
        ref = ref.fit(client=client)
    assert res.llf == ref.llf and res.n_evals == ref.n_evals
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)
