"""A linear path for link-fidelity tests: h1 - s1 - ... - s(N-1) - h2.

``delays_ms`` gives the one-way delay of each of the N links, in path order
(h1-s1 is link 1, s(N-1)-h2 is link N).  The shaping fields ``bw_mbit``,
``jitter_ms``, ``loss_pct`` and ``queue_pkts`` apply to link ``bottleneck``
(1..N) only, or to every link when ``bottleneck=0``; measured end-to-end
values can then be compared with the configuration directly.  ``h1`` is the
master, ``h2`` a helper.

Also a ``mn --custom`` file: ``mn --custom topologies/chain.py --link tc
--topo chain,delays_ms=5:10:20,bw_mbit=10,bottleneck=2``.
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

from testbed.core.spec import HELPER, MASTER, SWITCH
from topologies._params import require
from topologies.mn import topo_factory

NAME = "chain"


def make_chain(
    *,
    delays_ms: tuple[float, ...] = (5.0, 10.0, 20.0),
    bw_mbit: Optional[float] = 10.0,
    bottleneck: int = 0,
    jitter_ms: float = 0.0,
    loss_pct: float = 0.0,
    queue_pkts: Optional[int] = None,
) -> nx.Graph:
    """Build the chain spec; fields left at zero/None are not set on any edge."""
    n = len(delays_ms)
    require(n >= 2, NAME, "delays_ms", delays_ms,
            "needs at least 2 links (hosts attach to switches)")
    require(n <= 100, NAME, "delays_ms", delays_ms, "at most 100 links")
    require(all(d >= 0 for d in delays_ms), NAME, "delays_ms", delays_ms, "must be >= 0")
    require(0 <= bottleneck <= n, NAME, "bottleneck", bottleneck, f"must be 0 (all) or 1..{n}")
    require(bw_mbit is None or bw_mbit > 0, NAME, "bw_mbit", bw_mbit, "must be > 0 or none")
    require(jitter_ms >= 0, NAME, "jitter_ms", jitter_ms, "must be >= 0")
    require(0 <= loss_pct <= 100, NAME, "loss_pct", loss_pct, "must be in [0, 100]")
    require(queue_pkts is None or queue_pkts >= 1, NAME, "queue_pkts", queue_pkts, "must be >= 1")

    shaping: dict[str, float] = {}
    for key, value in (("bw_mbit", bw_mbit), ("jitter_ms", jitter_ms), ("loss_pct", loss_pct),
                       ("queue_pkts", queue_pkts)):
        if value:
            shaping[key] = value
    path = ["h1", *(f"s{i}" for i in range(1, n)), "h2"]
    g = nx.Graph(generator=NAME)
    g.add_node("h1", role=MASTER)
    g.add_node("h2", role=HELPER)
    for name in path[1:-1]:
        g.add_node(name, role=SWITCH)
    for index, (u, v) in enumerate(zip(path, path[1:]), start=1):
        shaped = bottleneck in (0, index)
        g.add_edge(u, v, delay_ms=delays_ms[index - 1], **(shaping if shaped else {}))
    return g


topos = {NAME: topo_factory(NAME)}
