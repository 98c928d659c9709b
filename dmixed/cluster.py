"""Choosing and connecting to a Dask cluster for batch jobs (the ``dmixed`` command).

The library itself never starts a cluster (``fit(client=...)`` uses what it is
given).  The command line does, through :func:`connect`, from one of:

- nothing: an embedded ``LocalCluster`` on this machine, listening on 127.0.0.1 only, over
  TLS with credentials made for the run (:func:`run_credentials`): only this process can
  connect to it;
- a scheduler address (``tcp://host:8786``, ``tls://host:8786``);
- a scheduler file written by ``dask scheduler --scheduler-file``;
- a YAML cluster configuration (see ``cluster_configs/``) whose ``kind`` is one of
  ``local``, ``address``, ``scheduler_file``, ``ssh``, ``slurm``, ``pbs``,
  ``kubernetes``.  Libraries that only some users have (dask-jobqueue,
  dask-kubernetes) are imported only when their kind is used.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ClusterConfigError, shorten, shown_value

logger = logging.getLogger("dmixed")

KINDS = ("local", "address", "scheduler_file", "ssh", "slurm", "pbs", "kubernetes")
#: the keys a cluster configuration may have (others are refused)
CONFIG_KEYS = {"kind", "cluster", "client", "scale", "security", "address", "scheduler_file"}
_JOBQUEUE_KEYS = {
    "queue", "account", "cores", "processes", "memory", "walltime", "job_name",
    "job_extra_directives", "interface", "local_directory", "log_directory", "death_timeout",
}  # fmt: skip
#: the documented keys of each kind's ``cluster:`` mapping (keyword arguments of its
#: cluster class).  Others are refused: some run code on every worker (distributed's
#: ``preload``, a ``worker_class``, dask-jobqueue's ``job_script_prologue`` and
#: ``worker_extra_args``), which a configuration read from a file must never do.
CLUSTER_KEYS = {
    "local": {
        "n_workers", "threads_per_worker", "processes", "memory_limit", "host", "protocol",
        "interface", "scheduler_port", "dashboard_address", "local_directory", "silence_logs",
    },
    "ssh": {"hosts", "connect_options", "worker_options", "scheduler_options", "remote_python"},
    "slurm": _JOBQUEUE_KEYS,
    "pbs": _JOBQUEUE_KEYS | {"resource_spec"},
    "kubernetes": {"name", "namespace", "image", "n_workers", "resources", "env"},
    "address": set(),
    "scheduler_file": set(),
}  # fmt: skip
#: the documented keys of the mappings inside an ``ssh`` kind's ``cluster:``
SSH_OPTION_KEYS = {
    "worker_options": {"nthreads", "n_workers", "memory_limit", "local_directory"},
    "scheduler_options": {"port", "dashboard_address"},
    "connect_options": {"known_hosts", "username", "port", "client_keys"},
}
#: the documented keys of ``client:`` (distributed.Client) and ``security:``
#: (distributed.security.Security)
CLIENT_KEYS = {"timeout", "heartbeat_interval", "name", "direct_to_workers", "connection_limit"}
SECURITY_KEYS = {
    "require_encryption", "tls_ca_file", "tls_client_cert", "tls_client_key", "tls_ciphers",
    "tls_min_version", "tls_max_version",
}  # fmt: skip
#: ``security:`` settings that name files (they must exist)
SECURITY_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key")
DEFAULT_TIMEOUT = "30s"


def _relative_to(base: str, path):
    """``path`` joined to ``base`` when it is a relative file path (not a URL)."""
    if not isinstance(path, str) or not path or "://" in path or os.path.isabs(path):
        return path
    return os.path.join(base, path)


def resolve_config_paths(config: dict, base: str) -> dict:
    """A cluster mapping with its file settings (``scheduler_file``, the certificate
    files under ``security:``) relative to ``base``, the directory of the file it was
    read from (a job file, a cluster config), not to the working directory."""
    config = dict(config)
    if "scheduler_file" in config:
        config["scheduler_file"] = _relative_to(base, config["scheduler_file"])
    if isinstance(config.get("security"), dict):
        config["security"] = {
            k: _relative_to(base, v) if k in SECURITY_FILES else v
            for k, v in config["security"].items()
        }
    return config


@functools.cache
def _unique_key_loader():
    """yaml's SafeLoader refusing a key given twice in one mapping (built on first use,
    so that importing dmixed does not import yaml)."""
    import yaml

    class UniqueKeySafeLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # ``<<: *base`` then a key of base: an override, not a repeat
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found key {shown_value(key)} twice (only the last would count)",
                        key_node.start_mark,
                    )
                with contextlib.suppress(TypeError):  # unhashable: SafeLoader refuses it
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeySafeLoader


@functools.cache
def _no_alias_loader():
    """:func:`_unique_key_loader`'s loader refusing anchors (``&name``) and aliases
    (``*name``): nine aliases of nine aliases, seven levels deep, are a value of 9^7
    items written in twelve lines ("billion laughs"), which a message would print."""
    import yaml

    class NoAliasSafeLoader(_unique_key_loader()):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"found the {'alias *' if isinstance(event, yaml.AliasEvent) else 'anchor &'}"
                    f"{event.anchor[:100]}: anchors and aliases are not allowed here "
                    "(write each value out)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasSafeLoader


def safe_load_yaml(stream):
    """``yaml.safe_load`` that refuses a key given twice in one mapping, and anchors
    and aliases.

    PyYAML keeps the last of repeated keys without a word (``{a: 1, a: 2}`` is
    ``{a: 2}``); a job or cluster file with a key twice is refused instead.  Safe as
    ``yaml.safe_load``: the loader is a subclass of ``yaml.SafeLoader`` (plain YAML
    types only, no objects constructed).  Aliases make a value of size exponential in
    the file's ("billion laughs": twelve lines, 9^7 items), held once but expanded
    when printed or walked; neither a job file nor a cluster config has a use for them
    (nor for the merge key ``<<: *base``, which needs one).

    Raises
    ------
    yaml.YAMLError
        Invalid YAML, or a key repeated in one mapping (a ``ConstructorError`` naming
        the key and its line), or an anchor or alias (a ``ComposerError`` naming it and
        its line).
    """
    import yaml

    return yaml.load(stream, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader)


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        with open(path) as fh:
            data = safe_load_yaml(fh)
    except OSError as exc:
        raise ClusterConfigError(f"cannot read cluster config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        why = shorten(" ".join(str(exc).split()))
        raise ClusterConfigError(f"cluster config {path} is not valid YAML: {why}") from exc
    if not isinstance(data, dict):
        raise ClusterConfigError(f"cluster config {path} must be a mapping with a 'kind' key")
    return resolve_config_paths(data, os.path.dirname(os.path.abspath(path)))


def read_config(cluster: str | os.PathLike | dict | None) -> dict:
    """Normalize the ways a cluster can be named into one config dict."""
    if cluster is None or cluster == "local":
        return {"kind": "local"}
    if isinstance(cluster, dict):
        config = dict(cluster)
    else:
        text = str(cluster)
        path = Path(text)
        if "://" in text:
            config = {"kind": "address", "address": text}
        elif path.suffix in (".yaml", ".yml"):
            config = _load_yaml(path)
        elif path.suffix == ".json":
            return {"kind": "scheduler_file", "scheduler_file": str(path)}
        else:
            raise ClusterConfigError(
                f"cluster {text!r} is neither a scheduler address (tcp://, tls://), "
                "a scheduler file (.json) nor a cluster config (.yaml)"
            )
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ClusterConfigError(
            f"unknown key(s) {unknown} in cluster config; allowed: {sorted(CONFIG_KEYS)}"
            + _nesting_hint(unknown, config.get("kind"))
        )
    kind = config.get("kind")
    if kind not in KINDS:
        raise ClusterConfigError(
            f"cluster config 'kind' must be one of {KINDS}, got {shown_value(kind)}"
        )
    for key in ("cluster", "client", "security"):
        if key in config and not isinstance(config[key], (dict, type(None))):
            raise ClusterConfigError(f"cluster config '{key}' must be a mapping")
    _check_documented_keys(config, kind)
    scale = config.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise ClusterConfigError(
            f"cluster config 'scale' must be a number of jobs, got {shown_value(scale)}"
        )
    for needed, example in (("address", "tcp://host:8786"), ("scheduler_file", "scheduler.json")):
        if kind == needed and not config.get(needed):
            raise ClusterConfigError(
                f"cluster config of kind {kind!r} needs '{needed}' (e.g. {needed}: {example})"
            )
    address = str(config.get("address") or "")
    if address.startswith("tls://") and not config.get("security"):
        raise ClusterConfigError(
            f"the scheduler address {address} needs TLS certificates: give a cluster config "
            "(.yaml) with a 'security:' mapping (tls_ca_file, tls_client_cert, "
            "tls_client_key; see cluster_configs/tls.yaml) instead of the bare address"
        )
    return config


def _nested_keys(kind) -> dict[str, set[str]]:
    """The mappings nested in a cluster config and the keys each takes for ``kind``
    (every kind's ``cluster:`` keys where ``kind`` is not one of :data:`KINDS`)."""
    cluster = CLUSTER_KEYS[kind] if kind in CLUSTER_KEYS else set().union(*CLUSTER_KEYS.values())
    return {"cluster": cluster, "client": CLIENT_KEYS, "security": SECURITY_KEYS}


def _nesting_hint(unknown: list, kind) -> str:
    """Where keys of a nested mapping (``n_workers`` of ``cluster:``...) written at the
    config's top level belong for this config's ``kind``, with an example of the
    nesting; a key that only another kind's ``cluster:`` takes is named as such; empty
    if no key is either."""
    hints = []
    kind_text = kind if isinstance(kind, str) else "local"
    placed: set = set()
    for name, keys in _nested_keys(kind).items():
        misplaced = [k for k in unknown if k in keys]
        placed.update(misplaced)
        if misplaced:
            inner = ", ".join(f"{k}: ..." for k in misplaced)
            verb = "goes" if len(misplaced) == 1 else "go"
            hints.append(
                f"{', '.join(map(repr, misplaced))} {verb} one level down, in the config's "
                f"{name!r} mapping: in a job file, cluster: {{kind: {kind_text}, {name}: "
                f"{{{inner}}}}}; in a cluster .yaml file, kind: {kind_text} and {name}: "
                f"{{{inner}}}"
            )
    for key in unknown:
        kinds = [k for k in KINDS if key in CLUSTER_KEYS[k]]
        if key not in placed and kinds:
            hints.append(
                f"{key!r} is not an option of kind {kind_text!r}; it is one of the "
                f"'cluster' mapping of kind(s) {', '.join(kinds)}"
            )
    return "; " + "; ".join(hints) if hints else ""


def _refuse_unknown(given, allowed: set[str], where: str) -> None:
    unknown = sorted(set(given) - allowed)
    if not unknown:
        return
    hints = []
    for key in unknown[:20]:  # a message of bounded length, however many keys
        close = difflib.get_close_matches(str(key)[:100], sorted(allowed), n=1)
        hints.append(f"{shown_value(key)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if len(unknown) > 20:
        hints.append(f"and {len(unknown) - 20} more")
    raise ClusterConfigError(
        f"cluster config {where}: undocumented key(s) {', '.join(hints)}; allowed: "
        f"{sorted(allowed)}"
    )


def _line_breaks(value) -> bool:
    if isinstance(value, str):
        return "\n" in value or "\r" in value
    if isinstance(value, dict):
        return any(_line_breaks(v) for v in value.values())
    if isinstance(value, list):
        return any(_line_breaks(v) for v in value)
    return False


def _check_documented_keys(config: dict, kind: str) -> None:
    """Refuse keys of ``cluster:``, ``client:`` and ``security:`` that are not documented
    (:data:`CLUSTER_KEYS`, :data:`CLIENT_KEYS`, :data:`SECURITY_KEYS`)."""
    cluster = config.get("cluster") or {}
    _refuse_unknown(cluster, CLUSTER_KEYS[kind], f"'cluster' of kind {kind!r}")
    if kind == "local":
        _check_local_values(cluster)
    if kind == "ssh":
        for key, allowed in SSH_OPTION_KEYS.items():
            if cluster.get(key) is not None and not isinstance(cluster[key], dict):
                raise ClusterConfigError(f"cluster config 'cluster.{key}' must be a mapping")
            _refuse_unknown(cluster.get(key) or {}, allowed, f"'cluster.{key}'")
    env = cluster.get("env") if kind == "kubernetes" else None
    if env is not None:
        if not isinstance(env, dict):
            raise ClusterConfigError("cluster config 'cluster.env' must be a mapping")
        bad = sorted(k for k in env if str(k).upper().startswith(("DASK_", "PYTHON")))
        if bad:
            raise ClusterConfigError(
                f"cluster config 'cluster.env': {bad} refused (Dask and Python settings in "
                "the environment can load code into every worker)"
            )
    if _line_breaks(cluster):
        raise ClusterConfigError(
            "cluster config 'cluster': a value with a line break (it would add lines to "
            "the batch script that starts the workers)"
        )
    _refuse_unknown(config.get("client") or {}, CLIENT_KEYS, "'client'")
    _refuse_unknown(config.get("security") or {}, SECURITY_KEYS, "'security'")


def _check_local_values(cluster: dict) -> None:
    """Refuse values of a ``local`` config's ``cluster:`` mapping that ``LocalCluster``
    would refuse with a bare ``ValueError`` or ``TypeError`` mid-start."""
    from dask.utils import parse_bytes

    for key in ("n_workers", "threads_per_worker"):
        value = cluster.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ClusterConfigError(
                f"cluster config 'cluster.{key}' must be a whole number >= 0, "
                f"got {shown_value(value)}"
            )
    if "processes" in cluster and not isinstance(cluster["processes"], bool):
        raise ClusterConfigError(
            "cluster config 'cluster.processes' must be true or false, "
            f"got {shown_value(cluster['processes'])}"
        )
    limit = cluster.get("memory_limit")
    if limit is None or limit == "auto":
        return
    ok = not isinstance(limit, bool) and isinstance(limit, (int, float)) and limit >= 0
    if isinstance(limit, str):
        try:
            ok = parse_bytes(limit) >= 0
        except (ValueError, TypeError):
            ok = False
    if not ok:
        raise ClusterConfigError(
            f"cluster config 'cluster.memory_limit': {shown_value(limit)} is not a size "
            "(give bytes, a string such as '4GiB', a fraction of the machine's memory "
            "such as 0.5, or 'auto')"
        )


def security_of(config: dict):
    """distributed's ``Security`` from a config's ``security:`` mapping (None without one).

    Raises
    ------
    ClusterConfigError
        For keys that ``distributed.security.Security`` does not take, and certificate
        or key files that do not exist.
    """
    sec = config.get("security")
    if not sec:
        return None
    for key in SECURITY_FILES:
        if sec.get(key) and not Path(sec[key]).is_file():
            raise ClusterConfigError(
                f"cluster config 'security': {key} {sec[key]} does not exist or is not a file"
            )
    from distributed.security import Security

    try:
        return Security(**sec)
    except TypeError as exc:
        raise ClusterConfigError(f"cluster config 'security': {exc}") from exc


def _optional(module: str, package: str, kind: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ClusterConfigError(
            f"cluster kind {kind!r} needs the package {package!r}, which is not installed "
            f"(pip install {package})"
        ) from exc


#: Environment of the embedded cluster's worker processes, where this process's does
#: not set it: Arrow's mimalloc keeps the buffers it frees instead of giving them back
#: to the OS 10 ms later, so a chain's Parquet reads do not fault them in again for
#: every partition (benchmarks/RESULTS.md, ooc-s33: with the chains' tables kept too,
#: a chain faults in almost nothing after the first fit).  ``NUMPY_MADVISE_HUGEPAGE=0``
#: is not in it: a fit's functions run on the workers with numpy's huge-page advice off
#: already (:mod:`dmixed.kernels.pages`, as the driver's fit decides), and the advice
#: off for the whole worker process as well (Dask's own deserialization included) gave
#: no gain measured beyond that (benchmarks/RESULTS.md, g2pages-s60), while it would
#: change numpy's pages for everything else a user runs on the cluster.
WORKER_ENV = {"MIMALLOC_PURGE_DELAY": "-1"}


def run_credentials():
    """TLS credentials made for one run of the embedded cluster (distributed's
    ``Security.temporary()``: a self-signed certificate and key held in this process's
    memory and handed to the workers it starts).  The scheduler and workers accept only
    peers that hold them, so no other process, of this user or another, can connect to
    the cluster or submit work to it."""
    from distributed.security import Security

    return Security.temporary()


def _make_cluster(config: dict):
    """Start the cluster a config describes (None for address / scheduler-file kinds)."""
    kind = config["kind"]
    kwargs = dict(config.get("cluster") or {})
    if kind == "local":
        from distributed import LocalCluster

        defaults = {
            "n_workers": min(os.cpu_count() or 1, 4),
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
        }
        if kwargs.get("dashboard_address") is None:
            # no dashboard; the scheduler's HTTP routes on a free loopback port (its
            # default, 8787, may be taken by another cluster)
            kwargs.pop("dashboard_address", None)
            defaults["dashboard_address"] = "127.0.0.1:0"
            defaults["scheduler_kwargs"] = {"dashboard": False}
        defaults.update(kwargs)
        if defaults["processes"]:  # read when the worker process loads Arrow
            defaults["env"] = {k: os.environ.get(k, v) for k, v in WORKER_ENV.items()}
        if "protocol" not in kwargs and "security" not in kwargs:
            defaults.update(protocol="tls://", security=run_credentials())
        elif not defaults["processes"]:
            # threads only: the default transport (inproc://) takes no host
            defaults.setdefault("protocol", "tcp://")
        started = None
        try:
            with interrupts_ignored(bool(defaults["processes"])):
                started = LocalCluster(**defaults)
        except BaseException:  # a SIGTERM or SIGINT held back until the start ended
            if started is not None:
                started.close()
            raise
        return started
    if kind == "ssh":
        from distributed import SSHCluster

        return SSHCluster(**kwargs)
    if kind in ("slurm", "pbs"):
        jobqueue = _optional("dask_jobqueue", "dask-jobqueue", kind)
        cls = jobqueue.SLURMCluster if kind == "slurm" else jobqueue.PBSCluster
        cluster = cls(**kwargs)
        cluster.scale(jobs=int(config.get("scale", 1) or 1))
        return cluster
    if kind == "kubernetes":
        operator = _optional("dask_kubernetes.operator", "dask-kubernetes", kind)
        return operator.KubeCluster(**kwargs)
    return None


@contextlib.contextmanager
def interrupts_ignored(processes: bool) -> Iterator[None]:
    """SIGINT kept from the worker processes an embedded cluster starts, and held back
    from the command until the start has ended.

    A Ctrl-C reaches every process of the terminal's group: worker processes still
    importing their libraries (Python's own handler, a ``KeyboardInterrupt`` in an
    import) printed one traceback each before the command's one line.  SIGINT is
    blocked in the calling (main) thread for the seconds of the start: the threads the
    start creates (the cluster's event loop, the threads that spawn the workers) inherit
    the blocked mask, and so do the worker processes they spawn (``fork`` and ``exec``
    keep it, and Python never unblocks it), so the workers never receive one: the
    command closes them when it stops.

    The command itself still notes a Ctrl-C of the start: SIGINT's handler meanwhile is a
    Python one that records it (it runs in the main thread whichever thread the kernel
    hands the signal to; one left pending by the block reaches it when the block ends).
    SIGINT used to be ignored instead (``SIG_IGN``), and an ignored signal is not kept:
    a Ctrl-C of the start was lost and the job ran to its end.  When the block ends the
    handler found is given back and, if a SIGINT came meanwhile, called with it (the
    command's: ``KeyboardInterrupt``), so the caller closes what was started
    (:func:`_make_cluster`).  A SIGINT that was ignored before (a shell's background
    job) stays ignored, and nothing is held.

    A Python handler of SIGTERM (the command's: it ends the command as a Ctrl-C) is held
    back the same way: raised inside the start, it would leave a cluster half started
    and never closed.  SIGTERM is neither ignored nor blocked: an ignored or blocked
    signal is kept by the worker processes, which would then outlive a batch system's
    cancel.

    Only the main thread may set a signal's handler; elsewhere (and for threads only)
    nothing changes.  The handlers and the signal mask found are given back when the
    block ends, whether it succeeds or raises.

    Parameters
    ----------
    processes : bool
        Whether the cluster starts worker processes (False: threads, nothing changes).

    Raises
    ------
    KeyboardInterrupt
        When the block ends, if a SIGINT came during it (from the handler found;
        ``SIG_DFL`` is raised as the signal itself).
    """
    if not processes or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    held_term: list = []
    on_int = signal.getsignal(signal.SIGINT)
    on_term = signal.getsignal(signal.SIGTERM)
    masks = hasattr(signal, "pthread_sigmask")  # not on Windows: ignored there, as before
    hold_int = masks and on_int is not signal.SIG_IGN
    # the caller's mask, saved before anything below can change it: given back exactly
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set()) if masks else None
    int_set = term_set = False
    try:
        # every change is made inside the ``try``: one that raises part way (the resource
        # tracker's spawn out of file descriptors, a SIGTERM handler raising) still has
        # the handlers and the mask given back, a holding SIGINT handler never left behind
        if hold_int:
            int_set = True
            signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
        elif not masks:
            int_set = True
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if callable(on_term):
            term_set = True
            signal.signal(signal.SIGTERM, lambda signum, frame: held_term.append((signum, frame)))
        if mask is not None:
            # multiprocessing's resource tracker, started on first use in whichever thread
            # makes the first worker's lock, unblocks SIGINT in that thread after it has
            # spawned the tracker (the cluster's event loop: the workers it spawns then
            # receive a Ctrl-C); started here first, it leaves the start's masks alone.
            # It unblocks SIGINT and SIGTERM here too, whatever the caller had blocked:
            # the mask is set afterwards from the one saved, not added to
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask | {signal.SIGINT})
        yield
    finally:
        # a SIGINT left pending by the block is delivered here, to the holding handler
        # (``signal.signal`` runs the pending Python handlers before it changes one)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if int_set:  # None: a handler set outside Python, Python's own in practice
            signal.signal(signal.SIGINT, signal.default_int_handler if on_int is None else on_int)
        if term_set:
            signal.signal(signal.SIGTERM, on_term)
        if held_term:
            on_term(*held_term[0])
        if held:
            _act_on(on_int, *held[0])


def _act_on(handler, signum: int, frame) -> None:
    """What ``handler`` (a handler found by :func:`signal.getsignal`) does with a
    signal that was held back."""
    if callable(handler):
        handler(signum, frame)
    elif handler is None:
        signal.default_int_handler(signum, frame)
    elif handler is signal.SIG_DFL:
        signal.raise_signal(signum)


_CLIENT_CONFIG_KEYS = ("scheduler", "shuffle")


def _client_config() -> dict:
    import dask

    return {k: dask.config.get(k, None) for k in _CLIENT_CONFIG_KEYS}


def _restore_client_config(saved: dict) -> None:
    """Undo what a Client that failed to start left in Dask's config (it makes itself
    the default scheduler before it connects)."""
    import dask

    for key, value in saved.items():
        if value is None:
            dask.config.config.pop(key, None)
        else:
            dask.config.set({key: value})


def _default_client():
    """distributed's default client, or None."""
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _close_failed_default(before) -> None:
    """Close a Client that failed to start yet made itself distributed's default.

    It stays registered ("connecting") until the garbage collector frees it, and Dask's
    ``compute`` falls back to the default client when no scheduler is set: a later
    compute in the process would wait on it for ever."""
    failed = _default_client()
    if failed is not None and failed is not before:
        with contextlib.suppress(Exception):
            failed.close(timeout=1)


def _new_client(Client, started, config: dict, client_kwargs: dict, saved: dict):  # noqa: N803
    before = _default_client()
    try:
        if started is not None:
            return Client(started, **client_kwargs)
        if config["kind"] == "address":
            return Client(config["address"], **client_kwargs)
        path = config["scheduler_file"]
        if not Path(path).exists():
            raise ClusterConfigError(f"scheduler file {path} does not exist")
        return Client(scheduler_file=path, **client_kwargs)
    except BaseException:
        _close_failed_default(before)
        _restore_client_config(saved)
        raise


def _quiet_dmixed_errors(client) -> None:
    """Workers log no traceback of a task that raised one of dmixed's errors: the
    command reports it in one line (:mod:`dmixed.engines.dask.worker_logs`).  A cluster
    that refuses the plugin (workers without dmixed) keeps its logs."""
    from .engines.dask.worker_logs import QuietDmixedErrorsPlugin

    try:
        client.register_plugin(QuietDmixedErrorsPlugin())
    except Exception as exc:  # noqa: BLE001 - quieter logs are not worth a failed job
        logger.debug("worker logs keep dmixed's errors: %s", exc)


@contextlib.contextmanager
def connect(
    cluster: str | os.PathLike | dict | None = None,
    *,
    on_interrupt: Callable[[], None] | None = None,
) -> Iterator:
    """A ``distributed.Client`` for the named cluster; closes what it started.

    A scheduler that cannot be reached raises :class:`ConnectionError` after the
    client timeout (``client: {timeout: 30s}`` in the config), never hangs.

    Parameters
    ----------
    cluster : str, path, dict or None
        The cluster: an address, a scheduler file, a config file or a config
        (:func:`read_config`); None starts a local cluster.
    on_interrupt : callable, optional
        Called without arguments when a ``KeyboardInterrupt`` passes through (while
        the client connects or while it is used), before the client and the cluster
        are closed; the interrupt is raised again.  None (the default) changes
        nothing: the caller's logging is left as it was.
    """
    from distributed import Client

    config = read_config(cluster)
    client_kwargs = {"timeout": DEFAULT_TIMEOUT, **(config.get("client") or {})}
    security = security_of(config)
    if security is not None:
        client_kwargs["security"] = security
    try:
        started = _make_cluster(config)
    except KeyboardInterrupt:
        # an interrupt while a local cluster of threads starts (nothing holds it back
        # there: :func:`interrupts_ignored`) leaves that start to distributed, whose
        # threads log as they end after the command's last line: they are quieted too
        if on_interrupt is not None:
            on_interrupt()
        raise
    except (TypeError, RuntimeError) as exc:
        # a key the cluster class (or, with processes, its workers) does not take
        raise ClusterConfigError(
            f"cluster config 'cluster' for kind {config['kind']!r}: {shorten(str(exc))}"
        ) from exc
    saved = _client_config()
    try:
        try:
            client = _new_client(Client, started, config, client_kwargs, saved)
        except (ValueError, TypeError) as exc:  # unknown protocol, bad options, TLS without
            # certificates (a scheduler file naming a tls:// address)
            why = shorten(str(exc))
            raise ClusterConfigError(f"cluster {shown_value(cluster)}: {why}") from exc
        except (OSError, TimeoutError) as exc:
            where = config.get("address") or config.get("scheduler_file") or config["kind"]
            raise ConnectionError(
                f"could not reach the Dask scheduler at {where} within "
                f"{client_kwargs['timeout']}: {exc}"
            ) from exc
        logger.info("connected to %s (%s)", client.scheduler.address, config["kind"])
        _quiet_dmixed_errors(client)
        try:
            yield client
        except KeyboardInterrupt:
            if on_interrupt is not None:
                on_interrupt()
                on_interrupt = None  # once
            raise
        finally:
            client.close()
            # a close that times out leaves the client as Dask's scheduler
            _restore_client_config(saved)
    except KeyboardInterrupt:  # also while the client connects
        if on_interrupt is not None:
            on_interrupt()
        raise
    finally:
        if started is not None:
            started.close()
