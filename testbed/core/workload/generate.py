"""Drawing the sessions of a :class:`~.config.WorkloadConfig`: steady arrivals, flash crowds."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from testbed.core.player import SessionPlan
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
    pos, left = 0.0, budget
    out: list[tuple[float, str, float]] = []
    while True:
        room = min(media - pos, left)
        gap = float(rng.exponential(1.0 / total)) if total > 0 else math.inf
        if gap >= room:
            if left <= media - pos:
                out.append((min(media, round(pos + left, 3)), "stop", 0.0))
            return out
        new = round(pos + gap, 3)
        left -= new - pos
        pos = new
        if rng.random() * total < pause_rate:
            length = min(float(rng.exponential(mean_pause)), 10.0 * mean_pause)
            out.append((pos, "pause", round(length, 3)))
            continue
        back = rng.random() < back_share
        u = float(rng.random())
        hi = media - segment_s if math.isinf(left) else min(media - segment_s, media - left)
        if back and pos <= 0:
            back = False
        if not back and hi <= pos:
            if pos <= 0:
                continue
            back = True
        if back:
            target = math.floor(pos * u * 1000.0) / 1000.0
        else:
            target = max(pos, math.floor((pos + (1.0 - u) * (hi - pos)) * 1000.0) / 1000.0)
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
    startup = np.round(cfg.startup_median_s * np.exp(cfg.startup_sigma
                                                     * rng.standard_normal(m)), 6)
    patience = np.round(cfg.patience_grace_s + rng.random(m) / cfg.patience_slope, 6)
    completes = rng.random(m) < cfg.complete_share
    fractions = _fractions(rng.random(m), rate)
    live_watch = rng.exponential(cfg.mean_live_watch_s, m)
    return _Traits(startup, patience, completes, fractions, live_watch)


def _session(rng: np.random.Generator, cfg: WorkloadConfig, sid: str, helper: str, at: float,
             watch: tuple[str, float, bool], traits: _Traits, k: int) -> Session:
    """Session ``sid`` arriving at ``at`` to watch ``(video, duration, live)`` with the
    ``k``-th ``traits``; its pauses and seeks are drawn from ``rng`` here."""
    video, dur, live = watch
    seg = float(cfg.segment_s)
    pause_rate = cfg.pause_rate_per_min / 60.0
    if live:
        start = min(max(0, math.floor(at / seg) - 1), _n_segments(dur, seg) - 1)
        actions = _actions(rng, dur - start * seg, round(float(traits.live_watch[k]), 3),
                           pause_rate, 0.0, cfg.mean_pause_s, 0.0, seg)
    else:
        start = 0
        budget = math.inf if traits.completes[k] else float(traits.fractions[k]) * dur
        actions = _actions(rng, dur, budget, pause_rate, cfg.seek_rate_per_min / 60.0,
                           cfg.mean_pause_s, cfg.seek_back_share, seg)
    plan = SessionPlan(video, at, start, tuple(actions))
    s_up, pat = float(traits.startup[k]), float(traits.patience[k])
    return Session(sid, helper, video, at, s_up, pat, _watched(plan, dur, seg), s_up > pat,
                   plan, live)


def _region_sessions(cfg: WorkloadConfig, region: int, rate: float) -> list[Session]:
    rng = np.random.default_rng([_REGION_TAG, int(cfg.seed), region])
    helper = cfg.helpers[region]
    n_videos = len(cfg.videos)
    p_global = _zipf(n_videos, cfg.zipf_s)
    p_local = np.empty(n_videos)
    p_local[rng.permutation(n_videos)] = p_global
    cum = np.cumsum((1.0 - cfg.regional_skew) * p_global + cfg.regional_skew * p_local)

    span = float(cfg.duration_s)
    peak = cfg.arrival_rate * (1.0 + cfg.daily_amplitude)
    n = int(rng.poisson(peak * span))
    times = np.sort(rng.random(n) * span)
    times = np.round(times[rng.random(n) * peak < _rate(cfg, times)], 6)
    m = len(times)

    u_shift, u_live, u_video = rng.random(m), rng.random(m), rng.random(m)
    channel = rng.integers(max(1, len(cfg.live)), size=m)
    traits = _traits(rng, cfg, m, rate)

    hot = np.full(m, -1)
    acc = np.zeros(m)
    for i, shift in enumerate(cfg.shifts):
        active = times >= shift.at_s
        hot[(hot < 0) & active & (u_shift < acc + shift.share)] = i
        acc += np.where(active, shift.share, 0.0)
    is_live = (hot < 0) & (u_live < cfg.live_share) if cfg.live else np.zeros(m, dtype=bool)
    picks = np.minimum(np.searchsorted(cum, u_video * cum[-1], side="right"), n_videos - 1)

    durations = dict(cfg.videos)
    out = []
    for k in range(m):
        if is_live[k]:
            video, dur = cfg.live[int(channel[k])]
        elif hot[k] >= 0:
            video = cfg.shifts[hot[k]].video
            dur = durations[video]
        else:
            video, dur = cfg.videos[picks[k]]
        out.append(_session(rng, cfg, _session_id(region, k), helper, float(times[k]),
                            (video, dur, bool(is_live[k])), traits, k))
    return out


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


def _crowd_sessions(cfg: WorkloadConfig, index: int, region: int, rate: float
                    ) -> list[Session]:
    """Crowd ``index``'s sessions in ``region``, from a generator of their own so that the
    steady sessions and the other crowds' stay as they were."""
    crowd = cfg.flash_crowds[index]
    rng = np.random.default_rng([_FLASH_TAG, int(cfg.seed), index, region])
    times = _crowd_times(rng, crowd, float(cfg.duration_s))
    traits = _traits(rng, cfg, len(times), rate)
    durations = dict(cfg.videos + cfg.live)
    watch = (crowd.video, durations[crowd.video], crowd.video in dict(cfg.live))
    helper = cfg.helpers[region]
    return [_session(rng, cfg, _crowd_id(index, region, k), helper, float(at), watch, traits, k)
            for k, at in enumerate(times)]


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
    sessions = [s for r in range(len(cfg.helpers)) for s in _region_sessions(cfg, r, rate)]
    sessions += [s for i, r in _crowd_regions(cfg) for s in _crowd_sessions(cfg, i, r, rate)]
    sessions.sort(key=lambda s: (s.arrive_at, s.id))
    return Workload(tuple(sessions), cfg)
