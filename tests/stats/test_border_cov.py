"""Unpadded conditional covariances of crossed components agree with the padded ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.local import LocalEngine
from dmixed.engines.vc_crossed import CrossedVCEngine
from dmixed.stats.blup_cov import RaggedBlup, cov_block, cov_diagonal
from dmixed.stats.border_cov import BorderCov
from tests.engines.test_vc_crossed import CROSSED, FORMULA, crossed_data
from tests.kernels.test_vc_border import close


def _crossed(re_formula, seed: int):
    """A crossed engine, its dense twin, a factor Λ of each width and ``w``."""
    kw = {} if re_formula is None else {"re_formula": re_formula}
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=crossed_data(seed=seed), groups="g", vc_formula=CROSSED, **kw
    )
    stats = model.statistics()
    assert isinstance(stats.engine, CrossedVCEngine)
    rng = np.random.default_rng(seed)
    packed = rng.uniform(0.3, 1.5, stats.layout.n_params)
    lam, lam1 = stats.layout.lam(packed, True), stats.fit_layout.lam(packed, True)
    w = rng.standard_normal(len(model.exog_names) + 1)
    return stats, LocalEngine(*stats.engine.gather()), lam, lam1, w


@pytest.mark.parametrize(("re_formula", "seed"), [("1", 1), ("1 + x", 2), (None, 3)])
def test_border_covariances_read_as_the_padded_ones(re_formula, seed):
    stats, dense, lam, lam1, w = _crossed(re_formula, seed)
    blup, cov = stats.engine.random_effects(lam1, w)
    ref_blup, ref = dense.random_effects(lam, w)
    assert isinstance(cov, BorderCov) and cov.shape == ref.shape
    assert isinstance(blup, RaggedBlup) and blup.shape == ref_blup.shape
    close(blup, ref_blup)
    close(cov.dense(), ref)
    q, r = cov.q, ref.shape[1]
    close(cov_diagonal(cov, q), cov_diagonal(ref, q))
    rng = np.random.default_rng(seed)
    for gi in range(ref.shape[0]):
        pos = np.sort(rng.choice(r, size=min(r, 6), replace=False))  # used slots and not
        close(cov_block(cov, gi, pos), cov_block(ref, gi, pos))
    std = stats.columns
    widths = stats.layout.vc_widths
    got_b, got_c = std.blups_from_std(blup, cov * 2.5, widths)
    want_b, want_c = std.blups_from_std(ref_blup, ref * 2.5, widths)
    close(got_b, want_b)
    close(np.asarray(got_c), want_c)
    inv = np.linalg.inv(rng.standard_normal((q, q)) + 3 * np.eye(q))
    scales = rng.uniform(0.5, 2.0, r - q)
    t = np.zeros((r, r))
    t[:q, :q] = inv
    t[q:, q:] = np.diag(1 / scales)
    close(cov.transformed(inv, scales).dense(), t @ ref @ t.T)


def test_results_read_the_border_covariances(tmp_path):
    """random_effects_cov and random_effects_var from the unpadded form equal the padded
    array's entries, and saved results (padded on disk) read back the same."""
    data = crossed_data(seed=5)
    model = dmixed.MixedLM.from_formula(
        FORMULA, data=data, groups="g", re_formula="1", vc_formula=CROSSED
    )
    res = model.fit()
    cov = res.to_state().blup_cov
    assert isinstance(cov, BorderCov)
    padded = dmixed.MixedLMResults.from_state(
        dataclasses.replace(res.to_state(), blup_cov=np.asarray(cov))
    )
    for group in res.group_labels[:5]:
        got, want = res.random_effects_cov[group], padded.random_effects_cov[group]
        assert list(got.index) == list(want.index) and len(got) > 2
        close(got.to_numpy(), want.to_numpy(), rtol=1e-14)
    close(res.random_effects_var().to_numpy(), padded.random_effects_var().to_numpy())
    # the components' variances (vc=True) with no loop over groups: as the padded array's
    got, want = res.random_effects_var(vc=True), padded.random_effects_var(vc=True)
    pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
    close(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-14)
    assert len(got) == len(res.random_effects_frame(vc=True)) and (got["value"] > 0).all()
    res.save(tmp_path / "out")
    back = dmixed.load(tmp_path / "out")
    group = res.group_labels[3]
    close(back.random_effects_cov[group], res.random_effects_cov[group], rtol=1e-14)
    got = res.get_prediction(data.head(30)).summary_frame()
    want = padded.get_prediction(data.head(30)).summary_frame()
    close(got.to_numpy(), want.to_numpy(), rtol=1e-10)
    assert np.all(np.isfinite(got.to_numpy()))


def test_blocks_of_groups_concatenate_in_sorted_order():
    """Crossed statistics and covariances of blocks of groups in any order (one block
    empty) put together: those of all groups, bucket by bucket."""
    stats, _, _, lam1, w = _crossed("1", 4)
    crossed = stats.engine.crossed
    zz, zxy = crossed.dense()
    perm = np.random.default_rng(0).permutation(zz.shape[0])
    cuts = np.split(perm, [4, 4, 9])
    make = [
        type(crossed).from_dense(
            zz[c], zxy[c], crossed.q, crossed.slot_component, crossed.diag_comps
        )
        for c in cuts
    ]
    got = type(crossed).concatenate(make, np.concatenate(cuts))
    assert [b.a.shape[1] for b in got.buckets] == [b.a.shape[1] for b in crossed.buckets]
    for mine, want in zip(got.buckets, crossed.buckets, strict=True):
        for field in dataclasses.fields(want):
            if field.init:
                np.testing.assert_array_equal(
                    getattr(mine, field.name), getattr(want, field.name), err_msg=field.name
                )
    covs = [part.random_effects(lam1, w)[1] for part in make if part.n_groups]
    joined = BorderCov.concatenate(covs, np.concatenate(cuts))  # (the empty block: none)
    np.testing.assert_allclose(
        joined.dense(), crossed.random_effects(lam1, w)[1].dense(), rtol=1e-12, atol=1e-15
    )
