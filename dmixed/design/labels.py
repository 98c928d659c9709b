"""The names of a formula's columns as statsmodels (patsy) spells them.

formulaic names a factor by its Python rendering (``ast.unparse``: ``Q('my col')``),
patsy by the formula's own text (``Q("my col")``).  Names are compared with
statsmodels' and looked up by them (``fe_params['Q("my col")']``, ``t_test``), so the
names formulaic makes are respelled here, the one place that does it
(:func:`patsy_spelling`); :func:`formulaic_spelling` spells them back, as versions
before saved them.  No formulaic import: plain formulas never load it.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from collections.abc import Sequence

__all__ = ["formulaic_spelling", "patsy_spelling"]


@functools.lru_cache(maxsize=64)
def _text_spellings(formula: str) -> tuple[tuple[str, str], ...]:
    """``(formulaic's spelling, the formula's)`` of every text literal of ``formula``
    that formulaic spells otherwise (``'my col'``, ``"my col"``); the first spelling
    where one text is written two ways."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(formula).readline))
    except (tokenize.TokenError, SyntaxError):
        return ()
    found: dict[str, str] = {}
    for tok in tokens:
        if tok.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            continue
        rendered = ast.unparse(ast.Constant(value))  # (formulaic's format_expr)
        if rendered != tok.string:
            found.setdefault(rendered, tok.string)
    return tuple(found.items())


def patsy_spelling(names: Sequence[str], formula: str | None) -> list[str]:
    """formulaic's column or term ``names`` of ``formula`` as patsy (statsmodels) names
    them: text literals as the formula writes them (``Q("my col")``, where formulaic
    writes ``Q('my col')``).  Names already so spelled are returned as they are."""
    pairs = _text_spellings(formula) if formula else ()
    out = []
    for name in names:
        for rendered, written in pairs:
            name = name.replace(rendered, written)
        out.append(name)
    return out


def formulaic_spelling(names: Sequence[str], formula: str | None) -> list[str]:
    """``names`` of ``formula`` with text literals as formulaic spells them: the
    inverse of :func:`patsy_spelling` (the names versions before it saved)."""
    pairs = _text_spellings(formula) if formula else ()
    out = []
    for name in names:
        for rendered, written in pairs:
            name = name.replace(written, rendered)
        out.append(name)
    return out
