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
