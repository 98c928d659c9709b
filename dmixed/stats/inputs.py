"""What an input file's content is, cheaply: the identity saved statistics are keyed by.

A rerun reuses saved statistics only when every input is the one they were built from
(:func:`dmixed.stats.checkpoint.input_fingerprint`).  Size and modification time alone
miss a file rewritten in place with both kept (``os.utime``, ``cp -p``, ``rsync -t``), so
every input also gets a content identity, at a cost far below the data pass a reuse
avoids:

- a local Parquet file: the sha256 of its footer (schema, row groups, each column
  chunk's offsets, sizes and statistics), one small read at the end of the file;
- another local file up to :data:`HASH_WHOLE_FILE_BYTES`: the sha256 of its bytes;
- a larger one: the sha256 of its first and last :data:`EDGE_BYTES` (a change inside it
  that keeps its size, time stamp and both ends is not seen: use Parquet);
- a URL (fsspec): what the store says identifies the object's content (ETag, MD5, CRC,
  version or generation, modification time), for every object a glob or a directory
  stands for.

A data folder moved or copied elsewhere (:func:`same_inputs`) is the data its statistics
were built from where a whole-file sha256 says so.  A partial identity (a Parquet footer,
a large file's ends) with the file's size, modification time and the Hive keys of its path
does not prove the rows: a file of other rows may share all of them (rows reordered or
values permuted within a column, compressed or not, wherever the compressed sizes stay;
fixed time stamps of an archive or a reproducible build).
Such a file under another path is taken for the saved one only where the user says the
data folder was moved (``moved=True``, ``--moved-inputs``: :func:`moved_inputs`).
"""

from __future__ import annotations

import contextlib
import contextvars
import filecmp
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import unquote

from ..errors import DataError

__all__ = [
    "CSV_SUFFIXES",
    "TSV_SUFFIXES",
    "EDGE_BYTES",
    "HASH_WHOLE_FILE_BYTES",
    "MOVED_WHY",
    "PARQUET_SUFFIXES",
    "already_included",
    "file_format",
    "hive_key_names",
    "hive_keys",
    "input_format",
    "is_parquet_file",
    "local_identity",
    "moved_inputs",
    "remote_identity",
    "retimed_copies",
    "same_content",
    "same_inputs",
    "separator",
]

#: why a file is taken for a saved one moved (:func:`moved_inputs`), before its saved path
MOVED_WHY = "the size, Parquet footer (or ends), Hive keys and modification time of"
#: local non-Parquet files up to this size are identified by the sha256 of their bytes
HASH_WHOLE_FILE_BYTES = 64 << 20
#: bytes hashed at each end of a larger non-Parquet file
EDGE_BYTES = 1 << 20
#: the keys of fsspec's ``info`` that identify an object's content, by store (S3, GCS,
#: Azure, HTTP, local and memory file systems)
_IDENTITY_KEYS = (
    "ETag",
    "etag",
    "md5Hash",
    "content_md5",
    "crc32c",
    "checksum",
    "VersionId",
    "version_id",
    "generation",
    "LastModified",
    "last_modified",
    "updated",
    "mtime",
    "created",
    "size",
)

_MAGIC = b"PAR1"
#: the kind of a local Parquet file's content identity (:func:`local_identity`)
_PARQUET_IDENTITY = "parquet-footer-sha256:"
#: file names of the two input formats, by their ends (lower case)
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
TSV_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bz2", ".tsv.xz", ".tsv.zst")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", *TSV_SUFFIXES)
_FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV"}


def file_format(path: str) -> str | None:
    """``"parquet"`` or ``"csv"``, by the end of the file's name (:data:`PARQUET_SUFFIXES`,
    :data:`CSV_SUFFIXES`), else ``"parquet"`` for a local file that starts with Parquet's
    magic bytes ``PAR1``; None for anything else (a URL without a known end too)."""
    name = path.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if "://" in path or not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        return "parquet" if fh.read(4) == _MAGIC else None


def separator(path: str) -> str:
    """The field separator of a CSV input file: a tab for ``*.tsv`` (and compressed
    ``*.tsv.gz``...), else a comma."""
    return "\t" if path.lower().endswith(TSV_SUFFIXES) else ","


def is_parquet_file(path: str) -> bool:
    """Whether a local file starts and ends with Parquet's magic bytes ``PAR1`` (a
    Parquet file's first and last 4 bytes; two small reads)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 12:
            return False
        fh.seek(-4, os.SEEK_END)
        return head == _MAGIC and fh.read(4) == _MAGIC


def input_format(files: list[str], given: str | None = None) -> str:
    """The one format, ``"parquet"`` or ``"csv"``, of a job's input ``files``: each file's
    by :func:`file_format`, not the first file's for all (a stray text file sorting
    first in a directory of CSV files made them all be read as Parquet).

    ``given`` (the job's ``format``) is taken for files of no known kind; a file whose
    name or magic says the other format is refused.  Without it, a URL of no known kind
    is Parquet (a dataset directory in a store), as is an empty list.

    Raises
    ------
    DataError
        Naming the file: a local file of neither kind (without ``given``), or the
        input mixes Parquet and CSV files, or a file is not of the ``given`` format.
    """
    kinds = {f: file_format(f) for f in files}
    if given is not None:
        for f, k in kinds.items():
            if k is not None and k != given:
                raise DataError(
                    f"{f} is a {_FORMAT_NAMES[k]} file, but the input's format is given "
                    f"as {given}; one job reads one format"
                )
        return given
    unknown = [f for f, k in kinds.items() if k is None and "://" not in f]
    if unknown:
        more = f" (and {len(unknown) - 1} more such files)" if len(unknown) > 1 else ""
        raise DataError(
            f"{unknown[0]} is neither a Parquet file (named *.parquet, *.parq or *.pq, or "
            f"starting with PAR1) nor a CSV file (named *.csv, *.csv.gz, *.tsv or *.tsv.gz){more}: "
            "remove it from the input, or pass --format (job "
            "file: format) to read files of no known kind as that format"
        )
    found = {k or "parquet": f for f, k in reversed(kinds.items())}  # the first of each
    if len(found) > 1:
        raise DataError(
            f"the input mixes Parquet files ({found['parquet']}) and CSV files "
            f"({found['csv']}); one job reads one format"
        )
    return next(iter(found), "parquet")


def _parquet_footer(fh, size: int) -> bytes | None:
    """The footer of a Parquet file (metadata, its length and the magic), or None."""
    if size < 12:
        return None
    fh.seek(size - 8)
    tail = fh.read(8)
    if tail[4:] != _MAGIC:
        return None
    length = int.from_bytes(tail[:4], "little")
    if length + 12 > size:
        return None
    fh.seek(size - 8 - length)
    return fh.read(length) + tail


#: the footers read in a :func:`footers_read_once` block, by the file's version
#: (:func:`_file_version`)
_FOOTERS: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "dmixed_parquet_footers", default=None
)


@contextlib.contextmanager
def footers_read_once() -> Iterator[None]:
    """Within the block, each local Parquet file's footer is read once
    (:func:`local_footer`): a command's fingerprint of its inputs and its reader's
    row counts (``input_data``) share it, on inputs of thousands of small files."""
    token = _FOOTERS.set({})
    try:
        yield
    finally:
        _FOOTERS.reset(token)


def _file_version(path: str, size: int, st: os.stat_result | None = None) -> tuple:
    """What tells one version of the local file ``path`` from another: its absolute
    path, size (as the caller read it), modification time (ns), inode and status change
    time (from ``st``, the caller's ``os.stat`` of it, else one made here). A file
    rewritten in place with the same size (or replaced by a rename) within a command is
    another version; its size alone would keep the old footer."""
    if st is None:
        st = os.stat(path)
    return (os.path.abspath(path), size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def local_footer(path: str, size: int, st: os.stat_result | None = None) -> bytes | None:
    """The footer of a local file of ``size`` bytes if it is a Parquet one (else None),
    read once a version of the file (:func:`_file_version`) within
    :func:`footers_read_once`. ``st``: the caller's ``os.stat`` of ``path`` (its size is
    ``size``), so that a caller holding it does not stat the file again."""
    cache = _FOOTERS.get()
    if cache is None:
        with open(path, "rb") as fh:
            return _parquet_footer(fh, size)
    key = _file_version(path, size, st)
    if key in cache:
        return cache[key]
    with open(path, "rb") as fh:
        footer = _parquet_footer(fh, size)
    cache[key] = footer
    return footer


def parquet_row_count(path: str) -> int | None:
    """The rows a local Parquet file's footer counts (:func:`local_footer`); None
    where it is not a Parquet file's.

    Raises
    ------
    OSError, ValueError
        The file cannot be read, or its footer is damaged (pyarrow's error)."""
    st = os.stat(path)  # one stat: the size and the version of the file
    footer = local_footer(path, st.st_size, st)
    if footer is None:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the footer after a magic: a file pyarrow reads as the one it came from
    return int(pq.read_metadata(pa.BufferReader(_MAGIC + footer)).num_rows)


def local_identity(path: str, size: int, st: os.stat_result | None = None) -> str:
    """``KIND:SHA256`` of a local file of ``size`` bytes (see the module's docstring);
    ``st``: the caller's ``os.stat`` of ``path``, if it holds one (:func:`local_footer`)."""
    footer = local_footer(path, size, st)
    if footer is not None:
        return _PARQUET_IDENTITY + hashlib.sha256(footer).hexdigest()
    with open(path, "rb") as fh:
        if size <= HASH_WHOLE_FILE_BYTES:
            digest = hashlib.sha256()
            while block := fh.read(8 << 20):
                digest.update(block)
            return "sha256:" + digest.hexdigest()
        digest = hashlib.sha256(fh.read(EDGE_BYTES))
        fh.seek(size - EDGE_BYTES)
        digest.update(fh.read(EDGE_BYTES))
        return "edges-sha256:" + digest.hexdigest()


def _object_identity(info: dict) -> dict:
    return {k: str(info[k]) for k in _IDENTITY_KEYS if info.get(k) is not None}


def remote_identity(url: str, storage_options: dict | None = None) -> str:
    """``store-sha256:SHA256`` over the identity of every object ``url`` stands for (a
    glob, a directory or one object), as the store reports it.

    Raises
    ------
    FileNotFoundError
        Nothing at ``url``.
    ImportError
        The store's fsspec package is not installed.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if any(c in path for c in "*?["):
        names = sorted(fs.glob(path))
    elif fs.isdir(path):
        names = sorted(fs.find(path))
    else:
        names = [path]
    if not names:
        raise FileNotFoundError(f"no input file matches {url}")
    objects = [{"name": name, **_object_identity(fs.info(name))} for name in names]
    blob = json.dumps(objects, sort_keys=True)
    return "store-sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def repeated_inputs(
    inputs: list[dict],
    included: list[dict] | None = None,
    holds_rows: Callable[[str], bool] | None = None,
    read_keys: set[str] | None = None,
) -> list[str]:
    """The inputs of ``inputs`` whose rows would be counted twice: a path of
    ``included`` or of an earlier input given again (``"PATH"``; ``"PATH (changed since
    it was added ...)"`` where its size or content is no longer the included one's:
    rows appended to it cannot be told from the counted ones), or the content of one
    under another name (``"PATH (the content of EARLIER)"``, :func:`same_content`),
    or a saved file moved (``"PATH (the size, footer, Hive keys and modification time of
    INCLUDED)"``, :func:`moved_inputs`: refused whether or not ``--moved-inputs`` is
    given, as a file of other rows with all of these is refused where a moved one would
    be counted twice), unless ``holds_rows(PATH)`` says it holds none (files of a schema
    or a header only, as writers leave them, are alike byte for byte and count nothing
    twice).
    ``read_keys``: the Hive keys that tell copies apart (:func:`same_content`).

    ``inputs`` and ``included`` are records of
    :func:`dmixed.stats.checkpoint.input_fingerprint` (absolute local paths, so
    ``d/a.parquet`` and ``./d/a.parquet`` are one path).
    """
    included = included or []
    before = {rec["path"]: rec for rec in included}
    done = set(before)
    again: list[dict] = []
    fresh: list[dict] = []
    for rec in inputs:
        (again if rec["path"] in done else fresh).append(rec)
        done.add(rec["path"])
    out = [_again(rec, before.get(rec["path"])) for rec in again]
    copies = same_content(fresh, included, read_keys)
    paired = {path for path, _ in copies}
    # a saved file moved cannot be compared byte by byte with its saved path (gone, or
    # another file now): its size, footer, keys and time stamp say its rows are counted
    moved = [(p, q) for p, q in moved_inputs(fresh, included) if p not in paired]
    return (
        out
        + [
            f"{path} (the content of {earlier})"
            for path, earlier in copies
            if holds_rows is None or holds_rows(path)
        ]
        + [
            f"{path} ({MOVED_WHY} {earlier})"
            for path, earlier in moved
            if holds_rows is None or holds_rows(path)
        ]
    )


def already_included(
    inputs: list[dict],
    included: list[dict],
    read_keys: set[str] | None = None,
    moved: bool = False,
) -> dict[str, str]:
    """The inputs of ``inputs`` whose rows ``included`` already counts, as
    ``{path: why}``: an included path whose size and content identity are those
    recorded when it was added (``why`` ``""``; a new modification time alone changes
    no rows), or the content of an included file under another name (``why`` ``"the
    content of INCLUDED"``, :func:`same_content`), or, where ``moved``, a saved file
    moved (``why`` ``"the size, footer, Hive keys and modification time of
    INCLUDED"``, :func:`moved_inputs`).

    What ``dmixed update --skip-included`` leaves out: a nightly job over a glob that
    grows names yesterday's files again.  An included path whose size or content
    changed is not among them (rows appended to it cannot be told from the counted
    ones: :func:`repeated_inputs` refuses it), nor is a copy of another new input.

    Parameters
    ----------
    inputs : list of dict
        The inputs given, records of :func:`dmixed.stats.checkpoint.input_fingerprint`
        (``path``, ``size``, ``content``, ...).
    included : list of dict
        The records of the inputs the saved statistics count (their manifest's
        ``inputs``).
    read_keys : set of str, optional
        The names of the columns the model reads, where known: only partition keys
        among them tell files apart (as for :func:`same_content`).
    moved : bool, default False
        Take a saved file moved (:func:`moved_inputs`) for the saved one, as
        ``--moved-inputs`` does (:func:`same_inputs`).

    Returns
    -------
    dict of str to str
        ``{path: why}`` of the inputs already included (``why`` ``""`` for an
        included path, ``"the content of INCLUDED"`` for a copy under another name).
    """
    before = {rec["path"]: rec for rec in included}
    out: dict[str, str] = {}
    fresh = []
    for rec in inputs:
        if rec["path"] in before:
            if _again(rec, before[rec["path"]]) == rec["path"]:
                out[rec["path"]] = ""
        else:
            fresh.append(rec)
    for path, earlier in same_content(fresh, included, read_keys):
        if earlier in before:
            out.setdefault(path, f"the content of {earlier}")
    if moved:
        for path, earlier in moved_inputs(fresh, included):
            out.setdefault(path, f"{MOVED_WHY} {earlier}")
    return out


def _again(rec: dict, before: dict | None) -> str:
    """The path of an input given again, with why where the included one has changed:
    a size or content identity known both then and now that differs (one not known,
    a URL whose store's package is missing on one side, says nothing)."""
    known = [(rec.get(k), before.get(k)) for k in ("size", "content")] if before else []
    if all(now is None or then is None or now == then for now, then in known):
        return rec["path"]
    return (
        f"{rec['path']} (changed since it was added: its rows then are counted, and rows "
        "added to it cannot be told from them; give new rows in a file of its own, or "
        "rebuild the statistics with fit)"
    )


def hive_keys(path: str) -> tuple[str, ...]:
    """The ``key=value`` folders of a file's path as given, in order and decoded as the
    Parquet reader decodes them: the Hive partition keys that the reader (pyarrow's
    ``"hive"`` partitioning with its default ``segment_encoding="uri"``, Dask's default)
    attaches to its rows as columns, taken from every folder of the path (a folder
    without ``=`` is no key).  ``lake/region=eu/part-0.parquet`` gives
    ``("region=eu",)``; ``region=e%20u`` and ``region=e u`` both give ``"region=e u"``.
    The path as given, not resolved: a link to a ``key=value`` folder gives no key, as
    the reader reads it."""
    folders = path.split("/")[:-1]
    return tuple("=".join(unquote(part) for part in f.split("=", 1)) for f in folders if "=" in f)


def hive_key_names(path: str) -> tuple[str, ...]:
    """The names of :func:`hive_keys` (``("region",)``): the reader needs every file of
    an input to have the same ones."""
    return tuple(k.split("=", 1)[0] for k in hive_keys(path))


def same_content(
    inputs: list[dict], included: list[dict], read_keys: set[str] | None = None
) -> list[tuple[str, str]]:
    """Pairs ``(path, earlier path)``: an input of ``inputs`` whose content is that of an
    input of ``included`` or of an earlier one of ``inputs`` under another name.

    A Parquet file's content includes its Hive partition keys (:func:`hive_keys`): files
    of one bytes under ``region=eu/`` and ``region=us/`` are read as rows of other
    ``region`` values, not one file's rows twice.  Files of one bytes and keys under
    other names are copies, as are CSV files of one bytes anywhere (their reader
    attaches no keys), and one local file reached by two paths (a link): its paths
    resolved (``os.path.realpath``).  ``read_keys``: the names of the columns the model
    reads, where known; only keys among them tell files apart (one file under ``run=1/``
    and ``run=2/`` is one file's rows twice to a model that does not read ``run``).

    ``inputs`` and ``included`` are records of
    :func:`dmixed.stats.checkpoint.input_fingerprint` (``path``, ``size``, ``content``).
    Equal local identities (``KIND:SHA256``, see the module's docstring) and sizes are
    confirmed byte by byte where the identity covers part of the file (a Parquet footer,
    a large file's ends: two files of other rows may share a footer without column
    statistics), so such a copy is seen only while both files are there; a URL's
    identity includes the objects' names, so copies at other URLs are not seen.

    Returns
    -------
    list of (str, str)
        One pair per repeated input, in the order of ``inputs``.
    """
    seen: dict[tuple, str] = {}
    for rec in included:
        if rec.get("content"):
            seen.setdefault(_identity(rec, read_keys), rec["path"])
            seen.setdefault(_resolved(rec), rec["path"])
    pairs = []
    for rec in inputs:
        if not rec.get("content"):
            continue
        key, resolved = _identity(rec, read_keys), _resolved(rec)
        earlier = seen.get(key)
        same_file = seen.get(resolved)
        if earlier is not None and earlier != rec["path"] and _same_bytes(rec, earlier):
            pairs.append((rec["path"], earlier))
        elif same_file is not None and same_file != rec["path"]:
            # one file through a link: one file's rows, whatever keys its paths give
            pairs.append((rec["path"], same_file))
        seen.setdefault(key, rec["path"])
        seen.setdefault(resolved, rec["path"])
    return pairs


def _identity(rec: dict, read_keys: set[str] | None = None) -> tuple:
    """What two inputs share when one is a copy of the other: content identity and size,
    and a Parquet file's Hive partition keys (its reader adds them to the rows), those
    named in ``read_keys`` where given."""
    keys = hive_keys(rec["path"]) if rec["content"].startswith(_PARQUET_IDENTITY) else ()
    if read_keys is not None:
        keys = tuple(k for k in keys if k.split("=", 1)[0] in read_keys)
    return (rec["content"], rec.get("size"), keys)


def _whole(content: str) -> bool:
    """Whether a content identity hashes the whole file (a small non-Parquet file)."""
    return content.startswith("sha256:")


def _partial(rec: dict) -> bool:
    """Whether an input is a local file of a content identity that covers part of it
    (a Parquet footer, a large file's ends)."""
    content = rec.get("content")
    if not isinstance(content, str) or not content:
        return False
    return "://" not in rec["path"] and not _whole(content)


def _input_key(rec: dict, moved: bool) -> tuple:
    """What :func:`same_inputs` compares of an input: a local file's content identity,
    size and Hive keys (:func:`_identity`), with its modification time, and its path
    unless ``moved``, where the identity covers part of the file; a URL, or a file of
    no identity, as recorded."""
    content = rec.get("content")
    if not content or "://" in rec["path"]:
        return ("as recorded", rec["path"], rec.get("size"), rec.get("mtime_ns"), content)
    if _whole(content):
        return ("content", *_identity(rec), None, None)
    return ("content", *_identity(rec), rec.get("mtime_ns"), None if moved else rec["path"])


def same_inputs(given: list[dict], saved: list[dict], moved: bool = False) -> bool:
    """Whether the inputs ``given`` are the ``saved`` ones, each at its saved path or,
    where its content proves it, under another (a data folder moved, renamed or copied),
    so that a rerun reuses the saved statistics rather than refusing them as other data.

    A local file matches by its content identity and size and, for Parquet, the Hive
    keys its path gives (under ``region=us/`` its rows are other rows).  A whole-file
    sha256 is its bytes, so it matches under any path.  A partial identity (a Parquet
    footer, a large file's ends) is not: a file of other rows may have the same size,
    footer and modification time (rows reordered or values permuted within a column,
    compressed or not, wherever the compressed sizes stay; the fixed time stamps of an
    archive or a reproducible build).  Such a file matches at its
    saved path with its saved modification time, as any rerun's input does, and under
    another path only where ``moved`` (``--moved-inputs``) says that the data folder
    was moved with its time stamps (``mv``, ``cp -p``, ``rsync -a``): the rows are then
    taken on trust, and a file of other rows with the same footer and time stamp would
    give the saved statistics' fit.  A URL, or an input of no identity, only as
    recorded (a URL's identity holds its objects' names).

    Parameters
    ----------
    given, saved : list of dict
        Records of :func:`dmixed.stats.checkpoint.input_fingerprint` (``path``,
        ``size``, ``mtime_ns``, ``content``): the inputs of a rerun and those the saved
        statistics were built from (their manifest's ``inputs``).
    moved : bool, default False
        Take a file of a partial identity whose size, Hive keys and modification time
        are a saved file's, under another path, for that file (:func:`moved_inputs`).

    Returns
    -------
    bool
        True where every given input is one saved input and every saved one is given.
    """
    key = lambda rec: _input_key(rec, moved)  # noqa: E731
    return Counter(map(key, given)) == Counter(map(key, saved))


def _partial_matches(given: list[dict], saved: list[dict]) -> list[tuple[str, str, bool]]:
    """Triples ``(path, saved path, same modification time)``: a given local file of a
    partial content identity whose identity, size and Hive keys are those of a saved
    input under another path, one not given itself (a saved file given at its path is
    not elsewhere too)."""
    paths = {rec["path"] for rec in given}
    before: dict[tuple, dict] = {}
    for rec in saved:
        if _partial(rec) and rec["path"] not in paths:
            before.setdefault(_identity(rec), rec)
    out = []
    for rec in given:
        match = before.get(_identity(rec)) if _partial(rec) else None
        if match is not None and match["path"] != rec["path"]:
            mtime = rec.get("mtime_ns")
            same_time = mtime is not None and match.get("mtime_ns") == mtime
            out.append((rec["path"], match["path"], same_time))
    return out


def moved_inputs(given: list[dict], saved: list[dict]) -> list[tuple[str, str]]:
    """Pairs ``(path, saved path)``: a given local file of a partial content identity (a
    Parquet footer, a large file's ends) whose identity, size, Hive keys and modification
    time are those of a saved input under another path, as a data folder moved with its
    time stamps (``mv``, ``cp -p``, ``rsync -a``) gives them.

    The one test of "a saved file, moved" for ``fit --stats-dir`` (:func:`same_inputs`)
    and ``update`` (:func:`already_included`, :func:`repeated_inputs`).  Evidence, not
    proof: a file of other rows may share all of these (see :func:`same_inputs`), so
    such a file is taken for the saved one only under ``--moved-inputs``.

    Parameters
    ----------
    given, saved : list of dict
        Records of :func:`dmixed.stats.checkpoint.input_fingerprint`.

    Returns
    -------
    list of (str, str)
        One pair per such given file, in the order of ``given``.
    """
    return [(p, q) for p, q, same_time in _partial_matches(given, saved) if same_time]


def retimed_copies(given: list[dict], saved: list[dict]) -> list[tuple[str, str]]:
    """Pairs ``(path, saved path)``: a given local file of a partial content identity
    whose identity, size and Hive keys are those of a saved input under another path,
    but whose modification time is not (a copy that did not keep its time stamp, which
    nothing tells from other rows of the same footer)."""
    return [(p, q) for p, q, same_time in _partial_matches(given, saved) if not same_time]


def _resolved(rec: dict) -> tuple:
    """A local input's file, links resolved (``os.path.realpath``), and its content
    identity: one file reached by two paths (``alias -> lake/region=eu``) is read twice
    whatever keys the paths give; a URL's own path."""
    path = rec["path"]
    return ("file", path if "://" in path else os.path.realpath(path), rec["content"])


def _same_bytes(rec: dict, earlier: str) -> bool:
    """Whether an input whose identity equals that of ``earlier`` has its bytes: true for
    a whole-file hash or a URL, compared for a partial identity (false if a file is gone:
    refusing on a footer alone could refuse other data)."""
    if rec["content"].startswith(("sha256:", "store-sha256:")):
        return True
    if not (os.path.isfile(rec["path"]) and os.path.isfile(earlier)):
        return False
    return filecmp.cmp(rec["path"], earlier, shallow=False)
