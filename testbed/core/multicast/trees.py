"""IP multicast: trees rooted at the master, and the groups and flows that carry them.

The controller feeds IGMP reports into a :class:`MembershipTable` (from
:mod:`testbed.core.igmp`, re-exported here with the address checks), builds one tree per
content group with :func:`multicast_tree` (and keeps it current with :func:`graft` and
:func:`prune`), turns each tree into OpenFlow 1.3 groups and flows with
:func:`group_rules`, and sends only the :func:`tree_diff` between what is installed and
what is intended.  All of it is pure: time comes in as ``now``.

A tree is an ``nx.DiGraph`` whose root is the master's switch; its other nodes are the
switches that lead to members and the member hosts (leaves).  Edge ``parent -> child``
carries ``port`` (the parent's output port) and, to a switch, ``in_port`` (where the copy
arrives).  ``tree.graph`` holds ``root``, ``source`` (the master), ``source_port`` (the
master's port on the root), ``mode`` ("spt" or "tiered"), ``weight``, ``order`` (members in
the order they were attached) and ``unreachable`` (members no path reaches).

Group numbers are derived from the group address, so every switch uses the same numbers
and a restarted controller computes the same ones: the ALL group of G is the low 28 bits
of G (224.0.1.5 -> 0x105); a fast-failover group protecting a child link of G is
``slot << 28 | low 28 bits`` with slot 1..14 (so at most 14 protected child links per
switch and group).  This app owns the group table of every switch.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import networkx as nx

from testbed.core.igmp import (  # noqa: F401 -- re-exported: multicast's public API
    ALLOW_NEW_SOURCES,
    BLOCK_OLD_SOURCES,
    CHANGE_TO_EXCLUDE,
    CHANGE_TO_INCLUDE,
    DEFAULT_TIMEOUT_S,
    IGMP_QUERY,
    IGMPV1_REPORT,
    IGMPV2_LEAVE,
    IGMPV2_REPORT,
    IGMPV3_REPORT,
    MODE_IS_EXCLUDE,
    MODE_IS_INCLUDE,
    MembershipTable,
    MulticastError,
    addr_key,
    group_address,
    report_effect,
)
from testbed.core.l2 import NetView, path_cost
from testbed.core.rules import (
    ETH_TYPE_IPV4,
    GROUP_ALL,
    GROUP_FF,
    Bucket,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    app_cookie,
    apply_group_diff,
    chain_order,
    check_unique_groups,
    diff_groups,
    int_to_mac,
    sort_groups,
    sort_rules,
)
from testbed.core.spec import natural_key

COOKIE = app_cookie("mc-mcast")
TABLE = 0
#: Above every l2 rule (unicast 200, flood 100): a group's packets follow its tree.  An
#: app that punts IGMP to the controller needs a higher priority still (IGMPv2 reports
#: are addressed to the group itself).
PRIORITY_TREE = 300
#: A group's packets that arrive anywhere but from the tree parent are dropped.
PRIORITY_GUARD = 290

FF_SLOTS = 14
_LOW_BITS = 0x0FFFFFFF
_INF = math.inf

# --------------------------------------------------------------------------- group ids


def multicast_mac(group_ip: str) -> str:
    """The Ethernet address a group's packets carry: 01:00:5e + the low 23 address bits."""
    return int_to_mac(0x01005E000000 | int(ipaddress.IPv4Address(group_address(group_ip)))
                      & 0x7FFFFF)


def all_group_id(group_ip: str) -> int:
    """The number of the group's ALL group on every switch: the address's low 28 bits."""
    return int(ipaddress.IPv4Address(group_address(group_ip))) & _LOW_BITS


def ff_group_id(group_ip: str, slot: int) -> int:
    """The number of fast-failover group ``slot`` (1..14) of the group on a switch."""
    if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= FF_SLOTS:
        raise MulticastError(f"fast-failover slot {slot!r} (must be 1..{FF_SLOTS})")
    return slot << 28 | all_group_id(group_ip)


# --------------------------------------------------------------------------- trees


class _SwitchGraph:
    """The switch graph as integer-cost adjacency lists plus the port of every arc."""

    def __init__(self, view: NetView, g: Optional[nx.Graph], weight: Optional[str]):
        g = view.graph() if g is None else g
        self.dpid = {n: view.switches[n].dpid for n in g.nodes}
        self.adj: dict[str, list[tuple[str, int]]] = {n: [] for n in g.nodes}
        self.port: dict[tuple[str, str], int] = {}
        for u, v, data in g.edges(data=True):
            cost = _edge_cost(data, weight, u, v)
            self.adj[u].append((v, cost))
            self.adj[v].append((u, cost))
            self.port[u, v] = data["ports"][u]
            self.port[v, u] = data["ports"][v]
        for nbrs in self.adj.values():
            nbrs.sort(key=lambda vc: self.dpid[vc[0]])

    def dijkstra(
        self,
        sources: Iterable[str],
        dist: dict[str, float],
        pred: dict[str, str],
        target: Optional[str] = None,
        banned: Container[tuple[str, str]] = frozenset(),
        extra: Container[tuple[str, str]] = frozenset(),
    ) -> None:
        """Shortest distances from ``sources`` (set to 0), updating ``dist``/``pred`` in
        place where they improve; among equal predecessors the lowest dpid wins.  Arcs
        ``(u, v)`` in ``banned`` or ``extra`` are not used.  Stops once ``target`` is final.
        """
        heap = []
        for s in sources:
            dist[s] = 0
            pred.pop(s, None)
            heap.append((0, self.dpid[s], s))
        heapq.heapify(heap)
        while heap:
            d, _, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            if u == target:
                return
            for v, cost in self.adj[u]:
                if (u, v) in banned or (u, v) in extra:
                    continue
                nd = d + cost
                old = dist.get(v, _INF)
                if nd < old:
                    dist[v] = nd
                    pred[v] = u
                    heapq.heappush(heap, (nd, self.dpid[v], v))
                elif nd == old and v in pred and self.dpid[u] < self.dpid[pred[v]]:
                    pred[v] = u


def _edge_cost(data: Mapping, weight: Optional[str], u: str, v: str) -> int:
    if weight is None:
        return 1
    value = data.get(weight)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise MulticastError(f"link {u}-{v} {weight}: {value!r} (must be a number >= 0)")
    return path_cost(value)


def _walk(pred: Mapping[str, str], start: str, stop: Container[str]) -> list[str]:
    """The path from the first node in ``stop`` down to ``start``, following ``pred``."""
    path = [start]
    while path[-1] not in stop:
        path.append(pred[path[-1]])
    path.reverse()
    return path


def _empty_tree(view: NetView, root_host: str, mode: str, weight: Optional[str]) -> nx.DiGraph:
    if not isinstance(root_host, str) or root_host not in view.hosts:
        raise MulticastError(f"root host {root_host!r} is not in the topology")
    source = view.hosts[root_host]
    tree = nx.DiGraph(root=source.switch, source=root_host, source_port=source.port,
                      mode=mode, weight=weight, order=(), unreachable=())
    tree.add_node(source.switch, kind="switch", dpid=view.switches[source.switch].dpid)
    return tree


def _check_members(view: NetView, members: Iterable[str]) -> list[str]:
    checked = []
    for host in members:
        if not isinstance(host, str) or host not in view.hosts:
            raise MulticastError(f"member {host!r} is not a host of the topology")
        if host in view.switches:
            raise MulticastError(f"member {host!r} has the name of a switch")
        checked.append(host)
    return checked


def _attach(tree: nx.DiGraph, view: NetView, graph: _SwitchGraph, path: Sequence[str],
            host: str) -> None:
    """Add the switch ``path`` (its first switch already on the tree) and ``host``."""
    for parent, child in zip(path, path[1:]):
        tree.add_node(child, kind="switch", dpid=view.switches[child].dpid)
        tree.add_edge(parent, child, port=graph.port[parent, child],
                      in_port=graph.port[child, parent])
    leaf = view.hosts[host]
    tree.add_node(host, kind="host")
    tree.add_edge(leaf.switch, host, port=leaf.port)
    tree.graph["order"] = (*tree.graph["order"], host)


def _unreachable(tree: nx.DiGraph, host: str) -> None:
    tree.graph["unreachable"] = tuple(sorted({*tree.graph["unreachable"], host},
                                             key=natural_key))


def multicast_tree(
    view: NetView,
    root_host: str,
    members: Iterable[str],
    tiers: Optional[Mapping[str, int]] = None,
    weight: Optional[str] = "delay_ms",
    g: Optional[nx.Graph] = None,
) -> nx.DiGraph:
    """The tree that carries the master's packets to ``members``.

    Without ``tiers``: the shortest-path tree from the master's switch (cost: ``weight``
    of each link, then hops; ``weight=None`` counts hops only), pruned to the members'
    switches; among equal paths the predecessor with the lowest dpid wins, as in l2.

    With ``tiers`` (host -> tier number, from the master's pingback tiers): center to
    edge.  Members are attached in tier order (then by distance from the master, then by
    name; members without a tier come last), each by the shortest path from the nearest
    switch already on the tree, so outer tiers hang off the branches of inner ones.

    ``g`` is the switch graph to use (default ``view.graph()``; pass it with failed links
    removed or measured delays to re-route).  The master is never its own member; members
    that no path reaches are listed in ``tree.graph["unreachable"]``.
    """
    tree = _empty_tree(view, root_host, "spt" if tiers is None else "tiered", weight)
    wanted = [h for h in _check_members(view, members) if h != root_host]
    graph = _SwitchGraph(view, g, weight)
    root = _check_root(tree, graph)
    dist: dict[str, float] = {}
    pred: dict[str, str] = {}
    graph.dijkstra([root], dist, pred)
    order = sorted(set(wanted), key=lambda h: (
        _tier(tiers, h), dist.get(view.hosts[h].switch, _INF), natural_key(h)))
    if tiers is None:
        for host in order:
            _graft_spt(tree, view, graph, dist, pred, host)
        return tree
    # Tiered: dist/pred become distances to the nearest tree switch; they only shrink
    # as the tree grows, so each graft re-runs Dijkstra from the new switches only.
    for host in order:
        switch = view.hosts[host].switch
        if switch not in dist:
            _unreachable(tree, host)
            continue
        path = _walk(pred, switch, tree)
        _attach(tree, view, graph, path, host)
        if len(path) > 1:
            graph.dijkstra(path[1:], dist, pred)
    return tree


def _check_root(tree: nx.DiGraph, graph: _SwitchGraph) -> str:
    root = tree.graph["root"]
    if root not in graph.adj:
        raise MulticastError(f"root switch {root} is not in the switch graph")
    return root


def _tier(tiers: Optional[Mapping[str, int]], host: str) -> float:
    if tiers is None or host not in tiers:
        return _INF
    tier = tiers[host]
    if isinstance(tier, bool) or not isinstance(tier, int):
        raise MulticastError(f"tier of {host}: {tier!r} (must be an integer)")
    return tier


def _graft_spt(tree: nx.DiGraph, view: NetView, graph: _SwitchGraph,
               dist: Mapping[str, float], pred: Mapping[str, str], host: str) -> None:
    switch = view.hosts[host].switch
    if switch not in dist:
        _unreachable(tree, host)
    else:
        _attach(tree, view, graph, _walk(pred, switch, tree), host)


def graft(view: NetView, tree: nx.DiGraph, host: str, g: Optional[nx.Graph] = None
          ) -> nx.DiGraph:
    """A copy of ``tree`` with ``host`` joined; only the new branch is added.

    In "spt" mode the branch follows the shortest path from the master (so the result
    equals :func:`multicast_tree` with the new member set); in "tiered" mode it starts
    at the switch on the tree nearest to the host.  Pass the ``g`` the tree was built on.
    """
    (host,) = _check_members(view, [host])
    new = tree.copy()
    if host in new or host == new.graph["source"]:
        return new
    new.graph["unreachable"] = tuple(h for h in new.graph["unreachable"] if h != host)
    graph = _SwitchGraph(view, g, new.graph["weight"])
    _check_root(new, graph)
    switch = view.hosts[host].switch
    dist: dict[str, float] = {}
    pred: dict[str, str] = {}
    if new.graph["mode"] == "spt":
        graph.dijkstra([new.graph["root"]], dist, pred, target=switch)
    else:
        graph.dijkstra(tree_switches(new), dist, pred, target=switch)
    _graft_spt(new, view, graph, dist, pred, host)
    return new


def prune(tree: nx.DiGraph, host: str) -> nx.DiGraph:
    """A copy of ``tree`` without member ``host`` and the switches that only led to it."""
    new = tree.copy()
    new.graph["order"] = tuple(h for h in new.graph["order"] if h != host)
    new.graph["unreachable"] = tuple(h for h in new.graph["unreachable"] if h != host)
    if host not in new or new.nodes[host].get("kind") != "host":
        return new
    (at,) = new.predecessors(host)
    new.remove_node(host)
    while at != new.graph["root"] and new.out_degree(at) == 0:
        (up,) = new.predecessors(at)
        new.remove_node(at)
        at = up
    return new


def tree_switches(tree: nx.DiGraph) -> list[str]:
    """The switches of ``tree``, by dpid."""
    return sorted((n for n, k in tree.nodes(data="kind") if k == "switch"),
                  key=lambda n: tree.nodes[n]["dpid"])


def tree_members(tree: nx.DiGraph) -> list[str]:
    """The member hosts of ``tree``, by name."""
    return sorted((n for n, k in tree.nodes(data="kind") if k == "host"), key=natural_key)


def _switch_children(tree: nx.DiGraph, node: str) -> list[str]:
    return sorted((c for c in tree.successors(node) if tree.nodes[c]["kind"] == "switch"),
                  key=lambda c: tree.edges[node, c]["port"])


def _switch_edges(tree: nx.DiGraph) -> list[tuple[str, str]]:
    """Switch-to-switch tree edges, breadth first from the root, children by port."""
    edges, queue = [], [tree.graph["root"]]
    for node in queue:
        for child in _switch_children(tree, node):
            edges.append((node, child))
            queue.append(child)
    return edges


# --------------------------------------------------------------------------- failover


def backup_paths(
    view: NetView, tree: nx.DiGraph, g: Optional[nx.Graph] = None
) -> dict[tuple[str, str], tuple[str, ...]]:
    """For tree links ``(parent, child)``: a switch path from parent to child that
    avoids the link, for a fast-failover group on the parent.

    The backup copy is the same packet, told apart only by the port it arrives on, so a
    path may not enter a tree switch from its tree parent (that switch would take it for
    the tree copy), may not leave the parent toward its own parent (its in_port) nor reach
    the child from one of the child's tree children (the child's group could not send back
    out of that port), and no two paths may share a directed link.  Links are taken in
    breadth-first order and get the cheapest such path (cost as for the tree), at most
    :data:`FF_SLOTS` per parent; links without one are left out: a re-route covers them.
    Whatever fails, packets never loop: a backup path ends one tree level further down.
    """
    graph = _SwitchGraph(view, g, tree.graph["weight"])
    edges = _switch_edges(tree)
    parent = {c: p for p, c in edges}
    banned: set[tuple[str, str]] = set(edges)
    slots: dict[str, int] = {}
    paths: dict[tuple[str, str], tuple[str, ...]] = {}
    for p, c in edges:
        if slots.get(p, 0) >= FF_SLOTS:
            continue
        extra = {(c, p), *((k, c) for k in _switch_children(tree, c))}
        if p in parent:
            extra.add((p, parent[p]))
        dist: dict[str, float] = {}
        pred: dict[str, str] = {}
        graph.dijkstra([p], dist, pred, target=c, banned=banned, extra=extra)
        if c not in dist:
            continue
        path = tuple(_walk(pred, c, {p}))
        paths[p, c] = path
        banned.update(zip(path, path[1:]))
        slots[p] = slots.get(p, 0) + 1
    return paths


# --------------------------------------------------------------------------- rules


def group_rules(
    view: NetView,
    group_ip: str,
    tree: nx.DiGraph,
    cookie: int = COOKIE,
    backups: Optional[Mapping[tuple[str, str], Sequence[str]]] = None,
    guard: bool = True,
) -> tuple[list[Rule], list[Group]]:
    """The flows and groups that carry ``group_ip`` along ``tree``.

    Every tree switch with children gets an ALL group with one bucket per child (ports
    in order) and a flow ``in_port=<toward the parent>, ip, nw_dst=G -> group``; with
    ``guard`` every switch also drops G's packets from anywhere else (lower priority),
    so nothing floods them.  With ``backups`` (from :func:`backup_paths`) a protected
    child's bucket goes to a fast-failover group (primary port, then the backup path's
    first port, each watched) and the backup path's switches get flows keyed by in_port.
    """
    ip = group_address(group_ip)
    gid = all_group_id(ip)
    ports = _link_ports(view)
    backups = dict(backups or {})
    _check_backups(tree, backups, ports)

    def match(in_port: Optional[int] = None) -> Match:
        return Match(in_port=in_port, eth_type=ETH_TYPE_IPV4, ipv4_dst=ip)

    def dpid(switch: str) -> int:
        return view.switches[switch].dpid

    rules: list[Rule] = []
    groups: list[Group] = []
    if guard:
        rules.extend(Rule(s.dpid, TABLE, PRIORITY_GUARD, match(), (), cookie)
                     for s in view.switches.values())
    with_group = set()
    for switch in tree_switches(tree):
        children = sorted(tree.successors(switch), key=lambda c: tree.edges[switch, c]["port"])
        if not children:
            continue
        with_group.add(switch)
        protected = [c for c in children if (switch, c) in backups]
        buckets = []
        for child in children:
            port = tree.edges[switch, child]["port"]
            if child not in protected:
                buckets.append(Bucket((Output(port),)))
                continue
            ff = ff_group_id(ip, protected.index(child) + 1)
            backup_port = ports[switch, backups[switch, child][1]]
            groups.append(Group(dpid(switch), ff, GROUP_FF, (
                Bucket((Output(port),), watch_port=port),
                Bucket((Output(backup_port),), watch_port=backup_port))))
            buckets.append(Bucket((GroupAction(ff),)))
        groups.append(Group(dpid(switch), gid, GROUP_ALL, tuple(buckets)))
        if switch == tree.graph["root"]:
            in_port = tree.graph["source_port"]
        else:
            (up,) = tree.predecessors(switch)
            in_port = tree.edges[up, switch]["in_port"]
        rules.append(Rule(dpid(switch), TABLE, PRIORITY_TREE, match(in_port),
                          (GroupAction(gid),), cookie))
    for path in backups.values():
        for prev, here, nxt in zip(path, path[1:], (*path[2:], None)):
            if nxt is None and here not in with_group:
                continue
            actions = (GroupAction(gid),) if nxt is None else (Output(ports[here, nxt]),)
            rules.append(Rule(dpid(here), TABLE, PRIORITY_TREE, match(ports[here, prev]),
                              actions, cookie))
    return sort_rules(rules), sort_groups(groups)


def _link_ports(view: NetView) -> dict[tuple[str, str], int]:
    ports = {}
    for link in view.links:
        ports[link.a, link.b] = link.a_port
        ports[link.b, link.a] = link.b_port
    return ports


def _check_backups(tree: nx.DiGraph, backups: Mapping[tuple[str, str], Sequence[str]],
                   ports: Mapping[tuple[str, str], int]) -> None:
    for (p, c), path in backups.items():
        if not tree.has_edge(p, c) or tree.nodes[c].get("kind") != "switch":
            raise MulticastError(f"backup for {p}-{c}: not a switch link of the tree")
        if len(path) < 3 or path[0] != p or path[-1] != c:
            raise MulticastError(f"backup for {p}-{c}: {list(path)} must go from {p} to {c} "
                                 "around the link")
        for a, b in zip(path, path[1:]):
            if (a, b) not in ports:
                raise MulticastError(f"backup for {p}-{c}: no link {a}-{b}")


#: Relay groups ``239.77.N.C``: channel ``C`` sent by the host whose address ends in ``.N``
#: (a helper relaying a live channel to its children, or the master itself).  Every other
#: group is rooted at the master.
RELAY_PREFIX = ipaddress.IPv4Network("239.77.0.0/16")


def relay_group(host_ip: str, channel: int) -> str:
    """The relay group on which the host at ``host_ip`` sends channel ``channel`` (1-255)."""
    last = int(ipaddress.IPv4Address(host_ip)) & 0xFF
    if not 1 <= channel <= 255:
        raise MulticastError(f"relay channel {channel}: must be 1-255")
    return str(ipaddress.IPv4Address(int(RELAY_PREFIX.network_address) | last << 8 | channel))


def group_root(view: NetView, group_ip: str, default: str) -> str:
    """The host a group's tree is rooted at: the relay group's sender, else ``default``."""
    addr = ipaddress.IPv4Address(group_address(group_ip))
    if addr not in RELAY_PREFIX:
        return default
    last = (int(addr) >> 8) & 0xFF
    for h in view.hosts.values():
        if h.ip and int(ipaddress.IPv4Address(h.ip)) & 0xFF == last:
            return h.name
    return default


def multicast_state(
    view: NetView,
    root_host: str,
    memberships: Mapping[str, Iterable[str]],
    tiers: Optional[Mapping[str, int]] = None,
    fast_failover: bool = False,
    cookie: int = COOKIE,
    g: Optional[nx.Graph] = None,
) -> tuple[list[Rule], list[Group]]:
    """Every group's flows and groups from scratch (group -> members): the intended
    state to compare with the switches, e.g. after a controller restart.  Trees are
    rooted at ``root_host`` except relay groups (:func:`group_root`)."""
    rules: list[Rule] = []
    groups: list[Group] = []
    for group_ip in sorted(memberships, key=lambda a: addr_key(group_address(a))):
        root = group_root(view, group_ip, root_host)
        tree = multicast_tree(view, root, memberships[group_ip], tiers, g=g)
        backups = backup_paths(view, tree, g) if fast_failover else None
        more_rules, more_groups = group_rules(view, group_ip, tree, cookie, backups)
        rules.extend(more_rules)
        groups.extend(more_groups)
    check_unique_groups(groups)
    return sort_rules(rules), sort_groups(groups)


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class TreeDiff:
    """What to send to turn installed flows and groups into intended ones.

    ``rules_add`` are sent as OFPFC_ADD, which replaces an installed flow with the same
    key, so a changed flow is only there; ``rules_delete`` are removed strictly.
    ``groups_add`` are in install order (:func:`chain_order`), ``groups_delete`` in
    removal order.  :meth:`steps` gives the order that never sends a packet toward a
    switch that is not ready for it.
    """

    rules_add: tuple[Rule, ...]
    rules_delete: tuple[Rule, ...]
    groups_add: tuple[Group, ...]
    groups_modify: tuple[Group, ...]
    groups_delete: tuple[Group, ...]

    def __bool__(self) -> bool:
        return any((self.rules_add, self.rules_delete, self.groups_add, self.groups_modify,
                    self.groups_delete))

    def dpids(self) -> frozenset[int]:
        """The switches this diff touches."""
        return frozenset(x.dpid for part in (self.rules_add, self.rules_delete, self.groups_add,
                                             self.groups_modify, self.groups_delete)
                         for x in part)

    def steps(self) -> list[tuple[str, str, Rule | Group]]:
        """``(kind, command, value)`` in send order: new groups, new flows (a new branch
        is ready before packets reach it), modified groups (the graft or prune point),
        then flows and groups no longer wanted.  Put a barrier between kinds of step."""
        return [
            *(("group", "add", x) for x in self.groups_add),
            *(("flow", "add", x) for x in self.rules_add),
            *(("group", "modify", x) for x in self.groups_modify),
            *(("flow", "delete", x) for x in self.rules_delete),
            *(("group", "delete", x) for x in self.groups_delete),
        ]

    def apply(self, rules: Iterable[Rule], groups: Iterable[Group]
              ) -> tuple[list[Rule], list[Group]]:
        """The flows and groups a switch holds after this diff (refused as a switch would
        refuse a group change that does not fit)."""
        table = {r.key(): r for r in rules}
        for rule in self.rules_delete:
            table.pop(rule.key(), None)
        for rule in self.rules_add:
            table[rule.key()] = rule
        new_groups = apply_group_diff(groups, self.groups_add, self.groups_modify,
                                      self.groups_delete)
        return sort_rules(table.values()), new_groups


def tree_diff(
    old: tuple[Iterable[Rule], Iterable[Group]], new: tuple[Iterable[Rule], Iterable[Group]]
) -> TreeDiff:
    """The :class:`TreeDiff` from ``old`` (rules, groups) to ``new`` (rules, groups)."""
    old_rules, new_rules = set(old[0]), set(new[0])
    new_keys = {r.key() for r in new_rules}
    g_add, g_modify, g_delete = diff_groups(old[1], new[1])
    return TreeDiff(
        rules_add=tuple(sort_rules(new_rules - old_rules)),
        rules_delete=tuple(sort_rules(r for r in old_rules - new_rules
                                      if r.key() not in new_keys)),
        groups_add=tuple(chain_order(g_add)),
        groups_modify=tuple(g_modify),
        groups_delete=tuple(reversed(chain_order(g_delete))),
    )
