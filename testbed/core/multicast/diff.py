"""What to send to the switches: the difference between installed and intended flows and
groups, in an order that never sends packets toward a switch not ready for them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from testbed.core.rules import (
    Group,
    Rule,
    apply_group_diff,
    chain_order,
    diff_groups,
    sort_rules,
)


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
