"""dmixed.kernels.pages: a fit asks numpy for ordinary pages and gives its setting back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dmixed.model
from dmixed import MixedLM
from dmixed.kernels import pages

from .._synth import design, make_data

needs_setting = pytest.mark.skipif(
    pages.advice_switch() is None or pages.advice() is None,
    reason="numpy without huge-page advice",
)


@pytest.fixture
def advice():
    """numpy's huge-page advice set on for the test, put back after it."""
    setter = pages.advice_switch()
    found = setter(True)
    yield
    setter(found)


@needs_setting
@pytest.mark.usefixtures("advice")
def test_fit_runs_with_ordinary_pages_and_gives_the_setting_back(monkeypatch):
    seen = []
    fit_start = dmixed.model.fit_start

    def spy(*args, **kwargs):
        seen.append(pages.advice())
        return fit_start(*args, **kwargs)

    monkeypatch.setattr(dmixed.model, "fit_start", spy)
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=1))
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert seen == [False]
    assert pages.advice() is True
    assert np.isfinite(res.llf)


@needs_setting
@pytest.mark.usefixtures("advice")
def test_setting_comes_back_after_an_error_and_after_nested_blocks():
    with pytest.raises(ValueError, match="inside"):
        with pages.ordinary_pages():
            with pages.ordinary_pages():
                assert pages.advice() is False
            assert pages.advice() is False  # the outer block still holds it
            raise ValueError("inside")
    assert pages.advice() is True


@needs_setting
@pytest.mark.usefixtures("advice")
def test_blocks_in_two_threads_share_one_setting():
    inside, leave = threading.Event(), threading.Event()

    def other():
        with pages.ordinary_pages():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    with pages.ordinary_pages():
        assert pages.advice() is False
    assert pages.advice() is False  # the other thread's block is still open
    leave.set()
    thread.join()
    assert pages.advice() is True


@needs_setting
@pytest.mark.usefixtures("advice")
def test_switch_keeps_numpy_advice(monkeypatch):
    monkeypatch.setattr(pages, "HUGE_PAGES_IN_FITS", True)
    with pages.ordinary_pages():
        assert pages.advice() is True
    assert pages.advice() is True


def test_wrapper_keeps_name_and_docstring():
    assert MixedLM.fit.__name__ == "fit"
    assert MixedLM.fit.__doc__.startswith("Fit by maximizing")


def test_a_numpy_without_the_switch_fits_with_its_own_setting(monkeypatch):
    """numpy 1.x before the switch, or a build without it: the fit runs and touches
    nothing (the switch's absence is not an error)."""
    found = pages.advice()
    seen = []
    fit_start = dmixed.model.fit_start

    def spy(*args, **kwargs):
        seen.append(pages.advice())
        return fit_start(*args, **kwargs)

    monkeypatch.setattr(pages, "advice_switch", lambda: None)
    monkeypatch.setattr(dmixed.model, "fit_start", spy)
    endog, exog, exog_re, groups = design(make_data(n_groups=20, max_size=8, seed=2))
    res = MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    assert seen == [found] and pages.advice() == found
    assert np.isfinite(res.llf)
