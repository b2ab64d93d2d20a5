"""What a workload is drawn from: :class:`WorkloadConfig`, popularity shifts and flash crowds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from testbed.core.workload.checks import _EPS, WorkloadError, _durations, _items, _number, _text
from testbed.core.workload.watch import _watch_rate


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
