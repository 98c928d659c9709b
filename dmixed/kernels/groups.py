"""Statistics → contributions: each block of groups' sums for ℓ, score, Hessian, BLUPs.

Nothing here knows about Dask, pandas or the optimizer.  Every function works on
stacked per-group arrays (a leading axis of length ``G``, the number of groups in the
block) and returns contributions that are *sums over groups*, so that an engine can
evaluate them on any partition of the groups and add the results.

Notation as in :mod:`dmixed.kernels` (DESIGN.md §1–6); the per-group ``K_i``, ``P_i``,
``S_i`` and ``H_i`` at the relative covariance factor ``Λ`` (``B* = ΛΛ'``) are those of
:mod:`~dmixed.kernels.conditionals`, which computes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import compiled
from .conditionals import (
    CENTRED_DETERMINANT,
    LOSSY_DETERMINANT,
    CentredSums,
    PlainRounding,
    centred_between,
    centred_from_shifted,
    centred_rounding,
    concatenate_centred,
    conditional,
    gram_rows,
    heavy_bounds,
    largest_heavy_bound,
    lossy_groups,
    m_sum,
    near_lossy_bounds,
    plain_rounding,
    rank_one_groups,
)
from .hessian_moments import HessianMoments

# Groups are processed in chunks of this many, to bound the size of the
# (G, m, r, r)-shaped temporaries of the Hessian and keep them cache friendly.
GROUP_CHUNK = 16384
#: Up to this r, the numpy Hessian sums are contractions of a few moments over groups
#: (:mod:`~dmixed.kernels.hessian_moments`: r⁴(p+1)² numbers, against the per-group
#: products of the general form below); 0 runs the general form for every r.
HESSIAN_MOMENTS_MAX_R = 3
#: A block keeps the per-group values of its last step (``P``, ``log|K|``, ``S``, ``H``)
#: for the Hessian and the BLUPs at the same ``Λ`` (the optimizer asks for the Hessian
#: at the point it just evaluated) when they take at most this many bytes.
KEPT_CONDITIONALS_BYTES = 32 * 2**20
#: Whether the numpy Hessian sums traced against ``A⁻¹`` past
#: :data:`HESSIAN_MOMENTS_MAX_R` are contracted from moments over the groups
#: (:func:`_hessian_traced_moments`) rather than summed per ``E_j`` a group
#: (:func:`_hessian_traced`, kept as the reference the tests compare with).
TRACED_MOMENTS = True


# ---------------------------------------------------------------------------
# Statistics blocks
# ---------------------------------------------------------------------------


class ChunkSpans:
    """Where each chunk of a :class:`StatsBlock` lies in the block's order of groups:
    the one owner of the chunk → position mapping (every per-chunk slice of a
    per-group array, every selection of groups split into chunks or joined back).

    Parameters
    ----------
    sizes : sequence of int (C,)
        The groups of each chunk, in order.

    Attributes
    ----------
    edges : ndarray of int64 (C+1,)
        ``edges[c]:edges[c+1]``: the positions of chunk ``c``'s groups; ``edges[-1]``
        the block's groups.
    """

    __slots__ = ("edges",)

    def __init__(self, sizes: Sequence[int]) -> None:
        edges = np.zeros(len(sizes) + 1, dtype=np.int64)
        # the ufunc itself: np.cumsum of a list goes through numpy's wrapper of
        # non-array input, which costs more than the sum (a block of one chunk)
        np.add.accumulate(sizes, out=edges[1:])
        # Read-only: a block shares its spans between threads and callers, and an edited edge
        # would misplace groups without any error.
        edges.flags.writeable = False
        self.edges = edges

    @classmethod
    def cut(cls, n_groups: int, size: int | None = None) -> ChunkSpans:
        """The spans of ``n_groups`` groups cut into chunks of ``size`` (default
        :data:`GROUP_CHUNK`) groups each but the last (one chunk of none when there are
        none): a new block's.

        Parameters
        ----------
        n_groups : int
            The block's groups (0 or more).
        size : int, optional
            The groups of each chunk but the last; None: :data:`GROUP_CHUNK` as it is set
            when called (not at import), so that a changed setting reaches every cut.

        Returns
        -------
        ChunkSpans
            ``ceil(n_groups / size)`` chunks (one of none when ``n_groups`` is 0), the
            last of ``n_groups - size * (C - 1)`` groups.

        Raises
        ------
        ValueError
            ``size`` is not positive.
        """
        if size is None:  # read when called: GROUP_CHUNK is the module's setting
            size = GROUP_CHUNK
        if size < 1:
            raise ValueError(f"size must be at least 1 (groups a chunk), not {size}")
        full, rest = divmod(n_groups, size)
        return cls([size] * full + ([rest] if rest or not full else []))

    @classmethod
    def of(cls, chunks: Iterable) -> ChunkSpans:
        """The spans of entry-major chunks ``(zz (r, r, G_c), zxy)``."""
        return cls([zzc.shape[-1] for zzc, _ in chunks])

    @property
    def n_groups(self) -> int:
        """The groups of every chunk together."""
        return int(self.edges[-1])

    def slices(self) -> list[slice]:
        """Each chunk's positions as a slice of a per-group array (G, …) in the
        block's order."""
        edges = self.edges.tolist()
        return [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]

    def split(self, sel: np.ndarray) -> list[tuple[slice, np.ndarray]]:
        """Each chunk's share of the positions ``sel`` (L,) (int64, increasing, in the
        block's order): ``(slice of sel, those positions within the chunk (int64))``.
        One search of ``sel`` for all the chunks' edges."""
        sel = np.asarray(sel, dtype=np.int64)
        cuts = np.searchsorted(sel, self.edges).tolist()
        edges = self.edges.tolist()
        return [
            (slice(a, b), sel[a:b] - lo)
            for a, b, lo in zip(cuts[:-1], cuts[1:], edges[:-1], strict=True)
        ]

    def join(self, local: Iterable[np.ndarray]) -> np.ndarray:
        """The positions in the block's order (int64 (L,), increasing where each chunk's
        are) of each chunk's positions within it (``local``, one array per chunk, as
        :meth:`split` gives them): its inverse."""
        parts = [
            np.asarray(pos, dtype=np.int64) + lo
            for pos, lo in zip(local, self.edges[:-1].tolist(), strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class StatsBlock:
    """Per-group statistics of a block of groups, in the layout the kernels want.

    Stored *entry-major*: ``zz[a, b, :]`` and ``zxy[a, j, :]`` are contiguous vectors
    over the groups.  Products of the many tiny per-group matrices then run as a few
    long vector operations (faster than batched ``(G, r, r)`` matmuls: see
    benchmarks/RESULTS.md, kernel layout), and the sums over groups become BLAS matrix
    products.

    Parameters
    ----------
    zz : ndarray (G, r, r)
        ``Z̃_i'Z̃_i`` per group.
    zxy : ndarray (G, r, p+1)
        ``Z̃_i'[X_i, y_i]`` per group.
    """

    __slots__ = (
        "_centred",
        "_chunks",
        "_clear_below",
        "_keep",
        "_kept",
        "_one",
        "_shifted",
        "_spans",
        "_subset",
    )

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        zz = np.asarray(zz, dtype=np.float64)
        zxy = np.asarray(zxy, dtype=np.float64)
        # Each chunk is its own contiguous array: einsum's fast inner loops need
        # contiguous operands (benchmarks/RESULTS.md: kernel layout).
        spans = ChunkSpans.cut(zz.shape[0])
        self._chunks = [
            (
                np.ascontiguousarray(np.moveaxis(zz[at], 0, -1)),
                np.ascontiguousarray(np.moveaxis(zxy[at], 0, -1)),
            )
            for at in spans.slices()
        ]
        self._keep = False
        self._kept: tuple[bytes, list] | None = None
        self._one: list | None = None
        self._centred: list | None = None
        self._subset: list | None = None
        self._shifted: tuple | None = None
        self._spans: ChunkSpans | None = spans
        self._clear_below: tuple[float, np.ndarray] | None = None

    @classmethod
    def from_entry_major(cls, zz: np.ndarray, zxy: np.ndarray) -> StatsBlock:
        """The block of entry-major ``zz`` (r, r, G) and ``zxy`` (r, p+1, G) (views
        allowed: each chunk is copied once), without the per-group layout's transposes."""
        block = cls.__new__(cls)
        spans = ChunkSpans.cut(zz.shape[-1])
        block._chunks = [
            (
                np.ascontiguousarray(zz[..., at], dtype=np.float64),
                np.ascontiguousarray(zxy[..., at], dtype=np.float64),
            )
            for at in spans.slices()
        ]
        block._keep, block._kept, block._one, block._centred = False, None, None, None
        block._subset = block._shifted = None
        block._spans = spans
        block._clear_below = None
        return block

    @classmethod
    def from_chunks(cls, chunks: list) -> StatsBlock:
        """The block of entry-major chunks ``(zz (r, r, G_c), zxy (r, p+1, G_c))`` of
        consecutive groups, held as given (C-contiguous float64, :data:`GROUP_CHUNK`
        groups each but the last, one chunk of no groups when there are none): no copy."""
        block = cls.__new__(cls)
        block._chunks = list(chunks)
        block._keep, block._kept, block._one, block._centred = False, None, None, None
        block._subset = block._shifted = block._spans = None
        block._clear_below = None
        return block

    @property
    def n_groups(self) -> int:
        chunks = self._chunks
        if len(chunks) == 1:  # the common block (asked for on every step and Hessian)
            return chunks[0][0].shape[-1]
        return self.spans.n_groups

    @property
    def spans(self) -> ChunkSpans:
        """Where each chunk lies in the block's order of groups (:class:`ChunkSpans`):
        what every per-chunk view of per-group arrays and positions goes through.
        Made on first use and kept: the chunks are fixed when the block is made."""
        spans = self._spans
        if spans is None:
            spans = self._spans = ChunkSpans.of(self._chunks)
        return spans

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the block holds: its statistics, and the last step's
        per-group values where it keeps them (:meth:`keep_conditionals`)."""
        total = sum(zzc.nbytes + zxyc.nbytes for zzc, zxyc in self._chunks)
        if self._centred is not None:
            total += sum(part.nbytes for part in self._centred)
        if self._subset is not None:
            total += sum(sel.nbytes + part.nbytes for sel, part in self._subset)
        if self._kept is not None:
            for *_, cond in self._kept[1]:
                total += sum(arr.nbytes for arr in cond if isinstance(arr, np.ndarray))
        return total

    @property
    def r(self) -> int:
        """Columns of the padded random design ``Z̃``."""
        return self._chunks[0][0].shape[0]

    @property
    def k(self) -> int:
        """``p + 1``: columns of ``[X y]``."""
        return self._chunks[0][1].shape[1]

    def chunks(self):
        """Entry-major ``(zz (r, r, G_c), zxy (r, p+1, G_c))`` of consecutive groups."""
        return iter(self._chunks)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The statistics back in per-group layout: ``zz`` (G, r, r), ``zxy`` (G, r, p+1)."""
        zz = np.concatenate([np.moveaxis(c[0], -1, 0) for c in self._chunks])
        zxy = np.concatenate([np.moveaxis(c[1], -1, 0) for c in self._chunks])
        return zz, zxy

    def __getstate__(self):
        if self._subset is not None:
            return (self._chunks, self._one, None, self._subset, self._shifted)
        if self._centred is not None:
            return (self._chunks, False, self._centred)
        return self._chunks if self._one is None else (self._chunks, self._one)

    def __setstate__(self, state) -> None:
        rank_one = isinstance(state, tuple)
        self._chunks = state[0] if rank_one else state
        self._keep, self._kept, self._one = False, None, None
        self._centred = state[2] if rank_one and len(state) > 2 else None
        self._subset = state[3] if rank_one and len(state) > 3 else None
        self._shifted = state[4] if rank_one and len(state) > 4 else None
        self._spans = None
        self._clear_below = None
        if rank_one and state[1] is True:
            # a block pickled by a dmixed that judged rank one on the worker (no masks):
            # read as plain sums it would drop its closed forms without a word
            raise ValueError(
                "a statistics block pickled by another version of dmixed (rank-one groups "
                "without their masks): the client and every worker must run the same dmixed"
            )
        if rank_one and isinstance(state[1], list):  # the rank-one groups, as judged
            self._one = state[1]

    def use_rank_one(self, nobs: np.ndarray) -> StatsBlock:
        """Take the statistics as those of a random design whose column 0 is the
        intercept and whose other columns are constant within the groups, with the
        within-group cross-products ``W`` about column 0
        (:attr:`~dmixed.stats.GlobalStats.within`) at hand; ``self``.

        From now on the groups whose ``Z̃_i'Z̃_i`` has rank one
        (:func:`~dmixed.kernels.conditionals.rank_one_groups`: all but a group whose
        rows in several batches carry different constants) take the closed-form
        conditionals, and :attr:`StepSums.between` is what ``[X y]'V*⁻¹[X y]`` adds to
        ``W`` (:func:`_between_rank_one`); the numpy kernels evaluate them.  Lossy
        groups told to take the centred forms (:meth:`use_shifted`, before or after)
        keep them: rows of batches of different constants make a group that is not
        of rank one, and may make a lossy one (a batch of one-row groups is constant
        within each).  ``nobs`` (G,): the groups' rows, in the block's order (the
        rank-one test's rounding, :func:`~dmixed.kernels.conditionals.rank_one_groups`)."""
        nobs = np.asarray(nobs)
        self._one = [
            rank_one_groups(zzc, nobs[at])
            for (zzc, _), at in zip(self._chunks, self.spans.slices(), strict=True)
        ]
        self._centred = None
        self._kept = None
        return self

    def use_centred(self, sums: CentredSums) -> StatsBlock:
        """Take the centred sums ``sums`` (:class:`~dmixed.kernels.conditionals.CentredSums`
        of every group of the block, in its order) with the within-group
        cross-products ``W`` of the same rows at hand; ``self``.

        From now on its groups take
        :func:`~dmixed.kernels.conditionals.centred_conditional`, and
        :attr:`StepSums.between` is what ``[X y]'V*⁻¹[X y]`` adds to ``W``
        (:func:`~dmixed.kernels.conditionals.centred_between`).  All of them: a
        well-conditioned group's ``u m m' − m_i`` would subtract the size of its mean
        (a random intercept next to a large spread of the groups).  The block then says
        it is :attr:`rank_one`: the numpy kernels evaluate it."""
        parts = [sums.take(at) for at in self.spans.slices()]
        self._centred, self._one, self._kept = parts, None, None
        self._subset = self._shifted = None
        return self

    def use_shifted(
        self,
        sel: np.ndarray,
        shifted: tuple,
        e: int,
        shared: tuple,
        lossy: np.ndarray | None = None,
    ) -> StatsBlock:
        """Let the groups ``sel`` (L,) of the block (positions in its order, increasing:
        its lossy groups) take the centred forms from their sums about a shift of their
        own (``shifted``, ``e`` and ``shared`` as
        :func:`~dmixed.kernels.conditionals.centred_from_shifted` takes them, the
        arrays' last axis the L groups); ``self``.  The other groups keep their forms
        and their numbers, and so does the profile's ``[X y]'[X y] − Σ_i m_i``: each
        such group's ``m_i`` is ``u m m'`` less what its ``[X y]'V*⁻¹[X y]`` adds to
        its centred ``A_c'A_c`` (:func:`~dmixed.kernels.conditionals.centred_between`),
        no ``W`` needed; with the rank-one forms (:meth:`use_rank_one`) what it adds to
        ``W`` is that part itself.  The block is then evaluated by the numpy kernels
        (:attr:`numpy_only`).
        ``lossy`` (L,) bool: which of them are lossy (below
        :data:`~dmixed.kernels.conditionals.LOSSY_DETERMINANT`; the others are only
        below :data:`~dmixed.kernels.conditionals.CENTRED_DETERMINANT`), what
        :attr:`centred_groups` counts; None: all of them."""
        sel = np.asarray(sel, dtype=np.int64)
        parts = []
        for (zzc, zxyc), (at, local) in zip(self._chunks, self.spans.split(sel), strict=True):
            mine = tuple(arr[..., at] for arr in shifted)
            sums = centred_from_shifted(zzc, zxyc, e, local, mine, shared)
            if lossy is not None:
                sums.lossy = np.ascontiguousarray(np.asarray(lossy, dtype=bool)[at])
            parts.append((local, sums))
        self._subset = parts
        self._kept = None
        self._shifted = (sel, tuple(shifted), e, tuple(shared), lossy)
        return self

    def use_centred_at(self, sel: np.ndarray, sums: CentredSums) -> StatsBlock:
        """Let the groups ``sel`` (L,) of the block (positions in its order,
        increasing) take the centred forms from their centred sums ``sums``
        (:class:`~dmixed.kernels.conditionals.CentredSums` of those L groups, in that
        order), as :meth:`use_shifted` does from sums about shifts; ``self``.  What a
        copy of the block whose response was drawn takes (the bootstrap): the design's
        centred sums kept, the response's drawn."""
        self._subset = [(local, sums.take(at)) for at, local in self.spans.split(sel)]
        self._kept = None
        self._shifted = None
        return self

    def centred_sums(self) -> tuple[np.ndarray, CentredSums, bool] | None:
        """The centred sums the block takes (:meth:`use_centred`, :meth:`use_shifted`,
        :meth:`use_centred_at`): ``(positions (L,) in the block's order, their
        CentredSums, whether every group takes them about the within-group sums
        W)``; None where it takes none."""
        if self._centred is not None:
            pos = np.arange(self.spans.n_groups, dtype=np.int64)  # every group
            return pos, concatenate_centred(self._centred), True
        if self._subset is not None:
            sums = concatenate_centred([c for _, c in self._subset])
            return self.spans.join(sel for sel, _ in self._subset), sums, False
        return None

    @property
    def shifted(self) -> tuple | None:
        """The arguments :meth:`use_shifted` took (``(sel, shifted, e, shared, lossy)``), or
        None: what a copy of the sums elsewhere takes again."""
        return self._shifted

    @property
    def numpy_only(self) -> bool:
        """Whether the block takes forms only the numpy kernels evaluate
        (:meth:`use_rank_one`, :meth:`use_centred`, :meth:`use_shifted`)."""
        return self.rank_one or self._subset is not None

    @property
    def rank_one(self) -> bool:
        """Whether :meth:`use_rank_one` or :meth:`use_centred` applies (the sums are
        then the numpy kernels', about ``W``)."""
        return self._one is not None or self._centred is not None

    @property
    def centred_groups(self) -> int:
        """The lossy groups (below :data:`~dmixed.kernels.conditionals.LOSSY_DETERMINANT`)
        for which the block takes the centred forms (:meth:`use_centred`,
        :meth:`use_shifted`): those that saved statistics cannot carry; 0 without."""
        if self._subset is not None:
            return sum(int(c.lossy.sum()) for _, c in self._subset)
        return 0 if self._centred is None else sum(int(c.lossy.sum()) for c in self._centred)

    def centred_positions(self) -> np.ndarray:
        """The positions (in the block's order, increasing) of the groups counted by
        :attr:`centred_groups` (the lossy ones: :meth:`centred_sums` has every group
        that takes the forms): int64 (L,), empty without."""
        if self._subset is not None:
            return self.spans.join(sel[c.lossy] for sel, c in self._subset)
        if self._centred is None:
            return np.zeros(0, dtype=np.int64)
        return self.spans.join(np.flatnonzero(c.lossy) for c in self._centred)

    def centred_masks(self, nobs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The block's groups that take the centred forms where their sums are at hand
        (:meth:`near_lossy_mask`) and, of the block's groups, the lossy ones
        (:meth:`lossy_mask`: those that saved statistics refuse), or None where no group
        takes them (``nobs`` (G,): the groups' rows, in the block's order).

        Returns
        -------
        tuple of ndarray of bool (G,), or None
            ``(near, lossy)``: ``lossy`` all False where no group is lossy.
        """
        near = self.near_lossy_mask(nobs)
        if near is None:
            return None
        lossy = self.lossy_mask(nobs)
        return near, (np.zeros_like(near) if lossy is None else lossy)

    def near_lossy_positions(self, nobs: np.ndarray) -> np.ndarray:
        """The positions (in the block's order, increasing) of the groups of
        :meth:`near_lossy_mask` (``nobs`` (G,): the groups' rows, in the block's order):
        int64 (L,), empty where none."""
        mask = self.near_lossy_mask(nobs)
        return np.zeros(0, dtype=np.int64) if mask is None else np.flatnonzero(mask)

    def near_lossy_mask(self, nobs: np.ndarray) -> np.ndarray | None:
        """The block's groups that take the centred forms where their sums are at hand:
        lossy, or near lossy (their scaled determinant below
        :func:`~dmixed.kernels.conditionals.near_lossy_bounds`, weighed by their share
        of the block's ``Z̃'Z̃`` diagonal; ``nobs`` (G,): the groups' rows, in the
        block's order): bool (G,), or None where there are none.  One check of every
        chunk below :data:`~dmixed.kernels.conditionals.CENTRED_DETERMINANT` (the
        largest such bound: the common case, nothing more), then the block's totals and
        the few groups below it weighed again."""
        coarse = self.lossy_mask(nobs, CENTRED_DETERMINANT)
        if coarse is None:
            return None
        nobs = np.asarray(nobs)
        sel = np.flatnonzero(coarse)
        totals = sum(np.einsum("aag->a", zzc) for zzc, _ in self._chunks)
        mask = np.zeros_like(coarse)
        for (zzc, _), (at, local) in zip(self._chunks, self.spans.split(sel), strict=True):
            if local.size:
                part = zzc[..., local]
                mine = sel[at]
                mask[mine] = lossy_groups(part, nobs[mine], near_lossy_bounds(part, totals))
        return mask if np.count_nonzero(mask) else None

    def lossy_masks(
        self, nobs: np.ndarray, bound: float = LOSSY_DETERMINANT
    ) -> Iterator[np.ndarray]:
        """Each chunk's lossy groups (:func:`~dmixed.kernels.conditionals.lossy_groups`
        below ``bound``; ``nobs`` (G,): the groups' rows, in the block's order): bool
        (G_c,) per chunk, each made as it is read (while its chunk is in cache for what
        follows)."""
        nobs = np.asarray(nobs)
        return (
            lossy_groups(zzc, nobs[at], bound)
            for (zzc, _), at in zip(self._chunks, self.spans.slices(), strict=True)
        )

    def lossy_mask(self, nobs: np.ndarray, bound: float = LOSSY_DETERMINANT) -> np.ndarray | None:
        """The block's lossy groups (:meth:`lossy_masks` joined; ``nobs`` (G,): the
        groups' rows, in the block's order; ``bound`` as there): bool (G,), or None
        where there are none (each chunk checked, nothing joined).

        A bound found to hold no group is kept with a copy of the ``nobs`` it was
        asked with: asked again with that bound and group sizes equal to the copy (the
        data pass's coarse check, then the precision check's, of the statistics' own
        group sizes), the answer is None without a look at the chunks.  The key is the
        sizes' values, not the array's identity: an array changed in place since is
        looked at again.  Comparing them costs a small part of the look it saves
        (benchmarks/RESULTS.md, arr2k3-s58).  The chunks are fixed when the block is
        made (as :attr:`spans` relies on)."""
        clear = self._clear_below
        if (
            clear is not None
            and clear[0] == bound
            and type(nobs) is np.ndarray
            and nobs.shape == clear[1].shape
            and np.array_equal(nobs, clear[1])
        ):
            return None
        masks = list(self.lossy_masks(nobs, bound))
        if not any(np.count_nonzero(mask) for mask in masks):
            if type(bound) is float and type(nobs) is np.ndarray:
                self._clear_below = (bound, nobs.copy())
            return None
        return np.concatenate(masks)

    def inexact_groups(self, nobs: np.ndarray, rank_one: bool = False) -> int:
        """The groups of the block (``nobs`` (G,): their rows, in its order) that are
        lossy (:func:`~dmixed.kernels.conditionals.lossy_groups`) and take neither the
        rank-one nor the centred forms: those whose ``[X y]'V*⁻¹[X y]`` would lose
        digits.  ``rank_one``: counted as after :meth:`use_rank_one`, without taking
        it (the block is only read: another thread may hold it)."""
        nobs = np.asarray(nobs)
        masks, count = self.lossy_masks(nobs), 0
        if rank_one:
            subsets = self._subset if self._subset is not None else [None] * len(self._chunks)
            parts = zip(self._chunks, self.spans.slices(), masks, subsets, strict=True)
            for (zzc, _), at, lossy, subset in parts:
                if lossy.any():
                    lossy &= ~rank_one_groups(zzc, nobs[at])
                    if subset is not None:  # their centred forms (use_shifted)
                        lossy[subset[0]] = False
                    count += int(lossy.sum())
            return count
        for lossy, (one, centred, subset) in zip(masks, self._forms(), strict=True):
            if one is not None:
                lossy &= ~one
            if subset is not None:
                lossy[subset[0]] = False
            if centred is None:
                count += int(lossy.sum())
        return count

    def plain_rounding(self, nobs: np.ndarray, cancellation: float = 0.0) -> PlainRounding:
        """What the groups taking the plain forms (neither :meth:`use_rank_one`'s nor
        the centred ones) may round the fit by
        (:func:`~dmixed.kernels.conditionals.plain_rounding`, summed over the chunks;
        ``nobs`` (G,): the groups' rows, in the block's order): what a precision check
        charges them with.  Only the groups of :meth:`near_lossy_mask`'s criterion
        (:func:`~dmixed.kernels.conditionals.near_lossy_bounds`) are charged: the others
        lose no digit that matters where their sums about their means are at hand either,
        and, given the fit's ``cancellation`` (how many times smaller ``X'V*⁻¹X`` and
        ``Q`` are than the totals they are the remainder of), the groups heavy enough for
        their conditional's rounding to matter there
        (:func:`~dmixed.kernels.conditionals.heavy_bounds`), whatever their determinant.
        Zeros where no such group takes the plain forms.

        Raises
        ------
        PlainRoundingError
            Where such a group's sums do not resolve its design (no bound holds)."""
        nobs = np.asarray(nobs)
        total = PlainRounding.zero(self.k)
        coarse = CENTRED_DETERMINANT
        if cancellation > 0 and nobs.size and self.r > 1:
            # heavy_bounds' largest (a share of 1, the largest group)
            most = largest_heavy_bound(self.r, float(np.maximum.reduce(nobs)), cancellation)
            coarse = max(coarse, most)
        if self.lossy_mask(nobs, coarse) is None:
            return total  # the common case: one check of every chunk, nothing more
        totals = sum(np.einsum("aag->a", zzc) for zzc, _ in self._chunks)
        parts = zip(self._chunks, self.spans.slices(), self._forms(), strict=True)
        for (zzc, zxyc), at, (one, centred, subset) in parts:
            if centred is not None:
                continue
            plain = np.ones(zzc.shape[2], dtype=bool)
            if one is not None:
                plain &= ~one
            if subset is not None:
                plain[subset[0]] = False
                local, sums = subset
                if cancellation > 0:
                    mine = zzc[..., local]
                    total = total + centred_rounding(
                        sums, nobs[at][local], mine, totals, cancellation
                    )
            if plain.any():
                zz, zxy = zzc[..., plain], zxyc[..., plain]
                bounds = near_lossy_bounds(zz, totals)
                if cancellation > 0:
                    heavy = heavy_bounds(zz, nobs[at][plain], totals, cancellation)
                    bounds = np.fmax(bounds, heavy)
                total = total + plain_rounding(zz, zxy, nobs[at][plain], bounds)
        return total

    def _masks(self):
        """Each chunk's rank-one groups (:meth:`use_rank_one`), or None per chunk."""
        return iter(self._one) if self._one is not None else (None for _ in self._chunks)

    def _forms(self):
        """Each chunk's ``(rank-one groups, centred sums, (lossy groups, their centred
        sums))`` (:meth:`use_rank_one`, :meth:`use_centred`, :meth:`use_shifted`; None
        where not taken)."""
        none = [None] * len(self._chunks)
        centred = self._centred if self._centred is not None else none
        subset = self._subset if self._subset is not None else none
        return zip(self._masks(), centred, subset, strict=True)

    def keep_conditionals(self) -> StatsBlock:
        """Keep the last step's per-group values from now on (:meth:`conditionals`);
        ``self``.  For an in-process engine: a block on a cluster worker does not keep
        them (its memory is the worker's budget)."""
        self._keep = True
        return self

    def conditionals(self, lam: np.ndarray):
        """Per chunk ``(zz, zxy, (P, log|K|, S, H))`` at ``lam``
        (:func:`~dmixed.kernels.conditionals.conditional`, entry-major).

        After :meth:`keep_conditionals`, the values of the last call are kept
        (read-only) when they take at most :data:`KEPT_CONDITIONALS_BYTES`, and given
        again for the same ``Λ`` bit for bit: the Hessian and the BLUPs are asked for
        where the last step was evaluated.  What the block keeps is read once, as in
        :meth:`kept_conditionals`.
        """
        key = _lam_key(lam)
        kept = self._kept  # read once: another fit of the same model may step meanwhile
        if kept is not None and kept[0] == key:
            return iter(kept[1])
        r, k = lam.shape[0], self.k
        pairs = zip(self._chunks, self._forms(), strict=True)
        if not self._keep or 8 * self.n_groups * (2 * r * r + 1 + r * k) > KEPT_CONDITIONALS_BYTES:
            self._kept = None
            return (
                (zzc, zxyc, conditional(zzc, zxyc, lam, one=one, centred=centred, subset=sub))
                for (zzc, zxyc), (one, centred, sub) in pairs
            )
        out = [
            (zzc, zxyc, conditional(zzc, zxyc, lam, one=one, centred=centred, subset=sub))
            for (zzc, zxyc), (one, centred, sub) in pairs
        ]
        for *_, cond in out:
            for arr in cond:
                if isinstance(arr, np.ndarray):
                    arr.flags.writeable = False
        self._kept = (key, out)
        return iter(out)

    def kept_conditionals(self, lam: np.ndarray):
        """:meth:`conditionals` at ``lam`` where the block keeps them (the last step's
        ``Λ``), else None: nothing computed, nothing kept.  What the block keeps is read
        once: a fit of the same model may step to another ``Λ`` meanwhile (BLUPs made on
        first read, in another thread)."""
        kept = self._kept
        if kept is not None and kept[0] == _lam_key(lam):
            return iter(kept[1])
        return None


def _lam_key(lam: np.ndarray) -> bytes:
    """The key of the kept conditionals at ``lam``: its dtype, shape and bytes."""
    return f"{lam.dtype.str}{lam.shape}".encode() + lam.tobytes()


def _as_block(block, zxy=None) -> StatsBlock:
    if isinstance(block, StatsBlock):
        return block
    return StatsBlock(block, zxy)


# ---------------------------------------------------------------------------
# Per-step contributions
# ---------------------------------------------------------------------------


@dataclass
class StepSums:
    """Sums over groups needed for the profiled log-likelihood and its score.

    Attributes
    ----------
    logdet : float
        Σ_i log|K_i|.
    m : ndarray (p+1, p+1)
        Σ_i ZXy_i' P_i ZXy_i, so that [X y]'V*⁻¹[X y] = [X y]'[X y] − m.
    s : ndarray (r, r)
        Σ_i S_i.
    t_re : ndarray (q, q, p+1, p+1)
        Σ_i H_i[a,:] ⊗ H_i[b,:] over the ``exog_re`` coordinates a, b.
    t_vc : ndarray (r-q, p+1, p+1)
        Σ_i H_i[a,:] ⊗ H_i[a,:] over each variance-component slot a.
    between : ndarray (p+1, p+1)
        For ``r = 1``: Σ_i F_i'F_i / (U_i (1 + λ² U_i)) = Σ_i (F_i'F_i/U_i − m_i), what
        ``[X y]'V*⁻¹[X y]`` adds to the within-group cross-products
        (:attr:`~dmixed.stats.GlobalStats.within`), in closed form; for ``r ≥ 2`` where
        :attr:`rank_one`, what it adds to the within-group sums about column 0
        (:meth:`StatsBlock.use_rank_one`), its lossy groups (those of
        :meth:`StatsBlock.use_shifted`) adding what it adds to their centred sums
        (:func:`~dmixed.kernels.conditionals.centred_between`) instead; zeros otherwise.
    rank_one : bool
        Whether ``between`` is that of :meth:`StatsBlock.use_rank_one` (every part of
        the sum: a sum of parts of which some are not has none).
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    t_re: np.ndarray
    t_vc: np.ndarray
    between: np.ndarray
    rank_one: bool = False

    def __add__(self, other: StepSums) -> StepSums:
        return StepSums(
            self.logdet + other.logdet,
            self.m + other.m,
            self.s + other.s,
            self.t_re + other.t_re,
            self.t_vc + other.t_vc,
            self.between + other.between,
            self.rank_one and other.rank_one,
        )


def step_contributions(block, lam: np.ndarray, q: int, zxy=None) -> StepSums:
    """Contributions of a block of groups to the profiled likelihood and score.

    Parameters
    ----------
    block : StatsBlock
        The groups' statistics (or ``zz`` (G, r, r) with ``zxy`` given).
    lam : ndarray (r, r)
        The relative covariance factor Λ (lower triangular on the ``exog_re`` block,
        diagonal on the variance-component slots).
    q : int
        Number of ``exog_re`` coordinates.

    Evaluated by the compiled kernels or by numpy, as
    :func:`dmixed.kernels.compiled.backend` picks for the block's size (the
    ``DMIXED_KERNELS`` environment variable forces one); both compute the same
    per-group formulas.

    Raises
    ------
    ValueError
        ``DMIXED_KERNELS`` names no implementation, or numba when it is not installed.
    """
    block = _as_block(block, zxy)
    r = lam.shape[0]
    k = block.k
    if not block.numpy_only and compiled.backend(block.n_groups, r) == "numba":
        return StepSums(*compiled.step_sums(block.chunks(), lam, q, k))
    chunks = zip(block.conditionals(lam), block._forms(), strict=True)
    (zzc, zxyc, cond), forms = next(chunks)  # a block has at least one chunk
    total = _step_part(zzc, zxyc, cond, lam, q, *forms)
    for (zzc, zxyc, cond), forms in chunks:
        total = total + _step_part(zzc, zxyc, cond, lam, q, *forms)
    return total


def _step_part(
    zzc: np.ndarray,
    zxyc: np.ndarray,
    cond,
    lam: np.ndarray,
    q: int,
    one=None,
    centred: CentredSums | None = None,
    subset: tuple | None = None,
) -> StepSums:
    """:func:`step_contributions` of one entry-major chunk, in numpy, from its
    :func:`~dmixed.kernels.conditionals.conditional` values ``cond`` (``one``: its
    rank-one groups where the block takes them, :meth:`StatsBlock.use_rank_one`;
    ``centred``: its centred sums, :meth:`StatsBlock.use_centred`; ``subset``: its
    lossy groups and their centred sums, :meth:`StatsBlock.use_shifted`)."""
    k = zxyc.shape[1]
    p_mat, logdet, s, h = cond
    hr = h[:q].reshape(q * k, h.shape[-1])  # a view: rows (a, x)
    hv = h[q:]
    if centred is not None:
        between = centred_between(centred, lam)
    elif one is not None:
        between = _between_rank_one(zzc, zxyc, lam, p_mat, one, subset)
    else:
        between = _between(zzc, zxyc, lam)
    m = m_sum(zxyc, p_mat) if subset is None else _m_shifted(zxyc, p_mat, lam, *subset)
    return StepSums(
        float(logdet.sum()),
        m,
        s.sum(axis=2),
        gram_rows(hr).reshape(q, k, q, k).transpose(0, 2, 1, 3),
        np.matmul(hv, hv.transpose(0, 2, 1)),
        between,
        one is not None or centred is not None,
    )


def value_contributions(block: StatsBlock, lam: np.ndarray, q: int) -> StepSums:
    """The sums of :func:`step_contributions` that ℓ alone needs, the same numbers bit
    for bit: ``logdet``, ``m`` and ``between``; the score's ``s``, ``t_re`` and ``t_vc``
    are NaN (not computed: about half of a step's work at ``r = 2``).  For a value that
    no score follows (the start selection's default point).  The compiled kernels, when
    :func:`~dmixed.kernels.compiled.backend` picks them, compute the whole step.
    """
    r, k = lam.shape[0], block.k
    if block.numpy_only or compiled.backend(block.n_groups, r) == "numba":
        return step_contributions(block, lam, q)
    nan = (np.full((r, r), np.nan), np.full((q, q, k, k), np.nan), np.full((r - q, k, k), np.nan))

    def part(zzc: np.ndarray, zxyc: np.ndarray) -> StepSums:
        p_mat, logdet, _, _ = conditional(zzc, zxyc, lam, value_only=True)
        return StepSums(float(logdet.sum()), m_sum(zxyc, p_mat), *nan, _between(zzc, zxyc, lam))

    parts = (part(zzc, zxyc) for zzc, zxyc in block.chunks())
    total = next(parts)  # a block has at least one chunk (of no groups when empty)
    for more in parts:
        total = total + more
    return total


def _m_shifted(
    zxy: np.ndarray, p_mat: np.ndarray, lam: np.ndarray, sel: np.ndarray, sums: CentredSums
) -> np.ndarray:
    """``Σ_i m_i`` of a chunk whose groups ``sel`` take the centred forms
    (:meth:`StatsBlock.use_shifted`): the others' ``ZXy_i'P_iZXy_i``, and for each of
    those ``u m m'`` less :func:`~dmixed.kernels.conditionals.centred_between`'s part
    (``[X y]'[X y] − [X y]'V*⁻¹[X y]`` of the group, without the ``ZXy'P ZXy`` that
    loses its digits)."""
    keep = np.ones(zxy.shape[-1], dtype=bool)
    keep[sel] = False
    out = m_sum(np.ascontiguousarray(zxy[..., keep]), np.ascontiguousarray(p_mat[..., keep]))
    mean_u = sums.mean * sums.u
    lossy = mean_u @ sums.mean.T
    return out + 0.5 * (lossy + lossy.T) - centred_between(sums, lam)


def _between_rank_one(
    zz: np.ndarray,
    zxy: np.ndarray,
    lam: np.ndarray,
    p_mat: np.ndarray,
    one: np.ndarray,
    subset: tuple | None = None,
) -> np.ndarray:
    """What ``[X y]'V*⁻¹[X y]`` adds to the within-group cross-products about column 0
    (:meth:`StatsBlock.use_rank_one`) over a chunk: ``Σ_i F_iF_i'/(U_i d_i)`` over its
    rank-one groups (``F_i = ZXy_i[0]``, ``U_i = ZZ_i[0, 0]``, ``d_i = 1 + λ_i²U_i =
    |K_i|``, exact: no cancellation), and ``Σ_i (F_iF_i'/U_i − m_i)`` over the
    others (a group whose rows in several batches carry different constants:
    ``[X_i y_i]'[X_i y_i] = W_i + F_iF_i'/U_i``).  ``subset``: the chunk's lossy groups
    and their centred sums (:meth:`StatsBlock.use_shifted`), whose part is
    :func:`~dmixed.kernels.conditionals.centred_between` (their ``W_i`` is the centred
    ``A_c'A_c``), not the difference above, which loses their digits."""
    u = zz[0, 0]
    f = zxy[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(u > 0, 1.0 / u, 0.0)
        lam2 = ((lam.T @ (zz[:, 0] * c)) ** 2).sum(axis=0)  # |Λ'z̄_i|²
        c = np.where(one, c / (1.0 + lam2 * u), c)
    sel, sums = subset if subset is not None and subset[0].size else (None, None)
    if sel is not None:
        one = one.copy()
        one[sel] = True  # (not among the rest below)
        c[sel] = 0.0
    out = (f * c) @ f.T
    rest = np.flatnonzero(~one & (u > 0))
    if rest.size:
        out = out - m_sum(zxy[..., rest], np.ascontiguousarray(p_mat[..., rest]))
    out = 0.5 * (out + out.T)
    return out if sums is None else out + centred_between(sums, lam)


def _between(zz: np.ndarray, zxy: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Σ_i F_i'F_i / (U_i (1 + λ²U_i)) over a chunk for ``r = 1`` (groups with U_i = 0
    have F_i = 0 and add nothing); zeros otherwise."""
    k = zxy.shape[1]
    if zz.shape[0] != 1:
        return np.zeros((k, k))
    u = zz[0, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(u > 0, 1.0 / (u * (1.0 + lam[0, 0] ** 2 * u)), 0.0)
    f = zxy[0]  # (k, G)
    out = (f * c) @ f.T
    return 0.5 * (out + out.T)


# ---------------------------------------------------------------------------
# Hessian contributions (once, at the optimum)
# ---------------------------------------------------------------------------


@dataclass
class HessianSums:
    """Sums over groups needed for the Hessian in [β, vech(Ψ*), τ*].

    With ``E_j`` the derivative of ``B*`` with respect to covariance parameter j, the
    residual-side vector ``u_i = Z̃_i'V*_i⁻¹(y_i − X_i β) = H_i w`` (w = [−β; 1]) and
    ``G_i = Z̃_i'V*_i⁻¹X_i`` (the first p columns of ``H_i``):

    - ``tr_ss[j,k] = Σ tr(S E_j S E_k)``
    - ``u_s_u[j,k] = Σ u'E_j S E_k u``
    - ``u_e_u[j] = Σ u'E_j u``
    - ``g_e_u[j] = Σ G'E_j u``                (p,)
    - ``a_j[j] = Σ G'E_j G``                  (p, p)
    - ``a_jk[j,k] = Σ 2 G'E_j S E_k G``  (p, p); it is only used in traces against
      symmetric matrices, where it equals ``Σ G'(E_j S E_k + E_k S E_j)G``; or, where
      the sums were asked with ``A⁻¹`` (:func:`hessian_contributions`' ``a_inv``), the
      traces themselves, ``a_jk[j,k] = Σ 2 tr(E_j S E_k G A⁻¹G')`` (m, m): the form
      is told by ``a_jk.ndim`` and read through :meth:`a_jk_traces`
    """

    tr_ss: np.ndarray
    u_s_u: np.ndarray
    u_e_u: np.ndarray
    g_e_u: np.ndarray
    a_j: np.ndarray
    a_jk: np.ndarray

    def __add__(self, other: HessianSums) -> HessianSums:
        self._check_same_form(other)
        return HessianSums(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )

    def add_in_place(self, other: HessianSums) -> None:
        """``self + other`` into ``self``'s arrays (the same sums as :meth:`__add__`,
        without a new ``(m, m, p, p)`` array per chunk of a wide model)."""
        self._check_same_form(other)
        for f in self.__dataclass_fields__:
            np.add(getattr(self, f), getattr(other, f), out=getattr(self, f))

    def _check_same_form(self, other: HessianSums) -> None:
        # a traced a_jk (m, m) and a full one (m, m, p, p) would broadcast where m == p
        for f in self.__dataclass_fields__:
            mine, theirs = np.shape(getattr(self, f)), np.shape(getattr(other, f))
            if mine != theirs:
                raise ValueError(
                    f"Hessian sums of different forms cannot be added: {f} of shape "
                    f"{mine} and {theirs} (traced and full sums of a_jk, or another model)"
                )

    @classmethod
    def zeros(cls, m: int, p: int, traced: bool = False) -> HessianSums:
        """Sums over no groups, for ``m`` covariance parameters and ``p`` fixed effects
        (``traced``: ``a_jk`` as its traces against ``A⁻¹``, (m, m))."""
        return cls(
            np.zeros((m, m)),
            np.zeros((m, m)),
            np.zeros(m),
            np.zeros((m, p)),
            np.zeros((m, p, p)),
            np.zeros((m, m)) if traced else np.zeros((m, m, p, p)),
        )

    def a_jk_traces(self, a_inv: np.ndarray) -> np.ndarray:
        """``tr(a_jk[j,k] A⁻¹)`` (m, m) for ``a_inv`` = ``A⁻¹`` (p, p): contracted here
        from the (m, m, p, p) sums, or the sums themselves where the kernel contracted
        them per group (with the same ``A⁻¹``: the caller's to keep)."""
        if self.a_jk.ndim == 2:
            return self.a_jk
        m, p = self.a_jk.shape[0], a_inv.shape[0]
        return self.a_jk.reshape(m, m, p * p) @ a_inv.T.reshape(p * p)


def hessian_contributions(
    block,
    lam: np.ndarray,
    basis: np.ndarray,
    w: np.ndarray,
    zxy=None,
    a_inv: np.ndarray | None = None,
    reml: bool = True,
) -> HessianSums:
    """Contributions of a block of groups to the Hessian sums.

    Parameters
    ----------
    basis : ndarray (m, r, r)
        ``E_j``: derivative of ``B*`` with respect to each covariance parameter.
    w : ndarray (p+1,)
        ``[−β; 1]``.
    a_inv : ndarray (p, p), optional
        ``A⁻¹ = (X'V*⁻¹X)⁻¹`` at ``lam``, where the caller has it: the per-group form
        then sums ``a_jk``'s traces against it, ``Σ 2 tr(E_j S E_k M)`` with the r × r
        ``M = G A⁻¹G'`` of each group (``r p²`` products a group instead of the
        ``r m² p²`` of the (m, m, p, p) sums, :meth:`HessianSums.a_jk_traces`), in
        numpy and in the compiled kernels (:func:`dmixed.kernels.compiled.traced_hessian_sums`);
        the other forms (moments, ``r ≤`` :data:`HESSIAN_MOMENTS_MAX_R` in numpy and
        ``r ≤ 2`` compiled) return the (m, m, p, p) sums whether it is given or not.
    reml : bool
        Whether the REML Hessian reads the sums: False (ML) leaves ``a_j`` and ``a_jk``,
        which only the REML Hessian reads, zero where ``a_inv`` is given and the
        per-group forms run (the moment forms sum them all the same).

    Evaluated by the compiled kernels or by numpy as :func:`step_contributions`; the
    compiled kernels' moments at ``r = 2`` and ``k`` up to
    :data:`~dmixed.kernels.native.MAX_K` in the C extension where it runs (numba's with
    ``DMIXED_NATIVE=numpy``: :func:`dmixed.kernels.compiled.hessian_sums`); in
    numpy up to ``r =`` :data:`HESSIAN_MOMENTS_MAX_R` from moments over the groups
    (:class:`~dmixed.kernels.hessian_moments.HessianMoments`); past it, with ``a_inv``
    given, from the traced sums' moments over the groups with the basis applied once
    (:data:`TRACED_MOMENTS`; the per-group traced form where it is False), else per
    group.
    """
    block = _as_block(block, zxy)
    m = basis.shape[0]
    p = block.k - 1
    kernel = "hessian" if a_inv is None else "hessian_traced"
    if (
        lam.shape[0]
        and not block.numpy_only
        and compiled.backend(block.n_groups, lam.shape[0], kernel) == "numba"
    ):
        traced = a_inv is not None and lam.shape[0] > 2
        out = HessianSums.zeros(m, p, traced=traced)
        fields = tuple(getattr(out, f) for f in out.__dataclass_fields__)
        sums = compiled.hessian_sums(
            block.chunks(), lam, basis, w, fields, a_inv if traced else None, reml
        )
        return HessianSums(*sums)
    r = basis.shape[1]
    if 0 < r <= HESSIAN_MOMENTS_MAX_R:
        moments = HessianMoments(r, p + 1)
        for _, _, (_, _, s, h) in block.conditionals(lam):
            # a copy: add writes u = H w over its H's last column, and these H are the
            # block's kept conditionals (read-only), read again for the BLUPs
            moments.add(s, np.array(h), w)
        return HessianSums(*moments.contract(basis))
    if a_inv is not None:
        a_inv = np.asarray(a_inv, dtype=np.float64)
        if TRACED_MOMENTS:
            return _hessian_traced_moments(block, lam, basis, w, a_inv, reml)
        return _hessian_traced(block, lam, basis, w, a_inv, reml)
    out = HessianSums.zeros(m, p)
    for _, _, (_, _, s, h) in block.conditionals(lam):
        t = _GroupTerms.of(s, h, w, basis, p)
        g = t.g
        seg = np.einsum("abg,bkpg->akpg", s, t.eg)  # (r, m, p, G): S E_k G
        half = np.zeros((m * p, m * p))
        for a in range(r):
            # G'E_j S E_k G, rows (j, q)
            half += t.eg[a].reshape(m * p, g) @ seg[a].reshape(m * p, g).T
        half = half.reshape(m, p, m, p).transpose(0, 2, 1, 3)
        out.add_in_place(t.sums(half + half.transpose(1, 0, 3, 2)))
    return out


@dataclass(frozen=True)
class _GroupTerms:
    """The products of a chunk of groups that both per-group forms of the Hessian sums
    (:func:`hessian_contributions`, :func:`_hessian_traced`) read.

    Every sum over groups made of them is one BLAS matrix product whose inner dimension
    runs over the groups (and a small axis), with the operands laid out so that the
    reshapes are views: the element-wise products (S times E_j ...) are cheap, the
    contractions over G are where the time goes."""

    g: int
    u: np.ndarray  # (r, G): H w
    gm: np.ndarray  # (r, p, G): G
    se: np.ndarray  # (m, r, r, G): S E_j
    eu: np.ndarray  # (m, r, G): E_j u
    eg: np.ndarray  # (r, m, p, G): E_j G, row a first
    seu: np.ndarray  # (m, r, G): S E_k u
    se_t: np.ndarray  # (m, r r G): S E_j with its two r axes swapped, flat
    gm_t: np.ndarray  # (p, r G): G with p first, flat

    @classmethod
    def of(cls, s: np.ndarray, h: np.ndarray, w: np.ndarray, basis: np.ndarray, p: int):
        g = s.shape[-1]
        m, r = basis.shape[:2]
        u = np.einsum("ajg,j->ag", h, w)
        gm = h[:, :p]
        se = np.einsum("abg,jbc->jacg", s, basis)
        eu = np.einsum("jab,bg->jag", basis, u)
        eg = np.einsum("jab,bqg->ajqg", basis, gm)
        seu = np.einsum("abg,kbg->kag", s, eu)
        se_t = np.ascontiguousarray(se.transpose(0, 2, 1, 3)).reshape(m, r * r * g)
        gm_t = np.ascontiguousarray(gm.transpose(1, 0, 2)).reshape(p, r * g)
        return cls(g, u, gm, se, eu, eg, seu, se_t, gm_t)

    def sums(self, a_jk: np.ndarray, reml: bool = True) -> HessianSums:
        """The chunk's :class:`HessianSums` given its ``a_jk`` in either form (full or
        traced): Σ tr(S E_j S E_k), Σ u'E_j S E_k u, Σ u'E_j u, Σ G'E_j u and Σ G'E_j G,
        the same in both forms (``reml`` False: Σ G'E_j G left zero)."""
        m, r = self.eu.shape[:2]
        p = self.gm.shape[1]
        eu_flat = self.eu.reshape(m, r * self.g)
        a_j = np.zeros((p, m * p))
        for a in range(r if reml else 0):
            a_j += self.gm[a] @ self.eg[a].reshape(m * p, self.g).T  # G'E_j G, (j, q)
        return HessianSums(
            self.se.reshape(m, r * r * self.g) @ self.se_t.T,
            eu_flat @ self.seu.reshape(m, r * self.g).T,
            eu_flat @ self.u.reshape(r * self.g),
            eu_flat @ self.gm_t.T,
            a_j.reshape(p, m, p).transpose(1, 0, 2),
            a_jk,
        )


def _hessian_traced_moments(
    block, lam: np.ndarray, basis: np.ndarray, w: np.ndarray, a_inv: np.ndarray, reml: bool
) -> HessianSums:
    """The fields of :func:`_hessian_traced` (``a_jk`` as its traces against ``a_inv``)
    contracted from moments over the groups: every field is ``Σ_g`` of a product of two
    entries of a group's ``S``, ``u u'``, ``G`` or ``M = G A⁻¹G'`` times entries of the
    ``E_j``, e.g. ``Σ tr(S E_j S E_k) = Σ_xyzw E_j[y,z] E_k[w,x] Σ_g S_xy S_zw``.  So the
    groups are summed first, in two BLAS products over them (``vec S`` against
    ``[vec S; vec uu'; vec M]``, ``r² × 3r²`` a group, and the gram of ``[G; u]``), and
    the ``E_j`` are applied to those (r⁴ sums) once: no (m, r, r, G) temporary, and
    ``r⁴`` products a group where the per-group form takes ``m² r²`` (m = r(r+1)/2).
    The same sums as :func:`_hessian_traced` in another order (to rounding)."""
    m, r = basis.shape[:2]
    p = a_inv.shape[0]
    r2 = r * r
    sq = np.zeros((r2, 3 * r2))  # Σ_g vec(S) [vec(S); vec(uu'); vec(M)]'
    v = np.zeros((r * (p + 1), r * (p + 1)))  # Σ_g [G; u] [G; u]', rows (x, q)
    for _, _, (_, _, s, h) in block.conditionals(lam):
        g = s.shape[-1]
        rows = np.empty((3, r, r, g))
        rows[0] = s
        gu = np.empty((r, p + 1, g))
        gu[:, :p] = h[:, :p]
        u = gu[:, p]
        u[...] = np.einsum("ajg,j->ag", h, w)
        np.multiply(u[:, None], u[None], out=rows[1])
        if reml:  # M = G A⁻¹G' a group: one product over p for all groups, then r² p
            gm_t = np.ascontiguousarray(h[:, :p].transpose(1, 0, 2)).reshape(p, r * g)
            ag = (a_inv @ gm_t).reshape(p, r, g)
            rows[2] = np.einsum("aqg,qbg->abg", h[:, :p], ag)
        else:
            rows[2] = 0.0
        flat = rows.reshape(3 * r2, g)
        sq += flat[:r2] @ flat.T
        v += gram_rows(gu.reshape(r * (p + 1), g))
    q4 = sq.reshape(r, r, 3, r, r)
    ss, su, sm = q4[:, :, 0], q4[:, :, 1], q4[:, :, 2]  # (y, z, w, x): Σ S_yz X_wx
    v4 = v.reshape(r, p + 1, r, p + 1)
    uu, gu_, gg = v4[:, p, :, p], v4[:, :p, :, p], v4[:, :p, :, :p]
    e = basis
    # Σ tr(S E_j S E_k) = Σ E_j[y,z] E_k[w,x] Σ S_xy S_zw (ss[x, y, z, w])
    tr_ss = np.einsum("jxw,kwx->jk", np.einsum("xyzw,jyz->jxw", ss, e), e)
    # Σ u'E_j S E_k u = Σ E_j[x,y] E_k[z,w] Σ S_yz u_w u_x
    u_s_u = np.einsum("yzwx,jxy,kzw->jk", su, e, e)
    u_e_u = np.einsum("xy,jxy->j", uu, e)
    g_e_u = np.einsum("xqy,jxy->jq", gu_, e)
    if not reml:
        return HessianSums(tr_ss, u_s_u, u_e_u, g_e_u, np.zeros((m, p, p)), np.zeros((m, m)))
    a_j = np.einsum("xqyt,jxy->jqt", gg, e)
    # Σ tr(E_j S E_k M) = Σ E_j[x,y] E_k[z,w] Σ S_yz M_wx; (j, k) and (k, j) are the same
    # trace (transpose, then cycle), so the symmetrized 2 G'E_j S E_k G reads as t + t'
    t = np.einsum("yzwx,jxy,kzw->jk", sm, e, e)
    return HessianSums(tr_ss, u_s_u, u_e_u, g_e_u, a_j, t + t.T)


def _hessian_traced(
    block, lam: np.ndarray, basis: np.ndarray, w: np.ndarray, a_inv: np.ndarray, reml: bool
) -> HessianSums:
    """The per-group form of :func:`hessian_contributions` with ``a_jk`` summed as its
    traces against ``a_inv`` (m, m): ``tr(G'E_j S E_k G A⁻¹) = tr(S E_k M E_j)`` with
    ``M = G A⁻¹G'`` (r × r a group), so no (p, p) block of a pair (j, k) is formed
    (``reml`` False: neither it nor ``a_j``, the REML Hessian's alone)."""
    m, r = basis.shape[:2]
    p = a_inv.shape[0]
    out = HessianSums.zeros(m, p, traced=True)
    for _, _, (_, _, s, h) in block.conditionals(lam):
        t = _GroupTerms.of(s, h, w, basis, p)
        if not reml:
            out.add_in_place(t.sums(np.zeros((m, m)), reml=False))
            continue
        g, gm, se_t = t.g, t.gm, t.se_t
        # M = G A⁻¹G' per group: one product over p for all groups, then r² p a group
        ag = (a_inv @ t.gm_t).reshape(p, r, g)  # (A⁻¹G')[q, b] per group
        mm = np.einsum("aqg,qbg->abg", gm, ag)  # (r, r, G)
        me = np.einsum("cbg,jba->jcag", mm, basis)  # (m, r, r, G): M E_j
        # Σ tr(S E_k M E_j) over (c, a, G); the pair (k, j) read as (j, k) twice is
        # 2 G'E_j S E_k G's trace (a_jk's symmetrized sum, against a symmetric A⁻¹)
        tr = me.reshape(m, r * r * g) @ se_t.T
        out.add_in_place(t.sums(tr + tr.T))
    return out


# ---------------------------------------------------------------------------
# Moment sums (once, for the starting values)
# ---------------------------------------------------------------------------

#: Largest ``r`` for which :func:`moment_contributions` is computed: its ``Σ ZZ ⊗ ZZ``
#: has ``r⁴`` entries (4096 at r = 8).
MOMENT_MAX_R = 8


@dataclass
class MomentSums:
    """Sums over groups behind moment estimates of the covariance parameters.

    They do not depend on any parameter, so one round trip after the data pass gives
    them (see :func:`dmixed.fit.start.moment_start`).

    Attributes
    ----------
    zz : ndarray (r, r)
        ``Σ_i ZZ_i``.
    zz_zz : ndarray (r, r, r, r)
        ``Σ_i ZZ_i[a,b] ZZ_i[c,d]``.
    zxy_zxy : ndarray (r, p+1, r, p+1)
        ``Σ_i ZXy_i[a,x] ZXy_i[b,y]``, so that ``Σ_i c_i c_i'`` with
        ``c_i = Z̃_i'(y_i − X_i β) = ZXy_i w`` (``w = [−β; 1]``) is a contraction with
        ``w ⊗ w``.
    n_groups : int
    zxy : ndarray (r, p+1)
        ``Σ_i ZXy_i``: on the row of a column of ones of the random design, the
        (weighted) column sums of ``[X y]`` (whether a constant lies in the span of
        ``X``: :func:`dmixed.stats.statistics.constant_in_statistics`).
    """

    zz: np.ndarray
    zz_zz: np.ndarray
    zxy_zxy: np.ndarray
    n_groups: int
    zxy: np.ndarray

    def __add__(self, other: MomentSums) -> MomentSums:
        return MomentSums(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )


def re_sums(block: StatsBlock, q: int) -> np.ndarray:
    """``Σ_i Z_i'[X y]`` (q × (p+1)): the cross-products of the first ``q`` columns of
    the random design (``exog_re``) with ``[X y]`` over all rows of a block of groups."""
    out = np.zeros((q, block.k))
    for _, zxyc in block.chunks():
        out += zxyc[:q].sum(axis=2)
    return out


def re_gram(block: StatsBlock, q: int) -> np.ndarray:
    """``Σ_i Z_i'Z_i`` (q × q): the cross-products of the first ``q`` columns of the
    random design (``exog_re``) over all rows of a block of groups."""
    out = np.zeros((q, q))
    for zzc, _ in block.chunks():
        out += zzc[:q, :q].sum(axis=2)
    return out


def moment_contributions(block, zxy=None) -> MomentSums:
    """Contributions of a block of groups to the :class:`MomentSums`.

    Three matrix products per chunk whose inner dimension runs over the groups.
    """
    block = _as_block(block, zxy)
    chunks = list(block.chunks())
    r, k = chunks[0][1].shape[:2]
    out = MomentSums(
        np.zeros((r, r)), np.zeros((r, r, r, r)), np.zeros((r, k, r, k)), 0, np.zeros((r, k))
    )
    for zzc, zxyc in chunks:
        g = zzc.shape[-1]
        zz_flat = zzc.reshape(r * r, g)
        zxy_flat = zxyc.reshape(r * k, g)
        out = out + MomentSums(
            zzc.sum(axis=2),
            gram_rows(zz_flat).reshape(r, r, r, r),
            gram_rows(zxy_flat).reshape(r, k, r, k),
            g,
            zxyc.sum(axis=2),
        )
    return out


def collapsed_moment_contributions(
    block: StatsBlock, q: int, slot_component: np.ndarray
) -> MomentSums:
    """The :class:`MomentSums` of a block of padded groups in the coordinates of one slot
    per variance component (width ``q + d``; ``slot_component``: the component of each
    padded slot after the ``q`` columns of ``exog_re``), made in ``G r²`` where
    :func:`moment_contributions` costs ``G r⁴``: the sums that
    :func:`dmixed.fit.start.moment_start` reads against the basis of that layout, where
    a component's direction is ``E_l = P_l`` (the projection on its slots ``S_l``).

    With ``A_i = Z̃_i'Z̃_i`` and ``F_i = Z̃_i'[X_i y_i]`` (padded), slot ``j = q + l``:

        zz[j, j] = Σ_i tr(P_l A_i)           zz[j, :q] = Σ_i Σ_{s∈S_l} A_i[s, :q]
        zz_zz[b, j, j, a] = zz_zz[j, a, b, j] = Σ_i Σ_{s∈S_l} A_i[b, s] A_i[s, a]
        zz_zz[j, j', j', j] = Σ_i ‖A_i[S_l, S_l']‖²_F
        zxy_zxy[j, :, j, :] = Σ_i Σ_{s∈S_l} F_i[s]' F_i[s]

    and the ``exog_re`` entries as :func:`moment_contributions` makes them (the same
    sums as :meth:`dmixed.kernels.vc_border.CrossedVC.moments`).  Entries the basis
    never reads (two components' cross terms other than those above) are zero.

    Parameters
    ----------
    block : StatsBlock
        The padded per-group statistics: ``zz`` (r, r, G) and ``zxy`` (r, p+1, G) per
        chunk, the ``q`` columns of ``exog_re`` first.
    q : int
        The number of ``exog_re`` columns.
    slot_component : numpy.ndarray
        int (r - q,): the variance component (0 … d-1) of each padded slot.

    Returns
    -------
    MomentSums
        ``zz`` (q+d, q+d), ``zz_zz`` (q+d, q+d, q+d, q+d), ``zxy_zxy``
        (q+d, p+1, q+d, p+1) and ``zxy`` (q+d, p+1), summed over the block's groups,
        with ``n_groups`` the block's groups: the fields of :func:`moment_contributions`'
        sums, in the narrow coordinates.

    Notes
    -----
    The equations of :func:`moment_contributions` read against the basis of one slot
    per component (:func:`dmixed.fit.start.collapsed_layout`); a block holding no
    chunk is not accepted (the engines hold at least one group).
    """
    comp = np.asarray(slot_component, dtype=np.int64)
    d = int(comp.max()) + 1 if comp.size else 0
    chunks = list(block.chunks())
    r, k = chunks[0][1].shape[:2]
    rr = q + d
    onehot = np.zeros((r - q, d))  # slot → component
    onehot[np.arange(comp.size), comp] = 1.0
    zz = np.zeros((rr, rr))
    z4 = np.zeros((rr, rr, rr, rr))
    zxy4 = np.zeros((rr, k, rr, k))
    zxy = np.zeros((rr, k))
    squares = np.zeros((r - q, r - q))
    slot_rows = np.zeros((r - q, q, q))
    slot_f = np.zeros((r - q, k, k))
    n_groups = 0
    for zzc, zxyc in chunks:
        n_groups += zzc.shape[-1]
        a_q, f_q = zzc[:q, :q], zxyc[:q]
        zz[:q, :q] += a_q.sum(axis=2)
        zz[q:, :q] += onehot.T @ zzc[q:, :q].sum(axis=2)
        zz[q + np.arange(d), q + np.arange(d)] += onehot.T @ np.einsum("ssg->s", zzc[q:, q:])
        z4[:q, :q, :q, :q] += np.einsum("bcg,dag->bcda", a_q, a_q)
        zxy4[:q, :, :q, :] += np.einsum("axg,byg->axby", f_q, f_q)
        zxy[:q] += f_q.sum(axis=2)
        zxy[q:] += onehot.T @ zxyc[q:].sum(axis=2)
        vc = zzc[q:, q:]
        squares += np.einsum("stg,stg->st", vc, vc)
        border = zzc[q:, :q]
        slot_rows += np.einsum("sbg,scg->sbc", border, border)
        f_vc = zxyc[q:]
        slot_f += np.einsum("sxg,syg->sxy", f_vc, f_vc)
    vc_idx = q + np.arange(d)
    bb = np.einsum("sl,sbc->lbc", onehot, slot_rows)  # (d, q, q)
    for ell in range(d):
        j = vc_idx[ell]
        z4[j, :q, :q, j] += bb[ell]
        z4[:q, j, j, :q] += bb[ell]
    zxy4[vc_idx, :, vc_idx, :] += np.einsum("sl,sxy->lxy", onehot, slot_f)
    cross = onehot.T @ squares @ onehot
    z4[vc_idx[:, None], vc_idx[None, :], vc_idx[None, :], vc_idx[:, None]] += cross
    zz[:q, q:] = zz[q:, :q].T
    return MomentSums(zz, z4, zxy4, n_groups, zxy)


def frobenius_gram(block: StatsBlock, q: int, slot_component: np.ndarray) -> np.ndarray:
    """``F_jk = Σ_i ⟨M_ij, M_ik⟩_F`` ((q + d) × (q + d)) for ``M_ia = z_ia z_ia'``, each
    of the ``q`` columns of ``exog_re`` alone (the direction of ``Ψ_aa``), then
    ``M_il = W_il W_il'`` for each variance component (``slot_component``: the
    component of each slot after the ``q`` columns): the sums of the squares of every
    group's ``Z̃_i'Z̃_i`` per pair (``⟨z z', W W'⟩ = ‖W'z‖²``), the moment equations'
    entries of those directions without their ``r⁴`` sums
    (:func:`dmixed.fit.start.check_distinct_component_values`)."""
    comp = np.asarray(slot_component, dtype=np.int64)
    d = int(comp.max()) + 1 if comp.size else 0
    r = q + comp.size
    squares = np.zeros((r, r))
    for zzc, _ in block.chunks():
        squares += np.einsum("stg,stg->st", zzc, zzc)
    onehot = np.zeros((r, q + d))
    onehot[np.arange(q), np.arange(q)] = 1.0
    onehot[q + np.arange(comp.size), q + comp] = 1.0
    return onehot.T @ squares @ onehot


# ---------------------------------------------------------------------------
# Random effects (BLUPs) and their conditional covariance
# ---------------------------------------------------------------------------


def random_effects_block(
    block, lam: np.ndarray, w: np.ndarray, zxy=None
) -> tuple[np.ndarray, np.ndarray]:
    """BLUPs and conditional covariances (relative to σ²) for a block of groups.

    ``γ̂_i = B* u_i`` with ``u_i = Z̃_i'V*_i⁻¹(y_i − X_i β)`` and
    ``Var(γ_i | y)/σ² = B* − B* S_i B* = Λ K_i⁻¹ Λ'``, which stays finite when ``B*``
    is singular (boundary fits).

    Returns
    -------
    blup : ndarray (G, r)
    cond_cov : ndarray (G, r, r)   (multiply by the scale σ̂²)

    Evaluated by the compiled kernels or by numpy as :func:`step_contributions`.
    """
    return random_effects_later(block, lam, w, zxy)()


def random_effects_later(block, lam: np.ndarray, w: np.ndarray, zxy=None):
    """:func:`random_effects_block` as a function of no arguments that computes them when
    called, by the implementation that would compute them now (compiled or numpy,
    chosen here: a later choice could differ, and so could the last bits), from
    copies of ``lam`` and ``w``: the BLUPs of a fit made when they are first read."""
    block = _as_block(block, zxy)
    lam = np.array(lam, dtype=np.float64, order="K")
    w = np.array(w, dtype=np.float64, order="K")
    r = lam.shape[0]
    if r and not block.numpy_only and compiled.backend(block.n_groups, r, "blups") == "numba":
        return lambda: compiled.random_effects(block.chunks(), lam, w, block.spans.edges)
    return lambda: _random_effects_numpy(block, lam, w)


def _random_effects_numpy(block: StatsBlock, lam: np.ndarray, w: np.ndarray):
    """:func:`random_effects_block` by numpy: from the block's kept conditionals at
    ``lam`` where it has them, else from ``P`` and ``H`` alone (neither kept)."""
    r = lam.shape[0]
    bstar = lam @ lam.T
    chunks = block.kept_conditionals(lam)
    if chunks is None:
        chunks = (
            (
                zzc,
                zxyc,
                conditional(zzc, zxyc, lam, blups_only=True, one=one, centred=centred, subset=sub),
            )
            for (zzc, zxyc), (one, centred, sub) in zip(block.chunks(), block._forms(), strict=True)
        )
    parts = [
        ((bstar @ np.einsum("ajg,j->ag", h, w)).T, np.moveaxis(p_mat, -1, 0))
        for _, _, (p_mat, _, _, h) in chunks
    ]
    if len(parts) == 1:  # one chunk (a small block): its arrays copied as they are
        # always copied: where one axis is of length one (one group, or r = 1) the
        # moved axes of P are contiguous, and P may be the block's kept conditionals'
        blup, cov = parts[0]
        return np.array(blup, order="C"), np.array(cov, order="C")
    blups = [np.zeros((0, r)), *(blup for blup, _ in parts)]
    covs = [np.zeros((0, r, r)), *(cov for _, cov in parts)]
    return np.concatenate(blups), np.concatenate(covs)
