"""The multiple-testing corrections of ``t_test_pairwise`` (``dmixed/results/multitest.py``,
written from the methods' definitions) give statsmodels' ``multipletests`` values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests as sm_multipletests

from dmixed.errors import SpecError
from dmixed.results.multitest import METHODS, multipletests

SPELLINGS = [s for spellings in METHODS.values() for s in spellings]


# statsmodels warns of its own log1p(-1) and division by 1 - 1
@pytest.mark.filterwarnings("ignore::RuntimeWarning:statsmodels")
@pytest.mark.parametrize("method", SPELLINGS + ["HS", "Fdr_BH"])
@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_every_method_is_statsmodels(method, alpha):
    rng = np.random.default_rng(7)
    # small p-values among large ones, ties, a 0 and a 1: every branch of the step rules
    p = np.concatenate([rng.uniform(0, 0.02, 5), rng.uniform(0, 1, 9), [0.01, 0.01, 0.0, 1.0]])
    rng.shuffle(p)
    for pvals in (p, p[:1], p[:3], np.full(4, 1e-6)):
        reject, corrected = multipletests(pvals, method=method, alpha=alpha)
        ref_reject, ref_corrected = sm_multipletests(pvals, alpha=alpha, method=method)[:2]
        np.testing.assert_array_equal(reject, ref_reject)
        np.testing.assert_allclose(corrected, ref_corrected, rtol=1e-14, atol=0)


# p-values from a few values (ties, 0 and 1, values at the Simes thresholds) or any
# in [0, 1]: every case of Hommel's closed test
P_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 0.01, 0.02, 0.025, 0.05, 0.1, 0.5]),
    st.floats(0.0, 1.0),
    st.floats(0.0, 0.05),
)


@settings(max_examples=300)
@given(p=st.lists(P_VALUES, min_size=1, max_size=50), alpha=st.sampled_from([0.05, 0.2]))
def test_hommel_is_statsmodels(p, alpha):
    reject, corrected = multipletests(p, method="hommel", alpha=alpha)
    ref_reject, ref_corrected = sm_multipletests(p, alpha=alpha, method="hommel")[:2]
    np.testing.assert_array_equal(reject, ref_reject)
    np.testing.assert_allclose(corrected, ref_corrected, rtol=1e-12, atol=0)


def simes(p):
    p = np.sort(p)
    return np.min(p.size * p / np.arange(1, p.size + 1))


@settings(max_examples=100)
@given(p=st.lists(P_VALUES, min_size=1, max_size=7))
def test_hommel_is_the_closed_test_of_simes_tests(p):
    # Hommel (1988)'s definition itself, over every intersection containing each
    # hypothesis (2^(m-1) of them): independent of statsmodels' algorithm
    p = np.asarray(p)
    m = p.size
    expected = [
        max(
            simes(p[[j for j in range(m) if j == i or mask >> j & 1]])
            for mask in range(2**m)
            if mask >> i & 1
        )
        for i in range(m)
    ]
    np.testing.assert_allclose(multipletests(p, method="ho")[1], expected, rtol=1e-12, atol=0)


def test_hommel_of_many_hypotheses_is_statsmodels():
    # m in the thousands: the O(m²) closed test, on one small p-value family among
    # uniform ones, so that many Simes terms bind
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, 1e-4, 200), rng.uniform(0, 1, 1800)])
    rng.shuffle(p)
    reject, corrected = multipletests(p, method="ho")
    ref_reject, ref_corrected = sm_multipletests(p, method="hommel")[:2]
    assert reject.any() and not reject.all()
    np.testing.assert_array_equal(reject, ref_reject)
    np.testing.assert_allclose(corrected, ref_corrected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["fdr_tsbh", "fdr_tsbky", "lfdr", "tukey", 3, None, "fdr_gbs"])
def test_a_method_not_offered_is_named(method):
    with pytest.raises(SpecError, match="method:.*not a multiple-testing correction") as err:
        multipletests([0.1, 0.2], method=method)
    # the message lists what is offered, and only that
    offered = str(err.value).split("use one of", 1)[1]
    assert "'fdr_bh'" in offered and "'hs'" in offered and "'hommel'" in offered
    assert "'fdr_gbs'" not in offered
