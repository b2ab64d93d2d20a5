"""Integer codes of names, in C, against the plain one-value-at-a-time reference."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from testbed.core.demand.counting import _Codes
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
