"""The platform's delay floor: what a switch adds, and taking it out of the links.

A frame crossing an emulated switch spends some time in it (tens to hundreds of
microseconds with Open vSwitch's userspace datapath, about nothing with the kernel's).
Measured per switch at start-up (:mod:`testbed.emu.switchprobe`), that time is taken out
of the delay lines next to the switch, so that a path's configured delay is what a packet
sees end to end.

Every crossing of a switch enters by one link and leaves by another, so each switch's
one-way forwarding time is split in halves between the links that meet at it: a link
gives up half of each switch at its ends.  Summed along any host-to-host path this is
exactly the switches the path crosses, whatever its length.  A link cannot give up more
delay than it has; what it cannot give is its *floor* (one way), and a path measures at
least the sum of its links' floors.  A stand-in probe host on a switch (the fidelity
check's) crosses the switch on an unshaped leg that gives nothing up, so a link measured
through probes reads half a switch more per switch end and direction.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import networkx as nx

from testbed.core import spec as S

#: One-way forwarding time assumed for a userspace-datapath switch before any
#: measurement on this machine exists (about what XDP ports measure on an idle 2-core VM).
NOMINAL_USERSPACE_MS = 0.08


@dataclass(frozen=True)
class SwitchLatency:
    """One switch's one-way forwarding time from probe frames (ms)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    lost: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def summarise(one_way_ms: Iterable[float], lost: int = 0) -> SwitchLatency | None:
    """Median and spread of one switch's samples; None without any."""
    xs = sorted(one_way_ms)
    if not xs:
        return None

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, max(0, round(p * (len(xs) - 1))))]

    return SwitchLatency(statistics.median(xs), q(0.10), q(0.90), len(xs), lost)


def link_share_ms(g: nx.Graph, a: str, b: str, latency_ms: Mapping[str, float]) -> float:
    """The switch time link a-b gives up one way: half of each switch at its ends."""
    return sum(latency_ms.get(n, 0.0) / 2 for n in (a, b)
               if g.nodes[n]["role"] == S.SWITCH)


def compensated_delay_ms(delay_ms: float, share_ms: float) -> float:
    """The delay line's own delay for a link of ``delay_ms`` that gives up ``share_ms``."""
    return max(0.0, delay_ms - share_ms)


def shortfall_ms(delay_ms: float, share_ms: float) -> float:
    """How much of the share the link cannot give up (its excess over the configuration)."""
    return max(0.0, share_ms - delay_ms)


@dataclass(frozen=True)
class BelowFloor:
    """A link whose configured one-way delay is below what the platform adds to it."""

    link: str
    delay_ms: float
    floor_ms: float


def links_below_floor(g: nx.Graph, latency_ms: Mapping[str, float] | float,
                      slack_ms: float = 0.0) -> list[BelowFloor]:
    """Links (probe legs aside) whose delay is below their share of switch time.

    ``latency_ms`` per switch, or one figure for every switch.  ``slack_ms``: ignore a
    shortfall up to this (what the fidelity check's tolerance absorbs anyway).
    """
    per = latency_ms if isinstance(latency_ms, Mapping) else {
        n: float(latency_ms) for n in S.switches(g)}
    def ends(e: tuple[str, str]) -> tuple[str, str]:  # a host first, switches in order
        a, b = sorted(e, key=lambda n: (g.nodes[n]["role"] == S.SWITCH, S.natural_key(n)))
        return a, b

    out = []
    for a, b in sorted(map(ends, g.edges), key=lambda e: (S.natural_key(e[0]),
                                                           S.natural_key(e[1]))):
        if S.PROBE in (g.nodes[a]["role"], g.nodes[b]["role"]):
            continue
        share = link_share_ms(g, a, b, per)
        delay = S.link_params(g, a, b).delay_ms
        if shortfall_ms(delay, share) > slack_ms:
            out.append(BelowFloor(f"{a}-{b}", delay, share))
    return out


def below_floor_line(rows: list[BelowFloor], where: str, limit: int = 4) -> str:
    """One line telling a user which links ask for less than the platform gives."""
    if not rows:
        return ""
    floor = max(r.floor_ms for r in rows)
    names = ", ".join(r.link for r in rows[:limit]) + (
        f" and {len(rows) - limit} more" if len(rows) > limit else "")
    return (f"{len(rows)} link(s) ask for less one-way delay than the switches add here "
            f"({where}: up to {floor:.2f} ms per link): {names}; they will measure about "
            f"that much more than configured (give them at least {floor:.2f} ms)")
