"""What a first touch of fresh memory costs on this machine, after idle gaps.

Run:  python benchmarks/bench_first_touch.py [--mib 1024] [--gaps 0 0 5 0 10 0]

Allocates ``--mib`` MiB (``np.zeros``: fresh pages from the kernel, huge where numpy
advises them), writes one value every 4 kB and frees it, after each gap of idle
seconds in turn; prints the wall and system CPU of each touch and its page faults.  In
a virtual machine whose balloon driver reports free pages to its host (Linux's
``page_reporting``, ``/sys/module/page_reporting``), pages freed a few seconds before
are no longer backed by the host and cost many times more to fault in than pages freed
just now: what a data pass's first touches cost then depends on what the machine did
seconds before (benchmarks/RESULTS.md, ooc-s33).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def touch(mib: int) -> tuple[float, float, int]:
    """``(wall s, system CPU s, page faults)`` of a first touch of ``mib`` MiB."""
    use0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    block = np.zeros(mib * (1 << 20) // 8)
    block[::512] = 1.0
    wall = time.perf_counter() - t0
    use1 = resource.getrusage(resource.RUSAGE_SELF)
    del block
    return wall, use1.ru_stime - use0.ru_stime, use1.ru_minflt - use0.ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--gaps", type=float, nargs="+", default=[0, 0, 5, 0, 10, 0])
    args = ap.parse_args()
    for gap in args.gaps:
        time.sleep(gap)
        wall, system, faults = touch(args.mib)
        print(
            f"after {gap:4.1f} s idle: {args.mib} MiB first touched in {wall * 1e3:6.0f} ms "
            f"wall, {system * 1e3:6.0f} ms system CPU, {faults} page faults",
            flush=True,
        )


if __name__ == "__main__":
    main()
