"""The northbound API, pure: (method, path, body bytes) in, (status, JSON document) out.

:class:`NorthboundState` is what the API shows and what it lets a client change: the
network as built (a :class:`~testbed.core.l2.NetView`), the helpers' mesh neighbour sets
and the symmetric pairs they make, and the master's tiers with a version that only
increases.  Topology with link metrics, multicast trees and memberships, and current
paths come from *providers*: callbacks the controller registers that return ready JSON
documents (see :func:`topology_snapshot`, :func:`multicast_snapshot`,
:func:`paths_snapshot`).  Accepted changes go to *listeners*, so the controller can
recompute paths, trees and rules.

Every request gets an answer: a refused one is a :class:`NorthboundError` (4xx, one
line naming the field and the value) turned into ``{"error": message}``; the state is
left as it was.  There is no server here, no clock and no logging: the os-ken shim in
``controllers/northbound.py`` serves this over HTTP on loopback, and a failing listener or
provider is counted and handed to the state's ``on_error`` callback (see
:data:`FaultHandler`), which the controller app logs.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import networkx as nx

from testbed.core.l2 import NetView
from testbed.core.linkmetrics import LINK, MetricGraph
from testbed.core.routing import node_key, normal_pair, path_delay
from testbed.core.spec import HELPER

#: Largest request body accepted (bytes); a body of 8 helpers' tiers is ~100 bytes.
MAX_BODY_BYTES = 64 * 1024
#: Default mesh degree limit k: most peers a helper may have.
DEFAULT_MAX_DEGREE = 3
#: Upper bound for tiers and versions: an int32/int64 keeps them sane for any consumer.
MAX_TIER = 2**31 - 1
MAX_VERSION = 2**63 - 1

_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
_LINK_LOCAL = ipaddress.IPv4Network("224.0.0.0/24")
_SHOW_CHARS = 40

Pair = tuple[str, str]
Response = tuple[int, dict[str, Any]]
Provider = Callable[[], Mapping[str, Any]]
#: Hears a controller fault the API survived: what failed (one line) and the exception.
FaultHandler = Callable[[str, BaseException], None]


class NorthboundError(Exception):
    """A refused request: a 4xx ``status`` and one line naming the field and the value.

    400 malformed JSON or wrong types, 404 unknown host, group or resource, 405 wrong
    method, 409 conflict with the current state, 413 body too large, 422 well-formed but
    semantically invalid.
    """

    def __init__(self, status: int, message: str):
        if not 400 <= status <= 499:
            raise ValueError(f"NorthboundError status {status!r} (must be 4xx)")
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        """The answer a client gets: the status and ``{"error": message}``."""
        return self.status, {"error": self.message}


class _ProviderFailed(Exception):
    """A snapshot provider raised: answered with 503, the state is unaffected."""


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class MeshChange:
    """``helper`` now declares ``neighbours``; ``pairs`` are all mesh pairs now, of which
    ``added`` are new and ``removed`` gone (both may be empty if only the declaration moved)."""

    helper: str
    neighbours: tuple[str, ...]
    pairs: tuple[Pair, ...]
    added: tuple[Pair, ...]
    removed: tuple[Pair, ...]


@dataclass(frozen=True)
class TierChange:
    """The master's tiers are now ``tiers`` (helper -> tier, 1 nearest) at ``version``."""

    tiers: Mapping[str, int]
    version: int
    previous_version: int


Change = Union[MeshChange, TierChange]
Listener = Callable[[Change], None]


# --------------------------------------------------------------------------- validators


def show(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS - 3] + "..."


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded value (for "must be X, not Y" messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise NorthboundError(400, f"body: key {show(key)} appears twice in one object")
        seen[key] = value
    return seen


def _no_constants(name: str) -> None:
    raise NorthboundError(400, f"body: {name} is not a JSON number")


def decode_body(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Request body bytes -> decoded JSON; refuses oversize, empty, non-UTF-8 and invalid
    JSON, NaN/Infinity and objects with a repeated key (which plain JSON would let win)."""
    if len(body) > max_bytes:
        raise NorthboundError(413, f"body: larger than the limit of {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NorthboundError(400, f"body: not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise NorthboundError(400, "body: empty (expected a JSON object)")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_no_constants)
    except RecursionError:
        raise NorthboundError(400, "body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise NorthboundError(400, f"body: not valid JSON ({exc})") from None


def body_object(doc: Any, required: Sequence[str], optional: Sequence[str] = ()
                ) -> dict[str, Any]:
    """``doc`` as an object with exactly the ``required`` keys and maybe ``optional`` ones."""
    allowed = ", ".join([*required, *optional])
    if not isinstance(doc, dict):
        raise NorthboundError(400, f"body: must be a JSON object with key {allowed}, "
                                   f"not {json_kind(doc)}")
    for key in required:
        if key not in doc:
            raise NorthboundError(400, f"body: missing key {key!r}")
    for key in doc:
        if key not in required and key not in optional:
            raise NorthboundError(400, f"body: unknown key {show(key)} (allowed: {allowed})")
    return doc


def helpers_of(view: NetView) -> tuple[str, ...]:
    """The helper hosts of ``view``, in natural order."""
    return tuple(sorted((h.name for h in view.hosts.values() if h.role == HELPER),
                        key=node_key))


def check_helper(view: NetView, name: Any, where: str, role_status: int = 422) -> str:
    """``name`` if it names a helper.  Unknown names are 404; hosts of another role are
    ``role_status`` (422 in a body; a URL passes 404, as no such resource exists)."""
    if not isinstance(name, str):
        raise NorthboundError(400, f"{where}: must be a helper name (string), "
                                   f"not {json_kind(name)} {show(name)}")
    host = view.hosts.get(name)
    if host is None:
        raise NorthboundError(404, f"{where}: unknown host {show(name)}")
    if host.role != HELPER:
        raise NorthboundError(role_status, f"{where}: {name} is a {host.role}, not a helper")
    return name


def validate_neighbours(view: NetView, helper: str, value: Any, max_degree: int
                        ) -> tuple[str, ...]:
    """A neighbour list for ``helper`` -> its names in natural order.

    Known helpers only (unknown 404, other roles 422), not ``helper`` itself, no name
    twice, at most ``max_degree`` names (each 422); non-arrays and non-strings are 400.
    """
    if not isinstance(value, (list, tuple)):
        raise NorthboundError(400, f"neighbours: must be an array of helper names, "
                                   f"not {json_kind(value)}")
    seen: set[str] = set()
    for i, name in enumerate(value):
        where = f"neighbours[{i}]"
        check_helper(view, name, where)
        if name == helper:
            raise NorthboundError(422, f"{where}: {name} is the helper itself "
                                       "(a helper is not its own neighbour)")
        if name in seen:
            raise NorthboundError(422, f"{where}: {name} is listed twice")
        seen.add(name)
    if len(seen) > max_degree:
        raise NorthboundError(422, f"neighbours: {len(seen)} helpers for {helper}, more than "
                                   f"the degree limit k={max_degree}")
    return tuple(sorted(seen, key=node_key))


def validate_tiers(view: NetView, value: Any) -> dict[str, int]:
    """A tier map -> helper -> tier; every helper exactly once, tiers 1..:data:`MAX_TIER`.

    Unknown hosts are 404, other roles, missing helpers and out-of-range tiers 422,
    non-objects and non-integers 400.  (A key given twice is refused by
    :func:`decode_body`.)
    """
    if not isinstance(value, dict):
        raise NorthboundError(400, f"tiers: must be an object of helper -> tier, "
                                   f"not {json_kind(value)}")
    tiers: dict[str, int] = {}
    for name, tier in value.items():
        where = f"tiers.{name}" if name in view.hosts else "tiers"  # never echo a long key
        check_helper(view, name, where)
        if isinstance(tier, bool) or not isinstance(tier, int):
            raise NorthboundError(400, f"{where}: must be an integer, not "
                                       f"{json_kind(tier)} {show(tier)}")
        if not 1 <= tier <= MAX_TIER:
            raise NorthboundError(422, f"{where}: {show(tier)} (must be a positive integer "
                                       f"up to {MAX_TIER})")
        tiers[name] = tier
    missing = [h for h in helpers_of(view) if h not in tiers]
    if missing:
        raise NorthboundError(422, f"tiers: missing helper {', '.join(missing)} "
                                   "(every helper needs a tier)")
    return {h: tiers[h] for h in sorted(tiers, key=node_key)}


def validate_version(value: Any, current: int) -> int:
    """A requested tiers version: an integer above ``current`` (else 409)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise NorthboundError(400, f"version: must be an integer, not "
                                   f"{json_kind(value)} {show(value)}")
    if not 1 <= value <= MAX_VERSION:
        raise NorthboundError(422, f"version: {show(value)} (must be in 1..{MAX_VERSION})")
    if value <= current:
        raise NorthboundError(409, f"version: {value} is not newer than the current "
                                   f"version {current}")
    return value


def group_address(value: Any) -> str:
    """A group name -> canonical IPv4 multicast address; not an address is 400, outside
    224.0.0.0/4 or in the link-local 224.0.0.0/24 is 422."""
    if not isinstance(value, str):
        raise NorthboundError(400, f"group: must be a string, not {json_kind(value)}")
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise NorthboundError(400, f"group: {show(value)} is not an IPv4 address") from None
    if addr not in _MULTICAST:
        raise NorthboundError(422, f"group: {addr} is not a multicast address (224.0.0.0/4)")
    if addr in _LINK_LOCAL:
        raise NorthboundError(422, f"group: {addr} is link-local (224.0.0.0/24 is not routed)")
    return str(addr)


def mesh_pairs(neighbours: Mapping[str, Iterable[str]]) -> tuple[Pair, ...]:
    """The symmetric mesh pairs of declared neighbour sets: a pair exists if either end
    lists the other.  Sorted, each spelled lower name first."""
    pairs = {normal_pair(a, b) for a, names in neighbours.items() for b in names}
    return tuple(sorted(pairs, key=lambda p: (node_key(p[0]), node_key(p[1]))))


def _peers(pairs: Iterable[Pair]) -> dict[str, list[str]]:
    peers: dict[str, list[str]] = {}
    for a, b in pairs:
        peers.setdefault(a, []).append(b)
        peers.setdefault(b, []).append(a)
    return {h: sorted(p, key=node_key) for h, p in peers.items()}


# --------------------------------------------------------------------------- snapshots


def topology_snapshot(view: NetView, graph: Optional[nx.Graph] = None) -> dict[str, Any]:
    """``GET /topology``: switches and hosts as built, and every switch link (``links``) and
    host attachment (``access``) with its current ``delay_ms``, ``bw_mbit`` (capacity),
    ``avail_mbit``, ``util``, measured rate each way (``ab_mbit`` from ``a`` to ``b``,
    ``ba_mbit`` back; None until measured) and ``up``.

    ``graph`` is a :class:`~testbed.core.linkmetrics.MetricGraph`'s graph; without one
    the configured metrics are shown (all links up, idle).
    """
    g = MetricGraph.from_view(view).graph if graph is None else graph
    base = view.to_dict()
    links, access = [], []
    for u, v, data in g.edges(data=True):
        a, b = sorted((str(u), str(v)), key=node_key)
        ports = data.get("ports", {})
        rates = {(str(x), str(y)): r for (x, y), r in (data.get("rates") or {}).items()}
        row = {"a": a, "a_port": ports.get(a), "b": b, "b_port": ports.get(b),
               "delay_ms": data.get("delay_ms"), "bw_mbit": data.get("capacity_mbit"),
               "avail_mbit": data.get("avail_mbit"), "util": data.get("util"),
               "ab_mbit": rates.get((a, b)), "ba_mbit": rates.get((b, a)),
               "up": bool(data.get("up", True))}
        if data.get("kind") == LINK:
            links.append(row)
        else:
            access.append(row)
    for rows in (links, access):
        rows.sort(key=lambda k: (node_key(k["a"]), node_key(k["b"])))
    return {"switches": base["switches"], "hosts": base["hosts"], "links": links,
            "access": access}


def multicast_snapshot(memberships: Mapping[str, Iterable[str]],
                       trees: Optional[Mapping[str, nx.DiGraph]] = None) -> dict[str, Any]:
    """``GET /multicast``: group -> members, and the tree (root, source, edges with the
    parent's output port, unreachable members) where one is built."""
    trees = trees or {}
    groups: dict[str, Any] = {}
    for group in sorted(set(memberships) | set(trees), key=_group_key):
        tree = trees.get(group)
        entry: dict[str, Any] = {
            "members": sorted(memberships.get(group, ()), key=node_key),
            "root": None, "source": None, "edges": [], "unreachable": []}
        if tree is not None:
            entry["root"] = tree.graph.get("root")
            entry["source"] = tree.graph.get("source")
            entry["edges"] = [{"from": u, "to": v, "port": d.get("port")}
                              for u, v, d in sorted(tree.edges(data=True),
                                                    key=lambda e: (node_key(str(e[0])),
                                                                   node_key(str(e[1]))))]
            entry["unreachable"] = sorted(tree.graph.get("unreachable", ()), key=node_key)
        groups[group] = entry
    return {"groups": groups}


def _group_key(group: str) -> tuple[int, str]:
    try:
        return int(ipaddress.IPv4Address(group)), group
    except ValueError:
        return -1, group


def paths_snapshot(paths: Mapping[Pair, Sequence[str]], graph: Optional[nx.Graph] = None,
                   pairs: Iterable[Pair] = ()) -> dict[str, Any]:
    """``GET /paths``: every mesh pair (``pairs`` and the keys of ``paths``) with its
    current path (null: none, left to L2) and that path's delay in ``graph`` (null if
    no graph or the path uses an edge the graph lacks)."""
    found: dict[Pair, Optional[tuple[str, ...]]] = {normal_pair(a, b): None for a, b in pairs}
    for (a, b), path in paths.items():
        key = normal_pair(a, b)
        found[key] = tuple(path) if key == (a, b) else tuple(reversed(path))
    out = []
    for (a, b) in sorted(found, key=lambda p: (node_key(p[0]), node_key(p[1]))):
        path = found[a, b]
        delay = None
        if path is not None and graph is not None and all(
                graph.has_edge(u, v) for u, v in zip(path, path[1:])):
            delay = path_delay(graph, path)
        out.append({"a": a, "b": b, "path": None if path is None else list(path),
                    "delay_ms": delay})
    return {"paths": out}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(doc: Mapping[str, Any]) -> bytes:
    """A response document as JSON bytes; infinite or NaN numbers (e.g. ``avail_mbit`` of
    a link of unknown capacity) become null, which JSON can carry."""
    return (json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- the state


_Handler = Callable[..., Response]


class NorthboundState:
    """What the northbound API reads and writes; see the module docstring.

    ``max_degree`` is the mesh degree limit k; ``max_body`` the largest request body in
    bytes.  Providers default to the configured topology, no groups and no paths.
    ``on_error(what, exc)`` hears each failing listener or provider (the caller logs it);
    a failure never stops the other listeners, nor refuses or undoes a change.
    """

    def __init__(self, view: NetView, *, max_degree: int = DEFAULT_MAX_DEGREE,
                 max_body: int = MAX_BODY_BYTES, topology: Optional[Provider] = None,
                 multicast: Optional[Provider] = None, paths: Optional[Provider] = None,
                 on_error: Optional[FaultHandler] = None):
        if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 1:
            raise ValueError(f"max_degree: {max_degree!r} (must be an integer >= 1)")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError(f"max_body: {max_body!r} (must be an integer >= 1)")
        self.view = view
        self.max_degree = max_degree
        self.max_body = max_body
        self.helpers = helpers_of(view)
        self._neighbours: dict[str, tuple[str, ...]] = {}
        self._pairs: tuple[Pair, ...] = ()
        self._tiers: dict[str, int] = {}
        self._version = 0
        self._listeners: list[Listener] = []
        self.listener_errors = 0
        self.on_error = on_error
        self._providers: dict[str, Provider] = {
            "topology": lambda: topology_snapshot(view),
            "multicast": lambda: multicast_snapshot({}),
            "paths": lambda: paths_snapshot({}, pairs=self._pairs),
        }
        self.provide(topology=topology, multicast=multicast, paths=paths)
        self._routes: list[tuple[tuple[str, ...], dict[str, _Handler]]] = [
            (("health",), {"GET": self._get_health}),
            (("topology",), {"GET": self._get_topology}),
            (("multicast",), {"GET": self._get_multicast}),
            (("multicast", "*"), {"GET": self._get_group}),
            (("mesh", "neighbours"), {"GET": self._get_mesh}),
            (("mesh", "neighbours", "*"), {"GET": self._get_helper, "PUT": self._put_helper}),
            (("paths",), {"GET": self._get_paths}),
            (("tiers",), {"GET": self._get_tiers, "PUT": self._put_tiers}),
        ]

    # ----------------------------------------------------------------- wiring

    def provide(self, *, topology: Optional[Provider] = None,
                multicast: Optional[Provider] = None, paths: Optional[Provider] = None) -> None:
        """Replace the snapshot providers given (None keeps the current one)."""
        for name, fn in (("topology", topology), ("multicast", multicast), ("paths", paths)):
            if fn is not None:
                self._providers[name] = fn

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` after each accepted change (mesh or tiers)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    # ----------------------------------------------------------------- reading

    @property
    def neighbours(self) -> dict[str, tuple[str, ...]]:
        """Helper -> its declared neighbours (every helper, possibly empty)."""
        return {h: self._neighbours.get(h, ()) for h in self.helpers}

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """The symmetric mesh pairs (see :func:`mesh_pairs`)."""
        return self._pairs

    def peers(self, helper: str) -> tuple[str, ...]:
        """The helpers ``helper`` shares a mesh pair with."""
        return tuple(_peers(self._pairs).get(helper, ()))

    @property
    def tiers(self) -> dict[str, int]:
        """Helper -> tier (empty until first set)."""
        return dict(self._tiers)

    @property
    def tiers_version(self) -> int:
        """The tiers' version: 0 until first set, then strictly increasing."""
        return self._version

    # ----------------------------------------------------------------- writing

    def set_neighbours(self, helper: str, names: Any) -> Optional[MeshChange]:
        """Declare ``helper``'s neighbours (validated as a request body's would be).

        The pairs that result must leave every helper with at most k peers, else 409.
        Returns the change (None if the declaration is what it was); listeners hear it.
        """
        helper = check_helper(self.view, helper, "helper", role_status=404)
        chosen = validate_neighbours(self.view, helper, names, self.max_degree)
        if chosen == self._neighbours.get(helper, ()):
            return None
        declared = dict(self._neighbours)
        declared[helper] = chosen
        pairs = mesh_pairs(declared)
        for name, peers in _peers(pairs).items():
            if len(peers) > self.max_degree:
                raise NorthboundError(409, f"neighbours: {name} would have {len(peers)} mesh "
                                           f"peers ({', '.join(peers)}), more than the "
                                           f"degree limit k={self.max_degree}")
        old = set(self._pairs)
        self._neighbours = {h: n for h, n in declared.items() if n}
        self._pairs = pairs
        change = MeshChange(helper, chosen, pairs,
                            tuple(p for p in pairs if p not in old),
                            tuple(p for p in sorted(old - set(pairs),
                                                    key=lambda p: (node_key(p[0]),
                                                                   node_key(p[1])))))
        self._notify(change)
        return change

    def set_tiers(self, tiers: Any, version: Any = None) -> TierChange:
        """Set the master's tiers (validated as a request body's would be); ``version``
        must exceed the current one (default: current + 1).  Listeners hear it."""
        new = validate_tiers(self.view, tiers)
        if version is None:
            if self._version >= MAX_VERSION:
                raise NorthboundError(409, f"version: the current version {self._version} "
                                           "is the largest allowed; give none higher")
            number = self._version + 1
        else:
            number = validate_version(version, self._version)
        change = TierChange(dict(new), number, self._version)
        self._tiers, self._version = new, number
        self._notify(change)
        return change

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception as exc:  # a listener's fault must not undo or refuse the change
                self.listener_errors += 1
                self._fault(f"listener {listener!r} failed on {type(change).__name__}", exc)

    def _fault(self, what: str, exc: BaseException) -> None:
        """Hand a survived fault to ``on_error``; a failing handler is ignored, so that
        ``handle`` still never raises."""
        if self.on_error is None:
            return
        try:
            self.on_error(what, exc)
        except Exception:  # a broken handler: nothing is left to report it to
            pass

    # ----------------------------------------------------------------- requests

    def get(self, path: str) -> Response:
        """Answer ``GET path``."""
        return self.handle("GET", path)

    def put(self, path: str, body: bytes) -> Response:
        """Answer ``PUT path`` with ``body``."""
        return self.handle("PUT", path, body)

    def handle(self, method: str, path: str, body: bytes = b"") -> Response:
        """Answer one request; never raises (refusals are 4xx, failed providers 503)."""
        try:
            handlers, args = self._match(path)
            handler = handlers.get(method)
            if handler is None:
                raise NorthboundError(405, f"method {show(method)} not allowed on {show(path)} "
                                           f"(allowed: {', '.join(handlers)})")
            if method == "PUT":
                return handler(*args, decode_body(body, self.max_body))
            return handler(*args)
        except NorthboundError as exc:
            return exc.response()
        except _ProviderFailed as exc:
            return 503, {"error": str(exc)}

    def allowed_methods(self, path: str) -> tuple[str, ...]:
        """Methods ``path`` answers (empty if it is no endpoint): the ``Allow`` header."""
        try:
            return tuple(self._match(path)[0])
        except NorthboundError:
            return ()

    def endpoints(self) -> list[str]:
        """The endpoint patterns, e.g. ``/mesh/neighbours/<helper>``."""
        names = {"multicast": "<group>", "neighbours": "<helper>"}
        return ["/" + "/".join(names[p[-2]] if s == "*" else s for s in p)
                for p, _ in self._routes]

    def _match(self, path: str) -> tuple[dict[str, _Handler], tuple[str, ...]]:
        parts = path.split("/")
        if len(parts) > 2 and parts[-1] == "":  # one trailing slash is forgiven
            parts.pop()
        if parts[0] != "" or any(not p for p in parts[1:]):
            parts = []
        for pattern, handlers in self._routes:
            segs = parts[1:]
            if len(segs) == len(pattern) and all(p in ("*", s) for p, s in zip(pattern, segs)):
                return handlers, tuple(s for p, s in zip(pattern, segs) if p == "*")
        raise NorthboundError(404, f"no such resource {show(path)} "
                                   f"(endpoints: {', '.join(self.endpoints())})")

    def _snapshot(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._providers[name]())
        except Exception as exc:  # a controller fault: reported, never propagated
            self._fault(f"{name} provider failed", exc)
            raise _ProviderFailed(f"{name} snapshot unavailable ({type(exc).__name__}: "
                                  f"{exc})") from None

    # ----------------------------------------------------------------- endpoints

    def _get_health(self) -> Response:
        return 200, {"status": "ok", "switches": len(self.view.switches),
                     "hosts": len(self.view.hosts), "helpers": len(self.helpers),
                     "mesh_pairs": len(self._pairs), "tiers_version": self._version,
                     "listener_errors": self.listener_errors}

    def _get_topology(self) -> Response:
        return 200, self._snapshot("topology")

    def _get_multicast(self) -> Response:
        return 200, self._snapshot("multicast")

    def _get_group(self, name: str) -> Response:
        group = group_address(name)
        entry = self._snapshot("multicast").get("groups", {}).get(group)
        if entry is None:
            raise NorthboundError(404, f"group: unknown group {group} (no members, no tree)")
        return 200, {"group": group, **entry}

    def _mesh_doc(self) -> dict[str, Any]:
        return {"k": self.max_degree,
                "neighbours": {h: list(n) for h, n in self.neighbours.items()},
                "pairs": [list(p) for p in self._pairs]}

    def _get_mesh(self) -> Response:
        return 200, self._mesh_doc()

    def _helper_doc(self, helper: str) -> dict[str, Any]:
        return {"helper": helper, "k": self.max_degree,
                "neighbours": list(self._neighbours.get(helper, ())),
                "peers": list(self.peers(helper))}

    def _get_helper(self, name: str) -> Response:
        return 200, self._helper_doc(check_helper(self.view, name, "helper", role_status=404))

    def _put_helper(self, name: str, doc: Any) -> Response:
        helper = check_helper(self.view, name, "helper", role_status=404)
        body = body_object(doc, ("neighbours",))
        change = self.set_neighbours(helper, body["neighbours"])
        out = self._helper_doc(helper)
        out["changed"] = change is not None
        out["added"] = [list(p) for p in change.added] if change else []
        out["removed"] = [list(p) for p in change.removed] if change else []
        return 200, out

    def _get_paths(self) -> Response:
        return 200, self._snapshot("paths")

    def _tiers_doc(self) -> dict[str, Any]:
        return {"version": self._version, "tiers": dict(self._tiers)}

    def _get_tiers(self) -> Response:
        return 200, self._tiers_doc()

    def _put_tiers(self, doc: Any) -> Response:
        body = body_object(doc, ("tiers",), ("version",))
        if "version" in body and body["version"] is None:  # given means a number
            raise NorthboundError(400, "version: must be an integer, not null")
        change = self.set_tiers(body["tiers"], body.get("version"))
        return 200, {**self._tiers_doc(), "previous_version": change.previous_version}
