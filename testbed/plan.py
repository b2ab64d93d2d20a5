"""What each daemon is told about its run, typed: the per-node part of the run plan.

The harness decides a run once (:class:`testbed.harness.plan.RunPlan`: the topology, the
address plan, the roles, the catalogue, the workload's sessions) and writes each daemon
its :class:`NodePlan` as plain JSON (the ``plan`` section of ``nodes/<name>.json``).  A
daemon gets it back through one function, :func:`load` (``NodeConfig.node_plan()``):
the scenario's own typed sections (:class:`~testbed.scenario.ContentConfig`,
:class:`~testbed.scenario.DeliveryConfig`, :class:`~testbed.scenario.ViewersConfig`,
:class:`~testbed.scenario.EngineSection`) and what the plan decided for this node.  Every
default is the scenario's; no daemon parses a key or keeps a default of its own, and the
settings the core takes (:meth:`NodePlan.helper_settings`, :meth:`NodePlan.engine_config`)
are built here, once.

Pure: daemons import this module; it imports the scenario model and the core only.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from testbed.scenario import ContentConfig, DeliveryConfig, EngineSection, ViewersConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from testbed.core.content import Catalogue
    from testbed.core.engine import EngineConfig
    from testbed.core.node.helper import HelperSettings
    from testbed.core.node.origin import OriginSettings
    from testbed.core.node.viewer import PlannedSession

LIVE_T0_S = 4.0          # live channels start producing this long after t0
VIEWERS_START_S = 6.0    # players start after the first pingback round set the tree up
ENGINE_NAME = "engine"   # the prediction engine daemon's name (its log, credential, config)
ROLES = ("master", "helper", "viewer", "engine")


class PlanError(ValueError):
    """A plan's JSON form does not match its types."""


@dataclass(frozen=True)
class EnginePlacement:
    """Where the prediction engine daemon runs, and whether it runs at all (a policy that
    prefetches nothing needs no predictions: no engine, no telemetry to it)."""

    name: str
    host: str
    ip: str
    port: int
    enabled: bool


@dataclass(frozen=True)
class Link:
    """An emulated link, for the master's push planning (what each hop crosses, its rate)."""

    a: str
    b: str
    delay_ms: float | None
    bw_mbit: float | None


@dataclass(frozen=True)
class Republish:
    """A scenario ``republish`` event: ``video``'s new version at run second ``at_s``."""

    at_s: float
    video: str


@dataclass(frozen=True)
class ViewerSession:
    """One session the workload planned, as a viewer host plays it.  ``start_at`` is in
    workload time (run time less ``viewers_start_s``); ``patience_s`` None: unlimited."""

    id: str
    helper: str
    helper_ip: str
    video: str
    start_at: float
    start_index: int
    actions: tuple[tuple[float, str, float], ...]
    patience_s: float | None


@dataclass(frozen=True)
class PlayerSlot:
    """One player of ``viewers.model: players``, and the helper it watches through."""

    id: str
    helper: str
    helper_ip: str


#: A planned request, in run time: (at, helper, video, index)
PlannedRequest = tuple[float, str, str, int]


@dataclass(frozen=True)
class NodePlan:
    """One daemon's part of the run plan (see the module)."""

    name: str
    role: str                              # one of ROLES
    ip: str
    seed: int
    duration_s: float
    t0: float                              # wall-clock time of run second 0
    live_t0: float                         # run time of the live channels' first segment
    viewers_start_s: float                 # run time the viewers' workload starts
    master: str
    addresses: Mapping[str, str]           # every helper, then the master -> address
    engine_at: EnginePlacement
    content: ContentConfig
    delivery: DeliveryConfig
    viewers: ViewersConfig
    engine: EngineSection
    # what only some roles need (empty for the others)
    #: helper: the run's pseudonym key (hex), drawn for this run; no other role is given it
    pseudonym_key: str = ""
    republish: tuple[Republish, ...] = ()  # master
    links: tuple[Link, ...] = ()           # master: the emulated links
    #: master: the planned sessions' requests (the oracle's future), None: no workload
    planned: tuple[PlannedRequest, ...] | None = None
    sessions: tuple[ViewerSession, ...] = ()  # viewer, ``viewers.model: workload``
    players: tuple[PlayerSlot, ...] = ()      # viewer, ``viewers.model: players``
    #: viewer: where a session fails over to, in order: the helpers nearest the viewer
    #: host first, the master last
    failover: tuple[str, ...] = ()

    # -- derived values: one place each -----------------------------------------------
    @property
    def helpers(self) -> dict[str, str]:
        """Helper name -> address (the peer directory)."""
        return {n: ip for n, ip in self.addresses.items() if n != self.master}

    @property
    def master_ip(self) -> str:
        return self.addresses[self.master]

    @property
    def link_tuples(self) -> tuple[tuple[str, str, float | None, float | None], ...]:
        """The emulated links as the master's logic takes them: ``(a, b, delay, rate)``."""
        return tuple((lk.a, lk.b, lk.delay_ms, lk.bw_mbit) for lk in self.links)

    @property
    def push_port(self) -> int | None:
        """Where prefetch pushes go: the port the shaped links carry in their lower-priority
        class (``push_priority: low``), else None (the usual HTTP port)."""
        from testbed.core.protocol import PUSH_PORT

        return PUSH_PORT if self.delivery.push_priority == "low" else None

    def catalogue(self) -> Catalogue:
        from testbed.core.content import build_catalogue

        return build_catalogue(self.content.catalogue_config())

    def helper_settings(self, http_port: int, catalogue: Catalogue | None = None,
                        addresses: dict[str, str] | None = None) -> HelperSettings:
        """The helper's settings (:class:`testbed.core.node.helper.HelperSettings`).
        ``addresses``: the address book to share (a simulation of many helpers gives
        them all one, read-only; default: this plan's, copied)."""
        from testbed.core.node.helper import HelperSettings

        d = self.delivery
        return HelperSettings(
            name=self.name, master=self.master,
            addresses=addresses if addresses is not None else dict(self.addresses),
            catalogue=catalogue if catalogue is not None else self.catalogue(),
            cache_bytes=d.cache_bytes, eviction=d.eviction, mesh_degree=d.mesh_degree,
            mesh_pull=d.mesh_pull, push_port=self.push_port,
            neighbour_interval_s=d.neighbour_interval_s,
            pseudonym_key=bytes.fromhex(self.pseudonym_key), live_t0=self.live_t0,
            t0=self.t0, engine=self.engine_at.name if self.engine_at.enabled else None,
            base_url=f"http://{self.ip}:{http_port}")

    def engine_config(self) -> EngineConfig:
        """The engine's settings (:class:`testbed.core.engine.EngineConfig`)."""
        import math

        from testbed.core import demand as D
        from testbed.core.engine import EngineConfig

        e, seg = self.engine, self.content.segment_s
        return EngineConfig(
            demand=D.DemandConfig(horizon_s=e.horizon_s, segment_s=seg),
            retrain_s=e.retrain_s, train_window_s=e.train_window_s,
            min_train_s=e.min_train_s, top=e.top, prefix=e.prefix_segments,
            arrivals_horizon_s=e.arrivals_horizon_s,
            # a new session asks for its whole buffer at once: the popularity prefix
            popularity_prefix=max(1, math.ceil(self.viewers.max_buffer_s / seg - 1e-9)))

    def viewer_chains(self, helper_ref: Callable[[str, str], str],
                      catalogue: Catalogue | None = None) -> list[list[PlannedSession]]:
        """What a viewer host plays, as the chains :class:`ViewerHostLogic` takes (run
        time): each planned session of the workload on its own, or each player's sessions
        back to back (``viewers.model: players``, drawn by the behaviour model).  A live
        session joins at the live edge of when it starts.  ``helper_ref(name, ip)`` is how
        a session names its helper (a URL for the daemon)."""
        from testbed.core.node.viewer import PlannedSession
        from testbed.core.player import BehaviourModel, SessionPlan

        cat = catalogue if catalogue is not None else self.catalogue()
        live_ids = cat.ids("live")

        def at_edge(plan: SessionPlan) -> SessionPlan:
            if plan.video_id not in live_ids:
                return plan
            edge = cat[plan.video_id].live_edge(plan.start_at, self.live_t0)
            return SessionPlan(plan.video_id, plan.start_at, max(0, edge), plan.actions)

        start = self.viewers_start_s
        master = helper_ref(self.master, self.master_ip) if self.failover else ""
        refs = {n: helper_ref(n, self.addresses[n]) for n in self.failover}

        @functools.cache  # one tuple per helper, shared by its sessions
        def fallbacks(helper: str) -> tuple[str, ...]:
            return tuple(refs[n] for n in self.failover if n != helper)

        if self.viewers.model == "workload":
            return [[PlannedSession(
                s.id, helper_ref(s.helper, s.helper_ip),
                at_edge(SessionPlan(s.video, s.start_at + start, s.start_index, s.actions)),
                s.patience_s, fallbacks(s.helper), master)] for s in self.sessions]
        v = self.viewers
        model = BehaviourModel(self.seed, zipf_s=v.zipf_s, pause_prob=v.pause_prob,
                               seek_prob=v.seek_prob, abandon_prob=v.abandon_prob,
                               live_share=v.live_share, mean_gap_s=v.mean_gap_s)
        vod = cat.ids("vod")
        durations = {vid: cat[vid].duration_s for vid in cat.ids()}
        chains = []
        for p in self.players:
            plans = model.sessions(p.id, vod, durations, live_ids, self.duration_s - start)
            chains.append([PlannedSession(
                p.id, helper_ref(p.helper, p.helper_ip),
                at_edge(SessionPlan(q.video_id, q.start_at + start, q.start_index, q.actions)),
                fallbacks=fallbacks(p.helper), master=master)
                for q in plans])
        return chains

    def origin_settings(self, catalogue: Catalogue | None = None) -> OriginSettings:
        """The master's delivery side settings
        (:class:`testbed.core.node.origin.OriginSettings`)."""
        from testbed.core.node.origin import OriginSettings
        from testbed.core.prefetch import make_policy

        d = self.delivery
        return OriginSettings(
            catalogue=catalogue if catalogue is not None else self.catalogue(),
            policy=make_policy(d.prefetch), prefetch_interval_s=d.prefetch_interval_s,
            push_budget_bytes=d.push_budget_bytes, push_source=d.push_source,
            push_reserve=d.push_reserve, push_port=self.push_port,
            engine=self.engine_at.name if self.engine_at.enabled else None,
            engine_top=self.engine.top, horizon_s=self.engine.horizon_s,
            live_t0=self.live_t0, t0=self.t0,
            links=self.link_tuples,
            republish=self.republish, planned=self.planned)

    def pingback_settings(self) -> dict[str, Any]:
        """The delivery settings :meth:`testbed.core.node.master.MasterLogic.from_delivery`
        reads, as the plain data it takes."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self.delivery).items()}

    # -- the JSON form ------------------------------------------------------------------
    def to_plain(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> NodePlan:
        return from_plain(cls, data)


def load(section: Mapping[str, Any]) -> NodePlan:
    """The one way a daemon reads its plan: the ``plan`` section of its node config."""
    if not section:
        raise PlanError("the node configuration has no plan section (written by an older "
                        "harness?)")
    return NodePlan.from_plain(section)


# -- typed <-> plain data ----------------------------------------------------------------
def to_plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as JSON-ready dicts, dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.init}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _kind_fits(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    if origin in (dict, Mapping, collections.abc.Mapping) or dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else False


def from_plain(tp: Any, value: Any, where: str = "plan") -> Any:
    """``value`` (plain JSON data) as type ``tp``: dataclasses, ``X | None`` and other
    unions, ``tuple[X, ...]``, fixed tuples, ``Mapping[K, V]``, str, int, float, bool.
    Anything that does not match raises :class:`PlanError` naming where."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise PlanError(f"{where}: expected a mapping for {tp.__name__}, got {value!r:.80}")
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise PlanError(f"{where}: unknown keys {unknown} for {tp.__name__}")
        hints = _hints(tp)
        return tp(**{k: from_plain(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise PlanError(f"{where}: None is not a {tp}")
        for arm in args:
            if arm is not type(None) and _kind_fits(arm, value):
                return from_plain(arm, value, where)
        raise PlanError(f"{where}: {value!r:.80} is not a {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise PlanError(f"{where}: expected a list, got {value!r:.80}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise PlanError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(from_plain(a, v, f"{where}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise PlanError(f"{where}: expected a mapping, got {value!r:.80}")
        kt, vt = get_args(tp) or (Any, Any)
        return {from_plain(kt, k, where): from_plain(vt, v, f"{where}.{k}")
                for k, v in value.items()}
    if tp in (float, int, str, bool):
        if not _kind_fits(tp, value):
            raise PlanError(f"{where}: {value!r:.80} is not a {tp.__name__}")
        return float(value) if tp is float else value
    raise PlanError(f"{where}: no conversion to {tp}")  # pragma: no cover - a new field type


def dumps(plan: NodePlan) -> str:
    return json.dumps(plan.to_plain(), allow_nan=False)

