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
