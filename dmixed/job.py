"""What a batch job asks for: the options of ``dmixed fit``/``update``, typed.

One model, :class:`Job` (pydantic, strict), holds the rules of every option — its type,
its range, its allowed names — for both ways of giving it: a YAML job file
(:func:`read_job_file`) and the command-line flags (:func:`job_from`, which the flags'
parser in :mod:`dmixed.cli` also reads its choices from).  Everything is checked before
any data is read:

- booleans only as YAML booleans (``quiet: "no"`` is text, refused, not true);
- integers only as integers, within range (``maxiter: abc``, ``maxiter: -5``);
- enumerations by their names (``method: reml``; case does not matter);
- unknown keys refused, with the close matches (``formla`` → ``formula``);
- the ``cluster:`` mapping only with the keys :func:`dmixed.cluster.read_config`
  documents (distributed's ``preload``, which runs a file in every worker, is refused).

Every refusal is a :class:`JobError` (exit status 2) naming the file or the flag, the
key, the value given and what is allowed, one line per problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from .cluster import read_config, resolve_config_paths, safe_load_yaml
from .design.formula import parse_formula
from .errors import DmixedError, shorten, shown_value
from .files import dmixed_version
from .results.bootstrap import REPLICATES_LIMIT

EXIT_OK, EXIT_CONFIG, EXIT_DATA, EXIT_NOT_CONVERGED, EXIT_CLUSTER = 0, 2, 3, 4, 5
EXIT_BUG, EXIT_INTERRUPTED, EXIT_PIPE, EXIT_TERMINATED = 1, 130, 141, 143
#: every exit status of the command and what it means (``dmixed --help``, README)
EXIT_STATUSES = {
    EXIT_OK: "success",
    EXIT_BUG: "a bug in dmixed (please report it)",
    EXIT_CONFIG: "bad configuration: flags, job file, cluster config, formula, an output "
    "directory dmixed did not write or cannot write, saved statistics of other data or "
    "another model",
    EXIT_DATA: "data that cannot be read or used: input files (unreadable, text where numbers "
    "are read, missing or infinite values, no rows, weights not positive or more than "
    "2^53 apart), damaged saved statistics or results",
    EXIT_NOT_CONVERGED: "the fit did not converge (unless --allow-nonconverged)",
    EXIT_CLUSTER: "the cluster cannot be reached or cannot run the work (no workers for "
    "the Dask config dmixed.no-workers-timeout, workers killed at their memory limit, "
    "workers paused at their memory threshold while the work does not move for the Dask "
    "config dmixed.paused-workers-timeout, the cluster closed while dmixed waited)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the cluster closed, each directory written whole "
    "or left as it was; a command ended between two of its writes (update: the results, "
    "then the statistics) leaves the later ones old until it is run again",
    EXIT_TERMINATED: "terminated (SIGTERM: a batch system's time limit or cancel), as interrupted",
    EXIT_PIPE: "its output was closed early (piped into head): as a command killed by SIGPIPE",
}


#: the most optimizer iterations a job may ask for
MAXITER_LIMIT = 1_000_000

__all__ = [
    "MODEL_KEYS",
    "model_differences",
    "same_model",
    "saved_model",
    "EXIT_OK",
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_NOT_CONVERGED",
    "EXIT_CLUSTER",
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
    "EXIT_PIPE",
    "EXIT_TERMINATED",
    "EXIT_STATUSES",
    "build_parser",
    "Job",
    "JobError",
    "job_from",
    "parse_vc",
    "read_job_file",
]


class JobError(Exception):
    """A job that cannot run, with its exit status (one line of the message per problem)."""

    def __init__(self, message: str, status: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.status = status


Text = Annotated[StrictStr, Field(min_length=1)]


def _field(default, allowed: str):
    """A field whose ``description`` says what is allowed (used in every refusal)."""
    return Field(default, description=allowed)


class Job(BaseModel):
    """Everything a fit job needs; the keys of a YAML job file are these names."""

    model_config = ConfigDict(extra="forbid", strict=True)

    data: Text | list[Text] | None = _field(None, "a path, glob or URL, or a list of them")
    format: Literal["parquet", "csv"] | None = _field(None, "parquet or csv")
    formula: Text | None = _field(None, "a formula as text, e.g. 'y ~ x1 + x2'")
    groups: Text | None = _field(None, "a column name as text (quote a number)")
    re_formula: Text | None = _field(None, "a formula as text, e.g. '1 + x1'")
    vc_formula: dict[Text, Text] | None = _field(None, "a mapping of name: formula (text)")
    weights: Text | None = _field(None, "a column name as text")
    method: Literal["reml", "ml"] | None = _field("reml", "reml or ml")
    missing: Literal["raise", "drop"] = _field("raise", "raise or drop")
    output: Text | None = _field(None, "a directory path")
    cluster: Text | dict[str, Any] | None = _field(
        None,
        "a scheduler address, a scheduler file (.json), a cluster config (.yaml) "
        "or a cluster mapping (see cluster_configs/)",
    )
    stats_dir: Text | None = _field(None, "a directory path")
    skip_included: StrictBool = _field(
        False, "true or false (a YAML boolean, unquoted; dmixed update)"
    )
    moved_inputs: StrictBool = _field(
        False, "true or false (a YAML boolean, unquoted; dmixed fit and update)"
    )
    allow_nonconverged: StrictBool = _field(False, "true or false (a YAML boolean, unquoted)")
    cov_fe: Literal["hessian", "conditional"] = _field("hessian", "hessian or conditional")
    check_nobs: Literal["raise", "ignore"] = _field("raise", "raise or ignore")
    maxiter: Annotated[StrictInt, Field(ge=1, le=MAXITER_LIMIT)] = _field(
        500, f"a whole number from 1 to {MAXITER_LIMIT}"
    )
    storage_options: dict[str, Any] = _field({}, "a mapping of fsspec options")
    replicates: Annotated[StrictInt, Field(ge=1, le=REPLICATES_LIMIT)] | None = _field(
        None, f"a whole number from 1 to {REPLICATES_LIMIT} (dmixed bootstrap)"
    )
    seed: Annotated[StrictInt, Field(ge=0)] | None = _field(
        None, "a whole number >= 0 (dmixed bootstrap; default: fresh entropy)"
    )
    quiet: StrictBool = _field(False, "true or false (a YAML boolean, unquoted)")

    @field_validator("format", "method", "missing", "cov_fe", "check_nobs", mode="before")
    @classmethod
    def _name_in_any_case(cls, value):
        return value.lower() if isinstance(value, str) else value

    @field_validator("cluster")
    @classmethod
    def _documented_cluster(cls, value):
        read_config(value)  # ClusterConfigError (a ValueError): an unusable cluster
        return value

    @classmethod
    def keys(cls) -> list[str]:
        """The options, in their documented order (the keys of a job file)."""
        return list(cls.model_fields)

    @classmethod
    def choices(cls, key: str) -> tuple[str, ...]:
        """The allowed names of an enumerated option (for the flags' parser)."""
        annotation = cls.model_fields[key].annotation
        for part in (annotation, *typing.get_args(annotation)):
            if typing.get_origin(part) is Literal:
                return typing.get_args(part)
        raise KeyError(f"{key} is not an enumeration")


# ---------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------


def _kind(value) -> str:
    """What a YAML value is, in the words of the job file."""
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "text", int: "an integer", float: "a number", list: "a list", dict: "a mapping"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _empty_text(key: str, value) -> str:
    """What is empty in a value of text, or a list of text, that holds empty text ("the
    path is empty", "the path is empty (item 2 of 3)"); "" where nothing is.  A flag
    given several values is a list, so ``--data ''`` is ``['']``."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) for v in items) or "" not in items:
        return ""
    what = "path" if key in _PATH_KEYS else "text"
    where = f" (item {items.index('') + 1} of {len(items)})" if len(items) > 1 else ""
    return f"the {what} is empty{where}"


def _problems(exc: ValidationError, given: dict, name_of) -> list[str]:
    """One line per refused key: the key (as ``name_of`` spells it), the value given,
    what is allowed; unknown keys with their close matches."""
    lines, seen = [], set()
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else ""
        if key in seen:
            continue  # a union gives one error per member: one line per key
        seen.add(key)
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, Job.keys(), n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            allowed_keys = ", ".join(Job.keys())
            lines.append(f"unknown key {shown_value(key)}{hint}; allowed keys: {allowed_keys}")
            continue
        value = given.get(key)
        if err["type"] == "value_error":
            reason = shorten(str(err.get("ctx", {}).get("error", err["msg"])))
            lines.append(f"{name_of(key)}: {reason}")
            continue
        allowed = Job.model_fields[key].description
        empty = _empty_text(key, value)
        if empty:
            lines.append(f"{name_of(key)}: {empty}; allowed: {allowed}")
            continue
        lines.append(
            f"{name_of(key)}: got {shown_value(value)} ({_kind(value)}); allowed: {allowed}"
        )
    return lines


def _validated(values: dict, where: str, name_of) -> Job:
    try:
        return Job.model_validate(values)
    except ValidationError as exc:
        lines = _problems(exc, values, name_of)
        raise JobError("\n".join(f"{where}{line}" for line in lines)) from None


def flag_name(key: str) -> str:
    """The command-line flag of a job key (``stats_dir`` → ``--stats-dir``)."""
    return "--vc" if key == "vc_formula" else "--" + key.replace("_", "-")


# ---------------------------------------------------------------------------
# job files and flags
# ---------------------------------------------------------------------------

_PATH_KEYS = ("data", "output", "stats_dir", "cluster")


def _resolve_paths(values: dict, base: str) -> None:
    """Relative paths in a job file are relative to the job file (not to the directory
    the job happens to be started from, which for cron is the home directory)."""

    def resolve(path):
        if not isinstance(path, str) or "://" in path or os.path.isabs(path):
            return path
        if path == "local" or not path:
            return path
        return os.path.join(base, path)

    for key in _PATH_KEYS:
        if key not in values:
            continue
        v = values[key]
        if isinstance(v, list):
            values[key] = [resolve(x) for x in v]
        elif isinstance(v, dict):  # a cluster mapping: its file settings
            values[key] = resolve_config_paths(v, base)
        else:
            values[key] = resolve(v)


def read_job_file(path: str) -> dict:
    """The options of a YAML job file, checked, relative paths resolved against the
    file's directory (safe YAML: a job file cannot construct objects).

    Returns
    -------
    dict
        The keys the file sets (no defaults added).

    Raises
    ------
    JobError
        An unreadable file, invalid YAML, not a mapping, unknown keys or values of the
        wrong type or range (one line per problem, naming the file and the key).
    """
    import yaml

    try:
        with open(path) as fh:
            data = safe_load_yaml(fh)  # safe: no objects constructed, no aliases
    except OSError as exc:
        raise JobError(f"cannot read job file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise JobError(
            f"job file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except yaml.YAMLError as exc:
        why = shorten(" ".join(str(exc).split()))
        raise JobError(f"job file {path} is not valid YAML: {why}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise JobError(f"job file {path} must be a mapping of option: value")
    data = {str(k): v for k, v in data.items()}
    _resolve_paths(data, os.path.dirname(os.path.abspath(path)))
    _validated(data, f"job file {path}: ", lambda key: f"key {key!r}")
    return data


def parse_vc(items: list[str] | None) -> dict[str, str] | None:
    """``--vc NAME=FORMULA`` (repeated) as the ``vc_formula`` mapping.

    Raises
    ------
    JobError
        An item without ``=``, a name or a formula, or a name given twice.
    """
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, formula = (part.strip() for part in item.partition("="))
        if not sep or not name or not formula:
            raise JobError(f"--vc expects NAME=FORMULA, got {item!r}")
        if name in out:
            raise JobError(
                f"--vc defines the variance component {name!r} twice "
                f"({out[name]!r} and {formula!r}): give each a name of its own"
            )
        out[name] = formula
    return out


def job_from(
    file_values: dict, flags: dict, required: tuple[str, ...], command: str | None = None
) -> Job:
    """The job of a job file's values overridden by the flags given (``None`` values and
    ``False`` switches count as not given), every value checked by :class:`Job`.

    Raises
    ------
    JobError
        A flag of the wrong type or range (naming the flag), or a required option that
        neither gives.
    """
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    _validated(given, "", flag_name)
    values = {**file_values, **given}
    job = _validated(values, "", flag_name)
    if command in ("update", "bootstrap") and "method" not in values:
        job.method = None  # default: the method of the saved fit
    if command == "update" and "missing" not in values:
        job.missing = None  # default: as the saved statistics
    missing = [k for k in required if not getattr(job, k)]
    if missing:
        raise JobError(
            "missing required option(s): "
            + ", ".join(f"{flag_name(k)} (job key {k})" for k in missing)
        )
    return job


# ---------------------------------------------------------------------------
# the command line's flags
# ---------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", metavar="FILE", help="YAML job file; flags override its keys")
    p.add_argument(
        "--data",
        metavar="PATH",
        nargs="+",
        # extend, not store: a repeated --data adds its inputs (store kept only the last)
        action="extend",
        help="input: Parquet or CSV file(s), glob(s) (** any number of folders), a "
        "directory, or fsspec URL(s) (repeatable)",
    )
    p.add_argument(
        "--format",
        type=str.lower,
        choices=Job.choices("format"),
        help="input format (default: every file's, by its suffix or content; a file of "
        "neither kind is refused)",
    )
    p.add_argument("--output", metavar="DIR", help="results directory (written atomically)")
    p.add_argument(
        "--cluster",
        metavar="SPEC",
        help="scheduler address (tcp://, tls:// needs a config with certificates), scheduler "
        "file (.json) or cluster config (.yaml, see cluster_configs/); default: a local "
        "cluster on this machine",
    )
    p.add_argument("--stats-dir", dest="stats_dir", metavar="DIR", help="saved statistics")
    p.add_argument(
        "--moved-inputs",
        dest="moved_inputs",
        action="store_true",
        default=None,
        help="take a Parquet file (or a file over 64 MiB) under another path whose size, "
        "footer (or ends), Hive keys and modification time are a file's of --stats-dir for "
        "that file, moved (mv, cp -p, rsync -a): fit reuses the statistics, update counts it "
        "as included; RISK: a file of other rows with the same footer and time stamp is "
        "taken for it too, giving a wrong fit; default: refuse such files",
    )
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
        type=str.lower,
        choices=Job.choices("cov_fe"),
        help="fixed-effect covariance: statsmodels' inverse Hessian (default) or lme4's "
        "conditional sigma^2 (X'V^-1X)^-1",
    )
    p.add_argument(
        "--check-nobs",
        dest="check_nobs",
        type=str.lower,
        choices=Job.choices("check_nobs"),
        help="refuse (raise, default) or fit anyway (ignore) a model whose random effects are "
        "not identifiable: one group, every group of one row, no more rows than random effects",
    )
    p.add_argument(
        "--maxiter",
        type=int,
        help="iterations allowed to each optimizer method in turn (BFGS, then L-BFGS, then "
        f"CG, as statsmodels), {Job.model_fields['maxiter'].description} (default 500; "
        "0, the results at the start without a fit, only through the API)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=None,
        help="no progress on stderr: only problems, one line each",
    )


def _epilog() -> str:
    return "Exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_STATUSES.items()) + "."


def _add_bootstrap(sub) -> None:
    boot = sub.add_parser(
        "bootstrap",
        help="parametric bootstrap of saved statistics (no data read)",
        description="Fit the statistics saved in --stats-dir, refit the model to "
        "--replicates responses drawn from that fit (from the statistics alone: no data "
        "is read), and write the results directory and its replicate table "
        "(bootstrap.parquet in it: one row per replicate, written atomically).",
        epilog=_epilog(),
    )
    boot.add_argument("--job", metavar="FILE", help="YAML job file; flags override its keys")
    boot.add_argument("--stats-dir", dest="stats_dir", metavar="DIR", help="saved statistics")
    boot.add_argument("--output", metavar="DIR", help="results directory (written atomically)")
    boot.add_argument("--replicates", type=int, help="number of bootstrap replicates")
    boot.add_argument("--seed", type=int, help="seed of the draws (default: fresh entropy)")
    boot.add_argument(
        "--method", type=str.lower, choices=Job.choices("method"), help="default: as the saved fit"
    )
    boot.add_argument("--quiet", action="store_true", default=None, help="no progress on stderr")
    boot.set_defaults(required=("stats_dir", "output", "replicates"))


def _add_fit(sub) -> None:
    fit = sub.add_parser(
        "fit",
        help="fit a model to data",
        description="Fit a model to Parquet/CSV data and write a results directory "
        "(estimates.json, random_effects.parquet, summary.txt). "
        "YAML job keys: " + ", ".join(Job.keys()) + ".",
        epilog=_epilog(),
    )
    _add_common(fit)
    fit.add_argument("--formula", help="fixed part, e.g. 'y ~ x1 + C(site)'")
    fit.add_argument("--groups", help="grouping column")
    fit.add_argument(
        "--re-formula",
        dest="re_formula",
        help="random part within each group (default: '1', a random intercept, without "
        "--vc; with --vc none, as statsmodels: give '1' for both)",
    )
    fit.add_argument(
        "--vc",
        action="append",
        metavar="NAME=FORMULA",
        help="variance component, e.g. 'class=0 + C(class)' (repeatable)",
    )
    fit.add_argument("--weights", help="column of prior (precision) weights")
    fit.add_argument(
        "--method", type=str.lower, choices=Job.choices("method"), help="REML (default) or ML"
    )
    fit.add_argument(
        "--missing", type=str.lower, choices=Job.choices("missing"), help="rows with missing values"
    )
    fit.set_defaults(required=("data", "formula", "groups", "output"))


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``dmixed`` command (its choices and ranges are :class:`Job`'s)."""

    parser = argparse.ArgumentParser(
        prog="dmixed",
        description="Fit linear mixed models (statsmodels' MixedLM) on Dask, as batch jobs.",
        epilog=_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"dmixed {dmixed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub)
    update = sub.add_parser(
        "update",
        help="add new data to saved statistics and refit",
        description="Add the statistics of new rows to those saved in --stats-dir "
        "(without reading the old rows), refit warm-started from the last estimates, "
        "and write the results and the updated statistics.",
        epilog=_epilog(),
    )
    _add_common(update)
    update.add_argument(
        "--method", type=str.lower, choices=Job.choices("method"), help="default: as the saved fit"
    )
    update.add_argument(
        "--missing",
        type=str.lower,
        choices=Job.choices("missing"),
        help="default: as the saved statistics; drop: rows of the new data with missing "
        "values dropped (the saved rows had none, or were dropped too)",
    )
    update.add_argument(
        "--skip-included",
        dest="skip_included",
        action="store_true",
        default=None,
        help="leave out the inputs already in the statistics (unchanged: same size and "
        "content identity, a Parquet file's by its footer, which values permuted within "
        "a column may keep; or their content under another name), naming them, and exit "
        "0 without writing when every input is (a nightly job over a growing glob); "
        "default: refuse them",
    )
    update.set_defaults(required=("data", "output", "stats_dir"))
    _add_bootstrap(sub)
    show = sub.add_parser(
        "show",
        help="print the summary of a saved results directory",
        description="Print the summary of a results directory written by `dmixed fit` or "
        "`dmixed update` (or MixedLMResults.save).",
        epilog=_epilog(),
    )
    show.add_argument("dir", metavar="DIR", help="results directory")
    show.add_argument("--quiet", action="store_true", default=None, help=argparse.SUPPRESS)
    show.set_defaults(required=())
    return parser


#: The job keys that make the model (``update`` takes them from the saved statistics).
MODEL_KEYS = ("formula", "groups", "re_formula", "vc_formula", "weights", "missing")


def _terms(formula: str, role: str, lhs: bool = False) -> frozenset:
    """A formula's terms as formulaic parses them (spacing, term order and the order of
    a term's factors do not matter: ``y~b+a`` is ``y ~ a + b``)."""
    left, right = parse_formula(formula, role, lhs=lhs)
    return frozenset(
        (side, frozenset(f.expr for f in term.factors))
        for side, part in (("lhs", left or []), ("rhs", right))
        for term in part
    )


def _model_form(key: str, values: dict):
    """The model key ``key`` of ``values`` (a job's or a saved spec's) in a form that
    compares equal for the same model: formulas as their terms, ``re_formula`` absent
    as the random intercept it means (none beside variance components)."""
    value = values.get(key)
    if key == "formula":
        return _terms(value, key, lhs=True)
    if key == "re_formula":
        default = "0" if values.get("vc_formula") else "1"
        return _terms(default if value is None else value, key)
    if key == "vc_formula":
        return {name: _terms(f, f"vc_formula {name!r}") for name, f in (value or {}).items()}
    return value


def same_model(given: dict, saved: dict) -> bool:
    """Whether the model keys of ``given`` (a job's) and ``saved`` (a saved spec's) are
    one model: formulas by their parsed terms, not their text (``y~x`` is ``y ~ x``).
    A formula that does not parse is not the saved model."""
    try:
        return all(_model_form(k, given) == _model_form(k, saved) for k in MODEL_KEYS)
    except DmixedError:
        return False


def model_differences(given: dict, saved: dict) -> list[str]:
    """The model keys (:data:`MODEL_KEYS`) in which ``given`` (a job's) and ``saved`` (a
    saved spec's) differ, compared as :func:`same_model` compares them; a formula that
    does not parse differs."""
    differ = []
    for key in MODEL_KEYS:
        try:
            same = _model_form(key, given) == _model_form(key, saved)
        except DmixedError:
            same = False
        if not same:
            differ.append(key)
    return differ


def saved_model(job: Job, spec, saved: dict):
    """The saved model ``spec``, refusing a job whose model keys differ from it (update
    adds rows to the saved model); ``missing: drop`` where the saved statistics refused
    missing values is that model with the new rows' missing values dropped (a fit of all
    rows with ``missing: drop``: the saved rows had none).  Formulas are compared by
    their parsed terms, not their text (``y~x`` is the saved ``y ~ x``).

    Raises
    ------
    JobError
        A model key of the job differs from the saved one (named, with both values),
        or ``missing: raise`` where the saved statistics dropped rows.
    FormulaError
        A formula of the job does not parse.
    """
    given = job.model_dump()
    if job.vc_formula is None:  # the saved components, for the default re_formula
        given["vc_formula"] = saved.get("vc_formula")
    keys = [k for k in MODEL_KEYS if k != "missing" and getattr(job, k) is not None]
    differ = [k for k in keys if _model_form(k, given) != _model_form(k, saved)]
    if job.missing == "raise" and spec.missing == "drop":
        differ.append("missing")
    if differ:
        shown = "; ".join(
            f"{k}: {shown_value(getattr(job, k))}, saved {shown_value(saved.get(k))}"
            for k in differ
        )
        raise JobError(
            f"the job's model differs from the saved statistics' ({shown}): update adds "
            f"rows to the model of {job.stats_dir}; fit the data again for another model"
        )
    if job.missing == "drop" and spec.missing != "drop":
        return dataclasses.replace(spec, missing="drop")
    return spec
