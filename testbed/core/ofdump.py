"""Parse ``ovs-ofctl -O OpenFlow13 dump-flows`` and ``dump-groups`` output back into
:class:`Rule` and :class:`Group` values.

Tests compare what a switch really holds with what core computed, as sets of rules
rather than as text.  Run ``ovs-ofctl`` with ``--no-names`` (numeric ports); the parser
takes output with or without ``--no-stats``.  Anything the rule model cannot express
(timeouts, masked IP addresses, unknown fields or actions, select groups) is an
:class:`OfDumpError` naming the line, so a difference never hides in a field that was
skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from testbed.core.rules import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    GROUP_TYPES,
    Action,
    Bucket,
    Group,
    GroupAction,
    Match,
    Output,
    Rule,
    RuleError,
    sort_groups,
    sort_rules,
)

DEFAULT_PRIORITY = 0x8000  # OFP_DEFAULT_PRIORITY; dump-flows omits it

# Protocol shorthands dump-flows prints instead of dl_type (and nw_proto).
_SHORTHANDS: dict[str, tuple[int, Optional[int]]] = {
    "ip": (ETH_TYPE_IPV4, None),
    "arp": (ETH_TYPE_ARP, None),
    "ipv6": (ETH_TYPE_IPV6, None),
    "icmp": (ETH_TYPE_IPV4, 1),
    "tcp": (ETH_TYPE_IPV4, 6),
    "udp": (ETH_TYPE_IPV4, 17),
    "icmp6": (ETH_TYPE_IPV6, 58),
    "tcp6": (ETH_TYPE_IPV6, 6),
    "udp6": (ETH_TYPE_IPV6, 17),
}
# Match field spellings (old OVS names and OXM names) -> Match attribute.
_FIELDS = {
    "in_port": "in_port",
    "dl_src": "eth_src", "eth_src": "eth_src",
    "dl_dst": "eth_dst", "eth_dst": "eth_dst",
    "dl_type": "eth_type", "eth_type": "eth_type",
    "nw_proto": "ip_proto", "ip_proto": "ip_proto",
    "nw_src": "ipv4_src", "ip_src": "ipv4_src", "ipv4_src": "ipv4_src",
    "nw_dst": "ipv4_dst", "ip_dst": "ipv4_dst", "ipv4_dst": "ipv4_dst",
    "tp_dst": "udp_dst", "udp_dst": "udp_dst",
}
_INT_FIELDS = {"in_port", "eth_type", "ip_proto", "udp_dst"}
_STATS = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age"}
_HARMLESS_FLAGS = {"reset_counts", "no_packet_counts", "no_byte_counts"}
_HEADER_RE = re.compile(r"^(OFPST|NXST)_FLOW reply")
_ACTIONS_RE = re.compile(r"(?:^|[ ,])actions=")
_GROUP_HEADER_RE = re.compile(r"^(OFPST|NXST)_GROUP_DESC reply")


class OfDumpError(ValueError):
    """dump-flows text the parser cannot turn into rules; names the line."""


@dataclass(frozen=True)
class FlowLine:
    """One parsed flow: the rule plus its counters (None when dumped with --no-stats)."""

    rule: Rule
    n_packets: Optional[int] = None
    n_bytes: Optional[int] = None
    duration_s: Optional[float] = None


def parse_flow_lines(text: str, dpid: int) -> list[FlowLine]:
    """Every flow in ``text`` (dump-flows output of switch ``dpid``), in input order."""
    flows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or _HEADER_RE.match(line):
            continue
        try:
            flows.append(_parse_line(line, dpid))
        except (OfDumpError, RuleError) as exc:
            raise OfDumpError(f"dump-flows line {number}: {exc}: {line}") from None
    return flows


def parse_dump_flows(text: str, dpid: int) -> list[Rule]:
    """The rules in ``text``, sorted; duplicates are kept so callers can detect them."""
    return sort_rules(f.rule for f in parse_flow_lines(text, dpid))


def _parse_line(line: str, dpid: int) -> FlowLine:
    found = _ACTIONS_RE.search(line)
    if found is None:
        raise OfDumpError("no actions=")
    head, actions_text = line[: found.start()], line[found.end():]
    table, priority, cookie = 0, DEFAULT_PRIORITY, 0
    stats: dict[str, str] = {}
    fields: dict[str, object] = {}
    for token in filter(None, (t.strip() for t in head.split(","))):
        key, _, value = token.partition("=")
        if key == "cookie":
            cookie = _int(value, key)
        elif key == "table":
            table = _int(value, key)
        elif key == "priority":
            priority = _int(value, key)
        elif key in _STATS:
            stats[key] = value
        elif key in _HARMLESS_FLAGS and not value:
            continue
        elif key in _SHORTHANDS and not value:
            eth_type, proto = _SHORTHANDS[key]
            _put(fields, "eth_type", eth_type)
            if proto is not None:
                _put(fields, "ip_proto", proto)
        elif key in _FIELDS and value:
            _put_field(fields, _FIELDS[key], value)
        else:
            raise OfDumpError(f"field {token!r} is not in the rule model")
    rule = Rule(dpid, table, priority, Match(**fields), _parse_actions(actions_text), cookie)
    return FlowLine(
        rule,
        n_packets=_int(stats["n_packets"], "n_packets") if "n_packets" in stats else None,
        n_bytes=_int(stats["n_bytes"], "n_bytes") if "n_bytes" in stats else None,
        duration_s=_seconds(stats["duration"]) if "duration" in stats else None,
    )


def _put(fields: dict[str, object], name: str, value: object) -> None:
    if name in fields and fields[name] != value:
        raise OfDumpError(f"{name} given twice ({fields[name]!r}, {value!r})")
    fields[name] = value


def _put_field(fields: dict[str, object], name: str, value: str) -> None:
    if name in _INT_FIELDS:
        _put(fields, name, _int(value, name))
    elif name == "eth_dst":
        mac, _, mask = value.partition("/")
        _put(fields, "eth_dst", mac)
        if mask:
            _put(fields, "eth_dst_mask", mask)
    elif "/" in value:
        raise OfDumpError(f"{name}={value}: masks are not in the rule model")
    else:
        _put(fields, name, value)


def _parse_actions(text: str) -> tuple[Action, ...]:
    text = text.strip()
    if text == "drop":
        return ()
    actions: list[Action] = []
    for item in filter(None, text.split(",")):
        if item.startswith("group:"):
            actions.append(GroupAction(_int(item[len("group:"):], "group")))
            continue
        port = item[len("output:"):] if item.startswith("output:") else item
        if not port.isdigit():
            raise OfDumpError(f"action {item!r} is not in the rule model "
                              "(use --no-names for numeric ports)")
        actions.append(Output(int(port)))
    return tuple(actions)


def _int(value: str, name: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        if '"' in value or not value[:1].isdigit():
            raise OfDumpError(f"{name}={value} is not a number "
                              "(use --no-names for numeric ports)") from None
        raise OfDumpError(f"{name}={value} is not a number") from None


def _seconds(value: str) -> float:
    try:
        return float(value.rstrip("s"))
    except ValueError:
        raise OfDumpError(f"duration={value} is not a number of seconds") from None


# --------------------------------------------------------------------------- groups


def parse_dump_groups(text: str, dpid: int) -> list[Group]:
    """The groups in ``ovs-ofctl -O OpenFlow13 --no-names dump-groups`` output of switch
    ``dpid``, sorted by group id.  A group of a type the model lacks (select, indirect)
    or a bucket field it lacks (weight, watch_group) is an :class:`OfDumpError`."""
    groups = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or _GROUP_HEADER_RE.match(line):
            continue
        try:
            groups.append(_parse_group(line, dpid))
        except (OfDumpError, RuleError) as exc:
            raise OfDumpError(f"dump-groups line {number}: {exc}: {line}") from None
    return sort_groups(groups)


def _parse_group(line: str, dpid: int) -> Group:
    head, *bucket_texts = line.split(",bucket=")
    if head.startswith("bucket="):
        raise OfDumpError("no group_id=")
    values: dict[str, str] = {}
    for token in head.split(","):
        key, _, value = token.partition("=")
        if key not in ("group_id", "type") or not value or key in values:
            raise OfDumpError(f"field {token!r} is not in the group model")
        values[key] = value
    if "group_id" not in values or "type" not in values:
        raise OfDumpError("needs group_id= and type=")
    if values["type"] not in GROUP_TYPES:
        raise OfDumpError(f"type={values['type']} is not in the group model")
    buckets = tuple(_parse_bucket(b) for b in bucket_texts)
    return Group(dpid, _int(values["group_id"], "group_id"), values["type"], buckets)


def _parse_bucket(text: str) -> Bucket:
    found = _ACTIONS_RE.search(text)
    if found is None:
        raise OfDumpError(f"bucket {text!r} has no actions=")
    watch_port = None
    for token in filter(None, text[: found.start()].split(",")):
        key, _, value = token.partition(":")
        if key == "watch_port" and watch_port is None:
            watch_port = _int(value, "watch_port")
        elif key != "bucket_id":  # an OpenFlow 1.5 bucket number: not part of the state
            raise OfDumpError(f"bucket field {token!r} is not in the group model")
    return Bucket(_parse_actions(text[found.end():]), watch_port)
