"""The scenario model: the frozen sections of a :class:`Scenario`, the values they allow,
and the conversions back to plain data (:meth:`Scenario.to_dict` parses back equal)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx

import topologies
from testbed.core.faults import FaultsConfig
from testbed.core.spec import SpecError, hosts, validate
from testbed.scenario.errors import ScenarioError, _param_error
from testbed.scenario.links import (
    _LinkRefError,
    apply_link_config,
    check_flash_crowd_regions,
    check_link_events,
)
from testbed.scenario.overrides import _set_path

if TYPE_CHECKING:
    from testbed.core.content import CatalogueConfig

LINK_MODES = ("auto", "netem", "userspace")
#: TCP congestion controls a scenario may give its hosts (``links.tcp_congestion``)
TCP_CONGESTION = ("cubic", "reno", "bbr")
#: Scenario link key -> LinkParams field.
LINK_KEYS: Mapping[str, str] = MappingProxyType(
    {"delay": "delay_ms", "jitter": "jitter_ms", "loss": "loss_pct", "bw": "bw_mbit",
     "queue": "queue_pkts"}
)
_SHORT = {v: k for k, v in LINK_KEYS.items()}
VIEWER_MODELS = ("players", "workload")
EVENT_ACTIONS = ("republish", "link")
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
    tcp_congestion: str = "cubic"   # every emulated host's, whatever the machine's default
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    overrides: tuple[LinkOverride, ...] = ()


@dataclass(frozen=True)
class ControllerConfig:
    """The OpenFlow channel: over TLS (certificates made for the run) or plain TCP."""

    tls: bool = False


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
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    duration_s: float = 150.0
    warmup_s: float = 0.0  # the first seconds, left out of the metrics (cold caches, no model)
    content: ContentConfig = field(default_factory=ContentConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    viewers: ViewersConfig = field(default_factory=ViewersConfig)
    engine: EngineSection = field(default_factory=EngineSection)
    events: tuple[EventConfig, ...] = ()
    faults: FaultsConfig | None = None  # a seeded fault campaign during playback
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
        from testbed.scenario.parse import parse_scenario  # lazily: parse imports this module

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
                "tcp_congestion": self.links.tcp_congestion,
                "defaults": {_SHORT[k]: v for k, v in self.links.defaults.items()},
                "overrides": [
                    {"between": list(o.between), **{_SHORT[k]: v for k, v in o.fields.items()}}
                    for o in self.links.overrides
                ],
            },
            "calibration": dataclasses.asdict(self.calibration),
            "controller": dataclasses.asdict(self.controller),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "content": dataclasses.asdict(self.content),
            "policy": self.policy,
            "delivery": {k: _plain(v) for k, v in
                         dataclasses.asdict(self.given_delivery or self.delivery).items()},
            "viewers": _viewers_dict(self.viewers),
            "engine": dataclasses.asdict(self.engine),
            "events": [_event_dict(e) for e in self.events],
            **({"faults": {k: _plain(v) for k, v in dataclasses.asdict(self.faults).items()}}
               if self.faults is not None else {}),
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
