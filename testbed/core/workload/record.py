"""The trace sessions leave: the events and requests a helper would report."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from testbed.core.workload.bulk import collector_paused
from testbed.core.workload.checks import _EPS, WorkloadError
from testbed.core.workload.config import WorkloadConfig
from testbed.core.workload.playback import _n_segments, _walk
from testbed.core.workload.session import Session
from testbed.core.workload.trace import TRACE_COLUMNS, _typed


def _window(pos: float, n: int, segment_s: float, max_buffer_s: float) -> tuple[int, int]:
    """Segments ``[first, end)`` starting less than ``max_buffer_s`` ahead of ``pos``."""
    first = min(n - 1, max(0, math.floor(pos / segment_s + _EPS)))
    end = min(n, math.ceil((pos + max_buffer_s - _EPS) / segment_s))
    return first, max(first + 1, end)


def _session_rows(s: Session, duration: float, cfg: WorkloadConfig) -> list[tuple]:
    """``(at, kind, playhead_s, index)`` rows of one session, in order."""
    seg, buf, dl = float(cfg.segment_s), float(cfg.max_buffer_s), float(cfg.download_s)
    n = _n_segments(duration, seg)
    events: list[tuple[float, str, float]] = []
    requests: list[tuple[float, int]] = []

    def burst(t0: float, pos: float, spacing: float) -> int:
        first, end = _window(pos, n, seg, buf)
        for k, j in enumerate(range(first, end)):
            t = t0 + k * spacing
            requests.append((max(t, (j + 1) * seg) if s.live else t, j))
        return end

    a = s.arrive_at
    pos = s.plan.start_index * seg
    first, end = _window(pos, n, seg, buf)
    spacing = min(dl, s.startup_s / (end - first))
    next_j = burst(a, pos, spacing)
    if s.abandoned_at_startup:
        finish = a + s.patience_s
        events.append((finish, "abandon", pos))
    else:
        t = a + s.startup_s
        events.append((t, "start", pos))
        finish = math.inf
        for kind, p0, x in _walk(s.plan, duration, seg):
            if kind == "play":
                while next_j < n and next_j * seg - buf < x - _EPS:
                    tr = t + max(0.0, next_j * seg - buf - p0)
                    requests.append((max(tr, (next_j + 1) * seg) if s.live else tr, next_j))
                    next_j += 1
                t += x - p0
            elif kind == "pause":
                events.append((t, "pause", p0))
                t += x
                events.append((t, "resume", p0))
            elif kind == "seek":
                events.append((t, "seek", p0))
                first, end = _window(x, n, seg, buf)
                next_j = burst(t, x, dl)
                t += (end - first) * dl
                events.append((t, "resume_play", x))
            else:
                events.append((t, kind, p0))
                finish = t
    rows = [(t, 0, i, kind, head, -1) for i, (t, kind, head) in enumerate(events)]
    rows += [(t, 1, i, "request", j * seg, j) for i, (t, j) in enumerate(requests)
             if t < finish]
    rows.sort()
    return [(r[0], r[3], r[4], r[5]) for r in rows]


def trace_frame(sessions: Iterable[Session], cfg: WorkloadConfig) -> pd.DataFrame:
    """The trace of ``sessions`` (columns :data:`TRACE_COLUMNS`), sorted by (at, viewer)."""
    durations = dict(cfg.videos + cfg.live)
    cols: dict[str, list] = {c: [] for c in TRACE_COLUMNS}
    rank: list[int] = []
    with collector_paused():
        for s in sessions:
            if s.video not in durations:
                raise WorkloadError(f"workload: session {s.id} watches unknown video "
                                    f"{s.video!r}")
            rows = _session_rows(s, durations[s.video], cfg)
            cols["at"] += [round(r[0], 6) for r in rows]
            cols["kind"] += [r[1] for r in rows]
            cols["playhead_s"] += [round(r[2], 6) for r in rows]
            cols["index"] += [r[3] for r in rows]
            cols["helper"] += [s.helper] * len(rows)
            cols["viewer"] += [s.id] * len(rows)
            cols["video"] += [s.video] * len(rows)
            rank += range(len(rows))
        frame = _typed({c: cols[c] for c in TRACE_COLUMNS})
    frame["_rank"] = np.asarray(rank, dtype=np.int64)
    frame = frame.sort_values(["at", "viewer", "_rank"], kind="stable")
    return frame.drop(columns="_rank").reset_index(drop=True)
