"""The memory pages of a fit's arrays, in the driver and on the workers.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
array of 4 MiB or more.  Where the kernel's THP ``defrag`` setting is ``madvise`` (the
common default), a first fault on such memory may compact memory synchronously to find a
free 2 MiB page, and a fresh process's first fits over many groups spend most of their
system time there (measured in benchmarks/RESULTS.md, tiny-s59); later fits reuse the
heap's pages and pay neither.  :func:`ordinary_pages` asks numpy for ordinary pages for
the length of a call and gives back the setting it found.

numpy's setting is one per process: while a fit runs, arrays that other threads of the
process allocate get ordinary pages too.  :data:`HUGE_PAGES_IN_FITS` set to True leaves
numpy's setting (and a ``NUMPY_MADVISE_HUGEPAGE`` the user chose) alone.

The Dask engine runs every function of a fit on the workers as a :class:`PagedCall`
(:func:`paged`), which carries the driver's :data:`HUGE_PAGES_IN_FITS` as it was when
the fit made the call: a worker's own copy of this module's global is not the driver's.
A multi-threaded worker shares numpy's one setting too: while a fit's task runs there,
the other tasks of that worker process get ordinary pages as well.

The module knows no Dask or pandas (numpy only), so that the engines and the fit use
the one owner of the setting.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "HUGE_PAGES_IN_FITS",
    "PagedCall",
    "advice",
    "advice_switch",
    "ordinary_pages",
    "paged",
    "with_ordinary_pages",
]

#: Whether a fit leaves numpy's huge-page advice as it finds it (True) or turns it off
#: for the fit's length (False, the default; see the module).
HUGE_PAGES_IN_FITS = False

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_depth = 0  # calls inside ordinary_pages now (nested or in other threads)
_found: bool | None = None  # numpy's setting before the outermost call


def _multiarray() -> Any:
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / numpy 1
    return getattr(core, "multiarray", None)


def advice_switch() -> Callable[[bool], bool] | None:
    """numpy's switch of its huge-page advice.

    Returns
    -------
    callable or None
        ``numpy._core.multiarray._set_madvise_hugepage`` (``numpy.core`` on numpy 1):
        called with a bool, it sets the advice and returns the previous setting.  None
        where this numpy has none (the advice is then numpy's default, untouched).
    """
    return getattr(_multiarray(), "_set_madvise_hugepage", None)


def advice() -> bool | None:
    """numpy's huge-page advice now (True: numpy asks for huge pages on arrays of 4 MiB
    or more), or None where this numpy cannot say
    (``numpy._core.multiarray._get_madvise_hugepage``)."""
    getter = getattr(_multiarray(), "_get_madvise_hugepage", None)
    return None if getter is None else bool(getter())


@contextmanager
def ordinary_pages(huge: bool | None = None) -> Iterator[None]:
    """numpy's huge-page advice off inside the block.

    Nested blocks and blocks in other threads share one setting: the outermost block to
    enter turns the advice off, the last to leave gives back the setting found, also
    when the block raises.  Nothing changes where ``huge`` is True or numpy has no
    such switch (:func:`advice_switch`).

    Parameters
    ----------
    huge : bool or None
        Whether to leave numpy's advice as it is (a :data:`HUGE_PAGES_IN_FITS` taken
        elsewhere, e.g. the driver's, on a worker); None: this process's
        :data:`HUGE_PAGES_IN_FITS`, read on entry.

    Yields
    ------
    None
    """
    global _depth, _found
    setter = advice_switch()
    if huge is None:
        huge = HUGE_PAGES_IN_FITS
    if huge or setter is None:
        yield
        return
    entered = False
    try:
        with _lock:
            _depth += 1
            entered = True
            if _depth == 1:
                _found = bool(setter(False))
        yield
    finally:
        if entered:
            with _lock:
                _depth -= 1
                if _depth == 0 and _found is not None:
                    setter(_found)
                    _found = None


def with_ordinary_pages(func: _F) -> _F:
    """Decorator: ``func`` run inside :func:`ordinary_pages`.

    Parameters
    ----------
    func : callable
        Any function or method; its name and docstring are kept (``functools.wraps``).

    Returns
    -------
    callable
        ``func`` with numpy's huge-page advice off while it runs.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with ordinary_pages():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PagedCall:
    """A function called inside :func:`ordinary_pages` with a setting fixed when made.

    Made by :func:`paged` in the driver and pickled with a task (or a direct call) to a
    worker, where calling it runs ``func`` with the driver's choice, not the worker's
    own :data:`HUGE_PAGES_IN_FITS`.  ``__name__`` is ``func``'s (Dask names a task's
    key after its function); it pickles as ``func`` and the setting (so Dask's token of
    it is deterministic where ``func``'s pickle is).

    Parameters
    ----------
    func : callable
        The function (picklable, as a task's function must be).
    huge : bool
        True: call ``func`` as it is (numpy's advice untouched); False: inside
        :func:`ordinary_pages`.
    """

    __slots__ = ("__name__", "func", "huge")

    def __init__(self, func: Callable[..., Any], huge: bool) -> None:
        self.func, self.huge = func, bool(huge)
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, *args, **kwargs):
        with ordinary_pages(self.huge):
            return self.func(*args, **kwargs)

    def __reduce__(self):
        return (PagedCall, (self.func, self.huge))

    def __repr__(self) -> str:
        return f"PagedCall({self.func!r}, huge={self.huge})"


def paged(func: Callable[..., Any]) -> PagedCall:
    """``func`` as a :class:`PagedCall` with this process's :data:`HUGE_PAGES_IN_FITS`
    now (call it in the driver, when the fit makes its tasks).

    Parameters
    ----------
    func : callable
        A function a worker runs for a fit; a :class:`PagedCall` is unwrapped first.

    Returns
    -------
    PagedCall
    """
    if isinstance(func, PagedCall):
        func = func.func
    return PagedCall(func, HUGE_PAGES_IN_FITS)
