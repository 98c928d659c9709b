"""The distributed engine: kernels evaluated where the statistics live, on the workers.

Each block of groups (:class:`~dmixed.engines.dask.blocks.Block`) becomes a
:class:`~dmixed.engines.local.LocalEngine` on its worker, or a
:class:`~dmixed.engines.vc_local.StructuredVCEngine` where the variance components are
held structured, or a :class:`~dmixed.engines.vc_crossed.CrossedVCEngine` where they
share rows (:func:`make_evaluator`, a task with lineage); each optimizer step is
then one ``client.map`` over these futures with the small matrix ``Λ`` and one
``gather`` of ``B`` small sums: no Dask collection is built inside the optimizer loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import operator
import time

import numpy as np
from distributed import Future, KilledWorker

from ... import kernels
from ...errors import ClusterClosedError
from ...kernels import compiled
from ...kernels.pages import paged
from ...kernels.vc_border import CrossedVC
from ...stats import Layout
from ...stats.blup_cov import RaggedBlup
from ..local import LocalEngine, rank_one_if
from ..vc_crossed import CrossedVCEngine
from ..vc_local import StructuredVCEngine
from . import tuning
from .ahead import (
    block_hessian_random_effects,
    gathered_steps_hessian,
    hessian_parts,
    submit_steps_hessian,
)
from .blocks import Block, block_dense, reorder_parts
from .direct_calls import (
    DirectCallUnavailable,
    Recorder,
    WorkerUnreachable,
    block_workers,
    direct_calls_enabled,
    run_recorded,
)
from .handover import covariance_rows, cut, rows
from .next_point import (
    gathered_first_then,
    gathered_step_then,
    submit_first_then,
    submit_step_then,
)
from .paging import PagedClient
from .placement import call_keys
from .progress import (
    ask_workers,
    cancellation_named,
    detached,
    died_error,
    gather,
    gather_direct,
    gathered_in_turn,
    laid_out,
    memory_limits,
    reaches_workers,
    wait_for,
)
from .structured import concatenate_ragged

logger = logging.getLogger("dmixed")

#: Arguments above this size are sent to the workers as futures: distributed turns a
#: keyword argument over ~100 kB of ``client.map`` into a task of its own and fails
#: (DESIGN.md §10).  Λ is r × r, so this only matters for variance components with
#: hundreds of slots.
SMALL_ARG_BYTES = 32_000

#: Seconds after which the futures handed to a new :class:`DaskEngine` (``spent``) are
#: released where no round trip released them before: statistics made and never fitted
#: hold no spent blocks on the workers past this.
SPENT_RELEASE_SECONDS = 1.0

#: Errors after which a step is resubmitted once: a worker died (its tasks were retried
#: too often, or a connection broke), or futures were cancelled under us.
RETRY_ERRORS = (
    KilledWorker,
    concurrent.futures.CancelledError,
    asyncio.CancelledError,
    OSError,  # includes distributed's CommClosedError
    TimeoutError,
)


# ---------------------------------------------------------------------------
# What runs on the workers
# ---------------------------------------------------------------------------


#: What a worker holds for a block: padded statistics, or variance components structured
#: (ragged, or crossed).
Evaluator = LocalEngine | StructuredVCEngine | CrossedVCEngine


def make_evaluator(
    block: Block, tune_malloc: bool = False, layout: Layout | None = None
) -> Evaluator:
    """The kernels' evaluator of a block, kept on the worker for the optimizer steps.

    A new task (not a mutation of the block) so that it has lineage: if its worker dies
    the scheduler recomputes it from the block, and the block from the data.  A block
    whose sums are held as the kernels want them (``Block.stats``) shares them with its
    evaluator (one copy on the worker, none made here).  With
    ``layout``, the variance components held structured (ragged, one slot per component
    in the sums: every block's variance-component block must be diagonal,
    :func:`~dmixed.engines.dask.structured.structured_slots`).  A block of several
    random-design columns whose rows kept within-group sums (``Block.within`` not None:
    the intercept and columns constant within the groups) takes the rank-one forms
    (:func:`~dmixed.engines.local.rank_one_if`), as the in-process engine does.

    Lossy groups (a random design close to singular within them,
    :func:`~dmixed.kernels.lossy_groups`) left without the forms they need are not
    refused here: the block's summary counts them
    (:func:`~dmixed.engines.dask.blocks.inexact_groups`) and the data pass refuses them,
    or reads the data again keeping their sums, on the driver, before any evaluator is
    used (:func:`~dmixed.engines.dask.data_pass.statistics_from_dask`): no task fails.
    """
    if tune_malloc:
        tuning.tune_malloc()
    if block.ragged is not None:
        return StructuredVCEngine(block.ragged)
    if block.crossed is not None:
        return CrossedVCEngine(block.crossed)
    if layout is not None:
        return StructuredVCEngine.from_dense(*block_dense(block), layout)
    if block.stats is not None:  # held as the kernels want them: shared, not copied
        engine = LocalEngine.of_block(block.stats)
    else:
        engine = LocalEngine(block.zz, block.zxy)
    shifted = block.shifted if block.stats is None else block.stats.shifted
    engine = rank_one_if(engine, block.within is not None, block.nobs)  # (W at hand: exact, first)
    if shifted is not None and engine.block.shifted is None:
        engine.block.use_shifted(*shifted)  # its lossy groups' centred forms
    return engine


def _block_step(ev: Evaluator, lam: np.ndarray, q: int) -> kernels.StepSums:
    return ev.step(lam, q)


def _block_steps(ev: Evaluator, lams: list, q: int) -> list:
    return [ev.step(lam, q) for lam in lams]


def _block_hessian(
    ev: Evaluator, lam: np.ndarray, basis: np.ndarray, w: np.ndarray
) -> kernels.HessianSums:
    return ev.hessian(lam, basis, w)


def _block_moments(ev: Evaluator) -> kernels.MomentSums:
    return ev.moments()


def block_moments(block: Block) -> kernels.MomentSums:
    """The parameter-free moment sums of the evaluator :func:`make_evaluator` makes of
    ``block`` with no layout, made from the block itself (the same bits: they read the
    sums as the block holds them, which the evaluator's forms leave as they are).

    A task of the block's rather than of its evaluator's: the scheduler hands a worker a
    task only once its inputs are done, so that a task after the evaluator would wait
    for the evaluator's end to be reported; the block's tasks (its summary, its
    evaluator, these sums) are handed over together and run one after the other."""
    if block.ragged is not None or block.crossed is not None:
        return make_evaluator(block).moments()
    if block.stats is not None:
        return kernels.moment_contributions(block.stats)
    zz, zxy = block.zz, block.zxy
    assert zz is not None and zxy is not None  # plain sums where none are held
    return LocalEngine(zz, zxy).moments()


def _block_re_gram(ev: Evaluator, q: int) -> np.ndarray:
    return ev.re_gram(q)


def _block_re_sums(ev: Evaluator, q: int) -> np.ndarray:
    return ev.re_sums(q)


def _block_frobenius_gram(ev: LocalEngine, q: int, slot_component: np.ndarray) -> np.ndarray:
    return ev.frobenius_gram(q, slot_component)


def _block_collapsed_moments(
    ev: LocalEngine, q: int, slot_component: np.ndarray
) -> kernels.MomentSums:
    return ev.collapsed_moments(q, slot_component)


def _block_random_effects(ev: Evaluator, lam: np.ndarray, w: np.ndarray) -> tuple:
    blup, cov = ev.random_effects(lam, w)
    return cut(blup), cut(cov)


def _block_gather(ev: Evaluator) -> tuple[np.ndarray, np.ndarray]:
    return ev.gather()


def _block_gather_ragged(ev: StructuredVCEngine):
    return ev.gather_ragged()


def submit_evaluators(
    client, blocks: list, layout: Layout | None, r: int
) -> tuple[list, list | None]:
    """One :func:`make_evaluator` task per block future, and with ``r ≤
    kernels.MOMENT_MAX_R`` (the padded design's width: the starting values use the
    moments then, :func:`~dmixed.fit.start.moment_start_packed`) each evaluator's
    parameter-free moment sums, not waited for: the driver's own work (the blocks'
    assembly) runs meanwhile and the optimizer's first round trip rides on the data
    pass's last one.  Without ``layout`` the moment sums are a task of the block's
    (:func:`block_moments`: no scheduler turn between the evaluator and them), with it
    of the evaluator's.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of Future
        The data pass's :class:`~dmixed.engines.dask.blocks.Block` futures (non-empty).
    layout : Layout or None
        Hold the variance components structured (:func:`make_evaluator`), or None.
    r : int
        Width of the padded random design.

    Returns
    -------
    (list of Future, list of Future or None)
        The evaluators, and their moment sums (``kernels.MomentSums`` each) or None.
    """
    evaluators = client.map(
        paged(make_evaluator),
        blocks,
        tune_malloc=tuning.TUNE_WORKER_MALLOC,
        layout=layout,
        pure=False,
    )
    if r > kernels.MOMENT_MAX_R:
        return evaluators, None
    if layout is None:
        return evaluators, client.map(paged(block_moments), blocks, pure=False)
    return evaluators, client.map(paged(_block_moments), evaluators, pure=False)


def collect_evaluators(
    client, evaluators: list, moments: list | None
) -> tuple[list, kernels.MomentSums | None]:
    """What :func:`submit_evaluators` started, waited for: ``(evaluator futures, moment
    sums)``; the moment sums (added over the blocks in block order) are ``None`` when
    none were mapped (a round trip when asked for).  With the moment sums, an
    evaluator's error is raised here (the sums may be the block's, made without it).

    Raises
    ------
    WorkersDiedError, NoWorkersError
        As :func:`~dmixed.engines.dask.progress.gather`.
    Exception
        What an evaluator's task raised (with moment sums), as
        :func:`~dmixed.engines.dask.progress.gather` raises it.
    """
    if moments is None:
        wait_for(client, evaluators, what="the data pass")
        return evaluators, None
    wait_for(client, [*evaluators, *moments], what="the data pass")
    failed = [f for f in evaluators if f.status == "error"]
    if failed:
        gather(client, failed, "the data pass")  # raises the first one's error
    sums = gather(client, moments, "the data pass", straight=True)
    return evaluators, functools.reduce(operator.add, sums)


# ---------------------------------------------------------------------------
# The engine on the driver
# ---------------------------------------------------------------------------


def _release_later(client, futures: list, delay: float) -> None:
    """Release ``futures`` after ``delay`` seconds, on the client's event loop (a
    future released before is left as it is: ``Future.release`` is idempotent)."""

    def release() -> None:
        for f in futures:
            f.release()

    loop = getattr(client, "loop", None)
    if loop is None:  # no event loop to wait on: at once
        release()
        return
    loop.add_callback(loop.call_later, delay, release)


def _ordered_random_effects(
    parts: list, position: np.ndarray, ragged: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' ``(blup, cond)`` ``parts`` in sorted group order (``position``:
    :class:`DaskEngine`'s), padded to the design's width r (Λ is narrower when the
    components are structured): ragged where ``ragged`` (RaggedBlup; RaggedCov, or
    BorderCov when crossed).  The padded arrays come in pieces
    (:class:`~dmixed.engines.dask.handover.RowPieces`), put in place here; covariances
    that came as their upper triangles (two axes, not three:
    :func:`~dmixed.engines.dask.ahead.block_hessian_random_effects`) are unfolded here,
    a piece at a time as it is placed.
    There is one block at least."""
    if ragged:
        blup = RaggedBlup.concatenate([b for b, _ in parts], position)
        return blup, type(parts[0][1]).concatenate([c for _, c in parts], position)
    blup = reorder_parts(position, rows([b for b, _ in parts]))
    covs, upper = covariance_rows([c for _, c in parts])
    # triangles unfolded piece by piece as they are placed: no reordered copy of the
    # triangles (tens of MB of fresh pages at 2M groups, benchmarks/RESULTS.md, blup-s56)
    return blup, reorder_parts(position, covs, each=compiled.upper_unfolded if upper else None)


@dataclasses.dataclass(frozen=True)
class _Chained:
    """What :meth:`DaskEngine.step_then` made at the point it chained: the key of its Λ
    and ``q``, its step sums, the bytes of the basis of its Hessian sums (None: none
    asked for), its Hessian sums and ``w`` (None where ``weights`` raised), and whether
    its BLUPs were made (kept for ``random_effects``)."""

    key: bytes
    sums: kernels.StepSums
    basis: bytes | None
    hs: kernels.HessianSums | None
    w: np.ndarray | None
    random_effects: bool


def _bytes(basis: np.ndarray) -> bytes:
    basis = np.asarray(basis, dtype=np.float64)
    return repr(basis.shape).encode() + basis.tobytes()


def _same_weights(weights, sums: kernels.StepSums, w: np.ndarray | None) -> bool:
    """Whether ``w`` (None: none was made) is ``weights(sums)`` here, bit for bit: a
    chained Hessian was made with the ``weights`` of the call that chained it."""
    try:
        mine = weights(sums)
    except np.linalg.LinAlgError:
        return w is None
    return w is not None and np.array_equal(mine, w)


class DaskEngine:
    """Evaluate the kernels where the statistics live: on the workers of a Dask cluster.

    An :class:`~dmixed.engines.base.Engine`.  Holds one future per block of groups (from
    a persisted graph, so a block lost with its worker is recomputed from the data).
    ``step``, ``hessian`` and ``random_effects`` map a kernel over the blocks and return
    the sum (or the per-group arrays in ``group_labels`` order).  A failed round trip (a
    worker died, a connection broke) is resubmitted once.  Reaching the scheduler is the
    client's business: if it goes away, the client retries for its connect timeout
    (``distributed.comm.timeouts.connect``, or ``Client(timeout=...)``) and closes, and
    the engine then raises :class:`~dmixed.errors.ClusterClosedError`, a
    ``ConnectionError`` (the statistics died with the scheduler; fit again on a new
    client).

    The engine never travels with a pickled model or results: pickling gives a detached
    engine that refuses to compute (:class:`RuntimeError`).

    Parameters
    ----------
    client : distributed.Client
        Where the blocks live.
    evaluators : list of Future
        One :func:`make_evaluator` future per non-empty block.
    graph : list of Delayed
        The delayed block behind each evaluator, to recompute a lost one.
    position : ndarray of int64 (G,)
        Sorted position of each group, in block-concatenation order.
    layout : Layout, optional
        Given when the evaluators hold the variance components structured
        (:func:`make_evaluator`): the sums then come with one slot per component
        (:attr:`collapsed_vc`).
    moments : kernels.MomentSums, optional
        The moment sums, where the data pass summed them with the evaluators.
    spent : list of Future, optional
        Futures the engine no longer needs (the data pass's blocks, the evaluators'
        inputs): released just after the first round trip's submission, else after
        :data:`SPENT_RELEASE_SECONDS` (or when the engine is closed).

    Notes
    -----
    The distributed client sends its messages to the scheduler in batches, at most one
    batch every 10 ms (its ``BatchedSend``): futures released just before a round
    trip's submission would hold that submission back until the next batch.  So each
    round trip's own futures are kept and released just after the next round trip's
    submission (in its batch), or at the end of a fit (:meth:`random_effects_later`),
    on :meth:`close`, or when the engine is garbage collected.
    """

    name = "dask"

    def __init__(
        self,
        client,
        evaluators: list,
        graph: list,
        position: np.ndarray,
        layout: Layout | None = None,
        moments: kernels.MomentSums | None = None,
        spent: list | None = None,
    ) -> None:
        self._client = client
        self._blocks = list(evaluators)  # futures of one evaluator per block
        self._graph = list(graph)  # delayed of each block, to resubmit if it errs
        self._position = position
        self._layout = layout
        self._moments = moments  # summed with the evaluators (submit_evaluators), or None
        # collapsed_moments' sums, kept as _moments is, per (q, slot_component)
        self._collapsed: dict[tuple[int, bytes], kernels.MomentSums] = {}
        # the BLUPs made with a Hessian (key of Λ and w, per-block parts): random_effects
        # there needs no round trip of its own
        self._kept_random_effects: tuple[bytes, list] | None = None
        # what step_then (or steps_hessian) made at the point it chained: step or
        # step_hessian there needs no round trip of its own; and at the points chained
        # after that one, in the order the driver asks for them
        self._kept_next: _Chained | None = None
        self._kept_later: tuple[_Chained, ...] = ()
        self._detached = False
        # False once a worker was not reached by a direct call: the tasks from then on
        self._direct = True
        # futures released just after the next round trip's submission (class notes)
        self._spent = list(spent or ())
        if self._spent:
            _release_later(client, self._spent, SPENT_RELEASE_SECONDS)

    @property
    def collapsed_vc(self) -> bool:
        """Whether the sums come with one slot per variance component
        (``FittedStatistics.fit_layout``)."""
        return self._layout is not None

    # -- plumbing ----------------------------------------------------------------

    @property
    def client(self):
        """The client the statistics live on (``None`` once unpickled)."""
        return self._client

    @property
    def blocks(self) -> list:
        """The block futures (one per non-empty combined partition)."""
        return list(self._blocks)

    def _check(self) -> None:
        if self._detached:
            raise RuntimeError(
                "this Dask engine was unpickled or closed: its statistics are gone; "
                "build the statistics again (MixedLM.fit on the Dask data)"
            )

    def _arg(self, value):
        if isinstance(value, np.ndarray) and value.nbytes > SMALL_ARG_BYTES:
            return self._client.scatter(value, hash=False)
        return value

    def _release_spent(self) -> None:
        """Release the futures kept for release (see the class notes)."""
        spent, self._spent = self._spent, []
        for f in spent:
            f.release()

    def _revive(self) -> None:
        """Resubmit blocks whose futures ended in error or were cancelled."""
        dead = [i for i, f in enumerate(self._blocks) if f.status in ("error", "cancelled", "lost")]
        if dead:
            logger.warning("dmixed: recomputing %d lost statistics block(s)", len(dead))
            blocks = self._client.compute([self._graph[i] for i in dead])
            fresh = self._client.map(
                paged(make_evaluator),
                blocks,
                tune_malloc=tuning.TUNE_WORKER_MALLOC,
                layout=self._layout,
                pure=False,
            )
            for i, f in zip(dead, fresh, strict=True):
                self._blocks[i] = f

    def _check_client(self, cause: BaseException | None = None) -> None:
        """Fail at once, and clearly, when the client has lost its scheduler.

        A client whose scheduler went away tries to reconnect for its connect timeout and
        then closes; the statistics on the cluster are gone with the scheduler, and a new
        submission to a closed client would wait forever.  Before a round trip only a
        closed client is refused (one still reconnecting may recover, and the round trip
        then fails after its timeout if it does not); after a failed round trip any client
        that is not running is.
        """
        status = getattr(self._client, "status", "running")
        if cause is None and status not in ("closing", "closed"):
            return
        if status != "running":
            raise ClusterClosedError(
                f"the Dask client is {status} (scheduler unreachable?): the statistics on "
                "the cluster are lost; reconnect and fit again"
            ) from cause

    def _map(self, func, *, in_turn: bool = False, **kwargs) -> list:
        """``func(block, **kwargs)`` on every block; results in block order
        (``in_turn``: as :meth:`_round_trip`'s)."""

        def submit(client, args: dict) -> list:
            keys = call_keys(func, len(self._blocks))
            return client.map(func, self._blocks, key=keys, **args)

        return self._round_trip(submit, kwargs, in_turn=in_turn)

    def _direct_round_trip(self, submit, kwargs: dict) -> list | None:
        """The round trip ``submit`` makes, run as direct calls to the workers that hold
        the evaluators (:mod:`~dmixed.engines.dask.direct_calls`); None where it cannot
        be (the caller then runs it as tasks, which recovers what can be recovered and
        raises a task's own error)."""
        if not (self._direct and direct_calls_enabled()):
            return None
        if getattr(self._client, "asynchronous", False) or not reaches_workers(self._client):
            return None
        if any(f.status != "finished" for f in self._blocks):
            return None  # lost or cancelled: the tasks recompute it
        try:
            # asked at each round trip (one scheduler call): an evaluator recomputed
            # elsewhere, or its worker gone, since the last one is not called there
            where = block_workers(self._client, self._blocks)
            recorder = Recorder(self._blocks)
            returned = submit(PagedClient(recorder), kwargs)
            parts = run_recorded(self._client, recorder, where, returned)
        except WorkerUnreachable as exc:
            # once per engine, and seen at INFO: every later fit of this model pays
            # the scheduler's turns again
            logger.info("dmixed: round trips run as tasks from now on (%s)", exc)
            self._direct = False
            return None
        except (DirectCallUnavailable, *RETRY_ERRORS) as exc:
            logger.debug("dmixed: a round trip run as tasks (%s)", exc)
            return None
        self._release_spent()
        return parts

    def _round_trip(self, submit, kwargs: dict, *, in_turn: bool = False) -> list:
        """The futures ``submit(arguments)`` makes, waited for and gathered in one round
        trip (resubmitted once after a lost worker); ``kwargs`` are the arguments, large
        arrays scattered first.  The futures spent before are released just after the
        submission, and this round trip's are kept to be released after the next one's
        (see the class notes); a failed attempt's are released at once.  With
        ``in_turn`` (a round trip whose last stage, one task a block at the end of the
        list, may carry the BLUPs), a block's results are gathered as soon as its last
        task is done (:func:`~dmixed.engines.dask.progress.gathered_in_turn`)."""
        self._check()
        self._check_client()
        parts = self._direct_round_trip(submit, kwargs)
        if parts is not None:
            return parts
        for attempt in range(2):
            args = {name: self._arg(v) for name, v in kwargs.items()}
            futures = submit(PagedClient(self._client), args)
            self._release_spent()  # in the submission's batch
            started, limits = time.time(), memory_limits(self._client)
            try:
                direct = gather_direct(self._client)
                if in_turn:
                    last = len(self._blocks)
                    step = "an optimizer step"
                    parts = gathered_in_turn(self._client, futures, last, direct, step)
                else:
                    wait_for(self._client, futures, what="an optimizer step")
                    with cancellation_named(self._client, "an optimizer step"):
                        parts = self._client.gather(futures, direct=direct)
                scattered = [v for v in args.values() if isinstance(v, Future)]
                self._spent = [*futures, *scattered]
                return parts if not direct else laid_out(parts)
            except RETRY_ERRORS as exc:
                self._check_client(exc)
                if attempt and isinstance(exc, KilledWorker):
                    step = "an optimizer step"
                    exc.__traceback__ = None  # kept in the futures' state: see detached
                    raise died_error(self._client, started, step, exc, limits) from exc
                if attempt:
                    raise detached(exc) from None
                logger.warning(
                    "dmixed: %s on the cluster (%s); resubmitting", type(exc).__name__, exc
                )
                ask_workers(self._client)  # a worker lost: the roster changed
                self._revive()
            except Exception as exc:  # noqa: BLE001 - raised again, detached
                # what a task raised: distributed keeps that object in the state of its
                # futures and raises it again; raised as it is, its traceback would hold
                # this frame and its callers' (the engine, every future of the fit) for
                # the client's life (progress.detached)
                raise detached(exc) from None
            finally:
                del futures, args  # kept in self._spent where the round trip succeeded
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the engine interface ------------------------------------------------------

    def step(self, lam: np.ndarray, q: int) -> kernels.StepSums:
        """Σ over groups of the per-step contributions (DESIGN.md §3–4): those
        :meth:`step_then` made at ``lam`` where it chained that point, else one round
        trip."""
        kept = self._take_next(lam, q, None)
        if kept is not None:
            return kept.sums
        return functools.reduce(operator.add, self._map(_block_step, lam=lam, q=q))

    def step_then(self, lam: np.ndarray, q: int, basis: np.ndarray, weights, following):
        """:meth:`step` at ``lam``, with the point ``following`` makes of those sums
        chained on the workers in the same round trip
        (:func:`~dmixed.engines.dask.next_point.submit_step_then`): its step sums, and
        with ``w = weights(its sums)`` its Hessian sums (and its BLUPs, kept for
        :meth:`random_effects` there) where ``following`` asks for them.  What was made
        there is kept for the next :meth:`step`, :meth:`step_hessian` or
        :meth:`step_then` at that Λ, ``q`` and ``basis`` (bit for bit; one of them
        elsewhere drops it); a :meth:`step_then` at such a Λ makes no round trip, and no
        next point.

        Parameters
        ----------
        lam : ndarray (r, r)
        q : int
        basis : ndarray (m, r, r)
        weights : callable
            ``weights(StepSums) -> w`` (p+1,); raises ``np.linalg.LinAlgError`` where
            there is none.
        following : callable
            ``following(StepSums) -> (Λ₂, hessian, random_effects)`` or None (no point);
            one that raises is taken as None.

        Returns
        -------
        kernels.StepSums
            The sums at ``lam``, as :meth:`step` adds them.
        """
        kept = self._take_next(lam, q, None)
        if kept is not None:  # chained here by the call before: its next point its own trip
            return kept.sums

        def submit(client, args: dict) -> list:
            return submit_step_then(client, self._blocks, args, weights, following)

        args = dict(lam=lam, q=q, basis=basis)
        # in one turn: made at every iteration, this round trip carries the BLUPs at most
        # once a fit, and a second turn would be one more request to the scheduler each
        sums, *made = gathered_step_then(self._round_trip(submit, args))
        self._keep_chained([made] if made[0] is not None else [], q, basis)
        return sums

    def _keep_chained(self, made: list, q: int, basis: np.ndarray) -> None:
        """Keep the points a chain made (``(point, step sums, Hessian sums, w, BLUPs)``
        each, in the order the driver asks for them) for :meth:`_take_next`, and the
        BLUPs made at one of them for :meth:`random_effects`."""
        kept = []
        for point, sums, hs, w, blups in made:
            lam_next, hessian, random_effects = point
            basis_key = _bytes(basis) if hessian else None
            key = self._next_key(lam_next, q)
            kept.append(_Chained(key, sums, basis_key, hs, w, bool(random_effects)))
            if blups is not None:
                self._keep_random_effects(lam_next, w, blups)
        self._kept_next, self._kept_later = (kept[0], tuple(kept[1:])) if kept else (None, ())

    @staticmethod
    def _next_key(lam: np.ndarray, q: int) -> bytes:
        lam = np.asarray(lam, dtype=np.float64)
        return repr((lam.shape, q)).encode() + lam.tobytes()

    def _take_next(self, lam: np.ndarray, q: int, basis: np.ndarray | None) -> _Chained | None:
        """What :meth:`step_then` (or :meth:`steps_hessian`) made at ``lam`` and ``q``
        (and ``basis``, where the Hessian is asked for: its Hessian made there) where it
        is the next of the points kept, handed out once (the points after it stay
        kept); None where none was made there.  Asked elsewhere, all are dropped."""
        kept, later = self._kept_next, self._kept_later
        self._kept_next, self._kept_later = None, ()
        if kept is None:
            return None
        if kept.key != self._next_key(lam, q):
            return None
        if basis is not None and kept.basis != _bytes(basis):
            return None  # no Hessian made there, or with another basis
        if later:
            self._kept_next, self._kept_later = later[0], later[1:]
        return kept

    def steps(self, lams: list[np.ndarray], q: int) -> list[kernels.StepSums]:
        """:meth:`step` at each of ``lams``, in one round trip (the optimizer's starts):
        the same sums, added over the blocks in the same order."""
        parts = self._map(_block_steps, lams=list(lams), q=q)
        return [functools.reduce(operator.add, [p[i] for p in parts]) for i in range(len(lams))]

    def hessian(
        self,
        lam: np.ndarray,
        basis: np.ndarray,
        w: np.ndarray,
        a_inv: np.ndarray | None = None,
        reml: bool = True,
    ) -> kernels.HessianSums:
        """Σ over groups of the Hessian contributions (DESIGN.md §5); ``a_inv`` and
        ``reml`` are not used (``a_jk`` comes as its (m, m, p, p) sums)."""
        parts = self._map(_block_hessian, lam=lam, basis=basis, w=w)
        return functools.reduce(operator.add, parts)

    def hessian_random_effects(
        self, lam: np.ndarray, basis: np.ndarray, w: np.ndarray
    ) -> kernels.HessianSums:
        """:meth:`hessian`, with the BLUPs at ``lam`` and ``w`` made in the same round
        trip (one task per block returning both) and kept for :meth:`random_effects`
        there: for the point expected to be the optimum."""
        parts = self._map(block_hessian_random_effects, in_turn=True, lam=lam, basis=basis, w=w)
        hs, blups = hessian_parts(parts)
        self._keep_random_effects(lam, w, blups)
        return hs

    def step_hessian(
        self, lam: np.ndarray, q: int, basis: np.ndarray, weights, random_effects: bool = False
    ):
        """:meth:`step` and :meth:`hessian` at one ``lam`` in one round trip
        (:meth:`steps_hessian` of ``[lam]``): ``(step sums, Hessian sums or None, w or
        None)``; none where :meth:`step_then` made them at ``lam`` (with the BLUPs, where
        ``random_effects`` asks for them) with the ``w`` of ``weights`` here."""
        kept = self._take_next(lam, q, basis)
        if kept is not None and (kept.random_effects or not random_effects):
            if _same_weights(weights, kept.sums, kept.w):
                return kept.sums, kept.hs, kept.w
        sums, hs, w = self.steps_hessian([lam], q, basis, weights, 0, random_effects)
        return sums[0], hs, w

    def steps_hessian(
        self,
        lams: list,
        q: int,
        basis: np.ndarray,
        weights,
        at: int,
        random_effects: bool = False,
        following=None,
    ):
        """:meth:`steps` at ``lams`` and :meth:`hessian` at ``lams[at]`` in one round
        trip: each block's Hessian task adds every block's step sums at ``lams[at]`` (in
        block order, as :meth:`step` adds them) and makes its Hessian sums with ``w =
        weights(sums)`` (:func:`~dmixed.engines.dask.ahead.submit_steps_hessian`).  With
        ``random_effects``, the BLUPs there too, kept for :meth:`random_effects` at
        ``lams[at]`` and that ``w`` (as :meth:`hessian_random_effects`).

        With ``following`` (``following([(Λ, step sums)], (Λ, w, Hessian sums) or
        None) -> (Λ₁, hessian, random_effects, then)`` or None, pickled to the
        workers; one that raises is taken as None), the point it makes of those sums is
        chained on the workers in the same round trip
        (:func:`~dmixed.engines.dask.next_point.submit_first_then`): its step sums, and
        its Hessian sums (and BLUPs) where it asks for them, else the point ``then``
        makes of its sums (as :meth:`step_then`'s ``following``) and what that asks
        for.  What was made is kept for the next calls at those Λ, in that order, as
        :meth:`step_then` keeps its point.  Not with ``random_effects``: each block's
        chained task reads every block's Hessian task, BLUPs and all.

        Returns ``(step sums per Λ, Hessian sums or None, w or None)``: ``None`` where
        ``weights`` raised ``np.linalg.LinAlgError`` (no Hessian at that point).
        """
        if following is not None and random_effects:
            raise ValueError("steps_hessian chains no point after the BLUPs")
        n = len(self._blocks)

        def submit(client, args: dict) -> list:
            futures = submit_steps_hessian(client, self._blocks, args, weights, at, random_effects)
            if following is None:
                return futures
            blocks = self._blocks
            steps, hessians = futures[:n], futures[n:]
            chain = submit_first_then(client, blocks, args, weights, following, at, steps, hessians)
            return [*futures, *chain]

        args = dict(lams=list(lams), lam=lams[at], q=q, basis=basis)
        # the BLUPs are the last stage's with ``random_effects``; with ``following``,
        # the last stage's where the point it chains asks for them (a first point's come
        # in the middle stage, and the last stage's results are then None: one gather,
        # as gathered_in_turn makes it where the last results done first are None)
        in_turn = random_effects or following is not None
        parts = self._round_trip(submit, args, in_turn=in_turn)
        sums, hs, w, blups = gathered_steps_hessian(parts[: 2 * n])
        if blups is not None:
            self._keep_random_effects(lams[at], w, blups)
        if following is not None:
            self._keep_chained(gathered_first_then(parts[2 * n :]), q, basis)
        return sums, hs, w

    @staticmethod
    def _random_effects_key(lam: np.ndarray, w: np.ndarray) -> bytes:
        lam, w = np.asarray(lam, dtype=np.float64), np.asarray(w, dtype=np.float64)
        return repr((lam.shape, w.shape)).encode() + lam.tobytes() + w.tobytes()

    def _keep_random_effects(self, lam: np.ndarray, w: np.ndarray, parts: list) -> None:
        """Keep the blocks' BLUPs made at ``lam`` and ``w`` (one set: the latest)."""
        self._kept_random_effects = (self._random_effects_key(lam, w), parts)

    def moments(self) -> kernels.MomentSums:
        """Σ over groups of the parameter-free moment sums (starting values): those
        summed with the evaluators (:func:`submit_evaluators`), else one round trip."""
        self._check()
        if self._moments is None:
            self._moments = functools.reduce(operator.add, self._map(_block_moments))
        return self._moments

    def re_gram(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'Z_i`` (q × q) of the ``exog_re`` columns (the rank check): from the
        moment sums where the data pass brought them, else one round trip."""
        self._check()
        if self._moments is not None:
            return self._moments.zz[:q, :q]
        return functools.reduce(operator.add, self._map(_block_re_gram, q=q))

    def re_sums(self, q: int) -> np.ndarray:
        """``Σ_i Z_i'[X y]`` (q × (p+1)) of the ``exog_re`` columns (``k_constant``):
        from the moment sums where the data pass brought them, else one round trip."""
        self._check()
        if self._moments is not None:
            return self._moments.zxy[:q]
        return functools.reduce(operator.add, self._map(_block_re_sums, q=q))

    def frobenius_gram(self, q: int, slot_component: np.ndarray) -> np.ndarray | None:
        """``Σ_i ⟨M_ij, M_ik⟩_F`` ((q + d) × (q + d)) of each random-effects column alone
        and each variance component (:meth:`LocalEngine.frobenius_gram
        <dmixed.engines.local.LocalEngine.frobenius_gram>`), added over the blocks in one
        round trip: asked for only where the padded design is too wide for the moment
        sums (:func:`dmixed.fit.start.check_distinct_component_values`).  ``None`` where
        the variance components are held structured (:attr:`collapsed_vc`: the blocks
        hold no padded slots to tell them by)."""
        self._check()
        if self.collapsed_vc:
            return None
        parts = self._map(_block_frobenius_gram, q=q, slot_component=slot_component)
        return functools.reduce(operator.add, parts)

    def collapsed_moments(self, q: int, slot_component: np.ndarray) -> kernels.MomentSums | None:
        """The moment sums in the coordinates of one slot per variance component
        (:meth:`LocalEngine.collapsed_moments
        <dmixed.engines.local.LocalEngine.collapsed_moments>`), added over the blocks
        in one round trip (then kept, as :meth:`moments`' sums are): the moment start
        where the padded design is too wide for :meth:`moments`.  ``None`` where the
        components are held structured (:attr:`collapsed_vc`: :meth:`moments` gives
        these sums already)."""
        self._check()
        if self.collapsed_vc:
            return None
        key = (int(q), np.asarray(slot_component, dtype=np.int64).tobytes())
        made = self._collapsed.get(key)
        if made is None:
            parts = self._map(_block_collapsed_moments, q=q, slot_component=slot_component)
            made = self._collapsed[key] = functools.reduce(operator.add, parts)
        return made

    #: Bytes of the statistics held in this process: none, they live on the workers.
    #: :meth:`random_effects_later` gathers the BLUPs at once, so that the results of a
    #: fit that make them on first read keep no statistics alive (nor the cluster).
    nbytes = 0

    def random_effects(self, lam: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group BLUPs and conditional covariances relative to σ² (DESIGN.md §6),
        in sorted group order: those made with the Hessian at ``lam`` and ``w`` where
        they were (:meth:`hessian_random_effects`; handed out once), else one round
        trip."""
        return self.random_effects_later(lam, w)()

    def random_effects_later(self, lam: np.ndarray, w: np.ndarray):
        """:meth:`random_effects` as a function of no arguments: the blocks' BLUPs are
        gathered now (kept, or one round trip), put in sorted group order when it is
        called.  It holds the gathered arrays and the group positions only (never the
        client or a future), so that it stays valid after the cluster is closed; the
        results of a fit make their BLUPs on first read with it."""
        kept, self._kept_random_effects = self._kept_random_effects, None
        if kept is not None and kept[0] == self._random_effects_key(lam, w):
            parts = kept[1]
        else:
            parts = self._map(_block_random_effects, in_turn=True, lam=lam, w=w)
        # the end of a fit (its results' BLUPs): no round trip follows at once, and the
        # workers hold no BLUPs for the life of the model
        self._release_spent()
        return functools.partial(_ordered_random_effects, parts, self._position, self.collapsed_vc)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-group ``zz`` (G, r, r) and ``zxy`` (G, r, p+1) on the driver, in sorted
        group order (e.g. to save the statistics)."""
        parts = self._map(_block_gather)
        self._release_spent()  # the copies of the statistics made for the driver
        zz = reorder_parts(self._position, [z for z, _ in parts])
        return zz, reorder_parts(self._position, [x for _, x in parts])

    def gather_ragged(self):
        """The statistics held structured on the workers (:attr:`collapsed_vc`), ragged
        on the driver in sorted group order (``kernels.vc_blocks.RaggedVC``, or
        ``kernels.vc_border.CrossedVC`` where the components share rows): never padded
        (for the saved statistics)."""
        parts = self._map(_block_gather_ragged)
        self._release_spent()  # the copies of the statistics made for the driver
        if isinstance(parts[0], CrossedVC):
            return CrossedVC.concatenate(parts, self._position)
        return concatenate_ragged(parts, self._position)

    def close(self) -> None:
        """Release the statistics on the cluster."""
        blocks, self._blocks, self._graph = self._blocks, [], []
        self._kept_random_effects = None
        self._kept_next, self._kept_later = None, ()
        self._detached = True
        for f in blocks:
            f.release()
        self._release_spent()

    # -- pickling: never carry a client or futures -----------------------------------

    def __getstate__(self) -> dict:
        return {"_position": self._position, "_layout": self._layout}

    def __setstate__(self, state: dict) -> None:
        self._client = None
        self._blocks = []
        self._graph = []
        self._position = state["_position"]
        self._layout = state.get("_layout")
        self._moments = None
        self._collapsed = {}
        self._kept_random_effects = None
        self._kept_next, self._kept_later = None, ()
        self._detached = True
        self._spent = []
