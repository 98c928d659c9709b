"""``python -m dmixed`` / the ``dmixed`` command's entry point (dmixed/__main__.py):
Ctrl-C from the first moment, while the libraries underneath are imported.

The interrupt is made deterministic (:mod:`tests._interrupts`): SIGINT is sent to the
process itself when a given module starts to be imported (Python raises
KeyboardInterrupt at the next instruction, inside that import).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dmixed.job import EXIT_INTERRUPTED

from ._interrupts import signal_on_import


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignored_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_is_pythons_own_handler_in_a_test_and_default_in_its_commands():
    """What the tests of Ctrl-C rely on (the conftest's ``sigint_as_in_a_terminal``):
    a ``KeyboardInterrupt`` here, and a command started here with SIGINT at its default."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    child = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.strip() == str(signal.default_int_handler), child.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_run_started_with_sigint_ignored_gives_its_tests_the_default():
    """A run started as a background job of a shell without job control (CI, batch
    jobs) inherits SIGINT ignored, and Python leaves it so in pytest and its workers: the
    Ctrl-C tests' commands then kept it ignored and ran to their end (exit 3, not 130).
    Such a run of the check above passes."""
    here = os.path.dirname(os.path.abspath(__file__))
    check = "test_sigint_is_pythons_own_handler_in_a_test_and_default_in_its_commands"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"tests/test_main.py::{check}"],
        cwd=os.path.dirname(here),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_ignored_sigint,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_the_entry_point_exits_as_the_command_does_when_interrupted():
    from dmixed import __main__ as entry  # importing it runs nothing

    assert entry.INTERRUPTED == EXIT_INTERRUPTED


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("module", ["numpy", "pydantic", "dmixed.cli"])
def test_ctrl_c_while_the_command_imports_is_one_line_and_exit_130(tmp_path, module):
    """A Ctrl-C in the first seconds of ``dmixed fit`` (``import dmixed`` imported the
    whole library, outside any handler) printed a Python traceback."""
    env = signal_on_import(tmp_path, module)
    args = ["fit", "--data", "a.parquet", "--formula", "y ~ x", "--groups", "g"]
    proc = subprocess.run(
        [sys.executable, "-m", "dmixed", *args, "--output", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        # the command as a terminal starts it: a child keeps an ignored SIGINT, and a
        # test process (a pytest-xdist worker of a full run) was seen ignoring it
        preexec_fn=_default_sigint,
    )
    assert (proc.returncode, proc.stderr) == (130, "dmixed: error: interrupted\n"), proc.stderr
    assert proc.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["hook"]
