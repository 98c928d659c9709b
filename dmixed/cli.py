"""The ``dmixed`` command: mixed-model fits as batch jobs.

    dmixed fit    --data 'data/*.parquet' --formula 'y ~ x1 + x2' --groups g --output out/
    dmixed fit    --job job.yaml
    dmixed update --stats-dir stats/ --data 'new/*.parquet' --output out/

Exit status: 0 success; 2 bad configuration (flags, job file, formula against the
data's columns, saved statistics that do not match); 3 data that cannot be read;
4 the fit did not converge (unless ``--allow-nonconverged``); 5 the cluster cannot be
reached.  Errors are one line on stderr; progress goes to stderr, the path of the
written results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

from .design.missing import MISSING_OPTIONS
from .errors import DmixedError
from .stats import CHECK_NOBS_OPTIONS

logger = logging.getLogger("dmixed")

EXIT_OK, EXIT_CONFIG, EXIT_DATA, EXIT_NOT_CONVERGED, EXIT_CLUSTER = 0, 2, 3, 4, 5


class JobError(Exception):
    """A job that cannot run, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """Everything a fit job needs; the keys of a YAML job file are these names."""

    data: str | list[str] | None = None
    format: str | None = None
    formula: str | None = None
    groups: str | None = None
    re_formula: str | None = None
    vc_formula: dict[str, str] | None = None
    weights: str | None = None
    method: str = "reml"
    missing: str = "raise"
    output: str | None = None
    cluster: str | dict | None = None
    stats_dir: str | None = None
    allow_nonconverged: bool = False
    cov_fe: str = "hessian"
    check_nobs: str = "raise"
    maxiter: int = 500
    storage_options: dict = field(default_factory=dict)
    quiet: bool = False

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def read_job_file(path: str) -> dict:
    """The options of a YAML job file (safe YAML: it cannot construct objects).

    Raises
    ------
    JobError
        An unreadable file, invalid YAML, not a mapping, or keys that are not options.
    """
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)  # safe: a job file cannot construct objects
    except OSError as exc:
        raise JobError(f"cannot read job file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise JobError(f"job file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise JobError(f"job file {path} must be a mapping of option: value")
    unknown = sorted(set(data) - set(Job.keys()))
    if unknown:
        raise JobError(f"unknown key(s) in job file {path}: {unknown}; allowed: {Job.keys()}")
    return data


def _parse_vc(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, formula = item.partition("=")
        if not sep or not name.strip() or not formula.strip():
            raise JobError(f"--vc expects NAME=FORMULA, got {item!r}")
        out[name.strip()] = formula.strip()
    return out


_PATH_KEYS = ("data", "output", "stats_dir", "cluster")


def _resolve_job_paths(values: dict, base: str) -> None:
    """Relative paths in a job file are relative to the job file (not to the directory
    the job happens to be started from, which for cron is the home directory)."""

    def resolve(path):
        if not isinstance(path, str) or "://" in path or os.path.isabs(path):
            return path
        if path in ("local",):
            return path
        return os.path.join(base, path)

    for key in _PATH_KEYS:
        if key in values:
            v = values[key]
            values[key] = [resolve(x) for x in v] if isinstance(v, list) else resolve(v)


def make_job(args: argparse.Namespace, required: tuple[str, ...]) -> Job:
    """Job file values, overridden by the flags given on the command line."""
    values = read_job_file(args.job) if getattr(args, "job", None) else {}
    if values:
        _resolve_job_paths(values, os.path.dirname(os.path.abspath(args.job)))
    for key in Job.keys():
        flag = getattr(args, key, None)
        if key == "vc_formula":
            flag = _parse_vc(getattr(args, "vc", None))
        if flag is not None and flag is not False:
            values[key] = flag
    job = Job(**values)
    if getattr(args, "command", None) == "update" and "method" not in values:
        job.method = None  # default: the method of the saved fit
    else:
        job.method = str(job.method).lower()
        if job.method not in ("reml", "ml"):
            raise JobError(f"method must be 'reml' or 'ml', got {job.method!r}")
    if job.missing not in MISSING_OPTIONS:
        raise JobError(f"missing must be 'raise' or 'drop', got {job.missing!r}")
    if job.check_nobs not in CHECK_NOBS_OPTIONS:
        raise JobError(f"check_nobs must be 'raise' or 'ignore', got {job.check_nobs!r}")
    if job.format is not None and job.format not in ("parquet", "csv"):
        raise JobError(f"format must be 'parquet' or 'csv', got {job.format!r}")
    if job.vc_formula is not None and not isinstance(job.vc_formula, dict):
        raise JobError("vc_formula must be a mapping of name: formula")
    missing = [k for k in required if not getattr(job, k)]
    if missing:
        raise JobError(f"missing required option(s): {', '.join('--' + k for k in missing)}")
    return job


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def input_files(job: Job) -> list[str]:
    """The job's input files (globs, directories expanded); absent local files refused."""
    from .stats.checkpoint import expand_inputs

    files = expand_inputs(job.data)
    local = [f for f in files if "://" not in f]
    absent = [f for f in local if not os.path.exists(f)]
    if absent:
        raise JobError(f"no such input file(s): {absent[:3]}", EXIT_DATA)
    return files


def read_data(job: Job, files: list[str] | None = None):
    """A lazy Dask DataFrame over the job's Parquet or CSV input."""
    import dask.dataframe as dd

    if files is None:
        files = input_files(job)
    fmt = job.format
    if fmt is None:
        first = files[0].lower() if files else ""
        fmt = "csv" if first.endswith((".csv", ".csv.gz", ".tsv")) else "parquet"
    try:
        if fmt == "csv":
            return dd.read_csv(files, storage_options=job.storage_options or None), files
        return dd.read_parquet(files, storage_options=job.storage_options or None), files
    except Exception as exc:  # pyarrow/fsspec raise many types for unreadable input
        raise JobError(f"cannot read {fmt} data {job.data!r}: {exc}", EXIT_DATA) from exc


_MODEL_KEYS = ("formula", "groups", "re_formula", "vc_formula", "weights", "missing")


def _model_digest(model: dict, inputs: list[dict]) -> str:
    """Digest of the model options and input files, the same for `fit` and `update`
    (``model``: a Job's attributes or a saved spec, whose keys have the same names)."""
    from .stats.checkpoint import digest

    return digest({k: model.get(k) for k in _MODEL_KEYS}, sorted(inputs, key=lambda i: i["path"]))


def _job_digest(job: Job, fingerprint: list[dict]) -> str:
    return _model_digest(vars(job), fingerprint)


def _is_read_error(exc: BaseException) -> bool:
    """Errors of reading the data (raised during the data pass, possibly on a worker)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return False
    import pandas as pd
    import pyarrow

    kinds = (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, pyarrow.ArrowException)
    return isinstance(exc, kinds)


@contextlib.contextmanager
def _job_errors(job: Job, reads_data: bool) -> Iterator[None]:
    """Exit statuses of what goes wrong while a job builds its statistics and fits.

    Unreadable data (while ``reads_data``) → ``EXIT_DATA``.  dmixed's refusals
    (:class:`~dmixed.DmixedError`) and the ``KeyError``/``TypeError`` that pandas and
    formulaic raise for a column missing from, or of the wrong type in, the data →
    ``EXIT_CONFIG``, first line only.  Anything else propagates to :func:`exit_status`.
    """
    try:
        yield
    except JobError:
        raise
    except Exception as exc:
        if reads_data and _is_read_error(exc):
            raise JobError(f"cannot read data {job.data!r}: {exc}", EXIT_DATA) from exc
        if isinstance(exc, (ValueError, KeyError, TypeError)):
            message = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise JobError(message, EXIT_CONFIG) from exc
        raise


def _save_outputs(job: Job, res) -> None:
    if not res.converged and not job.allow_nonconverged:
        raise JobError(
            "the fit did not converge; no results written (pass --allow-nonconverged "
            "to write them anyway)",
            EXIT_NOT_CONVERGED,
        )
    res.save(job.output)
    print(os.path.abspath(job.output))


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _reusable_statistics(job: Job, job_digest: str) -> dict | None:
    """The manifest of statistics saved by this very job earlier, if any (else None);
    statistics of other data or another model in ``--stats-dir`` are refused."""
    from .stats import checkpoint

    if not (job.stats_dir and os.path.exists(os.path.join(job.stats_dir, "manifest.json"))):
        return None
    manifest = checkpoint.read_manifest(job.stats_dir)
    if manifest.get("digest") != job_digest:
        raise JobError(
            f"the statistics saved in {job.stats_dir} were built from other data or "
            "another model (their digest does not match this job); remove that "
            "directory or choose another --stats-dir"
        )
    return manifest


def _model_from_saved(job: Job):
    """The model over the statistics saved in ``--stats-dir`` (no data pass)."""
    from .design import ModelSpec
    from .engines.local import statistics_from_arrays
    from .model import MixedLM
    from .stats import checkpoint

    logger.info("reusing saved statistics from %s (no data pass)", job.stats_dir)
    arrays, manifest = checkpoint.load_statistics(job.stats_dir)
    spec = ModelSpec.from_dict(manifest["spec"])
    return MixedLM.from_statistics(statistics_from_arrays(arrays), spec)


def _model_from_data(job: Job, ddf, client, job_digest: str, fingerprint: list[dict]):
    """The model of the data, after its data pass (statistics saved if ``--stats-dir``)."""
    from .design import build_spec
    from .model import MixedLM
    from .stats import checkpoint

    spec = build_spec(
        ddf,
        job.formula,
        job.groups,
        re_formula=job.re_formula,
        vc_formula=job.vc_formula,
        weights=job.weights,
        missing=job.missing,
    )
    model = MixedLM.from_spec(spec, ddf)
    stats = model.statistics(client=client, progress=not job.quiet)
    if job.stats_dir:
        checkpoint.save_statistics(
            checkpoint.GroupArrays.from_statistics(stats),
            job.stats_dir,
            {
                "digest": job_digest,
                "spec": spec.to_dict(),
                "inputs": fingerprint,
                "job": {"method": job.method},
            },
        )
        logger.info("saved statistics to %s", job.stats_dir)
    return model


def _under_stats_lock(command):
    """Run ``command(job)`` holding the lock of ``job.stats_dir`` (when given), from the
    first read of the saved statistics to the last write: concurrent jobs on one
    statistics directory run one after another (README, "Batch jobs")."""

    @functools.wraps(command)
    def locked(job: Job) -> int:
        if not job.stats_dir:
            return command(job)
        from .stats.checkpoint import statistics_lock

        with statistics_lock(job.stats_dir):
            return command(job)

    return locked


@_under_stats_lock
def run_fit(job: Job) -> int:
    """``dmixed fit``: data pass (or saved statistics of the same job), fit, write."""
    from .cluster import connect
    from .stats import checkpoint

    files = input_files(job)
    fingerprint = checkpoint.input_fingerprint(files, job.storage_options)
    job_digest = _job_digest(job, fingerprint)
    reuse = _reusable_statistics(job, job_digest) is not None
    ddf = None if reuse else read_data(job, files)[0]  # a reuse reads no data
    # a reuse needs no cluster either: the optimization runs on the saved statistics
    cluster = contextlib.nullcontext() if reuse else connect(job.cluster)
    with cluster as client, _job_errors(job, reads_data=not reuse):
        if reuse:
            model = _model_from_saved(job)
        else:
            model = _model_from_data(job, ddf, client, job_digest, fingerprint)
        res = model.fit(
            reml=job.method == "reml",
            cov_fe=job.cov_fe,
            check_nobs=job.check_nobs,
            maxiter=job.maxiter,
            progress=not job.quiet,
            client=client,
        )
    if job.stats_dir:
        _remember_fit(job.stats_dir, res)
    _save_outputs(job, res)
    return EXIT_OK


def _remember_fit(stats_dir: str, res) -> None:
    """Record the estimates next to the statistics (warm start of a later update)."""
    import json

    path = os.path.join(stats_dir, "last_fit.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(
            {"packed_params": res.packed_params.tolist(), "method": res.method, "llf": res.llf},
            fh,
        )
    os.replace(tmp, path)


@_under_stats_lock
def run_update(job: Job) -> int:
    import json

    from .cluster import connect
    from .design import ModelSpec
    from .engines.local import statistics_from_arrays
    from .model import MixedLM
    from .stats import checkpoint

    manifest = checkpoint.read_manifest(job.stats_dir)
    spec = ModelSpec.from_dict(manifest["spec"])
    ddf, files = read_data(job)
    new_inputs = checkpoint.input_fingerprint(files, job.storage_options)
    done = {i["path"] for i in manifest.get("inputs", [])}
    again = [i["path"] for i in new_inputs if i["path"] in done]
    if again:
        more = f" and {len(again) - 3} more" if len(again) > 3 else ""
        raise JobError(
            f"{len(again)} input(s) already included in the statistics of {job.stats_dir}: "
            f"{again[:3]}{more}; adding them again would count their rows twice"
        )
    old, _ = checkpoint.load_statistics(job.stats_dir)
    start = None
    last = os.path.join(job.stats_dir, "last_fit.json")
    if os.path.exists(last):
        with open(last) as fh:
            start = json.load(fh).get("packed_params")
    method = job.method or manifest.get("job", {}).get("method", "reml")
    with connect(job.cluster) as client, _job_errors(job, reads_data=True):
        new_model = MixedLM.from_spec(spec, ddf)
        new = checkpoint.GroupArrays.from_statistics(
            new_model.statistics(client=client, progress=not job.quiet, standardization=old.columns)
        )
    merged = checkpoint.merge(old, new)
    model = MixedLM.from_statistics(statistics_from_arrays(merged), spec)
    if start is not None and len(start) != merged.layout.n_params:
        start = None
    res = model.fit(
        reml=method == "reml",
        start_params=start,
        cov_fe=job.cov_fe,
        check_nobs=job.check_nobs,
        maxiter=job.maxiter,
        progress=not job.quiet,
    )
    _save_outputs(job, res)
    inputs = sorted(manifest.get("inputs", []) + new_inputs, key=lambda i: i["path"])
    checkpoint.save_statistics(
        merged,
        job.stats_dir,
        {
            "digest": _model_digest(manifest["spec"], inputs),
            "spec": manifest["spec"],
            "inputs": inputs,
            "job": {"method": method},
        },
    )
    _remember_fit(job.stats_dir, res)
    return EXIT_OK


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", metavar="FILE", help="YAML job file; flags override its keys")
    p.add_argument(
        "--data",
        metavar="PATH",
        nargs="+",
        help="input: Parquet or CSV file(s), glob(s), a directory, or fsspec URL(s)",
    )
    p.add_argument("--format", choices=("parquet", "csv"), help="input format (default: by suffix)")
    p.add_argument("--output", metavar="DIR", help="results directory (written atomically)")
    p.add_argument(
        "--cluster",
        metavar="SPEC",
        help="scheduler address (tcp://, tls://), scheduler file (.json) or cluster config "
        "(.yaml, see cluster_configs/); default: a local cluster on this machine",
    )
    p.add_argument("--stats-dir", dest="stats_dir", metavar="DIR", help="saved statistics")
    p.add_argument(
        "--allow-nonconverged",
        dest="allow_nonconverged",
        action="store_true",
        default=None,
        help="write results and exit 0 even if the optimizer did not converge",
    )
    p.add_argument(
        "--cov-fe",
        dest="cov_fe",
        choices=("hessian", "conditional"),
        help="fixed-effect covariance: statsmodels' inverse Hessian (default) or lme4's "
        "conditional sigma^2 (X'V^-1X)^-1",
    )
    p.add_argument(
        "--check-nobs",
        dest="check_nobs",
        choices=CHECK_NOBS_OPTIONS,
        help="refuse (raise, default) or fit anyway (ignore) a model whose random effects are "
        "not identifiable: one group, every group of one row, no more rows than random effects",
    )
    p.add_argument("--maxiter", type=int, help="optimizer iterations (default 500)")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmixed",
        description="Fit linear mixed models (statsmodels' MixedLM) on Dask, as batch jobs.",
        epilog="Exit status: 0 ok, 2 bad configuration, 3 unreadable data, "
        "4 not converged, 5 cluster unreachable.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser(
        "fit",
        help="fit a model to data",
        description="Fit a model to Parquet/CSV data and write a results directory "
        "(estimates.json, random_effects.parquet, summary.txt). "
        "YAML job keys: " + ", ".join(Job.keys()) + ".",
    )
    _add_common(fit)
    fit.add_argument("--formula", help="fixed part, e.g. 'y ~ x1 + C(site)'")
    fit.add_argument("--groups", help="grouping column")
    fit.add_argument("--re-formula", dest="re_formula", help="random part (default: '1')")
    fit.add_argument(
        "--vc",
        action="append",
        metavar="NAME=FORMULA",
        help="variance component, e.g. 'class=0 + C(class)' (repeatable)",
    )
    fit.add_argument("--weights", help="column of prior (precision) weights")
    fit.add_argument("--method", choices=("reml", "ml"), help="REML (default) or ML")
    fit.add_argument("--missing", choices=("raise", "drop"), help="rows with missing values")
    fit.set_defaults(func=run_fit, required=("data", "formula", "groups", "output"))
    update = sub.add_parser(
        "update",
        help="add new data to saved statistics and refit",
        description="Add the statistics of new rows to those saved in --stats-dir "
        "(without reading the old rows), refit warm-started from the last estimates, "
        "and write the results and the updated statistics.",
    )
    _add_common(update)
    update.add_argument("--method", choices=("reml", "ml"), help="default: as the saved fit")
    update.set_defaults(func=run_update, required=("data", "output", "stats_dir"))
    return parser


def _one_line(exc) -> str:
    """An error message as one line (cli: "Errors are one line on stderr")."""
    return " ".join(str(exc).split())


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dmixed: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def exit_status(exc: BaseException) -> int:
    """The documented exit status of an error that ends a command (README "Exit status").

    A :class:`JobError` carries its own status; a lost or unreachable cluster
    (``ConnectionError``, including distributed's ``CommClosedError`` and timeouts of
    connecting) → 5; a configuration dmixed refuses (:class:`~dmixed.DmixedError`: a
    bad job, formula, cluster configuration, or saved statistics) or an input path that
    does not exist → 2; anything else → 1.
    """
    if isinstance(exc, JobError):
        return exc.status
    if isinstance(exc, ConnectionError):
        return EXIT_CLUSTER
    if isinstance(exc, (DmixedError, FileNotFoundError)):
        return EXIT_CONFIG
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(bool(args.quiet))
    try:
        job = make_job(args, args.required)
        _setup_logging(job.quiet)
        return args.func(job)
    except Exception as exc:  # one line on stderr, never a traceback
        label = "" if isinstance(exc, (JobError, ConnectionError)) else f"{type(exc).__name__}: "
        print(f"dmixed: error: {label}{_one_line(exc)}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
