"""The columns' map of the statistics (dmixed.stats.standardize)."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from dmixed import kernels
from dmixed.errors import CheckpointError, DataError
from dmixed.stats.packed import PackedLayout
from dmixed.stats.standardize import (
    SAMPLE_ROWS,
    SHIFT_ABOVE,
    WEIGHT_SPAN_LOG2,
    WEIGHT_STEP_LOG2,
    Standardization,
    check_weights_range,
    nearest_power_of_two,
    same_column,
    weight_scale,
)


def _rows(seed: int, n: int = 400, offset: float = 0.0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x1 = offset + scale * rng.normal(size=n)
    exog = np.column_stack([np.ones(n), x1, rng.normal(size=n)])
    endog = 1e6 + rng.normal(size=n) * 3.0
    exog_re = exog[:, :2]
    codes = rng.integers(0, 25, n)
    return codes, endog, exog, exog_re


def test_choose_shifts_only_far_columns_and_scales_by_powers_of_two():
    _, endog, exog, exog_re = _rows(0, offset=1.7e9, scale=86400.0)
    std = Standardization.choose(endog, exog, exog_re)
    assert (std.x_intercept, std.z_intercept) == (0, 0)
    assert std.x_shift[0] == 0.0 and std.x_scale[0] == 1.0  # the intercept stays
    assert std.x_shift[1] == pytest.approx(1.7e9, rel=1e-4)  # a timestamp: shifted
    assert std.x_shift[2] == 0.0  # mean within SHIFT_ABOVE spreads of zero: left alone
    assert std.y_shift == pytest.approx(1e6, rel=1e-4)
    for s in (*std.x_scale, std.y_scale, *std.z_scale):
        assert np.log2(s) == np.round(np.log2(s))  # exact to divide by
    assert std.x_scale[1] == 2.0**16  # 86400 s ≈ 2^16.4
    assert std.same_map(1, 1) and std.z_shift[1] == std.x_shift[1]


@pytest.mark.parametrize("intercepts", [(0, 0), (0, -1), (-1, 0)])
def test_a_random_slope_column_takes_its_fixed_effect_map_unmeasured(monkeypatch, intercepts):
    """A Z column equal to an X column (a random slope on a fixed effect) takes the X
    column's shift and scale, the numbers it would get, without passes of its own over
    the rows (fewer ``np.mean`` calls than for a column that differs); not when only
    one of X and Z has an intercept (then only one is shifted)."""
    _, endog, exog, exog_re = _rows(3, offset=1.7e9, scale=86400.0)
    xi, zi = intercepts
    exog = exog if xi == 0 else exog[:, 1:]
    exog_re = exog_re.copy() if zi == 0 else exog_re[:, 1:].copy()  # equal, not the same
    other = exog_re.copy()
    other[-1, -1] += 86400.0  # differs from the fixed effect in one row
    full = Standardization.choose(endog, exog, exog_re, intercepts)
    calls = []
    mean = np.mean

    def counted(*args, **kwargs):
        calls.append(1)
        return mean(*args, **kwargs)

    monkeypatch.setattr(np, "mean", counted)
    std = Standardization.choose(endog, exog, exog_re, intercepts)
    shared = len(calls)
    calls.clear()
    Standardization.choose(endog, exog, other, intercepts)
    monkeypatch.undo()
    assert (shared < len(calls)) == (xi == zi)
    assert std == full
    np.testing.assert_array_equal(std.z_shift, full.z_shift)
    np.testing.assert_array_equal(std.z_scale, full.z_scale)
    assert std.same_map(1 if xi == 0 else 0, exog_re.shape[1] - 1) or xi != zi


def test_no_intercept_means_no_shifts():
    _, endog, exog, exog_re = _rows(1, offset=1e6)
    std = Standardization.choose(endog, exog[:, 1:], exog_re[:, 1:])
    assert (std.x_intercept, std.z_intercept) == (-1, -1)
    assert not std.x_shift.any() and std.y_shift == 0.0 and not std.z_shift.any()
    assert std.x_scale[0] == 2.0**20  # scaled by its size about zero


def test_a_column_of_ones_only_in_the_first_rows_is_no_intercept():
    """Without the formula's word for it, the intercept is a column of ones in every
    row given, not only in the sample the shifts come from."""
    _, endog, exog, exog_re = _rows(2, offset=1e6)
    exog = exog.copy()
    exog[-1, 0] = 0.0  # ones in the first rows only
    std = Standardization.choose(endog, exog, exog_re[:, 1:])
    assert std.x_intercept == -1 and not std.x_shift.any()


def test_json_round_trip_and_malformed_maps():
    _, endog, exog, exog_re = _rows(3, offset=5e3)
    std = Standardization.choose(endog, exog, exog_re)
    assert Standardization.from_json(std.to_json(), 3, 2) == std
    with pytest.raises(CheckpointError, match="malformed"):
        Standardization.from_json({**std.to_json(), "y_scale": -1.0}, 3, 2)
    with pytest.raises(CheckpointError, match="malformed"):
        Standardization.from_json({"x_shift": [0.0]}, 3, 2)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 1000),
    offset=st.sampled_from([0.0, 1e3, 1e6, 1.7e9]),
    log_scale=st.floats(-6, 6),
)
def test_statistics_in_one_map_convert_exactly_to_another(seed, offset, log_scale):
    """Accumulating rows in map A and converting to map B equals accumulating in B
    (to the rounding of sums of numbers of B's size)."""
    codes, endog, exog, exog_re = _rows(seed, offset=offset, scale=10.0**log_scale)
    a = Standardization.choose(endog[:40], exog[:40], exog_re[:40], intercepts=(0, 0))
    b = Standardization.choose(endog[200:], exog[200:], exog_re[200:], intercepts=(0, 0))
    packed_a, glob_a = kernels.accumulate_packed(codes, 25, endog, exog, exog_re, None, a)
    packed_b, glob_b = kernels.accumulate_packed(codes, 25, endog, exog, exog_re, None, b)
    layout = PackedLayout(2, 4)
    m_x, m_z = a.conversion_to(b)
    converted = packed_a @ layout.conversion(m_z, m_x)
    size = np.abs(packed_b).max()
    np.testing.assert_allclose(converted, packed_b, rtol=0, atol=1e-11 * size)
    xyxy = m_x.T @ glob_a["xyxy"] @ m_x
    np.testing.assert_allclose(xyxy, glob_b["xyxy"], rtol=0, atol=1e-11 * np.abs(xyxy).max())


def test_maps_with_different_intercepts_do_not_convert():
    _, endog, exog, exog_re = _rows(4)
    a = Standardization.choose(endog, exog, exog_re, intercepts=(0, 0))
    b = Standardization.choose(endog, exog, exog_re, intercepts=(-1, 0))
    with pytest.raises(CheckpointError, match="different intercept columns"):
        a.conversion_to(b)


def test_shift_threshold_is_in_spreads():
    rng = np.random.default_rng(5)
    n = 1000
    near = (SHIFT_ABOVE - 1) + rng.normal(size=n)
    far = (SHIFT_ABOVE + 2) + rng.normal(size=n)
    exog = np.column_stack([np.ones(n), near, far])
    std = Standardization.choose(rng.normal(size=n), exog, exog[:, :1])
    assert std.x_shift[1] == 0.0 and std.x_shift[2] != 0.0


def _defined_map(col: np.ndarray) -> tuple[float, float]:
    """The shift and scale of one column as the module docstring defines them, in
    full: the finite values, ``unit = col/max|col|``, shifted when
    ``|mean(unit)| > SHIFT_ABOVE·sd(unit)``, the power of two nearest the spread about
    the shift."""
    col = col[np.isfinite(col)]
    size = float(np.max(np.abs(col))) if col.size else 0.0
    if size == 0.0:
        return 0.0, 1.0
    unit = col / size
    mean = float(np.mean(unit))
    sd = float(np.sqrt(np.mean((unit - mean) ** 2)))
    shift = mean * size if abs(mean) > SHIFT_ABOVE * sd else 0.0
    spread = float(np.sqrt(np.mean((unit - shift / size) ** 2))) * size
    return shift, 2.0 ** np.round(np.log2(spread if spread > 0 else size))


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31),
    log_scale=st.integers(-30, 30),
    ratio=st.sampled_from([0.0, 1.0, SHIFT_ABOVE - 1e-9, SHIFT_ABOVE, SHIFT_ABOVE + 1e-9, 1e6]),
    kind=st.sampled_from(["normal", "constant", "nan", "inf"]),
)
def test_each_column_map_is_the_defined_one(seed, log_scale, ratio, kind):
    # columns whose mean sits at, just below and just above SHIFT_ABOVE spreads from
    # zero: the quick shift test decides as the full definition does, with equal numbers
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    z = rng.normal(size=n)
    z = (z - z.mean()) / (z.std() or 1.0)
    col = (ratio + z) * 2.0**log_scale
    if kind == "constant":
        col[:] = col[0]
    elif kind in ("nan", "inf"):
        col[rng.integers(0, n)] = np.nan if kind == "nan" else -np.inf
    std = Standardization.choose(
        rng.normal(size=n), np.column_stack([np.ones(n), col]), np.ones((n, 1))
    )
    shift, scale = _defined_map(col)
    assert std.x_shift[1] == shift
    assert std.x_scale[1] == scale


def _spoil_a_column(cols: np.ndarray, rng, kind: str) -> int:
    """Make one column of ``cols`` (n × k) of the ``kind`` asked for (constant, zero,
    one NaN or −inf entry; any other kind: left as it is); its index."""
    n, k = cols.shape
    j = int(rng.integers(0, k))
    if kind == "constant":
        cols[:, j] = cols[0, j]
    elif kind == "zero":
        cols[:, j] = 0.0
    elif kind in ("nan", "inf"):
        cols[rng.integers(0, n), j] = np.nan if kind == "nan" else -np.inf
    return j


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31),
    n=st.sampled_from([1, 2, 7, 17, 300, 8193, 70_000]),
    log_scales=st.lists(st.integers(-30, 30), min_size=2, max_size=4),
    offset=st.sampled_from([0.0, 1e9, -3e5]),
    ratio=st.sampled_from([0.0, SHIFT_ABOVE - 1e-9, SHIFT_ABOVE + 1e-9, 1e6]),
    kind=st.sampled_from(["normal", "constant", "zero", "nan", "inf"]),
)
@example(seed=0, n=70_000, log_scales=[0, 0], offset=1e9, ratio=0.0, kind="normal")
def test_columns_measured_together_get_each_ones_own_map(seed, n, log_scales, offset, ratio, kind):
    """A column-major design's columns are measured in a few calls for all of them:
    every shift and scale bit for bit what the column measured alone gets (the same
    design row-major, one column at a time), with offsets, spreads 2^±30, means at the
    shift threshold, a constant, zero, NaN or infinite column among them, and samples
    past numpy's blocks and past the sample's rows."""
    rng = np.random.default_rng(seed)
    k = len(log_scales)
    z = rng.normal(size=(n, k))
    cols = (ratio + z) * 2.0 ** np.array(log_scales) + offset * rng.integers(0, 2, k)
    _spoil_a_column(cols, rng, kind)
    for intercept in (True, False):
        design = np.column_stack([np.ones(n), cols]) if intercept else cols
        endog = offset + rng.normal(size=n) * 2.0 ** log_scales[0]
        exog_re = design[:, :2]
        together = Standardization.choose(endog, np.asfortranarray(design), exog_re)
        alone = Standardization.choose(endog, np.ascontiguousarray(design), exog_re)
        for a, b in [(together.x_shift, alone.x_shift), (together.x_scale, alone.x_scale)]:
            np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
        assert together == alone
        # the response, measured alone in both: the defined map of the sample's rows
        defined = _defined_map(endog[:SAMPLE_ROWS])
        assert (together.y_shift, together.y_scale) == defined or not intercept


@settings(max_examples=80)
@given(
    seed=st.integers(0, 2**31),
    n=st.sampled_from([1, 2, 9, 300, 20_000, SAMPLE_ROWS]),
    log_scales=st.lists(st.sampled_from([-600, -40, 0, 0.5, 7.5, 40, 600]), min_size=2, max_size=3),
    ratio=st.sampled_from(
        [0.0, 1.0, SHIFT_ABOVE * (1 - 1e-7), SHIFT_ABOVE, SHIFT_ABOVE + 1e-9, 1e6]
    ),
    kind=st.sampled_from(["normal", "constant", "zero", "nan", "inf", "midpoint"]),
    intercept=st.booleans(),
)
@example(seed=1, n=300, log_scales=[0, 0], ratio=0.0, kind="midpoint", intercept=True)
def test_a_map_chosen_from_the_gram_is_the_map_measured(
    seed, n, log_scales, ratio, kind, intercept
):
    """The columns whose map the gram ``[X y]'[X y]`` settles (:func:`settled_scale`)
    take the very shift and scale measuring their rows gives, bit for bit: at the shift
    threshold, at a midpoint between powers of two (an exact one, and ones a few
    roundings off it), constant, zero, NaN, infinite and far-scaled columns (whose
    squares leave float64's range), with and without an intercept."""
    rng = np.random.default_rng(seed)
    k = len(log_scales)
    z = rng.normal(size=(n, k))
    if n > 1:
        z = (z - z.mean(axis=0)) / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
    cols = (ratio + z) * 2.0 ** np.array(log_scales)
    j = _spoil_a_column(cols, rng, kind)
    if kind == "midpoint":  # root mean square at 2^(e + 1/2), give or take a rounding
        with np.errstate(over="ignore"):
            rms = float(np.sqrt(np.mean(cols[:, j] ** 2)))
        if 0 < rms < np.inf:
            target = 2.0 ** (np.floor(np.log2(rms)) + 0.5)
            cols[:, j] *= target / rms * (1.0 + float(rng.integers(-3, 4)) * 2.0**-52)
    design = np.asfortranarray(np.column_stack([np.ones(n), cols]) if intercept else cols)
    endog = cols[:, -1] * 3.0 + rng.normal(size=n)
    exog_re = design[:, :2]
    with np.errstate(over="ignore", invalid="ignore"):
        gram = kernels.unweighted_gram(endog, design)
        chosen = Standardization.choose(endog, design, exog_re, gram=gram)
        measured = Standardization.choose(endog, design, exog_re)
    assert chosen == measured
    for a, b in [
        (chosen.x_shift, measured.x_shift),
        (chosen.x_scale, measured.x_scale),
        (chosen.z_scale, measured.z_scale),
    ]:
        np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
    assert (chosen.y_shift, chosen.y_scale) == (measured.y_shift, measured.y_scale)


def test_a_map_settled_by_the_gram_measures_no_rows():
    """Columns the gram settles are not measured: no pass of their own over the rows.
    Rows of another shift and scale handed with the gram of the true rows give the true
    rows' map (they are not read), where measured they give another."""
    rng = np.random.default_rng(2)
    n = 500
    design = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))
    endog = rng.normal(size=n)
    gram = kernels.unweighted_gram(endog, design)
    other = design.copy(order="F")
    other[:, 1:] = other[:, 1:] * 1000.0 + 5.0
    other_endog = endog * 1000.0 + 5.0
    std = Standardization.choose(endog, design, design[:, :2], gram=gram)
    assert std.x_shift.tolist() == [0.0, 0.0, 0.0] and std.y_shift == 0.0
    unread = Standardization.choose(other_endog, other, other[:, :2], gram=gram)
    assert unread == std
    assert Standardization.choose(other_endog, other, other[:, :2]) != std


def test_a_gram_of_other_rows_than_the_sample_is_refused():
    n = SAMPLE_ROWS + 1
    design = np.asfortranarray(np.ones((n, 1)))
    with pytest.raises(ValueError, match="all its rows"):
        Standardization.choose(np.zeros(n), design, design, gram=np.eye(2))


def _defined_vc_scale(values: np.ndarray) -> float:
    """A component's scale by its definition: the power of two nearest the root mean
    square of the non-zero finite entries (1 when there are none)."""
    v = values[np.isfinite(values) & (values != 0)]
    if v.size == 0:
        return 1.0
    size = float(np.max(np.abs(v)))
    return float(2.0 ** np.round(np.log2(size * np.sqrt(np.mean((v / size) ** 2)))))


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31),
    log_scale=st.integers(-1000, 1000),
    kind=st.sampled_from(["one value", "negative value", "with zeros", "normal", "nan", "inf"]),
)
def test_each_component_scale_is_the_defined_one(seed, log_scale, kind):
    # an indicator component (one value throughout) takes a shortcut: the same scale
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    value = 2.0 ** (log_scale / 3.0) * float(rng.uniform(0.5, 2.0))
    vals = np.full((n, 1), value) if kind != "normal" else rng.normal(size=(n, 1)) * value
    if kind == "negative value":
        vals = -vals
    elif kind == "with zeros":
        vals[rng.integers(0, n)] = 0.0
    elif kind in ("nan", "inf"):
        vals[rng.integers(0, n)] = np.nan if kind == "nan" else np.inf
    std = Standardization.choose(
        rng.normal(size=n), np.ones((n, 1)), np.ones((n, 1)), vc_vals=[vals]
    )
    assert std.vc_scale[0] == _defined_vc_scale(vals.ravel())


# --------------------------------------------------------------------------------------
# the prior weights' scale
# --------------------------------------------------------------------------------------


def _choose_weighted(weights: np.ndarray) -> Standardization:
    rng = np.random.default_rng(0)
    n = weights.size
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    return Standardization.choose(rng.normal(size=n), x, x[:, :1], weights=weights)


@settings(max_examples=40)
@given(exponent=st.floats(-1000, 1000), spread=st.floats(0, 8))
def test_the_weights_scale_is_a_step_power_of_two_near_their_geometric_mean(exponent, spread):
    """A power of ``2^WEIGHT_STEP_LOG2`` (so of four: ``√s_w`` is exact) within half a
    step of the geometric mean (the largest float64 holds, ``2^896``, above it), and 1
    for weights within ``2^±64`` of 1."""
    rng = np.random.default_rng(1)
    logs = exponent + spread * rng.uniform(-1, 1, 500)
    w = 2.0**logs
    s = weight_scale(w)
    k = np.log2(s)
    top = 7 * WEIGHT_STEP_LOG2
    assert k == np.round(k) and k % WEIGHT_STEP_LOG2 == 0 and k <= top
    assert abs(np.mean(np.log2(w)) - k) <= WEIGHT_STEP_LOG2 / 2 or k == top
    if abs(np.mean(np.log2(w))) < WEIGHT_STEP_LOG2 / 2:
        assert s == 1.0


@pytest.mark.parametrize("exponent", [896.0, 960.0, 1000.0, 1023.0])
def test_the_weights_scale_of_the_heaviest_weights_is_the_largest_step(exponent):
    """Weights whose geometric mean rounds to the step 2^1024 (past float64) take the
    largest step float64 holds, 2^896 (was an OverflowError)."""
    assert weight_scale(np.full(10, 2.0**exponent)) == 2.0 ** (7 * WEIGHT_STEP_LOG2)


def test_ordinary_weights_leave_the_map_as_it_was():
    """Weights near 1: scale 1, the weights summed as given (the same array), the saved
    map without the key (older versions read it)."""
    w = np.random.default_rng(2).uniform(0.5, 2.0, 300)
    std = _choose_weighted(w)
    assert std.weight_scale == 1.0 and std.weights_in_statistics(w) is w
    assert "weight_scale" not in std.to_json()
    assert std.sigma_scale == std.y_scale
    np.testing.assert_array_equal(std.psi_matrix(), std.re_matrix())


def test_the_weights_scale_is_exact_and_saved():
    w = np.random.default_rng(3).uniform(0.5, 2.0, 300) * 1e150
    std = _choose_weighted(w)
    s = std.weight_scale
    assert s == 2.0**512
    scaled = std.weights_in_statistics(w)
    np.testing.assert_array_equal(scaled * s, w)  # a power of two: no rounding
    assert std.sigma_scale == std.y_scale * 2.0**256
    np.testing.assert_array_equal(std.psi_matrix(), 2.0**256 * std.re_matrix())
    back = Standardization.from_json(std.to_json(), std.k_fe, std.k_re)
    assert back == std and back.weight_scale == s
    assert not std.is_identity()


@pytest.mark.parametrize("bad", [3.0, 2.0**3, -4.0, float("inf")])
def test_a_saved_weights_scale_not_a_power_of_four_is_refused(bad):
    data = _choose_weighted(np.ones(10)).to_json() | {"weight_scale": bad}
    with pytest.raises(CheckpointError, match="scale"):
        Standardization.from_json(data, 2, 1)


def test_weights_in_another_unit_than_the_map_are_refused():
    """One step off is taken (the statistics still hold it); two are refused, naming
    the weights; maps of different weight scales are not added."""
    w = np.random.default_rng(4).uniform(0.5, 2.0, 300)
    std = _choose_weighted(w)
    near = std.weights_in_statistics(w * 2.0**100)
    np.testing.assert_array_equal(near, w * 2.0**100)
    with pytest.raises(DataError, match="prior weights.*another unit"):
        std.weights_in_statistics(w * 2.0**250)
    # with the span of the map's rows (saved statistics), as the fit of all the rows
    # refuses them: the span of both, naming the column
    spanned = std.with_weights(w)
    with pytest.raises(DataError) as got:
        spanned.weights_in_statistics(w * 2.0**250, "w")
    whole = np.log2(np.concatenate([w, w * 2.0**250]))
    with pytest.raises(DataError) as scratch:
        check_weights_range("w", (float(whole.min()), float(whole.max())))
    assert str(got.value) == str(scratch.value) and "column 'w' are too far apart" in str(got.value)
    other = _choose_weighted(w * 2.0**250)
    with pytest.raises(CheckpointError, match="weights are in different units"):
        other.conversion_to(std)
    # converted where the caller converts the weights' own sums too: √ρ, exactly
    m_x, m_z = other.conversion_to(std, weights=True)
    plain = replace(other, weight_scale=std.weight_scale).conversion_to(std)
    assert other.weight_ratio(std) == 2.0**256
    np.testing.assert_array_equal(m_x, 2.0**128 * plain[0])
    np.testing.assert_array_equal(m_z, 2.0**128 * plain[1])


@settings(max_examples=60)
@given(
    lo=st.floats(-300.0, 300.0),
    extra=st.floats(1e-9, 200.0),
)
@example(lo=1.0, extra=10.1)  # width * 10 rounds up to the next tenth
def test_weights_range_error_states_a_span_below_the_weights_own(lo, extra):
    """The refusal of weights wider than float64's significand states their span as a
    power of two the span exceeds, within a tenth of it (a rounded exponent read "2^53
    times the smallest, more than 2^53", or more than the weights' own span), and the
    span taken."""
    width = WEIGHT_SPAN_LOG2 + extra
    with pytest.raises(DataError, match="column 'w' are too far apart") as got:
        check_weights_range("w", (lo, lo + width))
    stated = float(re.search(r"over 2\^([0-9.]+) times", str(got.value)).group(1))
    span = (lo + width) - lo
    assert stated <= span < stated + 0.1 + 1e-9
    assert f"more than the 2^{WEIGHT_SPAN_LOG2} a fit takes" in str(got.value)


@settings(max_examples=60)
@given(lo=st.floats(-1000.0, 1000.0), width=st.floats(0.0, float(WEIGHT_SPAN_LOG2)))
@example(lo=-20.0, width=float(WEIGHT_SPAN_LOG2))
def test_weights_range_takes_every_span_up_to_the_significand(lo, width):
    """Weights up to 2^53 apart (float64's significand: a lighter row's products still
    count in a sum with a heavier row's) are taken, whatever their unit."""
    hi = lo + width
    assume(hi - lo <= WEIGHT_SPAN_LOG2)  # the sum's rounding may widen it
    check_weights_range("w", (lo, hi))
    check_weights_range("w", None)


_COLUMN_VALUES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, np.nan, np.inf, -np.inf, 1e300])


@settings(max_examples=200)
@given(
    a=st.lists(_COLUMN_VALUES, min_size=0, max_size=20),
    b=st.lists(_COLUMN_VALUES, min_size=0, max_size=20),
    strided=st.booleans(),
)
def test_same_column_is_array_equal(a, b, strided):
    """``same_column`` answers as ``np.array_equal`` (other lengths unequal; NaN unequal to
    itself, ``0.0 == -0.0``), for contiguous and strided columns, and a column and a view
    of the same memory are the same."""
    x, y = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    if strided:  # columns of column-major matrices' transposes: every other entry
        x = np.repeat(x, 2)[::2]
        y = np.repeat(y, 2)[::2]
    assert same_column(x, y) == np.array_equal(x, y)
    assert same_column(x, x[:])


def test_power_of_two_is_numpys_log2_rounded():
    """The nearest power of two in the log scale, decided from the mantissa away from
    1/√2 and by numpy's ``log2`` near it: the powers ``2^round(log2 v)`` gives (half to
    even), over the whole range, at powers of two and on either side of 1/√2."""

    def by_log2(value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            return 1.0
        exponent = round(float(np.log2(value)))
        return 2.0**exponent if exponent < 1024 else math.inf

    rng = np.random.default_rng(7)
    values = np.exp(rng.uniform(-744.0, 709.0, 20_000)).tolist()
    half_root = math.sqrt(0.5)
    for exponent in range(-1074, 1024, 7):
        for offset in (-2e-9, -1e-9, -1e-15, 0.0, 1e-15, 1e-9, 2e-9):
            values.append(math.ldexp(half_root + offset, exponent))
        values.append(math.ldexp(0.5, exponent))
    values += [0.0, -1.0, math.inf, math.nan, 5e-324, 1.7976931348623157e308, 3.0]
    assert [nearest_power_of_two(v) for v in values] == [by_log2(v) for v in values]
