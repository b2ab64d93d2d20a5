"""The fault campaign's pure parts: drawing, steps, the consistency verdict, the scenario
section."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.core import faults as F
from testbed.core.cache import SegmentCache
from testbed.harness.faults import consistency, verdict
from testbed.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIO = load_scenario(REPO / "experiments" / "faults.yaml")
TARGETS = F.Targets.of(SCENARIO.build_spec(), "engine")


def test_the_targets_of_the_default_topology():
    assert TARGETS.helpers == tuple(f"h{i}" for i in range(1, 9)) and TARGETS.master == "m1"
    assert TARGETS.core_links == (("s1", "s2"), ("s1", "s3"), ("s1", "s4"), ("s1", "s5"))
    assert TARGETS.access_links["h3"] == ("h3", "s3")
    # a region is cut off by its one link to the core
    assert TARGETS.regions == {"1": (("s1", "s2"),), "2": (("s1", "s3"),),
                               "3": (("s1", "s4"),), "4": (("s1", "s5"),)}
    assert F.Targets.of(SCENARIO.build_spec(), None).of_kind("engine_kill") == []


@pytest.mark.parametrize("seed", range(1, 11))
def test_a_campaign_strikes_one_fault_of_each_kind_one_at_a_time(seed):
    cfg = SCENARIO.faults
    faults = F.draw(cfg, TARGETS, SCENARIO.duration_s, seed)
    assert sorted(f.kind for f in faults) == sorted(F.FAULT_KINDS)
    assert faults == F.draw(cfg, TARGETS, SCENARIO.duration_s, seed)  # deterministic
    end = SCENARIO.duration_s - cfg.quiet_s
    for f, g in zip(faults, faults[1:]):
        assert f.end_s + F.SETTLE_S <= g.at_s + 1e-9  # never two at once
    for f in faults:
        assert cfg.start_s <= f.at_s and f.end_s <= end
        assert f.target in TARGETS.of_kind(f.kind)
        lo, hi = cfg.cut_s if f.kind == "region_cut" else cfg.down_s
        if f.kind in ("master_restart", "controller_restart"):
            assert f.down_s == 0
        else:
            assert lo <= f.down_s <= hi
    assert F.draw(cfg, TARGETS, SCENARIO.duration_s, seed + 100) != faults


def test_steps_undo_every_fault():
    faults = (F.Fault(10.0, "helper_crash", "h3", 5.0),
              F.Fault(20.0, "link_flap", "s1-s2", 4.5, (("s1", "s2"),)),
              F.Fault(30.0, "region_cut", "region-1", 10.0, (("s1", "s2"),)),
              F.Fault(45.0, "master_restart", "m1"))
    steps = F.steps(faults, flap_period_s=2.0)
    assert [(s.at_s, s.action, s.target) for s in steps] == [
        (10.0, "kill", "h3"), (15.0, "start", "h3"),
        (20.0, "down", "s1-s2"), (21.0, "up", "s1-s2"), (22.0, "down", "s1-s2"),
        (23.0, "up", "s1-s2"), (24.0, "down", "s1-s2"), (24.5, "up", "s1-s2"),
        (30.0, "down", "s1-s2"), (40.0, "up", "s1-s2"),
        (45.0, "restart", "m1")]


def test_a_campaign_that_does_not_fit_is_refused_in_one_line():
    cfg = F.FaultsConfig(count=40)
    with pytest.raises(F.FaultError, match="40 faults do not fit"):
        F.draw(cfg, TARGETS, 200.0, 1)
    with pytest.raises(F.FaultError, match="no target"):
        F.draw(F.FaultsConfig(kinds=("engine_kill",)), F.Targets.of(SCENARIO.build_spec(),
                                                                    None), 200.0, 1)


def test_the_faults_section_round_trips_and_sweeps():
    again = SCENARIO.with_overrides({"faults.count": 3})
    assert again.faults.count == 3 and again.faults.kinds == SCENARIO.faults.kinds
    assert again.faults.cut_s == (10.0, 15.0)
    assert again.faults.fuzz_rate == 0.0  # no fuzzing unless asked
    assert SCENARIO.with_overrides({"faults.fuzz_rate": 60}).faults.fuzz_rate == 60.0
    assert load_scenario(REPO / "experiments" / "default.yaml").faults is None


def master_status(**kw):
    return {"sent_tables": {"h1": 4, "h2": 4}, "parents": {"h1": "m1", "h2": "h1"},
            "versions": {"vod-0000": 2, "vod-0001": 1}, **kw}


def helper_status(version=4, parent="m1", cached=None):
    return {"table": {"version": version, "parent": parent},
            "cached_versions": cached or {"vod-0000": [2, 2]}}


def test_the_helpers_agree_with_the_master():
    ok = consistency(master_status(), {"h1": helper_status(),
                                       "h2": helper_status(parent="h1")})
    assert ok == {"agree": True, "problems": [], "helpers": 2, "answered": 2}


def test_every_disagreement_is_named():
    got = consistency(master_status(), {
        "h1": helper_status(version=3, cached={"vod-0000": [1, 2], "vod-0001": [2, 2]}),
        "h2": None})
    assert not got["agree"] and got["answered"] == 1
    assert got["problems"] == ["h1: holds table 3, master sent 4",
                               "h1: caches vod-0000 v1, current v2",
                               "h1: caches vod-0001 v2, beyond the master's v1", "h2: no status"]


def test_the_cache_reports_the_versions_it_holds():
    cache = SegmentCache(10_000)
    cache.put(("v", 0), 1, b"x" * 10, "tree", 0.0)
    cache.put(("v", 1), 3, b"x" * 10, "tree", 0.0)
    cache.put(("w", 0), 2, b"x" * 10, "tree", 0.0)
    assert cache.versions() == {"v": (1, 3), "w": (2, 2)}


def test_the_campaign_s_verdict_is_read_from_the_summary():
    summary = {"viewer_requests": 120, "viewer_answered": 117, "digest_failures": 0,
               "stale_serves": 0, "longest_stall_s": 2.5, "stall_events": 2,
               "rebuffer_ratio_all_sessions": float("nan"), "failovers": 4,
               "master_viewer_serves": 1, "rebuffer_ratio": 0.5, "unanswered_segments": 1}
    assert verdict(summary) == {
        "requests": 120, "requests_failed": 3, "unanswered_segments": 1,
        "digest_failures": 0, "stale_serves": 0,
        "longest_stall_s": 2.5, "stalls": 2, "rebuffer_ratio": None, "failovers": 4,
        "master_viewer_serves": 1}
