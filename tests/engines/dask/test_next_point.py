"""dmixed.engines.dask.next_point: a secant Newton step's next trial point made on a
worker from the trial point's step sums and evaluated in its round trip gives the sums
(and the Hessian sums and BLUPs) its own round trip gives, taken only at that point; the
fit kept on the workers is unchanged by it, in one round trip fewer."""

from __future__ import annotations

import functools
import pickle
import warnings

import dask.dataframe as dd
import numpy as np
import pytest
from distributed import Client, LocalCluster

import dmixed
from dmixed.engines.dask import DaskEngine
from dmixed.engines.dask.next_point import submit_step_then
from dmixed.engines.local import LocalEngine
from dmixed.fit.newton_ahead import FirstNewtonPoint, NextNewtonPoint
from dmixed.fit.objective import profile_weights
from dmixed.fit.summary import DEFAULTS

from .test_ahead import CASES, _assert_same, _assert_same_fit, _count_round_trips, _data, _model


def _stats(client):
    stats = _model("padded").statistics(client=client, engine="distributed")
    assert isinstance(stats.engine, DaskEngine)
    return stats


def _next(lam2, hessian, random_effects):
    """A ``following`` that makes ``lam2`` of any sums (picklable)."""
    return functools.partial(_point, (lam2, hessian, random_effects))


def _point(point, sums):
    return point


def _doubled(weights, sums):
    return 2.0 * weights(sums)


def _raises(sums):
    raise ValueError("no point")


@pytest.mark.parametrize("random_effects", [False, True])
def test_the_chained_point_is_its_own_round_trip(client, monkeypatch, random_effects):
    """The sums at Λ, and at the chained Λ₂ the step sums, the Hessian sums, w and the
    BLUPs, are those of their own round trips, bit for bit; at Λ₂ they come without
    one."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    lam = layout.lam(np.full(layout.n_params, 0.7), True)
    lam2 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    ref_step2, ref_hs, ref_w = engine.step_hessian(lam2, q, basis, weights)
    ref_blups = engine.random_effects(lam2, ref_w)
    ref_step = engine.step(lam, q)
    trips = _count_round_trips(monkeypatch)
    following = _next(lam2, True, random_effects)
    _assert_same(engine.step_then(lam, q, basis, weights, following), ref_step)
    step2, hs, w = engine.step_hessian(lam2, q, basis, weights, random_effects)
    assert len(trips) == 1
    _assert_same(step2, ref_step2)
    _assert_same(hs, ref_hs)
    np.testing.assert_array_equal(w, ref_w)
    blups = engine.random_effects(lam2, w)
    assert len(trips) == (1 if random_effects else 2)
    for got, want in zip(blups, ref_blups, strict=True):
        np.testing.assert_array_equal(got, want)
    # handed out once: asked again, its own round trip
    engine.step(lam2, q)
    assert len(trips) == (2 if random_effects else 3)


def test_only_the_chained_point_is_taken(client, monkeypatch):
    """Another Λ, another ``q``, a Hessian with another basis or where none was made, a
    Hessian asked with the BLUPs where none were made, or ``w`` not the caller's
    ``weights``: a round trip of its own, whose sums are those of that call."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    doubled = functools.partial(_doubled, weights)
    lam = layout.lam(np.full(layout.n_params, 0.7), True)
    lam2 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    other = layout.lam(np.linspace(0.4, 1.2, layout.n_params) * (1.0 + 1e-15), True)
    assert other.tobytes() != lam2.tobytes()
    ref = engine.step_hessian(lam2, q, basis, weights)
    trips = _count_round_trips(monkeypatch)

    def chained_then(call, *args):
        trips.clear()
        engine.step_then(lam, q, basis, weights, _next(lam2, *args))
        out = call()
        return out, len(trips)

    got, n = chained_then(lambda: engine.step(other, q), True, False)
    assert n == 2
    _assert_same(got, engine.step(other, q))
    got, n = chained_then(lambda: engine.step(lam2, q + 1 if q < 2 else 1), True, False)
    assert n == 2
    got, n = chained_then(lambda: engine.step_hessian(lam2, q, 2.0 * basis, weights), True, False)
    assert n == 2
    _assert_same(got[1], engine.hessian(lam2, 2.0 * basis, ref[2]))
    got, n = chained_then(lambda: engine.step_hessian(lam2, q, basis, weights), False, False)
    assert n == 2
    _assert_same(got[1], ref[1])
    got, n = chained_then(lambda: engine.step_hessian(lam2, q, basis, weights, True), True, False)
    assert n == 2
    _assert_same(got[1], ref[1])
    got, n = chained_then(lambda: engine.step_hessian(lam2, q, basis, doubled), True, False)
    assert n == 2
    want = engine.step_hessian(lam2, q, basis, doubled)
    _assert_same(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    # a step sums' request at the chained Λ takes its sums, not its Hessian
    got, n = chained_then(lambda: engine.step(lam2, q), True, False)
    assert n == 1
    _assert_same(got, ref[0])


def test_no_point_or_a_failing_one_chains_nothing(client, monkeypatch):
    """``following`` that gives no point or raises on the worker, a point whose step
    sums raise, or whose Hessian sums raise: the step sums at Λ all the same, and
    nothing kept at Λ₂."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    lam = layout.lam(np.full(layout.n_params, 0.7), True)
    lam2 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    want = engine.step(lam, q)
    ref = engine.step_hessian(lam2, q, basis, weights)
    raised = []

    def raising(name):
        """The evaluators' ``name`` raising at Λ₂ (the workers run in this process)."""
        made = getattr(LocalEngine, name)

        def call(self, at, *args):
            if np.asarray(at).tobytes() == lam2.tobytes():
                raised.append(name)
                raise RuntimeError(f"{name} at the chained point")
            return made(self, at, *args)

        return call

    cases = [
        (functools.partial(_point, None), None),
        (_raises, None),
        (_next(lam2, True, False), "step"),
        (_next(lam2, True, False), "hessian"),
    ]
    for following, name in cases:
        if name is not None:
            monkeypatch.setattr(LocalEngine, name, raising(name))
        _assert_same(engine.step_then(lam, q, basis, weights, following), want)
        assert engine._kept_next is None
        monkeypatch.undo()
        trips = _count_round_trips(monkeypatch)
        got = engine.step_hessian(lam2, q, basis, weights)
        assert len(trips) == 1
        _assert_same(got[1], ref[1])
        monkeypatch.undo()
    assert set(raised) == {"step", "hessian"}


def _weights_failing(sums):
    """Profiled weights that fail with an error other than ``LinAlgError``."""
    raise ValueError("no weights here")


def test_weights_failing_at_the_chained_point_drop_the_chain_not_the_trip(client):
    """``weights`` raising something other than ``LinAlgError`` at the chained point (a
    guess of the driver's next point): the step sums at Λ all the same, nothing kept
    at Λ₂; the driver's own request there then meets the error itself."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    lam = layout.lam(np.full(layout.n_params, 0.7), True)
    lam2 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    want = engine.step(lam, q)
    got = engine.step_then(lam, q, basis, _weights_failing, _next(lam2, True, False))
    _assert_same(got, want)
    assert engine._kept_next is None
    with pytest.raises(ValueError, match="no weights here"):
        engine.step_hessian(lam2, q, basis, _weights_failing)


def _count_taken(monkeypatch) -> list:
    """Whether each of the engine's requests took a point chained before (True) or not
    (False), in order, for the test's length (``DaskEngine._take_next`` wrapped)."""
    taken: list = []
    take_next = DaskEngine._take_next

    def counted(self, *args):
        out = take_next(self, *args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(DaskEngine, "_take_next", counted)
    return taken


def _fit(case: str, client):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _model(case).fit(client=client, engine="distributed")


@pytest.mark.parametrize("case", list(CASES))
def test_the_fit_makes_its_secant_steps_in_one_round_trip_fewer(client, case, monkeypatch):
    """Secant steps (every fit's here): the next trial point of a step that wants no
    Hessian rides on its round trip, and the last one brings the final Hessian and the
    BLUPs; the same evaluations, estimates, standard errors and BLUPs, bit for bit, as
    with each point in a round trip of its own, in fewer round trips."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    taken = _count_taken(monkeypatch)
    trips = _count_round_trips(monkeypatch)
    res = _fit(case, client)
    chained = len(trips)
    assert any(taken)
    monkeypatch.delattr(DaskEngine, "step_then")
    trips.clear()
    ref = _fit(case, client)
    assert chained == len(trips) - sum(taken)
    _assert_same_fit(res, ref)
    assert res.n_iter == ref.n_iter and res.converged == ref.converged
    np.testing.assert_array_equal(res.cov_params(), ref.cov_params())
    np.testing.assert_array_equal(
        res.random_effects_frame().to_numpy(), ref.random_effects_frame().to_numpy()
    )


@pytest.mark.parametrize("case", ["padded", "crossed"])
def test_a_chained_point_the_fit_does_not_ask_for_is_not_taken(client, case, monkeypatch):
    """A chained point off the one the driver's step makes (Λ₂ moved by one ulp, or the
    BLUPs' w moved): nothing of it is taken, and the fit is the one without the chain,
    bit for bit, in as many round trips (the first step's point, chained on the starts'
    round trip, moved too)."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    call, first = NextNewtonPoint.__call__, FirstNewtonPoint.__call__

    def off(self, sums):
        out = call(self, sums)
        return None if out is None else (np.nextafter(out[0], np.inf), *out[1:])

    def first_off(self, points, hessian):
        out = first(self, points, hessian)
        return None if out is None else (np.nextafter(out[0], np.inf), *out[1:])

    monkeypatch.setattr(NextNewtonPoint, "__call__", off)
    monkeypatch.setattr(FirstNewtonPoint, "__call__", first_off)
    trips = _count_round_trips(monkeypatch)
    res = _fit(case, client)
    chained = len(trips)
    monkeypatch.delattr(DaskEngine, "step_then")
    trips.clear()
    ref = _fit(case, client)
    assert chained == len(trips)
    _assert_same_fit(res, ref)
    np.testing.assert_array_equal(res.cov_params(), ref.cov_params())


def test_the_chained_blups_stay_valid_after_the_cluster_closes(monkeypatch):
    """The BLUPs that came with a chained point (the fit's last secant step) are read
    after the cluster is closed, as those of a fit without the chain."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    ddf = dd.from_pandas(_data("padded"), npartitions=3)
    formula, kw = CASES["padded"]
    got = []
    for chain in (True, False):
        if not chain:
            monkeypatch.delattr(DaskEngine, "step_then")
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
            ) as cluster,
            Client(cluster, set_as_default=False) as c,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            res = dmixed.mixedlm(formula, ddf, **kw).fit(client=c, engine="distributed")
        assert c.status == "closed"
        got.append(res)
    res, ref = got
    back = pickle.loads(pickle.dumps(res))
    for fit in (res, back):
        np.testing.assert_array_equal(
            fit.random_effects_frame().to_numpy(), ref.random_effects_frame().to_numpy()
        )
        np.testing.assert_array_equal(
            np.asarray(fit.to_state().blup_cov), np.asarray(ref.to_state().blup_cov)
        )


@pytest.mark.usefixtures("tasks_only")
def test_the_chained_tasks_are_never_root_ish_and_stay_with_their_evaluators(client, monkeypatch):
    """Rounds of the chain not yet released when the next is submitted make no root-ish
    task group; in a fit whose secant steps chain their points no evaluator moves."""
    from .test_placement import _assert_no_evaluator_moves, _data, _evaluator_keys

    model, stats = _evaluator_keys(client, _data())
    layout = stats.fit_layout
    lam = layout.lam(np.full(layout.n_params, 0.8), True)
    lam2 = layout.lam(np.full(layout.n_params, 0.9), True)
    args = dict(lam=lam, q=layout.k_re, basis=layout.basis())
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    blocks = stats.engine.blocks
    following = _next(lam2, True, True)
    rounds = [submit_step_then(client, blocks, args, weights, following) for _ in range(3)]
    client.gather([f for futures in rounds for f in futures])
    keys = [f.key for futures in rounds for f in futures]
    rootish = client.run_on_scheduler(
        lambda dask_scheduler: [dask_scheduler.is_rootish(dask_scheduler.tasks[k]) for k in keys]
    )
    assert len(rootish) == 3 * 3 * len(blocks) and not any(rootish)
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    chained = []
    step_then = DaskEngine.step_then

    def counted(self, *args):
        chained.append(1)
        return step_then(self, *args)

    monkeypatch.setattr(DaskEngine, "step_then", counted)
    _assert_no_evaluator_moves(client, model, stats)
    assert chained


# -- the first Newton step chained on the starts' round trip ---------------------------


def _first(lam1, hessian, random_effects, following):
    """A ``following`` of ``steps_hessian`` that makes ``lam1`` (and chains
    ``following``) of any sums (picklable)."""
    return functools.partial(_first_point, (lam1, hessian, random_effects, following))


def _first_point(point, points, hessian):
    assert hessian is not None and len(points) == 2
    return point


def _first_raises(points, hessian):
    raise ValueError("no point")


@pytest.mark.parametrize("secant", [True, False])
def test_the_first_point_and_the_one_it_chains_are_their_own_round_trips(
    client, monkeypatch, secant
):
    """After the starts' round trip with a first point chained: at that point (then at
    the secant point it chains) the step sums, the Hessian sums, w and the BLUPs of
    their own round trips, bit for bit, without one; asked elsewhere, dropped."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    lams = [layout.lam(np.full(layout.n_params, v), True) for v in (0.5, 0.7)]
    lam1 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    lam2 = layout.lam(np.linspace(0.5, 1.1, layout.n_params), True)
    ref_sums, ref_hs, ref_w = engine.steps_hessian(lams, q, basis, weights, 1)
    ref1 = engine.step_hessian(lam1, q, basis, weights)
    ref2 = engine.step_hessian(lam2, q, basis, weights)
    last = lam2 if secant else lam1
    ref_blups = engine.random_effects(last, (ref2 if secant else ref1)[2])
    trips = _count_round_trips(monkeypatch)
    if secant:
        following = _first(lam1, False, False, _next(lam2, True, True))
    else:
        following = _first(lam1, True, True, None)
    sums, hs, w = engine.steps_hessian(lams, q, basis, weights, 1, following=following)
    for got, want in zip(sums, ref_sums, strict=True):
        _assert_same(got, want)
    _assert_same(hs, ref_hs)
    np.testing.assert_array_equal(w, ref_w)
    if secant:
        _assert_same(engine.step_then(lam1, q, basis, weights, _raises), ref1[0])
        got = engine.step_hessian(lam2, q, basis, weights, True)
        want = ref2
    else:
        got = engine.step_hessian(lam1, q, basis, weights, True)
        want = ref1
    for a, b in zip(got, want, strict=True):
        _assert_same(a, b) if not isinstance(a, np.ndarray) else np.testing.assert_array_equal(a, b)
    blups = engine.random_effects(last, got[2])
    assert len(trips) == 1
    for a, b in zip(blups, ref_blups, strict=True):
        np.testing.assert_array_equal(a, b)
    # asked elsewhere first: nothing of the chain is taken
    engine.steps_hessian(lams, q, basis, weights, 1, following=following)
    trips.clear()
    engine.step(lam2 if not secant else lam1 * 2.0, q)
    engine.step(lam1, q)
    assert len(trips) == 2


def test_no_first_point_or_a_failing_one_chains_nothing(client, monkeypatch):
    """A first point that is None or raises on the worker: the starts' sums and the
    Hessian all the same, nothing kept at the point."""
    stats = _stats(client)
    engine, layout = stats.engine, stats.fit_layout
    basis, q = layout.basis(), layout.k_re
    weights = functools.partial(profile_weights, glob=stats.glob, reml=True)
    lams = [layout.lam(np.full(layout.n_params, v), True) for v in (0.5, 0.7)]
    lam1 = layout.lam(np.linspace(0.4, 1.2, layout.n_params), True)
    ref_sums, ref_hs, _ = engine.steps_hessian(lams, q, basis, weights, 1)
    for following in (functools.partial(_first_point, None), _first_raises):
        sums, hs, _w = engine.steps_hessian(lams, q, basis, weights, 1, following=following)
        _assert_same(sums[1], ref_sums[1])
        _assert_same(hs, ref_hs)
        assert engine._kept_next is None
        trips = _count_round_trips(monkeypatch)
        engine.step(lam1, q)
        assert len(trips) == 1
        monkeypatch.undo()


def _without_first_point(monkeypatch):
    """The starts' round trips of a :class:`DaskEngine` without the first point."""
    steps_hessian = DaskEngine.steps_hessian

    def plain(self, *args, following=None, **kwargs):
        return steps_hessian(self, *args, **kwargs)

    monkeypatch.setattr(DaskEngine, "steps_hessian", plain)


@pytest.mark.parametrize("case", list(CASES))
def test_the_fit_makes_its_first_newton_step_in_the_starts_round_trip(client, case, monkeypatch):
    """Secant steps: the first Newton step's trial point (and the secant point it chains)
    ride on the starts' round trip: one round trip fewer than the fit without, the same
    evaluations, estimates, standard errors and BLUPs, bit for bit."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    made = []
    call = FirstNewtonPoint.__call__

    def counted(self, points, hessian):
        out = call(self, points, hessian)
        made.append(out is not None)
        return out

    monkeypatch.setattr(FirstNewtonPoint, "__call__", counted)
    trips = _count_round_trips(monkeypatch)
    res = _fit(case, client)
    chained = len(trips)
    assert made and all(made)
    _without_first_point(monkeypatch)
    trips.clear()
    ref = _fit(case, client)
    assert chained == len(trips) - 1
    _assert_same_fit(res, ref)
    assert res.n_iter == ref.n_iter and res.converged == ref.converged
    np.testing.assert_array_equal(res.cov_params(), ref.cov_params())
    np.testing.assert_array_equal(
        res.random_effects_frame().to_numpy(), ref.random_effects_frame().to_numpy()
    )


def test_a_first_point_the_line_search_rejects_is_dropped(client, monkeypatch):
    """Where the driver's line search rejects the first trial point (every point is
    rejected here) the secant point is not chained and the halved point is its own
    round trip: the same fit, bit for bit, as without the first point, in one round
    trip fewer (the rejected point's)."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    monkeypatch.setattr(DEFAULTS, "newton_llf_rtol", -1.0)
    taken = _count_taken(monkeypatch)
    trips = _count_round_trips(monkeypatch)
    res = _fit("padded", client)
    chained, taken_chained = len(trips), list(taken)
    assert taken_chained.count(True) == 1
    _without_first_point(monkeypatch)
    trips.clear()
    ref = _fit("padded", client)
    assert chained == len(trips) - 1
    _assert_same_fit(res, ref)
    np.testing.assert_array_equal(res.cov_params(), ref.cov_params())
