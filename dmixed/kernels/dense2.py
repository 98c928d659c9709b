"""The step and Hessian sums of two random-effect coordinates (``r = 2``) in a few
whole-block products, from per-group arrays made once per fit.

For ``r = 2`` every per-group value of :func:`~dmixed.kernels.conditionals.conditional`
is a rational function of ``B = ΛΛ'`` with one denominator (its ``_conditional_2``)::

    d = 1 + b00 u00 + 2 b01 u01 + b11 u11 + det(B) det(U)
    P = (B + det(B) adj(U)) / d,   S = (U + det(U) adj(B)) / d,
    H = (F + adj(B) adj(U) F) / d,   log|K| = log d

so that ``d`` is one product of its five coefficients with the fixed rows ``[1, u00,
u01, u11, det(U)]``; ``Σ S`` (its numerators linear in those rows) and ``Σ ZXy'P ZXy =
Σ (b00 T0 + b01 T1 + b11 T2 + det(B) T3) / d`` are, in floats, the coefficients times
one product of ``1/d`` with those rows and the fixed upper triangles of ``T0 = F0'F0``,
``T1 = F0'F1 + F1'F0``, ``T2 = F1'F1`` and ``T3 = F'adj(U)F``; and ``H`` one
(2 × 4) × (4 × kG) product with the fixed ``[F; adj(U)F]``, whose rows at ``w`` with
those of ``S`` give the score's and the Hessian's sums in one more product each
(:class:`Dense2Step`): some fifteen calls of numpy per evaluation where the per-chunk
path makes some fifty, for the same formulas (the sums over groups in another order:
they agree with :func:`~dmixed.kernels.groups.step_contributions` to rounding).  The fixed rows hold
:func:`fixed_numbers` numbers per group.  Where the C extension runs
(:mod:`~dmixed.kernels.native`), it makes each group's values of the same formulas as it
sums them, one loop over the groups a call, and keeps no fixed rows.

Notation as in :mod:`dmixed.kernels`; nothing here knows the optimizer.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from . import native
from .conditionals import gram_rows
from .groups import HessianSums
from .hessian_moments import HessianMoments

__all__ = ["Dense2Statistics", "Dense2Step", "DenseStep", "fixed_numbers", "sharing_design"]


@dataclass
class DenseStep:
    """The sums of one step at ``Λ`` over a block of ``r = 1`` coordinates
    (:class:`~dmixed.kernels.dense1.Dense1Step`; :class:`Dense2Step` makes those of
    ``r = 2`` in two stages).

    Attributes
    ----------
    logdet : float
        ``Σ_i log|K_i|``.
    m : ndarray (k, k)
        ``Σ_i ZXy_i'P_iZXy_i`` (symmetric).
    s : ndarray (r, r)
        ``Σ_i S_i``.
    gram : ndarray (r k, r k)
        ``Σ_i h_i h_i'`` of the rows ``h_i = vec(H_i)`` (``H_i[a, x]`` at ``a k + x``):
        ``t_re[a, b] = gram[a k:(a+1) k, b k:(b+1) k]`` of :class:`~dmixed.kernels.StepSums`.
    h : tuple of ndarray (r k, G_c)
        The rows ``H_i[a, x]`` over the groups of each chunk (what the Hessian sums
        read).
    s_pairs : tuple of ndarray (r (r + 1) / 2, G_c)
        ``S_i`` at (0, 0), and for ``r = 2`` (1, 0), (1, 1), over the groups of each chunk.
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    gram: np.ndarray
    h: tuple[np.ndarray, ...]
    s_pairs: tuple[np.ndarray, ...]

    def hessian(self, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at this step's ``Λ``
        for the basis ``E_j`` (m, r, r) and ``w = [−β; 1]``, from the moments of
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` added chunk by chunk."""
        moments = HessianMoments(self.s.shape[0], self.m.shape[0])
        for h, s_pairs in zip(self.h, self.s_pairs, strict=True):
            moments.add_pairs(s_pairs, h, w)  # u_i = H_i w in place of y's column
        return HessianSums(*moments.contract(basis))


@dataclass
class Dense2Step:
    """The sums of one evaluation at ``Λ`` over a block of ``r = 2`` coordinates
    (:meth:`Dense2Statistics.step`), in two stages: what needs ``Λ`` alone (ℓ's
    ``Σ log|K_i|`` and ``Σ ZXy'P ZXy``, ``Σ S``), then what needs ``w = [−β̂; 1]`` too
    (:meth:`residual_rows`: the per-group rows of the score and the Hessian).

    Attributes
    ----------
    logdet : float
        ``Σ_i log|K_i|``.
    m : ndarray (k, k)
        ``Σ_i ZXy_i'P_iZXy_i`` (exactly symmetric).
    s : ndarray (2, 2)
        ``Σ_i S_i``.
    b : tuple of float
        ``(b00, b01, b11, det(B))`` of ``B = ΛΛ'``.
    inv_d : tuple of ndarray (G_c,)
        ``1/d_i`` over the groups of each chunk.
    rows : tuple of ndarray (2 k + 3, G_c) or None
        Per chunk, at ``w`` (:meth:`residual_rows`): ``v_i = [G_i, u_i]`` entry-major
        (``H_i[a, x]`` at ``a k + x``, ``u_i = H_i w`` in place of ``y``'s column) over
        ``S_i`` at (0, 0), (1, 0), (1, 1).
    va : ndarray (2 k + 3, 2 k + 3) or None
        ``Σ rows rows'``: ``V`` and the Hessian moments' ``A`` as its diagonal blocks
        (:mod:`~dmixed.kernels.hessian_moments`).
    """

    logdet: float
    m: np.ndarray
    s: np.ndarray
    b: tuple[float, float, float, float]
    inv_d: tuple[np.ndarray, ...]
    chunks: tuple[_Dense2Chunk, ...] = field(repr=False)
    rows: tuple[np.ndarray, ...] | None = None
    va: np.ndarray | None = None
    w: np.ndarray | None = field(default=None, repr=False)
    _gram: np.ndarray | None = field(default=None, repr=False)

    def residual_rows(self, w: np.ndarray) -> np.ndarray:
        """``va`` at ``w = [−β; 1]`` (made once per ``w``: the score and the Hessian at
        one point read the same rows)."""
        known = self.w
        if self.va is not None and known is not None and (w is known or np.array_equal(w, known)):
            return self.va
        made = [
            c.residual(inv_d, self.b, w) for c, inv_d in zip(self.chunks, self.inv_d, strict=True)
        ]
        va = made[0][1]
        for _, more in made[1:]:
            va = va + more
        self.rows, self.va, self.w = tuple(rows for rows, _ in made), va, w
        return va

    @property
    def gram(self) -> np.ndarray:
        """``Σ_i h_i h_i'`` (2 k, 2 k) of the rows ``h_i = vec(H_i)`` (``H_i[a, x]`` at
        ``a k + x``): ``t_re[a, b] = gram[a k:(a+1) k, b k:(b+1) k]`` of
        :class:`~dmixed.kernels.StepSums` (made when first asked for)."""
        if self._gram is None:
            out = None
            for chunk, inv_d in zip(self.chunks, self.inv_d, strict=True):
                more = chunk.h_gram(inv_d, self.b)
                out = more if out is None else out + more
            self._gram = out
        assert self._gram is not None
        return self._gram

    def moments(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At ``w``: ``va`` and the Hessian moments' ``C`` (the product of the rows
        ``v S`` with ``v``), the chunks' sums added in order
        (:func:`~dmixed.kernels.hessian_moments.full_sums` reads them)."""
        va = self.residual_rows(w)
        assert self.rows is not None
        c = None
        for chunk, rows in zip(self.chunks, self.rows, strict=True):
            more = chunk.moment_c(rows)
            c = more if c is None else c + more
        assert c is not None
        return va, c

    def hessian(self, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at this step's ``Λ``
        for the basis ``E_j`` (m, 2, 2) and ``w = [−β; 1]``, from the moments of
        :class:`~dmixed.kernels.hessian_moments.HessianMoments` added chunk by chunk."""
        self.residual_rows(w)
        assert self.rows is not None
        k = self.m.shape[0]
        moments = HessianMoments(2, k)
        for rows in self.rows:
            moments.add_pairs(rows[2 * k :], rows[: 2 * k])
        return HessianSums(*moments.contract(basis))


class Dense2Statistics:
    """The fixed per-group rows of a block of groups with ``r = 2``, chunk by chunk.

    Parameters
    ----------
    zz : ndarray (2, 2, G)
        Entry-major ``Z̃_i'Z̃_i`` (a chunk of :class:`~dmixed.kernels.StatsBlock`).
    zxy : ndarray (2, k, G)
        Entry-major ``Z̃_i'[X_i, y_i]``.

    The sums run in C where :func:`~dmixed.kernels.native.extension` gives the extension
    and ``k`` is at most :data:`~dmixed.kernels.native.MAX_K` (chosen once here, for
    every chunk), else in numpy.

    Raises
    ------
    ValueError
        ``DMIXED_NATIVE`` is set to what :func:`~dmixed.kernels.native.forced` refuses.
    """

    def __init__(self, zz: np.ndarray, zxy: np.ndarray) -> None:
        ext = native.extension()
        self._ext = ext if zxy.shape[1] <= native.MAX_K else None
        self._gather_ext = ext
        self._chunks = [_Dense2Chunk(zz, zxy, self._ext)]
        self.k = zxy.shape[1]
        self.n_groups = zxy.shape[2]

    @property
    def uses_extension(self) -> bool:
        """Whether the extension (:mod:`~dmixed.kernels.native`) makes the sums."""
        return self._ext is not None

    @property
    def extension(self) -> ModuleType | None:
        """The extension that makes the sums, as chosen once at construction (None:
        numpy): what calls it on these sums' results calls this one, not a second
        reading of ``DMIXED_NATIVE``, which may have changed since."""
        return self._ext

    @property
    def gather_extension(self) -> ModuleType | None:
        """The extension as chosen at construction whatever ``k`` (None: numpy): what
        sums the Hessian moments' gathers
        (:func:`~dmixed.kernels.hessian_moments.full_sums`) where :attr:`extension` is
        None for a ``k`` over :data:`~dmixed.kernels.native.MAX_K`."""
        return self._gather_ext

    @classmethod
    def of_chunks(cls, chunks) -> Dense2Statistics:
        """The rows of every chunk ``(zz (2, 2, G_c), zxy (2, k, G_c))`` of a block
        (:meth:`~dmixed.kernels.StatsBlock.chunks`): each step's sums are the chunks'
        sums added in their order, as the per-chunk kernels add theirs."""
        chunks = list(chunks)
        out = cls(*chunks[0])
        out._chunks += [_Dense2Chunk(zz, zxy, out._ext) for zz, zxy in chunks[1:]]
        out.n_groups = sum(c.n_groups for c in out._chunks)
        return out

    def fused(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(zz, zxy)`` of the block as the extension reads them where it makes the
        sums and the block is one chunk (its ``lean_evaluate`` makes a whole evaluation
        of them in one call: :meth:`made_step` takes its sums), else None."""
        if self._ext is None or len(self._chunks) != 1:
            return None
        chunk = self._chunks[0]
        return chunk._zz, chunk._zxy

    def made_step(
        self,
        logdet: float,
        m: np.ndarray,
        s: np.ndarray,
        b: tuple[float, float, float, float],
        inv_d: np.ndarray,
        rows: np.ndarray,
        va: np.ndarray,
        w: np.ndarray,
    ) -> Dense2Step:
        """The :class:`Dense2Step` of sums made at once for the one chunk of :meth:`fused`
        (:meth:`step` and :meth:`Dense2Step.residual_rows` at ``w``, as the fields of
        :class:`Dense2Step` name them)."""
        return Dense2Step(logdet, m, s, b, (inv_d,), tuple(self._chunks), (rows,), va, w)

    def value(self, lam: np.ndarray) -> tuple[float, np.ndarray]:
        """``(Σ_i log|K_i|, Σ_i ZXy_i'P_iZXy_i)`` at ``lam``: what ℓ alone needs (the
        numbers of :meth:`step`)."""
        step = self.step(lam)
        return step.logdet, step.m

    def step(self, lam: np.ndarray) -> Dense2Step:
        """The sums at the 2 × 2 factor ``lam`` (``B = ΛΛ'``, ``det(B) = det(Λ)²``) that
        need ``Λ`` alone: ``d`` one product of its coefficients with the rows ``[1, u00,
        u01, u11, det(U)]``, then one product of ``1/d`` with those rows and the fixed
        upper triangles, whose sums are ``Σ S`` and ``Σ ZXy'P ZXy`` in floats and one
        product of the weights ``[b00, b01, b11, det(B)]``."""
        (l00, l01), (l10, l11) = lam.tolist()
        b00 = l00 * l00 + l01 * l01
        b01 = l00 * l10 + l01 * l11
        b11 = l10 * l10 + l11 * l11
        det_l = l00 * l11 - l01 * l10
        det_b = det_l * det_l
        d_coef = (1.0, b00, 2.0 * b01, b11, det_b)
        logdet, inv_ds, sums = 0.0, [], None
        for chunk in self._chunks:
            inv_d, more, more_sums = chunk.first_sums(d_coef)
            logdet += more
            inv_ds.append(inv_d)
            sums = more_sums if sums is None else sums + more_sums
        assert sums is not None
        # Σ S·d's numerators over d: u00 + det(U) b11, u01 − det(U) b01, u11 + det(U) b00
        _, z00, z01, z11, z_det = sums[:5].tolist()
        s01 = z01 - b01 * z_det
        s = np.array([[z00 + b11 * z_det, s01], [s01, z11 + b00 * z_det]])
        # d P = B + det(B) adj(U): Σ ZXy'P ZXy = Σ (b00 T0 + b01 T1 + b11 T2 + det(B) T3)/d
        weights = np.array([b00, b01, b11, det_b])
        square = self._chunks[0].square
        m = (weights @ sums[5:].reshape(4, -1)).take(square)  # exactly symmetric
        return Dense2Step(logdet, m, s, (b00, b01, b11, det_b), tuple(inv_ds), tuple(self._chunks))

    def hessian(self, step: Dense2Step, basis: np.ndarray, w: np.ndarray) -> HessianSums:
        """The Hessian sums (:class:`~dmixed.kernels.HessianSums`) at the step's ``Λ``
        for the basis ``E_j`` (m, 2, 2) and ``w = [−β; 1]``
        (:meth:`Dense2Step.hessian`)."""
        return step.hessian(basis, w)


def fixed_numbers(k: int) -> int:
    """The numbers :class:`Dense2Statistics` holds per group for ``k = p + 1``:
    ``[1, u00, u01, u11, det(U)]``, ``[F; adj(U)F]`` and four upper triangles."""
    return 5 + 4 * k + 2 * k * (k + 1)


def _residual_coefficients(
    b00: float, b01: float, b11: float, det_b: float
) -> tuple[np.ndarray, np.ndarray]:
    """At ``B = ΛΛ'`` (in floats): the ``adj(B)`` rows of ``H``'s numerators (2 × 4) and
    the (3 × 5) rows that map ``[1, u00, u01, u11, det(U)]`` to the numerators of ``S``
    at (0, 0), (1, 0), (1, 1)."""
    # H = (F + adj(B) adj(U) F) / d: adj(B) = [[b11, −b01], [−b01, b00]]
    mix = np.array([[1.0, 0.0, b11, -b01], [0.0, 1.0, -b01, b00]])
    coef = np.array(
        [
            [0.0, 1.0, 0.0, 0.0, b11],  # S00·d = u00 + det(U) b11
            [0.0, 0.0, 1.0, 0.0, -b01],  # S01·d = u01 − det(U) b01
            [0.0, 0.0, 0.0, 1.0, b00],  # S11·d = u11 + det(U) b00
        ]
    )
    return mix, coef


def _moment_c(rows: np.ndarray) -> np.ndarray:
    """The Hessian moments' ``C`` of one chunk's rows ``[v; S pairs]``
    (:attr:`Dense2Step.rows`): the product of the rows ``v S`` (every ``v_ax S_bc`` in
    ``C``'s row order) with ``v``."""
    rk = rows.shape[0] - 3
    g = rows.shape[1]
    v = rows[:rk]
    vs = np.empty((rk, 3, g))
    np.multiply(v[:, None], rows[rk:][None], out=vs)
    return vs.reshape(3 * rk, g) @ v.T


@functools.lru_cache(maxsize=16)
def _triangle(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows and columns of the upper triangle of a ``k × k`` matrix
    (``np.triu_indices``) and the ``k × k`` positions of each square entry in it
    (exactly symmetric), made once per ``k`` (read-only)."""
    rows, cols = np.triu_indices(k)
    square = np.empty((k, k), dtype=np.intp)
    square[rows, cols] = square[cols, rows] = np.arange(rows.size)
    for a in (rows, cols, square):
        a.flags.writeable = False
    return rows, cols, square


@dataclass(eq=False)
class _SharedRows:
    """The rows of one design in a :func:`sharing_design` scope, held by every chunk of
    that design made there; ``owner`` is the chunk whose ``y`` entries they hold now."""

    rows: np.ndarray
    fa: np.ndarray
    owner: _Dense2Chunk | None


#: the rows of each design made in a :func:`sharing_design` scope, by the design (None:
#: outside such a scope, nothing shared)
_SHARED: ContextVar[dict[tuple, _SharedRows] | None] = ContextVar(
    "dmixed_dense2_shared_design", default=None
)


@contextlib.contextmanager
def sharing_design() -> Iterator[None]:
    """Within this scope the numpy rows of :class:`Dense2Statistics` are made once per
    design: the chunks whose ``Z̃'Z̃`` and ``Z̃'X`` are equal hold one array of rows, and
    each makes only its rows of ``y``'s column (``[F; adj(U)F]`` at ``y`` and the upper
    triangles' entries with ``y``: ``k`` of ``k (k + 1) / 2``), with the same operations
    on the same numbers as the whole rows (the same bits), and writes them there before
    it reads them when another chunk wrote its own since.

    For refits of responses drawn over one design (the parametric bootstrap's
    replicates), whose rows otherwise cost ``O(k² G)`` each to make and hold.  The rows
    are let go when the outermost scope ends (a design's chunks: up to
    :data:`~dmixed.fit.lean.LEAN_ROWS_BYTES`).

    Yields
    ------
    None
        Statistics made inside the scope share their rows; nested scopes use the
        outermost one's.

    Notes
    -----
    The scope is a :class:`contextvars.ContextVar`: each thread or task has its own, and
    the chunks sharing rows must be used from one thread (a chunk writes its own ``y``
    entries into the shared rows before it reads them)."""
    if _SHARED.get() is not None:  # within an outer scope: its rows
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


class _Dense2Chunk:
    """The fixed rows of one chunk of groups (:class:`Dense2Statistics`), and its sums
    by the extension ``ext`` (:mod:`~dmixed.kernels.native`), or numpy where None."""

    _rows: np.ndarray  # numpy's: [1, u00, u01, u11, det(U)] over T0..T3's triangles
    _urow: np.ndarray  # its first five rows
    _fa: np.ndarray  # [F; adj(U)F] (4, k G)

    def __init__(self, zz: np.ndarray, zxy: np.ndarray, ext: ModuleType | None = None) -> None:
        k, g = zxy.shape[1:]
        self.k = k
        self.n_groups = g
        self._ext = ext
        rows, cols, self.square = _triangle(k)
        if ext is not None:
            # the extension makes each group's rows as it sums them: none kept
            self._zz, self._zxy = _contiguous(zz), _contiguous(zxy)
            return
        #: the rows shared in a sharing_design scope, where this chunk's y entries lie
        #: in them, and those entries (None: rows of its own)
        self._shared: _SharedRows | None = None
        self._at_y = np.flatnonzero(cols == k - 1)
        self._own_y: tuple[np.ndarray, np.ndarray] | None = None
        scope = _SHARED.get()
        key = None
        if scope is not None:
            key = (zz.shape, zxy.shape, zz.tobytes(), zxy[:, :-1].tobytes())
            known = scope.get(key)
            if known is not None:  # the same design: its rows, and y's column's own
                self._rows, self._fa = known.rows, known.fa
                self._urow = self._rows[:5]
                self._own_y = self._fill(zz, zxy, rows[self._at_y], cols[self._at_y], k - 1)
                self._shared = known
                return
        # [1, u00, u01, u11, det(U)] (d and the numerators of S) over the upper
        # triangles of T0..T3: one product with 1/d sums them all
        self._rows = np.empty((5 + 4 * rows.size, g))
        urow = self._urow = self._rows[:5]
        u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
        urow[0] = 1.0
        urow[1] = u00
        urow[2] = u01
        urow[3] = u11
        det_u = np.multiply(u00, u11, out=urow[4])
        det_u -= u01 * u01
        np.maximum(det_u, 0.0, out=det_u)  # as _conditional_2 clips it
        self._fa = np.empty((4, k * g))
        made, fa = self._fill(
            zz, zxy, rows, cols, None, self._rows[5:].reshape(4, -1, g), self._fa.reshape(4, k, g)
        )
        if scope is not None and key is not None:
            self._shared = scope[key] = _SharedRows(self._rows, self._fa, self)
            self._own_y = (made[:, self._at_y].copy(), fa[:, -1].copy())

    def _fill(
        self,
        zz: np.ndarray,
        zxy: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        column: int | None,
        made: np.ndarray | None = None,
        fa: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The upper triangles' entries ``(rows, cols)`` of ``T0..T3`` (4, entries, G) and
        ``[F; adj(U)F]`` (4, k, G), or its ``column`` alone (4, G) where not None (in
        ``made`` and ``fa`` where given)."""
        u00, u01, u11 = zz[0, 0], zz[0, 1], zz[1, 1]
        f = zxy if column is None else zxy[:, column]
        # [F0; F1; adj(U)F row 0; row 1]: H's numerators in one product
        if fa is None:
            fa = np.empty((4, *f.shape[1:]))
        fa[:2] = f
        np.multiply(u11, f[0], out=fa[2])
        fa[2] -= u01 * f[1]
        np.multiply(u00, f[1], out=fa[3])
        fa[3] -= u01 * f[0]
        # d P = B + det(B) adj(U), so d F'PF = b00 T0 + b01 T1 + b11 T2 + det(B) T3
        # with the fixed T0 = F0'F0, T1 = F0'F1 + F1'F0, T2 = F1'F1,
        # T3 = F'adj(U)F = u11 T0 − u01 T1 + u00 T2 (their upper triangles, per group)
        at_rows = zxy.take(rows, axis=1)  # (2, entries, G)
        at_cols = zxy.take(cols, axis=1)
        if made is None:
            made = np.empty((4, *at_rows.shape[1:]))
        t0 = np.multiply(at_rows[0], at_cols[0], out=made[0])
        t1 = np.multiply(at_rows[0], at_cols[1], out=made[1])
        t1 += at_rows[1] * at_cols[0]
        t2 = np.multiply(at_rows[1], at_cols[1], out=made[2])
        t3 = np.multiply(u11, t0, out=made[3])
        t3 -= u01 * t1
        t3 += u00 * t2
        return made, fa

    def _claim(self) -> None:
        """Write this chunk's ``y`` entries into the rows it shares
        (:func:`sharing_design`) where another chunk's lie there."""
        shared = self._shared
        if shared is None or shared.owner is self:
            return
        assert self._own_y is not None
        made, fa_y = self._own_y
        k, g = self.k, self.n_groups
        # No owner while the entries are written: an interrupted write leaves rows that
        # every chunk rewrites before it reads them.
        shared.owner = None
        self._rows[5:].reshape(4, -1, g)[:, self._at_y] = made
        self._fa.reshape(4, k, g)[:, k - 1] = fa_y
        shared.owner = self

    def first_sums(
        self, d_coef: tuple[float, float, float, float, float]
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """``(1/d, Σ log d, Σ rows/d)`` over the groups at ``d``'s coefficients
        ``d_coef`` ``[1, b00, 2 b01, b11, det(B)]`` (:meth:`Dense2Statistics.step`)."""
        ext = self._ext
        if ext is not None:
            inv_d = np.empty(self.n_groups)
            sums = np.empty(5 + 2 * self.k * (self.k + 1))
            logdet = ext.dense2_first(
                self._zz, self._zxy, self.k, self.n_groups, *d_coef, inv_d, sums
            )
            return inv_d, logdet, sums
        self._claim()
        d = np.array(d_coef) @ self._urow
        inv_d = 1.0 / d
        return inv_d, float(np.log(d).sum()), self._rows @ inv_d

    def h_gram(self, inv_d: np.ndarray, b: tuple[float, float, float, float]) -> np.ndarray:
        """``Σ_i h_i h_i'`` (2 k, 2 k) of the rows of :meth:`h_rows` at ``B``'s
        ``b = (b00, b01, b11, det(B))``."""
        ext = self._ext
        if ext is None:
            mix, _ = _residual_coefficients(*b)
            return gram_rows(self.h_rows(inv_d, mix))
        out = np.empty((2 * self.k, 2 * self.k))
        ext.dense2_gram(self._zz, self._zxy, inv_d, self.k, self.n_groups, *b[:3], out)
        return out

    def h_rows(self, inv_d: np.ndarray, mix: np.ndarray) -> np.ndarray:
        """The rows ``H_i[a, x]`` (2 k, G) at the ``adj(B)`` rows ``mix``."""
        self._claim()
        h = (mix @ self._fa).reshape(2 * self.k, self.n_groups)
        h *= inv_d
        return h

    def residual(
        self, inv_d: np.ndarray, b: tuple[float, float, float, float], w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`residual_rows` at ``B``'s ``b = (b00, b01, b11, det(B))`` and the
        product of those rows with themselves (their share of :attr:`Dense2Step.va`)."""
        ext = self._ext
        if ext is None:
            mix, coef = _residual_coefficients(*b)
            rows = self.residual_rows(inv_d, mix, coef, w)
            return rows, gram_rows(rows)
        k, g = self.k, self.n_groups
        n = 2 * k + 3
        rows, va = np.empty((n, g)), np.empty((n, n))
        w = _contiguous(w)
        ext.dense2_residual(self._zz, self._zxy, inv_d, k, g, b[0], b[1], b[2], w, rows, va)
        return rows, va

    def moment_c(self, rows: np.ndarray) -> np.ndarray:
        """The Hessian moments' ``C`` of this chunk's rows ``[v; S pairs]``
        (:func:`_moment_c`)."""
        ext = self._ext
        if ext is None:
            return _moment_c(rows)
        rk = 2 * self.k
        c = np.empty((3 * rk, rk))
        ext.dense2_moment_c(rows, self.k, self.n_groups, c)
        return c

    def residual_rows(
        self, inv_d: np.ndarray, mix: np.ndarray, coef: np.ndarray, w: np.ndarray
    ) -> np.ndarray:
        """:attr:`Dense2Step.rows` of this chunk: ``[v; S pairs]`` (2 k + 3, G) at the
        ``adj(B)`` rows ``mix``, the rows ``coef`` of ``S``'s numerators and
        ``w = [−β; 1]``."""
        self._claim()
        k, g = self.k, self.n_groups
        out = np.empty((2 * k + 3, g))
        np.matmul(mix, self._fa, out=out[: 2 * k].reshape(2, k * g))
        np.matmul(coef, self._urow, out=out[2 * k :])
        out *= inv_d
        v = out[: 2 * k].reshape(2, k, g)
        v[:, -1] = np.matmul(w, v)  # u_i = H_i w in place of y's column
        return out


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` as the extension reads it: C-contiguous float64 (``a`` itself where it is)."""
    return np.ascontiguousarray(a, dtype=np.float64)
