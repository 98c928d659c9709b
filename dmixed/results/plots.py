"""Plots of fitted results: a caterpillar plot of the BLUPs and residuals against fitted
values (matplotlib, from the optional ``plot`` extra: ``pip install dmixed[plot]``).

Both draw on a given matplotlib ``Axes`` (or a new figure) and return the ``Axes``, as
statsmodels' graphics functions do.  They read only the results: the BLUPs and their
conditional variances (saved with the results), and for the residual plot the fitted
values and residuals of the fit's rows, so a Dask fit is sampled, not collected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import is_dask
from ..errors import SpecError
from ..fit.options import check_integer
from ..inference import check_alpha

__all__ = ["MAX_CATERPILLAR_GROUPS", "MAX_RESIDUAL_POINTS", "caterpillar", "residual_plot"]

#: Groups drawn by :func:`caterpillar` at most (evenly spaced by rank beyond that).
MAX_CATERPILLAR_GROUPS = 1000
#: Points drawn by :func:`residual_plot` at most (a seeded random sample beyond that).
MAX_RESIDUAL_POINTS = 100_000


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install 'dmixed[plot]' (or matplotlib)"
        ) from None
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    _, new = _pyplot().subplots()
    return new


def caterpillar(results, term=None, alpha: float = 0.05, ax=None, max_groups=None):
    """Caterpillar plot: each group's BLUP of one random effect with its interval, groups
    sorted by the BLUP (lme4's ``dotplot(ranef(fit, condVar = TRUE))``, MixedModels.jl's
    ``caterpillar``).

    The interval is ``b̂_i ± z_{1−α/2} · sqrt(v_i)``, with ``v_i`` the conditional
    variance of the effect given the data at the estimates (the diagonal of
    :attr:`~dmixed.MixedLMResults.random_effects_cov`, ``σ̂² Λ K_i⁻¹ Λ'``); it ignores
    the uncertainty of β̂ and of the covariance parameters, as lme4's ``condVar`` does.

    Parameters
    ----------
    results : MixedLMResults
    term : str or int, optional
        The random effect (a name of ``exog_re_names`` or its position); default the
        first.
    alpha : float
        1 − coverage of the intervals, in (0, 1).
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    max_groups : int, optional
        Groups drawn at most, a positive integer (a numpy integer or 0-d array of one
        is read as its value) (default :data:`MAX_CATERPILLAR_GROUPS`): beyond that,
        groups evenly spaced by rank are drawn and the title says how many.

    Returns
    -------
    matplotlib Axes
        The BLUPs on the x axis (one ``errorbar`` line), groups on the y axis in
        increasing order of the BLUP.

    Raises
    ------
    SpecError
        A model without ``exog_re`` effects; an unknown ``term``; ``alpha`` outside
        (0, 1); ``max_groups`` not a positive integer (``2.5``, ``7.0``, ``0``).
    ImportError
        matplotlib is not installed.
    """
    from scipy.stats import norm

    names = list(results.names.exog_re_names)
    if not names:
        raise SpecError("the model has no random effects of exog_re to plot")
    col = _term_position(term, names)
    alpha = check_alpha(alpha)
    blup = results.random_effects_frame().iloc[:, col]
    var = results.random_effects_var().iloc[:, col].to_numpy()
    order = np.argsort(blup.to_numpy(), kind="stable")
    limit = MAX_CATERPILLAR_GROUPS if max_groups is None else max_groups
    shown = _spread(order, check_integer(limit, "max_groups", 1))
    half = norm.ppf(1 - alpha / 2) * np.sqrt(np.maximum(var[shown], 0.0))
    ax = _axes(ax)
    y = np.arange(len(shown))
    ax.errorbar(blup.to_numpy()[shown], y, xerr=half, fmt="o", ms=3, lw=1, capsize=0)
    ax.axvline(0.0, color="0.6", lw=0.8)
    if len(shown) <= 30:  # beyond that the labels overlap: ranks only
        ax.set_yticks(y, [str(v) for v in blup.index[shown]])
    ax.set_ylabel(results.names.group_name)
    ax.set_xlabel(f"{names[col]} (BLUP, {100 * (1 - alpha):g}% interval)")
    title = f"Random effects: {names[col]}"
    if len(shown) < len(order):
        title += f" ({len(shown)} of {len(order)} groups, evenly spaced by rank)"
    ax.set_title(title)
    return ax


def _term_position(term, names: list[str]) -> int:
    if term is None:
        return 0
    if isinstance(term, (int, np.integer)) and not isinstance(term, bool):
        if 0 <= term < len(names):
            return int(term)
    elif term in names:
        return names.index(term)
    raise SpecError(f"term must be one of {names} or a position below {len(names)}, got {term!r}")


def _spread(order: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` (>= 1) entries of ``order``, evenly spaced, first and last kept."""
    if len(order) <= limit:
        return order
    return order[np.unique(np.linspace(0, len(order) - 1, limit).round().astype(np.int64))]


def residual_plot(results, ax=None, max_points=None, seed: int = 0):
    """Residuals against fitted values (lme4's ``plot(fit)``), with a zero line.

    Fitted values include the BLUPs (:attr:`~dmixed.MixedLMResults.fittedvalues`).
    Beyond ``max_points`` rows a seeded random sample of rows is drawn; for a Dask fit
    the sample is taken partition by partition, so the rows are never collected.

    Parameters
    ----------
    results : MixedLMResults
        A fit of this session (loaded results have no rows).
    ax : matplotlib Axes, optional
    max_points : int, optional
        Points drawn at most, a positive integer (default :data:`MAX_RESIDUAL_POINTS`).
    seed : int
        Seed of the sample.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    SpecError
        Loaded results (no fitted rows); ``max_points`` not a positive integer.
    ImportError
        matplotlib is not installed.
    """
    limit = check_integer(
        MAX_RESIDUAL_POINTS if max_points is None else max_points, "max_points", 1
    )
    fitted, resid = _fitted_and_resid(results, limit, seed)
    ax = _axes(ax)
    ax.scatter(fitted, resid, s=4, alpha=0.5, linewidths=0)
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_xlabel("fitted values (with BLUPs)")
    ax.set_ylabel("residuals")
    title = "Residuals vs fitted"
    if len(fitted) < results.nobs:
        title += f" ({len(fitted)} of {results.nobs} rows, random sample)"
    ax.set_title(title)
    return ax


def _fitted_and_resid(results, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if results.fitted_model is None:
        raise SpecError("a residual plot needs the fitted rows; loaded results have none")
    fitted, resid = results.fittedvalues, results.resid
    if is_dask(fitted):
        import dask.dataframe as dd

        both = dd.concat([fitted.rename("f"), resid.rename("r")], axis=1)
        frac = min(1.0, limit / max(results.nobs, 1))
        got = both.sample(frac=frac, random_state=seed).compute() if frac < 1 else both.compute()
        got = got.iloc[:limit]
        return got["f"].to_numpy(), got["r"].to_numpy()
    fitted = np.asarray(pd.Series(fitted).to_numpy(), dtype=np.float64)
    resid = np.asarray(pd.Series(resid).to_numpy(), dtype=np.float64)
    if len(fitted) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(len(fitted), limit, replace=False))
        return fitted[pick], resid[pick]
    return fitted, resid
