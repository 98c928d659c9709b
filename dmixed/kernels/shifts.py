"""Per-group sums of a random design about a shift of each group's own, kept beside
partial statistics that are added by key.

A group whose random slope is nearly constant within it (timestamps seconds apart,
next to an intercept) loses every digit of ``Z̃_i'Z̃_i``'s spread in the plain sums
(:func:`~dmixed.kernels.conditionals.lossy_groups`).  Its sums about its own first
row's values ``t`` keep them: ``Σδ``, ``δ'δ`` and ``δ'a`` with ``δ = z − t`` for every
slope and the columns ``a`` of ``[X y]`` that are neither ones nor slopes, and with
them the centred sums (:func:`~dmixed.kernels.conditionals.centred_from_shifted`).
Parts of one group summed about different shifts are moved to one before they are
added (:func:`merge_parts`): ``Σ(z − t) = Σ(z − t_p) + n_p δ_p``, ``Σ(z − t)(v − s) =
Σ(z − t_p)(v − s_p) + δ_z Σ(v − s_p) + Σ(z − t_p) δ_v + n_p δ_z δ_v`` and ``Σ(z − t)a
= Σ(z − t_p)a + δ Σa`` (``δ_p = t_p − t``): every term of the size of the group's
spread.  With prior weights every sum is weighted (``Σw(z − t)``, ``Σw δδ'``, ``Σw δa``,
``Σw a``) and the part's weight sum ``W_p = Σw`` takes ``n_p``'s place in the moves
(without weights it is ``n_p``).  The shifts are the rows' own values and the slopes'
sums are unscaled (the same in every column map); ``a`` is in its map's units but for
its scale, as the statistics' sums are (:meth:`ShiftPart.in_map` takes them to another
map's, :meth:`ShiftLayout.centred_inputs` to the map's units).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ShiftLayout", "ShiftPart", "merge_parts", "merge_parts_at", "part_of_rows"]


@dataclass(frozen=True)
class ShiftLayout:
    """What a :class:`ShiftPart`'s rows are.

    ``z``: the slopes (columns of ``Z̃`` not the intercept); ``dgram``: the pairs
    ``(b, c)``, ``c ≤ b``, of slopes whose ``Σ δ_b δ_c`` are kept; ``dxy``: the pairs
    ``(b, j)`` of a slope and a column ``j`` of ``[X y]`` (``others``: those neither
    ones nor a slope) whose ``Σ δ_b a_j`` are kept; ``shared[j]``: the column of
    ``Z̃`` that column ``j`` of ``[X y]`` is (−1: none); ``e``: the intercept's column
    of ``Z̃``; the map's shifts ``z_shift`` (r,) and ``x_shift`` (k,), and its
    factors ``z_factor`` (r,) and ``x_factor`` (k,) (powers of two) from the sums'
    units to the map's."""

    z: tuple
    others: tuple
    shared: tuple
    e: int
    z_shift: tuple
    x_shift: tuple
    z_factor: tuple
    x_factor: tuple

    @property
    def dgram(self) -> tuple:
        return tuple((b, c) for b in range(len(self.z)) for c in range(b + 1))

    @property
    def dxy(self) -> tuple:
        return tuple((b, j) for b in range(len(self.z)) for j in self.others)

    def centred_inputs(self, part: ShiftPart, r: int, k: int) -> tuple:
        """``(t (r, G), e'δ (r, G), δ'δ (r, r, G), δ'[X y] (r, k, G))`` of ``part`` in
        the map's units, as :func:`~dmixed.kernels.conditionals.centred_from_shifted`
        takes them (the intercept's shift 1, its sums 0)."""
        n = part.keys.size
        zf = np.array([self.z_factor[a] for a in self.z])
        xf = np.asarray(self.x_factor)
        out_t = np.zeros((r, n))
        out_t[self.e] = 1.0
        out_d = np.zeros((r, n))
        out_g = np.zeros((r, r, n))
        out_x = np.zeros((r, k, n))
        for b, a in enumerate(self.z):
            out_t[a] = (part.first[b] - self.z_shift[a]) * zf[b]
            out_d[a] = part.dsum[b] * zf[b]
        for i, (b, c) in enumerate(self.dgram):
            a, a2 = self.z[b], self.z[c]
            out_g[a, a2] = out_g[a2, a] = part.dgram[i] * zf[b] * zf[c]
        for i, (b, j) in enumerate(self.dxy):
            out_x[self.z[b], j] = part.dxy[i] * zf[b] * xf[j]
        return out_t, out_d, out_g, out_x


@dataclass
class ShiftPart:
    """The sums about each group's shift of some groups (:class:`ShiftLayout`), one
    column per group: ``keys`` (G,), ``count`` (G,) their rows, ``wsum`` (G,) their
    weights' sum (the rows' count without weights), ``first`` (S, G) the shifts,
    ``dsum`` (S, G), ``dgram`` (len(layout.dgram), G), ``dxy`` (len(layout.dxy), G) and
    ``xsum`` (len(layout.others), G) the plain ``Σ a_j`` (each sum weighted where the
    rows are)."""

    keys: np.ndarray
    count: np.ndarray
    wsum: np.ndarray
    first: np.ndarray
    dsum: np.ndarray
    dgram: np.ndarray
    dxy: np.ndarray
    xsum: np.ndarray
    layout: ShiftLayout

    def take(self, pick) -> ShiftPart:
        """The groups ``pick`` (positions or a mask), in that order."""

        def cut(a: np.ndarray) -> np.ndarray:
            return a[..., pick]

        return ShiftPart(
            cut(self.keys),
            cut(self.count),
            cut(self.wsum),
            cut(self.first),
            cut(self.dsum),
            cut(self.dgram),
            cut(self.dxy),
            cut(self.xsum),
            self.layout,
        )

    def in_map(self, std) -> ShiftPart:
        """The part in the column map ``std``'s units: ``Σ δa`` and ``Σ a`` of ``a``
        about the other map's shift (``a + Δ``: ``Σ δ(a + Δ) = Σ δa + Δ Σ δ``,
        ``Σ (a + Δ) = Σ a + Δ W``), the map's factors; the shifts and the slopes' sums
        are the same in every map."""
        layout = layout_in(self.layout, std)
        delta = np.asarray(self.layout.x_shift) - np.asarray(layout.x_shift)
        others = {j: i for i, j in enumerate(layout.others)}
        dxy = self.dxy.copy()
        for i, (b, j) in enumerate(layout.dxy):
            dxy[i] += delta[j] * self.dsum[b]
        xsum = self.xsum + np.array([delta[j] for j in others])[:, None] * self.wsum
        return ShiftPart(
            self.keys, self.count, self.wsum, self.first, self.dsum, self.dgram, dxy, xsum, layout
        )

    def of_keys(self, keys: np.ndarray) -> ShiftPart | None:
        """The groups ``keys`` in that order; None where some are not held."""
        pos = _index(self.keys).get_indexer(_index(np.asarray(keys)))
        if (pos < 0).any():
            return None
        return self.take(pos)


def _index(keys: np.ndarray) -> pd.Index:
    """``keys`` as an Index; object keys stay objects (pandas 3 would infer a text dtype
    for Python strings and copy them to Arrow and back)."""
    return pd.Index(keys, dtype=object) if keys.dtype == object else pd.Index(keys)


def part_of_rows(
    keys: np.ndarray,
    codes: np.ndarray,
    zraw: list,
    xcols: list,
    layout: ShiftLayout,
    weights: np.ndarray | None = None,
) -> ShiftPart:
    """The :class:`ShiftPart` of rows (``codes`` (n,) their groups' positions in
    ``keys``, every group with a row; ``zraw`` the columns of ``Z̃`` as they are,
    unweighted, ``xcols`` those of ``[X y]`` less the map's shifts, unweighted;
    ``weights`` (n,) the rows' prior weights as the statistics sum them, or None):
    each group's shift its first row's values.  One pass of ``bincount`` per sum.
    Weights of 1 give the unweighted sums bit for bit (each product's first factor
    the weight)."""
    codes = np.asarray(codes, dtype=np.int64)
    n_groups = len(keys)
    n = codes.size
    # each group's first row by a scatter of the rows' positions (O(n), no sort)
    first_row = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(n, dtype=np.int64))

    def sums(values) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=n_groups)

    def column(col) -> np.ndarray:
        return np.broadcast_to(np.asarray(col, dtype=np.float64), (n,))

    zs = [column(zraw[a]) for a in layout.z]
    first = np.array([z[first_row] for z in zs]).reshape(len(zs), n_groups)
    dz = [z - first[b][codes] for b, z in enumerate(zs)]
    xs = {j: column(xcols[j]) for j in layout.others}
    count = np.bincount(codes, minlength=n_groups).astype(np.float64)
    if weights is None:
        wsum = count
        wz = dz
    else:
        w = column(weights)
        wsum = sums(w)
        wz = [w * d for d in dz]  # w δ: each weighted sum's first factors
    return ShiftPart(
        np.asarray(keys),
        count,
        wsum,
        first,
        np.array([sums(d) for d in wz]).reshape(len(zs), n_groups),
        np.array([sums(wz[b] * dz[c]) for b, c in layout.dgram]).reshape(-1, n_groups),
        np.array([sums(wz[b] * xs[j]) for b, j in layout.dxy]).reshape(-1, n_groups),
        np.array([sums(xs[j] if weights is None else w * xs[j]) for j in layout.others]).reshape(
            -1, n_groups
        ),
        layout,
    )


def merge_parts(parts: list[ShiftPart]) -> ShiftPart | None:
    """The parts added by key (a group's shift that of its first part, the others'
    sums moved to it; module docstring), the keys in order of first appearance; None
    where the parts' layouts differ."""
    parts = [p for p in parts if p.keys.size] or parts[:1]
    if not parts:
        return None
    layout = parts[0].layout
    if any(p.layout != layout for p in parts[1:]):
        return None
    if len(parts) == 1:
        return parts[0]
    codes, uniq = pd.factorize(np.concatenate([p.keys for p in parts]))
    return _merged(parts, codes, np.asarray(uniq))


def merge_parts_at(
    parts: list[ShiftPart], at: list[np.ndarray], keys: np.ndarray
) -> ShiftPart | None:
    """:func:`merge_parts` where the groups are known: the parts added into the groups
    ``keys`` (G,), each part's groups at positions ``at[p]`` of ``keys`` (every group
    held by some part), in the order of ``keys``: the same sums, bit for bit, as
    ``merge_parts(parts).of_keys(keys)``, with no hash of the keys.  None where the
    parts' layouts differ."""
    picked = [(p, a) for p, a in zip(parts, at, strict=True) if p.keys.size]
    if not picked:
        return None
    layout = picked[0][0].layout
    if any(p.layout != layout for p, _ in picked[1:]):
        return None
    if len(picked) == 1:  # as merge_parts gives it: the part's own sums
        part, a = picked[0]
        order = np.empty(len(keys), dtype=np.int64)
        order[np.asarray(a, dtype=np.int64)] = np.arange(len(keys))
        return part.take(order)
    codes = np.concatenate([np.asarray(a, dtype=np.int64) for _, a in picked])
    return _merged([p for p, _ in picked], codes, keys)


def _merged(parts: list[ShiftPart], codes: np.ndarray, keys: np.ndarray) -> ShiftPart:
    """The parts (one layout) added into the groups ``keys``: ``codes``, the parts'
    groups' positions in ``keys``, part after part."""
    layout = parts[0].layout
    n = len(keys)
    out = ShiftPart(
        keys,
        np.zeros(n),
        np.zeros(n),
        np.zeros((parts[0].first.shape[0], n)),
        np.zeros((parts[0].dsum.shape[0], n)),
        np.zeros((parts[0].dgram.shape[0], n)),
        np.zeros((parts[0].dxy.shape[0], n)),
        np.zeros((parts[0].xsum.shape[0], n)),
        layout,
    )
    seen = np.zeros(n, dtype=bool)
    at = 0
    others = {j: i for i, j in enumerate(layout.others)}
    for p in parts:
        pos = codes[at : at + p.keys.size]
        at += p.keys.size
        base = np.where(seen[pos], out.first[:, pos], p.first)
        delta = p.first - base  # 0 for a group's first part
        out.first[:, pos] = base
        out.dsum[:, pos] += p.dsum + p.wsum * delta
        for i, (b, c) in enumerate(layout.dgram):
            moved = delta[b] * p.dsum[c] + p.dsum[b] * delta[c] + p.wsum * delta[b] * delta[c]
            out.dgram[i, pos] += p.dgram[i] + moved
        for i, (b, j) in enumerate(layout.dxy):
            out.dxy[i, pos] += p.dxy[i] + delta[b] * p.xsum[others[j]]
        out.xsum[:, pos] += p.xsum
        out.count[pos] += p.count
        out.wsum[pos] += p.wsum
        seen[pos] = True
    return out


def layout_of(zcols: list, xcols: list, std) -> ShiftLayout | None:
    """The :class:`ShiftLayout` of rows' columns (unweighted, as
    :func:`~dmixed.kernels.rows.prepare_rows` makes them: a column of ``Z̃`` equal to
    one of ``[X y]`` is that very array) in the map ``std``: None without an intercept
    and a slope in ``Z̃``."""
    r, k = len(zcols), len(xcols)
    if r < 2 or std is None or std.z_intercept < 0 or std.k_re != r:
        return None
    e = int(std.z_intercept)
    slopes = tuple(a for a in range(r) if a != e)
    shared = tuple(next((a for a in range(r) if zcols[a] is xcols[j]), -1) for j in range(k))
    ones = {std.x_intercept} if std.x_intercept >= 0 else set()
    others = tuple(j for j in range(k) if j not in ones and shared[j] < 0)
    return layout_in(ShiftLayout(slopes, others, shared, e, (), (), (), ()), std)


def layout_in(layout: ShiftLayout, std) -> ShiftLayout:
    """``layout`` with the shifts and factors of the map ``std``."""
    r = len(layout.z) + 1
    sx = np.append(std.x_scale, std.y_scale)
    return ShiftLayout(
        layout.z,
        layout.others,
        layout.shared,
        layout.e,
        tuple(np.asarray(std.z_shift[:r], dtype=np.float64).tolist()),
        tuple(np.append(std.x_shift, std.y_shift).tolist()),
        tuple((1.0 / np.asarray(std.z_scale[:r], dtype=np.float64)).tolist()),
        tuple((1.0 / sx).tolist()),
    )


def rows_part(keys, codes, endog, exog, ztilde, weights, std) -> ShiftPart | None:
    """:func:`part_of_rows` of design rows (``keys`` (G,) the groups, ``codes`` (n,)
    each row's position in them; ``weights`` the rows' prior weights as the statistics
    sum them, or None) in the map ``std``; None for rows the map divides up front, or
    without a slope (:func:`layout_of`)."""
    from .rows import prepare_rows

    if np.shape(ztilde)[1] < 2:
        return None
    k = np.shape(exog)[1] + 1
    rows = prepare_rows(endog, exog, ztilde, None, std, gram=np.zeros((k, k)))
    if rows.std is not std:
        return None
    layout = layout_of(rows.zcols, rows.xcols, std)
    if layout is None:
        return None
    ztilde = np.asarray(ztilde, dtype=np.float64)
    zraw = [ztilde[:, a] for a in range(ztilde.shape[1])]
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
    return part_of_rows(keys, codes, zraw, rows.xcols, layout, weights)
