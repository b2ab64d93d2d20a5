"""Sanity first: a two-host network comes up, forwards, and goes away cleanly."""

import networkx as nx
import pytest

from testbed.core.spec import HELPER, MASTER, SWITCH
from testbed.emu.network import TestbedNetwork


def tiny():
    g = nx.Graph()
    g.add_node("m1", role=MASTER)
    g.add_node("h1", role=HELPER)
    g.add_node("s1", role=SWITCH)
    g.add_node("s2", role=SWITCH)
    g.add_edge("m1", "s1")
    g.add_edge("s1", "s2", delay_ms=2.0)
    g.add_edge("s2", "h1")
    return g


@pytest.mark.smoke
def test_two_hosts_reach_each_other_through_the_controller(run_dir):
    with TestbedNetwork(tiny(), run_dir) as tn:
        loss = tn.net.pingAll(timeout=2)
        assert loss == 0
        assert (run_dir / "hosts.json").exists()
        assert (run_dir / "controller.pid").exists()
        # TCP works too (checksum offloads are off on the userspace datapath)
        m1, h1 = tn.host("m1"), tn.host("h1")
        server = h1.popen(["iperf3", "-s", "-1", "-p", "5301"])
        try:
            import time

            time.sleep(0.3)
            out = m1.cmd(f"iperf3 -c {h1.IP()} -p 5301 -t 1 -J")
            assert '"sum_received"' in out, out[-500:]
        finally:
            server.wait(10)
    assert not (run_dir / "controller.pid").exists()
