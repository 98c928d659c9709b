"""Wald tests of linear hypotheses on the fixed effects (statsmodels' ``t_test`` and
``wald_test`` of ``MixedLMResults``).

A hypothesis ``R β = q`` is given as a matrix ``R`` (``k_fe`` columns; ``q = 0``), a
pair ``(R, q)``, or text such as ``"x1 = 0, x2 = 2 * x1"`` parsed by formulaic's
``LinearConstraints`` (its own grammar of names, numbers, ``+ - * /`` and ``=``:
nothing is evaluated as Python).
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..design.messages import clean_message
from ..errors import ConstraintRankWarning, SpecError, caller_stacklevel
from ..inference import check_alpha

__all__ = ["ContrastResults", "by_name", "hypothesis", "t_test", "wald_test"]


@dataclass
class ContrastResults:
    """The result of :func:`t_test` or :func:`wald_test` (statsmodels' ``ContrastResults``).

    Attributes
    ----------
    effect : ndarray (m,) or None
        ``R β̂`` of each row (``t_test``; statsmodels' ``effect``, without ``q``), None
        for a joint test.
    sd : ndarray (m,), ndarray (1, 1) or None
        Their standard errors ``sqrt(diag(R Σ R'))``, Σ the fixed effects' covariance
        (``(1, 1)`` for one row, as statsmodels').
    statistic : ndarray (m,), ndarray (1, 1) or float
        z (or t) values ``(effect − q) / sd`` (``(1, 1)`` for one row, as statsmodels');
        the joint χ² (or F) statistic of ``wald_test`` (a ``(1, 1)`` array with
        ``scalar=False``, as statsmodels').
    pvalue : ndarray (m,), 0-d ndarray or float
        Two-sided for ``t_test`` (0-d for one row, as statsmodels'), upper tail for
        ``wald_test``.
    distribution : {"norm", "t", "chi2", "F"}
    df_num, df_denom : float
        Degrees of freedom: "t" has ``df_denom = df_resid``; "F" ``df_num = J`` (the
        rank of the constraints) and ``df_denom = df_resid``; "chi2" ``df_denom = J``
        (statsmodels' attribute) and ``df_num = J``; "norm" ``df_denom = inf``.
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

    @property
    def fvalue(self):
        """The F statistic (statsmodels' attribute of ``f_test`` and ``wald_test(use_f=True)``).

        Raises
        ------
        AttributeError
            Not an F test (statsmodels' results have no ``fvalue`` then either).
        """
        if self.distribution != "F":
            raise AttributeError(f"a {self.distribution} test has no fvalue")
        return self.statistic

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """``(m, 2)`` Wald intervals of ``effect`` (``t_test`` only)."""
        from scipy import stats

        if self.effect is None or self.sd is None:
            raise SpecError("a joint Wald test has no per-row intervals; use t_test")
        alpha = check_alpha(alpha)
        dist = stats.t(self.df_denom) if self.distribution == "t" else stats.norm
        half = dist.ppf(1 - alpha / 2) * np.ravel(self.sd)
        return np.column_stack([self.effect - half, self.effect + half])

    def summary_frame(self, xname=None, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' table (``ContrastResults.summary_frame(xname=None, alpha=0.05)``,
        its ``summary_params_frame``): coef, std err, z (or t), P>|z| (or P>|t|),
        ``Conf. Int. Low`` and ``Conf. Int. Upp.`` (the same names whatever ``alpha``).

        Parameters
        ----------
        xname : list of str, optional
            The rows' labels (default :attr:`names`).
        alpha : float
            One minus the intervals' level.

        Raises
        ------
        SpecError
            A number for ``xname`` (the earlier ``summary_frame(alpha)``: give ``alpha``
            by keyword).
        """
        if isinstance(xname, (int, float, np.number)):
            raise SpecError(
                f"summary_frame got {xname!r} for xname, the rows' labels (statsmodels' "
                f"order: summary_frame(xname=None, alpha=0.05)); give alpha={xname!r} by keyword"
            )
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
                "std err": np.ravel(self.sd),
                stat: np.ravel(self.statistic),
                f"P>|{stat}|": np.ravel(self.pvalue),
                "Conf. Int. Low": ci[:, 0],
                "Conf. Int. Upp.": ci[:, 1],
            },
            index=self.names if xname is None else list(xname),
        )

    def __str__(self) -> str:
        """The table of a row-by-row test; statsmodels' one line for a joint test."""
        if self.distribution == "F":
            return (
                f"<F test: F={self.statistic!r}, p={self.pvalue}, "
                f"df_denom={self.df_denom:.3g}, df_num={self.df_num:.3g}>"
            )
        if self.distribution == "chi2":
            return (
                f"<Wald test (chi2): statistic={self.statistic}, p-value={self.pvalue}, "
                f"df_denom={self.df_denom:.3g}>"
            )
        return self.summary_frame().to_string()


def by_name(labels, options: list[list[str]], what: str) -> np.ndarray | None:
    """Where each parameter sits among the ``labels`` of a pandas argument: the
    positions that put its columns in the order of the first of ``options`` (lists of
    parameter names, e.g. the fixed effects' and all the parameters') whose names the
    labels are; None for labels that are no names (integers: a positional matrix).

    dmixed orders the fixed effects as formulaic does, which may differ from patsy's
    (statsmodels'), so a matrix labelled with names is read by name, never by position.

    Raises
    ------
    SpecError
        A label that is no parameter's name, a name given twice, or a parameter
        missing from labels that name only some of them.
    """
    labels = list(labels)
    if not any(isinstance(label, str) for label in labels):
        return None
    known = {name for names in options for name in names}
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise SpecError(
            f"{what} is labelled with {unknown}, which name no parameter (the parameters: "
            f"{options[-1]})"
        )
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise SpecError(f"{what} labels the parameters {twice} more than once")
    for names in options:
        if set(labels) <= set(names):
            missing = [name for name in names if name not in labels]
            if missing:
                raise SpecError(
                    f"{what} lacks the parameters {missing} (labelled, it must name every "
                    f"one of {names})"
                )
            return np.array([labels.index(name) for name in names])
    raise AssertionError("unreachable: every label is a name of the last option")


def _pandas_labels(value):
    """The labels of the parameters of a pandas ``r_matrix`` (a DataFrame's columns, a
    Series' index: one row, as numpy reads it), else None."""
    if isinstance(value, pd.DataFrame):
        return value.columns
    if isinstance(value, pd.Series):
        return value.index
    return None


def hypothesis(
    r_matrix, names: list[str], k_total: int | None = None, param_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(R, q, labels)`` of a hypothesis on the fixed effects named ``names``.

    A list (or tuple) of texts is one hypothesis of all their constraints (patsy's
    ``linear_constraint``, which statsmodels uses).  With ``k_total`` (all the
    parameters, the fixed effects first) ``R`` may also have ``k_total`` columns (the
    matrices statsmodels' ``wald_test`` takes); one over the fixed effects gets zero
    columns for the others.  A pandas ``R`` whose columns (a Series' index) are
    parameter names is read by name: its columns are put in the order of ``names``
    (or ``param_names``, all the parameters').  In text, a name holding an operator
    (an interaction's ``x:C(c)[T.b]``) is read as the name, as patsy reads it.

    Raises
    ------
    SpecError
        ``R`` without ``len(names)`` (or ``k_total``) columns; a labelled ``R`` as
        :func:`by_name` refuses; ``q`` of the wrong length; a pair of a text and ``q``
        (the text holds its values); text that formulaic cannot parse or that names
        something other than a fixed effect (or, with ``k_total`` and
        ``param_names``, other than a parameter of ``param_names``).
    """
    mat, q, labels = _fe_hypothesis(r_matrix, names, k_total, param_names)
    if k_total is not None and mat.shape[1] < k_total:
        mat = np.hstack([mat, np.zeros((mat.shape[0], k_total - mat.shape[1]))])
    return mat, q, labels


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` outside backticks and brackets."""
    parts, start, depth, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _pairwise_equalities(text: str) -> str:
    """``text`` with each chained equality ``a = b = c`` written as the consecutive
    pairs ``a = b, b = c``, as patsy's ``linear_constraint`` (statsmodels') reads it:
    formulaic's parser reads the chain as the one constraint ``a - b + c = 0``.  A side
    left empty (``x == 0``) is left to formulaic's parser to refuse."""
    constraints = []
    chained = False
    for part in _top_level_split(text, ","):
        sides = _top_level_split(part, "=")
        if len(sides) <= 2 or not all(side.strip() for side in sides):
            constraints.append(part.strip())
            continue
        chained = True
        constraints.extend(f"{a.strip()} = {b.strip()}" for a, b in itertools.pairwise(sides))
    return ", ".join(constraints) if chained else text


def _quote_names(text: str, names: list[str]) -> str:
    """``text`` with the names that hold an operator of formulaic's grammar (an
    interaction's ``x:C(c)[T.b]``, ``I(x - 1)``) in backticks, so that it reads them as
    names, as patsy's ``linear_constraint`` does; text already quoting is left as is."""
    if "`" in text:
        return text
    quoted = [name for name in names if re.search(r"[:+\-*/ ]", name)]
    if not quoted:
        return text
    # longest first, so that a name inside another is not quoted within it
    pattern = "|".join(re.escape(name) for name in sorted(quoted, key=len, reverse=True))
    return re.sub(rf"(?<![\w.])({pattern})(?![\w.])", r"`\1`", text)


def _names_other_parameters(text: str, names: list[str], param_names: list[str]) -> bool:
    """Whether ``text`` names a parameter of ``param_names`` that is not in ``names``
    (a covariance parameter's ``"time Var"``, ``"g x time Cov"``)."""
    others = [n for n in param_names if n not in names]
    return any(re.search(rf"(?<![\w.`]){re.escape(n)}(?![\w.`])", text) for n in others) or any(
        f"`{n}`" in text for n in others
    )


def _parses(text: str, pool: list[str]) -> bool:
    try:
        _parse_constraints(text, pool)
    except SpecError:
        return False
    return True


def _parse_constraints(text: str, pool: list[str]):
    """formulaic's reading of ``text`` over the parameters ``pool``; a
    :class:`SpecError` naming them where it fails (an unknown name among them)."""
    from formulaic.utils.constraints import LinearConstraints

    try:
        return LinearConstraints.from_spec(
            _pairwise_equalities(_quote_names(text, pool)), variable_names=pool
        )
    except Exception as err:  # formulaic's parse errors are of several classes
        raise SpecError(
            f"cannot read the hypothesis {text!r} over the parameters {pool} (a name "
            f"that is none of them is read as an expression): {clean_message(err)}"
        ) from None


def _fe_hypothesis(r_matrix, names: list[str], k_total: int | None, param_names):
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
        # over the fixed effects (the fit's cov_fe) where it names only them; else,
        # for the Wald tests over all the parameters, as statsmodels reads a text over
        # its params' names ("time Var = 0")
        pool = list(names)
        if k_total is not None and param_names:
            # a name not among the fixed effects: read (and refused) over all of them
            fe_only = _parses(r_matrix, pool)
            if not fe_only or _names_other_parameters(r_matrix, pool, list(param_names)):
                pool = list(param_names)
        parsed = _parse_constraints(r_matrix, pool)
        mat = np.asarray(parsed.constraint_matrix, dtype=np.float64)
        q = np.asarray(parsed.constraint_values, dtype=np.float64)
        labels = [s.strip() for s in str(parsed).splitlines()]
        return mat, q, labels
    mat = np.atleast_2d(np.asarray(r_matrix, dtype=np.float64))
    columns = _pandas_labels(r_matrix)
    if columns is not None and mat.ndim == 2:
        order = by_name(
            columns, [list(names), *([list(param_names)] if param_names else [])], "r_matrix"
        )
        mat = mat if order is None else mat[:, order]
    if mat.ndim != 2 or mat.shape[1] not in (k, k_total):
        if k_total is None:
            raise SpecError(f"r_matrix for t-test should have {k:d} columns (the fixed effects)")
        raise SpecError(
            f"r_matrix for a Wald test should have {k:d} columns (the fixed effects) or "
            f"{k_total:d} (all the parameters)"
        )
    q = np.zeros(mat.shape[0]) if q is None else np.asarray(q, dtype=np.float64).ravel()
    if q.shape != (mat.shape[0],):
        raise SpecError(f"q has {q.size} values for {mat.shape[0]} rows of r_matrix")
    return mat, q, [f"c{i}" for i in range(mat.shape[0])]


def t_test(
    fe_params,
    cov_fe,
    r_matrix,
    names,
    use_t: bool | None,
    df_resid: float,
    param_names: list[str] | None = None,
):
    """Row-by-row Wald tests of ``R β = q`` (statsmodels' ``MixedLMResults.t_test``:
    normal reference unless ``use_t``, then t on ``df_resid`` degrees of freedom).

    As statsmodels' ``ContrastResults``, ``effect`` (and its intervals) is ``R β̂``;
    only the statistic ``(R β̂ − q) / sd`` uses ``q``.  A text hypothesis is read over
    the fixed effects ``names`` only (statsmodels' ``MixedLM.t_test`` takes no
    covariance parameter either): one that names another of ``param_names`` (all the
    parameters' names; ``"time Var"``) is refused with a :class:`SpecError` that points
    to ``f_test``/``wald_test``, which read the covariance parameters' names."""
    from scipy import stats

    if (
        isinstance(r_matrix, str)
        and param_names
        and not _parses(r_matrix, list(names))
        and _names_other_parameters(r_matrix, list(names), list(param_names))
    ):
        others = [n for n in param_names if _names_other_parameters(r_matrix, list(names), [n])]
        raise SpecError(
            f"t_test reads a text hypothesis over the fixed effects only {list(names)} "
            f"(as statsmodels' MixedLM t_test), and {r_matrix!r} names covariance "
            f"parameters ({others}): test those with f_test or wald_test, which read "
            "every parameter's name"
        )
    mat, q, labels = hypothesis(r_matrix, names)
    effect = mat @ np.asarray(fe_params)
    sd = np.sqrt(np.einsum("ij,jk,ik->i", mat, np.asarray(cov_fe), mat))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (effect - q) / sd
    if use_t:
        pvalue = 2 * stats.t.sf(np.abs(stat), df_resid)
        dist, df_denom = "t", df_resid
    else:
        pvalue = 2 * stats.norm.sf(np.abs(stat))
        dist, df_denom = "norm", np.inf
    if mat.shape[0] == 1:
        # statsmodels' shapes for one row: sd and statistic (1, 1), pvalue 0-d
        sd, stat, pvalue = sd[:, None], stat[:, None], np.asarray(pvalue[0])
    return ContrastResults(effect, sd, stat, pvalue, dist, 1.0, df_denom, labels)


def wald_test(
    params,
    cov,
    r_matrix,
    names,
    use_f: bool,
    df_resid: float,
    scalar: bool = True,
    invcov=None,
    df_constraints=None,
    param_names=None,
):
    """The joint Wald test of ``R θ = q`` (statsmodels' ``LikelihoodModelResults.wald_test``,
    which ``MixedLMResults`` inherits): ``W = (Rθ̂ − q)'(R Σ R')⁺(Rθ̂ − q)`` referred to χ²
    on ``J = rank(R Σ R')`` degrees of freedom, or ``W / J`` to F(J, df_resid) with
    ``use_f``.

    Parameters
    ----------
    params : ndarray (k,)
        All the parameters θ, the fixed effects first (``len(names)`` of them).
    cov : ndarray (k, k)
        Their covariance Σ (``cov_params()``, or the caller's ``cov_p``).
    r_matrix : array_like (m, len(names)) or (m, k), ``(R, q)``, or str
        ``R`` over the fixed effects (dmixed's, as ``t_test``) or over all ``k``
        parameters (statsmodels'), or text over the fixed effects' names.
    use_f : bool
    df_resid : float
        The F reference's denominator degrees of freedom.
    scalar : bool, default True
        The statistic as a float; False: as a ``(1, 1)`` array and the p-value as a
        0-d array (statsmodels' ``scalar``).
    invcov : array_like (m, m), optional
        ``(R Σ R')⁻¹`` itself (statsmodels' ``invcov``): ``cov`` is then not used and
        ``J = m``.
    df_constraints : int, optional
        ``J`` itself (statsmodels' ``df_constraints``), whatever the rank.
    param_names : list of str, optional
        The names of all the parameters, by which a labelled ``R`` with a column for
        each of them is read.

    Returns
    -------
    ContrastResults
        ``distribution`` "chi2" (``df_denom = J``, statsmodels' attribute for the χ²
        degrees of freedom) or "F" (``df_num = J``, ``df_denom = df_resid``).

    Raises
    ------
    SpecError
        A hypothesis that :func:`hypothesis` refuses; a covariance with missing values;
        ``invcov`` not ``m × m``; ``df_constraints`` not a positive number.

    Warns
    -----
    ConstraintRankWarning
        ``R Σ R'`` singular (dependent rows of ``R``): pseudo-inverse, ``J`` its rank.
    """
    from scipy import stats

    mat, q, labels = hypothesis(r_matrix, names, k_total=len(params), param_names=param_names)
    used = np.flatnonzero(np.any(mat != 0, axis=0))  # cov_params is NaN where undefined
    mat = mat[:, used]
    diff = (mat @ np.asarray(params)[used] - q)[:, None]
    n_rows = float(mat.shape[0])
    if invcov is None:
        middle = mat @ np.asarray(cov)[np.ix_(used, used)] @ mat.T
        if np.isnan(middle).any():
            raise SpecError(
                "the covariance of the hypothesis has missing values (no standard errors)"
            )
        rank = np.linalg.matrix_rank(middle)
        if rank < n_rows:
            warnings.warn(
                "covariance of constraints does not have full rank. The number of "
                f"constraints is {int(n_rows):d}, but rank is {rank:d}",
                ConstraintRankWarning,
                stacklevel=caller_stacklevel(),
            )
            n_rows = rank
        inverse = np.linalg.pinv(middle)
    else:
        inverse = np.asarray(invcov, dtype=np.float64)
        if inverse.shape != (mat.shape[0], mat.shape[0]):
            raise SpecError(
                f"invcov must be the {mat.shape[0]} x {mat.shape[0]} inverse of the "
                f"hypothesis' covariance R cov R' (one row per constraint), got shape "
                f"{inverse.shape}"
            )
    if df_constraints is not None:
        if isinstance(df_constraints, (bool, np.bool_)) or not (
            isinstance(df_constraints, (int, float, np.integer, np.floating)) and df_constraints > 0
        ):
            raise SpecError(
                f"df_constraints must be a positive number of constraints, not {df_constraints!r}"
            )
        n_rows = df_constraints
    wald = diff.T @ inverse @ diff
    wald = float(np.squeeze(wald)) if scalar else wald
    if use_f:
        fstat = wald / n_rows
        pvalue = np.squeeze(stats.f.sf(fstat, n_rows, df_resid))
        return ContrastResults(None, None, fstat, pvalue, "F", n_rows, df_resid, labels)
    pvalue = np.squeeze(stats.chi2.sf(wald, n_rows))
    return ContrastResults(None, None, wald, pvalue, "chi2", n_rows, n_rows, labels)
