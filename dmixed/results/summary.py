"""The printed summary of fitted results, laid out as statsmodels' ``summary2``."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..errors import SpecError
from ..inference import check_alpha
from ..io import ResultsState
from ..stats import tril_indices
from .singular import SINGULAR_NOTE, is_singular
from .varcorr import held_correlations, varcorr_text

__all__ = ["Summary", "coefficient_table", "latex_escape"]

_TITLE = "Mixed Linear Model Regression Results"


def coefficient_table(state: ResultsState, alpha: float = 0.05) -> pd.DataFrame:
    """statsmodels' coefficient table: fixed effects with z tests, variances with SEs.

    One row per parameter (``param_names``); columns ``Coef.``, ``Std.Err.``, ``z``,
    ``P>|z|`` and the ``1 − alpha`` Wald interval.  Variance rows hold ``cov_re``
    (lower triangle) and ``vcomp`` on the reported scale, with standard errors
    ``sqrt(scale) · bse`` and no test; a covariance held at 0 by ``free``
    (:func:`~dmixed.results.varcorr.held_correlations`) keeps its 0 with a NaN standard
    error (statsmodels prints 0: it is no estimate, and the summary's note names it).
    """
    k = len(state.params)
    tab = np.full((k, 6), np.nan)
    p = state.k_fe
    from scipy import special  # here: dmixed imports without scipy

    alpha = check_alpha(alpha)
    z = special.ndtri(1 - alpha / 2)
    tab[:p, 0] = state.fe_params
    tab[:p, 1] = state.bse[:p]
    tab[:p, 2] = tab[:p, 0] / tab[:p, 1]
    tab[:p, 3] = 2 * special.ndtr(-np.abs(tab[:p, 2]))
    tab[:p, 4] = tab[:p, 0] - z * tab[:p, 1]
    tab[:p, 5] = tab[:p, 0] + z * tab[:p, 1]
    rows, cols = tril_indices(state.k_re)
    tab[p : p + state.k_re2, 0] = np.asarray(state.cov_re)[rows, cols]
    tab[p + state.k_re2 :, 0] = state.vcomp
    tab[p:, 1] = np.sqrt(state.scale) * state.bse[p:]
    for a, b in held_correlations(state):  # held at 0 by free: not estimated, no SE
        tab[p + a * (a + 1) // 2 + b, 1] = np.nan  # vech_lt's packing, row by row
    return pd.DataFrame(
        tab,
        index=state.param_names,
        columns=["Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2}", f"{1 - alpha / 2}]"],
    )


#: the note of a fit that held covariances at 0 (``free``): not estimated, no SE or Corr
HELD_NOTE = "Held at 0 by free (not estimated; no standard error or correlation shown): {names}"

#: the summary's line for ``fit_regularized`` results
REGULARIZED_NOTE = (
    "The fixed effects are L1-regularized (fit_regularized, alpha={alpha}) at the "
    "unpenalized fit's covariance parameters: no standard errors, tests or intervals."
)


def _model_info(state: ResultsState) -> list[tuple[str, str]]:
    """The label/value pairs above the table, two per printed line."""
    sizes = state.group_sizes
    return [
        ("Model:", "MixedLM"),
        ("Dependent Variable:", state.names.endog_name),
        ("No. Observations:", str(state.nobs)),
        ("Method:", state.method),
        ("No. Groups:", str(state.n_groups)),
        ("Scale:", f"{state.scale:.4f}"),
        ("Min. group size:", f"{sizes.min():.0f}" if sizes.size else "0"),
        ("Log-Likelihood:", f"{state.llf:.4f}"),
        ("Max. group size:", f"{sizes.max():.0f}" if sizes.size else "0"),
        ("Converged:", "Yes" if state.converged else "No"),
        ("Mean group size:", f"{sizes.mean():.1f}" if sizes.size else "0"),
        ("", ""),
    ]


#: LaTeX's special characters in text, and what stands for each
_LATEX = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "<": "$<$",
    ">": "$>$",
    "|": "$|$",
}


#: Characters a LaTeX ``\\label`` key cannot hold (:meth:`Summary.as_latex`).
_LABEL_REFUSED = "\\{}%#"


def latex_escape(text: str) -> str:
    """``text`` as LaTeX typesets it literally (names such as ``x_1``, ``P>|z|``)."""
    return "".join(_LATEX.get(c, c) for c in text)


def _latex_tabular(rows: list[list[str]], align: str, header: bool) -> str:
    """A centred ``tabular`` of ``rows`` (escaped, columns padded), ruled above and
    below, and under the first row with ``header``."""
    cells = [[latex_escape(v) for v in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(align))]
    lines = [
        " & ".join(
            v.ljust(w) if a == "l" else v.rjust(w)
            for v, w, a in zip(row, widths, align, strict=True)
        )
        + " \\\\"
        for row in cells
    ]
    if header:
        lines.insert(1, "\\hline")
    return "\n".join(
        ["\\begin{center}", f"\\begin{{tabular}}{{{align}}}", "\\hline", *lines, "\\hline"]
        + ["\\end{tabular}", "\\end{center}", ""]
    )


class Summary:
    """Text/HTML/LaTeX summary laid out as statsmodels' ``summary2``.

    Parameters
    ----------
    title : str
    info : list of (str, str)
        Label/value pairs, printed two per line.
    table : DataFrame
        The coefficient table (numbers; printed with three decimals, NaN blank).
    random : str
        The random effects' variances, standard deviations and correlations, and σ̂,
        laid out as lme4's ``VarCorr`` (:func:`~dmixed.results.varcorr.varcorr_text`);
        printed below the table.
    notes : sequence of str
        Lines printed last (a singular fit's :data:`~dmixed.results.singular.SINGULAR_NOTE`,
        as lme4's summary prints it).
    """

    def __init__(
        self,
        title: str,
        info: list[tuple[str, str]],
        table: pd.DataFrame,
        random: str = "",
        notes: tuple[str, ...] = (),
    ) -> None:
        self.title = title
        self.info = info
        self.table = table
        self.random = random
        self.notes = tuple(notes)

    @classmethod
    def of(
        cls,
        state: ResultsState,
        alpha: float = 0.05,
        *,
        yname: str | None = None,
        xname_fe: list[str] | None = None,
        xname_re: list[str] | None = None,
        title: str | None = None,
    ) -> Summary:
        """The summary of fitted results (their state record).

        ``yname``, ``xname_fe`` (k_fe names), ``xname_re`` (one name per covariance
        parameter) and ``title`` replace the defaults, as statsmodels' ``summary``.

        Raises
        ------
        SpecError
            ``xname_fe`` or ``xname_re`` of the wrong length.
        """
        table = coefficient_table(state, alpha)
        names = list(table.index)
        p = state.k_fe
        for given, part, label in (
            (xname_fe, slice(0, p), "xname_fe"),
            (xname_re, slice(p, None), "xname_re"),
        ):
            if given is not None:
                if len(given) != len(names[part]):
                    raise SpecError(f"{label} should be a list of length {len(names[part])}")
                names[part] = list(given)
        table.index = names
        info = _model_info(state)
        if yname is not None:
            info[1] = (info[1][0], str(yname))
        singular = is_singular(state.cov_re_unscaled, state.vcomp, state.scale)
        notes = (SINGULAR_NOTE,) if singular else ()
        if state.regularized is not None:
            notes = (REGULARIZED_NOTE.format(alpha=state.regularized.get("alpha")), *notes)
        held = [str(names[p + a * (a + 1) // 2 + b]) for a, b in held_correlations(state)]
        if held:  # vech_lt's packing, row by row: (a, b) is entry a(a+1)/2 + b
            notes = (*notes, HELD_NOTE.format(names=", ".join(held)))
        return cls(title or _TITLE, info, table, varcorr_text(state), notes)

    @property
    def tables(self) -> list[pd.DataFrame]:
        """statsmodels' ``Summary.tables``: the model information (label, value) and
        the coefficient table as printed (text, indexed by parameter name)."""
        info = pd.DataFrame([pair for pair in self.info if pair[0]])
        return [info, self._formatted_table()]

    def _formatted_table(self) -> pd.DataFrame:
        return self.table.map(lambda v: f"{v:.3f}" if np.isfinite(v) else "")

    def as_text(self) -> str:
        """The summary as fixed-width text."""
        lines = []
        for i in range(0, len(self.info), 2):
            (k1, v1), (k2, v2) = (
                self.info[i],
                self.info[i + 1] if i + 1 < len(self.info) else ("", ""),
            )
            lines.append(f"{k1:<20}{v1:>14}    {k2:<20}{v2:>14}".rstrip())
        body = self._formatted_table().to_string()
        random = ["Random effects:", *self.random.splitlines()] if self.random else []
        width = max(len(s) for s in lines + body.splitlines() + random)
        blocks = [self.title.center(width).rstrip(), "=" * width, *lines, "-" * width, body]
        if random:
            blocks += ["-" * width, *random]
        return "\n".join([*blocks, "=" * width, *self.notes]) + "\n"

    def as_html(self) -> str:
        """The summary as an HTML fragment (for notebooks)."""
        info = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in self.info if k)
        return (
            f"<div><h4>{self.title}</h4><table>{info}</table>"
            f"{self._formatted_table().to_html()}"
            + (f"<pre>Random effects:\n{html.escape(self.random)}</pre>" if self.random else "")
            + "".join(f"<p>{html.escape(note)}</p>" for note in self.notes)
            + "</div>"
        )

    def as_latex(self, label: str = "") -> str:
        """The summary as a LaTeX ``table``, in the form of statsmodels' ``summary2``
        ``as_latex``: the title as caption, ``label`` as its label, the model
        information and the coefficient table as two ``tabular`` s, then the random
        effects' block verbatim after ``\\bigskip``.  Special characters of names and
        of the title are escaped; ``label`` is a cross-reference key, written as given.

        Raises
        ------
        SpecError
            A ``label`` holding one of ``\\ { } % #``, which would end or break the
            ``\\label`` command (escaping them would change the key ``\\ref`` reads).
        """
        bad = sorted({c for c in str(label) if c in _LABEL_REFUSED})
        if bad:
            shown = " ".join(bad)
            raise SpecError(
                f"label {label!r} holds {shown}: a LaTeX label cannot hold any of \\ {{ }} % #"
            )
        pairs = [p for p in self.info if p[0]]
        rows = [
            [*pairs[i], *(pairs[i + 1] if i + 1 < len(pairs) else ("", ""))]
            for i in range(0, len(pairs), 2)
        ]
        table = self._formatted_table()
        body = [["", *map(str, table.columns)]]
        body += [
            [str(name), *values]
            for name, values in zip(table.index, table.to_numpy().tolist(), strict=True)
        ]
        tail = (
            "\\begin{verbatim}\nRandom effects:\n" + self.random + "\n\\end{verbatim}\n"
            if self.random
            else ""
        )
        return (
            "\\begin{table}\n"
            f"\\caption{{{latex_escape(self.title)}}}\n"
            f"\\label{{{label}}}\n"
            + _latex_tabular(rows, "llll", header=False)
            + "\n"
            + _latex_tabular(body, "l" + "r" * len(table.columns), header=True)
            + "\\end{table}\n\\bigskip\n"
            + tail
            + "".join(latex_escape(note) + "\n" for note in self.notes)
        )

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()
