"""The watch fraction law: an exponential truncated to [0, 1], calibrated by bisection."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from testbed.core.workload.checks import WorkloadError

#: Bounds of the truncated exponential's rate searched by the calibration.
_RATE_BOUND = 500.0


def _early_cdf(x: float, rate: float) -> float:
    """P(f <= x) for f on [0, 1] with density proportional to exp(-rate * f)."""
    if abs(rate) < 1e-12:
        return x
    return math.expm1(-rate * x) / math.expm1(-rate)


@lru_cache(maxsize=64)
def _watch_rate(share: float, fraction: float, complete: float) -> float:
    """The rate giving ``P(f <= fraction) = share`` over all started views."""
    target = share / (1.0 - complete)
    lo, hi = -_RATE_BOUND, _RATE_BOUND
    if not _early_cdf(fraction, lo) < target < _early_cdf(fraction, hi):
        raise WorkloadError(f"workload early_stop_share {share!r} is unreachable with "
                            f"complete_share {complete!r} and early_stop_fraction {fraction!r}")
    for _ in range(200):
        mid = (lo + hi) / 2
        if _early_cdf(fraction, mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def _fractions(u: np.ndarray, rate: float) -> np.ndarray:
    """Inverse CDF of the truncated exponential at ``u``."""
    if abs(rate) < 1e-12:
        return u
    return np.clip(-np.log1p(u * math.expm1(-rate)) / rate, 0.0, 1.0)
