"""Wald tests of linear hypotheses of fitted results: the part of
:class:`~dmixed.results.results.MixedLMResults` with statsmodels' ``t_test``,
``wald_test`` and ``f_test`` (the computations are :mod:`dmixed.results.contrasts`').

``wald_test`` and ``f_test`` take statsmodels' arguments in statsmodels' order
(``LikelihoodModelResults``): ``wald_test(r_matrix, cov_p=None, invcov=None,
use_f=None, df_constraints=None, scalar=True)``, ``f_test(r_matrix, cov_p=None,
invcov=None)``; a bool where ``cov_p`` goes (``wald_test(R, True)``, meant as ``use_f``)
is refused, never read as a covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import SpecError
from ..fit.options import check_flag
from ..inference import check_alpha
from .contrasts import ContrastResults, by_name, t_test, wald_test
from .multitest import multipletests
from .terms import factor_term, fe_terms

__all__ = ["Hypotheses", "MultiCompResult", "TermTests", "check_covariance", "refuse_flags"]


@dataclass
class MultiCompResult:
    """Pairwise comparisons of the levels of a factor (statsmodels' ``MultiCompResult``
    of ``t_test_pairwise``).

    Attributes
    ----------
    result_frame : pandas.DataFrame
        One row per pair ``"b-a"`` (level b minus level a): the ``t_test`` table
        (``coef``, ``std err``, ``z`` or ``t``, ``P>|z|`` or ``P>|t|``, ``Conf. Int.
        Low``, ``Conf. Int. Upp.``), then ``pvalue-<method>`` and ``reject-<method>``
        for each correction.
    contrasts : ndarray (pairs, k_fe)
        The rows ``R`` of the hypotheses ``R β = 0`` (over the fixed effects, the
        columns MixedLM's ``t_test`` takes).
    term : str
        The term's name.
    contrast_labels : list of str
        The pairs' labels.
    term_encoding_matrix : ndarray (levels, columns of the term)
        The factor's coding (treatment, sum, ...) as the formula codes it.
    """

    result_frame: pd.DataFrame
    contrasts: np.ndarray
    term: str
    contrast_labels: list
    term_encoding_matrix: np.ndarray


@dataclass
class TermTests:
    """Wald tests of the fixed-effects terms (statsmodels' ``WaldTestResults`` of
    ``wald_test_terms``).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per term (or combination): ``statistic``, ``pvalue``,
        ``df_constraint`` (and ``df_denom`` for F).
    distribution : {"chi2", "F"}
    """

    table: pd.DataFrame
    distribution: str

    @property
    def statistic(self) -> np.ndarray:
        return self.table["statistic"].to_numpy()

    @property
    def pvalues(self) -> np.ndarray:
        return self.table["pvalue"].to_numpy()

    @property
    def df_constraints(self) -> np.ndarray:
        return self.table["df_constraint"].to_numpy()

    def summary_frame(self) -> pd.DataFrame:
        """The table with statsmodels' column names (``chi2``, ``P>chi2``,
        ``df constraint``; ``F``, ``P>F``, …, ``df denom``)."""
        names = [self.distribution, f"P>{self.distribution}", "df constraint", "df denom"]
        return self.table.rename(columns=dict(zip(self.table.columns, names, strict=False)))

    def __str__(self) -> str:
        return self.summary_frame().to_string()


FLAG_HINT = {"cov_p": "a covariance matrix of the parameters", "invcov": "the inverse of R cov R'"}


def refuse_flags(test: str, cov_p, invcov) -> None:
    """Refuse a bool where ``cov_p`` or ``invcov`` goes: dmixed's earlier
    ``wald_test(r_matrix, use_f, scalar)`` order, which statsmodels' would misread.

    Raises
    ------
    SpecError
        Naming the argument the bool landed in and the keyword to use.
    """
    for name, value in (("cov_p", cov_p), ("invcov", invcov)):
        if isinstance(value, (bool, np.bool_)):
            raise SpecError(
                f"{test} got {value!r} for {name}, {FLAG_HINT[name]} (statsmodels' order: "
                f"{test}(r_matrix, cov_p=None, invcov=None, ...)); give a flag by keyword, "
                f"e.g. {test}(r_matrix, use_f={value!r})"
                if test == "wald_test"
                else f"{test} got {value!r} for {name}, {FLAG_HINT[name]} (statsmodels' "
                f"order: {test}(r_matrix, cov_p=None, invcov=None)); f_test is always an F test"
            )


def check_covariance(cov_p, fe_names: list[str], param_names: list[str]) -> np.ndarray:
    """A covariance of the parameters given by the caller (statsmodels' ``cov_p``), as a
    ``(k, k)`` array: ``(k, k)`` as given, ``(k_fe, k_fe)`` (the fixed effects' alone)
    with NaN for the covariance parameters (a hypothesis on those is then refused).  A
    DataFrame labelled with parameter names (statsmodels' ``cov_params()``, in patsy's
    order of the fixed effects) is read by name, each axis put in dmixed's order.

    Raises
    ------
    SpecError
        Something not numeric, or another shape; labels as
        :func:`~dmixed.results.contrasts.by_name` refuses.
    """
    k_fe, k = len(fe_names), len(param_names)
    if isinstance(cov_p, pd.DataFrame):
        options = [list(fe_names), list(param_names)]
        rows = by_name(cov_p.index, options, "cov_p's index")
        columns = by_name(cov_p.columns, options, "cov_p's columns")
        cov_p = cov_p.to_numpy()
        cov_p = cov_p if rows is None else cov_p[rows]
        cov_p = cov_p if columns is None else cov_p[:, columns]
    try:
        cov = np.asarray(cov_p, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(f"cov_p must be a numeric matrix, not {type(cov_p).__name__}") from None
    if cov.shape == (k, k):
        return cov
    if cov.shape == (k_fe, k_fe):
        full = np.full((k, k), np.nan)
        full[:k_fe, :k_fe] = cov
        return full
    raise SpecError(
        f"cov_p must be the {k} x {k} covariance of all the parameters (or {k_fe} x {k_fe}, "
        f"the fixed effects'), got shape {cov.shape}"
    )


class Hypotheses:
    """``t_test``, ``wald_test``, ``f_test`` and ``wald_test_terms`` of results that have
    :meth:`to_state` (the estimates and ``cov_params``), ``names``, ``param_names``,
    ``spec``, ``nobs`` and ``k_fe``."""

    #: statsmodels' ``use_t``: the reference of ``t_test`` (t, else normal) and of
    #: ``wald_test`` (F, else χ²) when they are not told; False for MixedLM
    use_t: bool = False

    def t_test(self, r_matrix, use_t: bool | None = None) -> ContrastResults:
        """Wald tests of each row of ``R β = q`` on the fixed effects (statsmodels'
        ``MixedLMResults.t_test``: normal reference unless ``use_t``).

        Parameters
        ----------
        r_matrix : array_like (m, k_fe), ``(R, q)``, or str
            ``R`` (then ``q = 0``), or text over the fixed effects' names such as
            ``"x1 = 0, x2 = 2 * x1"`` (formulaic's ``LinearConstraints`` grammar).
        use_t : bool, optional
            t on ``nobs − k_fe`` degrees of freedom instead of the normal.

        Returns
        -------
        dmixed.results.contrasts.ContrastResults
            ``effect``, ``sd``, ``tvalue``, ``pvalue``, ``conf_int()``,
            ``summary_frame()``.

        Raises
        ------
        SpecError
            ``R`` without ``k_fe`` columns; text that does not parse over the names;
            text that names a covariance parameter (``"time Var = 0"``: the text form
            reads the fixed effects only, as statsmodels' MixedLM ``t_test``; test
            those with :meth:`f_test` or :meth:`wald_test`); ``use_t`` not None nor a
            Python or numpy bool.
        """
        state = self.to_state()
        state.check_unpenalized("t_test")
        k = self.k_fe
        use_t = check_flag(use_t, "use_t", optional=True)
        if use_t is None:
            use_t = bool(self.use_t)
        return t_test(
            np.asarray(state.fe_params, dtype=np.float64),
            np.asarray(state.cov_params)[:k, :k],
            r_matrix,
            list(self.names.exog_names),
            use_t,
            self.df_resid,
            param_names=list(self.param_names),
        )

    def wald_test(
        self,
        r_matrix,
        cov_p=None,
        invcov=None,
        use_f: bool | None = None,
        df_constraints=None,
        scalar: bool = True,
    ) -> ContrastResults:
        """The joint Wald test of ``R θ = q``: χ² on ``J = rank`` degrees of freedom, or
        F(J, :attr:`df_resid`) with ``use_f`` (statsmodels' ``wald_test``, same
        arguments in the same order).

        Parameters
        ----------
        r_matrix : array_like (m, k_fe) or (m, k), ``(R, q)``, or str
            As :meth:`t_test`, or with a column for every parameter (statsmodels' form).
        cov_p : array_like (k, k) or (k_fe, k_fe), optional
            The covariance of the parameters to use instead of ``cov_params()`` (e.g.
            a robust one); of the fixed effects alone, a hypothesis may only involve
            them.
        invcov : array_like (m, m), optional
            ``(R Σ R')⁻¹`` itself; ``cov_p`` is then not used and ``J = m``.
        use_f : bool, optional
            F instead of χ² (``None``: :attr:`use_t`, False unless set, as statsmodels').
        df_constraints : int, optional
            ``J`` to use, whatever the rank of the constraints.
        scalar : bool, default True
            False: the statistic as a ``(1, 1)`` array (statsmodels' ``scalar``).

        Returns
        -------
        dmixed.results.contrasts.ContrastResults
            See :func:`dmixed.results.contrasts.wald_test`.

        Raises
        ------
        SpecError
            A bool in ``cov_p``'s or ``invcov``'s place (``wald_test(R, True)``: give
            ``use_f=True`` by keyword); ``cov_p`` or ``invcov`` of the wrong shape; a
            hypothesis :func:`~dmixed.results.contrasts.hypothesis` refuses.

        Warns
        -----
        ConstraintRankWarning
            Dependent constraints: pseudo-inverse, ``J`` the rank.
        """
        refuse_flags("wald_test", cov_p, invcov)
        state = self.to_state()
        if cov_p is None:  # the fit's own covariance: none for a penalized estimate
            state.check_unpenalized("wald_test (f_test, wald_test_terms)")
        params = np.asarray(state.params, dtype=np.float64)
        cov = np.asarray(state.cov_params)
        if cov_p is not None:
            cov = check_covariance(cov_p, list(self.names.exog_names), list(self.param_names))
        use_f = check_flag(use_f, "use_f", optional=True)
        if use_f is None:
            use_f = bool(self.use_t)
        return wald_test(
            params,
            cov,
            r_matrix,
            list(self.names.exog_names),
            use_f,
            self.df_resid,
            check_flag(scalar, "scalar"),
            invcov=invcov,
            df_constraints=df_constraints,
            param_names=list(self.param_names),
        )

    def f_test(self, r_matrix, cov_p=None, invcov=None) -> ContrastResults:
        """The joint F test of ``R θ = q``: :meth:`wald_test` with ``use_f=True``
        (statsmodels' ``f_test(r_matrix, cov_p=None, invcov=None)``).

        Raises
        ------
        SpecError
            As :meth:`wald_test` (a bool in ``cov_p``'s place, e.g. ``f_test(R, True)``).
        """
        refuse_flags("f_test", cov_p, invcov)
        return self.wald_test(r_matrix, cov_p=cov_p, invcov=invcov, use_f=True)

    def wald_test_terms(
        self, skip_single: bool = False, extra_constraints=None, combine_terms=None, scalar=True
    ) -> TermTests:
        """A joint Wald test that all the coefficients of a fixed-effects term are 0, for
        every term of the formula (statsmodels' ``wald_test_terms``): χ², or F when
        :attr:`use_t`.  Terms are named as statsmodels names them (``Intercept``,
        ``C(site)``, ``x1:x2``) and come in the formula's order (formulaic's, which
        may differ from patsy's: compare by name); an array model has one term per
        column.

        Parameters
        ----------
        skip_single : bool
            Leave out the terms of a single column.
        extra_constraints : list of (str, array_like), optional
            More hypotheses ``(name, R)`` to test (``R`` as :meth:`wald_test`'s).
        combine_terms : list of str, optional
            For each string, one joint test of the columns of every term whose name
            contains it.
        scalar : bool

        Returns
        -------
        TermTests

        Raises
        ------
        SpecError
            A string of ``combine_terms`` in no term's name; an extra constraint that
            :meth:`wald_test` refuses.
        """
        skip_single = check_flag(skip_single, "skip_single")
        identity = np.eye(len(np.asarray(self.to_state().params)))
        tests = []
        combined: dict[str, list] = {name: [] for name in combine_terms or []}
        for name, columns in fe_terms(self.spec, list(self.names.exog_names)):
            for part, rows in combined.items():
                if part in name:
                    rows.append(identity[columns])
            if not (skip_single and columns.size == 1):
                tests.append((name, identity[columns]))
        for part, rows in combined.items():
            if not rows:
                raise SpecError(
                    f"combine_terms: no term's name contains {part!r} (the terms: "
                    f"{[n for n, _ in fe_terms(self.spec, list(self.names.exog_names))]})"
                )
            tests.append((part, np.vstack(rows)))
        tests += list(extra_constraints or [])
        use_t = bool(self.use_t)
        table = []
        for _, constraint in tests:
            res = self.wald_test(constraint, use_f=use_t, scalar=scalar)
            row = [res.statistic, res.pvalue, int(res.df_num if use_t else res.df_denom)]
            table.append(row + [res.df_denom] if use_t else row)
        columns = ["statistic", "pvalue", "df_constraint"] + (["df_denom"] if use_t else [])
        index = [name for name, _ in tests]
        return TermTests(pd.DataFrame(table, index=index, columns=columns), ["chi2", "F"][use_t])

    def t_test_pairwise(
        self, term_name: str, method="hs", alpha: float = 0.05, factor_labels=None
    ) -> MultiCompResult:
        """Every pairwise difference of the levels of a categorical fixed-effects term,
        with multiple-testing corrected p-values (statsmodels' ``t_test_pairwise``).

        For levels ``i < j`` (in the formula's order of levels) the hypothesis is
        ``μ_j − μ_i = 0``, where ``μ_l`` is the term's contribution to the linear
        predictor on a row of level ``l`` (row ``l`` of the factor's coding times the
        term's coefficients): a :meth:`t_test` of those rows.

        Parameters
        ----------
        term_name : str
            The term, named as statsmodels and :meth:`wald_test_terms` name it
            (``"C(site)"``, or the column's name for a text column).
        method : str or list of str
            The corrections (:func:`dmixed.results.multitest.multipletests`): ``"hs"``
            (Holm–Šidák, default), ``"b"``, ``"s"``, ``"h"``, ``"sh"``, ``"ho"``
            (Hommel), ``"fdr_bh"``, ``"fdr_by"`` (statsmodels' ``"fdr_gbs"`` is not
            offered).
        alpha : float
            The error rate of the ``reject-<method>`` decisions (the intervals of the
            table are at ``1 − 0.05``, as statsmodels').
        factor_labels : list of str, optional
            Labels for the levels (one per level), instead of the levels themselves.

        Returns
        -------
        MultiCompResult
            ``result_frame`` and ``contrasts`` (with ``k_fe`` columns).

        Raises
        ------
        SpecError
            An array model (no formula); no such term; an interaction or a term that is
            not categorical; ``factor_labels`` of the wrong length; a method not
            offered.

        Notes
        -----
        Source: ``statsmodels.stats.contrast.t_test_pairwise`` (statsmodels 0.15). Its
        MixedLM version builds the hypotheses over every parameter (fixed effects and
        covariance parameters) and so fails in MixedLM's ``t_test``, which takes the
        fixed effects' columns only; here they have ``k_fe`` columns.
        """
        alpha = check_alpha(alpha)
        exog_names = list(self.names.exog_names)
        columns, levels, coding = factor_term(self.spec, exog_names, term_name)
        if factor_labels is not None:
            if isinstance(factor_labels, str) or len(factor_labels) != len(levels):
                raise SpecError(
                    f"factor_labels has the wrong length, should be {len(levels)} (one label "
                    f"per level of {term_name!r}: {levels})"
                )
            levels = list(factor_labels)
        first, second = np.triu_indices(len(levels), 1)
        labels = [f"{levels[j]}-{levels[i]}" for i, j in zip(first, second, strict=True)]
        pairs = coding[second] - coding[first]
        contrasts = np.zeros((len(labels), self.k_fe))
        contrasts[:, columns] = pairs
        frame = self.t_test(contrasts).summary_frame(xname=labels)
        pvalues = np.asarray(frame.iloc[:, 3], dtype=np.float64)
        if isinstance(method, tuple):
            raise SpecError(
                f"method: {method!r} is a tuple; give one correction as a str or several "
                "as a list of str (as statsmodels takes them)"
            )
        for meth in method if isinstance(method, list) else [method]:
            reject, corrected = multipletests(pvalues, method=meth, alpha=alpha)
            frame[f"pvalue-{meth}"] = corrected
            frame[f"reject-{meth}"] = reject
        return MultiCompResult(frame, contrasts, term_name, labels, coding)

    @property
    def df_resid(self) -> int:
        """``nobs − rank(exog)`` (statsmodels' ``MixedLMResults.df_resid``); the fit
        refuses a rank-deficient ``exog``, so ``nobs − k_fe``."""
        return int(self.nobs - self.k_fe)
