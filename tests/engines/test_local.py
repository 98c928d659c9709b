"""dmixed.engines.local: the in-process engine."""

from __future__ import annotations

import numpy as np

from dmixed import kernels
from dmixed.engines import LocalEngine


def test_re_gram_and_re_sums_read_the_moment_sums_once_made(monkeypatch):
    """Once the moment sums are made (the start reads them), ``re_gram`` and
    ``re_sums`` are theirs, not another pass over the groups; before, a pass (the
    moment sums cost G r⁴ and are not made for them)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(12, 5, 3))
    zz = np.einsum("gna,gnb->gab", z, z)
    zxy = np.einsum("gna,gnk->gak", z, rng.normal(size=(12, 5, 4)))
    engine = LocalEngine(zz, zxy)
    passes = []
    for name in ("re_gram", "re_sums"):
        original = getattr(kernels, name)

        def spy(block, q, original=original, name=name):
            passes.append(name)
            return original(block, q)

        monkeypatch.setattr(kernels, name, spy)
    before = engine.re_gram(2), engine.re_sums(2)
    assert passes == ["re_gram", "re_sums"]
    engine.moments()
    after = engine.re_gram(2), engine.re_sums(2)
    assert passes == ["re_gram", "re_sums"]
    for got, want in zip(after, (zz[:, :2, :2].sum(axis=0), zxy[:, :2].sum(axis=0)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    for got, earlier in zip(after, before, strict=True):
        np.testing.assert_allclose(got, earlier, rtol=1e-13)


def test_rows_whose_map_comes_from_their_gram_give_the_measured_statistics():
    """Rows whose columns' map is chosen from their gram (no weights, column-major, no
    components) get the statistics of the map measured on the rows, bit for bit: the
    same map, and the gram the data pass would make itself; shifted columns too (their
    gram is then the pass's own).  The measured map is the one chosen without the gram,
    handed to the pass (which then makes its own gram)."""
    import dmixed.engines.local as local
    from dmixed.design.arrays import RowData
    from dmixed.stats.standardize import Standardization

    rng = np.random.default_rng(4)
    n = 3000
    codes = np.repeat(np.arange(300), 10)
    for offset in (0.0, 1.7e9):
        x = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))
        x[:, 2] += offset
        rows = RowData(rng.normal(size=n) * 5.0 + 3.0, x, x[:, :2], codes)
        chosen = local.statistics_from_rows(rows, None, (0, 0))
        measured_map = Standardization.choose(
            rows.endog, rows.exog, rows.exog_re, (0, 0), rows.vc_vals, None, rows.weights
        )
        measured = local.statistics_from_rows(rows, measured_map, (0, 0))
        assert chosen.standardization == measured.standardization
        assert (chosen.standardization.x_shift[2] != 0.0) == (offset != 0.0)
        for a, b in zip(chosen.engine.gather(), measured.engine.gather(), strict=True):
            np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
        np.testing.assert_array_equal(chosen.glob.xyxy, measured.glob.xyxy)
