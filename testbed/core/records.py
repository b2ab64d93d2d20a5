"""The event contract: what the nodes' records say, declared once.

A segment's provenance is typed (:class:`Source`, :class:`Root`) from the helper that
answered to the tables that count it; the values are the strings written to the logs.

Every kind of record the daemons write to their event logs is declared in :data:`KINDS`
(:class:`Kind`: its fields, who writes it), with a constant for its name (``SERVE`` is
``"serve"``) for the readers to filter on.  Every record also carries
:data:`COMMON_FIELDS` (``kind``, ``node``, ``at``), written by the event log itself.  A
unit test holds the daemons to it: a record written with an undeclared kind or field
fails it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

#: How a cached :class:`Source` begins: ``cache_`` + the cache entry's origin.
CACHE_PREFIX = "cache_"


class Source(StrEnum):
    """Where a helper's answer to a request came from."""

    CACHE_PREFETCH = "cache_prefetch"  # this helper's cache, put there by a push
    CACHE_TREE = "cache_tree"          # ... by an earlier tree fetch
    CACHE_MESH = "cache_mesh"          # ... by an earlier mesh pull
    CACHE_LIVE = "cache_live"          # ... by the live relay
    TREE = "tree"                      # fetched up the tree for this request
    MESH = "mesh"                      # pulled from a mesh neighbour for this request
    ORIGIN = "origin"                  # the master itself (its own answers)

    @property
    def is_cache(self) -> bool:
        return self.value.startswith(CACHE_PREFIX)

    @classmethod
    def cached(cls, how: str) -> Source:
        """The source of a cache hit on an entry that arrived by ``how`` (a cache entry's
        origin: prefetch, tree, mesh or live)."""
        return cls(CACHE_PREFIX + how)


class Root(StrEnum):
    """Where the bytes of a tree fetch were found: a helper's cache, or the origin."""

    CACHE = "cache"
    ORIGIN = "origin"


#: HTTP headers a segment answer carries: its version, :class:`Source` and :class:`Root`.
VERSION_HEADER = "X-Meshcast-Version"
SOURCE_HEADER = "X-Meshcast-Source"
ROOT_HEADER = "X-Meshcast-Root"
#: A manifest's answer to a viewer: the session's telemetry token.
TOKEN_HEADER = "X-Meshcast-Session-Token"


def is_cache(source: object) -> bool:
    """A source (any logged value, typed or not) that is a helper's cache: a
    :class:`Source` whose :attr:`Source.is_cache` holds, or an unknown string of that form."""
    return isinstance(source, str) and source.startswith(CACHE_PREFIX)


# ----------------------------------------------------------------------- record kinds

#: Fields every record carries, written by the daemons' event log itself.
COMMON_FIELDS: Mapping[str, str] = MappingProxyType({
    "kind": "str: the record's kind (a name in KINDS)",
    "node": "str: the node whose log it is",
    "at": "float: run seconds when it was written",
})


@dataclass(frozen=True)
class Kind:
    """One kind of event record: its name, its fields (name -> type: meaning) besides
    :data:`COMMON_FIELDS`, who writes it, and, for an open kind, what else it may carry
    (the keys of a mapping spread into the record)."""

    name: str
    doc: str
    fields: Mapping[str, str] = field(hash=False)
    writers: tuple[str, ...] = ()
    extra: str = ""

    @property
    def open(self) -> bool:
        """Does the record carry fields beyond those declared (see ``extra``)?"""
        return bool(self.extra)

    def allows(self, name: str) -> bool:
        """May a record of this kind carry the field ``name`` as a declared field?"""
        return name in self.fields or name in COMMON_FIELDS


#: Every record kind the daemons write, by name.
KINDS: dict[str, Kind] = {}


def _kind(name: str, doc: str, writers: str, fields: dict[str, str], extra: str = "") -> str:
    if name in KINDS:
        raise ValueError(f"record kind {name!r} declared twice")
    clash = sorted(set(fields) & set(COMMON_FIELDS))
    if clash:
        raise ValueError(f"record kind {name!r} redeclares common fields {clash}")
    KINDS[name] = Kind(name, doc, MappingProxyType(dict(fields)), tuple(writers.split()),
                       extra)
    return name


# -- every daemon ---------------------------------------------------------------------
STARTED = _kind("started", "the daemon is ready (its ready file is written)",
                "helper master engine viewer", {
                    "ip": "str: the node's address (helper, master)",
                    "cache_bytes": "int: cache capacity (helper)",
                    "policy": "str: the prefetch policy (master)",
                    "videos": "int: videos in the catalogue (master)",
                    "port": "int: the engine's port (engine)",
                    "sessions": "int: viewer sessions planned (viewer host)",
                    "players": "int: players started (viewer host)",
                }, extra="the keywords given to common.announce_ready")
TRAFFIC = _kind("traffic", "bytes sent or received by traffic class, once at the stop",
                "helper master engine viewer", {
                    "cls": "str: traffic class",
                    "direction": "str: 'tx' or 'rx'",
                    "bytes": "int: bytes over the whole run",
                })
PROCESS = _kind("process", "the daemon's CPU time, once at the stop",
                "helper master engine viewer", {"cpu_s": "float: process CPU seconds"})
REJECTED = _kind("rejected", "one message refused", "helper master engine", {
    "reason": "str: why (wrong_type, bad_route, bad_digest, ...)",
    "sender": "str: claimed sender (at most 64 characters)",
    "what": "str: message type or path (at most 64 characters)",
})
TASK_FAILED = _kind("task_failed", "a background task died of an exception",
                    "helper master engine viewer", {
                        "task": "str: the task's name",
                        "error": "str: repr of the exception (at most 200 characters)",
                    })
REJECTIONS = _kind("rejections", "refused messages so far, by reason", "helper master",
                   {"counts": "dict[str, int]: reason -> count"})
TELEMETRY_REFUSED = _kind("telemetry_refused", "telemetry the engine refused", "helper engine", {
    "status": "int: HTTP status of the engine's answer (helper)",
    "events": "int: records in the batch (helper)",
    "answer": "str: the engine's answer (helper, at most 200 characters)",
    "helper": "str: the sending helper (engine)",
    "refused": "int: records refused (engine)",
    "accepted": "int: records accepted (engine)",
    "first": "str: the first refusal (engine, at most 200 characters)",
})

# -- helper -----------------------------------------------------------------------------
SERVE = _kind("serve", "a helper answered a viewer's segment request", "helper", {
    "viewer": "str: the viewer, anonymised",
    "video": "str", "index": "int", "version": "int",
    "bytes": "int: segment bytes",
    "source": "Source: where the answer came from",
    "root": "Root: where a tree fetch's bytes were found",
    "latency_ms": "float: time to answer",
})
SERVE_FAILED = _kind("serve_failed", "a helper could not answer a viewer", "helper", {
    "video": "str", "index": "int", "error": "str (at most 200 characters)",
})
TREE_HEDGE = _kind("tree_hedge", "an ancestor was slow: the one above it was asked too",
                   "helper", {"video": "str", "index": "int",
                              "slow": "str: the ancestor that had not answered"})
UPSTREAM_SERVE = _kind("upstream_serve", "a helper answered another helper's tree or mesh fetch",
                       "helper", {
                           "to": "str: the asking helper",
                           "video": "str", "index": "int", "version": "int",
                           "source": "Source: where the bytes came from",
                           "bytes": "int",
                           "cls": "str: traffic class ('tree' or 'mesh')",
                       })
MESH_RX = _kind("mesh_rx", "a helper received one hop of a push", "helper", {
    "sender": "str: the previous hop",
    "video": "str", "index": "int", "version": "int",
    "push_id": "str",
    "dest": "bool: this helper is the push's destination",
    "kept": "bool: the copy was cached",
    "bytes": "int: payload bytes",
})
MESH_FORWARD_FAILED = _kind("mesh_forward_failed", "a push hop could not be passed on", "helper", {
    "to": "str: the next hop", "push_id": "str", "status": "int: HTTP status (0: none)",
})
PUSH_ORDER_MISSED = _kind("push_order_missed", "a push order for a segment not in the cache",
                          "helper", {"push_id": "str", "video": "str", "index": "int"})
PUSH_SENT = _kind("push_sent", "a helper pushed a cached segment on the master's order",
                  "helper", {
                      "push_id": "str", "video": "str", "index": "int",
                      "to": "str: the first hop", "dest": "str: the destination helper",
                      "bytes": "int", "source": "Source: the cached copy's source",
                  })
ROUTING = _kind("routing", "a helper installed the master's routing table", "helper", {
    "version": "int", "tier": "int",
    "parent": "str: the tree parent", "children": "list[str]",
})
INVALIDATED = _kind("invalidated", "a republish invalidation reached a helper", "helper", {
    "video": "str", "version": "int: the new version",
    "issued": "float: wall time the master issued it",
    "inv_id": "str", "sender": "str",
    "dropped": "int: cache entries dropped",
    "delay_ms": "float: issue to arrival",
})
PEERS = _kind("peers", "a helper's measured peers", "helper",
              {"metrics": "dict[str, [latency_ms, bw_mbit]]"})
NEIGHBOURS = _kind("neighbours", "a helper changed its mesh neighbours", "helper", {
    "neighbours": "list[str]", "added": "list[str]", "dropped": "list[str]",
    "reasons": "dict[str, str]: why each was added or dropped",
})
TELEMETRY_BUFFER = _kind("telemetry_buffer", "a helper's telemetry buffer at its stop", "helper", {
    "added": "int: records queued over the run",
    "dropped": "int: records dropped to make room (the engine unreachable, or a flood)",
    "queued": "int: records still waiting",
})
TELEMETRY_LOST = _kind("telemetry_lost", "a telemetry batch that could not be sent", "helper",
                       {"events": "int: records in the batch"})
LIVE_JOIN = _kind("live_join", "a helper joined a live video's multicast group", "helper", {
    "video": "str", "group": "str: multicast group", "parent": "str: the tree parent",
})
LIVE_LEAVE = _kind("live_leave", "a helper left a live video's multicast group", "helper",
                   {"video": "str"})
LIVE_RX = _kind("live_rx", "a helper received a live segment", "helper", {
    "video": "str", "index": "int", "version": "int",
    "parent": "str: the tree parent ('' before a table)", "bytes": "int",
})
CACHE = _kind("cache", "a helper's cache at its stop", "helper", {
    "used_bytes": "int", "capacity_bytes": "int",
}, extra="the cache's counters (testbed.core.cache.STAT_KEYS)")
CACHE_STATE = _kind("cache_state", "a helper's cache fill, periodically", "helper", {
    "used_bytes": "int", "capacity_bytes": "int", "entries": "int",
})

# -- master -----------------------------------------------------------------------------
CREDENTIALS = _kind("credentials", "the master issued node credentials", "master",
                    {"issued": "list[str]: the nodes given a new credential",
                     "kept": "list[str]: the nodes whose credential a restarted master kept"})
STATE_UNREADABLE = _kind("state_unreadable", "a restarted master could not read what it saved",
                         "master", {"error": "str"})
EGRESS = _kind("egress", "bytes the origin sent by class since its previous egress record",
               "master", {"by_cls": "dict[str, int]: class -> bytes"})
ORIGIN_SERVE = _kind("origin_serve", "the master answered a helper's fetch", "master", {
    "to": "str: the helper", "video": "str", "index": "int", "version": "int",
    "bytes": "int",
})
MESH_REPORT = _kind("mesh_report", "a helper reported its peer metrics to the master", "master",
                    {"helper": "str", "neighbours": "list[str]: the peers it measured"})
TIERS = _kind("tiers", "the master (re)computed the helpers' tiers", "master", {
    "version": "int", "tiers": "list[list[str]]: helpers by tier",
    "index_ms": "dict[str, float]: helper -> latency index",
})
ROUTING_RESENT = _kind("routing_resent", "the master sent a helper its routing table again: "
                       "the helper reported holding another", "master", {
                           "helper": "str", "held": "int: the version the helper holds",
                           "version": "int: the version sent",
                       })
VIEWER_SERVE = _kind("viewer_serve", "the master answered a viewer that failed over to it",
                     "master", {"viewer": "str: the X-Viewer header", "video": "str",
                                "index": "int", "version": "int", "bytes": "int"})
SEND_FAILED = _kind("send_failed", "the master could not send a helper a message", "master", {
    "to": "str", "path": "str", "error": "str: the exception's type",
})
LIVE_TX = _kind("live_tx", "the master sent a live segment to its group", "master", {
    "video": "str", "index": "int", "version": "int", "group": "str", "bytes": "int",
    "send_drops": "int: datagrams the socket dropped",
})
FORECAST_FAILED = _kind("forecast_failed", "the engine's forecast could not be had", "master",
                        {"error": "str (at most 200 characters)"})
ENGINE_WAITED = _kind("engine_waited", "the master's first forecasts waited for the engine",
                      "master", {"waited_s": "float: how long",
                                 "listening": "bool: whether it came up in time"})
FORECAST_MODEL = _kind("forecast_model", "the forecast came from a new model", "master",
                       {"version": "int: the model's version"})
FORECAST = _kind("forecast", "the master got a forecast from the engine", "master", {
    "version": "int | None: the model's version",
    "segments": "int: segments forecast", "bytes": "int: the answer's size",
})
ORACLE_BLIND = _kind("oracle_blind", "the oracle policy has no plan to read", "master",
                     {"reason": "str"})
PUSH = _kind("push", "the master pushed a segment", "master", {
    "push_id": "str", "video": "str", "index": "int",
    "dest": "str: the destination helper", "route": "list[str]: hops, source first",
    "source": "str: the route's first node (the master or a holder)",
    "keep": "list[str]: helpers on the route that keep a copy",
    "bytes": "int", "expected_hits": "float",
})
PUSH_FALLBACK = _kind("push_fallback", "a holder failed a push order; the master sent it",
                      "master", {
                          "push_id": "str", "holder": "str", "status": "int",
                          "route": "list[str]",
                      })
EVENT_ERROR = _kind("event_error", "a scheduled scenario event could not be run", "master",
                    {"error": "str"})
REPUBLISH = _kind("republish", "the master published a new version of a video", "master", {
    "video": "str", "version": "int", "inv_id": "str", "issued": "float: wall time",
})

# -- engine -----------------------------------------------------------------------------
ENGINE_SUMMARY = _kind("engine_summary", "the engine at its stop", "engine", {
    "version": "int: the model's version", "accepted": "int", "batches": "int",
    "stored": "int", "rejected": "dict[str, int]", "trainings": "int",
    "last": "dict | None: the last training", "predictions": "int: forecasts answered",
}, extra="the engine's status (testbed.core.engine.Engine.status)")
MODEL = _kind("model", "the engine trained a model", "engine", {
    "version": "int", "wall_s": "float: training time", "events": "int: records trained on",
}, extra="the training's metrics")

# -- viewer -----------------------------------------------------------------------------
MANIFEST_ERROR = _kind("manifest_error", "a player could not get its manifest", "viewer",
                       {"player": "str", "error": "str (at most 200 characters)"})
REQUEST_RETRY = _kind("request_retry", "a segment request failed and is retried", "viewer", {
    "player": "str", "video": "str", "index": "int", "attempt": "int",
    "error": "str (at most 120 characters)",
})
REQUEST = _kind("request", "a viewer's segment request was answered", "viewer", {
    "player": "str", "video": "str", "index": "int", "version": "int",
    "source": "str: the answer's source header ('?' without one)",
    "bytes": "int", "latency_ms": "float", "digest_ok": "bool",
    "sha256": "str: first 16 hex digits of the bytes' digest",
    "server": "int: who answered: 0 the session's own helper, else its n-th fallback",
    "hedge": "bool: answered by a hedge (asked of another server while this one was slow)",
})
VIEWER_HEDGE = _kind("viewer_hedge", "a segment playback waited on was asked of another "
                     "server too", "viewer", {
                         "player": "str", "video": "str", "index": "int",
                         "to": "str: the base URL asked", "outcome": "str: asked or failed",
                     })
FAILOVER = _kind("failover", "a viewer session moved to another server", "viewer", {
    "player": "str", "video": "str", "from": "str: base URL", "to": "str: base URL",
    "error": "str: what failed",
})
REQUEST_FAILED = _kind("request_failed", "a viewer gave a segment request up", "viewer",
                       {"player": "str", "video": "str", "index": "int"})
PLAYER = _kind("player", "a player event (play, stall, seek, ...)", "viewer", {
    "player": "str", "video": "str", "event": "str: the player event's kind",
    "t": "float: the event's run time",
    "playhead_s": "float", "index": "int: the segment at the playhead",
}, extra="the player event's fields (testbed.core.player)")
QOE = _kind("qoe", "a viewer session ended (or was cut by the stop)", "viewer", {
    "viewer": "str", "video": "str", "helper": "str: the helper's base URL",
    "requests": "int", "answered": "int", "cut_at_stop": "int: requests cut by the stop",
    "failovers": "int: times the session moved to another server",
    "digest_failures": "int", "bytes_by_source": "dict[Source, int]",
    "latency_p50_ms": "float | None", "ended": "bool: finished on its own",
    "error": "str: why the session never started",
    # testbed.core.player.Player.qoe
    "asked_at": "float", "joined_at": "float | None", "startup_s": "float | None",
    "abandoned_at_start": "bool", "stalls": "int", "stall_s": "float", "played_s": "float",
    "rebuffer_ratio": "float", "abandoned": "bool", "completed": "bool", "segments": "int",
    "start_index": "int", "seeks": "int", "seek_wait_s": "float", "pauses": "int",
    "pause_s": "float", "fetches": "int", "fetch_failures": "int", "late_arrivals": "int",
    "ended_at": "float | None",
}, extra="the player's QoE (testbed.core.player.Player.qoe, declared above)")
