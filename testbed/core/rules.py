"""An abstract flow-rule model: what a controller wants installed, as plain values.

Core algorithms return :class:`Rule` values; one adapter (``controllers/ofadapter.py``)
turns them into OpenFlow messages, a fake network (:mod:`testbed.core.fakenet`) executes
them in tests, and :mod:`testbed.core.ofdump` parses a switch's table back into them.
Keeping rules as hashable values makes diffs, sorting and comparison trivial.

OpenFlow 1.3 groups are values too: a :class:`Group` of type ``"all"`` (every bucket gets
a copy) or ``"ff"`` (fast failover: the first bucket whose watched port is up), made of
:class:`Bucket` values, and reached from a rule or another bucket by :class:`GroupAction`.
A switch identifies a group by (dpid, group_id); :func:`diff_groups` says which to add,
modify and delete, and :func:`chain_order` in which order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Optional, Union

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
IP_PROTO_UDP = 17

#: eth_dst value and mask that select every frame with the group (multicast) bit set.
GROUP_BIT = "01:00:00:00:00:00"

MAX_PORT = 0xFFFFFF00  # OpenFlow 1.3 OFPP_MAX: highest physical or logical port
MAX_DPID = 2**64 - 1
MAX_COOKIE = 2**64 - 1
MAX_PRIORITY = 0xFFFF
MAX_TABLE = 0xFE
MAX_GROUP_ID = 0xFFFFFF00  # OpenFlow 1.3 OFPG_MAX: highest group number

GROUP_ALL = "all"  # every bucket gets a copy (multicast)
GROUP_FF = "ff"  # fast failover: the first bucket whose watch_port is up
GROUP_TYPES = (GROUP_ALL, GROUP_FF)

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class RuleError(ValueError):
    """A rule or match that cannot exist; the message names the field and value."""


def mac_to_int(mac: str) -> int:
    """``'00:00:00:00:00:0a'`` -> 10; raises :class:`RuleError` on a malformed address."""
    if not isinstance(mac, str) or not _MAC_RE.match(mac.lower()):
        raise RuleError(f"MAC address {mac!r} (must look like 00:11:22:33:44:55)")
    return int(mac.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    """10 -> ``'00:00:00:00:00:0a'``."""
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def normal_mac(mac: str) -> str:
    """The canonical (lower-case) spelling of ``mac``."""
    return int_to_mac(mac_to_int(mac))


def is_group_mac(mac: str) -> bool:
    """True for broadcast and multicast addresses (the I/G bit of the first octet)."""
    return bool(mac_to_int(mac) >> 40 & 1)


def app_cookie(tag: str) -> int:
    """A 64-bit cookie spelling ``tag`` in ASCII, so dump-flows shows which app owns a rule."""
    raw = tag.encode("ascii")
    if not 1 <= len(raw) <= 8:
        raise RuleError(f"cookie tag {tag!r} (must be 1 to 8 ASCII characters)")
    return int.from_bytes(raw.ljust(8, b"\0"), "big")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(f"{name}: {value!r} (must be an integer in {low}..{high})")


@dataclass(frozen=True)
class Match:
    """Header fields a rule matches; ``None`` means wildcard.

    ``eth_dst`` may be masked by ``eth_dst_mask``; the value is stored already masked
    (as switches report it) and a full mask is stored as no mask.  IPv4 and UDP fields
    need their prerequisites (``eth_type``, ``ip_proto``) as OpenFlow 1.3 demands.
    """

    in_port: Optional[int] = None
    eth_src: Optional[str] = None
    eth_dst: Optional[str] = None
    eth_dst_mask: Optional[str] = None
    eth_type: Optional[int] = None
    ip_proto: Optional[int] = None
    ipv4_src: Optional[str] = None
    ipv4_dst: Optional[str] = None
    udp_dst: Optional[int] = None

    def __post_init__(self) -> None:
        if self.in_port is not None:
            _check_int("in_port", self.in_port, 1, MAX_PORT)
        if self.eth_src is not None:
            object.__setattr__(self, "eth_src", normal_mac(self.eth_src))
        self._normalise_eth_dst()
        if self.eth_type is not None:
            _check_int("eth_type", self.eth_type, 0, 0xFFFF)
        if self.ip_proto is not None:
            _check_int("ip_proto", self.ip_proto, 0, 0xFF)
            if self.eth_type not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
                raise RuleError("ip_proto needs eth_type 0x0800 or 0x86dd")
        for name in ("ipv4_src", "ipv4_dst"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                object.__setattr__(self, name, str(ipaddress.IPv4Address(value)))
            except ValueError:
                raise RuleError(f"{name}: {value!r} (must be an IPv4 address)") from None
            if self.eth_type != ETH_TYPE_IPV4:
                raise RuleError(f"{name} needs eth_type 0x0800")
        if self.udp_dst is not None:
            _check_int("udp_dst", self.udp_dst, 0, 0xFFFF)
            if self.ip_proto != IP_PROTO_UDP:
                raise RuleError("udp_dst needs ip_proto 17")

    def _normalise_eth_dst(self) -> None:
        if self.eth_dst is None:
            if self.eth_dst_mask is not None:
                raise RuleError("eth_dst_mask without eth_dst")
            return
        value = mac_to_int(self.eth_dst)
        if self.eth_dst_mask is None:
            object.__setattr__(self, "eth_dst", int_to_mac(value))
            return
        mask = mac_to_int(self.eth_dst_mask)
        if mask == 0:
            raise RuleError("eth_dst_mask 00:00:00:00:00:00 (omit eth_dst instead)")
        full = mask == 2**48 - 1
        object.__setattr__(self, "eth_dst", int_to_mac(value & mask))
        object.__setattr__(self, "eth_dst_mask", None if full else int_to_mac(mask))

    def items(self) -> tuple[tuple[str, object], ...]:
        """The set fields as ``(name, value)`` pairs, in declaration order."""
        return tuple(
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        )

    def sort_key(self) -> tuple:
        """A total order over matches (``None`` sorts before any value)."""
        return tuple(
            (0, "") if getattr(self, f.name) is None else (1, getattr(self, f.name))
            for f in fields(self)
        )

    def __str__(self) -> str:
        parts = []
        for name, value in self.items():
            if name == "eth_dst" and self.eth_dst_mask:
                parts.append(f"eth_dst={value}/{self.eth_dst_mask}")
            elif name != "eth_dst_mask":
                parts.append(f"{name}={value:#06x}" if name == "eth_type" else f"{name}={value}")
        return ",".join(parts) or "any"


@dataclass(frozen=True)
class Output:
    """Send a copy of the packet out of ``port`` (never back out of its in_port)."""

    port: int

    def __post_init__(self) -> None:
        _check_int("output port", self.port, 1, MAX_PORT)

    def __str__(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True)
class GroupAction:
    """Hand the packet to group ``group_id`` of the same switch."""

    group_id: int

    def __post_init__(self) -> None:
        _check_int("group_id", self.group_id, 0, MAX_GROUP_ID)

    def __str__(self) -> str:
        return f"group:{self.group_id}"


#: Every action kind the model knows; later controllers extend this union.
Action = Union[Output, GroupAction]
_ACTION_KINDS = (Output, GroupAction)


def _check_actions(where: str, actions: tuple) -> None:
    for action in actions:
        if not isinstance(action, _ACTION_KINDS):
            raise RuleError(f"{where}action {action!r} (unknown kind)")


def _action_key(action: Action) -> tuple:
    return (type(action).__name__, *(getattr(action, f.name) for f in fields(action)))


@dataclass(frozen=True)
class Rule:
    """One flow entry: on switch ``dpid``, table ``table``, ``match`` -> ``actions``.

    An empty ``actions`` tuple drops.  ``cookie`` names the app that owns the rule, so
    an app can delete exactly its own rules.  A switch identifies a flow by
    (table, priority, match): see :meth:`key`.
    """

    dpid: int
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int

    def __post_init__(self) -> None:
        _check_int("dpid", self.dpid, 0, MAX_DPID)
        _check_int("table", self.table, 0, MAX_TABLE)
        _check_int("priority", self.priority, 0, MAX_PRIORITY)
        _check_int("cookie", self.cookie, 0, MAX_COOKIE)
        if not isinstance(self.match, Match):
            raise RuleError(f"match: {self.match!r} (must be a Match)")
        if not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))
        _check_actions("", self.actions)

    def key(self) -> tuple:
        """What the switch uses to tell flows apart: dpid, table, priority, match."""
        return (self.dpid, self.table, self.priority, self.match)

    def sort_key(self) -> tuple:
        """Deterministic order: by switch, table, descending priority, then contents."""
        return (
            self.dpid,
            self.table,
            -self.priority,
            self.match.sort_key(),
            tuple(_action_key(a) for a in self.actions),
            self.cookie,
        )

    def __str__(self) -> str:
        actions = ",".join(str(a) for a in self.actions) or "drop"
        return (
            f"dpid={self.dpid:#x} table={self.table} priority={self.priority} "
            f"cookie={self.cookie:#x} {self.match} actions={actions}"
        )


def sort_rules(rules: Iterable[Rule]) -> list[Rule]:
    """``rules`` in the deterministic order of :meth:`Rule.sort_key`."""
    return sorted(rules, key=Rule.sort_key)


def check_unique(rules: Iterable[Rule]) -> None:
    """Raise :class:`RuleError` if two rules share a :meth:`Rule.key`.

    A switch keeps one flow per key, so such a set cannot be installed as written.
    """
    seen: dict[tuple, Rule] = {}
    for rule in rules:
        other = seen.setdefault(rule.key(), rule)
        if other is not rule and other != rule:
            raise RuleError(f"two rules with the same switch, table, priority, match: {rule}")


def diff(old_rules: Iterable[Rule], new_rules: Iterable[Rule]) -> tuple[list[Rule], list[Rule]]:
    """``(to_add, to_delete)`` that turn the set ``old_rules`` into ``new_rules``.

    A rule whose actions or cookie changed appears in both lists.  Apply the deletions
    (strictly: table, priority, match, cookie) before the additions, so a changed rule
    is not deleted right after it is re-added.  Both lists are sorted.
    """
    old, new = set(old_rules), set(new_rules)
    return sort_rules(new - old), sort_rules(old - new)


def apply_diff(
    rules: Iterable[Rule], to_add: Iterable[Rule], to_delete: Iterable[Rule]
) -> list[Rule]:
    """The sorted rule set after removing ``to_delete`` from ``rules`` and adding ``to_add``."""
    return sort_rules((set(rules) - set(to_delete)) | set(to_add))


# --------------------------------------------------------------------------- groups


def group_refs(actions: Iterable[Action]) -> tuple[int, ...]:
    """The group ids that ``actions`` hand packets to, in order."""
    return tuple(a.group_id for a in actions if isinstance(a, GroupAction))


@dataclass(frozen=True)
class Bucket:
    """One bucket of a group: ``actions`` (empty: drop), and for a fast-failover group
    the port whose liveness decides whether the bucket may be used."""

    actions: tuple[Action, ...]
    watch_port: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.actions, tuple):
            object.__setattr__(self, "actions", tuple(self.actions))
        _check_actions("bucket ", self.actions)
        if self.watch_port is not None:
            _check_int("watch_port", self.watch_port, 1, MAX_PORT)

    def sort_key(self) -> tuple:
        return (self.watch_port or 0, tuple(_action_key(a) for a in self.actions))

    def __str__(self) -> str:
        """As ``ovs-ofctl dump-groups`` prints a bucket."""
        actions = ",".join(str(a) for a in self.actions) or "drop"
        watch = "" if self.watch_port is None else f"watch_port:{self.watch_port},"
        return f"bucket={watch}actions={actions}"


@dataclass(frozen=True)
class Group:
    """One group entry on switch ``dpid``: its number, type and buckets (order kept:
    a fast-failover group uses the first live bucket)."""

    dpid: int
    group_id: int
    type: str
    buckets: tuple[Bucket, ...]

    def __post_init__(self) -> None:
        _check_int("dpid", self.dpid, 0, MAX_DPID)
        _check_int("group_id", self.group_id, 0, MAX_GROUP_ID)
        if self.type not in GROUP_TYPES:
            raise RuleError(f"group {self.group_id} type: {self.type!r} "
                            f"(must be one of {', '.join(GROUP_TYPES)})")
        if not isinstance(self.buckets, tuple):
            object.__setattr__(self, "buckets", tuple(self.buckets))
        for bucket in self.buckets:
            if not isinstance(bucket, Bucket):
                raise RuleError(f"group {self.group_id} bucket: {bucket!r} (must be a Bucket)")
            if self.type == GROUP_FF and bucket.watch_port is None:
                raise RuleError(f"group {self.group_id}: a fast-failover bucket needs watch_port")
            if self.type == GROUP_ALL and bucket.watch_port is not None:
                raise RuleError(f"group {self.group_id}: watch_port {bucket.watch_port} "
                                "in a group of type all (switches refuse it)")
            if self.group_id in group_refs(bucket.actions):
                raise RuleError(f"group {self.group_id}: a bucket hands packets to itself")

    def key(self) -> tuple[int, int]:
        """What the switch uses to tell groups apart: dpid and group id."""
        return (self.dpid, self.group_id)

    def refs(self) -> frozenset[int]:
        """The group ids this group's buckets hand packets to."""
        return frozenset(g for b in self.buckets for g in group_refs(b.actions))

    def sort_key(self) -> tuple:
        return (self.dpid, self.group_id, self.type, tuple(b.sort_key() for b in self.buckets))

    def __str__(self) -> str:
        buckets = "".join(f",{b}" for b in self.buckets)
        return f"dpid={self.dpid:#x} group_id={self.group_id},type={self.type}{buckets}"


def sort_groups(groups: Iterable[Group]) -> list[Group]:
    """``groups`` ordered by switch, then group id."""
    return sorted(groups, key=Group.sort_key)


def check_unique_groups(groups: Iterable[Group]) -> None:
    """Raise :class:`RuleError` if two different groups share a :meth:`Group.key`."""
    seen: dict[tuple[int, int], Group] = {}
    for group in groups:
        other = seen.setdefault(group.key(), group)
        if other != group:
            raise RuleError(f"two groups with the same switch and group id: {group}")


def check_group_refs(rules: Iterable[Rule], groups: Iterable[Group]) -> None:
    """Raise :class:`RuleError` if a rule or bucket names a group its switch lacks
    (a switch refuses such a flow or group with OFPBAC_BAD_OUT_GROUP)."""
    groups = list(groups)
    known = {g.key() for g in groups}
    for rule in rules:
        for gid in group_refs(rule.actions):
            if (rule.dpid, gid) not in known:
                raise RuleError(f"rule refers to group {gid}, not on dpid {rule.dpid:#x}: {rule}")
    for group in groups:
        for gid in sorted(group.refs()):
            if (group.dpid, gid) not in known:
                raise RuleError(f"group refers to group {gid}, not on dpid "
                                f"{group.dpid:#x}: {group}")


def chain_order(groups: Iterable[Group]) -> list[Group]:
    """``groups`` in an order to install them: a group after every group it refers to
    (references outside ``groups`` are taken as installed); otherwise by dpid, group id.
    Delete in the reverse order.  A cycle of references is a :class:`RuleError`."""
    pending = {g.key(): g for g in sort_groups(groups)}
    done: set[tuple[int, int]] = set()
    order: list[Group] = []
    while pending:
        ready = [k for k, g in pending.items()
                 if all((g.dpid, r) in done or (g.dpid, r) not in pending for r in g.refs())]
        if not ready:
            raise RuleError(f"groups refer to each other in a cycle: {pending[min(pending)]}")
        for key in ready:
            order.append(pending.pop(key))
            done.add(key)
    return order


def diff_groups(
    old_groups: Iterable[Group], new_groups: Iterable[Group]
) -> tuple[list[Group], list[Group], list[Group]]:
    """``(to_add, to_modify, to_delete)`` that turn the set ``old_groups`` into ``new_groups``.

    Unlike flows, a group is added once and then modified in place (adding an existing
    id is an error on the switch), so a changed group is in ``to_modify`` only, with its
    new contents.  Each list is sorted.  Before sending, order additions with
    :func:`chain_order` and deletions with its reverse; add groups before the flows that
    use them and delete them after (deleting a group also deletes flows that use it).
    """
    old = {g.key(): g for g in old_groups}
    new = {g.key(): g for g in new_groups}
    to_add = [g for k, g in new.items() if k not in old]
    to_modify = [g for k, g in new.items() if k in old and old[k] != g]
    to_delete = [g for k, g in old.items() if k not in new]
    return sort_groups(to_add), sort_groups(to_modify), sort_groups(to_delete)


def apply_group_diff(
    groups: Iterable[Group],
    to_add: Iterable[Group],
    to_modify: Iterable[Group],
    to_delete: Iterable[Group],
) -> list[Group]:
    """The sorted group set after the changes, refused as a switch would refuse them:
    adding an id that exists, or modifying or deleting one that does not."""
    table = {g.key(): g for g in groups}
    for group in to_delete:
        if table.pop(group.key(), None) is None:
            raise RuleError(f"delete of a group that does not exist: {group}")
    for group in to_modify:
        if group.key() not in table:
            raise RuleError(f"modify of a group that does not exist: {group}")
        table[group.key()] = group
    for group in to_add:
        if group.key() in table:
            raise RuleError(f"add of a group that exists: {group}")
        table[group.key()] = group
    return sort_groups(table.values())
