"""Covariance parameters the data do not identify, from the Hessian at the optimum.

Two variance components of identical columns, or a component equal to the group's
random intercept, share their variance in any proportion at the same likelihood: the
Hessian of ℓ in the covariance parameters (β profiled) is singular along that trade.
statsmodels does not fit such models at all (its Hessian cannot be inverted).  Where the
formulas say so (one component's columns those of another, or all random-effects
columns) dmixed refuses the model at the spec
(:func:`dmixed.design.build.check_distinct_components`); where only the data do (two
columns of equal values under two names, a component of one level per group beside the
random intercept) it refuses them before the optimizer where the sums the fit holds
tell (:func:`dmixed.fit.start.check_distinct_component_values`).  A fit of such a
model (``check_nobs="ignore"``, or more components held structured than the moment
sums take) has ℓ and the other estimates right but the split, its standard errors
and profile intervals mean nothing, so the fit warns, naming the parameters.
"""

from __future__ import annotations

import hashlib
import math
import threading
import warnings

import numpy as np

from ..errors import SingularHessianWarning, caller_stacklevel
from ..kernels import small_linalg

__all__ = [
    "FLAT_EIGENVALUE",
    "TRADE_EIGENVALUE",
    "ScaledInformation",
    "identified_directions",
    "scaled_information",
    "unidentified_parameters",
    "warn_unidentified",
]

#: an eigenvalue of the profiled information in the covariance parameters, scaled to
#: unit diagonal (a correlation-like matrix: its eigenvalues sum to its size), at most
#: this is a flat direction (an exact trade is ~1e-12 in floating point; a weakly
#: identified pair, a few levels only, stays well above)
FLAT_EIGENVALUE = 1e-7
#: at most this, a flat direction is an exact trade, rounding only (two components of
#: one factor: 1e-16 and below); between it and :data:`FLAT_EIGENVALUE` it may be a
#: nearly singular but identified direction, whose curvature the inverse uses
TRADE_EIGENVALUE = 1e-12


def unidentified_parameters(
    hessian, k_fe: int, at_zero: np.ndarray, information: ScaledInformation | None = None
) -> np.ndarray:
    """Indices (among the covariance parameters) of those in a flat direction.

    With ``I = −H`` over the covariance parameters not at zero,
    ``S = I_θθ − I_θβ I_ββ⁻¹ I_βθ`` (β profiled) and ``R = D^{-1/2} S D^{-1/2}``,
    ``D = diag(S)``: a parameter is unidentified when its entry of S is zero, or when
    it carries more than a tenth of an eigenvector of R whose eigenvalue is at most
    :data:`FLAT_EIGENVALUE` in size (invariant to the units of each parameter).  An
    exact trade is flat in any coordinates; a nearly flat one depends on them, so the
    Hessian should be the fit's, in the statistics' (standardized) coordinates, where
    an offset of a column (x = 200 ± 1 under a random slope) does not make the
    intercept's and the slope's variances nearly collinear.  There each variance
    component's parameter is its own variance rescaled, and the ``exog_re`` block's
    entries are those of the standardized columns' Ψ.

    Parameters
    ----------
    hessian : ndarray (k, k) or None
        Hessian of ℓ, β first (None, or non-finite entries: nothing is said).
    k_fe : int
    at_zero : ndarray of bool (k − k_fe,)
        Covariance parameters at zero (left out: their edge is not a trade).
    information : ScaledInformation, optional
        :func:`scaled_information` of these arguments where the caller has it.

    Returns
    -------
    ndarray of int
        Sorted indices into the covariance parameters.
    """
    if information is None:
        information = scaled_information(hessian, k_fe, at_zero)
    return information.flat_parameters(FLAT_EIGENVALUE)


def identified_directions(
    hessian,
    k_fe: int,
    at_zero: np.ndarray,
    flat: float = FLAT_EIGENVALUE,
    information: ScaledInformation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The covariance parameters in a direction of R whose eigenvalue is at most
    ``flat`` in size (:func:`unidentified_parameters`) and a basis of the others.

    The basis holds ``D^{-1/2} u`` for each eigenvector ``u`` of R whose eigenvalue is
    above ``flat``, zero on the parameters at zero and on those without curvature: with
    ``flat=TRADE_EIGENVALUE`` the information is well conditioned in it, whatever
    rounding made of the exact trades
    (:func:`dmixed.results.covariance.covariance_of_estimates` inverts it there).

    ``information``: :func:`scaled_information` of ``hessian``, ``k_fe`` and
    ``at_zero`` where the caller has it (a fit asks twice at its optimum, with two
    values of ``flat``); else made here.

    Returns
    -------
    involved : ndarray of int
        Sorted indices into the covariance parameters (empty: all identified, or
        nothing can be said).
    basis : ndarray (k − k_fe, m)
        The identified directions (meaningful when ``involved`` is not empty).
    """
    n_theta = np.asarray(at_zero).size
    if information is None:
        information = scaled_information(hessian, k_fe, at_zero)
    involved = information.flat_parameters(flat)
    if information.w is None:
        return involved, np.eye(n_theta)
    flat_w = np.abs(information.w) <= flat
    live = information.live
    basis = np.zeros((n_theta, int((~flat_w).sum())))
    basis[information.theta[live]] = information.v[:, ~flat_w] / information.d[live, None]
    return involved, basis


class ScaledInformation:
    """The profiled information in the covariance parameters scaled to unit diagonal
    (``R`` of :func:`unidentified_parameters`) and its eigen-decomposition: what
    :func:`identified_directions` decides from, made once per Hessian
    (:func:`scaled_information`).

    Attributes
    ----------
    theta : ndarray of int or None
        The covariance parameters not at zero (None: nothing can be said, a Hessian
        with non-finite entries or a singular fixed-effects block).
    zero : ndarray of bool
        Those of them without curvature.
    live : ndarray of int
        The others (indices into ``theta``).
    d, w, v : ndarray or None
        ``√|diag S|``, and the eigenvalues and eigenvectors of ``R`` over ``live``.
    smallest : float
        The smallest ``|w|`` where no parameter is without curvature (NaN otherwise):
        every parameter is identified at a ``flat`` below it.
    """

    __slots__ = ("theta", "zero", "live", "d", "w", "v", "smallest")

    def __init__(self, theta=None, zero=None, live=None, d=None, w=None, v=None) -> None:
        self.theta, self.zero, self.live, self.d, self.w, self.v = theta, zero, live, d, w, v
        some_zero = zero is None or zero.any() or not w.size
        self.smallest = math.nan if some_zero else float(np.abs(w).min())

    def flat_parameters(self, flat: float) -> np.ndarray:
        """``involved`` of :func:`identified_directions` at ``flat``: sorted indices of
        the covariance parameters without curvature or carrying more than a tenth of
        an eigenvector of R whose eigenvalue is at most ``flat`` in size."""
        if self.w is None:
            return np.zeros(0, dtype=np.int64)
        if self.smallest > flat:  # the common case: all identified
            return self.theta[:0]
        flat_w = np.abs(self.w) <= flat
        involved = self.zero.copy()
        involved[self.live] = (np.abs(self.v[:, flat_w]) > 0.1).any(axis=1)
        # θ is ascending (the parameters not at zero, in order): so are those involved
        return self.theta[involved]


def scaled_information(hessian, k_fe: int, at_zero: np.ndarray) -> ScaledInformation:
    """The :class:`ScaledInformation` of ``hessian`` (β first, ``k_fe`` fixed effects;
    None: nothing can be said) over the covariance parameters not ``at_zero``; that
    of one of the last few Hessians given again (keyed by a digest of the Hessian, not
    its bytes: with thousands of fixed effects those are tens of megabytes a key),
    whose arrays are read only."""
    if hessian is None:
        return ScaledInformation()
    h = np.ascontiguousarray(hessian, dtype=np.float64)
    at_zero = np.ascontiguousarray(at_zero, dtype=bool)
    key = (hashlib.sha256(h.data).digest(), h.shape[0], k_fe, at_zero.tobytes())
    with _SCALED_CACHE_LOCK:
        if key in _SCALED_CACHE:
            return _SCALED_CACHE[key]
    out = _scaled_information(h, k_fe, at_zero)
    with _SCALED_CACHE_LOCK:
        _SCALED_CACHE[key] = out
        while len(_SCALED_CACHE) > _SCALED_CACHE_SIZE:
            del _SCALED_CACHE[next(iter(_SCALED_CACHE))]
    return out


_SCALED_CACHE: dict[tuple, ScaledInformation] = {}
_SCALED_CACHE_SIZE = 4
_SCALED_CACHE_LOCK = threading.Lock()


def _scaled_information(h: np.ndarray, k_fe: int, at_zero: np.ndarray) -> ScaledInformation:
    """:func:`scaled_information` of a C-contiguous float64 ``h`` and ``at_zero``."""
    if not np.isfinite(h).all():
        return ScaledInformation()
    info = -0.5 * (h + h.T)
    theta = (~at_zero).nonzero()[0]
    cols = k_fe + theta
    if theta.size == at_zero.size:  # none at zero: the blocks as contiguous copies
        s = np.ascontiguousarray(info[k_fe:, k_fe:])
        left = np.ascontiguousarray(info[k_fe:, :k_fe])
        right = np.ascontiguousarray(info[:k_fe, k_fe:])
    else:
        s = info[np.ix_(cols, cols)]
        left, right = info[np.ix_(cols, range(k_fe))], info[np.ix_(range(k_fe), cols)]
    if k_fe:
        try:
            s = s - left @ small_linalg.solve(info[:k_fe, :k_fe], right)
        except np.linalg.LinAlgError:
            return ScaledInformation()  # the fixed effects' block: their own warning says so
    d = np.sqrt(np.abs(s.diagonal()))
    if not d.size or not np.isfinite(s).all():
        return ScaledInformation()
    zero = d <= 1e-12 * d.max(initial=0.0)
    live = (~zero).nonzero()[0]
    kept = s if live.size == zero.size else s[np.ix_(live, live)]
    r = kept / np.outer(d[live], d[live])
    w, v = small_linalg.eigh(0.5 * (r + r.T))
    for arr in (theta, zero, live, d, w, v):
        arr.flags.writeable = False
    return ScaledInformation(theta, zero, live, d, w, v)


def warn_unidentified(
    hessian, k_fe: int, at_zero: np.ndarray, names, information: ScaledInformation | None = None
) -> None:
    """Warn naming the covariance parameters :func:`unidentified_parameters` finds.

    ``names`` gives the covariance parameters' names (in the Hessian's order, after the
    fixed effects), called only when there is something to say; ``information``: as
    :func:`unidentified_parameters`.

    Warns
    -----
    SingularHessianWarning
        Some covariance parameters are not identified.
    """
    idx = unidentified_parameters(hessian, k_fe, at_zero, information)
    if not idx.size:
        return
    shown = ", ".join(repr(str(n)) for n in np.asarray(list(names()), dtype=object)[idx])
    warnings.warn(
        f"the Hessian is singular in the covariance parameters {shown}: the data do not "
        "identify them (variance components of the same columns, or one equal to the "
        "group's random effects, trade their variances at the same likelihood), so their "
        "split, standard errors and intervals mean nothing; drop or merge them "
        "(statsmodels does not fit such a model)",
        SingularHessianWarning,
        stacklevel=caller_stacklevel(),
    )
