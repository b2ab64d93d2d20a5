"""Multicast addresses and group numbers: the Ethernet address of a group, the OpenFlow
group numbers of its ALL and fast-failover groups, and the relay groups helpers send on.

Group numbers are derived from the group address, so every switch uses the same numbers
and a restarted controller computes the same ones: the ALL group of G is the low 28 bits
of G (224.0.1.5 -> 0x105); a fast-failover group protecting a child link of G is
``slot << 28 | low 28 bits`` with slot 1..14 (so at most 14 protected child links per
switch and group).
"""

from __future__ import annotations

import ipaddress

from testbed.core.igmp import MulticastError, group_address
from testbed.core.l2 import NetView
from testbed.core.rules import int_to_mac

FF_SLOTS = 14
_LOW_BITS = 0x0FFFFFFF


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
