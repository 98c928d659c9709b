"""The optimizer's record (dmixed.fit.summary)."""

from __future__ import annotations

import dataclasses

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
