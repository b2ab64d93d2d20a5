"""IGMP membership: which hosts belong to which multicast group, as plain state.

The controller turns each IGMP report it receives into :meth:`MembershipTable.join` or
:meth:`MembershipTable.leave` (:func:`report_effect` reads IGMPv3 group records) and
calls :meth:`MembershipTable.expire` now and then; time comes in as ``now``.  Group
addresses are checked here once for every caller: multicast, not link-local.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Optional

from testbed.core.spec import natural_key

#: Membership lifetime without a report: IGMP's group membership interval
#: (robustness 2 x query interval 125 s + query response interval 10 s).
DEFAULT_TIMEOUT_S = 260.0

_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
_LINK_LOCAL = ipaddress.IPv4Network("224.0.0.0/24")

# IGMP message types (RFC 1112, 2236, 3376) and IGMPv3 group record types.
IGMP_QUERY = 0x11
IGMPV1_REPORT = 0x12
IGMPV2_REPORT = 0x16
IGMPV2_LEAVE = 0x17
IGMPV3_REPORT = 0x22
MODE_IS_INCLUDE, MODE_IS_EXCLUDE, CHANGE_TO_INCLUDE, CHANGE_TO_EXCLUDE = 1, 2, 3, 4
ALLOW_NEW_SOURCES, BLOCK_OLD_SOURCES = 5, 6


class MulticastError(ValueError):
    """A group address, host, tier map or tree that cannot be used; one line."""


# --------------------------------------------------------------------------- addresses


def group_address(value: object) -> str:
    """The canonical spelling of a multicast group address; refuses unicast addresses
    and the link-local block 224.0.0.0/24 (IGMP itself, routing protocols)."""
    try:
        if not isinstance(value, str):
            raise ValueError
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise MulticastError(f"group address {value!r} (must be an IPv4 address)") from None
    if addr not in _MULTICAST:
        raise MulticastError(f"group address {addr} (must be in 224.0.0.0/4)")
    if addr in _LINK_LOCAL:
        raise MulticastError(f"group address {addr} (224.0.0.0/24 is link-local, not routed)")
    return str(addr)


# --------------------------------------------------------------------------- membership


def report_effect(record_type: int, sources: int) -> Optional[str]:
    """What one IGMPv3 group record means for any-source membership.

    ``"join"`` for EXCLUDE-mode records and for INCLUDE or ALLOW with sources, ``"leave"``
    for INCLUDE records with no source (how a socket's last leave is reported), None for
    BLOCK (the host stays a member).  IGMPv1/v2 reports are joins and v2 leaves are leaves.
    """
    if record_type in (MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE):
        return "join"
    if record_type in (MODE_IS_INCLUDE, CHANGE_TO_INCLUDE, ALLOW_NEW_SOURCES):
        return "join" if sources else ("leave" if record_type != ALLOW_NEW_SOURCES else None)
    if record_type == BLOCK_OLD_SOURCES:
        return None
    raise MulticastError(f"IGMPv3 record type {record_type!r} (must be 1..6)")


def _time(value: object, name: str = "now") -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise MulticastError(f"{name}: {value!r} (must be a finite number of seconds)")
    return float(value)


def _host(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise MulticastError(f"host {value!r} (must be a non-empty name)")
    return value


class MembershipTable:
    """Which hosts belong to which groups, from IGMP reports, with report times.

    Each host sits on its own switch port, so a leave takes effect at once (no
    last-member query).  Reports refresh a membership; :meth:`expire` drops those whose
    reports stopped.  Mutating calls return whether membership changed, so the caller
    recomputes a tree only when it must.
    """

    def __init__(self) -> None:
        self._last: dict[str, dict[str, float]] = {}

    def join(self, group_ip: str, host: str, now: float) -> bool:
        """Record a report from ``host`` for ``group_ip`` at ``now``; True if it is new."""
        group, host, now = group_address(group_ip), _host(host), _time(now)
        reports = self._last.setdefault(group, {})
        new = host not in reports
        reports[host] = max(now, reports.get(host, now))  # late events never shorten
        return new

    def leave(self, group_ip: str, host: str, now: float) -> bool:
        """``host`` left ``group_ip``; True if it was a member."""
        group, host = group_address(group_ip), _host(host)
        _time(now)
        reports = self._last.get(group, {})
        if reports.pop(host, None) is None:
            return False
        if not reports:
            del self._last[group]
        return True

    def drop_host(self, host: str) -> list[str]:
        """Remove ``host`` from every group (it went away); the groups it was in."""
        host = _host(host)
        left = [g for g in self.groups() if host in self._last[g]]
        for group in left:
            self.leave(group, host, 0.0)
        return left

    def expire(self, now: float, timeout: float = DEFAULT_TIMEOUT_S) -> list[tuple[str, str]]:
        """Drop memberships with no report for ``timeout`` seconds up to ``now``;
        the ``(group, host)`` pairs dropped, sorted."""
        now, timeout = _time(now), _time(timeout, "timeout")
        if timeout <= 0:
            raise MulticastError(f"timeout: {timeout!r} (must be > 0)")
        gone = [(g, h) for g, reports in self._last.items() for h, t in reports.items()
                if now - t >= timeout]
        for group, host in gone:
            self.leave(group, host, now)
        return sorted(gone, key=lambda gh: (addr_key(gh[0]), natural_key(gh[1])))

    def members(self, group_ip: str) -> frozenset[str]:
        """The hosts in ``group_ip`` now."""
        return frozenset(self._last.get(group_address(group_ip), ()))

    def last_report(self, group_ip: str, host: str) -> Optional[float]:
        """When ``host`` last reported ``group_ip`` (None: not a member)."""
        return self._last.get(group_address(group_ip), {}).get(host)

    def groups(self) -> list[str]:
        """Groups with at least one member, in address order."""
        return sorted(self._last, key=addr_key)

    def snapshot(self) -> dict[str, frozenset[str]]:
        """group -> members, for every group with members (a value, safe to keep)."""
        return {g: frozenset(self._last[g]) for g in self.groups()}


def addr_key(group: str) -> int:
    """Sort key: the address as a number."""
    return int(ipaddress.IPv4Address(group))
