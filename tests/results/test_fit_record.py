"""The state record of a fit (:mod:`dmixed.results.fit_record`): the BLUPs made from the
optimum's own factor equal those made from the packed estimate."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed import mixedlm
from dmixed.results.results import MixedLMResults

from .._synth import make_data

RE_FORMULAS = {1: "1", 2: "1 + x1", 3: "1 + x1 + x2"}
BLUP_FIELDS = ("blup", "blup_cov", "blup_cov_statistics")


def _fit_and_its_record_arguments(df, **kw):
    """The fit of ``y ~ x1 + x2`` on ``df`` and the keyword arguments its
    :meth:`MixedLMResults.from_fit` was called with."""
    seen = {}
    made = MixedLMResults.from_fit.__func__

    def capture(cls, **args):
        seen.update(args)
        return made(cls, **args)

    fit_kw = {k: kw.pop(k) for k in ("reml", "method") if k in kw}
    MixedLMResults.from_fit = classmethod(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mixedlm("y ~ x1 + x2", df, groups="g", **kw).fit(**fit_kw)
    finally:
        MixedLMResults.from_fit = classmethod(made)
    return res, seen


@settings(max_examples=8, deadline=None)
@given(
    q=st.integers(1, 3),
    vc=st.booleans(),
    reml=st.booleans(),
    weights=st.booleans(),
    offset=st.sampled_from([0.0, 1e9]),
    slope_sd=st.sampled_from([0.0, 0.5]),
    use_sqrt=st.booleans(),
    bfgs=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_blups_of_the_optimum_factor_equal_those_of_the_estimate(
    q, vc, reml, weights, offset, slope_sd, use_sqrt, bfgs, seed
):
    """The fit hands its optimum's Λ̃ to the record (``from_fit(lam=...)``); the BLUPs,
    their covariances and every other field equal, bit for bit, a record made from the
    packed estimate alone (``lam`` left out): unequal groups, variance components,
    weights, REML and ML, a column offset by 1e9, a slope variance near zero, either
    packing, Newton steps or BFGS."""
    df = make_data(
        n_groups=20, min_size=2, max_size=12, slope_sd=slope_sd, vc_sd=0.3 if vc else 0.0, seed=seed
    )
    df["x1"] = df["x1"] + offset
    kw = dict(re_formula=RE_FORMULAS[q], use_sqrt=use_sqrt, reml=reml)
    if vc:
        kw["vc_formula"] = {"sub": "0 + C(sub)"}
    if weights:
        kw["weights"] = "w"
    if bfgs:
        kw["method"] = "bfgs"
    res, args = _fit_and_its_record_arguments(df, **kw)
    assert args["lam"] is not None
    args.pop("lam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = MixedLMResults.from_fit(**args)
    got, want = res.to_state(), again.to_state()
    for name in BLUP_FIELDS:  # arrays, or ragged per component: the same bytes pickled
        assert pickle.dumps(getattr(got, name)) == pickle.dumps(getattr(want, name)), name
    np.testing.assert_array_equal(res.params, again.params)
    np.testing.assert_array_equal(res.bse, again.bse)
