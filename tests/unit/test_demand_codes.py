"""Integer codes of names, in C, against the plain one-value-at-a-time reference."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from testbed.core.demand.counting import _Codes, _WindowCounter
from testbed.core.demand.features import _session_codes


def reference(index: dict, values) -> list[int]:
    out = []
    for v in values:
        if v not in index:
            index[v] = len(index)
        out.append(index[v])
    return out


def names(rng: random.Random, n: int, pool: int, prefix: str) -> list[str]:
    return [f"{prefix}{rng.randrange(pool)}" for _ in range(n)]


@pytest.mark.parametrize("kind", ["list", "array", "series", "str-series"])
def test_codes_in_order_of_first_appearance_over_calls(kind):
    rng = random.Random(3)
    codes, ref = _Codes(), {}
    for n in (0, 1, 50, 500, 7):
        values = names(rng, n, 40, "h")
        given = {"list": values, "array": np.array(values, dtype=object),
                 "series": pd.Series(values, dtype=object),
                 "str-series": pd.Series(values, dtype="str")}[kind]
        got = codes.encode(given)
        assert got.dtype == np.int64
        assert got.tolist() == reference(ref, values)
        assert codes.index == ref


def test_session_codes_are_those_of_helper_and_viewer_joined():
    rng = random.Random(5)
    helpers = names(rng, 2000, 30, "h")
    viewers = names(rng, 2000, 60, "s")
    h = _Codes().encode(helpers)
    got = _session_codes(h, pd.Series(viewers, dtype=object))
    joined = [f"{a}\x00{b}" for a, b in zip(helpers, viewers)]
    assert got.tolist() == reference({}, joined)
    assert _session_codes(np.empty(0, dtype=np.int64), pd.Series([], dtype=object)).size == 0


def sorted_counts(codes, times, q_codes, q_t, w) -> np.ndarray:
    """The window counts by binary search over every event, as they were first done."""
    scale = float(2 ** 21)
    comp = np.sort(codes.astype(np.float64) * scale + times)
    base = q_codes.astype(np.float64) * scale
    hi = np.searchsorted(comp, base + q_t, side="right")
    lo = np.searchsorted(comp, base + np.maximum(q_t - w, -1.0), side="right")
    return (hi - lo).astype(np.float64)


@pytest.mark.parametrize("key_range", [50, 1 << 28, 1 << 31])
def test_window_counts_at_one_time_are_those_of_the_binary_search(key_range):
    rng = np.random.default_rng(key_range % 1000)
    n = 20_000
    codes = rng.integers(0, key_range, n) if key_range > 50 else rng.integers(0, 50, n)
    codes[: n // 2] = codes[0]  # one busy key
    t_now, w = 900.0, 60.0
    times = rng.uniform(500.0, 950.0, n)
    times[:100] = t_now - w       # on the window's edges
    times[100:200] = t_now
    times[200:300] = np.nextafter(t_now - w, np.inf)
    q = np.concatenate([codes[::7], rng.integers(0, max(key_range, 60), 500)])
    for at in (np.full(len(q), t_now), np.full(len(q), 10.0)):
        got = _WindowCounter(codes, times).count(q, at, w)
        assert got.tolist() == sorted_counts(codes, times, q, at, w).tolist()
    several = rng.choice([t_now, 700.0], len(q))  # queries at several times: the search
    assert _WindowCounter(codes, times).count(q, several, w).tolist() == \
        sorted_counts(codes, times, q, several, w).tolist()
    assert _WindowCounter(codes[:0], times[:0]).count(q, np.full(len(q), t_now), w).sum() == 0
