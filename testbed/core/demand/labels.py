"""Labels: the requests each candidate segment gets within the horizon."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig
from testbed.core.demand.events import _check_events

KEYS = ("t", "helper", "video", "index")


def requests_ahead(events: pd.DataFrame, times: Sequence[float], horizon_s: float
                   ) -> pd.DataFrame:
    """Requests per (t, helper, video, index) in ``(t, t + horizon_s]`` for each snapshot t."""
    ev = _check_events(events)
    r = ev[ev["kind"] == "request"]
    times = np.asarray(sorted(float(t) for t in times), dtype=np.float64)
    at = r["at"].to_numpy(np.float64)
    lo = np.searchsorted(times, at - horizon_s, side="left")  # t >= at - H
    hi = np.searchsorted(times, at, side="left")               # t < at
    cnt = np.maximum(hi - lo, 0)
    pos = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    rows = np.repeat(np.arange(len(r)), cnt)
    out = pd.DataFrame({"t": times[pos], "helper": r["helper"].to_numpy(object)[rows],
                        "video": r["video"].to_numpy(object)[rows],
                        "index": r["index"].to_numpy(np.int64)[rows]})
    return out.groupby(list(KEYS), sort=True).size().rename("label").reset_index()


def add_labels(frame: pd.DataFrame, events: pd.DataFrame, cfg: DemandConfig,
               times: Sequence[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame with a ``label`` column, the requests no candidate covered).

    The second frame lists ``(t, helper, video, index, label)`` of segments requested in
    ``(t, t + H]`` at a helper that had no candidate row for them: every predictor
    predicted 0 there, and evaluation counts them.  ``times``: the snapshots (default:
    those in ``frame``; give them, or the requests after a snapshot without a single
    candidate are lost).
    """
    if times is None:
        times = np.unique(frame["t"].to_numpy()) if len(frame) else np.empty(0)
    lab = requests_ahead(events, times, cfg.horizon_s)
    merged = frame.merge(lab, on=list(KEYS), how="left", indicator=False)
    merged["label"] = merged["label"].fillna(0.0).astype(np.float64)
    covered = lab.merge(frame[list(KEYS)], on=list(KEYS), how="left", indicator=True)
    missed = covered[covered["_merge"] == "left_only"].drop(columns="_merge")
    return merged, missed.reset_index(drop=True)
