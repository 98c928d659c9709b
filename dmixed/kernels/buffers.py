"""numpy's ufunc buffer while the per-group kernels run over a block of groups.

The kernels work on entry-major arrays ``(..., G)`` and broadcast along the small axes
(``a[:, c:c+1] * b[c:c+1]``, ``h *= inv_d``, ``v[:, None] * s[None]``).  numpy's
iterator then copies its operands through its buffers whenever the contiguous run (G
groups) is shorter than the buffer (8192 elements by default): at 1,000–8,191 groups a
broadcast product costs 2–4× the instructions of the product itself (callgrind, numpy
2.4; the copies are most of them) and 25–55 % more time.  With a buffer no longer than
the run, numpy iterates the operands where they lie.  The numbers are the same: the
buffer only decides how the iteration is cut into inner loops; element-wise operations
do not depend on it, and the sums over the contiguous axis (pairwise within one inner
loop) are not buffered.

Source: numpy's ``setbufsize`` (``numpy/_core/_ufunc_config.py``); the measurements are
in benchmarks/RESULTS.md (eleventh session, small).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

__all__ = ["KERNEL_BUFSIZE", "in_group_buffers"]

T = TypeVar("T")

#: numpy's ufunc buffer (elements) while the kernels run over at least this many groups:
#: a multiple of 16 (numpy's rule), no longer than the chunks of groups it serves
KERNEL_BUFSIZE = 1024


def in_group_buffers(n_groups: int, func: Callable[..., T], *args) -> T:
    """``func(*args)`` with numpy's ufunc buffer set to :data:`KERNEL_BUFSIZE` elements,
    for a block of ``n_groups`` groups (at least that many; smaller blocks keep numpy's
    buffer, which already holds their runs whole), restored after.  The setting is
    numpy's context-local one: other threads and contexts do not see it."""
    if n_groups < KERNEL_BUFSIZE:
        return func(*args)
    old = np.setbufsize(KERNEL_BUFSIZE)
    try:
        return func(*args)
    finally:
        np.setbufsize(old)
