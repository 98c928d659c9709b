"""The whitelist's bounds on what a formula may compute or change (formulas read from
files, jobs, saved results or statistics and the command line are checked node by node
before anything is evaluated): no formatted text, no constant arithmetic without bound,
no call that writes into its arguments, no attribute of a transform but contr's."""

from __future__ import annotations

import ast
import operator
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmixed
from dmixed.design import formula as formula_module
from dmixed.design.formula import analyze_terms, parse_formula
from dmixed.errors import FormulaError

COLUMNS = {"y", "x", "g"}


def _check(formula: str):
    _, terms = parse_formula(formula, "formula", lhs=True, columns=COLUMNS)
    return analyze_terms(terms, COLUMNS, "formula", formula)


@pytest.mark.parametrize(
    "term, why",
    [
        ('I(f"{1:>200000000}")', "f-string"),
        ("I(f'{x}')", "f-string"),
        ("I(1 << 10**9)", "at most 65536 bits"),
        ("I((1 << 1000) << 1000)", "shift of a constant must shift a number written out"),
        ("I(x << (1 << 1024))", "constant shift count must be a number of at most 1024"),
        ("I(x << 5000)", "constant shift count must be a number of at most 1024"),
        (
            "I((1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * (1 << 1000) * "
            "(1 << 1000) * (1 << 1000))",
            "at most 65536 bits",
        ),
        ("I(9 ** 9 ** 9 ** 9)", "at most 65536 bits"),
        ("np.add(x, 5, out=x)", "out="),
        ("x.clip(0, 1, inplace=True)", "inplace="),
        ("np.nan_to_num(x, copy=False)", "copy="),
        ('x.astype("float", copy=False)', "copy="),
        ("np.exp(x, where=x > 0)", "where="),
        ('np.add(x, 1, **{"out": x})', "**"),
        ("np.exp(x, x)", "at most 1 positional"),
        ("log(x, x)", "at most 1 positional"),
        ("np.add(x, 1, x)", "at most 2 positional"),
        ("np.clip(x, 0, 1, x)", "at most 3 positional"),
        ("x.clip(0, 1, 0)", "at most 2 positional"),
        ("exp.at(x, 0)", "exp.at() is not allowed"),
        ("np.exp.at(x, 0)", "not an elementwise numpy function"),
        ("C(g, contr.custom.mro())", "contr.custom.mro() is not allowed"),
        ("C(g, contr.mro())", "contr.mro() is not allowed"),
        ("C.mro()", "C.mro() is not allowed"),
    ],
)
def test_a_formula_that_computes_without_bound_or_writes_into_a_column_is_refused(term, why):
    formula = f"y ~ x + {term}"
    with pytest.raises(FormulaError) as e:
        _check(formula)
    assert why in str(e.value)
    assert formula in str(e.value) or "..." in str(e.value)  # the formula is named


@pytest.mark.parametrize(
    "term",
    [
        "I(2 ** 10)",
        "I(x ** 3)",
        "I(x * 2 ** 1024)",
        "I(x * (1 << 1024))",
        "I(x * 2.0 ** -600)",
        "I(x * 1e10 ** -1000)",
        "I(x * 2.0 ** 1000 * 2.0 ** 100)",
        "np.exp(x)",
        "np.add(x, 5)",
        "np.clip(x, 0, 1)",
        "np.round(x, 2)",
        "np.where(x > 0, x, 0)",
        "np.nan_to_num(x)",
        "x.clip(0, 1)",
        'x.astype("float")',
        "log(np.abs(x) + 1)",
        "abs(x)",
        "C(g, contr.treatment(1))",
        "C(g, Sum)",
        "C(g, levels=[1, 2, 3])",
    ],
)
def test_elementwise_calls_and_bounded_constants_pass(term):
    _check(f"y ~ x + {term}")


def _constant_trees():
    leaves = st.integers(min_value=-(2**70), max_value=2**70).map(str)

    def grow(children):
        op = st.sampled_from(["*", "+", "-", "<<", "**", "//", "%"])
        return st.tuples(children, op, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")

    return st.recursive(leaves, grow, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_constant_trees())
def test_constant_arithmetic_that_passes_is_small(expr):
    """Whatever a formula computes from constants alone and the whitelist lets pass is
    an integer of at most MAX_CONSTANT_BITS bits (evaluated here only once allowed)."""
    try:
        _check(f"y ~ x + I({expr})")
    except FormulaError:
        return
    try:
        value = eval(expr)  # noqa: S307 - allowed by the whitelist, hence bounded
    except (ZeroDivisionError, ValueError, OverflowError):
        return
    if isinstance(value, int):
        assert value.bit_length() <= formula_module.MAX_CONSTANT_BITS


def test_a_column_is_unchanged_by_the_terms_beside_it():
    """A term cannot write into the column another term reads (``out=``), so a formula
    that tried is refused rather than fitted on a changed column."""
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame({"g": rng.integers(0, 10, n), "x": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(size=n)
    for formula in ("y ~ x + np.multiply(x, 2, out=x)", "y ~ x + x.clip(0, 1, inplace=True)"):
        with pytest.raises(FormulaError):
            dmixed.mixedlm(formula, df, groups="g", eval_env=-1)


def test_the_callers_own_function_keeps_its_keywords():
    """The Python API's formulas may call the caller's functions with any keyword
    (statsmodels does): the refusal of out= and copy= holds for the whitelist's calls."""
    rng = np.random.default_rng(5)
    n = 200
    df = pd.DataFrame({"g": rng.integers(0, 10, n), "x": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(size=n)

    def shifted(v, copy=True):
        return v + 1.0

    model = dmixed.mixedlm("y ~ shifted(x, copy=False)", df, groups="g")
    assert "shifted(x, copy=False)" in model.exog_names


@pytest.mark.parametrize(
    "term, why",
    [
        ("I(abs(9 ** 1024) ** 1024)", "at most 65536 bits"),
        ("I(abs(abs(9 ** 1024) ** 1024) ** 1024)", "at most 65536 bits"),
        ("I(abs(abs(abs(9 ** 1024) ** 1024) ** 1024) ** 1024)", "at most 65536 bits"),
        ("I(np.abs(9 ** 1024) ** 1024)", "at most 65536 bits"),
        ("I(abs(1 << 1024) << 1024 << 1024)", "shift of a constant must shift a number"),
        ("I(np.little_endian << 1024)", "shift of a constant must shift a number"),
        ("I(abs(9 ** 1024) * abs(9 ** 1024) * abs(9 ** 1024) ** 20)", "at most 65536 bits"),
        ("I(np.power(2 ** 64, 10 ** 9))", "no known bound"),
        ("I(np.left_shift(2 ** 64, 10 ** 9))", "no known bound"),
        ("I(np.multiply(2 ** 64, 2 ** 64))", "no known bound"),
        ("I(np.multiply(('9',), 10 ** 9))", "no known bound"),
        ("I(np.ScalarType * 10 ** 9)", "no known bound"),
    ],
)
def test_calls_and_attributes_that_read_no_column_are_constants_bounded(term, why):
    """``abs()``, numpy's functions and numpy's attributes read no column: what they give
    of constants is bounded as the constants are (the review's bypasses of the bound)."""
    formula = f"y ~ x + {term}"
    with pytest.raises(FormulaError) as e:
        _check(formula)
    assert why in str(e.value)


FLOAT_CONSTANTS = [
    "I(x * 2.0 ** -600)",
    "I(x + 1e10 ** -1000)",
    "I(x * np.pi ** 2)",
    "I(x * abs(2.0 ** 100) ** 2)",
]


@pytest.mark.parametrize("term", FLOAT_CONSTANTS)
def test_float_constants_fit(term):
    """A float does not grow (Python raises on one that overflows): a formula's float
    constants, however computed, are not counted as integers and the model fits."""
    _check(f"y ~ {term}")
    rng = np.random.default_rng(11)
    n = 120
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(size=n)
    result = dmixed.mixedlm(f"y ~ {term}", df, groups="g").fit()
    assert np.isfinite(result.llf)


def _nested_constants():
    leaves = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(["2.0", "0.5", "1e10", "np.little_endian", "np.pi", "True"]),
    )
    wrappers = ["abs({})", "np.abs({})", "np.negative({})", "I({})", "-({})", "np.add({}, 1)"]
    ops = ["*", "+", "-", "<<", ">>", "**", "//", "%", "/"]

    def grow(children):
        unary = st.tuples(st.sampled_from(wrappers), children).map(lambda t: t[0].format(t[1]))
        binary = st.tuples(children, st.sampled_from(ops), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        )
        return st.one_of(unary, binary)

    return st.recursive(leaves, grow, max_leaves=10)


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_FUNCTIONS = {"abs": abs, "I": lambda v: v, "np.abs": np.abs, "np.negative": np.negative}


def _guarded(node):
    """Evaluate a constant expression, failing before any step on Python's integers
    whose result could exceed MAX_CONSTANT_BITS (what the whitelist promises of what it
    lets pass), so a bypass fails the test instead of running without bound."""
    most = formula_module.MAX_CONSTANT_BITS
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        return getattr(np, node.attr)
    if isinstance(node, ast.UnaryOp):
        return -_guarded(node.operand)
    if isinstance(node, ast.Call):
        return _FUNCTIONS.get(ast.unparse(node.func), np.add)(*map(_guarded, node.args))
    a, b = _guarded(node.left), _guarded(node.right)
    if type(a) in (int, bool) and type(b) in (int, bool):
        if isinstance(node.op, ast.Pow) and b > 0:
            assert abs(a).bit_length() * b <= most, ast.unparse(node)
        if isinstance(node.op, ast.LShift) and b > 0:
            assert abs(a).bit_length() + b <= most, ast.unparse(node)
    value = _OPS[type(node.op)](a, b)
    if type(value) is int:
        assert value.bit_length() <= most, ast.unparse(node)
    return value


@settings(max_examples=400, deadline=None)
@given(_nested_constants())
def test_nested_constants_that_pass_are_small(expr):
    """Whatever the whitelist lets pass of constants nested in ``abs()``, numpy's
    functions, numpy's attributes and arithmetic computes no integer of more than
    MAX_CONSTANT_BITS bits at any step (checked step by step, before each step)."""
    try:
        _check(f"y ~ x + I({expr})")
    except FormulaError:
        return
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            _guarded(ast.parse(expr, mode="eval").body)
        except (ZeroDivisionError, ValueError, OverflowError, TypeError, FloatingPointError):
            pass


#: conversions to numpy's object dtype (values become Python's integers, whose powers
#: grow without bound), the review's cases first
OBJECT_DTYPE = [
    "I((((x * 0 + 9).astype('int64').astype('O') ** 1024) ** 1024) ** 1024)",
    "I((g.astype('O') + 9).pow(1024).pow(1024).pow(1024))",
    "I(g.astype('O').pow(1024).pow(1024).pow(1024))",
    "I((g.astype('O') + 2) << 1024 << 1024)",
    "I(x.astype('O') * 9 ** 60000 * 9 ** 60000)",
    "I(np.abs(g.astype('O') + 9) ** 1024)",
    "I(g.astype('object') + 1)",
    "I(g.astype(object))",
    "I(g.astype(dtype='|O'))",
    "I(g.astype(np.object_))",
    "I(g.astype(numpy.object_))",
    "I(g.astype(np.dtypes.ObjectDType))",
    "I(np.where(x > 0, g.astype('O'), 0))",
    "I(np.power(x, 3, dtype=object))",
    "I(np.add(x, 1, dtype='O'))",
]


@pytest.mark.parametrize("term", OBJECT_DTYPE)
def test_conversions_to_object_dtype_are_refused(term):
    formula = f"y ~ x + {term}"
    with pytest.raises(FormulaError) as e:
        _check(formula)
    message = str(e.value)
    assert formula in message
    assert "object dtype" in message or "multiply to more than 1024" in message


#: powers stacked on the data past 1024 in all (the product of their exponents)
STACKED_POWERS = [
    "I(((g + 9) ** 1024) ** 1024)",
    "I(((g + 9) ** 1024) ** 1024 ** 1)",
    "I((((x * 0 + 9) ** 1024) ** 1024) ** 1024)",
    "I(x.pow(1024).pow(2))",
    "I((x + 9).pow(1024).pow(1024).pow(1024))",
    "I(np.power(x ** 512, 4))",
    "I(np.float_power(x ** 512, 4))",
    "I(np.abs(x ** 64) ** 64)",
    "I((x * x) ** 1000)",
    "I((x ** 2 + 1) ** 600)",
]


@pytest.mark.parametrize("term", STACKED_POWERS)
def test_powers_stacked_on_the_data_are_bounded_in_all(term):
    formula = f"y ~ {term}"
    with pytest.raises(FormulaError) as e:
        _check(formula)
    assert formula in str(e.value) and "multiply to more than 1024" in str(e.value)


@pytest.mark.parametrize(
    "term",
    [
        "I(x ** 1024)",
        "I((x ** 32) ** 32)",
        "I(x.pow(2) + np.power(x, 3) + x ** 1024)",
        "I(x.astype('float64') ** 2)",
        "I(g.astype('int64') + 1)",
    ],
)
def test_fixed_width_conversions_and_bounded_powers_pass(term):
    _check(f"y ~ {term}")


def test_the_review_object_power_cases_fail_fast_on_fit():
    """The review's formulas are refused by the fit before anything is evaluated."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(np.arange(10), 6)}
    )
    for term in OBJECT_DTYPE[:2]:
        with pytest.raises(FormulaError, match="object dtype|multiply to more than 1024"):
            dmixed.mixedlm(f"y ~ {term}", df, groups="g").fit()


#: constants written out whose integers fit 64 bits (main accepts them; a loose bound,
#: bit_length(base) × exponent, counted 2 ** 40 as 80 bits)
WRITTEN_CONSTANTS = [
    "I(x + np.log(2 ** 40))",
    "I(x * np.log10(10 ** 18))",
    "I(x / np.sqrt(2 ** 62))",
    "I(x + np.log(2 ** 63 - 1))",
    "I(x + np.log(2 ** 64 - 1))",
    "I(x + np.maximum(x, -9223372036854775808))",
    "I(x + np.maximum(x, -(2 ** 63)))",
    "I(x + np.minimum(x, 2 ** 63 - 1))",
]


@pytest.mark.parametrize("term", WRITTEN_CONSTANTS)
def test_written_constants_that_fit_64_bits_pass_and_fit(term):
    _check(f"y ~ {term}")
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=120)})
    df["y"] = df.x + np.repeat(rng.normal(size=12), 10) + rng.normal(size=120)
    assert np.isfinite(dmixed.mixedlm(f"y ~ {term}", df, groups="g").fit().llf)


@pytest.mark.parametrize("term", ["I(x + np.log(2 ** 64))", "I(x + np.log(-(2 ** 63) - 1))"])
def test_written_constants_past_64_bits_are_still_refused(term):
    with pytest.raises(FormulaError, match="more than 64 bits"):
        _check(f"y ~ {term}")


def test_results_saved_with_a_written_constant_load(tmp_path):
    """A result saved with ``np.log(2 ** 40)`` (as main saves it) loads."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=100), "x": rng.normal(size=100), "g": np.repeat(np.arange(20), 5)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dmixed.mixedlm(
            "y ~ I(x / np.sqrt(2 ** 40)) + I(x**2 + np.log(2 ** 40))", df, groups="g"
        )
        result = result.fit()
    result.save(tmp_path / "res")
    loaded = dmixed.load(tmp_path / "res")
    assert list(loaded.params.index) == list(result.params.index)
