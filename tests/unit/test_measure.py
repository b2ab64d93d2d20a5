"""Parsers of ping and iperf3 output, and the fidelity verdicts."""

import json
import math

import pytest

from testbed.core import measure as M

PING = """PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=70.4 ms
64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=70.2 ms
64 bytes from 10.0.0.2: icmp_seq=4 ttl=64 time=71.9 ms

--- 10.0.0.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 152ms
rtt min/avg/max/mdev = 70.2/70.8/71.9/0.7 ms
"""


def test_parse_ping_reads_every_reply_and_the_counts():
    r = M.parse_ping(PING)
    assert r.rtts_ms == (70.4, 70.2, 71.9)
    assert (r.transmitted, r.received) == (4, 3)
    assert r.loss == pytest.approx(0.25)


def test_parse_ping_rejects_garbage():
    with pytest.raises(M.ParseError):
        M.parse_ping("connect: Network is unreachable\n")


def iperf_json(bps, retr=3):
    return json.dumps({"end": {"sum_received": {"bits_per_second": bps, "seconds": 3.0},
                               "sum_sent": {"bits_per_second": bps * 1.01,
                                            "retransmits": retr}}})


def test_parse_iperf3():
    r = M.parse_iperf3(iperf_json(9.5e6))
    assert r.received_bps == 9.5e6 and r.retransmits == 3 and r.seconds == 3.0


@pytest.mark.parametrize("text", ["not json", json.dumps({"error": "unable to connect"}),
                                  json.dumps({"end": {}})])
def test_parse_iperf3_errors(text):
    with pytest.raises(M.ParseError):
        M.parse_iperf3(text)


def test_percentile_interpolates():
    assert M.percentile([1, 2, 3, 4], 0.5) == 2.5
    assert M.percentile([5], 0.99) == 5
    assert math.isnan(M.percentile([], 0.5))


def test_latency_median_tolerance_is_5_percent_or_half_a_ms():
    assert M.judge_latency(70, 0, [73.4] * 20).ok  # 3.4 < 3.5
    assert not M.judge_latency(70, 0, [73.6] * 20).ok
    assert M.judge_latency(2, 0, [2.45] * 20).ok  # 0.5 ms floor
    assert not M.judge_latency(2, 0, [2.6] * 20).ok


def test_latency_p99_bound():
    rtts = [70.0] * 95 + [90.0] * 5
    v = M.judge_latency(70, 0, rtts)
    assert not v.ok and "p99" in v.why
    assert M.judge_latency(70, 20, rtts).ok  # jitter allows it


def test_no_replies_fails():
    v = M.judge_latency(10, 0, [])
    assert not v.ok and v.why == "no replies"


def test_throughput_expects_tcp_goodput_of_the_rate():
    assert M.judge_throughput(10, 9.56e6).ok
    assert M.judge_throughput(10, 8.7e6).ok
    assert not M.judge_throughput(10, 8.5e6).ok
    assert not M.judge_throughput(10, 10.6e6).ok
    v = M.judge_throughput(None, 900e6)
    assert v.ok and v.ratio is None


def test_cpu_trusted_only_if_every_second_kept_35_percent_idle():
    assert M.judge_cpu([0.9, 0.5, 0.36]).trusted
    assert not M.judge_cpu([0.9, 0.34, 0.9]).trusted
    assert M.idle_fraction((100, 1000), (150, 1100)) == 0.5
