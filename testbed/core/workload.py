"""A seeded viewer workload per helper region, calibrated against published measurements.

:func:`generate` turns a :class:`WorkloadConfig` into viewer :class:`Session` s: each
carries a :class:`~testbed.core.player.SessionPlan` and a patience, which drive the
emulated viewers, and :func:`trace_frame` turns the same sessions into the event stream
the helpers would report (a *trace*).  :func:`write_trace` / :func:`read_trace` store a
trace as CSV or Parquet, and :func:`sessions_from_trace` rebuilds sessions from a trace
(one of ours, or one a user brings) so that an emulation can replay it.  Everything is a
pure function of the config: the same config gives the same sessions and a byte-identical
CSV trace.

Model:

* **Regions are helpers.**  Sessions arrive at each region as a Poisson process of mean
  ``arrival_rate`` per second, optionally following a daily rhythm
  ``rate(t) = arrival_rate * (1 + daily_amplitude * cos(2*pi*(h(t) - peak_hour) / 24))``
  with ``h(t) = start_hour + t / 3600``, sampled by thinning.  Each region draws from its
  own ``numpy`` generator seeded from ``(seed, region index)``, so adding a region leaves
  the others' sessions as they were.
* **Popularity** is Zipf with exponent ``zipf_s`` over ``videos`` in the given (global)
  order.  Region ``r`` draws from ``(1 - regional_skew) * p_global + regional_skew *
  p_local_r``, ``p_local_r`` being the same law over a seeded permutation of the videos
  particular to the region.  A :class:`PopularityShift` sends a share of the arrivals
  from ``at_s`` on to one video (a new hot video); the others follow the normal law.
* **Flash crowds** (:class:`FlashCrowd`: a video everyone suddenly watches, a live event)
  come on top of those arrivals: from ``at_s`` for ``duration_s`` seconds, each region in
  the crowd's ``regions`` (every helper by default) gets a Poisson process of ``rate``
  more sessions per second, rising linearly from 0 over the first ``ramp_s`` seconds
  (thinning), every one watching the crowd's ``video``: an on-demand video from its start
  with the usual watch fraction, pauses, seeks and patience, a live channel from the live
  edge like any live session.  Each (crowd, region) pair draws from its own generator
  seeded from ``(seed, crowd index, region index)``, so adding a crowd leaves the steady
  sessions and the other crowds' as they were; its session ids hold an ``f`` and the
  crowd's index (``s0003f01...``), so they never clash with the steady ones.
* **Live channels** (``live``, chosen with ``live_share``, uniformly among channels) run
  from the trace's start: segment ``i`` is out at ``(i + 1) * segment_s``.  A viewer joins
  at the live edge ``floor(t / segment_s) - 1`` (at least 0), watches for an exponential
  time of mean ``mean_live_watch_s`` (with pauses, no seeks) and fetches each segment as
  it comes out.
* **Start-up delay** (synthetic traces only: in the emulation the network decides) is
  lognormal with median ``startup_median_s`` and shape ``startup_sigma``.
* **Patience** follows Krishnan & Sitaraman, "Video stream quality impacts viewer
  behavior: inferring causality using quasi-experimental designs", IMC 2012: viewers start
  to abandon after 2 s of start-up delay and each further second adds about 5.8 % of
  abandonment.  Patience is ``patience_grace_s + U`` with ``U ~ Uniform(0,
  1 / patience_slope)``, so ``P(abandon | delay d) = min(1, patience_slope * (d - 2))``
  for ``d > 2`` and 0 below.  A session whose start-up delay exceeds its patience leaves
  at ``arrival + patience`` (``abandon``, never ``start``).
* **Watch fraction** follows Finamore et al., "YouTube everywhere: impact of device and
  infrastructure synergies on user experience", IMC 2011 (about 60 % of views stop within
  the first 20 % of the video).  A view plays to the end with probability
  ``complete_share``; otherwise it watches a fraction ``f`` of the video (media seconds
  played / duration) drawn from an exponential law truncated to [0, 1], whose rate is
  solved by bisection so that ``P(f <= early_stop_fraction) = early_stop_share`` over all
  started views.  (A negative rate, mass towards the end, is allowed.)
* **Pauses and seeks** come as Poisson processes in playback time:
  ``pause_rate_per_min`` pauses per minute played, each ``Exp(mean_pause_s)`` long (at
  most ten times the mean), and ``seek_rate_per_min`` seeks, back (``seek_back_share``)
  to a uniform position behind the playhead or forward to a uniform position ahead of it,
  never past ``duration - segment_s`` and, for a view that stops, never so far that the
  rest of its watch budget no longer fits before the end.  Playback counts towards the
  budget wherever it happens; the view ends with ``stop`` when the budget is spent and
  with ``complete`` at the end of the video.  So a view that stops has watched exactly
  its fraction, and ``watch_fraction`` is 1.0 for one that plays to the end.

Requests in a trace mirror :class:`~testbed.core.player.Player`'s pacing (a segment is
fetched once it starts less than ``max_buffer_s`` ahead of the playhead): at arrival, and
after a seek, a burst of the segments in that window, ``download_s`` apart; the first
frame (``start``) comes at ``arrival + startup_s`` (the burst is squeezed into that time
when it would take longer) and playback resumes after a seek once the burst is in.  In
steady play segment ``j`` is requested when the playhead reaches ``j * segment_s -
max_buffer_s``, one per ``segment_s``; none while paused (the buffer is full), none after
the end, none beyond the last segment.  Sessions arrive within ``duration_s`` and are
followed to their end.

A trace row (:data:`TRACE_COLUMNS`) is what a helper reports: ``at`` (seconds since the
trace's start), ``helper`` (the region), ``viewer`` (a pseudonymous session id, never an
address), ``video``, ``kind`` (:data:`TRACE_KINDS`), ``playhead_s`` (media seconds at the
event; for a request the segment's start) and ``index`` (the segment of a request, -1
otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from testbed.core.player import SessionPlan

#: The columns of a trace, in order.
TRACE_COLUMNS = ("at", "helper", "viewer", "video", "kind", "playhead_s", "index")
#: Row kinds: a segment request, then the player events.
TRACE_KINDS = ("request", "start", "pause", "resume", "seek", "resume_play", "stop",
               "complete", "abandon")
TRACE_SUFFIXES = (".csv", ".parquet")

_EPS = 1e-9
#: Bounds of the truncated exponential's rate searched by the calibration.
_RATE_BOUND = 500.0
#: Mixed into the generators' seeds so that no two uses share a stream.
_REGION_TAG = 0x3C0A
_CATALOGUE_TAG = 0xCA7A
_FLASH_TAG = 0xF1A5


class WorkloadError(ValueError):
    """A bad workload parameter or trace."""


# ---------------------------------------------------------------------- checks


def _number(name: str, value: object, low: float | None = None, high: float | None = None,
            *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise WorkloadError(f"workload {name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise WorkloadError(f"workload {name} must be {'>' if low_open else '>='} {low}, "
                            f"got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise WorkloadError(f"workload {name} must be {'<' if high_open else '<='} {high}, "
                            f"got {value!r}")
    return v


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise WorkloadError(f"workload {name} must be non-empty text, got {value!r}")
    return value


def _items(name: str, value: object) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (tuple, list)):
        raise WorkloadError(f"workload {name} must be a list, got {value!r}")
    return tuple(value)


def _durations(name: str, value: object) -> tuple[tuple[str, float], ...]:
    out = []
    seen: set[str] = set()
    for entry in _items(name, value):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (tuple, list)) \
                or len(entry) != 2:
            raise WorkloadError(f"workload {name} entry must be (id, duration_s), got {entry!r}")
        vid = _text(f"{name} id", entry[0])
        if vid in seen:
            raise WorkloadError(f"workload {name}: id {vid!r} appears twice")
        seen.add(vid)
        out.append((vid, _number(f"{name} duration of {vid!r}", entry[1], 0.0, low_open=True)))
    return tuple(out)


def _n_segments(duration: float, segment_s: float) -> int:
    """``ceil(duration / segment_s)``, forgiving float noise, at least 1."""
    return max(1, math.ceil(duration / segment_s - 1e-9))


# ---------------------------------------------------------------------- config


@dataclass(frozen=True)
class PopularityShift:
    """From ``at_s`` on, a share ``share`` of the arrivals picks ``video``."""

    at_s: float
    video: str
    share: float

    def __post_init__(self) -> None:
        _number("shift at_s", self.at_s, 0.0)
        _text("shift video", self.video)
        _number("shift share", self.share, 0.0, 1.0)

    @classmethod
    def from_value(cls, value: object) -> PopularityShift:
        """A shift from a :class:`PopularityShift`, a mapping or an ``(at_s, video, share)``."""
        if isinstance(value, PopularityShift):
            return value
        if isinstance(value, Mapping):
            for key in value:
                if key not in ("at_s", "video", "share"):
                    raise WorkloadError(f"workload shift: unknown key {key!r}")
            try:
                return cls(value["at_s"], value["video"], value["share"])
            except KeyError as e:
                raise WorkloadError(f"workload shift: missing key {e.args[0]!r}") from None
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*value)
        raise WorkloadError(f"workload shift must be (at_s, video, share), got {value!r}")


#: The fields of a :class:`FlashCrowd`, as a mapping gives them.
FLASH_CROWD_KEYS = ("at_s", "duration_s", "rate", "video", "regions", "ramp_s")


@dataclass(frozen=True)
class FlashCrowd:
    """Extra arrivals that all watch ``video``: a Poisson process of ``rate`` per second
    in each of ``regions`` (None: every helper's) over ``[at_s, at_s + duration_s)``,
    the rate rising linearly from 0 over the first ``ramp_s`` seconds."""

    at_s: float
    duration_s: float
    rate: float
    video: str
    regions: tuple[str, ...] | None = None
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        _number("flash crowd at_s", self.at_s, 0.0)
        length = _number("flash crowd duration_s", self.duration_s, 0.0, low_open=True)
        _number("flash crowd rate", self.rate, 0.0)
        _text("flash crowd video", self.video)
        if _number("flash crowd ramp_s", self.ramp_s, 0.0) > length:
            raise WorkloadError(f"workload flash crowd ramp_s must be <= duration_s {length!r}, "
                                f"got {self.ramp_s!r}")
        if self.regions is not None:
            object.__setattr__(self, "regions", _regions(self.regions))

    @classmethod
    def from_value(cls, value: object) -> FlashCrowd:
        """A crowd from a :class:`FlashCrowd` or a mapping of :data:`FLASH_CROWD_KEYS`."""
        if isinstance(value, FlashCrowd):
            return value
        if not isinstance(value, Mapping):
            raise WorkloadError(f"workload flash crowd must be a mapping, got {value!r}")
        for key in value:
            if key not in FLASH_CROWD_KEYS:
                raise WorkloadError(f"workload flash crowd: unknown key {key!r}")
        for key in FLASH_CROWD_KEYS[:4]:
            if key not in value:
                raise WorkloadError(f"workload flash crowd: missing key {key!r}")
        return cls(**value)

    def rebased(self, origin_s: float) -> FlashCrowd | None:
        """The crowd with time measured from ``origin_s`` (e.g. run seconds to trace
        seconds); a part before the new 0 is cut off, None when nothing is left.

        A cut ramp keeps the moment the crowd reaches its full rate (it starts from 0
        again at the new 0), so only the ramp's shape is approximate.
        """
        at = float(self.at_s) - _number("origin_s", origin_s)
        cut = max(0.0, -at)
        if cut >= self.duration_s:
            return None
        return FlashCrowd(max(0.0, at), float(self.duration_s) - cut, self.rate, self.video,
                          self.regions, max(0.0, float(self.ramp_s) - cut))


def _regions(value: object) -> tuple[str, ...]:
    """A crowd's regions: a non-empty list of distinct helper names."""
    regions = _items("flash crowd regions", value)
    if not regions:
        raise WorkloadError("workload flash crowd regions must not be empty (None: all), got ()")
    for r in regions:
        _text("flash crowd region", r)
    if len(set(regions)) != len(regions):
        dup = next(r for r in regions if regions.count(r) > 1)
        raise WorkloadError(f"workload flash crowd regions: {dup!r} appears twice")
    return regions


def _check_crowds(value: object, helpers: tuple[str, ...], ids: set[str]
                  ) -> tuple[FlashCrowd, ...]:
    """``value`` as flash crowds whose video is in ``ids`` and regions in ``helpers``."""
    crowds = _items("flash_crowds", value)
    for i, crowd in enumerate(crowds):
        if not isinstance(crowd, FlashCrowd):
            raise WorkloadError(f"workload flash_crowds[{i}] must be a FlashCrowd, got {crowd!r}")
        if crowd.video not in ids:
            raise WorkloadError(f"workload flash_crowds[{i}] video {crowd.video!r} is not in "
                                f"videos or live")
        for r in crowd.regions or ():
            if r not in helpers:
                raise WorkloadError(f"workload flash_crowds[{i}] region {r!r} is not in helpers")
    return crowds


@dataclass(frozen=True)
class WorkloadConfig:
    """What :func:`generate` draws; the module docstring describes the model.

    ``videos`` and ``live`` are ``(id, duration_s)`` pairs, ``videos`` in global popularity
    order.  Lists are accepted and stored as tuples.
    """

    helpers: tuple[str, ...]
    videos: tuple[tuple[str, float], ...]
    segment_s: float = 2.0
    duration_s: float = 3600.0
    seed: int = 0
    arrival_rate: float = 0.02
    daily_amplitude: float = 0.0
    peak_hour: float = 20.0
    start_hour: float = 0.0
    zipf_s: float = 0.8
    regional_skew: float = 0.3
    early_stop_share: float = 0.6
    early_stop_fraction: float = 0.2
    complete_share: float = 0.2
    startup_median_s: float = 0.8
    startup_sigma: float = 0.9
    patience_grace_s: float = 2.0
    patience_slope: float = 0.058
    pause_rate_per_min: float = 0.5
    mean_pause_s: float = 8.0
    seek_rate_per_min: float = 0.3
    seek_back_share: float = 0.3
    max_buffer_s: float = 12.0
    download_s: float = 0.25
    shifts: tuple[PopularityShift, ...] = ()
    live: tuple[tuple[str, float], ...] = ()
    live_share: float = 0.0
    mean_live_watch_s: float = 60.0
    flash_crowds: tuple[FlashCrowd, ...] = ()

    def __post_init__(self) -> None:
        helpers = _items("helpers", self.helpers)
        if not helpers:
            raise WorkloadError("workload helpers must not be empty, got ()")
        for h in helpers:
            _text("helper", h)
        if len(set(helpers)) != len(helpers):
            dup = next(h for h in helpers if helpers.count(h) > 1)
            raise WorkloadError(f"workload helpers: {dup!r} appears twice")
        object.__setattr__(self, "helpers", helpers)
        videos = _durations("videos", self.videos)
        if not videos:
            raise WorkloadError("workload videos must not be empty, got ()")
        object.__setattr__(self, "videos", videos)
        live = _durations("live", self.live)
        clash = {v for v, _ in videos} & {v for v, _ in live}
        if clash:
            raise WorkloadError(f"workload live: id {sorted(clash)[0]!r} is also in videos")
        object.__setattr__(self, "live", live)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise WorkloadError(f"workload seed must be an int >= 0, got {self.seed!r}")
        for name in ("segment_s", "duration_s", "startup_median_s", "patience_slope",
                     "mean_pause_s", "max_buffer_s", "mean_live_watch_s"):
            _number(name, getattr(self, name), 0.0, low_open=True)
        for name in ("arrival_rate", "startup_sigma", "patience_grace_s", "pause_rate_per_min",
                     "seek_rate_per_min", "download_s", "zipf_s"):
            _number(name, getattr(self, name), 0.0)
        for name in ("daily_amplitude", "regional_skew", "seek_back_share", "live_share"):
            _number(name, getattr(self, name), 0.0, 1.0)
        for name in ("peak_hour", "start_hour"):
            _number(name, getattr(self, name), 0.0, 24.0, high_open=True)
        for name in ("early_stop_share", "early_stop_fraction"):
            _number(name, getattr(self, name), 0.0, 1.0, low_open=True, high_open=True)
        _number("complete_share", self.complete_share, 0.0, 1.0, high_open=True)
        if self.live_share > 0 and not live:
            raise WorkloadError(f"workload live_share is {self.live_share!r} but live is empty")
        shifts = _items("shifts", self.shifts)
        ids = {v for v, _ in videos}
        for s in shifts:
            if not isinstance(s, PopularityShift):
                raise WorkloadError(f"workload shift must be a PopularityShift, got {s!r}")
            if s.video not in ids:
                raise WorkloadError(f"workload shift video {s.video!r} is not in videos")
        total = sum(s.share for s in shifts)
        if total > 1 + _EPS:
            raise WorkloadError(f"workload shifts: shares add up to {total!r}, more than 1")
        object.__setattr__(self, "shifts", shifts)
        object.__setattr__(self, "flash_crowds", _check_crowds(
            self.flash_crowds, helpers, ids | {v for v, _ in live}))
        _watch_rate(float(self.early_stop_share), float(self.early_stop_fraction),
                    float(self.complete_share))

    @classmethod
    def from_mapping(cls, d: Mapping) -> WorkloadConfig:
        """A config from plain values (lists for tuples, mappings for shifts and
        flash crowds)."""
        if not isinstance(d, Mapping):
            raise WorkloadError(f"workload config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        for key in d:
            if key not in names:
                raise WorkloadError(f"workload config: unknown key {key!r}")
        for key in ("helpers", "videos"):
            if key not in d:
                raise WorkloadError(f"workload config: missing key {key!r}")
        kw = dict(d)
        if "shifts" in kw:
            kw["shifts"] = tuple(PopularityShift.from_value(s) for s in _items("shifts",
                                                                                kw["shifts"]))
        if "flash_crowds" in kw:
            kw["flash_crowds"] = tuple(FlashCrowd.from_value(c) for c in
                                       _items("flash_crowds", kw["flash_crowds"]))
        return cls(**kw)


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


# ---------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    """One viewer session.

    ``watch_fraction`` is the media played over the video's duration as the plan plays
    it (1.0 for a view that plays to the end); ``abandoned_at_startup`` says the viewer
    left before the first frame in the synthetic trace (its start-up delay exceeded its
    patience); the plan is still what it would have watched.
    """

    id: str
    helper: str
    video: str
    arrive_at: float
    startup_s: float
    patience_s: float
    watch_fraction: float
    abandoned_at_startup: bool
    plan: SessionPlan
    live: bool = False


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


def _early_cdf(x: float, rate: float) -> float:
    """P(f <= x) for f on [0, 1] with density proportional to exp(-rate * f)."""
    if abs(rate) < 1e-12:
        return x
    return math.expm1(-rate * x) / math.expm1(-rate)


@lru_cache(maxsize=64)
def _watch_rate(share: float, fraction: float, complete: float) -> float:
    """The rate giving ``P(f <= fraction) = share`` over all started views."""
    target = share / (1.0 - complete)
    lo, hi = -_RATE_BOUND, _RATE_BOUND
    if not _early_cdf(fraction, lo) < target < _early_cdf(fraction, hi):
        raise WorkloadError(f"workload early_stop_share {share!r} is unreachable with "
                            f"complete_share {complete!r} and early_stop_fraction {fraction!r}")
    for _ in range(200):
        mid = (lo + hi) / 2
        if _early_cdf(fraction, mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def _fractions(u: np.ndarray, rate: float) -> np.ndarray:
    """Inverse CDF of the truncated exponential at ``u``."""
    if abs(rate) < 1e-12:
        return u
    return np.clip(-np.log1p(u * math.expm1(-rate)) / rate, 0.0, 1.0)


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


def _walk(plan: SessionPlan, duration: float, segment_s: float
          ) -> Iterator[tuple[str, float, float]]:
    """The plan as :class:`~testbed.core.player.Player` plays it when segments are always
    there: ``("play", from, to)``, ``("pause", at, length)``, ``("seek", from, to)``, then
    ``("stop", at, 0)`` or ``("complete", end, 0)``.  Positions are media seconds."""
    n = _n_segments(duration, segment_s)
    last_start = (n - 1) * segment_s
    base = plan.start_index * segment_s
    pos = base
    for at, kind, arg in plan.actions:
        target = base + at
        if target > duration + _EPS:
            break
        if target > pos:
            yield ("play", pos, min(target, duration))
            pos = min(target, duration)
        if kind == "pause":
            yield ("pause", pos, arg)
        elif kind == "seek":
            to = min(max(base + arg, 0.0), last_start)
            yield ("seek", pos, to)
            pos = to
        else:
            yield ("stop", pos, 0.0)
            return
    if duration > pos:
        yield ("play", pos, duration)
    yield ("complete", duration, 0.0)


def _watched(plan: SessionPlan, duration: float, segment_s: float) -> float:
    """``watch_fraction`` of a plan: media played / duration, 1.0 when it plays to the end."""
    played = 0.0
    for kind, a, b in _walk(plan, duration, segment_s):
        if kind == "play":
            played += b - a
        elif kind == "complete":
            return 1.0
    return played / duration


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


# ---------------------------------------------------------------------- trace


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
    for s in sessions:
        if s.video not in durations:
            raise WorkloadError(f"workload: session {s.id} watches unknown video {s.video!r}")
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


def _typed(cols: Mapping[str, Sequence]) -> pd.DataFrame:
    return pd.DataFrame({
        c: pd.Series(np.asarray(cols[c], dtype=np.float64)) if c in ("at", "playhead_s")
        else pd.Series(np.asarray(cols[c], dtype=np.int64)) if c == "index"
        else pd.Series(list(cols[c]), dtype=object)
        for c in TRACE_COLUMNS})


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TRACE_SUFFIXES:
        raise WorkloadError(f"trace {path}: suffix {path.suffix!r} is not one of "
                            f"{TRACE_SUFFIXES}")
    return suffix


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def write_trace(df: pd.DataFrame, path: str | Path) -> None:
    """Write the trace columns of ``df`` to ``path`` (``.csv`` or ``.parquet``), no index."""
    p = Path(path)
    suffix = _suffix(p)
    missing = [c for c in TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise WorkloadError(f"trace {p}: missing column(s) {', '.join(missing)}")
    out = df[list(TRACE_COLUMNS)]
    if suffix == ".csv":
        out.to_csv(p, index=False, lineterminator="\n")
    else:
        out.to_parquet(p, index=False)


def _floats(where: str, col: str, values: np.ndarray) -> np.ndarray:
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (TypeError, ValueError):
                raise WorkloadError(f"{where}: column {col!r} row {i + 1}: {v!r} is not a "
                                    f"number") from None
        raise WorkloadError(f"{where}: column {col!r} is not numeric") from None
    bad = ~np.isfinite(out) | (out < (-1 if col == "index" else 0))
    if col == "index":
        bad |= np.isfinite(out) & (out != np.floor(out))
    if bad.any():
        i = int(np.argmax(bad))
        what = "an integer >= -1" if col == "index" else "a finite number >= 0"
        raise WorkloadError(f"{where}: column {col!r} row {i + 1}: {values[i]!r} is not {what}")
    return out


def _check_frame(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    """The trace columns of ``raw`` with their types, checked, sorted by (at, viewer)."""
    missing = [c for c in TRACE_COLUMNS if c not in raw.columns]
    if missing:
        raise WorkloadError(f"{where}: missing column(s) {', '.join(missing)}")
    cols: dict[str, Sequence] = {}
    for col in TRACE_COLUMNS:
        values = raw[col].to_numpy(dtype=object)
        if col in ("at", "playhead_s", "index"):
            cols[col] = _floats(where, col, values)
            continue
        texts = []
        for i, v in enumerate(values):
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) \
                    or str(v) == "":
                raise WorkloadError(f"{where}: column {col!r} row {i + 1}: empty")
            texts.append(v if isinstance(v, str) else str(v))
        cols[col] = texts
    kinds = set(TRACE_KINDS)
    for i, k in enumerate(cols["kind"]):
        if k not in kinds:
            raise WorkloadError(f"{where}: column 'kind' row {i + 1}: {k!r} is not one of "
                                f"{TRACE_KINDS}")
    index = cols["index"]
    bad = (np.asarray(cols["kind"], dtype=object) == "request") & (np.asarray(index) < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise WorkloadError(f"{where}: column 'index' row {i + 1}: a request needs an index "
                            f">= 0, got {int(index[i])}")
    frame = _typed(cols)
    return frame.sort_values(["at", "viewer"], kind="stable").reset_index(drop=True)


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace from a ``.csv`` or ``.parquet`` file: the columns of :data:`TRACE_COLUMNS`
    (others dropped) with their types, sorted by (at, viewer).

    Raises :class:`WorkloadError` naming the file for a missing column, a bad value
    (with its column and row, 1 for the first data row) or an unknown kind.
    """
    p = Path(path)
    suffix = _suffix(p)
    try:
        if suffix == ".csv":
            raw = pd.read_csv(p, dtype=str, keep_default_na=False)
        else:
            raw = pd.read_parquet(p)
    except Exception as e:  # the readers raise many kinds; all mean an unreadable file
        raise WorkloadError(f"trace {p}: cannot read: {_one_line(e)}") from None
    return _check_frame(raw, f"trace {p}")


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
    frame = _check_frame(df, "trace")
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


# ---------------------------------------------------------------------- measurements


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
