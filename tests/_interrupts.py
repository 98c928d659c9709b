"""A signal sent at a chosen moment of a command, for the tests of Ctrl-C and SIGTERM.

The moment is made deterministic: a ``sitecustomize`` module on ``PYTHONPATH`` sends
the signal when a given module starts to be imported, by the command itself or by one
of the worker processes it starts (the signal is a real one: a Python handler runs at
the next instruction, inside that import), instead of a signal sent after a guessed
delay.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``INTERRUPT_ON_IMPORT``: ``MODULE`` (the command imports it) or ``worker:MODULE``
#: (a worker process, any other pid than the command's, imports it);
#: ``INTERRUPT_SIGNAL``: the signal's name (default SIGINT); ``INTERRUPT_GROUP``: sent
#: to the whole process group, as a Ctrl-C in a terminal is (default: to the command
#: only, as ``kill PID`` and Kubernetes send it).  The command's pid is kept in
#: ``INTERRUPT_PARENT``, which the worker processes inherit.
SITECUSTOMIZE = """
import importlib.abc, os, signal, sys

os.environ.setdefault("INTERRUPT_PARENT", str(os.getpid()))

class _SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        where, _, module = os.environ["INTERRUPT_ON_IMPORT"].rpartition(":")
        parent = int(os.environ["INTERRUPT_PARENT"])
        if name == module and (os.getpid() != parent) == (where == "worker"):
            sys.meta_path.remove(self)
            sent = getattr(signal, os.environ.get("INTERRUPT_SIGNAL", "SIGINT"))
            if os.environ.get("INTERRUPT_GROUP"):
                os.killpg(os.getpgid(0), sent)
            else:
                os.kill(parent, sent)
        return None

sys.meta_path.insert(0, _SignalOnImport())
"""


def signal_on_import(
    directory: Path, on_import: str, signal_name: str = "SIGINT", group: bool = False
) -> dict[str, str]:
    """The environment of a command that receives ``signal_name`` when ``on_import``
    (``MODULE`` or ``worker:MODULE``, see :data:`SITECUSTOMIZE`) starts to be imported;
    the hook is written to ``directory/hook``."""
    hook = directory / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # this tree's dmixed, whatever the directory the command starts in
    paths = [str(hook), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "INTERRUPT_ON_IMPORT": on_import,
        "INTERRUPT_SIGNAL": signal_name,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
    }
    env.pop("INTERRUPT_PARENT", None)
    env.pop("INTERRUPT_GROUP", None)
    if group:
        env["INTERRUPT_GROUP"] = "1"
    return env
