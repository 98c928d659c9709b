"""Text group keys in process: numbered from their Arrow column (or categories) by the
design, the fit bitwise the fit of the same groups as integer codes, and the same for
every dtype the text comes in (pandas' ``str``, ``object``, a categorical)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dmixed
from dmixed.errors import DroppedRowsWarning

from .._synth import make_data

#: group names whose sorted order (Python's, code points) is the integer order of
#: their index: non-ASCII, other planes, the empty string
NAMES = sorted(
    ["", "a", "B", "b", "é", "ä", "z", "\uffff", "\U0001f600", "日本", "ab", "a b"]
    + [f"g{i:02d}" for i in range(18)]
)


@pytest.fixture(scope="module")
def data():
    df = make_data(n_groups=len(NAMES), seed=5, max_size=12)
    ids = pd.factorize(df["g"], sort=True)[0]
    names = np.array(NAMES, dtype=object)[ids]
    return df.assign(g=ids.astype(np.int64)), names


def _fit(df, kernels, monkeypatch, **kw):
    monkeypatch.setenv("DMIXED_KERNELS", kernels)
    model = dmixed.mixedlm("y ~ x1 + x2", df, groups="g", re_formula="~x1", **kw)
    return model, model.fit()


def _same_fit(got, want):
    assert got.llf == want.llf
    np.testing.assert_array_equal(got.params.to_numpy(), want.params.to_numpy())
    np.testing.assert_array_equal(got.bse.to_numpy(), want.bse.to_numpy())
    np.testing.assert_array_equal(
        np.array([v.to_numpy() for v in got.random_effects.values()]),
        np.array([v.to_numpy() for v in want.random_effects.values()]),
    )


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["str", object, "category", "arrow-dictionary"])
def test_text_keys_fit_as_their_integer_codes(data, dtype, kernels, monkeypatch):
    df, names = data
    _, want = _fit(df, kernels, monkeypatch)
    if dtype == "arrow-dictionary":
        keys = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(names).dictionary_encode()))
    else:
        keys = pd.Series(names, dtype=dtype)
    model, got = _fit(df.assign(g=keys), kernels, monkeypatch)
    # numbered from the column, but object keys (a Python object a row) as before
    assert (model.rows.group_codes is None) == (dtype is object)
    _same_fit(got, want)
    present = [NAMES[i] for i in sorted(set(df["g"]))]
    assert list(got.group_labels) == present == list(got.random_effects)
    assert model.group_labels == present


def test_arrow_and_object_keys_give_one_model_and_saved_results(data, tmp_path):
    df, names = data
    fits = {}
    for dtype in ("str", object):
        model = dmixed.mixedlm(
            "y ~ x1 + x2", df.assign(g=pd.Series(names, dtype=dtype)), groups="g", re_formula="~x1"
        )
        fits[dtype] = model.fit()
        # the design numbered the Arrow keys itself (object keys as before), and the
        # rows' keys are the labels
        coded = model.rows.group_codes
        if dtype == "str":
            assert coded is not None and not coded[0].flags.writeable
            np.testing.assert_array_equal(coded[1][coded[0]], model.rows.groups)
        assert model.rows.groups.tolist() == names.tolist()
    _same_fit(fits["str"], fits[object])
    fits["str"].save(tmp_path / "fit")
    loaded = dmixed.load(tmp_path / "fit")
    assert list(loaded.group_labels) == list(fits[object].group_labels)
    _same_fit(loaded, fits[object])


@pytest.mark.parametrize("dtype", ["str", object])
def test_missing_text_keys_dropped_as_the_rows_of_missing_codes(data, dtype):
    df, names = data
    missing = np.zeros(len(df), dtype=bool)
    missing[::7] = True
    keys = pd.Series(names, dtype=object)
    keys[missing] = None if dtype is object else np.nan
    with pytest.warns(DroppedRowsWarning):
        got = dmixed.mixedlm(
            "y ~ x1 + x2",
            df.assign(g=keys.astype(dtype)),
            groups="g",
            re_formula="~x1",
            missing="drop",
        ).fit()
    want = dmixed.mixedlm("y ~ x1 + x2", df[~missing], groups="g", re_formula="~x1").fit()
    _same_fit(got, want)
    assert list(got.group_labels) == [NAMES[i] for i in sorted(set(df["g"][~missing]))]


@pytest.mark.parametrize("dtype", ["str", object, "category"])
def test_text_keys_written_into_groups_raise_or_are_fitted(data, dtype):
    # the codes numbered from the column hold only for the keys as they were: a write
    # into the model's groups raises; keys made writeable again are numbered afresh
    df, names = data
    model = dmixed.mixedlm("y ~ x1", df.assign(g=pd.Series(names, dtype=dtype)), groups="g")
    if dtype is not object:  # (object keys are not numbered from their column)
        with pytest.raises(ValueError, match="read-only"):
            model.groups[:20] = model.groups[0]
        model.groups.flags.writeable = True
    model.groups[:20] = model.groups[0]
    written = pd.Series(model.groups.copy(), dtype=object)
    want = dmixed.mixedlm("y ~ x1", df.assign(g=written), groups="g").fit()
    got = model.fit()
    assert got.llf == want.llf
    assert list(got.random_effects) == list(want.random_effects)


def test_text_keys_stay_read_only_after_pickling(data):
    df, names = data
    model = dmixed.mixedlm("y ~ x1", df.assign(g=pd.Series(names, dtype="str")), groups="g")
    back = pickle.loads(pickle.dumps(model))
    assert back.rows.group_codes is not None
    for a in (back.groups, *back.rows.group_codes):
        assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        back.groups[0] = back.groups[-1]
    assert back.fit().llf == model.fit().llf
