"""A synthetic catalogue of on-demand videos with lognormal durations."""

from __future__ import annotations

import numpy as np

from testbed.core.workload.checks import WorkloadError, _number

#: Mixed into the generator's seed so that no other use shares its stream.
_CATALOGUE_TAG = 0xCA7A


def synthetic_catalogue(n: int, seed: int, median_s: float = 240.0, sigma: float = 0.8,
                        min_s: float = 30.0, max_s: float = 1800.0
                        ) -> tuple[tuple[str, float], ...]:
    """``n`` videos ``("vod-0000", duration_s)``...: lognormal durations (median ``median_s``,
    shape ``sigma``) clipped to ``[min_s, max_s]``, to the millisecond."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise WorkloadError(f"workload catalogue n must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise WorkloadError(f"workload catalogue seed must be an int >= 0, got {seed!r}")
    median = _number("catalogue median_s", median_s, 0.0, low_open=True)
    shape = _number("catalogue sigma", sigma, 0.0)
    low = _number("catalogue min_s", min_s, 0.0, low_open=True)
    high = _number("catalogue max_s", max_s, low)
    rng = np.random.default_rng([_CATALOGUE_TAG, seed])
    durs = np.clip(median * np.exp(shape * rng.standard_normal(n)), low, high)
    return tuple((f"vod-{i:04d}", round(float(d), 3)) for i, d in enumerate(durs))
