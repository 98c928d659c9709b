"""Per-group results on their way to the driver: rows in pieces of about a megabyte.

distributed receives every buffer of a message into memory of its own, fresh from the
driver's allocator.  An array of tens of MB (the BLUPs' conditional covariances of half a
million groups) is then mapped anew and first touched page by page as it arrives, at a
cost that varies widely from one fit to the next (benchmarks/RESULTS.md); pieces of about
a megabyte are served from (and go back to) memory the driver's heap already holds.  A
worker cuts a per-group array into :class:`RowPieces` (views, no copy: each piece travels
as its own buffer); the driver keeps the pieces as they came and puts their rows in place
only when the values are read (:func:`~dmixed.engines.dask.blocks.reorder_parts` takes
them as they are).
"""

from __future__ import annotations

import numpy as np

from ...kernels.compiled import upper_unfolded

__all__ = ["PIECE_BYTES", "RowPieces", "covariance_rows", "cut", "rows"]

#: Bytes of one piece of a per-group array sent to the driver: small enough to be served
#: from the driver's heap (a whole array of tens of MB is mapped fresh and first touched on
#: arrival), large enough that the pieces of a million groups are a few dozen buffers
#: (benchmarks/RESULTS.md, ``tail-s37``).
PIECE_BYTES = 1 << 20


class RowPieces:
    """One array cut into runs of whole rows, in order (``items``: C-ordered views of
    the rows, at most :data:`PIECE_BYTES` each unless one row is larger).  An empty
    array is one empty piece, keeping its dtype and row shape."""

    __slots__ = ("items",)

    def __init__(self, items: list[np.ndarray]) -> None:
        self.items = items

    @classmethod
    def of(cls, array: np.ndarray) -> RowPieces:
        """``array`` (n, ...) cut into pieces of whole rows."""
        array = np.ascontiguousarray(array)
        n = len(array)
        row_bytes = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        step = max(1, PIECE_BYTES // max(row_bytes, 1))
        if n <= step:
            return cls([array])
        return cls([array[i : i + step] for i in range(0, n, step)])

    def __len__(self) -> int:
        return sum(len(p) for p in self.items)

    def whole(self) -> np.ndarray:
        """The rows as one array again (a copy where there are several pieces)."""
        if len(self.items) == 1:
            return self.items[0]
        return np.concatenate(self.items)


def cut(value):
    """``value`` as :class:`RowPieces` where it is an array of rows (the form a worker
    sends a per-group result in), else ``value`` unchanged (a ragged or bordered result,
    which holds its own arrays)."""
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return RowPieces.of(value)
    return value


def rows(parts: list) -> list:
    """The arrays of ``parts`` (one per block, in block order: :class:`RowPieces` or
    arrays), the pieces in their order: the rows of the blocks concatenated, without
    the concatenation."""
    out: list = []
    for part in parts:
        out.extend(part.items if isinstance(part, RowPieces) else [part])
    return out


def covariance_rows(parts: list) -> tuple[list, bool]:
    """The pieces of the blocks' conditional covariances ``parts`` (one per block, in
    block order: :class:`RowPieces` or arrays of whole matrices (n, r, r), or of their
    upper triangles row by row (n, r(r+1)/2), two axes: what one compiled pass sends),
    and whether they are triangles: as they came where every block sent triangles (to
    be unfolded once their rows are in place,
    :func:`~dmixed.kernels.compiled.upper_unfolded`), else each block's triangles
    unfolded, all whole matrices."""
    blocks = [rows([part]) for part in parts]
    upper = [all(piece.ndim == 2 for piece in pieces) for pieces in blocks]
    if all(upper):
        return [piece for pieces in blocks for piece in pieces], True
    out: list = []
    for pieces, up in zip(blocks, upper, strict=True):
        out.extend([upper_unfolded(np.concatenate(pieces))] if up else pieces)
    return out, False
