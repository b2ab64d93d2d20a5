"""Links measure what they are configured to: latency, rate, jitter, loss.

Only the L2 app runs, so that the measurement sees the links and not the
controller's probes (calibrate measures under the full controller).

The path h1 -5 ms- s1 -10 ms- s2 -20 ms- h2 has a 70 ms round trip; its middle
link is the bottleneck.  Run in every link mode this kernel offers.
"""

import time

import pytest
from timing_slack import SLACK, widened

from testbed.core import measure as M
from testbed.emu.calibrate import CalibrationPlan, iperf_pair, measure_pair
from testbed.emu.kernel import has_netem
from testbed.emu.network import TestbedNetwork
from topologies.chain import make_chain

MODES = ["userspace", pytest.param("netem", marks=pytest.mark.skipif(
    not has_netem(), reason="this kernel has no sch_netem; the userspace emulator covers it"))]


ATTEMPTS = 3  # a shared VM stalls now and then; a link must pass in one of 3 tries
JITTER_ATTEMPTS = 5
# The target is p99 within 10 % (testbed calibrate judges that).  On a shared VM, stalls of
# 5-15 ms hit a few pings in some minutes whatever the testbed does, so the gate here is
# the median within tolerance and p99 within 25 %; every attempt is printed.
P99_GATE = 1.25
# Where MESHCAST_TIMING_SLACK is set (a TCG guest), the tolerances widen by that factor.
RTT_MS = 70.0


def latency_ok(lat: M.LatencyVerdict) -> bool:
    return (abs(lat.median_ms - RTT_MS) <= widened(max(0.05 * RTT_MS, 0.5))
            and lat.p99_ms <= RTT_MS * (1 + widened(P99_GATE - 1)))


def rate_ok(verdict) -> bool:
    if verdict is None:
        return False
    return verdict.ok or (SLACK > 1 and abs(verdict.ratio - 1) <= widened(M.BW_REL_TOL))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bw", [1, 10, 50])
def test_three_link_path_has_the_configured_latency_and_rate(run_dir, mode, bw):
    """Latency on the idle path first (pings never follow a bulk transfer), then TCP."""
    spec = make_chain(delays_ms=(5.0, 10.0, 20.0), bw_mbit=bw, bottleneck=2)
    plan = CalibrationPlan(probes=100, interval_s=0.02, throughput=False)
    latency, rate = [], []
    with TestbedNetwork(spec, run_dir, mode=mode, apps=("l2",)) as tn:
        assert tn.mode == mode
        for _ in range(ATTEMPTS):
            m = measure_pair(tn.net, spec, "path", "h1->h2", "h1", "h2", plan)
            latency.append(m.as_row())
            if m.ok or (SLACK > 1 and latency_ok(m.latency) and not m.error):
                break
        h1, h2 = tn.host("h1"), tn.host("h2")
        for _ in range(ATTEMPTS):
            verdict, err = iperf_pair(h1, h2, 4, float(bw))
            rate.append((verdict, err))
            if rate_ok(verdict):
                break
    print(latency, rate)
    lat = m.latency
    assert lat.configured_rtt_ms == RTT_MS
    assert latency_ok(lat), latency
    assert not m.error, latency
    assert rate_ok(verdict), rate


@pytest.mark.parametrize("mode", MODES)
def test_jitter_and_loss_are_emulated(run_dir, mode):
    spec = make_chain(delays_ms=(1.0, 10.0, 1.0), bw_mbit=None, bottleneck=2,
                      jitter_ms=2.0, loss_pct=5.0)
    failures = []
    with TestbedNetwork(spec, run_dir, mode=mode, apps=("l2",)) as tn:
        # a spread is the first thing a busy host distorts: more tries, spaced out, so that
        # one stall of the shared machine cannot spoil them all (the bounds stay the same)
        for attempt in range(JITTER_ATTEMPTS):
            if attempt:
                time.sleep(3.0)
            out = tn.host("h1").cmd(f"ping -n -c 300 -i 0.01 -W 1 {tn.host('h2').IP()}")
            ping = M.parse_ping(out)
            rtts = ping.rtts_ms
            median = M.percentile(rtts, 0.5)
            spread = M.percentile(rtts, 0.95) - M.percentile(rtts, 0.05)
            # 5 % each way on the middle link: 1 - 0.95^2 = 9.75 % of round trips lost;
            # +-2 ms each way, without reordering: a spread of a few ms around 24 ms
            # (the lower bound on the spread says jitter is there: it does not widen)
            checks = {"loss": 0.04 < ping.loss < 0.17,
                      "median": abs(median - 24.0) < widened(3.0),
                      "spread": 2.0 < spread < widened(8.5)}
            if all(checks.values()):
                return
            failures.append((ping.loss, median, spread, checks))
    pytest.fail(f"jitter/loss not as configured in {JITTER_ATTEMPTS} tries: {failures}")
