"""Names of formula columns spelled as statsmodels (patsy) spells them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.design.labels import (
    ARRAY_INTERCEPT_NAME,
    covariance_names,
    formulaic_spelling,
    level_in_group,
    patsy_spelling,
)


def _quoted_frame() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 300
    g = rng.integers(0, 15, n)
    df = pd.DataFrame(
        {
            "g": g,
            "a b": rng.normal(size=n),
            "x": rng.normal(size=n),
            "f": rng.choice(["u", "v"], n),
            "v": rng.normal(size=n),
            "lev": rng.choice(["u", "v", "w"], n),
            "lx": rng.choice(["x 'v' y", "z"], n),
            # level text whose brackets do not pair, one with a colon
            "p": rng.choice(["(", "u", "x]y:z"], n),
        }
    )
    df["y y"] = df["a b"] + rng.normal(size=15)[g] + rng.normal(size=n)
    return df


@pytest.mark.parametrize(
    "formula, re_formula",
    [
        ('Q("y y") ~ Q("a b")', None),
        ("Q('y y') ~ Q('a b')", None),
        ('Q("y y") ~ Q("a b"):x + x', '1 + Q("a b")'),
        ('Q("y y") ~ np.log(Q("a b") ** 2) + I(Q("a b") * 2)', None),
        ('Q("y y") ~ x + C(f, Treatment("v"))', None),
        ('Q("y y") ~ x + I(f == "it\'s")', None),
        # one text written both ways, and in a level: each factor as it is written
        ('Q("y y") ~ Q("v") + C(lev, Treatment(\'v\'))', None),
        ('Q("y y") ~ Q("v") + C(lx)', None),
        ('Q("y y") ~ Q("a b") + Q(\'a b\'):x', "1 + Q('a b')"),
        ('Q("y y") ~ p:Q("a b")', None),
        ('Q("y y") ~ Q("a b"):p', None),
        ('Q("y y") ~ C(p, Treatment(\'u\')):Q("a b")', None),
    ],
)
def test_names_keep_the_formulas_spelling_of_text_as_statsmodels(formula, re_formula):
    """statsmodels (patsy) names a factor by the formula's own text: ``Q("a b")`` where
    formulaic writes ``Q('a b')``."""
    import warnings

    import statsmodels.formula.api as smf

    import dmixed

    df = _quoted_frame()
    ours = dmixed.mixedlm(formula, df, groups="g", re_formula=re_formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm(formula, df, groups="g", re_formula=re_formula)
    # (sorted: formulaic orders terms by degree, patsy by their numeric factors)
    assert sorted(ours.exog_names) == sorted(theirs.exog_names)
    assert sorted(ours.exog_re_names) == sorted(theirs.data.exog_re_names)
    assert ours.endog_names == theirs.endog_names


def test_text_spelling_round_trip():
    formula = 'y ~ Q("a b") * f + C(f, Treatment("u")) + I(f == "it\'s")'
    written = ['Q("a b")', 'Q("a b"):f[T.v]', 'C(f, Treatment("u"))[T.v]', 'I(f == "it\'s")']
    formulaic = ["Q('a b')", "Q('a b'):f[T.v]", "C(f, Treatment('u'))[T.v]", 'I(f == "it\'s")']
    assert formulaic_spelling(written, formula) == formulaic
    assert patsy_spelling(formulaic, formula) == written
    assert patsy_spelling(written, formula) == written  # (already patsy's)
    assert patsy_spelling(["Q('a b')"], "y ~ Q('a b')") == ["Q('a b')"]
    assert patsy_spelling(["x"], None) == ["x"]


def test_spelling_is_each_factors_own_and_never_a_levels():
    """The same text written two ways keeps each factor's spelling; a level's text
    (``[...]``) is the data's, whatever the formula writes."""
    both = "y ~ Q(\"v\") + C(lev, Treatment('v'))"
    assert patsy_spelling(["Q('v')", "C(lev, Treatment('v'))[T.u]"], both) == [
        'Q("v")',
        "C(lev, Treatment('v'))[T.u]",
    ]
    level = ["C(lx)[T.x 'v' y]", "C(lx)[T.it's]:Q('v')"]
    assert patsy_spelling(level, 'y ~ Q("v") + C(lx):Q("v")') == [
        "C(lx)[T.x 'v' y]",
        'C(lx)[T.it\'s]:Q("v")',
    ]
    assert formulaic_spelling(['C(lx)[T.x "v" y]'], None) == ['C(lx)[T.x "v" y]']
    terms = "y ~ Q(\"a b\") + Q('a b'):x"
    assert patsy_spelling(["Q('a b')", "Q('a b'):x"], terms) == ['Q("a b")', "Q('a b'):x"]


def test_a_level_suffix_is_opaque_to_the_bracket_that_ends_its_factor():
    """Level text is the data's: an unmatched bracket, parenthesis or quote in it, or a
    colon, neither splits the name nor hides the next factor's text."""
    formula = 'y ~ p:Q("a b") + Q("a b"):p'
    names = ["p[(]:Q('a b')", "p[x]y:z]:Q('a b')", "Q('a b'):p[(]", "Q('a b'):p[it's)]"]
    written = ['p[(]:Q("a b")', 'p[x]y:z]:Q("a b")', 'Q("a b"):p[(]', 'Q("a b"):p[it\'s)]']
    assert patsy_spelling(names, formula) == written
    assert formulaic_spelling(written, formula) == names


def test_a_factor_is_respelled_once_whatever_the_number_of_its_columns(monkeypatch):
    """The factors of many columns are tokenized once each per distinct factor, not
    once per column."""
    import tokenize

    calls = []
    real = tokenize.generate_tokens

    def counted(readline):
        calls.append(1)
        return real(readline)

    monkeypatch.setattr(tokenize, "generate_tokens", counted)
    formula = 'y ~ C(k):Q("a b c d")'
    names = [f"C(k)[T.k{i}]:Q('a b c d')" for i in range(2000)]
    assert patsy_spelling(names, formula) == [f'C(k)[T.k{i}]:Q("a b c d")' for i in range(2000)]
    assert len(calls) < 10


def test_variance_component_names_keep_the_formulas_spelling_as_statsmodels():
    import warnings

    import statsmodels.formula.api as smf

    import dmixed

    df = _quoted_frame()
    vc_formula = {"v": '0 + Q("a b")', "w": "0 + Q('a b'):x"}
    ours = dmixed.mixedlm("x ~ 1", df, groups="g", vc_formula=vc_formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("x ~ 1", df, groups="g", vc_formula=vc_formula)
    assert theirs.exog_vc.names == ours.vc_names == ["v", "w"]
    assert [list(c) for c in ours.vc_column_names] == [c[0] for c in theirs.exog_vc.colnames]


# --------------------------------------------------------------------------------------
# covariance parameters' names (statsmodels' _make_param_names and its random intercept)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "vc_names"),
    [(q, vc) for q in range(5) for vc in ([], ["a"], ["sub", "b"]) if q or vc],
)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # statsmodels' dict form of exog_vc
def test_covariance_names_are_statsmodels(q, vc_names):
    import statsmodels.regression.mixed_linear_model as smlm

    rng = np.random.default_rng(q)
    n = 40
    groups = np.repeat(np.arange(4), n // 4)
    exog = np.ones((n, 1))
    re_names = [f"z{j} v" for j in range(q)]
    exog_re = pd.DataFrame(rng.normal(size=(n, q)), columns=re_names) if q else None
    exog_vc = {v: {k: np.ones((n // 4, 1)) for k in range(4)} for v in vc_names} or None
    ref = smlm.MixedLM(rng.normal(size=n), exog, groups, exog_re=exog_re, exog_vc=exog_vc)
    # (statsmodels sorts the components' names, as the model's vc_names are)
    assert covariance_names(re_names, ref.exog_vc.names) == ref.data.param_names[1:]


def test_the_array_intercept_is_named_as_its_variance_as_statsmodels():
    import statsmodels.regression.mixed_linear_model as smlm

    n = 20
    ref = smlm.MixedLM(np.arange(n) * 1.0, np.ones((n, 1)), np.repeat(np.arange(4), 5))
    assert ref.data.exog_re_names == [ARRAY_INTERCEPT_NAME]
    ours = covariance_names([ARRAY_INTERCEPT_NAME], [], array_intercept=True)
    assert ours == ref.data.param_names[1:]
    # a random effect that happens to bear the name still gets statsmodels' " Var"
    assert covariance_names([ARRAY_INTERCEPT_NAME], []) == ["Group Var Var"]


# the factor splitting as it was before names of one term were split in one scan: the
# reference the splitting must agree with, name by name
def _reference_top_level(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "[" and depth == 0:
            out.append((i, ch))
            j = text.find("]", i + 1)
            while j != -1 and not (j + 1 == len(text) or text[j + 1] == ":"):
                j = text.find("]", j + 1)
            i = len(text) - 1 if j == -1 else j
        elif ch in "([{":
            if depth == 0:
                out.append((i, ch))
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            out.append((i, ch))
        i += 1
    return out


def _reference_factors(name: str) -> list[tuple[str, str]]:
    top = _reference_top_level(name)
    cuts = [i for i, ch in top if ch == ":"]
    parts, begin = [], 0
    for cut in [*cuts, len(name)]:
        parts.append((begin, name[begin:cut]))
        begin = cut + 1
    out = []
    for begin, part in parts:
        opens = [i - begin for i, ch in top if ch == "[" and begin <= i < begin + len(part)]
        at = opens[0] if opens else len(part)
        out.append((part[:at], part[at:]))
    return out


_PIECES = st.sampled_from(
    [
        "a",
        "C(g)",
        "x",
        ":",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "'",
        '"',
        "\\",
        "T.",
        ",",
        " ",
        "Q('a b')",
    ]
)
_TEXT = st.lists(_PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=6), st.data())
def test_names_split_in_one_scan_as_name_by_name(stems, data):
    """A batch of names (the columns of a term share its factors) is split and
    respelled as each name alone would be, whatever the text (quotes and brackets that
    do not pair, colons in level text)."""
    names = [
        stem + suffix
        for stem, tail in stems
        for suffix in data.draw(st.lists(st.sampled_from(["", tail, f"[T.{tail}]"]), max_size=4))
    ]
    for name in names:
        rendered = ":".join(
            formulaic_spelling([f], None)[0] + level for f, level in _reference_factors(name)
        )
        assert formulaic_spelling([name], None) == [rendered]
    assert formulaic_spelling(names, None) == [formulaic_spelling([n], None)[0] for n in names]
    assert patsy_spelling(names, "y ~ C(g) + x") == [
        patsy_spelling([n], "y ~ C(g) + x")[0] for n in names
    ]


class _CountedText(str):
    """Text that counts the characters read from it one at a time."""

    reads = 0

    def __getitem__(self, key):
        if isinstance(key, int):
            _CountedText.reads += 1
        return str.__getitem__(self, key)


def test_the_columns_of_one_long_factor_are_split_reading_it_once():
    """``C(g, levels=[...])`` names each column with the whole level list: its columns
    are split reading the factor's text once, not once per column (a quadratic cost:
    10,000 levels took 81 s)."""
    levels = ",".join(str(i) for i in range(300))
    factor = f"C(g, levels=[{levels}])"
    names = [_CountedText(f"{factor}[T.{i}]") for i in range(300)]
    _CountedText.reads = 0
    assert formulaic_spelling(names, None) == [str(n) for n in names]
    assert _CountedText.reads < 2 * len(factor) + 300 * 20


def test_level_in_group_names_component_level_and_group():
    """Each value as Python writes it (a text ``'2'`` and a number ``2`` differ), an
    interaction's joined by ``:``."""
    assert level_in_group("rater", (2,), 17) == "rater level 2 in group 17"
    assert level_in_group("rater", ("2",), 17) == "rater level '2' in group 17"
    assert level_in_group("cls", ("c3",), "A") == "cls level 'c3' in group 'A'"
    assert level_in_group("cd", ("w", 1.5), 3) == "cd level 'w':1.5 in group 3"
