"""Where the optimizer's tasks run: on the worker that holds their block's evaluator.

Dask's scheduler places a task on the worker that needs the fewest bytes sent to it
(:meth:`distributed.Scheduler.worker_objective`), each input counted at
``dask.sizeof.sizeof`` of its value: for an object Dask knows nothing of,
``sys.getsizeof`` (a few dozen bytes, however many arrays it holds).  An evaluator
counted so weighs less than the small array a task takes from the other worker (``w``
for the Hessian tasks), and the whole evaluator is sent across.  The sizes registered
here are the arrays' bytes, for every kind of evaluator (:class:`LocalEngine`, and the
variance components held structured, :class:`StructuredVCEngine` and
:class:`CrossedVCEngine`) and what they hold; registered on import of the Dask engine,
which every worker running its tasks imports.

The scheduler also places a "root-ish" task wherever a thread is free, without regard
to its inputs: one of a task group of more than twice the cluster's threads whose
inputs come from fewer than 5 tasks.  A group is named after the keys' text (a
string key ``f"{name}-{uuid}-{i}"`` is group ``name``), and lives until all of its
tasks are released at once; the optimizer's rounds of one task per block, named alike,
would pile up in one group while the next round is submitted before the last is
released, and become root-ish after a few rounds.  :func:`call_keys` gives each call's
tasks a group of their own, as Dask's collections name theirs.
"""

from __future__ import annotations

import dataclasses
import uuid

from dask.sizeof import sizeof
from dask.utils import funcname

from ...kernels import StatsBlock
from ...kernels.vc_border import BorderBucket, CrossedVC
from ...stats.ragged_stats import RaggedArrays
from ..local import LocalEngine
from ..vc_crossed import CrossedVCEngine
from ..vc_local import StructuredVCEngine
from .blocks import Block

__all__ = ["call_keys"]


@sizeof.register(StatsBlock)
@sizeof.register(LocalEngine)
def _held_bytes(held) -> int:
    return held.nbytes


@sizeof.register(StructuredVCEngine)
def _ragged_engine_bytes(engine: StructuredVCEngine) -> int:
    return sizeof(engine.ragged)


@sizeof.register(CrossedVCEngine)
def _crossed_engine_bytes(engine: CrossedVCEngine) -> int:
    return sizeof(engine.crossed)


# dataclasses of arrays (and lists of them: a crossed block's buckets), a ``RaggedVC``
# by its base class
@sizeof.register(Block)
@sizeof.register(RaggedArrays)
@sizeof.register(CrossedVC)
@sizeof.register(BorderBucket)
def _fields_bytes(held) -> int:
    return sum(sizeof(getattr(held, f.name)) for f in dataclasses.fields(held))


def call_keys(func, n: int) -> list[tuple[str, int]]:
    """The keys of one call's ``n`` tasks of ``func`` (``key=`` of ``client.map``):
    ``(f"{name}-{uuid}", i)``, one task group per call (its tuple keys' first item)."""
    name = f"{funcname(func)}-{uuid.uuid4().hex}"
    return [(name, i) for i in range(n)]
