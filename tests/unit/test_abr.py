"""Adaptive bitrate: the throughput estimate, the two rules and the controller that
switches between them."""

from __future__ import annotations

import pytest

from testbed.core import abr

LADDER = [300, 800, 1600]


def test_the_estimate_falls_fast_and_rises_slowly():
    e = abr.ThroughputEstimate()
    assert e.kbps is None
    for _ in range(10):
        e.add(400_000, 1.0)                   # 3.2 Mbit/s for 10 s
    assert e.kbps == pytest.approx(3200, rel=1e-6)
    e.add(100_000, 1.0)                       # one slow segment: 800 kbit/s
    dropped = e.kbps
    assert dropped < 2900                     # the fast average takes it at once
    for _ in range(3):
        e.add(400_000, 1.0)
    assert dropped < e.kbps < 3200            # and it takes a while to trust speed again


def test_a_burst_of_small_downloads_weighs_as_little_as_its_time():
    a, b = abr.ThroughputEstimate(), abr.ThroughputEstimate()
    for est in (a, b):
        for _ in range(8):
            est.add(250_000, 1.0)             # 2 Mbit/s
    for _ in range(20):
        a.add(2_000, 0.001)                   # 16 Mbit/s, but 20 ms of download in all
    b.add(40_000, 0.02)
    assert a.kbps == pytest.approx(b.kbps, rel=0.02) and a.kbps < 2300


def test_the_throughput_rule_takes_the_highest_that_fits_with_a_margin():
    assert abr.throughput_choice(LADDER, None) == 0
    assert abr.throughput_choice(LADDER, 100) == 0
    assert abr.throughput_choice(LADDER, 880) == 0       # 800 > 0.9 x 880
    assert abr.throughput_choice(LADDER, 900) == 1
    assert abr.throughput_choice(LADDER, 1800) == 2


def test_bola_goes_from_the_lowest_at_a_short_buffer_to_the_highest_at_its_target():
    picks = [abr.bola_choice(LADDER, q, 12.0) for q in range(0, 21)]
    assert picks[:11] == [0] * 11                       # 10 s or less: the lowest
    assert picks[16:] == [2] * 5                        # 16 s (10 + 2 x 3) on: the highest
    assert picks == sorted(picks) and 1 in picks        # and the middle between
    assert abr.bola_choice([500], 30.0, 12.0) == 0


@pytest.mark.parametrize("bad", [[], [300, 300], [800, 300], [0, 300], [float("nan")]])
def test_a_bad_ladder_gets_one_line(bad):
    with pytest.raises(abr.AbrError) as err:
        abr.throughput_choice(bad, 1000)
    assert "bitrates" in str(err.value)
    with pytest.raises(abr.AbrError):
        abr.AbrController(bad)


def test_a_bad_sample_is_refused():
    with pytest.raises(abr.AbrError):
        abr.ThroughputEstimate().add(1000, 0.0)


def test_the_controller_climbs_one_step_at_a_time_and_falls_at_once():
    c = abr.AbrController(LADDER)
    assert c.choose(0.0) == 0                            # nothing measured yet
    c.downloaded(1_000_000, 1.0)                         # 8 Mbit/s
    assert [c.choose(2.0) for _ in range(3)] == [1, 2, 2]
    for _ in range(12):
        c.downloaded(50_000, 1.0)                        # 400 kbit/s: a throttled link
    assert c.choose(2.0) == 0                            # straight down, not step by step
    assert c.switches == 3


def test_with_a_long_buffer_the_buffer_rule_rides_out_a_dip():
    c = abr.AbrController(LADDER)
    for _ in range(10):
        c.downloaded(500_000, 1.0)                       # 4 Mbit/s
    picks = [c.choose(b) for b in (4.0, 8.0, 12.0, 18.0)]
    assert picks == [2, 2, 2, 2] and c.bola
    for _ in range(5):
        c.downloaded(80_000, 1.0)                        # five slow segments
    assert abr.throughput_choice(LADDER, c.estimate.kbps) < 2
    assert c.choose(18.0) == 2                           # 18 s of buffer absorbs them
    assert c.choose(4.0) < 2 and not c.bola              # a short buffer does not
