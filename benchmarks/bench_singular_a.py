"""Points where ``A = X'V*⁻¹X`` is singular to rounding: which evaluation accepts them and
how far each is from the value in extended precision.

Data: ``tests._synth.make_data(n_groups=40, min_size=1, max_size=12, seed)``, fixed
effects ``[1, x1, x2, x1 x2][:p]``, a random intercept and slope on ``x1`` (arrays in: the
statistics' Λ is the packed one).  Three evaluations of the same packed Λ: the lean steps
through the extension (``lean_evaluate``), the lean steps in numpy, and the general path
(``ProfiledObjective.evaluate``).

``points``: the points where the three gave ℓ 0.1 to 30 units apart, with
``model.loglike``, statsmodels' ``MixedLM.loglike`` and ℓ of the raw rows in mpmath (60
digits), in the data's units.  ``sweep [SEEDS]``: a grid of 240 Λ (variances 1e-4 to
1e18, correlations at and near ±1) × p = 1..3 × ML/REML × seeds: how many points each
lean path accepts, where they part, how far apart their ℓ are where both accept, and
that against what the resolution test promises ((f/2) times the resolution and the
factor's share).  ``general [SEEDS]``: on the same grid, where the general path and the
lean paths disagree on acceptance, ℓ of the one that accepts against mpmath of the
statistics (the block's ``Z'Z``, ``Z'[X y]`` and ``[X y]'[X y]`` taken as exact).

    PYTHONPATH=. python benchmarks/bench_singular_a.py points|sweep [5]|general [5]
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings

import mpmath as mp
import numpy as np

import dmixed
from dmixed.fit.coordinates import Coordinates
from dmixed.fit.lean import LeanSteps
from dmixed.fit.profiled import ProfiledObjective
from tests._synth import make_data

mp.mp.dps = 60
EPS = float(np.finfo(float).eps)

#: (seed, p, REML, packed Λ) found with ℓ 0.1 to 30 units apart between the paths
POINTS = [
    (2, 2, True, (1e6, -1e8, 1e-3)),
    (2, 2, True, (1e8, -1e8, 1e-3)),
    (2, 2, False, (1e8, -1e8, 1.0)),
    (1, 3, False, (1e7, -1e8, 1.0)),
    (1, 3, True, (1e7, -1e8, 1.0)),
    (2, 3, True, (1e9, -1e8, 1.0)),
    (2, 2, False, (1e8, -1e8, 1e6)),
    (2, 2, False, (1e7, -1e8, 1e4)),
    (2, 2, True, (1e4, -1.0, 1.0)),
]

GRID = list(
    itertools.product(
        (1e-2, 1.0, 1e2, 1e4, 1e6, 1e7, 1e8, 1e9),
        (-1e8, -1e4, -1.0, 0.0, 1.0, 1e4),
        (1e-3, 1.0, 1e2, 1e4, 1e6),
    )
)


def build(seed: int, p: int, reml: bool) -> dict:
    """The model, its objective and its lean steps (module docstring)."""
    df = make_data(n_groups=40, min_size=1, max_size=12, seed=seed)
    x1, x2 = np.asarray(df["x1"]), np.asarray(df["x2"])
    exog = np.column_stack([np.ones(len(df)), x1, x2, x1 * x2])[:, :p]
    exog_re = np.column_stack([np.ones(len(df)), x1])
    y = np.asarray(df["y"], dtype=np.float64)
    g = np.asarray(df["g"])
    model = dmixed.MixedLM(y, exog, g, exog_re=exog_re)
    model.reml = reml
    stats = model.statistics()
    coords = Coordinates.model(stats.columns, stats.layout)
    assert coords.re_map is None
    obj = ProfiledObjective(stats.engine, stats.glob, stats.layout, reml, True, coords.re_map)
    steps = LeanSteps.of(obj)
    assert steps is not None
    return dict(
        y=y,
        exog=exog,
        exog_re=exog_re,
        g=g,
        model=model,
        stats=stats,
        obj=obj,
        steps=steps,
        coords=coords,
        reml=reml,
        p=p,
    )


def evaluations(case: dict, packed: np.ndarray):
    """``((ℓ, unresolved, point) of the extension, of numpy, the general path's
    evaluation)``."""
    steps = case["steps"]
    fused = steps._fused
    c, c_unres = steps.evaluate(packed)
    steps._fused = None
    n, n_unres = steps.evaluate(packed)
    steps._fused = fused
    obj = case["obj"]
    obj._cache.clear()
    return (c.llf, c_unres, c), (n.llf, n_unres, n), obj.evaluate(packed)


def _psi(packed) -> mp.matrix:
    l00, l10, l11 = [mp.mpf(float(v)) for v in packed]
    return mp.matrix([[l00 * l00, l00 * l10], [l00 * l10, l10 * l10 + l11 * l11]])


def _llf(t: mp.matrix, logdet, p: int, n: int, reml: bool, const) -> float:
    a, b = t[:p, :p], t[:p, p]
    q = t[p, p] - (b.T * mp.lu_solve(a, b))[0]
    fac = mp.mpf(n - p if reml else n)
    llf = -logdet / 2 - fac / 2 * mp.re(mp.log(q)) + const
    if reml:
        llf -= mp.re(mp.log(mp.det(a))) / 2
    return float(llf)


def statistics_reference(case: dict, packed) -> float:
    """ℓ̃ in mpmath from the block's float statistics, taken as exact."""
    obj, steps = case["obj"], case["steps"]
    k = obj.glob.k_fe + 1
    b = _psi(packed)
    t = mp.matrix([[mp.mpf(float(v)) for v in row] for row in obj.glob.xyxy])
    logdet = mp.mpf(0)
    for zz, zxy in case["stats"].engine.block.chunks():
        for i in range(zz.shape[2]):
            u = mp.matrix([[mp.mpf(float(zz[a, c, i])) for c in range(2)] for a in range(2)])
            f = mp.matrix([[mp.mpf(float(zxy[a, x, i])) for x in range(k)] for a in range(2)])
            kk = mp.eye(2) + u * b
            logdet += mp.log(mp.det(kk))
            t -= f.T * b * mp.inverse(kk) * f
    return _llf((t + t.T) / 2, logdet, k - 1, obj.glob.n, case["reml"], mp.mpf(steps._const))


def raw_reference(case: dict, packed) -> float:
    """ℓ in the data's units from the raw rows in mpmath."""
    y, x, z, g = case["y"], case["exog"], case["exog_re"], case["g"]
    p = x.shape[1]
    b = _psi(packed)
    xy = np.column_stack([x, y])
    t = mp.matrix(p + 1, p + 1)
    logdet = mp.mpf(0)
    for group in np.unique(g):
        rows = np.flatnonzero(g == group)
        zg = mp.matrix([[mp.mpf(float(v)) for v in z[r]] for r in rows])
        fg = mp.matrix([[mp.mpf(float(v)) for v in xy[r]] for r in rows])
        kk = mp.eye(2) + zg.T * zg * b
        logdet += mp.log(mp.det(kk))
        f = zg.T * fg
        t += fg.T * fg - f.T * b * mp.inverse(kk) * f
    n = len(y)
    fac = n - p if case["reml"] else n
    const = mp.mpf(fac) / 2 * (mp.log(fac) - mp.log(2 * mp.pi) - 1)
    return _llf(t, logdet, p, n, case["reml"], const)


def statsmodels_llf(case: dict, packed) -> str:
    """statsmodels' ``MixedLM.loglike`` at Ψ* = ΛΛ' (β profiled), or why none."""
    import statsmodels.api as sm
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    md = sm.MixedLM(case["y"], case["exog"], case["g"], exog_re=case["exog_re"])
    md.reml, md.cov_pen, md.fe_pen, md._cov_sing = case["reml"], None, None, 0
    lam = np.array([[packed[0], 0.0], [packed[1], packed[2]]])
    pa = MixedLMParams.from_components(fe_params=np.zeros(case["p"]), cov_re=lam @ lam.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return f"{float(md.loglike(pa, profile_fe=True)):.6f}"
        except Exception as e:  # noqa: BLE001 (reported, not raised)
            return type(e).__name__


def points() -> None:
    for seed, p, reml, point in POINTS:
        case = build(seed, p, reml)
        packed = np.array(point)
        (cl, cu, _), (nl, nu, _), ev = evaluations(case, packed)
        off = case["coords"].llf_offset(case["obj"].glob.n, reml)
        ml = case["model"].loglike(packed)

        def shown(v, unresolved=False, off=off):
            return f"{v + off:.6f}" if math.isfinite(v) else ("refused" if unresolved else "-inf")

        print(
            f"seed={seed} p={p} reml={reml:d} Λ={point}: mpmath {raw_reference(case, packed):.6f} "
            f"statsmodels {statsmodels_llf(case, packed)} model.loglike {ml:.6f} | "
            f"C {shown(cl, cu)} numpy {shown(nl, nu)} general {shown(ev.llf)}",
            flush=True,
        )


def _share(steps, prof, m, reml: bool) -> float:
    """The resolution plus the factor's share (LeanSteps.unresolved's sums)."""
    p = prof.beta.size
    big_s = steps._abs_xyxy + np.abs(m)
    abs_w, abs_inv = np.abs(prof.w), np.abs(prof.a_inv)
    root = np.sqrt(np.abs(np.diagonal(prof.a)))
    made = abs(float(prof.b @ prof.beta))
    r = EPS * (big_s[:p] @ abs_w)
    share = EPS * float(abs_w @ big_s @ abs_w) + EPS * float(root @ abs_inv @ root) * made
    share += float(r @ abs_inv @ r)
    if reml:
        share += EPS * float((abs_inv * big_s[:p, :p]).sum()) * prof.q / prof.fac
    return share / prof.q


def sweep(seeds: int) -> None:
    n = both = c_only = np_only = general_differs = 0
    apart, big, worst, ratio = 0, 0, 0.0, 0.0
    for seed, p, reml in itertools.product(range(seeds), (1, 2, 3), (True, False)):
        case = build(seed, p, reml)
        for point in GRID:
            packed = np.array(point)
            (cl, _, _), (nl, _, nn), ev = evaluations(case, packed)
            n += 1
            ca, na = math.isfinite(cl), math.isfinite(nl)
            c_only += ca and not na
            np_only += na and not ca
            general_differs += (ca or na) != math.isfinite(ev.llf)
            if not (ca and na):
                continue
            both += 1
            gap = abs(cl - nl)
            apart += gap > 1e-9 * abs(nl)
            big += gap > 0.01
            worst = max(worst, gap / abs(nl))
            promise = 0.5 * nn.prof.fac * _share(case["steps"], nn.prof, nn.step.m, reml)
            if gap > 1e-12 * abs(nl):
                ratio = max(ratio, gap / promise)
    print(
        f"evaluations {n}; both lean paths accept {both}, the extension alone {c_only}, "
        f"numpy alone {np_only}; the general path accepts otherwise than the lean paths "
        f"{general_differs}\nwhere both accept: apart by more than 1e-9 relative {apart}, by "
        f"more than 0.01 {big}, at most {worst:.2e} relative; |C − numpy| / ((f/2)(resolution"
        f" + factor share)) at most {ratio:.3f} (gaps over 1e-12 relative)"
    )


def general(seeds: int) -> None:
    gen_err, lean_err, both_err = [], [], []
    for seed, p, reml in itertools.product(range(seeds), (1, 2, 3), (True, False)):
        case = build(seed, p, reml)
        for point in GRID:
            packed = np.array(point)
            (_, _, _), (nl, _, _), ev = evaluations(case, packed)
            la, ga = math.isfinite(nl), math.isfinite(ev.llf)
            if la and ga and point[0] >= 1e4:
                both_err.append(abs(ev.llf - statistics_reference(case, packed)))
            elif ga and not la:
                gen_err.append(abs(ev.llf - statistics_reference(case, packed)))
            elif la and not ga:
                lean_err.append(abs(nl - statistics_reference(case, packed)))
    for tag, errs in (
        ("the general path accepts, the lean paths refuse: |general − mpmath|", gen_err),
        ("the lean paths accept, the general path refuses: |lean numpy − mpmath|", lean_err),
        ("both accept (l00 ≥ 1e4): |general − mpmath|", both_err),
    ):
        e = np.array(errs)
        if e.size:
            print(
                f"{tag}: {e.size} points, median {np.median(e):.2e}, max {e.max():.2e}, "
                f"over 1e-3 {(e > 1e-3).sum()}"
            )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "points"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    {"points": lambda: points(), "sweep": lambda: sweep(count), "general": lambda: general(count)}[
        what
    ]()
