"""The fidelity check: measure links and paths, compare with the configuration.

For every link (or a seeded sample) and for the path from the master to each
helper, ping (>= 20 probes) and iperf3 (TCP) between hosts at its two ends
(probe hosts stand in for switches), with the CPU's idle share sampled every
second.  An unshaped link has no rate to check; its iperf3 is paced at the
fastest rate the scenario configures (:func:`unshaped_iperf_mbit`).  Verdicts
come from :mod:`testbed.core.measure`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from testbed.core import measure as M
from testbed.core import spec as S
from testbed.emu.kernel import cpu_times

IPERF_PORT = 5201
#: the pace of iperf3 on an unshaped link when no link of the scenario sets a rate
UNSHAPED_IPERF_MBIT = 100.0


def unshaped_iperf_mbit(g: nx.Graph) -> float:
    """The rate an unshaped link is loaded at: the fastest rate configured anywhere in the
    scenario (nothing it carries can go faster), else :data:`UNSHAPED_IPERF_MBIT`.  Enough
    to show the link carries what the scenario can send, without saturating the CPU (at
    full speed one TCP flow through the emulator takes every cycle of a 2-core machine)."""
    rates = [S.link_params(g, a, b).bw_mbit for a, b in g.edges]
    return max((r for r in rates if r), default=UNSHAPED_IPERF_MBIT)


@dataclass(frozen=True)
class CalibrationPlan:
    probes: int = 100
    interval_s: float = 0.01
    iperf_seconds: float = 3.0
    sample: int | None = None
    paths: bool = True
    throughput: bool = True
    seed: int = 0


@dataclass
class Measurement:
    kind: str  # "link" or "path"
    name: str
    src: str
    dst: str
    route: list[str]
    latency: M.LatencyVerdict | None = None
    throughput: M.ThroughputVerdict | None = None
    cpu: M.CpuVerdict | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        lat_ok = self.latency is not None and self.latency.ok
        bw_ok = self.throughput is None or self.throughput.ok
        return not self.error and lat_ok and bw_ok

    def as_row(self) -> dict:
        lat, bw, cpu = self.latency, self.throughput, self.cpu
        return {
            "kind": self.kind, "name": self.name, "src": self.src, "dst": self.dst,
            "route": " ".join(self.route),
            "rtt_configured_ms": lat.configured_rtt_ms if lat else None,
            "rtt_median_ms": lat.median_ms if lat else None,
            "rtt_p99_ms": lat.p99_ms if lat else None,
            "rtt_min_ms": lat.min_ms if lat else None,
            "rtt_samples": lat.samples if lat else 0,
            "rtt_ratio": lat.ratio if lat else None,
            "latency_ok": lat.ok if lat else False,
            "bw_configured_mbit": bw.configured_mbit if bw else None,
            "goodput_mbit": bw.goodput_mbit if bw else None,
            "goodput_expected_mbit": bw.expected_goodput_mbit if bw else None,
            "bw_ratio": bw.ratio if bw else None,
            "throughput_ok": bw.ok if bw else None,
            "cpu_min_idle": cpu.min_idle if cpu else None,
            "cpu_mean_idle": cpu.mean_idle if cpu else None,
            "trusted": cpu.trusted if cpu else None,
            "ok": self.ok,
            "why": "; ".join(x for x in (self.error, lat.why if lat else "",
                                          bw.why if bw else "") if x),
        }


class CpuSampler:
    """Samples the CPU idle share once a second in a thread while active."""

    def __init__(self, period: float = 1.0):
        self.period = period
        self.samples: list[float] = []
        self.times: list[float] = []  # wall-clock end of each sample's second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        last = self._first
        while not self._stop.wait(self.period):
            now = cpu_times()
            self.samples.append(M.idle_fraction(last, now))
            self.times.append(time.time())
            last = now

    def __enter__(self) -> CpuSampler:
        self._first = cpu_times()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (idempotent): what follows is not judged."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if not self.samples:  # shorter than one period: one reading over the whole span
            self.samples.append(M.idle_fraction(self._first, cpu_times()))

    def __exit__(self, *exc: object) -> None:
        self.stop()


def endpoints(g: nx.Graph, u: str, v: str) -> tuple[str, str]:
    """Hosts that stand at the two ends of link (u, v): a host itself or its switch's probe."""
    probe_of = {d["switch"]: n for n, d in g.nodes(data=True) if d.get("role") == S.PROBE}

    def host_at(n: str) -> str:
        return n if g.nodes[n]["role"] != S.SWITCH else probe_of[n]

    return host_at(u), host_at(v)


def plan_targets(g: nx.Graph, plan: CalibrationPlan) -> list[tuple[str, str, str, str]]:
    """(kind, name, src host, dst host) for every measurement, in a stable order."""
    def oriented(u: str, v: str) -> tuple[str, str]:  # host first, then switches in order
        a, b = sorted((u, v), key=lambda n: (g.nodes[n]["role"] == S.SWITCH, S.natural_key(n)))
        return a, b

    links = sorted(
        (oriented(u, v) for u, v in g.edges
         if S.PROBE not in (g.nodes[u]["role"], g.nodes[v]["role"])),
        key=lambda e: (S.natural_key(e[0]), S.natural_key(e[1])),
    )
    if plan.sample is not None and plan.sample < len(links):
        links = sorted(random.Random(plan.seed).sample(links, plan.sample),
                       key=lambda e: (S.natural_key(e[0]), S.natural_key(e[1])))
    targets = []
    for u, v in links:
        a, b = endpoints(g, u, v)
        targets.append(("link", f"{u}-{v}", a, b))
    if plan.paths:
        masters = S.hosts(g, [S.MASTER])
        for m in masters:
            for h in S.hosts(g, [S.HELPER]):
                targets.append(("path", f"{m}->{h}", m, h))
    return targets


def measure_pair(net, g: nx.Graph, kind: str, name: str, src: str, dst: str,
                 plan: CalibrationPlan) -> Measurement:
    """Ping and (if the path is rate-limited or asked to) iperf3 from src to dst."""
    prof = S.path_profile(g, src, dst)
    m = Measurement(kind, name, src, dst, list(prof.nodes))
    hs, hd = net.get(src), net.get(dst)
    with CpuSampler() as cpu:
        out = hs.cmd(f"ping -n -c {plan.probes} -i {plan.interval_s} -W 2 {hd.IP()}")
        try:
            ping = M.parse_ping(out)
            m.latency = M.judge_latency(prof.rtt_ms, 2 * prof.jitter_ms, ping.rtts_ms)
            if ping.loss and not prof.jitter_ms and not _lossy(g, prof):
                m.error = f"{ping.transmitted - ping.received} of {ping.transmitted} pings lost"
        except M.ParseError as exc:
            m.error = str(exc)
        # iperf_seconds 0 skips the test (iperf3 -t 0 would run until killed)
        if plan.throughput and plan.iperf_seconds > 0 and (prof.bottleneck_mbit
                                                           or kind == "link"):
            pace = None if prof.bottleneck_mbit else unshaped_iperf_mbit(g)
            m.throughput, err = iperf_pair(hs, hd, plan.iperf_seconds, prof.bottleneck_mbit,
                                           pace_mbit=pace)
            if err:
                m.error = "; ".join(x for x in (m.error, err) if x)
    m.cpu = M.judge_cpu(cpu.samples)
    return m


def _lossy(g: nx.Graph, prof: S.PathProfile) -> bool:
    return any(S.link_params(g, a, b).loss_pct for a, b in zip(prof.nodes, prof.nodes[1:]))


def iperf_pair(hs, hd, seconds: float, bw: float | None, pace_mbit: float | None = None
               ) -> tuple[M.ThroughputVerdict | None, str]:
    """One iperf3 TCP test from host ``hs`` to ``hd``, judged against rate ``bw``; the
    sender is paced at ``pace_mbit`` if given."""
    server = hd.popen(["iperf3", "-s", "-1", "-p", str(IPERF_PORT)])
    pace = f" -b {pace_mbit:g}M" if pace_mbit else ""
    try:
        time.sleep(0.3)
        out = hs.cmd(f"iperf3 -c {hd.IP()} -p {IPERF_PORT} -t {seconds} -O 1 -J{pace}")
        try:
            res = M.parse_iperf3(out)
        except M.ParseError as exc:
            return None, str(exc)
        return M.judge_throughput(bw, res.received_bps), ""
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(5)
        except Exception:
            server.kill()
            server.wait(5)


def calibrate(net, g: nx.Graph, plan: CalibrationPlan,
              progress: Callable[[str], None] | None = None) -> list[Measurement]:
    """Run every measurement of the plan on the running network ``net``."""
    results = []
    for kind, name, src, dst in plan_targets(g, plan):
        if progress:
            progress(name)
        results.append(measure_pair(net, g, kind, name, src, dst, plan))
    return results


def summary(results: list[Measurement]) -> dict:
    """Counts for the run manifest and the exit status."""
    rows = [r.as_row() for r in results]
    return {
        "measurements": len(rows),
        "passed": sum(1 for r in rows if r["ok"]),
        "failed": [r["name"] for r in rows if not r["ok"]],
        "untrusted": [r["name"] for r in rows if r["trusted"] is False],
        "min_cpu_idle": min((r["cpu_min_idle"] for r in rows if r["cpu_min_idle"] is not None),
                            default=None),
    }


def results_table(results: list[Measurement]):
    """A rich Table of the rows, for printing."""
    from rich.table import Table

    t = Table(title="Fidelity check: configured vs measured (RTT in ms, rates in Mbit/s)")
    t.add_column("kind")
    t.add_column("name", no_wrap=True)
    for col in ("RTT cfg", "median", "p99", "ratio", "bw cfg", "goodput", "ratio",
                "cpu idle", "ok"):
        t.add_column(col, justify="right", no_wrap=True)

    def f(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    for m in results:
        r = m.as_row()
        t.add_row(
            r["kind"], r["name"], f(r["rtt_configured_ms"]), f(r["rtt_median_ms"]),
            f(r["rtt_p99_ms"]), f(r["rtt_ratio"], "{:.3f}"), f(r["bw_configured_mbit"], "{:g}"),
            f(r["goodput_mbit"]), f(r["bw_ratio"], "{:.3f}"),
            f(r["cpu_min_idle"], "{:.0%}"),
            ("[green]pass[/]" if r["ok"] else "[red]FAIL[/]")
            + ("" if r["trusted"] is not False else " [yellow]cpu[/]"),
        )
    return t
