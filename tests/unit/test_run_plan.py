"""One typed run plan: a run's topology is built once and its workload drawn once; every
daemon's settings round-trip through their JSON form to equal dataclasses; no daemon
keeps its own default for a setting the plan gives."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

import testbed.scenario as scenario_module
from testbed.core import workload as W
from testbed.core.engine import EngineConfig
from testbed.harness.plan import PLANNED_CSV, RunPlan
from testbed.harness.run import Deployment
from testbed.nodes.common import NodeConfig
from testbed.nodes.engine import engine_config
from testbed.nodes.helper import settings as helper_settings
from testbed.plan import EnginePlacement, NodePlan, PlanError, from_plain, to_plain
from testbed.scenario import (
    ContentConfig,
    DeliveryConfig,
    EngineSection,
    Scenario,
    ScenarioError,
    ViewersConfig,
    load_scenario,
)
from testbed.traces import read_trace

REPO = Path(__file__).resolve().parents[2]
NODES = REPO / "testbed" / "nodes"
CA, SALT, T0 = b"\x01" * 32, b"\x02" * 16, 1000.0


def _scenarios() -> list[Path]:
    """Every scenario file under experiments/ (the sweep files are not scenarios), but the
    simulation's scale scenarios (an hour of a million sessions each: their plans are
    checked by test_the_scale_scenarios_plan_at_a_shorter_duration)."""
    out = []
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        if "scale" in path.relative_to(REPO / "experiments").parts:
            continue
        try:
            load_scenario(path)
        except ScenarioError:
            continue
        out.append(path)
    return out


SCENARIOS = _scenarios()


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "scale").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_scale_scenarios_plan_at_a_shorter_duration(path):
    sc = load_scenario(path).with_overrides({"duration_s": 12, "warmup_s": 6})
    plan = RunPlan.build(sc)
    helpers = sc.topology.params["helpers"]
    assert len(plan.roles.helpers) == helpers and len(plan.roles.viewers) == helpers // 10
    assert plan.sessions and all(s.helper in plan.roles.helpers for s in plan.sessions)


def test_the_experiments_include_the_two_main_scenarios():
    names = {p.relative_to(REPO / "experiments").as_posix() for p in SCENARIOS}
    assert {"default.yaml", "constrained.yaml"} <= names


class Counts:
    """Calls to the topology builder and to the workload generators."""

    def __init__(self, monkeypatch):
        self.n = {"build_spec": 0, "topology": 0, "workload": 0}
        build_spec, generate = Scenario.build_spec, scenario_module.topologies.generate
        draw, replay = W.generate, W.sessions_from_trace

        def counted(key, fn):
            def wrapper(*a, **k):
                self.n[key] += 1
                return fn(*a, **k)
            return wrapper

        monkeypatch.setattr(Scenario, "build_spec", counted("build_spec", build_spec))
        monkeypatch.setattr(scenario_module.topologies, "generate", counted("topology", generate))
        monkeypatch.setattr(W, "generate", counted("workload", draw))
        monkeypatch.setattr(W, "sessions_from_trace", counted("workload", replay))


def _oracle(sc: Scenario) -> Scenario:
    return sc.with_overrides({"policy": "oracle"})


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_a_run_builds_its_topology_once_and_draws_its_workload_once(path, monkeypatch,
                                                                    tmp_path):
    sc = load_scenario(path)
    counts = Counts(monkeypatch)
    plan = RunPlan.build(sc)
    configs = plan.write(tmp_path, T0, CA, SALT)  # nodes/*.json and workload/planned.csv
    plan.node_plans(T0, SALT)
    plan.planned_requests()
    drawn = 1 if sc.viewers.model == "workload" else 0
    assert counts.n == {"build_spec": 1, "topology": 1, "workload": drawn}
    assert set(configs) == {name for name, _, _ in plan.daemons()}
    assert (tmp_path / PLANNED_CSV).exists() == (drawn == 1)
    # a deployment takes the plan as it is: nothing rebuilt, nothing redrawn
    dep = Deployment(sc, tmp_path / "run", plan=plan)
    assert dep.spec is plan.spec and counts.n["build_spec"] == 1
    # ... and builds it once when not given one
    Deployment(sc, tmp_path / "run2")
    assert counts.n == {"build_spec": 2, "topology": 2, "workload": 2 * drawn}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_node_plan_round_trips_through_its_json(path, tmp_path):
    sc = load_scenario(path)
    plan = RunPlan.build(sc)
    written = plan.write(tmp_path, T0, CA, SALT)
    typed = plan.node_plans(T0, SALT)
    for name, _, _ in plan.daemons():
        cfg = NodeConfig.load(tmp_path / "nodes" / f"{name}.json")
        assert cfg.node_plan() == typed[name]
        assert NodePlan.from_plain(json.loads(json.dumps(written[name]["plan"]))) == typed[name]
        p = typed[name]
        assert (p.content, p.delivery, p.viewers, p.engine) == (
            sc.content, sc.delivery, sc.viewers, sc.engine)
        assert p.t0 == cfg.t0 and p.ip == cfg.ip and p.seed == cfg.seed
        # the addresses the node config keeps for the drivers come from the same plan
        assert cfg.extra["engine"] == dataclasses.asdict(p.engine_at)
        assert cfg.helpers == p.helpers and cfg.master == {"name": p.master, "ip": p.master_ip}


def test_the_daemons_settings_are_the_plans(tmp_path):
    sc = load_scenario(REPO / "experiments" / "default.yaml").with_overrides(
        {"delivery.cache_mb": 4.35, "delivery.push_priority": "normal"})
    plan = RunPlan.build(sc)
    plan.write(tmp_path, T0, CA, SALT)
    helper = helper_settings(NodeConfig.load(tmp_path / "nodes" / "h1.json"))
    assert helper.cache_bytes == sc.delivery.cache_bytes == 4_350_000  # rounded, not cut
    assert helper.push_port is None and helper.t0 == T0 and helper.pseudonym_key == SALT
    # only helpers hold the pseudonym key: nobody else can make or undo a pseudonym
    for path in (tmp_path / "nodes").glob("*.json"):
        cfg = json.loads(path.read_text())
        assert (cfg["plan"]["pseudonym_key"] == SALT.hex()) == (cfg["role"] == "helper"), path
        assert cfg["role"] == "helper" or SALT.hex() not in path.read_text(), path
    assert helper.engine == "engine" and helper.peers == [f"h{i}" for i in range(2, 9)]
    engine = engine_config(NodeConfig.load(tmp_path / "nodes" / "engine.json"))
    e = sc.engine
    assert (engine.min_train_s, engine.retrain_s, engine.train_window_s, engine.top,
            engine.prefix, engine.arrivals_horizon_s, engine.demand.horizon_s) == (
        e.min_train_s, e.retrain_s, e.train_window_s, e.top, e.prefix_segments,
        e.arrivals_horizon_s, e.horizon_s)


def test_the_core_engine_defaults_are_the_scenario_s():
    """One default each: a bare EngineConfig learns as a scenario's engine section does
    (min_train_s 40 s, the scenario's documented default)."""
    core, section = EngineConfig(), EngineSection()
    assert core.min_train_s == section.min_train_s == 40.0
    assert (core.retrain_s, core.train_window_s, core.top, core.prefix,
            core.arrivals_horizon_s, core.demand.horizon_s) == (
        section.retrain_s, section.train_window_s, section.top, section.prefix_segments,
        section.arrivals_horizon_s, section.horizon_s)


def test_the_oracle_plans_with_the_sessions_the_viewers_play(tmp_path):
    sc = _oracle(load_scenario(REPO / "experiments" / "default.yaml"))
    plan = RunPlan.build(sc)
    plan.write(tmp_path, T0, CA, SALT)
    nodes = {n: NodeConfig.load(tmp_path / "nodes" / f"{n}.json").node_plan()
             for n, _, _ in plan.daemons()}
    played = {s.id for p in nodes.values() if p.role == "viewer" for s in p.sessions}
    trace = read_trace(tmp_path / PLANNED_CSV)
    assert played == set(trace["viewer"]) == {s.id for s in plan.sessions}
    req = trace[trace["kind"] == "request"]
    master = nodes["m1"]
    assert master.planned is not None and len(master.planned) == len(req) > 0
    assert sorted(master.planned) == sorted(zip(
        (req["at"] + master.viewers_start_s).tolist(), req["helper"], req["video"],
        req["index"].tolist()))
    # other policies are not sent the future
    assert RunPlan.build(sc.with_overrides({"policy": "tree"})).node_plans(
        T0, SALT)["m1"].planned is None


def test_a_plan_of_the_wrong_shape_is_refused():
    good = to_plain(EnginePlacement("engine", "m1", "10.0.0.1", 8700, True))
    assert from_plain(EnginePlacement, good) == EnginePlacement("engine", "m1", "10.0.0.1",
                                                               8700, True)
    with pytest.raises(PlanError, match="port"):
        from_plain(EnginePlacement, {**good, "port": "8700"})
    with pytest.raises(PlanError, match="unknown keys"):
        from_plain(EnginePlacement, {**good, "extra": 1})
    # unions: tiers as a count or as bands; optional values
    d = DeliveryConfig(tiers=(10.0, 50.0), fanout=None, push_reserve=None)
    assert from_plain(DeliveryConfig, json.loads(json.dumps(to_plain(d)))) == d
    assert from_plain(DeliveryConfig, to_plain(DeliveryConfig(tiers=3))).tiers == 3


# -- no daemon keeps its own default -------------------------------------------------------
#: every setting the plan gives a daemon
PLAN_KEYS = {f.name for c in (ContentConfig, DeliveryConfig, ViewersConfig, EngineSection,
                              NodePlan, EnginePlacement) for f in dataclasses.fields(c)}
#: where such a key is a protocol message's field, not a setting
MESSAGES = {"msg.body", "ask"}
#: addresses the node configuration keeps for the drivers (where to send), not settings
ADDRESSES = {("self.cfg.master", "ip")}
#: hand-built settings: a section of the old dict config, a hand-made catalogue config, a
#: unit conversion of its own
FORBIDDEN = [r"\bcfg\.(catalogue|delivery|viewers|events)\b", r"CatalogueConfig\(\*\*",
             r"\*\s*1_?000_?000\b", r"extra\.get\(", r"extra\[\"(?!engine\")"]


def _key_reads(tree: ast.AST):
    for n in ast.walk(tree):
        if (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant)
                and isinstance(n.slice.value, str)):
            yield n.lineno, ast.unparse(n.value), n.slice.value
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and n.func.attr == "get" and n.args and isinstance(n.args[0], ast.Constant)
              and isinstance(n.args[0].value, str)):
            yield n.lineno, ast.unparse(n.func.value), n.args[0].value


def test_no_daemon_reads_a_setting_of_the_plan_by_hand():
    # the fuzzer reads its own plan (targets, credentials, videos), not a run's
    files = sorted(f for f in NODES.glob("*.py") if f.name != "fuzzer.py")
    assert {"helper.py", "master.py", "engine.py", "viewer.py"} <= {f.name for f in files}
    bad = []
    for f in files:
        text = f.read_text()
        for lineno, base, key in _key_reads(ast.parse(text)):
            if key in PLAN_KEYS and base not in MESSAGES and (base, key) not in ADDRESSES:
                bad.append(f"{f.name}:{lineno}: {base}[{key!r}]")
        for pattern in FORBIDDEN:
            for m in re.finditer(pattern, text):
                bad.append(f"{f.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert not bad, bad


def test_the_check_sees_the_old_way():
    """The check above would have caught what the daemons did before the plan."""
    old = 'd = cfg.delivery\ncache = int(d["cache_mb"] * 1_000_000)\n' \
          'e = cfg.extra["engine"]\nm = float(e.get("min_train_s", 30.0))\n'
    reads = {(base, key) for _, base, key in _key_reads(ast.parse(old))}
    assert {("d", "cache_mb"), ("e", "min_train_s")} <= reads
    assert all(k in PLAN_KEYS for k in ("cache_mb", "min_train_s"))
    assert re.search(FORBIDDEN[0], old) and re.search(FORBIDDEN[2], old)
