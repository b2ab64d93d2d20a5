"""The intended multicast state of the whole network, from the memberships alone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

import networkx as nx

from testbed.core.igmp import addr_key, group_address
from testbed.core.l2 import NetView
from testbed.core.multicast.addressing import group_root
from testbed.core.multicast.failover import backup_paths
from testbed.core.multicast.rules import COOKIE, group_rules
from testbed.core.multicast.trees import multicast_tree
from testbed.core.rules import Group, Rule, check_unique_groups, sort_groups, sort_rules


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
