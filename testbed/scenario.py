"""Scenario files: which topology to build, how to shape its links, how to check them.

A scenario is a YAML mapping (see ``experiments/default.yaml``)::

    name: default                 # run name; letters, digits, . _ -
    description: ...
    seed: 1                       # also the generator's seed unless params set one
    topology: {generator: tiered, params: {regions: 4}}   # or "tiered,regions=4"
    links:
      mode: auto                  # auto | netem | userspace
      defaults: {delay: 1ms, jitter: 0, loss: 0, bw: 20Mbit, queue: 100}
      overrides: [{between: [s1, s2], delay: 40ms, loss: 1%}]
    calibration: {probes: 100, interval_s: 0.01, iperf_seconds: 3, sample: null, paths: true}
    duration_s: 150               # length of the delivery run, seconds
    warmup_s: 20                  # first seconds left out of the metrics (< duration_s)
    content: {videos: 40, live_channels: 1, duration_s: 120, bitrate_kbps: 400, ...}
    delivery: {cache_mb: 8, eviction: lru, mesh_degree: 2, prefetch: next-segments, ...}
    viewers: {per_host: 6, startup_buffer_s: 4, zipf_s: 0.8, pause_prob: 0.2, ...}
    events:
      - {at_s: 60, republish: vod-0000}          # new version of a video
      - {at_s: 40, link: [s1, s3], delay: 40ms}  # change a link during the run

Every section is optional and has the defaults of :class:`ContentConfig`,
:class:`DeliveryConfig` and :class:`ViewersConfig`.

Link semantics: the generator's own link attributes stand; ``links.defaults``
fill only the fields an edge does not have; ``overrides`` replace fields on the
named link.  Units: delay and jitter in ms, or "5ms", "0.5s", "500us"; bw in
Mbit/s, or "10Mbit", "1Gbit", "500kbit" (null: unlimited); loss in percent, or
"1%"; queue in packets (null: interface default).  A ``link`` event sets the same
fields, at ``at_s`` seconds into the run, on a link the topology must have.

Parsing is pure (:func:`parse_scenario`, :func:`loads_scenario`); only
:func:`load_scenario` reads a file.  Every problem is one :class:`ScenarioError`
line naming the file, the key path and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx
import yaml

import topologies
from testbed.core.spec import HELPER, SpecError, hosts, validate

if TYPE_CHECKING:
    from testbed.core.content import CatalogueConfig

LINK_MODES = ("auto", "netem", "userspace")
#: Scenario link key -> LinkParams field.
LINK_KEYS: Mapping[str, str] = MappingProxyType(
    {"delay": "delay_ms", "jitter": "jitter_ms", "loss": "loss_pct", "bw": "bw_mbit",
     "queue": "queue_pkts"}
)
_SHORT = {v: k for k, v in LINK_KEYS.items()}
TOP_KEYS = ("name", "description", "seed", "policy", "topology", "links", "calibration",
            "duration_s", "warmup_s", "content", "delivery", "viewers", "engine", "events")
TOPOLOGY_KEYS = ("generator", "params")
LINKS_KEYS = ("mode", "defaults", "overrides")
CALIBRATION_KEYS = ("probes", "interval_s", "iperf_seconds", "sample", "paths")
CONTENT_KEYS = ("videos", "live_channels", "duration_s", "live_duration_s", "bitrate_kbps",
                "segment_s")
DELIVERY_KEYS = ("cache_mb", "eviction", "mesh_degree", "mesh_pull", "prefetch",
                 "prefetch_interval_s", "push_budget_kbps", "pingback_interval_s",
                 "pingback_probes", "tiers", "fanout", "neighbour_interval_s", "push_source",
                 "push_priority", "push_reserve", "prefetch_params")
VIEWERS_KEYS = ("model", "per_host", "startup_buffer_s", "max_buffer_s", "zipf_s", "pause_prob",
                "seek_prob", "abandon_prob", "live_share", "mean_gap_s", "arrival_rate",
                "regional_skew", "trace", "flash_crowds")
FLASH_CROWD_KEYS = ("at_s", "duration_s", "rate", "video", "regions", "ramp_s")
VIEWER_MODELS = ("players", "workload")
ENGINE_KEYS = ("host", "port", "horizon_s", "retrain_s", "train_window_s", "min_train_s",
               "top", "prefix_segments", "arrivals_horizon_s")
EVENT_ACTIONS = ("republish", "link")
EVENT_KEYS = ("at_s", *EVENT_ACTIONS, *LINK_KEYS)
#: Cache eviction policies (``testbed.core.cache.POLICIES``) and prefetch policy names
#: (``testbed.core.prefetch``), kept here so parsing needs neither module.
EVICTION_POLICIES = ("lru", "lfu", "fifo")
PREFETCH_POLICIES = ("none", "next-segments", "predictive", "playhead", "popularity",
                     "oracle")
#: Where a push starts (the copy nearest its destination, or always the master) and which
#: class it travels in on the shaped links (a lower priority than viewers' fetches, or the
#: same).
PUSH_SOURCES = ("nearest", "master")
PUSH_PRIORITIES = ("low", "normal")
#: What each policy a run can be set to (``policy:``, ``--policy``) fixes in ``delivery``.
#: ``tree``: the multicast tree alone; ``mesh-pull``: a miss asks mesh neighbours first;
#: the four prefetch policies add the master's pushes to mesh-pull, all planned by the same
#: planner within the same budget, from the running sessions' playheads, from popularity,
#: from the prediction engine's model, or from the future itself (the upper bound).
POLICIES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "tree": MappingProxyType({"mesh_degree": 0, "mesh_pull": False, "prefetch": "none"}),
    "mesh-pull": MappingProxyType({"mesh_pull": True, "prefetch": "none"}),
    "playhead": MappingProxyType({"mesh_pull": True, "prefetch": "playhead"}),
    "popularity": MappingProxyType({"mesh_pull": True, "prefetch": "popularity"}),
    "predictive": MappingProxyType({"mesh_pull": True, "prefetch": "predictive"}),
    "oracle": MappingProxyType({"mesh_pull": True, "prefetch": "oracle"}),
})
#: The port every daemon's HTTP server uses (testbed.nodes.common.HTTP_PORT).
HTTP_PORT_RESERVED = 8080
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")
_TIME_UNITS = {"": 1.0, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0,
               "us": 0.001, "usec": 0.001, "\u00b5s": 0.001}
_RATE_UNITS = {"": 1.0, "bit": 1e-6, "kbit": 1e-3, "mbit": 1.0, "gbit": 1000.0}


class ScenarioError(ValueError):
    """A scenario that cannot be used; one line naming file, key path and value."""


# ---------------------------------------------------------------- units (pure)


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return float(value)


def _quantity(value: object, units: Mapping[str, float], kind: str) -> float:
    """A number, or text "<number><unit>", scaled by ``units``."""
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            raise ValueError(f"expected a {kind} like {_example(kind)}")
        unit = m.group(2).lower()
        if unit.endswith("/s") and kind == "rate":
            unit = unit[:-2]
        if unit not in units:
            hint = "; note tc's 'mbps' means megabytes/s" if unit.endswith("bps") else ""
            known = ", ".join(u for u in units if u)
            raise ValueError(f"unknown unit {m.group(2)!r}, use {known}{hint}")
        return _finite(float(m.group(1)) * units[unit])
    try:
        return _finite(value)
    except ValueError:
        raise ValueError(f"expected a {kind} like {_example(kind)}") from None


def _example(kind: str) -> str:
    return {"duration": "5ms, 0.5s or 500us", "rate": "10Mbit, 1Gbit or 500kbit"}[kind]


def parse_time_ms(value: object) -> float:
    """Delay or jitter in ms: 5 -> 5.0, "0.5s" -> 500.0, "500us" -> 0.5."""
    ms = _quantity(value, _TIME_UNITS, "duration")
    if ms < 0:
        raise ValueError("must be >= 0")
    return ms


def parse_rate_mbit(value: object) -> float:
    """Bandwidth in Mbit/s: 10 -> 10.0, "1Gbit" -> 1000.0, "500kbit" -> 0.5."""
    mbit = _quantity(value, _RATE_UNITS, "rate")
    if mbit <= 0:
        raise ValueError("must be > 0")
    return mbit


def parse_loss_pct(value: object) -> float:
    """Loss in percent: 1 -> 1.0, "1%" -> 1.0, "0.5 %" -> 0.5."""
    text = value.strip().removesuffix("%").strip() if isinstance(value, str) else value
    try:
        pct = _finite(float(text) if isinstance(text, str) else text)
    except ValueError:
        raise ValueError("expected a percentage like 1 or '1%'") from None
    if not 0 <= pct <= 100:
        raise ValueError("must be between 0 and 100")
    return pct


def parse_queue_pkts(value: object) -> int:
    """Queue length in packets: a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number of packets")
    if value < 1:
        raise ValueError("must be >= 1")
    return value


_LINK_PARSERS = {"delay": parse_time_ms, "jitter": parse_time_ms, "loss": parse_loss_pct,
                 "bw": parse_rate_mbit, "queue": parse_queue_pkts}
_NULLABLE = ("bw", "queue")  # null means unlimited bandwidth / the interface's default queue


# ----------------------------------------------------------------- the types


@dataclass(frozen=True)
class TopologyConfig:
    """Registry name of the generator and its (type-checked) parameters."""

    generator: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class LinkOverride:
    """Fields (LinkParams names) to set on the link between two nodes."""

    between: tuple[str, str]
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class LinkConfig:
    """How links are emulated, and what fills or replaces the generator's values."""

    mode: str = "auto"
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    overrides: tuple[LinkOverride, ...] = ()


@dataclass(frozen=True)
class CalibrationConfig:
    """The fidelity check: ping probes per path, iperf seconds per link, which paths."""

    probes: int = 100
    interval_s: float = 0.01
    iperf_seconds: float = 3.0
    sample: int | None = None  # measure this many links/paths, chosen by seed; None: all
    paths: bool = True  # also measure host-to-host paths, not only single links


@dataclass(frozen=True)
class ContentConfig:
    """The catalogue to publish: on-demand videos and live channels, and their shape.

    Mirrors ``testbed.core.content.CatalogueConfig``; :meth:`catalogue_config` converts.
    """

    videos: int = 40
    live_channels: int = 1
    duration_s: float = 120.0  # every on-demand video
    live_duration_s: float = 600.0  # every live channel
    bitrate_kbps: int = 300
    segment_s: float = 2.0

    def catalogue_config(self) -> CatalogueConfig:
        """The same values as the pure core's catalogue configuration."""
        from testbed.core.content import CatalogueConfig  # lazily: parsing needs no core module

        return CatalogueConfig(**dataclasses.asdict(self))


@dataclass(frozen=True)
class DeliveryConfig:
    """How helpers cache, prefetch and form the mesh, and how the master builds tiers."""

    cache_mb: float = 8.0  # each helper's prefetch cache, in MB (10^6 bytes)
    eviction: str = "lru"  # one of EVICTION_POLICIES
    mesh_degree: int = 2  # mesh neighbours per helper
    mesh_pull: bool = False  # on a miss, ask mesh neighbours before the tree
    prefetch: str = "next-segments"  # policy spec "name[,key=value...]"; "none": off
    #: parameters a ``policy:`` preset gives the prefetch policy it selects, per policy
    #: name, e.g. ``{popularity: {horizon_s: 30}}`` (tuned values that travel with the
    #: scenario whichever policy a comparison runs)
    prefetch_params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    prefetch_interval_s: float = 1.0
    push_budget_kbps: float = 2000.0  # prefetch pushes the master may send, per second
    pingback_interval_s: float = 5.0
    pingback_probes: int = 3  # probes per helper per pingback round
    tiers: int | tuple[float, ...] = 2  # a tier count, or increasing band upper bounds in ms
    fanout: int | None = None  # children per parent in the tier tree; None: unlimited
    neighbour_interval_s: float = 5.0  # helpers re-measure peers and re-choose neighbours
    push_source: str = "nearest"  # one of PUSH_SOURCES
    push_priority: str = "low"  # one of PUSH_PRIORITIES
    #: share of each link's capacity pushes leave to everything else; None: pushes are
    #: planned without looking at the links' load
    push_reserve: float | None = 0.2

    @property
    def cache_bytes(self) -> int:
        """The cache capacity in bytes."""
        return round(self.cache_mb * 1_000_000)

    @property
    def push_budget_bytes(self) -> int:
        """Bytes of prefetch pushes allowed per prefetch interval."""
        return int(self.push_budget_kbps * 1000 / 8 * self.prefetch_interval_s)

    @property
    def prefetch_policy(self) -> str:
        """The prefetch policy's name, without its parameters."""
        return self.prefetch.split(",", 1)[0].strip()

    @property
    def tier_count(self) -> int | None:
        """The number of tiers when ``tiers`` gives a count, else None."""
        return self.tiers if isinstance(self.tiers, int) else None

    @property
    def bands_ms(self) -> tuple[float, ...] | None:
        """The band upper bounds in ms when ``tiers`` gives bands, else None."""
        return None if isinstance(self.tiers, int) else self.tiers


@dataclass(frozen=True)
class FlashCrowdConfig:
    """Extra sessions that all watch ``video`` (a new video gone viral, a live event).

    From ``at_s`` seconds into the run for ``duration_s`` seconds, ``rate`` more arrivals
    per second in each helper's region (``regions``: only these helpers'; None: all),
    rising linearly from 0 over the first ``ramp_s`` seconds.  Workload model only.
    """

    at_s: float
    duration_s: float
    rate: float
    video: str
    regions: tuple[str, ...] | None = None
    ramp_s: float = 0.0


@dataclass(frozen=True)
class ViewersConfig:
    """Who watches, and how.

    ``model: players``: ``per_host`` players per viewer host, each watching sessions back
    to back (the behaviour model of :mod:`testbed.core.player`).  ``model: workload``:
    sessions arrive at each helper's region as the calibrated workload of
    :mod:`testbed.core.workload` draws them (``arrival_rate`` per second per helper,
    ``zipf_s``, ``regional_skew``, ``live_share``), or as a recorded ``trace`` file
    (CSV or Parquet) replays them; the viewer hosts near each helper play its sessions.
    ``flash_crowds`` (:class:`FlashCrowdConfig`) add drawn arrivals that all watch one video.
    """

    model: str = "players"
    per_host: int = 6
    startup_buffer_s: float = 4.0  # buffered seconds before playback starts or resumes
    max_buffer_s: float = 12.0  # players stop fetching ahead beyond this
    zipf_s: float = 0.8  # popularity skew over on-demand videos
    pause_prob: float = 0.2
    seek_prob: float = 0.15
    abandon_prob: float = 0.4
    live_share: float = 0.2  # share of sessions that watch a live channel
    mean_gap_s: float = 10.0  # mean seconds between one viewer's sessions
    arrival_rate: float = 0.05  # workload: sessions per second per helper region
    regional_skew: float = 0.3  # workload: 0 all regions like the same videos, 1 each its own
    trace: str | None = None  # workload: replay this trace file instead of drawing sessions
    flash_crowds: tuple[FlashCrowdConfig, ...] = ()  # workload: extra arrivals, one video each


@dataclass(frozen=True)
class EngineSection:
    """Where the demand prediction engine runs and how it learns.

    ``host``: a host of the topology (None: the master's host); the engine is its own
    daemon there, listening on ``port``.  It predicts requests ``horizon_s`` ahead and
    retrains every ``retrain_s`` on the last ``train_window_s`` of telemetry, once it has
    ``min_train_s`` of it; a prediction lists the ``top`` segments per helper, and the
    first ``prefix_segments`` of the videos that sessions still to come are likely to start
    (the start-up burst), as expected over ``arrivals_horizon_s`` (0 segments: none).
    """

    host: str | None = None
    port: int = 8700
    horizon_s: float = 5.0
    retrain_s: float = 30.0
    train_window_s: float = 900.0
    min_train_s: float = 40.0
    top: int = 20
    prefix_segments: int = 0
    arrivals_horizon_s: float = 60.0


@dataclass(frozen=True)
class EventConfig:
    """Something that happens ``at_s`` seconds into the run.

    ``republish``: ``target`` is a video id, whose new version the master publishes.
    ``link``: ``target`` is "a-b", ``fields`` the LinkParams values to set on that link.
    """

    at_s: float
    action: str  # one of EVENT_ACTIONS
    target: str
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def between(self) -> tuple[str, str]:
        """The two nodes of a link event (node names contain no '-')."""
        if self.action != "link":
            raise ValueError(f"{self.action} event at {self.at_s:g} s names no link")
        a, b = self.target.split("-", 1)
        return a, b


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario; :meth:`build_spec` turns it into a topology spec."""

    name: str
    topology: TopologyConfig
    description: str = ""
    seed: int = 1
    links: LinkConfig = field(default_factory=LinkConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    duration_s: float = 150.0
    warmup_s: float = 0.0  # the first seconds, left out of the metrics (cold caches, no model)
    content: ContentConfig = field(default_factory=ContentConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    viewers: ViewersConfig = field(default_factory=ViewersConfig)
    engine: EngineSection = field(default_factory=EngineSection)
    events: tuple[EventConfig, ...] = ()
    source: str = "<scenario>"
    policy: str | None = None  # a name of POLICIES; ``delivery`` already has it applied
    #: ``delivery`` as the file gave it, before the policy (what :meth:`to_dict` writes)
    given_delivery: DeliveryConfig | None = field(default=None, compare=False, repr=False)

    def topology_params(self) -> dict[str, Any]:
        """Generator parameters, with the scenario seed when the generator takes one."""
        params = dict(self.topology.params)
        if "seed" in topologies.parameters(self.topology.generator):
            params.setdefault("seed", self.seed)
        return params

    def build_spec(self) -> nx.Graph:
        """Generate the topology, apply link defaults and overrides, validate.

        Link events are checked here too: the link each one changes must exist.
        """
        try:
            g = topologies.generate(self.topology.generator, **self.topology_params())
        except topologies.ParamError as exc:
            raise _param_error(self.source, "topology.params", exc) from None
        except SpecError as exc:
            raise ScenarioError(f"{self.source}: topology: {exc}") from None
        try:
            g = apply_link_config(g, self.links)
            check_link_events(g, self.events)
        except _LinkRefError as exc:
            raise ScenarioError(f"{self.source}: {exc}") from None
        try:
            validate(g)
        except SpecError as exc:
            raise ScenarioError(f"{self.source}: links: {exc}") from None
        if self.engine.host is not None and self.engine.host not in hosts(g):
            raise ScenarioError(f"{self.source}: engine.host: {self.engine.host!r} is not a "
                                f"host of the topology ({', '.join(hosts(g))})")
        check_flash_crowd_regions(g, self.viewers.flash_crowds, self.source)
        g.graph.update(scenario=self.name, seed=self.seed)
        return g

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some top-level fields replaced (``dataclasses.replace``); a new
        ``delivery`` is taken as given (the policy's preset is not applied to it)."""
        if "delivery" in changes:
            changes.setdefault("given_delivery", None)
        return dataclasses.replace(self, **changes)

    def with_overrides(self, changes: Mapping[str, Any]) -> Scenario:
        """A re-checked copy with values set by key path, for sweeps.

        ``{"topology.params.regions": 8, "links.defaults.loss": "1%", "seed": 3,
        "delivery.mesh_degree": 3}``; list items as ``links.overrides[0].delay`` or
        ``events[0].at_s``.  The new source names the
        changes, so errors say which sweep point was wrong.
        """
        data = self.to_dict()
        for path, value in changes.items():
            _set_path(data, path, value, self.source)
        label = ", ".join(f"{k}={v!r}" for k, v in changes.items())
        return parse_scenario(data, f"{self.source} [{label}]")

    def delivery_dict(self) -> dict[str, Any]:
        """The delivery settings in effect (the policy applied), as plain data."""
        return {k: _plain(v) for k, v in dataclasses.asdict(self.delivery).items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file format (numbers in ms, Mbit/s, %); parses back equal."""
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "topology": {"generator": self.topology.generator,
                         "params": {k: _plain(v) for k, v in self.topology.params.items()}},
            "links": {
                "mode": self.links.mode,
                "defaults": {_SHORT[k]: v for k, v in self.links.defaults.items()},
                "overrides": [
                    {"between": list(o.between), **{_SHORT[k]: v for k, v in o.fields.items()}}
                    for o in self.links.overrides
                ],
            },
            "calibration": dataclasses.asdict(self.calibration),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "content": dataclasses.asdict(self.content),
            "policy": self.policy,
            "delivery": {k: _plain(v) for k, v in
                         dataclasses.asdict(self.given_delivery or self.delivery).items()},
            "viewers": _viewers_dict(self.viewers),
            "engine": dataclasses.asdict(self.engine),
            "events": [_event_dict(e) for e in self.events],
        }


def _viewers_dict(viewers: ViewersConfig) -> dict[str, Any]:
    """The viewers section as plain data (flash crowds' regions as lists)."""
    d = dataclasses.asdict(viewers)
    d["flash_crowds"] = [{k: _plain(v) for k, v in crowd.items()} for crowd in d["flash_crowds"]]
    return d


def _event_dict(event: EventConfig) -> dict[str, Any]:
    if event.action == "link":
        return {"at_s": event.at_s, "link": list(event.between),
                **{_SHORT[k]: v for k, v in event.fields.items()}}
    return {"at_s": event.at_s, event.action: event.target}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------ link semantics


class _LinkRefError(ValueError):
    """An override naming a node or link the topology does not have."""


def apply_link_config(g: nx.Graph, links: LinkConfig) -> nx.Graph:
    """A copy of ``g`` with defaults filled in and overrides applied (pure)."""
    out = g.copy()
    for _, _, data in out.edges(data=True):
        for key, value in links.defaults.items():
            data.setdefault(key, value)
    for i, override in enumerate(links.overrides):
        a, b = override.between
        _check_link(out, a, b, f"links.overrides[{i}].between")
        out.edges[a, b].update(override.fields)
    return out


def check_link_events(g: nx.Graph, events: tuple[EventConfig, ...]) -> None:
    """Raise when a link event names a node or link that ``g`` does not have."""
    for i, event in enumerate(events):
        if event.action == "link":
            _check_link(g, *event.between, f"events[{i}].link")


def _check_link(g: nx.Graph, a: str, b: str, path: str) -> None:
    where = f"{path}: {[a, b]!r}"
    for node in (a, b):
        if node not in g:
            raise _LinkRefError(f"{where} (no node {node!r})")
    if not g.has_edge(a, b):
        raise _LinkRefError(f"{where} (no link between {a} and {b})")


# ------------------------------------------------------------------- parsing


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    """Builds one-line errors for one source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, reason: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {_show(value)} ({reason})")

    def mapping(self, data: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        """``data`` as a mapping whose keys are all in ``allowed``."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise self.fail(path, data, f"must be a mapping with keys {', '.join(allowed)}")
        for key in data:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                raise ScenarioError(
                    f"{self.source}: {where}: unknown key (expected one of {', '.join(allowed)})"
                )
        return data

    def integer(self, value: Any, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, value, "must be a whole number")
        if value < minimum:
            raise self.fail(path, value, f"must be >= {minimum}")
        return value

    def number(self, value: Any, path: str, minimum: float, strict: bool = False) -> float:
        try:
            x = _finite(value)
        except ValueError as exc:
            raise self.fail(path, value, str(exc)) from None
        if x < minimum or (strict and x == minimum):
            raise self.fail(path, value, f"must be {'>' if strict else '>='} {minimum:g}")
        return x

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, value, "must be text")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, value, "must be true or false")
        return value

    def fraction(self, value: Any, path: str) -> float:
        x = self.number(value, path, 0)
        if x > 1:
            raise self.fail(path, value, "must be between 0 and 1")
        return x

    def choice(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(path, value, f"must be one of {', '.join(allowed)}")
        return value


def _param_error(source: str, path: str, exc: topologies.ParamError) -> ScenarioError:
    where = f"{source}: {path}.{exc.param}"
    if exc.unknown:
        return ScenarioError(f"{where}: {exc.reason.replace('unknown parameter', 'unknown key')}")
    return ScenarioError(f"{where}: {_show(exc.value)} ({exc.reason})")


def _parse_topology(c: _Checker, data: Any) -> TopologyConfig:
    if isinstance(data, str):
        try:
            name, params = topologies.parse_spec_string(data)
        except topologies.SpecStringError as exc:
            raise c.fail("topology", data, exc.detail) from None
    else:
        body = c.mapping(data, "topology", TOPOLOGY_KEYS)
        if "generator" not in body:
            raise c.fail("topology", data, "missing key 'generator'")
        name = body["generator"]
        params = body.get("params") or {}
        if not isinstance(params, Mapping):
            raise c.fail("topology.params", params, "must be a mapping of parameter: value")
    if not isinstance(name, str) or name not in topologies.GENERATORS:
        known = ", ".join(sorted(topologies.GENERATORS))
        raise c.fail("topology.generator", name, f"unknown generator, expected one of {known}")
    try:
        checked = topologies.check_params_for(name, params)
    except topologies.ParamError as exc:
        raise _param_error(c.source, "topology.params", exc) from None
    return TopologyConfig(name, MappingProxyType(checked))


def _parse_link_fields(c: _Checker, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in LINK_KEYS:
            continue
        if value is None and key in _NULLABLE:
            out[LINK_KEYS[key]] = None
            continue
        try:
            out[LINK_KEYS[key]] = _LINK_PARSERS[key](value)
        except ValueError as exc:
            raise c.fail(f"{path}.{key}", value, str(exc)) from None
    return out


def _parse_links(c: _Checker, data: Any) -> LinkConfig:
    body = c.mapping(data, "links", LINKS_KEYS)
    mode = body.get("mode", "auto")
    if mode not in LINK_MODES:
        raise c.fail("links.mode", mode, f"must be one of {', '.join(LINK_MODES)}")
    defaults = _parse_link_fields(
        c, c.mapping(body.get("defaults"), "links.defaults", tuple(LINK_KEYS)), "links.defaults"
    )
    raw_overrides = body.get("overrides") or []
    if not isinstance(raw_overrides, list):
        raise c.fail("links.overrides", raw_overrides, "must be a list of {between: [a, b], ...}")
    overrides = []
    for i, item in enumerate(raw_overrides):
        path = f"links.overrides[{i}]"
        entry = c.mapping(item, path, ("between", *LINK_KEYS))
        between = entry.get("between")
        if (not isinstance(between, list) or len(between) != 2
                or not all(isinstance(n, str) for n in between) or between[0] == between[1]):
            raise c.fail(f"{path}.between", between, "must be two different node names")
        fields = _parse_link_fields(c, entry, path)
        if not fields:
            raise c.fail(path, item, f"sets no link field ({', '.join(LINK_KEYS)})")
        overrides.append(LinkOverride((between[0], between[1]), MappingProxyType(fields)))
    return LinkConfig(mode, MappingProxyType(defaults), tuple(overrides))


def _parse_calibration(c: _Checker, data: Any) -> CalibrationConfig:
    body = c.mapping(data, "calibration", CALIBRATION_KEYS)
    d = CalibrationConfig()
    sample = body.get("sample", d.sample)
    paths = body.get("paths", d.paths)
    if not isinstance(paths, bool):
        raise c.fail("calibration.paths", paths, "must be true or false")
    return CalibrationConfig(
        probes=c.integer(body.get("probes", d.probes), "calibration.probes", 1),
        interval_s=c.number(body.get("interval_s", d.interval_s), "calibration.interval_s", 0,
                            strict=True),
        iperf_seconds=c.number(body.get("iperf_seconds", d.iperf_seconds),
                               "calibration.iperf_seconds", 0),
        sample=None if sample is None else c.integer(sample, "calibration.sample", 1),
        paths=paths,
    )


def _parse_content(c: _Checker, data: Any) -> ContentConfig:
    body = c.mapping(data, "content", CONTENT_KEYS)
    d = ContentConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    videos = c.integer(get("videos"), "content.videos", 0)
    live = c.integer(get("live_channels"), "content.live_channels", 0)
    if videos + live == 0:
        raise c.fail("content.videos", videos, "and live_channels is 0: need at least one")
    return ContentConfig(
        videos=videos,
        live_channels=live,
        duration_s=c.number(get("duration_s"), "content.duration_s", 0, strict=True),
        live_duration_s=c.number(get("live_duration_s"), "content.live_duration_s", 0,
                                 strict=True),
        bitrate_kbps=c.integer(get("bitrate_kbps"), "content.bitrate_kbps", 1),
        segment_s=c.number(get("segment_s"), "content.segment_s", 0, strict=True),
    )


def _parse_tiers(c: _Checker, value: Any) -> int | tuple[float, ...]:
    path = "delivery.tiers"
    if isinstance(value, list):
        if not value:
            raise c.fail(path, value, "must be a tier count or a list of band bounds in ms")
        bands = tuple(c.number(v, f"{path}[{i}]", 0, strict=True) for i, v in enumerate(value))
        if any(b <= a for a, b in zip(bands, bands[1:])):
            raise c.fail(path, value, "band bounds must increase")
        return bands
    if isinstance(value, bool) or not isinstance(value, int):
        raise c.fail(path, value, "must be a tier count or a list of band bounds in ms")
    return c.integer(value, path, 1)


def _parse_delivery(c: _Checker, data: Any) -> DeliveryConfig:
    body = c.mapping(data, "delivery", DELIVERY_KEYS)
    d = DeliveryConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    def positive(key: str) -> float:
        return c.number(get(key), f"delivery.{key}", 0, strict=True)

    prefetch = c.text(get("prefetch"), "delivery.prefetch")
    policy = prefetch.split(",", 1)[0].strip()
    if policy not in PREFETCH_POLICIES:
        raise c.fail("delivery.prefetch", prefetch,
                     f"unknown policy {policy!r}, expected one of {', '.join(PREFETCH_POLICIES)}")
    fanout = get("fanout")
    return DeliveryConfig(
        cache_mb=positive("cache_mb"),
        eviction=c.choice(get("eviction"), "delivery.eviction", EVICTION_POLICIES),
        mesh_degree=c.integer(get("mesh_degree"), "delivery.mesh_degree", 0),
        mesh_pull=c.flag(get("mesh_pull"), "delivery.mesh_pull"),
        prefetch=prefetch,
        prefetch_params=_parse_prefetch_params(c, get("prefetch_params")),
        prefetch_interval_s=positive("prefetch_interval_s"),
        push_budget_kbps=c.number(get("push_budget_kbps"), "delivery.push_budget_kbps", 0),
        pingback_interval_s=positive("pingback_interval_s"),
        pingback_probes=c.integer(get("pingback_probes"), "delivery.pingback_probes", 1),
        tiers=_parse_tiers(c, get("tiers")),
        fanout=None if fanout is None else c.integer(fanout, "delivery.fanout", 1),
        neighbour_interval_s=positive("neighbour_interval_s"),
        push_source=c.choice(get("push_source"), "delivery.push_source", PUSH_SOURCES),
        push_priority=c.choice(get("push_priority"), "delivery.push_priority",
                               PUSH_PRIORITIES),
        push_reserve=_parse_reserve(c, get("push_reserve")),
    )


def _parse_prefetch_params(c: _Checker, value: Any) -> Mapping[str, Mapping[str, float]]:
    path = "delivery.prefetch_params"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise c.fail(path, value, "must map a prefetch policy name to its parameters")
    out = {}
    for name, params in value.items():
        where = f"{path}.{name}"
        if name not in PREFETCH_POLICIES:
            raise c.fail(where, name, f"unknown policy, expected one of "
                                      f"{', '.join(PREFETCH_POLICIES)}")
        if not isinstance(params, Mapping):
            raise c.fail(where, params, "must map parameter names to numbers")
        got = {str(k): c.number(v, f"{where}.{k}", 0) for k, v in params.items()}
        from testbed.core.prefetch import PrefetchError, make_policy  # lazily, as above

        try:
            make_policy(_with_params(name, got))
        except PrefetchError as exc:
            raise c.fail(where, dict(params), str(exc)) from None
        out[name] = got
    return out


def _with_params(name: str, params: Mapping[str, float]) -> str:
    """``"popularity"`` and ``{horizon_s: 30}`` -> ``"popularity,horizon_s=30"``."""
    return ",".join([name, *(f"{k}={v:g}" for k, v in params.items())])


def _parse_reserve(c: _Checker, value: Any) -> float | None:
    if value is None:
        return None
    reserve = c.number(value, "delivery.push_reserve", 0)
    if reserve >= 1:
        raise c.fail("delivery.push_reserve", value, "must be below 1 (a share of capacity)")
    return reserve


def _parse_viewers(c: _Checker, data: Any, content: ContentConfig) -> ViewersConfig:
    body = c.mapping(data, "viewers", VIEWERS_KEYS)
    d = ViewersConfig()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    startup = c.number(get("startup_buffer_s"), "viewers.startup_buffer_s", 0, strict=True)
    max_buffer = c.number(get("max_buffer_s"), "viewers.max_buffer_s", 0, strict=True)
    if max_buffer < startup:
        raise c.fail("viewers.max_buffer_s", get("max_buffer_s"),
                     f"must be >= startup_buffer_s {startup:g}")
    trace = get("trace")
    return ViewersConfig(
        model=c.choice(get("model"), "viewers.model", VIEWER_MODELS),
        per_host=c.integer(get("per_host"), "viewers.per_host", 1),
        startup_buffer_s=startup,
        max_buffer_s=max_buffer,
        zipf_s=c.number(get("zipf_s"), "viewers.zipf_s", 0),
        pause_prob=c.fraction(get("pause_prob"), "viewers.pause_prob"),
        seek_prob=c.fraction(get("seek_prob"), "viewers.seek_prob"),
        abandon_prob=c.fraction(get("abandon_prob"), "viewers.abandon_prob"),
        live_share=c.fraction(get("live_share"), "viewers.live_share"),
        mean_gap_s=c.number(get("mean_gap_s"), "viewers.mean_gap_s", 0),
        arrival_rate=c.number(get("arrival_rate"), "viewers.arrival_rate", 0, strict=True),
        regional_skew=c.fraction(get("regional_skew"), "viewers.regional_skew"),
        trace=None if trace is None else c.text(trace, "viewers.trace"),
        flash_crowds=_parse_flash_crowds(c, body.get("flash_crowds"), content),
    )


def _catalogue_ids(content: ContentConfig) -> tuple[str, ...]:
    """The ids ``content`` publishes, as ``testbed.core.content.build_catalogue`` names them
    (spelt out here: parsing imports no core module)."""
    return (*(f"vod-{i:04d}" for i in range(content.videos)),
            *(f"live-{i:02d}" for i in range(content.live_channels)))


def _describe_ids(ids: tuple[str, ...]) -> str:
    """``vod-0000..vod-0039, live-00``: each kind's first and last id."""
    spans = []
    for kind in ("vod-", "live-"):
        mine = [i for i in ids if i.startswith(kind)]
        if mine:
            spans.append(mine[0] if len(mine) == 1 else f"{mine[0]}..{mine[-1]}")
    return ", ".join(spans)


def _parse_crowd_regions(c: _Checker, value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, "must be a non-empty list of helper names, or null for all")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise c.fail(f"{path}[{i}]", name, "must be a helper name")
        if value.index(name) != i:
            raise c.fail(f"{path}[{i}]", name, "appears twice")
    return tuple(value)


def _parse_flash_crowd(c: _Checker, item: Any, path: str, ids: tuple[str, ...]
                       ) -> FlashCrowdConfig:
    if not isinstance(item, Mapping):
        raise c.fail(path, item, "must be a mapping like {at_s: 40, duration_s: 30, "
                     "rate: 0.1, video: vod-0000}")
    body = c.mapping(item, path, FLASH_CROWD_KEYS)
    for key in FLASH_CROWD_KEYS[:4]:
        if key not in body:
            raise c.fail(path, item, f"missing key {key!r}")
    duration = c.number(body["duration_s"], f"{path}.duration_s", 0, strict=True)
    ramp = c.number(body.get("ramp_s", 0), f"{path}.ramp_s", 0)
    if ramp > duration:
        raise c.fail(f"{path}.ramp_s", body["ramp_s"], f"must be <= duration_s {duration:g}")
    video = body["video"]
    if not isinstance(video, str) or video not in ids:
        raise c.fail(f"{path}.video", video, f"not in the catalogue: {_describe_ids(ids)}")
    return FlashCrowdConfig(
        at_s=c.number(body["at_s"], f"{path}.at_s", 0),
        duration_s=duration,
        rate=c.number(body["rate"], f"{path}.rate", 0),
        video=video,
        regions=_parse_crowd_regions(c, body.get("regions"), f"{path}.regions"),
        ramp_s=ramp,
    )


def _parse_flash_crowds(c: _Checker, data: Any, content: ContentConfig
                        ) -> tuple[FlashCrowdConfig, ...]:
    """``viewers.flash_crowds``; each video must be one ``content`` publishes."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise c.fail("viewers.flash_crowds", data, "must be a list of {at_s: ..., "
                     "duration_s: ..., rate: ..., video: ...}")
    ids = _catalogue_ids(content)
    return tuple(_parse_flash_crowd(c, item, f"viewers.flash_crowds[{i}]", ids)
                 for i, item in enumerate(data))


def check_flash_crowd_regions(g: nx.Graph, crowds: tuple[FlashCrowdConfig, ...],
                              source: str) -> None:
    """Raise when a flash crowd names a region that is not a helper of ``g`` (checked
    with the topology, which parsing does not build)."""
    helpers = hosts(g, [HELPER])
    for i, crowd in enumerate(crowds):
        for j, name in enumerate(crowd.regions or ()):
            if name not in helpers:
                raise _Checker(source).fail(f"viewers.flash_crowds[{i}].regions[{j}]", name,
                                            f"not a helper of the topology: {', '.join(helpers)}")


def _parse_engine(c: _Checker, data: Any) -> EngineSection:
    body = c.mapping(data, "engine", ENGINE_KEYS)
    d = EngineSection()

    def get(key: str) -> Any:
        return body.get(key, getattr(d, key))

    def positive(key: str) -> float:
        return c.number(get(key), f"engine.{key}", 0, strict=True)

    host = get("host")
    horizon = positive("horizon_s")
    if not 1 <= horizon <= 60:
        raise c.fail("engine.horizon_s", horizon, "must be within 1..60 s")
    port = c.integer(get("port"), "engine.port", 1024)
    if port > 65535 or port == HTTP_PORT_RESERVED:
        raise c.fail("engine.port", port, f"must be within 1024..65535 and not "
                     f"{HTTP_PORT_RESERVED} (the daemons' HTTP port)")
    return EngineSection(
        host=None if host is None else c.text(host, "engine.host"),
        port=port,
        horizon_s=horizon,
        retrain_s=positive("retrain_s"),
        train_window_s=positive("train_window_s"),
        min_train_s=positive("min_train_s"),
        top=c.integer(get("top"), "engine.top", 1),
        prefix_segments=c.integer(get("prefix_segments"), "engine.prefix_segments", 0),
        arrivals_horizon_s=positive("arrivals_horizon_s"),
    )


def _parse_event(c: _Checker, item: Any, path: str) -> EventConfig:
    if not isinstance(item, Mapping):
        raise c.fail(path, item, "must be a mapping like {at_s: 60, republish: vod-0000}")
    body = c.mapping(item, path, EVENT_KEYS)
    actions = [a for a in EVENT_ACTIONS if a in body]
    if len(actions) != 1:
        raise c.fail(path, item, f"needs exactly one action: {' or '.join(EVENT_ACTIONS)}")
    if "at_s" not in body:
        raise c.fail(path, item, "missing key 'at_s'")
    at_s = c.number(body["at_s"], f"{path}.at_s", 0)
    (action,) = actions
    if action == "republish":
        for key in LINK_KEYS:
            if key in body:
                raise c.fail(f"{path}.{key}", body[key], "only link events set link fields")
        target = body["republish"]
        if not isinstance(target, str) or not target.strip():
            raise c.fail(f"{path}.republish", target, "must be a video id like vod-0000")
        return EventConfig(at_s, action, target)
    between = body["link"]
    if (not isinstance(between, list) or len(between) != 2
            or not all(isinstance(n, str) and n and "-" not in n for n in between)
            or between[0] == between[1]):
        raise c.fail(f"{path}.link", between, "must be two different node names")
    fields = _parse_link_fields(c, body, path)
    if not fields:
        raise c.fail(path, item, f"sets no link field ({', '.join(LINK_KEYS)})")
    return EventConfig(at_s, action, f"{between[0]}-{between[1]}", MappingProxyType(fields))


def _parse_events(c: _Checker, data: Any) -> tuple[EventConfig, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise c.fail("events", data, "must be a list of {at_s: ..., republish: ...} or "
                     "{at_s: ..., link: [a, b], ...}")
    return tuple(_parse_event(c, item, f"events[{i}]") for i, item in enumerate(data))


def _parse_warmup(c: _Checker, value: Any, duration_s: float) -> float:
    """``warmup_s``: seconds >= 0 at the start that metrics leave out; < ``duration_s``."""
    warmup = c.number(value, "warmup_s", 0)
    if warmup >= duration_s:
        raise c.fail("warmup_s", value, f"must be < duration_s, {duration_s:g}")
    return warmup


def parse_scenario(data: Any, source: str) -> Scenario:
    """A :class:`Scenario` from YAML data already loaded; ``source`` names it in errors."""
    c = _Checker(source)
    if data is None:
        raise ScenarioError(f"{source}: empty scenario (expected a mapping with a 'topology' key)")
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: {_show(data)} (expected a mapping with a 'topology' key)")
    body = c.mapping(data, "", TOP_KEYS)
    if "topology" not in body:
        raise ScenarioError(f"{source}: topology: missing (every scenario names a generator)")
    stem = Path(source.split(" [")[0]).stem
    name = c.text(body.get("name", stem if _NAME_RE.match(stem) else "scenario"), "name")
    if not _NAME_RE.match(name):
        raise c.fail("name", name, "use letters, digits, '.', '_' or '-', at most 64")
    return Scenario(
        name=name,
        topology=_parse_topology(c, body["topology"]),
        description=c.text(body.get("description") or "", "description"),
        seed=c.integer(body.get("seed", 1), "seed", 0),
        links=_parse_links(c, body.get("links")),
        calibration=_parse_calibration(c, body.get("calibration")),
        duration_s=(duration := c.number(body.get("duration_s", Scenario.duration_s),
                                         "duration_s", 0, strict=True)),
        warmup_s=_parse_warmup(c, body.get("warmup_s", 0), duration),
        content=(content := _parse_content(c, body.get("content"))),
        **_policy_and_delivery(c, body),
        viewers=_parse_viewers(c, body.get("viewers"), content),
        engine=_parse_engine(c, body.get("engine")),
        events=_parse_events(c, body.get("events")),
        source=source,
    )


def _policy_and_delivery(c: _Checker, body: Mapping[str, Any]) -> dict[str, Any]:
    """``delivery`` with the ``policy`` preset applied, and what the file gave."""
    given = _parse_delivery(c, body.get("delivery"))
    policy = body.get("policy")
    if policy is None:
        return {"delivery": given, "policy": None, "given_delivery": None}
    policy = c.choice(policy, "policy", tuple(POLICIES))
    preset = POLICIES[policy]
    if "mesh_degree" not in preset and given.mesh_degree == 0:
        raise c.fail("policy", policy, "needs a mesh, but delivery.mesh_degree is 0")
    applied = dataclasses.replace(given, **preset)
    params = given.prefetch_params.get(applied.prefetch)
    if params:
        applied = dataclasses.replace(applied, prefetch=_with_params(applied.prefetch, params))
    return {"delivery": applied, "policy": policy, "given_delivery": given}


# ------------------------------------------------------------------ loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def loads_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse scenario YAML text; syntax errors name the line."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"{source}: {where}YAML error: {problem}") from None
    return parse_scenario(data, source)


def load_scenario(path: str | Path) -> Scenario:
    """Read and parse the scenario file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ScenarioError(f"{path}: cannot read ({reason})") from None
    return loads_scenario(text, str(path))


# ------------------------------------------------------------------- sweeps


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set_path(data: dict[str, Any], path: str, value: Any, source: str) -> None:
    """Set ``data[a][b][0]...`` for ``path`` "a.b[0]...", creating mappings as needed."""
    parts: list[str | int] = [
        int(m.group(2)) if m.group(2) is not None else m.group(1)
        for m in _PATH_PART.finditer(path)
    ]
    if not parts or "".join(str(p) for p in parts) != re.sub(r"[.\[\]]", "", path):
        raise ScenarioError(f"{source}: override path {path!r} (expected keys like a.b[0].c)")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ScenarioError(f"{source}: override path {path!r} (no item [{part}])")
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise ScenarioError(f"{source}: override path {path!r} ({part!r} is not a key)")
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node.setdefault(part, {})
