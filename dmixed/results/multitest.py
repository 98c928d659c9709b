"""Multiple-testing corrections of p-values, for
:meth:`~dmixed.results.results.MixedLMResults.t_test_pairwise`, under statsmodels'
names for them (``multipletests``' ``method``).

Each correction is written from its paper's definition of the adjusted p-value
(the smallest family-wise level, or false discovery rate, at which the hypothesis is
rejected); a hypothesis is rejected where its adjusted p-value is at most ``alpha``.
The two false discovery rate methods are scipy's
:func:`scipy.stats.false_discovery_control`.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError

__all__ = ["METHODS", "multipletests"]

# statsmodels' spellings of each method offered (``method.lower()`` is matched)
METHODS: dict[str, tuple[str, ...]] = {
    "bonferroni": ("b", "bonf", "bonferroni"),
    "sidak": ("s", "sidak"),
    "holm-sidak": ("hs", "holm-sidak"),
    "holm": ("h", "holm"),
    "simes-hochberg": ("sh", "simes-hochberg"),
    "hommel": ("ho", "hommel"),
    "fdr_bh": ("fdr_bh", "fdr_i", "fdr_p", "fdri", "fdrp"),
    "fdr_by": ("fdr_by", "fdr_n", "fdr_c", "fdrn", "fdrcorr"),
}


def _canonical(method) -> str:
    if isinstance(method, str):
        low = method.lower()
        for name, spellings in METHODS.items():
            if low in spellings:
                return name
    known = sorted(s for spellings in METHODS.values() for s in spellings)
    raise SpecError(
        f"method: {method!r} is not a multiple-testing correction dmixed offers; use one of "
        f"{known} (statsmodels' fdr_gbs, two-stage FDR and local FDR methods are "
        "not offered)"
    )


def _sidak(p: np.ndarray, k) -> np.ndarray:
    """``1 − (1 − p)^k``, without the cancellation of ``1 − …`` at small ``p``."""
    with np.errstate(divide="ignore"):  # p = 1: log1p(-1) = -inf, the value 1
        return -np.expm1(k * np.log1p(-p))


def _hommel(p: np.ndarray) -> np.ndarray:
    """Hommel's adjusted p-values of the sorted p-values ``p``: the closed test of
    Simes tests.

    The adjusted p-value of ``H_(r)`` is the largest Simes p-value
    ``min_j |I| p_(j:I) / j`` of an intersection ``I`` containing it.  A Simes
    p-value does not decrease in any of its p-values, so among the ``I`` of size
    ``k`` the largest is that of ``H_(r)`` with the ``k − 1`` largest others: the
    ``k`` largest ``S_k = {m − k + 1, …, m}`` where ``r`` is among them, and
    ``{r} ∪ S_(k−1)`` otherwise.  With ``c_k = min_{j=2..k} k p_(m−k+j) / j`` (the
    Simes terms of ``S_k`` but its smallest), that is ``min(k p_(m−k+1), c_k)`` for
    ``r > m − k`` and ``min(k p_(r), c_k)`` for ``r ≤ m − k``; the adjusted p-value
    is the largest over ``k = 1..m``.  O(m²) work, O(m) memory.
    """
    m = p.size
    adjusted = p.copy()  # k = 1: I = {r}
    j = np.arange(1, m + 1, dtype=np.float64)
    for k in range(2, m + 1):
        # the Simes terms k p_(m−k+j) / j of S_k, j = 1..k
        terms = k * p[m - k :] / j[:k]
        c_k = terms[1:].min()
        value = np.minimum(k * p, c_k)
        value[m - k :] = min(terms[0], c_k)  # r among S_k: I = S_k
        np.maximum(adjusted, value, out=adjusted)
    return adjusted


def multipletests(pvals, method: str = "hs", alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Reject decisions and adjusted p-values of a family of tests.

    With ``p_(1) ≤ … ≤ p_(m)`` the sorted p-values, the adjusted p-value of the
    ``i``-th smallest is

    - ``"b"`` Bonferroni: ``m p_(i)``;
    - ``"s"`` Šidák: ``1 − (1 − p_(i))^m``;
    - ``"h"`` Holm (step-down): ``max_{j ≤ i} (m − j + 1) p_(j)``;
    - ``"hs"`` Holm–Šidák (step-down): ``max_{j ≤ i} 1 − (1 − p_(j))^(m − j + 1)``;
    - ``"sh"`` Simes–Hochberg (step-up): ``min_{j ≥ i} (m − j + 1) p_(j)``;
    - ``"ho"`` Hommel: ``max_{I ∋ i} min_{j ≤ |I|} |I| p_(j:I) / j``, the largest
      Simes p-value of an intersection of hypotheses containing the ``i``-th
      (``p_(j:I)`` the ``j``-th smallest p-value in ``I``; the closed test of Simes
      tests), computed in O(m²);
    - ``"fdr_bh"`` Benjamini–Hochberg: ``min_{j ≥ i} m p_(j) / j``;
    - ``"fdr_by"`` Benjamini–Yekutieli: that times ``Σ_{k=1}^{m} 1/k``;

    each capped at 1.  A hypothesis is rejected where its adjusted p-value is at most
    ``alpha``, which is the paper's step rule.

    Parameters
    ----------
    pvals : array_like (m,)
        The uncorrected p-values, in [0, 1].
    method : str
        statsmodels' name of the correction (above), or another of statsmodels'
        spellings of it (:data:`METHODS`); ``"hs"`` by default, as statsmodels'.
    alpha : float
        The family-wise error rate (or false discovery rate) of the decisions.

    Returns
    -------
    reject : ndarray of bool (m,)
    pvals_corrected : ndarray (m,)
        In the order of ``pvals``.

    Raises
    ------
    SpecError
        A method not offered: statsmodels' ``fdr_gbs``, two-stage and local FDR
        methods are not.

    Notes
    -----
    Sources: Bonferroni, C. E. (1936), *Teoria statistica delle classi e calcolo delle
    probabilità*; Šidák, Z. (1967), JASA 62, 626–633; Holm, S. (1979), Scand. J.
    Statist. 6, 65–70 (and the Šidák form of its step-down rule); Hochberg, Y. (1988),
    Biometrika 75, 800–802 (Simes, R. J. (1986), Biometrika 73, 751–754); Hommel, G.
    (1988), Biometrika 75, 383–386 (the adjusted p-values of its closed test: Wright,
    S. P. (1992), Biometrics 48, 1005–1013); Benjamini,
    Y. and Hochberg, Y. (1995), JRSS B 57, 289–300; Benjamini, Y. and Yekutieli, D.
    (2001), Ann. Statist. 29, 1165–1188.  The last two through
    :func:`scipy.stats.false_discovery_control`.
    """
    name = _canonical(method)
    raw = np.asarray(pvals, dtype=np.float64).ravel()
    m = raw.size
    if name in ("fdr_bh", "fdr_by"):
        # imported here: scipy.stats costs a fresh process (the command line's start
        # included) about a second, and only these two methods need it
        from scipy import stats

        adjusted = (
            stats.false_discovery_control(raw, method="bh" if name == "fdr_bh" else "by")
            if m
            else raw.copy()
        )
        adjusted = np.minimum(adjusted, 1.0)
        return adjusted <= alpha, adjusted
    order = np.argsort(raw, kind="stable")
    p = raw[order]
    # m − i + 1 for the i-th smallest: the number of hypotheses not yet rejected
    remaining = np.arange(m, 0, -1)
    if name == "bonferroni":
        sorted_adj = m * p
    elif name == "sidak":
        sorted_adj = _sidak(p, m)
    elif name == "holm":
        sorted_adj = np.maximum.accumulate(remaining * p)
    elif name == "holm-sidak":
        sorted_adj = np.maximum.accumulate(_sidak(p, remaining))
    elif name == "hommel":
        sorted_adj = _hommel(p)
    else:  # simes-hochberg
        sorted_adj = np.minimum.accumulate((remaining * p)[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(sorted_adj, 1.0)
    return adjusted <= alpha, adjusted
