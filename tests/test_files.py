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
