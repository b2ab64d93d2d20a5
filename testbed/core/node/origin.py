"""The master's delivery side, sans I/O: prefetch rounds, pushes, forecasts, republishing.

:class:`OriginLogic` decides what the origin pushes to which helper and along which route,
when it asks the prediction engine for a forecast and what it keeps of the answer, and what
a scheduled ``republish`` changes.  What the tree looks like (pingback tables, the helpers'
neighbour reports and cache inventories) it reads from the :class:`MasterLogic` it is given;
the policies, link headroom and mesh routes are the pure pieces of
:mod:`testbed.core.prefetch`, :mod:`testbed.core.headroom` and :mod:`testbed.core.mesh`.

Events (``handle(event, now)``):

* ``Timer("prefetch")``: a prefetch round (every ``prefetch_interval_s``; the first one
  :data:`FIRST_PREFETCH_S` after the start).  Each push is a ``push`` record and either a
  :class:`PushFromOrigin` (the route starts at the master) or a signed ``push_order`` to the
  helper holding the nearest copy (``Send(holder, "push_order", body, ref=...)``).
* :class:`LinkLoad`: the links' load as last measured (the driver reads it before a round
  when :attr:`OriginLogic.needs_load`); the round leaves pushes only the room it leaves.
* ``Timer("forecast")``: ask the engine (``Send(engine, "predict", ..., path="/predict",
  cls="prediction", timeout_s=3.0, ref=...)``), every ``max(prefetch_interval_s,
  FORECAST_EVERY_S)``, the first :data:`FIRST_FORECAST_S` after the start.
* :class:`~testbed.core.node.effects.Response`: the engine's answer (``forecast`` /
  ``forecast_model`` / ``forecast_failed`` records), or a holder's answer to a push order
  (anything but 200: the origin pushes the segment itself, a ``push_fallback`` record).
* ``Timer("republish", token=i)``: the scenario's i-th ``republish`` event is due: the
  video's version goes up, :class:`Publish` (the driver signs the new manifest), a
  ``republish`` record and a signed ``invalidate`` to every first-tier helper.  One such
  timer is pending at a time (the events in time order, each setting the next).

Push and invalidation ids come from a keyed hash of a counter (the driver gives a random
key per run, tests a fixed one), so they are unique within a run and never a clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import networkx as nx

from testbed.core.content import Catalogue
from testbed.core.headroom import (
    LinkRoom,
    PhysicalPaths,
    PushLoad,
    link_room,
    links_graph,
    parse_load,
)
from testbed.core.mesh import NearestCopy, PeerMetric, mesh_graph, push_route, push_routes
from testbed.core.node.effects import Record, Response, Send, SetTimer, Timer
from testbed.core.node.master import MasterLogic
from testbed.core.prefetch import Demand, FutureDemand, HelperView, Push
from testbed.core.protocol import route_problem

ACTIVE_S = 15.0  # playheads (and forecasts) older than this are not planned with
FORECAST_EVERY_S = 2.0  # at most this often the engine is asked (a segment's length)
FIRST_FORECAST_S = 2.5  # the first forecast, after start
FIRST_PREFETCH_S = 3.0  # the first prefetch round, after start
FORECAST_TIMEOUT_S = 3.0
IN_FLIGHT_S = 10.0  # a push is taken to be on its way this long (not pushed again)
#: A pushed copy is taken to be at its holder this long after it was sent (until the
#: holder's own inventory report says so), and for this long at most
LANDED_AFTER_S, LANDED_FOR_S = 3.0, 30.0
ROUTE_BYTES = 1_000_000  # the transfer size routes from the origin are costed with

PREFETCH = "prefetch"
FORECAST = "forecast"
REPUBLISH = "republish"
#: The timers this logic sets (the driver hands them back to it, not to MasterLogic).
TIMERS = frozenset({PREFETCH, FORECAST, REPUBLISH})


@dataclass(frozen=True)
class LinkLoad:
    """Event: the links' load as the harness last relayed it (``link-load.json``, parsed:
    ``{"at": t, "links": [...]}``), None when it could not be read."""

    doc: Any = None


@dataclass(frozen=True)
class PushFromOrigin:
    """Effect: send segment ``body["video"]/body["index"]`` at ``body["version"]`` as a
    signed ``mesh_data`` (the bytes as payload) to ``body["route"][1]``, path ``/mesh``,
    traffic class ``prefetch``, on ``port`` (None: the usual one).  The driver makes the
    bytes (off its event loop: they take a while)."""

    body: dict
    port: Optional[int] = None


@dataclass(frozen=True)
class Publish:
    """Effect: build and sign the manifest of ``video`` at version ``version`` (signing
    happens at the edge), before the invalidations that follow it go out."""

    video: str
    version: int


Event = Union[Timer, Response, LinkLoad]
Effect = Union[Send, SetTimer, Record, PushFromOrigin, Publish]


@dataclass(frozen=True)
class OriginSettings:
    """What the delivery side is told by the run plan.

    ``policy``: a prefetch policy (:func:`testbed.core.prefetch.make_policy`).  ``engine``:
    the prediction engine's name (None: no engine).  ``links``: the emulated links as
    ``(a, b, delay_ms, bw_mbit)``.  ``republish``: the scheduled events, each with
    ``at_s`` and ``video``.  ``planned``: the planned requests ``(at, helper, video,
    index)`` the oracle reads (None: no workload).  ``t0``: wall time of run second 0
    (an invalidation's ``issued`` is wall time).
    """

    catalogue: Catalogue
    policy: Any
    prefetch_interval_s: float = 1.0
    push_budget_bytes: int = 250_000
    push_source: str = "nearest"
    push_reserve: Optional[float] = 0.2
    push_port: Optional[int] = None
    engine: Optional[str] = None
    engine_top: int = 50
    horizon_s: float = 10.0
    live_t0: float = 0.0
    t0: float = 0.0
    links: Sequence[tuple[str, str, Optional[float], Optional[float]]] = ()
    republish: Sequence[Any] = ()
    planned: Optional[Sequence[tuple[float, str, str, int]]] = None


class _Holders(Mapping):
    """Segment -> sorted helpers holding it: the inventories' (``holding``) and the copies
    landed since (``landed``), joined when a segment is looked up."""

    def __init__(self, holding: Mapping[tuple[str, int], set[str]],
                 landed: dict[tuple[str, int], set[str]]) -> None:
        self.holding = holding
        self.landed = landed

    def __getitem__(self, key: tuple[str, int]) -> list[str]:
        held, landed = self.holding.get(key), self.landed.get(key)
        if not held and not landed:
            raise KeyError(key)
        return sorted((held or set()) | (landed or set()))

    def __iter__(self) -> Iterator[tuple[str, int]]:
        yield from self.holding
        yield from (k for k in self.landed if k not in self.holding)

    def __len__(self) -> int:
        return len(self.holding) + sum(k not in self.holding for k in self.landed)

    def __bool__(self) -> bool:
        return bool(self.holding) or bool(self.landed)


class OriginLogic:
    """The master's delivery side (see the module).

    ``tree``: the master's :class:`MasterLogic` (its helpers, pingback tables, neighbour
    reports and inventories are read, never written).  ``versions``: video -> version, the
    mapping the master serves and signs from (written here on a republish).  ``id_key``:
    key of the push and invalidation ids.
    """

    def __init__(self, tree: MasterLogic, settings: OriginSettings,
                 versions: Optional[MutableMapping[str, int]] = None,
                 id_key: bytes = b"") -> None:
        self.tree = tree
        self.s = settings
        self.master = tree.master
        self.catalogue = settings.catalogue
        self.policy = settings.policy
        self.versions: MutableMapping[str, int] = (
            versions if versions is not None else {v: 1 for v in self.catalogue.ids()})
        self.live_ids = self.catalogue.ids("live")
        self.forecast: dict = {}  # the engine's last answer
        self.forecast_at = -1e9
        self.forecast_version: Optional[int] = None
        self.asked_at: Optional[float] = None  # an ask of the engine awaiting its answer
        self._ask_due = False
        self.planned: Optional[FutureDemand] = None
        if self.policy.name == "oracle" and settings.planned is not None:
            self.planned = FutureDemand(settings.planned)
        self.in_flight: dict[tuple[str, str, int], float] = {}
        self.pushed: dict[tuple[str, int], dict[str, float]] = {}  # segment -> holder -> t
        # the tree's, when it has them: both come from the plan's links
        self.paths = (tree.paths if tree.paths is not None
                      else PhysicalPaths(links_graph(settings.links)))
        self.capacity = self.paths.capacities()
        self.push_load = PushLoad()
        self.load_doc: Any = None
        #: the transfer routes are costed by: the largest first segment of the catalogue
        self.ref_bytes = max(self.catalogue[v].segment_size(0) for v in self.catalogue.ids())
        self.rounds = 0
        # the scheduled events in time order (stable: equal times keep the plan's order)
        self.events = list(settings.republish)
        self.events_done = 0  # of the scheduled events, in time order
        self._event_order = sorted(range(len(self.events)), key=lambda i: self.events[i].at_s)
        self._pending: dict[int, tuple] = {}  # ref -> what its Response continues
        self._next_ref = 0
        self._key = bytes(id_key)[:64]
        self._counter = 0
        # what a round rebuilds only when its inputs changed
        self._helpers: tuple[object, int, list[str]] = (None, -1, [])
        self._mesh: Optional[tuple[int, dict, nx.Graph]] = None
        self._nearest: Optional[tuple[nx.Graph, NearestCopy]] = None
        self._demand: Optional[tuple[dict, float, list[Demand]]] = None
        self._sizes: dict[tuple[str, int], int] = {}

    # -- driving ----------------------------------------------------------------------
    @property
    def helpers(self) -> list[str]:
        """The helpers, sorted (read it, do not change it: it is kept between calls)."""
        helpers = self.tree.helpers
        if self._helpers[0] is not helpers or self._helpers[1] != len(helpers):
            self._helpers = (helpers, len(helpers), sorted(helpers))
        return self._helpers[2]

    @property
    def forecast_every_s(self) -> float:
        return max(self.s.prefetch_interval_s, FORECAST_EVERY_S)

    @property
    def needs_load(self) -> bool:
        """Whether the rounds look at the links' load (the driver then feeds
        :class:`LinkLoad` before each ``Timer("prefetch")``)."""
        return self.s.push_reserve is not None and bool(self.capacity)

    def start(self, now: float, events_done: int = 0) -> list[Effect]:
        """The first timers; ``events_done``: the scheduled events a master carried out
        before it restarted (from its saved state), not carried out again."""
        self.events_done = events_done
        out: list[Effect] = []
        if self.policy.name == "oracle" and self.s.planned is None:
            out.append(Record("oracle_blind", {"reason": "no planned workload"}))
        if self.s.engine:
            out.append(SetTimer(FORECAST, now + FIRST_FORECAST_S))
        if self.policy.name != "none":
            out.append(SetTimer(PREFETCH, now + FIRST_PREFETCH_S))
        out += self._next_event(events_done)
        return out

    def handle(self, event: Event, now: float) -> list[Effect]:
        if isinstance(event, LinkLoad):
            self.load_doc = event.doc
            return []
        if isinstance(event, Response):
            pending = self._pending.pop(event.ref, None)
            if pending is None:
                return []
            if pending[0] == FORECAST:
                return self.on_forecast(event, now)
            return self.on_push_order(event, pending[1], pending[2])
        if isinstance(event, Timer):
            if event.name == PREFETCH:
                return [SetTimer(PREFETCH, now + self.s.prefetch_interval_s),
                        *self.prefetch_round(now)]
            if event.name == FORECAST:
                return [SetTimer(FORECAST, now + self.forecast_every_s), *self.ask(now)]
            if event.name == REPUBLISH:
                return self.republish(event.token, now)
        return []

    def _ref(self, what: tuple) -> int:
        self._next_ref += 1
        self._pending[self._next_ref] = what
        return self._next_ref

    def _id(self) -> str:
        self._counter += 1
        return hashlib.blake2b(self._counter.to_bytes(8, "big"), key=self._key,
                               digest_size=6).hexdigest()

    # -- the engine -------------------------------------------------------------------
    def ask(self, now: float) -> list[Effect]:
        """Ask the engine for every helper's predictions and playheads; while an ask is
        still waiting for its answer, the next one goes when that answer comes."""
        if not self.s.engine:
            return []
        if self.asked_at is not None and now - self.asked_at <= FORECAST_TIMEOUT_S + 1.0:
            self._ask_due = True
            return []
        predictor = getattr(self.policy, "predictor", None) or "model"
        body: dict[str, Any] = {"helpers": list(self.helpers), "top": self.s.engine_top,
                                "predictor": predictor}
        if getattr(self.policy, "horizon_s", None):
            body["horizon_s"] = self.policy.horizon_s
        self.asked_at = now
        self._ask_due = False
        return [Send(self.s.engine, "predict", body, path="/predict", cls="prediction",
                     timeout_s=FORECAST_TIMEOUT_S, ref=self._ref((FORECAST,)))]

    def on_forecast(self, r: Response, now: float) -> list[Effect]:
        self.asked_at = None
        out: list[Effect] = []
        try:
            if r.status == 0:
                raise ValueError(bytes(r.body).decode("utf-8", "replace"))
            if r.status != 200:
                raise ValueError(f"status {r.status}: {bytes(r.body)[:120]!r}")
            answer = json.loads(r.body)
            if not isinstance(answer, dict):
                raise ValueError(f"not an object: {type(answer).__name__}")
        except ValueError as exc:
            out.append(Record("forecast_failed", {"error": str(exc)[:200]}))
        else:
            self.forecast = answer
            self.forecast_at = now
            n = sum(len(p) for p in answer.get("predictions", {}).values())
            if answer.get("version") != self.forecast_version:
                self.forecast_version = answer.get("version")
                out.append(Record("forecast_model", {"version": self.forecast_version}))
            out.append(Record("forecast", {"version": answer.get("version"), "segments": n,
                                           "bytes": len(r.body)}))
        if self._ask_due:
            out += self.ask(now)
        return out

    # -- what the master knows --------------------------------------------------------
    def live_edge(self, video: str, now: float) -> int:
        return self.catalogue[video].live_edge(now, self.s.live_t0)

    def n_segments(self, video: str, now: float) -> int:
        v = self.catalogue[video]
        if v.kind == "live":
            return self.live_edge(video, now) + 1
        return v.n_segments

    def newest(self, now: float) -> dict[str, int]:
        """Each live channel's newest segment: nothing past it can be pushed."""
        return {v: self.live_edge(v, now) for v in self.live_ids}

    def size_of(self, video: str, index: int) -> int:
        key = (video, index)
        size = self._sizes.get(key)
        if size is None:  # a catalogue's sizes never change: each worked out once
            size = self._sizes[key] = self.catalogue[video].segment_size(index)
        return size

    def helper_views(self, now: float) -> list[HelperView]:
        playheads: dict[str, list[tuple[str, int]]] = {}
        if now - self.forecast_at <= ACTIVE_S:
            for helper, heads in self.forecast.get("playheads", {}).items():
                playheads[helper] = [(str(v), int(i)) for v, i in heads]
        flying = self._flying()
        return [HelperView(helper=h, playheads=tuple(sorted(playheads.get(h, []))),
                           cached=frozenset(self.tree.inventory.get(h, set())),
                           in_flight=flying.get(h, frozenset()))
                for h in self.helpers]

    def _flying(self) -> dict[str, frozenset]:
        by: dict[str, set] = {}
        for (h, v, i) in self.in_flight:
            by.setdefault(h, set()).add((v, i))
        return {h: frozenset(keys) for h, keys in by.items()}

    def mesh(self) -> nx.Graph:
        """The mesh as the master knows it: helpers' reported links, and its own to tier 1
        (the graph of the round before when neither changed since; read it, do not change
        it)."""
        pingback = self.tree.pingback
        master_links = {}
        for helper, table in pingback.tables.items():
            if table.parent == self.master and helper != self.master:
                lat = pingback.index.latency(helper) or 50.0
                master_links[helper] = PeerMetric(latency_ms=lat, bw_mbit=50.0)
        changes = self.tree.reports_changes
        if self._mesh is None or self._mesh[0] != changes or self._mesh[1] != master_links:
            self._mesh = (changes, master_links,
                          mesh_graph(self.tree.reports, self.master, master_links))
        return self._mesh[2]

    def nearest(self, graph: nx.Graph) -> NearestCopy:
        """Routes from the nearest copy over ``graph``: kept while the graph is the same,
        with only the origin's own search carried from one round to the next."""
        if self._nearest is None or self._nearest[0] is not graph:
            self._nearest = (graph, NearestCopy(graph, self.master, self.ref_bytes))
        else:
            self._nearest[1].forget(keep=self.master)
        return self._nearest[1]

    def demand(self, now: float) -> list[Demand]:
        """Expected requests per helper and segment over the horizon, for a demand policy:
        the engine's forecast (``predictive``, ``playhead``, ``popularity``) or the planned
        sessions' own requests (``oracle``: the future as the workload planned it)."""
        if self.policy.predictor is None:
            return self.planned.between(now, self.s.horizon_s) if self.planned else []
        if now - self.forecast_at > ACTIVE_S:
            return []
        # the running sessions' next requests, and the start-up bursts of sessions to come
        # (on-demand videos only: a live session starts at the live edge)
        # the same answer gives the same rows (read them, do not change them)
        if (self._demand is not None and self._demand[0] is self.forecast
                and self._demand[1] == self.forecast_at):
            return self._demand[2]
        helpers = self.tree.helpers
        rows = [(h, v, i, x, key == "arrivals") for key in ("predictions", "arrivals")
                for h, got in self.forecast.get(key, {}).items() for v, i, x in got]
        demand = [Demand(h, str(v), int(i), float(x)) for h, v, i, x, to_come in rows
                  if h in helpers and v in self.catalogue
                  and not (to_come and self.catalogue[v].kind == "live")]
        self._demand = (self.forecast, self.forecast_at, demand)
        return demand

    def holders(self, now: float) -> Mapping[tuple[str, int], list[str]]:
        """Segment -> helpers holding a copy, sorted: their inventory reports, and the
        copies pushed to them that have had time to land since (until a report says
        otherwise).  Each segment's holders are looked up when asked for, so a round
        costs what it asks, not every helper's whole inventory."""
        landed: dict[tuple[str, int], set[str]] = {}
        for key, at in list(self.pushed.items()):
            for helper, t in list(at.items()):
                if now - t > LANDED_FOR_S:
                    del at[helper]
                elif now - t >= LANDED_AFTER_S:
                    landed.setdefault(key, set()).add(helper)
            if not at:
                del self.pushed[key]
        return _Holders(self.tree.holding, landed)

    def room(self, now: float) -> Optional[LinkRoom]:
        """What each link can take in pushes this round (None: the links are not looked
        at); the load is the last :class:`LinkLoad` (the switches' counters)."""
        if not self.needs_load:
            return None
        try:
            measured = parse_load(self.load_doc, now) or {}
        except ValueError:
            measured = {}
        return LinkRoom(link_room(self.capacity, measured, self.push_load.mbit(now),
                                  self.s.prefetch_interval_s, self.s.push_reserve),
                        self.paths)

    # -- prefetch ---------------------------------------------------------------------
    def plan(self, now: float, graph: nx.Graph) -> list[Push]:
        """The policy's pushes for this round."""
        budget = self.s.push_budget_bytes
        if hasattr(self.policy, "plan_demand"):
            helpers = self.helpers
            network: dict = {"newest": self.newest(now), "link_room": self.room(now)}
            if self.master in graph and self.s.push_source == "nearest":
                network["nearest"] = self.nearest(graph)
                network["holders"] = self.holders(now)
            elif self.master in graph:
                network["routes"] = push_routes(graph, [self.master], helpers, ROUTE_BYTES)
            # helper -> what it holds / has on its way (a helper missing: nothing)
            cached, flying = self.tree.inventory, self._flying()
            return self.policy.plan_demand(now, self.demand(now), cached, flying,
                                           self.size_of, budget, master=self.master,
                                           **network)
        views = self.helper_views(now)
        if views:  # a different helper first each round, so a small budget is shared
            turn = self.rounds % len(views)
            views = views[turn:] + views[:turn]
        return self.policy.plan(now, views, self.size_of,
                                lambda video: self.n_segments(video, now), budget)

    def prefetch_round(self, now: float) -> list[Effect]:
        graph = self.mesh()
        for k, t in list(self.in_flight.items()):
            if now - t > IN_FLIGHT_S:
                del self.in_flight[k]
        pushes = self.plan(now, graph)
        self.rounds += 1
        out: list[Effect] = []
        for push in pushes:
            route = list(push.route) or None
            if route is None and push.dest in graph and self.master in graph:
                route = push_route(graph, [self.master], push.dest, push.size)
            if not route or route_problem(route) is not None:  # helpers would refuse it
                route = [self.master, push.dest]
            for holder in (*push.keep, push.dest):
                self.in_flight[(holder, push.video, push.index)] = now
                self.pushed.setdefault((push.video, push.index), {})[holder] = now
            self.push_load.add(now, self.paths.route_links(route), push.size)
            push_id = self._id()
            body = {"video": push.video, "index": push.index,
                    "version": self.versions[push.video], "route": route, "hop": 1,
                    "push_id": push_id, "keep": list(push.keep)}
            out.append(Record("push", {"push_id": push_id, "video": push.video,
                                       "index": push.index, "dest": push.dest,
                                       "route": route, "source": route[0],
                                       "keep": list(push.keep), "bytes": push.size,
                                       "expected_hits": push.expected_hits}))
            if route[0] == self.master:
                out.append(PushFromOrigin(body, self.s.push_port))
            else:  # the helper holding the nearest copy sends it
                out.append(Send(route[0], "push_order", body, path="/control",
                                cls="control", ref=self._ref(("order", body, graph))))
        return out

    def on_push_order(self, r: Response, body: dict, graph: nx.Graph) -> list[Effect]:
        """A holder's answer to a push order: when it could not send the copy (evicted,
        unreachable), the origin sends it along its own route."""
        if r.status == 200:
            return []
        dest = body["route"][-1]
        route = (push_route(graph, [self.master], dest, ROUTE_BYTES)
                 if self.master in graph else None) or [self.master, dest]
        if route_problem(route) is not None:
            route = [self.master, dest]
        keep = [h for h in body["keep"] if h in route[1:-1]]
        return [Record("push_fallback", {"push_id": body["push_id"], "holder": body["route"][0],
                                         "status": r.status or None, "route": route}),
                PushFromOrigin({**body, "route": route, "keep": keep}, self.s.push_port)]

    # -- republishing -----------------------------------------------------------------
    def _next_event(self, position: int) -> list[Effect]:
        if position >= len(self._event_order):
            return []
        i = self._event_order[position]
        return [SetTimer(REPUBLISH, float(self.events[i].at_s), i)]

    def republish(self, i: Any, now: float) -> list[Effect]:
        """The scheduled event ``i``: a new version, its manifest, the invalidation."""
        if not isinstance(i, int) or not 0 <= i < len(self.events):
            return []
        out = self._republish(self.events[i].video, now)
        self.events_done = self._event_order.index(i) + 1
        return out + self._next_event(self.events_done)

    def _republish(self, video: str, now: float) -> list[Effect]:
        if video not in self.versions:
            return [Record("event_error", {"error": f"republish: unknown video {video!r}"})]
        self.versions[video] += 1
        version = self.versions[video]
        issued = self.s.t0 + now
        inv_id = self._id()
        out: list[Effect] = [
            Publish(video, version),
            Record("republish", {"video": video, "version": version, "inv_id": inv_id,
                                 "issued": issued}),
        ]
        body = {"video": video, "version": version, "issued": issued, "inv_id": inv_id,
                "route": [self.master]}
        table = self.tree.pingback.tables.get(self.master)
        first = list(table.children) if table else self.helpers
        out += [Send(h, "invalidate", body, path="/control", cls="control") for h in first]
        return out
