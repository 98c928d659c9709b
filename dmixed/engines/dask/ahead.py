"""The step sums and the Hessian sums at a Λ in one round trip from the driver.

The Hessian sums need ``w = [−β̂; 1]``, and β̂ needs the step sums of every block.  Made
one after the other from the driver, that is two round trips per Newton iteration, which
is most of a fit's time when the statistics are small and kept on the workers.  Here the
driver submits the whole chain at once: the blocks' step tasks, then per block a task
that adds every block's sums in block order (as the driver adds them), computes ``w``
(with a function the fit layer passes in: this layer knows no statistics theory) and
makes its block's Hessian sums with it; then it waits once.  The step sums at the Λ of
the Hessian are each block's task of their own, the other Λ's after them: a worker makes
those while the sums cross between the workers, rather than wait for them.  Each block's task makes
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


def _block_step(ev, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _block_steps_after(ev, before, lams: list, q: int) -> list:
    """The block's step sums at each of ``lams``, after ``before`` (its task at the
    Hessian's Λ, on the same worker; not read): ready only once its worker's thread is
    free, as :func:`_block_hessian_at`'s tasks are."""
    return [ev.step(lam, q) for lam in lams]


def _weights(weights, parts: list) -> np.ndarray | None:
    """``weights`` of the blocks' step sums ``parts`` added in block order, laid out as
    the driver's gathered copies are (the same bits as the driver's sum); None where it
    raises ``np.linalg.LinAlgError``."""
    try:
        return weights(functools.reduce(operator.add, [laid_out(p) for p in parts]))
    except np.linalg.LinAlgError:
        return None


def _block_hessian_at(ev, after, weights, lam: np.ndarray, basis: np.ndarray, parts: list):
    """``(w, the block's Hessian sums)`` at ``lam``, ``w`` of every block's step sums
    there (``parts``) made by each block's task (the same ``w`` in each: the same sums,
    function and machine); None where ``weights`` raises ``np.linalg.LinAlgError`` (no
    Hessian there).  ``after`` (not read): the block's last step task, so that the
    task is ready only once its worker's thread is free: the scheduler places a ready
    task by its workers' queues too, and one ready while its worker was still busy was
    placed on the other, with the evaluator sent across."""
    w = _weights(weights, parts)
    return None if w is None else (w, ev.hessian(lam, basis, w))


def _block_hessian_random_effects_at(
    ev, after, weights, lam: np.ndarray, basis: np.ndarray, parts: list
):
    """:func:`_block_hessian_at` with the block's BLUPs there:
    ``(w, (HessianSums, (blup, cov)))`` (:func:`block_hessian_random_effects`)."""
    w = _weights(weights, parts)
    return None if w is None else (w, block_hessian_random_effects(ev, lam, basis, w))


def block_hessian_random_effects(ev, lam: np.ndarray, basis: np.ndarray, w) -> tuple | None:
    """A block's Hessian sums and its BLUPs with their conditional covariances at
    ``lam`` and ``w`` (``(HessianSums, (blup, cov))``, one task), each per-group array
    cut for the way to the driver (:func:`~dmixed.engines.dask.handover.cut`); None
    where ``w`` is."""
    if w is None:
        return None
    if isinstance(ev, LocalEngine) and _one_pass(ev.block.n_groups, lam.shape[0]):
        block = ev.block
        fields, blup, cov = compiled.hessian_random_effects(
            block.chunks(), lam, basis, w, block.n_groups
        )
        return kernels.HessianSums(*fields), (cut(blup), cut(cov))
    blup, cov = ev.random_effects(lam, w)
    return ev.hessian(lam, basis, w), (cut(blup), cut(cov))


def _one_pass(n_groups: int, r: int) -> bool:
    """Whether a block's Hessian sums and BLUPs are made in one pass over its groups
    (:func:`~dmixed.kernels.compiled.hessian_random_effects`: the same results bit for
    bit as the evaluator's two calls): for ``r ≤ 2`` where both calls would run the
    compiled kernels."""
    return (
        0 < r <= 2
        and compiled.backend(n_groups, r, "hessian") == "numba"
        and compiled.backend(n_groups, r, "blups") == "numba"
    )


def submit_steps_hessian(
    client, blocks: list, args: dict, weights, at: int, random_effects: bool = False
) -> list:
    """The futures of the chain for the evaluators ``blocks``: per block the step sums
    at ``lams[at]``, per block those at the other Λ of ``args["lams"]`` (none where
    there is no other), then per block ``w`` at ``lams[at]`` and the Hessian sums there,
    with ``random_effects`` also its BLUPs (:func:`block_hessian_random_effects`): a
    flat list, for one gather (:func:`gathered_steps_hessian`).

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block (``step(lam, q)``, ``hessian(lam, basis, w)``).
    args : dict
        ``lams`` (list of (r, r)), ``lam`` (``lams[at]``), ``q`` and ``basis`` (m, r, r),
        arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to the workers.
    at : int
        The Λ whose Hessian sums are made.
    random_effects : bool
        Also make the BLUPs there.
    """
    n = len(blocks)
    here = client.map(
        _block_step, blocks, lam=args["lam"], q=args["q"], key=call_keys(_block_step, n)
    )
    rest = [lam for i, lam in enumerate(args["lams"]) if i != at]
    others = []
    if rest:
        others = client.map(
            _block_steps_after,
            blocks,
            here,
            lams=rest,
            q=args["q"],
            key=call_keys(_block_steps_after, n),
        )
    block = _block_hessian_random_effects_at if random_effects else _block_hessian_at
    hessians = client.map(
        block,
        blocks,
        others or here,
        weights=weights,
        lam=args["lam"],
        basis=args["basis"],
        parts=here,
        key=call_keys(block, n),
    )
    return [*here, *others, *hessians]


def gathered_steps_hessian(parts: list, n_lams: int, at: int):
    """``(step sums per Λ, Hessian sums or None, w or None, per-block BLUPs or None)``
    from the gathered chain of :func:`submit_steps_hessian` for ``n_lams`` Λ and the
    Hessian at ``lams[at]``, each sum added over the blocks in block order; the BLUPs
    (``(blup, cov)`` per block, in block order) where they were asked for.  No Hessian
    where the blocks made none, or not with the same ``w`` bit for bit."""
    n = len(parts) // (3 if n_lams > 1 else 2)
    here, made = parts[:n], parts[-n:]
    others = parts[n:-n]
    per_block = [[*o[:at], h, *o[at:]] for h, o in zip(here, others or [[]] * n, strict=True)]
    sums = [functools.reduce(operator.add, [p[i] for p in per_block]) for i in range(n_lams)]
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
