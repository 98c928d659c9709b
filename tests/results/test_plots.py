"""Plots of results, rendered to PNG with matplotlib's Agg backend."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import dmixed
from dmixed.errors import SpecError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 10)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=400)})
    slope = 0.5 * rng.normal(size=40)[g]
    df["y"] = 1 + df.x + rng.normal(size=40)[g] + slope * df.x + rng.normal(size=400)
    return dmixed.mixedlm("y ~ x", df, groups="g", re_formula="~x").fit(), df


def _saved(ax, path) -> bytes:
    ax.figure.savefig(path)
    plt.close(ax.figure)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    return data


def test_random_effects_var_is_the_cov_diagonal(fit):
    res, _ = fit
    var = res.random_effects_var()
    assert list(var.columns) == list(res.names.exog_re_names)
    for label in (0, 17, 39):
        np.testing.assert_allclose(var.loc[label], np.diag(res.random_effects_cov[label]))


@pytest.mark.parametrize("term, col", [(None, 0), ("x", 1), (1, 1)])
def test_caterpillar_draws_sorted_blups_with_intervals(fit, tmp_path, term, col):
    res, _ = fit
    ax = res.plot_random_effects(term, alpha=0.1)
    blup = res.random_effects_frame().iloc[:, col].to_numpy()
    order = np.argsort(blup, kind="stable")
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), blup[order])
    np.testing.assert_array_equal(line.get_ydata(), np.arange(40))
    # the interval half-widths: z_{0.95} times the conditional SDs
    segments = ax.collections[0].get_segments()
    half = np.array([(s[1, 0] - s[0, 0]) / 2 for s in segments])
    sd = np.sqrt(res.random_effects_var().iloc[:, col].to_numpy()[order])
    np.testing.assert_allclose(half, norm.ppf(0.95) * sd, rtol=1e-12)
    _saved(ax, tmp_path / "cat.png")


def test_caterpillar_of_many_groups_draws_a_spread(fit):
    res, _ = fit
    ax = res.plot_random_effects(max_groups=7)
    xs = ax.lines[0].get_xdata()
    blup = np.sort(res.random_effects_frame().iloc[:, 0].to_numpy())
    assert len(xs) == 7 and xs[0] == blup[0] and xs[-1] == blup[-1]
    assert "7 of 40 groups" in ax.get_title()
    plt.close(ax.figure)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"term": "z"}, "term must be one of"),
        ({"term": 2}, "term must be one of"),
        ({"alpha": 1.5}, "alpha must be a number in"),
        ({"max_groups": 0}, "max_groups must be"),
        ({"max_groups": -3}, "max_groups must be a positive integer"),
        ({"max_groups": 2.5}, "max_groups must be a positive integer"),
        ({"max_groups": 7.0}, "max_groups must be a positive integer"),
        ({"max_groups": "7"}, "max_groups must be a positive integer"),
        ({"max_groups": True}, "max_groups must be a positive integer"),
    ],
)
def test_caterpillar_refuses_bad_arguments(fit, kwargs, match):
    with pytest.raises(SpecError, match=match):
        fit[0].plot_random_effects(**kwargs)


@pytest.mark.parametrize("count", [np.int32(7), np.array(7)])
def test_caterpillar_takes_numpy_counts(fit, count):
    ax = fit[0].plot_random_effects(max_groups=count)
    assert len(ax.lines[0].get_xdata()) == 7
    plt.close(ax.figure)


@pytest.mark.parametrize("count", [0, 2.5, 50.0, "50"])
def test_residual_plot_refuses_a_count_that_is_not_a_positive_integer(fit, count):
    with pytest.raises(SpecError, match="max_points must be a positive integer"):
        fit[0].plot_residuals(max_points=count)


def test_residual_plot_draws_fitted_and_resid(fit, tmp_path):
    res, _ = fit
    ax = res.plot_residuals()
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], res.fittedvalues)
    np.testing.assert_allclose(points[:, 1], res.resid)
    _saved(ax, tmp_path / "resid.png")
    sample = res.plot_residuals(max_points=50, seed=3)
    assert len(sample.collections[0].get_offsets()) == 50
    assert "50 of 400 rows" in sample.get_title()
    plt.close(sample.figure)


def test_residual_plot_of_a_dask_fit_samples_the_partitions(fit, tmp_path):
    res, df = fit
    ddf = dd.from_pandas(df, npartitions=4)
    with dask.config.set(scheduler="sync"):
        remote = dmixed.mixedlm("y ~ x", ddf, groups="g", re_formula="~x").fit()
        ax = remote.plot_residuals(max_points=120, seed=1)
    points = ax.collections[0].get_offsets()
    assert 0 < len(points) <= 120
    # every point drawn is a (fitted, resid) pair of the in-process fit
    pairs = np.column_stack([res.fittedvalues, res.resid])
    gap = np.abs(points[:, None, :] - pairs[None, :, :]).max(axis=2).min(axis=1)
    assert gap.max() < 1e-7
    _saved(ax, tmp_path / "dask.png")


def test_residual_plot_needs_the_rows(fit, tmp_path):
    res, _ = fit
    res.save(tmp_path / "r")
    with pytest.raises(SpecError, match="loaded results have none"):
        dmixed.load(tmp_path / "r").plot_residuals()
