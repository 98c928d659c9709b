"""The one owner of dmixed's packed orders: triangle order, covariance parameters, Λ.

- :func:`n_tril` and :func:`tril_indices`: the lower triangle of a ``q × q`` matrix in
  statsmodels' row-major ``vech_lt`` order, used for the packed parameters, the saved
  statistics and the results alike.
- :class:`Layout`: where each covariance parameter lives in the padded random design,
  their packing, the factor Λ, and the chain rule for the score.

The optimizer sees statsmodels' packed vector (DESIGN.md §1):

- ``use_sqrt=True``:  ``[vech_lt(L), s_1, …, s_d]`` with ``Ψ* = L L'`` and ``τ*_l = s_l²``;
- ``use_sqrt=False``: ``[vech_lt(Ψ*), τ*_1, …, τ*_d]``.

``vech_lt`` is row-major over the lower triangle: (0,0), (1,0), (1,1), (2,0), ….
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import DmixedError, SpecError


def n_tril(q: int) -> int:
    """Entries of the lower triangle of a ``q × q`` matrix: ``q(q+1)/2``."""
    return q * (q + 1) // 2


@functools.lru_cache(maxsize=64)
def tril_indices(q: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each lower-triangle entry, row-major: statsmodels' ``vech_lt``
    order (0,0), (1,0), (1,1), (2,0), … (equal to ``np.tril_indices(q, offset)``;
    ``offset=-1``: below the diagonal).

    Read-only arrays, made once per ``q`` (a fit asks for them dozens of times)."""
    rows, cols = np.tril_indices(q, offset)
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


@functools.lru_cache(maxsize=64)
def tril_flat_indices(q: int) -> np.ndarray:
    """The position of each lower-triangle entry (:func:`tril_indices` order) in a
    ``q × q`` matrix raveled in C order, ``q · row + col``; read-only, made once per
    ``q``."""
    rows, cols = tril_indices(q)
    out = q * rows + cols
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def symmetric_indices(q: int) -> np.ndarray:
    """The position in ``vech_lt`` (:func:`tril_indices` order) of each entry of a
    symmetric ``q × q`` matrix (q, q): indexing a packed vector with it unpacks the
    matrix in one operation; read-only, made once per ``q``."""
    rows, cols = tril_indices(q)
    index = np.empty((q, q), dtype=np.int64)
    index[rows, cols] = index[cols, rows] = np.arange(rows.size)
    index.flags.writeable = False
    return index


@dataclass(frozen=True)
class Layout:
    """Where each covariance parameter lives in the padded random design.

    Attributes
    ----------
    k_re : int
        ``q``, the number of ``exog_re`` columns.
    vc_widths : tuple of int
        ``m_l``: the number of slots of variance component ``l`` (the most columns
        of that component any one group uses).
    """

    k_re: int
    vc_widths: tuple[int, ...]

    @property
    def k_vc(self) -> int:
        return len(self.vc_widths)

    # The derived sizes and indices are cached on the (frozen) instance: the optimizer
    # asks for them dozens of times per fit.

    @functools.cached_property
    def k_re2(self) -> int:
        return n_tril(self.k_re)

    @functools.cached_property
    def r(self) -> int:
        return self.k_re + int(sum(self.vc_widths))

    @functools.cached_property
    def n_params(self) -> int:
        return self.k_re2 + self.k_vc

    @functools.cached_property
    def slot_component(self) -> np.ndarray:
        """Component index of each variance-component slot (length ``r − q``; read-only)."""
        if not self.vc_widths:  # no component (most models): no slot, no numpy calls
            return _NO_SLOTS
        out = np.repeat(np.arange(self.k_vc), self.vc_widths).astype(np.int64)
        out.flags.writeable = False
        return out

    # -- variances at zero ----------------------------------------------------------

    def boundary_labels(self) -> list[str]:
        """The label of each variance that can be at zero: ``"re:i"`` for random effect
        ``i`` (the diagonal of Ψ*), ``"vc:l"`` for variance component ``l``.  These are
        the strings of ``results.boundary`` and of saved results."""
        return [f"re:{i}" for i in range(self.k_re)] + [f"vc:{j}" for j in range(self.k_vc)]

    def boundary_names(self, labels: list[str], re_names, vc_names) -> list[str]:
        """The names of the variances ``labels`` (:meth:`boundary_labels`), as the
        BoundaryWarning and the summary name them: ``re_names[i]`` for ``"re:i"``,
        ``vc_names[l]`` for ``"vc:l"`` (statsmodels' ``exog_re_names`` and
        ``vc_names``, k_re and k_vc of them).

        The labels themselves stay positional: a random effect and a component may
        share a name (``re_formula="1 + x"`` with a component ``x``), and saved results
        and the optimizer read them back by position."""
        out = []
        for label in labels:
            kind, i = self.parse_boundary_label(label)
            out.append(str(re_names[i] if kind == "re" else vc_names[i]))
        return out

    def parse_boundary_label(self, label: str) -> tuple[str, int]:
        """``"re:i"`` → ``("re", i)``, ``"vc:l"`` → ``("vc", l)``; a :class:`DmixedError`
        for a label that names no variance of this layout (e.g. one edited in a saved file)."""
        if label not in self.boundary_labels():
            raise DmixedError(
                f"boundary label {label!r} names no variance of this model "
                f"(expected one of {self.boundary_labels()})"
            )
        kind, index = label.split(":")
        return kind, int(index)

    def boundary_mask(self, labels: list[str], use_sqrt: bool) -> np.ndarray:
        """Which packed parameters are pinned at zero by the variances ``labels``.

        A zero variance of random effect ``i`` is a zero row ``i`` of ``L`` (sqrt
        packing), or a zero row and column ``i`` of Ψ* (plain packing, and the θ =
        [vech(Ψ*), τ*] coordinates of the Hessian); a zero variance component pins its
        ``s_l`` (or ``τ*_l``).
        """
        mask = np.zeros(self.n_params, dtype=bool)
        rows, cols = self.tril()
        for label in labels:
            kind, i = self.parse_boundary_label(label)
            if kind == "re":
                mask[: self.k_re2] |= (rows == i) if use_sqrt else ((rows == i) | (cols == i))
            else:
                mask[self.k_re2 + i] = True
        return mask

    def tril(self) -> tuple[np.ndarray, np.ndarray]:
        """Row-major lower-triangle indices of Ψ*, statsmodels' ``vech_lt`` order."""
        return tril_indices(self.k_re)

    # -- packing ----------------------------------------------------------------

    def unpack(self, packed: np.ndarray, use_sqrt: bool) -> tuple[np.ndarray, np.ndarray]:
        """Return (Ψ*, τ*) from a packed vector (new arrays each call); :class:`SpecError`
        for one of another length (e.g. ``start_params``).

        Up to :data:`UNPACKED_KEPT` unpacked points are kept by their values: a fit
        unpacks its start and its optimum several times each (the optimizer's tests,
        its Newton steps, the results), and a point kept is copied rather than made
        again (the same numbers)."""
        packed = np.asarray(packed, dtype=np.float64)
        if packed.shape != (self.n_params,):
            raise SpecError(
                f"expected {self.n_params} covariance parameters "
                f"({self.k_re2} for cov_re, {self.k_vc} variance components), "
                f"got {packed.shape}"
            )
        key = (packed.tobytes(), bool(use_sqrt))
        kept = self._unpacked
        found = kept.get(key)
        if found is None:
            found = self._unpack(packed, use_sqrt)
            if len(kept) >= UNPACKED_KEPT:
                kept.clear()  # (not one by one: other threads may unpack too)
            kept[key] = found
        return found[0].copy(), found[1].copy()

    @functools.cached_property
    def _unpacked(self) -> dict[tuple[bytes, bool], tuple[np.ndarray, np.ndarray]]:
        """:meth:`unpack`'s kept points (by the packed vector's bytes and the packing);
        never handed out (copies are), nor pickled."""
        return {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_unpacked", None)
        return state

    def _unpack(self, packed: np.ndarray, use_sqrt: bool) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`unpack` of a float64 vector of the layout's length."""
        q = self.k_re
        tail = packed[self.k_re2 :]
        if not use_sqrt:
            # each entry of the triangle read into both of its places; + 0.0 as the
            # sum of the triangle and its transpose adds a zero to each (a −0 is +0)
            return packed[symmetric_indices(q)] + 0.0, tail.copy()
        # the lower triangle placed through its flat positions: the same matrix as an
        # assignment by (rows, cols), for less of its cost (several unpacks a fit)
        flat = np.zeros(q * q)
        flat[tril_flat_indices(q)] = packed[: self.k_re2]
        mat = flat.reshape(q, q)
        return mat @ mat.T, tail**2

    def pack(self, cov_re: np.ndarray, vcomp: np.ndarray, use_sqrt: bool) -> np.ndarray:
        """Packed vector for (Ψ*, τ*); the inverse of :meth:`unpack`."""
        cov_re = np.asarray(cov_re, dtype=np.float64).reshape(self.k_re, self.k_re)
        vcomp = np.asarray(vcomp, dtype=np.float64).reshape(self.k_vc)
        rows, cols = self.tril()
        if use_sqrt:
            try:
                # the likelihood's own test of a Psi (Layout.lam), absolute in its scale
                factor = _psd_factor(cov_re, strict=True)
            except np.linalg.LinAlgError:
                # a factor built anyway would be that of another matrix (a start
                # [[1, 2], [2, 1]] became [[1, 2], [2, 4]]): refused on every route
                smallest = float(np.linalg.eigvalsh((cov_re + cov_re.T) / 2).min())
                raise SpecError(
                    f"cov_re is not positive semi-definite (smallest eigenvalue "
                    f"{smallest:.6g}): it has no square-root factor L with L L' = cov_re, "
                    f"so it has no packing with use_sqrt=True; cov_re = {cov_re.tolist()}"
                ) from None
            return np.concatenate([factor[rows, cols], np.sqrt(np.maximum(vcomp, 0.0))])
        return np.concatenate([cov_re[rows, cols], vcomp])

    def pack_theta(self, theta: np.ndarray, use_sqrt: bool) -> np.ndarray:
        """The packing ``use_sqrt`` of ``θ = [vech_lt(Ψ*), τ*]`` (the plain packing):
        ``pack(*unpack(θ, False), use_sqrt)``, the same numbers.

        Raises ``np.linalg.LinAlgError`` where ``θ`` is outside the parameter space (an
        indefinite Ψ* or a negative τ*), as :meth:`lam` of ``θ`` does: one factor of Ψ*
        serves both the check and the square-root packing.
        """
        psi, tau = self.unpack(theta, use_sqrt=False)
        if np.any(tau < 0):
            raise np.linalg.LinAlgError("negative variance component")
        factor = _psd_factor(psi, strict=True)
        rows, cols = self.tril()
        if use_sqrt:
            return np.concatenate([factor[rows, cols], np.sqrt(np.maximum(tau, 0.0))])
        return np.concatenate([psi[rows, cols], tau])

    def lam(self, packed: np.ndarray, use_sqrt: bool) -> np.ndarray:
        """The relative covariance factor Λ = blockdiag(L, s_1 I, …, s_d I).

        With ``use_sqrt=False`` a factor of Ψ* is computed; an indefinite Ψ* raises
        ``np.linalg.LinAlgError`` (the likelihood is not defined there).
        """
        packed = np.asarray(packed, dtype=np.float64)
        q = self.k_re
        lam = np.zeros((self.r, self.r))
        rows, cols = self.tril()
        if use_sqrt:
            lam[rows, cols] = packed[: self.k_re2]
            svals = packed[self.k_re2 :]
        else:
            psi, tau = self.unpack(packed, use_sqrt=False)
            if np.any(tau < 0):
                raise np.linalg.LinAlgError("negative variance component")
            lam[:q, :q] = _psd_factor(psi, strict=True)
            svals = np.sqrt(tau)
        idx = np.arange(q, self.r)
        lam[idx, idx] = svals[self.slot_component]
        return lam

    def basis(self) -> np.ndarray:
        """``E_j = ∂B*/∂θ_j`` for θ = [vech_lt(Ψ*), τ*] (m × r × r); read-only and made
        once per layout up to :data:`BASIS_KEPT_MAX_R` (a fit asks for it at its start,
        its objective and its Newton steps), else a new array each call."""
        if self.r <= BASIS_KEPT_MAX_R:
            return _kept_basis(self.k_re, tuple(self.vc_widths))
        return _basis(self)

    # -- chain rule ---------------------------------------------------------------

    def score_packed(
        self, d_psi: np.ndarray, d_tau: np.ndarray, packed: np.ndarray, use_sqrt: bool
    ) -> np.ndarray:
        """Gradient in the packed coordinates.

        Parameters
        ----------
        d_psi : ndarray (q, q)
            Symmetric ``D`` with ``dℓ = Σ_ab D_ab dΨ*_ab`` (entries treated as free).
        d_tau : ndarray (d,)
            ``∂ℓ/∂τ*_l``.

        Notes
        -----
        ``∂ℓ/∂L = 2 D L`` (lower triangle) and ``∂ℓ/∂s_l = 2 s_l ∂ℓ/∂τ*_l``, evaluated at
        the optimizer's own ``L`` and ``s`` (statsmodels re-factors Ψ* here, which
        flips signs; DESIGN.md §4).  Without the square root, an off-diagonal vech
        entry stands for both (a, b) and (b, a): ``∂ℓ/∂Ψ*_ab = 2 D_ab``.
        """
        rows, cols = self.tril()
        packed = np.asarray(packed, dtype=np.float64)
        if use_sqrt:
            lmat = np.zeros((self.k_re, self.k_re))
            lmat[rows, cols] = packed[: self.k_re2]
            g_l = 2.0 * d_psi @ lmat
            return np.concatenate([g_l[rows, cols], 2.0 * packed[self.k_re2 :] * d_tau])
        mult = np.where(rows == cols, 1.0, 2.0)
        return np.concatenate([mult * d_psi[rows, cols], d_tau])


def _psd_factor(mat: np.ndarray, strict: bool = False) -> np.ndarray:
    """A lower-triangular ``L`` with ``L L' = mat`` for positive semi-definite ``mat``.

    Cholesky where it succeeds; on the boundary (singular ``mat``) an LDL'-style
    pivot-free factor built column by column, so zero variances give zero columns.
    """
    q = mat.shape[0]
    if q == 0:
        return np.zeros((0, 0))
    try:
        return np.linalg.cholesky(mat)
    except np.linalg.LinAlgError:
        pass
    scale = max(float(np.max(np.abs(np.diag(mat)))), 1e-300)
    tol = 1e-12 * scale
    lmat = np.zeros_like(mat)
    work = np.array(mat, dtype=np.float64)
    for j in range(q):
        d = work[j, j] - lmat[j, :j] @ lmat[j, :j]
        if d < -tol * 1e3 and strict:
            raise np.linalg.LinAlgError("covariance matrix is not positive semi-definite")
        if d <= tol:
            continue
        lmat[j, j] = np.sqrt(d)
        lmat[j + 1 :, j] = (work[j + 1 :, j] - lmat[j + 1 :, :j] @ lmat[j, :j]) / lmat[j, j]
    if strict and not np.allclose(lmat @ lmat.T, mat, atol=1e-8 * scale):
        raise np.linalg.LinAlgError("covariance matrix is not positive semi-definite")
    return lmat


#: :attr:`Layout.slot_component` of a layout without variance components (read-only)
_NO_SLOTS = np.zeros(0, dtype=np.int64)
_NO_SLOTS.flags.writeable = False

#: :meth:`Layout.unpack` keeps this many points (a fit's start and its optimum)
UNPACKED_KEPT = 2

#: :meth:`Layout.basis` is kept (read-only) for layouts of at most this many random-design
#: columns (``m r²`` floats: 18 KB at most), those of the small fits that ask for it often
BASIS_KEPT_MAX_R = 8


@functools.lru_cache(maxsize=64)
def _kept_basis(k_re: int, vc_widths: tuple[int, ...]) -> np.ndarray:
    """:func:`_basis` of the layout ``(k_re, vc_widths)``, read-only (cached)."""
    out = _basis(Layout(k_re, vc_widths))
    out.flags.writeable = False
    # a view of the read-only array: its flag cannot be set writeable again (an array
    # that owns its data can), so no caller changes the basis every fit shares
    return out.view()


def _basis(layout: Layout) -> np.ndarray:
    """``E_j`` of :meth:`Layout.basis` for ``layout`` (a new array)."""
    out = np.zeros((layout.n_params, layout.r, layout.r))
    rows, cols = layout.tril()
    for j, (a, b) in enumerate(zip(rows, cols, strict=True)):
        out[j, a, b] = 1.0
        out[j, b, a] = 1.0
    comp = layout.slot_component
    for l_ in range(layout.k_vc):
        idx = layout.k_re + np.flatnonzero(comp == l_)
        out[layout.k_re2 + l_, idx, idx] = 1.0
    return out
