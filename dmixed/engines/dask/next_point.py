"""A point's step sums and, chained on the workers, those of the point made from them.

Between two Newton steps whose second needs no Hessian round trip (a secant step) the
driver only adds the blocks' step sums, computes the next trial point from them and
submits it: a round trip of hops around a millisecond of its own work.  Here the driver
submits both at once: the blocks' step tasks at ``Λ``, then per block a task that adds
every block's sums in block order (as the driver adds them), calls a function the fit
layer passes in (``following(sums) -> (Λ₂, hessian, random_effects)`` or None; this
layer knows no statistics theory) and makes its block's step sums at ``Λ₂``, then, as
``following`` asks, per block a task that makes ``w`` of every block's sums there and
its block's Hessian sums (with the BLUPs).  Each block's task makes the point and ``w``
itself (from the other blocks' few sums) rather than one task that the others then wait
on: one hop between the workers a stage, not two.  The driver takes
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

__all__ = [
    "gathered_first_then",
    "gathered_step_then",
    "submit_first_then",
    "submit_step_then",
]


def _block_step(ev, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _sum(parts: list) -> kernels.StepSums:
    """The blocks' sums added in block order, laid out as the driver's gathered copies
    are (the same bits as the driver's sum)."""
    return functools.reduce(operator.add, [laid_out(p) for p in parts])


def _block_next_step(ev, following, q: int, parts: list):
    """``(point, the block's step sums there)``: ``following`` of every block's step
    sums (``parts``, added in block order) made by each block's task (the same point in
    each: the same sums, function and machine), so that no task of one worker waits on
    another's for it; ``(None, None)`` where it gives none, or it or the sums raise (the
    chain is a guess, and a guess that fails costs the round trip it would have saved,
    never the step at Λ)."""
    try:
        point = following(_sum(parts))
        return (None, None) if point is None else (point, ev.step(point[0], q))
    except Exception:  # see above: the driver's own step follows
        return None, None


def _block_next_hessian(ev, mine, weights, basis: np.ndarray, parts: list):
    """``(w, the block's Hessian sums, with its BLUPs where the point asks)`` at the
    block's point (``mine``: its :func:`_block_next_step`), ``w`` of every block's step
    sums there (``parts``) made by each block's task; ``(None, None)`` where ``weights``
    raises ``np.linalg.LinAlgError`` (no Hessian there); None where the point asks for
    no Hessian (or there is no point); False where ``weights`` raises anything else or
    the sums raise (the chain dropped, as :func:`_block_next_step`'s)."""
    point = mine[0]
    if point is None or not point[1] or any(p[1] is None for p in parts):
        return None
    try:
        w = weights(_sum([p[1] for p in parts]))
    except np.linalg.LinAlgError:
        return None, None
    except Exception:  # a chained point is a guess: its failure drops the chain, never the fit
        return False
    try:
        if point[2]:
            return w, block_hessian_random_effects(ev, point[0], basis, w)
        return w, ev.hessian(point[0], basis, w)
    except Exception:  # as _block_next_step's
        return False


def submit_step_then(client, blocks: list, args: dict, weights, following) -> list:
    """The futures of the chain for the evaluators ``blocks``, a flat list for one
    gather: per block its step sums at ``args["lam"]``; per block the next point
    (``following`` of their sum) and its step sums there; per block ``w`` there and its
    Hessian sums (with its BLUPs where the point says so).

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block (``step(lam, q)``, ``hessian(lam, basis, w)``).
    args : dict
        ``lam`` (r, r), ``q`` and ``basis`` (m, r, r), arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to the workers.
    following : callable
        ``following(StepSums) -> (Λ₂ (r, r), hessian: bool, random_effects: bool)`` or
        None, pickled to the workers.
    """
    n = len(blocks)
    steps = client.map(
        _block_step, blocks, lam=args["lam"], q=args["q"], key=call_keys(_block_step, n)
    )
    nexts = client.map(
        _block_next_step,
        blocks,
        following=following,
        q=args["q"],
        parts=steps,
        key=call_keys(_block_next_step, n),
    )
    hessians = client.map(
        _block_next_hessian,
        blocks,
        nexts,
        weights=weights,
        basis=args["basis"],
        parts=nexts,
        key=call_keys(_block_next_hessian, n),
    )
    return [*steps, *nexts, *hessians]


def gathered_step_then(parts: list):
    """``(step sums at Λ, the next point or None, its step sums, its Hessian sums or
    None, w or None, its per-block BLUPs or None)`` from the gathered chain of
    :func:`submit_step_then`, each sum added over the blocks in block order; the next
    point ``(Λ₂, hessian, random_effects)`` as ``following`` made it.  No next point
    where the blocks made none, or not the same one (nor ``w``) bit for bit."""
    n = len(parts) // 3
    sums = functools.reduce(operator.add, parts[:n])
    return (sums, *_gathered_next(parts[n : 2 * n], parts[2 * n :]))


def _gathered_next(nexts: list, hessians: list) -> tuple:
    """``(point or None, its step sums, its Hessian sums or None, w or None, its
    per-block BLUPs or None)`` of the blocks' :func:`_block_next_step` (``nexts``:
    ``(point, sums, ...)`` each) and :func:`_block_next_hessian` there (``hessians``);
    no point where the blocks made none, or not the same one (nor ``w``) bit for bit."""
    point = nexts[0][0]
    none = None, None, None, None, None
    if point is None or not all(_same_point(p[0], point) for p in nexts):
        return none
    following = functools.reduce(operator.add, [p[1] for p in nexts])
    if any(h is False for h in hessians):
        return none
    if all(h is None for h in hessians):
        return point, following, None, None, None
    if any(h is None for h in hessians):
        return none
    w = hessians[0][0]
    if w is None:
        if any(h[0] is not None for h in hessians):
            return none
        return point, following, None, None, None
    if not all(h[0] is not None and np.array_equal(h[0], w) for h in hessians):
        return none
    hs, blups = hessian_parts([h[1] for h in hessians])
    return point, following, hs, w, blups


# -- the first Newton step's point chained on the starts' round trip -------------------


def _block_first_step(ev, first, at: int, q: int, lams: list, steps: list, hessians: list):
    """``(point, the block's step sums there, the point it chains next)``: ``first`` of
    the starts' step sums (``steps``: every block's :func:`~.ahead.submit_steps_hessian`
    step task, added in block order) and the Hessian sums at ``lams[at]`` (its Hessian
    tasks, ``hessians``), made by each block's task as :func:`_block_next_step`'s;
    ``(None, None, None)`` where it gives none, or it or the sums raise."""
    try:
        sums = [_sum([p[i] for p in steps]) for i in range(len(lams))]
        hessian = None
        if all(h is not None for h in hessians):
            w = hessians[0][0]
            if all(np.array_equal(h[0], w) for h in hessians):
                hs, _ = hessian_parts([laid_out(h[1]) for h in hessians])
                hessian = (lams[at], w, hs)
        made = first(list(zip(lams, sums, strict=True)), hessian)
        if made is None:
            return None, None, None
        point, following = tuple(made[:3]), made[3]
        return point, ev.step(point[0], q), following
    except Exception:  # as _block_next_step's
        return None, None, None


def _block_first_next(ev, mine, weights, basis: np.ndarray, q: int, parts: list):
    """After :func:`_block_first_step` (the block's: ``mine``; every block's:
    ``parts``): ``("hessian", …)`` of :func:`_block_next_hessian` at its point where
    the point asks for its Hessian; else ``("step", …)`` of :func:`_block_next_step` of
    the point it chains; None where there is neither."""
    point, following = mine[0], mine[2]
    if point is None:
        return None
    if point[1]:
        return "hessian", _block_next_hessian(ev, mine, weights, basis, parts)
    if following is None or any(p[1] is None for p in parts):
        return None
    return "step", _block_next_step(ev, following, q, [p[1] for p in parts])


def _block_first_last(ev, mine, weights, basis: np.ndarray, parts: list):
    """:func:`_block_next_hessian` at the point chained by :func:`_block_first_next`
    (the block's: ``mine``; every block's: ``parts``); None where there is none."""
    if mine is None or mine[0] != "step" or any(p is None or p[0] != "step" for p in parts):
        return None
    return _block_next_hessian(ev, mine[1], weights, basis, [p[1] for p in parts])


def submit_first_then(
    client, blocks: list, args: dict, weights, first, at: int, steps: list, hessians: list
) -> list:
    """The futures of the first Newton step chained after
    :func:`~dmixed.engines.dask.ahead.submit_steps_hessian`'s (its step futures
    ``steps`` and Hessian futures ``hessians``, at ``args["lams"]`` and ``lams[at]``), a
    flat list for the same gather: per block the point ``first`` makes of their sums and
    its step sums there; per block that point's Hessian sums (with its BLUPs where the
    point says so) or the step sums at the point it chains; per block the Hessian sums
    at that chained point where it asks for them.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        One evaluator per block.
    args : dict
        ``lams``, ``q`` and ``basis``, arrays or their futures.
    weights : callable
        ``weights(StepSums) -> w`` (p+1,), pickled to the workers.
    first : callable
        ``first([(Λ, StepSums)], (Λ, w, HessianSums) or None) -> (Λ₁ (r, r), hessian:
        bool, random_effects: bool, following or None)`` or None, pickled to the
        workers; ``following`` as :func:`submit_step_then`'s.
    at : int
    steps, hessians : list of Future
    """
    n = len(blocks)
    firsts = client.map(
        _block_first_step,
        blocks,
        first=first,
        at=at,
        q=args["q"],
        lams=args["lams"],
        steps=steps,
        hessians=hessians,
        key=call_keys(_block_first_step, n),
    )
    nexts = client.map(
        _block_first_next,
        blocks,
        firsts,
        weights=weights,
        basis=args["basis"],
        q=args["q"],
        parts=firsts,
        key=call_keys(_block_first_next, n),
    )
    lasts = client.map(
        _block_first_last,
        blocks,
        nexts,
        weights=weights,
        basis=args["basis"],
        parts=nexts,
        key=call_keys(_block_first_last, n),
    )
    return [*firsts, *nexts, *lasts]


def gathered_first_then(parts: list) -> list:
    """The points made by the gathered chain of :func:`submit_first_then`, in the
    order the driver asks for them: a list of ``(point, its step sums, its Hessian sums
    or None, w or None, its per-block BLUPs or None)`` (the first point, then the point
    it chains), each sum added over the blocks in block order; as long as the blocks
    made the same points (and ``w``) bit for bit."""
    n = len(parts) // 3
    firsts, nexts, lasts = parts[:n], parts[n : 2 * n], parts[2 * n :]
    kinds = {None if p is None else p[0] for p in nexts}
    if len(kinds) > 1:
        return []
    kind = kinds.pop()
    hessians = [p[1] for p in nexts] if kind == "hessian" else [None] * n
    made = _gathered_next(firsts, hessians)
    if made[0] is None:
        return []
    if kind != "step":
        return [made]
    chained = _gathered_next([p[1] for p in nexts], lasts)
    return [made] if chained[0] is None else [made, chained]


def _same_point(a, b) -> bool:
    return (
        a is not None
        and np.asarray(a[0]).tobytes() == np.asarray(b[0]).tobytes()
        and tuple(a[1:]) == tuple(b[1:])
    )
