"""Which measurements the fidelity check makes, and between which hosts."""

from testbed.core.spec import path_profile
from testbed.emu.calibrate import (
    UNSHAPED_IPERF_MBIT,
    CalibrationPlan,
    endpoints,
    plan_targets,
    unshaped_iperf_mbit,
)
from testbed.emu.network import add_probes, address_plan, host_order
from topologies import generate


def default_like():
    return add_probes(generate("tiered", regions=4, helpers_per_region=2,
                               viewers_per_region=1, tier_delays_ms=(3.0, 25.0)))


def test_every_link_and_every_master_helper_path_is_measured():
    g = default_like()
    targets = plan_targets(g, CalibrationPlan())
    links = [t for t in targets if t[0] == "link"]
    paths = [t for t in targets if t[0] == "path"]
    real_links = [e for e in g.edges if "probe" not in (g.nodes[e[0]]["role"],
                                                         g.nodes[e[1]]["role"])]
    assert len(links) == len(real_links) == 17
    assert [t[1] for t in paths] == [f"m1->h{i}" for i in range(1, 9)]


def test_switch_ends_are_measured_from_their_probe_host():
    g = default_like()
    src, dst = endpoints(g, "s1", "s2")
    assert g.nodes[src]["role"] == g.nodes[dst]["role"] == "probe"
    prof = path_profile(g, src, dst)
    assert prof.nodes[1:-1] == ("s1", "s2")  # the probe links add nothing
    assert prof.one_way_ms == g.edges["s1", "s2"]["delay_ms"]
    assert endpoints(g, "h1", "s2") == ("h1", dst)


def test_sample_is_seeded_and_bounded():
    g = default_like()
    a = plan_targets(g, CalibrationPlan(sample=5, paths=False, seed=3))
    b = plan_targets(g, CalibrationPlan(sample=5, paths=False, seed=3))
    c = plan_targets(g, CalibrationPlan(sample=5, paths=False, seed=4))
    assert a == b and len(a) == 5 and a != c


def test_addresses_are_deterministic_and_unique():
    g = default_like()
    plan = address_plan(g)
    order = host_order(g)
    assert order[0] == "m1" and plan["m1"]["ip"] == "10.0.0.1"
    ips = [plan[h]["ip"] for h in order]
    macs = [plan[h]["mac"] for h in order]
    assert len(set(ips)) == len(ips) and len(set(macs)) == len(macs)
    assert plan["m1"]["mac"] == "02:00:0a:00:00:01"
    assert sorted(plan[s]["dpid"] for s in g.nodes if g.nodes[s]["role"] == "switch") == \
        list(range(1, 6))


def test_an_unshaped_link_is_loaded_at_the_fastest_rate_the_scenario_configures():
    from topologies.chain import make_chain

    # only the middle link has a rate: the others carry at most 50 Mbit/s of its traffic
    assert unshaped_iperf_mbit(make_chain(delays_ms=(5, 10, 20), bw_mbit=50,
                                          bottleneck=2)) == 50
    # no rate anywhere: a fixed pace rather than the CPU's limit
    assert unshaped_iperf_mbit(make_chain(delays_ms=(5, 10), bw_mbit=None)) \
        == UNSHAPED_IPERF_MBIT == 100
