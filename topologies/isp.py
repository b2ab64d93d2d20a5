"""A real-world-like ISP backbone read from a GraphML file in ``topologies/data``.

Each city of the file becomes a switch (``s1``.. in file order) with ``city``,
``label``, ``region`` (the city's number) and ``pos`` (longitude, latitude).
A backbone link's one-way delay is the great-circle distance between its
cities divided by ``km_per_ms`` (light in fibre covers about 200 km per ms;
real fibre routes are longer, so lower it for more realism).  The master sits
at ``master_city``; helpers, then viewers, go round-robin over the other
cities in file order, so viewer ``vK`` shares a city with helper ``hK``.  Helpers'
links have ``helper_bw_mbit`` (default: ``access_bw_mbit``, as viewers' links have).

Also a ``mn --custom`` file: ``mn --custom topologies/isp.py --link tc
--topo isp,master_city=chicago,helpers=5``.
"""

# ruff: noqa: E402 -- the path bootstrap must run before the package imports
from __future__ import annotations

import sys

if not globals().get("__package__"):  # run by path (mn --custom): make the package importable
    import os

    _root = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
    if _root not in sys.path:
        sys.path.insert(0, _root)

import math
import re
from importlib import resources

import networkx as nx

from testbed.core.spec import HELPER, MASTER, SWITCH, VIEWER
from topologies._build import attach, check_bandwidths
from topologies._params import ParamError, require
from topologies.mn import topo_factory

NAME = "isp"
EARTH_RADIUS_KM = 6371.0
_NETWORK_RE = re.compile(r"^[a-z0-9_-]{1,64}$")


def networks() -> list[str]:
    """Names of the backbone files shipped in ``topologies/data``."""
    data = resources.files("topologies") / "data"
    return sorted(p.name[: -len(".graphml")] for p in data.iterdir()
                  if p.name.endswith(".graphml"))


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points given in decimal degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def load_backbone(network: str) -> nx.Graph:
    """The city graph of ``data/<network>.graphml`` (nodes: label, latitude, longitude)."""
    known = networks()
    require(bool(_NETWORK_RE.match(network)) and network in known, NAME, "network", network,
            f"expected one of {', '.join(known)}")
    path = resources.files("topologies") / "data" / f"{network}.graphml"
    with path.open("rb") as f:
        return nx.read_graphml(f)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_city(backbone: nx.Graph, city: str) -> str:
    """The node id for ``city``: its id or label, case and spacing ignored."""
    wanted = _key(city)
    for node, label in backbone.nodes(data="label"):
        if wanted in (_key(node), _key(str(label).split(",")[0])):
            return node
    raise ValueError(f"unknown city (expected one of {', '.join(backbone.nodes)})")


def make_isp(
    *,
    network: str = "abilene",
    master_city: str = "chicago",
    helpers: int = 10,
    viewers: int = 10,
    km_per_ms: float = 200.0,
    access_delay_ms: float = 0.5,
    core_bw_mbit: float = 50.0,
    access_bw_mbit: float = 20.0,
    master_bw_mbit: float = 50.0,
    helper_bw_mbit: float | None = None,
) -> nx.Graph:
    """Build the ISP spec from backbone ``network`` (see :func:`networks`)."""
    require(helpers >= 0, NAME, "helpers", helpers, "must be >= 0")
    require(viewers >= 0, NAME, "viewers", viewers, "must be >= 0")
    require(km_per_ms > 0, NAME, "km_per_ms", km_per_ms, "must be > 0")
    require(access_delay_ms >= 0, NAME, "access_delay_ms", access_delay_ms, "must be >= 0")
    helper_bw_mbit = access_bw_mbit if helper_bw_mbit is None else helper_bw_mbit
    check_bandwidths(NAME, core_bw_mbit=core_bw_mbit, access_bw_mbit=access_bw_mbit,
                     master_bw_mbit=master_bw_mbit, helper_bw_mbit=helper_bw_mbit)
    backbone = load_backbone(network)
    try:
        master_node = find_city(backbone, master_city)
    except ValueError as exc:
        raise ParamError(NAME, "master_city", master_city, str(exc)) from None

    switch_of = {city: f"s{i}" for i, city in enumerate(backbone.nodes, start=1)}
    g = nx.Graph(generator=NAME, network=network)
    for region, (city, data) in enumerate(backbone.nodes(data=True), start=1):
        g.add_node(switch_of[city], role=SWITCH, city=city, label=data.get("label", city),
                   region=region, pos=(data["longitude"], data["latitude"]))
    for a, b in backbone.edges:
        km = great_circle_km(backbone.nodes[a]["latitude"], backbone.nodes[a]["longitude"],
                             backbone.nodes[b]["latitude"], backbone.nodes[b]["longitude"])
        g.add_edge(switch_of[a], switch_of[b], delay_ms=round(km / km_per_ms, 3),
                   bw_mbit=core_bw_mbit)

    def place(host: str, role: str, city: str, bw: float) -> None:
        switch = switch_of[city]
        attach(g, host, role, switch, delay_ms=access_delay_ms, bw_mbit=bw, scale=20.0,
               city=city, region=g.nodes[switch]["region"])

    others = [c for c in backbone.nodes if c != master_node] or [master_node]
    place("m1", MASTER, master_node, master_bw_mbit)
    for i in range(helpers):
        place(f"h{i + 1}", HELPER, others[i % len(others)], helper_bw_mbit)
    for i in range(viewers):
        place(f"v{i + 1}", VIEWER, others[i % len(others)], access_bw_mbit)
    return g


topos = {NAME: topo_factory(NAME)}
