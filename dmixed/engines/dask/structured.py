"""Variance components held structured on a cluster (:mod:`dmixed.kernels.vc_blocks`).

The data pass leaves every block of groups padded (``zz`` G_b × r × r), or ragged
already (``Block.ragged``, :mod:`~dmixed.engines.dask.ragged`).  Where the
layout allows the structured engine (:func:`~dmixed.engines.vc_local.structured_layout`)
and every block's variance-component block is diagonal (:func:`block_structure`, one
small round trip), the blocks are read into their ragged form on the workers: kept
there as :class:`~dmixed.engines.vc_local.StructuredVCEngine` evaluators (the
distributed engine), or gathered ragged into one in this process
(:func:`gather_structured`).  Either way the fit runs with one slot per component, as in
process, and the auto rule counts the ragged values (:func:`ragged_values`).
"""

from __future__ import annotations

import numpy as np

from ...kernels.pages import paged
from ...kernels.vc_blocks import RaggedVC, diagonal_vc_block
from ...kernels.vc_border import CrossedVC
from ...stats import Layout
from ...stats.blup_cov import slots_in_sorted_order
from ..vc_crossed import CrossedVCEngine
from ..vc_local import StructuredVCEngine, structured_layout, worth_structure
from .blocks import Block, reorder_parts
from .progress import gather


def block_structure(block: Block, q: int) -> tuple[bool, int]:
    """Whether the block's variance-component block is diagonal in every group, and how
    many slots its groups use (non-zero diagonal entries): runs on a worker."""
    if block.ragged is not None:  # summed ragged by the data pass
        return True, int(block.ragged.d.size)
    zz = block.zz
    if zz is None or zz.shape[0] == 0:
        return True, 0
    used = int(np.count_nonzero(np.diagonal(zz[:, q:, q:], axis1=1, axis2=2)))
    return diagonal_vc_block(zz, q), used


def block_ragged(block: Block, layout: Layout) -> RaggedVC:
    """The ragged statistics of a block whose variance-component block is diagonal
    (:func:`block_structure`): runs on a worker."""
    if block.ragged is not None:
        return block.ragged
    return RaggedVC.from_dense(block.zz, block.zxy, layout.k_re, layout.slot_component)


def structure_possible(layout: Layout, ragged: bool = False) -> bool:
    """Whether blocks of this layout may be held structured (then
    :func:`structured_slots` asks the blocks, a round trip; else it answers None at
    once).  ``ragged``: the blocks come from the ragged pass, which holds no
    within-group sums, so one random-design column in all
    (:func:`~dmixed.engines.vc_local.structured_layout`'s exclusion) is structured too."""
    return worth_structure(layout) if ragged else structured_layout(layout)


def structured_slots(client, futures: list, layout: Layout, ragged: bool = False) -> int | None:
    """The slots used in all blocks when every block can be held structured, else None
    (the layout does not allow it (:func:`structure_possible`), or some group's
    components overlap)."""
    if not structure_possible(layout, ragged):
        return None
    parts = gather(
        client,
        client.map(paged(block_structure), futures, q=layout.k_re, pure=False),
        "the variance components' structure",
    )
    if not all(diagonal for diagonal, _ in parts):
        return None
    return int(sum(used for _, used in parts))


def ragged_values(n_groups: int, q: int, k: int, n_slots: int) -> int:
    """float64 values of ragged statistics: ``G q (q + k)`` of ``exog_re`` and
    ``J (1 + q + k)`` for the ``J`` slots used (``d``, ``b``, ``F2``); ``k = p + 1``."""
    return n_groups * q * (q + k) + n_slots * (1 + q + k)


def gather_structured(
    client, futures: list, layout: Layout, position: np.ndarray
) -> StructuredVCEngine:
    """The blocks read ragged on the workers and gathered into one structured engine,
    groups in sorted order (``position``: each group's sorted position, in
    block-concatenation order)."""
    parts = gather(
        client, client.map(paged(block_ragged), futures, layout=layout, pure=False), "the data pass"
    )
    return StructuredVCEngine(concatenate_ragged(parts, position))


def block_values(block: Block) -> int:
    """float64 values of a block held crossed (:attr:`CrossedVC.n_values`): runs on a
    worker."""
    return 0 if block.crossed is None else block.crossed.n_values


def crossed_values(client, futures: list) -> int:
    """float64 values of the blocks held crossed (the auto rule's count)."""
    sizes = gather(client, client.map(paged(block_values), futures, pure=False), "the data pass")
    return int(sum(sizes))


def block_crossed(block: Block) -> CrossedVC:
    """The crossed statistics of a block (to gather)."""
    return block.crossed


def gather_crossed(client, futures: list, position: np.ndarray) -> CrossedVCEngine:
    """The blocks' crossed statistics gathered into one in-process engine, groups in
    sorted order (``position`` as :func:`gather_structured`)."""
    parts = gather(client, client.map(paged(block_crossed), futures, pure=False), "the data pass")
    return CrossedVCEngine(CrossedVC.concatenate(parts, position))


def concatenate_ragged(parts: list[RaggedVC], position: np.ndarray) -> RaggedVC:
    """Blocks' ragged statistics as one, groups in sorted order: block ``b``'s group
    ``i`` goes to ``position[offset_b + i]``, the slots sorted by (group, column)."""
    first = parts[0]
    group, order = slots_in_sorted_order(
        [p.group for p in parts],
        [p.n_groups for p in parts],
        [p.pos for p in parts],
        position,
        first.r,
    )

    def groups(name: str) -> np.ndarray:
        return reorder_parts(position, [getattr(p, name) for p in parts])

    def slots(name: str) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([getattr(p, name) for p in parts])[order])

    return RaggedVC(
        a=groups("a"),
        f1=groups("f1"),
        group=group,
        comp=slots("comp"),
        pos=slots("pos"),
        d=slots("d"),
        b=slots("b"),
        f2=slots("f2"),
        offsets=first.offsets,
        r=first.r,
    )
