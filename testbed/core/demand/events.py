"""Telemetry as demand reads it: the columns it needs, session ends, snapshot times."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig, DemandError

#: Player event kinds that end a session.
ENDS = frozenset({"stop", "complete", "abandon"})


def _check_events(events: pd.DataFrame) -> pd.DataFrame:
    need = ("at", "helper", "viewer", "video", "kind", "index")
    missing = [c for c in need if c not in events.columns]
    if missing:
        raise DemandError(f"events lack column(s) {missing}")
    ev = events[list(need) + (["playhead_s"] if "playhead_s" in events.columns else [])]
    if len(ev) and not ev["at"].is_monotonic_increasing:
        ev = ev.sort_values("at", kind="stable")
    return ev.reset_index(drop=True)


def snapshot_times(events: pd.DataFrame, cfg: DemandConfig, start: float | None = None,
                   end: float | None = None) -> np.ndarray:
    """Snapshot times every ``cfg.step`` from ``start`` (first event) to ``end`` (last - H)."""
    if len(events) == 0:
        return np.empty(0)
    first = float(events["at"].min()) if start is None else float(start)
    last = float(events["at"].max()) - cfg.horizon_s if end is None else float(end)
    first = math.ceil(first / cfg.step) * cfg.step
    if last < first:
        return np.empty(0)
    return np.arange(first, last + 1e-9, cfg.step)
