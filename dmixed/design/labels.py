"""The names of a formula's columns as statsmodels (patsy) spells them.

formulaic names a factor by its Python rendering (``ast.unparse``: ``Q('my col')``),
patsy by the formula's own text (``Q("my col")``).  Names are compared with
statsmodels' and looked up by them (``fe_params['Q("my col")']``, ``t_test``), so the
names formulaic makes are respelled here, the one place that does it
(:func:`patsy_spelling`); :func:`formulaic_spelling` spells them back, as versions
before saved them.  No formulaic import: plain formulas never load it.

The names of the covariance parameters (``'a Var'``, ``'a x b Cov'``) and of the random
intercept that a model of arrays adds without ``exog_re`` are statsmodels' too, and are
made here alone (:func:`covariance_names`, :data:`ARRAY_INTERCEPT_NAME`).

So is how a message names a variance component's level in a group
(:func:`level_in_group`): the level as the data holds it, each factor's value as
Python writes it (``'2'`` and ``2`` differ), an interaction's values joined by ``:``.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from collections.abc import Sequence

__all__ = [
    "ARRAY_INTERCEPT_NAME",
    "covariance_names",
    "formulaic_spelling",
    "indexed_spline_names",
    "level_in_group",
    "names_unindexed_splines",
    "patsy_spelling",
]

#: statsmodels' name of the random intercept that ``MixedLM(endog, exog, groups)`` adds
#: without ``exog_re`` (and without ``exog_vc``): the random effect's name (``cov_re``,
#: ``random_effects``) and its variance parameter's name at once (statsmodels sets both
#: to ``["Group Var"]``), where a formula's random intercept is ``"Group"`` with the
#: variance ``"Group Var"``.
ARRAY_INTERCEPT_NAME = "Group Var"


def covariance_names(
    re_names: Sequence[str], vc_names: Sequence[str], array_intercept: bool = False
) -> list[str]:
    """statsmodels' names of the covariance parameters, in ``params`` order.

    Parameters
    ----------
    re_names : sequence of str (q,)
        The random effects' names (``exog_re_names``).
    vc_names : sequence of str
        The variance components' names.
    array_intercept : bool
        ``re_names`` is the one random intercept a model of arrays adds without
        ``exog_re`` (:data:`ARRAY_INTERCEPT_NAME`): its name is its variance's name.

    Returns
    -------
    list of str (q(q+1)/2 + len(vc_names),)
        ``'a Var'`` for the diagonal of Ψ and ``'a x b Cov'`` below it (row by row,
        ``vech`` order), then ``'name Var'`` for each variance component
        (statsmodels' ``_make_param_names``).
    """
    if array_intercept:
        names = [ARRAY_INTERCEPT_NAME]
    else:
        names = []
        for i, row in enumerate(re_names):
            for col in re_names[:i]:
                names.append(f"{col} x {row} Cov")
            names.append(f"{row} Var")
    names.extend(f"{v} Var" for v in vc_names)
    return names


_SKIP = frozenset(
    {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT}
)


def _tokens(text: str) -> list[tokenize.TokenInfo] | None:
    """The tokens of one line of ``text`` (None: not Python's tokens, e.g. backticks)."""
    try:
        found = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    found = [t for t in found if t.type not in _SKIP]
    if any(t.type == tokenize.ERRORTOKEN or t.start[0] != 1 for t in found):
        return None
    return found


def _key(tok: tokenize.TokenInfo):
    """What two tokens share where they are one token of a factor: a text literal's
    value (``'a'`` is ``"a"``), otherwise its text."""
    if tok.type == tokenize.STRING:
        try:
            return ("text", ast.literal_eval(tok.string))
        except (ValueError, SyntaxError):
            pass
    return ("token", tok.string)


@functools.lru_cache(maxsize=64)
def _formula_tokens(formula: str) -> tuple[tokenize.TokenInfo, ...] | None:
    found = _tokens(formula)
    return None if found is None else tuple(found)


def _suffix_end(text: str, at: int) -> int:
    """Where the level suffix opened at ``at`` (``[T.u]``) ends: at the first ``]``
    that ends the factor as formulaic renders it, before a ``:`` or the end of the name.
    The suffix holds the data's text, whose brackets and quotes need not pair."""
    j = text.find("]", at + 1)
    while j != -1:
        if j + 1 == len(text) or text[j + 1] == ":":
            return j
        j = text.find("]", j + 1)
    return len(text) - 1


def _factor_end(text: str, start: int) -> tuple[int, bool]:
    """Where the factor that begins at ``start`` ends: at the first ``[`` (a level
    suffix) or ``:`` (the next factor) outside quotes and brackets, else at the end of
    ``text``; and whether the scan ends outside quotes and brackets (then a text that
    begins with the same factor ends it at the same place: :func:`_split_names`)."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif depth == 0 and ch in "[:":
            return i, True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        i += 1
    return len(text), depth == 0 and not quote


def _split_names(names: Sequence[str]) -> list[list[tuple[str, str]]]:
    """The factors of column or term names (``a:b``) as ``(factor, level suffix)``:
    ``C(f)[T.u]`` is ``("C(f)", "[T.u]")``; the suffix is the data's text, never
    respelled: a bracket opened outside the factor's own brackets holds the data's
    text, in which nothing is read as a quote or a bracket.

    The columns of one term follow each other and share its factors, whose text may
    be long (``C(g, levels=[...])`` lists every level): a factor the name before had
    at the same place is recognized by comparing text, not read again character by
    character, so the cost is one scan of each term's factors plus the names' length."""
    out: list[list[tuple[str, str]]] = []
    previous: list[str | None] = []  # the name before's factors, where reusable
    for name in names:
        factors: list[tuple[str, str]] = []
        reusable: list[str | None] = []
        at = 0
        while True:
            known = previous[len(factors)] if len(factors) < len(previous) else None
            end = None if known is None else at + len(known)
            if known is not None and (
                not name.startswith(known, at) or (end < len(name) and name[end] not in "[:")
            ):
                end = None
            clean = True
            if end is None:
                end, clean = _factor_end(name, at)
            cut = end
            if end < len(name) and name[end] == "[":
                cut = _suffix_end(name, end) + 1
            factors.append((name[at:end], name[end:cut]))
            reusable.append(name[at:end] if clean else None)
            if cut >= len(name):
                break
            at = cut + 1  # (past the ":" that joins the next factor)
        out.append(factors)
        previous = reusable
    return out


@functools.lru_cache(maxsize=1024)
def _written(factor: str, joined: bool, formula: str) -> str:
    """``factor`` (formulaic's rendering) with its text literals as the formula writes
    them where the factor occurs, token by token; ``joined``: the name joins it to
    other factors (``a:b``), so an occurrence beside ``:`` or ``*`` is preferred."""
    own = _tokens(factor)
    if not own or not any(t.type == tokenize.STRING for t in own):
        return factor
    source = _formula_tokens(formula)
    if source is None:
        return factor
    want = [_key(t) for t in own]
    n = len(own)
    found = [i for i in range(len(source) - n + 1) if [_key(t) for t in source[i : i + n]] == want]
    if not found:
        return factor

    def beside_join(i: int) -> bool:
        near = [source[j].string for j in (i - 1, i + n) if 0 <= j < len(source)]
        return any(s in (":", "*", "**") for s in near)

    chosen = next((i for i in found if beside_join(i) == joined), found[0])
    out = factor
    # (right to left: the positions of the tokens not yet replaced stay valid)
    for mine, theirs in reversed(list(zip(own, source[chosen : chosen + n], strict=True))):
        if mine.type == tokenize.STRING:
            out = out[: mine.start[1]] + theirs.string + out[mine.end[1] :]
    return out


@functools.lru_cache(maxsize=1024)
def _rendered(factor: str) -> str:
    """``factor`` with its text literals as formulaic renders them (``ast.unparse``)."""
    own = _tokens(factor)
    if not own:
        return factor
    out = factor
    for tok in reversed(own):
        key = _key(tok)
        if tok.type == tokenize.STRING and key[0] == "text":
            rendered = ast.unparse(ast.Constant(key[1]))  # (formulaic's format_expr)
            out = out[: tok.start[1]] + rendered + out[tok.end[1] :]
    return out


def patsy_spelling(names: Sequence[str], formula: str | None) -> list[str]:
    """formulaic's column or term ``names`` of ``formula`` as patsy (statsmodels) names
    them: each factor's text literals as the formula writes that factor
    (``Q("my col")``, where formulaic writes ``Q('my col')``); a level suffix
    (``[T.u]``) is kept as it is.  Names already so spelled are returned as they are."""
    if not formula:
        return list(names)
    out = []
    for factors in _split_names(names):
        joined = len(factors) > 1
        out.append(":".join(_written(f, joined, formula) + level for f, level in factors))
    return out


def formulaic_spelling(names: Sequence[str], formula: str | None) -> list[str]:
    """``names`` of ``formula`` with text literals as formulaic spells them: the
    inverse of :func:`patsy_spelling` (the names versions before it saved)."""
    del formula  # (formulaic's spelling is the literal's own: one for every factor)
    return [
        ":".join(_rendered(f) + level for f, level in factors) for factors in _split_names(names)
    ]


@functools.lru_cache(maxsize=1024)
def _spline_calls(factor: str, splines: frozenset[str]) -> tuple[bool, bool]:
    """Whether the factor ``factor`` is itself a call of one of ``splines``, and
    whether it holds one anywhere (nothing is evaluated: the text is parsed)."""
    try:
        node = ast.parse(factor, mode="eval").body
    except SyntaxError:
        return False, False

    def named(n: ast.AST) -> bool:
        return isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in splines

    return named(node), any(named(n) for n in ast.walk(node))


def indexed_spline_names(names: Sequence[str], splines: frozenset[str]) -> list[str]:
    """``names`` with a spline of one column (a factor that is a call of one of
    ``splines``, with no index) named ``name[0]``: as versions before this one named
    it (this one names it as patsy does, without its index)."""
    return [
        ":".join(f + (s or ("[0]" if _spline_calls(f, splines)[0] else "")) for f, s in factors)
        for factors in _split_names(names)
    ]


def names_unindexed_splines(names: Sequence[str], splines: frozenset[str]) -> bool:
    """Whether a name of ``names`` holds a call of one of ``splines`` that versions
    before this one named or refused otherwise: a spline of one column, named without
    its index, or one inside another expression (``np.exp(bs(x, df=1))``)."""
    for factors in _split_names(names):
        for f, s in factors:
            whole, inside = _spline_calls(f, splines)
            if inside and not (whole and s):
                return True
    return False


def level_in_group(component: str, levels: Sequence, group) -> str:
    """How a message names a level of a variance component in a group.

    Parameters
    ----------
    component : str
        The component's name (a key of ``vc_formula``).
    levels : sequence
        The level: the value of each categorical factor of the component's term, as the
        data holds it (one value; an interaction's, in the term's order).
    group : object
        The group's key.

    Returns
    -------
    str
        ``rater level 2 in group 17``, ``rater level '2' in group 'a'``, ``cd level
        'w':'p' in group 3``: each value and the key as Python writes them (``repr``: a
        text ``'2'`` and a number ``2`` differ), an interaction's values joined by ``:``.
    """
    shown = ":".join(repr(v) for v in levels)
    return f"{component} level {shown} in group {group!r}"
