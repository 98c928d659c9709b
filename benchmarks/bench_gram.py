"""The rows' ``[X y]'[X y]``: one matrix product against one dot product per pair of columns.

Run:  python benchmarks/bench_gram.py [--rows 2000 20000 200000 2000000] [--columns 2 3 4 5 6]

BLAS on one thread (as ``bench_core``).  For column-major ``[X y]`` of ``k`` columns
(``X`` column-major, ``y`` apart, as the data pass holds them without a shift), the best of
``--repeats`` wall times (ms) of the matrix product the pass used before
(``X'X``, ``X'y``, ``y'y``: three BLAS calls), of one product of the whole ``[X y]``, and of
``k(k+1)/2`` dot products (:func:`dmixed.kernels.rows.column_gram`'s way), with the largest
difference between the first and the last relative to the sums of the products'
magnitudes.  Supports :data:`~dmixed.kernels.rows.GRAM_DOTS_COLUMNS` and
:data:`~dmixed.kernels.rows.GRAM_DOTS_MIN_ROWS`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def best_ms(func, repeat: int) -> float:
    func()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000, 200000, 2000000])
    parser.add_argument("--columns", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("rows     k   X'X,X'y,y'y   [X y]'[X y]   dots   max |dots - first| / sum|products|")
    for n in args.rows:
        for k in args.columns:
            x = np.asfortranarray(rng.normal(size=(n, k - 1)))
            y = rng.normal(size=n)
            xy = np.asfortranarray(np.column_stack([x, y]))
            cols = [x[:, j] for j in range(k - 1)] + [y]

            def three(x=x, y=y, k=k):
                gram = np.empty((k, k))
                gram[:-1, :-1] = x.T @ x
                gram[:-1, -1] = gram[-1, :-1] = x.T @ y
                gram[-1, -1] = y @ y
                return gram

            def dots(cols=cols, k=k):
                gram = np.empty((k, k))
                for i in range(k):
                    for j in range(i + 1):
                        gram[i, j] = gram[j, i] = np.dot(cols[i], cols[j])
                return gram

            bound = np.abs(xy).T @ np.abs(xy)
            worst = float(np.max(np.abs(dots() - three()) / bound))
            print(
                f"{n:>8} {k:>2} {best_ms(three, args.repeats):12.3f} "
                f"{best_ms(lambda xy=xy: xy.T @ xy, args.repeats):13.3f} "
                f"{best_ms(dots, args.repeats):7.3f}   {worst:.1e}"
            )


if __name__ == "__main__":
    main()
