"""Integer columns beyond 2**53 read exactly about an integer reference
(:mod:`dmixed.design.references`): the fit of ``t = 1.7e18 + k·1000`` (nanoseconds) is
that of ``t − 1.7e18`` computed exactly, in process, on Dask and from Parquet."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import ModelSpec, build_spec
from dmixed.design.references import (
    column_references,
    design_coordinates,
    referenced_values,
)
from dmixed.errors import CheckpointError, DmixedWarning, PrecisionWarning
from dmixed.stats import Standardization

BASE = 1_700_000_000_000_000_000  # nanoseconds, late 2023


def _frames(base: int = BASE, dtype=np.int64, groups: int = 30, per: int = 12, seed: int = 0):
    """``(big, exact)``: a covariate ``t = base + k·1000`` of ``dtype`` and the same
    minus ``base``, computed exactly (int64); a response with a random intercept and
    a random slope in ``t``."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    k = rng.integers(0, 10**6, g.size)
    x = rng.normal(size=g.size)
    slope = 2e-9 * (1 + 0.3 * rng.normal(size=groups))[g]
    y = 0.5 + slope * (k * 1000) + x + rng.normal(size=groups)[g] + rng.normal(size=g.size)
    t = np.array(base, dtype=dtype) + (k * 1000).astype(dtype)
    big = pd.DataFrame({"y": y, "t": t, "x": x, "g": g})
    return big, big.assign(t=(k * 1000).astype(np.int64))


def _fit(df, formula="y ~ t + x", re_formula=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DmixedWarning)
        return dmixed.mixedlm(formula, df, groups="g", re_formula=re_formula).fit(**kw)


def _assert_same_fit(got, ref):
    """The slope, the other fixed effects, their standard errors, σ̂² and ℓ of the
    exact data (the intercept differs by the reference: β_0 = β̃_0 − r β_t)."""
    for name in ("t", "x"):
        assert got.fe_params[name] == pytest.approx(ref.fe_params[name], rel=1e-10)
        assert got.bse_fe[name] == pytest.approx(ref.bse_fe[name], rel=1e-10)
    assert got.scale == pytest.approx(ref.scale, rel=1e-10)
    assert got.llf == pytest.approx(ref.llf, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("re_formula", [None, "1 + t"])
def test_nanosecond_timestamps_fit_exactly_in_process(re_formula):
    big, exact = _frames()
    if re_formula:
        # a random slope on t (about 1.7e18 next to a spread of about 5e8): the cov_re
        # reported in the raw basis cannot carry the fitted point in float64 (the
        # likelihood at the reported numbers lies far below llf in 60 digits), and the
        # fit says so; the fit itself (llf, slope, σ̂²) is still that of the exact data
        with pytest.warns(PrecisionWarning, match="random-effects column 't'"):
            got = dmixed.mixedlm("y ~ t + x", big, groups="g", re_formula=re_formula).fit()
    else:
        got = _fit(big, re_formula=re_formula)
    ref = _fit(exact, re_formula=re_formula)
    assert got.model.spec.references == {"t": int(big["t"].iloc[0])}
    _assert_same_fit(got, ref)
    # the intercept is the exact one's moved to t = 0, up to float64's rounding there
    moved = ref.fe_params["Intercept"] - ref.fe_params["t"] * BASE
    assert got.fe_params["Intercept"] == pytest.approx(moved, rel=1e-6)
    if re_formula:
        assert got.cov_re.loc["t", "t"] == pytest.approx(ref.cov_re.loc["t", "t"], rel=1e-6)


@pytest.mark.parametrize("npartitions", [1, 4])
def test_dask_fit_is_exact_and_partition_invariant(client, npartitions):
    import dask.dataframe as dd

    big, exact = _frames()
    ref = _fit(exact)
    got = dmixed.mixedlm("y ~ t + x", dd.from_pandas(big, npartitions=npartitions), groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DmixedWarning)
        _assert_same_fit(got.fit(client=client), ref)


def test_dask_synchronous_and_parquet_fits_are_exact(tmp_path):
    import dask
    import dask.dataframe as dd

    big, exact = _frames(seed=3)
    ref = _fit(exact)
    for i, rows in enumerate(np.array_split(np.arange(len(big)), 3)):
        big.iloc[rows].to_parquet(tmp_path / f"part{i}.parquet", index=False)
    with dask.config.set(scheduler="sync"):
        for ddf in (dd.from_pandas(big, npartitions=3), dd.read_parquet(str(tmp_path))):
            assert ddf["t"].dtype == np.int64
            _assert_same_fit(_fit(ddf), ref)


@settings(max_examples=8)
@given(
    below=st.integers(0, 2**40),
    dtype=st.sampled_from([np.int64, np.uint64]),
)
def test_offsets_near_2_to_62_fit_as_the_exact_differences(below, dtype):
    """Offsets near 2**62 (and past 2**63 for unsigned columns), where float64 rounds
    to 1024: the fit is that of the differences, computed exactly."""
    base = 2**62 - below if dtype is np.int64 else 2**63 + below
    big, exact = _frames(base, dtype, groups=12, per=6, seed=below % 7)
    _assert_same_fit(_fit(big), _fit(exact))


def test_results_save_load_and_prediction_keep_the_reference(tmp_path):
    big, exact = _frames(seed=5)
    got, ref = _fit(big), _fit(exact)
    new_big, new_exact = _frames(seed=6)
    for include_random in (False, True):
        pred = got.predict(new_big, include_random=include_random)
        want = ref.predict(new_exact, include_random=include_random)
        np.testing.assert_allclose(pred, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.fittedvalues, ref.fittedvalues, rtol=0, atol=1e-6)
    got.save(tmp_path / "res")
    loaded = dmixed.load(tmp_path / "res")
    assert loaded.spec.references == got.model.spec.references
    np.testing.assert_array_equal(loaded.predict(new_big), got.predict(new_big))


def test_spec_saves_its_references_and_older_specs_load_without():
    big, _ = _frames()
    spec = build_spec(big, "y ~ t + x", groups="g")
    state = spec.to_dict()
    assert state["references"] == {"t": int(big["t"].iloc[0])}
    assert ModelSpec.from_dict(state).references == spec.references
    older = {k: v for k, v in state.items() if k != "references"}
    assert ModelSpec.from_dict(older).references == {}
    with pytest.raises(CheckpointError, match="reference of column 'y'"):
        ModelSpec.from_dict({**state, "references": {"y": 5}})  # not a matrix's column
    with pytest.raises(CheckpointError, match="reference of column 't'"):
        ModelSpec.from_dict({**state, "references": {"t": 1.5}})


def test_statistics_map_saves_the_references_and_refuses_other_ones():
    std = Standardization.choose(
        np.arange(4.0),
        np.ones((4, 2)),
        np.ones((4, 1)),
        (0, 0),
        None,
        (np.array([0.0, 7.0]), np.zeros(1)),
    )
    assert Standardization.from_json(std.to_json(), 2, 1) == std
    plain = Standardization.choose(np.arange(4.0), np.ones((4, 2)), np.ones((4, 1)), (0, 0))
    assert "x_ref" not in plain.to_json()  # the saved form of older versions
    with pytest.raises(CheckpointError, match="different references"):
        plain.conversion_to(std)
    # the estimates map back with the row shift and the reference
    assert std.fe_matrix()[0, 1] == std.x_shift[1] + 7.0


@pytest.mark.parametrize(
    "formula",
    ["y ~ np.log(t) + x", "y ~ I(t - 1700000000000000000) + x", "y ~ t:x + x", "y ~ 0 + t + x"],
)
def test_other_uses_are_read_as_floats_with_a_warning(formula):
    """Only a term of its own in a matrix with an intercept is a reparametrization."""
    big, _ = _frames()
    with pytest.warns(PrecisionWarning, match="column 't' holds integers beyond"):
        spec = build_spec(big, formula, groups="g")
        spec.transform(big)
    assert spec.references == {}


def test_the_response_and_variance_components_keep_floats():
    big, _ = _frames()
    big["w"] = big["t"]
    with pytest.warns(PrecisionWarning, match="column 'w'"):
        assert build_spec(big, "w ~ x", groups="g").references == {}
    with pytest.warns(PrecisionWarning, match="column 't'"):
        vc = build_spec(big, "y ~ x", groups="g", vc_formula={"v": "0 + t"})
        vc.transform(big)
    assert vc.references == {}


def test_integer_levels_and_group_keys_stay_exact():
    """Inside C() and as group keys, integers past 2**53 are compared in their own
    dtype: neighbours that float64 would merge stay apart."""
    big, _ = _frames()
    key = np.int64(2**62) + big["g"].to_numpy()  # 2**62 + 0, 1, 2 ...: one float64
    df = big.assign(g=key, h=np.int64(2**62) + big["g"].to_numpy() % 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DmixedWarning)
        res = dmixed.mixedlm("y ~ C(h) + x", df, groups="g").fit()
    assert len(res.random_effects) == 30
    assert len([n for n in res.fe_params.index if n.startswith("C(h)")]) == 2


def test_differences_are_exact_in_64_bit_integers():
    ref = 2**62 + 12345
    values = np.array([2**62, 2**62 + 2**52, ref, ref + 2**53 - 1], dtype=np.int64)
    got = referenced_values(values, ref, "t")
    want = [float(int(v) - ref) for v in values]
    np.testing.assert_array_equal(got, want)
    unsigned = np.array([2**63 + 2**53, 2**63, 2**63 + 5], dtype=np.uint64)
    np.testing.assert_array_equal(referenced_values(unsigned, 2**63, "t"), [2.0**53, 0, 5])
    nullable = pd.Series([ref + 3, None, ref - 3], dtype="Int64")
    np.testing.assert_array_equal(referenced_values(nullable, ref, "t"), [3.0, np.nan, -3.0])
    floats = pd.Series([float(ref), np.nan])
    np.testing.assert_array_equal(referenced_values(floats, ref, "t"), [float(ref) - ref, np.nan])


def test_a_span_beyond_2_to_53_about_the_reference_warns():
    # -2**63 away (int64's least value), and one more: past int64, taken in float64
    far = np.array([2**62, -(2**62), -(2**62) - 1, 2**62 + 1], dtype=np.int64)
    with pytest.warns(PrecisionWarning, match="spans more than 2\\*\\*53 about its reference"):
        got = referenced_values(far, 2**62, "t")
    assert got.tolist() == [0.0, -(2.0**63), -(2.0**63), 1.0]


def test_estimates_move_to_the_rows_coordinates():
    big, _ = _frames()
    spec = build_spec(big, "y ~ t + x", groups="g", re_formula="1 + t")
    x_ref, z_ref = column_references(spec)
    assert x_ref.tolist() == [0.0, float(spec.references["t"]), 0.0]
    fe, blup = design_coordinates(spec, [1.0, 2.0, 3.0], np.array([[1.0, 0.5]]))
    assert fe[0] == 1.0 + 2.0 * x_ref[1] and fe[1:].tolist() == [2.0, 3.0]
    assert blup[0, 0] == 1.0 + 0.5 * z_ref[1]
    plain = build_spec(big.assign(t=big["t"] - BASE), "y ~ t + x", groups="g")
    assert column_references(plain) is None


@pytest.mark.parametrize("dask_input", [False, True])
def test_a_quoted_column_is_read_about_its_reference_as_a_lookup_is(dask_input):
    """``Q("t x")`` reads the column as itself, as ``t`` does: the same reference and
    the same fit (main read it as floats, rounded, with a warning)."""
    big, _ = _frames(seed=7)
    big = big.assign(**{"t x": big["t"]})
    data, scheduler = big, contextlib.nullcontext()
    if dask_input:
        import dask
        import dask.dataframe as dd

        data, scheduler = dd.from_pandas(big, npartitions=3), dask.config.set(scheduler="sync")
    ref = _fit(big)
    with scheduler:
        got = _fit(data, 'y ~ Q("t x") + x')
    assert got.model.spec.references == {"t x": int(big["t"].iloc[0])}
    assert got.llf == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(got.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(got.bse_fe.to_numpy(), ref.bse_fe.to_numpy(), rtol=1e-10)
    # the spec saves and loads its reference, and reads new rows about it
    spec = got.model.spec
    assert ModelSpec.from_dict(spec.to_dict()).references == spec.references
    new, _ = _frames(seed=8)
    new = new.assign(**{"t x": new["t"]})
    np.testing.assert_allclose(got.predict(new), ref.predict(new), rtol=1e-12, atol=1e-6)


def test_a_quoted_column_of_the_random_effects_is_read_about_its_reference():
    big, _ = _frames()
    big = big.assign(**{"t x": big["t"]})
    with pytest.warns(PrecisionWarning, match="random-effects column"):
        got = dmixed.mixedlm('y ~ Q("t x") + x', big, groups="g", re_formula='1 + Q("t x")').fit()
    with pytest.warns(PrecisionWarning, match="random-effects column"):
        ref = dmixed.mixedlm("y ~ t + x", big, groups="g", re_formula="1 + t").fit()
    assert got.model.spec.references == {"t x": int(big["t"].iloc[0])}
    assert got.llf == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(got.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-10)
