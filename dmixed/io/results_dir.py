"""The results directory: a :class:`~dmixed.io.state.ResultsState` on disk.

Layout of a results directory::

    estimates.json       estimates, covariances, fit log, model names/spec, versions
    random_effects.parquet   one row per group: key, size, BLUPs and their conditional
                             covariances (padded slots: ``vc_slot_widths`` in the JSON;
                             column names from :mod:`dmixed.stats.columns`: from format
                             7 by the effects' names, ``re["Group"]``,
                             ``cov["x1","Group"]``, before it by position); keys that
                             are tuples as the JSON text of each (format 5,
                             ``group_label_form`` in the JSON: :func:`saved_labels`)
    random_effects_slots.parquet   format 2, variance components held structured: the
                             BLUPs and covariances ragged, one row per slot
                             (:mod:`dmixed.io.ragged_re`; the first table then holds
                             only their ``exog_re`` part); format 3, crossed
                             components: the slots (:mod:`dmixed.io.border_re`)
    random_effects_cov.parquet     format 3 only: the covariances' factors, unpadded
    summary.txt          the printed summary

The directory is written under a temporary name beside the target and renamed into
place, so an interrupted save leaves either the previous complete directory or none,
never a partial one.  ``estimates.json`` records the sha256 of
``random_effects.parquet`` (``files``) and its own (``estimates_sha256``, of the rest
of the document); loading verifies both (when recorded: directories written before
they were are read unverified) and the shapes of every array.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from ..design import ModelNames, ModelSpec
from ..errors import CheckpointError, DataError
from ..files import (
    atomic_directory,
    dmixed_version,
    file_sha256,
    jsonable,
    read_parquet_sha256,
    read_versioned_json,
    records_own_sha256,
    without_key_sha256,
)
from ..stats import columns
from .border_re import COV_TABLE, CROSSED_FORM, crossed_random_effects, crossed_tables, is_crossed
from .ragged_re import (
    RAGGED_FORM,
    SLOTS_TABLE,
    component_prior,
    is_ragged,
    ragged_group_columns,
    ragged_random_effects,
    slots_table,
)
from .state import ResultsState

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BOOTSTRAP_FILE",
    "effect_labels",
    "estimates_document",
    "loaded_labels",
    "random_effects_table",
    "saved_labels",
    "save_state",
    "load_state",
    "written_names",
]

FORMAT = "dmixed-results"
#: The format written, for every directory: 7, the random effects' columns named by the
#: effects (:func:`dmixed.stats.columns.effect_labels`) rather than numbered, which
#: versions before it would not find (they refuse it as written by a newer dmixed).
#: Directories of the earlier formats are read, their columns by position: 1 padded,
#: 2 ragged, 3 crossed random effects; 4 a fit whose prior weights were scaled in its
#: statistics (``weight_scale``, ``cov_params_weighted``); 5 group labels that are
#: tuples; 6 a model whose names earlier versions would rebuild otherwise.  8: a model
#: whose centres versions before it refuse as malformed
#: (:meth:`~dmixed.design.ModelSpec.centres_need_this_version`); others are written as 7.
FORMAT_VERSION = 8
#: the first format of named random-effects columns
NAMED_COLUMNS_FORMAT_VERSION = 7
#: the format a model whose centres need this version is written as
CENTRES_FORMAT_VERSION = 8
#: the first format that may hold ``weight_scale`` and ``cov_params_weighted``
WEIGHTED_FORMAT_VERSION = 4

_RE, _COV, _SIZE = "re", "cov", "group_size"
_TABLE = "random_effects.parquet"
_ESTIMATES, _SUMMARY = "estimates.json", "summary.txt"
#: the replicate table's file name in a results directory (``dmixed bootstrap``,
#: :mod:`dmixed.results.bootstrap`, writes it there after the results)
BOOTSTRAP_FILE = "bootstrap.parquet"


def written_names(target: Path) -> set[str]:
    """The names of the files dmixed writes in the results directory ``target``: its
    ``estimates.json``, ``summary.txt`` and ``bootstrap.parquet``, and the tables its
    ``estimates.json`` lists (``files``; all the tables a results directory holds where
    it cannot be read).  Replacing the directory deletes these only: a directory holding
    anything else is refused (:func:`dmixed.files.check_target`)."""
    tables = {_TABLE, SLOTS_TABLE, COV_TABLE}
    try:
        with open(target / _ESTIMATES) as fh:
            listed = json.load(fh).get("files")
        if isinstance(listed, dict):
            tables &= set(listed)
    except (OSError, ValueError, RecursionError, AttributeError):
        pass  # a damaged estimates.json: its directory is rewritten, naming no tables
    return {_ESTIMATES, _SUMMARY, BOOTSTRAP_FILE, *tables}


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _versions() -> dict:
    import dask  # imported here only: dmixed itself imports without Dask

    return {
        "dmixed": dmixed_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "pandas": pd.__version__,
        "dask": dask.__version__,
    }


def _regularized_from(saved) -> dict | None:
    """The ``regularized`` record of ``estimates.json`` checked: None, or a mapping of
    ``fit_regularized``'s settings (numbers, a list of numbers, a method name, flags)."""
    if saved is None:
        return None
    keys = {"method", "alpha", "ceps", "ptol", "maxit", "n_sweeps", "converged"}
    if not isinstance(saved, dict) or not set(saved) <= keys:
        raise ValueError(
            f"model.regularized must be null or a mapping of {sorted(keys)}, got {saved!r}"
        )
    return dict(saved)


def _model_section(state: ResultsState) -> dict:
    return {
        **dataclasses.asdict(state.names),
        "use_sqrt": state.use_sqrt,
        "spec": state.spec.to_dict() if state.spec is not None else None,
        "pandas_output": state.pandas_output,
        "data_digest": state.data_digest,
        "row_digests": state.row_digests,
        "held": None if state.held is None else [bool(h) for h in state.held],
        "regularized": state.regularized,
    }


#: the ``fit`` section of ``estimates.json``: these attributes of the state, by name
_FIT_KEYS = (
    "method",
    "reml",
    "converged",
    "n_iter",
    "n_evals",
    "optimizer_methods",
    "boundary",
    "fit_seconds",
    "data_pass_seconds",
    "cov_fe",
    "history",
)


#: added to the ``fit`` section later (format 1 still): absent in older directories
_OPTIMIZER_KEYS = (
    "optimizer_settings",
    "initial_params",
    "initial_llf",
    "grad_norm",
    "n_held",
    "resolution_edge",
    "final_rise",
)


def _fit_section(state: ResultsState) -> dict:
    return {key: getattr(state, key) for key in _FIT_KEYS + _OPTIMIZER_KEYS}


def _estimates_section(state: ResultsState) -> dict:
    names = state.names
    return {
        "nobs": state.nobs,
        "n_groups": state.n_groups,
        "n_dropped": state.n_dropped,
        "k_fe": state.k_fe,
        "k_re": state.k_re,
        "k_vc": state.k_vc,
        **({} if state.k_constant is None else {"k_constant": state.k_constant}),
        "llf": state.llf,
        "aic": state.aic,
        "bic": state.bic,
        "scale": state.scale,
        "param_names": state.param_names,
        "params": state.params,
        "packed_params": state.packed_params,
        "fe_params": dict(zip(names.exog_names, state.fe_params.tolist(), strict=True)),
        "bse": state.bse,
        "cov_re": state.cov_re,
        "cov_re_unscaled": state.cov_re_unscaled,
        "vcomp": dict(zip(names.vc_names, np.asarray(state.vcomp).tolist(), strict=True)),
        "cov_params": state.cov_params,
        "a_inv": state.a_inv,
        "vc_slot_widths": list(state.vc_slot_widths),
        **_ragged_section(state),
        **_empty_section(state),
        **_weighted_section(state),
        **_labels_section(state),
    }


def _weighted_section(state: ResultsState) -> dict:
    """The prior weights' scale and the covariance in their unit, where the scale is not
    1 (:attr:`~dmixed.io.state.ResultsState.cov_params_weighted`); absent otherwise."""
    if state.cov_params_weighted is None:
        return {}
    return {"weight_scale": state.weight_scale, "cov_params_weighted": state.cov_params_weighted}


def _empty_section(state: ResultsState) -> dict:
    """The ``exog_vc`` columns zero on a group's rows (``vc_empty_cols``), if any:
    ``[[group index, column], ...]`` per component; absent in older directories."""
    if state.vc_empty_cols is None:
        return {}
    return {"vc_empty_cols": [np.asarray(p).tolist() for p in state.vc_empty_cols]}


def _ragged_section(state: ResultsState) -> dict:
    """The form of the random effects and, ragged, each component's prior variance."""
    if not (is_ragged(state) or is_crossed(state)):
        return {}
    prior = component_prior(state.blup_cov, state.vc_slot_widths)
    form = CROSSED_FORM if is_crossed(state) else RAGGED_FORM
    return {"random_effects_form": form, "blup_cov_prior": prior}


def _labels_section(state: ResultsState) -> dict:
    """How ``random_effects.parquet`` holds the group labels, where not as themselves
    (:func:`saved_labels`); absent otherwise (and in older directories)."""
    return {} if _tuple_labels(state.group_labels) is None else {_LABEL_FORM: TUPLE_JSON}


def estimates_document(state: ResultsState) -> dict:
    """The content of ``estimates.json`` (before conversion to JSON types)."""
    return {
        "format": FORMAT,
        # every directory names its columns (:func:`effect_labels`), which no version
        # before format 7 finds; directories of formats 1 to 6 are still read
        # (a model whose centres earlier versions refuse: the format that says so)
        "format_version": CENTRES_FORMAT_VERSION
        if state.spec is not None and state.spec.centres_need_this_version()
        else NAMED_COLUMNS_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "model": _model_section(state),
        "fit": _fit_section(state),
        "estimates": _estimates_section(state),
    }


def effect_labels(names: ModelNames, widths) -> list[str]:
    """The labels naming the random effects' columns of a results directory (format 7:
    :func:`dmixed.stats.columns.effect_labels`, their one owner) of a model of these
    names and slot widths (``vc_slot_widths``)."""
    return columns.effect_labels(names.exog_re_names, names.vc_names, widths)


def random_effects_table(state: ResultsState) -> pd.DataFrame:
    """Padded per-group BLUPs (``re["name"]``), conditional covariances
    (``cov["name a","name b"]``, a ≥ b; :func:`effect_labels`) and, per variance
    component, the column index each slot stands for (``vc_column[c][s]``): the content
    of ``random_effects.parquet``; for ragged random effects, their per-group part only
    (:mod:`dmixed.io.ragged_re`)."""
    cols = {columns.GROUP: saved_labels(state.group_labels), _SIZE: np.asarray(state.group_sizes)}
    labels = effect_labels(state.names, state.vc_slot_widths)
    if is_ragged(state):  # the slots go to their own table (:mod:`dmixed.io.ragged_re`)
        ragged_group_columns(state, cols, labels)
        return pd.DataFrame(cols)
    if is_crossed(state):  # the slots and factors too (:mod:`dmixed.io.border_re`)
        columns.put_vector(cols, _RE, state.blup.re, labels)
        return pd.DataFrame(cols)
    columns.put_vector(cols, _RE, np.asarray(state.blup), labels)  # padded
    columns.put_lower_triangle(cols, _COV, np.asarray(state.blup_cov), labels)  # padded
    columns.put_vc_slots(cols, state.vc_slot_cols)
    return pd.DataFrame(cols)


#: ``estimates.json``'s key (in ``estimates``) for how ``random_effects.parquet`` holds
#: the group labels where not as themselves, and its one value: tuples, each as the
#: JSON array of its parts
_LABEL_FORM = "group_label_form"
TUPLE_JSON = "tuple-json"


def _tuple_labels(labels) -> np.ndarray | None:
    """``labels`` as an ``object`` array where they are tuples (a fit's labels are of one
    kind: the first tells), else None."""
    g = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    if g.dtype != object or len(g) == 0 or not isinstance(g[0], tuple):
        return None
    return g


def _json_part(value):
    """A tuple part that JSON does not hold as it is: a numpy scalar as its Python value;
    anything else refused (:func:`saved_labels` names it)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def saved_labels(labels) -> np.ndarray:
    """The group labels as ``random_effects.parquet`` holds them (the one owner of that
    convention, with :func:`loaded_labels`): text, numbers, booleans and dates as they
    are; tuples (pandas' keys of several parts) each as the JSON array of its parts,
    which keeps every part's type (``1``, ``1.0``, ``'1'``, ``True``, ``None``), and
    ``estimates.json`` says so (``group_label_form``, format 5).  Arrow would make
    lists of tuples of one type (read back as arrays) and refuse others.

    Raises
    ------
    DataError
        Labels that cannot be saved, naming their kind and one of them: tuples holding
        a part JSON does not hold exactly (a nested tuple, NaN, a ``Decimal``, bytes,
        dates), or values Parquet does not hold.  Raised before anything is written.
    """
    import pyarrow as pa

    tuples = _tuple_labels(labels)
    if tuples is None:
        g = pd.Series(np.asarray(labels))
        if g.dtype != object:
            return g.to_numpy()
        if all(isinstance(v, str) for v in g):
            return g.astype(str).to_numpy()
        try:  # objects of another type (bytes, dates): converted here, as Parquet would
            pa.array(g, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            kinds = ", ".join(sorted({type(v).__name__ for v in g.head(1000)}))
            raise DataError(
                f"the group labels ({kinds}, such as {g.iloc[0]!r}) cannot be saved: "
                f"Parquet does not hold them ({exc}); refit with labels of text or numbers "
                "(e.g. df[groups].astype(str)), or pickle the results instead"
            ) from None
        return g.to_numpy()
    encode = json.JSONEncoder(allow_nan=False, default=_json_part, ensure_ascii=False).encode
    try:
        texts = list(map(encode, tuples))
        exact = list(map(tuple, json.loads("[" + ",".join(texts) + "]"))) == list(tuples)
    except (TypeError, ValueError) as exc:
        exact, why = False, f"a part of type {exc}" if isinstance(exc, TypeError) else "NaN"
    else:
        why = "a nested tuple"
    if not exact:
        shown = next(iter(tuples), None)
        raise DataError(
            f"the group labels are tuples (such as {shown!r}) holding {why}, which a results "
            "directory cannot hold exactly: it saves tuples of numbers, text, booleans and "
            "None; refit with such keys (e.g. df[groups].astype(str) for text labels), or "
            "pickle the results instead"
        )
    return np.asarray(texts, dtype=object)


def loaded_labels(table: pd.DataFrame, estimates: dict) -> np.ndarray:
    """The group labels of a ``random_effects.parquet`` table read back as
    :func:`saved_labels` wrote them (``estimates``: the ``estimates`` section of
    ``estimates.json``); the list cells of tuple labels that directories of formats
    before 5 hold are read back as tuples.

    Raises
    ------
    ValueError
        A ``group_label_form`` this version does not know, or text that is not the JSON
        array of a tuple's parts.
    """
    values = table[columns.GROUP].to_numpy()
    form = estimates.get(_LABEL_FORM)
    if form is None:
        if values.dtype == object and len(values) and isinstance(values[0], np.ndarray):
            # a directory written before tuple labels had a form (format < 5): pyarrow
            # wrote each tuple as a list cell, which reads back as an array
            return np.fromiter((tuple(v.tolist()) for v in values), dtype=object, count=len(values))
        return values
    if form != TUPLE_JSON:
        raise ValueError(f"group labels saved as {form!r}, a form this dmixed does not read")
    parts = json.loads("[" + ",".join(values.tolist()) + "]")
    if not all(map(isinstance, parts, [list] * len(parts))):
        raise ValueError("group labels saved as tuples hold a value that is not one")
    return np.fromiter(map(tuple, parts), dtype=object, count=len(parts))


def save_state(state: ResultsState, path, summary_text: str) -> None:
    """Write ``state`` to the directory ``path`` atomically (replacing an old one).

    Raises
    ------
    PathExistsError
        ``path`` exists and is not a results directory (it is never replaced), or
        holds a file dmixed did not write there (:func:`written_names`: named; the
        directory is never replaced, since that would delete the file), or lies under
        a file (:func:`dmixed.files.check_target`).
    DataError
        Group labels a results directory cannot hold (:func:`saved_labels`): nothing
        is written.
    """
    table = random_effects_table(state)  # labels refused before anything is written
    with atomic_directory(path, marker=_ESTIMATES, kind="results", owned=written_names) as tmp:
        table.to_parquet(tmp / _TABLE, index=False)
        doc = estimates_document(state)
        doc["files"] = {_TABLE: {"sha256": file_sha256(tmp / _TABLE)}}
        extra = {}
        if is_ragged(state):
            extra = {
                SLOTS_TABLE: slots_table(state, effect_labels(state.names, state.vc_slot_widths))
            }
        elif is_crossed(state):
            extra = dict(zip((SLOTS_TABLE, COV_TABLE), crossed_tables(state), strict=True))
        for name, frame in extra.items():
            frame.to_parquet(tmp / name, index=False)
            doc["files"][name] = {"sha256": file_sha256(tmp / name)}
        doc = jsonable(doc)
        doc[ESTIMATES_SHA256] = estimates_sha256(doc)
        with open(tmp / "estimates.json", "w") as fh:
            json.dump(doc, fh, indent=1, allow_nan=False)
        (tmp / "summary.txt").write_text(summary_text)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _matrix(value) -> np.ndarray:
    """A JSON matrix (lists of rows, None for NaN) as a float array."""
    return np.array(
        [[np.nan if v is None else v for v in row] for row in value], dtype=np.float64
    ).reshape(len(value), -1 if value else 0)


def _names_from(model: dict) -> ModelNames:
    return ModelNames(**{f.name: model[f.name] for f in dataclasses.fields(ModelNames)})


def _optimizer_fields(fit: dict) -> dict:
    """The optimizer's settings and start, added to the fit section later (None or
    absent in older directories: the defaults, no start)."""
    initial, initial_llf, grad_norm, n_held, edge, rise = (fit.get(k) for k in _OPTIMIZER_KEYS[1:])
    return {
        "optimizer_settings": dict(fit.get("optimizer_settings") or {}),
        "initial_params": None if initial is None else np.asarray(initial, dtype=np.float64),
        "initial_llf": np.nan if initial_llf is None else float(initial_llf),
        "grad_norm": np.nan if grad_norm is None else float(grad_norm),
        "n_held": int(n_held or 0),
        "resolution_edge": bool(edge or False),
        "final_rise": np.nan if rise is None else float(rise),
    }


def _random_effects(
    e: dict, table: pd.DataFrame, slots: pd.DataFrame | None, cov=None, names=None
) -> dict:
    """``blup``, ``blup_cov`` and ``vc_slot_cols`` of the tables: ragged (format 2,
    ``slots`` the per-slot table), crossed (format 3, and ``cov`` the factors' table) or
    padded; columns named by the effects (``names``, the model's; format 7) or numbered
    (``names`` None: formats 1 to 6)."""
    k_re, widths, g = e["k_re"], tuple(e["vc_slot_widths"]), len(table)
    labels = None if names is None else effect_labels(names, widths)
    form = e.get("random_effects_form")
    if form in (RAGGED_FORM, CROSSED_FORM):
        if slots is None or (form == CROSSED_FORM and cov is None):
            raise ValueError(f"{form} random effects without their tables")
        if g != e["n_groups"]:  # before the slots are placed in the groups
            raise ValueError(f"{g} groups in {_TABLE}, {e['n_groups']} in estimates.json")
        prior = e["blup_cov_prior"]
        if form == CROSSED_FORM:
            out = crossed_random_effects(table, slots, cov, k_re, widths, prior, labels)
        else:
            out = ragged_random_effects(table, slots, k_re, widths, prior, labels)
        return dict(zip(("blup", "blup_cov", "vc_slot_cols"), out, strict=True))
    r = k_re + int(sum(widths))
    return {
        "blup": columns.take_vector(table, _RE, r, g, labels),
        "blup_cov": columns.take_lower_triangle(table, _COV, r, g, labels),
        "vc_slot_cols": columns.take_vc_slots(table, widths, g),
    }


def _iterations_made(fit: dict) -> tuple[int, list]:
    """The ``fit`` section's ``n_iter`` (the iterations made) and ``history``, whose
    final entry carries that count.  Directories written before they counted so counted
    the fit log's final entry too (the point they ended at), in ``n_iter`` and in that
    entry's ``iteration``, one more than the last iteration's: both are corrected."""
    history = fit.get("history") or []
    last = history[-1] if history else {}
    older = last.get("method") == "final" and last.get("iteration") == len(history)
    if not (older and fit["n_iter"] == len(history)):
        return fit["n_iter"], fit["history"]
    made = len(history) - 1
    return made, [*history[:-1], {**last, "iteration": made}]


def _row_digests_from(value) -> dict[str, str] | None:
    """The ``model`` section's ``row_digests`` (None where absent), checked to be a
    mapping of names to digest strings: compared by the likelihood-ratio tests."""
    if value is None:
        return None
    if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
        raise ValueError(
            f"row_digests in estimates.json is a {type(value).__name__}, not a mapping of "
            "column names to digests"
        )
    return {str(k): v for k, v in value.items()}


def _state_from(
    doc: dict,
    table: pd.DataFrame,
    eval_env=None,
    slots: pd.DataFrame | None = None,
    cov=None,
    source=None,
) -> ResultsState:
    """The state record of a parsed ``estimates.json`` and ``random_effects.parquet``
    (``eval_env``: as :func:`load_state`'s; ``slots``: the per-slot table of ragged or
    crossed random effects, ``cov`` the factors' table of crossed ones)."""
    m, f, e = doc["model"], doc["fit"], doc["estimates"]
    n_iter, history = _iterations_made(f)
    names = _names_from(m)
    k_re = e["k_re"]
    return ResultsState(
        names=names,
        spec=ModelSpec.from_dict(m["spec"], eval_env, source)
        if m.get("spec") is not None
        else None,
        use_sqrt=m["use_sqrt"],
        pandas_output=bool(m.get("pandas_output", True)),  # absent: saved before it was
        data_digest=m.get("data_digest"),  # absent: saved before it was
        row_digests=_row_digests_from(m.get("row_digests")),  # absent: saved before it was
        held=None if m.get("held") is None else np.asarray(m["held"], dtype=bool),
        regularized=_regularized_from(m.get("regularized")),  # absent: an ordinary fit
        **{key: f[key] for key in _FIT_KEYS if key not in ("n_iter", "history")},
        n_iter=n_iter,
        history=history,
        **_optimizer_fields(f),
        nobs=e["nobs"],
        n_groups=e["n_groups"],
        n_dropped=e["n_dropped"],
        k_constant=None if e.get("k_constant") is None else int(e["k_constant"]),
        k_fe=e["k_fe"],
        k_re=k_re,
        k_vc=e["k_vc"],
        llf=e["llf"],
        scale=e["scale"],
        param_names=e["param_names"],
        params=np.asarray(e["params"], dtype=np.float64),
        packed_params=np.asarray(e["packed_params"], dtype=np.float64),
        fe_params=np.array([e["fe_params"][x] for x in names.exog_names], dtype=np.float64),
        cov_re=_matrix(e["cov_re"]).reshape(k_re, k_re),
        cov_re_unscaled=_matrix(e["cov_re_unscaled"]).reshape(k_re, k_re),
        vcomp=np.array([e["vcomp"][v] for v in names.vc_names], dtype=np.float64),
        cov_params=_matrix(e["cov_params"]),
        weight_scale=float(e.get("weight_scale", 1.0)),
        cov_params_weighted=None
        if e.get("cov_params_weighted") is None
        else _matrix(e["cov_params_weighted"]),
        a_inv=_matrix(e["a_inv"]),
        group_labels=loaded_labels(table, e),
        group_sizes=table[_SIZE].to_numpy(),
        **_random_effects(
            e,
            table,
            slots,
            cov,
            names if doc.get("format_version", 0) >= NAMED_COLUMNS_FORMAT_VERSION else None,
        ),
        vc_empty_cols=None
        if e.get("vc_empty_cols") is None
        else [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in e["vc_empty_cols"]],
    )


def _shape_problems(state: ResultsState) -> list[str]:
    """What does not fit together in a state record: every array's shape against the
    model's dimensions (p, q, L, k = p + q(q+1)/2 + L, G, r = q + Σ m_l)."""
    p, q, n_vc, g = state.k_fe, state.k_re, state.k_vc, state.n_groups
    k = p + state.k_re2 + n_vc
    r = q + int(sum(state.vc_slot_widths))
    names = state.names
    shapes = {
        "param_names": ((len(state.param_names),), (k,)),
        "params": (np.shape(state.params), (k,)),
        "fe_params": (np.shape(state.fe_params), (p,)),
        "exog_names": ((len(names.exog_names),), (p,)),
        "exog_re_names": ((len(names.exog_re_names),), (q,)),
        "vc_names": ((len(names.vc_names),), (n_vc,)),
        "vcomp": (np.shape(state.vcomp), (n_vc,)),
        "vc_slot_widths": ((len(state.vc_slot_cols),), (n_vc,)),
        "cov_re": (np.shape(state.cov_re), (q, q)),
        "cov_re_unscaled": (np.shape(state.cov_re_unscaled), (q, q)),
        "cov_params": (np.shape(state.cov_params), (k, k)),
        **(
            {}
            if state.cov_params_weighted is None
            else {"cov_params_weighted": (np.shape(state.cov_params_weighted), (k, k))}
        ),
        "a_inv": (np.shape(state.a_inv), (p, p)),
        "packed_params": (np.shape(state.packed_params), (state.k_re2 + n_vc,)),
        "group labels": ((len(state.group_labels),), (g,)),
        "group sizes": ((len(state.group_sizes),), (g,)),
        "BLUPs": (np.shape(state.blup), (g, r)),
        "BLUP covariances": (np.shape(state.blup_cov), (g, r, r)),
    }
    problems = [
        f"{name} of shape {got}, {want} expected"
        for name, (got, want) in shapes.items()
        if tuple(got) != tuple(want)
    ]
    if len(state.group_labels) != g:  # the message the tests and users know
        problems.append(
            f"{len(state.group_labels)} groups in random_effects.parquet, {g} in estimates.json"
        )
    for comp, (table, names_c) in enumerate(
        zip(state.vc_slot_cols, names.vc_column_names, strict=False)
    ):
        if table.size and (table.min() < -1 or table.max() >= len(names_c)):
            problems.append(f"a slot of variance component {comp} outside its columns")
    sizes = np.asarray(state.group_sizes)
    if sizes.shape == (g,) and (int(sizes.sum()) != state.nobs or np.any(sizes < 0)):
        problems.append(f"group sizes summing to {int(sizes.sum())}, nobs {state.nobs}")
    return problems


def _value_problems(state: ResultsState) -> list[str]:
    """Values a fit cannot have written: a scale that is not a positive number, an llf
    that is not a number, estimates that are not finite numbers, negative variances."""
    problems = []
    for name in ("scale", "llf"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{name} is {value!r}, not a number")
        elif not np.isfinite(value) or (name == "scale" and value <= 0):
            problems.append(f"{name} is {value!r}")
    for name in ("params", "fe_params", "vcomp", "cov_re"):
        try:
            values = np.asarray(getattr(state, name), dtype=np.float64)
        except (TypeError, ValueError):
            problems.append(f"{name} holds values that are not numbers")
            continue
        if not np.isfinite(values).all():
            problems.append(f"{name} holds values that are not finite")
        elif name == "vcomp" and (values < 0).any():
            problems.append("vcomp holds a negative variance")
        elif name == "cov_re" and values.ndim == 2 and (np.diag(values) < 0).any():
            problems.append("cov_re holds a negative variance")
    return problems


def _check(state: ResultsState, where: Path) -> None:
    """Refuse a results directory whose parts do not fit together, or whose values no
    fit can have written."""
    problems = _shape_problems(state) or _value_problems(state)
    if problems:
        raise CheckpointError(
            f"{where} is a damaged dmixed results directory: {'; '.join(problems)}"
        )


def _read_table(target: Path, doc: dict, name: str = _TABLE) -> tuple[pd.DataFrame, str | None]:
    """``random_effects.parquet`` (or the table ``name``; read once, from a memory map)
    and the sha256 its ``estimates.json`` records for it, if the directory's differs
    (else None)."""
    table, sha256 = read_parquet_sha256(target / name)
    recorded = (doc.get("files") or {}).get(name)
    if recorded is None:  # written before the digests were recorded
        return table, None
    return table, None if recorded.get("sha256") == sha256 else sha256


#: the key of ``estimates.json`` holding the sha256 of the rest of it
#: (:func:`estimates_sha256`); directories written before it are read unverified
ESTIMATES_SHA256 = "estimates_sha256"
#: the key of the ``fit`` section that every dmixed writing :data:`ESTIMATES_SHA256`
#: wrote, and none before it: it was added after the sha256 (as were formats 4 and up),
#: so a document holding it, or of format 4 or newer, without the sha256 lost it
_WRITTEN_WITH_SHA256 = "resolution_edge"


def estimates_sha256(doc: dict) -> str:
    """sha256 of an ``estimates.json`` document without its :data:`ESTIMATES_SHA256`
    key (canonical JSON, :func:`dmixed.files.json_sha256`)."""
    return without_key_sha256(doc, ESTIMATES_SHA256)


def _check_own_sha256(doc: dict, file: Path) -> None:
    """Refuse an ``estimates.json`` whose :data:`ESTIMATES_SHA256` is not the sha256 of
    the rest of it, or is missing where every dmixed writing that document wrote it
    (format 4 and up, or a ``fit`` section holding :data:`_WRITTEN_WITH_SHA256`);
    documents written before it (formats 1 to 3, without that key) are read unverified.
    """
    if ESTIMATES_SHA256 not in doc:
        fit = doc.get("fit")
        newer = doc.get("format_version", 0) >= WEIGHTED_FORMAT_VERSION or (
            isinstance(fit, dict) and _WRITTEN_WITH_SHA256 in fit
        )
        if newer:
            raise CheckpointError(
                f"{file} has no {ESTIMATES_SHA256}, which every dmixed writing this "
                "document recorded: it was changed or damaged after dmixed wrote it; "
                "refit, or restore the directory as saved"
            )
        return
    if not records_own_sha256(doc, ESTIMATES_SHA256):
        raise CheckpointError(
            f"{file} was changed or damaged after dmixed wrote it (its sha256 does not "
            "match the one it records): refit, or restore the directory as saved"
        )


def load_state(path, eval_env=None) -> ResultsState:
    """Read the state record of a results directory written by :func:`save_state`.

    ``eval_env``: a mapping giving the functions of the code that fitted a model whose
    formula uses them (the saved spec lists their names, never their code;
    :meth:`dmixed.design.ModelSpec.from_dict`).

    Raises
    ------
    PathNotFoundError
        ``path`` does not exist, is a file, or has no ``estimates.json``.
    CheckpointError
        Naming the file: ``estimates.json`` is not dmixed's, is of a newer format, or
        was edited (its own sha256, recorded since this key was added);
        ``random_effects.parquet`` is missing, unreadable or not the file saved with
        it (sha256); or the arrays' shapes do not fit the model; or the formula uses
        functions of the code that fitted it and ``eval_env`` does not give them.
    """
    target = Path(path)
    doc = read_versioned_json(
        target / "estimates.json", FORMAT, FORMAT_VERSION, "a dmixed results directory"
    )
    _check_own_sha256(doc, target / "estimates.json")
    table, changed = _read_table(target, doc)
    changed_file = None if changed is None else _TABLE
    extra = {}
    form = (doc.get("estimates") or {}).get("random_effects_form")
    names = {RAGGED_FORM: (SLOTS_TABLE,), CROSSED_FORM: (SLOTS_TABLE, COV_TABLE)}
    for name in names.get(form, ()):
        extra[name], extra_changed = _read_table(target, doc, name)
        if changed_file is None and extra_changed is not None:
            changed_file = name
    try:
        state = _state_from(
            doc,
            table,
            eval_env,
            extra.get(SLOTS_TABLE),
            extra.get(COV_TABLE),
            target / "estimates.json",
        )
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{target} is a damaged dmixed results directory: {type(err).__name__}: {err}"
        ) from err
    _check(state, target)
    if changed_file is not None:
        raise CheckpointError(
            f"{target / changed_file} was changed or damaged after dmixed wrote it (its sha256 "
            f"does not match the one in {target / 'estimates.json'})"
        )
    return state
