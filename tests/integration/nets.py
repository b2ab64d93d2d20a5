"""Small hand-made networks for integration tests: switch links and host attachments."""

import networkx as nx

from testbed.core.spec import HELPER, MASTER, SWITCH


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
