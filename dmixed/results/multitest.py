"""Multiple-testing corrections of p-values (statsmodels' ``multipletests``), for
:meth:`~dmixed.results.results.MixedLMResults.t_test_pairwise`.

The same rules, in the same order of operations, as
``statsmodels.stats.multitest.multipletests`` (and ``fdrcorrection`` for the FDR
methods), so that the corrected p-values agree with statsmodels' to rounding.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError

__all__ = ["METHODS", "multipletests"]

# statsmodels' spellings of each method (``method.lower()`` is matched against these)
METHODS: dict[str, tuple[str, ...]] = {
    "bonferroni": ("b", "bonf", "bonferroni"),
    "sidak": ("s", "sidak"),
    "holm-sidak": ("hs", "holm-sidak"),
    "holm": ("h", "holm"),
    "simes-hochberg": ("sh", "simes-hochberg"),
    "hommel": ("ho", "hommel"),
    "fdr_bh": ("fdr_bh", "fdr_i", "fdr_p", "fdri", "fdrp"),
    "fdr_by": ("fdr_by", "fdr_n", "fdr_c", "fdrn", "fdrcorr"),
    "fdr_gbs": ("fdr_gbs",),
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
        f"{known} (statsmodels' two-stage FDR and local FDR methods are not offered)"
    )


def _step_down_reject(notreject: np.ndarray) -> np.ndarray:
    """Reject up to (not including) the first sorted p-value not rejected."""
    stop = np.flatnonzero(notreject)
    first = notreject.size if stop.size == 0 else int(stop[0])
    out = np.ones(notreject.size, dtype=bool)
    out[first:] = False
    return out


def _step_up_reject(reject: np.ndarray) -> np.ndarray:
    """Reject every sorted p-value up to the last one rejected."""
    out = reject.copy()
    hits = np.flatnonzero(reject)
    if hits.size:
        out[: int(hits[-1])] = True
    return out


def _fdr(p: np.ndarray, alpha: float, dependent: bool) -> tuple[np.ndarray, np.ndarray]:
    n = p.size
    ecdf = np.arange(1, n + 1) / float(n)
    if dependent:
        ecdf = ecdf / np.sum(1.0 / np.arange(1, n + 1))
    reject = _step_up_reject(p <= ecdf * alpha)
    corrected = np.minimum.accumulate((p / ecdf)[::-1])[::-1]
    return reject, corrected


def multipletests(pvals, method: str = "hs", alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Reject decisions and corrected p-values of a family of tests.

    Parameters
    ----------
    pvals : array_like (m,)
        The uncorrected p-values.
    method : str
        statsmodels' name of the correction: ``"b"`` (Bonferroni), ``"s"`` (Šidák),
        ``"hs"`` (Holm–Šidák, the default), ``"h"`` (Holm), ``"sh"`` (Simes–Hochberg),
        ``"ho"`` (Hommel), ``"fdr_bh"`` (Benjamini–Hochberg), ``"fdr_by"``
        (Benjamini–Yekutieli), ``"fdr_gbs"`` (Gavrilov–Benjamini–Sarkar), or another
        of statsmodels' spellings of these (:data:`METHODS`).
    alpha : float
        The family-wise error rate (or false discovery rate) of the decisions.

    Returns
    -------
    reject : ndarray of bool (m,)
    pvals_corrected : ndarray (m,)
        Capped at 1, in the order of ``pvals``.

    Raises
    ------
    SpecError
        A method not offered (statsmodels' two-stage and local FDR methods are not).

    Notes
    -----
    Source: ``statsmodels.stats.multitest.multipletests`` and ``fdrcorrection``
    (statsmodels 0.15), and the references given there.
    """
    name = _canonical(method)
    raw = np.asarray(pvals, dtype=np.float64).ravel()
    order = np.argsort(raw)
    p = raw[order]
    n = p.size
    down = np.arange(n, 0, -1)
    # a p-value of 1 is a valid input: log1p(-1) = -inf and p / (1 - p) = inf give a
    # corrected value of 1 (after the cap), as in statsmodels
    with np.errstate(divide="ignore"):
        if name == "bonferroni":
            reject = p <= alpha / n if n else p > 0
            corrected = p * float(n)
        elif name == "sidak":
            reject = p <= 1 - np.power(1.0 - alpha, 1.0 / n) if n else p > 0
            corrected = -np.expm1(n * np.log1p(-p))
        elif name == "holm-sidak":
            reject = _step_down_reject(p > 1 - np.power(1.0 - alpha, 1.0 / down))
            corrected = np.maximum.accumulate(-np.expm1(down * np.log1p(-p)))
        elif name == "holm":
            reject = _step_down_reject(p > alpha / down)
            corrected = np.maximum.accumulate(p * down)
        elif name == "simes-hochberg":
            reject = _step_up_reject(p <= alpha / down)
            corrected = np.minimum.accumulate((down * p)[::-1])[::-1]
        elif name == "hommel":
            corrected = p.copy()
            # a loop over the tests of the family (pairs of levels), not over data
            for m in range(n, 1, -1):
                cim = np.min(m * p[-m:] / np.arange(1, m + 1.0))
                corrected[-m:] = np.maximum(corrected[-m:], cim)
                corrected[:-m] = np.maximum(corrected[:-m], np.minimum(m * p[:-m], cim))
            reject = corrected <= alpha
        elif name in ("fdr_bh", "fdr_by"):
            reject, corrected = _fdr(p, alpha, dependent=name == "fdr_by")
        else:  # fdr_gbs
            i = np.arange(1, n + 1)
            q = (n + 1.0 - i) / i * p / (1.0 - p)
            corrected = np.minimum.accumulate(np.maximum.accumulate(q)[::-1])[::-1]
            reject = corrected <= alpha
    corrected = np.minimum(corrected, 1.0)
    out_reject = np.empty(n, dtype=bool)
    out_reject[order] = reject
    out_corrected = np.empty(n, dtype=np.float64)
    out_corrected[order] = corrected
    return out_reject, out_corrected
