"""``python -m dmixed`` / the ``dmixed`` command's entry point (dmixed/__main__.py):
Ctrl-C from the first moment, while the libraries underneath are imported.

The interrupt is made deterministic: a ``sitecustomize`` module on ``PYTHONPATH``
sends SIGINT to the process itself when a given module starts to be imported (the
signal is a real one: Python raises KeyboardInterrupt at the next instruction, inside
that import), instead of a signal sent after a guessed delay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dmixed.job import EXIT_INTERRUPTED

SITECUSTOMIZE = """
import importlib.abc, os, signal, sys

class _InterruptOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["INTERRUPT_ON_IMPORT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _InterruptOnImport())
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_entry_point_exits_as_the_command_does_when_interrupted():
    from dmixed import __main__ as entry  # importing it runs nothing

    assert entry.INTERRUPTED == EXIT_INTERRUPTED


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("module", ["numpy", "pydantic", "dmixed.cli"])
def test_ctrl_c_while_the_command_imports_is_one_line_and_exit_130(tmp_path, module):
    """A Ctrl-C in the first seconds of ``dmixed fit`` (``import dmixed`` imported the
    whole library, outside any handler) printed a Python traceback."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook/sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "INTERRUPT_ON_IMPORT": module,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), os.environ["PYTHONPATH"]]),
    }
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
