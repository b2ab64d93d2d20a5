"""One typed run plan: everything a run is, decided once from its scenario.

:meth:`RunPlan.build` turns a scenario (and optionally an injected topology spec) into
the run's plan: the topology spec (generated and validated once), the address plan, the
roles (master, helpers, viewer hosts, the engine's host), the catalogue, the workload's
sessions (drawn, or replayed from a trace, once) and which viewer host plays each, and
from those every daemon's typed :class:`testbed.plan.NodePlan`.  The deployment, the
results and the manifest all use the same plan; ``workload/planned.csv`` is written from
the very sessions the viewers play and the master's oracle plans with.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import networkx as nx
import pandas as pd

from testbed.core import spec as S
from testbed.core import workload as W
from testbed.core.content import Catalogue, build_catalogue
from testbed.core.workload.bulk import collector_paused
from testbed.emu.network import address_plan
from testbed.plan import (
    ENGINE_NAME,
    LIVE_T0_S,
    VIEWERS_START_S,
    EnginePlacement,
    Link,
    NodePlan,
    PlannedRequest,
    PlayerSlot,
    Republish,
    ViewerSession,
)
from testbed.scenario import Scenario
from testbed.traces import read_trace, write_trace

PLANNED_CSV = Path("workload") / "planned.csv"


@dataclass(frozen=True)
class Roles:
    """Who is who in the topology (names in natural order)."""

    master: str
    helpers: tuple[str, ...]
    viewers: tuple[str, ...]
    engine_host: str


def roles_of(spec: nx.Graph, scenario_name: str = "scenario") -> tuple[str, list[str], list[str]]:
    """(master, helpers, viewer hosts) of ``spec``; ValueError unless it has exactly one
    master and at least one helper."""
    out: dict[str, list[str]] = {S.MASTER: [], S.HELPER: [], S.VIEWER: []}
    for name in S.hosts(spec):
        role = spec.nodes[name].get("role")
        if role in out:
            out[role].append(name)
    for names in out.values():
        names.sort(key=S.natural_key)
    if len(out[S.MASTER]) != 1:
        raise ValueError(f"scenario {scenario_name}: needs exactly one master host, "
                         f"has {len(out[S.MASTER])}")
    if not out[S.HELPER]:
        raise ValueError(f"scenario {scenario_name}: has no helper hosts")
    return out[S.MASTER][0], out[S.HELPER], out[S.VIEWER]


def nearest_sources(spec: nx.Graph, sources: list[str]) -> dict[str, frozenset[str]]:
    """node -> the ``sources`` nearest to it by hops, every one at the least distance:
    one breadth-first search from all of them at once.  Nodes no source reaches are left
    out.  Nodes that share their nearest sources share one set."""
    near = {s: frozenset((s,)) for s in sources if s in spec}
    frontier = list(near)
    while frontier:
        reached: dict[str, list[frozenset[str]]] = {}
        for u in frontier:
            for w in spec.adj[u]:
                if w not in near:
                    reached.setdefault(w, []).append(near[u])
        for w, sets in reached.items():
            near[w] = sets[0] if len(sets) == 1 else frozenset().union(*sets)
        frontier = list(reached)
    return near


FAILOVER_HELPERS = 3  # the helpers a viewer session may fail over to, nearest first


class _Nearest:
    """The nearest of ``sources`` (distinct names) to a node by hops, in ``sources``'
    order: their search runs once, on first use, and each distinct set is sorted once."""

    def __init__(self, spec: nx.Graph, sources: list[str]):
        self.spec, self.sources = spec, sources
        self._near: dict[str, frozenset[str]] | None = None
        self._rank: dict[str, int] = {}
        self._sorted: dict[frozenset[str], list[str]] = {}

    def __call__(self, node: str) -> list[str]:
        if self._near is None:
            self._near = nearest_sources(self.spec, self.sources)
            self._rank = {s: i for i, s in enumerate(self.sources)}
        near = self._near.get(node, frozenset())
        if near not in self._sorted:
            self._sorted[near] = sorted(near, key=self._rank.__getitem__)
        return list(self._sorted[near])


def assign_players(spec: nx.Graph, viewers: list[str], helpers: list[str],
                   per_host: int) -> dict[str, list[tuple[str, str]]]:
    """viewer host -> [(player id, helper)]: the helpers on the viewer's own switch in
    turn, else the nearest helpers by hops."""
    on_switch: dict[str, list[str]] = {}
    for h in helpers:
        for sw in spec.adj[h]:
            on_switch.setdefault(sw, []).append(h)
    nearest = _Nearest(spec, helpers)
    out = {}
    for v in viewers:
        sw = next(iter(spec.neighbors(v)))
        local = sorted(on_switch.get(sw, ()), key=S.natural_key)
        if not local:
            local = nearest(v)
        turn = itertools.cycle(local)
        out[v] = [(f"{v}-{i}", next(turn)) for i in range(per_host)]
    return out


def hosts_for_helpers(spec: nx.Graph, viewers: list[str], helpers: list[str],
                      players: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    """helper -> the viewer hosts that play its region's sessions: those whose players it
    serves, else the viewer hosts nearest to it by hops."""
    served: dict[str, list[str]] = {}
    for v, plist in players.items():
        for h in dict.fromkeys(x for _, x in plist):
            served.setdefault(h, []).append(v)
    nearest = _Nearest(spec, viewers)
    out = {}
    for h in helpers:
        near = sorted(served.get(h, ()), key=S.natural_key)
        if not near and viewers:
            near = nearest(h)
        out[h] = near
    return out


def workload_config(scenario: Scenario, helpers: list[str],
                    catalogue: Catalogue | None = None) -> W.WorkloadConfig:
    """The calibrated workload the scenario's viewers section describes, over its catalogue.

    The workload's time 0 is ``VIEWERS_START_S`` into the run, so flash crowds (given in
    run seconds) move that much earlier; a part before it is cut off.
    """
    content = scenario.content
    cat = catalogue if catalogue is not None else build_catalogue(content.catalogue_config())
    v = scenario.viewers
    live = tuple((vid, cat[vid].duration_s) for vid in cat.ids("live"))
    crowds = (W.FlashCrowd(c.at_s, c.duration_s, c.rate, c.video, c.regions, c.ramp_s)
              .rebased(VIEWERS_START_S) for c in v.flash_crowds)
    return W.WorkloadConfig(
        helpers=tuple(helpers), videos=tuple((vid, cat[vid].duration_s) for vid in cat.ids("vod")),
        segment_s=content.segment_s, duration_s=max(1.0, scenario.duration_s - VIEWERS_START_S),
        seed=scenario.seed, arrival_rate=v.arrival_rate, zipf_s=v.zipf_s,
        regional_skew=v.regional_skew, live=live, live_share=v.live_share if live else 0.0,
        max_buffer_s=v.max_buffer_s, flash_crowds=tuple(c for c in crowds if c is not None))


def draw_sessions(scenario: Scenario, cfg: W.WorkloadConfig) -> list[W.Session]:
    """The sessions the viewers play: drawn from the workload ``cfg``, or replayed from
    the scenario's trace.

    A trace's helper names that the topology lacks are mapped onto its helpers in turn
    (sorted), so a trace recorded elsewhere still spreads over every region.
    """
    if scenario.viewers.trace is None:
        return list(W.generate(cfg).sessions)
    helpers = list(cfg.helpers)
    trace = read_trace(scenario.viewers.trace)
    durations = {**dict(cfg.videos), **dict(cfg.live)}
    sessions = W.sessions_from_trace(trace, cfg.segment_s, durations,
                                     lookahead_s=cfg.max_buffer_s,
                                     live_ids=[vid for vid, _ in cfg.live])
    foreign = sorted({s.helper for s in sessions} - set(helpers), key=S.natural_key)
    mapping = {h: helpers[i % len(helpers)] for i, h in enumerate(foreign)}
    return [dataclasses.replace(s, helper=mapping.get(s.helper, s.helper)) for s in sessions
            if s.arrive_at < cfg.duration_s]


def workload_sessions(scenario: Scenario, helpers: list[str]) -> list[W.Session]:
    """The sessions of ``scenario``'s workload over ``helpers`` (a fresh draw: a run uses
    its plan's :attr:`RunPlan.sessions` instead)."""
    return draw_sessions(scenario, workload_config(scenario, helpers))


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A run, decided once (see the module).  Build it with :meth:`build`."""

    scenario: Scenario
    spec: nx.Graph
    addresses: Mapping[str, dict]                      # the emulator's address plan
    roles: Roles
    catalogue: Catalogue
    engine: EnginePlacement
    players: Mapping[str, tuple[tuple[str, str], ...]]  # viewer host -> (player id, helper)
    #: the workload (``viewers.model: workload``), else None; its sessions, drawn once,
    #: and the viewer host that plays each (by session id)
    workload: W.WorkloadConfig | None = None
    sessions: tuple[W.Session, ...] = ()
    played_by: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, scenario: Scenario, spec: nx.Graph | None = None) -> RunPlan:
        """The plan of ``scenario``; ``spec`` replaces its generated topology (tests inject
        their own).  The topology is built and validated here, the workload drawn here."""
        spec = spec if spec is not None else scenario.build_spec()
        master, helpers, viewers = roles_of(spec, scenario.name)
        addresses = address_plan(spec)
        engine_host = scenario.engine.host or master
        roles = Roles(master, tuple(helpers), tuple(viewers), engine_host)
        catalogue = build_catalogue(scenario.content.catalogue_config())
        engine = EnginePlacement(name=ENGINE_NAME, host=engine_host,
                                 ip=addresses[engine_host]["ip"], port=scenario.engine.port,
                                 enabled=scenario.delivery.prefetch_policy != "none")
        players = assign_players(spec, viewers, helpers, scenario.viewers.per_host)
        plan = cls(scenario=scenario, spec=spec, addresses=addresses, roles=roles,
                   catalogue=catalogue, engine=engine,
                   players={v: tuple(p) for v, p in players.items()})
        if scenario.viewers.model != "workload":
            return plan
        cfg = workload_config(scenario, helpers, catalogue)
        sessions = tuple(draw_sessions(scenario, cfg))
        where = hosts_for_helpers(spec, viewers, helpers, players)
        turn = {h: itertools.cycle(hosts) for h, hosts in where.items() if hosts}
        played_by = {s.id: next(turn[s.helper]) for s in sessions if s.helper in turn}
        return dataclasses.replace(plan, workload=cfg, sessions=sessions, played_by=played_by)

    # -- what the run is ------------------------------------------------------------------
    def ip(self, name: str) -> str:
        return self.addresses[name]["ip"]

    @property
    def helper_addresses(self) -> dict[str, str]:
        return {h: self.ip(h) for h in self.roles.helpers}

    def failover_order(self, host: str) -> tuple[str, ...]:
        """Where ``host``'s viewers fail over to: the :data:`FAILOVER_HELPERS` helpers
        nearest it (by the links' delay; ties by name), then the master.  A session skips
        its own helper in the list."""
        far = nx.single_source_dijkstra_path_length(self.spec, host, weight="delay_ms")
        helpers = sorted(self.roles.helpers, key=lambda h: (far.get(h, math.inf),
                                                            len(h), h))
        return (*helpers[:FAILOVER_HELPERS + 1], self.roles.master)

    def daemons(self) -> list[tuple[str, str, str]]:
        """(name, role, host) of every daemon, in start order: the master, the engine (when
        it runs), the helpers, the viewer hosts."""
        r = self.roles
        return [(r.master, "master", r.master),
                *([(ENGINE_NAME, "engine", self.engine.host)] if self.engine.enabled else []),
                *((h, "helper", h) for h in r.helpers), *((v, "viewer", v) for v in r.viewers)]

    @cached_property
    def planned_trace(self) -> pd.DataFrame | None:
        """The planned sessions as a trace (what ``workload/planned.csv`` holds), None
        without a workload."""
        if self.workload is None:
            return None
        return W.trace_frame(self.sessions, self.workload)

    def planned_requests(self) -> tuple[PlannedRequest, ...] | None:
        """The planned sessions' requests in run time: (at, helper, video, index)."""
        trace = self.planned_trace
        if trace is None:
            return None
        req = trace[trace["kind"] == "request"]
        return tuple(zip((req["at"] + VIEWERS_START_S).tolist(), req["helper"].tolist(),
                         req["video"].tolist(), req["index"].tolist()))

    # -- what each daemon is told ---------------------------------------------------------
    def node_plans(self, t0: float, pseudonym_key: bytes,
                   failover: bool = True) -> dict[str, NodePlan]:
        """Every daemon's typed plan (the engine's too, even when it does not run).  Only
        the helpers are given ``pseudonym_key``: the engine, the viewers and the master can
        neither compute a viewer's pseudonym nor undo one.  ``failover``: give the viewers
        where to fail over to (the simulation, which stages no faults, does without)."""
        sc, r = self.scenario, self.roles
        base = dict(
            seed=sc.seed, duration_s=sc.duration_s, t0=t0, live_t0=LIVE_T0_S,
            viewers_start_s=VIEWERS_START_S,
            master=r.master, addresses={**self.helper_addresses, r.master: self.ip(r.master)},
            engine_at=self.engine, content=sc.content, delivery=sc.delivery,
            viewers=sc.viewers, engine=sc.engine)
        out = {r.master: NodePlan(
            name=r.master, role="master", ip=self.ip(r.master), **base,
            republish=tuple(Republish(e.at_s, e.target) for e in sc.events
                            if e.action == "republish"),
            links=tuple(Link(a, b, d.get("delay_ms"), d.get("bw_mbit"))
                        for a, b, d in sorted(self.spec.edges(data=True))),
            # the oracle plans with them; no other policy reads them
            planned=(self.planned_requests() if sc.delivery.prefetch_policy == "oracle"
                     else None))}
        out[ENGINE_NAME] = NodePlan(name=ENGINE_NAME, role="engine", ip=self.engine.ip, **base)
        for h in r.helpers:
            out[h] = NodePlan(name=h, role="helper", ip=self.ip(h), **base,
                              pseudonym_key=pseudonym_key.hex())
        helper_ip = self.helper_addresses
        by_host: dict[str, list[ViewerSession]] = {v: [] for v in r.viewers}
        with collector_paused():
            for s in self.sessions:
                host = self.played_by.get(s.id)
                if host is not None:
                    by_host[host].append(viewer_session(s, helper_ip[s.helper]))
        for v in r.viewers:
            own = ({"sessions": tuple(by_host[v])} if self.workload is not None else
                   {"players": tuple(PlayerSlot(pid, h, helper_ip[h])
                                     for pid, h in self.players[v])})
            out[v] = NodePlan(name=v, role="viewer", ip=self.ip(v), **base, **own,
                              failover=self.failover_order(v) if failover else ())
        return out

    def node_configs(self, out: Path, t0: float, ca_public_key: bytes,
                     pseudonym_key: bytes) -> dict[str, dict]:
        """Every daemon's configuration (what :class:`testbed.nodes.common.NodeConfig`
        loads): who and where it is, the run's clock and CA, and its typed plan."""
        r = self.roles
        base = {"run_dir": str(out), "seed": self.scenario.seed, "t0": t0,
                "duration_s": self.scenario.duration_s,
                "master": {"name": r.master, "ip": self.ip(r.master)},
                "helpers": self.helper_addresses, "ca_public_key": ca_public_key.hex(),
                "extra": {"engine": dataclasses.asdict(self.engine)}}
        return {name: {**base, "name": name, "role": p.role, "ip": p.ip, "plan": p.to_plain()}
                for name, p in self.node_plans(t0, pseudonym_key).items()}

    def write(self, out: Path, t0: float, ca_public_key: bytes,
              pseudonym_key: bytes) -> dict[str, dict]:
        """Write ``workload/planned.csv`` and every daemon's ``nodes/<name>.json``; the
        configurations written."""
        out = Path(out)
        if self.planned_trace is not None:  # the sessions as planned, as a trace
            (out / PLANNED_CSV).parent.mkdir(parents=True, exist_ok=True)
            write_trace(self.planned_trace, out / PLANNED_CSV)
        configs = self.node_configs(out, t0, ca_public_key, pseudonym_key)
        (out / "nodes").mkdir(parents=True, exist_ok=True)
        for name, _, _ in self.daemons():
            (out / "nodes" / f"{name}.json").write_text(
                json.dumps(configs[name], indent=1))
        return configs


def viewer_session(s: W.Session, helper_ip: str) -> ViewerSession:
    return ViewerSession(id=s.id, helper=s.helper, helper_ip=helper_ip, video=s.video,
                         start_at=s.arrive_at, start_index=s.plan.start_index,
                         actions=tuple(tuple(a) for a in s.plan.actions),
                         patience_s=s.patience_s if math.isfinite(s.patience_s) else None)
