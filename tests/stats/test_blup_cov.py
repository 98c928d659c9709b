"""Ragged conditional covariances of the BLUPs agree with the padded ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.local import LocalEngine
from dmixed.engines.vc_local import StructuredVCEngine
from dmixed.stats.blup_cov import RaggedBlup, RaggedCov, cov_block, cov_diagonal
from tests._synth import make_data

FORMULA = "y ~ x1 + x2"


def _structured(re_formula: str | None, seed: int):
    """A structured engine, its dense twin, a factor Λ of each width and ``w``
    (``re_formula=None``: statsmodels' component without a random intercept, q = 0)."""
    data = make_data(n_groups=15, vc_sd=0.6, n_sub=6, max_size=10, seed=seed)
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=data, groups="g", re_formula=re_formula, vc_formula={"s": "0 + C(sub)"}
    )
    stats = model.statistics()
    assert isinstance(stats.engine, StructuredVCEngine)
    rng = np.random.default_rng(seed)
    packed = rng.uniform(0.3, 1.5, stats.layout.n_params)
    lam = stats.layout.lam(packed, True)
    lam1 = stats.fit_layout.lam(packed, True)
    w = rng.standard_normal(len(model.exog_names) + 1)
    return stats, LocalEngine(*stats.engine.gather()), lam, lam1, w


def _close(a, b, rtol: float = 1e-10) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.abs(a - b).max(initial=0.0) <= rtol * max(np.abs(b).max(initial=0.0), 1e-300)


@pytest.mark.parametrize(("re_formula", "seed"), [("1", 1), ("1 + x1", 2), (None, 3)])
def test_ragged_covariances_read_as_the_padded_ones(re_formula, seed):
    stats, dense, lam, lam1, w = _structured(re_formula, seed)
    blup, cov = stats.engine.random_effects(lam1, w)
    ref_blup, ref = dense.random_effects(lam, w)
    assert isinstance(cov, RaggedCov) and cov.shape == ref.shape
    assert isinstance(blup, RaggedBlup) and blup.shape == ref_blup.shape
    _close(blup, ref_blup)
    _close(cov.dense(), ref)
    q, r = cov.q, ref.shape[1]
    _close(cov_diagonal(cov, q), cov_diagonal(ref, q))
    _close(cov.slot_variances(), ref[cov.group, cov.pos, cov.pos])
    rng = np.random.default_rng(seed)
    for gi in range(ref.shape[0]):
        pos = np.sort(rng.choice(r, size=min(r, 5), replace=False))  # used slots and not
        _close(cov_block(cov, gi, pos), cov_block(ref, gi, pos))
    # the map to the data's columns and the scale, as on the padded array
    std = stats.columns
    widths = stats.layout.vc_widths
    got_b, got_c = std.blups_from_std(blup, cov * 2.5, widths)
    want_b, want_c = std.blups_from_std(ref_blup, ref * 2.5, widths)
    _close(got_b, want_b)
    _close(np.asarray(got_c), want_c)
    inv = np.linalg.inv(rng.standard_normal((q, q)) + 3 * np.eye(q))
    scales = rng.uniform(0.5, 2.0, r - q)
    t = np.zeros((r, r))
    t[:q, :q] = inv
    t[q:, q:] = np.diag(1 / scales)
    _close(cov.transformed(inv, scales).dense(), t @ ref @ t.T)


def test_ragged_blups_index_as_the_padded_array():
    """Every way the results and the predictions index the BLUPs (numpy's rules)."""
    stats, dense, lam, lam1, w = _structured("1 + x1", 5)
    blup, _ = stats.engine.random_effects(lam1, w)
    ref = np.asarray(blup)  # the padded array, the dense kernel's to 1e-10
    _close(ref, dense.random_effects(lam, w)[0])
    g, r = ref.shape
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, g, 30), rng.integers(0, r, 30)
    keys = [
        (slice(None), slice(0, 2)),  # the exog_re block
        (slice(None), slice(None)),
        (slice(None), 4),
        (3, slice(None)),
        (3, np.array([0, 2, 5, r - 1])),
        (rows, slice(0, 1)),
        (rows, cols),  # elementwise
        (rows[:5], slice(2, None)),
        (slice(2, 9), np.array([1, 3])),
    ]
    for key in keys:
        got = blup[key]
        assert np.shape(got) == np.shape(ref[key]), key
        _close(got, ref[key], rtol=0)


def test_concatenated_blocks_are_the_whole_in_sorted_order():
    stats, _, _, lam1, w = _structured("1 + x1", 4)
    zz, zxy = stats.engine.gather()
    whole_b, whole = stats.engine.random_effects(lam1, w)
    perm = np.random.default_rng(0).permutation(zz.shape[0])
    cuts = np.split(perm, [4, 4, 11])  # one empty block
    parts = [
        StructuredVCEngine.from_dense(zz[c], zxy[c], stats.layout).random_effects(lam1, w)
        for c in cuts
    ]
    got = RaggedCov.concatenate([c for _, c in parts], np.concatenate(cuts))
    _close(got.dense(), whole.dense(), rtol=0)
    got_b = RaggedBlup.concatenate([b for b, _ in parts], np.concatenate(cuts))
    _close(got_b, whole_b, rtol=0)


def test_results_read_the_ragged_covariances(tmp_path):
    """random_effects_cov and random_effects_var from the ragged form equal the padded
    array's entries, and saved results (padded on disk) read back the same."""
    data = make_data(n_groups=20, vc_sd=0.7, n_sub=5, seed=4)
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=data, groups="g", re_formula="1 + x1", vc_formula={"s": "0 + C(sub)"}
    )
    res = model.fit()
    cov = res.to_state().blup_cov
    assert isinstance(cov, RaggedCov)
    padded = dmixed.MixedLMResults.from_state(
        dataclasses.replace(res.to_state(), blup_cov=np.asarray(cov))
    )
    for group in res.group_labels[:5]:
        got, want = res.random_effects_cov[group], padded.random_effects_cov[group]
        assert list(got.index) == list(want.index) and len(got) > 2
        _close(got.to_numpy(), want.to_numpy(), rtol=1e-14)
    _close(res.random_effects_var().to_numpy(), padded.random_effects_var().to_numpy())
    # the components' variances (vc=True) with no loop over groups: as the padded array's
    got, want = res.random_effects_var(vc=True), padded.random_effects_var(vc=True)
    pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
    _close(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-14)
    assert len(got) == len(res.random_effects_frame(vc=True)) and (got["value"] > 0).all()
    res.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    group = res.group_labels[3]
    _close(back.random_effects_cov[group], res.random_effects_cov[group], rtol=1e-14)
