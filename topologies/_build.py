"""Small graph-building steps shared by the generators."""

from __future__ import annotations

import math

import networkx as nx

from topologies._params import require

_HOST_RING = 0.03  # drawing offset of a host from its switch, as a fraction of the layout


def check_bandwidths(generator: str, **bws: float) -> None:
    """Every given bandwidth (Mbit/s) must be positive."""
    for key, bw in bws.items():
        require(bw > 0, generator, key, bw, "must be > 0")


def attach(g: nx.Graph, host: str, role: str, switch: str, *, delay_ms: float,
           bw_mbit: float, scale: float = 1.0, **attrs: object) -> None:
    """Add ``host`` with one link to ``switch``.

    When the switch has a ``pos``, the host is drawn on a small ring around it
    (``scale`` is the layout's size, so the ring stays visible).
    """
    g.add_node(host, role=role, **attrs)
    if "pos" in g.nodes[switch]:
        angle = 2 * math.pi * (g.degree(switch) % 12) / 12
        x, y = g.nodes[switch]["pos"]
        r = _HOST_RING * scale
        g.nodes[host]["pos"] = (round(x + r * math.cos(angle), 4),
                                round(y + r * math.sin(angle), 4))
    g.add_edge(host, switch, delay_ms=delay_ms, bw_mbit=bw_mbit)
