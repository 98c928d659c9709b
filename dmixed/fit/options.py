"""statsmodels' optimizer options of ``fit``, checked: ``method=`` and ``free=``, and
the kinds of scalar argument dmixed's functions take (a switch, a count, a tolerance).

:func:`choose_methods` names the optimizers :func:`~dmixed.fit.optimize.maximize` runs in
turn; :func:`parse_free` turns statsmodels' ``free`` into a mask over the packed
covariance parameters.  :func:`check_flag`, :func:`check_integer` and
:func:`check_tolerance` refuse a switch, a count or a tolerance of the wrong kind or
range, naming the argument, where Python would take ``"no"`` as true or numpy fail
deep inside the optimizer; a 0-d array is read as its one value, as numpy reads it.
"""

from __future__ import annotations

import math

import numpy as np

from ..design.arrays import is_real_type, unboxed
from ..errors import SpecError

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "check_flag",
    "check_integer",
    "check_tolerance",
    "choose_methods",
    "parse_free",
]


def check_flag(value, name: str, optional: bool = False) -> bool | None:
    """``value`` as a Python bool if it is a Python or numpy bool (or None where
    ``optional``), else :class:`SpecError` naming the argument and the value's type
    (statsmodels' ``bool_like(..., strict=True)``): ``"no"`` is true in Python, and
    ``None``, ``1`` or ``2`` says nothing of what was meant.  The one check of every
    switch of the public API (``fit``'s, ``predict``'s, ``simulate``'s, ...)."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or (optional and value is None):
        return None if value is None else bool(value)
    allowed = "True, False or None" if optional else "True or False"
    raise SpecError(f"{name} must be {allowed}, not {value!r} ({type(value).__name__})")


def check_integer(value, name: str, minimum: int) -> int:
    """``value`` as an ``int`` of at least ``minimum``.

    Raises
    ------
    SpecError
        ``value`` not a Python or numpy integer (a bool, a float such as ``2.5`` or
        ``1e3``, text), or below ``minimum``; the message names ``name``.
    """
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = f" ({type(value).__name__})"
    elif value < minimum:
        kind = ""
    else:
        return int(value)
    wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer of at least {minimum}"
    )
    raise SpecError(f"{name} must be {wanted}, got {value!r}{kind}")


def check_tolerance(value, name: str) -> float:
    """``value`` as a ``float``: a real number, finite and at least 0.

    A real number is one the data and ``start_params`` take
    (:func:`~dmixed.design.arrays.is_real_type`): Python's and numpy's, ``Decimal`` and
    ``Fraction`` among them, read as their nearest float.

    Raises
    ------
    SpecError
        ``value`` not a real number (a bool, text, None, a complex number), NaN
        (a signalling ``Decimal("sNaN")`` too), infinite or negative; the message names
        ``name``.
    """
    value = _scalar(value)
    if is_real_type(type(value)) and not isinstance(value, (bool, np.bool_)):
        try:
            number = float(value)
        except ValueError:  # Decimal("sNaN") does not convert
            number = math.nan
        if math.isfinite(number) and number >= 0:
            return number
    raise SpecError(f"{name} must be a finite number >= 0, got {value!r}")


def _scalar(value):
    """The numpy scalar of a 0-d array (``np.array(100)``, as reductions and ``np.load``
    give), which numpy and scipy read as its value; anything else as it is, for the
    checks above to judge (an array of one entry and more dimensions is not a scalar)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


#: statsmodels' default sequence of optimizers.
DEFAULT_METHODS = ("bfgs", "lbfgs", "cg")
#: the methods ``fit(method=...)`` takes (case-insensitive): statsmodels' short names
#: (``"nm"``, ``"powell"``, ``"bfgs"``, ``"lbfgs"``, ``"cg"``, ``"ncg"``, ``"newton"``)
#: and scipy's methods that need no Hessian
METHODS = frozenset(
    {"bfgs", "lbfgs", "cg", "nm", "ncg", "newton", "l-bfgs-b", "newton-cg", "nelder-mead"}
    | {"powell", "tnc", "slsqp", "trust-constr", "cobyla", "cobyqa"}
)


def choose_methods(method: str | list[str] | None, opt_sqrt: bool) -> list[str]:
    """The scipy methods to try: as given, else statsmodels' sequence; with the plain
    packing (``opt_sqrt`` false) L-BFGS first, for its bounds, then BFGS from where it
    stopped short: L-BFGS-B's line search cut off at the edge of the positive definite
    Ψ*, where ℓ is −∞, can leave it with no reduction to go on, and BFGS needs no
    bounds since a step out of the parameter space has ℓ = −∞.

    ``"newton"`` is exact Newton steps with the profiled Hessian (statsmodels refuses
    it for MixedLM, having no such Hessian); ``"nm"`` is Nelder–Mead and ``"ncg"``
    scipy's Newton-CG, as statsmodels names them.

    Raises
    ------
    SpecError
        A name that is not one of :data:`METHODS`, or not text.
    """
    if method is None:
        return list(DEFAULT_METHODS) if opt_sqrt else ["lbfgs", "bfgs"]
    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise SpecError("method is an empty list: name at least one optimizer")
    for m in methods:
        if not isinstance(m, str) or m.lower() not in METHODS:
            raise SpecError(f"method {m!r} is not available: use one of {sorted(METHODS)}")
    return methods


def parse_free(free, n_params: int, k_fe: int) -> np.ndarray:
    """statsmodels' ``free`` as a mask over the packed covariance parameters (bool, (m,)).

    ``free`` is 1 (estimated) / 0 (held at its start value) per packed covariance
    parameter, optionally preceded by the ``k_fe`` fixed effects (which must all be 1:
    they are profiled out), or an object with ``get_packed(use_sqrt, has_fe)``;
    ``None`` frees every parameter.  The mask is read in the plain packing whatever the
    model's ``use_sqrt``, as statsmodels reads it: the Cholesky factor of a pattern is
    not a pattern (``cov_re`` all ones would factor with a zero diagonal entry).

    Raises
    ------
    SpecError
        A mask holding a fixed effect, of another length, not 1-D, or holding anything
        but 0 and 1 (``True`` and ``False``): text, NaN, another number.
    """
    if free is None:
        return np.ones(n_params, dtype=bool)
    if hasattr(free, "get_packed"):
        full = np.asarray(free.get_packed(use_sqrt=False, has_fe=True))
    else:
        full = unboxed(np.asarray(free))
    if full.dtype.kind not in "biuf":
        raise SpecError(
            f"free must be a mask of 0 (held) and 1 (estimated), got values of dtype "
            f"{full.dtype}: {np.ravel(full)[:5].tolist()}"
        )
    if full.ndim > 1:
        raise SpecError(f"free must be one mask entry per parameter (1-D), got shape {full.shape}")
    full = full.astype(np.float64).ravel()
    odd = (full != 0) & (full != 1)
    if odd.any():
        raise SpecError(
            "free must hold 0 (held at its start value) or 1 (estimated) for each "
            f"parameter, got {full[odd][:5].tolist()}"
        )
    if full.size == n_params + k_fe:
        if np.any(full[:k_fe] == 0):
            raise SpecError(
                "free: holding fixed effects fixed is not supported (they are profiled out)"
            )
        full = full[k_fe:]
    if full.size != n_params:
        raise SpecError(
            f"free has {full.size} entries; expected {n_params} (covariance "
            f"parameters) or {n_params + k_fe} (with fixed effects)"
        )
    return full != 0
