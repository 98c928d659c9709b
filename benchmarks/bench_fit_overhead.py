"""The fixed cost of one warm in-process fit: Python calls, and warm fits to count under
callgrind.

Run:  python benchmarks/bench_fit_overhead.py calls [--groups 200 2000]
      valgrind --tool=callgrind python benchmarks/bench_fit_overhead.py fits N --groups G
          --kind arrays

``calls`` prints, for one warm fit of ``bench_core``'s model (groups of 10 rows,
``y ~ x1 + x2``, random intercept and slope, REML, standard errors read) from arrays and
from the formula, the Python and C calls it makes (``sys.setprofile`` events): all of
them, and those outside the optimizer (below ``maximize`` and the final
``hessian_full``): the statistics, the start, the results and the model, whose cost
does not grow with the data.  ``fits N`` builds the data, fits twice (warm) and then
``N`` more times: the instructions of ``fits 2`` less those of ``fits 0`` are two warm
fits (run with ``DMIXED_KERNELS=numpy OPENBLAS_NUM_THREADS=1`` and the real Python
binary, not a shim, so that valgrind follows it).  Set ``PYTHONPATH`` to the checkout
to measure.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("mode", choices=("calls", "fits"))
    parser.add_argument("n", nargs="?", type=int, default=0, help="fits after two warm ones")
    parser.add_argument("--groups", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--kind", choices=("arrays", "formula"), default="arrays")
    args = parser.parse_args()
    if args.mode == "fits":
        fit = one_fit(args.kind, args.groups[0])
        for _ in range(2 + args.n):
            fit()
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
