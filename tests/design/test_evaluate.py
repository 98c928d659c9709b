"""dmixed.design.evaluate: formulaic's failures become dmixed's errors."""

from __future__ import annotations

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
