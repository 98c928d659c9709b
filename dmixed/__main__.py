"""``python -m dmixed`` and the ``dmixed`` command (``[project.scripts]``).

:func:`main` imports the command line itself, so that Ctrl-C while the libraries
underneath load (a second or more) ends the command as it does later: one line on
stderr and exit status 130, no traceback.  ``import dmixed`` before it imports only
the error classes (:mod:`dmixed`'s names are imported on first use).
"""

from __future__ import annotations

import sys

#: the exit status of an interrupted command (``dmixed.job.EXIT_INTERRUPTED``, whose
#: import may be the one interrupted: 128 + SIGINT, as a shell reports the signal)
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """The ``dmixed`` command; returns its exit status (:data:`dmixed.cli.EXIT_STATUSES`)."""
    try:
        from .cli import main as run

        return run(argv)
    except KeyboardInterrupt:  # before cli.main handles it: while importing, parsing
        print("dmixed: error: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
