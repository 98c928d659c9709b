"""statsmodels' ``MixedLMParams``: one parameter point of the model, and its packings.

A point is ``(β, Ψ*, τ*)`` on statsmodels' scale: ``fe_params`` β (p,), ``cov_re`` the
random-effects covariance relative to the residual variance ``Ψ* = Ψ/σ²`` (q × q) and
``vcomp`` the variance components relative to it ``τ* = τ²/σ²`` (d,); σ² itself is
profiled out (DESIGN.md §1).  The packed vector is statsmodels' (seed document):

- ``use_sqrt=True``:  ``[β, vech_lt(L), √τ*]`` with ``Ψ* = L L'`` (L lower triangular);
- ``use_sqrt=False``: ``[β, vech_lt(Ψ*), τ*]``;

``β`` only with ``has_fe``, ``vech_lt`` row-major over the lower triangle
(``np.tril_indices``: (0,0), (1,0), (1,1), (2,0), …).

Source: ``statsmodels.regression.mixed_linear_model.MixedLMParams``.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..stats import Layout, n_tril, tril_indices

__all__ = ["MixedLMParams"]


class MixedLMParams:
    """A parameter point ``(fe_params, cov_re, vcomp)`` of a mixed linear model.

    Parameters
    ----------
    k_fe : int
        ``p``, the number of fixed effects.
    k_re : int
        ``q``, the number of random-effect columns (variance components excluded).
    k_vc : int
        ``d``, the number of variance components.

    Attributes
    ----------
    fe_params : ndarray (k_fe,)
        β.
    cov_re : ndarray (k_re, k_re)
        ``Ψ* = Ψ/σ²``, symmetric positive semi-definite.
    vcomp : ndarray (k_vc,)
        ``τ* = τ²/σ²``.
    k_re2 : int
        ``k_re (k_re + 1) / 2``, the lower-triangle entries of ``cov_re``.
    k_tot : int
        ``k_fe + k_re2 + k_vc``, the length of the packed vector with ``has_fe``.

    Notes
    -----
    Source: ``statsmodels.regression.mixed_linear_model.MixedLMParams``.  A new object
    holds zeros (statsmodels' has no values until they are set).
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int) -> None:
        self.k_fe = int(k_fe)
        self.k_re = int(k_re)
        self.k_re2 = n_tril(self.k_re)
        self.k_vc = int(k_vc)
        self.k_tot = self.k_fe + self.k_re2 + self.k_vc
        self.fe_params = np.zeros(self.k_fe)
        self.cov_re = np.zeros((self.k_re, self.k_re))
        self.vcomp = np.zeros(self.k_vc)

    def __repr__(self) -> str:
        return (
            f"MixedLMParams(fe_params={self.fe_params!r}, cov_re={self.cov_re!r}, "
            f"vcomp={self.vcomp!r})"
        )

    @staticmethod
    def from_packed(params, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool) -> MixedLMParams:
        """The point of a packed vector.

        Parameters
        ----------
        params : array_like (k_fe + k_re2 + k_vc,) or (k_re2 + k_vc,)
            ``[β, vech_lt(L), √τ*]`` (``use_sqrt``) or ``[β, vech_lt(Ψ*), τ*]``; β only
            with ``has_fe`` (else the fixed effects are set to zero).  ``k_vc`` is what
            remains after β and the triangle.
        k_fe, k_re : int
        use_sqrt : bool
            ``Ψ* = L L'`` and ``τ* = s²`` from the square-root entries.
        has_fe : bool

        Returns
        -------
        MixedLMParams

        Raises
        ------
        SpecError
            ``params`` not one-dimensional, or shorter than β and the triangle.
        """
        vec = np.asarray(params, dtype=np.float64)
        if vec.ndim != 1:
            raise SpecError(f"params must be a one-dimensional vector, got shape {vec.shape}")
        k_re2 = n_tril(int(k_re))
        head = int(k_fe) if has_fe else 0
        k_vc = vec.size - head - k_re2
        if k_vc < 0:
            raise SpecError(
                f"params has {vec.size} entries; expected at least {head + k_re2} "
                f"({head} fixed effects and {k_re2} for cov_re)"
            )
        out = MixedLMParams(k_fe, k_re, k_vc)
        if has_fe:
            out.fe_params = vec[:head].copy()
        cov, tau = Layout(out.k_re, (1,) * k_vc).unpack(vec[head:], use_sqrt)
        out.cov_re = cov
        out.vcomp = tau
        return out

    @staticmethod
    def from_components(fe_params=None, cov_re=None, cov_re_sqrt=None, vcomp=None) -> MixedLMParams:
        """The point of its parts.

        Parameters
        ----------
        fe_params : array_like (p,), optional
            β; ``None``: no fixed effects.
        cov_re : array_like (q, q), optional
            Ψ*.
        cov_re_sqrt : array_like (q, q), optional
            A lower-triangular ``L`` with ``Ψ* = L L'`` (used when ``cov_re`` is not
            given); neither: no random-effect columns.
        vcomp : array_like (d,), optional
            τ*; ``None``: no variance components.

        Returns
        -------
        MixedLMParams

        Raises
        ------
        SpecError
            ``cov_re`` (or ``cov_re_sqrt``) not square, or a component not of one
            dimension.
        """
        fe = _vector(fe_params, "fe_params")
        tau = _vector(vcomp, "vcomp")
        if cov_re is not None:
            cov = _square(cov_re, "cov_re")
        elif cov_re_sqrt is not None:
            root = _square(cov_re_sqrt, "cov_re_sqrt")
            cov = root @ root.T
        else:
            cov = np.zeros((0, 0))
        out = MixedLMParams(fe.size, cov.shape[0], tau.size)
        out.fe_params, out.cov_re, out.vcomp = fe, cov, tau
        return out

    def copy(self) -> MixedLMParams:
        """A copy (arrays copied)."""
        out = MixedLMParams(self.k_fe, self.k_re, self.k_vc)
        out.fe_params = np.array(self.fe_params, dtype=np.float64)
        out.cov_re = np.array(self.cov_re, dtype=np.float64)
        out.vcomp = np.array(self.vcomp, dtype=np.float64)
        return out

    @property
    def cov_re_sqrt(self) -> np.ndarray:
        """A lower-triangular ``L`` (q × q) with ``L L' = cov_re``: the Cholesky factor
        (positive diagonal), or on the boundary (singular ``cov_re``) a factor with zero
        columns for the zero directions (statsmodels falls back to
        ``diag(√diag(cov_re))`` there, which drops the covariances).

        Raises
        ------
        SpecError
            ``cov_re`` not positive semi-definite, naming its smallest eigenvalue: it has
            no such factor (:meth:`~dmixed.stats.Layout.pack` with ``use_sqrt=True``
            refuses it; ``L L'`` within ``1e-8`` of ``cov_re`` on the correlation scale
            ``√(d_i d_j)``, ``d`` its diagonal, passes).
        """
        rows, cols = tril_indices(self.k_re)
        cov = np.asarray(self.cov_re, dtype=np.float64)
        packed = self.layout().pack(cov, np.zeros(self.k_vc), use_sqrt=True)
        lmat = np.zeros((self.k_re, self.k_re))
        lmat[rows, cols] = packed[: self.k_re2]
        return lmat

    def layout(self) -> Layout:
        """The :class:`~dmixed.stats.Layout` of these dimensions (one slot per component)."""
        return Layout(self.k_re, (1,) * self.k_vc)

    def get_packed(self, use_sqrt: bool, has_fe: bool = False) -> np.ndarray:
        """The packed vector (see the module).

        Parameters
        ----------
        use_sqrt : bool
            ``[vech_lt(L), √τ*]`` with ``L`` = :attr:`cov_re_sqrt`, else
            ``[vech_lt(Ψ*), τ*]``.
        has_fe : bool
            Put β in front.

        Returns
        -------
        ndarray (k_tot,) with ``has_fe``, else (k_re2 + k_vc,)

        Raises
        ------
        SpecError
            With ``use_sqrt``: a negative variance component (it has no square root), or
            a ``cov_re`` that is not positive semi-definite (:attr:`cov_re_sqrt`, naming
            its smallest eigenvalue).
        """
        tau = np.asarray(self.vcomp, dtype=np.float64)
        if use_sqrt and np.any(tau < 0):
            raise SpecError(f"vcomp has a negative entry, which has no square root: {tau}")
        rows, cols = tril_indices(self.k_re)
        if use_sqrt:
            cov = self.cov_re_sqrt[rows, cols]
            tail = np.sqrt(tau)
        else:
            cov = np.asarray(self.cov_re, dtype=np.float64)[rows, cols]
            tail = tau
        parts = [np.asarray(self.fe_params, dtype=np.float64)] if has_fe else []
        return np.concatenate([*parts, cov, tail])

    def check_dimensions(self, k_fe: int, k_re: int, k_vc: int) -> None:
        """Raise :class:`SpecError` unless the point has these dimensions (a model's),
        finite values and a symmetric ``cov_re`` (to 1e-10 of its largest entry: an
        asymmetric one has no meaning, and the likelihood would read one triangle)."""
        have = (self.k_fe, self.k_re, self.k_vc)
        if have != (k_fe, k_re, k_vc) or np.shape(self.fe_params) != (k_fe,):
            raise SpecError(
                f"params has k_fe, k_re, k_vc = {have} (fe_params of shape "
                f"{np.shape(self.fe_params)}); the model has {(k_fe, k_re, k_vc)}"
            )
        if np.shape(self.cov_re) != (k_re, k_re) or np.shape(self.vcomp) != (k_vc,):
            raise SpecError(
                f"params has cov_re of shape {np.shape(self.cov_re)} and vcomp of shape "
                f"{np.shape(self.vcomp)}; the model needs {(k_re, k_re)} and {(k_vc,)}"
            )
        parts = {"fe_params": self.fe_params, "cov_re": self.cov_re, "vcomp": self.vcomp}
        for name, value in parts.items():
            if not np.all(np.isfinite(value)):
                raise SpecError(
                    f"params has non-finite values in {name}: {np.asarray(value).tolist()}"
                )
        cov = np.asarray(self.cov_re, dtype=np.float64)
        if k_re and np.abs(cov - cov.T).max() > 1e-10 * np.abs(cov).max():
            raise SpecError(f"params has a cov_re that is not symmetric: {cov.tolist()}")


def _vector(value, name: str) -> np.ndarray:
    if value is None:
        return np.zeros(0)
    out = np.asarray(value, dtype=np.float64)
    if out.ndim != 1:
        raise SpecError(f"{name} must be one-dimensional, got shape {out.shape}")
    return out


def _square(value, name: str) -> np.ndarray:
    out = np.asarray(value, dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != out.shape[1]:
        raise SpecError(f"{name} must be a square matrix, got shape {out.shape}")
    return out
