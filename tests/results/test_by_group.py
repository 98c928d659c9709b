"""statsmodels' per-group dicts, made lazily: the same as the dict they replace."""

from __future__ import annotations

import copy
import pickle
import weakref

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.results.by_group import ByGroup

from .._collector import collector_off
from .._synth import make_data


@pytest.fixture(scope="module")
def fit():
    df = make_data(n_groups=25, vc_sd=0.5, seed=8)
    df["g"] = "s" + df.g.astype(str)
    return dmixed.mixedlm(
        "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}
    ).fit()


def _eager(fit) -> dict:
    """The dict as built before: one Series per group, in the fit's order."""
    frame = fit.random_effects_frame()
    vc = fit.random_effects_frame(vc=True)
    out = {}
    for label in fit.group_labels:
        s = frame.loc[label]
        extra = vc[vc.group == label]
        names = [f"{c}[{col}]" for c, col in zip(extra.component, extra.column, strict=True)]
        out[label] = pd.concat([s, pd.Series(extra.value.to_numpy(), index=names)])
    return out


def test_random_effects_is_the_statsmodels_dict(fit):
    lazy, eager = fit.random_effects, _eager(fit)
    assert isinstance(lazy, dict) and len(lazy) == 25
    assert list(lazy) == list(eager) == list(fit.group_labels)
    for key in eager:
        np.testing.assert_allclose(lazy[key].to_numpy(), eager[key].to_numpy(), rtol=1e-15)
        assert list(lazy[key].index) == list(eager[key].index)
    assert lazy == {k: lazy[k] for k in eager}
    pd.testing.assert_frame_equal(
        pd.DataFrame(lazy), pd.DataFrame({k: lazy[k] for k in lazy}), check_exact=True
    )
    pd.testing.assert_frame_equal(
        pd.DataFrame.from_dict(lazy, orient="index"),
        pd.DataFrame.from_dict(dict(lazy.items()), orient="index"),
    )
    assert "s3" in lazy and "nope" not in lazy and lazy.get("nope") is None
    with pytest.raises(KeyError):
        lazy["nope"]
    with pytest.raises(TypeError, match="read-only"):
        lazy["s3"] = 1


def test_random_effects_cov_is_made_per_group(fit):
    cov = fit.random_effects_cov
    first = fit.group_labels[0]
    got = cov[first]
    names = list(fit.random_effects[first].index)
    assert list(got.index) == names and list(got.columns) == names
    np.testing.assert_allclose(np.diag(got)[:2], fit.random_effects_var().loc[first])


def test_pickles_and_copies_as_a_plain_dict(fit):
    back = pickle.loads(pickle.dumps(fit.random_effects))
    assert type(back) is dict and list(back) == list(fit.group_labels)
    assert type(copy.copy(fit.random_effects)) is dict
    # results that looked the dicts up still pickle (the lazy dicts are remade)
    again = pickle.loads(pickle.dumps(fit))
    assert again.random_effects == fit.random_effects


def test_numbers_as_keys_find_their_group():
    lazy = ByGroup(np.array([3, 5, 7]), lambda i: i * 10)
    assert lazy[5] == 10 and lazy[np.int64(7)] == 20 and lazy[5.0] == 10
    assert list(lazy.values()) == [0, 10, 20] and len(lazy) == 3
    assert repr(lazy) == "<3 groups: {np.int64(3): ..., np.int64(5): ..., np.int64(7): ...}>"


def test_results_whose_dicts_were_read_go_with_their_last_reference():
    """Results whose ``random_effects`` and ``random_effects_cov`` were read (cached,
    with their lookups) go, and their model with them, with the last reference: the
    lookups once read the results themselves, a reference cycle that kept the model and
    its statistics (futures on a cluster) until Python's cyclic garbage collector ran.
    The dicts outlive the results."""
    df = make_data(n_groups=12, vc_sd=0.5, seed=3)
    with collector_off():
        res = dmixed.mixedlm(
            "y ~ x1", df, groups="g", re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)"}
        ).fit()
        means, covs = res.random_effects, res.random_effects_cov
        assert len(means[0]) and len(covs[0])  # looked up: cached in the dicts
        frame = res.random_effects_frame()
        gone, model_gone = weakref.ref(res), weakref.ref(res.model)
        del res
        assert gone() is None and model_gone() is None
    # looked up after the results are gone
    np.testing.assert_array_equal(means[1].to_numpy()[: frame.shape[1]], frame.loc[1].to_numpy())
    assert covs[1].shape == (len(means[1]), len(means[1]))
