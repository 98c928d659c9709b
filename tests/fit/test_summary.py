"""The optimizer's record (dmixed.fit.summary)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dmixed.fit.summary import DEFAULTS, OptSummary


def test_settings_are_the_fields_with_metadata_in_field_order():
    """``settings()`` (its names found once per process) is every field that carries
    metadata, in the dataclass's order, with the instance's values."""
    record = DEFAULTS.start(DEFAULTS.initial, maxiter=7)
    fields = [f.name for f in dataclasses.fields(OptSummary) if f.metadata]
    expected = {name: getattr(record, name) for name in fields}
    assert list(record.settings()) == list(expected)
    assert record.settings() == expected
    assert record.settings()["maxiter"] == 7


def test_start_is_the_constructor_with_the_settings_by_name():
    """``start`` gives the settings by position: the record the constructor makes from
    them by name, field for field and in field order, with its own new lists and
    arrays; an unknown setting is refused."""
    template = OptSummary(maxiter=9, handover_gtol=0.0)
    initial = [0.5, -0.25, 1.0]
    record = template.start(initial, gtol=1e-6, lbfgs_maxcor=3)
    expected = OptSummary(
        initial=np.array(initial, dtype=np.float64),
        **{**template.settings(), "gtol": 1e-6, "lbfgs_maxcor": 3},
    )
    assert list(vars(record)) == list(vars(expected))
    for name, value in vars(expected).items():
        got = getattr(record, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes()
        elif isinstance(value, float) and np.isnan(value):
            assert np.isnan(got)
        else:
            assert got == value and type(got) is type(value), name
    assert record.history is not DEFAULTS.history and record.methods is not DEFAULTS.methods
    assert record.initial is not initial
    with pytest.raises(TypeError, match="not settings of OptSummary: \\['tol'\\]"):
        DEFAULTS.start(initial, tol=1.0)


def test_a_fit_starts_its_optimization_record_once(monkeypatch):
    """The start chosen is set on the record made for the Newton settings: one
    ``OptSummary.start`` a fit, whose history the results report."""
    import dmixed
    from dmixed.fit import summary

    calls = []
    start = summary.OptSummary.start

    def counted(self, *args, **kwargs):
        calls.append(self)
        return start(self, *args, **kwargs)

    monkeypatch.setattr(summary.OptSummary, "start", counted)
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 4)
    x = np.column_stack([np.ones(g.size), rng.normal(size=g.size)])
    y = x @ [1.0, 0.5] + rng.normal(size=30)[g] + rng.normal(size=g.size)
    dmixed.MixedLM(y, x, g).fit()
    assert len(calls) == 1
