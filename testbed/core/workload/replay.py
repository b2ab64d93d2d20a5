"""Sessions rebuilt from a trace, so that an emulation can replay it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from testbed.core.player import SessionPlan
from testbed.core.workload.checks import _EPS, WorkloadError, _number
from testbed.core.workload.playback import _n_segments, _watched
from testbed.core.workload.session import Session
from testbed.core.workload.trace import check_trace


def sessions_from_trace(df: pd.DataFrame, segment_s: float, durations: Mapping[str, float],
                        *, lookahead_s: float = 0.0, live_ids: Iterable[str] = ()
                        ) -> list[Session]:
    """Sessions (plans) rebuilt from a trace, one per viewer, in arrival order.

    With player events the plan is exact: pauses, seeks and the stop come from the
    events, the start-up delay from ``start`` and, for a viewer that left before the first
    frame, the patience (and start-up delay) from ``abandon``.  From requests alone: the
    arrival is the first request, a jump of the index by more than one (or back) is a seek
    and the view stops at the end of the last requested segment, less ``lookahead_s`` (how
    far ahead the player fetched, e.g. its ``max_buffer_s``), unless that segment was the
    last one (complete).  Unknown patience is ``inf``, unknown start-up delay 0.  A session
    is live when its video is in ``live_ids`` or it starts past the first segment.
    """
    seg = _number("segment_s", segment_s, 0.0, low_open=True)
    ahead = _number("lookahead_s", lookahead_s, 0.0)
    live_set = set(live_ids)
    frame = check_trace(df, "trace")
    if frame.empty:
        return []
    codes, _ = pd.factorize(frame["viewer"], sort=False)
    order = np.argsort(codes, kind="stable")
    at = frame["at"].to_numpy()[order]
    kind = frame["kind"].to_numpy()[order]
    head = frame["playhead_s"].to_numpy()[order]
    index = frame["index"].to_numpy()[order]
    viewer = frame["viewer"].to_numpy()[order]
    helper = frame["helper"].to_numpy()[order]
    video = frame["video"].to_numpy()[order]
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)]):
        vid = video[lo]
        if vid not in durations:
            raise WorkloadError(f"trace: no duration for video {vid!r} (viewer {viewer[lo]!r})")
        dur = _number(f"duration of {vid!r}", durations[vid], 0.0, low_open=True)
        rows = list(zip(at[lo:hi].tolist(), kind[lo:hi].tolist(), head[lo:hi].tolist(),
                        index[lo:hi].tolist()))
        out.append(_rebuild(str(viewer[lo]), str(helper[lo]), vid, dur, rows, seg, ahead,
                            vid in live_set))
    out.sort(key=lambda s: (s.arrive_at, s.id))
    return out


def _rebuild(sid: str, helper: str, video: str, dur: float, rows: list[tuple], seg: float,
             ahead: float, live: bool) -> Session:
    n = _n_segments(dur, seg)
    arrival = rows[0][0]
    requests = [(t, j) for t, k, _, j in rows if k == "request"]
    starts = [h for _, k, h, _ in rows if k == "start"]
    start_pos = starts[0] if starts else requests[0][1] * seg if requests else rows[0][2]
    start_index = min(n - 1, max(0, math.floor(start_pos / seg + _EPS)))
    base = start_index * seg
    live = live or start_index > 0
    startup, patience, abandoned = 0.0, math.inf, False
    if any(k != "request" for _, k, _, _ in rows):
        actions, ended, startup, patience, abandoned = _from_events(rows, arrival, base, seg)
        if not ended:
            last = requests[-1][1] if requests else None
            if last is not None and last < n - 1:
                stop = max(0.0, min(dur, (last + 1) * seg) - ahead - base)
                actions.append((stop, "stop", 0.0))
            elif last is None:
                actions.append((max(0.0, rows[-1][2] - base), "stop", 0.0))
    else:
        actions = _from_requests(requests, base, seg, n, dur, ahead)
    plan = SessionPlan(video, arrival, start_index, tuple(actions))
    return Session(sid, helper, video, arrival, startup, patience, _watched(plan, dur, seg),
                   abandoned, plan, live)


def _from_events(rows: list[tuple], arrival: float, base: float, seg: float
                 ) -> tuple[list, bool, float, float, bool]:
    """(actions, ended, startup_s, patience_s, abandoned) from a session's rows."""
    actions: list[list] = []
    startup, patience = 0.0, math.inf
    started = abandoned = False
    pause: tuple[int, float] | None = None
    seek: int | None = None
    seek_req: int | None = None

    def settle_seek() -> None:
        nonlocal seek
        if seek is not None and actions[seek][2] is None:
            if seek_req is None:
                del actions[seek]
            else:
                actions[seek][2] = max(0.0, seek_req * seg - base)
        seek = None

    for t, kind, head, j in rows:
        rel = max(0.0, head - base)
        if kind == "request":
            if seek is not None and seek_req is None:
                seek_req = j
            continue
        if kind in ("pause", "seek", "stop", "complete", "abandon"):
            settle_seek()
        if kind == "start":
            started, startup = True, t - arrival
        elif kind == "pause":
            actions.append([rel, "pause", 0.0])
            pause = (len(actions) - 1, t)
        elif kind == "resume" and pause is not None:
            actions[pause[0]][2] = t - pause[1]
            pause = None
        elif kind == "seek":
            actions.append([rel, "seek", None])
            seek, seek_req = len(actions) - 1, None
        elif kind == "resume_play" and seek is not None:
            actions[seek][2] = rel
            seek = None
        elif kind == "stop" or (kind == "abandon" and started):
            actions.append([rel, "stop", 0.0])
            return [tuple(a) for a in actions], True, startup, patience, abandoned
        elif kind == "complete":
            return [tuple(a) for a in actions], True, startup, patience, abandoned
        elif kind == "abandon":
            abandoned, patience = True, t - arrival
            return [], True, patience, patience, abandoned
    settle_seek()
    if pause is not None:
        actions[pause[0]][2] = rows[-1][0] - pause[1]
    return [tuple(a) for a in actions], False, startup, patience, abandoned


def _from_requests(requests: list[tuple[float, int]], base: float, seg: float, n: int,
                   dur: float, ahead: float) -> list[tuple[float, str, float]]:
    actions: list[tuple[float, str, float]] = []
    t0, j0 = requests[0]
    stretch_t, stretch_pos, prev = t0, j0 * seg, j0
    for t, j in requests[1:]:
        step = j - prev
        if step > 1 or step < 0:
            est = min(stretch_pos + (t - stretch_t), (prev + 1) * seg - ahead)
            est = max(stretch_pos, est)
            actions.append((max(0.0, est - base), "seek", max(0.0, j * seg - base)))
            stretch_t, stretch_pos = t, j * seg
        if step != 0:
            prev = j
    if prev < n - 1:
        stop = max(stretch_pos, min(dur, (prev + 1) * seg) - ahead)
        actions.append((max(0.0, stop - base), "stop", 0.0))
    return actions
