"""A tree as OpenFlow 1.3 groups and flows: an ALL group per branching switch, fast-failover
groups on protected links, and guard flows that drop a group's packets off the tree.
This app owns the group table of every switch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import networkx as nx

from testbed.core.igmp import MulticastError, group_address
from testbed.core.l2 import NetView
from testbed.core.multicast.addressing import all_group_id, ff_group_id
from testbed.core.multicast.trees import tree_switches
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
    sort_groups,
    sort_rules,
)

COOKIE = app_cookie("mc-mcast")
TABLE = 0
#: Above every l2 rule (unicast 200, flood 100): a group's packets follow its tree.  An
#: app that punts IGMP to the controller needs a higher priority still (IGMPv2 reports
#: are addressed to the group itself).
PRIORITY_TREE = 300
#: A group's packets that arrive anywhere but from the tree parent are dropped.
PRIORITY_GUARD = 290


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
