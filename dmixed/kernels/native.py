"""Whether the C kernels of ``dmixed.kernels.c_sums`` run: the one place that says so.

The extension (``dmixed/kernels/c_sums.c``, built by ``pip install`` where a C compiler
is at hand, optional: dmixed installs and fits without it) computes the per-group sums of
:mod:`~dmixed.kernels.dense2` (two random-effect coordinates) in one loop over the
groups per call, the same sums as the numpy reference in another order (they agree to
rounding), and those of :mod:`~dmixed.kernels.dense1` (one coordinate) likewise, the
within-group cross-products of a random intercept's rows of
:func:`~dmixed.kernels.rows.accumulate_packed_into` in one pass over the rows (the same
residuals, their products summed in row order: to rounding BLAS's), the per-group term
sums of
:func:`~dmixed.kernels.rows.plain_statistics` in one pass over the rows (``np.bincount``'s
sums, bit for bit), the check of :func:`~dmixed.kernels.rows.constant_within` in one
pass that stops at the first row that differs (its answer), the Hessian moments with the
BLUPs at ``r = 2`` of :func:`dmixed.kernels.compiled.hessian_random_effects` (each
group's values with the numba kernel's operations, the same bits; the moments summed in
another order, to rounding), and the small-matrix
arithmetic of the lean Newton steps of :mod:`dmixed.fit.lean` for ``r = 2`` (an
evaluation, the profiled Hessian, the step's
chain rule: each one call where numpy makes dozens on 3 × 3 arrays; their products in
another order than BLAS's, to rounding).  It is loaded on the first call of
:func:`extension` (a small shared library: no numpy C API, nothing else imported).

:func:`forced` reads ``DMIXED_NATIVE`` as :func:`dmixed.kernels.compiled.forced` reads
``DMIXED_KERNELS`` (which chooses between the numpy and the compiled kernels, and leaves
this choice alone): ``c`` asks for the extension (an error where it is not built),
``auto`` (or unset) runs it where it loaded, ``numpy`` turns it off, and each of its
callers then runs its own path without C: the numpy kernels for the sums of
:mod:`~dmixed.kernels.dense2`, the pass over the rows, the check of constant columns
and the lean steps' arithmetic, but numba for the Hessian moments and BLUPs at
``r = 2`` (they are reached only where ``DMIXED_KERNELS`` chose the compiled kernels).
The numpy reference everywhere is ``DMIXED_KERNELS=numpy`` with ``DMIXED_NATIVE=numpy``.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

__all__ = [
    "ENV_VAR",
    "MAX_K",
    "MAX_TERMS",
    "VERSION",
    "env_choice",
    "extension",
    "forced",
    "loaded",
]

#: the environment variable that forces an implementation: ``numpy``, ``c`` or ``auto``
#: (the default)
ENV_VAR = "DMIXED_NATIVE"

#: the largest ``k = p + 1`` (fixed-effects columns and y) the extension's r = 1 and
#: r = 2 sums, within-group sums and Hessian moments take (``check_sizes`` of
#: ``c_sums.c``);
#: :class:`~dmixed.kernels.dense2.Dense2Statistics` of a larger ``k`` runs numpy, the
#: compiled path's Hessian moments of a larger ``k`` run numba
MAX_K = 64

#: the most terms of :func:`~dmixed.kernels.rows.plain_statistics` the extension's
#: one pass over the rows sums (its running sums kept on the stack; ``MAX_TERMS`` of
#: ``c_sums.c``)
MAX_TERMS = 64

#: the version of the entry points' arguments this module calls (``C_SUMS_VERSION`` of
#: ``c_sums.c``): a library built from another version of the file (an editable install
#: that was not rebuilt after a change) is not used
VERSION = 11

_CHOICES = ("auto", "numpy", "c")


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The environment variable ``name`` as one of ``choices`` (its first, ``"auto"``,
    where unset or empty; case and surrounding spaces aside): the one reading of the
    switches of the kernels (``DMIXED_NATIVE`` here, ``DMIXED_KERNELS`` of
    :mod:`~dmixed.kernels.compiled`).

    Raises
    ------
    ValueError
        The variable is set to anything else, named with the choices.
    """
    choice = os.environ.get(name, choices[0]).strip().lower() or choices[0]
    if choice not in choices:
        raise ValueError(f"environment variable {name} must be one of {choices}, got {choice!r}")
    return choice


@functools.cache
def _built() -> ModuleType | None:
    """The extension module as built, whatever its version, or None where it was not
    built (imported once)."""
    try:
        from . import c_sums
    except ImportError:
        return None
    return c_sums


def _module() -> ModuleType | None:
    """The extension module where it was built from this version of ``c_sums.c``."""
    built = _built()
    if built is None or getattr(built, "VERSION", None) != VERSION:
        return None
    return built


def loaded() -> bool:
    """Whether the extension is built, from the version of ``c_sums.c`` this module
    calls (:data:`VERSION`), and loads in this process."""
    return _module() is not None


def forced() -> str:
    """``"numpy"`` or ``"c"`` when ``DMIXED_NATIVE`` forces one, else ``"auto"``.

    Raises
    ------
    ValueError
        ``DMIXED_NATIVE`` is set to anything else, or to ``c`` when the extension is not
        built.
    """
    choice = env_choice(ENV_VAR, _CHOICES)
    if choice == "c" and not loaded():
        version = getattr(_built(), "VERSION", None)
        if _built() is None or version == VERSION:
            raise ValueError(
                f"{ENV_VAR}=c but the extension dmixed.kernels.c_sums is not built"
                " (pip install needs a C compiler for it)"
            )
        raise ValueError(
            f"{ENV_VAR}=c but the extension dmixed.kernels.c_sums was built from another"
            f" version of c_sums.c (version {version}, this"
            f" dmixed calls version {VERSION}): rebuild it with pip install -e ."
        )
    return choice


def extension() -> ModuleType | None:
    """The extension module where its kernels run (:func:`forced` not ``numpy``, and
    it loaded), else None: each caller runs its path without C, numpy where the
    numpy kernels called (:mod:`~dmixed.kernels.dense2`, :mod:`~dmixed.kernels.rows`,
    :mod:`dmixed.fit.lean`), numba where the compiled ones did (the Hessian moments and
    BLUPs at ``r = 2`` of :func:`dmixed.kernels.compiled.hessian_random_effects` and
    :func:`~dmixed.kernels.compiled.hessian_sums`).

    Raises
    ------
    ValueError
        As :func:`forced`.
    """
    if forced() == "numpy":
        return None
    return _module()
