"""The fixed cost of one warm in-process fit: Python calls, and warm fits to count under
callgrind.

Run:  python benchmarks/bench_fit_overhead.py calls [--groups 200 2000]
      valgrind --tool=callgrind python benchmarks/bench_fit_overhead.py fits N --groups G
          --kind arrays
      valgrind --tool=callgrind --collect-atstart=no --toggle-collect=map_next
          --toggle-collect=starmap_next python benchmarks/bench_fit_overhead.py toggled N
          --groups G --kind arrays

``calls`` prints, for one warm fit of ``bench_core``'s model (groups of 10 rows,
``y ~ x1 + x2``, random intercept and slope, REML, standard errors read) from arrays and
from the formula, the Python and C calls it makes (``sys.setprofile`` events): all of
them, and those outside the optimizer (below ``maximize`` and the final
``hessian_full``): the statistics, the start, the results and the model, whose cost
does not grow with the data.  ``fits N`` builds the data, fits twice (warm) and then
``N`` more times: the instructions of ``fits 2`` less those of ``fits 0`` are two warm
fits (run with ``DMIXED_KERNELS=numpy OPENBLAS_NUM_THREADS=1`` and the real Python
binary, not a shim, so that valgrind follows it).  Set ``PYTHONPATH`` to the checkout
to measure.  ``toggled N`` fits three times (warm), then runs ``N`` whole fits inside
``map`` and ``N`` entries (the model built, and its statistics: what a fit does before
its start) inside ``itertools.starmap``: callgrind collecting only inside ``map_next``
and ``starmap_next`` counts each apart in one process (inclusive instructions of each
÷ ``N``, from ``callgrind_annotate --inclusive=yes``).
"""

from __future__ import annotations

import argparse
import itertools
import sys

# bench_core pins the thread pools (BLAS, mixedlm-rs's rayon) before numpy is imported
from bench_core import dmixed_arrays, dmixed_formula, frame, make

#: functions of dmixed whose calls are the optimizer's (not counted as fixed overhead)
OPTIMIZER = ("maximize", "hessian_full")


def one_fit(kind: str, n_groups: int):
    y, x, z, g = make(n_groups)
    if kind == "arrays":
        return lambda: dmixed_arrays(y, x, z, g)
    df = frame(y, x, g)
    return lambda: dmixed_formula(df)


def entry(kind: str, n_groups: int):
    """The model of :func:`one_fit`'s fit built and its statistics computed (its
    ``fit`` up to the start)."""
    from bench_core import FORMULA, RE_FORMULA

    import dmixed

    y, x, z, g = make(n_groups)
    df = frame(y, x, g)

    def run(_):
        if kind == "arrays":
            model = dmixed.MixedLM(y, x, g, exog_re=z)
        else:
            model = dmixed.MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA)
        model.reml = True
        return model.fit_statistics(None, False, None)

    return run


def count_calls(fit) -> tuple[int, int]:
    """``(all calls, calls outside the optimizer)`` of one call of ``fit``."""
    stack: list[bool] = []  # per Python frame: inside the optimizer
    counts = [0, 0]

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            inside = bool(stack) and stack[-1]
            counts[0] += 1
            counts[1] += not inside
            if event == "call":
                code = frame.f_code
                mine = "/dmixed/" in code.co_filename and code.co_name in OPTIMIZER
                stack.append(inside or mine)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        fit()
    finally:
        sys.setprofile(None)
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("calls", "fits", "toggled"))
    parser.add_argument("n", nargs="?", type=int, default=0, help="fits after two warm ones")
    parser.add_argument("--groups", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--kind", choices=("arrays", "formula"), default="arrays")
    args = parser.parse_args()
    if args.mode == "fits":
        fit = one_fit(args.kind, args.groups[0])
        for _ in range(2 + args.n):
            fit()
        return
    if args.mode == "toggled":
        fit, start = one_fit(args.kind, args.groups[0]), entry(args.kind, args.groups[0])
        for _ in range(3):
            fit()
            start(None)
        list(map(lambda _: fit(), range(args.n)))
        list(itertools.starmap(start, ((i,) for i in range(args.n))))
        return
    import dmixed

    print(f"dmixed from {dmixed.__file__}")
    for n_groups in args.groups:
        for kind in ("arrays", "formula"):
            fit = one_fit(kind, n_groups)
            fit()
            fit()
            total, outside = count_calls(fit)
            print(
                f"{kind:8s} {10 * n_groups:>7d} rows: {total} calls per warm fit, "
                f"{outside} outside the optimizer"
            )


if __name__ == "__main__":
    main()
