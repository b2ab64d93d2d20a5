"""Plan, render and check the ``tc`` and ``ethtool`` commands that shape one interface.

Pure (no I/O): build a plan from link parameters and a mode, render it to
command lines, and let the caller apply them and check each result; parse what
``tc ... show`` prints back and compare it with the plan.  Both link modes put
the rate limit (htb) on the egress of each interface, where the sending node
sees the queue build, as on a real bottleneck.  In ``netem`` mode a netem qdisc
under each htb leaf adds delay, jitter and loss; in ``userspace`` mode the link
emulator does that between the two veth pairs instead.

A shaped interface has two htb leaves under one class at the link rate: the
normal class (everything by default) is guaranteed all but a sliver of the
rate; the push class (TCP to :data:`PUSH_PORT`, prefetch pushes) is guaranteed
only that sliver and borrows, at lower priority, what the normal class leaves
unused.  Pushes therefore never take the bandwidth that viewers' fetches need::

    5: htb (default 5:10)
    └─ 5:1   rate = ceil = link
       ├─ 5:10 normal  rate link - push  ceil link  prio 0  -> 10: netem | pfifo
       └─ 5:20 push    rate push         ceil link  prio 1  -> 20: netem | pfifo
    filter u32 ip protocol tcp, dport PUSH_PORT -> 5:20
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Optional

from testbed.core.protocol import PUSH_PORT
from testbed.core.spec import LinkParams

NETEM, USERSPACE = "netem", "userspace"
MODES = (NETEM, USERSPACE)
DEFAULT_LIMIT = 1000  # packets; the veth txqueuelen default
MTU_FRAME = 1514
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

HTB_HANDLE = "5:"
TOP_CLASS, NORMAL_CLASS, PUSH_CLASS = "5:1", "5:10", "5:20"
LEAF_HANDLES = {NORMAL_CLASS: "10:", PUSH_CLASS: "20:"}
PUSH_SHARE = 0.01  # of the link rate, guaranteed to pushes ...
PUSH_FLOOR_FRAMES = 4  # ... but at least this many full frames a second ...
PUSH_CAP_SHARE = 0.05  # ... and never more than this share on slow links
RATE_TOLERANCE = 0.01  # tc prints rates rounded down to 3-4 significant digits
IPPROTO_TCP = 6
# u32 "match ip FIELD": byte offset in the IPv4 header (no options) and width
_IP_FIELDS = {"protocol": (9, 1), "dport": (22, 2)}

U32Key = tuple[int, int, int]  # value, mask, offset of the 32-bit word (as tc prints them)


class TcParseError(ValueError):
    """``tc ... show`` text the parsers cannot read; names the line."""


@dataclass(frozen=True)
class Qdisc:
    """A qdisc ``kind`` with ``handle`` at ``parent`` ("root" or a class id)."""

    kind: str
    handle: str
    parent: str
    opts: str = ""


@dataclass(frozen=True)
class HtbClass:
    """An htb class; ``parent`` is the qdisc handle for the top class, else a class id."""

    classid: str
    parent: str
    rate_bit: int
    ceil_bit: int
    burst: int
    cburst: int
    quantum: int
    prio: Optional[int] = None


@dataclass(frozen=True)
class U32Filter:
    """A u32 filter on IPv4 sending packets whose ``matches`` all hold to ``flowid``.

    ``matches`` are (field, value, mask) with the field one of ``_IP_FIELDS``.
    """

    parent: str
    prio: int
    matches: tuple[tuple[str, int, int], ...]
    flowid: str

    def keys(self) -> tuple[U32Key, ...]:
        """The 32-bit keys the kernel holds for ``matches`` (what ``tc filter show`` lists)."""
        return tuple(_u32_key(*_IP_FIELDS[field], value, mask)
                     for field, value, mask in self.matches)


@dataclass(frozen=True)
class ShapingPlan:
    """Everything one interface's egress needs; empty when it needs nothing."""

    qdiscs: tuple[Qdisc, ...] = ()
    classes: tuple[HtbClass, ...] = ()
    filters: tuple[U32Filter, ...] = ()


@dataclass(frozen=True)
class ShownClass:
    """One class as ``tc [-s] class show`` prints it; ``sent_bytes`` only with ``-s``."""

    kind: str
    classid: str
    parent: str
    prio: Optional[int] = None
    rate_bit: Optional[int] = None
    ceil_bit: Optional[int] = None
    sent_bytes: Optional[int] = None


@dataclass(frozen=True)
class ShownFilter:
    """One u32 key node as ``tc filter show`` prints it."""

    parent: str
    prio: int
    flowid: str
    keys: tuple[U32Key, ...]


def _fmt(x: float) -> str:
    """Compact decimal for tc: 5.0 -> '5', 0.25 -> '0.25'."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _u32_key(offset: int, width: int, value: int, mask: int) -> U32Key:
    """A byte field at ``offset`` as u32 stores it: within the aligned 32-bit word."""
    shift = (4 - offset % 4 - width) * 8
    return (value & mask) << shift, mask << shift, offset - offset % 4


def _bits(mbit: float) -> int:
    return max(1, round(mbit * 1e6))


def _rate(bits: int) -> str:
    """A rate for tc, exact: 10000000 -> '10mbit', 48448 -> '48448bit'."""
    for unit, scale in (("mbit", 10**6), ("kbit", 10**3)):
        if bits % scale == 0:
            return f"{bits // scale}{unit}"
    return f"{bits}bit"


def htb_burst_bytes(bw_mbit: float) -> int:
    """Bucket size: 2 ms at line rate, never less than two full frames."""
    return max(2 * MTU_FRAME, int(bw_mbit * 1e6 / 8 * 0.002))


def htb_quantum(bw_mbit: float) -> int:
    """Bytes a leaf sends per round: 100 ms at line rate, one frame to 200 kB."""
    return min(200_000, max(MTU_FRAME, int(bw_mbit * 1e6 / 8 / 10)))


def push_rate_bit(bw_mbit: float) -> int:
    """The rate guaranteed to pushes: 1 % of the link, a few frames a second at least,
    and at most 5 % of the link (the normal class keeps the rest)."""
    link = _bits(bw_mbit)
    floor = PUSH_FLOOR_FRAMES * MTU_FRAME * 8
    return max(1, min(max(round(link * PUSH_SHARE), floor), round(link * PUSH_CAP_SHARE)))


def bdp_packets(params: LinkParams) -> int:
    """Full-size frames in flight on the link at its rate and delay."""
    if not params.bw_mbit:
        return 0
    one_way_s = (params.delay_ms + params.jitter_ms) / 1000.0
    return math.ceil(params.bw_mbit * 1e6 / 8 * one_way_s / MTU_FRAME)


def impairs(params: LinkParams) -> bool:
    """True when the link needs delay, jitter or loss (netem or the emulator)."""
    return bool(params.delay_ms or params.jitter_ms or params.loss_pct)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"link mode {mode!r} (must be one of {', '.join(MODES)})")


def _leaf_qdisc(params: LinkParams, mode: str) -> tuple[str, str] | None:
    """(kind, options) of the qdisc under each leaf (or at the root without a rate)."""
    if mode == NETEM and impairs(params):
        opts = f"delay {_fmt(params.delay_ms)}ms"
        if params.jitter_ms:
            opts += f" {_fmt(params.jitter_ms)}ms"
        if params.loss_pct:
            opts += f" loss {_fmt(params.loss_pct)}%"
        limit = (params.queue_pkts or DEFAULT_LIMIT) + bdp_packets(params)
        return "netem", f"{opts} limit {limit}"
    if params.queue_pkts:
        return "pfifo", f"limit {params.queue_pkts}"
    return None


def push_filter() -> U32Filter:
    """IPv4 TCP to :data:`PUSH_PORT` goes to the push class."""
    return U32Filter(HTB_HANDLE, 1, (("protocol", IPPROTO_TCP, 0xFF),
                                     ("dport", PUSH_PORT, 0xFFFF)), PUSH_CLASS)


def _htb_classes(bw_mbit: float) -> tuple[HtbClass, ...]:
    """The top class at the link rate and the normal and push leaves under it."""
    link, push = _bits(bw_mbit), push_rate_bit(bw_mbit)
    burst, quantum = htb_burst_bytes(bw_mbit), htb_quantum(bw_mbit)
    return (
        HtbClass(TOP_CLASS, HTB_HANDLE, link, link, burst, burst, quantum),
        HtbClass(NORMAL_CLASS, TOP_CLASS, link - push, link, burst, burst, quantum, prio=0),
        HtbClass(PUSH_CLASS, TOP_CLASS, push, link, htb_burst_bytes(push / 1e6), burst,
                 quantum, prio=1),
    )


def shaping_plan(params: LinkParams, mode: str) -> ShapingPlan:
    """What ``params`` needs on an interface's egress in link mode ``mode``."""
    _check_mode(mode)
    leaf = _leaf_qdisc(params, mode)
    if not params.bw_mbit:
        return ShapingPlan(qdiscs=(Qdisc(leaf[0], "10:", "root", leaf[1]),) if leaf else ())
    default_minor = NORMAL_CLASS.split(":")[1]
    qdiscs = [Qdisc("htb", HTB_HANDLE, "root", f"default {default_minor}")]
    if leaf:
        qdiscs += [Qdisc(leaf[0], LEAF_HANDLES[c], c, leaf[1]) for c in (NORMAL_CLASS, PUSH_CLASS)]
    return ShapingPlan(tuple(qdiscs), _htb_classes(params.bw_mbit), (push_filter(),))


def _qdisc_command(ifname: str, q: Qdisc) -> str:
    where = "root" if q.parent == "root" else f"parent {q.parent}"
    verb = "replace" if q.parent == "root" else "add"
    return f"tc qdisc {verb} dev {ifname} {where} handle {q.handle} {q.kind} {q.opts}".rstrip()


def _class_command(ifname: str, c: HtbClass) -> str:
    prio = "" if c.prio is None else f" prio {c.prio}"
    return (f"tc class replace dev {ifname} parent {c.parent} classid {c.classid} htb "
            f"rate {_rate(c.rate_bit)} ceil {_rate(c.ceil_bit)} burst {c.burst} "
            f"cburst {c.cburst} quantum {c.quantum}{prio}")


def _filter_command(ifname: str, f: U32Filter) -> str:
    matches = " ".join(f"match ip {field} {value} {mask:#x}" for field, value, mask in f.matches)
    return (f"tc filter add dev {ifname} parent {f.parent} protocol ip prio {f.prio} u32 "
            f"{matches} flowid {f.flowid}")


def render(ifname: str, plan: ShapingPlan) -> list[str]:
    """The plan as tc command lines, in an order tc accepts on a fresh interface."""
    if not _IFNAME.match(ifname):
        raise ValueError(f"interface name {ifname!r} is not a valid Linux name")
    roots = [q for q in plan.qdiscs if q.parent == "root"]
    leaves = [q for q in plan.qdiscs if q.parent != "root"]
    return ([_qdisc_command(ifname, q) for q in roots]
            + [_class_command(ifname, c) for c in plan.classes]
            + [_qdisc_command(ifname, q) for q in leaves]
            + [_filter_command(ifname, f) for f in plan.filters])


def tc_commands(ifname: str, params: LinkParams, mode: str) -> list[str]:
    """The tc command lines that give ``ifname``'s egress the link's behaviour.

    An empty list means the interface needs no qdisc of its own.
    """
    return render(ifname, shaping_plan(params, mode))


def offload_command(ifname: str) -> str:
    """Switch off checksum and segmentation offloads.

    With Open vSwitch's userspace datapath (and with a userspace link emulator)
    nothing fills in a checksum left to the NIC, so TCP and UDP fail silently
    unless the sender computes checksums itself.
    """
    if not _IFNAME.match(ifname):
        raise ValueError(f"interface name {ifname!r} is not a valid Linux name")
    return f"ethtool -K {ifname} tx off rx off tso off gso off gro off"


def expected_qdiscs(params: LinkParams, mode: str) -> list[str]:
    """The qdisc kinds ``tc qdisc show`` must list for the link to be shaped, one per qdisc."""
    return [q.kind for q in shaping_plan(params, mode).qdiscs]


# -- reading tc's output back ---------------------------------------------------------
_ID = r"[0-9a-f]*:[0-9a-f]*"
_QDISC_RE = re.compile(rf"^qdisc (\S+) ({_ID}) (?:(root)|parent ({_ID}))")
_CLASS_RE = re.compile(rf"^class (\S+) ({_ID}) (?:(root)|parent ({_ID}))(.*)$")
_SENT_RE = re.compile(r"^Sent (\d+) bytes")
_FILTER_RE = re.compile(r"^filter parent (\S+) .*?\bpref (\d+) u32\b(.*)$")
_FLOWID_RE = re.compile(r"\b(?:\*|terminal )?flowid (\S+)")
_KEY_RE = re.compile(r"^match ([0-9a-f]{8})/([0-9a-f]{8}) at (-?\d+)(?:\s|$)")
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]i?)?bit$")
_PREFIX = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_rate(text: str) -> int:
    """A rate as tc prints it, in bit/s: '9900Kbit' -> 9900000."""
    found = _RATE_RE.match(text)
    if not found:
        raise TcParseError(f"rate {text!r} is not a tc rate")
    return round(float(found[1]) * _PREFIX[found[2]])


def parse_qdiscs(text: str) -> list[Qdisc]:
    """The qdiscs in ``tc [-s] qdisc show`` output (kind, handle, parent; no options)."""
    found = (_QDISC_RE.match(line.strip()) for line in text.splitlines())
    return [Qdisc(m[1], m[2], "root" if m[3] else m[4]) for m in found if m]


def parse_classes(text: str) -> list[ShownClass]:
    """The classes in ``tc [-s] class show`` output, with byte counts when ``-s`` gave them."""
    classes: list[ShownClass] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        head, sent = _CLASS_RE.match(line), _SENT_RE.match(line)
        if head:
            try:
                classes.append(_shown_class(head))
            except TcParseError as exc:
                raise TcParseError(f"tc class line {number}: {exc}: {line}") from None
        elif sent and classes and classes[-1].sent_bytes is None:
            classes[-1] = replace(classes[-1], sent_bytes=int(sent[1]))
    return classes


def _shown_class(head: re.Match) -> ShownClass:
    words = head[5].split()
    values = dict(zip(words, words[1:]))
    rate, ceil, prio = values.get("rate"), values.get("ceil"), values.get("prio")
    return ShownClass(head[1], head[2], "root" if head[3] else head[4],
                      prio=int(prio) if prio is not None and prio.isdigit() else None,
                      rate_bit=parse_rate(rate) if rate else None,
                      ceil_bit=parse_rate(ceil) if ceil else None)


def parse_u32_filters(text: str) -> list[ShownFilter]:
    """The u32 key nodes (those with a flowid) in ``tc [-s] filter show`` output."""
    filters: list[ShownFilter] = []
    in_node = False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("filter "):
            head = _FILTER_RE.match(line)
            flowid = _FLOWID_RE.search(head[3]) if head else None
            in_node = flowid is not None
            if head and flowid:
                filters.append(ShownFilter(head[1], int(head[2]), flowid[1], ()))
        elif line.startswith("match ") and in_node:
            key = _KEY_RE.match(line)
            if not key:
                raise TcParseError(f"tc filter line {number}: not a u32 key: {line}")
            new = (int(key[1], 16), int(key[2], 16), int(key[3]))
            filters[-1] = replace(filters[-1], keys=(*filters[-1].keys, new))
    return filters


# -- comparing the plan with what is installed ---------------------------------------
def shaping_problems(plan: ShapingPlan, qdiscs: str, classes: str = "",
                     filters: str = "") -> list[str]:
    """What of ``plan`` the ``tc qdisc/class/filter show`` texts lack; empty when all is in
    place.  Rates count as in place within ``RATE_TOLERANCE`` (tc prints them rounded)."""
    return (_qdisc_problems(plan, parse_qdiscs(qdiscs))
            + _class_problems(plan, parse_classes(classes) if plan.classes else [])
            + _filter_problems(plan, parse_u32_filters(filters) if plan.filters else []))


def _qdisc_problems(plan: ShapingPlan, shown: list[Qdisc]) -> list[str]:
    have = {(q.kind, q.handle, q.parent) for q in shown}
    return [f"qdisc {q.kind} {q.handle} at {q.parent} missing" for q in plan.qdiscs
            if (q.kind, q.handle, q.parent) not in have]


def _class_problems(plan: ShapingPlan, shown: list[ShownClass]) -> list[str]:
    by_id = {c.classid: c for c in shown if c.kind == "htb"}
    problems = []
    for want in plan.classes:
        have = by_id.get(want.classid)
        parent = "root" if want.parent.endswith(":") else want.parent
        if have is None or have.parent != parent:
            problems.append(f"htb class {want.classid} under {parent} missing")
            continue
        for what, wanted, got in (("rate", want.rate_bit, have.rate_bit),
                                  ("ceil", want.ceil_bit, have.ceil_bit)):
            if got is None or abs(got - wanted) > RATE_TOLERANCE * wanted:
                problems.append(f"htb class {want.classid} {what} {got} bit/s, want {wanted}")
        if want.prio is not None and have.prio != want.prio:
            problems.append(f"htb class {want.classid} prio {have.prio}, want {want.prio}")
    return problems


def _filter_problems(plan: ShapingPlan, shown: list[ShownFilter]) -> list[str]:
    return [f"u32 filter on {want.parent} to {want.flowid} "
            f"({', '.join(f'{f} {v}' for f, v, _ in want.matches)}) missing"
            for want in plan.filters
            if not any(f.parent == want.parent and f.flowid == want.flowid
                       and set(want.keys()) <= set(f.keys) for f in shown)]
