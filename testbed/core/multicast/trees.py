"""Multicast trees rooted at a group's sender: built from scratch (shortest-path or
tiered), grown with :func:`graft` and cut back with :func:`prune`.

A tree is an ``nx.DiGraph`` whose root is the master's switch; its other nodes are the
switches that lead to members and the member hosts (leaves).  Edge ``parent -> child``
carries ``port`` (the parent's output port) and, to a switch, ``in_port`` (where the copy
arrives).  ``tree.graph`` holds ``root``, ``source`` (the master), ``source_port`` (the
master's port on the root), ``mode`` ("spt" or "tiered"), ``weight``, ``order`` (members in
the order they were attached) and ``unreachable`` (members no path reaches).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

import networkx as nx

from testbed.core.igmp import MulticastError
from testbed.core.l2 import NetView
from testbed.core.multicast.graph import _INF, _SwitchGraph, _walk
from testbed.core.spec import natural_key


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
