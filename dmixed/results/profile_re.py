"""statsmodels' ``MixedLMResults.profile_re``: the log-likelihood with one relative
variance held on a grid, from the statistics a fit already holds (no data pass).

statsmodels refits the model at each grid value with ``free`` holding that element of
``cov_re`` (its random effects permuted so that it comes first) or of ``vcomp``, every
other covariance parameter free and β, σ² profiled; here the same maximum is found by
L-BFGS-B over the square-root packing on the fit's statistics.  A fit with ``free``
keeps its constraint, as statsmodels adds the held element to the fit's ``freepat``
(permuted with the random effects): the parameters the fit held stay at the fit's values.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..fit.coordinates import Coordinates
from ..fit.profiled import ProfiledObjective

__all__ = ["profile_re"]


def profile_re(results, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5, dist_high=1.0):
    """statsmodels' ``MixedLMResults.profile_re``: the profile of one relative variance.

    ``Ψ*_jj`` (``vtype="re"``, ``j = re_ix``, an index or a name of ``exog_re``) or
    ``τ*_l`` (``vtype="vc"``, ``re_ix`` the component's name) is held at each of
    ``linspace(low, v̂*, num_low + 1)`` and ``linspace(v̂*, high, num_high + 1)[1:]`` with
    ``low = (v̂ − dist_low)/σ̂²``, ``high = (v̂ + dist_high)/σ̂²`` (``v̂`` the variance on
    the data's scale), every other covariance parameter free, β and σ² profiled, by the
    fit's criterion (REML or ML), as statsmodels' refits with ``free``.  The
    parameters a fit with ``free`` held (``results.held``) stay held at the fit's
    values (in the square-root factor of the permuted ``Ψ*``, as statsmodels').

    Returns
    -------
    ndarray (num_low + num_high + 1, 2)
        Column 0: the held value times that refit's σ̂² (statsmodels' column); column 1:
        the refit's log-likelihood.

    Raises
    ------
    SpecError (a ValueError)
        ``vtype`` not ``"re"`` or ``"vc"``; an unknown ``re_ix``; ``dist_low`` reaching
        a negative variance; results without their model; a fit with ``free`` and
        ``use_sqrt=False`` holding an entry of ``Ψ*`` that the square-root factor of the
        permuted ``Ψ*`` cannot hold (anything but a covariance at 0 with the profiled
        effect, or any covariance at 0 with two random effects).
    """
    if vtype not in ("re", "vc"):
        raise SpecError(f"vtype must be 're' or 'vc', got {vtype!r}")
    model = results.fitted_model
    if model is None:
        raise SpecError("profile_re needs the fitted model's statistics (not loaded results)")
    names = results.names
    index = _profile_index(names, re_ix, vtype)
    scale = float(results.scale)
    if vtype == "re":
        v_hat = float(np.asarray(results.cov_re)[index, index])
    else:
        v_hat = float(np.asarray(results.vcomp)[index])
    low, high = (v_hat - dist_low) / scale, (v_hat + dist_high) / scale
    if low <= 0:
        raise SpecError(
            "dist_low is too large and would result in a negative variance. Try a smaller value."
        )
    ru0 = v_hat / scale
    values = np.concatenate(
        [np.linspace(low, ru0, num_low + 1), np.linspace(ru0, high, num_high + 1)[1:]]
    )
    prof = _RelativeProfile(results, vtype, index)
    return np.array([prof(v) for v in values])


def _profile_index(names, re_ix, vtype: str) -> int:
    pool = list(names.exog_re_names if vtype == "re" else names.vc_names)
    if vtype == "re" and isinstance(re_ix, int | np.integer) and 0 <= int(re_ix) < len(pool):
        return int(re_ix)
    if re_ix in pool:
        return pool.index(re_ix)
    if vtype == "re":
        raise SpecError(f"re_ix {re_ix!r} is not a random effect of the model: {pool}")
    # statsmodels names a component by its vc_formula key, never by position
    raise SpecError(
        f"re_ix {re_ix!r} is not a variance component of the model; pass its name, one of {pool}"
    )


class _RelativeProfile:
    """max ℓ (fit's criterion, σ² profiled) with one ``Ψ*_jj`` or ``τ*_l`` held: the
    random effects permuted so that j comes first (``Λ = P'L̃``, ``Ψ*_jj = L̃_00²``),
    the others free in the square-root packing, from the fit's estimates."""

    def __init__(self, results, vtype: str, index: int) -> None:
        stats = results.fitted_model.statistics(client=results.fitted_model.cached_client)
        layout = stats.fit_layout
        q = layout.k_re
        perm = np.arange(q)
        if vtype == "re":
            perm[[0, index]] = perm[[index, 0]]
        # relative to σ²/s_w (the weights as summed): free of the weights' unit (with
        # weights near 1e77, Ψ* near 1e-77 left L-BFGS-B where it started)
        coords = Coordinates.model(stats.columns.in_weights_unit(), layout)
        self.unit = stats.columns.weight_scale
        base = coords.re_map if coords.re_map is not None else np.eye(q)
        self.objective = ProfiledObjective(
            stats.engine,
            stats.glob,
            layout,
            bool(results.reml),
            True,
            re_map=base @ np.eye(q)[perm].T,
        )
        self.vc_scale = coords.columns.vc_scales(layout.k_vc)
        self.coords, self.n, self.reml = coords, stats.glob.n, bool(results.reml)
        scale = results.scale / self.unit
        psi = np.asarray(results.cov_re, dtype=np.float64) / scale
        tau = np.asarray(results.vcomp, dtype=np.float64) / scale * self.vc_scale**2
        self.start = self._sqrt_start(layout, psi[np.ix_(perm, perm)], tau)
        self.pinned = 0 if vtype == "re" else layout.k_re2 + index
        self.factor = 1.0 if vtype == "re" else float(self.vc_scale[index])
        self.held = _held_in_profile(results, layout, perm)

    @staticmethod
    def _sqrt_start(layout, psi: np.ndarray, tau: np.ndarray) -> np.ndarray:
        lam = layout.lam(layout.pack(psi, tau, use_sqrt=False), use_sqrt=False)
        rows, cols = layout.tril()
        return np.concatenate([lam[rows, cols], np.sqrt(tau)])

    def __call__(self, value: float) -> tuple[float, float]:
        from scipy import optimize  # noqa: PLC0415  (dmixed imports without scipy)

        free = np.ones(self.start.size, dtype=bool) if self.held is None else ~self.held
        free[self.pinned] = False
        held = np.sqrt(value * self.unit) * self.factor  # value: the model's τ* or Ψ*_jj
        full = self.start.copy()
        full[self.pinned] = held

        def negative(x):
            full[free] = x
            ev = self.objective.evaluate(full)
            if not np.isfinite(ev.llf):
                return np.inf, np.zeros(x.size)
            return -ev.llf, -ev.score[free]

        res = optimize.minimize(
            negative,
            self.start[free],
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-15},
        )
        full[free] = res.x
        ev = self.objective.evaluate(full)
        llf = self.coords.llf(ev.llf, self.n, self.reml)
        return value * self.unit * self.coords.scale(ev.prof.scale), llf


def _held_in_profile(results, layout, perm: np.ndarray) -> np.ndarray | None:
    """The fit's held parameters (``results.held``, plain packing of ``Ψ*``) as a mask
    over the profile's packing (square-root factor of ``P'Ψ*P``, then ``τ*``); None
    where the fit held none.

    With ``use_sqrt`` (statsmodels' default) the fit held entries of the factor, as
    statsmodels' profile holds those of the permuted one.  With ``use_sqrt=False`` it
    held entries of ``Ψ*``: a covariance held at 0 is the factor's entry held at 0 only
    in the factor's first column (the profiled effect's), or with two random effects."""
    held = results.held
    if held is None:
        return None
    q = layout.k_re
    rows, cols = layout.tril()
    position = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows, cols, strict=True))}
    out = held.copy()
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        a, b = int(perm[r]), int(perm[c])  # perm is a swap: its own inverse
        a, b = max(a, b), min(a, b)
        out[position[(a, b)]] = held[i]
        if held[i] and not results.use_sqrt:
            value = float(np.asarray(results.cov_re)[r, c])
            if r == c or value != 0.0 or not (b == 0 or q == 2):
                name = f"cov_re[{r}, {c}]"
                raise SpecError(
                    f"profile_re of a fit with free= and use_sqrt=False: the held {name} "
                    f"(= {value:.6g}) cannot be held in the square-root factor of the "
                    "permuted covariance; fit with use_sqrt=True (statsmodels' default) "
                    "to profile it"
                )
    return out
