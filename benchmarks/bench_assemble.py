"""The driver's assembly of the blocks' summaries: time and memory at 1M groups.

Makes the summaries a data pass of ``--groups`` groups (ids 0 … G−1, a few rows each)
over ``--blocks`` blocks gathers (:func:`~dmixed.engines.dask.blocks.block_summary`:
each block's labels increasing, sent as steps; its row counts narrowed), pickled and
unpickled as they travel, then times what the driver does with them in the dmixed on
``PYTHONPATH`` (``opened_summary`` first where the tree has it, then
``assemble_blocks``): the median of ``--repeat`` runs, and the peak of the memory
allocated (``tracemalloc``, numpy's arrays included) in one run.

    python benchmarks/bench_assemble.py [--groups 1000000] [--blocks 2] [--repeat 15]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
import tracemalloc

import numpy as np

import dmixed
from dmixed.engines.dask import blocks as blocks_module


def summaries(groups: int, n_blocks: int, seed: int = 0) -> list:
    """Pickled summaries of ``n_blocks`` blocks of the ids 0 … ``groups``−1, hashed to
    blocks at random, each block's labels increasing."""
    rng = np.random.default_rng(seed)
    bucket = rng.integers(0, n_blocks, groups)
    out = []
    for b in range(n_blocks):
        labels = np.flatnonzero(bucket == b).astype(np.int64)
        nobs = rng.integers(5, 40, labels.size).astype(np.int64)
        block = blocks_module.Block(labels, nobs, np.eye(5), int(nobs.sum()), 0.0)
        out.append(pickle.dumps(blocks_module.block_summary(block), protocol=5))
    return out


def assemble(sent: list):
    gathered = [pickle.loads(s) for s in sent]
    opened = getattr(blocks_module, "opened_summary", None)
    if opened is not None:  # the trees before the assembly in place
        gathered = [opened(s) for s in gathered]
    return blocks_module.assemble_blocks(gathered, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=1_000_000)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sent = summaries(args.groups, args.blocks)
    assemble(sent)  # warm
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        assemble(sent)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    asm = assemble(sent)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"dmixed {dmixed.__file__}: {len(asm.group_labels)} groups in {args.blocks} blocks; "
        f"median {statistics.median(times) * 1e3:.2f} ms, best {min(times) * 1e3:.2f} ms; "
        f"peak allocated {peak / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
