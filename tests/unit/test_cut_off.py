"""Which viewers a campaign cut off from the origin, and which part of a stall that
explains (faults/stalls.csv)."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from testbed.core import faults as F
from testbed.core.faults import stall_table, stall_verdict
from testbed.core.spec import HELPER, MASTER, SWITCH, VIEWER


def net() -> nx.Graph:
    """m1 on s1; region A (s2: h1, v1) and region B (s3: h2, v2), each on one uplink."""
    g = nx.Graph()
    for n, role in (("s1", SWITCH), ("s2", SWITCH), ("s3", SWITCH), ("m1", MASTER),
                    ("h1", HELPER), ("h2", HELPER), ("v1", VIEWER), ("v2", VIEWER)):
        g.add_node(n, role=role)
    g.add_edges_from([("m1", "s1"), ("s1", "s2"), ("s1", "s3"), ("h1", "s2"), ("v1", "s2"),
                      ("h2", "s3"), ("v2", "s3")])
    return g


def test_a_cut_uplink_cuts_off_everything_behind_it_for_as_long_as_it_is_down():
    spans = F.cut_off(net(), "m1", [(10.0, "down", "s1-s2"), (25.0, "up", "s1-s2"),
                                   (12.0, "kill", "h2")])
    assert spans == {n: [(10.0, 25.0)] for n in ("s2", "h1", "v1")}


def test_overlapping_faults_on_one_link_keep_it_down_until_both_end():
    spans = F.cut_off(net(), "m1", [(10.0, "down", "s2-s1"), (12.0, "down", "s1-s2"),
                                   (15.0, "up", "s1-s2"), (20.0, "up", "s1-s2")])
    assert spans["v1"] == [(10.0, 20.0)]


def test_a_helper_link_down_cuts_off_the_helper_not_its_viewers_and_open_spans_end_at_inf():
    spans = F.cut_off(net(), "m1", [(5.0, "down", "h1-s2"), (6.0, "up", "h1-s2"),
                                   (30.0, "down", "s1-s3")])
    assert spans["h1"] == [(5.0, 6.0)] and "v1" not in spans
    assert spans["v2"] == [(30.0, math.inf)]
    assert F.overlap(28.0, 31.0, spans["v2"]) == pytest.approx(1.0)
    assert F.overlap(0.0, 40.0, [(1.0, 2.0), (5.0, 7.5)]) == pytest.approx(3.5)


def stall(node, video, at, wait):
    return {"kind": "player", "node": node, "player": f"{node}.0", "video": video,
            "event": "resume_play", "cause": "stall", "at": at, "wait_s": wait}


def test_a_live_stall_is_excused_only_while_its_region_is_cut_off():
    steps = [(10.0, "down", "s1-s2"), (25.0, "up", "s1-s2")]
    records = [
        stall("v1", "live-00", 26.5, 12.5),   # 14-26.5: 11 s cut off, 1.5 s after the heal
        stall("v1", "vod-0003", 20.0, 3.0),   # on demand: a copy may be in the region
        stall("v2", "live-00", 22.0, 2.2),    # the other region was never cut off
        stall("v1", "live-00", 5.0, 9.0),     # in the warm-up
        {"kind": "player", "node": "v1", "event": "resume_play", "cause": "seek",
         "at": 30.0, "wait_s": 4.0},
    ]
    t = stall_table(records, net(), steps, warmup_s=8.0, live={"live-00"})
    assert list(t["beyond_cut_off_s"]) == pytest.approx([1.5, 3.0, 2.2])
    assert list(t["cut_off_s"]) == pytest.approx([11.0, 3.0, 0.0])
    assert list(t["live"]) == [True, False, True]
    v = stall_verdict(t)
    assert v == {"longest_stall_beyond_cut_off_s": pytest.approx(3.0), "stalls_cut_off": 2,
                 "cut_off_stall_s": pytest.approx(14.0)}


def test_no_steps_and_no_stalls():
    t = stall_table([], net(), [], 0.0, set())
    assert list(t.columns)[:3] == ["at_s", "node", "player"] and not len(t)
    assert stall_verdict(t) == {"longest_stall_beyond_cut_off_s": 0.0, "stalls_cut_off": 0,
                                "cut_off_stall_s": 0.0}
    t = stall_table([stall("v2", "live-00", 22.0, 2.2)], net(), [], 0.0, {"live-00"})
    assert list(t["beyond_cut_off_s"]) == [2.2]
