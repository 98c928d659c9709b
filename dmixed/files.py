"""Files dmixed writes: atomic directory replacement and its own versioned JSON.

Shared by the results directory (:mod:`dmixed.io`) and saved statistics
(:mod:`dmixed.stats.checkpoint`).  A directory is written under a hidden temporary name
beside its target and renamed into place, so an interrupted writer leaves the previous
complete directory or none; temporaries of killed writers on this host are swept.
This module sits at the bottom of the package: it imports nothing of dmixed but errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from .errors import (
    CheckpointError,
    PathError,
    PathExistsError,
    PathNotFoundError,
    shorten,
    shown_value,
)

__all__ = [
    "dmixed_version",
    "LOCK_TIMEOUT_S",
    "atomic_directory",
    "before_commit",
    "check_format_version",
    "check_target",
    "commit_check",
    "directory_lock",
    "file_sha256",
    "json_sha256",
    "jsonable",
    "lock_path",
    "read_versioned_json",
    "replace_dir",
    "sibling_path",
    "sweep_own_stale",
    "sweep_stale",
]

logger = logging.getLogger("dmixed")

#: given a directory dmixed wrote, the names of the entries it wrote there
#: (:func:`check_target`'s ``owned``)
Owned = Callable[[Path], Collection[str]]


def jsonable(value):
    """numpy/pandas → JSON types; NaN and inf → None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [jsonable(v) for v in value]  # lists, tuples, names written on first use
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def read_versioned_json(file: Path, fmt: str, version: int, what: str) -> dict:
    """A JSON file of dmixed's own format ``fmt``, refusing others and newer versions.

    Raises
    ------
    PathNotFoundError
        ``file`` does not exist (naming its directory and why).
    CheckpointError
        Naming ``file``: not JSON, JSON Python does not parse (an integer of more than
        4300 digits, arrays nested deeper than its parser goes), not of format ``fmt``,
        a ``format_version`` that is not a whole number, or one newer than ``version``.
    """
    if not file.exists():
        where = file.parent
        why = (
            f"no {file.name}"
            if where.is_dir()
            else "it is a file"
            if where.exists()
            else "it does not exist"
        )
        raise PathNotFoundError(f"{where} is not {what} ({why})")
    try:
        with open(file) as fh:
            state = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{file} is not {what}'s {file.name}: not valid JSON ({exc})"
        ) from exc
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise CheckpointError(
            f"{file} is not {what}'s {file.name}: it holds a number of more digits "
            "than dmixed ever writes"
        ) from exc
    except RecursionError:  # arrays or objects nested deeper than Python's parser goes
        raise CheckpointError(
            f"{file} is not {what}'s {file.name}: it holds arrays or objects nested "
            "deeper than dmixed ever writes them"
        ) from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{file} is not {what}'s {file.name} (format {fmt!r} expected)")
    check_format_version(file, state.get("format_version", 0), version, f"{what}'s {file.name}")
    return state


def check_format_version(file, written, version: int, what: str) -> int:
    """``written``, the ``format_version`` read from ``file`` (``what``: the file's kind,
    in the message), refused where it is not a whole number or newer than ``version``,
    the newest this dmixed writes (the one owner of these words, for results
    directories and bootstrap tables).

    Raises
    ------
    CheckpointError
        Naming ``file`` and the version found.
    """
    if isinstance(written, bool) or not isinstance(written, int):
        raise CheckpointError(
            f"{file} is not {what}: its format_version is "
            f"{shown_value(written)}, not a whole number"
        )
    if written > version:
        raise CheckpointError(
            f"{file} was written by a newer dmixed (format version {shown_value(written)})"
        )
    return written


def _writer_tag() -> str:
    """host-pid of this process, in the names of its temporaries."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def sibling_path(target: Path, kind: str) -> Path:
    """A hidden temporary beside ``target``: ``.NAME.KIND-HOST-PID-RANDOM``."""
    return target.parent / f".{target.name}.{kind}-{_writer_tag()}-{uuid.uuid4().hex}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(target: Path) -> None:
    """Remove temporaries of ``target`` left by writers on this host that were killed
    (a ``.old-`` directory is kept while ``target`` is missing: it is then the only
    copy of the previous result; and while it holds a hidden entry: a file of the
    user's whose carry into ``target`` failed, or was never made, see
    :func:`replace_dir`)."""
    host = socket.gethostname().replace("-", "_")
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-{host}-"
        for p in target.parent.iterdir():
            if not p.name.startswith(prefix):
                continue
            try:
                pid = int(p.name[len(prefix) :].split("-")[0])
            except ValueError:
                continue
            if _alive(pid) or (kind == "old" and not target.exists()):
                continue
            if kind == "old" and p.is_dir() and any(n.startswith(".") for n in os.listdir(p)):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:  # a file's temporary (a bootstrap table's), which rmtree leaves
                with contextlib.suppress(OSError):
                    p.unlink()


#: Checks run before a file or directory dmixed wrote is moved into place
#: (:func:`commit_check`, :func:`before_commit`)
_commit_checks: list[Callable[[], None]] = []


@contextlib.contextmanager
def commit_check(check: Callable[[], None]) -> Iterator[None]:
    """While the body runs, ``check`` is called (:func:`before_commit`) before every
    file or directory dmixed wrote is renamed into place, and may raise to stop it.

    The command's SIGTERM record is such a check: a signal whose exception was lost
    (raised inside a callback that swallows exceptions, as a garbage collector's
    callback of ``distributed`` does) still stops the next commit, so a killed job
    never puts its output in place.

    Parameters
    ----------
    check : callable () -> None
        Raises to stop the commit (its exception propagates from the writer, whose
        temporary output is removed and whose old target stays in place).

    Yields
    ------
    None
        ``check`` is registered for the body only (removed on exit, even on error).
    """
    _commit_checks.append(check)
    try:
        yield
    finally:
        _commit_checks.remove(check)


def before_commit() -> None:
    """Run the checks registered by :func:`commit_check`, in order; dmixed's writers
    call this just before each rename that puts output in place.

    Raises
    ------
    BaseException
        Whatever a check raises (the command's ``Terminated`` for a recorded SIGTERM):
        the commit is not made.
    """
    for check in list(_commit_checks):
        check()


def replace_dir(
    new: Path, target: Path, marker: str, kind: str, owned: Owned | None = None
) -> None:
    """Move ``new`` to ``target``; an existing target is swapped out, then removed.

    A non-empty ``target`` without the file ``marker`` (not a dmixed ``kind`` directory,
    e.g. ``"results"``), or a file, or one holding an entry that ``owned`` does not
    name, is never replaced (:func:`check_target`, checked again here, just before the
    swap, since another process may have put a file there meanwhile).  An
    interrupt (Ctrl-C, SIGTERM) or error between the two renames puts the old target
    back before it propagates: ``target`` is never left missing.
    """
    old = None
    try:
        if target.exists():
            sweep_own_stale(target, owned)
            check_target(target, marker, kind, owned=owned)
            old = sibling_path(target, "old")  # named before the rename it may undo
            os.rename(target, old)
        before_commit()  # last, so that a signal lost in the checks above still stops it
        os.rename(new, target)
    except BaseException:
        if old is not None and not os.path.lexists(target) and os.path.lexists(old):
            with contextlib.suppress(OSError):  # the first error is the one to tell
                os.rename(old, target)
        raise
    if old is not None and _carry_hidden(old, target):
        shutil.rmtree(old, ignore_errors=True)


def _carry_hidden(old: Path, target: Path) -> bool:
    """Move the hidden entries (``.DS_Store``, ``.ipynb_checkpoints``: tools' files,
    which :func:`check_target` lets a directory hold) of the replaced directory ``old``
    into its successor ``target``, untouched; False, with ``old`` to be kept, where one
    could not be moved (dmixed writes no hidden entry inside its directories, so none
    is in the way)."""
    carried = True
    for name in os.listdir(old):
        if not name.startswith("."):
            continue
        if os.path.lexists(target / name):
            carried = False
            continue
        try:
            os.rename(old / name, target / name)
        except OSError:
            carried = False
    if not carried:
        logger.warning("hidden files of the replaced %s are kept in %s", target, old)
    return carried


def sweep_own_stale(target: Path, owned: Owned | None) -> None:
    """Remove, inside the directory ``target``, the temporaries that killed writers on
    this host left beside the entries dmixed writes there (``owned``: a
    ``.bootstrap.parquet.tmp-HOST-PID-...`` of a killed bootstrap save), as
    :func:`sweep_stale` does beside a directory."""
    if owned is None or not os.path.isdir(target):
        return
    for name in owned(Path(target)):
        sweep_stale(Path(target) / name)


def check_target(path, marker: str, kind: str, name: str = "", owned: Owned | None = None) -> None:
    """Refuse, before anything is written, a directory ``path`` that dmixed would not
    replace or could not create: one that exists and is a file, or is a non-empty
    directory without the file ``marker`` (not a dmixed ``kind`` directory, e.g.
    ``"results"``), or one whose nearest existing parent is a file or not writable.
    ``name`` says how the path was given (``"--output"``) in the messages.  Whether
    the parent takes new entries is tried (an empty directory made and removed).

    ``owned``, given the directory, returns the names of the entries dmixed writes in
    it: a directory holding any other entry (a file of the user's, the input being
    read) is refused too, since replacing the directory would delete it.  Hidden
    entries (names starting with ``.``: ``.DS_Store``, ``.ipynb_checkpoints``) are
    allowed: :func:`replace_dir` carries them into the new directory untouched.

    Raises
    ------
    PathExistsError
        ``path`` exists and is not a dmixed ``kind`` directory, or holds an entry
        dmixed did not write there (named), or lies under a file.
    PathError
        The nearest existing parent of ``path`` does not take a new entry.
    """
    shown = f"{name} {path}" if name else str(path)
    another = f"another {name}" if name else "another path"
    # the directory is written beside itself (a temporary renamed into place, a lock
    # file): its nearest existing parent must take a new entry
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise PathExistsError(f"{shown} cannot be created: {above} is a file")
    _probe_writable(above, shown)
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise PathExistsError(
            f"{shown} exists and is a file, not a dmixed {kind} directory; choose {another}"
        )
    if not os.path.exists(os.path.join(path, marker)) and os.listdir(path):
        raise PathExistsError(
            f"{shown} exists and is not a dmixed {kind} directory (no {marker}); "
            f"dmixed never replaces it: choose {another} or empty that directory"
        )
    if owned is not None:
        # hidden entries (tools' .DS_Store, .ipynb_checkpoints) are carried through
        # the replacement (replace_dir); dmixed's own stale temporaries are swept
        listed = (n for n in os.listdir(path) if not n.startswith("."))
        foreign = sorted(set(listed) - set(owned(Path(path))))
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise PathExistsError(
                f"{shown} holds {os.path.join(path, shorten(foreign[0]))}{more}, which "
                f"dmixed did not write there: replacing the {kind} directory would delete "
                f"it; move it out of {path}, or choose {another}"
            )


def _probe_writable(directory: str, shown: str) -> None:
    """Create and remove an empty hidden directory in ``directory``: permission bits
    do not tell (root passes ``os.access`` on ``/proc``, a read-only mount), a try does.

    Raises
    ------
    PathError
        ``directory`` does not take a new entry.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dmixed-probe-", dir=directory))
    except OSError as exc:
        raise PathError(
            f"{shown} cannot be created: {directory} is not a writable directory "
            f"({exc.strerror or exc})"
        ) from None


@contextlib.contextmanager
def atomic_directory(path, marker: str, kind: str, owned: Owned | None = None) -> Iterator[Path]:
    """Write the directory ``path`` atomically: the body fills the yielded temporary.

    The temporary is a hidden sibling of ``path`` (of the directory it names, when
    ``path`` is a symbolic link; temporaries of killed writers on this host are swept
    first).  When the body succeeds, every file in it is synced to
    disk and it replaces ``path`` (:func:`replace_dir`, which refuses a directory
    without ``marker``, or holding an entry ``owned`` does not name); when anything
    fails, ``KeyboardInterrupt`` included, it is removed and ``path`` is left as it was.

    Raises
    ------
    PathError
        ``path`` is refused by :func:`check_target` before anything is written.
    """
    # a symbolic link is written through, to the directory it names (which its lock,
    # lock_path, also resolves to): renaming over the link would replace the link
    target = Path(path).resolve()
    sweep_own_stale(target, owned)
    check_target(target, marker, kind, owned=owned)
    parent = target.parent if str(target.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = sibling_path(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        for f in sorted(tmp.rglob("*")):  # data on disk before the rename makes it visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        replace_dir(tmp, target, marker=marker, kind=kind, owned=owned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------
# Digests
# ---------------------------------------------------------------------------


def json_sha256(document: dict) -> str:
    """sha256 of a JSON document in canonical form (sorted keys, no spaces, strict
    JSON); the same for the document as written and as read back (floats round-trip)."""
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def without_key_sha256(document: dict, key: str) -> str:
    """:func:`json_sha256` of ``document`` without its ``key``: the sha256 a document
    records of itself under ``key`` (a statistics manifest, a results' estimates)."""
    return json_sha256({k: v for k, v in document.items() if k != key})


def records_own_sha256(document: dict, key: str) -> bool:
    """Whether ``document[key]`` is the :func:`without_key_sha256` of the rest of it
    (False where it is not strict JSON, e.g. a NaN after an edit)."""
    try:
        return document.get(key) == without_key_sha256(document, key)
    except (TypeError, ValueError):
        return False


def file_sha256(file: Path) -> str:
    """sha256 of the bytes of ``file`` (hex), read in blocks of 8 MiB."""
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_parquet_sha256(file: Path, what: str = "") -> tuple[pd.DataFrame, str]:
    """A Parquet file read once, from a memory map, with the sha256 of its bytes (hex):
    the bytes hashed are the bytes parsed.

    Raises
    ------
    CheckpointError
        The file cannot be read as Parquet (named, with ``what`` appended: advice).
    """
    import pyarrow as pa

    try:
        with pa.memory_map(str(file)) as source:
            data = source.read_buffer()
            sha256 = hashlib.sha256(data).hexdigest()
            frame = pd.read_parquet(pa.BufferReader(data))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CheckpointError(f"{file} cannot be read as Parquet ({exc}){what}") from exc
    return frame, sha256


# ---------------------------------------------------------------------------
# Lock of a directory shared by jobs
# ---------------------------------------------------------------------------

#: how long a job waits for another job's lock on a directory (seconds); the
#: environment variable ``DMIXED_LOCK_TIMEOUT`` overrides it
LOCK_TIMEOUT_S = 3600.0


def lock_path(target: Path) -> Path:
    """The lock file of the directory ``target``: ``.NAME.lock`` beside it (not inside:
    the directory itself is replaced by a rename when it is written)."""
    target = Path(target).resolve()
    return target.parent / f".{target.name}.lock"


def _lock_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    value = os.environ.get("DMIXED_LOCK_TIMEOUT", "")
    try:
        return float(value) if value else LOCK_TIMEOUT_S
    except ValueError:
        raise CheckpointError(
            f"DMIXED_LOCK_TIMEOUT must be a number of seconds, got {value!r}"
        ) from None


@contextlib.contextmanager
def directory_lock(path, kind: str, timeout: float | None = None) -> Iterator[Path]:
    """Hold the lock of the directory ``path`` (:func:`lock_path`) for the body.

    An exclusive lock (``flock`` through the filelock library): jobs that change one
    directory run one after another, whatever the order they started in; the lock is
    released when the body ends or the process dies (no stale lock to remove).  A job
    that finds the lock held says so and waits up to ``timeout`` seconds (default
    :data:`LOCK_TIMEOUT_S`, or ``DMIXED_LOCK_TIMEOUT``).  The lock file is removed when
    the body ends, whether it succeeded or failed (a refused or failed job leaves no
    ``.NAME.lock`` behind).

    Raises
    ------
    CheckpointError
        The lock was not free within ``timeout``, or the lock file cannot be created.
    """
    file = lock_path(Path(path))
    wait = _lock_timeout(timeout)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(file))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning(
                "waiting for %s: another dmixed job is changing the %s directory %s "
                "(waiting up to %g s)",
                file,
                kind,
                path,
                wait,
            )
            lock.acquire(timeout=wait)
    except Timeout:
        raise CheckpointError(
            f"the lock {file} of the {kind} directory {path} was still held by another "
            f"dmixed job after {wait:g} s; run this job when that one has finished "
            "(or raise DMIXED_LOCK_TIMEOUT)"
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the lock {file} of the {kind} directory {path}: {exc}"
        ) from exc
    try:
        yield file
    finally:
        # no lock file outlives its holder, after a success or a failure.  Removed while
        # held: a waiter that then gets the lock of the unlinked file discards it and
        # opens the path afresh (filelock >= 3.20.4 checks st_nlink), so two jobs never
        # hold locks of two files of one name
        with contextlib.suppress(OSError):
            file.unlink()
        lock.release()


def dmixed_version() -> str:
    """The installed dmixed's version (``importlib.metadata``), as the files it writes
    and ``dmixed --version`` record it; ``"unknown (not installed)"`` for a source tree
    on the path with no package record.  The one owner of the version
    (``dmixed.__version__`` reads it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dmixed")
    except PackageNotFoundError:
        return "unknown (not installed)"
