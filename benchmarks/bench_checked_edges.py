"""Thread CPU of ``compiled.checked_edges`` on a 1M-group block's edges: the check each
merge and BLUP call pays once (benchmarks/RESULTS.md, spans-s55).

    PYTHONPATH=. python benchmarks/bench_checked_edges.py
"""

import statistics
import time

from dmixed.kernels.compiled import checked_edges
from dmixed.kernels.groups import ChunkSpans


def main() -> None:
    edges = ChunkSpans.cut(1_000_000).edges
    runs = []
    for _ in range(7):
        t = time.thread_time()
        for _ in range(10_000):
            checked_edges(edges, 1_000_000)
        runs.append((time.thread_time() - t) / 10_000 * 1e6)
    print(
        f"edges {edges.size}: median {statistics.median(runs):.2f} us a call, "
        f"runs {[round(r, 2) for r in runs]}"
    )


if __name__ == "__main__":
    main()
