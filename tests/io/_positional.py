"""Results directories as dmixed wrote them before format 7: the random effects'
columns numbered (``re[0]``, ``cov[1,0]``, ``cov_root[0,1]``, ``w[0]``) rather than
named, and an older ``format_version``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dmixed.files import file_sha256
from dmixed.io.results_dir import ESTIMATES_SHA256, estimates_sha256
from dmixed.stats import columns


def numbered_names(doc: dict) -> dict[str, str]:
    """Each named column a results directory of ``estimates.json`` ``doc`` may hold →
    the numbered name an earlier dmixed gave it."""
    labels = columns.effect_labels(
        doc["model"]["exog_re_names"],
        doc["model"]["vc_names"],
        doc["estimates"]["vc_slot_widths"],
    )
    out = {}
    for a, la in enumerate(labels):
        for prefix in ("re", "w"):
            out[f"{prefix}[{la}]"] = f"{prefix}[{a}]"
        for b, lb in enumerate(labels):
            for prefix in ("cov", "cov_root"):
                out[f"{prefix}[{la},{lb}]"] = f"{prefix}[{a},{b}]"
    return out


def as_numbered(out: Path, version: int) -> None:
    """Rewrite the results directory ``out`` as dmixed of format ``version`` (< 7) wrote
    it: every table's columns numbered, its sha256 recorded, ``format_version`` set
    (the document resealed where it records its own sha256)."""
    doc = json.loads((out / "estimates.json").read_text())
    rename = numbered_names(doc)
    for name in doc["files"]:
        table = pd.read_parquet(out / name)
        table.rename(columns=rename).to_parquet(out / name, index=False)
        doc["files"][name] = {"sha256": file_sha256(out / name)}
    doc["format_version"] = version
    if ESTIMATES_SHA256 in doc:
        doc[ESTIMATES_SHA256] = estimates_sha256(doc)
    (out / "estimates.json").write_text(json.dumps(doc))
