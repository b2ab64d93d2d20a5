"""Fast failover: for each tree link, a detour the parent's fast-failover group can send
the same packets on when the link goes down."""

from __future__ import annotations

from typing import Optional

import networkx as nx

from testbed.core.l2 import NetView
from testbed.core.multicast.addressing import FF_SLOTS
from testbed.core.multicast.graph import _SwitchGraph, _walk
from testbed.core.multicast.trees import _switch_children, _switch_edges


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
