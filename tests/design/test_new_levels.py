"""dmixed.design.new_levels: new rows bring new levels to nested variance components
(``dmixed update``), and the statistics added to the old ones are those of all rows."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.design import ModelSpec
from dmixed.design.new_levels import grown_spec, vc_only_columns
from dmixed.engines.local import statistics_from_arrays
from dmixed.errors import DataError
from dmixed.model import MixedLM
from dmixed.stats import checkpoint

from .._synth import make_nested_ids

VC = {"id": "0 + C(id)"}


@pytest.fixture(scope="module")
def batches():
    old = make_nested_ids(range(20))
    new = pd.concat(
        [
            make_nested_ids(range(20, 30), seed=1),  # new groups, their own ids
            make_nested_ids([3], ids=[7], seed=2),  # an old group, an id never seen
            make_nested_ids([4], ids=[0], seed=3),  # an old group, more rows of an old id
        ],
        ignore_index=True,
    )
    return old, new


def _statistics(spec, data, columns=None):
    with dask.config.set(scheduler="sync"):
        stats = MixedLM.from_spec(spec, data).statistics(standardization=columns)
    return checkpoint.GroupArrays.from_statistics(stats, ragged=True)


@pytest.mark.parametrize("dask_input", [False, True])
def test_new_nested_levels_give_the_statistics_of_all_rows(batches, dask_input):
    """Was: "column 'id' has levels not seen when the model spec was built".  Now the
    spec grows to the one a fit of all rows builds, the old statistics are renumbered,
    and the merged statistics give that fit's likelihood."""
    old_rows, new_rows = batches
    kw = {"groups": "g", "vc_formula": VC, "re_formula": "1"}
    first = dmixed.mixedlm("y ~ x", old_rows, **kw)
    old = _statistics(first.spec, old_rows)
    saved = ModelSpec.from_dict(first.spec.to_dict())
    data = dd.from_pandas(new_rows, npartitions=2) if dask_input else new_rows
    with dask.config.set(scheduler="sync"):
        spec, maps = grown_spec(saved, data)
    full = dmixed.mixedlm("y ~ x", pd.concat([old_rows, new_rows]), **kw)
    assert spec.vc_column_names == full.spec.vc_column_names
    assert spec.levels["id"] == full.spec.levels["id"]
    (cmap,) = maps
    assert [spec.vc_column_names[0][j] for j in cmap] == saved.vc_column_names[0]
    merged = checkpoint.merge(old.renumbered(maps), _statistics(spec, data, old.columns))
    model = MixedLM.from_statistics(statistics_from_arrays(merged), spec)
    ref = full.fit()
    for reml in (True, False):
        model.reml = full.reml = reml
        at = ref.params_object
        assert model.loglike(at) == pytest.approx(full.loglike(at), rel=1e-12, abs=1e-12)
    res = model.fit()
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-7)
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=1e-5)


def test_nothing_new_or_no_nested_component_leaves_the_spec(batches):
    old_rows, _ = batches
    spec = dmixed.mixedlm("y ~ x", old_rows, groups="g", vc_formula=VC).spec
    assert vc_only_columns(spec) == ["id"]
    assert grown_spec(spec, old_rows.iloc[:40]) == (spec, None)
    plain = dmixed.mixedlm("y ~ x", old_rows, groups="g").spec
    assert vc_only_columns(plain) == [] and grown_spec(plain, old_rows) == (plain, None)


def test_levels_of_a_fixed_effect_do_not_grow(batches):
    """A column the fixed effects read keeps its levels (its coefficients would change):
    new rows with a new level are refused as before."""
    old_rows, new_rows = batches
    old_rows = old_rows.assign(site=np.arange(len(old_rows)) % 2)
    new_rows = new_rows.assign(site=2)
    kw = {"groups": "g", "vc_formula": {"s": "0 + C(site)"}}
    spec = dmixed.mixedlm("y ~ x + C(site)", old_rows, **kw).spec
    assert vc_only_columns(spec) == []
    assert grown_spec(spec, new_rows) == (spec, None)
    with pytest.raises(DataError, match="levels not seen"):
        spec.transform(new_rows)


def test_levels_of_a_random_effect_do_not_grow(batches):
    old_rows, new_rows = batches
    old_rows = old_rows.assign(site=np.arange(len(old_rows)) % 2)
    new_rows = new_rows.assign(site=np.arange(len(new_rows)) % 3)
    kw = {"groups": "g", "re_formula": "0 + C(site)", "vc_formula": {"v": "0 + C(site) + x"}}
    spec = dmixed.mixedlm("y ~ x", old_rows, **kw).spec
    with pytest.raises(DataError, match=r"new levels of column\(s\) 'site' would change"):
        grown_spec(spec, new_rows)


@pytest.mark.parametrize("dask_input", [False, True])
def test_new_rows_lacking_a_component_column_are_refused_naming_it(batches, dask_input):
    """Was pandas' bare ``KeyError: 'id'`` (the command line's whole message: "'id'")."""
    old_rows, new_rows = batches
    spec = dmixed.mixedlm("y ~ x", old_rows, groups="g", vc_formula=VC).spec
    lacking = new_rows.drop(columns="id")
    data = dd.from_pandas(lacking, npartitions=2) if dask_input else lacking
    with pytest.raises(DataError, match=r"column\(s\) not found in the data: 'id'") as err:
        grown_spec(spec, data)
    assert err.value.absent == ["id"]
