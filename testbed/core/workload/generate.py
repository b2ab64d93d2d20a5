"""Drawing the sessions of a :class:`~.config.WorkloadConfig`: steady arrivals, flash crowds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from testbed.core.player import SessionPlan
from testbed.core.workload.bulk import collector_paused
from testbed.core.workload.checks import WorkloadError
from testbed.core.workload.config import FlashCrowd, WorkloadConfig
from testbed.core.workload.playback import _n_segments, _watched
from testbed.core.workload.record import trace_frame
from testbed.core.workload.session import Session
from testbed.core.workload.watch import _fractions, _watch_rate

#: Mixed into the generators' seeds so that no two uses share a stream.
_REGION_TAG = 0x3C0A
_FLASH_TAG = 0xF1A5


@dataclass(frozen=True)
class Workload:
    """The sessions of a config, in arrival order; :meth:`trace` builds their trace once."""

    sessions: tuple[Session, ...]
    config: WorkloadConfig
    _cache: list = field(default_factory=list, init=False, repr=False, compare=False)

    def trace(self) -> pd.DataFrame:
        """The sessions as a trace (a copy of the one built on first use)."""
        if not self._cache:
            self._cache.append(trace_frame(self.sessions, self.config))
        return self._cache[0].copy()


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


def _rate(cfg: WorkloadConfig, t: np.ndarray) -> np.ndarray:
    hours = cfg.start_hour + t / 3600.0
    return cfg.arrival_rate * (1.0 + cfg.daily_amplitude
                               * np.cos(2.0 * np.pi * (hours - cfg.peak_hour) / 24.0))


def _session_id(region: int, k: int) -> str:
    if region < 10_000 and k < 100_000:
        return f"s{region:04d}{k:05d}"
    return f"s{region}-{k}"


def _actions(rng: np.random.Generator, media: float, budget: float, pause_rate: float,
             seek_rate: float, mean_pause: float, back_share: float, segment_s: float
             ) -> list[tuple[float, str, float]]:
    """Pauses and seeks along ``media`` seconds of video, then a stop once ``budget``
    seconds have played (``inf``: play to the end).  Rates are per second of playback."""
    total = pause_rate + seek_rate
    scale = 1.0 / total if total > 0 else math.inf
    draw, exponential = rng.random, rng.exponential
    floor, isinf, inf = math.floor, math.isinf, math.inf
    pos, left = 0.0, budget
    out: list[tuple[float, str, float]] = []
    while True:
        room = min(media - pos, left)
        gap = exponential(scale) if total > 0 else inf
        if gap >= room:
            if left <= media - pos:
                out.append((min(media, round(pos + left, 3)), "stop", 0.0))
            return out
        new = round(pos + gap, 3)
        left -= new - pos
        pos = new
        if draw() * total < pause_rate:
            length = min(exponential(mean_pause), 10.0 * mean_pause)
            out.append((pos, "pause", round(length, 3)))
            continue
        back = draw() < back_share
        u = draw()
        hi = media - segment_s if isinf(left) else min(media - segment_s, media - left)
        if back and pos <= 0:
            back = False
        if not back and hi <= pos:
            if pos <= 0:
                continue
            back = True
        if back:
            target = floor(pos * u * 1000.0) / 1000.0
        else:
            target = max(pos, floor((pos + (1.0 - u) * (hi - pos)) * 1000.0) / 1000.0)
        out.append((pos, "seek", target))
        pos = target


class _Traits(NamedTuple):
    """Per-session draws, one entry per arrival: what the viewer brings, not what it watches."""

    startup: np.ndarray
    patience: np.ndarray
    completes: np.ndarray
    fractions: np.ndarray
    live_watch: np.ndarray


def _traits(rng: np.random.Generator, cfg: WorkloadConfig, m: int, rate: float) -> _Traits:
    """Start-up delays, patience, whole views, watch fractions and live watch times of
    ``m`` arrivals (``rate``: the watch fraction law's)."""
    startup = (cfg.startup_median_s * np.exp(cfg.startup_sigma
                                             * rng.standard_normal(m))).round(6)
    patience = (cfg.patience_grace_s + rng.random(m) / cfg.patience_slope).round(6)
    completes = rng.random(m) < cfg.complete_share
    fractions = _fractions(rng.random(m), rate)
    live_watch = rng.exponential(cfg.mean_live_watch_s, m)
    return _Traits(startup, patience, completes, fractions, live_watch)


class _Shared(NamedTuple):
    """What every region's draw reads from the config, worked out once."""

    p_global: np.ndarray            # the videos' global popularity
    segment_s: float
    pause_rate: float               # per second of playback
    seek_rate: float
    durations: dict[str, float]     # on-demand and live
    #: (video, duration, live) of the on-demand videos, the live channels, then the
    #: shifts' videos; and their durations as an array
    watches: list[tuple[str, float, bool]]
    watch_s: np.ndarray


def _shared(cfg: WorkloadConfig) -> _Shared:
    durations = dict(cfg.videos + cfg.live)
    watches = [(video, dur, False) for video, dur in cfg.videos]
    watches += [(video, dur, True) for video, dur in cfg.live]
    watches += [(s.video, durations[s.video], False) for s in cfg.shifts]
    return _Shared(_zipf(len(cfg.videos), cfg.zipf_s), float(cfg.segment_s),
                   cfg.pause_rate_per_min / 60.0, cfg.seek_rate_per_min / 60.0, durations,
                   watches, np.array([dur for _, dur, _ in watches], dtype=np.float64))


def _sessions(rng: np.random.Generator, cfg: WorkloadConfig, shared: _Shared, ids: list[str],
              helper: str, times: np.ndarray, which: np.ndarray, traits: _Traits
              ) -> list[Session]:
    """Session ``ids[k]`` arriving at ``times[k]`` to watch ``shared.watches[which[k]]``
    with the ``k``-th ``traits``; their pauses and seeks are drawn from ``rng`` here, one
    session after the other."""
    seg, pause_rate, seek_rate = shared.segment_s, shared.pause_rate, shared.seek_rate
    mean_pause, back_share = cfg.mean_pause_s, cfg.seek_back_share
    # an on-demand view plays to the end or a fraction of the video
    budgets = np.where(traits.completes, math.inf, traits.fractions * shared.watch_s[which])
    live_watch = traits.live_watch.tolist()
    watches = shared.watches
    out = []
    for k, (sid, at, w, budget, s_up, pat, gives_up) in enumerate(zip(
            ids, times.tolist(), which.tolist(), budgets.tolist(), traits.startup.tolist(),
            traits.patience.tolist(), (traits.startup > traits.patience).tolist())):
        video, dur, live = watches[w]
        if live:
            start = min(max(0, math.floor(at / seg) - 1), _n_segments(dur, seg) - 1)
            actions = _actions(rng, dur - start * seg, round(live_watch[k], 3), pause_rate, 0.0,
                               mean_pause, 0.0, seg)
        else:
            start = 0
            actions = _actions(rng, dur, budget, pause_rate, seek_rate, mean_pause,
                               back_share, seg)
        plan = SessionPlan(video, at, start, tuple(actions))
        out.append(Session(sid, helper, video, at, s_up, pat, _watched(plan, dur, seg),
                           gives_up, plan, live))
    return out


def _region_sessions(cfg: WorkloadConfig, region: int, rate: float, shared: _Shared
                     ) -> list[Session]:
    rng = np.random.default_rng([_REGION_TAG, int(cfg.seed), region])
    n_videos = len(cfg.videos)
    p_global = shared.p_global
    p_local = np.empty(n_videos)
    p_local[rng.permutation(n_videos)] = p_global
    cum = np.cumsum((1.0 - cfg.regional_skew) * p_global + cfg.regional_skew * p_local)

    span = float(cfg.duration_s)
    peak = cfg.arrival_rate * (1.0 + cfg.daily_amplitude)
    n = int(rng.poisson(peak * span))
    times = np.sort(rng.random(n) * span)
    times = times[rng.random(n) * peak < _rate(cfg, times)].round(6)
    m = len(times)

    u_shift, u_live, u_video = rng.random((3, m))
    channel = rng.integers(max(1, len(cfg.live)), size=m)
    traits = _traits(rng, cfg, m, rate)

    # what each arrival watches, as an index into shared.watches: a live channel, a
    # shift's video, else one drawn by popularity
    which = np.minimum(np.searchsorted(cum, u_video * cum[-1], side="right"), n_videos - 1)
    if cfg.shifts:
        hot = np.full(m, -1)
        acc = np.zeros(m)
        for i, shift in enumerate(cfg.shifts):
            active = times >= shift.at_s
            hot[(hot < 0) & active & (u_shift < acc + shift.share)] = i
            acc += np.where(active, shift.share, 0.0)
        which = np.where(hot >= 0, n_videos + len(cfg.live) + hot, which)
        cold = hot < 0
    else:
        cold = True
    if cfg.live:
        which = np.where(cold & (u_live < cfg.live_share), n_videos + channel, which)
    return _sessions(rng, cfg, shared, [_session_id(region, k) for k in range(m)],
                     cfg.helpers[region], times, which, traits)


def _crowd_id(crowd: int, region: int, k: int) -> str:
    """A flash crowd session's id: never one of :func:`_session_id`'s (it holds an 'f')."""
    if crowd < 100 and region < 10_000 and k < 100_000:
        return f"s{region:04d}f{crowd:02d}{k:05d}"
    return f"s{region}-f{crowd}-{k}"


def _crowd_times(rng: np.random.Generator, crowd: FlashCrowd, end: float) -> np.ndarray:
    """Sorted arrival times of one crowd in one region, before ``end``: ``rate`` over its
    window, thinned to ``rate * t / ramp_s`` at ``t`` seconds into the ramp."""
    at, length = float(crowd.at_s), float(crowd.duration_s)
    n = int(rng.poisson(crowd.rate * length))
    offsets = np.sort(rng.random(n) * length)
    if crowd.ramp_s > 0:
        offsets = offsets[rng.random(n) * crowd.ramp_s < offsets]
    times = np.round(at + offsets, 6)
    return times[(times >= at) & (times < min(end, at + length))]


def _crowd_sessions(cfg: WorkloadConfig, index: int, region: int, rate: float,
                    shared: _Shared) -> list[Session]:
    """Crowd ``index``'s sessions in ``region``, from a generator of their own so that the
    steady sessions and the other crowds' stay as they were."""
    crowd = cfg.flash_crowds[index]
    rng = np.random.default_rng([_FLASH_TAG, int(cfg.seed), index, region])
    times = _crowd_times(rng, crowd, float(cfg.duration_s))
    m = len(times)
    traits = _traits(rng, cfg, m, rate)
    which = np.full(m, next(i for i, w in enumerate(shared.watches) if w[0] == crowd.video))
    return _sessions(rng, cfg, shared, [_crowd_id(index, region, k) for k in range(m)],
                     cfg.helpers[region], times, which, traits)


def _crowd_regions(cfg: WorkloadConfig) -> Iterator[tuple[int, int]]:
    """``(crowd index, region index)`` of every flash crowd in every region it reaches."""
    for i, crowd in enumerate(cfg.flash_crowds):
        wanted = set(cfg.helpers if crowd.regions is None else crowd.regions)
        yield from ((i, r) for r, h in enumerate(cfg.helpers) if h in wanted)


def generate(cfg: WorkloadConfig) -> Workload:
    """The sessions of every region, flash crowds included, ordered by arrival (then id)."""
    if not isinstance(cfg, WorkloadConfig):
        raise WorkloadError(f"generate needs a WorkloadConfig, got {type(cfg).__name__}")
    rate = _watch_rate(float(cfg.early_stop_share), float(cfg.early_stop_fraction),
                       float(cfg.complete_share))
    shared = _shared(cfg)
    with collector_paused():
        sessions = [s for r in range(len(cfg.helpers))
                    for s in _region_sessions(cfg, r, rate, shared)]
        sessions += [s for i, r in _crowd_regions(cfg)
                     for s in _crowd_sessions(cfg, i, r, rate, shared)]
        sessions.sort(key=lambda s: (s.arrive_at, s.id))
    return Workload(tuple(sessions), cfg)
