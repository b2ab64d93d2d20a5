"""The harness's pure parts: who gets which helper, what each daemon is told, and the
run-level figures computed from event records."""

import json
import math
from pathlib import Path

import pytest

from testbed.harness.results import extras, stale_serves, unanswered
from testbed.harness.run import assign_players, node_configs
from testbed.nodes.common import NodeConfig
from testbed.plan import Republish
from testbed.scenario import load_scenario


@pytest.fixture(scope="module")
def default():
    sc = load_scenario(Path(__file__).resolve().parents[2] / "experiments" / "default.yaml")
    return sc, sc.build_spec()


def test_players_use_the_helpers_of_their_own_region(default):
    sc, spec = default
    viewers = sorted(n for n, d in spec.nodes(data=True) if d.get("role") == "viewer")
    helpers = sorted(n for n, d in spec.nodes(data=True) if d.get("role") == "helper")
    got = assign_players(spec, viewers, helpers, 6)
    assert sum(len(p) for p in got.values()) == 24
    for v, players in got.items():
        sw = next(iter(spec.neighbors(v)))
        used = {h for _, h in players}
        assert len(used) == 2 and all(sw in spec.neighbors(h) for h in used)
        assert len({pid for pid, _ in players}) == 6


def test_every_daemon_gets_a_loadable_config(default, tmp_path):
    sc, spec = default
    configs = node_configs(sc, spec, tmp_path, 1000.0, b"\x01" * 32, b"\x02" * 16)
    roles = {c["role"] for c in configs.values()}
    assert roles == {"master", "helper", "viewer", "engine"}
    plans = {}
    for name, c in configs.items():
        cfg = NodeConfig(**{**json.loads(json.dumps(c)), "run_dir": tmp_path})
        assert cfg.name == name
        plans[name] = cfg.node_plan()  # the typed plan: the scenario's own sections
        assert plans[name].content == sc.content and plans[name].delivery == sc.delivery
        assert plans[name].content.catalogue_config() == sc.content.catalogue_config()
    m = configs["m1"]
    assert set(m["helpers"]) == {f"h{i}" for i in range(1, 9)}
    assert plans["m1"].republish == (Republish(60.0, "vod-0000"),)
    # the default viewers are the calibrated workload: each viewer host plays the sessions
    # of the helpers it is near, at their arrival times
    sessions = [s for p in plans.values() if p.role == "viewer" for s in p.sessions]
    assert len(sessions) > 50 and len({s.id for s in sessions}) == len(sessions)
    assert {s.helper for s in sessions} == set(m["helpers"])
    for s in sessions:
        assert s.helper_ip == m["helpers"][s.helper]
        assert 0 <= s.start_at < sc.duration_s
    players = node_configs(sc.with_overrides({"viewers.model": "players"}), spec, tmp_path,
                           1000.0, b"\x01" * 32, b"\x02" * 16)
    v1 = NodeConfig(**{**players["v1"], "run_dir": tmp_path}).node_plan()
    assert len(v1.players) == 6 and v1.sessions == ()
    # the engine runs on the master's host unless the scenario names another
    engine = configs["engine"]["extra"]["engine"]
    assert engine["host"] == "m1" and engine["ip"] == m["ip"] == configs["engine"]["ip"]
    assert all(c["extra"]["engine"] == engine for c in configs.values())
    assert all(p.engine_at.ip == engine["ip"] for p in plans.values())
    moved = node_configs(sc.with_overrides({"engine.host": "h8"}), spec, tmp_path, 1000.0,
                         b"\x01" * 32, b"\x02" * 16)
    assert moved["engine"]["ip"] == configs["h8"]["ip"]


def test_a_scenario_without_helpers_is_refused(default, tmp_path):
    sc, spec = default
    g = spec.copy()
    g.remove_nodes_from([n for n, d in spec.nodes(data=True) if d.get("role") == "helper"])
    with pytest.raises(ValueError, match="no helper hosts"):
        node_configs(sc, g, tmp_path, 0.0, b"\x01" * 32, b"\x02" * 16)


def serve(node, at, version, video="vod-0000"):
    return {"kind": "serve", "node": node, "at": at, "video": video, "index": 0,
            "version": version, "bytes": 10, "source": "tree", "latency_ms": 1.0}


def test_stale_serves_are_those_after_the_invalidation_arrived():
    records = [
        {"kind": "invalidated", "node": "h1", "at": 10.0, "video": "vod-0000", "version": 2,
         "delay_ms": 12.0, "inv_id": "x"},
        serve("h1", 9.0, 1),     # before it arrived: fine
        serve("h1", 11.0, 2),    # new version: fine
        serve("h1", 12.0, 1),    # stale
        serve("h2", 12.0, 1),    # h2 never got it: not counted here
        serve("h1", 13.0, 1, video="vod-0001"),  # another video
    ]
    stale = stale_serves(records)
    assert len(stale) == 1 and stale.iloc[0]["at"] == 12.0
    ex = extras(records)
    assert ex["stale_serves"] == 1
    assert ex["invalidation_max_ms"] == 12.0 and ex["invalidation_helpers"] == 1


def test_extras_count_caches_over_capacity_and_rejections():
    records = [
        {"kind": "cache_state", "node": "h1", "at": 1, "used_bytes": 5, "capacity_bytes": 10},
        {"kind": "cache_state", "node": "h2", "at": 1, "used_bytes": 11, "capacity_bytes": 10},
        {"kind": "rejected", "node": "h1", "at": 2, "reason": "replay"},
        {"kind": "rejected", "node": "h1", "at": 3, "reason": "replay"},
        {"kind": "rejected", "node": "h2", "at": 3, "reason": "bad_digest"},
    ]
    ex = extras(records)
    assert ex["cache_over_capacity"] == 1 and ex["cache_max_fill"] == pytest.approx(1.1)
    assert ex["rejected"] == 3
    assert json.loads(ex["rejected_by_reason"]) == {"bad_digest": 1, "replay": 2}


def test_extras_count_the_telemetry_that_never_reached_the_engine():
    assert (extras([])["telemetry_lost_events"], extras([])["telemetry_dropped"]) == (0, 0)
    records = [
        {"kind": "telemetry_lost", "node": "h1", "at": 5, "events": 200},
        {"kind": "telemetry_lost", "node": "h2", "at": 6, "events": 12},
        {"kind": "telemetry_buffer", "node": "h1", "at": 9, "added": 20_000,
         "dropped": 350, "queued": 0},
        {"kind": "telemetry_buffer", "node": "h2", "at": 9, "added": 80, "dropped": 0,
         "queued": 3},
    ]
    ex = extras(records)
    assert (ex["telemetry_lost_events"], ex["telemetry_dropped"]) == (212, 350)


def test_extras_count_recovery_from_the_warm_up_on():
    def stall(at, wait):
        return {"kind": "player", "node": "v1", "at": at, "event": "resume_play",
                "cause": "stall", "wait_s": wait}

    def qoe(at, stall_s, played_s):
        return {"kind": "qoe", "node": "v1", "at": at, "stall_s": stall_s,
                "played_s": played_s}

    records = [stall(5, 9.0), stall(30, 1.5), stall(40, 2.5),
               {"kind": "player", "node": "v1", "at": 41, "event": "resume_play",
                "cause": "seek", "wait_s": 7.0},
               {"kind": "failover", "node": "v1", "at": 8}, {"kind": "failover", "node": "v1",
                                                           "at": 31},
               {"kind": "viewer_serve", "node": "m1", "at": 32},
               qoe(10, 9.0, 1.0), qoe(50, 4.0, 96.0)]
    ex = extras(records, warmup_s=20.0)
    # the stall in the warm-up and the seek wait are not stalls after it
    assert (ex["stall_events"], ex["longest_stall_s"]) == (2, 2.5)
    assert (ex["failovers"], ex["master_viewer_serves"]) == (1, 1)
    # a session that ended after the warm-up counts whole, whenever it began
    assert ex["rebuffer_ratio_all_sessions"] == pytest.approx(4.0 / 100.0)
    assert math.isnan(extras([])["rebuffer_ratio_all_sessions"])


def test_a_segment_given_up_counts_as_unanswered_only_if_never_answered_later():
    def failed(at, player, index):
        return {"kind": "request_failed", "node": "v1", "at": at, "player": player,
                "video": "vod-0000", "index": index}

    def answered(at, player, index):
        return {"kind": "request", "node": "v1", "at": at, "player": player,
                "video": "vod-0000", "index": index}

    records = [failed(5, "p1", 1),                           # in the warm-up
               failed(30, "p1", 2), answered(31.5, "p1", 2),  # asked again: answered
               failed(32, "p1", 3), answered(31, "p1", 3),    # answered before, not after
               failed(33, "p2", 2),                           # another player's: never
               failed(34, "p1", 4), answered(35, "p1", 4), failed(36, "p1", 4)]
    assert unanswered(records, warmup_s=20.0) == {
        ("p1", "vod-0000", 3), ("p2", "vod-0000", 2), ("p1", "vod-0000", 4)}
    assert extras(records, warmup_s=20.0)["unanswered_segments"] == 3
    assert extras([])["unanswered_segments"] == 0


def test_overhead_is_telemetry_and_control_sent_per_byte_to_viewers():
    records = [
        {"kind": "traffic", "node": "h1", "cls": "viewer", "direction": "tx", "bytes": 900},
        {"kind": "traffic", "node": "h2", "cls": "viewer", "direction": "tx", "bytes": 100},
        {"kind": "traffic", "node": "h1", "cls": "control", "direction": "tx", "bytes": 15},
        {"kind": "traffic", "node": "h1", "cls": "control", "direction": "rx", "bytes": 999},
        {"kind": "traffic", "node": "m1", "cls": "telemetry", "direction": "tx", "bytes": 5},
    ]
    assert extras(records)["overhead_ratio"] == 0.02


def test_viewer_side_request_counts_separate_requests_cut_by_the_end_of_the_run():
    records = [
        {"kind": "qoe", "node": "v1", "viewer": "v1-0", "requests": 10, "answered": 10,
         "cut_at_stop": 1},
        {"kind": "qoe", "node": "v1", "viewer": "v1-1", "requests": 5, "answered": 4},
    ]
    ex = extras(records)
    assert (ex["viewer_requests"], ex["viewer_answered"], ex["viewer_cut_at_stop"]) == (15, 14, 1)
