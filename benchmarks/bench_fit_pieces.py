"""Where a warm in-process fit's time goes: the model, the data pass, the start, the
optimizer and the results, in thread CPU and in fresh pages (minor page faults).

Run:  python benchmarks/bench_fit_pieces.py [--groups 200 2000 20000] [--repeats 9]

For ``bench_core``'s model (groups of 10 rows, ``y ~ x1 + x2``, random intercept and
slope on x1, REML, standard errors read), fitted from arrays and from the formula on a
pandas frame, interleaved (arrays, formula, arrays, ...) after two warm fits of each,
the median over ``--repeats`` fits of each piece's thread CPU (ms) and the mean of its
minor page faults (the first touch of fresh memory, which thread CPU includes):
``model`` (``MixedLM(...)`` or ``from_formula``), ``statistics``
(:meth:`~dmixed.MixedLM.fit_statistics`: the data pass and its checks), ``start``
(``fit_start``), ``optimizer`` (``maximize``), ``results``
(``MixedLMResults.from_fit``: the covariance of the estimates, the BLUPs) and
``total`` (the model, the fit and ``bse``).  Set ``PYTHONPATH`` to the checkout to
measure.
"""

from __future__ import annotations

import argparse
import resource
import time

# bench_core pins the thread pools (BLAS, mixedlm-rs's rayon) before numpy is imported
from bench_core import FORMULA, RE_FORMULA, frame, make  # isort: split

import numpy as np

import dmixed
import dmixed.fit.model_statistics as model_statistics
import dmixed.model as model_module
import dmixed.results.results as results_module

PIECES = ("model", "statistics", "start", "optimizer", "results", "total")


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Meter:
    """Thread CPU and minor page faults of each piece of the current fit."""

    def __init__(self) -> None:
        self.now: dict[str, tuple[float, int]] = {}

    def add(self, piece: str, cpu: float, flt: int) -> None:
        cpu0, flt0 = self.now.get(piece, (0.0, 0))
        self.now[piece] = (cpu0 + cpu, flt0 + flt)

    def timed(self, piece: str, fn):
        def wrapper(*args, **kwargs):
            c, f = time.thread_time(), faults()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(piece, time.thread_time() - c, faults() - f)

        return wrapper


def instrument(meter: Meter) -> None:
    """Wrap the pieces where the model's ``fit`` calls them."""
    stats_cls = model_statistics.ModelStatistics
    stats_cls.fit_statistics = meter.timed("statistics", stats_cls.fit_statistics)
    model_module.fit_start = meter.timed("start", model_module.fit_start)
    model_module.maximize = meter.timed("optimizer", model_module.maximize)
    results_cls = results_module.MixedLMResults
    from_fit = results_cls.from_fit.__func__
    results_cls.from_fit = classmethod(meter.timed("results", from_fit))


def one_fit(meter: Meter, build) -> dict:
    """The pieces of one fit of the model ``build()`` makes (``bse`` read)."""
    meter.now = {}
    c, f = time.thread_time(), faults()
    model = build()
    meter.add("model", time.thread_time() - c, faults() - f)
    model.fit(reml=True).bse  # noqa: B018 - standard errors included
    meter.add("total", time.thread_time() - c, faults() - f)
    return meter.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[200, 2000, 20000])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    meter = Meter()
    instrument(meter)
    print(f"dmixed from {dmixed.__file__}")
    print("thread CPU ms (median) / minor page faults (mean) per piece of a warm fit")
    for n_groups in args.groups:
        y, x, z, g = make(n_groups)
        df = frame(y, x, g)
        models = {
            "arrays": lambda y=y, x=x, z=z, g=g: dmixed.MixedLM(y, x, g, exog_re=z),
            "formula": lambda df=df: dmixed.MixedLM.from_formula(
                FORMULA, df, groups="g", re_formula=RE_FORMULA
            ),
        }
        runs: dict[str, list[dict]] = {kind: [] for kind in models}
        for _ in range(2):
            for build in models.values():
                one_fit(meter, build)
        for _ in range(args.repeats):
            for kind, build in models.items():
                runs[kind].append(one_fit(meter, build))
        for kind, fits in runs.items():
            cells = []
            for piece in PIECES:
                cpu = 1e3 * np.median([fit.get(piece, (0.0, 0))[0] for fit in fits])
                flt = np.mean([fit.get(piece, (0.0, 0))[1] for fit in fits])
                cells.append(f"{piece} {cpu:.2f}/{flt:.0f}")
            print(f"{10 * n_groups:>8d} rows {kind:8s} " + ", ".join(cells))


if __name__ == "__main__":
    main()
