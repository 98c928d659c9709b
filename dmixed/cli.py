"""The ``dmixed`` command: mixed-model fits as batch jobs.

    dmixed fit    --data 'data/*.parquet' --formula 'y ~ x1 + x2' --groups g --output out/
    dmixed fit    --job job.yaml
    dmixed update --stats-dir stats/ --data 'new/*.parquet' --output out/
    dmixed bootstrap --stats-dir stats/ --replicates 200 --seed 1 --output out/
    dmixed show   out/

Exit status (:data:`EXIT_STATUSES`): 0 success; 1 a bug in dmixed (nothing else);
2 bad configuration (flags, job file, cluster config, formula against the data's columns,
an output directory dmixed did not write, saved statistics of other data or another
model); 3 data that cannot be read or used (input files: unreadable, text where numbers
are read, missing or infinite values, no rows, weights not positive or more than 2^53
apart; damaged saved statistics or results);
4 the fit did not converge (unless ``--allow-nonconverged``); 5 the cluster cannot be
reached; 130 interrupted; 143 terminated (SIGTERM, taken as Ctrl-C); 141 the output
closed early (``dmixed show out/ | head``).
Problems are one line each on stderr (``dmixed: error: ...``,
dmixed's warnings ``dmixed: warning: ...``), never a traceback; progress goes to stderr,
the path of the written results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import logging
import os
import re
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

from .cluster import read_config
from .design.messages import shown
from .errors import (
    BadValuesError,
    CheckpointError,
    CheckpointMismatch,
    ClusterError,
    DataError,
    DmixedError,
    DmixedWarning,
    PathError,
    SpecError,
    StartError,
)
from .files import check_target, commit_check
from .input_data import (
    check_input,
    column_names,
    culprit_of_message,
    files_lacking,
    files_named,
    holds_rows,
    input_files,
    input_format,
    is_read_error,
    label_columns,
    model_names,
    one_line,
    parquet_rows,
    read_data,
    read_error_message,
    refuse_inside_inputs,
    saved_inputs_gone,
    some_of,
)
from .job import (
    EXIT_BUG,
    EXIT_CLUSTER,
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_INTERRUPTED,
    EXIT_NOT_CONVERGED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_STATUSES,
    EXIT_TERMINATED,
    MODEL_KEYS,
    Job,
    JobError,
    build_parser,
    job_from,
    model_differences,
    parse_vc,
    read_job_file,
    same_model,
    saved_model,
)
from .stats.inputs import moved_inputs, retimed_copies, same_inputs
from .stats.last_fit import LAST_FIT_FILE, last_fit, remember_fit

__all__ = [
    "EXIT_STATUSES",
    "Job",
    "JobError",
    "Terminated",
    "build_parser",
    "main",
    "make_job",
    "read_job_file",
    "sigint_as_interrupt",
    "sigterm_as_interrupt",
]

logger = logging.getLogger("dmixed")


def make_job(args: argparse.Namespace, required: tuple[str, ...]) -> Job:
    """Job file values, overridden by the flags given on the command line, all checked
    by :class:`~dmixed.job.Job` before any data is read."""
    values = read_job_file(args.job) if getattr(args, "job", None) else {}
    flags = {key: getattr(args, key, None) for key in Job.keys()}
    flags["vc_formula"] = parse_vc(getattr(args, "vc", None))
    job = job_from(values, flags, required, getattr(args, "command", None))
    if getattr(args, "job", None):
        _refuse_inside_output(job.output, [args.job], "the job file")
        if _rewrites_statistics(getattr(args, "command", None), job.stats_dir):
            stats = (job.stats_dir, [args.job], "the job file", "--stats-dir", "statistics")
            _refuse_inside_output(*stats)
    return job


def _rewrites_statistics(command: str | None, stats_dir: str | None) -> bool:
    """Whether ``command`` replaces the directory ``--stats-dir``: ``update`` always; a
    fit only where no statistics are saved there (saved ones are reused, or refused as
    another job's); ``bootstrap`` and a fit reusing them only read them, so a file of
    the user's there, or the input, is never at risk."""
    if not stats_dir or command not in ("fit", "update"):
        return False
    return command == "update" or not os.path.exists(os.path.join(stats_dir, "manifest.json"))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def _model_digest(model: dict, inputs: list[dict]) -> str:
    """Digest of the model options and input files, the same for `fit` and `update`
    (``model``: a Job's attributes or a saved spec, whose keys have the same names)."""
    from .stats.checkpoint import digest

    return digest({k: model.get(k) for k in MODEL_KEYS}, sorted(inputs, key=lambda i: i["path"]))


def _job_digest(job: Job, fingerprint: list[dict]) -> str:
    return _model_digest(job.model_dump(), fingerprint)


def _cli_words(message: str) -> str:
    """A library message in the command line's words (``missing="drop"`` is the flag
    ``--missing drop``, or ``missing: drop`` in a job file; the pandas call that converts
    a column of numbers read as text is a change to the file)."""
    message = re.sub(
        r"""missing=["']drop["']""", "--missing drop (job file: missing: drop)", message
    )
    # the command line calls read_csv itself: its options are no fix here
    message = re.sub(
        r"read_csv could not convert the value (.+?) to the type its dtype= gives the "
        r"column \((.+?)\): correct that row, pass na_values=.*? or read the column as "
        r"text \(dtype=str\) and convert it \(e\.g\. pd\.to_numeric\(\.\.\., "
        r"errors='coerce'\)\)",
        r"the value \1 is not a number (\2): correct that row (an empty field is a missing "
        r"value)",
        message,
    )
    message = re.sub(
        r", or pass na_values=\[.*?\] to read_csv if it marks a missing value",
        " (an empty field is a missing value)",
        message,
    )
    return re.sub(
        r"convert it first, e\.g\. pd\.to_numeric\(data\[('[^']*')\][^)]*\)",
        r"correct the input: column \1 must hold a number (or an empty field) in every row",
        message,
    )


@contextlib.contextmanager
def _job_errors(job: Job, reads_data: bool) -> Iterator[None]:
    """Exit statuses of what goes wrong while a job builds its statistics and fits.

    Unreadable data (while ``reads_data``) → ``EXIT_DATA``, and so are bad values
    (:class:`~dmixed.errors.BadValuesError`: missing, infinite, text where numbers are
    read, no rows) and a column problem that comes from some files of a multi-file
    input (a file lacking a column, or holding text where the others hold numbers),
    naming them unless the message names another file.  dmixed's refusals
    (:class:`~dmixed.DmixedError`) and the ``KeyError``/``TypeError`` that pandas and
    formulaic raise for a column missing from, or of the wrong type in, the data →
    ``EXIT_CONFIG``, in the command line's words.  Anything else propagates to :func:`exit_status`.
    """
    try:
        yield
    except JobError:
        raise
    except Exception as exc:
        if reads_data and is_read_error(exc):
            message = f"cannot read data {job.data!r}: {read_error_message(exc)}"
            culprit = culprit_of_message(job, message)
            if culprit is not None:  # CSV input: the file, line and value lead
                raise JobError(f"{culprit[0]}: {message}", EXIT_DATA) from exc
            raise JobError(message + files_named(job, message), EXIT_DATA) from exc
        if isinstance(exc, (CheckpointError, ClusterError)):
            raise
        if getattr(exc, "of_statistics", False) and job.stats_dir:
            # a refusal of the saved sums themselves: their directory is the culprit
            message = _cli_words(one_line(exc))
            raise JobError(f"the statistics in {job.stats_dir}: {message}", EXIT_DATA) from exc
        if isinstance(exc, (ValueError, KeyError, TypeError)):
            message = _cli_words(one_line(exc)) if str(exc) else repr(exc)
            about_data = reads_data and isinstance(exc, (DataError, KeyError))
            # an error that names its line (a partition's CSV file) needs no culprit
            culprit = (
                culprit_of_message(job, message)
                if about_data and getattr(exc, "line", None) is None
                else None
            )
            if culprit is not None:  # CSV input: the file, line and value lead
                raise JobError(f"{culprit[0]}: {message}", culprit[1]) from exc
            if about_data and getattr(exc, "absent", None) and getattr(exc, "file", None):
                raise JobError(message, EXIT_DATA) from exc  # it names the file and columns
            # a column of a formula, the groups or the weights absent from the first
            # file, whose columns Dask takes for the whole input, is that file's
            # problem where other files have it
            in_files = about_data or (reads_data and isinstance(exc, SpecError))
            # a partition's error names its file (in full): the other files' lines too
            located = getattr(exc, "file", None) if about_data else None
            named = files_named(job, message, full_paths=bool(located)) if in_files else ""
            absent = getattr(exc, "absent", None) if about_data else None
            if absent and not named and not getattr(exc, "file", None):
                named = files_lacking(job, absent)  # update: the saved model's columns
            # a guess naming another file than the partition's contradicts it
            if located and os.path.basename(located) not in named:
                named = ""
            elif located:  # named already, with its type: its line again says it twice
                named = _without_file(named, located)
            bad = named or located or isinstance(exc, BadValuesError)
            if in_files and not named and not about_data and getattr(exc, "absent", None):
                # a formula's column that no input file has (one file, or all): the
                # formula's fault, a configuration error, but the files are named as
                # where one file of several lacks it
                named = files_lacking(job, exc.absent)
            raise JobError(message + named, EXIT_DATA if bad else EXIT_CONFIG) from exc
        raise


def _without_file(named: str, file: str) -> str:
    """``named`` (``"; in FILE: ..."`` per file, :func:`files_named`) without the lines
    about ``file``."""
    parts = re.split(r"(?=; in )", named)

    def about(part: str) -> bool:
        path = part[len("; in ") :].split(": ", 1)[0]
        return part.startswith("; in ") and os.path.abspath(path) == os.path.abspath(file)

    return "".join(p for p in parts if not about(p))


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


def _reusable_statistics(
    job: Job, job_digest: str, fingerprint: list[dict], job_file: str | None = None
) -> dict | None:
    """The manifest of statistics saved by this very job earlier, if any (else None);
    statistics of other data or another model in ``--stats-dir`` are refused.  The job
    is the same when the digest matches, or when its inputs are the saved ones and its
    model the saved one with formulas compared by their terms (the digest hashes the
    formulas' text: ``y~x`` rerun against statistics saved by ``y ~ x``).  Where the
    saved files are given with new ones, the refusal names the update of this job
    (:func:`_update_command`; ``job_file``: the ``--job`` given, if any)."""
    from .stats import checkpoint

    if not (job.stats_dir and os.path.exists(os.path.join(job.stats_dir, "manifest.json"))):
        return None
    manifest = checkpoint.read_manifest(job.stats_dir)
    if manifest.get("digest") != job_digest and not _same_job(job, manifest, fingerprint):
        added = _files_added(job, manifest, fingerprint)
        remedy = (
            f"`dmixed update --stats-dir {job.stats_dir} --data NEW_FILES ...` adds the rows "
            "of new files to them (the saved files are unchanged and the model the same); "
            f"with this job's data, `{_update_command(job, job_file)}` leaves out the "
            "files already included"
            if added
            else "remove that directory or choose another --stats-dir"
        )
        raise JobError(
            f"the statistics saved in {job.stats_dir} were built from other data or "
            f"another model (their digest does not match this job: "
            f"{_digest_differences(job, manifest, fingerprint)}); {remedy}"
        )
    return manifest


def _update_command(job: Job, job_file: str | None) -> str:
    """The ``dmixed update --skip-included`` of this fit's job: its job file where one
    was given (``--job``), else its statistics, data and output given as flags."""
    if job_file:
        moved = " --moved-inputs" if job.moved_inputs else ""
        return f"dmixed update --job {shlex.quote(job_file)} --skip-included{moved}"
    data = [job.data] if isinstance(job.data, str) else list(job.data or [])
    words = ["dmixed update", "--stats-dir", shlex.quote(str(job.stats_dir)), "--data"]
    words += [shlex.quote(d) for d in data]
    if job.output:
        words += ["--output", shlex.quote(job.output)]
    if isinstance(job.cluster, str):
        words += ["--cluster", shlex.quote(job.cluster)]
    if job.moved_inputs:
        words.append("--moved-inputs")
    return " ".join([*words, "--skip-included"])


def _files_added(job: Job, manifest: dict, fingerprint: list[dict]) -> list[str]:
    """The input files of ``fingerprint`` beyond the saved ones, where every saved file
    is given unchanged and the model is the saved one (what ``dmixed update`` adds to
    saved statistics); else an empty list."""
    saved = manifest.get("inputs")
    if not isinstance(saved, list) or "spec" not in manifest:
        return []
    now = {i.get("path"): i for i in fingerprint}
    if not all(isinstance(i, dict) and now.get(i.get("path")) == i for i in saved):
        return []
    if not same_model(job.model_dump(), manifest["spec"]):
        return []
    before = {i["path"] for i in saved}
    return sorted(p for p in now if p not in before)


#: what the command line reads data from, as its refusal of ``center()``,
#: ``standardize()`` and ``scale()`` names it (read in partitions: learned per piece)
_FILES_READ = "data read from files"

#: what the digest of saved statistics covers, named where the manifest does not
#: record the job it was made from
_DIGEST_COVERS = (
    "it covers the model (" + ", ".join(MODEL_KEYS) + ") and each input file's path, "
    "size, modification time and content"
)


def _digest_differences(job: Job, manifest: dict, fingerprint: list[dict]) -> str:
    """What differs between ``job`` and the job that saved ``manifest``'s statistics:
    the model keys (with both values) and the input files (given only, saved only,
    changed: size, modification time, content), as far as the manifest records them;
    else what the digest covers."""
    parts = []
    saved = manifest.get("spec")
    if isinstance(saved, dict):
        given = job.model_dump()
        for key in model_differences(given, saved):
            if key not in saved:  # statistics saved before the key was recorded
                parts.append(f"{key} {_shown_value(given.get(key))}, saved: not recorded")
            elif given.get(key) != saved[key]:
                # keys of equal values are left out: an absent re_formula means the
                # random intercept or, beside variance components, none, so it reads
                # as changed where only vc_formula is
                parts.append(
                    f"{key} {_shown_value(given.get(key))}, saved {_shown_value(saved[key])}"
                )
    inputs = manifest.get("inputs")
    if isinstance(inputs, list) and all(isinstance(i, dict) and "path" in i for i in inputs):
        parts.extend(_input_differences(fingerprint, inputs, job.moved_inputs))
    if not parts:
        return _DIGEST_COVERS
    return "; ".join(parts)


def _shown_value(value) -> str:
    """A model key's value for a message, cut in the middle when long (:func:`shown`);
    a key absent (its default: ``re_formula`` a random intercept) is "not given"."""
    if value is None:
        return "not given"
    return shown(value) if isinstance(value, str) else shown(repr(value))[1:-1]


def _input_differences(given: list[dict], saved: list[dict], moved: bool = False) -> list[str]:
    """The input files that differ between ``given`` and ``saved`` fingerprints; a saved
    file moved (:func:`~dmixed.stats.inputs.moved_inputs`) only without ``moved``
    (``--moved-inputs``), a file listed once."""
    now = {i["path"]: i for i in given}
    before = {i["path"]: i for i in saved}

    def listed(paths: list[str]) -> str:
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        return ", ".join(paths[:3]) + more

    def paired(pairs: list[tuple[str, str]]) -> str:
        return listed([f"{p} (saved as {q})" for p, q in pairs])

    out = []
    retimed = retimed_copies(given, saved)
    if retimed:
        out.append(
            "input files whose Parquet footer (or ends) and size are a saved file's under "
            "another path but whose modification time is not, so their rows are not known "
            "to be the saved ones (copy a data folder with its time stamps kept: cp -p, "
            f"rsync -a): {paired(retimed)}"
        )
    moves = moved_inputs(given, saved)
    if moves and not moved:
        out.append(
            "input files whose size, Parquet footer (or ends), Hive keys and modification "
            "time are a saved file's under another path, which do not prove their rows "
            "(a file of other rows may share them): "
            f"{paired(moves)}; if the data folder was moved (mv, cp -p, rsync -a), "
            "--moved-inputs (moved_inputs: true) takes them for the saved files"
        )
    # each file once: under the pair that names it, not again as added or not given
    accounted = retimed + moves
    added = sorted(set(now) - set(before) - {p for p, _ in accounted})
    if added:
        out.append(f"input files not among the saved ones: {listed(added)}")
    gone = sorted(set(before) - set(now) - {q for _, q in accounted})
    if gone:
        out.append(f"saved input files not given: {listed(gone)}")
    labels = {"size": "size", "mtime_ns": "modification time", "content": "content"}
    changed: dict[str, list[str]] = {}
    unrecorded: dict[str, list[str]] = {}
    for path in sorted(set(now) & set(before)):
        a, b = now[path], before[path]
        # a fingerprint saved before a key was recorded, or without it (the content of
        # a URL whose store's package is missing), has nothing to compare: that key
        # is not recorded, not changed
        keys = [k for k in labels if a.get(k) != b.get(k)]
        absent = [labels[k] for k in keys if a.get(k) is None or b.get(k) is None]
        what = [labels[k] for k in keys if labels[k] not in absent]
        if not what and not absent and a != b:
            what = ["fingerprint"]
        if what:
            changed.setdefault(", ".join(what), []).append(path)
        if absent:
            unrecorded.setdefault(", ".join(absent), []).append(path)
    for kinds, paths in changed.items():
        out.append(f"input files changed ({kinds}): {listed(paths)}")
    for kinds, paths in unrecorded.items():
        out.append(f"input files whose {kinds} was not recorded, so not compared: {listed(paths)}")
    return out


def _same_job(job: Job, manifest: dict, fingerprint: list[dict]) -> bool:
    def by_path(inputs):
        return sorted(inputs, key=lambda i: i["path"])

    saved_inputs = manifest.get("inputs") or []
    # the same files under other paths (a data folder moved or copied) are the same
    # data where their content proves it, or where --moved-inputs says so (:func:`same_inputs`)
    if by_path(saved_inputs) != by_path(fingerprint) and not same_inputs(
        fingerprint, saved_inputs, job.moved_inputs
    ):
        return False
    return "spec" in manifest and same_model(job.model_dump(), manifest["spec"])


def _check_shift(arrays, spec, stats_dir, manifest) -> None:
    """Saved statistics ``arrays`` (their ``manifest``) checked against the response's
    shift the saved ``spec`` gives (:func:`~dmixed.stats.checkpoint.check_constant_weights`),
    for a fit reusing them and for an update alike."""
    from .design.centres import constant_weights, shift_needs_this_version
    from .stats import checkpoint

    checkpoint.check_constant_weights(
        arrays,
        constant_weights(spec),
        stats_dir,
        manifest=manifest,
        newer=shift_needs_this_version(spec),
    )


def _model_from_saved(job: Job):
    """The model over the statistics saved in ``--stats-dir`` (no data pass)."""
    from .design import ModelSpec
    from .engines.local import statistics_from_arrays
    from .model import MixedLM
    from .stats import checkpoint

    logger.info("reusing saved statistics from %s (no data pass)", job.stats_dir)
    arrays, manifest = checkpoint.load_statistics(job.stats_dir)
    spec = ModelSpec.from_dict(
        manifest["spec"], source=os.path.join(str(job.stats_dir), "manifest.json")
    )
    _check_shift(arrays, spec, job.stats_dir, manifest)
    return MixedLM.from_statistics(statistics_from_arrays(arrays), spec)


def _model_from_data(job: Job, ddf, client, job_digest: str, fingerprint: list[dict]):
    """The model of the data, after its data pass, and the write of its statistics to
    ``--stats-dir`` (a callable; None without ``--stats-dir``), which the caller runs
    only once the whole job has succeeded: a fit refused (``check_nobs``), failed or
    interrupted leaves no statistics that a later ``update`` would build on.  Groups
    that saved statistics cannot hold are refused here, before the fit."""
    from .design import build_spec
    from .design.centres import shift_needs_this_version
    from .engines.dask import level_scan_chains
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
        scan_chains=level_scan_chains,
    )
    model = MixedLM.from_spec(spec, ddf)
    stats = model.statistics(client=client, progress=not job.quiet)
    if not job.stats_dir:
        return model, None
    stats_dir = job.stats_dir
    arrays = _saved_arrays(stats, model.exog_re_names, "fit")
    manifest = {
        "digest": job_digest,
        "spec": spec.to_dict(),
        "inputs": fingerprint,
        "job": {"method": job.method},
    }

    def save() -> None:
        checkpoint.save_statistics(
            arrays,
            stats_dir,
            manifest,
            newer_names=spec.names_need_this_version(),
            newer_centres=spec.centres_need_this_version(),
            newer_shift=shift_needs_this_version(spec),
        )
        logger.info("saved statistics to %s", stats_dir)

    return model, save


def _saved_arrays(stats, names: list[str], command: str):
    """The statistics ``stats`` as saved arrays; groups whose random design is nearly
    constant or collinear within them, whose sums about their means saved statistics do
    not hold, refused naming the groups and the columns, with what to do in the
    command's words."""
    from .stats.group_arrays import CentredGroupsError, GroupArrays

    try:
        return GroupArrays.from_statistics(stats, ragged=True, names=names)
    except CentredGroupsError as exc:
        what = "fit" if command == "fit" else "fit all the data with `dmixed fit`"
        remedy = f"{what} without --stats-dir (a fit of the rows keeps those sums), or {exc.remedy}"
        raise JobError(f"{one_line(exc.problem)}; {remedy}") from exc


def _refuse_foreign(
    path: str | None, marker: str, kind: str, flag: str, replaced: bool = True
) -> None:
    """Refuse, before any work, a target directory that dmixed would not replace or
    could not create (:func:`dmixed.files.check_target`); one that is ``replaced`` also
    when it holds a file dmixed did not write there."""
    if not path:
        return
    from .io.results_dir import written_names
    from .stats.checkpoint import written_names as statistics_names

    owned = written_names if kind == "results" else statistics_names
    try:
        check_target(path, marker, kind, flag, owned=owned if replaced else None)
    except PathError as exc:
        raise JobError(str(exc)) from exc


def _check_targets(job: Job, command: str) -> None:
    _refuse_nested(job.output, job.stats_dir)
    refuse_inside_inputs(job)
    items = [job.data] if isinstance(job.data, str) else list(job.data or [])
    local = [i for i in items if "://" not in i]
    files = [f for i in local for f in glob.glob(i, recursive=True) or [i]]
    _refuse_inside_output(job.output, files, "the input")
    rewrites = _rewrites_statistics(command, job.stats_dir)
    if rewrites:
        _refuse_inside_output(job.stats_dir, files, "the input", "--stats-dir", "statistics")
    _refuse_foreign(job.output, "estimates.json", "results", "--output")
    _refuse_foreign(job.stats_dir, "manifest.json", "statistics", "--stats-dir", rewrites)


def _refuse_inside_output(
    output: str | None,
    paths: list[str],
    what: str,
    flag: str = "--output",
    written: str = "results",
) -> None:
    """Refuse, before any work, a file the job reads (``what``: "the input", "the job
    file") that lies inside ``--output`` (or the directory ``flag`` names, where
    dmixed writes its ``written``): writing it replaces that directory, which would
    delete the file (even under a name dmixed writes there itself).

    Raises
    ------
    JobError
        Naming the file and the directory (exit status 2).
    """
    if not output or "://" in output:
        return
    out = os.path.realpath(output)
    for path in paths:
        if os.path.commonpath([out, os.path.realpath(path)]) == out:
            raise JobError(
                f"{what} {path} lies inside {flag} {output}: writing the {written} "
                "replaces that directory, which would delete it; move it out, or choose "
                f"another {flag}",
                EXIT_CONFIG,
            )


def _refuse_nested(output: str | None, stats_dir: str | None) -> None:
    """Refuse, before any work, an ``--output`` and ``--stats-dir`` that are one
    directory or one inside the other: replacing the results directory would delete the
    statistics (or the statistics' lock would land in the results)."""
    if not (output and stats_dir):
        return
    out, stats = (os.path.realpath(p) for p in (output, stats_dir))
    if out == stats:
        raise JobError(f"--output and --stats-dir are the same directory ({output}): give two")
    if os.path.commonpath([out, stats]) == out:
        raise JobError(
            f"--stats-dir {stats_dir} is inside --output {output}: replacing the results "
            "would delete the statistics; give two directories side by side"
        )
    if os.path.commonpath([out, stats]) == stats:
        raise JobError(
            f"--output {output} is inside --stats-dir {stats_dir}: give two directories "
            "side by side"
        )


def _cluster_of(job: Job):
    """The job's cluster; a local cluster started for a ``--quiet`` job keeps its
    workers' logs (a worker's traceback of a data error) off stderr."""
    config = read_config(job.cluster)
    if job.quiet and config["kind"] == "local":
        config["cluster"] = {"silence_logs": logging.CRITICAL, **(config.get("cluster") or {})}
    return config


def _under_stats_lock(name: str):
    """Run the command ``name`` (``command(job, **options)``) holding the lock of
    ``job.stats_dir`` (when given), from the first read of the saved statistics to the
    last write: concurrent jobs on one statistics directory run one after another
    (README, "Batch jobs"); each local Parquet footer read once
    (:func:`~dmixed.stats.inputs.footers_read_once`)."""

    def wrap(command):
        @functools.wraps(command)
        def locked(job: Job, **options) -> int:
            # before any work, and before the lock is made beside the statistics: a
            # directory that cannot be written would fail the lock (or the results) late
            _check_targets(job, name)
            from .stats.inputs import footers_read_once

            # each input's Parquet footer read once a command (fingerprint, row counts)
            if not job.stats_dir:
                with footers_read_once():
                    return command(job, **options)
            from .stats.checkpoint import statistics_lock

            with statistics_lock(job.stats_dir), footers_read_once():
                return command(job, **options)

        return locked

    return wrap


@contextlib.contextmanager
def _on_cluster(job: Job) -> Iterator:
    """The job's client (:func:`~dmixed.cluster.connect`), inside which the design's
    reads on the cluster (the first values and rows and the level scans of the model's
    build in ``fit``, of the grown model in ``update``) are bounded as the data pass's
    waits (:func:`~dmixed.engines.dask.progress.design_waits`): workers paused at their
    memory threshold end the job with its cluster error, not a wait for ever."""
    from .cluster import connect
    from .engines.dask.progress import design_waits

    with connect(_cluster_of(job), on_interrupt=quiet_after_interrupt) as client, design_waits():
        yield client


@_under_stats_lock("fit")
def run_fit(job: Job, job_file: str | None = None) -> int:
    """``dmixed fit``: data pass (or saved statistics of the same job), fit, write
    (``job_file``: the ``--job`` given, named in a refusal's remedy)."""
    from .design.build import parse_formulas, refuse_frozen_in_text
    from .stats import checkpoint

    files = input_files(job)
    fingerprint = checkpoint.input_fingerprint(files, job.storage_options)
    _refuse_repeated(job, fingerprint, [])
    job_digest = _job_digest(job, fingerprint)
    reuse = _reusable_statistics(job, job_digest, fingerprint, job_file) is not None
    if not reuse:
        fmt = check_input(job, files)  # before a cluster is started
        columns = column_names(job, files, fmt)
        if columns is not None:  # the formulas checked node by node before a cluster too
            with _job_errors(job, reads_data=True):
                # a formula of many terms is checked against the files' rows first
                rows = functools.partial(parquet_rows, files, fmt)
                parsed = parse_formulas(
                    job.formula, job.re_formula, job.vc_formula, columns, rows=rows
                )
                # the data is read in partitions: refused before a cluster is started
                parsed.refuse_frozen(job.formula, job.re_formula, _FILES_READ)
        elif fmt == "parquet":  # remote or Hive-partitioned: columns not known, calls are
            with _job_errors(job, reads_data=True):
                refuse_frozen_in_text(job.formula, job.re_formula, job.vc_formula, _FILES_READ)
    # a reuse needs no cluster either: the optimization runs on the saved statistics
    cluster = contextlib.nullcontext() if reuse else _on_cluster(job)
    save_statistics = None
    with cluster as client, _job_errors(job, reads_data=not reuse):
        if reuse:  # no data read
            model = _model_from_saved(job)
        else:  # read on the cluster (CSV label columns are read once before)
            ddf = read_data(job, files)[0]
            model, save_statistics = _model_from_data(job, ddf, client, job_digest, fingerprint)
        res = model.fit(
            reml=job.method == "reml",
            cov_fe=job.cov_fe,
            check_nobs=job.check_nobs,
            maxiter=job.maxiter,
            progress=not job.quiet,
            client=client,
        )
    # the statistics written (or their last fit recorded) only once the fit has
    # succeeded and its results are written, as ``update`` does: a refused or failed
    # fit leaves --stats-dir as it was
    _save_outputs(job, res)
    if save_statistics is not None:
        save_statistics()
    if job.stats_dir:
        remember_fit(job.stats_dir, res.packed_params.tolist(), res.method, res.llf)
    return EXIT_OK


def _refuse_repeated(
    job: Job, inputs: list[dict], included: list[dict], stats_dir=None, model=None
) -> None:
    """Refuse inputs given twice ("given twice"), or already in the statistics
    ``included`` ("already included in the statistics of ``stats_dir``"), by path or by
    content (not files of no rows that are copies of each other: they count nothing
    twice).
    ``model``: the model's keys (the saved spec's for ``update``; the job's by default),
    whose columns tell which Hive keys tell files apart."""
    from .stats.inputs import MOVED_WHY, repeated_inputs

    def holds(path: str) -> bool:  # asked of copies only
        return holds_rows(path, input_format(job, [path]), job.storage_options)

    names = model_names(model if model is not None else job.model_dump())
    # inputs repeated among themselves first: a file given twice to an update (or a
    # file and its copy) is not in the statistics, whatever they hold
    checks = [("given twice", "reading them twice", [])]
    if stats_dir:
        where = f"already included in the statistics of {stats_dir}"
        checks.append((where, "adding them again", included))
    for where, words, earlier in checks:
        again = repeated_inputs(inputs, earlier, holds, names)
        if again:
            more = f" and {len(again) - 3} more" if len(again) > 3 else ""
            moves = ""
            if any(MOVED_WHY in why for why in again):
                moves = (
                    "; a file taken for a saved one moved (its path gone, or another file "
                    "there) may hold other rows: --skip-included --moved-inputs leaves "
                    "it out as the saved rows; a file of other rows needs a new "
                    "modification time (touch) to be added"
                )
            raise JobError(
                f"{len(again)} input(s) {where}: "
                f"{', '.join(again[:3])}{more}; {words} would count their rows twice{moves}"
            )


@_under_stats_lock("update")
def run_update(job: Job) -> int:
    """``dmixed update``: statistics of the new files added to the saved ones, refit."""
    from .design import ModelSpec
    from .design.centres import shift_needs_this_version
    from .design.new_levels import grown_spec
    from .engines.local import statistics_from_arrays
    from .model import MixedLM
    from .stats import checkpoint

    manifest = checkpoint.read_manifest(job.stats_dir)
    saved_spec = ModelSpec.from_dict(
        manifest["spec"], source=os.path.join(str(job.stats_dir), "manifest.json")
    )
    spec = saved_model(job, saved_spec, manifest["spec"])
    files = input_files(job)
    new_inputs = checkpoint.input_fingerprint(files, job.storage_options)
    _warn_saved_inputs_gone(job, new_inputs, manifest)
    if job.skip_included:
        files, new_inputs = _skip_included(job, files, new_inputs, manifest)
        if not files:
            return EXIT_OK
    _refuse_repeated(job, new_inputs, manifest.get("inputs", []), job.stats_dir, manifest["spec"])
    fmt = check_input(job, files, rows_needed=False)  # before a cluster is started
    if not any(holds_rows(f, fmt, job.storage_options) for f in files):
        _update_without_rows(job, files, saved_spec, manifest["spec"])
        return EXIT_OK
    start = last_fit(job.stats_dir)
    method = job.method or manifest.get("job", {}).get("method", "reml")
    old, loaded = checkpoint.load_statistics(job.stats_dir)
    _check_shift(old, saved_spec, job.stats_dir, loaded)
    with (
        _new_levels_refused(job),
        _on_cluster(job) as client,
        _job_errors(job, reads_data=True),
    ):
        saved = _saved_label_types(manifest["spec"], old.labels)
        ddf = read_data(job, files, model=manifest["spec"], saved_labels=saved)[0]
        spec, column_maps = grown_spec(spec, ddf)  # new levels of nested components
        new_model = MixedLM.from_spec(spec, ddf)
        new = _saved_arrays(
            new_model.statistics(
                client=client,
                progress=not job.quiet,
                standardization=old.columns,
                partial=True,
            ),
            new_model.exog_re_names,
            "update",
        )
    if column_maps is not None:
        old = old.renumbered(column_maps)
    try:
        merged = checkpoint.merge(old, new, spec.group_name, spec.weights_name)
    except DataError as exc:  # new group keys of another type than the saved ones
        raise JobError(f"{one_line(exc)} (data {job.data!r})", EXIT_DATA) from exc
    model = MixedLM.from_statistics(statistics_from_arrays(merged), spec)
    if start is not None and len(start) != merged.layout.n_params:
        start = None
    res = _fit_from_last(job, model, method, start)
    _save_outputs(job, res)
    inputs = sorted(manifest.get("inputs", []) + new_inputs, key=lambda i: i["path"])
    checkpoint.save_statistics(
        merged,
        job.stats_dir,
        {
            "digest": _model_digest(spec.to_dict(), inputs),
            "spec": spec.to_dict(),
            "inputs": inputs,
            "job": {"method": method},
        },
        # (the saved model's names: grown levels of components keep their order)
        newer_names=saved_spec.names_need_this_version(),
        newer_centres=saved_spec.centres_need_this_version(),
        newer_shift=shift_needs_this_version(saved_spec),
    )
    remember_fit(job.stats_dir, res.packed_params.tolist(), res.method, res.llf)
    return EXIT_OK


@contextlib.contextmanager
def _new_levels_refused(job: Job) -> Iterator[None]:
    """``update``'s refusal of a new level of a factor of the model (a fixed or random
    effects' column the saved statistics lack: a documented limit, exit 3) says what
    to do: fit all the data again, naming the column and the levels."""
    try:
        yield
    except JobError as exc:
        err: BaseException | None = exc
        seen: set[int] = set()
        while err is not None and id(err) not in seen:  # the refusal, however wrapped
            seen.add(id(err))
            found = getattr(err, "new_levels", None)
            if isinstance(found, tuple) and len(found) == 2:
                column, _ = found  # the levels: named by the refusal itself
                raise JobError(
                    f"{exc}; `dmixed update` cannot add new levels of column {column!r}: "
                    "the model's effects would gain a column that "
                    f"the statistics in {job.stats_dir} do not have; refit all the data with "
                    f"`dmixed fit` (its --stats-dir a new directory, or {job.stats_dir} "
                    "removed first)",
                    exc.status,
                ) from exc
            err = err.__cause__ or err.__context__
        raise


def _warn_saved_inputs_gone(job: Job, inputs: list[dict], manifest: dict) -> None:
    """``update``: a line naming the saved inputs that ``--data`` would read but which
    are gone (:func:`~dmixed.input_data.saved_inputs_gone`: deleted, or moved out of
    it). Statistics cannot take rows out, so their rows stay counted, as a fit of the
    files there would not count them (that fit refuses the saved statistics, "saved
    input files not given"). A warning, not a refusal: the update of the new files is
    what was asked and is exact for the rows the statistics hold, and a retention job
    that deletes files already added would otherwise stop every later night; a job
    that must not keep such rows checks for this line."""
    gone = saved_inputs_gone(
        job.data or [], inputs, manifest.get("inputs", []), model_names(manifest["spec"])
    )
    if gone:
        logger.warning(
            "warning: %d input(s) whose rows the statistics of %s count are gone from "
            "--data %s: %s; their rows stay counted in the statistics and in the "
            "results of every update (an update cannot take rows out): to drop them, "
            "fit the remaining files with `dmixed fit` and a new --stats-dir (or %s "
            "removed first)",
            len(gone),
            job.stats_dir,
            " ".join([job.data] if isinstance(job.data, str) else job.data or []),
            some_of(gone),
            job.stats_dir,
        )


def _skip_included(
    job: Job, files: list[str], inputs: list[dict], manifest: dict
) -> tuple[list[str], list[dict]]:
    """``update --skip-included``: the input files and their fingerprints without those
    whose rows the statistics already count
    (:func:`~dmixed.stats.inputs.already_included`), each skipped one named in a line
    on stderr; where every input is, a line says that nothing was done (the files and
    the fingerprints then are empty, and the command writes nothing and exits 0: the
    night's update already ran, or the glob has not grown)."""
    from .stats.inputs import already_included

    names = model_names(manifest["spec"])
    skipped = already_included(inputs, manifest.get("inputs", []), names, job.moved_inputs)
    if not skipped:
        return files, inputs
    # one line, however many nights the glob holds (a file's copy says whose content)
    named = [f"{path} ({why})" if why else path for path, why in skipped.items()]
    logger.info(
        "skipping %d input(s) already included in the statistics of %s: %s",
        len(named),
        job.stats_dir,
        some_of(named),
    )
    # a fingerprint's path is the file's absolute path (a URL as given)
    kept = [f for f in files if (f if "://" in f else os.path.abspath(f)) not in skipped]
    if not kept:
        logger.warning(
            "all %d input(s) are already included in the statistics of %s: nothing to "
            "add; the statistics and %s are unchanged",
            len(inputs),
            job.stats_dir,
            job.output,
        )
    return kept, [rec for rec in inputs if rec["path"] not in skipped]


def _fit_from_last(job: Job, model, method: str, start: list | None):
    """``update``'s fit, from the last fit's estimates (``last_fit.json``) where they
    are recorded.  A recorded start at which the log-likelihood cannot be evaluated (a
    file edited, or one left by other statistics) is only a hint that failed: the
    statistics are intact and the optimum does not depend on the start, so the fit
    starts from moment estimates, as with no record, and a warning names the file,
    rather than a scheduled job stopping over a start it never gave."""

    def fit(start_params):
        return model.fit(
            reml=method == "reml",
            start_params=start_params,
            cov_fe=job.cov_fe,
            check_nobs=job.check_nobs,
            maxiter=job.maxiter,
            progress=not job.quiet,
        )

    if start is None:
        return fit(None)
    try:
        return fit(start)
    except StartError:
        # (the error's advice, "check start_params", names an argument the user never gave)
        logger.warning(
            "warning: %s: the log-likelihood cannot be evaluated at the last fit's "
            "estimates recorded there, %s, so this fit starts from moment estimates "
            "instead (the file is then rewritten with this fit's estimates)",
            os.path.join(str(job.stats_dir), LAST_FIT_FILE),
            [float(f"{v:.6g}") for v in start],
        )
        return fit(None)


def _update_without_rows(job: Job, files: list[str], saved_spec, spec: dict) -> None:
    """``dmixed update`` of new files without rows (a scheduled update on a day without
    new data): nothing to add, so nothing is fitted and nothing is written, neither the
    statistics (nor their record of inputs: the files of no rows add nothing) nor
    ``--output``; a line says so, and the command succeeds (exit 0).  A job that needs
    an output every run checks the exit status or that line.

    Raises
    ------
    JobError
        A new file that lacks a column the saved model reads, or declares one the model
        reads as a number with another type (a Parquet schema's ``string``), naming the
        file and the column.
    """
    numbers = [c for c in saved_spec.columns_used if c not in label_columns(spec)]
    lacking = files_lacking(job, list(saved_spec.columns_used), numbers=numbers)
    if lacking:
        raise JobError(
            f"the new files lack columns that the saved model reads, or hold them with "
            f"another type{lacking}",
            EXIT_DATA,
        )
    logger.warning(
        "no new rows in %s; the saved statistics are unchanged and nothing was written to %s",
        some_of(files),
        job.output,
    )


def _saved_label_types(spec: dict, group_labels) -> dict[str, str]:
    """``{column: "int", "float" or "text"}`` of the label columns of saved statistics:
    the group keys' and the levels of the columns inside ``C()``.  CSV input of
    ``update`` reads its labels by the one rule of :func:`~dmixed.input_data.label_type`
    but as text where text is saved, and refuses text where numbers are saved; new
    numbers meet saved ones by value (:func:`~dmixed.stats.checkpoint_merge.merge`)."""
    import numpy as np

    def kind(values) -> str:
        def number(v, types) -> bool:
            return isinstance(v, types) and not isinstance(v, (bool, np.bool_))

        if len(values) and all(number(v, (int, np.integer)) for v in values):
            return "int"
        if len(values) and all(number(v, (int, float, np.integer, np.floating)) for v in values):
            return "float"
        return "text"

    keys = np.asarray(group_labels).dtype.kind
    out = {spec["groups"]: {"i": "int", "u": "int", "f": "float"}.get(keys, "text")}
    levels = spec.get("levels") or {}
    out.update({c: kind(levels[c]) for c in label_columns(spec) if c in levels})
    return out


@_under_stats_lock("bootstrap")
def run_bootstrap(job: Job) -> int:
    """``dmixed bootstrap``: fit the saved statistics, bootstrap them (no data read),
    write the results and, in them, the replicate table (``bootstrap.parquet``)."""
    from .results.bootstrap import BOOTSTRAP_FILE
    from .stats import checkpoint

    manifest = checkpoint.read_manifest(job.stats_dir)
    method = job.method or manifest.get("job", {}).get("method", "reml")
    with _job_errors(job, reads_data=False):
        model = _model_from_saved(job)
        res = model.fit(
            reml=method == "reml",
            cov_fe=job.cov_fe,
            check_nobs=job.check_nobs,
            maxiter=job.maxiter,
            progress=not job.quiet,
        )
    _save_outputs(job, res)
    boot = res.bootstrap(job.replicates, seed=job.seed, progress=not job.quiet)
    boot.save(os.path.join(job.output, BOOTSTRAP_FILE))
    converged = int(boot.replicates["converged"].sum())
    logger.info(
        "bootstrap: %d replicates (%d converged) in %.1fs", len(boot), converged, boot.seconds
    )
    return EXIT_OK


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------


def run_show(path: str) -> int:
    """``dmixed show DIR``: the saved summary of a results directory, on stdout."""
    from .results import load

    print(load(path).summary())
    return EXIT_OK


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dmixed: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def exit_status(exc: BaseException) -> int:
    """The documented exit status of an error that ends a command (:data:`EXIT_STATUSES`).

    A :class:`JobError` carries its own status; a lost or unreachable cluster
    (``ConnectionError``, including distributed's ``CommClosedError`` and timeouts of
    connecting) or one that cannot run the work (:class:`~dmixed.errors.ClusterError`: no
    workers, workers killed at their memory limit or paused at their memory threshold)
    → 5; saved statistics or results that cannot be read
    (:class:`~dmixed.CheckpointError`) → 3, but statistics of other data
    or another model (:class:`~dmixed.CheckpointMismatch`) → 2; any other refusal of dmixed
    (:class:`~dmixed.DmixedError`: a bad job, formula, cluster configuration) or a path
    that cannot be used (``OSError``: absent, not writable, a directory dmixed would not
    replace) → 2; anything else is a bug in dmixed → 1.
    """
    if isinstance(exc, JobError):
        return exc.status
    if isinstance(exc, (ConnectionError, ClusterError)):
        return EXIT_CLUSTER
    if isinstance(exc, CheckpointError) and not isinstance(exc, CheckpointMismatch):
        return EXIT_DATA
    if isinstance(exc, (DmixedError, OSError)):  # OSError: a path that cannot be used
        return EXIT_CONFIG
    return EXIT_BUG


def _input_words(line: str, places: dict[str, str] | None = None) -> str:
    """A message about a partition of the library's Dask DataFrame in the words of the
    command's input: the partition's file where it is known (``FILE: ...``, as a CSV
    line's culprit leads), else the partition of the input files as Dask splits them.

    ``places`` maps the library's words for a partition and its file (as the error
    carries them, :func:`~dmixed.design.origin.partition_words`) to the file: found as
    they are, whatever the file's name holds.  A message without them (raised as text)
    is matched with the file's name allowed parentheses in pairs."""
    for words, file in (places or {}).items():
        line = line.replace(words, file)
    line = re.sub(
        r"\b(?:a partition|partition \d+) of the Dask DataFrame \(file ((?:[^()]|\([^()]*\))+)\)",
        r"\1",
        line,
    )
    line = line.replace(": a partition of the Dask DataFrame: ", ": ")  # a culprit leads
    line = line.replace("a partition of the Dask DataFrame", "a part of the input")
    line = line.replace(" of the Dask DataFrame", " of the input (as Dask splits its files)")
    return line.replace("the Dask DataFrame", "the input")


def _partition_places(exc: BaseException) -> dict[str, str]:
    """The library's words for the partition and file of each error on ``exc``'s chain
    that knows its file (:func:`~dmixed.design.origin.in_partition`), mapped to the
    file."""
    from .design.origin import partition_words

    places: dict[str, str] = {}
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        file = getattr(err, "file", None)
        if isinstance(file, str) and file:
            number = getattr(err, "partition", None)
            places[partition_words(number if isinstance(number, int) else None, file)] = file
        err = err.__cause__ or err.__context__
    return places


def _error_lines(exc: Exception) -> list[str]:
    """The lines ``main`` prints for an error: one per problem."""
    places = _partition_places(exc)
    return [_input_words(line, places) for line in _problem_lines(exc)]


def _problem_lines(exc: Exception) -> list[str]:
    if isinstance(exc, JobError):
        return [one_line(line) for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, ConnectionError):
        return [one_line(exc)]
    if exit_status(exc) == EXIT_BUG:
        return [f"a bug in dmixed (please report it): {type(exc).__name__}: {one_line(exc)}"]
    if isinstance(exc, DmixedError):  # its message says what was wrong, in the CLI's words
        return [_cli_words(one_line(exc))]
    return [f"{type(exc).__name__}: {_cli_words(one_line(exc))}"]


@contextlib.contextmanager
def warnings_as_lines(quiet: bool) -> Iterator[None]:
    """Warnings as one line each on stderr: dmixed's always (``dmixed: warning: ...``),
    those of the libraries underneath unless ``quiet``; no file and line of the code."""

    def show(message, category, filename, lineno, file=None, line=None):
        ours = issubclass(category, DmixedWarning)
        if ours or not quiet:
            label = "" if ours else f"{category.__name__}: "
            print(f"dmixed: warning: {label}{one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


#: The loggers of the libraries under the embedded cluster that report the closing of
#: an interrupted computation's connections and tasks (a broadcast to a worker that
#: closed, a future whose exception nobody retrieves, a worker process killed after the
#: close's timeout), each with a traceback: noise once the command is ending.
CLOSING_NOISE = ("distributed", "asyncio", "tornado")


def quiet_after_interrupt() -> None:
    """The loggers :data:`CLOSING_NOISE` (and those below them) report nothing below
    CRITICAL from now on: what the command passes to :func:`dmixed.cluster.connect` as
    ``on_interrupt``, so it runs when an interrupt ends the command, before its cluster
    is closed.  Not given back: the records come while the cluster closes and after (a
    broadcast of the scheduler's loop ending after the close; a future whose exception
    nobody retrieved, reported when the interpreter frees it at exit), and the command
    is ending.  A command that is not interrupted keeps every record, so a failure of a
    normal close is still reported; ``connect`` called by a library user changes no
    logger."""
    manager = logging.Logger.manager
    names = [
        name
        for name in list(manager.loggerDict)
        if name.split(".")[0] in CLOSING_NOISE
        and isinstance(manager.loggerDict[name], logging.Logger)
    ]
    for name in (*CLOSING_NOISE, *names):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class Terminated(KeyboardInterrupt):
    """SIGTERM received by the command: it ends the command as a Ctrl-C does (every
    ``except KeyboardInterrupt`` and ``finally`` on the way closes what it opened)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM raises :class:`Terminated` in the body, and the handler found is given back
    when it ends; the signals received are recorded in the list yielded.

    A SIGTERM is never lost: where its exception is raised inside a callback that
    swallows exceptions (``distributed``'s garbage-collection callback, a ``__del__``),
    Python's report of it (``sys.unraisablehook``) is silenced, and the record ends the
    command at the next commit point (:func:`dmixed.files.commit_check`: before any
    output or statistics are moved into place, which raises :class:`Terminated` there)
    or, after the last, at its exit (:func:`main`: exit status 143).

    SIGTERM is what SLURM, PBS, Kubernetes and systemd send at a time limit or a cancel.
    Its default action ends the process at once: the embedded cluster's processes were
    left to the resource tracker, the statistics' lock file stayed beside the directory
    and nothing said why.  Raised as an interrupt, it takes Ctrl-C's path instead.  The
    handler is a Python one, so the embedded cluster's worker processes (started through
    ``exec``) keep SIGTERM's default, and the start of that cluster, which holds SIGINT back,
    leaves it in place (:func:`dmixed.cluster.interrupts_ignored` delays it to the end
    of the start).  The first SIGTERM raises; later ones are only noted, so the cleanup
    it starts runs to its end.  Only the main thread may set a handler: elsewhere
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []

    def note(signum, frame) -> None:
        # the command is already ending: a second signal (systemd and SLURM may send
        # more than one) would break into the cleanup, and distributed's closing
        # tasks print tracebacks; ignoring it instead (SIG_IGN) would be inherited by
        # worker processes started meanwhile
        received.append(signum)

    def terminate(signum, frame) -> None:
        received.append(signum)
        signal.signal(signal.SIGTERM, note)  # handlers run in the main thread
        raise Terminated

    def still_running() -> None:
        if received:
            raise Terminated

    def unraisable(info) -> None:
        # Terminated raised inside a callback whose exceptions Python cannot pass on (a
        # garbage collector's callback, a __del__): lost there, it is in ``received``,
        # and the next commit point or the exit ends the command (no traceback)
        if not isinstance(info.exc_value, Terminated):
            hook(info)

    hook = sys.unraisablehook
    previous = signal.signal(signal.SIGTERM, terminate)
    sys.unraisablehook = unraisable
    try:
        with commit_check(still_running):
            yield received
    finally:  # None: a handler set outside Python; the default is the nearest
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        sys.unraisablehook = hook


@contextlib.contextmanager
def sigint_as_interrupt() -> Iterator[list[int]]:
    """SIGINT (Ctrl-C) raises ``KeyboardInterrupt`` in the body, as Python's own handler
    does, and is recorded in the list yielded, so it is never lost; the handler found
    is given back when the body ends.

    Python's own handler raises wherever the main thread is: inside a callback whose
    exceptions Python cannot pass on (``distributed``'s garbage-collection callback, a
    weak reference's callback of ``importlib``'s module locks, a ``__del__``), the
    interrupt was printed ("Exception ignored in ...") and lost, and the command ran to
    its end, wrote its outputs and exited 0.  As for SIGTERM
    (:func:`sigterm_as_interrupt`), that report is silenced and the record ends the
    command at the next commit point (:func:`dmixed.files.commit_check`: before any
    output or statistics are moved into place) or, after the last, at its exit
    (:func:`main`: exit status 130).  The first SIGINT raises; later ones are only
    noted, so the cleanup it starts (the cluster's close) runs to its end; but after
    one lost in a callback (nothing was cleaned up), the next raises again.

    A SIGINT ignored when the command starts (``SIG_IGN``: a shell's background job) stays
    ignored, and only the main thread may set a handler: elsewhere nothing changes.
    The start of the embedded cluster holds this handler's signal back until it has
    started (:func:`dmixed.cluster.interrupts_ignored`), then calls it.

    Yields
    ------
    list of int
        The SIGINTs received while the body runs (``signal.SIGINT`` each), the list
        :func:`main` reads at the end (not empty: exit status 130); always empty
        outside the main thread or where SIGINT is ignored.

    Raises
    ------
    KeyboardInterrupt
        In the body, at a Ctrl-C (by the handler) or at the next commit point after
        one lost in a callback (:func:`dmixed.files.commit_check`).
    """
    found = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or found is signal.SIG_IGN:
        yield []
        return
    received: list[int] = []

    def note(signum, frame) -> None:
        received.append(signum)

    def interrupt(signum, frame) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, note)  # handlers run in the main thread
        raise KeyboardInterrupt

    def still_running() -> None:
        if received:
            raise KeyboardInterrupt

    def unraisable(info) -> None:
        # the interrupt raised inside a callback that swallows exceptions: it is in
        # ``received``, and the next commit point or the exit ends the command
        lost = isinstance(info.exc_value, KeyboardInterrupt)
        if not (lost and received and not isinstance(info.exc_value, Terminated)):
            hook(info)
            return
        if threading.current_thread() is threading.main_thread():
            # no cleanup was started by it: the next Ctrl-C raises again, or a command
            # with no commit point ahead would only note every later one and run on
            # (only our own ``note`` is replaced: a cluster's start may hold SIGINT)
            if signal.getsignal(signal.SIGINT) is note:
                signal.signal(signal.SIGINT, interrupt)

    hook = sys.unraisablehook
    signal.signal(signal.SIGINT, interrupt)
    sys.unraisablehook = unraisable
    try:
        with commit_check(still_running):
            yield received
    finally:  # None: a handler set outside Python; Python's own is the nearest
        signal.signal(signal.SIGINT, signal.default_int_handler if found is None else found)
        sys.unraisablehook = hook


def main(argv: list[str] | None = None) -> int:
    """The ``dmixed`` command; returns its exit status (:data:`EXIT_STATUSES`).

    SIGTERM ends it as Ctrl-C does (:func:`sigterm_as_interrupt`), with exit status 143
    (128 + SIGTERM, as a shell reports the signal), and Ctrl-C with 130, never lost in a
    callback (:func:`sigint_as_interrupt`); the handlers of both are given back on
    return, and so is the ``dmixed`` logger's state (handlers, level, propagation), which
    the command sets for its own lines on stderr: a program that calls ``main`` in its
    own process keeps its logging as it was.
    """
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        with sigterm_as_interrupt() as received, sigint_as_interrupt() as interrupted:
            status = _main(argv)
    except Terminated:  # before the command began (its arguments read) or after it
        return _terminated()
    except KeyboardInterrupt:  # as the handlers are set or given back
        return _interrupted()
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
    if status not in (EXIT_TERMINATED, EXIT_INTERRUPTED):
        # a signal whose exception was lost after the last commit point: never lost
        if received:
            return _terminated()
        if interrupted:
            return _interrupted()
    return status


def _interrupted() -> int:
    print("dmixed: error: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _terminated() -> int:
    print("dmixed: error: terminated (SIGTERM)", file=sys.stderr)
    return EXIT_TERMINATED


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = bool(args.quiet)
    _setup_logging(quiet)
    try:
        with warnings_as_lines(quiet):
            if args.command == "show":
                return run_show(args.dir)
            job = make_job(args, args.required)
            _setup_logging(job.quiet)
            if args.command == "fit":  # its refusals name the job file given
                return run_fit(job, job_file=getattr(args, "job", None))
            commands = {"update": run_update, "bootstrap": run_bootstrap}
            return commands[args.command](job)
    except Terminated:
        return _terminated()
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # the reader closed early: nothing is wrong, say nothing
        with contextlib.suppress(OSError, ValueError, AttributeError):
            # else Python's flush of stdout at exit fails again, with a message
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except Exception as exc:  # one line per problem on stderr, never a traceback
        for line in _error_lines(exc):
            print(f"dmixed: error: {line}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
