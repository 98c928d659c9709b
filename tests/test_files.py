"""Files dmixed writes (``dmixed/files.py``): digests and the lock of a shared directory.

The atomic replacement of directories is tested through its users
(``tests/stats/test_checkpoint.py``, ``tests/io/test_results_dir.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from dmixed import CheckpointError
from dmixed.files import directory_lock, file_sha256, json_sha256, lock_path

HOLDER = """
import sys, time
from dmixed.files import directory_lock
with directory_lock(sys.argv[1], kind="statistics"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def test_json_sha256_is_the_same_for_the_document_read_back(tmp_path):
    doc = {"b": [0.1, 1e-300, -0.0, 3], "a": {"z": None, "y": "é"}, "n": 2**62}
    (tmp_path / "d.json").write_text(json.dumps(doc, indent=1))
    assert json_sha256(json.loads((tmp_path / "d.json").read_text())) == json_sha256(doc)
    assert json_sha256({**doc, "n": 2**62 + 1}) != json_sha256(doc)


def test_file_sha256_reads_in_blocks(tmp_path):
    data = bytes(range(256)) * 70_000  # more than one 8 MiB block would be 2**23
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_lock_file_is_beside_the_directory_whatever_the_path_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert lock_path("stats") == lock_path(tmp_path / "stats/") == tmp_path / ".stats.lock"
    assert lock_path("sub/../stats") == tmp_path / ".stats.lock"


def test_a_held_lock_makes_another_job_wait_then_refuse_naming_the_lock(tmp_path):
    """A second holder waits for the first; after the bounded wait it refuses with the
    lock's path.  The lock goes with its holder's process (no stale lock)."""
    target = tmp_path / "stats"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(CheckpointError, match=r"\.stats\.lock .*still held.*after 0.2 s"):
                with directory_lock(target, kind="statistics", timeout=0.2):
                    pytest.fail("dmixed bug: two holders of one directory lock")
        finally:
            holder.kill()  # SIGKILL: the lock must go with the process
            holder.wait(timeout=60)
    with directory_lock(target, kind="statistics", timeout=60) as file:
        assert file == tmp_path / ".stats.lock"


def test_threads_holding_one_lock_run_one_after_another(tmp_path):
    inside, overlaps, done = [], [], []

    def job(i):
        with directory_lock(tmp_path / "stats", kind="statistics", timeout=120):
            inside.append(i)
            overlaps.append(len(inside))
            threading.Event().wait(0.05)
            inside.remove(i)
            done.append(i)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(done) == [0, 1, 2, 3] and overlaps == [1, 1, 1, 1]


def test_lock_timeout_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DMIXED_LOCK_TIMEOUT", "soon")
    with pytest.raises(CheckpointError, match="DMIXED_LOCK_TIMEOUT must be a number"):
        with directory_lock(tmp_path / "stats", kind="statistics"):
            pass
    monkeypatch.setenv("DMIXED_LOCK_TIMEOUT", "0.1")
    with directory_lock(tmp_path / "stats", kind="statistics"):
        with pytest.raises(CheckpointError, match="after 0.1 s"):
            with directory_lock(tmp_path / "stats", kind="statistics"):
                pass


def test_a_lock_that_cannot_be_created_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot create the lock"):
        with directory_lock(tmp_path / "file" / "stats", kind="statistics", timeout=1):
            pass


@pytest.mark.parametrize("written", [False, True], ids=["no directory", "directory"])
@pytest.mark.parametrize("fails", [True, False], ids=["failed", "succeeded"])
def test_no_lock_file_outlives_its_holder(tmp_path, written, fails):
    """A job that failed before writing its statistics left ``.stats.lock`` beside
    nothing; one refused or failed on an existing directory (a refused update) left it
    beside the directory.  That jobs still run one after another when each removes the
    file it holds is test_threads_holding_one_lock_run_one_after_another."""
    if written:
        (tmp_path / "stats").mkdir()
    with contextlib.ExitStack() as stack:
        if fails:
            stack.enter_context(pytest.raises(RuntimeError, match="the job failed"))
        with directory_lock(tmp_path / "stats", kind="statistics") as file:
            assert file.exists()
            if fails:
                raise RuntimeError("the job failed")
    assert not file.exists()
    assert (tmp_path / "stats").exists() == written


@pytest.mark.parametrize("raised", [KeyboardInterrupt, OSError])
def test_an_interrupt_between_the_renames_puts_the_old_directory_back(
    tmp_path, monkeypatch, raised
):
    """The old directory had been renamed aside, the new one not yet into place: the
    target was missing, the old one hidden beside it."""
    import dmixed.files as files

    target, new = tmp_path / "R", tmp_path / "R.tmp"
    for path, text in ((target, "old"), (new, "new")):
        path.mkdir()
        (path / "estimates.json").write_text(text)
    renames = []
    real_rename = os.rename

    def rename(src, dst):
        renames.append(src)
        if len(renames) == 2:
            raise raised
        real_rename(src, dst)

    monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(raised):
        files.replace_dir(new, target, "estimates.json", "results")
    monkeypatch.setattr(files.os, "rename", real_rename)
    assert (target / "estimates.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R", "R.tmp"]


def test_a_commit_check_raising_at_the_rename_leaves_the_old_target(tmp_path):
    # the check runs last, after the old target is moved aside: a recorded signal
    # there still stops the commit, and the old target is put back
    import dmixed.files as files

    target, new = tmp_path / "R", tmp_path / "R.tmp"
    for path, text in ((target, "old"), (new, "new")):
        path.mkdir()
        (path / "estimates.json").write_text(text)
    seen = []

    def check():
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise KeyboardInterrupt

    with files.commit_check(check), pytest.raises(KeyboardInterrupt):
        files.replace_dir(new, target, "estimates.json", "results")
    assert len(seen) == 1 and "R" not in seen[0]  # called after the old one moved aside
    assert (target / "estimates.json").read_text() == "old"
    assert (new / "estimates.json").read_text() == "new"


def test_check_target_refuses_a_directory_holding_an_entry_not_owned(tmp_path):
    """Replacing a directory deletes all it holds: only the entries ``owned`` names go."""
    from dmixed.files import check_target

    d = tmp_path / "out"
    d.mkdir()
    (d / "mark.json").write_text("{}")
    (d / "ours.txt").write_text("")
    check_target(d, "mark.json", "results", owned=lambda p: {"mark.json", "ours.txt"})
    (d / "zzz").mkdir()
    with pytest.raises(FileExistsError, match=r"holds .*zzz, which dmixed did not write"):
        check_target(d, "mark.json", "results", owned=lambda p: {"mark.json", "ours.txt"})


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"format": "f", "format_version": ' + "9" * 4400 + "}", "more digits"),
        ('{"format": "f", "x": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested deeper"),
        ('{"format": "f", "format_version": [1]}', r"format_version is \[1\], not a whole"),
        ('{"format": "f", "format_version": true}', "format_version is True, not a whole"),
    ],
    ids=["bigint", "deep", "list", "bool"],
)
def test_a_versioned_json_python_cannot_read_is_a_checkpoint_error_naming_it(
    tmp_path, text, needle
):
    from dmixed.files import read_versioned_json

    file = tmp_path / "m.json"
    file.write_text(text)
    with pytest.raises(CheckpointError, match=needle) as info:
        read_versioned_json(file, "f", 3, "a thing")
    assert str(file) in str(info.value)


def test_check_target_allows_hidden_entries_and_replace_dir_carries_them(tmp_path):
    """Tools' hidden files (``.DS_Store``, ``.ipynb_checkpoints``) in a directory dmixed
    wrote stopped every rewrite; they are allowed and carried, untouched, into the new
    directory, while what dmixed wrote is replaced."""
    from dmixed.files import check_target, replace_dir

    owned = lambda p: {"mark.json"}  # noqa: E731
    d = tmp_path / "out"
    d.mkdir()
    (d / "mark.json").write_text("old")
    (d / ".DS_Store").write_bytes(b"\x00finder")
    (d / ".ipynb_checkpoints").mkdir()
    (d / ".ipynb_checkpoints" / "n.ipynb").write_text("{}")
    check_target(d, "mark.json", "results", owned=owned)
    new = tmp_path / "new"
    new.mkdir()
    (new / "mark.json").write_text("new")
    replace_dir(new, d, "mark.json", "results", owned=owned)
    assert sorted(os.listdir(d)) == [".DS_Store", ".ipynb_checkpoints", "mark.json"]
    assert (d / "mark.json").read_text() == "new"
    assert (d / ".DS_Store").read_bytes() == b"\x00finder"
    assert (d / ".ipynb_checkpoints" / "n.ipynb").read_text() == "{}"
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the old directory removed


def test_hidden_files_kept_in_an_old_directory_are_not_swept(tmp_path, monkeypatch):
    """A hidden file whose carry failed is kept (the warning says so) in the
    ``.old-HOST-PID-...`` directory; once its writer was gone, the next save's sweep
    deleted that directory and the file with it: it is kept."""
    from dmixed import files

    owned = lambda p: {"mark.json"}  # noqa: E731
    d = tmp_path / "out"
    d.mkdir()
    (d / "mark.json").write_text("1")
    (d / ".notes").write_text("mine")
    real = os.rename

    def rename(a, b):  # the carry of the hidden file fails (EXDEV, EACCES, ...)
        if str(b).endswith(".notes"):
            raise PermissionError(13, "denied", str(b))
        return real(a, b)

    def save(text: str) -> None:
        with files.atomic_directory(d, "mark.json", "results", owned=owned) as tmp:
            (tmp / "mark.json").write_text(text)

    monkeypatch.setattr(os, "rename", rename)
    save("2")
    monkeypatch.setattr(os, "rename", real)
    (kept,) = (p for p in tmp_path.iterdir() if ".old-" in p.name)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dead = kept.with_name(kept.name.replace(f"-{os.getpid()}-", f"-{gone}-"))
    kept.rename(dead)
    save("3")
    assert (dead / ".notes").read_text() == "mine"
    assert (d / "mark.json").read_text() == "3"


KILLED_WRITER = """
import sys
from pathlib import Path
from dmixed.files import sibling_path
sibling_path(Path(sys.argv[1]), "tmp").write_text("half a table")
"""


def test_a_killed_writers_temporary_inside_the_directory_is_swept(tmp_path):
    """A bootstrap save killed between its write and its rename left
    ``.bootstrap.parquet.tmp-HOST-PID-...`` in the results directory; it is dmixed's
    own: swept (its writer gone) before the directory is rewritten, not carried."""
    from dmixed.files import atomic_directory

    owned = lambda p: {"mark.json", "bootstrap.parquet"}  # noqa: E731
    d = tmp_path / "out"
    with atomic_directory(d, "mark.json", "results", owned=owned) as tmp:
        (tmp / "mark.json").write_text("1")
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(d / "bootstrap.parquet")], check=True)
    (stale,) = (n for n in os.listdir(d) if n.startswith(".bootstrap.parquet.tmp-"))
    with atomic_directory(d, "mark.json", "results", owned=owned) as tmp:
        (tmp / "mark.json").write_text("2")
    assert sorted(os.listdir(d)) == ["mark.json"], stale
    assert (d / "mark.json").read_text() == "2"


def test_one_function_shortens_every_shown_text():
    """``design.messages.shown`` is :func:`dmixed.errors.shorten` with ``repr``: the
    first and last 200 characters and the length, for formulas and file values alike."""
    from dmixed.design.messages import shown
    from dmixed.errors import SHOWN_ENDS, shorten

    long = "a" * 300 + "b" * 300
    assert shown(long) == shorten(long, repr) == f"{'a' * 200!r} ... {'b' * 200!r} (600 characters)"
    assert shorten(long) == f"{'a' * 200} ... {'b' * 200} (600 characters)"
    assert shown("y ~ x") == "'y ~ x'" and shorten("y ~ x") == "y ~ x"
    assert SHOWN_ENDS == 200
    assert not hasattr(__import__("dmixed.files").files, "SHOWN_CHARS")  # no second limit


def test_shown_value_is_built_bounded():
    """A value of 9^7 items held as nine references to nine references... (what YAML
    aliases build) is shown in a few hundred characters, without its whole repr
    (hundreds of megabytes) being made first; an integer of 5000 digits too."""
    from dmixed.errors import shown_value

    value: list = ["lol"] * 9
    for _ in range(7):
        value = [value] * 9
    text = shown_value(value)
    assert len(text) < 1000 and text.startswith("[[[[")
    assert shown_value(10**5000) == "<an integer of 16610 bits>"
    assert len(shown_value({"k": "x" * 10_000})) < 500
    assert shown_value("2") == "'2'"
