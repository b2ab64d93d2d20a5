"""Popularity prefetch: what a cache that knows popularity, not sessions, would push."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from testbed.core.demand.arrivals import ARRIVAL_COLUMNS, arrival_demand
from testbed.core.demand.config import DemandConfig, DemandError, _positive
from testbed.core.demand.events import ENDS

SESSION_COLUMNS = ["helper", "viewer", "video", "index"]


def current_sessions(events: pd.DataFrame, now: float, timeout_s: float,
                     helpers: Collection[str] | None = None) -> pd.DataFrame:
    """The sessions going at ``now``: ``helper, viewer, video, index`` of the last request
    of each session heard from within ``timeout_s`` whose last event is not an end.

    Rows in the order of those last requests; only ``helpers``' sessions when given.
    """
    at = events["at"]
    ev = events[(at >= now - timeout_s) & (at <= now)]
    if helpers is not None:
        ev = ev[ev["helper"].isin(set(helpers))]
    if len(ev) == 0:
        return pd.DataFrame(columns=SESSION_COLUMNS)
    last = ev.groupby(["helper", "viewer"], sort=False).tail(1)
    ended = last.loc[last["kind"].isin(ENDS), ["helper", "viewer"]]
    req = ev[ev["kind"] == "request"].groupby(["helper", "viewer"], sort=False).tail(1)
    if len(ended):
        gone = pd.MultiIndex.from_frame(ended)
        req = req[~pd.MultiIndex.from_frame(req[["helper", "viewer"]]).isin(gone)]
    return req[SESSION_COLUMNS].reset_index(drop=True)


def popularity_demand(events: pd.DataFrame, now: float, cfg: DemandConfig, *,
                      horizon_s: float, prefix: int, prefix_window_s: float,
                      live: Collection[str] = (), helpers: Sequence[str] | None = None,
                      n_segments: Mapping[str, int] | None = None, mix: float = 0.5,
                      since: float | None = None) -> pd.DataFrame:
    """Expected requests per helper and segment over exactly ``horizon_s``, from
    popularity alone (the prefetch a CDN would run): ``helper, video, index, expected``.

    * Popular segments ahead of sessions: a segment's request rate over the last
      ``cfg.window_s`` (``1 - mix`` of its rate at the helper, ``mix`` of its rate over
      all helpers shared among the helpers that served requests), times ``horizon_s``;
      only for segments past the last request of at least one session going at the
      helper on that video (:func:`current_sessions`).
    * Prefix caching: the first ``prefix`` segments of the videos new sessions are likely
      to start at the helper (:func:`arrival_demand` over ``prefix_window_s``).

    A segment that every session going at the helper on its video has asked for already
    is never a row (the helper has just served it); nor is any segment of a ``live``
    video (the multicast tree brings those as they are made).  Where both parts name a
    segment they estimate the same flow of requests: the larger counts, not the sum.
    ``events`` need reach back only ``max(cfg.window_s, prefix_window_s,
    cfg.session_timeout_s)`` when ``since`` says when the telemetry begins.
    """
    _positive("horizon_s", horizon_s)
    _positive("prefix_window_s", prefix_window_s)
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise DemandError(f"popularity prefix must be an int >= 0, got {prefix!r}")
    live = frozenset(live)
    sessions = current_sessions(events, now, cfg.session_timeout_s, helpers)
    sessions = sessions[~sessions["video"].isin(live)]
    lowest = sessions.groupby(["helper", "video"], sort=False)["index"].min().rename("lowest")
    parts = [_popular_ahead(events, now, cfg, horizon_s, lowest, live, mix)]
    if prefix > 0:
        at = events["at"]
        names = list(helpers) if helpers is not None else sorted(
            set(events.loc[(at > now - prefix_window_s) & (at <= now), "helper"]))
        parts.append(arrival_demand(events, now, window_s=prefix_window_s,
                                    horizon_s=horizon_s, prefix=prefix, helpers=names,
                                    mix=mix, exclude=live, since=since))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    rows = pd.concat(parts, ignore_index=True)
    rows["index"] = rows["index"].astype(np.int64)
    rows = _not_passed(_within(rows, n_segments), lowest)
    return rows.groupby(["helper", "video", "index"], as_index=False, sort=True)[
        "expected"].max()[ARRIVAL_COLUMNS]


def _popular_ahead(events: pd.DataFrame, now: float, cfg: DemandConfig, horizon_s: float,
                   lowest: pd.Series, live: frozenset, mix: float) -> pd.DataFrame:
    """Recently requested segments past some session's last request at the helper, with
    their recent request rate continued over ``horizon_s``."""
    at = events["at"]
    req = events[(events["kind"] == "request") & (at > now - cfg.window_s) & (at <= now)]
    if len(req) == 0 or len(lowest) == 0:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    serving = max(1, req["helper"].nunique())
    req = req[~req["video"].isin(live)]
    glob = req.groupby(["video", "index"], sort=False).size().rename("g").reset_index()
    local = req.groupby(["helper", "video", "index"], sort=False).size().rename("l")
    cand = lowest.reset_index().merge(glob, on="video")
    cand = cand[cand["index"].to_numpy() > cand["lowest"].to_numpy()]
    mine = local.reindex(pd.MultiIndex.from_frame(cand[["helper", "video", "index"]]))
    own = np.nan_to_num(mine.to_numpy(np.float64))
    share = cand["g"].to_numpy(np.float64) / serving
    cand = cand.assign(expected=((1 - mix) * own + mix * share) / cfg.window_s * horizon_s)
    return cand[ARRIVAL_COLUMNS]


def _within(rows: pd.DataFrame, n_segments: Mapping[str, int] | None) -> pd.DataFrame:
    """Rows whose index is inside the video (videos of unknown length: all)."""
    if not n_segments or len(rows) == 0:
        return rows
    codes, vids = pd.factorize(rows["video"])
    limit = np.array([n_segments.get(v, np.inf) for v in vids], dtype=np.float64)
    return rows[rows["index"].to_numpy() < limit[codes]]


def _not_passed(rows: pd.DataFrame, lowest: pd.Series) -> pd.DataFrame:
    """Drop rows at or behind the last request of every session at the helper on the video."""
    if len(rows) == 0 or len(lowest) == 0:
        return rows
    low = lowest.reindex(pd.MultiIndex.from_frame(rows[["helper", "video"]])).to_numpy(float)
    return rows[np.isnan(low) | (rows["index"].to_numpy() > low)]
