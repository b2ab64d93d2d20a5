"""One direction of an emulated link: delay, jitter without reordering, loss."""


from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.linkmodel import NS_PER_MS, Direction
from testbed.core.spec import LinkParams


def test_fixed_delay_is_added_exactly():
    d = Direction.make(LinkParams(delay_ms=20), seed=1)
    assert d.schedule(1_000, 100) == 1_000 + 20 * NS_PER_MS
    assert d.stats.packets_in == 1 and d.stats.bytes_in == 100


@settings(max_examples=60, deadline=None)
@given(delay=st.floats(0, 100), jitter=st.floats(0, 50), seed=st.integers(0, 2**32),
       gaps=st.lists(st.integers(0, 5 * NS_PER_MS), min_size=1, max_size=200))
def test_jitter_never_reorders_and_stays_in_bounds(delay, jitter, seed, gaps):
    d = Direction.make(LinkParams(delay_ms=delay, jitter_ms=jitter), seed=seed)
    t, last = 0, -1
    for gap in gaps:
        t += gap
        dep = d.schedule(t, 1500)
        assert dep >= last, "a packet left before the one ahead of it"
        assert dep >= t + int(max(0.0, delay - jitter) * NS_PER_MS) - 1
        assert dep <= max(last, t + int((delay + jitter) * NS_PER_MS) + 1)
        last = dep


def test_loss_rate_matches_configuration_and_is_seeded():
    def run(seed):
        d = Direction.make(LinkParams(loss_pct=5.0), seed=seed)
        return [d.schedule(i, 64) is None for i in range(20_000)]

    a, b = run(7), run(7)
    assert a == b
    rate = sum(a) / len(a)
    assert 0.045 < rate < 0.055
    assert sum(run(8)) != sum(a) or run(8) != a


def test_jitter_spread_is_uniform_like_netem():
    d = Direction.make(LinkParams(delay_ms=10, jitter_ms=2), seed=3)
    # widely spaced packets: no FIFO clamping, so we see the raw distribution
    delays = [(d.schedule(i * 100 * NS_PER_MS, 64) - i * 100 * NS_PER_MS) / NS_PER_MS
              for i in range(5000)]
    assert 7.99 <= min(delays) < 8.1 and 11.9 < max(delays) <= 12.01
    assert abs(sum(delays) / len(delays) - 10) < 0.1
