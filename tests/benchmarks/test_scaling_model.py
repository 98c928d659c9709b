"""The scaling model's arithmetic (benchmarks/scaling_model.py) and the bench's idle time."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmixed.engines.dask import routing

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    """The model, from the benchmarks folder (it imports only dmixed and numpy)."""
    spec = importlib.util.spec_from_file_location("scaling_model", BENCHMARKS / "scaling_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def model():
    return _load()


@pytest.fixture
def bench_dask(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_dask

    return bench_dask


def test_partial_is_cheaper_is_the_routers_rule():
    assert routing.partial_is_cheaper(250, 229)
    assert not routing.partial_is_cheaper(229, 229)
    assert not routing.partial_is_cheaper(62, 240)


@given(
    a=st.floats(5e-9, 100e-9),
    b=st.floats(0.0, 500e-9),
    groups=st.lists(st.sampled_from([2e5, 1e6, 2e6]), min_size=2, max_size=3, unique=True),
)
@settings(max_examples=25, deadline=None)
def test_fit_data_pass_recovers_a_row_and_a_group_a_chain(a, b, groups):
    model = _load()
    points = [(25e6, g, w, a * 25e6 + b * g * w) for g in groups for w in (1, 2)]
    split = model.fit_data_pass(points)
    assert split["rank"] == 2
    assert split["a"] == pytest.approx(a, rel=1e-9, abs=1e-15)
    assert split["b"] == pytest.approx(b, rel=1e-9, abs=1e-15)
    for p in split["points"]:
        assert p["fitted"] == pytest.approx(p["seconds"], rel=1e-9)


@given(
    a=st.lists(st.floats(5e-9, 100e-9), min_size=3, max_size=3),
    b=st.floats(0.0, 500e-9),
    c=st.floats(0.0, 0.2),
    groups=st.lists(st.sampled_from([2e4, 2e5, 1e6, 2e6]), min_size=2, max_size=3, unique=True),
)
@settings(max_examples=25, deadline=None)
def test_fit_data_pass_per_chain_recovers_a_row_per_groups_a_group_and_a_chain(a, b, c, groups):
    model = _load()
    a_of = dict(zip(sorted(groups), a, strict=False))
    points = [(25e6, g, w, a_of[g] * 25e6 + b * g * w + c * w) for g in groups for w in (1, 2)]
    split = model.fit_data_pass(points, per_chain=True)
    assert split["rank"] == split["unknowns"] == len(groups) + 2
    for g in groups:
        assert split["a_by_groups"][g] == pytest.approx(a_of[g], rel=1e-7, abs=1e-15)
    assert split["b"] == pytest.approx(b, rel=1e-7, abs=1e-14)
    assert split["c"] == pytest.approx(c, rel=1e-7, abs=1e-9)
    for p in split["points"]:
        assert p["fitted"] == pytest.approx(p["seconds"], rel=1e-9)


def test_fit_data_pass_per_chain_needs_two_numbers_of_groups(model):
    # one number of groups at 1 and 2 workers: b G W and c W are the same column
    points = [(25e6, 2e5, 1, 1.0), (25e6, 2e5, 2, 1.1)]
    split = model.fit_data_pass(points, per_chain=True)
    assert split["rank"] < split["unknowns"] == 3
    plain = model.fit_data_pass(points)
    assert plain["c"] == 0.0 and plain["unknowns"] == 2
    assert plain["a_by_groups"] == {2e5: plain["a"]}


def test_predict_counts_a_chains_constant_once_a_worker(model):
    base = model.predict(_constants(), 100_000_000, 8, 25.0, files=128, round_trips=4)
    with_c = model.predict(
        {**_constants(), "per_chain": 0.05}, 100_000_000, 8, 25.0, files=128, round_trips=4
    )
    assert base["parts"]["a chain"] == 0.0
    assert with_c["parts"]["a chain"] == 0.05
    assert with_c["fit"] == pytest.approx(base["fit"] + 0.05)


def test_fit_data_pass_of_one_ratio_cannot_split(model):
    # 25M rows at 2M groups on 1 worker and 50M at 2M on 2: the same rows a group a chain
    points = [(25e6, 2e6, 1, 1.0), (50e6, 2e6, 2, 2.0)]
    assert model.fit_data_pass(points)["rank"] == 1


def test_groups_seen_is_the_expected_count_of_uniform_draws(model):
    rng = np.random.default_rng(0)
    for rows, groups in [(10_000, 50_000), (100_000, 20_000), (60_000, 20_000)]:
        seen = np.unique(rng.integers(0, groups, rows)).size
        assert model.groups_seen(rows, groups) == pytest.approx(seen, rel=0.01)


def test_chain_form_applies_the_routers_rule_file_by_file(model, monkeypatch):
    # 100M rows in 128 files: 2M groups, 16 chains of 8 files (6.25M rows): after 8
    # files 1.91M groups seen, 229 MB of partial against 250 MB of rows
    form, sent = model.chain_form(100_000_000, 2_000_000, 16, 128)
    assert form == "partials"
    assert sent == pytest.approx(model.groups_seen(6.25e6, 2e6) * model.GROUP_BYTES)
    assert model.GROUP_BYTES == 120 and model.ROW_BYTES == 40
    # 32 chains of 4 files: the partial of 1.6M groups (190 MB) against 125 MB of rows
    assert model.chain_form(100_000_000, 2_000_000, 32, 128) == ("rows", pytest.approx(125e6))
    # the first file already decides at 200k groups: 781k rows (31 MB) against 24 MB
    assert model.chain_form(100_000_000, 200_000, 16, 128)[0] == "partials"
    calls = []

    def never(rows_bytes, partial_bytes):
        calls.append((rows_bytes, partial_bytes))
        return False

    monkeypatch.setattr(model, "partial_is_cheaper", never)
    assert model.chain_form(100_000_000, 200_000, 16, 128)[0] == "rows"
    assert len(calls) == 8  # once after each of the chain's files


def test_scan_speedup_follows_the_16_core_curve(model):
    assert model.scan_speedup(1) == 1.0
    s16 = np.mean(model.SCAN_16_CORES[1]) / np.mean(model.SCAN_16_CORES[16])
    assert model.scan_speedup(16) == pytest.approx(s16)
    assert model.scan_speedup(32) == pytest.approx(s16)
    between = model.scan_speedup(3)
    assert model.scan_speedup(2) < between < model.scan_speedup(4)


def _constants(groups=2_000_000):
    return {
        "per_row": 40e-9,
        "per_group_chain": 100e-9,
        "optimization": 0.2,
        "serial": 0.1,
        "per_worker": 0.001,
        "groups": groups,
    }


def test_predict_adds_the_parts(model):
    pr = model.predict(_constants(), 100_000_000, 8, 25.0, files=128, round_trips=4)
    assert pr["exchange"] == "partials"
    assert pr["parts"]["data pass rows"] == pytest.approx(40e-9 * 1e8 / 8)
    assert pr["parts"]["groups a chain"] == pytest.approx(100e-9 * 2e6)
    assert pr["parts"]["routed rows"] == 0.0
    assert pr["parts"]["optimization"] == pytest.approx(0.2 / 8)
    assert pr["parts"]["serial"] == pytest.approx(0.1 + 4 * 6 * 0.001)
    assert pr["fit"] == pytest.approx(sum(pr["parts"].values()))
    assert pr["scan"] == pytest.approx(25e-9 * 1e8 / 8)


def test_predict_with_the_16_core_curve_bounds_the_rows_by_the_scan(model):
    c = _constants()
    ideal = model.predict(c, 100_000_000, 1, 25.0)
    curve = model.predict(c, 100_000_000, 1, 25.0, curve=True)
    assert curve == ideal  # one thread: the same
    at16 = model.predict(c, 100_000_000, 16, 25.0, curve=True)
    assert at16["scan"] == pytest.approx(2.5 / model.scan_speedup(16))
    # 40 ns a row over 16 workers (0.25 s) is below the saturated scan (~0.6 s)
    assert at16["parts"]["data pass rows"] == pytest.approx(at16["scan"])


def test_predict_of_a_chain_that_routes_pays_a_row_not_a_group(model):
    c = _constants(groups=20_000_000)
    pr = model.predict(c, 100_000_000, 4, 25.0, route_ns=10.0)
    assert pr["exchange"] == "rows"
    assert pr["parts"]["groups a chain"] == 0.0
    assert pr["parts"]["routed rows"] == pytest.approx(10e-9 * 1e8 / 4)


def test_least_disturbed_keeps_the_fastest_run_of_each_series(model):
    def entry(groups, workers, fit, cpu):
        return {"groups": groups, "workers": workers, "fit_seconds": {"median": fit}, "cpu": cpu}

    runs = [
        (25, entry(2, 1, 1.4, "a")),
        (25, entry(2, 1, 1.2, "b")),
        (25, entry(2, 2, 8.9, "c")),
        (25, entry(2, 2, 1.1, "d")),
        (20, entry(2, 1, 0.9, "e")),  # other rows: another series
    ]
    kept = model.least_disturbed(runs)
    found = [(r, e["workers"], e["cpu"]) for r, e in kept]
    assert found == [(20, 1, "e"), (25, 1, "b"), (25, 2, "d")]


def test_idle_seconds_is_the_wall_no_task_covers(bench_dask):
    def rec(*spans):
        return {"startstops": [{"action": "compute", "start": a, "stop": b} for a, b in spans]}

    records = [
        rec((100.5, 101.5), (102.0, 102.2)),  # 1.0 and 0.2
        rec((101.0, 101.8)),  # overlaps the first: adds 0.3
        {"startstops": [{"action": "transfer", "start": 101.8, "stop": 102.0}]},
        rec((99.0, 100.2)),  # before the fit, clipped to 0.2
        rec((103.5, 104.0)),  # after the fit: nothing
    ]
    assert bench_dask.idle_seconds(records, 100.0, 3.0) == pytest.approx(3.0 - 1.7)
    assert bench_dask.idle_seconds([], 100.0, 3.0) == 3.0
    assert math.isclose(bench_dask.idle_seconds([rec((90.0, 110.0))], 100.0, 3.0), 0.0)


def test_idle_seconds_counts_the_busy_spans_given(bench_dask):
    # a direct-call round trip (no task) overlapping a task's end: 100.5-101.0 and
    # 101.0-101.6 busy, with a span outside the fit clipped away
    records = [{"startstops": [{"action": "compute", "start": 100.5, "stop": 101.0}]}]
    spans = [(100.8, 101.6), (104.0, 105.0)]
    assert bench_dask.idle_seconds(records, 100.0, 3.0, spans) == pytest.approx(3.0 - 1.1)
    assert bench_dask.idle_seconds([], 100.0, 3.0, [(99.0, 100.5)]) == pytest.approx(2.5)


def test_direct_calls_times_the_engines_direct_round_trips(bench_dask, monkeypatch):
    from types import SimpleNamespace

    from dmixed.engines.dask import evaluator

    def fake(client, recorder, where, returned):
        return [len(recorder.stages)]

    monkeypatch.setattr(evaluator, "run_recorded", fake)
    with bench_dask.DirectCalls() as direct:
        assert evaluator.run_recorded(None, SimpleNamespace(stages=[1, 2, 3]), [], []) == [3]
        assert evaluator.run_recorded(None, SimpleNamespace(stages=[1]), [], []) == [1]
    assert evaluator.run_recorded is fake  # given back
    assert direct.stages == [3, 1]
    assert len(direct.spans) == 2
    assert all(a <= b for a, b in direct.spans)


def test_fit_idle_parts_cut_the_wall_in_turn(bench_dask, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_fit_idle

    def rec(key, start, stop, action="compute"):
        return {"key": key, "startstops": [{"action": action, "start": start, "stop": stop}]}

    records = [
        rec(("chain_partials-x", 0), 100.1, 102.0),
        rec(("chain_partials-x", 1), 100.2, 102.5),
        rec("moved_part-x", 102.5, 102.7, "transfer"),
        rec(("combined_block-x", 0), 102.6, 102.8),
        rec(("combined_block-x", 1), 102.8, 103.0),
        rec("block_moments-y", 103.0, 103.1),
    ]
    spans = bench_fit_idle.Spans()
    spans.calls = [
        ("assemble_blocks", 103.05, 103.25, 0.05),
        ("run_recorded", 103.3, 103.6, 0.0),
        ("run_recorded", 103.6, 103.7, 0.0),
    ]
    parts = bench_fit_idle.fit_parts(records, spans, 100.0, 103.8)
    expected = {
        "start": 0.1,
        "chains": 2.4,
        "exchange": 0.3,
        "combine": 0.2,
        "evaluators": 0.1,
        "driver": 0.2,
        "assemble": 0.2,
        "assemble_cpu": 0.05,
        "round_trips": 0.4,
        "end": 0.1,
        "no_task": 0.1 + 0.1 + 0.2 + 0.4 + 0.1,
        "neither": 0.1 + 0.1 + 0.2 + 0.1,
    }
    assert parts["trips"] == 2
    assert {k: parts[k] for k in expected} == pytest.approx(expected)
    # a fit whose round trips ran as tasks: no direct call counted
    spans.calls = spans.calls[:1]
    parts = bench_fit_idle.fit_parts(records, spans, 100.0, 103.8)
    assert parts["trips"] == 0 and math.isnan(parts["round_trips"])
    assert parts["neither"] == pytest.approx(parts["no_task"])


def test_fit_idle_keeps_results_only_when_asked(bench_dask, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_fit_idle

    assert bench_fit_idle.parse_args(["--dir", "d"]).keep_results is False
    args = bench_fit_idle.parse_args(["--dir", "d", "--keep-results", "--fits", "2"])
    assert args.keep_results is True and args.fits == 2


def _entry(workers, *, no_task=0.6, neither=0.25, calls=0.35, optimization=0.2):
    return {
        "workers": workers,
        "step": {"engine": "DaskEngine", "latency_seconds": 0.02},
        "cpu_seconds": {
            "data_pass": {"driver": 0.1, "workers": 1.0},
            "optimization": {"driver": 0.1, "workers": optimization},
        },
        "driver_thread_cpu": {"median": 0.05},
        "no_task_running": {"median": no_task},
        "no_task_or_direct_call": {"median": neither},
        "direct_call_seconds": {"median": calls},
    }


def _args(serial, cpu_from=2):
    import argparse

    return argparse.Namespace(serial=serial, cpu_from=cpu_from, round_trips=4, task_ms=0.5)


def test_serial_calls_leaves_the_workers_compute_in_the_direct_calls_to_o(model):
    entries = {1: _entry(1), 2: _entry(2)}
    split = {"a": 40e-9, "b": 100e-9}
    gaps = model.constants(entries, 2_000_000, split, _args("gaps"))
    calls = model.constants(entries, 2_000_000, split, _args("calls"))
    assert gaps["serial"] == pytest.approx(0.6)
    # the calls' 0.35 s less the 0.2 worker-s of O divided between the 2 workers
    assert calls["serial"] == pytest.approx(0.25 + 0.35 - 0.2 / 2)
    assert calls["optimization"] == gaps["optimization"] == pytest.approx(0.2)


def test_serial_calls_counts_no_less_than_the_seconds_with_neither(model):
    entries = {1: _entry(1), 2: _entry(2, calls=0.05, optimization=0.4)}
    c = model.constants(entries, 2_000_000, {"a": 0.0, "b": 0.0}, _args("calls"))
    assert c["serial"] == pytest.approx(0.25)
