"""dmixed.design.evaluate: formulaic's failures become dmixed's errors."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import dmixed

from .frames import make_df


@pytest.mark.parametrize("term", ["I(3)", "np.log(3)", "three", "const(x1)"])
def test_a_term_of_one_value_is_a_formula_error_naming_the_formula(term):
    """A term that evaluates to one value rather than one per row (a constant, a
    caller's function that reduces its column) is refused as dmixed's FormulaError
    naming the formula, not numpy's bare ValueError about shapes."""
    env = {"three": 3.0, "const": lambda v: 5.0}
    df = make_df()
    with pytest.raises(dmixed.FormulaError, match=r"cannot evaluate formula 'y ~ x1 \+ "):
        dmixed.mixedlm(f"y ~ x1 + {term}", df, groups="g", eval_env=env)
    with pytest.raises(dmixed.FormulaError, match=r"cannot evaluate re_formula '1 \+ "):
        dmixed.mixedlm("y ~ x1", df, groups="g", re_formula=f"1 + {term}", eval_env=env)


# Q() of a column name holding a quote character, as patsy (statsmodels) reads it
QUOTED = {
    'y ~ x1 + Q("it\'s")': ("it's", 'Q("it\'s")'),
    "y ~ x1 + Q('say \"hi\"')": ('say "hi"', "Q('say \"hi\"')"),
    'y ~ x1 + Q("say \\"hi\\"")': ('say "hi"', 'Q("say \\"hi\\"")'),
    "y ~ x1 + Q('it\\'s')": ("it's", "Q('it\\'s')"),
}


def _quoted_frame() -> pd.DataFrame:
    df = make_df(300)
    df["y"] += 2.0 * np.random.default_rng(1).normal(size=15)[df["g"]]  # (a group variance)
    return df.assign(**{"it's": df["x2"], 'say "hi"': df["w"], "b'": df["b"]})


def _fit_statsmodels(formula: str, df: pd.DataFrame):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, df, groups=df["g"]).fit(gtol=1e-10)


@pytest.mark.parametrize("formula", list(QUOTED))
def test_q_of_a_name_holding_a_quote_fits_as_statsmodels(formula):
    """``Q("it's")`` failed inside formulaic (its ``Q`` is written back into code
    between double quotes); it is the column, named as the formula writes it."""
    df = _quoted_frame()
    column, name = QUOTED[formula]
    res = dmixed.mixedlm(formula, df, groups="g").fit()
    ref = _fit_statsmodels(formula, df)
    assert list(res.fe_params.index) == list(ref.fe_params.index)
    assert name in res.fe_params.index
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-8)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-6)
    source = {"it's": "x2", 'say "hi"': "w"}[column]
    plain = dmixed.mixedlm(f"y ~ x1 + {source}", df, groups="g").fit()
    assert res.llf == plain.llf
    np.testing.assert_array_equal(res.fe_params.to_numpy(), plain.fe_params.to_numpy())


def test_q_of_names_holding_quotes_on_dask_and_in_factors():
    import dask
    import dask.dataframe as dd

    df = _quoted_frame()
    formula = 'y ~ Q("it\'s") + C(Q("b\'")) + Q(\'say "hi"\'):x1'
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(formula, dd.from_pandas(df, npartitions=3), groups="g").fit()
    here = dmixed.mixedlm(formula, df, groups="g").fit()
    ref = _fit_statsmodels(formula, df)
    assert list(res.fe_params.index) == list(ref.fe_params.index)
    assert list(here.fe_params.index) == list(ref.fe_params.index)
    np.testing.assert_allclose(res.fe_params.to_numpy(), here.fe_params.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-6)


def test_q_of_a_name_holding_a_quote_from_the_command_line(tmp_path):
    from dmixed import cli

    df = _quoted_frame()
    df.to_parquet(tmp_path / "d.parquet", index=False)
    formula = 'y ~ x1 + Q("it\'s") + Q(\'say "hi"\')'
    (tmp_path / "job.yaml").write_text(
        f"data: d.parquet\nformula: '{formula.replace(chr(39), chr(39) * 2)}'\n"
        "groups: g\noutput: out_job\n"
    )
    log = logging.getLogger("dmixed")
    saved = log.handlers[:], log.level, log.propagate
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes = [
                cli.main(
                    ["fit", "--data", "d.parquet", "--formula", formula, "--groups", "g"]
                    + ["--output", "out"]
                ),
                cli.main(["fit", "--job", "job.yaml"]),
            ]
    finally:
        os.chdir(here)
        log.handlers[:] = saved[0]
        log.level, log.propagate = saved[1], saved[2]
    assert codes == [0, 0]
    ref = _fit_statsmodels(formula, df)
    for out in ("out", "out_job"):
        res = dmixed.load(tmp_path / out)
        assert list(res.fe_params.index) == list(ref.fe_params.index)
        np.testing.assert_allclose(res.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-6)


def test_q_still_refuses_code():
    """The whitelist still checks Q's argument before anything is evaluated."""
    df = _quoted_frame()
    with pytest.raises(dmixed.FormulaError):
        dmixed.mixedlm("y ~ Q(__import__('os').getcwd())", df, groups="g")
