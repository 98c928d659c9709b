"""One bootstrap replicate (``dmixed/results/replicate.py``) and replicates on Dask workers.

- The lean refit of drawn statistics gives the estimates of the full fit of the same
  statistics (``MixedLM.from_statistics(...).fit()``), REML and ML, with a random slope,
  a variance component and weights.
- Per-replicate generators: the same seed gives the same streams whatever the type.
- Statistics held on a Dask cluster: the replicates run on the workers, read no
  partition, and give the table the driver gives for the same seed.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from dataclasses import replace

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dmixed import MixedLM, mixedlm
from dmixed.engines.local import statistics_from_arrays
from dmixed.errors import BoundaryWarning, DataError, DmixedWarning
from dmixed.results.bootstrap import KEPT_ON_WORKERS_REMEDY
from dmixed.results.replicate import ReplicateFitter, estimate_row, replicate_rngs
from dmixed.stats import GroupArrays

from .._synth import CountingReader, make_data

VC = dict(re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}, weights="w")
FORMULA = "y ~ x1 + x2"


def _frame() -> pd.DataFrame:
    return make_data(n_groups=30, max_size=14, vc_sd=0.7, seed=5)


@pytest.mark.parametrize("reml", [True, False])
def test_the_lean_refit_gives_the_full_fit_of_the_drawn_statistics(reml):
    fit = mixedlm(FORMULA, _frame(), groups="g", **VC).fit(reml=reml)
    arrays = GroupArrays.from_statistics(fit.model.statistics())
    fitter = ReplicateFitter.of(fit, arrays)
    assert fitter.width == 3 + 4 + 2
    for rng in replicate_rngs(17, 6):
        drawn = fitter.draw(rng)
        row = fitter.refit(drawn)
        model = MixedLM.from_statistics(statistics_from_arrays(drawn), fit.model.spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DmixedWarning)
            full = model.fit(reml=reml, skip_hessian=True, check_nobs="ignore")
        ref = np.array(estimate_row(full.to_state(), arrays.layout.k_re))
        assert row[-1] is True and full.converged and not fitter.moment_start
        np.testing.assert_allclose(row[:-1], ref, rtol=1e-8, atol=1e-8)


def test_the_lean_refit_on_statistics_of_many_rows():
    """Past ``newton_secant_rows`` the Newton steps update the Hessian by secant steps,
    and the lean refit skips the exact-Hessian polish: still the full fit's estimates."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12_000), 10)
    x = np.column_stack([np.ones(g.size), rng.standard_normal((g.size, 2))])
    z = x[:, :2]
    b = rng.standard_normal((12_000, 2)) * [1.0, 0.5]
    y = x @ [1.0, 0.5, -0.3] + np.einsum("nj,nj->n", z, b[g]) + rng.standard_normal(g.size)
    fit = MixedLM(y, x, g, exog_re=z).fit()
    arrays = GroupArrays.from_statistics(fit.model.statistics())
    fitter = ReplicateFitter.of(fit, arrays)
    for rng_k in replicate_rngs(6, 2):
        drawn = fitter.draw(rng_k)
        row = fitter.refit(drawn)
        model = copy.copy(fit.model)
        model.rows = model.source = model.cached_client = None
        model.cached_statistics = statistics_from_arrays(drawn)
        full = model.fit(skip_hessian=True)
        ref = estimate_row(full.to_state(), arrays.layout.k_re)
        np.testing.assert_allclose(row[:-1], ref, rtol=1e-8, atol=1e-8)


def test_a_fit_on_the_boundary_also_tries_the_moment_start(dyestuff2_like):
    """The estimate's batch variance is 0, where the square-root packing cannot move:
    the replicates still reach the full fit's estimates."""
    with pytest.warns(DmixedWarning, match="boundary"):
        fit = mixedlm("Yield ~ 1", dyestuff2_like, groups="Batch").fit()
    arrays = GroupArrays.from_statistics(fit.model.statistics())
    fitter = ReplicateFitter.of(fit, arrays)
    assert fitter.moment_start
    positive = 0
    for rng in replicate_rngs(3, 8):
        drawn = fitter.draw(rng)
        row = fitter.refit(drawn)
        model = MixedLM.from_statistics(statistics_from_arrays(drawn), fit.model.spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DmixedWarning)
            full = model.fit(skip_hessian=True)
        ref = estimate_row(full.to_state(), arrays.layout.k_re)
        np.testing.assert_allclose(row[:-1], ref, rtol=1e-8, atol=1e-8)
        positive += ref[1] > 0
    assert positive > 0  # some replicates leave the boundary


def test_replicate_generators_are_reproducible_and_independent():
    def first(rngs):
        return [r.standard_normal() for r in rngs]

    a = first(replicate_rngs(4, 3))
    assert a == first(replicate_rngs(4, 3)) and len(set(a)) == 3
    assert first(replicate_rngs(np.random.SeedSequence(4), 3)) == a
    gen = first(replicate_rngs(np.random.default_rng(4), 3))
    assert gen == first(replicate_rngs(np.random.default_rng(4), 3)) and len(set(gen)) == 3
    legacy = first(replicate_rngs(np.random.RandomState(4), 3))
    assert legacy == first(replicate_rngs(np.random.RandomState(4), 3))
    assert len(replicate_rngs(None, 2)) == 2


def test_a_fitter_pickles_and_refits_the_same(vc_fit_arrays):
    fit, arrays = vc_fit_arrays
    fitter = ReplicateFitter.of(fit, arrays, use_re=True)
    back = pickle.loads(pickle.dumps(fitter))
    assert back.run(replicate_rngs(2, 2))[0] == fitter.run(replicate_rngs(2, 2))[0]


@pytest.fixture(scope="module")
def vc_fit_arrays():
    fit = mixedlm(FORMULA, _frame(), groups="g", **VC).fit()
    return fit, GroupArrays.from_statistics(fit.model.statistics())


@pytest.fixture(scope="module")
def client():
    """One worker of two threads in this process."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


def test_replicates_of_cluster_held_statistics_run_on_the_workers(tmp_path, client, monkeypatch):
    from distributed import get_worker

    df = _frame()
    reader = CountingReader(df, 4, str(tmp_path / "reads.txt"))
    ddf = dd.from_map(reader, range(4), meta=df.iloc[:0], enforce_metadata=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        res = mixedlm(FORMULA, ddf, groups="g", **VC).fit(client=client, engine="distributed")
    assert res.model.cached_statistics.engine.client is client
    where = []
    run = ReplicateFitter.run

    def recorded(self, rngs):
        try:
            where.append(get_worker().address)
        except ValueError:  # not on a worker
            where.append(None)
        return run(self, rngs)

    monkeypatch.setattr(ReplicateFitter, "run", recorded)
    before = reader.reads()
    boot = res.bootstrap(7, seed=9)
    assert before > 0 and reader.reads() == before  # no partition read
    assert len(where) > 1 and None not in where  # batches, all on the worker
    assert boot.replicates["converged"].all() and boot.replicate_seconds.shape == (7,)
    monkeypatch.setattr(ReplicateFitter, "run", run)
    arrays = GroupArrays.from_statistics(res.model.cached_statistics)
    rows, _ = ReplicateFitter.of(res, arrays).run(replicate_rngs(9, 7))
    driver = pd.DataFrame([r[:-1] for r in rows], columns=boot.replicates.columns[:-1])
    pd.testing.assert_frame_equal(
        boot.replicates.drop(columns="converged"), driver, check_exact=True
    )


def test_a_fit_is_judged_singular_by_its_own_setting():
    """Whether the replicates start as a boundary fit's (:attr:`moment_start`) is judged
    by the fit's own ``singular_eigenvalue``, not the default: the base read the
    default whatever the fit was given."""
    fit = mixedlm(FORMULA, _frame(), groups="g", re_formula="1 + x1").fit()
    arrays = GroupArrays.from_statistics(fit.model.statistics())
    assert not ReplicateFitter.of(fit, arrays).moment_start  # interior at 1e-8
    judged = copy.copy(fit)
    # every Ψ* is singular at an infinite bound (a setting the fit's record carries)
    judged.__dict__["optimizer"] = replace(fit.optimizer, singular_eigenvalue=np.inf)
    assert judged.optimizer.singular_eigenvalue == np.inf
    assert ReplicateFitter.of(judged, arrays).moment_start


def test_bootstrap_of_lossy_groups_kept_on_the_workers_is_refused_up_front(client):
    """A fit whose statistics stay on the workers (``engine="distributed"``) with a
    group of fewer rows than random effects: the workers keep that group's centred
    sums, the driver's gathered arrays do not, so every replicate's refit would fail.
    The base returned a table of NaN without a word; now the bootstrap refuses before
    any replicate, naming the engine setting and what to do."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(31), [2] + [10] * 30)
    df = pd.DataFrame({"g": g, "x1": rng.normal(size=g.size), "x2": rng.normal(size=g.size)})
    df["y"] = df.x1 + rng.normal(size=g.size) + rng.normal(size=31)[g]
    ddf = dd.from_pandas(df, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DmixedWarning)
        res = mixedlm(FORMULA, ddf, groups="g", re_formula="1 + x1 + x2").fit(
            client=client, engine="distributed"
        )
    assert res.model.cached_statistics.engine.client is client
    want = r"1 group\(s\) of this fit take sums about their own means.*engine='distributed'"
    with pytest.raises(DataError, match=want) as err:
        res.bootstrap(3, seed=0)
    assert str(err.value).endswith(KEPT_ON_WORKERS_REMEDY)


def _crossed_frame(seed: int, n_schools: int = 60) -> pd.DataFrame:
    """Schools of 10 classrooms × 10 pupils, a ``rater`` (3 levels) crossed with the
    classrooms and without effect: ``1 + 10 + 3`` padded slots, wider than the moment
    sums' ``kernels.MOMENT_MAX_R``; with seed 4 the rater's variance ends at zero."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), 100)
    classroom = np.tile(np.repeat(np.arange(10), 10), n_schools)
    x = rng.normal(size=school.size)
    y = (
        0.5 * x
        + rng.normal(size=n_schools)[school]
        + rng.normal(0.0, 0.7, (n_schools, 10))[school, classroom]
        + rng.normal(size=school.size)
    )
    rater = rng.integers(0, 3, school.size)
    return pd.DataFrame({"school": school, "classroom": classroom, "rater": rater, "x": x, "y": y})


def test_refits_of_a_wide_padded_fit_on_the_boundary_start_from_its_moments(monkeypatch):
    """A fit on the boundary has its replicates start as a full fit does: from the moment
    estimate, by Newton steps first.  Crossed components held padded wider than
    ``MOMENT_MAX_R`` take it from the per-component sums (vcstart-s57), as the model's fit
    does; the refits had none and ran BFGS from the default start."""
    vc = {"classroom": "0 + C(classroom)", "rater": "0 + C(rater)"}
    model = mixedlm("y ~ x", _crossed_frame(4), groups="school", re_formula="1", vc_formula=vc)
    with pytest.warns(BoundaryWarning, match="rater"):
        res = model.fit()
    assert res.vcomp[1] == 0.0  # the rater's variance: on the boundary
    seen = []
    optimize = ReplicateFitter.optimize

    def spy(self, obj, start, newton_first):
        seen.append((self.moment_start, newton_first))
        return optimize(self, obj, start, newton_first)

    monkeypatch.setattr(ReplicateFitter, "optimize", spy)
    boot = res.bootstrap(3, seed=11)
    assert seen == [(True, True)] * 3
    assert boot.replicates["converged"].all()
