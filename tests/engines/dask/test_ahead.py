"""dmixed.engines.dask.ahead: the step and the Hessian at one Λ in one round trip give
the sums two round trips give, and the fit kept on the workers is unchanged by it."""

from __future__ import annotations

import functools
import warnings

import dask.dataframe as dd
import numpy as np
import pytest

import dmixed
from dmixed.engines.dask import DaskEngine
from dmixed.fit.objective import profile, profile_weights
from dmixed.fit.summary import DEFAULTS
from tests.engines.test_vc_crossed import CROSSED, crossed_data

from ..._synth import make_data

CASES = {
    "padded": ("y ~ x1 + x2", {"groups": "g", "re_formula": "1 + x1"}),
    "nested": (
        "y ~ x1 + x2",
        {"groups": "g", "re_formula": "1", "vc_formula": {"s": "0 + C(sub)"}},
    ),
    "crossed": ("y ~ x", {"groups": "g", "re_formula": "1", "vc_formula": CROSSED}),
}


def _data(case: str):
    if case == "crossed":
        return crossed_data(n_groups=12, seed=1)
    return make_data(n_groups=120, vc_sd=0.5, seed=4)


def _model(case: str):
    formula, kw = CASES[case]
    ddf = dd.from_pandas(_data(case), npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dmixed.mixedlm(formula, ddf, **kw)


def _assert_same(a, b):
    assert vars(a)
    for name in vars(a):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _count_round_trips(monkeypatch) -> list:
    """A list that grows by one at every round trip of a :class:`DaskEngine`."""
    trips = []
    round_trip = DaskEngine._round_trip

    def counted(self, submit, kwargs, **in_turn):
        trips.append(1)
        return round_trip(self, submit, kwargs, **in_turn)

    monkeypatch.setattr(DaskEngine, "_round_trip", counted)
    return trips


def _assert_same_fit(res, ref):
    """The same evaluations, estimates, standard errors and BLUPs, bit for bit."""
    assert res.llf == ref.llf and res.n_evals == ref.n_evals
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)
    for name in ("blup", "blup_cov"):
        np.testing.assert_array_equal(
            np.asarray(getattr(res.to_state(), name)), np.asarray(getattr(ref.to_state(), name))
        )


@pytest.mark.parametrize("case", list(CASES))
def test_step_hessian_is_the_step_and_the_hessian(client, case):
    stats = _model(case).statistics(client=client, engine="distributed")
    engine, layout = stats.engine, stats.fit_layout
    assert isinstance(engine, DaskEngine)
    basis = layout.basis()
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    for packed in (np.full(layout.n_params, 0.7), np.linspace(0.3, 1.1, layout.n_params)):
        lam = layout.lam(packed, True)
        step, hs, w = engine.step_hessian(lam, layout.k_re, basis, weights)
        one = engine.step(lam, layout.k_re)
        _assert_same(step, one)
        np.testing.assert_array_equal(w, profile(one, stats.glob, True).w)
        _assert_same(hs, engine.hessian(lam, basis, w))
    lams = [layout.lam(np.full(layout.n_params, v), True) for v in (0.4, 0.9)]
    sums, hs, w = engine.steps_hessian(lams, layout.k_re, basis, weights, 1)
    for got, want in zip(sums, engine.steps(lams, layout.k_re), strict=True):
        _assert_same(got, want)
    np.testing.assert_array_equal(w, profile(sums[1], stats.glob, True).w)
    _assert_same(hs, engine.hessian(lams[1], basis, w))


@pytest.mark.parametrize("at", [0, 1, 2])
def test_the_hessians_lambda_anywhere_among_several(client, at):
    """Every Λ's step sums in their place, the Hessian at ``lams[at]`` with the ``w``
    each block's task made there."""
    stats = _model("padded").statistics(client=client, engine="distributed")
    engine, layout = stats.engine, stats.fit_layout
    basis = layout.basis()
    weights = functools.partial(profile_weights, glob=stats.glob, reml=False)
    lams = [layout.lam(np.full(layout.n_params, v), True) for v in (0.4, 0.9, 1.3)]
    sums, hs, w = engine.steps_hessian(lams, layout.k_re, basis, weights, at)
    for got, lam in zip(sums, lams, strict=True):
        _assert_same(got, engine.step(lam, layout.k_re))
    np.testing.assert_array_equal(w, profile(sums[at], stats.glob, False).w)
    _assert_same(hs, engine.hessian(lams[at], basis, w))


def test_blocks_that_made_other_weights_give_no_hessian():
    """Each block's task makes ``w`` itself: where they disagree (never on one machine),
    the chain's Hessian is dropped, its step sums kept."""
    from dmixed.engines.dask.ahead import gathered_steps_hessian

    steps = [[np.ones(2), 10 * np.ones(2)], [2 * np.ones(2), 20 * np.ones(2)]]
    made = [(np.array([1.0, 1.0]), np.ones(3)), (np.array([1.0, 2.0]), np.ones(3))]
    sums, hs, w, blups = gathered_steps_hessian([*steps, *made])
    np.testing.assert_array_equal(sums[0], 3 * np.ones(2))
    np.testing.assert_array_equal(sums[1], 30 * np.ones(2))
    assert hs is None and w is None and blups is None
    same = [made[0], (made[0][0].copy(), 2 * np.ones(3))]
    sums, hs, w, blups = gathered_steps_hessian([*steps, *same])
    np.testing.assert_array_equal(hs, 3 * np.ones(3))
    np.testing.assert_array_equal(w, made[0][0])
    assert blups is None


def test_no_weights_no_hessian(client):
    stats = _model("nested").statistics(client=client, engine="distributed")
    layout = stats.fit_layout

    def singular(step):
        raise np.linalg.LinAlgError("X'V*^-1 X is singular")

    lam = layout.lam(np.ones(layout.n_params), True)
    step, hs, w = stats.engine.step_hessian(lam, layout.k_re, layout.basis(), singular)
    assert hs is None and w is None
    _assert_same(step, stats.engine.step(lam, layout.k_re))


@pytest.mark.parametrize("case", list(CASES))
def test_the_fit_kept_on_the_workers_is_unchanged_in_fewer_round_trips(client, case, monkeypatch):
    """The same evaluations and numbers, bit for bit, as with a Hessian round trip of its
    own after each Newton step; fewer of those; the in-process fit to 1e-10."""
    formula, kw = CASES[case]
    calls = []
    hessian = DaskEngine.hessian

    def counted(self, *args, **kwargs):
        calls.append(1)
        return hessian(self, *args, **kwargs)

    monkeypatch.setattr(DaskEngine, "hessian", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _model(case).fit(client=client, engine="distributed")
        ahead = len(calls)
        monkeypatch.delattr(DaskEngine, "step_hessian")
        calls.clear()
        ref = _model(case).fit(client=client, engine="distributed")
        local = dmixed.mixedlm(formula, _data(case), **kw).fit()
    assert res.optimizer_methods == ref.optimizer_methods == ["newton"]
    assert res.llf == ref.llf and res.n_evals == ref.n_evals
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)
    assert ahead < len(calls)
    assert res.llf == pytest.approx(local.llf, rel=1e-10)
    np.testing.assert_allclose(res.params, local.params, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("secant_rows", [100_000, 0])
@pytest.mark.parametrize("case", list(CASES))
def test_the_blups_come_with_the_final_hessian(client, case, secant_rows, monkeypatch):
    """One round trip fewer: the BLUPs are made with the Hessian at the point where the
    Newton steps end (a trial point's chain, or the polish's Hessian after secant steps),
    and the results are those of a separate round trip for them, bit for bit."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", secant_rows)
    trips = _count_round_trips(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _model(case).fit(client=client, engine="distributed")
        together = len(trips)
        # the BLUPs never kept with a Hessian: random_effects makes its own round trip
        monkeypatch.setattr(DaskEngine, "_keep_random_effects", lambda self, *args: None)
        trips.clear()
        ref = _model(case).fit(client=client, engine="distributed")
    assert together == len(trips) - 1
    _assert_same_fit(res, ref)
    np.testing.assert_array_equal(
        res.random_effects_frame().to_numpy(), ref.random_effects_frame().to_numpy()
    )


def test_blups_kept_with_a_hessian_are_those_of_their_own_round_trip(client):
    """At a Λ and w, the BLUPs made with the Hessian are those of ``random_effects``;
    at another w (or once handed out) ``random_effects`` makes its own."""
    stats = _model("padded").statistics(client=client, engine="distributed")
    engine, layout = stats.engine, stats.fit_layout
    basis = layout.basis()
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    lam = layout.lam(np.full(layout.n_params, 0.7), True)
    step, hs, w = engine.step_hessian(lam, layout.k_re, basis, weights, random_effects=True)
    _assert_same(hs, engine.hessian(lam, basis, w))
    kept = engine.random_effects(lam, w)
    own = engine.random_effects(lam, w)  # handed out once: its own round trip now
    for a, b in zip(kept, own, strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same(engine.hessian_random_effects(lam, basis, w), hs)
    other = engine.random_effects(lam, 2.0 * w)
    assert not np.array_equal(other[0], own[0])
    np.testing.assert_array_equal(engine.random_effects(lam, w)[0], own[0])


@pytest.mark.parametrize("case", list(CASES))
def test_a_last_secant_step_brings_its_hessian_and_blups(client, case, monkeypatch):
    """After secant steps (no exact Hessian wanted at their points), the step expected
    to end at the optimum still brings the Hessian and the BLUPs there in its round trip
    (the polish takes both there): fewer round trips than with each in its own, the
    same numbers bit for bit."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    trips = _count_round_trips(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _model(case).fit(client=client, engine="distributed")
        together = len(trips)
        monkeypatch.delattr(DaskEngine, "step_hessian")  # every Hessian in its own trip
        trips.clear()
        ref = _model(case).fit(client=client, engine="distributed")
    assert together < len(trips)
    _assert_same_fit(res, ref)


@pytest.mark.parametrize("kernels_env", ["numba", "numpy"])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_a_blocks_hessian_and_blups_in_one_task_are_the_evaluators_calls(
    monkeypatch, kernels_env, r
):
    """The Hessian task that also makes the BLUPs (in one pass over the groups where
    both run compiled and r ≤ 2, else the evaluator's two calls) gives what the
    evaluator's ``hessian`` and ``random_effects`` give, bit for bit."""
    pytest.importorskip("numba")
    from dmixed.engines.dask.ahead import block_hessian_random_effects
    from dmixed.engines.local import LocalEngine
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, kernels_env)
    rng = np.random.default_rng(r)
    z = rng.normal(size=(300, 6, r))
    xy = rng.normal(size=(300, 6, 4))
    ev = LocalEngine(np.einsum("gia,gib->gab", z, z), np.einsum("gia,gix->gax", z, xy))
    lam = np.tril(rng.normal(size=(r, r))) + 2.0 * np.eye(r)
    basis = np.array([np.eye(r), np.diag(np.arange(r, dtype=float))])
    w = np.r_[rng.normal(size=3), 1.0]
    hs, (blup, cov) = block_hessian_random_effects(ev, lam, basis, w)
    _assert_same(hs, ev.hessian(lam, basis, w))
    ref_blup, ref_cov = ev.random_effects(lam, w)
    np.testing.assert_array_equal(blup.whole(), ref_blup)  # cut for the driver
    cov = cov.whole()
    # one compiled pass sends the covariances' upper triangles, unfolded on the driver
    assert cov.ndim == (2 if kernels_env == "numba" and r <= 2 else 3)
    if cov.ndim == 2:
        assert cov.shape == (300, r * (r + 1) // 2)
        cov = compiled.upper_unfolded(cov)
    np.testing.assert_array_equal(cov, ref_cov)
    assert block_hessian_random_effects(ev, lam, basis, None) is None


def test_a_block_only_numpy_evaluates_takes_the_evaluators_calls(monkeypatch):
    """A block whose forms only the numpy kernels evaluate (here the rank-one forms of
    a random slope constant within each group; lossy groups' centred forms alike) gets
    its Hessian sums and BLUPs from the evaluator's calls, not from the compiled pass
    over its raw sums (which once ran for it)."""
    pytest.importorskip("numba")
    from dmixed.engines.dask.ahead import block_hessian_random_effects
    from dmixed.engines.local import LocalEngine
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    rng = np.random.default_rng(7)
    z = np.stack([np.ones((300, 6)), np.repeat(rng.normal(size=(300, 1)), 6, axis=1)], axis=-1)
    xy = rng.normal(size=(300, 6, 4))
    ev = LocalEngine(np.einsum("gia,gib->gab", z, z), np.einsum("gia,gix->gax", z, xy))
    ev.block.use_rank_one(np.full(300, 6))  # 300 groups of 6 rows
    assert ev.block.numpy_only
    lam = np.array([[1.5, 0.0], [0.3, 0.7]])
    basis = np.array([np.eye(2), np.diag([0.0, 1.0])])
    w = np.r_[rng.normal(size=3), 1.0]
    hs, (blup, cov) = block_hessian_random_effects(ev, lam, basis, w)
    _assert_same(hs, ev.hessian(lam, basis, w))
    ref_blup, ref_cov = ev.random_effects(lam, w)
    np.testing.assert_array_equal(blup.whole(), ref_blup)
    np.testing.assert_array_equal(cov.whole(), ref_cov)


def _small_block(r: int, seed: int):
    """An evaluator of 300 groups of 6 rows, ``r`` random-design columns, and a point
    (Λ, basis, w) where both of its calls run compiled."""
    from dmixed.engines.local import LocalEngine

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(300, 6, r))
    xy = rng.normal(size=(300, 6, 4))
    ev = LocalEngine(np.einsum("gia,gib->gab", z, z), np.einsum("gia,gix->gax", z, xy))
    lam = np.tril(rng.normal(size=(r, r))) + 2.0 * np.eye(r)
    basis = np.array([np.eye(r), np.diag(np.arange(r, dtype=float))])
    return ev, lam, basis, np.r_[rng.normal(size=3), 1.0]


def _address(pieces) -> int:
    return pieces.items[0].__array_interface__["data"][0]


@pytest.mark.parametrize("r", [1, 2])
def test_a_blocks_blups_are_made_in_the_memory_of_the_last_ones_sent(kept_buffers, monkeypatch, r):
    """In a process that keeps buffers (a tuned worker), one compiled pass writes a
    block's BLUPs and their covariances into one kept buffer (use ``"blups"``), which
    the next call takes again once nothing views the last ones (they were sent): no
    fresh pages at every fit's end.  The values are the evaluator's, bit for bit."""
    pytest.importorskip("numba")
    from dmixed.engines.dask.ahead import block_hessian_random_effects
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    ev, lam, basis, w = _small_block(r, seed=11)
    _, (blup, cov) = block_hessian_random_effects(ev, lam, basis, w)
    # addresses taken outside the asserts: pytest's rewritten asserts keep what they read
    first, covs = _address(blup), _address(cov)
    assert kept_buffers.kept_table_buffers() == 1
    assert covs == first + 300 * r * 8  # one buffer, the covariances after
    del blup, cov
    _, (blup, cov) = block_hessian_random_effects(ev, lam, basis, w)
    again = _address(blup)
    assert kept_buffers.kept_table_buffers() == 1 and again == first
    ref_blup, ref_cov = ev.random_effects(lam, w)
    np.testing.assert_array_equal(blup.whole(), ref_blup)
    np.testing.assert_array_equal(compiled.upper_unfolded(cov.whole()), ref_cov)


def test_blups_still_held_are_never_written_over(kept_buffers, monkeypatch):
    """BLUPs still viewed (a task's result not yet released, or the driver's own copy
    where the cluster runs in its process) keep their buffer: the next call writes
    elsewhere, and the first values are left as they were."""
    pytest.importorskip("numba")
    from dmixed.engines.dask.ahead import block_hessian_random_effects
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    ev, lam, basis, w = _small_block(2, seed=12)
    _, (blup, cov) = block_hessian_random_effects(ev, lam, basis, w)
    before = blup.whole().copy(), cov.whole().copy()
    _, (blup2, cov2) = block_hessian_random_effects(ev, 2.0 * lam, basis, w)
    assert kept_buffers.kept_table_buffers() == 2
    assert not np.shares_memory(blup.items[0], blup2.items[0])
    assert not np.shares_memory(cov.items[0], cov2.items[0])
    np.testing.assert_array_equal(blup.whole(), before[0])
    np.testing.assert_array_equal(cov.whole(), before[1])
    assert not np.array_equal(blup2.whole(), before[0])


def test_a_results_blups_outlive_later_fits_on_workers_that_keep_buffers(
    client, kept_buffers, monkeypatch
):
    """Fits on a cluster in this process (the driver's BLUPs are the workers' own
    arrays) whose workers keep buffers: a result's BLUPs, read only after two later
    fits, are those of the same fit made again, bit for bit."""
    pytest.importorskip("numba")
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, "numba")

    def fit(seed: int):
        ddf = dd.from_pandas(make_data(n_groups=120, vc_sd=0.5, seed=seed), npartitions=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dmixed.mixedlm("y ~ x1 + x2", ddf, groups="g", re_formula="1 + x1")
            return model.fit(client=client, engine="distributed")

    first = fit(4)
    later = [fit(5), fit(6)]
    assert kept_buffers.kept_table_buffers() >= 1
    again = fit(4).random_effects_frame().to_numpy()
    np.testing.assert_array_equal(first.random_effects_frame().to_numpy(), again)
    assert not np.array_equal(later[0].random_effects_frame().to_numpy(), again)


def test_blups_written_into_arrays_given_are_those_of_new_ones(monkeypatch):
    """``compiled.hessian_random_effects(..., out=(blup, cov))`` writes every row there
    and returns those arrays (the same bits as its own new arrays); arrays of another
    shape, dtype or order are refused, naming ``out``."""
    pytest.importorskip("numba")
    from dmixed.kernels import compiled

    monkeypatch.setenv(compiled.ENV_VAR, "numba")
    ev, lam, basis, w = _small_block(2, seed=13)
    block = ev.block

    def call(**kwargs):  # the chunks are an iterator: new ones at each call
        return compiled.hessian_random_effects(
            block.chunks(), lam, basis, w, block.spans.edges, **kwargs
        )

    fields, blup, cov = call(upper=True)
    out = (np.full((300, 2), np.nan), np.full((300, 3), np.nan))
    got = call(upper=True, out=out)
    assert got[1] is out[0] and got[2] is out[1]
    np.testing.assert_array_equal(got[1], blup)
    np.testing.assert_array_equal(got[2], cov)
    for a, b in zip(fields, got[0], strict=True):
        np.testing.assert_array_equal(a, b)
    whole = call(out=(np.empty((300, 2)), np.empty((300, 4))))
    np.testing.assert_array_equal(whole[2], compiled.upper_unfolded(cov))
    bad = [
        (np.empty((300, 2)),),
        (np.empty((299, 2)), np.empty((300, 3))),
        (np.empty((300, 2), dtype=np.float32), np.empty((300, 3))),
        (np.empty((2, 300)).T, np.empty((300, 3))),
    ]
    for given in bad:
        with pytest.raises(ValueError, match="out"):
            call(upper=True, out=given)
