"""statsmodels' optimizer options of ``fit``, checked: ``method=`` and ``free=``.

:func:`choose_methods` names the optimizers :func:`~dmixed.fit.optimize.maximize` runs in
turn; :func:`parse_free` turns statsmodels' ``free`` into a mask over the packed
covariance parameters.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError

__all__ = ["DEFAULT_METHODS", "METHODS", "choose_methods", "parse_free"]


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
        A mask holding a fixed effect, or of another length.
    """
    if free is None:
        return np.ones(n_params, dtype=bool)
    if hasattr(free, "get_packed"):
        full = np.asarray(free.get_packed(use_sqrt=False, has_fe=True))
    else:
        full = np.asarray(free, dtype=np.float64).ravel()
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
