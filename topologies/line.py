"""A line of switches with hosts on each: scale tests and start-up benchmarks.

``switches`` switches in a row (``s1 - s2 - ...``), ``hosts_per_switch`` hosts on
each; the first host is the master, then every third a viewer, the rest helpers.

Also a ``mn --custom`` file: ``mn --custom topologies/line.py --topo line,switches=10``.
"""

# ruff: noqa: E402 -- the path bootstrap must run before the package imports
from __future__ import annotations

import sys

if not globals().get("__package__"):  # run by path (mn --custom): make the package importable
    import os

    _root = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
    if _root not in sys.path:
        sys.path.insert(0, _root)

from typing import Optional

import networkx as nx

from testbed.core.spec import HELPER, MASTER, SWITCH, VIEWER
from topologies._params import require
from topologies.mn import topo_factory

NAME = "line"


def make_line(
    *,
    switches: int = 10,
    hosts_per_switch: int = 3,
    core_delay_ms: float = 1.0,
    access_delay_ms: float = 0.5,
    core_bw_mbit: Optional[float] = 100.0,
    access_bw_mbit: Optional[float] = None,
) -> nx.Graph:
    """Build the line spec."""
    require(1 <= switches <= 200, NAME, "switches", switches, "must be in 1..200")
    require(1 <= hosts_per_switch <= 50, NAME, "hosts_per_switch", hosts_per_switch,
            "must be in 1..50")
    require(core_delay_ms >= 0, NAME, "core_delay_ms", core_delay_ms, "must be >= 0")
    require(access_delay_ms >= 0, NAME, "access_delay_ms", access_delay_ms, "must be >= 0")
    g = nx.Graph(generator=NAME)
    n = 0
    for i in range(1, switches + 1):
        sw = f"s{i}"
        g.add_node(sw, role=SWITCH)
        if i > 1:
            attrs = {"delay_ms": core_delay_ms}
            if core_bw_mbit:
                attrs["bw_mbit"] = core_bw_mbit
            g.add_edge(f"s{i - 1}", sw, **attrs)
        for _ in range(hosts_per_switch):
            n += 1
            if n == 1:
                name, role = "m1", MASTER
            elif n % 3 == 0:
                name, role = f"v{n}", VIEWER
            else:
                name, role = f"h{n}", HELPER
            g.add_node(name, role=role)
            attrs = {"delay_ms": access_delay_ms}
            if access_bw_mbit:
                attrs["bw_mbit"] = access_bw_mbit
            g.add_edge(name, sw, **attrs)
    return g


topos = {NAME: topo_factory(NAME)}
