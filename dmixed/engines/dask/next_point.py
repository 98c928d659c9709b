"""A point's step sums and, chained on the workers, those of the point made from them.

Between two Newton steps whose second needs no Hessian round trip (a secant step) the
driver only adds the blocks' step sums, computes the next trial point from them and
submits it: a round trip of hops around a millisecond of its own work.  Here the driver
submits both at once: the blocks' step tasks at ``Λ``, one task on a worker that adds
their sums in block order (as the driver adds them) and calls a function the fit layer
passes in (``following(sums) -> (Λ₂, hessian, random_effects)`` or None; this layer
knows no statistics theory), the blocks' step tasks at ``Λ₂``, ``w`` there and, as
``following`` asks, the blocks' Hessian tasks there (with the BLUPs).  The driver takes
what was made at ``Λ₂`` only where it asks for that ``Λ₂`` next, bit for bit
(:meth:`~dmixed.engines.dask.DaskEngine.step_then`).
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from ... import kernels
from .ahead import block_hessian_random_effects, hessian_parts
from .placement import call_keys
from .progress import laid_out

__all__ = ["gathered_step_then", "submit_step_then"]


def _block_step(ev, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _next_point(following, *parts: kernels.StepSums):
    """``following`` of the blocks' step sums added in block order, laid out as the
    driver's gathered copies are; None where it raises: the chain is a guess, and a
    guess that fails costs the round trip it would have saved, never the step."""
    try:
        return following(functools.reduce(operator.add, [laid_out(p) for p in parts]))
    except Exception:  # see above: the driver's own step follows
        return None


def _block_next_step(ev, point, q: int) -> kernels.StepSums | None:
    return None if point is None else ev.step(point[0], q)


def _next_weights(weights, point, *parts) -> np.ndarray | None:
    """``weights`` of the blocks' step sums at the next point, where its Hessian is
    asked for; None elsewhere, or where ``weights`` raises ``np.linalg.LinAlgError``."""
    if point is None or not point[1]:
        return None
    try:
        return weights(functools.reduce(operator.add, [laid_out(p) for p in parts]))
    except np.linalg.LinAlgError:
        return None


def _block_next_hessian(ev, point, basis: np.ndarray, w):
    if w is None:
        return None
    if point[2]:
        return block_hessian_random_effects(ev, point[0], basis, w)
    return ev.hessian(point[0], basis, w)


def submit_step_then(client, blocks: list, args: dict, weights, following) -> list:
    """The futures of the chain for the evaluators ``blocks``, a flat list for one
    gather: per block the step sums at ``args["lam"]``, the next point
    (``following`` of their sum), per block the step sums there, ``w`` there and per
    block its Hessian sums there (with its BLUPs where the point says so).

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block (``step(lam, q)``, ``hessian(lam, basis, w)``).
    args : dict
        ``lam`` (r, r), ``q`` and ``basis`` (m, r, r), arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to a worker.
    following : callable
        ``following(StepSums) -> (Λ₂ (r, r), hessian: bool, random_effects: bool)`` or
        None, pickled to a worker.
    """
    n = len(blocks)
    steps = client.map(
        _block_step, blocks, lam=args["lam"], q=args["q"], key=call_keys(_block_step, n)
    )
    point = client.submit(_next_point, following, *steps, key=call_keys(_next_point, 1)[0])
    following_steps = client.map(
        _block_next_step, blocks, point=point, q=args["q"], key=call_keys(_block_next_step, n)
    )
    w = client.submit(
        _next_weights, weights, point, *following_steps, key=call_keys(_next_weights, 1)[0]
    )
    hessians = client.map(
        _block_next_hessian,
        blocks,
        point=point,
        basis=args["basis"],
        w=w,
        key=call_keys(_block_next_hessian, n),
    )
    return [*steps, point, *following_steps, w, *hessians]


def gathered_step_then(parts: list):
    """``(step sums at Λ, the next point or None, its step sums, its Hessian sums or
    None, w or None, its per-block BLUPs or None)`` from the gathered chain of
    :func:`submit_step_then`, each sum added over the blocks in block order; the next
    point ``(Λ₂, hessian, random_effects)`` as ``following`` made it."""
    n = (len(parts) - 2) // 3
    sums = functools.reduce(operator.add, parts[:n])
    point = parts[n]
    if point is None:
        return sums, None, None, None, None, None
    following = functools.reduce(operator.add, parts[n + 1 : 2 * n + 1])
    w = parts[2 * n + 1]
    if w is None:
        return sums, point, following, None, None, None
    hs, blups = hessian_parts(parts[2 * n + 2 :])
    return sums, point, following, hs, w, blups
