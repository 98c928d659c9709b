"""Formulas: parsed by formulaic, then checked node by node before anything is evaluated.

Formulas may come from files (job files, saved results), so every factor expression is
read as a Python syntax tree and checked against a whitelist before formulaic evaluates
it: data columns, formulaic's transforms, elementwise numpy functions and a few
elementwise column methods.  Anything else is refused, in particular calls of unknown
functions, an attribute read of a column or a computed value that is not one of those
methods' calls (``.index`` is the row labels, ``.real`` not the values' on pandas),
lambdas and comprehensions, f-strings, constant arithmetic whose result has no bound
(``9**9**9**9``, ``1 << 10**9``), calls that would write into their arguments (``out=``,
``inplace=``, ``copy=``, a ufunc's ``where=`` or its ``out`` given by position),
attributes of transforms other than ``contr``'s contrasts (``exp.at``), and the
transforms that learn from the data they are given (``poly``, formulaic's spline ``cs``,
``lag``, numpy reductions, column methods such as ``.mean()``): on
partitions they would learn something different each time.  ``center``,
``standardize``, ``scale`` and the splines ``bs``, ``cr`` and ``cc`` are allowed with
constant arguments only
(:data:`~dmixed.design.stateful.FROZEN_KEYWORDS`,
:func:`~dmixed.design.splines.spline_call`): their state is learned once over the rows
the fit uses (:mod:`dmixed.design.stateful`).
"""

from __future__ import annotations

import ast
import difflib
import operator
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormulaError, SpecError
from .messages import clean_message, shown, unknown_columns
from .splines import CUBIC_SPLINES, spline_call
from .stateful import FROZEN_KEYWORDS, SPLINES, learns, refuse_on_partitions

__all__ = [
    "LEARNING_TRANSFORMS",
    "CCall",
    "FactorInfo",
    "add_unique",
    "analyze_terms",
    "c_call",
    "categorical_factors",
    "check_categorical_sources",
    "check_explicit_levels",
    "check_python_factor",
    "frozen_calls",
    "parse_formula",
    "refuse_columns_named_as_transforms",
    "transforms",
]

# Transforms that learn state from the data: evaluated per partition they would
# learn something different on every partition.
LEARNING_TRANSFORMS = {
    "poly": (
        "is formulaic's, not patsy's (statsmodels' formulas have no poly(); write the "
        "powers, e.g. x + I(x**2)), and learns its orthogonal basis from the data it is given"
    ),
    "cs": (
        "is formulaic's, not patsy's (statsmodels' formulas have bs(), cr() and cc(), "
        "which dmixed supports), and learns its knots from the data it is given"
    ),
    "lag": (
        "is formulaic's, not patsy's, and depends on the order of the rows and on "
        "partition boundaries"
    ),
}
#: transforms a formula reads as values, not calls: the contrasts ``C()`` takes
#: (``C(a, Sum)``).  Any other transform name read as a value (``C(cs)``, ``I(scale)``) is
#: a column the data lacks, as patsy reads it, never the function itself.
_CONTRAST_NAMES = {"Treatment", "Sum", "Helmert", "Diff", "Poly"}
# numpy functions that are elementwise but not ufuncs.
_NUMPY_ELEMENTWISE = {"where", "clip", "round", "around", "nan_to_num"}
# methods that may be called on a column inside an expression (elementwise).
_ELEMENTWISE_METHODS = {"clip", "round", "abs", "astype", "pow", "isin"}
_BUILTINS_OK = {"abs"}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
#: the largest constant exponent a formula may write (``x ** 3``, ``I(2 ** 10)``)
MAX_EXPONENT = 1024
#: the most bits an integer that a formula computes from constants alone may have
#: (``I(2 ** 1024 * 3 ** 1024)``); Python's arithmetic on larger ones costs time
#: without bound (a product of products)
MAX_CONSTANT_BITS = 1 << 16
_NOT_PLAIN = (
    ast.Lambda,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
    ast.GeneratorExp,
    ast.NamedExpr,
    ast.Subscript,  # reads rows by position (or an object's internals)
    ast.Starred,
    ast.Await,
    ast.Yield,
    ast.YieldFrom,
    # f"{1:>200000000}": a format width allocates before anything can bound it, and a
    # model formula has no use for formatted text
    ast.JoinedStr,
    ast.FormattedValue,
)
#: arithmetic whose result on constants Python computes without bound (``1 << 10**9``),
#: bounded as powers are: a constant operand must be a number written out
_UNBOUNDED_OPS = (ast.Pow, ast.LShift, ast.RShift)
#: keywords that make a call write into one of its arguments (a column other terms
#: read) or leave values unset (a ufunc's ``where=``): refused in every call the
#: whitelist allows, whatever its function
_REFUSED_KEYWORDS = {"out", "inplace", "copy", "where"}
#: the most positional arguments an elementwise numpy function (not a ufunc: those take
#: their ``nin``) or a column method takes before its ``out`` or ``copy``
_NUMPY_POSITIONAL = {"where": 3, "clip": 3, "round": 2, "around": 2, "nan_to_num": 1}
_METHOD_POSITIONAL = {"clip": 2, "round": 1, "abs": 0, "astype": 1, "pow": 1, "isin": 1}
#: the attributes of formulaic's transforms a formula calls (``contr.treatment``);
#: other transforms are called by their name alone (not ``exp.at``, ``C.mro``)
_TRANSFORM_ATTRIBUTES = {
    "contr": {"treatment", "sum", "helmert", "diff", "poly", "custom", "SAS"},
}


def transforms() -> dict:
    """formulaic's transforms (the names a formula may call besides numpy), those
    patsy means otherwise with patsy's meaning
    (:data:`~dmixed.design.patsy_coding.PATSY_TRANSFORMS`)."""
    from formulaic.transforms import TRANSFORMS

    from .patsy_coding import PATSY_TRANSFORMS
    from .stateful import frozen_transforms

    return {**TRANSFORMS, **PATSY_TRANSFORMS, **frozen_transforms()}


def add_unique(lst: list, item) -> None:
    """Append ``item`` unless ``lst`` holds it (an ordered set)."""
    if item not in lst:
        lst.append(item)


_OPEN = {"(": ")", "[": "]", "{": "}"}
_QUOTES = "'\"`"


def fixed_columns_at_least(formula, columns: set | None = None) -> int | None:
    """A lower bound on the fixed-effect columns of ``formula``, read from its text
    without parsing it: the distinct terms of a right-hand side that joins terms with
    ``+`` only (each term gives at least one column; a factor of one level is refused
    later), plus the intercept unless a term is ``0``.  None where the text says
    more (another operator outside brackets, no ``~``): only the parse can count then.
    Terms in parentheses, braces or backticks are not counted (``(x1)`` and ``x1`` are
    one term), nor numbers; whitespace is ignored, so two spellings of one term count once.
    None too where a term is a name that is not one of ``columns`` (when given): the
    parse's message names it.
    """
    if not isinstance(formula, str):
        return None
    pieces: list[str] = []
    current: list[str] = []
    closing: list[str] = []
    quote = ""
    lhs_seen = False
    for ch in formula:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in _QUOTES:
            quote = ch
        elif ch in _OPEN:
            closing.append(_OPEN[ch])
        elif closing and ch == closing[-1]:
            closing.pop()
        elif not closing:
            if ch == "~" and not lhs_seen:
                lhs_seen, current = True, []
                continue
            if ch == "+" and lhs_seen:
                pieces.append("".join(current))
                current = []
                continue
            if not (ch.isalnum() or ch in "_. \t\n"):
                return None
        if not ch.isspace():
            current.append(ch)
    if not lhs_seen or quote or closing:
        return None
    pieces.append("".join(current))
    counted = {
        t
        for t in pieces
        if t and t[0] not in "({`" and "`" not in t and not t.replace(".", "").isdigit()
    }
    if columns is not None and any(t.isidentifier() and t not in columns for t in counted):
        return None
    return len(counted) + (0 if "0" in pieces else 1)


def parse_formula(formula: str, role: str, *, lhs: bool, columns: set | None = None):
    """Parse with formulaic; returns (lhs terms or None, rhs terms).

    ``columns``: the data's columns, where known; a term that formulaic cannot parse is
    then checked against them before its message suggests ``I(term)``.

    Raises
    ------
    SpecError
        If ``formula`` is not a string.
    FormulaError
        If it does not parse, has several parts (``|``), or has (``lhs=False``) or
        lacks (``lhs=True``) a left-hand side.
    """
    from formulaic import Formula
    from formulaic.parser.types import Term

    if not isinstance(formula, str):
        raise SpecError(f"{role} must be a string, got {type(formula).__name__}")
    bars = _lme4_bars(formula)
    if bars:
        raise FormulaError(_lme4_bar_message(formula, role, bars))
    try:
        parsed = Formula(formula)
    except Exception as e:  # formulaic's FormulaParsingError and friends
        if _too_deep_to_parse(e):
            raise FormulaError(_too_deep(role, formula)) from None
        called = _attribute_of_a_call(formula, role, columns)
        if called:
            raise FormulaError(f"invalid {role} {shown(formula)}: {called}") from None
        if _LAMBDA.search(formula):  # formulaic reads its ':' as an interaction
            raise FormulaError(_no_lambda(role, formula)) from None
        hint = _comparison_hint(formula) + _quoted_bracket_hint(formula)
        raise FormulaError(f"invalid {role} {shown(formula)}: {clean_message(e)}{hint}") from None

    def terms(part) -> list:
        out = list(part) if hasattr(part, "__iter__") else None
        if out is None or not all(isinstance(t, Term) for t in out):
            raise FormulaError(
                f"invalid {role} {shown(formula)}: multi-part formulas ('|') are not supported"
            )
        return out

    has_lhs = hasattr(parsed, "lhs")
    if lhs:
        if not has_lhs:
            raise FormulaError(
                f"invalid {role} {shown(formula)}: it needs a response, e.g. 'y ~ x1 + x2'"
            )
        return terms(parsed.lhs), terms(parsed.rhs)
    if has_lhs:
        raise FormulaError(
            f"invalid {role} {shown(formula)}: it must be one-sided (no '~' with a left-hand side)"
        )
    return None, terms(parsed)


def frozen_calls(formula: str, role: str, *, lhs: bool) -> list[str]:
    """The frozen stateful transforms (``center``, ``standardize``, ``scale``:
    :data:`~dmixed.design.stateful.FROZEN_KEYWORDS`) that ``formula`` calls, in order of
    first use, read from its text alone: where the data's columns are not known without
    reading the data (remote or Hive-partitioned Parquet), so that the command line
    refuses them before a cluster starts.  A column of such a name cannot be called,
    so a call of the name is the transform's.  Factors that do not parse are left to
    the full check (:func:`analyze_terms`), which runs on the data's columns.

    Raises
    ------
    FormulaError
        If the formula does not parse (:func:`parse_formula`).
    """
    from formulaic.parser.types import Factor
    from formulaic.utils.code import sanitize_variable_names

    lhs_terms, rhs_terms = parse_formula(formula, role, lhs=lhs)
    out: list[str] = []
    for term in [*(lhs_terms or []), *rhs_terms]:
        for factor in term.factors:
            if factor.eval_method is not Factor.EvalMethod.PYTHON:
                continue
            aliases: dict[str, str] = {}
            try:
                code = ast.parse(sanitize_variable_names(factor.expr, {}, aliases), mode="eval")
            except (SyntaxError, RecursionError, MemoryError):
                continue
            for node in ast.walk(code):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                name = aliases.get(node.func.id, node.func.id)
                if name in FROZEN_KEYWORDS or (name in SPLINES and learns(node)):
                    add_unique(out, name)
    return out


def _lme4_bars(formula: str) -> list[tuple[str, str, str, bool]]:
    """lme4's random-effects terms ``(effects | group)`` and ``(effects || group)`` in
    ``formula``: each parenthesized group outside any call holding a bar of its own
    (outside its inner calls, brackets, backquoted names and quoted strings: ``|``
    inside a call is Python's ``or``, inside backquotes part of a column's name), as
    ``(inner text, effects, group, double bar)``, in the order written.  Read from
    the text alone (nothing is evaluated)."""
    out = []
    bars: list[list[int]] = []  # per open "(": the positions of its own top-level bars
    for pos, calls, closed in _paren_scan(formula, "_.`)]"):
        ch = formula[pos]
        if closed is None:
            if ch == "(":
                bars.append([])
            elif ch == "|" and bars and not calls:
                bars[-1].append(pos)
            continue
        own = bars.pop() if bars else []
        start, call = closed
        if call or calls or not own:
            continue
        inner = formula[start + 1 : pos]
        first = own[0] - start - 1
        double = len(own) > 1 and own[1] == own[0] + 1
        effects, group = inner[:first], inner[first + (2 if double else 1) :]
        out.append((inner, effects.strip(), group.strip(), double))
    return out


def _lme4_re_formula(effects: str) -> str:
    """dmixed's ``re_formula`` for lme4's effects: lme4 adds an intercept unless the
    effects say ``0``, ``-1`` or ``1`` themselves, as dmixed's re_formula does not
    read them the same way, so the intercept is written out."""
    words = re.split(r"\s*[+]\s*", effects.strip())
    if any(w in ("0", "1", "-1") for w in words) or re.search(r"-\s*1\b", effects):
        return effects
    return f"1 + {effects}"


def _lme4_group(group: str) -> tuple[str | None, list[str]]:
    """lme4's grouping factor as ``(the one column it names or None, the columns of
    its combination)``: ``g`` and ```my g``` name one column; ``g:c`` (the
    combinations of g and c) and ``g/c`` (g, and c within g) name several, which
    ``groups=`` cannot (it takes one column)."""
    name = group[1:-1] if re.fullmatch(r"`[^`]*`", group) else group
    if name is not group or name.isidentifier():
        return name, [name]
    parts = [p.strip().strip("`") for p in re.split(r"[:/]", group)]
    return None, [p for p in parts if p]


def _lme4_effect_words(effects: str) -> tuple[bool, list[str]]:
    """lme4's effects as ``(has an intercept, the slopes' terms)``."""
    words = [w for w in re.split(r"\s*[+]\s*", effects.strip()) if w]
    slopes = [w for w in words if w not in ("0", "1", "-1") and not w.startswith("-")]
    intercept = not any(w in ("0", "-1") for w in words) and not re.search(r"-\s*1\b", effects)
    return intercept, slopes


def _lme4_components(key: str, levels: str, effects: str) -> dict[str, str]:
    """One variance component per lme4 effect within ``levels`` (each its own
    variance, as lme4's ``||`` gives): the intercept's key ``key``, a slope's
    ``key_<slope>``."""
    intercept, slopes = _lme4_effect_words(effects)
    out = {key: f"0 + C({levels})"} if intercept or not slopes else {}
    for w in slopes:
        suffix = re.sub(r"\W+", "_", w).strip("_")
        name = f"{key}_{suffix}" if intercept or len(slopes) > 1 else key
        out[name] = f"0 + C({levels}):{w}"
    return out


def _vc_flags(components: dict[str, str]) -> str:
    """The command line's ``--vc`` flags for ``components``, quoted for a shell."""
    return " ".join(f"--vc {shlex.quote(f'{k}={v}')}" for k, v in components.items())


def _combined(parts: list[str]) -> str:
    return " + '_' + ".join(f"data[{p!r}].astype(str)" for p in parts)


def _lme4_several_groups(group: str, parts: list[str], effects: str) -> str:
    """The advice for a grouping factor that is no one column (``g:c``, ``g/c``):
    ``g/c`` is g, and c within g (a variance component beside g's own effects);
    ``g:c`` is the combinations alone, so g has no effect of its own
    (``re_formula='0'``) where c within g is fitted as a variance component."""
    if len(parts) < 2:
        return (
            f"groups names one column of the data and ({group}) is none: make it a "
            "column of the data and give that column's name as groups"
        )
    outer, inner = parts[0], parts[-1]
    column = "_".join(parts)
    advice = (
        f"groups names one column of the data, not the combinations {group}: make them "
        f"a column (e.g. data[{column!r}] = {_combined(parts)}) and give groups={column!r}"
    )
    components = {inner: f"0 + C({inner})"}
    vc = f"vc_formula={components!r} (command line: --groups {shlex.quote(outer)} "
    if "/" in group:
        return (
            f"{advice}, or, with groups={outer!r}, fit {inner} within {outer} as a "
            f"variance component, {vc}{_vc_flags(components)})"
        )
    intercept, slopes = _lme4_effect_words(effects)
    if slopes or not intercept:
        return advice
    return (
        f"{advice}, or, with groups={outer!r} and re_formula='0' ({group} alone gives "
        f"{outer} no effect of its own), fit {inner} within {outer} as a variance "
        f"component, {vc}--re-formula 0 {_vc_flags(components)})"
    )


def _fixed_without_bars(formula: str, bars) -> str | None:
    """``formula`` with its bar terms taken out, where each is a term of its own (a
    ``+``, ``~`` or bracket on each side); None where one sits in an operator's
    expression (``x*(a|b)``), whose rewriting is the user's to choose."""
    fixed = formula
    for text, *_ in bars:
        term = f"({text})"
        at = fixed.find(term)
        before = fixed[:at].rstrip()[-1:]
        after = fixed[at + len(term) :].lstrip()[:1]
        if before not in ("~", "+", "(", "") or after not in ("+", ")", ""):
            return None
        if before == "+":
            fixed = fixed[: len(fixed[:at].rstrip()) - 1].rstrip() + fixed[at + len(term) :]
        elif after == "+":
            rest = fixed[at + len(term) :].lstrip()[1:].lstrip()
            fixed = fixed[:at] + rest
        else:
            fixed = fixed[:at] + "1" + fixed[at + len(term) :]
    return " ".join(fixed.split())


def _lme4_bar_message(formula: str, role: str, bars) -> str:
    """The message refusing lme4's bar terms in ``formula``: how dmixed writes them
    (``groups``, ``re_formula``, ``vc_formula``), in the API, on the command line and
    in a job file."""
    inner, effects, group, double = bars[0]
    re_formula = _lme4_re_formula(effects)
    column, parts = _lme4_group(group)
    head = (
        f"invalid {role} {shown(formula)}: ({inner.strip()}) is lme4's random-effects "
        "term; dmixed takes the grouping factor and the random effects apart from the "
        "fixed-effects formula"
    )
    notes = []
    vc = re.fullmatch(r"vc_formula\[(.*)\]", role)
    if vc:  # a variance component: its formula's columns are the component's levels
        key = vc[1][1:-1] if vc[1][:1] in "'\"" else vc[1]
        levels = column if column is not None else "_".join(parts)
        intercept, slopes = _lme4_effect_words(effects)
        components = _lme4_components(key, levels, effects)
        correlated = not double and len(slopes) + intercept > 1
        if correlated:
            how = (
                f": a variance component has one variance and no correlations, and "
                f"({inner.strip()}) is a correlated "
                f"{'intercept and slope' if intercept else 'set of slopes'}"
                f", which has no variance-component form: fit {levels} as the model's "
                f"groups (groups={levels!r}, re_formula={re_formula!r}); uncorrelated "
                f"(lme4's ||), each effect is a component of its own, "
                f"vc_formula={components!r} (command line: {_vc_flags(components)})"
            )
        else:
            how = (
                f": a variance component's formula holds only the columns of its effects, "
                f"within the model's groups, each effect a component of its own (its own "
                f"variance), e.g. vc_formula={components!r} "
                f"(command line: {_vc_flags(components)}; job file: vc_formula key)"
            )
        if column is None:
            how += (
                f"; first make the combinations {group} a column: "
                f"data[{levels!r}] = {_combined(parts)}"
            )
    elif column is None:
        how = ": " + _lme4_several_groups(group, parts, effects)
        if role == "formula":
            how += "; the fixed effects stay in formula"
            how += f", the effects in re_formula={re_formula!r}"
            if ":" in group and "/" not in group and len(parts) > 1:
                how += f" with groups={'_'.join(parts)!r}"
    elif role == "formula":
        fixed = _fixed_without_bars(formula, bars)
        flags = f"--groups {shlex.quote(column)} --re-formula {shlex.quote(re_formula)}"
        if fixed is None:
            how = (
                f": a bar term is a term of its own, and ({inner.strip()}) sits in an "
                f"operator's expression: write the fixed effects you mean without it in "
                f"formula, with groups={column!r}, re_formula={re_formula!r} (command "
                f"line: {flags}; job file: formula, groups and re_formula keys)"
            )
        else:
            how = (
                f": formula={fixed!r}, groups={column!r}, re_formula={re_formula!r} "
                f"(command line: --formula {shlex.quote(fixed)} {flags}; "
                "job file: formula, groups and re_formula keys)"
            )
    else:
        how = (
            f": {role} holds the effects only, re_formula={re_formula!r}, and the grouping "
            f"factor is groups={column!r} (command line: --re-formula "
            f"{shlex.quote(re_formula)} --groups {shlex.quote(column)})"
        )
    if double and not vc:
        notes.append(
            "lme4's || (uncorrelated effects) has no re_formula form: re_formula's "
            "effects have a full covariance matrix"
        )
    if len(bars) > 1:
        notes.append(
            "dmixed fits one grouping factor with one covariance matrix; other terms "
            "nested in the groups are variance components (vc_formula)"
        )
    return head + how + "".join(f"; {note}" for note in notes)


_COMPARISON = re.compile(r"==|!=|<=|>=|<|>")
#: Python's keyword ``lambda`` as a word (not inside a longer name such as ``lambda_``)
_LAMBDA = re.compile(r"(?<![\w.`'\"])lambda(?![\w`'\"])")


def _no_lambda(role: str, formula: str) -> str:
    """The refusal of a ``lambda`` in a formula (the owner of its words)."""
    return (
        f"invalid {role} {shown(formula)}: lambda is not allowed in a formula (a formula "
        "defines no function: one read from a job file or a command line may run no code "
        "of its own); compute the column once on the whole data and add it to the data"
    )


def _defines_a_function(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Lambda) for node in ast.walk(tree))


def _too_deep(role: str, formula: str) -> str:
    return (
        f"invalid {role} {shown(formula)}: it is nested too deeply or too long to parse; "
        "compute the expression once on the whole data and "
        "add it as a column"
    )


def _too_deep_to_parse(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from or during) is a parser's
    limit on nesting or size rather than a fault in the formula's words: Python's
    recursion limit (formulaic's parser and Python's both recurse on nesting), memory
    (Python's parser on thousands of nested unary operators) or Python's limit on
    nested parentheses.  The exception's type is read, not its text: the text echoes
    the formula, which may hold any word."""
    seen: set[int] = set()
    node: BaseException | None = error
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, (RecursionError, MemoryError)):
            return True
        if isinstance(node, SyntaxError) and "too many nested parentheses" in str(node.msg):
            return True
        node = node.__cause__ or node.__context__
    return False


def _names(names: list[str], most: int = 3) -> str:
    """``names`` once each, in order, the first ``most`` named, then how many more."""
    once = list(dict.fromkeys(names))
    more = f" and {len(once) - most} more" if len(once) > most else ""
    return ", ".join(once[:most]) + more


def _attribute_of_a_call(formula: str, role: str, columns: set | None) -> str:
    """What is refused in a formula that formulaic cannot parse because a term reads an
    attribute of a call's result (``abs(x).real``, ``f(x).astype(int)``): formulaic
    reads Python only inside a call's parentheses, and says "invalid syntax" or
    "Missing operator".  Names the term, what it reads, the functions it calls that are
    not known, and the whitelist's verdict on the term (:func:`check_python_factor`, the
    check ``I(term)`` would meet; nothing is evaluated); "" where no term of the formula
    reads an attribute of a call's result outside a call.

    ``I(term)`` is suggested only where it would be accepted: a short term that passes
    the whitelist with the data's ``columns`` (known), reads no name that is not a
    column, and reads of a computed value only the elementwise methods."""
    term = _call_attribute_term(formula)
    if term is None:
        return ""
    expr, attr = term
    message = f"the term {shown(expr)} reads {attr} of a call's result, which a formula "
    message += "reads only inside a call"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return message
    known = transforms()
    unknown = [
        f"{node.func.id}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id not in known
        and node.func.id not in _BUILTINS_OK
    ]
    if unknown:
        message += f"; it calls {_names(unknown)}, not a transform nor an elementwise "
        message += "numpy function"
    prefix = f"{role} {shown(formula)}: "
    info = FactorInfo()
    try:
        check_python_factor(expr, set(columns or ()), role, formula, info)
    except FormulaError as e:
        verdict = str(e)
        return f"{message}; {verdict[len(prefix) :] if verdict.startswith(prefix) else verdict}"
    if unknown or columns is None or shown(expr) != repr(expr):
        return message  # the suggestion could not be checked, or is as long as the term
    names = [n for n in info.unknown if not n.endswith("()")]
    if names:
        quoted = _names([repr(n) for n in names])
        return f"{message}; inside I() it would read {quoted} as a column, and the data have none"
    unvetted = _unvetted_attributes(tree)
    if unvetted:
        methods = ", ".join(f".{m}()" for m in sorted(_ELEMENTWISE_METHODS))
        return (
            f"{message}; the attribute {_names(unvetted)} is not allowed: of a computed value "
            f"a formula reads only the elementwise methods {methods}"
        )
    return f"{message}: write I({expr})"


def _unvetted_attributes(tree: ast.AST) -> list[str]:
    """The attributes ``tree`` reads of a computed value (not of a dotted name: a
    column's or a module's) other than the calls of an elementwise method."""
    called = {
        id(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _ELEMENTWISE_METHODS
    }
    return [
        f".{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _dotted(node) is None and id(node) not in called
    ]


def _call_attribute_term(formula: str) -> tuple[str, str] | None:
    """The first term of ``formula`` outside any call that reads an attribute of a
    call's result, as ``(the term's text, "the attribute .a" or "the method .m()")``;
    None where there is none."""
    for pos, calls, closed in _paren_scan(formula, "_.`)]"):
        if closed is None or not closed[1] or calls != 1:
            continue
        after = formula[pos + 1 :].lstrip()
        if not after.startswith("."):
            continue
        start = closed[0]
        while start > 0 and (formula[start - 1].isalnum() or formula[start - 1] in "_."):
            start -= 1
        end = pos + 1
        depth = 0
        while end < len(formula):
            ch = formula[end]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and not (ch.isalnum() or ch in "_. "):
                break
            end += 1
        expr = formula[start:end].strip()
        name = re.match(r"\s*\.\s*(\w*)\s*(\()?", after)
        attr = (
            f"the method .{name[1]}()"
            if name and name[2]
            else f"the attribute .{name[1] if name else ''}"
        )
        return expr, attr
    return None


def _comparison_hint(formula: str) -> str:
    """A message tail for a formula that compares outside any call: patsy reads
    ``(z > 0)`` as a boolean factor, formulaic's grammar has no comparisons (only
    Python inside calls has them), so the term must be written ``I(z > 0)``, which
    dmixed reads as patsy reads both (``I(z > 0)[T.True]``).  Names the first such
    parenthesized term; "" where the formula compares nowhere outside a call."""
    for pos, calls, closed in _paren_scan(formula, "_.`)]"):
        if closed is None:
            continue
        start, call = closed
        inner = formula[start + 1 : pos].strip()
        if not call and not calls and _COMPARISON.search(inner):
            return (
                f"; the term ({inner}) compares values outside I(): formulas "
                f"compare only inside a call, write I({inner}) (patsy's boolean "
                f"factor, 'I({inner})[T.True]')"
            )
    if _COMPARISON.search(_outside_calls(formula)):
        return "; formulas compare values only inside a call: write I(...) around the comparison"
    return ""


def _quoted_bracket_hint(formula: str) -> str:
    """A message tail for a formula with a bracket inside a quoted string
    (``Treatment("c(d")``): formulaic's tokenizer counts brackets inside a call
    without reading its quotes, so it ends "before quote context was closed" or
    Python meets an unmatched ``)``.  Python reads the escape ``\\x28`` as ``(``, and
    formulaic sees no bracket there; "" where no quoted string holds a bracket."""
    strings: list[str] = []
    for _ in _paren_scan(formula, "_.", strings):
        pass
    held = [t for t in strings if any(c in t for c in "()[]{}")]
    if not held:
        return ""
    escapes = {c: f"\\x{ord(c):02x}" for c in "()[]{}"}
    escaped = "".join(escapes.get(c, c) for c in held[0])
    return (
        f"; formulaic (the formula parser) does not read a bracket inside a quoted "
        f"string such as {held[0]}: write the bracket as Python's escape, {escaped}"
    )


def _outside_calls(formula: str) -> str:
    """``formula`` with the arguments of every call (and backquoted names) blanked."""
    return "".join(formula[pos] for pos, calls, _ in _paren_scan(formula, "_.") if not calls)


def _paren_scan(formula: str, call_edges: str, strings: list[str] | None = None):
    """Walk the characters of ``formula`` outside backquoted names and quoted strings
    (``Q('a|b')``, ``Treatment("c(d")``, escapes read; the quotes left out too),
    yielding ``(position, calls, closed)``: ``calls`` the number of calls, braces and
    square brackets the character is in (Python there: comparisons allowed, ``|`` is
    Python's ``or``), a call's own parentheses and a brace's or bracket's own
    characters counted in it; ``closed``, for a ``)``, the ``(position, is a call)``
    of the ``(`` it closes, else None.  A ``(`` opens a call after a letter, a digit
    or one of ``call_edges``; formulaic's ``{...}`` holds Python code.  A closing
    character that does not close the innermost open one is yielded as an ordinary
    character.  ``strings``, where given, receives each quoted string's text (quotes
    included; not backquoted names).  The one scanner of brackets: every reading of a
    formula's text skips quoted characters the same way."""
    calls = 0
    stack: list[tuple[str, int, bool]] = []  # (opening character, its position, is Python)
    quote = ""  # the open quote: "`", "'" or '"'
    escaped = False
    opened = 0  # the position of the open quote
    for pos, ch in enumerate(formula):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "`":
                escaped = True
            elif ch == quote:
                if strings is not None and quote != "`":
                    strings.append(formula[opened : pos + 1])
                quote = ""
            continue
        if ch in "`'\"":
            quote, opened = ch, pos
            continue
        if ch == "(":
            before = formula[:pos].rstrip()
            call = bool(before) and (before[-1].isalnum() or before[-1] in call_edges)
            stack.append((ch, pos, call))
            calls += call
            yield pos, calls, None
        elif ch in "{[":
            stack.append((ch, pos, True))
            calls += 1
            yield pos, calls, None
        elif stack and ch == _CLOSES[stack[-1][0]]:
            _, start, call = stack.pop()
            yield pos, calls, ((start, call) if ch == ")" else None)
            calls -= call
        else:
            yield pos, calls, None


_CLOSES = {"(": ")", "{": "}", "[": "]"}


def _number(node: ast.AST) -> bool:
    """A number written out, possibly signed (``3``, ``-0.5``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float))


class _SizeUnknown(Exception):
    """A constant expression whose size the syntax does not bound (the reason)."""


#: what a constant expression computes: whether a Python integer (which grows with the
#: arithmetic on it) and an upper bound on its bits; a float, or numpy's fixed-width
#: result of numbers of at most 64 bits, does not grow (Python raises on a float that
#: overflows) and counts 64
_Size = tuple[bool, int]
_FIXED: _Size = (False, 64)
#: functions that, given constants, give a number no larger than their arguments' (on
#: integers of more than 64 bits numpy computes them with Python's integers)
_NOT_GROWING = {
    "abs",
    "I",
    *(
        f"{m}.{f}"
        for m in ("np", "numpy")
        for f in ("abs", "absolute", "negative", "positive", "sign", "round", "around", "rint")
    ),
    *(f"{m}.{f}" for m in ("np", "numpy") for f in ("floor", "ceil", "trunc", "fix", "fabs")),
}


def _written_count(node: ast.AST) -> int | float | None:
    """A power's exponent or a shift's count written out (signed), else None."""
    if not _number(node):
        return None
    if isinstance(node, ast.UnaryOp):
        value = node.operand.value  # type: ignore[attr-defined]
        return -value if isinstance(node.op, ast.USub) else value
    return node.value  # type: ignore[attr-defined]


def _binop_size(node: ast.BinOp, left: _Size, right: _Size) -> _Size:
    """The size of ``left op right`` on constants of those sizes (see :data:`_Size`)."""
    if isinstance(node.op, ast.MatMult):
        raise _SizeUnknown("@ of constants")
    if not (left[0] and right[0]) or isinstance(node.op, ast.Div):
        return _FIXED
    if isinstance(node.op, (ast.Pow, ast.LShift)):
        written = _written_count(node.right)
        if written is not None and written < 0:
            # a negative exponent gives a float; a negative shift count raises
            return _FIXED
        count = int(written) if written is not None else 1 << min(right[1], 64)
        bits = left[1] * count if isinstance(node.op, ast.Pow) else left[1] + count
    elif isinstance(node.op, ast.Mult):
        bits = left[1] + right[1]
    elif isinstance(node.op, (ast.RShift, ast.FloorDiv)):
        bits = left[1]
    else:
        bits = max(left[1], right[1]) + 1
    return True, bits


_EXACT_UNARY: dict[type, Callable[[int], int]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_EXACT_BINARY: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}


def _raise(node: ast.AST, what: str) -> Any:
    raise _SizeUnknown(f"{ast.unparse(node)!r} is {what} of a constant")


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None if not a chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


@dataclass
class FactorInfo:
    """What the factors of a formula read and how (used for checks and C() levels)."""

    columns: list[str] = field(default_factory=list)
    c_columns: list[str] = field(default_factory=list)  # first argument of C(), a column
    plain_columns: list[str] = field(default_factory=list)  # a factor that is a column
    #: columns whose values an expression computes with (not a factor that is the
    #: column, nor the first argument of ``C()``)
    expr_columns: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    #: names of the caller's scope the factors use (:mod:`dmixed.design.scope`)
    caller: list[str] = field(default_factory=list)
    #: formulaic's transform names the factors use (``np`` included)
    transforms: list[str] = field(default_factory=list)
    #: columns that a comparison orders (``<``, ``<=``, ``>``, ``>=``)
    ordered_columns: list[str] = field(default_factory=list)
    #: the frozen stateful transforms the factors call (``center``, ``standardize``,
    #: ``scale``; :mod:`dmixed.design.stateful`)
    stateful: list[str] = field(default_factory=list)
    #: columns a spline (``bs``, ``cr``, ``cc``) takes as its values: read as numbers
    spline_columns: list[str] = field(default_factory=list)


class _FactorChecker:
    """The whitelist walk over one factor's syntax tree (see the module docstring).

    Every node is visited; a call is allowed only for a known transform, an
    elementwise numpy function, an elementwise method of a column or ``abs``.
    """

    def __init__(self, columns: set, role: str, formula: str, info: FactorInfo, aliases: dict):
        self.columns = columns
        self.role = role
        self.formula = formula
        self.info = info
        self.aliases = aliases
        self.transforms = transforms()
        self.root: ast.AST | None = None  # the factor's whole expression
        self.c_args: set[int] = set()  # ids of the names that are C()'s first argument
        self.contrast_args: set[int] = set()  # ids of the names that are C()'s contrast
        self.sizes: dict[int, _Size | None] = {}  # size()'s answers, by node id
        self.values: dict[int, int] = {}  # the exact integers of small constants, by id
        self.powers: dict[int, int] = {}  # column_power()'s answers, by node id

    def name_of(self, n: str) -> str:
        return self.aliases.get(n, n)

    def refuse(self, what: str, why: str, learns: bool = False):
        # why: a term is evaluated on the rows at hand, which are not the whole data
        # wherever the data is read in pieces (partitions) or comes anew (prediction)
        pieces = "(each partition of a Dask collection, the new data of a prediction)"
        effect = (
            f"so it would learn anew from each piece of the data {pieces}, not from the whole"
            if learns
            else f"so a row's value could depend on the rows read with it {pieces}"
        )
        raise FormulaError(
            f"{self.role} {shown(self.formula)}: {what} is not supported: {why}, {effect}; "
            "compute it once on the whole data and add it as a column"
        )

    def check_shadowed_module(self, root: str, parts: list[str], dotted: str) -> None:
        """Refuse ``np.exp`` where the data has a column ``np``: the name reads the
        column (the data come first, as in patsy), which has no ``exp``.  What the
        column has (``np.abs()``, a method of a column) stays the column's, as in patsy.
        """
        module = self.transforms.get(root)
        if root not in self.columns or len(parts) < 2 or not isinstance(module, ModuleType):
            return
        if hasattr(module, parts[1]) and not hasattr(pd.Series, parts[1]):
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: column {root!r} has the name of the module "
                f"{root} ({module.__name__}) that {dotted} means: in a formula the name reads "
                f"the column (the data come first, as in patsy), which has no "
                f"{parts[1]!r}; {_rename_hint(root)}"
            )

    def visit(self, node: ast.AST) -> None:
        self.check_attribute(node)
        if isinstance(node, ast.Call):
            self.visit_call(node)
            return
        if isinstance(node, ast.Name):
            self.visit_name(node)
            return
        if isinstance(node, ast.Attribute):
            if self.visit_attribute(node):
                return
            # an attribute of a computed value that no call reads as a method: formulaic
            # would evaluate it, and what it gives is not known to be elementwise
            self.refuse_attribute(node.attr, "of a computed value")
        if isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: the f-string {shown(ast.unparse(node))} "
                "is not allowed: a model formula has no use for formatted text, and a format's "
                "width is not bounded"
            )
        if isinstance(node, _NOT_PLAIN):
            self.refuse(f"the expression {ast.unparse(node)!r}", "it is not a plain expression")
        if isinstance(node, ast.BinOp):
            self.check_bounded(node)
        if isinstance(node, ast.Compare) and any(isinstance(op, _ORDERING) for op in node.ops):
            # a column compared as it is (a method's result, e.g. .astype(str), is not
            # the column's own values)
            for operand in (node.left, *node.comparators):
                column = _quoted_name(operand)
                if column is None and isinstance(operand, ast.Name):
                    column = self.name_of(operand.id)
                if column in self.columns:
                    add_unique(self.info.ordered_columns, column)
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def reads_data(self, node: ast.AST) -> bool:
        """Whether an expression reads a column or a name of the caller's scope (a value
        of the data's size, or the caller's own): not a constant."""
        return self.size(node) is None

    def size(self, node: ast.AST) -> _Size | None:
        """What a constant expression computes (see :data:`_Size`), bounded from its
        syntax alone (nothing is evaluated); None for one that reads a column or a name
        of the caller's scope.  Calls and attributes that read no column are constants:
        ``abs(9 ** 1024)`` is as large as its argument, ``np.little_endian`` is
        numpy's value.  Raises :class:`_SizeUnknown` where no bound is known."""
        if id(node) not in self.sizes:
            size = self.unbounded_size(node)
            if size is not None and size[0] and size[1] <= MAX_CONSTANT_BITS:
                # the bound is loose (2 ** 40 counts 2 × 40 bits, 2 ** 63 - 1 one more
                # than 2 ** 63); integer arithmetic this small is computed exactly
                value = self.exact_value(node)
                if value is not None:
                    self.values[id(node)] = value
                    size = (True, max(abs(value).bit_length(), 1))
            if size is not None:  # a bound past the limit is refused anyway
                size = (size[0], min(size[1], MAX_CONSTANT_BITS + 1))
            self.sizes[id(node)] = size
        return self.sizes[id(node)]

    def exact_value(self, node: ast.AST) -> int | None:
        """The integer that ``node`` computes, if it is integer arithmetic on numbers
        written out whose operands' values are known (:attr:`values`); None otherwise.
        Called only where the bound on its size is at most :data:`MAX_CONSTANT_BITS`
        bits, as are its operands' (they have values), so this costs little."""
        if isinstance(node, ast.Constant):
            value = node.value
            return int(value) if isinstance(value, int) else None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _EXACT_UNARY:
            operand = self.values.get(id(node.operand))
            return None if operand is None else _EXACT_UNARY[type(node.op)](operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _EXACT_BINARY:
            left, right = self.values.get(id(node.left)), self.values.get(id(node.right))
            if left is None or right is None:
                return None
            if isinstance(node.op, (ast.Pow, ast.LShift, ast.RShift)) and right < 0:
                return None  # a float, or an error Python raises
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                return None
            return _EXACT_BINARY[type(node.op)](left, right)
        return None

    def unbounded_size(self, node: ast.AST) -> _Size | None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool | int):
                return True, max(int(node.value).bit_length(), 1)
            if isinstance(node.value, float | complex):
                return _FIXED
            raise _SizeUnknown(f"the constant {node.value!r} is not a number")
        if isinstance(node, ast.Name):
            # a column, the caller's, or a function read as a value (which other checks
            # refuse: a column the data lack)
            return None
        if isinstance(node, ast.Attribute):
            return self.attribute_size(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return None if self.size(node.operand) is None else (True, 1)
            operand = self.size(node.operand)
            return None if operand is None else (operand[0], operand[1] + 1)
        if isinstance(node, ast.BinOp):
            both = self.sizes_of([node.left, node.right])
            return None if both is None else _binop_size(node, *both)
        if isinstance(node, ast.Call):
            return self.call_size(node)
        parts = {
            ast.BoolOp: lambda n: n.values,
            ast.Compare: lambda n: [n.left, *n.comparators],
            ast.IfExp: lambda n: [n.test, n.body, n.orelse],
            ast.Tuple: lambda n: n.elts,
            ast.List: lambda n: n.elts,
        }.get(type(node))
        if parts is None:
            if any(self.size(c) is None for c in ast.iter_child_nodes(node)):
                return None
            raise _SizeUnknown(f"{ast.unparse(node)!r} is not arithmetic")
        sizes = self.sizes_of(parts(node))
        if sizes is None:
            return None
        if isinstance(node, ast.Compare):
            return True, 1
        return any(s[0] for s in sizes), max((s[1] for s in sizes), default=1)

    def sizes_of(self, nodes) -> list[_Size] | None:
        """The sizes of constant expressions; None if one reads the data (what the
        others are does not matter then: a computation with the data's values)."""
        sizes, unknown = [], None
        for n in nodes:
            try:
                sizes.append(self.size(n))
            except _SizeUnknown as e:
                unknown = e
        if any(s is None for s in sizes):
            return None
        if unknown is not None:
            raise unknown
        return sizes  # type: ignore[return-value]

    def attribute_size(self, node: ast.Attribute) -> _Size | None:
        """``np.pi``, ``np.little_endian``: numpy's value; an attribute of a column is
        the column's (other checks allow only its elementwise methods)."""
        parts = _dotted(node)
        if parts is None:
            return None if self.size(node.value) is None else _raise(node, "an attribute")
        root = self.name_of(parts[0])
        if root in self.columns or root not in self.transforms:
            return None
        value: Any = self.transforms[root]
        for p in parts[1:]:
            value = getattr(value, p, None)
        if isinstance(value, bool | int):
            return True, max(value.bit_length(), 1)
        if isinstance(value, float | complex | np.generic):
            return _FIXED
        raise _SizeUnknown(f"{'.'.join(parts)} is not a number")

    def call_size(self, node: ast.Call) -> _Size | None:
        """A call reads the data if its function is a column's method or the caller's,
        or an argument reads the data; given constants, a function of
        :data:`_NOT_GROWING` gives a number as large as its arguments', another numpy
        function a fixed-width number (its arguments of at most 64 bits), a transform
        of formulaic's something other than a number (a contrast)."""
        if _quoted_name(node) is not None:
            return None
        func = _dotted(node.func)
        if func is None:
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else node.func
            if self.size(receiver) is None:
                return None
            raise _SizeUnknown(f"{ast.unparse(node.func)}() of a constant")
        root = self.name_of(func[0])
        if root in self.columns or (root not in self.transforms and root not in _BUILTINS_OK):
            return None
        dotted = ".".join([root, *func[1:]])
        function = self.transforms.get(root)
        numeric = root in ("np", "numpy") or isinstance(function, np.ufunc)
        try:
            arguments = self.sizes_of([*node.args, *(k.value for k in node.keywords)])
        except _SizeUnknown:
            if numeric or dotted in _NOT_GROWING:
                raise
            return _FIXED  # formulaic's transforms of constants: contrasts, levels
        if arguments is None:
            return None
        if dotted in _NOT_GROWING:
            return (
                any(a[0] for a in arguments),
                max((a[1] for a in arguments), default=1),
            )
        if not numeric:
            return _FIXED  # formulaic's transforms of constants: contrasts, levels
        values = [self.values.get(id(a)) for a in [*node.args, *(k.value for k in node.keywords)]]
        if any(
            a[0] and a[1] > 63 and not (v is not None and -(1 << 63) <= v < 1 << 64)
            for a, v in zip(arguments, values, strict=True)
        ):
            raise _SizeUnknown(
                f"{dotted}() computes with Python's integers on one of more than 64 bits"
            )
        return _FIXED

    def check_size(self, node: ast.AST) -> None:
        """Refuse a constant expression of no known bound or of more than
        :data:`MAX_CONSTANT_BITS` bits."""
        try:
            size = self.size(node)
        except _SizeUnknown as e:
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {shown(ast.unparse(node))} is not "
                f"allowed: what it computes from constants has no known bound ({e}); "
                "compute the value once and write it out"
            ) from None
        if size is not None and size[0] and size[1] > MAX_CONSTANT_BITS:
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {shown(ast.unparse(node))} is not "
                f"allowed: arithmetic on constants may make an integer of at most "
                f"{MAX_CONSTANT_BITS} bits; compute the value once and write it out"
            )

    def check_object_dtype(self, node: ast.Call) -> None:
        """Refuse a call given numpy's object dtype (``.astype('O')``, ``dtype=object``,
        ``np.object_``): the values become Python's integers, whose powers and products
        grow without bound (the power bounds hold for fixed-width numbers only)."""
        for argument in [*node.args, *(k.value for k in node.keywords)]:
            if self.is_object_dtype(argument):
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: {shown(ast.unparse(node))} is not "
                    f"allowed: {shown(ast.unparse(argument))} is numpy's object dtype, whose "
                    "values (Python's integers) grow without bound in a formula's arithmetic; "
                    "convert to a fixed-width dtype ('int64', 'float64')"
                )

    def is_object_dtype(self, node: ast.AST) -> bool:
        """Whether an argument names a dtype that holds Python objects (nothing is
        evaluated but written-out literals and numpy's attributes)."""
        value: Any
        if isinstance(node, ast.Name):
            name = self.name_of(node.id)
            if name in self.columns:
                return False
            value = {"object": object}.get(name)
        elif isinstance(node, ast.Attribute):
            parts = _dotted(node)
            if parts is None or self.name_of(parts[0]) not in ("np", "numpy"):
                return False
            value = np
            for p in parts[1:]:
                value = getattr(value, p, None)
        elif isinstance(node, (ast.Constant, ast.Tuple, ast.List, ast.Dict)):
            try:
                value = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False
        else:
            return False
        if value is None:
            return False
        if isinstance(value, type) and issubclass(value, np.dtype):
            return value is type(np.dtype(object))
        if "O" not in repr(value) and "object" not in repr(value):
            # numpy's object dtype is spelled with 'O' or 'object' only; numpy is not
            # asked about the rest, e.g. its deprecated alias 'a' (bytes), whose warning
            # could be hidden only by changing warnings' filters, which every thread of
            # the process shares
            return False
        try:
            return bool(np.dtype(value).hasobject)
        except (TypeError, ValueError, SyntaxError, OverflowError, MemoryError):
            return False

    def pow_call(self, node: ast.Call) -> tuple[ast.AST, ast.AST] | None:
        """The base and exponent of ``a.pow(n)``, ``np.power(a, n)``, ``np.pow(a, n)``,
        ``np.float_power(a, n)``; None for another call."""
        func, parts = node.func, _dotted(node.func)
        numpy = parts is not None and self.name_of(parts[0]) in ("np", "numpy")
        if isinstance(func, ast.Attribute) and func.attr == "pow" and not numpy:
            given = [*node.args, *(k.value for k in node.keywords if k.arg == "other")]
            return (func.value, given[0]) if given else None
        if (
            numpy
            and len(parts or ()) == 2
            and func.attr in ("power", "pow", "float_power")  # type: ignore[attr-defined]
            and len(node.args) >= 2
        ):
            return node.args[0], node.args[1]
        return None

    def exponent_count(self, exponent: ast.AST) -> int:
        """How many times a power multiplies its base's bits: the exponent written
        out, a bound from a constant's size, 1 for one that reads the data."""
        written = _written_count(exponent)
        if written is not None:
            return max(1, int(np.ceil(abs(written))))
        try:
            size = self.size(exponent)
        except _SizeUnknown:
            return 1 << 64
        if size is None or not size[0]:
            return 1  # the data's values, or a float: no growth of a fixed width
        value = self.values.get(id(exponent))
        return max(1, abs(value)) if value is not None else 1 << min(size[1], 64)

    def column_power(self, node: ast.AST) -> int:
        """The degree of an expression in the data it reads: 1 for a column, the
        product of the exponents of powers stacked on it (``(x ** a) ** b``, ``.pow()``),
        the sum over a product, 0 for a constant."""
        if id(node) in self.powers:
            return self.powers[id(node)]
        try:
            constant = self.size(node) is not None
        except _SizeUnknown:
            constant = True  # refused by check_size
        if constant:
            power = 0
        elif isinstance(node, ast.Name):
            power = 1
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            power = max(self.column_power(node.left), 1) * self.exponent_count(node.right)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            power = self.column_power(node.left) + self.column_power(node.right)
        elif isinstance(node, ast.Call) and (called := self.pow_call(node)) is not None:
            power = max(self.column_power(called[0]), 1) * self.exponent_count(called[1])
        else:
            power = max((self.column_power(c) for c in ast.iter_child_nodes(node)), default=0)
        self.powers[id(node)] = power
        return power

    def check_column_power(self, node: ast.AST) -> None:
        """Refuse powers stacked on the data past :data:`MAX_EXPONENT` in all (values
        held as Python's integers would grow without bound)."""
        power = self.column_power(node)
        if power > MAX_EXPONENT:
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {shown(ast.unparse(node))} is not "
                f"allowed: the powers it applies to the data multiply to more than "
                f"{MAX_EXPONENT} (the most a formula's exponents may make in all)"
            )

    def check_bounded(self, node: ast.BinOp) -> None:
        """Refuse arithmetic that Python would evaluate without bound on constants
        (``9**9**9**9``, ``1 << 10**9``, ``'a' * 10**9``): a power's or a shift's
        constant operand must be a number written out, an exponent or a shift's count at
        most :data:`MAX_EXPONENT` in size, and text or sequences take no part in
        arithmetic.  Products and sums of such numbers grow with the formula's length
        only."""
        text = (ast.Constant, ast.List, ast.Tuple, ast.JoinedStr)
        for side in (node.left, node.right):
            if isinstance(side, text) and not (
                isinstance(side, ast.Constant) and isinstance(side.value, (int, float))
            ):
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: {ast.unparse(node)!r} is not allowed: "
                    "text and sequences take no part in a formula's arithmetic"
                )
        self.check_size(node)
        if isinstance(node.op, ast.Pow):
            self.check_column_power(node)
        if not isinstance(node.op, _UNBOUNDED_OPS):
            return
        what, operand = (
            ("power", "exponent") if isinstance(node.op, ast.Pow) else ("shift", "shift count")
        )
        left, right = self.size(node.left), self.size(node.right)
        if left is not None and left[0] and not _number(node.left):
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: the {what} {ast.unparse(node)!r} is not "
                f"allowed: a {what} of a constant must {'raise' if what == 'power' else 'shift'} "
                "a number written out"
            )
        if right is None or not right[0]:
            return  # a column's values, or a float or fixed-width exponent
        exponent = node.right
        if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, (ast.USub, ast.UAdd)):
            exponent = exponent.operand
        if not (
            _number(exponent)
            and isinstance(exponent, ast.Constant)
            and abs(exponent.value) <= MAX_EXPONENT
        ):
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: the {what} {ast.unparse(node)!r} is not "
                f"allowed: a constant {operand} must be a number of at most {MAX_EXPONENT}"
            )

    def refuse_attribute(self, attr: str, of: str, column: str | None = None) -> None:
        """Refuse reading ``.attr`` (not a method call) of a column or computed value;
        ``column``: a column whose name the dotted name spells (``x1.sq``), which an
        expression reads in backticks."""
        methods = ", ".join(f".{m}()" for m in sorted(_ELEMENTWISE_METHODS))
        hint = (
            f"; to read the column {column!r} in an expression, quote it in backticks: `{column}`"
            if column is not None
            else ""
        )
        raise FormulaError(
            f"{self.role} {shown(self.formula)}: the attribute .{attr} is not allowed: "
            f"{of} a formula reads only the elementwise methods {methods}{hint}"
        )

    def check_attribute(self, node: ast.AST) -> None:
        """Refuse private and special attributes anywhere in an attribute chain."""
        while isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: the attribute .{node.attr} is not "
                    "allowed: private and special attributes reach past what a formula may read"
                )
            node = node.value

    def visit_call(self, node: ast.Call) -> None:
        self.check_object_dtype(node)
        self.visit_call_parts(node)
        if self.pow_call(node) is not None:
            self.check_column_power(node)
        # after its parts, which other checks refuse with their own reasons (f-strings)
        self.check_size(node)

    def visit_call_parts(self, node: ast.Call) -> None:
        self.check_attribute(node.func)
        parts = _dotted(node.func)
        if parts is None:
            if isinstance(node.func, ast.Attribute):
                if node.func.attr not in _ELEMENTWISE_METHODS:
                    self.refuse(f"the method call .{node.func.attr}()", "it may not be elementwise")
                self.check_arguments(
                    node, f".{node.func.attr}()", _METHOD_POSITIONAL[node.func.attr]
                )
                self.visit(node.func.value)
            else:
                self.refuse(f"the call {ast.unparse(node.func)}()", "it is not a known transform")
        elif not self.check_named_call(node, parts):
            return  # Q("name"): its argument is a column name, not an expression
        for a in node.args:
            self.visit(a)
        for k in node.keywords:
            self.visit(k.value)

    def check_arguments(self, node: ast.Call, called: str, most: int | None = None) -> None:
        """Refuse arguments of a call the whitelist allows that would make it write into
        one of its arguments (a column every other term reads too) or leave values
        unset: ``out=``, ``inplace=``, ``copy=``, a ufunc's ``where=``, ``**`` keywords,
        and more than ``most`` positional arguments (the next one is ``out``:
        ``np.exp(x, x)``)."""
        for k in node.keywords:
            if k.arg is None or k.arg in _REFUSED_KEYWORDS:
                given = "**" if k.arg is None else f"{k.arg}="
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: the argument {given} of {called} is "
                    "not allowed: a formula's calls compute new values, and may neither "
                    "write into their arguments (the columns other terms read) nor leave "
                    f"values unset; the keywords {', '.join(sorted(_REFUSED_KEYWORDS))} and "
                    "** are refused"
                )
        if most is not None and len(node.args) > most:
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {called} takes at most {most} "
                f"positional argument{'' if most == 1 else 's'} in a formula: the next one "
                "is where it would write its result (out), into a column other terms read"
            )

    def check_named_call(self, node: ast.Call, parts: list[str]) -> bool:
        """Check a call of a dotted name; False when its arguments are not expressions."""
        root = self.name_of(parts[0])
        dotted = ".".join([root, *parts[1:]])
        self.check_shadowed_module(root, parts, dotted)
        if root in self.columns and len(parts) > 1:
            if parts[-1] not in _ELEMENTWISE_METHODS or len(parts) > 2:
                self.refuse(f"the method call {dotted}()", "it may not be elementwise")
            self.check_arguments(node, f"{dotted}()", _METHOD_POSITIONAL[parts[-1]])
            add_unique(self.info.columns, root)
        elif root in ("np", "numpy") and root in self.transforms:
            add_unique(self.info.transforms, root)
            self.check_numpy_call(node, parts, dotted)
        elif root in self.transforms:
            add_unique(self.info.transforms, root)
            if len(parts) > 1 and (
                len(parts) > 2 or parts[1] not in _TRANSFORM_ATTRIBUTES.get(root, ())
            ):
                allowed = sorted(
                    f"{t}.{a}" for t, a_s in _TRANSFORM_ATTRIBUTES.items() for a in a_s
                )
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: {dotted}() is not allowed: a formula "
                    f"calls a transform by its name alone, and of the transforms' attributes only "
                    f"{', '.join(allowed)}"
                )
            function = self.transforms[root]
            self.check_arguments(
                node, f"{dotted}()", function.nin if isinstance(function, np.ufunc) else None
            )
            return self.check_transform_call(node, root)
        elif root in _BUILTINS_OK and len(parts) == 1:
            self.check_arguments(node, f"{root}()", 1)
        elif root in self.columns:
            self.refuse(f"calling column {root!r}", "it is not a function")
        else:
            self.info.unknown.append(dotted + "()")
        return True

    def check_numpy_call(self, node: ast.Call, parts: list[str], dotted: str) -> None:
        obj: Any = np
        for p in parts[1:]:
            obj = getattr(obj, p, None)
        if obj is None:
            self.info.unknown.append(dotted + "()")
        elif len(parts) != 2 or (
            not isinstance(obj, np.ufunc) and parts[-1] not in _NUMPY_ELEMENTWISE
        ):
            # (np.exp.at writes into its argument; np.ma.round is not numpy's round)
            self.refuse(f"{dotted}()", "it is not an elementwise numpy function")
        else:
            most = obj.nin if isinstance(obj, np.ufunc) else _NUMPY_POSITIONAL[parts[-1]]
            self.check_arguments(node, f"{dotted}()", most)

    def check_transform_call(self, node: ast.Call, root: str) -> bool:
        if root in LEARNING_TRANSFORMS:
            self.refuse(f"the stateful transform {root}()", f"it {LEARNING_TRANSFORMS[root]}", True)
        if root in FROZEN_KEYWORDS or root in SPLINES:
            self.check_one_column_values(node, root)
        if root in FROZEN_KEYWORDS:
            self.check_frozen_call(node, root)
        if root in SPLINES:
            self.check_spline_call(node, root)
        if root == "Q":
            # Q("name") quotes one column name; anything more would be evaluated
            if (
                len(node.args) != 1
                or node.keywords
                or not isinstance(node.args[0], ast.Constant)
                or not isinstance(node.args[0].value, str)
            ):
                raise FormulaError(
                    f"{self.role} {shown(self.formula)}: {ast.unparse(node)} is not supported: "
                    "Q() takes exactly one quoted column name, e.g. Q('my column')"
                )
            col = node.args[0].value
            if col in self.columns:
                add_unique(self.info.columns, col)
                if node is self.root:
                    add_unique(self.info.plain_columns, col)
                elif id(node) not in self.c_args:  # C(Q('x')) reads x as C(x) does
                    add_unique(self.info.expr_columns, col)
            else:
                self.info.unknown.append(str(col))
            return False
        if root == "C" and node.args:
            first = node.args[0]
            quoted = _quoted_name(first)
            if isinstance(first, ast.Name) and self.name_of(first.id) in self.columns:
                add_unique(self.info.c_columns, self.name_of(first.id))
                self.c_args.add(id(first))
            elif isinstance(quoted, str) and quoted in self.columns:
                # C(Q('my col')): Q() only names the column, as in c_call
                add_unique(self.info.c_columns, quoted)
                self.c_args.add(id(first))
            contrasts = node.args[1:2] + [k.value for k in node.keywords if k.arg == "contrast"]
            self.contrast_args.update(id(c) for c in contrasts if isinstance(c, ast.Name))
        return True

    def check_one_column_values(self, node: ast.Call, root: str) -> None:
        """The values that ``center``, ``standardize``, ``scale``, ``bs``, ``cr`` or
        ``cc`` (``root``) transforms hold no spline call (``bs()``, ``cr()``,
        ``cc()``): a spline makes several columns, which
        formulaic would transform one by one with a state of each that dmixed does not
        keep, so it would be learned again from whatever rows are predicted."""
        values = node.args[0] if node.args else None
        inner = next(
            (
                n
                for n in (ast.walk(values) if values is not None else ())
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in SPLINES
            ),
            None,
        )
        if inner is None:
            return
        raise FormulaError(
            f"{self.role} {shown(self.formula)}: {ast.unparse(node)} is not supported: "
            f"the values {root}() transforms include {ast.unparse(inner)}, which makes "
            f"several columns, and {root}() transforms one; transform the values before "
            f"{inner.func.id}() (e.g. {inner.func.id}(center(x), df=4)) or use "
            f"{inner.func.id}()'s columns as they are"
        )

    def check_spline_call(self, node: ast.Call, root: str) -> None:
        """``bs(x, ...)``, ``cr(x, ...)``, ``cc(x, ...)``: one expression to transform,
        then patsy's arguments, each a
        constant (:func:`~dmixed.design.splines.spline_call`); one that learns its
        knots is a frozen transform, never in a variance component (evaluated within
        groups, it would learn per group)."""
        try:
            call = spline_call(node)
        except ValueError as e:
            takes = (
                "df, knots, lower_bound, upper_bound and constraints, each written as a "
                "constant (a whole number, a tuple of numbers, a number, 'center')"
                if root in CUBIC_SPLINES
                else "df, knots, degree, include_intercept, lower_bound and upper_bound, "
                "each written as a constant (a whole number, a tuple of numbers, "
                "True/False, a number)"
            )
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {ast.unparse(node)} is not supported: "
                f"{e}; {root}() takes the values, then patsy's {takes}"
            ) from None
        if self.role.startswith("vc_formula"):
            # the variance components' evaluator reads one column per numeric factor
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {ast.unparse(node)} is not supported "
                f"in a variance component: {root}() makes several columns from one "
                "factor; add its columns to the data and name them in the formula"
            )
        if call.learns:
            add_unique(self.info.stateful, root)
        if node.args and isinstance(node.args[0], ast.Name):
            add_unique(self.info.spline_columns, node.args[0].id)

    def check_frozen_call(self, node: ast.Call, root: str) -> None:
        """``center(x)``, ``standardize(x, ...)``, ``scale(x, ...)``: one expression to
        transform, then only the keywords patsy's transform takes, each a constant of its
        kind (:data:`~dmixed.design.stateful.FROZEN_KEYWORDS`), and never in a variance
        component (evaluated within groups, it would learn per group)."""
        allowed = FROZEN_KEYWORDS[root]
        if self.role.startswith("vc_formula"):
            refuse_on_partitions([root], self.role, self.formula, "within a variance component")
        bad = next(
            (
                k
                for k in node.keywords
                if k.arg not in allowed
                or not isinstance(k.value, ast.Constant)
                or not isinstance(k.value.value, allowed[k.arg])
                or (k.arg != "ddof" and not isinstance(k.value.value, bool))
                or (k.arg == "ddof" and (isinstance(k.value.value, bool) or k.value.value < 0))
            ),
            None,
        )
        if (
            len(node.args) != 1
            or bad is not None
            or len({k.arg for k in node.keywords}) < len(node.keywords)
        ):
            spelled = (
                ", ".join(f"{k}={'True' if t == (bool,) else '0'}" for k, t in allowed.items())
                or "no other argument"
            )
            raise FormulaError(
                f"{self.role} {shown(self.formula)}: {ast.unparse(node)} is not supported: "
                f"{root}() takes one expression to transform and then only {spelled}, "
                "each written as a constant (True/False, a whole number for ddof)"
            )
        add_unique(self.info.stateful, root)

    def visit_name(self, node: ast.Name) -> None:
        n = self.name_of(node.id)
        # a contrast's name is a value only as C()'s contrast (C(a, Sum)); a column of
        # that name read there is refused (refuse_columns_named_as_transforms)
        contrast = id(node) in self.contrast_args and n in _CONTRAST_NAMES
        if contrast and n in self.transforms:
            add_unique(self.info.transforms, n)
        if n in self.columns:
            add_unique(self.info.columns, n)
            if id(node) not in self.c_args:
                add_unique(self.info.expr_columns, n)
        elif not contrast and n not in ("True", "False", "None"):
            self.info.unknown.append(n)

    def visit_attribute(self, node: ast.Attribute) -> bool:
        """Record ``column.attr`` or ``module.attr``; False if not a dotted name."""
        parts = _dotted(node)
        if parts is None:
            return False
        root = self.name_of(parts[0])
        self.check_shadowed_module(root, parts, ".".join([root, *parts[1:]]))
        if root in self.columns:
            # a column's attribute (.index, .real, .name) is not its values elementwise
            dotted = [".".join([root, *parts[1:i]]) for i in range(len(parts), 1, -1)]
            named = next((d for d in dotted if d in self.columns), None)
            self.refuse_attribute(parts[1], f"of column {root!r}", named)
        elif root in self.transforms:
            add_unique(self.info.transforms, root)
        else:
            self.info.unknown.append(".".join([root, *parts[1:]]))
        return True


def check_python_factor(expr: str, columns: set, role: str, formula: str, info: FactorInfo):
    """Check one factor expression against the whitelist, recording what it reads in ``info``.

    Raises
    ------
    FormulaError
        If the expression does not parse or uses something the whitelist refuses.
    """
    from formulaic.utils.code import sanitize_variable_names

    aliases: dict[str, str] = {}
    try:
        code = ast.parse(sanitize_variable_names(expr, {}, aliases), mode="eval")
    except SyntaxError as e:
        if _too_deep_to_parse(e):
            raise FormulaError(_too_deep(role, formula)) from None
        raise FormulaError(
            f"invalid {role} {shown(formula)}: cannot parse {shown(expr)}: {e.msg}"
        ) from None
    except (RecursionError, MemoryError):
        raise FormulaError(_too_deep(role, formula)) from None
    if _defines_a_function(code):
        raise FormulaError(_no_lambda(role, formula))
    checker = _FactorChecker(columns, role, formula, info, aliases)
    checker.root = code.body
    try:
        checker.visit(code)
    except RecursionError:
        raise FormulaError(_too_deep(role, formula)) from None


def analyze_terms(terms, columns: set, role: str, formula: str, env=None) -> FactorInfo:
    """Check every factor of ``terms``; what they read.

    ``env``: the caller's :class:`~dmixed.design.scope.Environment` (Python API only;
    None everywhere else), where names that are neither columns nor transforms are
    looked up (recorded in ``FactorInfo.caller``).

    Raises
    ------
    FormulaError
        If a factor is refused (:func:`check_python_factor`), or names unknown columns
        or functions (the message lists close matches).
    """
    from formulaic.parser.types import Factor

    info = FactorInfo()
    # sets beside the two lists a lookup appends to (add_unique's test of a list costs
    # its length: a wide formula's lookups cost its width squared)
    in_columns: set[str] = set()
    in_plain: set[str] = set()
    for term in terms:
        for factor in term.factors:
            method = factor.eval_method
            if method is Factor.EvalMethod.LITERAL:
                continue
            if method is Factor.EvalMethod.LOOKUP:
                if factor.expr not in columns:
                    info.unknown.append(factor.expr)
                    continue
                if factor.expr not in in_columns:
                    in_columns.add(factor.expr)
                    info.columns.append(factor.expr)
                if factor.expr not in in_plain:
                    in_plain.add(factor.expr)
                    info.plain_columns.append(factor.expr)
                continue
            seen_columns, seen_plain = len(info.columns), len(info.plain_columns)
            check_python_factor(factor.expr, columns, role, formula, info)
            in_columns.update(info.columns[seen_columns:])  # (it appends only)
            in_plain.update(info.plain_columns[seen_plain:])
    refuse_columns_named_as_transforms([(role, formula, info)])
    if env is not None:
        where = f"{role} {shown(formula)}"
        _refuse_shadowed_transforms(info.transforms, env, where)
        info.unknown = [u for u in info.unknown if not _from_caller(u, env, info, where)]
    if info.unknown:
        refused = FormulaError(
            f"{role} {shown(formula)}: " + _unknown_names(info.unknown, columns, env)
        )
        # the names read as columns that the data lack (the command names the files)
        refused.absent = [
            u for u in info.unknown if not u.endswith("()") and not _column_attribute(u, columns)
        ]
        raise refused
    return info


def refuse_columns_named_as_transforms(formulas: list[tuple[str, str, FactorInfo]]) -> None:
    """Refuse (FormulaError) a column read by one of ``formulas`` (``(role, formula,
    info)``, evaluated on one frame of the data) whose name is a transform one of them
    uses (``y ~ C + C(site)``; ``re_formula="~C"`` with ``y ~ C(site)``): evaluated, the
    name is the column's (the data come first, as in patsy), and the call fails with
    "'Series' object is not callable"."""
    for role, formula, info in formulas:
        for name in info.columns:
            for other_role, other, other_info in formulas:
                if name not in other_info.transforms:
                    continue
                which = "the formula also uses"
                if other_role != role:
                    which = (
                        f"{other_role} {other!r} uses (the two are evaluated on one frame "
                        "of the data)"
                    )
                raise FormulaError(
                    f"{role} {formula!r}: column {name!r} has the name of the transform "
                    f"{name}, which {which}: the name would read the column there too "
                    f"(as in patsy); {_rename_hint(name)}"
                )


def _rename_hint(name: str) -> str:
    """How to rename the column ``name`` that shadows a transform or a module."""
    return f"rename the column, e.g. data.rename(columns={{{name!r}: {name + '_'!r}}})"


def _refuse_shadowed_transforms(names: list[str], env, where: str) -> None:
    """Refuse (FormulaError) a transform name that the caller's scope binds to another
    function or module: statsmodels would call the caller's (patsy's builtins come
    after the caller's scope), formulaic's is what the whitelist allows; neither may
    be chosen silently.  A non-callable value of that name (a constant ``C = 3``) is
    no conflict."""
    for name in names:
        if name not in env:
            continue
        value = env.lookup(name)
        if value is transforms()[name] or not (callable(value) or isinstance(value, ModuleType)):
            continue
        raise FormulaError(
            f"{where}: {name} is formulaic's transform, but the caller's scope binds "
            f"{name!r} to another {type(value).__name__} ({value!r:.60}), which statsmodels "
            "would call instead; rename yours (or pass eval_env=-1 for formulaic's)"
        )


def _from_caller(unknown: str, env, info: FactorInfo, where: str) -> bool:
    """Whether an unknown name (``f()``, ``mod.f()``, ``k``) is the caller's: its root
    found in ``env`` (recorded in ``info.caller``)."""
    root = unknown.removesuffix("()").split(".")[0]
    if root in transforms() or root not in env:
        return False
    try:
        env.resolve([root], where)  # refuses data (an array, a Series)
    except FormulaError as exc:
        exc.absent = [root]  # a name the data lack, as the unknown columns' error
        raise
    add_unique(info.caller, root)
    return True


#: why a function is unknown, when no caller's scope is looked up
_ONLY_WHITELIST = (
    "a formula calls formulaic's transforms, elementwise numpy functions and abs(); "
    "functions of your own code only through the Python API (MixedLM.from_formula / "
    "mixedlm find them in the caller's scope), never from a file, a job, saved results "
    "or the command line"
)


def _column_attribute(name: str, columns: set) -> bool:
    """Whether an unknown ``name`` reads an attribute of a column (``x.real``)."""
    head, dot, attr = name.partition(".")
    return bool(dot) and head in columns and attr.isidentifier()


def _column_attribute_message(names: list[str]) -> str:
    """``x.real`` read outside a call: formulaic takes it for a column's name.  The
    names are listed (three, then counted), the reason given once."""
    head, _, attr = names[0].partition(".")
    methods = ", ".join(f".{m}()" for m in sorted(_ELEMENTWISE_METHODS))
    how = "compute it once on the whole data and add it as a column"
    if len(names) == 1 and attr in _ELEMENTWISE_METHODS:
        how = f"write I({head}.{attr}())"
    what = (
        f"unknown column {names[0]!r}: {head!r} is a column"
        if len(names) == 1
        else f"unknown columns {_names([repr(n) for n in names])}: each an attribute of a column"
    )
    return (
        f"{what}, but a formula reads no attribute of a column; of a column it calls only "
        f"the elementwise methods {methods}, inside I(); {how}"
    )


def _unknown_names(unknown: list[str], columns: set, env=None) -> str:
    msgs = []
    functions = False
    named = list(dict.fromkeys(unknown))
    for u in [u for u in named if u.endswith("()")]:
        functions = True
        close = difflib.get_close_matches(u[:-2], sorted(transforms()), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        msgs.append(f"unknown function {u}" + hint)
    dotted = [u for u in named if _column_attribute(u, columns)]
    if dotted:
        msgs.append(_column_attribute_message(dotted))
    rest = [u for u in named if not u.endswith("()") and u not in dotted]
    msgs += unknown_columns(rest, sorted(columns))
    if functions:
        msgs.append(
            _ONLY_WHITELIST
            if env is None
            else "a function must be a transform, an elementwise numpy function or a name "
            "of the caller's scope (eval_env)"
        )
    return "; ".join(msgs)


@dataclass(frozen=True)
class CCall:
    """A ``C(...)`` factor expression.

    ``column``: the first argument when it is a data column (a name, or ``Q('name')``
    quoting one), else None; ``levels``: the
    literal ``levels=`` list, None if absent, ``"?"`` if not a literal; ``extra``:
    whether arguments other than the data are given.
    """

    column: str | None
    levels: Any
    extra: bool


def c_call(expr: str, columns) -> CCall | None:
    """Describe a ``C(...)`` factor expression, or None if it is not one."""
    from formulaic.utils.code import sanitize_variable_names

    aliases: dict[str, str] = {}
    try:
        node = ast.parse(sanitize_variable_names(expr, {}, aliases), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and _dotted(node.func) == ["C"]):
        return None
    column = None
    if node.args and isinstance(node.args[0], ast.Name):
        name = aliases.get(node.args[0].id, node.args[0].id)
        if name in columns:
            column = name
    elif node.args:
        # C(Q('my col')): Q() only names a column, so this is C() of that column
        name = _quoted_name(node.args[0])
        if isinstance(name, str) and name in columns:
            column = name
    levels: Any = None
    for k in node.keywords:
        if k.arg == "levels":
            try:
                levels = list(ast.literal_eval(k.value))
            except (ValueError, SyntaxError, TypeError):
                levels = "?"
    return CCall(column=column, levels=levels, extra=len(node.args) > 1 or bool(node.keywords))


def quoted_column(expr: str, columns) -> str | None:
    """The column ``Q('name')`` reads (a column, as a plain name is), else None."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    name = _quoted_name(node)
    return name if name in columns else None


def _quoted_name(node: ast.AST) -> Any:
    """The name that ``node``, a call ``Q('name')``, quotes, else None."""
    if (
        isinstance(node, ast.Call)
        and _dotted(node.func) == ["Q"]
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
    ):
        return node.args[0].value
    return None


def categorical_factors(spec) -> list[tuple[str, list]]:
    """The categorical factors of a formulaic model spec, with their categories."""
    from formulaic.parser.types import Factor

    out = []
    for expr, (kind, state) in spec.encoder_state.items():
        if kind is Factor.Kind.CATEGORICAL:
            out.append((expr, list(state.get("categories", []))))
    return out


def _boolean_factor(levels: list) -> bool:
    """Whether a categorical factor is one of booleans: its levels are False and True
    whatever the data (:mod:`dmixed.design.patsy_coding`: a boolean call, ``I()`` or
    ``C()`` of booleans).  The levels must be booleans: ``[0, 1] == [False, True]`` in
    Python, and numbers an expression makes learn their levels from the prototype
    (``C(np.floor(8 * x))``: 0 and 1 there, many more in the data)."""
    from .patsy_coding import BOOLEAN_LEVELS

    return levels == BOOLEAN_LEVELS and all(isinstance(v, (bool, np.bool_)) for v in levels)


def check_categorical_sources(spec, terms, columns: dict, role: str, formula: str) -> None:
    """Categorical factors must take their levels from a column (``C(col)``,
    ``C(Q('my col'))``, or levels=), or be
    booleans (levels False and True: ``I(x > 0)``, ``C(a == b)``, ``np.logical_and(a, b)``).

    Raises
    ------
    FormulaError
        For a categorical factor derived from an expression without ``levels=``.
    """
    from formulaic.parser.types import Factor

    factors = {f.expr: f for t in terms for f in t.factors}
    for expr, levels in categorical_factors(spec):
        factor = factors.get(expr)
        if factor is None or factor.eval_method is Factor.EvalMethod.LOOKUP:
            continue
        if _boolean_factor(levels):
            continue
        if quoted_column(expr, columns) is not None:
            continue
        call = c_call(expr, columns)
        if call is not None and (call.column is not None or call.levels is not None):
            continue
        raise FormulaError(
            f"{role} {formula!r}: the categorical factor {expr!r} is derived from an "
            "expression, so its levels are not known before the rows are read (a "
            "factor's levels are taken from its column); add it as a column, or pass "
            "levels=[...] to C()"
        )


def check_explicit_levels(terms, kinds: dict, levels: dict, role: str, formula: str) -> None:
    """C(col, levels=[...]) must list every level of col found in the data.

    ``terms``: the formula's parsed terms (:func:`parse_formula`), checked before
    formulaic evaluates the formula, which would otherwise warn about the values it
    casts to NaN (a warning silenced only by changing the process's warning filters,
    which other threads share).

    Raises
    ------
    SpecError
        If the data holds a value of ``col`` that ``levels=`` does not list.
    """
    exprs = dict.fromkeys(f.expr for t in terms for f in t.factors)
    for expr in exprs:
        call = c_call(expr, kinds)
        if call is None or not isinstance(call.levels, list) or call.column is None:
            continue
        col = call.column
        if col in levels:
            allowed = set(call.levels)
            extra = [v for v in levels[col] if v not in allowed]
            if extra:
                raise SpecError(
                    f"{role} {formula!r}: column {col!r} has values not listed in "
                    f"levels= of {expr!r}: {extra[:5]}"
                )
