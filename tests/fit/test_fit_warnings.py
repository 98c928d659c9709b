"""The warnings of a fit's outcome: the boundary warning names what lies on it."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.errors import BoundaryWarning, SingularHessianWarning
from dmixed.fit.fit_warnings import relative_move, singular_psi_words, within_rounding


def test_a_singular_psi_names_its_block_and_the_pair_at_one():
    """A rank-deficient Ψ with no variance at zero (a correlation of -1) said only
    "the MLE is on the boundary"; the warning now names the block and the pair."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 10)
    df = pd.DataFrame({"x_1": rng.normal(size=100), "g": g})
    df["y"] = df.x_1 + rng.normal(size=10)[g] + rng.normal(size=100)
    model = dmixed.mixedlm("y ~ x_1", df, groups="g", re_formula="1 + x_1")
    with (
        pytest.warns(BoundaryWarning) as got,
        pytest.warns(SingularHessianWarning),
    ):
        res = model.fit()
    corr = res.cov_re.iloc[0, 1] / np.sqrt(res.cov_re.iloc[0, 0] * res.cov_re.iloc[1, 1])
    assert corr == pytest.approx(-1, abs=1e-4)
    (message,) = [str(w.message) for w in got if w.category is BoundaryWarning]
    assert message == (
        "the MLE is on the boundary of the parameter space (singular Psi of the random "
        "effects g, x_1: rank 1 of 2; correlation near ±1: g and x_1 (-1.0000))"
    )


def test_a_zero_variance_alone_is_named_as_before():
    """A zero variance is all of Ψ's deficiency: the warning names it only."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 5)
    df = pd.DataFrame({"x": rng.normal(size=100), "g": g})
    df["y"] = df.x + rng.normal(size=100)  # no group effect: its variance goes to zero
    with pytest.warns(BoundaryWarning) as got:
        dmixed.mixedlm("y ~ x", df, groups="g").fit()
    messages = [str(w.message) for w in got if w.category is BoundaryWarning]
    assert messages == ["the MLE is on the boundary of the parameter space (zero variance: g)"]


def test_a_singular_pair_at_a_moderate_correlation_is_not_said_near_one():
    """Variances of very different sizes make a 2×2 block singular by the fit's rule at
    a correlation of 0.7: it was worded "correlation near ±1"."""
    c = 0.7 * np.sqrt(1e6 * 1.5e-8)
    words = singular_psi_words(np.array([[1e6, c], [c, 1.5e-8]]), 1e-8, ["a", "b"], set())
    assert (
        words
        == "singular Psi of the random effects a, b: rank 1 of 2; singular pair: a and b (+0.7000)"
    )
    at_one = singular_psi_words(np.array([[1.0, -1.0], [-1.0, 1.0]]), 1e-8, ["a", "b"], set())
    assert at_one.endswith("; correlation near ±1: a and b (-1.0000)")


# --------------------------------------------------------------------------------------
# a plain group's own rounding (groups near singular within them, uncentred sums)
# --------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**16),
    offset=st.sampled_from([0.0, 1e3, 1.7e9]),
    weighted=st.booleans(),
)
def test_ordinary_groups_are_not_charged_with_plain_rounding(seed, offset, weighted):
    """Random slopes of ordinary spread within groups (whatever the column's offset or
    the prior weights) are far above ``PLAIN_CHARGED_DETERMINANT``: the precision check
    charges them nothing, and their statistics saved and loaded fit without a
    PrecisionWarning."""
    import warnings

    from dmixed.engines.local import statistics_from_arrays
    from dmixed.fit.fit_warnings import plain_rounding_of
    from dmixed.model import MixedLM
    from dmixed.stats import GroupArrays

    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), rng.integers(3, 9, 40))
    x = offset + rng.normal(size=g.size) + rng.normal(size=40)[g]
    y = x + rng.normal(size=40)[g] + rng.normal(size=g.size)
    frame = pd.DataFrame({"g": g, "x": x, "y": y, "w": rng.uniform(0.5, 2.0, g.size)})
    kw = dict(groups="g", re_formula="1 + x", weights="w" if weighted else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        model = dmixed.MixedLM.from_formula("y ~ x", frame, **kw)
        stats = model.statistics()
    assert not plain_rounding_of(stats).sizes.any()
    arrays = GroupArrays.from_statistics(stats)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dmixed.DmixedWarning)
        MixedLM.from_statistics(statistics_from_arrays(arrays), model.spec).fit()
    # at offset 1.7e9 (spread about 1.4) the reported cov_re cannot carry the fitted
    # point in float64, and the fit says so: a measured gap (seed 0, REML: 0.78 to the
    # likelihood at the reported numbers), not the plain groups' rounding tested here
    charged = [
        w
        for w in seen
        if issubclass(w.category, dmixed.PrecisionWarning)
        and "do not carry the fitted point" not in str(w.message)
    ]
    assert not charged


def test_a_small_group_of_many_is_not_charged_with_plain_rounding():
    """A group of three rows with a scaled determinant of 1e-6 (below
    ``PLAIN_CHARGED_DETERMINANT``) among 3000 ordinary ones is not near lossy
    (``near_lossy_bounds``: its share of the block is small) and loses no digit that
    matters: the precision check charges it nothing, as it charges the groups of
    ``StatsBlock.near_lossy_mask``'s criterion only (it was charged with every group
    below ``PLAIN_CHARGED_DETERMINANT``)."""
    import warnings

    from dmixed import kernels
    from dmixed.fit.fit_warnings import plain_rounding_of
    from tests._near_lossy import small_groups_frame

    frame = small_groups_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.DmixedWarning)
        model = dmixed.MixedLM.from_formula("y ~ x", frame, groups="g", re_formula="1 + x")
        stats = model.statistics()
    block = stats.engine.block
    nobs = np.asarray(stats.group_sizes)
    assert block.lossy_mask(nobs, kernels.conditionals.PLAIN_CHARGED_DETERMINANT) is not None
    assert block.near_lossy_mask(nobs) is None
    assert not plain_rounding_of(stats).sizes.any()


@pytest.mark.parametrize("decades", [0.0, 4.0])
def test_ordinary_old_format_statistics_fit_by_reml_with_a_warning(decades):
    """30 groups of 300 rows, a random slope on a column whose group means spread over
    0–2000 with a within-group spread of 3 (near singular within each group), prior
    weights equal or over ``decades`` decades, held without their centred sums (as
    statistics saved before they could be): REML fits, within 1e-4 relative of the fit
    of the same rows with them, with a PrecisionWarning (the worst-case rounding of
    ``X'V⁻¹X`` may be as large as itself, so it says no bound holds), as it did before
    the bound was charged; the review found it refused."""
    import dataclasses
    import warnings

    from dmixed.engines.local import statistics_from_arrays
    from dmixed.model import MixedLM
    from dmixed.stats import GroupArrays

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 300)
    x = 2000 * rng.uniform(0, 1, 30)[g] + rng.uniform(0, 3, g.size)
    frame = pd.DataFrame({"g": g, "x1": x, "w": 10 ** rng.uniform(0, decades, 30)[g]})
    frame["y"] = (
        0.3 * (x - 2000)
        + rng.normal(size=30)[g]
        + 0.2 * rng.normal(size=30)[g] * (x - 2000)
        + rng.normal(size=g.size)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        model = dmixed.MixedLM.from_formula(
            "y ~ x1", frame, groups="g", re_formula="1 + x1", weights="w"
        )
        arrays = GroupArrays.from_statistics(model.statistics())
        want = MixedLM.from_statistics(statistics_from_arrays(arrays), model.spec).fit()
    assert arrays.centred is not None and len(arrays.centred.positions)
    old = dataclasses.replace(arrays, centred=None)
    with pytest.warns(dmixed.PrecisionWarning, match="round the fit beyond"):
        res = MixedLM.from_statistics(statistics_from_arrays(old), model.spec).fit()
    # the plain sums lose digits here, and how many depends on the order of the sums
    # (the kernel path: 0.005 llf units with the path chosen by size, 0.15 with
    # DMIXED_KERNELS set): the fit is honest by its warning, not exact
    assert abs(res.llf - want.llf) < 1e-4 * abs(want.llf)


def test_plain_llf_error_refuses_a_cross_product_not_positive_definite():
    """Where ``X'V⁻¹X`` at the estimate is not positive definite, the REML term cannot
    be computed: a DataError marked as the statistics' (``of_statistics``, for the
    command line to name their directory), not a bound of ``inf`` ("up to inf")."""
    from types import SimpleNamespace

    from dmixed.fit.fit_warnings import plain_llf_error
    from dmixed.kernels.conditionals import PlainRounding

    prof = SimpleNamespace(w=np.array([-1.0, 1.0]), fac=10.0, q=1.0, a=np.array([[-1.0]]))
    glob = SimpleNamespace(xyxy=np.eye(2))
    plain = PlainRounding(np.eye(2) * 1e-9, 1e-9, 1e-15)
    assert plain_llf_error(SimpleNamespace(prof=prof), glob, False, plain) > 0
    with pytest.raises(dmixed.DataError, match="not positive definite") as got:
        plain_llf_error(SimpleNamespace(prof=prof), glob, True, plain)
    assert got.value.of_statistics


def test_plain_llf_error_bounds_log_det_a_by_its_relative_perturbation():
    """The REML term is ``−½ Σ log(1 − ν_j)`` over the eigenvalues of ``A^{-1/2}P_x
    A^{-1/2}``: finite where ``tr(A⁻¹P_x) ≥ 1`` but every ``ν_j < 1`` (the trace form
    refused it), and ``inf`` where some ``ν_j ≥ 1``."""
    from types import SimpleNamespace

    from dmixed.fit.fit_warnings import plain_llf_error
    from dmixed.kernels.conditionals import PlainRounding

    a = np.diag([1.0, 1.0, 1.0])
    prof = SimpleNamespace(w=np.array([0.0, 0.0, 0.0, 1.0]), fac=10.0, q=1.0, a=a)
    glob = SimpleNamespace(xyxy=np.zeros((4, 4)))
    sizes = np.diag([0.5, 0.5, 0.5, 0.0])  # ν = ½ each: trace 1.5
    ev = SimpleNamespace(prof=prof)
    got = plain_llf_error(ev, glob, True, PlainRounding(sizes, 0.0, 0.0))
    assert got == pytest.approx(-0.5 * 3 * np.log(0.5), rel=1e-12)
    sizes[0, 0] = 1.0
    assert plain_llf_error(ev, glob, True, PlainRounding(sizes, 0.0, 0.0)) == np.inf


def test_a_small_group_of_many_is_not_charged_at_the_fit(monkeypatch):
    """The frame of :func:`test_a_small_group_of_many_is_not_charged_with_plain_rounding`
    fitted: with the fit's cancellation (``heavy_bounds``) the small near-singular group
    is still not charged, nor any other, and the fit raises no PrecisionWarning."""
    import warnings

    import dmixed.model
    from dmixed.fit import fit_warnings
    from tests._near_lossy import small_groups_frame

    model = dmixed.MixedLM.from_formula(
        "y ~ x", small_groups_frame(), groups="g", re_formula="1 + x"
    )
    seen = {}

    def spy(stats, ev=None):
        seen["plain"] = fit_warnings.plain_rounding_of(stats, ev)
        seen["cancellation"] = fit_warnings.cancellation(ev, stats.glob)
        return seen["plain"]

    monkeypatch.setattr(dmixed.model, "plain_rounding_of", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.DmixedWarning)
        model.fit()
    assert seen["cancellation"] > 1
    assert not seen["plain"].sizes.any()


@pytest.mark.parametrize(
    "n_groups, per, between, within, offset",
    [
        (20, 5000, 40.0, 1.0, 50.0),  # ages: 50 + 0..40 per subject, a year within
        (50, 1000, 3000.0, 30.0, 19000.0),  # day numbers, a month within a unit
        (30, 3000, 3.0e8, 1e6, 1.7e9),  # timestamps in seconds
    ],
)
def test_a_random_slope_on_an_uncentred_column_of_few_large_groups_is_not_charged(
    n_groups, per, between, within, offset
):
    """Longitudinal frames (the review of uncharged-s57): a random slope on an
    uncentred column (an age, a day number, a timestamp) over few large groups makes
    ``X'V*⁻¹X`` a small remainder of the totals, but every group shares the totals:
    none weighs most of the data, so none is charged with the fit's cancellation, and
    the fit from the rows raises no PrecisionWarning."""
    import warnings

    rng = np.random.default_rng(n_groups + per)
    g = np.repeat(np.arange(n_groups), per)
    start = rng.uniform(0, between, n_groups)
    x = start[g] + within * rng.uniform(size=g.size)
    b = rng.normal(size=(n_groups, 2)) * [1.0, 1.5 / within]
    y = 2 + x / between + b[g, 0] + b[g, 1] * (x - start[g]) + rng.normal(size=g.size)
    frame = pd.DataFrame({"g": g, "x1": x + offset, "y": y})
    model = dmixed.MixedLM.from_formula("y ~ x1", frame, groups="g", re_formula="1 + x1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", dmixed.PrecisionWarning)
        model.fit()


_ENTRY = st.one_of(
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, np.inf, -np.inf, np.nan]),
)


@settings(max_examples=150, deadline=None)
@given(
    p=st.integers(0, 3),
    entries=st.lists(_ENTRY, min_size=32, max_size=32),
    q=st.floats(1e-300, 1e6),
)
def test_cancellation_is_the_largest_ratio_as_numpy_gives_it(p, entries, q):
    """``cancellation`` (the ratios of the diagonals taken in floats) answers as the
    numpy form it replaced: ``|w|'|[X y]'[X y]||w| / Q`` against the largest
    ``|[X y]'[X y]|_xx / A_xx`` over the positive ``A_xx`` (0 elsewhere), NaN among
    the ratios leaving the first term, 0 where the answer is not finite."""
    from types import SimpleNamespace

    from dmixed.fit.fit_warnings import cancellation

    k = p + 1
    vals = np.array(entries)
    xyxy = vals[: k * k].reshape(k, k)
    a = vals[16 : 16 + p * p].reshape(p, p)
    w = np.append(vals[25 : 25 + p], 1.0)
    ev = SimpleNamespace(prof=SimpleNamespace(q=q, w=w, a=a))
    with np.errstate(all="ignore"):
        absx = np.abs(xyxy)
        out = float(np.abs(w) @ absx @ np.abs(w)) / q
        if p:
            diag = np.diagonal(a)
            ratios = np.where(diag > 0, np.diagonal(absx)[:p] / diag, 0.0)
            out = max(out, float(ratios.max()))
        expected = out if np.isfinite(out) else 0.0
        got = cancellation(ev, SimpleNamespace(xyxy=xyxy))
    assert got == expected or (np.isnan(got) and np.isnan(expected))


def _boundary_frame():
    # the slope's random effect is half the intercept's: their correlation is +1, on
    # the boundary of the covariance matrices
    import pandas as pd

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": np.repeat(np.arange(12), 8), "x": np.tile(np.arange(8.0), 12)})
    u = rng.normal(0, 1, 12)
    d["y"] = 1 + 0.5 * d.x + u[d.g] * (1 + 0.5 * d.x) + rng.normal(0, 1, len(d))
    d.loc[0, "y"] = np.nan  # dropped, with a warning of the data too
    return d


def test_fit_warnings_point_at_the_callers_line():
    """A warning raised inside fit() (and inside the ML refits anova makes) names the
    line that called dmixed, not a frame of dmixed's own (a wrapper of the kernels)."""
    import warnings

    import dmixed
    from dmixed.errors import BoundaryWarning

    d = _boundary_frame()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fit = dmixed.mixedlm("y ~ x", d, groups="g", re_formula="1 + x", missing="drop").fit()
        small = dmixed.mixedlm("y ~ x", d, groups="g", missing="drop").fit()
    ours = [w for w in got if issubclass(w.category, dmixed.errors.DmixedWarning)]
    assert any(issubclass(w.category, BoundaryWarning) for w in ours)
    assert {w.filename for w in ours} == {__file__}
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        dmixed.anova(small, fit)  # refits both by ML
    ours = [w for w in got if issubclass(w.category, dmixed.errors.DmixedWarning)]
    assert any(issubclass(w.category, BoundaryWarning) for w in ours)
    assert {w.filename for w in ours} == {__file__}


def _warn_calls_without_caller_stacklevel(source: str) -> list[int]:
    """The lines of the calls to ``warn`` (``warnings.warn`` or any ``*.warn`` /
    ``warn`` name, ``warn_explicit`` included) in ``source`` that do not pass exactly
    ``stacklevel=caller_stacklevel()``: no stacklevel (1, a frame inside dmixed), a
    positional one, or any other expression.  A module that imports dmixed's own
    :func:`dmixed.errors.warn` (which passes ``caller_stacklevel()`` itself) calls it
    as ``warn(message, category)``, with nothing else."""
    import ast

    tree = ast.parse(source)
    owner = any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[-1] == "errors"
        and any(alias.name == "warn" and alias.asname is None for alias in node.names)
        for node in ast.walk(tree)
    )
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("warn", "warn_explicit"):
            continue
        if owner and isinstance(func, ast.Name) and name == "warn":
            if len(node.args) != 2 or node.keywords:
                bad.append(node.lineno)
            continue
        levels = [k.value for k in node.keywords if k.arg == "stacklevel"]
        ok = (
            name == "warn"
            and len(node.args) <= 2
            and len(levels) == 1
            and isinstance(levels[0], ast.Call)
            and "caller_stacklevel"
            in (getattr(levels[0].func, "id", None), getattr(levels[0].func, "attr", None))
            and not levels[0].args
            and not levels[0].keywords
        )
        if not ok:
            bad.append(node.lineno)
    return bad


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("warnings.warn('m', W, stacklevel=caller_stacklevel())", []),
        ("warnings.warn('m', W, stacklevel=errors.caller_stacklevel())", []),
        ("warnings.warn('m', W)", [1]),
        ("warnings.warn('m', W, 3)", [1]),
        ("warnings.warn('m', W, stacklevel=(3))", [1]),
        ("warnings.warn('m', W, stacklevel=caller_stacklevel() + 1)", [1]),
        ("warn('m', W, stacklevel=2)", [1]),
        ("from ..errors import warn\nwarn('m', W)", []),
        ("from ..errors import warn\nwarn('m', W, stacklevel=2)", [2]),
        ("from ..errors import warn\nwarn('m')", [2]),
        ("from .other import warn\nwarn('m', W)", [2]),
        ("x = 1  # warnings.warn('m', W, stacklevel=2)\n'stacklevel=2'", []),
    ],
)
def test_the_stacklevel_check_sees_calls_not_text(source, bad):
    assert _warn_calls_without_caller_stacklevel(source) == bad


def test_every_warning_passes_caller_stacklevel():
    """Every warning dmixed raises finds the caller's frame through one owner,
    :func:`dmixed.errors.caller_stacklevel`: a fixed ``stacklevel`` counts frames
    that the paths reaching it (pandas or Dask, a fit or a refit) do not share, and
    none points inside dmixed.  Checked on the calls (the syntax tree), not the text."""
    import pathlib

    import dmixed

    root = pathlib.Path(dmixed.__file__).parent
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(root.rglob("*.py"))}
    bad = [
        f"{path.relative_to(root)}:{line}"
        for path, source in sources.items()
        for line in _warn_calls_without_caller_stacklevel(source)
    ]
    import ast

    owned = sum(  # calls of dmixed.errors.warn, which passes caller_stacklevel() itself
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "warn"
        for source in sources.values()
        for node in ast.walk(ast.parse(source))
    )
    calls = owned + sum(
        source.count("stacklevel=caller_stacklevel()") for source in sources.values()
    )
    assert calls > 20  # the check reached the package's warnings
    assert bad == []


# -- reported estimates that do not carry the fitted point ------------------------------


def _slope_frame(shift: float, spread: float = 1.0, n_groups: int = 15):
    """``n_groups`` groups of 4 to 9 rows with a random slope on ``x1``, whose values are
    ``shift`` plus ``spread`` times standard normals."""
    rng = np.random.default_rng(3)
    parts = []
    for g in range(n_groups):
        n = int(rng.integers(4, 10))
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        y = 1 + 0.5 * x1 - 0.3 * x2 + rng.normal() + rng.normal(0, 0.5) * x1 + rng.normal(size=n)
        x1 = x1 * spread + shift
        parts.append(pd.DataFrame({"g": f"g{g:02d}", "x1": x1, "x2": x2, "y": y}))
    return pd.concat(parts, ignore_index=True)


def _reported_llf_reference(model, res, reml: bool) -> float:
    """ℓ at the reported ``(fe_params, cov_re, scale)`` from the rows, in extended
    precision (nothing profiled)."""
    from .._dense import dense_model_of

    return dense_model_of(model).loglike(
        np.asarray(res.fe_params), np.asarray(res.cov_re), np.zeros(0), res.scale, reml
    )


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("reml", [True, False])
def test_reported_estimates_that_lose_the_fit_warn_with_the_gap(kernels, reml, monkeypatch):
    """x1 near 1e8 with spread 1: the reported cov_re's entries (about 1e16 times the
    slope's variance) nearly cancel about x1's centre, and their float64 values denote
    another point; the warning names the column and states the gap to the likelihood at
    the reported numbers, which the extended-precision reference confirms."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _slope_frame(1e8, n_groups=20)
    model = dmixed.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    with pytest.warns(dmixed.PrecisionWarning) as record:
        res = model.fit(reml=reml)
    texts = [str(w.message) for w in record if "do not carry the fitted point" in str(w.message)]
    assert len(texts) == 1, [str(w.message) for w in record]
    text = texts[0]
    for part in (
        "'x1'",
        "values about 1e+08",
        "spread of order 1",
        "center(x1)",
        "x1 minus its mean",
    ):
        assert part in text
    assert record[0].filename == __file__
    gap = res.llf - _reported_llf_reference(model, res, reml)
    stated = float(re.search(r"the likelihood there is (\S+) below", text).group(1))
    # two significant digits rounded up: the gap is at most the figure, and near it
    assert 0.85 * stated <= gap <= stated


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(("shift", "spread"), [(1e4, 1.0), (1.7e9, 1e6)])
def test_reported_estimates_of_moderately_shifted_slopes_are_silent(
    kernels, shift, spread, monkeypatch
):
    """A column 1e4 spreads from zero, and a timestamp-like one (1.7e9, spread 1e6): the
    reported numbers carry the fit (the likelihood there within 1e-9 of the llf), and no
    warning."""
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _slope_frame(shift, spread)
    model = dmixed.MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="1 + x1")
    for reml in (True, False):
        res = model.fit(reml=reml)  # dmixed's warnings are errors here
        assert abs(res.llf - _reported_llf_reference(model, res, reml)) < 1e-9


def _rank_one_frame(shift: float, seed: int = 0):
    """30 groups of 6 rows whose slope effect is 0.8 times the intercept effect: the
    fitted Ψ is singular with correlation +1 (a boundary fit), ``x`` about ``shift``."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 6)
    x = rng.normal(size=g.size)
    b = rng.normal(size=30)
    y = 1 + 0.5 * x + b[g] + 0.8 * b[g] * x + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x + shift, "y": y})


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize(("shift", "seed"), [(3e3, 1), (1e4, 0), (1e4, 4), (1e5, 0)])
def test_a_rank_one_fit_of_a_shifted_slope_is_not_said_to_lose_its_point(
    kernels, shift, seed, monkeypatch
):
    """A boundary fit (correlation +1) maps back to a cov_re whose float64 entries,
    carried to the centred coordinates, denote a matrix indefinite by their rounding
    only: the likelihood is evaluated at its projection (the reported numbers carry the
    fit), not reported as undefined, and only the boundary warning is given."""
    import warnings

    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    df = _rank_one_frame(shift, seed)
    model = dmixed.MixedLM.from_formula("y ~ x", df, groups="g", re_formula="1 + x")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dmixed.DmixedWarning)
        model.fit()
    precision = [str(w.message) for w in seen if issubclass(w.category, dmixed.PrecisionWarning)]
    assert precision == []
    assert any(issubclass(w.category, dmixed.BoundaryWarning) for w in seen)


def test_a_zero_variance_is_measured_against_the_largest():
    """A move at an entry whose variance is zero is measured against the largest
    variance (finite), not divided by zero."""
    here = np.array([[4.0, 0.0], [0.0, 0.0]])
    moved = np.array([[4.0, 0.0], [0.0, 4e-12]])
    assert relative_move(moved, here) == pytest.approx(1e-12)
    assert relative_move(here, here) == 0.0


def test_an_indefinite_reported_point_is_projected_only_within_its_rounding():
    """An eigenvalue below zero by the reported entries' rounding, carried by A_o, is
    set to zero; one below zero by far more is refused (the warning's "not a
    covariance matrix")."""
    a = np.array([[1.0, 0.0], [-1e4, 1.0]])  # centring a column about 1e4
    cov_re = np.array([[1.0, 0.0], [0.0, 1.0]])  # its bound: about eps * 1e8
    psi = np.array([[1.0, 1.0], [1.0, 1.0 - 1e-9]])
    projected = within_rounding(psi, a, cov_re, 1.0)
    assert np.linalg.eigvalsh(projected).min() >= -1e-15
    assert np.abs(projected - psi).max() < 1e-9
    with pytest.raises(np.linalg.LinAlgError):
        within_rounding(np.array([[1.0, 1.0], [1.0, 0.9]]), a, cov_re, 1.0)
    definite = np.eye(2)
    assert within_rounding(definite, a, cov_re, 1.0) is definite
