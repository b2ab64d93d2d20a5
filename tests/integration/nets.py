"""Small hand-made networks for integration tests: switch links and host attachments."""

import networkx as nx

from testbed.core.spec import HELPER, MASTER, PROBE, SWITCH


def small_net(links: dict[tuple[str, str], float], hosts: dict[str, str]) -> nx.Graph:
    """Switches joined by ``links`` ((a, b) -> one-way delay in ms); ``hosts`` maps a host
    to its switch (m1 is the master, the others helpers), on unshaped links."""
    g = nx.Graph()
    for (a, b), delay in links.items():
        g.add_node(a, role=SWITCH)
        g.add_node(b, role=SWITCH)
        g.add_edge(a, b, delay_ms=delay)
    for host, switch in hosts.items():
        g.add_node(host, role=MASTER if host == "m1" else HELPER)
        g.add_edge(host, switch)
    return g


def rogue_net(core_delay_ms: float, core_bw_mbit: float) -> nx.Graph:
    """m1 on s1; helpers h1, h2 and a probe host p1 (no daemon, no credentials: the
    rogue) on s2; s1 and s2 joined by one shaped link."""
    g = nx.Graph()
    for s in ("s1", "s2"):
        g.add_node(s, role=SWITCH)
    g.add_edge("s1", "s2", delay_ms=core_delay_ms, bw_mbit=core_bw_mbit)
    g.add_node("m1", role=MASTER)
    g.add_edge("m1", "s1")
    for h in ("h1", "h2"):
        g.add_node(h, role=HELPER)
        g.add_edge(h, "s2")
    g.add_node("p1", role=PROBE)
    g.add_edge("p1", "s2")
    return g
