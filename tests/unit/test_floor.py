"""The switch-time split: along any path the links give up exactly the switches crossed."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from testbed.core import floor as F
from testbed.core.spec import HELPER, MASTER, PROBE, SWITCH, link_params
from topologies.chain import make_chain


def _tree() -> nx.Graph:
    """m1 - s1 - s2 - {h1, h2}, s1 - s3 - h3 (1 ms access, 5 ms core)."""
    g = nx.Graph()
    for n, role in (("m1", MASTER), ("h1", HELPER), ("h2", HELPER), ("h3", HELPER),
                    ("s1", SWITCH), ("s2", SWITCH), ("s3", SWITCH)):
        g.add_node(n, role=role)
    for a, b, d in (("m1", "s1", 1), ("s1", "s2", 5), ("s1", "s3", 5),
                    ("h1", "s2", 1), ("h2", "s2", 1), ("h3", "s3", 1)):
        g.add_edge(a, b, delay_ms=d)
    return g


LAT = {"s1": 0.10, "s2": 0.06, "s3": 0.14}


def test_every_host_path_gives_up_exactly_the_switches_it_crosses() -> None:
    g = _tree()
    for a, b in itertools.combinations(["m1", "h1", "h2", "h3"], 2):
        path = nx.shortest_path(g, a, b)
        given = sum(F.link_share_ms(g, u, v, LAT) for u, v in zip(path, path[1:]))
        crossed = sum(LAT[n] for n in path[1:-1])
        assert given == pytest.approx(crossed)
        configured = sum(link_params(g, u, v).delay_ms for u, v in zip(path, path[1:]))
        emulated = sum(F.compensated_delay_ms(link_params(g, u, v).delay_ms,
                                              F.link_share_ms(g, u, v, LAT))
                       for u, v in zip(path, path[1:]))
        assert emulated + crossed == pytest.approx(configured)  # what a packet sees


def test_a_link_gives_up_half_of_each_switch_at_its_ends() -> None:
    g = _tree()
    assert F.link_share_ms(g, "s1", "s2", LAT) == pytest.approx(0.08)
    assert F.link_share_ms(g, "h3", "s3", LAT) == pytest.approx(0.07)
    assert F.link_share_ms(g, "s1", "s2", {}) == 0.0  # unmeasured switches give nothing


def test_a_link_cannot_give_up_more_than_it_has() -> None:
    assert F.compensated_delay_ms(0.0, 0.05) == 0.0
    assert F.shortfall_ms(0.0, 0.05) == pytest.approx(0.05)
    assert F.compensated_delay_ms(1.0, 0.05) == pytest.approx(0.95)
    assert F.shortfall_ms(1.0, 0.05) == 0.0


def test_links_below_the_floor_are_named_in_one_line() -> None:
    g = make_chain(delays_ms=(1.0, 5.0, 1.0))
    for h in ("h1", "h2"):
        (sw,) = g.neighbors(h)
        g.edges[h, sw]["delay_ms"] = 0.0
    g.add_node("pr1", role=PROBE, switch="s1")
    g.add_edge("pr1", "s1")  # probe legs are apparatus, never reported
    rows = F.links_below_floor(g, 0.08)
    assert [r.link for r in rows] == ["h1-s1", "h2-s2"]
    assert all(r.floor_ms == pytest.approx(0.04) for r in rows)
    line = F.below_floor_line(rows, "userspace switches, nominal")
    assert "\n" not in line and "h1-s1, h2-s2" in line and "0.04 ms" in line
    assert F.links_below_floor(g, 0.08, slack_ms=0.05) == []
    assert F.below_floor_line([], "x") == ""


def test_a_long_list_is_cut_short() -> None:
    rows = [F.BelowFloor(f"h{i}-s1", 0.0, 0.05) for i in range(9)]
    line = F.below_floor_line(rows, "here", limit=3)
    assert "h0-s1, h1-s1, h2-s1 and 6 more" in line


def test_summary_of_samples() -> None:
    rng = random.Random(1)
    xs = [0.05 + rng.random() * 0.02 for _ in range(101)]
    s = F.summarise(xs, lost=2)
    assert s is not None and s.samples == 101 and s.lost == 2
    assert s.p10_ms <= s.median_ms <= s.p90_ms
    assert s.p10_ms >= 0.05 and s.p90_ms <= 0.07
    assert F.summarise([]) is None
