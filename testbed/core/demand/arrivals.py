"""Demand from sessions not started yet: the start-up bursts of new arrivals."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandError

ARRIVAL_COLUMNS = ["helper", "video", "index", "expected"]


def arrival_demand(events: pd.DataFrame, now: float, *, window_s: float, horizon_s: float,
                   prefix: int, helpers: Sequence[str] | None = None, mix: float = 0.5,
                   videos: Sequence[str] | None = None, top_videos: int = 10,
                   exclude: Collection[str] = (), since: float | None = None
                   ) -> pd.DataFrame:
    """Expected requests over the next ``horizon_s`` from sessions not started yet.

    A new session asks for its video's first ``prefix`` segments at once (the start-up
    burst), which no forecast of running sessions can see coming.  Per helper, sessions
    arrive at the rate of the ``start`` events of the last ``window_s`` seconds (half its
    own, half the mean over helpers, so a quiet helper still expects some; over the time
    the telemetry covers when that is shorter than the window), and pick a
    video with the probability of a ``mix`` of the global and the helper's own recent
    choices.  Expected requests for segment ``i < prefix`` of video ``v`` at helper ``h``:
    ``rate_h * horizon_s * p_h(v)``, for its ``top_videos`` likeliest videos (only those in
    ``videos`` when given, e.g. the on-demand catalogue; never those in ``exclude``).
    ``since``: when the telemetry begins (default: the first event given), for callers
    that pass only the window.
    """
    for name, v in (("window_s", window_s), ("horizon_s", horizon_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise DemandError(f"arrival_demand: {name} must be > 0, got {v!r}")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 1:
        raise DemandError(f"arrival_demand: prefix must be an int >= 1, got {prefix!r}")
    if not 0.0 <= mix <= 1.0:
        raise DemandError(f"arrival_demand: mix must be within 0..1, got {mix!r}")
    at = events["at"]
    starts = events[(events["kind"] == "start") & (at > now - window_s) & (at <= now)]
    if videos is not None:
        starts = starts[starts["video"].isin(set(videos))]
    if exclude:
        starts = starts[~starts["video"].isin(set(exclude))]
    names = sorted(set(helpers) if helpers is not None else set(starts["helper"]))
    if starts.empty or not names:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    # the rate over the time telemetry has covered, when that is shorter than the window
    first = float(at.min()) if since is None else min(float(since), float(at.min()))
    span = max(min(window_s, now - first), min(window_s, 10.0))
    helper_of = starts["helper"].to_numpy(object)
    own = pd.Series(helper_of).value_counts().reindex(names, fill_value=0).to_numpy(float)
    mean = len(starts) / max(len(names), len(set(helper_of)))
    rate = 0.5 * (own + mean) / span
    share = _video_shares(starts, names, own > 0, mix)
    vids = np.array(sorted(set(starts["video"])), dtype=object)
    n_v = len(vids)
    # per helper, its likeliest videos first (ties by video id)
    order = np.lexsort((np.tile(np.arange(n_v), len(names)), -share.ravel(),
                        np.repeat(np.arange(len(names)), n_v)))
    rank = np.tile(np.arange(n_v), len(names))
    pick = order[rank < min(top_videos, n_v)]
    h_i, v_i = np.divmod(pick, n_v)
    expected = rate[h_i] * horizon_s * share.ravel()[pick]
    return pd.DataFrame({
        "helper": np.repeat(np.asarray(names, dtype=object)[h_i], prefix),
        "video": np.repeat(vids[v_i], prefix),
        "index": np.tile(np.arange(prefix, dtype=np.int64), len(pick)),
        "expected": np.repeat(expected, prefix)}, columns=ARRIVAL_COLUMNS)


def _video_shares(starts: pd.DataFrame, names: Sequence[str], has_own: np.ndarray,
                  mix: float) -> np.ndarray:
    """helpers x videos (sorted ids): the chance a new session at the helper picks the
    video: ``mix`` of everyone's recent choices and the rest its own, or everyone's alone
    for a helper that started nothing."""
    vids = sorted(set(starts["video"]))
    v_code = pd.Index(vids).get_indexer(starts["video"])
    glob = np.bincount(v_code, minlength=len(vids)) / len(starts)
    h_code = pd.Index(names).get_indexer(starts["helper"])
    mine = h_code >= 0
    local = np.zeros((len(names), len(vids)))
    np.add.at(local, (h_code[mine], v_code[mine]), 1.0)
    local /= np.maximum(local.sum(axis=1, keepdims=True), 1.0)
    return np.where(has_own[:, None], mix * glob[None, :] + (1 - mix) * local, glob[None, :])
