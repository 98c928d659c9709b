"""Parametric bootstrap: time per replicate from the statistics, against one full fit and
against a replicate that redraws the rows and refits them (mixedlm-rs).

Run:  python benchmarks/bench_bootstrap.py [--groups 1000000] [--size 5] [--repeats 5]
      [--replicates 20] [--rs-groups 200000]

Model: ``y ~ x1 + x2``, random intercept and slope on x1 (``bench_core.make``), REML.
Four jobs, interleaved (one round = one of each), warm, ``--repeats`` rounds:

- ``full fit``: dmixed from the arrays (data pass + fit + standard errors);
- ``replicate``: one dmixed replicate as the bootstrap runs it (draw + lean refit,
  ``ReplicateFitter.run``: started at the estimate, Newton steps, no Hessian/results);
- ``full refit``: one dmixed replicate as it was first run (the same draw, then the
  model's whole ``fit(skip_hessian=True)`` of the drawn statistics: moment start,
  results object), the "before" of the lean refit;
- ``rs replicate``: what a bootstrap of rows costs with mixedlm-rs (its ``bootstrap``
  raises NotImplementedError in the installed release): draw ``y*`` on the rows
  (numpy) and refit with ``model.with_endog(y*).fit()``, mixedlm-rs's path meant for
  parametric bootstraps (the prepared design is shared), at ``--rs-groups`` groups.

Then ``bootstrap(--replicates)`` once: the set-up and the median/min/max of its
per-replicate times (``BootstrapResults.replicate_seconds``).  With ``--dask-workers
N``: the same model fitted on a local cluster of ``N`` single-threaded worker processes
(``engine="distributed"``: the statistics stay on the workers) and bootstrapped there
(the replicates run on the workers), against the same bootstrap run in this process
from the same statistics (a model over the gathered statistics), interleaved.  mixedlm-rs runs at
``--rs-groups`` (default the same size) and its per-replicate time is also quoted per
group, to compare sizes.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from bench_core import interleaved, make  # noqa: E402

import dmixed  # noqa: E402
from dmixed.engines.local import statistics_from_arrays  # noqa: E402
from dmixed.results.replicate import ReplicateFitter, replicate_rngs  # noqa: E402
from dmixed.stats import GroupArrays  # noqa: E402


def rs_replicate(rs_model, rs_fit, x, z, g, rng) -> None:
    """One mixedlm-rs replicate: y* drawn on the rows from its fit, refitted."""
    n_groups = int(g.max()) + 1
    cov = np.asarray(rs_fit.cov_re)
    b = rng.standard_normal((n_groups, cov.shape[0])) @ np.linalg.cholesky(cov).T
    y = x @ np.asarray(rs_fit.fe_params) + np.einsum("nj,nj->n", z, b[g])
    y += np.sqrt(rs_fit.scale) * rng.standard_normal(len(y))
    rs_model.with_endog(y).fit()


def full_refit(fit, fitter: ReplicateFitter, rng) -> None:
    """A replicate's draw, then the model's whole fit of the drawn statistics."""
    twin = copy.copy(fit.model)
    twin.rows = twin.source = twin.cached_client = None
    twin.cached_statistics = statistics_from_arrays(fitter.draw(rng))
    twin.fit(reml=fit.reml, skip_hessian=True, check_nobs="ignore")


def dask_run(y, x, g, workers: int, replicates: int, repeats: int) -> None:
    """``bootstrap(replicates)`` on the workers of a local cluster against the driver."""
    import dask.dataframe as dd
    from bench_core import FORMULA, RE_FORMULA, frame
    from distributed import Client, LocalCluster

    ddf = dd.from_pandas(frame(y, x, g), npartitions=4 * workers)
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        model = dmixed.MixedLM.from_formula(FORMULA, ddf, groups="g", re_formula=RE_FORMULA)
        fit = model.fit(client=client, engine="distributed")
        stats_ = statistics_from_arrays(GroupArrays.from_statistics(fit.model.statistics()))
        local = dmixed.MixedLM.from_statistics(stats_, fit.model.spec).fit()
        times = interleaved(
            {
                "workers": lambda: fit.bootstrap(replicates, seed=1),
                "driver": lambda: local.bootstrap(replicates, seed=1),
            },
            repeats,
        )
    for name, t in times.items():
        print(f"bootstrap({replicates}) on the {name} ({workers} workers): {stats(t)}")
    print(f"driver / workers: {times['driver']['median'] / times['workers']['median']:.2f}")


def stats(t: dict) -> str:
    return f"{t['median']:.3f} s ({t['min']:.3f}-{t['max']:.3f}, n={t['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--rs-groups", type=int, default=None)
    ap.add_argument("--dask-workers", type=int, default=0)
    args = ap.parse_args()
    import mixedlm_rs

    y, x, z, g = make(args.groups, size=args.size, seed=1)
    rs_groups = args.rs_groups or args.groups
    ry, rx, rz, rg = make(rs_groups, size=args.size, seed=2)
    rs_model = mixedlm_rs.MixedLM(ry, rx, rg, exog_re=rz)
    rs_fit = rs_model.fit()
    rng = np.random.default_rng(3)
    print(f"{args.groups} groups of {args.size} rows (mixedlm-rs: {rs_groups} groups)")

    def full_fit():
        res = dmixed.MixedLM(y, x, g, exog_re=z).fit()
        res.bse  # noqa: B018
        return res

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dmixed.DmixedWarning)
        fit = full_fit()
        fitter = ReplicateFitter.of(fit, GroupArrays.from_statistics(fit.model.statistics()))
        rngs = iter(replicate_rngs(5, 2 * args.repeats + 2))
        times = interleaved(
            {
                "full fit": full_fit,
                "replicate": lambda: fitter.run([next(rngs)]),
                "full refit": lambda: full_refit(fit, fitter, next(rngs)),
                "rs replicate": lambda: rs_replicate(rs_model, rs_fit, rx, rz, rg, rng),
            },
            args.repeats,
        )
        boot = fit.bootstrap(args.replicates, seed=7)
    for name, t in times.items():
        print(f"{name:>14}: {stats(t)}")
    per = boot.replicate_seconds
    setup = boot.seconds - per.sum()
    print(
        f"bootstrap({args.replicates}): {boot.seconds:.2f} s, set-up {setup:.2f} s, per "
        f"replicate median {np.median(per):.3f} s ({per.min():.3f}-{per.max():.3f}); "
        f"{int(boot.replicates['converged'].sum())} converged"
    )
    full, rs = times["full fit"]["median"], times["rs replicate"]["median"]
    rep = times["replicate"]["median"]
    print(f"full refit / replicate (interleaved): {times['full refit']['median'] / rep:.2f}")
    print(f"full fit / replicate (interleaved): {full / rep:.1f}")
    print(f"full fit / replicate (of bootstrap): {full / np.median(per):.1f}")
    print(
        f"rs replicate per group / dmixed replicate per group: "
        f"{(rs / rs_groups) / (np.median(per) / args.groups):.1f}"
    )
    if args.dask_workers:
        dask_run(y, x, g, args.dask_workers, args.replicates, args.repeats)
    print(f"done {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
