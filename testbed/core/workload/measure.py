"""Figures of a set of sessions, to compare with the published measurements."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from testbed.core.workload.checks import WorkloadError, _number
from testbed.core.workload.session import Session


def early_stop_share(sessions: Iterable[Session], fraction: float = 0.2) -> float:
    """Share of the started on-demand sessions that watched at most ``fraction`` of the
    video (NaN when there are none)."""
    _number("fraction", fraction, 0.0, 1.0)
    watched = [s.watch_fraction for s in sessions if not s.live and not s.abandoned_at_startup]
    if not watched:
        return math.nan
    return float(np.mean(np.asarray(watched) <= fraction))


def abandonment_by_delay(sessions: Iterable[Session], bins: Sequence[float]) -> pd.DataFrame:
    """Abandonment at start-up per start-up delay bin ``(delay_lo, delay_hi]``.

    Columns ``delay_lo``, ``delay_hi``, ``sessions``, ``abandoned`` and ``rate``
    (abandoned / sessions, NaN for an empty bin); sessions outside the bins are left out.
    """
    edges = np.asarray([_number("bin edge", b) for b in bins], dtype=np.float64)
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise WorkloadError(f"workload bins must be two or more increasing edges, got {bins!r}")
    items = list(sessions)
    delay = np.asarray([s.startup_s for s in items], dtype=np.float64)
    left = np.asarray([s.abandoned_at_startup for s in items], dtype=bool)
    which = np.searchsorted(edges, delay, side="left") - 1
    inside = (which >= 0) & (which < len(edges) - 1)
    counts = np.bincount(which[inside], minlength=len(edges) - 1)
    gone = np.bincount(which[inside & left], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(counts > 0, gone / np.maximum(counts, 1), np.nan)
    return pd.DataFrame({"delay_lo": edges[:-1], "delay_hi": edges[1:],
                         "sessions": counts.astype(np.int64), "abandoned": gone.astype(np.int64),
                         "rate": rate.astype(np.float64)})
