"""dmixed.design.coded: fixed-effects matrices built from level codes are formulaic's,
bit for bit, and anything else is left to formulaic."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmixed.design.coded as coded
import dmixed.design.matrices as matrices
import dmixed.design.spec as spec_module
from dmixed.design import ModelSpec, build_spec
from dmixed.errors import DmixedError

from .frames import make_df


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _formulaic(spec: ModelSpec, frame: pd.DataFrame, monkeypatch, **kw):
    """``spec.transform`` with the coded plan switched off (formulaic's matrices)."""
    with monkeypatch.context() as m:
        m.setattr(ModelSpec, "coded_plan", lambda self: None)
        return spec.transform(frame, **kw)


def _assert_same(spec: ModelSpec, frame: pd.DataFrame, monkeypatch, **kw) -> None:
    fast = spec.transform(frame, **kw)
    slow = _formulaic(spec, frame, monkeypatch, **kw)
    for name in ("endog", "exog", "exog_re"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=name)
    assert fast.exog.flags.c_contiguous == slow.exog.flags.c_contiguous
    np.testing.assert_array_equal(fast.groups, slow.groups)
    assert fast.n_dropped == slow.n_dropped


CASES = [
    ("y ~ x1 + C(a)", None, True),
    ("y ~ C(k) + x1", "1 + x1", True),  # a numeric column inside C()
    ("y ~ a + x1", None, True),  # a label column looked up as it is
    ("y ~ 0 + C(a)", None, True),  # full rank
    ("y ~ C(a) + C(b) + x1 + x1:x2", "1", True),
    ("y ~ C(cls) + x2", None, True),  # 40 levels
    ("y ~ C(a, Sum) + x1", None, False),  # other contrasts: formulaic
    ("y ~ C(a):x1", None, False),  # a factor in an interaction
    ("y ~ C(a) * C(b)", None, False),
    ("y ~ np.log(x2) + C(a)", None, False),  # a function
    ("np.log(x2) ~ C(a)", None, True),  # the response is formulaic's (plain plan None)
    ("y ~ x1 + x2", None, False),  # no factor: the plain plan
]


@pytest.mark.parametrize(("formula", "re_formula", "coded"), CASES)
def test_coded_matrices_are_formulaics(formula, re_formula, coded, monkeypatch):
    df = make_df(300, seed=4)
    df.loc[::7, "x1"] = -0.0  # signed zeros kept
    spec = build_spec(df, formula, groups="g", re_formula=re_formula)
    assert (spec.coded_plan() is not None) == coded
    _assert_same(spec, df, monkeypatch)
    # partitions of one or a few rows: most levels absent
    for rows in ([5], [0, 1], list(range(10, 17)), []):
        _assert_same(spec, df.iloc[rows], monkeypatch)
    _assert_same(spec, df.drop(columns="y"), monkeypatch, response=False)
    _assert_same(spec, df.iloc[[3]].drop(columns="y"), monkeypatch, response=False)


def test_coded_matrices_with_missing_values_dropped(monkeypatch):
    df = make_df(200, seed=5)
    df.loc[[2, 9, 40], "a"] = None
    df.loc[[3, 50], "x1"] = np.nan
    df.loc[[4], "k"] = np.nan
    spec = build_spec(df, "y ~ x1 + C(a) + C(k)", groups="g", missing="drop")
    assert spec.coded_plan() is not None
    _assert_same(spec, df, monkeypatch)
    _assert_same(spec, df.iloc[:12], monkeypatch)
    assert spec.transform(df).n_dropped == 6


def test_coded_matrices_with_dropped_columns(monkeypatch):
    df = make_df(200, seed=6)
    spec = build_spec(df, "y ~ x1 + C(a)", groups="g", drop_cols=["C(a)[T.mid]"])
    assert spec.coded_plan() is not None
    assert "C(a)[T.mid]" not in spec.exog_names
    _assert_same(spec, df, monkeypatch)
    _assert_same(spec, df.iloc[[1]], monkeypatch)


def test_missing_values_kept_go_to_formulaic(monkeypatch):
    """``missing="none"`` keeps a missing label: the coded matrix declines (a code that
    is not a level) and formulaic decides, as without the plan."""
    df = make_df(100, seed=7)
    spec = build_spec(df, "y ~ x1 + C(a)", groups="g", missing="none")
    bad = df.copy()
    bad.loc[3, "a"] = None
    outcomes = []
    for fn in (spec.transform, lambda f: _formulaic(spec, f, monkeypatch)):
        try:
            dm = fn(bad)
        except DmixedError as e:
            outcomes.append((type(e), str(e)))
        else:
            outcomes.append(_bits(dm.exog).tolist())
    assert outcomes[0] == outcomes[1]


def test_unknown_level_is_refused_either_way(monkeypatch):
    df = make_df(100, seed=8)
    spec = build_spec(df, "y ~ x1 + C(a)", groups="g")
    new = df.iloc[:3].assign(a="nowhere")
    errors = []
    for fn in (spec.transform, lambda f: _formulaic(spec, f, monkeypatch)):
        with pytest.raises(DmixedError) as info:
            fn(new)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


def test_non_finite_numeric_column_named_as_formulaics(monkeypatch):
    df = make_df(60, seed=9)
    spec = build_spec(df, "y ~ x1:x2 + C(a)", groups="g")
    assert spec.coded_plan() is not None
    big = df.assign(x1=1e200, x2=1e200)
    messages = []
    for fn in (spec.transform, lambda f: _formulaic(spec, f, monkeypatch)):
        with pytest.raises(DmixedError) as info:
            fn(big)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "x1:x2" in messages[0]


def test_caller_names_leave_the_plan_off():
    """A caller's name could mean ``C`` or a column otherwise: formulaic evaluates."""
    import dataclasses

    from dmixed.design.scope import CallerNames

    df = make_df(60, seed=10)
    spec = build_spec(df, "y ~ x1 + C(a)", groups="g")
    assert spec.coded_plan() is not None
    named = dataclasses.replace(spec, caller_names=CallerNames({"C": print}))
    assert named.coded_plan() is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n_levels=st.integers(2, 30),
    formula=st.sampled_from(
        [
            "y ~ x + C(f)",
            "y ~ C(f) + x",
            "y ~ 0 + C(f) + x",
            "y ~ x + C(f) + C(h) + x:z",
            "y ~ f + z",
            "y ~ C(m) + x",
            "y ~ 1 + C(m) + C(f)",
        ]
    ),
    text=st.booleans(),
)
def test_coded_matrices_are_formulaics_on_any_partition(data, n_levels, formula, text):
    n = 2 * n_levels + 10
    floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    x = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
    z = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)))
    codes = np.arange(n) % n_levels  # every level in the whole data
    names = np.array([f"L{i}" for i in range(n_levels)], dtype=object)
    df = pd.DataFrame(
        {
            "y": np.linspace(-1, 1, n),
            "x": x,
            "z": z,
            "f": names[codes] if text else codes * 3 - 7,
            "h": np.array(["p", "q", "r"], dtype=object)[np.arange(n) % 3],
            "m": np.arange(n) % 4 + 0.5,  # float levels inside C()
            "g": np.arange(n) % 5,
        }
    )
    if not text and formula.startswith("y ~ f"):
        formula = "y ~ C(f) + z"
    spec = build_spec(df, formula, groups="g")
    assert spec.coded_plan() is not None
    rows = data.draw(st.lists(st.integers(0, n - 1), max_size=8))
    part = df.iloc[rows]
    fast = spec.transform(part)
    with pytest.MonkeyPatch.context() as m:  # (hypothesis: no function-scoped fixture)
        slow = _formulaic(spec, part, m)
    assert spec.coded_plan() is not None
    np.testing.assert_array_equal(_bits(fast.exog), _bits(slow.exog))
    np.testing.assert_array_equal(_bits(fast.endog), _bits(slow.endog))


def test_coded_partitions_do_not_call_formulaic(monkeypatch):
    """Once the plan is learned, a partition's matrices come without formulaic (the
    point of the plan: its per-call cost on partitions of a row or two)."""
    df = make_df(200, seed=11)
    spec = build_spec(df, "y ~ x1 + C(cls)", groups="g")
    assert spec.coded_plan() is not None
    calls = []

    def counted(*args, **kw):
        calls.append(args)
        raise AssertionError("formulaic called")

    monkeypatch.setattr(matrices, "materialize", counted)
    monkeypatch.setattr(coded, "materialize", counted)
    for i in range(20):
        dm = spec.transform(df.iloc[[i]])
        assert dm.exog.shape == (1, len(spec.exog_names))
    assert calls == []


@pytest.mark.parametrize("formula", ["y ~ flag + C(a)", "y ~ C(flag) + x1", "y ~ C(a) + I(x1)"])
def test_booleans_and_other_factors_are_formulaics(formula, monkeypatch):
    """A boolean column is a factor of False and True (patsy's reading): whichever path
    builds it, the matrices are formulaic's."""
    df = make_df(120, seed=12).assign(flag=lambda d: d["x1"] > 0)
    spec = build_spec(df, formula, groups="g")
    _assert_same(spec, df, monkeypatch)
    for rows in ([0], [1, 2], list(range(30, 41))):
        _assert_same(spec, df.iloc[rows], monkeypatch)


def _counting(monkeypatch) -> list:
    """The specs whose coded plan is learned from here on (formulaic's matrix of the
    prototype each time)."""
    learned: list = []

    def counted(spec):
        learned.append(spec)
        return coded.find_coded_plan(spec)

    monkeypatch.setattr(spec_module, "find_coded_plan", counted)
    return learned


def _no_formulaic(monkeypatch) -> None:
    def refused(*args, **kw):
        raise AssertionError("formulaic called")

    monkeypatch.setattr(matrices, "materialize", refused)
    monkeypatch.setattr(coded, "materialize", refused)


def test_unpickled_copies_share_the_plan_learned_first(monkeypatch):
    """Dask unpickles a copy of the spec for each task where the graph holds it
    (``dd.from_pandas``): the copies in a process learn the plan once, and a copy of a
    spec whose plan was learned learns nothing."""
    df = make_df(200, seed=13)
    spec = build_spec(df, "y ~ x1 + C(cls)", groups="g")
    learned = _counting(monkeypatch)
    blob = pickle.dumps(spec)  # as the client ships it: the plan not learned yet
    copies = [pickle.loads(blob) for _ in range(6)]
    for i, copy in enumerate(copies):
        dm = copy.transform(df.iloc[[i, i + 1]])
        assert copy.coded_plan() is not None
        np.testing.assert_array_equal(
            _bits(dm.exog), _bits(_formulaic(spec, df.iloc[[i, i + 1]], monkeypatch).exog)
        )
    assert len(learned) == 1
    assert all(c.coded_plan() is copies[0].coded_plan() for c in copies)
    # the copy's plan is the one the spec itself uses, and a copy of a copy's too
    _no_formulaic(monkeypatch)
    assert spec.coded_plan() is copies[0].coded_plan()
    again = pickle.loads(pickle.dumps(copies[-1]))
    dm = again.transform(df.iloc[[3]])
    assert dm.exog.shape == (1, len(spec.exog_names))
    assert len(learned) == 1


def test_pickled_spec_carries_no_plan(monkeypatch):
    """What is pickled names the plan and holds none of it: the plan is derived where
    the spec is used, and a spec changed (``dataclasses.replace``) or of other data
    learns its own."""
    df = make_df(200, seed=14)
    spec = build_spec(df, "y ~ x1 + C(cls)", groups="g")
    size = len(pickle.dumps(spec))
    assert spec.coded_plan() is not None
    assert len(pickle.dumps(spec)) == size
    assert not any(isinstance(v, coded.CodedPlan) for v in spec.__getstate__().values())
    learned = _counting(monkeypatch)
    changed = dataclasses.replace(spec)
    assert changed.coded_plan() is not None and len(learned) == 1
    other = build_spec(df[df["cls"] != df["cls"].iloc[0]], "y ~ x1 + C(cls)", groups="g")
    copy = pickle.loads(pickle.dumps(other))
    assert copy.coded_plan().width == len(other.exog_names) != len(spec.exog_names)
    assert len(learned) == 2


@pytest.mark.parametrize("entries", [1, 7, 1000])
def test_coded_matrices_built_block_by_block_are_formulaics(entries, monkeypatch):
    """The factors' columns copied a few rows at a time (one row where a block is
    narrower than the factor) are formulaic's, bit for bit."""
    monkeypatch.setattr(coded, "FILL_BLOCK_ENTRIES", entries)
    df = make_df(300, seed=8)
    for formula in ("y ~ C(cls) + x2", "y ~ C(a) + C(b) + x1 + x1:x2"):
        spec = build_spec(df, formula, groups="g")
        assert spec.coded_plan() is not None
        _assert_same(spec, df, monkeypatch)
        _assert_same(spec, df.iloc[[4, 9, 11]], monkeypatch)
