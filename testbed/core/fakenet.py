"""A fake network of flow tables, for asking behavioural questions in tests.

"Which hosts receive a frame to X sent by h?" is what matters about a rule set, not
what the rule list looks like.  :class:`FakeNet` executes table 0 of every switch as an
OpenFlow 1.3 switch would (highest priority match wins, output to the in_port is
suppressed, no match drops) and follows outputs across the links of a
:class:`~testbed.core.l2.NetView`, raising :class:`ForwardingLoop` when a copy comes back
to a (switch, in_port) it already passed (headers never change, so it would loop forever).

Group actions are followed into the switch's group table: a group of type ``all`` runs
every bucket, a fast-failover group the first bucket whose watched port is up.  Ports in
``down_ports`` (both ends of a failed link) are dead: outputs to them are lost.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional, Union

import networkx as nx

from testbed.core.l2 import NetView
from testbed.core.rules import (
    GROUP_FF,
    Action,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    check_group_refs,
    check_unique_groups,
    int_to_mac,
    mac_to_int,
    normal_mac,
)


class ForwardingLoop(RuntimeError):
    """A packet copy would circulate forever (or the copies exceed a bound)."""


class AmbiguousMatch(RuntimeError):
    """Two rules of the same priority match one packet: OpenFlow leaves this undefined."""


@dataclass(frozen=True)
class Packet:
    """The header fields a rule can look at (``None``: field absent)."""

    eth_dst: str
    eth_src: Optional[str] = None
    eth_type: Optional[int] = None
    ip_proto: Optional[int] = None
    ipv4_src: Optional[str] = None
    ipv4_dst: Optional[str] = None
    udp_dst: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eth_dst", normal_mac(self.eth_dst))
        if self.eth_src is not None:
            object.__setattr__(self, "eth_src", normal_mac(self.eth_src))


def matches(match: Match, packet: Packet, in_port: int) -> bool:
    """True if ``packet`` arriving on ``in_port`` satisfies every field of ``match``."""
    for name, value in match.items():
        if name == "eth_dst_mask":
            continue
        if name == "in_port":
            if in_port != value:
                return False
        elif name == "eth_dst" and match.eth_dst_mask is not None:
            mask = mac_to_int(match.eth_dst_mask)
            if mac_to_int(packet.eth_dst) & mask != mac_to_int(value):
                return False
        elif getattr(packet, name) != value:
            return False
    return True


@dataclass
class Outcome:
    """What became of one injected packet.

    received: host -> number of copies it got; dropped: (switch, in_port) where a copy
    met no rule or a rule without outputs; dead_ends: (switch, port) outputs that lead
    to neither a host nor a link; lost: (switch, port) outputs to a port that is down.
    """

    received: Counter = field(default_factory=Counter)
    dropped: list[tuple[str, int]] = field(default_factory=list)
    dead_ends: list[tuple[str, int]] = field(default_factory=list)
    lost: list[tuple[str, int]] = field(default_factory=list)


_Peer = Union[tuple[str, str], tuple[str, str, int]]


class FakeNet:
    """Flow and group tables for the switches of ``view``, plus its wiring, in memory.

    ``down_ports`` holds (switch, port) pairs that are down; it may be changed between
    traces (see :func:`link_ports`).
    """

    def __init__(
        self,
        view: NetView,
        rules: Iterable[Rule],
        max_copies: int = 100_000,
        groups: Iterable[Group] = (),
        down_ports: Iterable[tuple[str, int]] = (),
    ):
        self.view = view
        self.max_copies = max_copies
        self.down_ports: set[tuple[str, int]] = set(down_ports)
        rules, groups = list(rules), list(groups)
        check_unique_groups(groups)
        check_group_refs(rules, groups)
        by_dpid = {s.dpid: s.name for s in view.switches.values()}
        self._groups: dict[str, dict[int, Group]] = {name: {} for name in view.switches}
        for group in groups:
            if group.dpid not in by_dpid:
                raise ValueError(f"group for a switch not in the topology: {group}")
            self._groups[by_dpid[group.dpid]][group.group_id] = group
        self._tables: dict[str, list[Rule]] = {name: [] for name in view.switches}
        for rule in rules:
            if rule.dpid not in by_dpid:
                raise ValueError(f"rule for a switch not in the topology: {rule}")
            if rule.table != 0:
                raise ValueError(f"only table 0 is modelled: {rule}")
            self._tables[by_dpid[rule.dpid]].append(rule)
        for table in self._tables.values():
            table.sort(key=lambda r: -r.priority)
        self._peer: dict[tuple[str, int], _Peer] = {}
        for host in view.hosts.values():
            self._peer[host.switch, host.port] = ("host", host.name)
        for link in view.links:
            self._peer[link.a, link.a_port] = ("switch", link.b, link.b_port)
            self._peer[link.b, link.b_port] = ("switch", link.a, link.a_port)

    def lookup(self, switch: str, packet: Packet, in_port: int) -> Optional[Rule]:
        """The rule ``switch`` applies to ``packet`` on ``in_port`` (None: table miss)."""
        found: Optional[Rule] = None
        for rule in self._tables[switch]:
            if found is not None and rule.priority < found.priority:
                break
            if matches(rule.match, packet, in_port):
                if found is not None:
                    raise AmbiguousMatch(f"{switch}: {found} and {rule} both match {packet}")
                found = rule
        return found

    def trace(self, host: str, packet: Packet) -> Outcome:
        """Inject ``packet`` from ``host`` and follow every copy to its end."""
        src = self.view.hosts[host]
        outcome = Outcome()
        queue = deque([(src.switch, src.port, frozenset())])
        copies = 0
        while queue:
            switch, in_port, seen = queue.popleft()
            rule = self.lookup(switch, packet, in_port)
            if rule is None or not rule.actions:
                outcome.dropped.append((switch, in_port))
                continue
            seen = seen | {(switch, in_port)}
            ports = self.output_ports(switch, rule.actions)
            if not ports:  # only groups with no (live) bucket
                outcome.dropped.append((switch, in_port))
            for port in ports:
                if port == in_port:
                    continue
                copies += 1
                if copies > self.max_copies:
                    raise ForwardingLoop(f"more than {self.max_copies} copies of {packet}")
                peer = self._peer.get((switch, port))
                if (switch, port) in self.down_ports:
                    outcome.lost.append((switch, port))
                elif peer is None:
                    outcome.dead_ends.append((switch, port))
                elif peer[0] == "host":
                    outcome.received[peer[1]] += 1
                else:
                    nxt = (peer[1], peer[2])
                    if nxt in seen:
                        raise ForwardingLoop(
                            f"{packet.eth_dst} from {host} returns to {nxt[0]} port {nxt[1]}"
                        )
                    queue.append((nxt[0], nxt[1], seen))
        return outcome

    def output_ports(self, switch: str, actions: Iterable[Action],
                     chain: tuple[int, ...] = ()) -> list[int]:
        """The ports ``actions`` send copies to on ``switch``, groups followed (one entry
        per copy, in action order; the in_port is not yet taken out)."""
        ports: list[int] = []
        for action in actions:
            if isinstance(action, Output):
                ports.append(action.port)
            elif isinstance(action, GroupAction):
                if action.group_id in chain:
                    raise ForwardingLoop(f"{switch}: groups {chain} refer back to "
                                         f"{action.group_id}")
                group = self._groups[switch][action.group_id]
                buckets = group.buckets
                if group.type == GROUP_FF:
                    live = [b for b in buckets if (switch, b.watch_port) not in self.down_ports]
                    buckets = live[:1]
                for bucket in buckets:
                    ports.extend(self.output_ports(switch, bucket.actions,
                                                   (*chain, action.group_id)))
        return ports

    def send(self, host: str, eth_dst: str, **fields: object) -> Counter:
        """Multiset of hosts that receive a frame to ``eth_dst`` sent by ``host``.

        Extra header ``fields`` are those of :class:`Packet`; the source MAC is the host's.
        """
        fields.setdefault("eth_src", self.view.hosts[host].mac)
        return self.trace(host, Packet(eth_dst=eth_dst, **fields)).received


def link_ports(view: NetView, a: str, b: str) -> set[tuple[str, int]]:
    """Both ends of the link between switches ``a`` and ``b``, as (switch, port) pairs:
    what to put in :attr:`FakeNet.down_ports` to fail that link."""
    for link in view.links:
        if {link.a, link.b} == {a, b}:
            return {(link.a, link.a_port), (link.b, link.b_port)}
    raise ValueError(f"no link between {a} and {b}")


def topology_dict(
    g: nx.Graph,
    hosts_per_switch: Union[int, Mapping[object, int]] = 1,
    dpid_base: int = 1,
    port_base: int = 1,
) -> dict:
    """A topology.json structure for switch graph ``g`` (a test and simulation helper).

    Switch i (in ``g``'s node order) is ``s<i+1>`` with dpid ``dpid_base + i``; its
    hosts take the first ports from ``port_base`` on, its links the next ones.  Edge
    attribute ``delay_ms`` (default 0) becomes the link delay.  Host j is ``h<j+1>``
    with MAC j+1 and IP 10.0.x.y.
    """
    names = {node: f"s{i + 1}" for i, node in enumerate(g.nodes)}
    next_port = {node: port_base for node in g.nodes}
    switches: dict[str, dict] = {
        names[n]: {"dpid": dpid_base + i, "ports": {}} for i, n in enumerate(g.nodes)
    }

    def new_port(node: object) -> int:
        port = next_port[node]
        next_port[node] += 1
        switches[names[node]]["ports"][f"{names[node]}-eth{port}"] = port
        return port

    hosts = {}
    for node in g.nodes:
        count = hosts_per_switch if isinstance(hosts_per_switch, int) else (
            hosts_per_switch.get(node, 0))
        for _ in range(count):
            j = len(hosts) + 1
            hosts[f"h{j}"] = {
                "ip": f"10.0.{j // 256}.{j % 256}",
                "mac": int_to_mac(j),
                "switch": names[node],
                "port": new_port(node),
                "role": "viewer",
            }
    links = []
    for u, v, data in g.edges(data=True):
        links.append({
            "a": names[u], "a_port": new_port(u),
            "b": names[v], "b_port": new_port(v),
            "delay_ms": float(data.get("delay_ms", 0.0)),
            "bw_mbit": data.get("bw_mbit"),
        })
    return {"switches": switches, "hosts": hosts, "links": links}
