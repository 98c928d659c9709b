"""dmixed.fit.newton_ahead: the next secant Newton step's first trial point made from
the step sums at a trial point is the one the optimizer's steps then ask for, bit for
bit; an engine that chains it changes no number of the fit."""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import numpy as np
import pytest

import dmixed
from dmixed.fit.newton_ahead import NextNewtonPoint
from dmixed.fit.summary import DEFAULTS

from .._synth import make_data


class _Engine:
    """An in-process engine seen through another type (the fit's general path: no lean
    steps), recording the Λ of every ``step``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.asked: list[bytes] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, lam, q):
        self.asked.append(np.asarray(lam).tobytes())
        return self.inner.step(lam, q)


class _Chaining(_Engine):
    """:class:`_Engine` with ``step_then``: the point ``following`` makes of the sums at
    Λ (pickled first, as it travels to a worker) is recorded with the Λ asked for next."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.points: list[tuple[int, tuple]] = []

    def step_then(self, lam, q, basis, weights, following):
        assert isinstance(following, NextNewtonPoint)
        sums = self.step(lam, q)
        point = pickle.loads(pickle.dumps(following))(sums)
        if point is not None:
            self.points.append((len(self.asked), point))
        return sums


def _fit(engine_type, case: str):
    df = make_data(n_groups=150, vc_sd=0.5, seed=7)
    kw = {"re_formula": "1 + x1"} if case == "slope" else {"vc_formula": {"s": "0 + C(sub)"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **kw)
        stats = model.statistics()
        engine = engine_type(stats.engine)
        res = dmixed.MixedLM.from_statistics(
            dataclasses.replace(stats, engine=engine), model.spec
        ).fit()
    return res, engine


@pytest.mark.parametrize("case", ["slope", "vc"])
def test_the_next_point_is_the_one_the_steps_ask_for(case, monkeypatch):
    """Every point made ahead is the Λ the steps evaluate next, bit for bit, with the
    Hessian asked for where that step is expected to be the last; and the fit, with
    the points made or not, is the same bits."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    res, engine = _fit(_Chaining, case)
    ref, plain = _fit(_Engine, case)
    assert engine.points
    for at, (lam, _ahead, _last) in engine.points:
        assert engine.asked[at] == np.asarray(lam).tobytes()
    assert engine.asked == plain.asked
    assert res.llf == ref.llf and res.n_evals == ref.n_evals and res.n_iter == ref.n_iter
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)


def test_no_point_where_the_steps_stop_or_want_the_exact_hessian(monkeypatch):
    """Without secant steps (every step takes the exact Hessian) nothing is chained: no
    ``step_then`` is called."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 10**12)
    calls = []
    step_then = _Chaining.step_then

    def counted(self, *args):
        calls.append(1)
        return step_then(self, *args)

    monkeypatch.setattr(_Chaining, "step_then", counted)
    _fit(_Chaining, "slope")
    assert not calls


class _StartsChaining(_Chaining):
    """:class:`_Chaining` that maps the starts in one call with the Hessian at one of
    them (``steps_hessian``, as a cluster's engine does): the first Newton step's point
    that ``following`` makes of those sums (pickled first) is recorded with the Λ asked
    for next, and the secant point it chains, of the sums there, with the Λ after."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.firsts: list[tuple[int, tuple]] = []

    def steps(self, lams, q):
        return [self.step(lam, q) for lam in lams]

    def steps_hessian(self, lams, q, basis, weights, at, random_effects=False, following=None):
        sums = self.steps(lams, q)
        try:
            w = weights(sums[at])
        except np.linalg.LinAlgError:
            return sums, None, None
        hs = self.inner.hessian(lams[at], basis, w)
        self.q = q
        if following is not None:
            self.first, self.starts = following, list(zip(lams, sums, strict=True))
            self.hessian_given = (lams[at], w, hs)
            made = pickle.loads(pickle.dumps(following))(
                list(zip(lams, sums, strict=True)), (lams[at], w, hs)
            )
            if made is not None:
                self.firsts.append((len(self.asked), made))
        return sums, hs, w


class _Starts(_StartsChaining):
    """:class:`_StartsChaining` whose ``steps_hessian`` makes no first point."""

    def steps_hessian(self, lams, q, basis, weights, at, random_effects=False, following=None):
        return super().steps_hessian(lams, q, basis, weights, at, random_effects)


@pytest.mark.parametrize("case", ["slope", "vc"])
@pytest.mark.parametrize("secant", [True, False])
def test_the_first_point_is_the_one_the_steps_ask_for(case, secant, monkeypatch):
    """The first Newton step's trial point made from the starts' sums and the Hessian
    at the moment start is the Λ the steps evaluate first, bit for bit, with the Hessian
    asked for where the steps want it there; the secant point it chains (secant steps)
    is the Λ they evaluate after; and the fit, with the points made or not, is the same
    bits."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0 if secant else 10**12)
    res, engine = _fit(_StartsChaining, case)
    ref, plain = _fit(_Starts, case)
    assert len(engine.firsts) == 1
    at, (lam, ahead, _last, following) = engine.firsts[0]
    assert engine.asked[at] == np.asarray(lam).tobytes()
    assert ahead is not secant
    if secant:
        assert isinstance(following, NextNewtonPoint)
        lam2 = following(engine.inner.step(lam, engine.q))[0]
        assert engine.asked[at + 1] == np.asarray(lam2).tobytes()
    else:
        assert following is None
    assert engine.asked == plain.asked
    assert res.llf == ref.llf and res.n_evals == ref.n_evals and res.n_iter == ref.n_iter
    np.testing.assert_array_equal(res.params, ref.params)
    np.testing.assert_array_equal(res.bse, ref.bse)


def test_no_first_point_without_the_moment_start_or_its_hessian(monkeypatch):
    """Where the default start's ℓ is the higher (the steps do not start at the moment
    start), or the Hessian there was not made, no first point is made."""
    monkeypatch.setattr(DEFAULTS, "newton_secant_rows", 0)
    _res, engine = _fit(_StartsChaining, "slope")
    first = engine.first
    (lam_c, sums_c), (lam_m, sums_m) = engine.starts
    assert first([(lam_c, sums_c), (lam_m, sums_m)], engine.hessian_given) is not None
    assert first([(lam_c, sums_c), (lam_m, sums_m)], None) is None
    lam_h, w, hs = engine.hessian_given
    assert first([(lam_c, sums_c), (lam_m, sums_m)], (lam_h, 2.0 * w, hs)) is None
    # the starts' sums swapped: ℓ at the default start is the moment start's
    assert first([(lam_c, sums_m), (lam_m, sums_c)], engine.hessian_given) is None
