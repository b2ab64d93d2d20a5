"""Link metrics from synthetic probe and counter streams: latency, rates, the graph."""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest

from testbed.core.fakenet import topology_dict
from testbed.core.l2 import NetView
from testbed.core.linkmetrics import (
    LatencyEstimator,
    LinkChange,
    LinkMonitor,
    MetricGraph,
    PortRate,
    PortStatsTracker,
    Thresholds,
)


def probe_stream(est: LatencyEstimator, rng: random.Random, latency_ms: float,
                 echo_ms: dict[str, float], t0: float, count: int, jitter_ms: float = 0.5,
                 spike_every: int = 0, src: str = "s1", dst: str = "s2") -> float:
    """Feed ``count`` echo + LLDP rounds one second apart; returns the last time."""
    t = t0
    for i in range(count):
        t = t0 + i
        for sw, rtt in echo_ms.items():
            est.echo(sw, t, t + (rtt + rng.uniform(-jitter_ms, jitter_ms)) / 1000)
        # controller -> src, the link, dst -> controller; now and then a busy controller
        one_way = echo_ms[src] / 2 + latency_ms + echo_ms[dst] / 2
        one_way += rng.uniform(-jitter_ms, jitter_ms)
        if spike_every and i % spike_every == spike_every - 1:
            one_way += 50.0
        est.lldp(src, dst, t, t + one_way / 1000)
    return t


@pytest.mark.parametrize("latency_ms", [0.5, 5.0, 40.0, 80.0])
@pytest.mark.parametrize("seed", range(3))
def test_latency_is_recovered_from_echo_corrected_probes(latency_ms: float, seed: int) -> None:
    rng = random.Random(seed)
    est = LatencyEstimator(window=7)
    echo = {"s1": 4.0 + seed, "s2": 9.0}
    t = probe_stream(est, rng, latency_ms, echo, 100.0, 30, spike_every=5)
    got = est.estimate("s1", "s2", t)
    assert got is not None and not got.stale and got.samples == 7
    assert got.delay_ms == pytest.approx(latency_ms, abs=1.0)


def test_a_step_change_is_followed_within_half_a_window() -> None:
    est = LatencyEstimator(window=5)
    echo = {"s1": 2.0, "s2": 2.0}
    t = probe_stream(est, random.Random(1), 5.0, echo, 0.0, 10, jitter_ms=0.2)
    t = probe_stream(est, random.Random(2), 80.0, echo, t + 1, 2, jitter_ms=0.2)
    assert est.estimate("s1", "s2", t).delay_ms < 10  # two samples: still the old median
    t = probe_stream(est, random.Random(3), 80.0, echo, t + 1, 1, jitter_ms=0.2)
    assert est.estimate("s1", "s2", t).delay_ms == pytest.approx(80.0, abs=1.0)


def test_samples_without_echo_are_dropped_and_negative_ones_clamped() -> None:
    est = LatencyEstimator()
    assert est.lldp("s1", "s2", 0.0, 0.010) is None and est.dropped == 1
    est.echo("s1", 0.0, 0.020)
    assert est.lldp("s1", "s2", 0.0, 0.010) is None  # s2 has no echo yet
    est.echo("s2", 0.0, 0.020)
    assert est.lldp("s1", "s2", 1.0, 1.010) == 0.0  # 10 ms minus 2 x 10 ms: clamped
    assert est.estimate("s1", "s2", 1.0).delay_ms == 0.0
    assert est.estimate("s2", "s1", 1.0) is None  # directions are separate
    with pytest.raises(ValueError, match="received before sent"):
        est.echo("s1", 2.0, 1.0)


def test_stale_links_are_reported() -> None:
    est = LatencyEstimator(stale_after_s=3.0)
    for sw in ("s1", "s2", "s3"):
        est.echo(sw, 0.0, 0.002)
    est.lldp("s1", "s2", 0.0, 0.007)
    est.lldp("s2", "s3", 2.0, 2.007)
    assert est.stale(3.0) == []
    assert est.stale(3.5) == [("s1", "s2")]
    assert est.estimate("s1", "s2", 3.5).stale
    assert not est.estimate("s2", "s3", 3.5).stale
    est.forget("s1", "s2")
    assert est.stale(10.0) == [("s2", "s3")] and est.estimate("s1", "s2", 10.0) is None


def test_estimator_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="window"):
        LatencyEstimator(window=0)
    with pytest.raises(ValueError, match="stale_after_s"):
        LatencyEstimator(stale_after_s=0)


# --------------------------------------------------------------------------- port stats


def test_port_rates_utilisation_and_headroom() -> None:
    ports = PortStatsTracker(alpha=1.0)
    ports.set_capacity("s1", 2, 10.0)
    assert ports.update(0.0, "s1", 2, 0, 0) is None
    rate = ports.update(2.0, "s1", 2, 1_000_000, 250_000)  # 4 Mbit/s out, 1 Mbit/s in
    assert rate == PortRate(4e6, 1e6, 10.0)
    assert rate.util == pytest.approx(0.4)
    assert rate.avail_tx_mbit == pytest.approx(6.0) and rate.avail_rx_mbit == pytest.approx(9.0)
    assert ports.rate("s1", 2) == rate
    over = ports.update(3.0, "s1", 2, 3_000_000, 250_000)  # 16 Mbit/s: more than capacity
    assert over.avail_tx_mbit == 0.0 and over.util == pytest.approx(1.6)


def test_unknown_capacity_gives_rates_only() -> None:
    ports = PortStatsTracker(alpha=1.0)
    ports.update(0.0, "s1", 1, 100, 100)
    rate = ports.update(1.0, "s1", 1, 225, 100)
    assert rate.tx_bps == 1000 and rate.util is None and rate.avail_tx_mbit is None


def test_duration_is_preferred_over_the_controller_clock() -> None:
    ports = PortStatsTracker(alpha=1.0)
    ports.update(10.0, "s1", 1, 0, 0, duration_s=100.0)
    # the reply was handled late (now = 13), but the switch says one second passed
    assert ports.update(13.0, "s1", 1, 125_000, 0, duration_s=101.0).tx_bps == 1e6


def test_counter_reset_restarts_the_baseline() -> None:
    ports = PortStatsTracker(alpha=1.0)
    ports.update(0.0, "s1", 1, 5_000_000, 0)
    assert ports.update(1.0, "s1", 1, 6_000_000, 0).tx_bps == 8e6
    assert ports.update(2.0, "s1", 1, 1000, 0) is None  # switch restarted
    assert ports.resets == 1
    assert ports.update(3.0, "s1", 1, 126_000, 0).tx_bps == 1e6  # never negative
    ports.update(4.0, "s1", 1, 251_000, 0, duration_s=1.0)  # duration went back: port re-added
    assert ports.resets == 2


def test_rates_are_smoothed() -> None:
    ports = PortStatsTracker(alpha=0.5)
    ports.update(0.0, "s1", 1, 0, 0)
    ports.update(1.0, "s1", 1, 1_000_000, 0)  # 8 Mbit/s
    assert ports.update(2.0, "s1", 1, 1_000_000, 0).tx_bps == 4e6  # then idle: halfway down
    assert ports.update(2.0, "s1", 1, 1_000_000, 0).tx_bps == 4e6  # no time passed: unchanged
    ports.forget("s1")
    assert ports.rate("s1", 1) is None
    with pytest.raises(ValueError):
        PortStatsTracker(alpha=0)
    with pytest.raises(ValueError):
        ports.set_capacity("s1", 1, 0)


# --------------------------------------------------------------------------- the graph


def square_view() -> NetView:
    """s1-s2-s4 and s1-s3-s4, one host per switch, 10 Mbit/s links."""
    g = nx.Graph()
    g.add_nodes_from(range(4))  # node i is switch s<i+1>
    g.add_edge(0, 1, delay_ms=2.0, bw_mbit=10.0)
    g.add_edge(1, 3, delay_ms=3.0, bw_mbit=10.0)
    g.add_edge(0, 2, delay_ms=20.0, bw_mbit=10.0)
    g.add_edge(2, 3, delay_ms=20.0, bw_mbit=10.0)
    return NetView.from_dict(topology_dict(g, 1))


def test_graph_from_view_has_switches_hosts_links_and_priors() -> None:
    mg = MetricGraph.from_view(square_view())
    g = mg.graph
    assert sorted(n for n, k in g.nodes(data="kind") if k == "switch") == ["s1", "s2", "s3", "s4"]
    assert g.nodes["h1"]["ip"] == "10.0.0.1" and g.nodes["s1"]["dpid"] == 1
    assert g.edges["h1", "s1"]["kind"] == "access" and g.edges["h1", "s1"]["ports"] == {"s1": 1}
    link = g.edges["s1", "s2"]
    assert link["delay_ms"] == 2.0 and link["up"] and link["avail_mbit"] == 10.0
    assert link["util"] == 0.0 and mg.peer("s1", link["ports"]["s1"]) == "s2"
    assert mg.switch_links() == [("s1", "s2"), ("s1", "s3"), ("s2", "s4"), ("s3", "s4")]


def test_delay_changes_are_reported_beyond_the_thresholds_only() -> None:
    mg = MetricGraph.from_view(square_view(), Thresholds(delay_rel=0.1, delay_abs_ms=0.5))
    assert mg.update_delay("s1", "s3", 20.4) == []  # within 0.5 ms
    # the edge is the mean of both directions: (20.4 + 22) / 2 = 21.2, 6 % from 20: quiet
    assert mg.update_delay("s3", "s1", 22.0) == []
    assert mg.graph.edges["s1", "s3"]["delay_ms"] == pytest.approx(21.2)
    # small steps add up against the last *reported* value, so drift is not missed
    assert mg.update_delay("s1", "s3", 22.0) == []  # 22.0: exactly 10 %, not beyond
    changes = mg.update_delay("s3", "s1", 22.5)
    assert changes == [LinkChange("delay", "s3", "s1", 20.0, 22.25)]
    assert mg.update_delay("s1", "s3", 22.6) == []
    assert mg.update_delay("s9", "s1", 1.0) == []  # unknown link
    assert mg.directed_delay("s3", "s1") == 22.5 and mg.directed_delay("s1", "s9") is None


def test_small_delays_need_the_absolute_threshold_too() -> None:
    mg = MetricGraph.from_view(square_view(), Thresholds(delay_rel=0.1, delay_abs_ms=0.5))
    assert mg.update_delay("s1", "s2", 2.4) == []  # 20 % but only 0.4 ms
    assert [c.kind for c in mg.update_delay("s1", "s2", 2.6)] == ["delay"]


def test_port_stats_set_available_bandwidth_per_link() -> None:
    mg = MetricGraph.from_view(square_view(), Thresholds(bw_rel=0.1, bw_abs_mbit=1.0))
    port = mg.graph.edges["s1", "s2"]["ports"]["s1"]
    assert mg.update_port("s1", port, PortRate(0.5e6, 0.0, 10.0)) == []  # 9.5 left: quiet
    changes = mg.update_port("s1", port, PortRate(4e6, 1e6, 10.0))
    assert changes == [LinkChange("bandwidth", "s1", "s2", 10.0, 6.0)]
    edge = mg.graph.edges["s1", "s2"]
    assert edge["util"] == pytest.approx(0.4) and edge["rate_mbit"] == pytest.approx(4.0)
    # the far end's counters see the other direction: the scarcer direction counts
    far = mg.graph.edges["s1", "s2"]["ports"]["s2"]
    mg.update_port("s2", far, PortRate(7e6, 4e6, None))
    assert edge["avail_mbit"] == pytest.approx(3.0) and edge["util"] == pytest.approx(0.7)
    assert mg.update_port("s1", 99, PortRate(1.0, 1.0, 1.0)) == []  # unknown port


def test_unknown_capacity_constrains_nothing() -> None:
    mg = MetricGraph()
    mg.link_seen(0.0, "s1", 1, "s2", 1)
    edge = mg.graph.edges["s1", "s2"]
    assert edge["avail_mbit"] == math.inf and edge["util"] is None
    assert edge["delay_ms"] == mg.default_delay_ms
    assert mg.update_port("s1", 1, PortRate(5e6, 0.0, None)) == []
    assert edge["avail_mbit"] == math.inf and edge["rate_mbit"] == 5.0
    assert mg.update_port("s1", 1, PortRate(5e6, 0.0, 100.0))[0].new == 95.0


def test_discovery_down_up_and_expiry() -> None:
    mg = MetricGraph()
    mg.add_switch("s1", 1)
    assert mg.link_seen(0.0, "s1", 2, "s2", 3) == [LinkChange("new", "s1", "s2")]
    assert mg.link_seen(1.0, "s2", 3, "s1", 2) == []  # the other direction: same link
    assert mg.graph.nodes["s2"]["kind"] == "switch"
    mg.add_host("h1", "s1", 1, ip="10.0.0.1")
    assert mg.port_down("s1", 2) == [LinkChange("down", "s1", "s2")]
    assert mg.port_down("s1", 2) == []
    assert mg.port_up("s1", 2) == []  # a switch link comes back only with a probe
    assert mg.link_seen(2.0, "s1", 2, "s2", 3) == [LinkChange("up", "s1", "s2")]
    assert mg.expire(6.0, 5.0) == []
    assert mg.expire(7.5, 5.0) == [LinkChange("down", "s1", "s2")]
    assert mg.port_down("s1", 1) == [LinkChange("down", "s1", "h1")]
    assert mg.port_up("s1", 1) == [LinkChange("up", "s1", "h1")]
    assert mg.remove_switch("s1") == [LinkChange("down", "s1", "h1")]
    assert mg.remove_switch("s9") == []


def test_recabling_and_moved_hosts_replace_the_old_edge() -> None:
    mg = MetricGraph()
    mg.link_seen(0.0, "s1", 2, "s2", 3)
    assert mg.link_seen(1.0, "s1", 2, "s3", 1) == [LinkChange("new", "s1", "s3")]
    assert not mg.graph.has_edge("s1", "s2") and mg.peer("s2", 3) is None
    assert mg.link_seen(2.0, "s1", 4, "s3", 1) == [LinkChange("new", "s1", "s3")]
    assert mg.graph.edges["s1", "s3"]["ports"] == {"s1": 4, "s3": 1}
    mg.add_host("h1", "s1", 1)
    mg.add_host("h1", "s3", 5)
    assert list(mg.graph["h1"]) == ["s3"] and mg.peer("s1", 1) is None


def test_configured_links_that_never_answer_go_down_once_watched() -> None:
    mon = LinkMonitor.from_view(square_view(), link_timeout_s=3.0)
    assert mon.tick(100.0) == []  # not watched yet: configured links are trusted
    mon.start(100.0)
    for sw in ("s1", "s2", "s3", "s4"):
        mon.echo(sw, 100.0, 100.002)
    for t in (101.0, 102.0, 103.0, 104.0):
        for a, b in (("s1", "s2"), ("s2", "s4"), ("s1", "s3")):  # s3-s4 is silent
            pa = mon.graph.graph.edges[a, b]["ports"]
            mon.lldp(a, pa[a], b, pa[b], t, t + 0.005)
    assert mon.tick(104.0) == [LinkChange("down", "s3", "s4")]


# --------------------------------------------------------------------------- the monitor


def test_monitor_turns_probe_and_counter_streams_into_link_events() -> None:
    view = square_view()
    mon = LinkMonitor.from_view(view, latency=LatencyEstimator(window=3))
    ports = mon.graph.graph.edges["s1", "s3"]["ports"]
    for t in range(3):
        for sw in ("s1", "s3"):
            assert mon.echo(sw, t, t + 0.004) == []
    # 20 ms configured; probes measure 30 ms one way (2 ms each controller leg)
    events = [mon.lldp("s1", ports["s1"], "s3", ports["s3"], t, t + 0.034) for t in range(3)]
    assert events[0] == [LinkChange("delay", "s1", "s3", 20.0, pytest.approx(30.0))]
    assert events[1] == events[2] == []
    assert mon.graph.graph.edges["s1", "s3"]["delay_ms"] == pytest.approx(30.0)
    # port stats: capacities come from the topology's bw_mbit
    assert mon.port_stats(0.0, "s1", ports["s1"], 0, 0) == []
    ch = mon.port_stats(1.0, "s1", ports["s1"], 1_000_000, 0)
    assert [(c.kind, c.new) for c in ch] == [("bandwidth", pytest.approx(2.0))]
    assert mon.port_status("s1", ports["s1"], up=False) == [LinkChange("down", "s1", "s3")]
    assert mon.port_status("s1", ports["s1"], up=True) == []
    assert mon.lldp("s1", ports["s1"], "s3", ports["s3"], 5.0, 5.034)[0].kind == "up"
    assert [c.kind for c in mon.switch_leave("s3")] == ["down", "down", "down"]
    assert mon.stale(100.0) == [("s1", "s3")]


def test_monitor_learns_a_new_link_from_scratch() -> None:
    mon = LinkMonitor(MetricGraph(), LatencyEstimator(window=1))
    mon.echo("a", 0.0, 0.002)
    mon.echo("b", 0.0, 0.002)
    changes = mon.lldp("a", 1, "b", 2, 0.0, 0.012)
    assert [c.kind for c in changes] == ["new", "delay"]
    assert mon.graph.graph.edges["a", "b"]["delay_ms"] == pytest.approx(10.0)
