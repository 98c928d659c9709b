"""Results of a MixedLM fit, with statsmodels' names and conventions.

A results object holds only numbers (estimates, the Hessian, per-group BLUPs), never
an engine, a client or a future, so it pickles and outlives the cluster it came from.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special

from ..errors import SingularHessianWarning
from ..fit.objective import Profile
from ..stats import tril_indices


@dataclass
class ModelNames:
    """The names a results object needs from its model (and keeps after saving)."""

    endog_name: str
    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]
    vc_column_names: list[list[str]]
    group_name: str

    @classmethod
    def from_model(cls, model) -> ModelNames:
        return cls(
            str(model.endog_name),
            [str(x) for x in model.exog_names],
            [str(x) for x in model.exog_re_names],
            [str(x) for x in model.vc_names],
            [[str(c) for c in cols] for cols in model.vc_column_names],
            str(model.group_name),
        )


class MixedLMResults:
    """Estimates and inference for a fitted :class:`~dmixed.MixedLM`.

    ``params`` follows statsmodels: ``[fe_params, vech_lt(Ψ*), τ*]`` with Ψ* = cov_re/scale
    and τ* = vcomp/scale; ``cov_params() = inv(−H)`` with H the Hessian of the
    log-likelihood (σ² profiled, β free) in those coordinates, ``bse_fe`` its β block,
    ``bse_re = sqrt(scale · diag(cov_params())[k_fe:])``.
    """

    def __init__(
        self,
        model,
        stats,
        reml: bool,
        packed: np.ndarray,
        prof: Profile,
        llf: float,
        hessian: np.ndarray | None,
        cov_fe: str,
        optimize_result,
        fit_seconds: float,
    ) -> None:
        self.model = model
        self.names = ModelNames.from_model(model)
        self.spec = getattr(model, "spec", None)
        layout = stats.layout
        self.reml = reml
        self.method = "REML" if reml else "ML"
        self.use_sqrt = model.use_sqrt
        self.k_fe = model.k_fe
        self.k_re = layout.k_re
        self.k_re2 = layout.k_re2
        self.k_vc = layout.k_vc
        self.nobs = int(stats.glob.n)
        self.n_groups = int(len(stats.group_labels))
        self.group_labels = stats.group_labels
        self.group_sizes = stats.group_sizes
        self.packed_params = np.asarray(packed)
        psi, tau = layout.unpack(packed, model.use_sqrt)
        self.scale = float(prof.scale)
        self.cov_re_unscaled = psi
        names = model.param_names()
        self.param_names = names
        self.fe_params = pd.Series(prof.beta, index=self.names.exog_names, name="fe_params")
        self.cov_re = pd.DataFrame(
            self.scale * psi, index=self.names.exog_re_names, columns=self.names.exog_re_names
        )
        self.vcomp = self.scale * tau
        rows, cols = layout.tril()
        self.params = pd.Series(
            np.concatenate([prof.beta, psi[rows, cols], tau]), index=names, name="params"
        )
        self.llf = float(llf)
        self.converged = bool(optimize_result.converged)
        self.n_iter = optimize_result.n_iter
        self.n_evals = optimize_result.n_evals
        self.optimizer_methods = optimize_result.methods
        self.fit_history = optimize_result.history
        self.boundary = list(optimize_result.boundary)
        self.fit_seconds = fit_seconds
        self.data_pass_seconds = stats.data_pass_seconds
        self.cov_fe = cov_fe
        self.n_dropped = int(stats.n_dropped)
        self._a_inv = prof.a_inv
        self._hessian = hessian
        self._boundary_params = layout.boundary_mask(self.boundary, use_sqrt=False)
        self._cov = self._covariance(hessian, prof, cov_fe)
        # BLUPs and their conditional covariances: one kernel call, no data pass
        lam = layout.lam(packed, model.use_sqrt)
        blup, cond = stats.engine.random_effects(lam, prof.w)
        self._blup = blup
        self._blup_cov = cond * self.scale
        self._vc_slot_cols = stats.vc_slot_cols

    # -- covariance of the estimates ---------------------------------------------

    def _covariance(self, hessian, prof: Profile, cov_fe: str) -> np.ndarray:
        """``inv(−H)``, as statsmodels, also on the boundary when that is a covariance.

        A variance at zero sits at the edge of the parameter space.  statsmodels
        inverts the whole Hessian there too, and we match it whenever the result is a
        covariance matrix (positive diagonal).  When it is not, the variances pinned at
        zero get NaN rows and columns and the other entries come from the sub-Hessian
        without them (as statsmodels does for parameters held fixed with ``free``).
        """
        k = len(self.params)
        if hessian is None:
            return np.full((k, k), np.nan)
        cov = _inverse_or_none(-hessian)
        if cov is None or np.any(np.diag(cov) <= 0):
            keep = np.ones(k, dtype=bool)
            keep[self.k_fe :] = ~self._boundary_params
            sub = _inverse_or_none(-hessian[np.ix_(keep, keep)])
            if sub is None:
                warnings.warn(
                    "the Hessian is singular at the optimum; using a pseudo-inverse",
                    SingularHessianWarning,
                    stacklevel=3,
                )
                sub = np.linalg.pinv(-hessian[np.ix_(keep, keep)])
            cov = np.full((k, k), np.nan)
            cov[np.ix_(keep, keep)] = sub
            if np.any(np.diag(sub) <= 0):
                warnings.warn(
                    "the Hessian matrix at the estimated parameter values is not negative definite",
                    UserWarning,
                    stacklevel=3,
                )
        keep = np.isfinite(np.diag(cov))
        if cov_fe == "conditional":
            p = self.k_fe
            cov[:p, :p] = self.scale * prof.a_inv
            cov[:p, p:] = np.where(keep[p:], 0.0, np.nan)
            cov[p:, :p] = cov[:p, p:].T
        return cov

    def cov_params(self) -> pd.DataFrame:
        """Covariance of ``params``: ``inv(−H)`` (statsmodels' convention, see class doc)."""
        return pd.DataFrame(self._cov, index=self.param_names, columns=self.param_names)

    @cached_property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self._cov)), index=self.param_names, name="bse")

    @cached_property
    def bse_fe(self) -> pd.Series:
        return self.bse.iloc[: self.k_fe]

    @cached_property
    def bse_re(self) -> pd.Series:
        return np.sqrt(self.scale * np.diag(self._cov)[self.k_fe :]) * pd.Series(
            1.0, index=self.param_names[self.k_fe :]
        )

    @cached_property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @cached_property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values from the normal distribution (as statsmodels' MixedLM)."""
        return pd.Series(2 * special.ndtr(-np.abs(self.tvalues)), index=self.param_names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals ``params ± z_{1−α/2} · bse``."""
        z = special.ndtri(1 - alpha / 2)
        return pd.DataFrame(
            {0: self.params - z * self.bse, 1: self.params + z * self.bse},
            index=self.param_names,
        )

    @property
    def df_modelwc(self) -> int:
        return len(self.params) + 1

    @property
    def aic(self) -> float:
        """``−2(llf − df)`` with df = number of parameters + 1 (σ²); NaN under REML."""
        if self.reml:
            return float("nan")
        return -2.0 * (self.llf - self.df_modelwc)

    @property
    def bic(self) -> float:
        """``−2 llf + log(nobs) df``; NaN under REML (as statsmodels)."""
        if self.reml:
            return float("nan")
        return -2.0 * self.llf + np.log(self.nobs) * self.df_modelwc

    # -- random effects -----------------------------------------------------------

    def _re_names(self, gi: int) -> tuple[list[str], np.ndarray]:
        """Names of group gi's random effects and their padded slot positions."""
        names = list(self.names.exog_re_names)
        pos = list(range(self.k_re))
        offset = self.k_re
        for comp, table in enumerate(self._vc_slot_cols):
            colnames = self.names.vc_column_names[comp]
            vname = self.names.vc_names[comp]
            for s, col in enumerate(table[gi]):
                if col >= 0:
                    names.append(f"{vname}[{colnames[col]}]")
                    pos.append(offset + s)
            offset += table.shape[1]
        return names, np.array(pos, dtype=np.int64)

    @cached_property
    def random_effects(self) -> dict:
        """Conditional means (BLUPs) of each group's random effects: ``B* u_i``.

        A dict group → Series, as statsmodels; see :meth:`random_effects_frame` for one
        DataFrame.  Finite on the boundary (computed in Λ-form).
        """
        out = {}
        for gi, label in enumerate(self.group_labels):
            names, pos = self._re_names(gi)
            out[label] = pd.Series(self._blup[gi, pos], index=names)
        return out

    @cached_property
    def random_effects_cov(self) -> dict:
        """Conditional covariance of each group's random effects: ``σ̂² Λ K_i⁻¹ Λ'``."""
        out = {}
        for gi, label in enumerate(self.group_labels):
            names, pos = self._re_names(gi)
            out[label] = pd.DataFrame(
                self._blup_cov[gi][np.ix_(pos, pos)], index=names, columns=names
            )
        return out

    def random_effects_frame(self, vc: bool = False, dask: bool = False, npartitions=None):
        """BLUPs as one DataFrame (for many groups, instead of the dict).

        Parameters
        ----------
        vc : bool
            False: one row per group indexed by group, one column per ``exog_re``
            coordinate.  True: long format with columns ``group``, ``component``,
            ``column`` and ``value`` for the variance-component effects.
        dask : bool
            Return a Dask DataFrame (``npartitions`` defaults to one per million rows).
        """
        if not vc:
            frame = pd.DataFrame(
                self._blup[:, : self.k_re],
                index=pd.Index(self.group_labels, name=self.names.group_name),
                columns=self.names.exog_re_names,
            )
        else:
            pieces = []
            offset = self.k_re
            for comp, table in enumerate(self._vc_slot_cols):
                gi, si = np.nonzero(table >= 0)
                colnames = np.asarray(self.names.vc_column_names[comp], dtype=object)
                pieces.append(
                    pd.DataFrame(
                        {
                            "group": self.group_labels[gi],
                            "component": self.names.vc_names[comp],
                            "column": colnames[table[gi, si]],
                            "value": self._blup[gi, offset + si],
                        }
                    )
                )
                offset += table.shape[1]
            frame = (
                pd.concat(pieces, ignore_index=True)
                if pieces
                else pd.DataFrame(columns=["group", "component", "column", "value"])
            )
        if dask:
            import dask.dataframe as dd

            parts = npartitions or max(1, len(frame) // 1_000_000)
            return dd.from_pandas(frame, npartitions=parts)
        return frame

    # -- prediction ----------------------------------------------------------------

    def _predictor(self) -> _Predictor:
        return _Predictor(
            self.fe_params.to_numpy(),
            self.group_labels,
            self._blup,
            self._vc_slot_cols,
            [len(c) for c in self.names.vc_column_names],
            self.k_re,
        )

    def predict(
        self,
        data=None,
        include_random: bool = False,
        *,
        exog=None,
        exog_re=None,
        groups=None,
    ):
        """Predicted means for new (or the fitted) data.

        Parameters
        ----------
        data : pandas or Dask DataFrame, optional
            New data with the columns the formula uses (formula models).  A Dask
            DataFrame gives a lazy Dask Series with its partitioning.
        include_random : bool
            False (default, as statsmodels): the fixed part ``X β̂``.  True: add the
            group's BLUPs, ``X β̂ + Z̃ γ̂_group``; a group not seen in the fit gets the
            population prediction ``X β̂`` (its random effects have mean zero).
        exog, exog_re, groups : array_like, optional
            For models built from arrays: the designs and group labels of new rows.

        Returns
        -------
        ndarray, or a Dask Series for Dask data.
        """
        if data is not None:
            if self.spec is None:
                raise ValueError(
                    "predict(data) needs a model built with from_formula; "
                    "pass exog= (and exog_re=, groups=) instead"
                )
            if _is_dask(data):
                return _predict_dask(self, data, include_random)
            dm = _transform_for_prediction(self.spec, data)
            return self._predictor().predict(dm, include_random)
        if exog is None:
            if self.model is None or getattr(self.model, "rows", None) is None:
                raise ValueError("no data given and the fitted rows are not available")
            rows = self.model.rows
            return self._predictor().predict(rows, include_random)
        x = np.asarray(exog, dtype=np.float64).reshape(len(exog), -1)
        if x.shape[1] != self.k_fe:
            raise ValueError(f"exog has {x.shape[1]} columns; the model has {self.k_fe}")
        fixed = x @ self.fe_params.to_numpy()
        if not include_random:
            return fixed
        if groups is None:
            raise ValueError("include_random=True needs groups=")
        if self.k_vc:
            raise ValueError("include_random with exog= is not available for VC models")
        z = (
            np.ones((x.shape[0], 1))
            if exog_re is None and self.k_re == 1
            else np.asarray(exog_re, dtype=np.float64).reshape(x.shape[0], -1)
        )
        return fixed + self._predictor().random_part(np.asarray(groups), z, [], [])

    @cached_property
    def fittedvalues(self):
        """Fitted values including the predicted random effects (as statsmodels).

        A lazy Dask Series (same partitions as the input) for Dask fits.
        """
        if self.model is not None and getattr(self.model, "source", None) is not None:
            return _predict_dask(self, self.model.source, True)
        return self.predict(include_random=True)

    @cached_property
    def resid(self):
        """``endog − fittedvalues`` (lazy Dask Series for Dask fits)."""
        if self.model is not None and getattr(self.model, "source", None) is not None:
            return _predict_dask(self, self.model.source, True, resid=True)
        if self.model is None or getattr(self.model, "rows", None) is None:
            raise ValueError("the fitted rows are not available (loaded results)")
        return self.model.rows.endog - self.fittedvalues

    # -- likelihood inference --------------------------------------------------------

    def profile_re(self, which: str, values) -> pd.DataFrame:
        """Profile log-likelihood of a variance (``cov_re`` diagonal or ``vcomp``).

        Each point maximizes over σ² and every other covariance parameter with the
        variance held at ``value`` (on the reported scale); no data pass.
        """
        from ..inference import ProfileLikelihood

        return ProfileLikelihood(self, which).curve(values)

    def profile_ci(self, alpha: float = 0.05) -> pd.DataFrame:
        """Profile-likelihood intervals for every variance parameter (rows: names)."""
        from ..inference import ProfileLikelihood

        rows = {}
        for name in list(self.names.exog_re_names) + list(self.names.vc_names):
            prof = ProfileLikelihood(self, name)
            rows[name] = (prof.estimate, *prof.interval(alpha))
        return pd.DataFrame.from_dict(
            rows, orient="index", columns=["estimate", f"{alpha / 2}", f"{1 - alpha / 2}"]
        )

    def compare_lr_test(self, restricted) -> tuple[float, float, int]:
        """Likelihood-ratio test of ``restricted`` (a sub-model) against this fit."""
        from ..inference import compare_lr_test

        return compare_lr_test(restricted, self)

    # -- saving ------------------------------------------------------------------

    def save(self, path) -> None:
        """Write a self-describing results directory, atomically (see :func:`dmixed.load`)."""
        from ..io import save_results

        save_results(self, path)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for key in ("fittedvalues", "resid"):
            state.pop(key, None)  # lazy Dask collections or large arrays: recomputed
        return state

    # -- display -----------------------------------------------------------------

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' coefficient table: fixed effects with z tests, variances with SEs."""
        k = len(self.params)
        tab = np.full((k, 6), np.nan)
        p = self.k_fe
        z = special.ndtri(1 - alpha / 2)
        tab[:p, 0] = self.fe_params
        tab[:p, 1] = self.bse_fe
        tab[:p, 2] = tab[:p, 0] / tab[:p, 1]
        tab[:p, 3] = 2 * special.ndtr(-np.abs(tab[:p, 2]))
        tab[:p, 4] = tab[:p, 0] - z * tab[:p, 1]
        tab[:p, 5] = tab[:p, 0] + z * tab[:p, 1]
        rows, cols = tril_indices(self.k_re)
        cov_re = self.cov_re.to_numpy()
        tab[p : p + self.k_re2, 0] = cov_re[rows, cols]
        tab[p + self.k_re2 :, 0] = self.vcomp
        tab[p:, 1] = np.sqrt(self.scale) * self.bse.to_numpy()[p:]
        return pd.DataFrame(
            tab,
            index=self.param_names,
            columns=["Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2}", f"{1 - alpha / 2}]"],
        )

    def summary(self, alpha: float = 0.05) -> Summary:
        """A statsmodels-style summary (print it, or ``as_text()`` / ``as_html()``)."""
        sizes = self.group_sizes
        info = [
            ("Model:", "MixedLM"),
            ("Dependent Variable:", self.names.endog_name),
            ("No. Observations:", str(self.nobs)),
            ("Method:", self.method),
            ("No. Groups:", str(self.n_groups)),
            ("Scale:", f"{self.scale:.4f}"),
            ("Min. group size:", f"{sizes.min():.0f}" if sizes.size else "0"),
            ("Log-Likelihood:", f"{self.llf:.4f}"),
            ("Max. group size:", f"{sizes.max():.0f}" if sizes.size else "0"),
            ("Converged:", "Yes" if self.converged else "No"),
            ("Mean group size:", f"{sizes.mean():.1f}" if sizes.size else "0"),
            ("", ""),
        ]
        return Summary("Mixed Linear Model Regression Results", info, self.summary_frame(alpha))

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def __repr__(self) -> str:
        return (
            f"<dmixed MixedLMResults: {self.method}, nobs={self.nobs}, groups={self.n_groups}, "
            f"llf={self.llf:.4f}, converged={self.converged}>"
        )


def _is_dask(obj) -> bool:
    return type(obj).__module__.startswith("dask")


def _inverse_or_none(mat: np.ndarray) -> np.ndarray | None:
    try:
        inv = np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        return None
    return inv if np.all(np.isfinite(inv)) else None


def _transform_for_prediction(spec, df: pd.DataFrame):
    """Design matrices of new rows (the response may be absent)."""
    try:
        return spec.transform(df, response=False)
    except TypeError:  # a spec without the prediction mode: the response must be present
        return spec.transform(df)


class _Predictor:
    """What prediction needs from a fit (shipped to Dask workers for lazy predictions)."""

    def __init__(self, fe_params, group_labels, blup, slot_cols, vc_ncols, k_re) -> None:
        self.fe_params = np.asarray(fe_params)
        self.group_labels = group_labels
        self.blup = blup
        self.slot_cols = slot_cols
        self.vc_ncols = vc_ncols
        self.k_re = k_re

    def _slot_lookup(self, comp: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Sorted keys ``group * ncols + column`` of component ``comp`` and their slots."""
        table = self.slot_cols[comp]
        ncols = max(self.vc_ncols[comp], 1)
        gi, si = np.nonzero(table >= 0)
        keys = gi.astype(np.int64) * ncols + table[gi, si]
        order = np.argsort(keys, kind="stable")
        return keys[order], si[order], ncols

    def random_part(self, groups, exog_re, vc_cols, vc_vals) -> np.ndarray:
        """``Z̃_row · γ̂_group`` for every row; 0 for groups (and VC columns) not in the fit.

        A group the fit has not seen gets the population prediction (its random
        effects have mean 0), which is what an unconditional prediction means.
        """
        idx = pd.Index(self.group_labels).get_indexer(pd.Index(np.asarray(groups)))
        seen = idx >= 0
        out = np.zeros(len(idx))
        if self.k_re:
            out[seen] = np.einsum("nj,nj->n", exog_re[seen], self.blup[idx[seen], : self.k_re])
        offset = self.k_re
        for comp, (cols, vals) in enumerate(zip(vc_cols, vc_vals, strict=True)):
            keys, slots, ncols = self._slot_lookup(comp)
            for k in range(cols.shape[1]):
                ok = seen & (cols[:, k] >= 0)
                query = idx[ok].astype(np.int64) * ncols + cols[ok, k]
                pos = np.minimum(np.searchsorted(keys, query), max(keys.size - 1, 0))
                found = (keys[pos] == query) if keys.size else np.zeros(query.size, bool)
                contrib = np.zeros(query.size)
                contrib[found] = (
                    vals[ok, k][found] * self.blup[idx[ok][found], offset + slots[pos[found]]]
                )
                out[ok] += contrib
            offset += self.slot_cols[comp].shape[1]
        return out

    def predict(self, dm, include_random: bool) -> np.ndarray:
        """``X β̂`` (+ ``Z̃ γ̂`` with ``include_random``) for design matrices ``dm``."""
        fixed = dm.exog @ self.fe_params
        if not include_random:
            return fixed
        return fixed + self.random_part(dm.groups, dm.exog_re, dm.vc_cols, dm.vc_vals)


def _fitted_partition(pdf, spec, predictor: _Predictor, include_random: bool, resid: bool):
    """One partition's fitted values (or residuals), indexed like the partition."""
    dm = spec.transform(pdf) if resid else _transform_for_prediction(spec, pdf)
    if dm.n_dropped:
        raise ValueError(
            f"{dm.n_dropped} rows of a partition have missing values: fitted values and "
            "residuals are only defined for complete rows"
        )
    pred = predictor.predict(dm, include_random)
    values = dm.endog - pred if resid else pred
    return pd.Series(values, index=pdf.index, name="resid" if resid else "fittedvalues")


def _predict_dask(results, ddf, include_random: bool, resid: bool = False):
    import dask

    # one task holding the predictor: a dependency of every partition, not a literal
    state = dask.delayed(results._predictor(), pure=True)
    name = "resid" if resid else "fittedvalues"
    return ddf.map_partitions(
        _fitted_partition,
        results.spec,
        state,
        include_random,
        resid,
        meta=pd.Series(dtype="float64", name=name),
    )


class Summary:
    """Text/HTML summary laid out as statsmodels' ``summary2``."""

    def __init__(self, title: str, info: list[tuple[str, str]], table: pd.DataFrame) -> None:
        self.title = title
        self.info = info
        self.table = table

    def _formatted_table(self) -> pd.DataFrame:
        return self.table.map(lambda v: f"{v:.3f}" if np.isfinite(v) else "")

    def as_text(self) -> str:
        lines = []
        for i in range(0, len(self.info), 2):
            (k1, v1), (k2, v2) = (
                self.info[i],
                self.info[i + 1] if i + 1 < len(self.info) else ("", ""),
            )
            lines.append(f"{k1:<20}{v1:>14}    {k2:<20}{v2:>14}".rstrip())
        body = self._formatted_table().to_string()
        width = max(len(s) for s in lines + body.splitlines())
        return (
            "\n".join(
                [
                    self.title.center(width).rstrip(),
                    "=" * width,
                    *lines,
                    "-" * width,
                    body,
                    "=" * width,
                ]
            )
            + "\n"
        )

    def as_html(self) -> str:
        info = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self.info if k)
        return (
            f"<div><h4>{self.title}</h4><table>{info}</table>"
            f"{self._formatted_table().to_html()}</div>"
        )

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()
