"""dmixed changes none of the process's warning filters while it works.

``warnings.catch_warnings`` and ``simplefilter`` change filters that every thread of the
process shares (Python before 3.14).  Opened by dmixed while other threads run (a Dask
fit's worker threads, whose pandas opens its own ``catch_warnings`` for each dtype it
converts), they hide those threads' warnings, and an exit interleaved with another
thread's puts a stale list back for good: an ``ignore`` of every warning left installed,
and a fit's ``DroppedRowsWarning`` lost.  dmixed silences its own warnings in the
current thread only (:func:`dmixed.errors.warnings_dropped`), and avoids third-party
warnings rather than filtering them.  The command line's ``warnings_as_lines`` is the
one ``catch_warnings`` kept: it wraps a whole command in its main thread.
"""

from __future__ import annotations

import ast
import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dmixed
from dmixed.errors import DroppedRowsWarning, SpecError

PACKAGE = Path(dmixed.__file__).parent

pytestmark = pytest.mark.filterwarnings("ignore::dmixed.errors.BoundaryWarning")


@pytest.fixture
def filter_changes(monkeypatch) -> list[str]:
    """Where dmixed's own code opened ``warnings.catch_warnings`` or changed a filter
    (``simplefilter``, ``filterwarnings``, ``resetwarnings``), as ``"path:line
    (thread)"``, in any thread; calls made by other libraries are not counted."""
    calls: list[str] = []
    inside = str(PACKAGE) + os.sep

    def record(frame) -> None:
        path = frame.f_code.co_filename
        if path.startswith(inside):
            where = f"{os.path.relpath(path, inside)}:{frame.f_lineno}"
            calls.append(f"{where} ({threading.current_thread().name})")

    enter = warnings.catch_warnings.__enter__

    def entering(self):
        record(sys._getframe(1))
        return enter(self)

    def wrapped(func):
        def changing(*args, **kwargs):
            record(sys._getframe(1))
            return func(*args, **kwargs)

        return changing

    monkeypatch.setattr(warnings.catch_warnings, "__enter__", entering)
    for name in ("simplefilter", "filterwarnings", "resetwarnings"):
        monkeypatch.setattr(warnings, name, wrapped(getattr(warnings, name)))
    return calls


def _frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=20)[g] + rng.normal(size=n)
    c = pd.Categorical(rng.choice(["a", "b", "c"], n))
    df = pd.DataFrame({"y": y, "x": x, "z": rng.normal(size=n), "g": g, "c": c})
    df.loc[::37, "x"] = np.nan  # some rows, in some partitions only, to drop
    return df


def test_the_filters_are_the_callers_wherever_a_formula_is_evaluated():
    """A function of the caller's scope in the formula sees the process's filters as
    the caller left them each time it is called (the design on the prototype, the
    rows): another thread that opens its own ``catch_warnings`` then saves and puts
    back those, never a list of dmixed's."""
    seen = []

    def traced(x):
        seen.append(list(warnings.filters))
        return x

    df = _frame().dropna()
    with warnings.catch_warnings():  # (the test's own: a leak is undone at its end)
        before = list(warnings.filters)
        dmixed.mixedlm("y ~ traced(x) + C(c) + x.astype('f8')", df, groups="g")
        assert seen
        assert all(f == before for f in seen), [f[:2] for f in seen if f != before]
        assert warnings.filters == before


def test_levels_not_listed_are_refused_before_formulaic_warns():
    """``C(col, levels=[...])`` missing a value of the column is refused from the
    parsed formula, before formulaic evaluates it (and warns about the values it casts
    to NaN, a warning dmixed could hide only by changing the process's filters)."""
    df = _frame().dropna()
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with pytest.raises(SpecError, match=r"values not listed in levels="):
            dmixed.mixedlm("y ~ x + C(c, levels=['a', 'b'])", df, groups="g")
        with pytest.raises(SpecError, match=r"values not listed in levels="):
            dmixed.mixedlm("y ~ x", df, groups="g", re_formula="1 + C(c, levels=['a'])")
    assert [str(w.message) for w in got] == []


def test_a_threaded_dask_fit_changes_no_filter_and_its_dropped_rows_warn(filter_changes):
    """A fit on Dask's threaded scheduler, some partitions with rows to drop: dmixed
    opens no ``catch_warnings`` (the driver's design of the formula ran in one while
    the tasks' threads ran theirs), and the ``DroppedRowsWarning`` reaches the user."""
    import dask
    import dask.dataframe as dd

    ddf = dd.from_pandas(_frame(), npartitions=4, sort=False)
    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.warns(DroppedRowsWarning, match="dropped 11 rows"):
            model = dmixed.mixedlm(
                "y ~ x + C(c) + np.log(z**2 + 1)",
                ddf,
                groups="g",
                re_formula="1 + x",
                missing="drop",
            )
            model.fit()
    assert filter_changes == []


def test_bootstrap_on_worker_threads_changes_no_filter(filter_changes):
    """A bootstrap of a Dask fit whose statistics stay on an in-process worker of two
    threads: its replicates' refits run in the worker's threads and drop their
    warnings in their own thread only."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    ddf = dd.from_pandas(_frame().dropna(), npartitions=2, sort=False)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        res = dmixed.mixedlm("y ~ x", ddf, groups="g").fit(client=client, engine="distributed")
        boot = res.bootstrap(4, seed=1)
    assert len(boot.replicates) == 4
    assert filter_changes == []


def test_anova_refit_by_ml_changes_no_filter(filter_changes):
    """anova's refit of REML fits by ML drops the reported-point warning in its own
    thread (on Dask, the refit's tasks run in other threads meanwhile)."""
    df = _frame().dropna()
    small = dmixed.mixedlm("y ~ x", df, groups="g").fit()
    large = dmixed.mixedlm("y ~ x + z", df, groups="g").fit()
    table = dmixed.anova(small, large, refit=True)
    assert len(table) == 2
    assert filter_changes == []


def test_only_the_command_line_opens_catch_warnings():
    """No module of dmixed calls ``catch_warnings``, ``simplefilter``,
    ``filterwarnings`` or ``resetwarnings`` but the command line's
    ``warnings_as_lines`` (its main thread, around a whole command)."""
    names = {"catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if not any(name in text for name in names):
            continue
        # each use named by the innermost function around it (line numbers move)
        tree = ast.parse(text)
        functions = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]

        def around(node, functions=functions):
            spans = [f for f in functions if f.lineno <= node.lineno <= f.end_lineno]
            return min(spans, key=lambda f: f.end_lineno - f.lineno).name if spans else "-"

        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in names:
                found.append(f"{path.relative_to(PACKAGE)}:{around(node)} {node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "warnings":
                found.append(f"{path.relative_to(PACKAGE)}:{around(node)} from warnings")
    assert found == ["cli.py:warnings_as_lines catch_warnings"]
