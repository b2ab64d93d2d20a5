"""Tiered tree of regions: the default shape for multicast-tree experiments.

One master ``m1`` on core switch ``s1``; regional switches ``s2``.. linked to
the core; helpers ``h1``.. and viewers ``v1``.. on their region's switch.
Regions fall into latency tiers (contiguous blocks: with 4 regions and 2 tiers,
regions 1-2 are tier 1 and 3-4 tier 2).  The core-to-region delay of a tier is
spread by a seeded +-``spread_pct`` so regions of one tier are alike but not
identical, which is what the master's pingback tiering has to cope with.

Also a ``mn --custom`` file: ``mn --custom topologies/tiered.py --link tc
--topo tiered,regions=4,tier_delays_ms=3:25``.
"""

# ruff: noqa: E402 -- the path bootstrap must run before the package imports
from __future__ import annotations

import sys

if not globals().get("__package__"):  # run by path (mn --custom): make the package importable
    import os

    _root = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
    if _root not in sys.path:
        sys.path.insert(0, _root)

import random
from typing import Optional

import networkx as nx

from testbed.core.spec import HELPER, MASTER, SWITCH, VIEWER
from topologies._build import attach, check_bandwidths
from topologies._params import require
from topologies.mn import topo_factory

NAME = "tiered"


def default_tier_delays(tiers: int) -> tuple[float, ...]:
    """3 ms for tier 1, then 25, 50, 75 ... ms: near and far regions of one country."""
    return tuple(3.0 if k == 0 else 25.0 * k for k in range(tiers))


def make_tiered(
    *,
    regions: int = 4,
    tiers: Optional[int] = None,
    helpers_per_region: int = 2,
    viewers_per_region: int = 1,
    tier_delays_ms: Optional[tuple[float, ...]] = None,
    spread_pct: float = 10.0,
    access_delay_ms: float = 1.0,
    core_bw_mbit: float = 50.0,
    access_bw_mbit: float = 20.0,
    master_bw_mbit: float = 50.0,
    seed: int = 1,
) -> nx.Graph:
    """Build the tiered spec.

    ``tier_delays_ms`` is the one-way core-to-region delay per tier (its length
    sets ``tiers`` when that is not given); ``access_delay_ms`` and the
    bandwidths apply to host links (``master_bw_mbit`` to the master's).
    """
    if tier_delays_ms is None:
        tiers = 2 if tiers is None else tiers
        require(tiers >= 1, NAME, "tiers", tiers, "must be >= 1")
        tier_delays_ms = default_tier_delays(tiers)
    elif tiers is None:
        tiers = len(tier_delays_ms)
    require(
        len(tier_delays_ms) == tiers, NAME, "tier_delays_ms", tier_delays_ms,
        f"must give one delay per tier ({tiers})",
    )
    require(regions >= 1, NAME, "regions", regions, "must be >= 1")
    require(regions >= tiers, NAME, "tiers", tiers, f"must be <= regions ({regions})")
    require(helpers_per_region >= 0, NAME, "helpers_per_region", helpers_per_region, "must be >= 0")
    require(viewers_per_region >= 0, NAME, "viewers_per_region", viewers_per_region, "must be >= 0")
    require(all(d >= 0 for d in tier_delays_ms), NAME, "tier_delays_ms", tier_delays_ms,
            "must be >= 0")
    require(0 <= spread_pct < 100, NAME, "spread_pct", spread_pct, "must be in [0, 100)")
    require(access_delay_ms >= 0, NAME, "access_delay_ms", access_delay_ms, "must be >= 0")
    check_bandwidths(NAME, core_bw_mbit=core_bw_mbit, access_bw_mbit=access_bw_mbit,
                     master_bw_mbit=master_bw_mbit)

    rng = random.Random(seed)
    g = nx.Graph(generator=NAME)
    g.add_node("s1", role=SWITCH, tier=0)
    attach(g, "m1", MASTER, "s1", delay_ms=access_delay_ms, bw_mbit=master_bw_mbit, tier=0)
    helper_no = viewer_no = 0
    for region in range(1, regions + 1):
        tier = (region - 1) * tiers // regions + 1
        switch = f"s{region + 1}"
        base = tier_delays_ms[tier - 1]
        delay = round(base * (1 + rng.uniform(-spread_pct, spread_pct) / 100), 3)
        g.add_node(switch, role=SWITCH, region=region, tier=tier)
        g.add_edge("s1", switch, delay_ms=delay, bw_mbit=core_bw_mbit)
        for role, count in ((HELPER, helpers_per_region), (VIEWER, viewers_per_region)):
            for _ in range(count):
                if role == HELPER:
                    helper_no += 1
                    host = f"h{helper_no}"
                else:
                    viewer_no += 1
                    host = f"v{viewer_no}"
                attach(g, host, role, switch, delay_ms=access_delay_ms,
                       bw_mbit=access_bw_mbit, region=region, tier=tier)
    return g


topos = {NAME: topo_factory(NAME)}
