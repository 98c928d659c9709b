"""Saved sufficient statistics: skip the data pass on a rerun, add new data later.

The per-group statistics are sums over rows, so the statistics of old and new rows add
by group key: a model can be refitted on old + new data while reading only the new rows
(DESIGN.md §2).

Layout of a statistics directory::

    manifest.json          format, digest, model spec, inputs, layout, global sums, the
                           part files (groups, rows, bytes, sha256) and its own sha256
    groups/part-NNNNN.parquet   one row per group: key, size, lower triangle of Z̃'Z̃,
                           Z̃'[X y], and the column each variance-component slot holds

Written under a temporary name and renamed into place (never left half-written), and
verified when read (:func:`load_statistics`): the manifest's own sha256, every part
file's sha256, and invariants (groups and rows per part and in all, unique group keys,
the sums of the per-group blocks against ``[X y]'[X y]``).  Jobs that change a
statistics directory hold its lock (:func:`statistics_lock`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CheckpointError, CheckpointMismatch
from ..files import (
    atomic_directory,
    directory_lock,
    file_sha256,
    json_sha256,
    jsonable,
    read_parquet_sha256,
    read_versioned_json,
)
from .columns import (
    GROUP,
    matrix_column,
    put_lower_triangle,
    put_vc_slots,
    take_lower_triangle,
    take_vc_slots,
)
from .inputs import local_identity, remote_identity
from .layout import Layout
from .slots import number_pairs
from .standardize import Standardization
from .statistics import GlobalStats, chan_correction

FORMAT = "dmixed-statistics"
#: 3: the manifest lists every part file with its sha256 and holds its own sha256
#: (:data:`MANIFEST_SHA256`); version 2 had no checksums and is refused with a message
#: to rebuild.  2: the statistics are of standardized columns
#: (:mod:`dmixed.stats.standardize`), whose map the manifest holds; version 1 held raw
#: cross-products, which lose digits, and is refused with a message to rebuild.
FORMAT_VERSION = 3
#: the manifest's key of the sha256 of the rest of the manifest (:func:`manifest_sha256`)
MANIFEST_SHA256 = "manifest_sha256"
#: relative tolerance of the check of the per-group sums against ``[X y]'[X y]`` (on the
#: scale sqrt(Σw · Σw v²) of each entry; summation errors are ~1e-12 of it even for 1e9 rows)
SUMS_RTOL = 1e-6
#: groups per Parquet part file of a statistics directory
GROUPS_PER_FILE = 1_000_000
#: the column of each group's row count in the part files
GROUP_SIZE = "n"


@dataclass
class GroupArrays:
    """Per-group statistics gathered on the driver, in sorted group order."""

    labels: np.ndarray
    nobs: np.ndarray
    zz: np.ndarray  # (G, r, r)
    zxy: np.ndarray  # (G, r, p+1)
    slot_cols: list[np.ndarray]  # per VC component (G, m_l): global column id, -1 unused
    glob: GlobalStats
    layout: Layout
    standardization: Standardization | None = None  # None: raw columns

    @property
    def columns(self) -> Standardization:
        """The columns' map the statistics are in (identity for raw columns)."""
        if self.standardization is not None:
            return self.standardization
        return Standardization.identity(self.glob.k_fe, self.layout.k_re)

    def converted_to(self, target: Standardization) -> GroupArrays:
        """These statistics in ``target``'s column map (exact: see
        :meth:`~dmixed.stats.standardize.Standardization.conversion_to`)."""
        if self.columns == target:
            return self
        m_x, m_z = self.columns.conversion_to(target, self.layout.vc_widths)
        zz = np.einsum("ca,gcd,db->gab", m_z, self.zz, m_z)
        zxy = np.einsum("ca,gcj,jk->gak", m_z, self.zxy, m_x)
        within = self.glob.within
        glob = GlobalStats(
            m_x.T @ self.glob.xyxy @ m_x,
            self.glob.n,
            self.glob.sum_log_weights,
            None if within is None else m_x.T @ within @ m_x,
        )
        return GroupArrays(
            self.labels, self.nobs, zz, zxy, self.slot_cols, glob, self.layout, target
        )

    @classmethod
    def from_statistics(cls, stats) -> GroupArrays:
        zz, zxy = stats.engine.gather()
        return cls(
            np.asarray(stats.group_labels),
            np.asarray(stats.group_sizes),
            zz,
            zxy,
            [np.asarray(t) for t in stats.vc_slot_cols],
            stats.glob,
            stats.layout,
            stats.standardization,
        )


# ---------------------------------------------------------------------------
# Digest of inputs and model
# ---------------------------------------------------------------------------


def input_fingerprint(paths: list[str], storage_options: dict | None = None) -> list[dict]:
    """Path, size, modification time and content identity of every input, sorted.

    The content identity (:mod:`dmixed.stats.inputs`) is the sha256 of a Parquet file's
    footer, of a small other file's bytes, or of what a store reports for a URL (ETag,
    checksums, version): a file rewritten with the same size and time stamp is seen,
    without the whole read of the data a checkpoint exists to avoid.  A URL whose
    store's package is not installed is identified by its name (its reader says what
    is missing).

    Raises
    ------
    FileNotFoundError
        A URL that matches nothing.
    """
    out: list[dict] = []
    for p in sorted(paths):
        if "://" in p:
            try:
                content = remote_identity(p, storage_options)
            except ImportError:
                content = None
            out.append({"path": p, "size": None, "mtime_ns": None, "content": content})
            continue
        try:
            st = os.stat(p)
            content = local_identity(p, st.st_size)
            out.append(
                {
                    "path": os.path.abspath(p),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "content": content,
                }
            )
        except OSError:
            out.append({"path": p, "size": None, "mtime_ns": None, "content": None})
    return out


def expand_inputs(data: str | list[str]) -> list[str]:
    """Files a data argument stands for (a glob, a directory, a URL or a list)."""
    items = [data] if isinstance(data, str) else list(data)
    out: list[str] = []
    for item in items:
        if "://" in item:
            out.append(item)
        elif os.path.isdir(item):
            # a dataset directory: skip markers and side files (_SUCCESS, _metadata,
            # .crc, _temporary/), as Parquet readers do
            out.extend(
                sorted(
                    str(p)
                    for p in Path(item).rglob("*")
                    if p.is_file()
                    and not any(s.startswith((".", "_")) for s in p.relative_to(item).parts)
                )
            )
        else:
            matches = sorted(glob.glob(item))
            out.extend(matches if matches else [item])
    return out


def digest(spec_state: dict, inputs: list[dict]) -> str:
    """sha256 over the model spec and the input fingerprints."""
    blob = json.dumps({"spec": spec_state, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------


def _group_frame(arrays: GroupArrays, lo: int, hi: int) -> pd.DataFrame:
    """Groups ``lo:hi`` as one row each: key, size, lower triangle of Z̃'Z̃, Z̃'[X y], slots."""
    cols: dict[str, np.ndarray] = {GROUP: arrays.labels[lo:hi], GROUP_SIZE: arrays.nobs[lo:hi]}
    put_lower_triangle(cols, "zz", arrays.zz[lo:hi])
    zxy = arrays.zxy[lo:hi]
    for a in range(zxy.shape[1]):
        for j in range(zxy.shape[2]):
            cols[matrix_column("zxy", a, j)] = zxy[:, a, j]
    put_vc_slots(cols, [table[lo:hi] for table in arrays.slot_cols])
    return pd.DataFrame(cols)


def save_statistics(arrays: GroupArrays, path, manifest: dict) -> None:
    """Write statistics and their manifest to the directory ``path`` atomically.

    The manifest records every part file (groups, rows, bytes, sha256) and its own
    sha256 (:func:`manifest_sha256`), which :func:`load_statistics` verifies.  Callers
    that read, merge and write back a directory hold :func:`statistics_lock`.
    """

    with atomic_directory(path, marker="manifest.json", kind="statistics") as tmp:
        (tmp / "groups").mkdir()
        g = len(arrays.labels)
        parts = []
        for i, lo in enumerate(range(0, max(g, 1), GROUPS_PER_FILE)):
            frame = _group_frame(arrays, lo, min(lo + GROUPS_PER_FILE, g))
            name = f"groups/part-{i:05d}.parquet"
            frame.to_parquet(tmp / name, index=False)
            parts.append(
                {
                    "file": name,
                    "groups": len(frame),
                    "n": int(frame[GROUP_SIZE].sum()),
                    "bytes": (tmp / name).stat().st_size,
                    "sha256": file_sha256(tmp / name),
                }
            )
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **manifest,
            "layout": {"k_re": arrays.layout.k_re, "vc_widths": list(arrays.layout.vc_widths)},
            "k": int(arrays.zxy.shape[2]),
            "n_groups": int(g),
            "xyxy": arrays.glob.xyxy,
            "n": int(arrays.glob.n),
            "sum_log_weights": float(arrays.glob.sum_log_weights),
            "standardization": arrays.columns.to_json(),
            "within": arrays.glob.within,
            "parts": parts,
        }
        full = jsonable(full)
        full[MANIFEST_SHA256] = manifest_sha256(full)
        with open(tmp / "manifest.json", "w") as fh:
            json.dump(full, fh, indent=1, allow_nan=False)


def manifest_sha256(manifest: dict) -> str:
    """sha256 of a manifest without its :data:`MANIFEST_SHA256` key (canonical JSON):
    what :func:`save_statistics` records and :func:`read_manifest` verifies."""
    return json_sha256({k: v for k, v in manifest.items() if k != MANIFEST_SHA256})


def statistics_lock(path, timeout: float | None = None):
    """Context manager holding the lock of the statistics directory ``path``.

    Jobs that read a statistics directory and write it back (``dmixed fit
    --stats-dir``, ``dmixed update``) hold it from their first read to their last
    write, so concurrent jobs on one directory run one after another and none loses
    another's update.  A job waits for the lock up to ``timeout`` seconds (default
    :data:`dmixed.files.LOCK_TIMEOUT_S`, or the environment variable
    ``DMIXED_LOCK_TIMEOUT``); see :func:`dmixed.files.directory_lock`.

    Raises
    ------
    CheckpointError
        The lock stayed held by another job for ``timeout`` seconds, or cannot be created.
    """
    return directory_lock(path, kind="statistics", timeout=timeout)


def read_manifest(path) -> dict:
    """The manifest of a statistics directory, verified against its own sha256.

    Raises
    ------
    FileNotFoundError
        ``path`` has no ``manifest.json``.
    CheckpointError
        Not valid JSON, not a statistics manifest, a newer format, statistics written
        before format version 3 (rebuild them), or a manifest changed after it was
        written (its sha256 does not match).
    """
    file = Path(path) / "manifest.json"
    manifest = read_versioned_json(file, FORMAT, FORMAT_VERSION, "a dmixed statistics directory")
    version = manifest.get("format_version", 0)
    if version < 2:
        raise CheckpointError(
            f"{path} holds statistics of format version {version}, "
            "raw cross-products that lose digits on columns with a large offset: rebuild "
            "them from the data (`dmixed fit` with a new statistics directory)"
        )
    if version < FORMAT_VERSION:
        raise CheckpointError(
            f"{path} holds statistics of format version {version}, written without "
            "checksums of their files, which this dmixed verifies: rebuild them from the "
            "data (`dmixed fit` with a new statistics directory)"
        )
    try:
        intact = manifest.get(MANIFEST_SHA256) == manifest_sha256(manifest)
    except (TypeError, ValueError):  # not strict JSON (NaN) after an edit
        intact = False
    if not intact:
        raise CheckpointError(
            f"{file} was changed after dmixed wrote it (its {MANIFEST_SHA256} does not "
            "match its content): the statistics cannot be trusted; rebuild them from the "
            "data (`dmixed fit` with a new statistics directory)"
        )
    return manifest


_PART_NAME = re.compile(r"groups/part-\d{5}\.parquet")


def _part_files(root: Path, manifest: dict) -> list[dict]:
    """The manifest's part entries, after checking that the directory holds exactly
    those part files."""
    parts = manifest.get("parts")
    if not isinstance(parts, list) or not parts:
        raise CheckpointError(f"{root / 'manifest.json'} lists no part files")
    listed = [str(p.get("file")) if isinstance(p, dict) else "" for p in parts]
    bad = [f for f in listed if not _PART_NAME.fullmatch(f)]
    if bad:
        raise CheckpointError(f"{root / 'manifest.json'} lists part files {bad[:3]}")
    on_disk = {f"groups/{f.name}" for f in (root / "groups").glob("part-*.parquet")}
    missing = [f for f in listed if f not in on_disk]
    if missing:
        raise CheckpointError(
            f"{root / missing[0]} is missing ({len(missing)} of the {len(listed)} part "
            f"files listed in {root / 'manifest.json'}): the statistics directory is "
            "incomplete; rebuild it from the data"
        )
    extra = sorted(on_disk - set(listed))
    if extra:
        raise CheckpointError(
            f"{root / extra[0]} is not one of the part files listed in "
            f"{root / 'manifest.json'}: the statistics directory was changed after "
            "dmixed wrote it; rebuild it from the data"
        )
    return parts


def _read_part(root: Path, part: dict) -> pd.DataFrame:
    """One part file, read once from a memory map: its rows checked against the
    manifest's entry, then its sha256."""
    file = root / part["file"]
    frame, sha256 = read_parquet_sha256(file, ": rebuild the statistics from the data")
    manifest = root / "manifest.json"
    if len(frame) != part["groups"]:
        raise CheckpointError(
            f"{file} holds {len(frame)} groups, {manifest} says {part['groups']}: the "
            "file was changed after dmixed wrote it; rebuild the statistics from the data"
        )
    if GROUP_SIZE not in frame or int(frame[GROUP_SIZE].sum()) != part["n"]:
        rows = int(frame[GROUP_SIZE].sum()) if GROUP_SIZE in frame else "no"
        raise CheckpointError(
            f"{file} holds {rows} rows in its groups' counts, {manifest} says "
            f"{part['n']}: rebuild the statistics from the data"
        )
    if sha256 != part["sha256"]:
        raise CheckpointError(
            f"{file} was changed or damaged after dmixed wrote it (its sha256 does not "
            f"match {manifest}): rebuild the statistics from the data"
        )
    return frame


def _check_sums(arrays: GroupArrays, where: Path) -> None:
    """Refuse statistics whose groups do not add up to the manifest's totals: Σ n_i = n,
    unique keys, and (with an intercept in both ``X`` and ``Z``, columns of ones in
    every standardization) Σ_i Z̃_i'[X y] on the intercept row = the intercept row of
    ``[X y]'[X y]`` (the sums of weights and of weighted columns)."""
    problems = []
    if int(arrays.nobs.sum()) != arrays.glob.n or np.any(arrays.nobs < 0):
        problems.append(
            f"the groups' counts sum to {int(arrays.nobs.sum())} rows, the manifest says "
            f"{arrays.glob.n}"
        )
    if not pd.Index(arrays.labels).is_unique:
        problems.append("a group key appears more than once")
    e, xi = arrays.columns.z_intercept, arrays.columns.x_intercept
    if e >= 0 and xi >= 0 and len(arrays.labels):
        xyxy = arrays.glob.xyxy
        sums = arrays.zxy[:, e, :].sum(axis=0)
        sums[xi] = arrays.zz[:, e, e].sum()  # the sum of weights, as summed per group
        scale = np.sqrt(np.abs(xyxy[xi, xi] * np.diag(xyxy)))
        off = np.abs(sums - xyxy[xi]) > SUMS_RTOL * np.maximum(scale, np.finfo(float).tiny)
        if np.any(off):
            problems.append(
                "the per-group cross-products do not add up to [X y]'[X y] (columns "
                f"{np.flatnonzero(off).tolist()} of its intercept row)"
            )
    if problems:
        raise CheckpointError(
            f"{where} holds damaged statistics: {'; '.join(problems)}; rebuild them from the data"
        )


def load_statistics(path) -> tuple[GroupArrays, dict]:
    """Read statistics saved by :func:`save_statistics`, verified.

    Raises
    ------
    FileNotFoundError
        ``path`` has no ``manifest.json``.
    CheckpointError
        Naming the file: the manifest fails :func:`read_manifest`; a part file is
        missing, extra, unreadable, holds other groups or rows than the manifest says,
        or its sha256 differs; or the groups do not add up to the manifest's totals.
    """
    manifest = read_manifest(path)
    root = Path(path)
    frames = [_read_part(root, part) for part in _part_files(root, manifest)]
    frame = pd.concat(frames, ignore_index=True)
    try:
        arrays = _arrays_from(frame, manifest)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{root} holds damaged statistics: {type(exc).__name__}: {exc}"
        ) from exc
    if len(arrays.labels) != manifest["n_groups"]:
        raise CheckpointError(
            f"{root} holds {len(arrays.labels)} groups in its part files, its manifest "
            f"says {manifest['n_groups']}: rebuild the statistics from the data"
        )
    _check_sums(arrays, root)
    return arrays, manifest


def _arrays_from(frame: pd.DataFrame, manifest: dict) -> GroupArrays:
    """The statistics of the part files' rows and the manifest's global sums."""
    layout = Layout(int(manifest["layout"]["k_re"]), tuple(manifest["layout"]["vc_widths"]))
    r, k, g = layout.r, int(manifest["k"]), len(frame)
    zz = take_lower_triangle(frame, "zz", r, g)
    zxy = np.zeros((g, r, k))
    for a in range(r):
        for j in range(k):
            zxy[:, a, j] = frame[matrix_column("zxy", a, j)].to_numpy()
    slot_cols = take_vc_slots(frame, layout.vc_widths, g)
    within = manifest.get("within")
    glob_stats = GlobalStats(
        np.asarray(manifest["xyxy"], dtype=np.float64).reshape(k, k),
        int(manifest["n"]),
        float(manifest["sum_log_weights"]),
        None if within is None else np.asarray(within, dtype=np.float64).reshape(k, k),
    )
    return GroupArrays(
        frame[GROUP].to_numpy(),
        frame[GROUP_SIZE].to_numpy(),
        zz,
        zxy,
        slot_cols,
        glob_stats,
        layout,
        Standardization.from_json(manifest["standardization"], k - 1, layout.k_re),
    )


# ---------------------------------------------------------------------------
# Adding statistics of new rows
# ---------------------------------------------------------------------------


def merge(old: GroupArrays, new: GroupArrays) -> GroupArrays:
    """Statistics of old rows + statistics of new rows, added by group key.

    Groups are the union of both (sorted).  A variance-component column that a group
    already had keeps its slot; columns new to a group get the next free slots, so the
    padded layout may widen.  Every group's block is then re-embedded into the merged
    layout and the blocks are added.  The new statistics are first converted to the
    old ones' column map.
    """
    if old.layout.k_re != new.layout.k_re or old.zxy.shape[2] != new.zxy.shape[2]:
        raise CheckpointMismatch("the saved statistics are of a different model")
    new = new.converted_to(old.columns)  # each batch chose its own map: add in the old
    labels = pd.Index(old.labels).union(pd.Index(new.labels))
    labels = labels.sort_values()
    gi_old = labels.get_indexer(pd.Index(old.labels))
    gi_new = labels.get_indexer(pd.Index(new.labels))
    g = len(labels)
    q = old.layout.k_re
    widths: list[int] = []
    old_maps = [np.arange(q)[None, :].repeat(len(gi_old), 0)]
    new_maps = [np.arange(q)[None, :].repeat(len(gi_new), 0)]
    merged_tables = []
    offset = q
    for comp in range(old.layout.k_vc):
        t_old, t_new = old.slot_cols[comp], new.slot_cols[comp]
        table, m_old, m_new = _merge_slots(g, gi_old, t_old, gi_new, t_new)
        merged_tables.append(table)
        widths.append(table.shape[1])
        old_maps.append(offset + m_old)
        new_maps.append(offset + m_new)
        offset += table.shape[1]
    layout = Layout(q, tuple(widths))
    r = layout.r
    k = old.zxy.shape[2]
    zz = np.zeros((g, r, r))
    zxy = np.zeros((g, r, k))
    for src, gi, maps in ((old, gi_old, old_maps), (new, gi_new, new_maps)):
        idx = np.concatenate(maps, axis=1)  # (G_src, r_src): merged coordinate of each slot
        rows = gi[:, None, None]
        np.add.at(zz, (rows, idx[:, :, None], idx[:, None, :]), src.zz)
        np.add.at(zxy, (gi[:, None], idx), src.zxy)
    nobs = np.zeros(g, dtype=np.int64)
    np.add.at(nobs, gi_old, old.nobs)
    np.add.at(nobs, gi_new, new.nobs)
    glob_stats = GlobalStats(
        old.glob.xyxy + new.glob.xyxy,
        old.glob.n + new.glob.n,
        old.glob.sum_log_weights + new.glob.sum_log_weights,
        _merged_within(old, new, gi_old, gi_new),
    )
    return GroupArrays(
        labels.to_numpy(), nobs, zz, zxy, merged_tables, glob_stats, layout, old.standardization
    )


def _merged_within(old: GroupArrays, new: GroupArrays, gi_old, gi_new) -> np.ndarray | None:
    """Within-group cross-products of old + new rows: their sum plus Chan's correction
    ``U_a U_b/(U_a + U_b)(c_a − c_b)(c_a − c_b)'`` for every group in both (``U`` the
    group's weight on its intercept column, ``c`` its mean)."""
    if old.glob.within is None or new.glob.within is None:
        return None
    e = old.columns.z_intercept
    out = old.glob.within + new.glob.within
    shared, io, jn = np.intersect1d(gi_old, gi_new, return_indices=True)
    if e < 0 or shared.size == 0:
        return out
    return out + chan_correction(old.zz[io, e, e], old.zxy[io, e], new.zz[jn, e, e], new.zxy[jn, e])


def _merge_slots(g, gi_old, t_old, gi_new, t_new):
    """Merged slot table of one component and where each old/new slot goes in it.

    Unused slots (column -1) map to a harmless coordinate: their statistics are zero.
    """
    ncols = int(max(t_old.max(initial=-1), t_new.max(initial=-1))) + 1
    base = max(ncols, 1)
    go, so = np.nonzero(t_old >= 0)
    key_old = gi_old[go].astype(np.int64) * base + t_old[go, so]
    gn, sn = np.nonzero(t_new >= 0)
    key_new = gi_new[gn].astype(np.int64) * base + t_new[gn, sn]
    fresh = np.setdiff1d(key_new, key_old)  # sorted: by group, then column
    count_old = np.bincount(gi_old[go], minlength=g)
    # columns new to a group follow its old ones, numbered by the one slot rule
    fresh_rank, _ = number_pairs(fresh, base)
    fresh_slot = count_old[fresh // base] + fresh_rank
    all_keys = np.concatenate([key_old, fresh])
    all_slots = np.concatenate([so, fresh_slot]).astype(np.int64)
    width = int(all_slots.max()) + 1 if all_slots.size else 0
    table = np.full((g, width), -1, dtype=np.int64)
    table[all_keys // base, all_slots] = all_keys % base
    order = np.argsort(all_keys)
    sorted_keys, sorted_slots = all_keys[order], all_slots[order]
    m_old = np.zeros(t_old.shape, dtype=np.int64)
    m_old[go, so] = so  # old slots keep their place
    unused_old = t_old < 0
    m_old[unused_old] = np.broadcast_to(np.arange(t_old.shape[1]), t_old.shape)[unused_old]
    m_new = np.zeros(t_new.shape, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, key_new)
    m_new[gn, sn] = sorted_slots[pos]
    # unused new slots: any coordinate inside the width (their statistics are zero)
    m_new[t_new < 0] = 0
    if width == 0:
        m_old[:] = 0
        m_new[:] = 0
    return table, np.minimum(m_old, max(width - 1, 0)), m_new
