"""Wald tests of linear hypotheses on the fixed effects (statsmodels' ``t_test`` and
``wald_test`` of ``MixedLMResults``).

A hypothesis ``R β = q`` is given as a matrix ``R`` (``k_fe`` columns; ``q = 0``), a
pair ``(R, q)``, or text such as ``"x1 = 0, x2 = 2 * x1"`` parsed by formulaic's
``LinearConstraints`` (its own grammar of names, numbers, ``+ - * /`` and ``=``:
nothing is evaluated as Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import SpecError

__all__ = ["ContrastResults", "hypothesis", "t_test", "wald_test"]


@dataclass
class ContrastResults:
    """The result of :func:`t_test` or :func:`wald_test` (statsmodels' ``ContrastResults``).

    Attributes
    ----------
    effect : ndarray (m,) or None
        ``R β̂ − q`` of each row (``t_test``), None for a joint test.
    sd : ndarray (m,) or None
        Their standard errors ``sqrt(diag(R Σ R'))``, Σ the fixed effects' covariance.
    statistic : ndarray (m,) or float
        z (or t) values ``effect / sd``; the joint χ² (or F) statistic of ``wald_test``.
    pvalue : ndarray (m,) or float
        Two-sided for ``t_test``, upper tail for ``wald_test``.
    distribution : {"norm", "t", "chi2", "F"}
    df_num, df_denom : float
        Degrees of freedom (rows of ``R``; ``nobs − k_fe`` for "t" and "F", else inf).
    names : list of str
        One label per row of ``R`` (``c0``, ``c1``, ... or the constraint's text).
    """

    effect: np.ndarray | None
    sd: np.ndarray | None
    statistic: np.ndarray | float
    pvalue: np.ndarray | float
    distribution: str
    df_num: float
    df_denom: float
    names: list[str]

    @property
    def tvalue(self):
        """The z or t values (statsmodels' name, whatever the distribution)."""
        return self.statistic

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """``(m, 2)`` Wald intervals of ``effect`` (``t_test`` only)."""
        from scipy import stats

        if self.effect is None or self.sd is None:
            raise SpecError("a joint Wald test has no per-row intervals; use t_test")
        dist = stats.t(self.df_denom) if self.distribution == "t" else stats.norm
        half = dist.ppf(1 - alpha / 2) * self.sd
        return np.column_stack([self.effect - half, self.effect + half])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' table: coef, std err, z (or t), P>|z|, interval bounds."""
        if self.effect is None:
            return pd.DataFrame(
                {"statistic": [self.statistic], "pvalue": [self.pvalue], "df": [self.df_num]},
                index=["joint"],
            )
        stat = "t" if self.distribution == "t" else "z"
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "coef": self.effect,
                "std err": self.sd,
                stat: self.statistic,
                f"P>|{stat}|": self.pvalue,
                f"Conf. Int. Low ({alpha / 2})": ci[:, 0],
                f"Conf. Int. Upp. ({1 - alpha / 2})": ci[:, 1],
            },
            index=self.names,
        )

    def __str__(self) -> str:
        return self.summary_frame().to_string()


def hypothesis(r_matrix, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(R, q, labels)`` of a hypothesis on the fixed effects named ``names``.

    A list (or tuple) of texts is one hypothesis of all their constraints (patsy's
    ``linear_constraint``, which statsmodels uses).

    Raises
    ------
    SpecError
        ``R`` without ``len(names)`` columns; ``q`` of the wrong length; a pair of
        a text and ``q`` (the text holds its values); text that formulaic cannot parse
        or that names something other than a fixed effect.
    """
    k = len(names)
    q = None
    if (
        isinstance(r_matrix, (list, tuple))
        and r_matrix
        and all(isinstance(c, str) for c in r_matrix)
    ):
        r_matrix = ", ".join(r_matrix)
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2:
        r_matrix, q = r_matrix
        if isinstance(r_matrix, str):
            raise SpecError(
                f"a text hypothesis holds its own values: write {r_matrix!r} with "
                f"'= value' instead of the pair (text, {q!r})"
            )
    if isinstance(r_matrix, str):
        from formulaic.utils.constraints import LinearConstraints

        try:
            parsed = LinearConstraints.from_spec(r_matrix, variable_names=list(names))
        except Exception as err:  # formulaic's parse errors are of several classes
            raise SpecError(
                f"cannot read the hypothesis {r_matrix!r} over the fixed effects {list(names)}: "
                f"{err}"
            ) from None
        mat = np.asarray(parsed.constraint_matrix, dtype=np.float64)
        q = np.asarray(parsed.constraint_values, dtype=np.float64)
        labels = [s.strip() for s in str(parsed).splitlines()]
        return mat, q, labels
    mat = np.atleast_2d(np.asarray(r_matrix, dtype=np.float64))
    if mat.ndim != 2 or mat.shape[1] != k:
        raise SpecError(f"r_matrix for t-test should have {k:d} columns (the fixed effects)")
    q = np.zeros(mat.shape[0]) if q is None else np.asarray(q, dtype=np.float64).ravel()
    if q.shape != (mat.shape[0],):
        raise SpecError(f"q has {q.size} values for {mat.shape[0]} rows of r_matrix")
    return mat, q, [f"c{i}" for i in range(mat.shape[0])]


def t_test(fe_params, cov_fe, r_matrix, names, use_t: bool | None, df_resid: float):
    """Row-by-row Wald tests of ``R β = q`` (statsmodels' ``MixedLMResults.t_test``:
    normal reference unless ``use_t``, then t on ``df_resid`` degrees of freedom)."""
    from scipy import stats

    mat, q, labels = hypothesis(r_matrix, names)
    effect = mat @ np.asarray(fe_params) - q
    sd = np.sqrt(np.einsum("ij,jk,ik->i", mat, np.asarray(cov_fe), mat))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = effect / sd
    if use_t:
        pvalue = 2 * stats.t.sf(np.abs(stat), df_resid)
        return ContrastResults(effect, sd, stat, pvalue, "t", 1.0, df_resid, labels)
    pvalue = 2 * stats.norm.sf(np.abs(stat))
    return ContrastResults(effect, sd, stat, pvalue, "norm", 1.0, np.inf, labels)


def wald_test(fe_params, cov_fe, r_matrix, names, use_f: bool, df_resid: float):
    """The joint Wald test of ``R β = q``: ``W = (Rβ̂ − q)'(R Σ R')⁻¹(Rβ̂ − q)`` referred
    to χ² on ``rank(R)`` degrees of freedom, or ``W / rank(R)`` to F(rank, df_resid)
    with ``use_f`` (statsmodels' ``wald_test``).

    Raises
    ------
    SpecError
        ``R Σ R'`` singular (dependent rows of ``R``).
    """
    from scipy import stats

    mat, q, labels = hypothesis(r_matrix, names)
    diff = mat @ np.asarray(fe_params) - q
    middle = mat @ np.asarray(cov_fe) @ mat.T
    rank = np.linalg.matrix_rank(middle)
    if rank < len(diff):
        raise SpecError("the rows of the hypothesis are linearly dependent (R Σ R' is singular)")
    wald = float(diff @ np.linalg.solve(middle, diff))
    if use_f:
        fstat = wald / rank
        pvalue = float(stats.f.sf(fstat, rank, df_resid))
        return ContrastResults(None, None, fstat, pvalue, "F", float(rank), df_resid, labels)
    pvalue = float(stats.chi2.sf(wald, rank))
    return ContrastResults(None, None, wald, pvalue, "chi2", float(rank), np.inf, labels)
