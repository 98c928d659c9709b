"""Saved sufficient statistics: skip the data pass on a rerun, add new data later.

The per-group statistics are sums over rows, so the statistics of old and new rows add
by group key: a model can be refitted on old + new data while reading only the new rows
(DESIGN.md §2).

Layout of a statistics directory::

    manifest.json          format, digest, model spec, inputs, layout, global sums, the
                           part files (groups, rows, bytes, sha256) and its own sha256
    groups/part-NNNNN.parquet   one row per group: key, size, lower triangle of Z̃'Z̃,
                           Z̃'[X y], and the column each variance-component slot holds
                           (held ragged, format 4: of the ``exog_re`` columns only)
    slots/part-NNNNN.parquet    held ragged (format 4, 5) only: one row per slot a group
                           has (:mod:`dmixed.stats.checkpoint_slots`)
    cross/part-NNNNN.parquet    held crossed (format 5) only: one row per co-occurring
                           pair of slots of a group (:mod:`dmixed.stats.crossed_stats`)

Statistics whose engine holds the variance components structured are saved ragged
(format version 4, ``"storage": "ragged"``): G q (q + k) values for the groups and
1 + q + k per used slot, never the padded G × r × r; those held crossed (components
sharing rows, format version 5, ``"storage": "crossed"``) also one row per co-occurring
pair of slots with a non-zero sum, and in the manifest's ``cross_diagonal`` the
components the fit eliminated (a co-occurrence summing to exactly zero is not written,
so the sums alone could allow another elimination).  Other statistics are saved padded
as format version 3, which older versions read; all load.  Statistics of prior weights
scaled in them (the map's ``weight_scale``, not 1) are written as format version 6,
whatever their storage, which older versions refuse rather than misread.  The manifest's
``weight_span`` (with prior weights) is ``[log2 smallest, log2 largest]`` of the raw
weights of all the rows summed: rows added later are judged with it as a fit of all the
rows judges them (:func:`~dmixed.stats.standardize.added_weight_span`); older versions
ignore it, and statistics saved without it take added rows whose weights lie within
``2^±64`` of their weights' scale only.

Written under a temporary name and renamed into place (never left half-written), and
verified when read (:func:`load_statistics`): the manifest's own sha256, every part
file's sha256, and invariants (groups and rows per part and in all, unique group keys,
the sums of the per-group blocks against ``[X y]'[X y]``).  Jobs that change a
statistics directory hold its lock (:func:`statistics_lock`).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CheckpointError
from ..files import (
    atomic_directory,
    directory_lock,
    file_sha256,
    jsonable,
    read_parquet_sha256,
    read_versioned_json,
    records_own_sha256,
    without_key_sha256,
)
from .checkpoint_merge import merge as merge  # re-exported: checkpoint.merge
from .checkpoint_slots import (
    cross_columns,
    cross_from_frame,
    ragged_from_slots,
    slot_frame,
    slot_rows,
)
from .columns import (
    GROUP,
    matrix_column,
    put_lower_triangle,
    put_vc_slots,
    take_lower_triangle,
    take_vc_slots,
)
from .crossed_stats import slot_index
from .group_arrays import (
    CentredArrays,
    CentredGroups,
    GroupArrays,
    centred_arrays,
    no_padding,
)
from .inputs import local_identity, remote_identity
from .last_fit import LAST_FIT_FILE
from .layout import Layout
from .standardize import Standardization
from .statistics import GlobalStats

FORMAT = "dmixed-statistics"
#: 3: the manifest lists every part file with its sha256 and holds its own sha256
#: (:data:`MANIFEST_SHA256`); version 2 had no checksums and is refused with a message
#: to rebuild.  2: the statistics are of standardized columns
#: (:mod:`dmixed.stats.standardize`), whose map the manifest holds; version 1 held raw
#: cross-products, which lose digits, and is refused with a message to rebuild.
#: 4: statistics held ragged (:data:`RAGGED`), with slot files; padded statistics are
#: still written as version 3.  5: statistics held crossed (:data:`CROSSED`), with slot
#: and co-occurrence files; ragged ones are still written as version 4.  6: prior
#: weights scaled in the statistics (the map's ``weight_scale``, which older versions
#: would ignore), any storage; statistics without are written as before.  7: a model
#: whose names versions before it rebuild otherwise (columns in statsmodels' order where
#: formulaic's differs, text literals as the formula writes them:
#: :meth:`~dmixed.design.ModelSpec.names_need_this_version`), any storage and weights;
#: those versions refuse it as written by a newer dmixed rather than fail on the names.
#: 8: statistics with groups near lossy (a random design nearly singular within them)
#: carrying those groups' sums about their means (:data:`CENTRED_PARTS`), any storage,
#: weights and names; statistics without such groups are written as before.
#: 9: a model whose centres versions before it refuse as malformed (a column read about
#: a centre alone in a formula without an intercept, ``0 + C(c) + ts``, or in
#: ``C(c) + C(c):ts``: :meth:`~dmixed.design.ModelSpec.centres_need_this_version`);
#: those versions refuse it as written by a newer dmixed.
#: 10: statistics of a design without an intercept whose columns give one, with the
#: response shifted (``x_ones`` in the column map,
#: :attr:`~dmixed.stats.standardize.Standardization.x_ones`); versions before it would
#: map the estimates back without the shift, so they refuse it as written by a newer
#: dmixed.
#: 11: such statistics of a design whose columns give one only by this version's rules
#: (``0 + C(a, Sum):C(b)``: :func:`~dmixed.design.centres.shift_needs_this_version`);
#: versions before it shifted no response there and would refuse the saved ``x_ones``
#: as not the design's, so they refuse it as written by a newer dmixed.  Statistics of
#: such a design without the shift (a response near zero) are written as before, with
#: :data:`SHIFT_RULE` in the manifest.
FORMAT_VERSION = 11
#: the version statistics whose response is shifted beside columns that give one are
#: written as
SHIFTED_RESPONSE_FORMAT_VERSION = 10
#: the version those of a design that gives one only by this version's rules are
#: written as
SHIFTED_CODINGS_FORMAT_VERSION = 11
#: the manifest's key saying that the response's shift of a design that gives one only
#: by this version's rules was chosen by them (its value
#: :data:`SHIFTED_CODINGS_FORMAT_VERSION`; older versions ignore it): statistics of
#: such a design without it were written by a version that never shifted the response
#: there (:func:`check_constant_weights`)
SHIFT_RULE = "shift_rule"
#: the version statistics of a model whose centres need it are written as
CENTRES_FORMAT_VERSION = 9
#: the version statistics carrying centred sums of groups near lossy are written as
CENTRED_FORMAT_VERSION = 8
#: the manifest's key of the part files of those sums (``centred/part-NNNNN.parquet``:
#: one row per such group, its position ``at`` among the groups, ``u``, ``zbar[a]``,
#: ``mean[j]``, the lower triangle of ``c``, ``d[a,j]``, ``lossy``)
CENTRED_PARTS = "centred_parts"
#: the version before it (what a model whose names need it is written as without them)
NAMES_FORMAT_VERSION = 7
#: the version statistics of prior weights scaled in them are written as
WEIGHTED_FORMAT_VERSION = 6
#: the version crossed statistics are written as
CROSSED_FORMAT_VERSION = 5
#: the version padded statistics are written as (what older versions read)
PADDED_FORMAT_VERSION = 3
#: the version ragged statistics are written as
RAGGED_FORMAT_VERSION = 4
#: the manifest's ``storage`` of statistics saved ragged
RAGGED = "ragged"
#: the manifest's ``storage`` of statistics saved crossed
CROSSED = "crossed"
#: the storage each format version holds
STORAGE = {
    PADDED_FORMAT_VERSION: None,
    RAGGED_FORMAT_VERSION: RAGGED,
    CROSSED_FORMAT_VERSION: CROSSED,
}
#: the manifest's key of the sha256 of the rest of the manifest (:func:`manifest_sha256`)
MANIFEST_SHA256 = "manifest_sha256"
#: relative tolerance of the check of the per-group sums against ``[X y]'[X y]`` (on the
#: scale sqrt(Σw · Σw v²) of each entry; summation errors are ~1e-12 of it even for 1e9 rows)
SUMS_RTOL = 1e-6
#: groups per Parquet part file of a statistics directory
GROUPS_PER_FILE = 1_000_000
#: the column of each group's row count in the part files
GROUP_SIZE = "n"

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
            content = local_identity(p, st.st_size, st)
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
    """Files a data argument stands for (a glob, a directory, a URL or a list).

    A directory stands for its dataset's files: those below it but markers and side
    files (a component starting with ``_`` or ``.``: ``_SUCCESS``, ``_metadata``,
    ``.crc``, ``_temporary/``), as Parquet readers skip them.  A glob with a ``**``
    component (any number of folders, as in fsspec and Spark) lists the files that the
    same walk reaches below its folder without wildcards and that it matches, so that
    ``'lake/**'`` is ``lake``; there a ``_`` or ``.`` component is read only where the
    pattern names it (``'lake/_x/**'``, ``'lake/**/_part.parquet'``), as ``glob``
    reads a ``.`` one.  The walk does not enter folders that are symbolic links, as
    :meth:`pathlib.Path.rglob` does not (a link to a folder above would loop).  Another
    glob lists what :func:`glob.glob` matches.  See :func:`lists_file`.
    """
    items = [data] if isinstance(data, str) else list(data)
    out: list[str] = []
    for item in items:
        if "://" in item:
            out.append(item)
        elif os.path.isdir(item):
            out.extend(sorted(_walk(item, ["**"])))
        elif is_recursive_glob(item):
            root, pattern = _glob_parts(item)
            matches = sorted(_walk(root, pattern))
            out.extend(matches if matches else [item])
        else:
            matches = sorted(glob.glob(item))
            out.extend(matches if matches else [item])
    return out


def lists_file(item: str, path: str) -> bool:
    """Whether the local input ``item`` (a file, a directory or a glob) would list the
    file of absolute path ``path`` were it there, as :func:`expand_inputs` lists files
    (a directory's files but its markers and side files, a glob's matches).

    ``path`` and ``item`` are compared as given and with symbolic links resolved
    (:func:`os.path.realpath`), so a file saved through a link to a folder is the
    file of that folder; a file reached through a link to a folder below a directory
    or a ``**`` is not listed, as :func:`expand_inputs` does not enter it.  A URL
    lists no local file.
    """
    if "://" in item:
        return False
    if not glob.has_magic(item):
        if not os.path.isdir(item):
            return os.path.realpath(item) == os.path.realpath(path)
        root, pattern = item, ["**"]
    else:
        root, pattern = _glob_parts(item)
    walked = is_recursive_glob(item) or not glob.has_magic(item)
    for top, target in (
        (os.path.abspath(root), path),
        (os.path.realpath(root), os.path.realpath(path)),
    ):
        rel = os.path.relpath(target, top).split(os.sep)
        if rel[0] == os.pardir or rel == [os.curdir]:
            continue
        if walked and any(os.path.islink(os.path.join(top, *rel[:i])) for i in range(1, len(rel))):
            return False
        return _listed(rel, pattern, (".", "_") if walked else (".",))
    return False


def is_recursive_glob(item: str) -> bool:
    """Whether the local input ``item`` is a glob with a ``**`` component (any number
    of folders, :func:`expand_inputs`)."""
    return "**" in Path(item).parts


def _glob_parts(item: str) -> tuple[str, list[str]]:
    """A glob's folder of leading components without wildcards (``.`` if none) and
    its components below that folder."""
    parts = Path(item).parts
    fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    return (str(Path(*parts[:fixed])) if fixed else "."), list(parts[fixed:])


def _walk(root: str, pattern: list[str]) -> list[str]:
    """The files below the folder ``root`` whose components below it ``pattern``
    lists (:func:`_listed`, a ``_`` or ``.`` component only where named), not entering
    folders that are symbolic links: the one walk of a directory input and of a ``**``
    glob (:func:`expand_inputs`)."""
    hidden = (".", "_")
    out: list[str] = []
    for top, folders, files in os.walk(root):
        below = [] if top == root else os.path.relpath(top, root).split(os.sep)
        # a folder no match can lie below is not read (``_temporary/``, a ``.git``)
        folders[:] = [f for f in folders if _listed([*below, f], pattern, hidden, True)]
        out.extend(
            str(Path(top, f))
            for f in files
            if _listed([*below, f], pattern, hidden) and os.path.isfile(os.path.join(top, f))
        )
    return out


def _listed(
    parts: list[str], pattern: list[str], hidden: tuple[str, ...], folder: bool = False
) -> bool:
    """Whether the path components ``parts`` match the glob components ``pattern``
    (``**``: any number of components), a component starting with one of ``hidden``
    only where the pattern's component starts with it too (named: ``.`` as in
    :func:`glob.glob`); ``folder``: whether files below the folder ``parts`` may."""
    if not parts:
        return bool(pattern) if folder else all(p == "**" for p in pattern)
    if pattern and pattern[0] == "**":
        return (
            not parts[0].startswith(hidden) and _listed(parts[1:], pattern, hidden, folder)
        ) or _listed(parts, pattern[1:], hidden, folder)
    return (
        bool(pattern)
        and fnmatch.fnmatchcase(parts[0], pattern[0])
        and (not parts[0].startswith(hidden) or pattern[0].startswith(parts[0][0]))
        and _listed(parts[1:], pattern[1:], hidden, folder)
    )


def digest(spec_state: dict, inputs: list[dict]) -> str:
    """sha256 over the model spec and the input fingerprints."""
    blob = json.dumps({"spec": spec_state, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------


def _group_frame(arrays: GroupArrays, lo: int, hi: int) -> pd.DataFrame:
    """Groups ``lo:hi`` as one row each: key, size, lower triangle of Z̃'Z̃, Z̃'[X y], slots
    (held ragged: of the ``exog_re`` columns, and no slots)."""
    cols: dict[str, np.ndarray] = {GROUP: arrays.labels[lo:hi], GROUP_SIZE: arrays.nobs[lo:hi]}
    if arrays.ragged is not None:
        zz, zxy = arrays.exog_re_part()
    else:
        zz, zxy = arrays.zz, arrays.zxy
    put_lower_triangle(cols, "zz", zz[lo:hi])
    zxy = zxy[lo:hi]
    for a in range(zxy.shape[1]):
        for j in range(zxy.shape[2]):
            cols[matrix_column("zxy", a, j)] = zxy[:, a, j]
    if arrays.ragged is None:
        put_vc_slots(cols, [table[lo:hi] for table in arrays.slot_cols])
    return pd.DataFrame(cols)


def _write_parts(tmp: Path, folder: str, rows: int, frame_of, what: str) -> list[dict]:
    """``frame_of(lo, hi)`` for every :data:`GROUPS_PER_FILE` rows, written as
    ``folder/part-NNNNN.parquet``: the manifest's entries (rows as ``what``, bytes,
    sha256, and the groups' rows for the group files)."""
    (tmp / folder).mkdir()
    parts = []
    for i, lo in enumerate(range(0, max(rows, 1), GROUPS_PER_FILE)):
        frame = frame_of(lo, min(lo + GROUPS_PER_FILE, rows))
        name = f"{folder}/part-{i:05d}.parquet"
        frame.to_parquet(tmp / name, index=False)
        entry = {"file": name, what: len(frame)}
        if GROUP_SIZE in frame:
            entry["n"] = int(frame[GROUP_SIZE].sum())
        entry.update(bytes=(tmp / name).stat().st_size, sha256=file_sha256(tmp / name))
        parts.append(entry)
    return parts


def written_names(target: Path) -> set[str]:
    """The names of the entries dmixed writes in the statistics directory ``target``:
    ``manifest.json``, the folders of its part files, ``last_fit.json`` (and the
    temporary of a killed write of it).  Replacing the directory deletes these only:
    a directory holding anything else (a file of the user's, the new data being added)
    is refused (:func:`dmixed.files.check_target`)."""
    folders = {"groups", "slots", "cross", "centred"}
    return {"manifest.json", LAST_FIT_FILE, f"{LAST_FIT_FILE}.tmp", *folders}


def save_statistics(
    arrays: GroupArrays,
    path,
    manifest: dict,
    *,
    newer_names: bool = False,
    newer_centres: bool = False,
    newer_shift: bool = False,
) -> None:
    """Write statistics and their manifest to the directory ``path`` atomically.

    Padded statistics are written as format version :data:`PADDED_FORMAT_VERSION`;
    ragged ones (``arrays.ragged``) as :data:`RAGGED_FORMAT_VERSION` with slot files
    (crossed ones :data:`CROSSED_FORMAT_VERSION`; any with the weights scaled
    :data:`WEIGHTED_FORMAT_VERSION`; any with ``newer_names``, a model whose names
    earlier versions rebuild otherwise, :data:`NAMES_FORMAT_VERSION`; any with the
    centred sums of near-lossy groups, :data:`CENTRED_FORMAT_VERSION`; any with
    ``newer_centres``, a model whose centres earlier versions refuse,
    :data:`CENTRES_FORMAT_VERSION`; any with the response shifted beside columns that
    give one, :data:`SHIFTED_RESPONSE_FORMAT_VERSION`, or with ``newer_shift``, a design
    that gives one only by this version's rules, :data:`SHIFTED_CODINGS_FORMAT_VERSION`,
    and with ``newer_shift`` the manifest's :data:`SHIFT_RULE` whether shifted or
    not).  The
    manifest records every part file (rows, bytes, sha256) and its own sha256
    (:func:`manifest_sha256`), which :func:`load_statistics` verifies.  Callers that
    read, merge and write back a directory hold :func:`statistics_lock`.

    Raises
    ------
    ValueError
        Ragged statistics of another width than their layout, or holding a slot that
        the slot tables do not.
    """
    g = len(arrays.labels)
    ragged = arrays.ragged
    if ragged is not None and ragged.r != arrays.layout.r:
        raise ValueError(f"ragged statistics of width {ragged.r}, layout {arrays.layout.r}")
    with atomic_directory(
        path, marker="manifest.json", kind="statistics", owned=written_names
    ) as tmp:
        parts = _write_parts(
            tmp, "groups", g, lambda lo, hi: _group_frame(arrays, lo, hi), "groups"
        )
        full = {"format": FORMAT, "format_version": PADDED_FORMAT_VERSION}
        if ragged is not None:
            rows = slot_rows(ragged, arrays.slot_cols)
            n_slots = len(rows["group"])
            full = {
                "format": FORMAT,
                "format_version": RAGGED_FORMAT_VERSION,
                "storage": RAGGED,
                "n_slots": n_slots,
                "slot_parts": _write_parts(
                    tmp, "slots", n_slots, lambda lo, hi: slot_frame(rows, lo, hi), "slots"
                ),
            }
        if arrays.cross is not None:
            cross = cross_columns(arrays.cross)
            full.update(format_version=CROSSED_FORMAT_VERSION, storage=CROSSED)
            full["n_cross"] = arrays.cross.size
            if arrays.cross.diagonal is not None:  # the elimination, whatever the sums
                full["cross_diagonal"] = [int(c) for c in arrays.cross.diagonal]
            full["cross_parts"] = _write_parts(
                tmp, "cross", arrays.cross.size, lambda lo, hi: slot_frame(cross, lo, hi), "rows"
            )
        full = {
            **full,
            **manifest,
            "layout": {"k_re": arrays.layout.k_re, "vc_widths": list(arrays.layout.vc_widths)},
            "k": int(arrays.k),
            "n_groups": int(g),
            "xyxy": arrays.glob.xyxy,
            "n": int(arrays.glob.n),
            "sum_log_weights": float(arrays.glob.sum_log_weights),
            # rows dropped for missing values (older versions ignore it; saved before
            # it was kept: 0, unknown)
            "n_dropped": int(arrays.n_dropped),
            "standardization": arrays.columns.to_json(),
            "within": arrays.glob.within,
            "column_sums": arrays.glob.column_sums,
            "parts": parts,
        }
        span = arrays.columns.weight_span
        if span is not None:  # what rows added later are judged with (older versions ignore it)
            full["weight_span"] = [float(span[0]), float(span[1])]
        if arrays.columns.weight_scale != 1.0:  # older versions would ignore the scale
            full["format_version"] = WEIGHTED_FORMAT_VERSION
        if newer_names:  # older versions would fail on the names
            full["format_version"] = NAMES_FORMAT_VERSION
        kept = _saved_centred(arrays)
        if kept is not None:  # older versions would fit those groups from plain sums
            full["format_version"] = CENTRED_FORMAT_VERSION
            full["n_centred"] = len(kept["at"])
            full[CENTRED_PARTS] = _write_parts(
                tmp,
                "centred",
                len(kept["at"]),
                lambda lo, hi: pd.DataFrame({c: v[lo:hi] for c, v in kept.items()}),
                "rows",
            )
        if newer_centres:  # older versions would refuse the centres as malformed
            full["format_version"] = CENTRES_FORMAT_VERSION
        if arrays.columns.x_ones.any():  # older versions would not map the shift back
            full["format_version"] = SHIFTED_RESPONSE_FORMAT_VERSION
            if newer_shift:  # older versions know no weights of this design
                full["format_version"] = SHIFTED_CODINGS_FORMAT_VERSION
        if newer_shift:  # this version chose the shift (or none) of this design
            full[SHIFT_RULE] = SHIFTED_CODINGS_FORMAT_VERSION
        full = jsonable(full)
        full[MANIFEST_SHA256] = manifest_sha256(full)
        with open(tmp / "manifest.json", "w") as fh:
            json.dump(full, fh, indent=1, allow_nan=False)


def _saved_centred(arrays: GroupArrays) -> dict | None:
    """The columns of the centred part files (:data:`CENTRED_PARTS`) of ``arrays``:
    those of the groups near lossy (``arrays.centred`` of those groups only, padded
    statistics); None where there are none (or every group's, the bootstrap's, which
    are never saved)."""
    kept = arrays.centred
    if kept is None or kept.everyone or not len(kept.positions) or arrays.ragged is not None:
        return None
    sums = centred_arrays(kept.sums)
    r, k = sums.d.shape[0], sums.d.shape[1]
    cols: dict[str, np.ndarray] = {"at": np.asarray(kept.positions, dtype=np.int64)}
    cols["u"] = sums.u
    for a in range(r):
        cols[f"zbar[{a}]"] = sums.zbar[a]
    for j in range(k):
        cols[f"mean[{j}]"] = sums.mean[j]
    put_lower_triangle(cols, "c", np.moveaxis(sums.c, -1, 0))
    for a in range(r):
        for j in range(k):
            cols[matrix_column("d", a, j)] = sums.d[a, j]
    cols["lossy"] = np.asarray(sums.lossy, dtype=bool)
    return cols


def _centred_from(frame: pd.DataFrame, arrays: GroupArrays, manifest: dict) -> CentredGroups:
    """The centred sums of the groups near lossy of the centred part files' rows,
    checked against the manifest's count and the groups held."""
    if len(frame) != manifest["n_centred"]:
        raise ValueError(
            f"{len(frame)} groups in the centred files, n_centred {manifest['n_centred']}"
        )
    if arrays.ragged is not None:
        raise ValueError("centred sums of statistics held ragged")
    at = frame["at"].to_numpy().astype(np.int64)
    g, r, k = len(arrays.labels), arrays.zz.shape[1], arrays.k
    if at.size and (at[0] < 0 or at[-1] >= g or np.any(np.diff(at) <= 0)):
        raise ValueError("centred sums at positions not increasing among the groups")
    n = len(frame)
    d = np.zeros((r, k, n))
    for a in range(r):
        for j in range(k):
            d[a, j] = frame[matrix_column("d", a, j)].to_numpy()
    sums = CentredArrays(
        np.ascontiguousarray(frame["u"].to_numpy(dtype=np.float64)),
        np.stack([frame[f"zbar[{a}]"].to_numpy(dtype=np.float64) for a in range(r)]),
        np.stack([frame[f"mean[{j}]"].to_numpy(dtype=np.float64) for j in range(k)]),
        np.ascontiguousarray(np.moveaxis(take_lower_triangle(frame, "c", r, n), 0, -1)),
        d,
        frame["lossy"].to_numpy(dtype=bool),
    )
    return CentredGroups(at, sums, False)


def manifest_sha256(manifest: dict) -> str:
    """sha256 of a manifest without its :data:`MANIFEST_SHA256` key (canonical JSON):
    what :func:`save_statistics` records and :func:`read_manifest` verifies."""
    return without_key_sha256(manifest, MANIFEST_SHA256)


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
    PathNotFoundError
        ``path`` does not exist, is a file, or has no ``manifest.json``.
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
    if version < PADDED_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} holds statistics of format version {version}, written without "
            "checksums of their files, which this dmixed verifies: rebuild them from the "
            "data (`dmixed fit` with a new statistics directory)"
        )
    if not records_own_sha256(manifest, MANIFEST_SHA256):
        raise CheckpointError(
            f"{file} was changed after dmixed wrote it (its {MANIFEST_SHA256} does not "
            "match its content): the statistics cannot be trusted; rebuild them from the "
            "data (`dmixed fit` with a new statistics directory)"
        )
    storage = manifest.get("storage")
    if version >= WEIGHTED_FORMAT_VERSION and storage in STORAGE.values():
        return manifest  # any storage, with weights scaled or newer names
    if storage != STORAGE.get(version):
        raise CheckpointError(
            f"{file} says format version {version} with storage "
            f"{storage!r}: version {CROSSED_FORMAT_VERSION} holds statistics "
            f"{CROSSED!r}, {RAGGED_FORMAT_VERSION} {RAGGED!r}, {PADDED_FORMAT_VERSION} "
            f"padded, {WEIGHTED_FORMAT_VERSION} to {FORMAT_VERSION} any of them; rebuild "
            "them from the data"
        )
    return manifest


def _part_files(root: Path, manifest: dict, key: str = "parts", folder: str = "groups") -> list:
    """The manifest's part entries under ``key`` (files ``folder/part-NNNNN.parquet``),
    after checking that the directory holds exactly those part files."""
    parts = manifest.get(key)
    if not isinstance(parts, list) or not parts:
        raise CheckpointError(f"{root / 'manifest.json'} lists no {folder} part files")
    listed = [str(p.get("file")) if isinstance(p, dict) else "" for p in parts]
    pattern = re.compile(rf"{folder}/part-\d{{5}}\.parquet")
    bad = [f for f in listed if not pattern.fullmatch(f)]
    if bad:
        raise CheckpointError(f"{root / 'manifest.json'} lists part files {bad[:3]}")
    on_disk = {f"{folder}/{f.name}" for f in (root / folder).glob("part-*.parquet")}
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


def _read_part(root: Path, part: dict, what: str = "groups") -> pd.DataFrame:
    """One part file, read once from a memory map: its rows (``what``: groups or
    slots) checked against the manifest's entry, then its sha256."""
    file = root / part["file"]
    frame, sha256 = read_parquet_sha256(file, ": rebuild the statistics from the data")
    manifest = root / "manifest.json"
    if len(frame) != part.get(what):
        raise CheckpointError(
            f"{file} holds {len(frame)} {what}, {manifest} says {part.get(what)}: the "
            "file was changed after dmixed wrote it; rebuild the statistics from the data"
        )
    if what == "groups" and (GROUP_SIZE not in frame or int(frame[GROUP_SIZE].sum()) != part["n"]):
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
        zz, zxy = arrays.exog_re_part()
        sums = zxy[:, e, :].sum(axis=0)
        sums[xi] = zz[:, e, e].sum()  # the sum of weights, as summed per group
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
    PathNotFoundError
        ``path`` does not exist, is a file, or has no ``manifest.json``.
    CheckpointError
        Naming the file: the manifest fails :func:`read_manifest`; a part file is
        missing, extra, unreadable, holds other groups or rows than the manifest says,
        or its sha256 differs; or the groups do not add up to the manifest's totals.
    """
    manifest = read_manifest(path)
    root = Path(path)
    frames = [_read_part(root, part) for part in _part_files(root, manifest)]
    frame = pd.concat(frames, ignore_index=True)
    slots = cross = None
    if manifest.get("storage") in (RAGGED, CROSSED):
        parts = _part_files(root, manifest, "slot_parts", "slots")
        slots = pd.concat([_read_part(root, p, "slots") for p in parts], ignore_index=True)
    if manifest.get("storage") == CROSSED:
        parts = _part_files(root, manifest, "cross_parts", "cross")
        cross = pd.concat([_read_part(root, p, "rows") for p in parts], ignore_index=True)
    centred = None
    if manifest.get("format_version", 0) >= CENTRED_FORMAT_VERSION and CENTRED_PARTS in manifest:
        parts = _part_files(root, manifest, CENTRED_PARTS, "centred")
        centred = pd.concat([_read_part(root, p, "rows") for p in parts], ignore_index=True)
    try:
        arrays = _arrays_from(frame, manifest, slots, root)
        if cross is not None:
            arrays.cross = _cross_from(cross, arrays, manifest, root)
        if centred is not None:
            arrays.centred = _centred_from(centred, arrays, manifest)
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


def check_constant_weights(
    arrays: GroupArrays,
    weights: np.ndarray | None,
    path,
    *,
    manifest: dict | None = None,
    newer: bool = False,
) -> None:
    """Check the saved statistics' ``x_ones`` (the weights with which the fixed-effects
    columns give one in every row, beside which the response was shifted:
    :attr:`~dmixed.stats.standardize.Standardization.x_ones`) against ``weights``, those
    of the saved spec (:func:`~dmixed.design.centres.constant_weights`; None: the spec's
    design has an intercept or no such columns).

    The estimates are mapped back through these weights, so others would give wrong
    fixed effects at the same likelihood.  Statistics saved without ``x_ones`` (by
    versions before it, or of a response not shifted) pass where the response is not
    shifted without an intercept, unless the spec's design gives one only by this
    version's rules (``newer``: :func:`~dmixed.design.centres.shift_needs_this_version`)
    and the manifest lacks :data:`SHIFT_RULE`: versions before this one never shifted
    that design's response, so their statistics of a response far from zero lost the
    digits the shift keeps, and adding this version's shifted statistics to them would
    carry that loss into the fit silently.

    Parameters
    ----------
    arrays : GroupArrays
        The saved statistics (:func:`load_statistics`).
    weights : ndarray (p,) or None
        The saved spec's weights (:func:`~dmixed.design.centres.constant_weights`).
    path : path
        The statistics directory (named in the errors).
    manifest : dict, optional
        Its manifest (:func:`load_statistics`), read for :data:`SHIFT_RULE`.
    newer : bool
        Whether the spec's design gives one only by this version's rules
        (:func:`~dmixed.design.centres.shift_needs_this_version`).

    Raises
    ------
    CheckpointError
        Naming ``path``'s manifest: ``x_ones`` saved and not ``weights`` (not finite,
        another length or other values, or saved where the spec gives none), a
        response shifted without an intercept and without ``x_ones``, or, with
        ``newer``, statistics without ``x_ones`` or :data:`SHIFT_RULE` (written by an
        earlier version).
    """
    cols = arrays.columns
    saved = cols.x_ones
    file = Path(path) / "manifest.json"
    if saved.size and (weights is None or not np.array_equal(saved, weights)):
        expected = "none" if weights is None else repr(np.asarray(weights).tolist())
        raise CheckpointError(
            f"{file}: standardization.x_ones {saved.tolist()!r} is not the weights with "
            f"which the saved spec's fixed-effects columns give one in every row "
            f"({expected}): the statistics cannot be trusted; rebuild them from the data "
            "(`dmixed fit` with a new statistics directory)"
        )
    if not saved.size and cols.x_intercept < 0 and cols.y_shift != 0.0:
        raise CheckpointError(
            f"{file}: standardization.y_shift {cols.y_shift!r} without an intercept and "
            "without x_ones (the columns that make the constant): the statistics cannot "
            "be trusted; rebuild them from the data (`dmixed fit` with a new statistics "
            "directory)"
        )
    rule = (manifest or {}).get(SHIFT_RULE)
    chosen = isinstance(rule, int) and rule >= SHIFTED_CODINGS_FORMAT_VERSION
    if newer and not saved.size and not chosen:
        raise CheckpointError(
            f"{file}: the statistics were written by an earlier version of dmixed, which "
            "did not shift the response for this design (its columns give one only by "
            "this version's rules): a response far from zero lost digits there that this "
            "version keeps, and a fit or an update from them would carry that loss: "
            "rebuild them from the data with this version (`dmixed fit` with a new "
            "statistics directory)"
        )


def _cross_from(frame: pd.DataFrame, arrays: GroupArrays, manifest: dict, root: Path):
    """The co-occurrence sums of the co-occurrence files' rows, checked against the
    manifest's count and the slots held."""
    if len(frame) != manifest["n_cross"]:
        raise ValueError(
            f"{len(frame)} co-occurrences in their files, n_cross {manifest['n_cross']}"
        )
    layout = arrays.layout
    cross = cross_from_frame(frame, len(arrays.labels), layout.k_re, layout.r, root)
    if arrays.ragged is None:
        raise ValueError("co-occurrences without the slots' statistics")
    slot_index(arrays.ragged, cross.group, cross.s)
    slot_index(arrays.ragged, cross.group, cross.t)
    diagonal = manifest.get("cross_diagonal")
    if diagonal is not None:
        comps = [int(c) for c in diagonal]
        if comps != diagonal or comps != sorted(set(comps)) or not comps:
            raise ValueError(f"cross_diagonal {diagonal!r} is not sorted distinct components")
        if comps[0] < 0 or comps[-1] >= layout.k_vc:
            raise ValueError(f"cross_diagonal {diagonal!r} names no component of the layout")
        cross.diagonal = tuple(comps)
    return cross


def _arrays_from(frame: pd.DataFrame, manifest: dict, slots, root: Path) -> GroupArrays:
    """The statistics of the part files' rows (``slots``: the slot files' rows of
    statistics held ragged, else None) and the manifest's global sums."""
    layout = Layout(int(manifest["layout"]["k_re"]), tuple(manifest["layout"]["vc_widths"]))
    k, g = int(manifest["k"]), len(frame)
    r = layout.r if slots is None else layout.k_re
    zz = take_lower_triangle(frame, "zz", r, g)
    zxy = np.zeros((g, r, k))
    for a in range(r):
        for j in range(k):
            zxy[:, a, j] = frame[matrix_column("zxy", a, j)].to_numpy()
    ragged = None
    if slots is None:
        slot_cols = take_vc_slots(frame, layout.vc_widths, g)
    else:
        if len(slots) != manifest["n_slots"]:
            raise ValueError(f"{len(slots)} slots in the slot files, n_slots {manifest['n_slots']}")
        ragged, slot_cols = ragged_from_slots(slots, zz, zxy, layout.vc_widths, root)
        zz, zxy = no_padding(g, k)
    within = manifest.get("within")
    glob_stats = GlobalStats(
        np.asarray(manifest["xyxy"], dtype=np.float64).reshape(k, k),
        int(manifest["n"]),
        float(manifest["sum_log_weights"]),
        None if within is None else np.asarray(within, dtype=np.float64).reshape(k, k),
        _column_sums(manifest.get("column_sums"), k),
    )
    return GroupArrays(
        frame[GROUP].to_numpy(),
        frame[GROUP_SIZE].to_numpy(),
        zz,
        zxy,
        slot_cols,
        glob_stats,
        layout,
        _saved_map(manifest, k - 1, layout.k_re),
        ragged,
        n_dropped=int(manifest.get("n_dropped", 0)),
    )


def _saved_map(manifest: dict, p: int, q: int) -> Standardization:
    """The columns' map of the manifest, with the span of the prior weights saved with
    it (none in statistics saved before it was kept, or without weights).

    Raises
    ------
    ValueError
        A span that is not two finite numbers, the smaller first.
    """
    std = Standardization.from_json(manifest["standardization"], p, q)
    saved = manifest.get("weight_span")
    if saved is None:
        return std
    span = np.asarray(saved, dtype=np.float64).reshape(-1)
    if span.size != 2 or not np.all(np.isfinite(span)) or span[0] > span[1]:
        raise ValueError(f"weight_span {saved!r} is not (log2 smallest, log2 largest) weight")
    return std.with_span((float(span[0]), float(span[1])))


def _column_sums(saved, k: int) -> np.ndarray | None:
    """The saved column sums ``Σ w [X y 1]`` (k + 1,), or None (none held, or saved
    before they were).

    Raises
    ------
    ValueError
        Column sums of another length.
    """
    if saved is None:
        return None
    sums = np.asarray(saved, dtype=np.float64).reshape(-1)
    if sums.size != k + 1:
        raise ValueError(f"{sums.size} column sums for {k} columns of [X y] (expected {k + 1})")
    return sums
