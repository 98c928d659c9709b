"""Ragged per-group statistics on the driver: what saved statistics hold for a model whose
variance components are structured (:mod:`dmixed.kernels.vc_blocks`), never padded.

:class:`RaggedArrays` holds the same arrays as ``kernels.vc_blocks.RaggedVC`` (the
``exog_re`` block of every group, one diagonal entry, border and ``Z̃'[X y]`` row per
used slot), without its kernels: this layer saves, loads, converts and adds them;
the engines evaluate them.  The slot tables (``vc_slot_cols``) say which column of
its component each slot holds.

Adding old and new statistics (:func:`merge_ragged`) keys every slot by (group, column
of its component): a column a group already had keeps its slot, columns new to a group
get the next free slots (:func:`dmixed.stats.checkpoint.merge`'s rule, whose slot
tables it reuses), and the entries of one key are added.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: the arrays of one slot, in :class:`RaggedArrays` (and ``RaggedVC``)
SLOT_FIELDS = ("group", "comp", "pos", "d", "b", "f2")


@dataclass
class RaggedArrays:
    """Per-group statistics with a diagonal variance-component block, slots ragged.

    The fields are those of ``dmixed.kernels.vc_blocks.RaggedVC`` (same names, shapes
    and meaning), so either is built from the other by field name (:meth:`of`,
    :meth:`as_dict`).

    Attributes
    ----------
    a : ndarray (G, q, q)
        ``Z_i'Z_i`` of the ``exog_re`` columns.
    f1 : ndarray (G, q, k)
        ``Z_i'[X_i y_i]``.
    group, comp, pos : ndarray (J,) int64
        Each used slot's group, component and column of the padded random design,
        sorted by (group, column).
    d : ndarray (J,)
        The slot's diagonal entry of ``Z̃_i'Z̃_i``.
    b : ndarray (J, q)
        Its border (the slot's column against ``exog_re``).
    f2 : ndarray (J, k)
        Its row of ``Z̃_i'[X_i y_i]``.
    offsets : ndarray (d,) int64
        First padded column of each component.
    r : int
        Width of the padded random design.
    """

    a: np.ndarray
    f1: np.ndarray
    group: np.ndarray
    comp: np.ndarray
    pos: np.ndarray
    d: np.ndarray
    b: np.ndarray
    f2: np.ndarray
    offsets: np.ndarray
    r: int

    @classmethod
    def of(cls, ragged) -> RaggedArrays:
        """The arrays of any object with these fields (``RaggedVC``)."""
        return cls(**{f.name: getattr(ragged, f.name) for f in fields(cls)})

    def as_dict(self) -> dict:
        """The fields by name (``RaggedVC(**arrays.as_dict())``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def q(self) -> int:
        return self.a.shape[1]

    @property
    def k(self) -> int:
        return self.f1.shape[2]

    @property
    def n_groups(self) -> int:
        return self.a.shape[0]

    @classmethod
    def from_dense(cls, zz: np.ndarray, zxy: np.ndarray, q: int, slot_component) -> RaggedArrays:
        """The ragged form of padded statistics whose variance-component block is
        diagonal (:func:`diagonal_block`): a slot is used where its diagonal entry is
        not zero (as ``RaggedVC.from_dense``)."""
        slot_component = np.asarray(slot_component, dtype=np.int64)
        diag = np.diagonal(zz[:, q:, q:], axis1=1, axis2=2)
        gi, si = np.nonzero(diag)
        pos = si + q
        n_comp = int(slot_component.max()) + 1 if slot_component.size else 0
        return cls(
            a=np.ascontiguousarray(zz[:, :q, :q]),
            f1=np.ascontiguousarray(zxy[:, :q, :]),
            group=gi.astype(np.int64),
            comp=slot_component[si],
            pos=pos.astype(np.int64),
            d=diag[gi, si].copy(),
            b=zz[gi, :q, pos].reshape(gi.size, q),
            f2=zxy[gi, pos, :],
            offsets=(q + np.searchsorted(slot_component, np.arange(n_comp))).astype(np.int64),
            r=zz.shape[1],
        )

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The padded statistics ``zz`` (G, r, r) and ``zxy`` (G, r, k): G r² values,
        for merging with padded statistics only."""
        g, q, r = self.n_groups, self.q, self.r
        zz = np.zeros((g, r, r))
        zxy = np.zeros((g, r, self.k))
        zz[:, :q, :q] = self.a
        zxy[:, :q] = self.f1
        zz[self.group, :q, self.pos] = self.b
        zz[self.group, self.pos, :q] = self.b
        zz[self.group, self.pos, self.pos] = self.d
        zxy[self.group, self.pos] = self.f2
        return zz, zxy

    def converted(self, m_zq: np.ndarray, ratio: np.ndarray, m_x: np.ndarray) -> RaggedArrays:
        """These statistics in another column map: ``Z̃ → Z̃ M_z`` with ``M_z`` =
        ``m_zq`` (q × q) on ``exog_re`` and the component's ``ratio`` (d,) on its slots,
        ``[X̃ ỹ] → [X̃ ỹ] M_x`` (:meth:`Standardization.conversion_to`)."""
        rho = np.asarray(ratio, dtype=np.float64)[self.comp]
        return RaggedArrays(
            a=np.einsum("ca,gcd,db->gab", m_zq, self.a, m_zq),
            f1=np.einsum("ca,gcj,jk->gak", m_zq, self.f1, m_x),
            group=self.group,
            comp=self.comp,
            pos=self.pos,
            d=rho**2 * self.d,
            b=rho[:, None] * (self.b @ m_zq),
            f2=rho[:, None] * (self.f2 @ m_x),
            offsets=self.offsets,
            r=self.r,
        )


def diagonal_block(zz: np.ndarray, q: int) -> bool:
    """Whether every group's variance-component block of ``zz`` (G, r, r) is diagonal."""
    vc = zz[:, q:, q:]
    return not np.any(vc - vc * np.eye(vc.shape[1], dtype=bool))


def slot_columns(ragged: RaggedArrays, slot_cols: list[np.ndarray]) -> np.ndarray:
    """The column of its component that each used slot holds (J,) int64, from the slot
    tables (G, m_c) per component."""
    out = np.zeros(ragged.group.size, dtype=np.int64)
    for c, table in enumerate(slot_cols):
        sel = ragged.comp == c
        out[sel] = table[ragged.group[sel], ragged.pos[sel] - ragged.offsets[c]]
    return out


def layout_offsets(q: int, widths) -> np.ndarray:
    """First padded column of each component (d,) int64, for slot widths ``widths``."""
    return (q + np.concatenate([[0], np.cumsum(widths, dtype=np.int64)])[:-1]).astype(np.int64)


def merged_columns(
    group: np.ndarray, pos: np.ndarray, gi: np.ndarray, offsets, pair, which: int, merged, r
) -> np.ndarray:
    """Keys ``group · r + column`` in merged statistics of the slots ``(group, pos)`` of
    one side (``which``: 0 old, 1 new) of :func:`dmixed.stats.checkpoint.merge`: the
    merged group ``gi[group]`` and column ``merged[l] + pair[l][which][group, slot]``
    (``pair``: per component the merged slot of every slot; ``offsets`` / ``merged``:
    the first column of each component before / after; ``r`` the merged width)."""
    comp = np.searchsorted(offsets, pos, side="right") - 1
    slot = np.zeros(pos.size, dtype=np.int64)
    for c, maps in enumerate(pair):
        sel = comp == c
        slot[sel] = maps[which][group[sel], pos[sel] - offsets[c]]
    return gi[group].astype(np.int64) * r + merged[comp] + slot


def merge_ragged(old, new, labels: np.ndarray, gi_old, gi_new, maps, widths) -> RaggedArrays:
    """Ragged statistics of old + new rows (both :class:`RaggedArrays` in one column
    map) on the union of their groups.

    Parameters
    ----------
    labels : ndarray (G,)
        The merged groups; ``gi_old`` / ``gi_new`` each source group's merged position.
    maps : list of (ndarray, ndarray)
        Per component, the merged slot of each old / new slot (the slot tables' shapes,
        from :func:`dmixed.stats.checkpoint.merge`'s slot rule).
    widths : tuple of int
        The merged slots of each component.
    """
    q, k, g = old.q, old.k, len(labels)
    a = np.zeros((g, q, q))
    f1 = np.zeros((g, q, k))
    np.add.at(a, gi_old, old.a)
    np.add.at(a, gi_new, new.a)
    np.add.at(f1, gi_old, old.f1)
    np.add.at(f1, gi_new, new.f1)
    offsets = layout_offsets(q, widths)
    r = q + int(sum(widths))
    keys, comps = [], []
    for src, gi, which in ((old, gi_old, 0), (new, gi_new, 1)):
        keys.append(merged_columns(src.group, src.pos, gi, src.offsets, maps, which, offsets, r))
        comps.append(src.comp)
    cells, where = np.unique(np.concatenate(keys), return_inverse=True)
    n = cells.size
    d = np.zeros(n)
    b = np.zeros((n, q))
    f2 = np.zeros((n, k))
    comp = np.zeros(n, dtype=np.int64)
    np.add.at(d, where, np.concatenate([old.d, new.d]))
    np.add.at(b, where, np.concatenate([old.b, new.b]))
    np.add.at(f2, where, np.concatenate([old.f2, new.f2]))
    comp[where] = np.concatenate(comps)
    return RaggedArrays(a, f1, cells // r, comp, cells % r, d, b, f2, offsets, r)
