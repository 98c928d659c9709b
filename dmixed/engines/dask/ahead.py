"""The step sums and the Hessian sums at one Λ in one round trip from the driver.

The Hessian sums need ``w = [−β̂; 1]``, and β̂ needs the step sums of every block.  Made
one after the other from the driver, that is two round trips per Newton iteration, which
is most of a fit's time when the statistics are small and kept on the workers.  Here the
driver submits the whole chain at once: the blocks' step tasks, one task on a worker
that adds their sums in block order and computes ``w`` (with a function the fit layer
passes in: this layer knows no statistics theory), and the blocks' Hessian tasks that
depend on it; then it waits once.
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from ... import kernels

__all__ = ["gathered_step_hessian", "submit_step_hessian"]


def _block_step(ev, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _weights(weights, *sums: kernels.StepSums) -> np.ndarray | None:
    """``weights`` of the blocks' step sums added in block order (as the driver adds
    them); None where it raises ``np.linalg.LinAlgError``."""
    try:
        return weights(functools.reduce(operator.add, sums))
    except np.linalg.LinAlgError:
        return None


def _block_hessian_at(ev, lam: np.ndarray, basis: np.ndarray, w) -> kernels.HessianSums | None:
    return None if w is None else ev.hessian(lam, basis, w)


def submit_step_hessian(client, blocks: list, args: dict, weights) -> list:
    """The futures of the chain for the evaluators ``blocks``: ``B`` step sums, then
    ``w``, then ``B`` Hessian sums (a flat list, for one gather).

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block (``step(lam, q)``, ``hessian(lam, basis, w)``).
    args : dict
        ``lam`` (r, r), ``q`` and ``basis`` (m, r, r), arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to a worker.
    """
    steps = client.map(_block_step, blocks, lam=args["lam"], q=args["q"], pure=False)
    w = client.submit(_weights, weights, *steps, pure=False)
    hessians = client.map(
        _block_hessian_at, blocks, lam=args["lam"], basis=args["basis"], w=w, pure=False
    )
    return [*steps, w, *hessians]


def gathered_step_hessian(parts: list):
    """``(step sums, Hessian sums or None, w or None)`` from the gathered chain of
    :func:`submit_step_hessian`, each added over the blocks in block order."""
    n = (len(parts) - 1) // 2
    step = functools.reduce(operator.add, parts[:n])
    w = parts[n]
    if w is None:
        return step, None, None
    return step, functools.reduce(operator.add, parts[n + 1 :]), w
