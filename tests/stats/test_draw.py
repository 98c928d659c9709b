"""Statistics of drawn responses (``dmixed/stats/draw.py``).

Two checks, one per part of the draw: with no residual noise (σ̃ = 0) the drawn
statistics are exactly those of the rows ``y = Xβ + Z̃b`` (computed by a data pass over
those rows, in the same column map); with only noise (β = 0, b = 0) the response's
statistics ``W'e*`` and ``e*'e*`` have the moments of ``e* ~ N(0, σ² I)``:
``E[W'e*] = 0``, ``Cov(W'e*) = σ²W'W``, ``E[e*'e*] = nσ²``, ``Var(e*'e*) = 2nσ⁴``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.engines.local import closed_form_groups, statistics_from_rows
from dmixed.results import Predictor
from dmixed.stats import GroupArrays
from dmixed.stats.draw import CentredRoots, ResponseSampler

from .._synth import make_data

MODELS = {
    # random slope, an indicator component and a numeric one (dense vc block), weighted
    "slope+vc": dict(
        re_formula="1 + x1", vc_formula={"sub": "0 + C(sub)", "num": "0 + x2"}, weights="w"
    ),
    # random intercept: the within-group sums are kept and must be drawn too
    "intercept": dict(weights="w"),
    # a slope on a column constant within each group: the within-group sums are kept
    # (kernels' rank-one forms) and must be drawn too
    "group-slope": dict(re_formula="1 + c", weights="w"),
}


def _model(name: str, n_groups: int = 25, seed: int = 3):
    # groups of 1 row: Z̃_i'Z̃_i of rank 1 with a random slope
    df = make_data(n_groups=n_groups, min_size=1, max_size=12, vc_sd=0.5, seed=seed)
    if name == "group-slope":
        df = df.assign(c=df["g"].astype("category").cat.codes % 7 - 3.0)
        return dmixed.mixedlm("y ~ x1 + x2 + c", df, groups="g", **MODELS[name])
    return dmixed.mixedlm("y ~ x1 + x2", df, groups="g", **MODELS[name])


def _arrays(model) -> GroupArrays:
    return GroupArrays.from_statistics(model.statistics())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_noise_free_draw_is_the_statistics_of_the_rows(name):
    model = _model(name)
    arrays = _arrays(model)
    rng = np.random.default_rng(0)
    p, r = arrays.glob.k_fe, arrays.layout.r
    beta_std = rng.normal(size=p)
    b_std = rng.normal(size=(len(arrays.labels), r)) * 3.0
    drawn = ResponseSampler(arrays).draw(rng, beta_std, b_std, 0.0)
    # the same response on the rows, in the model's own units
    cols = arrays.columns
    beta = cols.beta_from_std(beta_std)
    cond = np.zeros((len(arrays.labels), r, r))
    blup, _ = cols.blups_from_std(b_std, cond, arrays.layout.vc_widths)
    ncols = [len(c) for c in model.vc_column_names]
    pred = Predictor(beta, arrays.labels, blup, arrays.slot_cols, ncols, model.k_re)
    rows = replace(model.rows, endog=pred.predict(model.rows, include_random=True))
    direct = GroupArrays.from_statistics(statistics_from_rows(rows, cols, (0, 0)))
    size = np.sqrt(np.abs(np.diag(direct.glob.xyxy)))
    np.testing.assert_allclose(drawn.zxy, direct.zxy, rtol=1e-10, atol=1e-10 * size.max())
    outer = np.outer(size, size)
    assert np.max(np.abs(drawn.glob.xyxy - direct.glob.xyxy) / outer) < 1e-10
    assert (drawn.glob.within is None) == (direct.glob.within is None)
    if direct.glob.within is not None:
        wsize = np.sqrt(np.abs(np.diag(direct.glob.within)))
        # the intercept's row is zero, and that of a column constant within the groups
        # is rounding: measured on the largest
        wsize = np.where(wsize > 1e-8 * wsize.max(), wsize, wsize.max())
        err = np.abs(drawn.glob.within - direct.glob.within) / np.outer(wsize, wsize)
        assert np.max(err) < 1e-10
    np.testing.assert_array_equal(drawn.zz, arrays.zz)  # the design's statistics stay


@pytest.mark.parametrize("name", sorted(MODELS))
def test_noise_has_the_moments_of_iid_normal_rows(name):
    model = _model(name, n_groups=8)
    arrays = _arrays(model)
    sampler = ResponseSampler(arrays)
    rng = np.random.default_rng(1)
    p, g, r = arrays.glob.k_fe, len(arrays.labels), arrays.layout.r
    sigma, n_draws, n = 1.5, 4000, arrays.glob.n
    we, ee, wyy = [], [], []
    for _ in range(n_draws):
        d = sampler.draw(rng, np.zeros(p), np.zeros((g, r)), sigma)
        we.append(np.concatenate([d.zxy[:, :, p].ravel(), d.glob.xyxy[:p, p]]))
        ee.append(d.glob.xyxy[p, p])
        if d.glob.within is not None:
            wyy.append(d.glob.within[p, p])
    we, ee = np.array(we), np.array(ee)
    # W'W in the same order: blocks D_i, C_i, X'X (zero between groups)
    gram = np.zeros((g * r + p, g * r + p))
    for i in range(g):
        gram[i * r : (i + 1) * r, i * r : (i + 1) * r] = arrays.zz[i]
        gram[i * r : (i + 1) * r, g * r :] = arrays.zxy[i, :, :p]
    gram[g * r :, g * r :] = arrays.glob.xyxy[:p, :p]
    gram = np.triu(gram) + np.triu(gram, 1).T
    cov = sigma**2 * gram
    emp = we.T @ we / n_draws  # the mean is known to be 0
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n_draws)
    assert np.max(np.abs(emp - cov) / np.maximum(se, 1e-300)) < 5.5
    assert abs(ee.mean() - n * sigma**2) < 5 * np.sqrt(2 * n * sigma**4 / n_draws)
    assert abs(ee.var() / (2 * n * sigma**4) - 1) < 5 * np.sqrt(8 / n_draws)  # χ²'s 4th moment
    if wyy:  # e*'(I − P_1)e* ~ σ² χ²(n − G)
        df = n - g
        assert abs(np.mean(wyy) - df * sigma**2) < 5 * np.sqrt(2 * df * sigma**4 / n_draws)


def _lossy_model():
    """A random slope on ``t`` nearly constant (a spread of 1e-6 about ~1e3) within 6 of
    40 groups: the fit takes centred sums (every group's, about the within-group sums)."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), rng.integers(3, 9, 40))
    t = 1000.0 + 40.0 * g + np.where(g < 6, 1e-6, 1.0) * rng.normal(size=g.size)
    frame = pd.DataFrame(dict(x=rng.normal(size=g.size), t=t, g=g))
    frame["y"] = rng.normal(size=g.size) + 0.01 * t
    return dmixed.mixedlm("y ~ x + t", frame, groups="g", re_formula="1 + t")


def test_draw_of_centred_sums_is_that_of_the_rows_and_has_their_noise():
    """The centred sums of the lossy groups are drawn with the response: with no noise
    they are those of the rows ``y = Xβ + Z̃b`` (a data pass, same map), to the group's
    spread; with noise only, ``Z_c'e*`` has variance ``σ²C`` and ``e'e*/u`` ``σ²/u``
    (the spread about the mean, ~1e-12 of ``u``, is drawn, not rounded away)."""
    model = _lossy_model()
    arrays = GroupArrays.from_statistics(model.statistics(), centred=True)
    kept = arrays.centred
    lossy = np.flatnonzero(np.asarray(kept.sums.lossy, dtype=bool))
    assert kept.everyone and lossy.size == 6
    p, r, g = arrays.glob.k_fe, arrays.layout.r, len(arrays.labels)
    # their spread is below the plain sums' rounding, whose rank-one test takes them
    # as constant: the centred sums' spread keeps them off the closed-form root
    closed_form = closed_form_groups(arrays)
    np.testing.assert_array_equal(np.flatnonzero(closed_form), lossy)
    sampler = ResponseSampler(arrays, closed_form)
    assert not sampler.closed_form.any()
    rng = np.random.default_rng(0)
    beta_std, b_std = rng.normal(size=p), rng.normal(size=(g, r))
    drawn = sampler.draw(rng, beta_std, b_std, 0.0).centred.sums
    cols = arrays.columns
    blup, _ = cols.blups_from_std(b_std, np.zeros((g, r, r)), arrays.layout.vc_widths)
    pred = Predictor(cols.beta_from_std(beta_std), arrays.labels, blup, [], [], model.k_re)
    rows = replace(model.rows, endog=pred.predict(model.rows, include_random=True))
    stats = statistics_from_rows(rows, cols, (0, 0))
    direct = GroupArrays.from_statistics(stats, centred=True).centred.sums
    for name in ("mean", "d"):
        got, want = np.asarray(getattr(drawn, name))[..., lossy], getattr(direct, name)[..., lossy]
        size = np.abs(want).max(axis=-1, keepdims=True) + 1e-300
        assert np.max(np.abs(got - want) / size) < 1e-8, name
    sigma, n_draws = 1.5, 2000
    zc, mean = [], []
    for _ in range(n_draws):
        d = sampler.draw(rng, np.zeros(p), np.zeros((g, r)), sigma).centred.sums
        zc.append(np.asarray(d.d)[1, p, lossy])
        mean.append(np.asarray(d.mean)[p, lossy])
    u = np.asarray(kept.sums.u)[lossy]
    c = np.asarray(kept.sums.c)[1, 1, lossy]
    tol = 5 * np.sqrt(2 / n_draws)
    assert np.all(np.abs(np.var(zc, axis=0) / (sigma**2 * c) - 1) < tol)
    assert np.all(np.abs(np.var(mean, axis=0) / (sigma**2 / u) - 1) < tol)


def test_centred_roots_are_named_by_what_they_hold():
    """The roots a sampler takes from the centred sums (:class:`CentredRoots`) name
    their groups' positions, which of them take the centred root, and the arrays of
    each, with the shapes the draw reads."""
    arrays = GroupArrays.from_statistics(_lossy_model().statistics(), centred=True)
    kept = arrays.centred
    sampler = ResponseSampler(arrays, closed_form_groups(arrays))
    roots = sampler.centred
    assert isinstance(roots, CentredRoots) and roots._fields == (
        "positions",
        "lossy",
        "root",
        "c",
        "d_x",
    )
    n_kept, (r, p) = kept.positions.size, (arrays.layout.r, arrays.glob.k_fe)
    np.testing.assert_array_equal(roots.positions, kept.positions)
    np.testing.assert_array_equal(roots.lossy, np.flatnonzero(np.asarray(kept.sums.lossy)))
    assert roots.root.shape == (roots.lossy.size, r, r)
    assert roots.c.shape == (n_kept, r, r) and roots.d_x.shape == (n_kept, r, p)


def _raw(arrays: GroupArrays) -> GroupArrays:
    cols = arrays.columns
    return arrays.converted_to(
        replace(
            cols.identity(cols.k_fe, cols.k_re),
            x_intercept=cols.x_intercept,
            z_intercept=cols.z_intercept,
            weight_scale=cols.weight_scale,
        )
    )


@pytest.mark.parametrize("name", ["group-slope", "intercept"])
def test_a_draw_is_the_statistics_of_rows_that_have_them(name):
    """Each draw (noise and random effects) is the statistics of some response on the
    rows: one is recovered (``W'y = v`` solved in the range of ``W = [Z̃, X]``, the
    drawn ``y'y``'s remaining square orthogonal to it) and all its sums, the
    within-group ones included, equal the drawn ones.  A random slope on a column
    constant within the groups (rank-one ``Z̃_i'Z̃_i``, taken in closed form from the
    plain sums, groups of one row among them) draws with ``√u z̄ z_e``."""
    model = _model(name)
    arrays = _arrays(model)
    sampler = ResponseSampler(arrays, closed_form_groups(arrays))
    assert sampler.closed_form.any() == (name == "group-slope")
    rows = model.rows
    sqrt_w = np.sqrt(rows.weights / arrays.columns.weight_scale)
    x, z = rows.exog * sqrt_w[:, None], rows.exog_re * sqrt_w[:, None]
    codes = pd.Index(arrays.labels).get_indexer(rows.groups)
    n_groups, r, p = len(arrays.labels), arrays.layout.r, arrays.glob.k_fe
    w = np.zeros((len(codes), n_groups * r + p))
    w[np.arange(len(codes))[:, None], codes[:, None] * r + np.arange(r)] = z
    w[:, n_groups * r :] = x
    q, _ = np.linalg.qr(w)
    rng = np.random.default_rng(1)
    for _ in range(5):
        b = rng.normal(size=(n_groups, r))
        drawn = _raw(sampler.draw(rng, rng.normal(size=p), b, 1.3))
        v = np.concatenate([drawn.zxy[:, :, p].ravel(), drawn.glob.xyxy[:p, p]])
        y0 = np.linalg.lstsq(w.T, v, rcond=None)[0]
        assert np.abs(w.T @ y0 - v).max() < 1e-9 * np.abs(v).max()  # v in W's range
        rest = drawn.glob.xyxy[p, p] - y0 @ y0
        assert rest > 0  # y'y at least its part in W's range
        other = rng.normal(size=len(codes))
        other -= q @ (q.T @ other)
        y = (y0 + other * np.sqrt(rest / (other @ other))) / sqrt_w
        stats = statistics_from_rows(replace(rows, endog=y), arrays.columns, (0, 0))
        direct = _raw(GroupArrays.from_statistics(stats))
        size = np.abs(drawn.glob.xyxy).max()
        np.testing.assert_allclose(drawn.zxy, direct.zxy, atol=1e-10 * size)
        np.testing.assert_allclose(drawn.glob.xyxy, direct.glob.xyxy, atol=1e-10 * size)
        assert (drawn.glob.within is None) == (direct.glob.within is None)
        if direct.glob.within is not None:
            np.testing.assert_allclose(drawn.glob.within, direct.glob.within, atol=1e-10 * size)


def test_only_lossy_groups_leave_the_closed_form_root_for_their_centred_spread():
    """An in-process fit with one lossy group keeps every group's centred sums; a Dask
    fit of the same rows keeps the lossy group's only.  Groups marked for the closed
    form keep it unless lossy with a spread in their centred sums: a group that is not
    lossy keeps it whatever its centred sums (which a Dask fit does not hold), so that
    one rule on the sums both engines hold picks the root.  The branch before this rule
    took every group with a centred spread off the closed form, in process only."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(31), 10)
    x1 = rng.normal(size=g.size)
    x1[g == 0] = 5 + 1e-3 * rng.normal(size=10)
    x1[g == 1] = 3 + 1e-6 * rng.normal(size=10)  # lossy
    frame = pd.DataFrame({"g": g, "x1": x1, "y": x1 + rng.normal(size=g.size)})
    model = dmixed.mixedlm("y ~ x1", frame, groups="g", re_formula="1 + x1")
    arrays = GroupArrays.from_statistics(model.statistics(), centred=True)
    kept = arrays.centred
    assert kept is not None and kept.everyone
    np.testing.assert_array_equal(np.flatnonzero(kept.sums.lossy), [1])
    marked = np.zeros(31, dtype=bool)
    marked[[0, 1]] = True
    sampler = ResponseSampler(arrays, marked)
    np.testing.assert_array_equal(np.flatnonzero(sampler.closed_form), [0])
