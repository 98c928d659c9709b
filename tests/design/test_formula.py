"""dmixed.design.formula: formulas checked node by node, refusals and their messages."""

from __future__ import annotations

import contextlib
import decimal
import io
import logging
import os
import re
import shlex
import types
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import build_spec
from dmixed.design.formula import analyze_terms, fixed_columns_at_least, parse_formula
from dmixed.errors import FormulaError, TextConversionWarning

from .frames import make_df


def test_error_unknown_column_lists_close_matches():
    df = make_df()
    with pytest.raises(ValueError, match=r"unknown column 'x3'; close matches: ") as exc:
        build_spec(df, "y ~ x3", groups="g")
    assert "'x1'" in str(exc.value) and "'x2'" in str(exc.value)
    with pytest.raises(ValueError, match=r"re_formula .*unknown column 'xx1'.*'x1'"):
        build_spec(df, "y ~ x1", groups="g", re_formula="1 + xx1")
    with pytest.raises(ValueError, match=r"vc_formula\['c'\].*unknown column 'clz'.*'cls'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(clz)"})
    with pytest.raises(ValueError, match=r"unknown function foo\(\)"):
        build_spec(df, "y ~ foo(x1)", groups="g")


@pytest.mark.parametrize(
    ("term", "name"),
    [
        ("C(cs)", "cs"),
        ("I(cs)", "cs"),
        ("C(scale)", "scale"),
        ("I(x1 * log)", "log"),
    ],
)
def test_a_transforms_name_read_as_a_value_is_a_column_the_data_lacks(term, name):
    """``C(cs)`` with no column ``cs`` once read formulaic's spline function ``cs`` as
    the value: "the categorical factor 'C(cs)' is derived from an expression" (``I(cs)``:
    "unsupported operand type(s) for *: 'int' and 'function'").  As patsy reads it, and as
    the plain term ``cs``: an unknown column, with close matches; with the column, the
    column (contrasts stay values: ``C(a, Sum)``)."""
    df = make_df()
    with pytest.raises(ValueError, match=rf"unknown column '{name}'"):
        build_spec(df, f"y ~ x1 + {term}", groups="g")
    spec = build_spec(df.assign(**{name: df["b"]}), f"y ~ x1 + C({name}) + C(a, Sum)", groups="g")
    assert any(n.startswith(f"C({name})[T.") for n in spec.exog_names), spec.exog_names
    assert any(n.startswith("C(a, Sum)[S.") for n in spec.exog_names), spec.exog_names


@pytest.mark.parametrize(
    ("formula", "name"),
    [
        ("y ~ C + C(a)", "C"),
        ("y ~ x1 + C(C)", "C"),
        ("y ~ log + log(x2)", "log"),
        ("y ~ I(log * 2) + np.log(x2) + log(x2)", "log"),
    ],
)
def test_a_column_named_as_a_transform_the_formula_uses_is_refused_naming_it(formula, name):
    """A formula that reads column ``C`` and calls ``C()`` once failed in evaluation
    with "'Series' object is not callable" (the data come first, as in patsy, whose
    error it is too): refused before, naming the column and how to rename it; a column
    of that name the formula does not read changes nothing."""
    df = make_df()
    data = df.assign(**{name: df["x1"]})
    with pytest.raises(ValueError, match=rf"column '{name}' has the name of the transform"):
        build_spec(data, formula, groups="g")
    spec = build_spec(data, "y ~ x1 + C(a, Sum) + np.exp(x2) + log(x2)", groups="g")
    assert "np.exp(x2)" in spec.exog_names


@pytest.mark.parametrize("formula", ["y ~ np.exp(x1)", "y ~ np + np.log(x2)", "y ~ I(np.pi * x1)"])
def test_a_column_named_np_refuses_the_module_naming_the_column(formula):
    """A column ``np`` shadows numpy in a formula (the data come first, as in patsy,
    where ``np.exp`` fails with "'Series' object has no attribute 'exp'"): refused
    saying that the column shadows the module, not that ``np.exp()`` "may not be
    elementwise"; a column method it has (``np.abs()``) is the column's, as in patsy."""
    df = make_df()
    data = df.assign(np=df["x2"])
    with pytest.raises(ValueError, match=r"column 'np' has the name of the module np") as exc:
        build_spec(data, formula, groups="g")
    assert "may not be elementwise" not in str(exc.value)
    assert "rename(columns={'np': 'np_'})" in str(exc.value)
    spec = build_spec(data, "y ~ np.abs() + x1", groups="g")
    assert "np.abs()" in spec.exog_names
    assert "np.exp(x1)" in build_spec(df, "y ~ np.exp(x1)", groups="g").exog_names


@pytest.mark.parametrize(
    ("formula", "re_formula", "reader", "caller"),
    [
        ("y ~ x1 + C(a)", "~C", "re_formula '~C'", "formula 'y ~ x1 + C(a)'"),
        ("y ~ C + x1", "~C(a)", "formula 'y ~ C + x1'", "re_formula '~C(a)'"),
    ],
)
def test_a_column_read_in_one_formula_named_as_a_transform_another_calls(
    formula, re_formula, reader, caller
):
    """``re_formula="~C"`` with a formula calling ``C(a)`` once failed in evaluation
    ("'Series' object is not callable"): the fixed and random formulas are evaluated on
    one frame, where the name reads the column (patsy fails alike).  Refused before,
    naming the column and both formulas; variance-component formulas, evaluated apart,
    may read it."""
    df = make_df()
    data = df.assign(C=df["x1"])
    with pytest.raises(ValueError, match=r"column 'C' has the name of the transform C") as exc:
        build_spec(data, formula, groups="g", re_formula=re_formula)
    assert reader in str(exc.value) and caller in str(exc.value)
    spec = build_spec(data, "y ~ x1 + C(a)", groups="g", vc_formula={"c": "0 + C"})
    assert spec.vc_names == ["c"]


@pytest.mark.parametrize("term", ["I(Sum)", "I(x1 * Helmert)", "Poly"])
def test_a_contrasts_name_outside_c_is_a_column_the_data_lacks(term):
    """A contrast's name is a value only as C()'s contrast: ``I(Sum)`` with no column
    ``Sum`` once failed in evaluation ("unsupported operand type(s) for *: 'int' and
    'InterfaceMeta'"), as ``I(cs)`` did."""
    name = next(n for n in ("Sum", "Helmert", "Poly") if n in term)
    with pytest.raises(ValueError, match=rf"unknown column '{name}'"):
        build_spec(make_df(), f"y ~ x1 + {term}", groups="g")


@pytest.mark.parametrize("formula", ["y ~ x1 + C(a, Sum)", "y ~ x1 + C(a, contrast=Sum)"])
def test_a_column_named_as_the_contrast_c_takes_is_refused_naming_it(formula):
    """A column ``Sum`` read as C()'s contrast once failed in evaluation with "tuple
    index out of range": refused before, naming the column, as ``y ~ C + C(a)``."""
    df = make_df()
    with pytest.raises(ValueError, match=r"column 'Sum' has the name of the transform"):
        build_spec(df.assign(Sum=df["x1"]), formula, groups="g")


def test_error_formula_syntax():
    df = make_df()
    with pytest.raises(ValueError, match=r"invalid formula 'y ~ \(x1 \+ x2'"):
        build_spec(df, "y ~ (x1 + x2", groups="g")
    with pytest.raises(ValueError, match=r"invalid re_formula '1 \+'"):
        build_spec(df, "y ~ x1", groups="g", re_formula="1 +")
    with pytest.raises(ValueError, match=r"invalid vc_formula\['c'\] '0 \+ C\(cls'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0 + C(cls"})
    with pytest.raises(ValueError, match="must be one-sided"):
        build_spec(df, "y ~ x1", groups="g", re_formula="y ~ x1")
    with pytest.raises(ValueError, match=r"invalid formula 'y ~ x1 \| x2': multi-part"):
        build_spec(df, "y ~ x1 | x2", groups="g")
    with pytest.raises(ValueError, match=r"invalid re_formula 'x1 \| x2': multi-part"):
        build_spec(df, "y ~ x1", groups="g", re_formula="x1 | x2")


@pytest.mark.parametrize(
    ("formula", "term"),
    [
        ("y ~ x1 + (x2 > 1)", "x2 > 1"),
        ("y ~ x1 + (a == b):x2", "a == b"),
        ("y ~ np.log(x2 + 1) + (k != 2)", "k != 2"),
    ],
)
def test_a_comparison_outside_a_call_names_the_term_and_its_i_form(formula, term):
    """patsy reads ``(x2 > 1)`` as a boolean factor; formulaic's grammar has no
    comparisons, so the formula is refused naming the term and what reads it as patsy
    does (``I(x2 > 1)``, tested against statsmodels in test_spec)."""
    df = make_df()
    want = rf"the term \({re.escape(term)}\) compares values outside I\(\).*I\({re.escape(term)}\)"
    with pytest.raises(ValueError, match=want):
        build_spec(df, formula, groups="g")
    with pytest.raises(ValueError, match=rf"re_formula.*\({re.escape(term)}\) compares"):
        build_spec(df, "y ~ x1", groups="g", re_formula=formula.split("~")[1])
    with pytest.raises(ValueError, match=r"compare values only inside a call: write I\("):
        build_spec(df, "y ~ x1 + x2 > 1", groups="g")
    build_spec(df, "y ~ x1 + I((x2 > 1) * 1.0)", groups="g")  # inside a call: Python


def test_a_categorical_of_a_comparison_is_patsys_boolean_factor():
    """``C(k == 2)`` has levels False and True whatever the data, as in patsy; another
    categorical of an expression would learn its levels per partition."""
    df = make_df()
    assert "C(k == 2)[T.True]" in build_spec(df, "y ~ x1 + C(k == 2)", groups="g").exog_names
    with pytest.raises(ValueError, match=r"'C\(k \+ 1\)'.* to C\(\)$"):
        build_spec(df, "y ~ x1 + C(k + 1)", groups="g")
    # numbers 0 and 1 on the prototype are not booleans: the data hold other values
    for term in ("C(np.floor(x1 * 8) - 8)", "C((x1 > 1.0) * 1)"):
        with pytest.raises(ValueError, match=rf"'{re.escape(term)}' is derived"):
            build_spec(df, f"y ~ x1 + {term}", groups="g")
    assert "I(k == 2)[T.True]" in build_spec(df, "y ~ x1 + I(k == 2)", groups="g").exog_names


def test_error_vc_without_columns_or_with_contrasts():
    df = make_df()
    with pytest.raises(ValueError, match=r"vc_formula\['c'\] '0' yields no columns"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "0"})
    with pytest.raises(ValueError, match=r"vc_formula\['c'\].*reduced rank.*'0 \+ \.\.\.'"):
        build_spec(df, "y ~ x1", groups="g", vc_formula={"c": "C(cls)"})
    with pytest.raises(ValueError, match="vc_formula must be a dict"):
        build_spec(df, "y ~ x1", groups="g", vc_formula="0 + C(cls)")


@pytest.mark.parametrize(
    "term",
    [
        "poly(x1, 2)",
        "cs(x1, df=3)",
        "lag(x1)",
        "np.mean(x1)",
        "I(x1 - x1.mean())",
        "x1.cumsum()",
    ],
)
def test_stateful_transforms_refused(term):
    df = make_df()
    with pytest.raises(ValueError, match="each partition of a Dask collection") as exc:
        build_spec(df, f"y ~ {term}", groups="g")
    assert "every partition" not in str(exc.value)
    name = re.match(r"(\w+(\.\w+)?)", term).group(1)
    assert name.split(".")[-1] in str(exc.value) or "mean" in str(exc.value)


def test_derived_categorical_refused_unless_levels_given():
    df = make_df()
    with pytest.raises(ValueError, match=r"categorical factor 'C\(np.round\(x1\)\)' is derived"):
        build_spec(df, "y ~ C(np.round(x1))", groups="g")
    spec = build_spec(df, "y ~ C(x1 > 0, levels=[False, True])", groups="g")
    assert spec.exog_names == ["Intercept", "C(x1 > 0, levels=[False, True])[T.True]"]
    with pytest.raises(ValueError, match=r"values not listed in levels="):
        build_spec(df, "y ~ C(a, levels=['lo', 'hi'])", groups="g")


def test_elementwise_expressions_allowed():
    df = make_df()
    spec = build_spec(
        df,
        "y ~ I(x1**2) + np.log(x2) + np.exp(x1) + np.where(x1 > 0, 1, 0) + abs(x1) + `x2`:a - 1",
        groups="g",
    )
    dm = spec.transform(df)
    j = spec.exog_names.index("np.log(x2)")
    np.testing.assert_allclose(dm.exog[:, j], np.log(df["x2"]))
    assert "Intercept" not in spec.exog_names


@pytest.mark.parametrize(
    "term",
    [
        "Q('x1', __import__('os').system('touch {marker}'))",
        "Q('x1', x=__import__('os').system('touch {marker}'))",
        "Q(open('{marker}', 'w').name)",
        "Q(x1)",
        "Q()",
        "C(Q('a', __import__('os').system('touch {marker}')))",
        "C(Q(open('{marker}', 'w').name))",
    ],
)
def test_q_quotes_one_column_name_and_evaluates_nothing(tmp_path, term):
    """Q() takes one quoted column name: any other argument is refused before anything
    is evaluated (data is never code: DESIGN.md §12), from every formula role."""
    from dmixed import FormulaError

    df = make_df()
    marker = tmp_path / "ran"
    term = term.format(marker=marker)
    for kwargs in (
        {"formula": f"y ~ {term}"},
        {"formula": "y ~ x1", "re_formula": f"1 + {term}"},
        {"formula": "y ~ x1", "vc_formula": {"c": f"0 + {term}"}},
    ):
        with pytest.raises(FormulaError, match=r"Q\(\) takes exactly one quoted column name"):
            build_spec(df, groups="g", **kwargs)
    assert not marker.exists()
    spec = build_spec(df, "y ~ Q('x1')", groups="g")
    assert spec.exog_names == ["Intercept", "Q('x1')"]


# every payload class is refused before anything is evaluated (DESIGN.md §12)
PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "np.where(x1 > 0, x1, 0).__class__",
    "x1.__class__.__init__",
    "np._core.umath.add(x1, x1)",
    "x1.pow.__self__",
    "np.__dict__['load']('{marker}')",
    "(lambda: 1)()",
    "[open('{marker}', 'w') for _ in [0]]",
    "x1[0]",
    "np.where(*[x1 > 0, x1, 0])",
    "(m := open('{marker}', 'w'))",
    "np.vectorize(open)(x1)",
    "x1.astype(str).map(open)",
    "x1.pipe(open)",
    "getattr(np, 'load')('{marker}')",
    "C(x1, levels=open('{marker}', 'w'))",
    # arithmetic Python would evaluate without bound (a hang, or gigabytes)
    "I(9**9**9**9)",
    "I(((9**999)**999)**999)",
    "I(x1 ** 2**2000)",
    "I('a' * 10**9)",
    "I([0] * 10**9)",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_refused_from_every_formula_role(tmp_path, payload):
    from dmixed import FormulaError

    df = make_df()
    marker = tmp_path / "ran"
    term = payload.format(marker=marker)
    for kwargs in (
        {"formula": f"y ~ {term}"},
        {"formula": f"np.log(x2) + {term} ~ x1"},
        {"formula": "y ~ x1", "re_formula": f"1 + {term}"},
        {"formula": "y ~ x1", "vc_formula": {"c": f"0 + {term}"}},
    ):
        with pytest.raises(FormulaError):
            build_spec(df, groups="g", **kwargs)
    assert not marker.exists()


def test_a_callers_function_named_as_a_transform_is_refused_not_replaced():
    """statsmodels calls the caller's own ``log`` (patsy's builtins come after the
    caller's scope): a formula of the Python API whose transform name the caller binds to
    another function is refused, never silently evaluated with formulaic's; the same
    object (``from numpy import log``, ``import numpy as np``) and non-functions (a
    constant named ``C``) are no conflict."""
    from dmixed.design.scope import Environment

    df = make_df()

    def log(v):
        return v * 0.0 + 42.0

    for env, formula in (
        ({"log": log}, "y ~ log(x1 + 10)"),
        ({"exp": log}, "y ~ I(exp(x1) + 1)"),
        ({"np": types.ModuleType("jax.numpy")}, "y ~ np.log(x1 + 10)"),
        ({"C": log}, "y ~ x1 + C(a)"),
    ):
        with pytest.raises(ValueError, match=r"the caller's scope binds .* to another"):
            build_spec(df, formula, groups="g", env=Environment([env]))
    formula = "y ~ log(x1 + 10) + np.exp(x2) + C(a)"
    for env in ({"log": np.log, "np": np, "C": 3.0}, {}):
        spec = build_spec(df, formula, groups="g", env=Environment([env]))
        assert not spec.caller_names


@pytest.mark.parametrize(
    ("formula", "says"),
    [
        (
            "y ~ abs(x1).round(2)",
            "the term 'abs(x1).round(2)' reads the method .round() of a call's result, "
            "which a formula reads only inside a call: write I(abs(x1).round(2))",
        ),
        (
            "y ~ abs(x1).astype(int)",
            "the term 'abs(x1).astype(int)' reads the method .astype() of a call's result, "
            "which a formula reads only inside a call; inside I() it would read 'int' as a "
            "column, and the data have none",
        ),
        (
            "y ~ abs(x1).real + x2",
            "the term 'abs(x1).real' reads the attribute .real of a call's result, which a "
            "formula reads only inside a call; the attribute .real is not allowed: of a "
            "computed value a formula reads only the elementwise methods",
        ),
        (
            'y ~ __import__("os").system("x")',
            "it calls __import__(), not a transform nor an elementwise numpy function; the "
            "method call .system() is not supported: it may not be elementwise",
        ),
        ("y ~ x1 + abs(x1).__class__", "the attribute .__class__ is not allowed"),
        ("y ~ I(x1 + 1).mean()", "the method call .mean() is not supported"),
    ],
)
def test_an_attribute_of_a_calls_result_outside_a_call_says_what_is_refused(formula, says):
    """formulaic reads Python only inside a call's parentheses: ``abs(x1).real`` said
    "Missing operator between abs(x1) and .real", ``abs(x1).astype(int)`` and
    ``__import__("os").system("x")`` "invalid syntax (<unknown>, line 1)".  The message
    now names the term, what it reads, the unknown functions it calls and what the
    whitelist says of it; nothing is evaluated."""
    with pytest.raises(ValueError) as exc:
        build_spec(make_df(), formula, groups="g")
    message = str(exc.value)
    assert message.startswith(f"invalid formula {formula!r}: "), message
    assert says in message, message
    assert "invalid syntax" not in message and "Missing operator" not in message
    if "write I(" in message:
        # the suggestion is one the whitelist and the evaluation accept
        suggested = message.rsplit("write ", 1)[1]
        assert build_spec(make_df(), f"y ~ {suggested}", groups="g").exog_names[-1] == suggested
    else:
        assert "write I(" not in message


def test_a_long_term_reading_an_attribute_of_a_call_is_shown_cut_without_a_suggestion():
    """A term of tens of kilobytes was echoed whole twice ("the term ...", "write
    I(...)"): a line of hundreds of kilobytes.  The term is shown by its ends and the
    suggestion, as long as the term, is left out."""
    formula = "y ~ np.maximum(" + ", ".join(["x1"] * 20000) + ").round(1)"
    with pytest.raises(ValueError) as exc:
        build_spec(make_df(), formula, groups="g")
    message = str(exc.value)
    assert "reads the method .round() of a call's result" in message, message
    assert "write I(" not in message
    assert len(message) < 1200


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ I(" + "+".join(["x1"] * 5000) + ")",
        "y ~ I(" + "-" * 500 + "x1)",
        "y ~ I(" + "-" * 10_000 + "x1)",
        "y ~ " + "abs(" * 10_000 + "x1" + ")" * 10_000,
    ],
    ids=["5000-terms", "500-nested", "10000-nested", "10000-parentheses"],
)
def test_a_formula_too_deep_to_parse_says_so_and_echoes_its_ends(formula):
    """A formula of thousands of terms or hundreds of nested operators said "maximum
    recursion depth exceeded" after an echo of the whole formula (a line of kilobytes).
    It now says it is nested too deeply or too long, and shows its first and last 200
    characters with its length."""
    with pytest.raises(ValueError) as exc:
        build_spec(make_df(), formula, groups="g")
    message = str(exc.value)
    assert "nested too deeply or too long to parse" in message, message
    assert "recursion" not in message
    assert f"({len(formula)} characters)" in message
    assert repr(formula[:200]) in message and repr(formula[-200:]) in message
    assert len(message) < 700


@pytest.mark.parametrize("formula", ["y ~ recursion +", "y ~ x1 + maximum_recursion_depth +"])
def test_a_formula_naming_recursion_is_not_taken_for_too_deep(formula):
    """ "Too deep" was read from the words of formulaic's message, which echoes the
    formula: a formula holding the word "recursion" was said to be nested too deeply.
    It is now read from the exceptions raised, and the parser's own reason is given."""
    with pytest.raises(ValueError) as exc:
        build_spec(make_df(), formula, groups="g")
    message = str(exc.value)
    assert "nested too deeply" not in message, message
    assert "Operator `+` has insuffient arguments" in message, message


@pytest.mark.parametrize(
    ("formula", "at_least"),
    [
        ("y ~ x1 + x2", 3),
        ("y ~ 0 + x1 + x1 + I(x1 +1) + I(x1+1)", 2),  # one term in two spellings
        ("y ~ (x1) + x1 + `x1` + {x1}", 2),  # bracketed and quoted terms not counted
        ("y~1", 1),
        ("y ~ 1 + 2.5 + x1", 2),
        ("y ~ C(f, Treatment('a+b')) + Q('a b')", 3),  # a '+' inside a call or quotes
        ("y ~ x1*x2", None),  # other operators: only the parse counts
        ("y ~ x1 - 1", None),
        ("x1 + x2", None),  # no response
        ("y ~ I(x1", None),
    ],
)
def test_fixed_columns_at_least_counts_distinct_terms_of_the_text(formula, at_least):
    assert fixed_columns_at_least(formula) == at_least


def test_fixed_columns_at_least_leaves_a_name_the_data_lack_to_the_parse():
    assert fixed_columns_at_least("y ~ x1 + I(x2 + 1)", {"y", "x1"}) == 3
    assert fixed_columns_at_least("y ~ x1 + v1", {"y", "x1"}) is None


@pytest.mark.parametrize(
    ("term", "attr", "of"),
    [
        ("I(abs(x1).real)", "real", "of a computed value"),
        ("I(np.abs(x1).T)", "T", "of a computed value"),
        ("I(x1.real)", "real", "of column 'x1'"),
        ("I(x1.index)", "index", "of column 'x1'"),  # the row labels: not the values
        ("I(x1 + abs(x2).values)", "values", "of a computed value"),
    ],
)
def test_an_attribute_read_of_a_column_or_computed_value_is_refused_by_the_checker(term, attr, of):
    """Any public attribute of a computed value passed the whitelist: ``I(abs(x1).real)``
    failed at evaluation with pandas' AttributeError, and ``I(x1.index)`` gave the row
    labels as a column.  Only the elementwise methods' calls are read now."""
    df = make_df()
    with pytest.raises(
        FormulaError,
        match=rf"the attribute \.{attr} is not allowed: {of} a formula reads only the "
        r"elementwise methods \.abs\(\), \.astype\(\)",
    ):
        build_spec(df, f"y ~ {term}", groups="g")


def test_an_attribute_that_spells_a_dotted_column_suggests_backticks():
    """``I(x1.sq * 2)`` beside a column ``x1.sq`` reads ``.sq`` of ``x1``: the message
    names the column and the backticks that read it."""
    df = make_df()
    df["x1.sq"] = df["x1"] ** 2
    with pytest.raises(
        FormulaError,
        match=r"attribute \.sq is not allowed: of column 'x1' .*; to read the column "
        r"'x1\.sq' in an expression, quote it in backticks: `x1\.sq`$",
    ):
        build_spec(df, "y ~ I(x1.sq * 2)", groups="g")
    with pytest.raises(FormulaError) as exc:
        build_spec(df, "y ~ I(x1.real * 2)", groups="g")
    assert "backticks" not in str(exc.value)
    assert "I(`x1.sq` * 2)" in build_spec(df, "y ~ I(`x1.sq` * 2)", groups="g").exog_names


@pytest.mark.parametrize("term", ["I(abs(x1).round(2))", "I(x1 * np.pi)", "I(x1.clip(0, 1))"])
def test_an_elementwise_method_and_a_modules_constant_pass_the_checker(term):
    assert f"{term}" in build_spec(make_df(), f"y ~ {term}", groups="g").exog_names


@pytest.mark.parametrize(
    ("formula", "words"),
    [
        (
            "y ~ x1.real",
            "unknown column 'x1.real': 'x1' is a column, but a formula reads no "
            "attribute of a column; of a column it calls only the elementwise methods",
        ),
        ("y ~ x1.abs", "write I(x1.abs())"),
        (
            "y ~ x1.abs + x2.real + x1.a + x1.b",
            "unknown columns 'x1.abs', 'x2.real', 'x1.a' and 1 more: each an attribute of a column",
        ),
    ],
)
def test_an_attribute_of_a_column_outside_a_call_names_the_column(formula, words):
    """``y ~ x.real`` said "unknown column 'x.real'" without naming the column ``x``."""
    with pytest.raises(FormulaError) as err:
        build_spec(make_df(), formula, groups="g")
    assert words in str(err.value)


# C(Q('my col')): C() of the column that Q() names (c_call)
QC_FORMULA = 'y ~ x1 + C(Q("my site"))'
QC_RENAMED = "y ~ x1 + C(site)"


def _site_frame() -> pd.DataFrame:
    rng = np.random.default_rng(51)
    n, k = 900, 60
    g = rng.integers(0, k, n)
    site = rng.choice(["east", "north", "south"], n)
    x1 = rng.normal(size=n)
    shift = pd.Series({"east": 0.0, "north": 0.7, "south": -0.4})[site].to_numpy()
    y = 1.0 + 0.5 * x1 + shift + rng.normal(size=k)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "my site": site, "g": g})


def _statsmodels(df):
    import statsmodels.formula.api as smf

    # tight gtol: statsmodels' default stops short of the optimum by ~1e-7 relative
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(QC_FORMULA, df, groups="g").fit(gtol=1e-10)


def _agrees_with_statsmodels(res, ref):
    assert sorted(res.fe_params.index) == sorted(ref.fe_params.index)
    assert 'C(Q("my site"))[T.north]' in res.fe_params.index
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-8)
    np.testing.assert_allclose(
        res.fe_params[ref.fe_params.index].to_numpy(), ref.fe_params.to_numpy(), rtol=1e-8
    )


def _same_as_renamed(res, renamed):
    """Bit for bit the fit of the column renamed to a plain name."""
    assert [n.replace('Q("my site")', "site") for n in res.fe_params.index] == list(
        renamed.fe_params.index
    )
    assert res.llf == renamed.llf
    np.testing.assert_array_equal(res.fe_params.to_numpy(), renamed.fe_params.to_numpy())
    np.testing.assert_array_equal(res.bse_fe.to_numpy(), renamed.bse_fe.to_numpy())


def test_c_of_a_quoted_column_fits_as_statsmodels_in_process():
    df = _site_frame()
    res = dmixed.mixedlm(QC_FORMULA, df, groups="g").fit()
    _agrees_with_statsmodels(res, _statsmodels(df))
    renamed = dmixed.mixedlm(QC_RENAMED, df.rename(columns={"my site": "site"}), groups="g").fit()
    _same_as_renamed(res, renamed)


def test_c_of_a_quoted_column_fits_as_statsmodels_on_dask():
    import dask
    import dask.dataframe as dd

    df = _site_frame()
    with dask.config.set(scheduler="sync"):
        res = dmixed.mixedlm(QC_FORMULA, dd.from_pandas(df, npartitions=3), groups="g").fit()
        ddf = dd.from_pandas(df.rename(columns={"my site": "site"}), npartitions=3)
        renamed = dmixed.mixedlm(QC_RENAMED, ddf, groups="g").fit()
    _agrees_with_statsmodels(res, _statsmodels(df))
    _same_as_renamed(res, renamed)


@pytest.mark.parametrize("kind", ["int", "decimal"])
@pytest.mark.parametrize("on_dask", [False, True])
def test_c_of_a_quoted_numeric_column_is_c_of_the_column(kind, on_dask):
    """``C(Q("z i"))`` of a column of numbers is ``C()`` of that column, as in patsy: the
    formula check took only ``C(name)`` for a factor, so the quoted column was read as
    numbers (a rank-deficient level ``T.1.125`` of an integer column, and a column of
    ``Decimal`` values refused as read outside ``C()``).  Bit for bit the fit of the
    column renamed to a plain name, in process and on Dask."""
    import dask
    import dask.dataframe as dd

    rng = np.random.default_rng(52)
    n, k = 600, 30
    g = rng.integers(0, k, n)
    z = rng.integers(0, 3, n)
    x1 = rng.normal(size=n)
    y = 0.5 * x1 + 0.3 * z + rng.normal(size=k)[g] + rng.normal(size=n)
    col = [decimal.Decimal(int(v)) for v in z] if kind == "decimal" else z
    df = pd.DataFrame({"y": y, "x1": x1, "z i": col, "g": g})

    def fit(formula, data):
        if not on_dask:
            return dmixed.mixedlm(formula, data, groups="g").fit()
        # Dask's from_pandas turns Decimal objects into text, which the fit says
        texts = kind == "decimal"
        with (
            dask.config.set(scheduler="sync"),
            pytest.warns(TextConversionWarning) if texts else contextlib.nullcontext(),
        ):
            return dmixed.mixedlm(formula, dd.from_pandas(data, npartitions=3), groups="g").fit()

    res = fit('y ~ x1 + C(Q("z i"))', df)
    renamed = fit("y ~ x1 + C(zi)", df.rename(columns={"z i": "zi"}))
    assert [n.replace('Q("z i")', "zi") for n in res.fe_params.index] == list(
        renamed.fe_params.index
    )
    assert len(res.fe_params) == 4
    assert res.llf == renamed.llf
    np.testing.assert_array_equal(res.fe_params.to_numpy(), renamed.fe_params.to_numpy())


def test_c_of_an_expression_is_still_refused():
    df = _site_frame()
    for formula in ('y ~ C(Q("my site") + "x")', 'y ~ C(Q("no such"))'):
        with pytest.raises(ValueError) as exc:
            dmixed.mixedlm(formula, df, groups="g")
        assert "every partition" not in str(exc.value)
    with pytest.raises(ValueError, match="is derived from an expression, so its levels are"):
        dmixed.mixedlm("y ~ C(np.round(x1))", df, groups="g")


def test_c_of_a_quoted_column_from_the_command_line(tmp_path):
    from dmixed import cli

    df = _site_frame()
    for i in range(2):
        df.iloc[i::2].to_parquet(tmp_path / f"p{i}.parquet", index=False)
    log = logging.getLogger("dmixed")
    saved = log.handlers[:], log.level, log.propagate
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(
                [
                    "fit",
                    "--data",
                    "p0.parquet",
                    "p1.parquet",
                    "--formula",
                    QC_FORMULA,
                    "--groups",
                    "g",
                    "--output",
                    "out",
                ]
            )
    finally:
        os.chdir(here)
        log.handlers[:] = saved[0]
        log.level, log.propagate = saved[1], saved[2]
    assert code == 0
    _agrees_with_statsmodels(dmixed.load(tmp_path / "out"), _statsmodels(df))


def test_analyze_terms_keeps_the_order_columns_are_first_read():
    cols = {"y", "x0", "x1", "x2", "a"}
    formula = "y ~ np.log(x1) + x0 + x1 + C(a) + x0:x2 + I(x2 + x0) + a"
    _, terms = parse_formula(formula, "formula", lhs=True, columns=cols)
    info = analyze_terms(terms, cols, "formula", formula)
    # formulaic orders the terms by degree: x0:x2 after every term of one factor
    assert info.columns == ["x1", "x0", "a", "x2"]
    assert info.plain_columns == ["x0", "x1", "a", "x2"]
    assert info.c_columns == ["a"]
    assert info.expr_columns == ["x1", "x2", "x0"]


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ (lambda v: v)(x1)",
        "y ~ I((lambda v: v)(x1))",
        "y ~ x1 + np.where(x1 > 0, lambda: 1, 0)",
    ],
)
def test_a_lambda_is_refused_in_plain_words(formula):
    """A ``lambda`` outside a call's parentheses was refused with formulaic's parser text
    ("Operator `:` is incorrectly used"), inside one as an unknown call; both now say
    that a lambda is not allowed in a formula (nothing is evaluated either way)."""
    with pytest.raises(FormulaError, match="lambda is not allowed in a formula") as err:
        build_spec(_lambda_frame(), formula, "g")
    assert "incorrectly used" not in str(err.value)


def test_a_column_named_like_lambda_is_not_taken_for_one():
    spec = build_spec(_lambda_frame(), "y ~ x1 + lambda_x", "g")
    assert "lambda_x" in spec.exog_names


def _lambda_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.normal(size=40),
            "x1": rng.normal(size=40),
            "lambda_x": rng.normal(size=40),
            "g": np.repeat(np.arange(8), 5),
        }
    )


@pytest.mark.parametrize(
    ("formula", "fixed", "group", "re_formula"),
    [
        ("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days", "Subject", "1 + Days"),
        ("Reaction ~ (1|Subject) + Days", "Reaction ~ Days", "Subject", "1"),
        ("Reaction ~ (0 + Days | Subject)", "Reaction ~ 1", "Subject", "0 + Days"),
    ],
)
def test_lme4_bar_terms_say_how_dmixed_writes_them(formula, fixed, group, re_formula):
    """formulaic's 'Operator `|` is incorrectly used' named no way out; the refusal says
    formula=, groups= and re_formula=, and the command line's flags."""
    df = pd.DataFrame(
        {
            "Reaction": np.arange(20.0) ** 1.5,
            "Days": np.arange(20.0) % 10,
            "Subject": np.arange(20) % 4,
        }
    )
    with pytest.raises(FormulaError) as info:
        dmixed.mixedlm(formula, df, groups="Subject")
    message = str(info.value)
    assert "lme4's random-effects term" in message
    assert f"formula={fixed!r}, groups={group!r}, re_formula={re_formula!r}" in message
    assert f"--groups {group} --re-formula {shlex.quote(re_formula)}" in message
    assert "incorrectly used" not in message


def test_lme4_bar_in_re_formula_and_double_bar_are_explained():
    with pytest.raises(
        FormulaError, match=r"re_formula holds the effects only, re_formula='1 \+ x'"
    ):
        parse_formula("(x | g)", "re_formula", lhs=False)
    with pytest.raises(FormulaError, match=r"\|\| \(uncorrelated effects\)"):
        parse_formula("y ~ x + (x || g)", "formula", lhs=True)
    with pytest.raises(FormulaError, match="one grouping factor"):
        parse_formula("y ~ x + (1 | g) + (1 | h)", "formula", lhs=True)


def test_bar_inside_a_call_is_pythons_or_not_a_bar_term():
    """``I(a | b)`` is Python inside a call: parsed as before, not taken for lme4's."""
    _, rhs = parse_formula("y ~ I(a | b)", "formula", lhs=True)
    assert [str(t) for t in rhs] == ["1", "I(a | b)"]


def _backquoted_bar_frame():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": np.repeat(np.arange(10), 6), "x": rng.normal(size=60)})
    df["a|b"] = rng.normal(size=60)
    df["y"] = df.x + rng.normal(size=60) + np.repeat(rng.normal(size=10), 6)
    return df


@pytest.mark.parametrize(
    ("formula", "re_formula"),
    [
        ("y ~ x + (`a|b`)", None),
        ("y ~ (x + `a|b`)", None),
        ("y ~ x + (Q('a|b'))", None),
        ("y ~ x", "(`a|b`)"),
    ],
)
def test_a_bar_in_a_backquoted_name_is_no_lme4_term(formula, re_formula):
    """The review found ``(`a|b`)`` taken for lme4's ``(effects | group)``: the bar of a
    backquoted column's name (or of a quoted string) is the name's, and the model fits."""
    df = _backquoted_bar_frame()
    kwargs = {} if re_formula is None else {"re_formula": re_formula}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)  # a small fit may warn
        fit = dmixed.mixedlm(formula, df, groups="g", **kwargs).fit()
    assert np.isfinite(fit.llf)


@pytest.mark.parametrize(
    ("formula", "re_formula"),
    [
        ("y ~ x + (1 + np.exp(x) | g)", "1 + np.exp(x)"),
        ("y ~ x + (x + I(a|b) | g)", "1 + x + I(a|b)"),
        ("y ~ x + (x | `my g`)", "1 + x"),
    ],
)
def test_bar_terms_holding_calls_are_lme4_terms(formula, re_formula):
    """A bar of the bracket's own (outside its calls) makes an lme4 term even where the
    effects call functions; formulaic's 'incorrectly used' said nothing of it."""
    with pytest.raises(FormulaError, match="lme4's random-effects term") as info:
        parse_formula(formula, "formula", lhs=True)
    message = str(info.value)
    assert f"re_formula={re_formula!r}" in message
    assert "incorrectly used" not in message
    if "my g" in formula:
        assert "groups='my g'" in message and "--groups 'my g'" in message


def test_a_call_with_a_bar_alone_in_a_bracket_is_no_lme4_term():
    _, rhs = parse_formula("y ~ (I(a|b))", "formula", lhs=True)
    assert [str(t) for t in rhs] == ["1", "I(a | b)"]


def test_a_bar_term_in_a_variance_component_says_how_to_write_one():
    """The review found re_formula/groups advised for a bar term in vc_formula."""
    with pytest.raises(FormulaError) as info:
        parse_formula("0 + (1|c)", "vc_formula['c']", lhs=False)
    message = str(info.value)
    assert "vc_formula={'c': '0 + C(c)'}" in message
    assert "--vc 'c=0 + C(c)'" in message
    assert "re_formula=" not in message and "groups=" not in message
    with pytest.raises(FormulaError, match=r"vc_formula=\{'c': '0 \+ C\(c\):x'\}"):
        parse_formula("0 + (0 + x | c)", "vc_formula['c']", lhs=False)


@pytest.mark.parametrize("group", ["g:c", "g/c"])
def test_a_grouping_factor_of_several_columns_is_told_to_make_a_column(group):
    """``(1|g:c)`` advised groups='g:c', then refused as no column: the message says to
    make a column of the combinations, or to fit c within g as a variance component."""
    with pytest.raises(FormulaError) as info:
        parse_formula(f"y ~ x + (1|{group})", "formula", lhs=True)
    message = str(info.value)
    assert f"groups={group!r}" not in message
    assert "data['g_c'] = data['g'].astype(str) + '_' + data['c'].astype(str)" in message
    assert "groups='g_c'" in message
    assert "vc_formula={'c': '0 + C(c)'}" in message
    if group == "g/c":  # g, and c within g: g's intercept stays
        assert "groups='g', fit c within g as a variance component" in message
        assert "re_formula='1'" in message and "re_formula='0'" not in message
    else:  # the combinations alone: no intercept of g's own
        assert "groups='g' and re_formula='0'" in message
        assert "--groups g --re-formula 0 --vc 'c=0 + C(c)'" in message
        assert "re_formula='1' with groups='g_c'" in message


@pytest.mark.parametrize(
    ("effects", "components"),
    [
        ("x||c", {"c": "0 + C(c)", "c_x": "0 + C(c):x"}),
        ("1 + x + z || c", {"c": "0 + C(c)", "c_x": "0 + C(c):x", "c_z": "0 + C(c):z"}),
        ("0 + x + z || c", {"c_x": "0 + C(c):x", "c_z": "0 + C(c):z"}),
    ],
)
def test_uncorrelated_effects_in_a_variance_component_are_one_component_each(effects, components):
    """The review found ``(x||c)`` advised as one key holding intercept and slope: one
    variance shared by both, where lme4 gives each its own."""
    with pytest.raises(FormulaError) as info:
        parse_formula(f"0 + ({effects})", "vc_formula['c']", lhs=False)
    message = str(info.value)
    assert f"vc_formula={components!r}" in message
    flags = " ".join(f"--vc {shlex.quote(f'{k}={v}')}" for k, v in components.items())
    assert flags in message


def test_correlated_effects_in_a_variance_component_have_no_component_form():
    with pytest.raises(FormulaError) as info:
        parse_formula("0 + (1 + x | c)", "vc_formula['c']", lhs=False)
    message = str(info.value)
    assert "no variance-component form" in message
    assert "groups='c', re_formula='1 + x'" in message
    assert "vc_formula={'c': '0 + C(c) + C(c):x'}" not in message


@pytest.mark.parametrize("formula", ["y ~ x*(a|b)", "y ~ x + (a| b)*x", "y ~ x:(1|b)"])
def test_a_bar_term_in_an_operators_expression_gets_no_rewritten_formula(formula):
    """The review found ``y ~ x*(a|b)`` advised as ``formula='y ~ x*1'`` (and
    ``x + (a|b)*x`` as ``'y ~ x*x'``)."""
    with pytest.raises(FormulaError) as info:
        parse_formula(formula, "formula", lhs=True)
    message = str(info.value)
    assert "formula=" not in message.replace("re_formula=", "")
    assert "--formula" not in message
    assert "sits in an operator's expression" in message
    assert "groups='b'" in message


@pytest.mark.parametrize(
    "formula", ['y ~ x + Q("it\'s") + (1|g)', "y ~ x + `it's` + (x | g)", "y ~ x + (x | `my g`)"]
)
def test_the_advised_command_line_is_valid_shell(formula):
    """``--formula``/``--re-formula`` were shown with Python's repr: not shell."""
    with pytest.raises(FormulaError) as info:
        parse_formula(formula, "formula", lhs=True)
    message = str(info.value)
    line = re.search(r"command line: (.*?); job file", message)[1]
    words = shlex.split(line)
    assert words[words.index("--groups") + 1] in ("g", "my g")
    fixed = formula.split(" + (")[0]
    assert words[words.index("--formula") + 1] == fixed
    assert words[words.index("--re-formula") + 1] in ("1", "1 + x")


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + ({(x > 0) | (x < -1)})",
        "y ~ (x + {(x > 0) | (x < -1)})",
        "y ~ x + ({x > 0 | x < -1} + x)",
        "y ~ (x + {a|b|x})",
    ],
)
def test_a_bar_in_python_braces_is_pythons_or_not_a_bar_term(formula):
    """The review found a ``|`` inside formulaic's ``{...}`` (Python code) taken for an
    lme4 bar where the brace sits inside a plain bracket: refused, where main fits."""
    parse_formula(formula, "formula", lhs=True)


def test_a_saved_fit_with_a_bar_in_python_braces_loads_and_predicts(tmp_path):
    """Such results saved by main must load (loading parses the formula again)."""
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=120)})
    df["y"] = df.x + rng.normal(size=120) + np.repeat(rng.normal(size=12), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)  # a small fit may warn
        fit = dmixed.mixedlm("y ~ x + ({(x > 0) | (x < -1)})", df, groups="g").fit()
    fit.save(tmp_path / "fit.dmx")
    loaded = dmixed.load(tmp_path / "fit.dmx")
    assert list(loaded.fe_params.index) == list(fit.fe_params.index)
    np.testing.assert_allclose(loaded.predict(df), fit.predict(df), rtol=1e-12)


_ATOMS = [
    "x",
    "a",
    "`a|b`",
    "`it's`",
    "Q('a|b')",
    'Q("q\\"|z")',
    "Q('q\"|z')",
    "C(c, Treatment('a|b'))",
    "I(x + 1)",
    "I((x > 0) | (x < -1))",
    "{(x > 0) | (x < -1)}",
    "np.log(np.abs(x) + 1)",
    "{x * 2}",
    "{'|' in 'a|b' or x > 0}",
    "{[x, a][0] | a}",
    "I(x*(a|b>0))",
]
_BARS = [
    ("(1|g)", "g"),
    ("(x|g)", "g"),
    ("(0 + x || g)", "g"),
    ("(np.exp(x) | g)", "g"),
    ("(Q('a|b') | g)", "g"),
    ("(`a|b` | g)", "g"),
    ("(x + {x*2} | g)", "g"),
    ("({a | b} | g)", "g"),
]


@st.composite
def _terms(draw, depth=0):
    """A fixed-effects term of quoted names, calls, braces and plain brackets."""
    atom = draw(st.sampled_from(_ATOMS))
    if depth >= 2:
        return atom
    kind = draw(st.sampled_from(["atom", "sum", "bracket", "product"]))
    if kind == "sum":
        return f"({draw(_terms(depth + 1))} + {draw(_terms(depth + 1))})"
    if kind == "bracket":
        return f"({atom})"
    if kind == "product":
        return f"{draw(_terms(depth + 1))}:{draw(_terms(depth + 1))}"
    return atom


def _joined(terms: list[str], bracketed: bool) -> str:
    rhs = " + ".join(terms)
    return f"y ~ ({rhs})" if bracketed else f"y ~ {rhs}"


@settings(max_examples=150, deadline=None)
@given(st.lists(_terms(), min_size=1, max_size=3), st.booleans())
def test_formulas_without_bar_terms_parse(terms, bracketed):
    """Bars of quoted names and strings, of calls and of Python braces are no lme4
    terms, at any depth of plain brackets (the review's random formulas)."""
    parse_formula(_joined(terms, bracketed), "formula", lhs=True)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_terms(), max_size=2),
    st.sampled_from(_BARS),
    st.integers(0, 2),
    st.booleans(),
)
def test_bar_terms_among_other_terms_are_caught(terms, bar, at, bracketed):
    text, group = bar
    terms.insert(min(at, len(terms)), text)
    with pytest.raises(FormulaError, match="lme4's random-effects term") as info:
        parse_formula(_joined(terms, bracketed), "formula", lhs=True)
    assert f"({text[1:-1].strip()}) is lme4's" in str(info.value)
    assert f"groups={group!r}" in str(info.value)


@pytest.mark.parametrize(
    ("formula", "escaped"),
    [
        ('y ~ x + C(c, Treatment("c(d"))', '"c\\x28d"'),
        ('y ~ (x + C(c, Treatment("c(d")))', '"c\\x28d"'),
        ("y ~ x + Q('a)b')", "'a\\x29b'"),
    ],
)
def test_a_bracket_in_a_quoted_string_is_refused_with_its_escape(formula, escaped):
    """The review found ``Treatment("c(d")`` refused "unmatched ')'" with no way out:
    formulaic counts brackets inside a call without reading its quotes; the message
    names the string and its escape, which fits."""
    with pytest.raises(FormulaError) as info:
        parse_formula(formula, "formula", lhs=True)
    assert f"write the bracket as Python's escape, {escaped}" in str(info.value)
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"g": np.repeat(np.arange(10), 6), "x": rng.normal(size=60)})
    df["c"] = np.where(rng.random(60) < 0.5, "a|b", "c(d")
    df["y"] = df.x + rng.normal(size=60) + np.repeat(rng.normal(size=10), 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)  # a small fit may warn
        fit = dmixed.mixedlm('y ~ x + C(c, Treatment("c\\x28d"))', df, groups="g").fit()
    assert any(name.endswith("[T.a|b]") for name in fit.fe_params.index)
