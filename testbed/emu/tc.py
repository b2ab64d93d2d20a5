"""Render the ``tc`` and ``ethtool`` commands that shape one interface.

Pure (no I/O): build a plan from link parameters and a mode, render it to
command lines, and let the caller apply them and check each result.  Both link
modes put the rate limit (htb) on the egress of each interface, where the
sending node sees the queue build, as on a real bottleneck.  In ``netem`` mode a
netem qdisc under the htb class adds delay, jitter and loss; in ``userspace``
mode the link emulator does that between the two veth pairs instead.
"""

from __future__ import annotations

import math
import re

from testbed.core.spec import LinkParams

NETEM, USERSPACE = "netem", "userspace"
MODES = (NETEM, USERSPACE)
DEFAULT_LIMIT = 1000  # packets; the veth txqueuelen default
MTU_FRAME = 1514
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _fmt(x: float) -> str:
    """Compact decimal for tc: 5.0 -> '5', 0.25 -> '0.25'."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def htb_burst_bytes(bw_mbit: float) -> int:
    """Bucket size: 2 ms at line rate, never less than two full frames."""
    return max(2 * MTU_FRAME, int(bw_mbit * 1e6 / 8 * 0.002))


def bdp_packets(params: LinkParams) -> int:
    """Full-size frames in flight on the link at its rate and delay."""
    if not params.bw_mbit:
        return 0
    one_way_s = (params.delay_ms + params.jitter_ms) / 1000.0
    return math.ceil(params.bw_mbit * 1e6 / 8 * one_way_s / MTU_FRAME)


def tc_commands(ifname: str, params: LinkParams, mode: str) -> list[str]:
    """The tc command lines that give ``ifname``'s egress the link's behaviour.

    An empty list means the interface needs no qdisc of its own.
    """
    if mode not in MODES:
        raise ValueError(f"link mode {mode!r} (must be one of {', '.join(MODES)})")
    if not _IFNAME.match(ifname):
        raise ValueError(f"interface name {ifname!r} is not a valid Linux name")
    impaired = bool(params.delay_ms or params.jitter_ms or params.loss_pct)
    netem = mode == NETEM and impaired
    cmds: list[str] = []
    parent = "root"
    if params.bw_mbit:
        rate = _fmt(params.bw_mbit)
        burst = htb_burst_bytes(params.bw_mbit)
        quantum = min(200_000, max(MTU_FRAME, int(params.bw_mbit * 1e6 / 8 / 10)))
        cmds += [
            f"tc qdisc replace dev {ifname} root handle 5: htb default 1",
            f"tc class replace dev {ifname} parent 5: classid 5:1 htb rate {rate}mbit "
            f"ceil {rate}mbit burst {burst} cburst {burst} quantum {quantum}",
        ]
        parent = "parent 5:1"
    verb = "replace" if parent == "root" else "add"
    if netem:
        limit = (params.queue_pkts or DEFAULT_LIMIT) + bdp_packets(params)
        opts = f"delay {_fmt(params.delay_ms)}ms"
        if params.jitter_ms:
            opts += f" {_fmt(params.jitter_ms)}ms"
        if params.loss_pct:
            opts += f" loss {_fmt(params.loss_pct)}%"
        cmds.append(f"tc qdisc {verb} dev {ifname} {parent} handle 10: netem {opts} limit {limit}")
    elif params.queue_pkts:
        cmds.append(
            f"tc qdisc {verb} dev {ifname} {parent} handle 10: pfifo limit {params.queue_pkts}"
        )
    return cmds


def offload_command(ifname: str) -> str:
    """Switch off checksum and segmentation offloads.

    With Open vSwitch's userspace datapath (and with a userspace link emulator)
    nothing fills in a checksum left to the NIC, so TCP and UDP fail silently
    unless the sender computes checksums itself.
    """
    if not _IFNAME.match(ifname):
        raise ValueError(f"interface name {ifname!r} is not a valid Linux name")
    return f"ethtool -K {ifname} tx off rx off tso off gso off gro off"


def impairs(params: LinkParams) -> bool:
    """True when the link needs delay, jitter or loss (netem or the emulator)."""
    return bool(params.delay_ms or params.jitter_ms or params.loss_pct)


def expected_qdiscs(params: LinkParams, mode: str) -> list[str]:
    """The qdisc kinds ``tc qdisc show`` must list for the link to be shaped."""
    return [cmd.split(" handle ")[1].split()[1] for cmd in tc_commands("x", params, mode)
            if cmd.startswith("tc qdisc")]
