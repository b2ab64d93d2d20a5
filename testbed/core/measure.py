"""Pure parsers of measurement tools' output, and the fidelity verdicts.

The tolerances are the testbed's targets: a latency median within
max(5 %, 0.5 ms) of the configured round trip, its p99 within 10 %; TCP
throughput within +-10 % of the configured rate; a measurement counts only if
the host kept >= 35 % of its CPU idle in every second (Mininet-HiFi's rule).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

MEDIAN_REL_TOL = 0.05
MEDIAN_ABS_TOL_MS = 0.5
P99_REL_TOL = 0.10
BW_REL_TOL = 0.10
MIN_IDLE = 0.35
# TCP payload per full frame that htb counts: MSS 1448 (with timestamps) / 1514.
TCP_EFFICIENCY = 1448 / 1514

_PING_RTT = re.compile(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms")
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


class ParseError(ValueError):
    """Tool output that does not look like what the parser expects."""


@dataclass(frozen=True)
class PingResult:
    transmitted: int
    received: int
    rtts_ms: tuple[float, ...]

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.transmitted if self.transmitted else 1.0


def parse_ping(text: str) -> PingResult:
    """Round-trip times and counts from iputils ``ping`` output."""
    summary = _PING_SUMMARY.search(text)
    if not summary:
        raise ParseError(f"no ping summary in output: {text.strip()[:120]!r}")
    rtts = tuple(float(m.group(2)) for m in _PING_RTT.finditer(text))
    return PingResult(int(summary.group(1)), int(summary.group(2)), rtts)


@dataclass(frozen=True)
class IperfResult:
    received_bps: float
    sent_bps: float
    retransmits: int
    seconds: float


def parse_iperf3(text: str) -> IperfResult:
    """Receiver-side TCP throughput from ``iperf3 -J`` output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"iperf3 output is not JSON: {text.strip()[:120]!r}") from exc
    if "error" in data:
        raise ParseError(f"iperf3 error: {data['error']}")
    try:
        end = data["end"]
        recv, sent = end["sum_received"], end["sum_sent"]
        return IperfResult(
            received_bps=float(recv["bits_per_second"]),
            sent_bps=float(sent["bits_per_second"]),
            retransmits=int(sent.get("retransmits", 0)),
            seconds=float(recv["seconds"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ParseError(f"iperf3 JSON lacks {exc}") from exc


def percentile(values: list[float] | tuple[float, ...], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyVerdict:
    configured_rtt_ms: float
    median_ms: float
    p99_ms: float
    min_ms: float
    samples: int
    ratio: float
    ok: bool
    why: str


def judge_latency(configured_rtt_ms: float, jitter_rtt_ms: float,
                  rtts_ms: list[float] | tuple[float, ...]) -> LatencyVerdict:
    """Median within max(5 %, 0.5 ms) of the configured RTT; p99 within 10 % of its bound.

    ``jitter_rtt_ms`` is the most jitter can add to a round trip (the sum of
    the links' jitter, both ways); the p99 bound is RTT + that, plus 10 %.
    """
    if not rtts_ms:
        return LatencyVerdict(configured_rtt_ms, math.nan, math.nan, math.nan, 0, math.nan,
                              False, "no replies")
    med, p99 = percentile(rtts_ms, 0.5), percentile(rtts_ms, 0.99)
    tol = max(MEDIAN_REL_TOL * configured_rtt_ms, MEDIAN_ABS_TOL_MS)
    p99_bound = (configured_rtt_ms + jitter_rtt_ms) * (1 + P99_REL_TOL) + MEDIAN_ABS_TOL_MS
    why = []
    if abs(med - configured_rtt_ms) > tol:
        why.append(f"median {med:.2f} ms is off {configured_rtt_ms:.2f} by more than {tol:.2f}")
    if p99 > p99_bound:
        why.append(f"p99 {p99:.2f} ms > {p99_bound:.2f}")
    ratio = med / configured_rtt_ms if configured_rtt_ms else math.nan
    return LatencyVerdict(configured_rtt_ms, med, p99, min(rtts_ms), len(rtts_ms), ratio,
                          not why, "; ".join(why))


@dataclass(frozen=True)
class ThroughputVerdict:
    configured_mbit: float | None
    goodput_mbit: float
    expected_goodput_mbit: float | None
    ratio: float | None
    ok: bool
    why: str


def judge_throughput(configured_mbit: float | None, received_bps: float) -> ThroughputVerdict:
    """TCP goodput within +-10 % of what the configured rate can carry.

    The rate limit counts whole Ethernet frames, so TCP can deliver at most
    ``TCP_EFFICIENCY`` of it as payload; that is the expected goodput.  An
    unlimited link has nothing to check and passes.
    """
    goodput = received_bps / 1e6
    if not configured_mbit:
        return ThroughputVerdict(None, goodput, None, None, True, "")
    expected = configured_mbit * TCP_EFFICIENCY
    ratio = goodput / expected
    ok = abs(ratio - 1.0) <= BW_REL_TOL
    why = "" if ok else f"goodput {goodput:.2f} Mbit/s is {ratio:.2f} x the expected {expected:.2f}"
    return ThroughputVerdict(configured_mbit, goodput, expected, ratio, ok, why)


@dataclass(frozen=True)
class CpuVerdict:
    min_idle: float
    mean_idle: float
    seconds: int
    trusted: bool


def judge_cpu(idle_fractions: list[float]) -> CpuVerdict:
    """A measurement is trusted only if every sampled second kept >= 35 % CPU idle."""
    if not idle_fractions:
        return CpuVerdict(math.nan, math.nan, 0, True)
    return CpuVerdict(
        min(idle_fractions), sum(idle_fractions) / len(idle_fractions), len(idle_fractions),
        min(idle_fractions) >= MIN_IDLE,
    )


def idle_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Idle share of CPU time between two (idle, total) readings of /proc/stat."""
    d_idle, d_total = after[0] - before[0], after[1] - before[1]
    return d_idle / d_total if d_total > 0 else math.nan


def as_dict(obj: object) -> dict:
    return asdict(obj)  # type: ignore[arg-type]
