"""The step sums and the Hessian sums at a Λ in one round trip from the driver.

The Hessian sums need ``w = [−β̂; 1]``, and β̂ needs the step sums of every block.  Made
one after the other from the driver, that is two round trips per Newton iteration, which
is most of a fit's time when the statistics are small and kept on the workers.  Here the
driver submits the whole chain at once: the blocks' step tasks, then per block a task
that adds every block's sums in block order (as the driver adds them), computes ``w``
(with a function the fit layer passes in: this layer knows no statistics theory) and
makes its block's Hessian sums with it; then it waits once.  Each block's task makes
``w`` itself from the other blocks' few sums rather than one task that the others then
wait on: one hop between the workers, not two (the second also waited on a worker that
had started its own Hessian and answered only after it).  Asked for, each block's
Hessian task also makes its BLUPs at that Λ and ``w`` (the results' last round trip,
ridden on the one before when the driver expects that point to be the optimum).
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from ... import kernels
from ...kernels import compiled
from ...kernels.term_table import table_buffer
from ..local import LocalEngine
from .handover import cut
from .placement import call_keys
from .progress import laid_out

__all__ = [
    "block_hessian_random_effects",
    "gathered_steps_hessian",
    "hessian_parts",
    "submit_steps_hessian",
]


def _block_steps(ev, lams: list, q: int) -> list:
    return [ev.step(lam, q) for lam in lams]


def _weights(weights, at: int, parts: list) -> np.ndarray | None:
    """``weights`` of the blocks' step sums at ``lams[at]`` added in block order, laid
    out as the driver's gathered copies are (the same bits as the driver's sum); None
    where it raises ``np.linalg.LinAlgError``."""
    try:
        return weights(functools.reduce(operator.add, [laid_out(p[at]) for p in parts]))
    except np.linalg.LinAlgError:
        return None


def _block_hessian_at(ev, weights, at: int, lam: np.ndarray, basis: np.ndarray, parts: list):
    """``(w, the block's Hessian sums)`` at ``lam``, ``w`` of every block's step sums
    there (``parts``: their :func:`_block_steps`) made by each block's task (the same
    ``w`` in each: the same sums, function and machine); None where ``weights`` raises
    ``np.linalg.LinAlgError`` (no Hessian there)."""
    w = _weights(weights, at, parts)
    return None if w is None else (w, ev.hessian(lam, basis, w))


def _block_hessian_random_effects_at(
    ev, weights, at: int, lam: np.ndarray, basis: np.ndarray, parts: list
):
    """:func:`_block_hessian_at` with the block's BLUPs there:
    ``(w, (HessianSums, (blup, cov)))`` (:func:`block_hessian_random_effects`)."""
    w = _weights(weights, at, parts)
    return None if w is None else (w, block_hessian_random_effects(ev, lam, basis, w))


def block_hessian_random_effects(ev, lam: np.ndarray, basis: np.ndarray, w) -> tuple | None:
    """A block's Hessian sums and its BLUPs with their conditional covariances at
    ``lam`` and ``w`` (``(HessianSums, (blup, cov))``, one task), each per-group array
    cut for the way to the driver (:func:`~dmixed.engines.dask.handover.cut`); None
    where ``w`` is.  Made in one compiled pass, the covariances travel as their upper
    triangles (``cov`` (G, r(r+1)/2): a quarter less to move for ``r = 2``), unfolded
    on the driver where the BLUPs are read
    (:func:`~dmixed.kernels.compiled.upper_unfolded`), both written into one buffer of
    :func:`~dmixed.kernels.term_table.table_buffer` (use ``"blups"``): in a worker that
    keeps buffers, the memory of the last fit's, which nothing views once they were
    sent (fresh pages otherwise, faulted in at every fit's end: benchmarks/RESULTS.md,
    blup-s56)."""
    if w is None:
        return None
    if isinstance(ev, LocalEngine) and _one_pass(ev.block, lam.shape[0]):
        block = ev.block
        fields, blup, cov = compiled.hessian_random_effects(
            block.chunks(),
            lam,
            basis,
            w,
            block.spans.edges,
            upper=True,
            out=_blup_rows(int(block.spans.edges[-1]), lam.shape[0]),
        )
        return kernels.HessianSums(*fields), (cut(blup), cut(cov))
    blup, cov = ev.random_effects(lam, w)
    return ev.hessian(lam, basis, w), (cut(blup), cut(cov))


def _blup_rows(n_groups: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The BLUPs (n_groups, r) and the upper triangles of their covariances
    (n_groups, r(r+1)/2) of :func:`block_hessian_random_effects`, C-ordered views one
    after the other of one :func:`~dmixed.kernels.term_table.table_buffer` (use
    ``"blups"``; values unset): both live as long as either does, as they travel."""
    m = r * (r + 1) // 2
    flat = table_buffer((n_groups, r + m), zeroed=False, use="blups").reshape(-1)
    return flat[: n_groups * r].reshape(n_groups, r), flat[n_groups * r :].reshape(n_groups, m)


def _one_pass(block, r: int) -> bool:
    """Whether a block's Hessian sums and BLUPs are made in one pass over its groups
    (:func:`~dmixed.kernels.compiled.hessian_random_effects`: the same results bit for
    bit as the evaluator's two calls): for ``r ≤ 2`` where both calls would run the
    compiled kernels, not for a block whose forms only numpy evaluates
    (:attr:`~dmixed.kernels.StatsBlock.numpy_only`: rank-one or lossy groups' centred
    forms, which the compiled pass over the raw sums would not take)."""
    return (
        0 < r <= 2
        and not block.numpy_only
        and compiled.backend(block.n_groups, r, "hessian") == "numba"
        and compiled.backend(block.n_groups, r, "blups") == "numba"
    )


def submit_steps_hessian(
    client, blocks: list, args: dict, weights, at: int, random_effects: bool = False
) -> list:
    """The futures of the chain for the evaluators ``blocks``: per block the step sums
    at every Λ of ``args["lams"]``, then ``w`` at ``lams[at]``, then per block the
    Hessian sums there, with ``random_effects`` also its BLUPs
    (:func:`block_hessian_random_effects`): a flat list, for one gather.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block (``step(lam, q)``, ``hessian(lam, basis, w)``).
    args : dict
        ``lams`` (list of (r, r)), ``lam`` (``lams[at]``), ``q`` and ``basis`` (m, r, r),
        arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to a worker.
    at : int
        The Λ whose Hessian sums are made.
    random_effects : bool
        Also make the BLUPs there.
    """
    n = len(blocks)
    steps = client.map(
        _block_steps, blocks, lams=args["lams"], q=args["q"], key=call_keys(_block_steps, n)
    )
    block = _block_hessian_random_effects_at if random_effects else _block_hessian_at
    hessians = client.map(
        block,
        blocks,
        weights=weights,
        at=at,
        lam=args["lam"],
        basis=args["basis"],
        parts=steps,
        key=call_keys(block, n),
    )
    return [*steps, *hessians]


def gathered_steps_hessian(parts: list):
    """``(step sums per Λ, Hessian sums or None, w or None, per-block BLUPs or None)``
    from the gathered chain of :func:`submit_steps_hessian`, each sum added over the
    blocks in block order; the BLUPs (``(blup, cov)`` per block, in block order) where
    they were asked for.  No Hessian where the blocks made none, or not with the same
    ``w`` bit for bit."""
    n = len(parts) // 2
    sums = [functools.reduce(operator.add, [p[i] for p in parts[:n]]) for i in range(len(parts[0]))]
    made = parts[n:]
    if any(h is None for h in made):
        return sums, None, None, None
    w = made[0][0]
    if not all(np.array_equal(h[0], w) for h in made):
        return sums, None, None, None
    hs, blups = hessian_parts([h[1] for h in made])
    return sums, hs, w, blups


def hessian_parts(parts: list) -> tuple:
    """``(Hessian sums added in block order, per-block BLUPs or None)`` of the blocks'
    Hessian tasks: :class:`~dmixed.kernels.HessianSums` each, or
    :func:`block_hessian_random_effects`' pairs."""
    if isinstance(parts[0], tuple):
        return functools.reduce(operator.add, [h for h, _ in parts]), [b for _, b in parts]
    return functools.reduce(operator.add, parts), None
