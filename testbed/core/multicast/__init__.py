"""IP multicast: trees rooted at the master, and the groups and flows that carry them.

The controller feeds IGMP reports into a :class:`MembershipTable` (from
:mod:`testbed.core.igmp`, re-exported here with the address checks), builds one tree per
content group with :func:`multicast_tree` (and keeps it current with :func:`graft` and
:func:`prune`), turns each tree into OpenFlow 1.3 groups and flows with
:func:`group_rules`, and sends only the :func:`tree_diff` between what is installed and
what is intended.  All of it is pure: time comes in as ``now``.

- :mod:`.addressing`: group MACs, group numbers, relay groups and their roots;
- :mod:`.graph`: the switch graph and its deterministic Dijkstra;
- :mod:`.trees`: building, grafting and pruning trees;
- :mod:`.failover`: detours for fast-failover groups;
- :mod:`.rules`: a tree as OpenFlow groups and flows;
- :mod:`.state`: every group's intended flows and groups from the memberships;
- :mod:`.diff`: what to send to turn the installed state into the intended one.
"""

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
from testbed.core.multicast.addressing import (
    FF_SLOTS,
    RELAY_PREFIX,
    all_group_id,
    ff_group_id,
    group_root,
    multicast_mac,
    relay_group,
)
from testbed.core.multicast.diff import TreeDiff, tree_diff
from testbed.core.multicast.failover import backup_paths
from testbed.core.multicast.rules import (
    COOKIE,
    PRIORITY_GUARD,
    PRIORITY_TREE,
    TABLE,
    group_rules,
)
from testbed.core.multicast.state import multicast_state
from testbed.core.multicast.trees import (
    graft,
    multicast_tree,
    prune,
    tree_members,
    tree_switches,
)

__all__ = [
    "ALLOW_NEW_SOURCES", "BLOCK_OLD_SOURCES", "CHANGE_TO_EXCLUDE", "CHANGE_TO_INCLUDE",
    "COOKIE", "DEFAULT_TIMEOUT_S", "FF_SLOTS", "IGMPV1_REPORT", "IGMPV2_LEAVE",
    "IGMPV2_REPORT", "IGMPV3_REPORT", "IGMP_QUERY", "MODE_IS_EXCLUDE", "MODE_IS_INCLUDE",
    "PRIORITY_GUARD", "PRIORITY_TREE", "RELAY_PREFIX", "TABLE", "MembershipTable",
    "MulticastError", "TreeDiff", "addr_key", "all_group_id", "backup_paths",
    "ff_group_id", "graft", "group_address", "group_root", "group_rules", "multicast_mac",
    "multicast_state", "multicast_tree", "prune", "relay_group", "report_effect",
    "tree_diff", "tree_members", "tree_switches",
]
