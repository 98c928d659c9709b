"""Cluster selection for the ``dmixed`` command (``dmixed/cluster.py``).

``read_config`` normalizes the ways a cluster can be named (nothing, an address, a
scheduler file, a YAML config or a mapping); ``connect`` gives a Client and closes what
it started; a scheduler that cannot be reached is a ``ConnectionError`` after the
client timeout, never a hang.  Connections use one in-process ``LocalCluster``
(threads, 127.0.0.1) for the module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dask.utils import parse_timedelta

from dmixed import cluster
from dmixed.cluster import KINDS, ClusterConfigError, connect, read_config

from ._interrupts import signal_on_import

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "cluster_configs").glob("*.yaml"))
UNREACHABLE = "tcp://127.0.0.1:1"  # nothing listens on port 1


# --------------------------------------------------------------------------------------
# the configurations shipped in cluster_configs/
# --------------------------------------------------------------------------------------


def test_cluster_configs_directory_has_the_documented_files():
    names = {p.stem for p in CONFIGS}
    assert {"local", "slurm", "pbs", "kubernetes", "ssh", "tls"} <= names


def _accepted_keywords(kind: str) -> set[str] | None:
    """Keyword arguments of the class a kind's ``cluster:`` mapping is passed to (None if
    that class's library is not installed)."""
    if kind == "local":
        from distributed import LocalCluster, Nanny, Worker

        # LocalCluster passes unknown keywords (**worker_kwargs) on to each worker
        return {
            p
            for f in (LocalCluster.__init__, Nanny.__init__, Worker.__init__)
            for p in inspect.signature(f).parameters
        }
    if kind == "ssh":
        from distributed import SSHCluster

        return set(inspect.signature(SSHCluster).parameters)
    module, name = {
        "slurm": ("dask_jobqueue", "SLURMCluster"),
        "pbs": ("dask_jobqueue", "PBSCluster"),
        "kubernetes": ("dask_kubernetes.operator", "KubeCluster"),
    }[kind]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    cls = getattr(importlib.import_module(module), name)
    return set(inspect.signature(cls).parameters) | {"kwargs"}


def test_safe_load_yaml_refuses_a_key_given_twice():
    """PyYAML keeps the last of repeated keys without a word; safe_load_yaml refuses."""
    text = "kind: local\nclient: {timeout: 5s, timeout: 9s}\n"
    assert yaml.safe_load(text) == {"kind": "local", "client": {"timeout": "9s"}}
    with pytest.raises(yaml.YAMLError, match="found key 'timeout' twice"):
        cluster.safe_load_yaml(text)
    with pytest.raises(yaml.YAMLError, match="found key 'kind' twice"):
        cluster.safe_load_yaml("kind: local\nkind: ssh\n")
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        cluster.safe_load_yaml("!!python/object/apply:os.system [echo]\n")  # still safe


def test_cluster_config_with_a_key_twice_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: local\nkind: ssh\n")
    with pytest.raises(ClusterConfigError, match="found key 'kind' twice"):
        read_config(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("memory_limit", "lots"),
        ("memory_limit", -1),
        ("memory_limit", True),
        ("n_workers", "two"),
        ("threads_per_worker", -1),
        ("processes", "yes"),
    ],
)
def test_a_bad_local_cluster_value_is_a_cluster_config_error(key, value):
    """``memory_limit: lots`` was a bare ``ValueError`` from LocalCluster mid-start; a
    local config's values are now checked when it is read, naming the key and value."""
    config = {"kind": "local", "cluster": {"n_workers": 1, key: value}}
    with pytest.raises(ClusterConfigError, match=rf"cluster\.{key}.*{re.escape(repr(value))}"):
        read_config(config)


@pytest.mark.parametrize("value", ["4GiB", "auto", 0.5, 2**30, None])
def test_good_local_memory_limits_are_accepted(value):
    assert read_config({"kind": "local", "cluster": {"memory_limit": value}})["kind"] == "local"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_parses_with_a_valid_kind(path, tmp_path):
    config = read_config(path)
    assert config["kind"] in KINDS
    assert set(config) <= cluster.CONFIG_KEYS
    assert config == yaml.safe_load(path.read_text())  # nothing added or lost
    assert read_config(str(path)) == config  # str and PathLike alike
    # every config sets a client timeout that dask can parse
    assert parse_timedelta(config["client"]["timeout"]) > 0
    if config.get("security"):
        with pytest.raises(ClusterConfigError, match="tls_ca_file .* does not exist"):
            cluster.security_of(config)  # the example's paths are not on this machine
        for key in cluster.SECURITY_FILES:  # with files there: valid arguments of Security
            (tmp_path / key).write_text("")
            config["security"][key] = str(tmp_path / key)
        sec = cluster.security_of(config)
        assert sec.require_encryption
    if config["kind"] == "address":
        assert config["address"].startswith(("tcp://", "tls://"))
    if config["kind"] in ("slurm", "pbs"):
        assert int(config["scale"]) >= 1
    accepted = None if config["kind"] == "address" else _accepted_keywords(config["kind"])
    if accepted is not None:
        unknown = set(config.get("cluster") or {}) - accepted
        assert not unknown, f"{path.name}: not keyword arguments of the cluster class: {unknown}"


def test_local_config_documents_loopback_only_tls_and_no_dashboard():
    config = read_config(REPO / "cluster_configs/local.yaml")
    assert config["cluster"]["host"] == "127.0.0.1"
    # no protocol, security or dashboard given: TLS with run credentials, no dashboard
    assert not {"protocol", "security", "dashboard_address"} & set(config["cluster"])
    text = (REPO / "cluster_configs/local.yaml").read_text()
    assert "TLS" in text and "no other process" in text


# --------------------------------------------------------------------------------------
# read_config: dispatch
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, {"kind": "local"}),
        ("local", {"kind": "local"}),
        ("tcp://10.0.0.5:8786", {"kind": "address", "address": "tcp://10.0.0.5:8786"}),
        ("scheduler.json", {"kind": "scheduler_file", "scheduler_file": "scheduler.json"}),
        (
            "/shared/dask/s.json",
            {"kind": "scheduler_file", "scheduler_file": "/shared/dask/s.json"},
        ),
        (Path("s.json"), {"kind": "scheduler_file", "scheduler_file": "s.json"}),
    ],
)
def test_read_config_dispatch_on_addresses_and_scheduler_files(spec, expected):
    assert read_config(spec) == expected


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_read_config_loads_yaml_files(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_text("kind: local\ncluster:\n  n_workers: 3\nclient: {timeout: 5s}\n")
    expected = {"kind": "local", "cluster": {"n_workers": 3}, "client": {"timeout": "5s"}}
    assert read_config(path) == expected
    assert read_config(str(path)) == expected


def test_read_config_copies_a_mapping():
    given = {"kind": "address", "address": "tcp://h:1"}
    config = read_config(given)
    assert config == given and config is not given


@pytest.mark.parametrize("spec", ["cluster.txt", "scheduler", "my-cluster.cfg", "h:8786"])
def test_read_config_refuses_what_it_cannot_recognize(spec):
    with pytest.raises(ClusterConfigError, match="neither a scheduler address"):
        read_config(spec)


# --------------------------------------------------------------------------------------
# read_config: refused configurations
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, match",
    [
        ({"kind": "local", "workers": 2}, r"unknown key\(s\) \['workers'\]"),
        ({"kind": "local", "Cluster": {}, "timeout": 1}, r"\['Cluster', 'timeout'\]"),
        ({"kind": "kubernetess"}, "'kind' must be one of"),
        ({"cluster": {"n_workers": 1}}, "'kind' must be one of .* got None"),
        ({"kind": "local", "cluster": ["n_workers", 2]}, "'cluster' must be a mapping"),
        ({"kind": "local", "client": "30s"}, "'client' must be a mapping"),
        ({"kind": "address", "address": "tcp://h:1", "security": "yes"}, "'security'"),
    ],
)
def test_read_config_refuses_bad_configs(config, match):
    with pytest.raises(ClusterConfigError, match=match):
        read_config(config)


def test_unknown_keys_in_a_yaml_file_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: local\ncluster: {n_workers: 1}\nworker_options: {nthreads: 1}\n")
    with pytest.raises(ClusterConfigError, match=r"unknown key\(s\) \['worker_options'\]"):
        read_config(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("kind: [local\n", "is not valid YAML"),
        ("- kind: local\n", "must be a mapping with a 'kind' key"),
        ("", "must be a mapping with a 'kind' key"),
        ("local\n", "must be a mapping with a 'kind' key"),
    ],
)
def test_bad_yaml_files_are_refused(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ClusterConfigError, match=match):
        read_config(path)


def test_missing_yaml_file_is_refused(tmp_path):
    with pytest.raises(ClusterConfigError, match="cannot read cluster config"):
        read_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "config, then",
    [
        ({"kind": "address"}, "connect() raises KeyError: 'address' (dmixed fit: exit 1)"),
        (
            {"kind": "scheduler_file"},
            "connect() raises KeyError: 'scheduler_file' (dmixed fit: exit 1)",
        ),
        (
            {"kind": "address", "address": None},  # `address:` left empty in a YAML file
            "connect() calls Client(None), which silently starts a new LocalCluster with "
            "worker processes and a dashboard on :8787, instead of refusing the config",
        ),
    ],
    ids=["address-without-address", "scheduler_file-without-file", "address-empty"],
)
def test_kind_without_its_target_is_refused_by_read_config(config, then):
    try:
        read_config(config)
    except ClusterConfigError:
        return
    pytest.fail(f"dmixed bug: read_config accepts {config}; then {then}")


@pytest.mark.parametrize("key", ["cluster", "client", "security"])
def test_a_number_is_not_a_mapping(key):
    """read_config lets an int through for every mapping key (meant for ``scale``);
    connect then fails with "TypeError: 'int' object is not iterable"."""
    config = {"kind": "local", key: 5}
    try:
        read_config(config)
    except ClusterConfigError:
        return
    pytest.fail(f"dmixed bug: read_config accepts {config} (ints pass the mapping check)")


# --------------------------------------------------------------------------------------
# connect
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running():
    """An in-process cluster (threads) on 127.0.0.1 to connect to."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as lc:
        yield lc


def _works(client) -> bool:
    return client.submit(sum, [1, 2, 3]).result(timeout=30) == 6


def test_connect_to_an_address(running):
    with connect(running.scheduler_address) as client:
        assert client.scheduler.address == running.scheduler_address
        assert _works(client)
    assert client.status == "closed"
    assert running.status.name == "running"  # an external cluster is not closed


def test_connect_through_a_scheduler_file(running, tmp_path):
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": running.scheduler_address}))
    with connect(str(path)) as client:
        assert client.scheduler.address == running.scheduler_address
        assert _works(client)


def test_connect_through_a_yaml_config(running, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"kind": "address", "address": running.scheduler_address, "client": {"timeout": "5s"}}
        )
    )
    with connect(path) as client:
        assert _works(client)


def test_connect_starts_and_closes_a_local_cluster():
    config = {
        "kind": "local",
        "cluster": {
            "n_workers": 1,
            "processes": False,
            "protocol": "tcp://",
            "threads_per_worker": 1,
        },
    }
    with connect(config) as client:
        started = client.cluster
        assert started is not None
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")  # loopback only
        assert _works(client)
    assert started.status.name == "closed"


def test_local_workers_keep_arrows_freed_buffers(monkeypatch):
    """The embedded cluster's worker processes get :data:`WORKER_ENV` (mimalloc's purge
    delay), unless this process's environment sets it."""
    from dmixed.cluster import WORKER_ENV

    def worker_value():  # the worker's environment (os.environ.get would send ours)
        return os.environ.get("MIMALLOC_PURGE_DELAY")

    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    config = {"kind": "local", "cluster": {"n_workers": 1, "protocol": "tcp://"}}
    with connect(config) as client:
        got = client.run(worker_value)
    assert list(got.values()) == [WORKER_ENV["MIMALLOC_PURGE_DELAY"]]
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "25")
    with connect(config) as client:
        got = client.run(worker_value)
    assert list(got.values()) == ["25"]


def test_local_kind_with_threads_only():
    """``cluster: {processes: false}`` (workers as threads in the dmixed process) is a
    documented LocalCluster option, but connect() adds host=127.0.0.1 to it, which the
    in-process transport (inproc://, the default without processes) cannot use."""
    config = {"kind": "local", "cluster": {"n_workers": 1, "processes": False}}
    try:
        with connect(config) as client:
            assert _works(client)
    except RuntimeError as exc:
        pytest.fail(f"dmixed bug: kind local with processes: false does not start: {exc}")


@pytest.mark.parametrize("how", ["address", "scheduler_file", "yaml"])
def test_connect_to_an_unreachable_scheduler_raises_connection_error_in_bounded_time(
    tmp_path, how, monkeypatch
):
    """An unreachable scheduler is a ConnectionError naming the timeout, after the
    configured client timeout (the Client is given ``timeout="1s"``, not distributed's
    default; the wait itself is distributed's, so it is checked by what the Client is
    given, not by a clock that a loaded machine stretches)."""
    import distributed

    given = []
    real = distributed.Client

    def recording(*args, **kwargs):
        given.append(kwargs.get("timeout"))
        return real(*args, **kwargs)

    monkeypatch.setattr(distributed, "Client", recording)
    if how == "address":
        spec = {"kind": "address", "address": UNREACHABLE, "client": {"timeout": "1s"}}
    elif how == "scheduler_file":
        path = tmp_path / "stale.json"  # a scheduler file left by a scheduler that is gone
        path.write_text(json.dumps({"address": UNREACHABLE}))
        spec = {"kind": "scheduler_file", "scheduler_file": str(path), "client": {"timeout": "1s"}}
    else:
        spec = tmp_path / "c.yaml"
        spec.write_text(f"kind: address\naddress: {UNREACHABLE}\nclient: {{timeout: 1s}}\n")
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler") as info:
        with connect(spec):
            pass
    assert [parse_timedelta(t) for t in given] == [1]
    assert "1s" in str(info.value)


def test_connect_to_a_missing_scheduler_file_is_a_config_error(tmp_path):
    with pytest.raises(ClusterConfigError, match="does not exist"):
        with connect(str(tmp_path / "absent.json")):
            pass


@pytest.mark.parametrize(
    "kind, package, module",
    [
        ("slurm", "dask-jobqueue", "dask_jobqueue"),
        ("pbs", "dask-jobqueue", "dask_jobqueue"),
        ("kubernetes", "dask-kubernetes", "dask_kubernetes"),
    ],
)
def test_optional_library_missing_names_the_package(kind, package, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(ClusterConfigError, match=f"needs the package '{package}'") as info:
        with connect({"kind": kind, "cluster": {}}):
            pass
    assert f"pip install {package}" in str(info.value)


def test_bad_security_keys_are_a_config_error():
    config = {"kind": "address", "address": UNREACHABLE, "security": {"tls_bogus": "x"}}
    with pytest.raises(ClusterConfigError, match="'security'"):
        with connect(config):
            pass


@pytest.mark.parametrize(
    ("cluster", "match"),
    [
        ("foo://127.0.0.1:9", "unknown address scheme 'foo'"),
        ({"kind": "local", "cluster": {"processes": False, "bogus_key": 3}}, "bogus_key"),
    ],
)
def test_an_unusable_address_or_cluster_key_is_a_config_error(cluster, match):
    """What the configuration gets wrong is a ClusterConfigError (exit status 2 in the
    command), not distributed's ValueError or TypeError; and a Client that failed to
    start leaves Dask's scheduler setting as it was."""
    import dask

    before = dask.config.get("scheduler", None)
    with pytest.raises(ClusterConfigError, match=match):
        with connect(cluster):
            pass
    assert dask.config.get("scheduler", None) == before


def test_a_client_that_failed_to_start_is_not_left_as_the_default():
    """distributed registers a Client as the default before it connects; one that
    failed stayed registered ("connecting") until collected, and a later ``compute``
    with no scheduler set waited on it for ever (a hang seen in this suite)."""
    from distributed import default_client

    with pytest.raises(ClusterConfigError) as exc:
        with connect("foo://127.0.0.1:9"):
            pass
    assert exc.value is not None  # the traceback, and the frames it holds, still alive
    with pytest.raises(ValueError, match="No clients found"):
        default_client()


# --------------------------------------------------------------------------------------
# documented keys only (issue 15: a configuration read from a file runs no code)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, match",
    [
        ({"kind": "local", "cluster": {"preload": ["evil.py"]}}, r"'preload'"),
        ({"kind": "local", "cluster": {"worker_class": "evil.Worker"}}, r"'worker_class'"),
        ({"kind": "local", "cluster": {"n_worker": 2}}, r"did you mean 'n_workers'"),
        ({"kind": "local", "cluster": {"worker_kwargs": {"preload": "x"}}}, "'worker_kwargs'"),
        ({"kind": "slurm", "cluster": {"job_script_prologue": ["curl x | sh"]}}, "prologue"),
        ({"kind": "slurm", "cluster": {"worker_extra_args": ["--preload", "x"]}}, "extra_args"),
        (
            {"kind": "slurm", "cluster": {"job_extra_directives": ["--exclusive\ncurl x | sh"]}},
            "line break",
        ),
        ({"kind": "ssh", "cluster": {"worker_options": {"preload": "x"}}}, r"'preload'"),
        ({"kind": "ssh", "cluster": {"worker_options": "x"}}, "must be a mapping"),
        (
            {"kind": "kubernetes", "cluster": {"env": {"DASK_DISTRIBUTED__WORKER__PRELOAD": "x"}}},
            "DASK_DISTRIBUTED__WORKER__PRELOAD",
        ),
        ({"kind": "address", "address": "tcp://h:1", "cluster": {"n_workers": 1}}, "'cluster'"),
        (
            {"kind": "address", "address": "tcp://h:1", "client": {"serializers": ["pickle"]}},
            "'serializers'",
        ),
        (
            {"kind": "address", "address": "tcp://h:1", "security": {"extra_conn_args": {}}},
            "'extra_conn_args'",
        ),
    ],
)
def test_undocumented_keys_are_refused(config, match):
    with pytest.raises(ClusterConfigError, match=match):
        read_config(config)


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_documented_keys_are_keywords_of_the_cluster_class(kind):
    accepted = _accepted_keywords(kind)
    assert cluster.CLUSTER_KEYS[kind] <= accepted


def test_documented_client_and_security_keys_are_keywords():
    from distributed import Client
    from distributed.security import Security

    assert cluster.CLIENT_KEYS <= set(inspect.signature(Client).parameters)
    assert cluster.SECURITY_KEYS <= set(Security.__slots__)


def test_tls_address_without_certificates_is_refused():
    with pytest.raises(ClusterConfigError, match="needs TLS certificates.*tls.yaml"):
        read_config("tls://sched.example.org:8786")


def test_missing_certificate_file_is_a_config_error_naming_it(tmp_path):
    (tmp_path / "ca.pem").write_text("")
    config = {
        "kind": "address",
        "address": UNREACHABLE.replace("tcp", "tls"),
        "security": {"tls_ca_file": str(tmp_path / "ca.pem"), "tls_client_cert": "gone.pem"},
        "client": {"timeout": "1s"},
    }
    with pytest.raises(ClusterConfigError, match="tls_client_cert gone.pem does not exist"):
        with connect(config):
            pass


def test_embedded_cluster_admits_only_the_process_that_started_it(caplog):
    """TLS with credentials made for the run: another process, without credentials or
    with credentials of its own, cannot connect; the HTTP routes take a free loopback
    port, so a taken 8787 gives no warning."""
    import socket
    import subprocess
    import sys

    intruder = (
        "import sys\n"
        "from distributed import Client\n"
        "from distributed.security import Security\n"
        "for security in (None, Security.temporary()):\n"
        "    try:\n"
        "        Client(sys.argv[1], timeout='3s', security=security).close()\n"
        "        print('connected')\n"
        "    except Exception as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:
        pass  # someone holds it already: as good for this test
    config = {"kind": "local", "cluster": {"processes": False, "n_workers": 1}}
    with caplog.at_level(logging.WARNING), connect(config) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(abs, -3).result() == 3
        out = subprocess.run(
            [sys.executable, "-c", intruder, address], capture_output=True, text=True, timeout=60
        ).stdout.split("\n")
    taken.close()
    assert [line.split()[0] for line in out if line] == ["refused", "refused"], out
    assert not [r for r in caplog.records if "already in use" in r.getMessage()]


def test_file_settings_of_a_cluster_config_are_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.yaml"
    path.write_text(yaml.safe_dump({"kind": "scheduler_file", "scheduler_file": "s.json"}))
    monkeypatch.chdir(tmp_path)
    assert read_config(str(path))["scheduler_file"] == str(tmp_path / "conf" / "s.json")
    assert read_config("conf/c.yaml")["scheduler_file"] == str(tmp_path / "conf" / "s.json")


_START_LOCAL = """
from dmixed.cluster import connect

if __name__ == "__main__":
    try:
        with connect({"kind": "local", "cluster": {"n_workers": 2}}) as client:
            print("workers", len(client.scheduler_info()["workers"]), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("fails", [False, True])
def test_sigint_is_held_while_local_workers_start_and_restored_after(fails):
    """The one place dmixed changes SIGINT's handler (the embedded cluster's start)
    gives back the handler and the signal mask it found, whether the start succeeds or
    raises.  SIGINT is blocked meanwhile (the workers spawned inherit the mask), not
    ignored: ignored, a SIGINT of the start was lost."""
    before = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with cluster.interrupts_ignored(True):
            assert signal.getsignal(signal.SIGINT) not in (before, signal.SIG_IGN)
            assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
            if fails:
                raise RuntimeError("the cluster did not start")
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    with cluster.interrupts_ignored(False):  # threads only: nothing changes
        assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_sigint_while_local_workers_start_is_held_and_raised_after():
    """A SIGINT during the embedded cluster's start was ignored, so lost (the command
    ran to its end); it is now raised, once, when the start has ended.  An ignored
    SIGINT (a shell's background job) stays ignored."""
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with cluster.interrupts_ignored(True):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            reached.append("end of the start")
    assert reached == ["end of the start"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with cluster.interrupts_ignored(True):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_sigterm_handler_is_held_back_while_local_workers_start():
    """A Python handler of SIGTERM (the command's, which ends it as a Ctrl-C does) run
    inside the embedded cluster's start left the cluster half started and never closed;
    it now runs once the start has ended, and stays installed.  SIGTERM is not ignored
    (worker processes would keep an ignored signal), and its default is left as it is."""
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        handler = signal.getsignal(signal.SIGTERM)
        with cluster.interrupts_ignored(True):
            assert signal.getsignal(signal.SIGTERM) not in (handler, signal.SIG_IGN)
            signal.raise_signal(signal.SIGTERM)
            assert got == []
        assert got == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with cluster.interrupts_ignored(True):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def _unblocks_like_python_311():
    """``resource_tracker.ensure_running`` as Python 3.11 runs it the first time: it
    unblocks SIGINT and SIGTERM in the calling thread, whatever was blocked before."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_callers_signal_mask_is_given_back_exactly(monkeypatch):
    """A caller with SIGTERM blocked (to ``sigwait`` for it) had it unblocked after the
    cluster's start: the resource tracker started before the mask was saved unblocks
    it.  The mask found is now given back exactly, and SIGTERM stays blocked during
    the start too."""
    from multiprocessing import resource_tracker

    monkeypatch.setattr(resource_tracker, "ensure_running", _unblocks_like_python_311)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        with cluster.interrupts_ignored(True):
            assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_failing_set_up_of_the_start_gives_the_handlers_back(monkeypatch):
    """The holding SIGINT handler was installed outside the ``try``: when the resource
    tracker's start raised (out of file descriptors) it stayed, and every later Ctrl-C
    was swallowed.  A SIGTERM handler raising in the same window left it too."""
    from multiprocessing import resource_tracker

    def out_of_files():
        raise OSError(24, "Too many open files")

    before = signal.getsignal(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    monkeypatch.setattr(resource_tracker, "ensure_running", out_of_files)
    with pytest.raises(OSError, match="Too many open files"):
        with cluster.interrupts_ignored(True):
            pass
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)

    class Terminated(Exception):
        pass

    def on_term(signum, frame):
        raise Terminated

    monkeypatch.setattr(
        resource_tracker, "ensure_running", lambda: signal.raise_signal(signal.SIGTERM)
    )
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(Terminated):
            with cluster.interrupts_ignored(True):
                pass
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.getsignal(signal.SIGTERM) is on_term
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
def test_ctrl_c_while_local_workers_start_prints_no_worker_tracebacks(tmp_path):
    """A Ctrl-C while the embedded cluster's workers imported their libraries printed a
    KeyboardInterrupt traceback per worker (and stopped the command mid-start); the
    workers now start with SIGINT blocked; the command is interrupted once they have
    started (the Ctrl-C held until then), and closes them."""
    (tmp_path / "run.py").write_text(_START_LOCAL)
    # a worker sends SIGINT to the whole process group, as a Ctrl-C does, when it starts
    # to import distributed (the moment is the worker's own, not a guessed delay)
    env = signal_on_import(tmp_path, "worker:distributed", "SIGINT", group=True)
    proc = subprocess.run(
        [sys.executable, "run.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,  # the signal reaches this group only, never pytest's
    )
    stderr = _without_heartbeats_at_close(proc.stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, proc.stderr
    assert (proc.returncode, proc.stdout) == (0, "interrupted\n"), proc.stderr


def _without_heartbeats_at_close(stderr: str) -> str:
    """``stderr`` without distributed's own log records of a worker's heartbeat cut off
    because the connection closed under it (the record's exception chain ends in
    ``CommClosedError``: "ConnectionPool closing." or "Stream is closed"): a race inside
    distributed's close, at the end of the command, that has nothing to do with SIGINT
    (seen twice in CI). A record that mentions KeyboardInterrupt is always kept."""
    records = re.split(r"(?m)^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", stderr)
    return "".join(r for r in records if not _is_heartbeat_cut_at_close(r))


def _is_heartbeat_cut_at_close(record: str) -> bool:
    lines = record.rstrip().splitlines()
    return (
        "Failed to communicate with scheduler during heartbeat" in record
        and "KeyboardInterrupt" not in record
        and bool(lines)
        and lines[-1].startswith("distributed.comm.core.CommClosedError: ")
    )


def test_an_interrupt_through_connect_leaves_the_loggers_as_they_were(running):
    """An interrupt through ``connect`` set distributed's, asyncio's and tornado's
    loggers to CRITICAL for the rest of the process (in a notebook, the kernel's own
    records muted).  That is the command's choice only: ``connect`` changes no logger
    and calls ``on_interrupt`` when given, once, before it closes the client."""
    names = ["distributed", "distributed.client", "distributed.worker", "asyncio", "tornado"]
    before = {name: logging.getLogger(name).level for name in names}
    with pytest.raises(KeyboardInterrupt), connect(running.scheduler_address) as client:
        assert _works(client)
        raise KeyboardInterrupt
    assert {name: logging.getLogger(name).level for name in names} == before
    calls = []

    def note() -> None:
        calls.append(client.status)

    with pytest.raises(KeyboardInterrupt):
        with connect(running.scheduler_address, on_interrupt=note) as client:
            raise KeyboardInterrupt
    assert calls == ["running"]  # before the close
    assert client.status == "closed"
    assert {name: logging.getLogger(name).level for name in names} == before


def test_an_interrupt_while_the_cluster_starts_calls_on_interrupt(monkeypatch):
    """A Ctrl-C while a local cluster of threads starts (``processes: false``: nothing
    holds it back, and distributed's start catches no ``KeyboardInterrupt``) raised
    out of the start before ``connect`` called ``on_interrupt``: the command's
    loggers stayed loud, and the cluster's threads, closed after the command's
    "dmixed: error: interrupted", logged "TLS handshake failed" below it."""

    import distributed

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "LocalCluster", interrupted)
    calls = []
    threads = {"kind": "local", "cluster": {"processes": False, "protocol": "tcp://"}}
    with pytest.raises(KeyboardInterrupt):
        with connect(threads, on_interrupt=lambda: calls.append("quieted")):
            pass
    assert calls == ["quieted"]


def test_safe_load_yaml_refuses_aliases_and_still_what_it_refused():
    """Job files and cluster configs load without anchors and aliases (a value
    exponential in the file's size), so without the merge key ``<<: *base`` either;
    the loader refuses repeated keys and Python tags as before."""
    assert cluster.safe_load_yaml("a: [1, 2]\nb: x\n") == {"a": [1, 2], "b": "x"}
    for text, needle in [
        ("a: &x 1\nb: *x\n", "found the anchor &x"),
        ("a: [*x]\n", "found the alias \\*x"),
        ("base: &b {a: 1}\nover: {<<: *b, b: 3}\n", "found the anchor &b"),
        ("a: 1\na: 2\n", "found key 'a' twice"),
        ("!!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
    ]:
        with pytest.raises(yaml.YAMLError, match=needle):
            cluster.safe_load_yaml(text)


BOMB = "kind: [&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"
BOMB += "".join(f", &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)) + "]\n"


def test_a_cluster_config_of_aliases_is_refused_in_a_short_message(tmp_path):
    """A 429-byte cluster config of nine aliases of nine aliases (9^7 items) named by a
    job's ``cluster:`` took 12 s and 1.15 GB to print as the bad ``kind``; its anchors
    are refused, naming the file and the line, in one short message."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(ClusterConfigError, match="found the anchor &a0") as info:
        read_config(path)
    assert str(path) in str(info.value) and len(str(info.value)) < 1000
    with pytest.raises(ClusterConfigError, match="found the anchor &a0"):
        read_config(str(path))


def test_a_cluster_configs_bad_values_are_shown_bounded():
    """A long or nested bad value is shown cut (reprlib), not echoed whole."""
    nested: list = ["lol"] * 9
    for _ in range(6):
        nested = [nested] * 9
    with pytest.raises(ClusterConfigError, match="'kind' must be one of") as info:
        read_config({"kind": nested})
    assert len(str(info.value)) < 1000
    many = {f"x{i}": 1 for i in range(5000)}
    with pytest.raises(ClusterConfigError, match="and 4980 more") as info:
        read_config({"kind": "local", "cluster": many})
    assert len(str(info.value)) < 2000


@pytest.mark.parametrize(
    ("config", "misplaced", "nested"),
    [
        ({"kind": "local", "n_workers": 2}, "'n_workers'", "cluster: {kind: local, cluster: {"),
        ({"kind": "slurm", "queue": "q", "cores": 4}, "'cores', 'queue'", "kind: slurm, cluster:"),
        ({"kind": "local", "timeout": "30s"}, "'timeout'", "client: {timeout: ...}"),
    ],
)
def test_a_nested_key_at_the_top_says_where_it_belongs(config, misplaced, nested):
    """The README listed ``n_workers``... as keys of "a job's cluster: mapping", and a job
    that wrote them so (``cluster: {kind: local, n_workers: 2}``) was refused with the
    allowed top-level keys only; the message now says they go one level down, with the
    nesting written out (and the README shows it)."""
    with pytest.raises(ClusterConfigError, match="unknown key") as info:
        read_config(config)
    verb = "goes" if "," not in misplaced else "go"
    assert f"{misplaced} {verb} one level down" in str(info.value)
    assert nested in str(info.value)
    fixed = {"kind": config["kind"], "cluster": {k: v for k, v in config.items() if k != "kind"}}
    if "timeout" in config:
        fixed = {"kind": "local", "client": {"timeout": "30s"}}
    assert read_config(fixed)["kind"] == config["kind"]


@pytest.mark.parametrize(
    ("config", "said", "not_said"),
    [
        (
            {"kind": "address", "address": "tcp://h:8786", "n_workers": 2},
            "'n_workers' is not an option of kind 'address'; it is one of the 'cluster' "
            "mapping of kind(s) local, kubernetes",
            "one level down",
        ),
        (
            {"kind": "slurm", "n_workers": 2},
            "'n_workers' is not an option of kind 'slurm'",
            "one level down",
        ),
        (
            {"kind": "local", "queue": "q"},
            "'queue' is not an option of kind 'local'; it is one of the 'cluster' mapping "
            "of kind(s) slurm, pbs",
            "one level down",
        ),
        (
            {"kind": "local", "name": "x"},
            "'name' goes one level down, in the config's 'client' mapping",
            "'cluster' mapping: in a job file",
        ),
    ],
)
def test_a_key_of_another_kind_is_not_advised_into_this_kinds_mapping(config, said, not_said):
    """The hint reads the config's own kind: a key its ``cluster:`` would refuse again
    (``n_workers`` of an ``address`` or ``slurm`` config, ``queue`` of a ``local`` one) is
    named as another kind's option, not advised one level down; ``name`` of a ``local``
    config belongs to ``client:`` only."""
    with pytest.raises(ClusterConfigError, match="unknown key") as info:
        read_config(config)
    assert said in str(info.value)
    assert not_said not in str(info.value)


def test_the_readme_shows_the_nested_cluster_mapping():
    """The README's cluster-config paragraph shows the two ``cluster:`` levels."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    assert "  cluster:            # the job's cluster config\n    kind: local\n" in text
    assert "    cluster:          # the config's options of the LocalCluster\n" in text
