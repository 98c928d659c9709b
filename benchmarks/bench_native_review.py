"""The C extension's lean-loop entry points (``lean_evaluate``, ``profiled_hessian``,
``block_terms`` of dmixed/kernels/c_sums.c) tried against the numpy reference.

``fits``: fits of unusual data (p = 1..4 and past, ML and REML, groups of one row, very
unequal groups, one or two groups, near-collinear columns, timestamps and revenue-sized
values, weights, start values, ``free``, ``cov_re`` at its boundary) through the
extension and with ``DMIXED_NATIVE=numpy``: params, bse and llf to 1e-10, ``converged``,
``n_iter`` and the warnings the same; the count of each entry point's calls.
``sweep SEED N``: N random such cases.  ``calls``: each argument of the three entry points
replaced by a wrong type, shape, layout, NaN/inf, empty or huge value: a Python error,
nothing else (run it under ``PYTHONMALLOC=debug`` or valgrind).  ``threads``: fits in
threads give the sequential fits' bits.

    PYTHONPATH=. python benchmarks/bench_native_review.py fits|sweep SEED N|calls|threads
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import dmixed
from dmixed.kernels import native
from dmixed.kernels.hessian_moments import full_gather

EXT = native.extension()
CALLS = {"lean_evaluate": 0, "profiled_hessian": 0, "block_terms": 0}


def _counting(name):
    made = getattr(EXT, name)

    def counted(*args):
        CALLS[name] += 1
        return made(*args)

    return counted


def data(
    seed,
    n_groups=80,
    max_size=20,
    p=3,
    slope_sd=0.5,
    corr=0.0,
    z_shift=0.0,
    z_scale=1.0,
    y_scale=1.0,
    collinear_x=0.0,
    collinear_z=None,
    sizes=None,
):
    """y, X (n, p), groups, Z = [1, z] and weights of a random intercept and slope."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_groups) if sizes is None else np.asarray(sizes)
    g = np.repeat(np.arange(sizes.size), sizes)
    n = g.size
    x = rng.normal(size=n)
    cols = [np.ones(n)] + [rng.normal(size=n) for _ in range(p - 1)]
    if collinear_x and p >= 3:
        cols[2] = cols[1] + collinear_x * rng.normal(size=n)
    exog = np.column_stack(cols)
    z = x if collinear_z is None else 1.0 + collinear_z * rng.normal(size=n)
    b0 = rng.normal(size=sizes.size)
    b1 = slope_sd * (corr * b0 + math.sqrt(max(1 - corr**2, 0)) * rng.normal(size=sizes.size))
    y = exog @ (0.3 * np.arange(1, p + 1)) + b0[g] + b1[g] * z + rng.normal(size=n)
    exog_re = np.column_stack([np.ones(n), z * z_scale + z_shift])
    return y * y_scale, exog, g, exog_re, rng.uniform(0.5, 2.0, n)


CASES = {
    "p1": dict(p=1),
    "p2": dict(p=2),
    "p3": dict(p=3),
    "p4": dict(p=4),
    "p12": dict(p=12),
    "rows1": dict(max_size=1),
    "mostly1": dict(sizes=[1] * 50 + [200]),
    "unequal": dict(sizes=[1, 2, 500, 3, 1000, 1, 1, 7, 2, 50]),
    "two": dict(sizes=[30, 40]),
    "near_x": dict(collinear_x=1e-5),
    "near_z": dict(collinear_z=1e-6),
    "stamps": dict(z_shift=1.7e9, z_scale=86400.0),
    "revenue": dict(y_scale=1e6),
    "stamps_revenue": dict(z_shift=1.7e9, z_scale=1e3, y_scale=1e6),
    "var0": dict(slope_sd=0.0),
    "corr+1": dict(corr=1.0, slope_sd=1.0),
    "corr-1": dict(corr=-1.0, slope_sd=1.0),
    "many": dict(n_groups=30000, max_size=4),
}


def fit(case, choice, reml, weights=False, **kw):
    os.environ[native.ENV_VAR] = choice
    y, x, g, z, w = case
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        r = dmixed.MixedLM(y, x, g, exog_re=z, weights=w if weights else None).fit(reml=reml, **kw)
    warned = sorted({type(m.message).__name__ for m in seen})
    return r, warned


def rel(a, b):
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    return float(np.max(np.abs(a - b), initial=0.0)) / max(
        float(np.max(np.abs(b), initial=0.0)), 1e-300
    )


def compare(tag, case, reml, weights=False, **kw):
    out = {}
    for choice in ("numpy", "auto"):
        for name in CALLS:
            CALLS[name] = 0
        try:
            r, warned = fit(case, choice, reml, weights, **kw)
            out[choice] = (r.params, r.bse, r.llf, r.converged, r.n_iter, warned)
        except Exception as e:  # noqa: BLE001 (any other than DmixedError is a fault)
            out[choice] = type(e).__name__
    a, b = out["auto"], out["numpy"]
    if isinstance(a, str) or isinstance(b, str):
        print(
            "OK " if a == b else "BAD",
            tag,
            a if isinstance(a, str) else "",
            b if isinstance(b, str) else "",
        )
        return
    worst = max(rel(a[i], b[i]) for i in range(3))
    ok = worst <= 1e-10 and a[3:] == b[3:]
    print(
        "OK " if ok else "BAD",
        tag,
        f"worst {worst:.1e}",
        "converged/n_iter/warnings",
        a[3:],
        b[3:] if a[3:] != b[3:] else "",
        dict(CALLS),
    )


def fits():
    for name, spec in CASES.items():
        for seed in (0, 1):
            for reml in (True, False):
                compare(f"{name} seed={seed} reml={reml}", data(seed, **spec), reml)
    case = data(0)
    compare("weights", case, True, weights=True)
    compare("free", case, True, free=[1, 0, 1])
    compare("start", case, False, start_params=[1.0, 0.3, 0.5])
    compare("newton", case, True, method="newton")
    compare("one group", data(0, sizes=[50]), True, check_nobs="ignore")


def sweep(seed, count):
    rng = np.random.default_rng(seed)
    for i in range(count):
        pick = lambda *v: v[int(rng.integers(len(v)))]  # noqa: E731
        spec = dict(
            p=int(rng.integers(1, 5)),
            n_groups=pick(2, 3, 5, 20, 100, 400),
            max_size=pick(1, 2, 3, 10, 50),
            slope_sd=pick(0.0, 1e-3, 0.05, 0.5, 3.0),
            corr=pick(0.0, 0.9, 0.999, -1.0, 1.0),
            z_shift=pick(0.0, 0.0, 1e3, 1.7e9),
            z_scale=pick(1.0, 1e-3, 1e4),
            y_scale=pick(1.0, 1e6, 1e-6),
            collinear_x=pick(0.0, 0.0, 1e-3, 1e-5),
            collinear_z=pick(None, None, 1e-2, 1e-4),
        )
        reml, weights = bool(rng.integers(2)), bool(rng.integers(2))
        compare(
            f"sweep {i} {spec} reml={reml} weights={weights}",
            data(int(rng.integers(1000)), **spec),
            reml,
            weights,
        )


def _arguments():
    """Arguments that each entry point takes as they are (p = 2, k = 3, 4 groups)."""
    basis = np.array([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], float)
    index = full_gather(basis, 3)
    zz = np.zeros((2, 2, 4))
    zz[0, 0] = zz[1, 1] = 1.0
    return {
        "profiled_hessian": [
            np.zeros((9, 9)),
            np.zeros((18, 6)),
            np.eye(2),
            np.zeros(2),
            np.eye(2),
            np.zeros(2),
            index,
            index.shape[1],
            2,
            3,
            1.0,
            10.0,
            True,
            np.empty((5, 5)),
            np.empty((3, 3)),
            np.empty(3),
        ],
        "lean_evaluate": [
            zz,
            np.zeros((2, 3, 4)),
            3,
            4,
            1.0,
            0.0,
            1.0,
            10.0 * np.eye(3),
            10.0 * np.eye(3),
            10.0,
            np.zeros((3, 5), np.intp),
            10.0,
            0.0,
            1e-5,
            0.1,
            True,
            np.empty(4),
            np.empty((9, 4)),
            np.empty((9, 9)),
            np.empty((3, 3)),
            np.empty((3, 3)),
            np.empty((2, 2)),
            np.empty(2),
            np.empty(17),
        ],
        "block_terms": [
            np.eye(3),
            1.0,
            0.0,
            1.0,
            1.0,
            0.0,
            1.0,
            1.0,
            np.empty(3),
            np.empty((3, 3)),
        ],
    }


def _wrong(v):
    if isinstance(v, np.ndarray):
        ro = v.copy()
        ro.flags.writeable = False
        out = [
            v.astype(np.float32),
            v.astype(np.int32),
            v.astype(np.complex128),
            np.zeros(0),
            np.zeros(10**6),
            v.ravel()[::-1],
            np.zeros(v.size * 2, v.dtype)[::2],
            ro,
            v.astype(v.dtype.newbyteorder(">")),
            np.asfortranarray(v),
            v.tobytes(),
            bytearray(v.tobytes()),
            "abc",
            None,
            1.0,
            [1.0, 2.0],
            np.array(1.0),
        ]
        if v.dtype.kind == "f":
            out += [np.full_like(v, np.nan), np.full_like(v, np.inf)]
        else:
            out += [np.full_like(v, 2**62), np.full_like(v, -(2**63))]
        if v.ndim == 2:
            out.append(np.zeros((v.shape[0], v.shape[1] * 2), v.dtype)[:, ::2])
        return out
    if isinstance(v, bool):
        return [None, "x"]
    if isinstance(v, int):
        return [0, -1, 2**31, 2**62, -(2**63), 2**63, 10**30, 1.5, None, v + 1, v - 1]
    return [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, 5e-324, "x", None, 10**400]


def calls():
    assert EXT is not None, "the extension is not built (or DMIXED_NATIVE=numpy)"
    errors: dict[str, int] = {}
    for entry, args in _arguments().items():
        for at, value in enumerate(args):
            for wrong in _wrong(value):
                given = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
                given[at] = wrong
                try:
                    getattr(EXT, entry)(*given)
                except (TypeError, ValueError, BufferError, OverflowError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
    print("Python errors by type:", errors)


def threads():
    os.environ[native.ENV_VAR] = "auto"
    cases = [(p, seed, reml) for p in (1, 3, 4, 12) for seed in (0, 1) for reml in (True, False)]

    def one(c):
        r = dmixed.MixedLM(*data(c[1], p=c[0])[:3], exog_re=data(c[1], p=c[0])[3]).fit(reml=c[2])
        return np.concatenate([r.params, r.bse, [r.llf, r.n_iter]]).tobytes()

    alone = [one(c) for c in cases]
    for workers in (2, 4, 8):
        with ThreadPoolExecutor(workers) as pool:
            print(
                workers,
                "threads:",
                "the same bits" if list(pool.map(one, cases)) == alone else "DIFFER",
            )


if __name__ == "__main__":
    if EXT is not None:
        for _name in CALLS:
            setattr(EXT, _name, _counting(_name))
    what = sys.argv[1] if len(sys.argv) > 1 else "fits"
    if what == "sweep":
        sweep(int(sys.argv[2]), int(sys.argv[3]))
    else:
        {"fits": fits, "calls": calls, "threads": threads}[what]()
