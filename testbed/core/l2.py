"""Proactive layer-2 forwarding: the network as built -> every switch's flow rules.

Input is a :class:`NetView`, read from the ``topology.json`` that the network builder
writes; output is a list of :class:`~testbed.core.rules.Rule` for every switch:

* unicast by ``eth_dst`` along delay-weighted shortest paths.  Each destination gets a
  shortest-path tree, so forwarding is loop-free from any switch and any in_port;
* frames with the group bit set (broadcast, ARP, IPv6 ND, IP multicast) flood along a
  minimum spanning tree of the switch graph, one rule per in_port, to every host port and
  tree port except the in_port;
* a table-miss rule that drops: nothing unknown floods.

All rules carry :data:`COOKIE`, so the app can delete exactly its own rules.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import networkx as nx

from testbed.core.rules import (
    GROUP_BIT,
    MAX_DPID,
    MAX_PORT,
    Match,
    Output,
    Rule,
    RuleError,
    app_cookie,
    is_group_mac,
    normal_mac,
    sort_rules,
)
from testbed.core.spec import HOST_ROLES, natural_key

COOKIE = app_cookie("mc-l2")
TABLE = 0
PRIORITY_UNICAST = 200
PRIORITY_FLOOD = 100
PRIORITY_MISS = 0

# Path cost is delay in whole microseconds, then hop count: integers, so ties are exact
# and every edge costs > 0 (shortest-path predecessors then always form a tree).
_HOP_SCALE = 2**32

_TOP_KEYS = ("switches", "hosts", "links")
_SWITCH_KEYS = ("dpid", "ports")
_HOST_KEYS = ("ip", "mac", "switch", "port", "role")
_LINK_KEYS = ("a", "a_port", "b", "b_port", "delay_ms")
_LINK_OPTIONAL = ("bw_mbit",)


class TopologyError(ValueError):
    """A topology.json that cannot be used; the message names the entry and value."""


@dataclass(frozen=True)
class SwitchView:
    """A switch: its datapath id and its ports (interface name -> OpenFlow port)."""

    name: str
    dpid: int
    ports: Mapping[str, int]


@dataclass(frozen=True)
class HostView:
    """A host and where it is attached (switch name, OpenFlow port on that switch)."""

    name: str
    ip: str
    mac: str
    switch: str
    port: int
    role: str


@dataclass(frozen=True)
class LinkView:
    """A switch-to-switch link, ``a_port`` on switch ``a`` to ``b_port`` on switch ``b``."""

    a: str
    a_port: int
    b: str
    b_port: int
    delay_ms: float
    bw_mbit: Optional[float] = None

    def port_on(self, switch: str) -> int:
        """This link's port on ``switch`` (one of its two ends)."""
        if switch not in (self.a, self.b):
            raise ValueError(f"link {self.a}-{self.b} does not end at {switch}")
        return self.a_port if switch == self.a else self.b_port


@dataclass(frozen=True)
class NetView:
    """The network as built: switches, hosts and links, validated and sorted by name."""

    switches: Mapping[str, SwitchView]
    hosts: Mapping[str, HostView]
    links: tuple[LinkView, ...]

    @classmethod
    def from_dict(cls, data: Any) -> NetView:
        """Build from the topology.json structure; raises :class:`TopologyError`."""
        return _parse(data)

    @classmethod
    def from_json(cls, text: str) -> NetView:
        """Build from topology.json text; raises :class:`TopologyError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TopologyError(f"topology: not valid JSON ({exc})") from None
        return _parse(data)

    def to_dict(self) -> dict:
        """The topology.json structure (inverse of :meth:`from_dict`)."""
        return {
            "switches": {
                s.name: {"dpid": s.dpid, "ports": dict(s.ports)} for s in self.switches.values()
            },
            "hosts": {
                h.name: {"ip": h.ip, "mac": h.mac, "switch": h.switch, "port": h.port,
                         "role": h.role}
                for h in self.hosts.values()
            },
            "links": [
                {"a": k.a, "a_port": k.a_port, "b": k.b, "b_port": k.b_port,
                 "delay_ms": k.delay_ms, "bw_mbit": k.bw_mbit}
                for k in self.links
            ],
        }

    def switch_by_dpid(self, dpid: int) -> Optional[SwitchView]:
        """The switch with datapath id ``dpid``, or None if the topology has none."""
        for switch in self.switches.values():
            if switch.dpid == dpid:
                return switch
        return None

    def link_at(self, switch: str, port: int) -> Optional[LinkView]:
        """The switch-to-switch link on ``switch`` port ``port``, if there is one."""
        for link in self.links:
            if (link.a, link.a_port) == (switch, port) or (link.b, link.b_port) == (switch, port):
                return link
        return None

    def host_ports(self, switch: str) -> dict[int, str]:
        """Ports of ``switch`` that lead to a host: port -> host name."""
        return {h.port: h.name for h in self.hosts.values() if h.switch == switch}

    def graph(self) -> nx.Graph:
        """The switch graph: nodes are switch names (ordered by dpid), edges carry
        ``delay_ms``, ``bw_mbit`` and ``ports`` (switch name -> port on that switch)."""
        g = nx.Graph()
        for s in sorted(self.switches.values(), key=lambda s: s.dpid):
            g.add_node(s.name, dpid=s.dpid)
        for link in sorted(self.links, key=self._link_order):
            g.add_edge(link.a, link.b, delay_ms=link.delay_ms, bw_mbit=link.bw_mbit,
                       ports={link.a: link.a_port, link.b: link.b_port})
        return g

    def _link_order(self, link: LinkView) -> tuple[int, int]:
        ends = sorted((self.switches[link.a].dpid, self.switches[link.b].dpid))
        return ends[0], ends[1]


# --------------------------------------------------------------------------- rules


def l2_rules(view: NetView, cookie: int = COOKIE) -> list[Rule]:
    """Every switch's rules (unicast, flood, table-miss), in deterministic order."""
    g = view.graph()
    rules: list[Rule] = []
    for switch in view.switches.values():
        rules.append(Rule(switch.dpid, TABLE, PRIORITY_MISS, Match(), (), cookie))
    rules.extend(_unicast_rules(view, g, cookie))
    rules.extend(_flood_rules(view, g, cookie))
    return sort_rules(rules)


def rules_for_dpid(view: NetView, dpid: int, cookie: int = COOKIE) -> list[Rule]:
    """The rules of the one switch ``dpid`` (empty if the topology does not know it)."""
    return [r for r in l2_rules(view, cookie) if r.dpid == dpid]


def path_cost(delay_ms: float) -> int:
    """Integer cost of one link: delay in microseconds first, then one per hop."""
    return round(delay_ms * 1000) * _HOP_SCALE + 1


def next_hops(
    view: NetView, g: Optional[nx.Graph] = None, targets: Optional[Iterable[str]] = None
) -> dict[str, dict[str, str]]:
    """For each destination switch d (default: all): switch -> next switch toward d.

    Dijkstra from d gives, for every switch, the neighbours that lie on some shortest
    path; the one with the lowest dpid wins.  Costs are > 0, so these choices form a tree.
    """
    g = view.graph() if g is None else g
    dpid = nx.get_node_attributes(g, "dpid")
    table: dict[str, dict[str, str]] = {}
    for dst in g.nodes if targets is None else targets:
        preds, _ = nx.dijkstra_predecessor_and_distance(
            g, dst, weight=lambda u, v, d: path_cost(d["delay_ms"])
        )
        table[dst] = {s: min(p, key=dpid.__getitem__) for s, p in preds.items() if p}
    return table


def flood_tree(view: NetView, g: Optional[nx.Graph] = None) -> nx.Graph:
    """A minimum spanning tree (a forest if the switches are partitioned) by delay.

    Equal delays are ordered by the edges' dpids, which makes every weight distinct and
    so the tree unique, whatever algorithm or input order.
    """
    g = view.graph() if g is None else g
    weighted = nx.Graph()
    weighted.add_nodes_from(g.nodes(data=True))
    edges = sorted(g.edges(data=True), key=lambda e: sorted((g.nodes[e[0]]["dpid"],
                                                             g.nodes[e[1]]["dpid"])))
    for rank, (u, v, data) in enumerate(edges):
        weighted.add_edge(u, v, **data, mst_weight=round(data["delay_ms"] * 1000) * 2**32 + rank)
    return nx.minimum_spanning_tree(weighted, weight="mst_weight", algorithm="kruskal")


def _unicast_rules(view: NetView, g: nx.Graph, cookie: int) -> list[Rule]:
    hops = next_hops(view, g, {h.switch for h in view.hosts.values()})
    rules = []
    for host in view.hosts.values():
        dst = host.switch
        match = Match(eth_dst=host.mac)
        dpid = view.switches[dst].dpid
        rules.append(Rule(dpid, TABLE, PRIORITY_UNICAST, match, (Output(host.port),), cookie))
        for switch, nbr in hops[dst].items():
            port = g.edges[switch, nbr]["ports"][switch]
            rules.append(Rule(view.switches[switch].dpid, TABLE, PRIORITY_UNICAST, match,
                              (Output(port),), cookie))
    return rules


def _flood_rules(view: NetView, g: nx.Graph, cookie: int) -> list[Rule]:
    tree = flood_tree(view, g)
    rules = []
    for switch in view.switches.values():
        ports = set(view.host_ports(switch.name))
        ports.update(tree.edges[switch.name, nbr]["ports"][switch.name]
                     for nbr in tree.neighbors(switch.name))
        for in_port in sorted(ports):
            outs = tuple(Output(p) for p in sorted(ports - {in_port}))
            if outs:
                match = Match(in_port=in_port, eth_dst=GROUP_BIT, eth_dst_mask=GROUP_BIT)
                rules.append(Rule(switch.dpid, TABLE, PRIORITY_FLOOD, match, outs, cookie))
    return rules


# --------------------------------------------------------------------------- parsing


def _parse(data: Any) -> NetView:
    top = _object(data, "topology", _TOP_KEYS)
    switches = _parse_switches(top["switches"])
    hosts = _parse_hosts(top["hosts"], switches)
    links = _parse_links(top["links"], switches, hosts)
    return NetView(switches=switches, hosts=hosts, links=links)


def _object(value: Any, where: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise TopologyError(f"{where}: must be an object with keys {', '.join(required)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise TopologyError(f"{where}: missing key {missing[0]!r}")
    unknown = sorted(str(k) for k in value if k not in required and k not in optional)
    if unknown:
        raise TopologyError(f"{where}: unknown key {unknown[0]!r} "
                            f"(allowed: {', '.join(required + optional)})")
    return value


def _named(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise TopologyError(f"{where}: must be an object of name -> entry")
    for name in value:
        if not isinstance(name, str) or not name:
            raise TopologyError(f"{where}: name {name!r} (must be a non-empty string)")
    return dict(sorted(value.items(), key=lambda item: natural_key(item[0])))


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TopologyError(f"{where}: {value!r} (must be an integer in {low}..{high})")
    return value


def _number(value: Any, where: str, positive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise TopologyError(f"{where}: {value!r} (must be a number {bound})")
    return float(value)


def _parse_switches(raw: Any) -> dict[str, SwitchView]:
    switches: dict[str, SwitchView] = {}
    by_dpid: dict[int, str] = {}
    for name, entry in _named(raw, "switches").items():
        where = f"switches.{name}"
        entry = _object(entry, where, _SWITCH_KEYS)
        dpid = _int(entry["dpid"], f"{where}.dpid", 1, MAX_DPID)
        if dpid in by_dpid:
            raise TopologyError(f"{where}.dpid: {dpid} is also the dpid of {by_dpid[dpid]}")
        by_dpid[dpid] = name
        ports: dict[str, int] = {}
        used: dict[int, str] = {}
        for intf, port in _named(entry["ports"], f"{where}.ports").items():
            port = _int(port, f"{where}.ports.{intf}", 1, MAX_PORT)
            if port in used:
                raise TopologyError(f"{where}.ports.{intf}: port {port} is also {used[port]}")
            ports[intf] = port
            used[port] = intf
        switches[name] = SwitchView(name, dpid, ports)
    return switches


def _check_port(switches: dict[str, SwitchView], where: str, switch: Any, port: Any,
                used: dict[tuple[str, int], str]) -> tuple[str, int]:
    if not isinstance(switch, str) or switch not in switches:
        raise TopologyError(f"{where}: unknown switch {switch!r}")
    port = _int(port, f"{where} port", 1, MAX_PORT)
    if port not in switches[switch].ports.values():
        raise TopologyError(f"{where}: {switch} has no port {port} "
                            f"(ports: {sorted(switches[switch].ports.values())})")
    if (switch, port) in used:
        raise TopologyError(f"{where}: {switch} port {port} is already used by "
                            f"{used[switch, port]}")
    used[switch, port] = where
    return switch, port


def _parse_hosts(raw: Any, switches: dict[str, SwitchView]) -> dict[str, HostView]:
    hosts: dict[str, HostView] = {}
    used: dict[tuple[str, int], str] = {}
    macs: dict[str, str] = {}
    ips: dict[str, str] = {}
    for name, entry in _named(raw, "hosts").items():
        where = f"hosts.{name}"
        entry = _object(entry, where, _HOST_KEYS)
        try:
            if not isinstance(entry["ip"], str):
                raise ValueError
            ip = str(ipaddress.IPv4Address(entry["ip"]))
        except ValueError:
            raise TopologyError(f"{where}.ip: {entry['ip']!r} (must be an IPv4 address)") from None
        try:
            mac = normal_mac(entry["mac"])
        except RuleError:
            raise TopologyError(f"{where}.mac: {entry['mac']!r} "
                                "(must look like 00:11:22:33:44:55)") from None
        if is_group_mac(mac) or mac == "00:00:00:00:00:00":
            raise TopologyError(f"{where}.mac: {mac} is not a unicast address")
        for seen, value, field in ((macs, mac, "mac"), (ips, ip, "ip")):
            if value in seen:
                raise TopologyError(f"{where}.{field}: {value} is also the {field} of "
                                    f"{seen[value]}")
            seen[value] = name
        role = entry["role"]
        if role not in HOST_ROLES:
            raise TopologyError(f"{where}.role: {role!r} (must be one of {', '.join(HOST_ROLES)})")
        switch, port = _check_port(switches, where, entry["switch"], entry["port"], used)
        hosts[name] = HostView(name, ip, mac, switch, port, role)
    return hosts


def _parse_links(raw: Any, switches: dict[str, SwitchView],
                 hosts: dict[str, HostView]) -> tuple[LinkView, ...]:
    if not isinstance(raw, list):
        raise TopologyError("links: must be a list of objects")
    used = {(h.switch, h.port): f"hosts.{h.name}" for h in hosts.values()}
    pairs: dict[frozenset, str] = {}
    links = []
    for i, entry in enumerate(raw):
        where = f"links[{i}]"
        entry = _object(entry, where, _LINK_KEYS, _LINK_OPTIONAL)
        a, a_port = _check_port(switches, f"{where}.a", entry["a"], entry["a_port"], used)
        b, b_port = _check_port(switches, f"{where}.b", entry["b"], entry["b_port"], used)
        if a == b:
            raise TopologyError(f"{where}: links {a} to itself")
        pair = frozenset((a, b))
        if pair in pairs:
            raise TopologyError(f"{where}: second link between {a} and {b} "
                                f"(first is {pairs[pair]}; parallel links are not supported)")
        pairs[pair] = where
        delay = _number(entry["delay_ms"], f"{where}.delay_ms", positive=False)
        bw = entry.get("bw_mbit")
        bw = None if bw is None else _number(bw, f"{where}.bw_mbit", positive=True)
        links.append(LinkView(a, a_port, b, b_port, delay, bw))
    return tuple(links)
