"""statsmodels' per-group dicts (``random_effects``, ``random_effects_cov``), built
lazily: a group's value is made when it is first looked up, so the dict of a fit with
millions of groups costs nothing until it is used."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, KeysView, ValuesView

import numpy as np
import pandas as pd

__all__ = ["ByGroup"]


class ByGroup(dict):
    """A ``dict`` group label → value whose values are made on first lookup.

    It is a real ``dict`` (``isinstance(x, dict)``; ``pd.DataFrame(x)``,
    ``pd.DataFrame.from_dict(x, orient="index")``, ``pd.concat(x)`` and ``dict(x)`` work
    as on statsmodels' dict), with the groups in the fit's order.  It is read-only:
    assignment and deletion raise ``TypeError``.

    Parameters
    ----------
    labels : ndarray (G,)
        The fitted group labels (the keys, in this order).
    make : callable
        ``make(position) -> value`` for the group at ``position`` of ``labels``.
    """

    def __init__(self, labels: np.ndarray, make: Callable[[int], object]) -> None:
        super().__init__()
        self._labels = labels
        self._index = pd.Index(labels)
        self._make = make

    def _position(self, key) -> int:
        try:
            pos = self._index.get_loc(key)
        except (KeyError, TypeError, pd.errors.InvalidIndexError):
            raise KeyError(key) from None
        if not isinstance(pos, (int, np.integer)):
            raise KeyError(key)
        return int(pos)

    def __missing__(self, key):
        value = self._make(self._position(key))
        dict.__setitem__(self, key, value)
        return value

    def __contains__(self, key) -> bool:
        try:
            self._position(key)
        except KeyError:
            return False
        return True

    def __iter__(self):
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def keys(self):
        return KeysView(self)

    def values(self):
        return ValuesView(self)

    def items(self):
        return ItemsView(self)

    def copy(self) -> dict:
        return dict(self.items())

    def __eq__(self, other) -> bool:
        if not isinstance(other, dict) or len(other) != len(self):
            return False
        return all(k in other and _same(self[k], other[k]) for k in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k!r}: ..." for k in self._labels[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"<{len(self)} groups: {{{shown}{more}}}>"

    def __reduce__(self):
        return (dict, (self.copy(),))

    def _refuse(self, *args, **kwargs):
        raise TypeError("the per-group results are read-only")

    __setitem__ = __delitem__ = pop = popitem = clear = update = setdefault = _refuse


def _same(a, b) -> bool:
    if isinstance(a, (pd.Series, pd.DataFrame)):
        return bool(a.equals(b))
    return bool(np.all(a == b))
