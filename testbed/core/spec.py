"""The topology spec: a networkx graph that every other layer reads.

A spec is pure data, built by a generator in ``topologies/`` and completed by a
scenario (link defaults and overrides).  The Mininet builder, the controller and
the simulator all take the same graph.

Nodes carry ``role`` (one of :data:`ROLES`); hosts have exactly one link, to a
switch.  Optional node attributes: ``region`` (int), ``tier`` (int), ``pos``
(tuple of floats, for drawing).  Edges carry the link attributes in
:class:`LinkParams` under the names of its fields.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

MASTER, HELPER, VIEWER, SWITCH, PROBE = "master", "helper", "viewer", "switch", "probe"
HOST_ROLES = (MASTER, HELPER, VIEWER, PROBE)
ROLES = (*HOST_ROLES, SWITCH)

# Mininet appends "-ethN" to a node name to name its interfaces; Linux allows 15 chars.
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")


class SpecError(ValueError):
    """A topology spec that cannot be built; the message names what is wrong."""


@dataclass(frozen=True)
class LinkParams:
    """Per-direction properties of one emulated link (both directions alike).

    delay_ms: one-way propagation delay; jitter_ms: spread of that delay (no
    reordering); loss_pct: random loss per packet and direction; bw_mbit: rate
    limit in Mbit/s (None: unlimited); queue_pkts: bottleneck buffer in packets
    (None: the interface default).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bw_mbit: float | None = None
    queue_pkts: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "loss_pct"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise SpecError(f"{name}: {value!r} (must be a number >= 0)")
        if self.loss_pct > 100:
            raise SpecError(f"loss_pct: {self.loss_pct!r} (must be <= 100)")
        if self.bw_mbit is not None and (
            not isinstance(self.bw_mbit, (int, float)) or self.bw_mbit <= 0
        ):
            raise SpecError(f"bw_mbit: {self.bw_mbit!r} (must be a number > 0)")
        if self.queue_pkts is not None and (
            not isinstance(self.queue_pkts, int) or self.queue_pkts < 1
        ):
            raise SpecError(f"queue_pkts: {self.queue_pkts!r} (must be an integer >= 1)")

    @property
    def shaped(self) -> bool:
        """True when the link needs any emulation beyond a plain veth."""
        return bool(
            self.delay_ms or self.jitter_ms or self.loss_pct or self.bw_mbit or self.queue_pkts
        )

    def replace(self, **changes: object) -> LinkParams:
        return dataclasses.replace(self, **changes)


LINK_FIELDS = tuple(f.name for f in dataclasses.fields(LinkParams))


def link_params(g: nx.Graph, u: str, v: str) -> LinkParams:
    """The :class:`LinkParams` stored on edge (u, v)."""
    data = g.edges[u, v]
    return LinkParams(**{k: data[k] for k in LINK_FIELDS if k in data})


def hosts(g: nx.Graph, roles: Iterable[str] = HOST_ROLES) -> list[str]:
    """Host names with one of ``roles``, in a stable order."""
    wanted = set(roles)
    return sorted((n for n, r in g.nodes(data="role") if r in wanted), key=natural_key)


def switches(g: nx.Graph) -> list[str]:
    return sorted((n for n, r in g.nodes(data="role") if r == SWITCH), key=natural_key)


_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=1 << 16)
def natural_key(name: str) -> tuple:
    """Sort key that puts h2 before h10 (remembered: the same names are sorted often)."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


def validate(g: nx.Graph) -> None:
    """Raise :class:`SpecError` naming the first problem found in spec ``g``."""
    if g.number_of_nodes() == 0:
        raise SpecError("topology has no nodes")
    for n, data in g.nodes(data=True):
        if not isinstance(n, str) or not _NAME_RE.match(n):
            raise SpecError(f"node {n!r}: name must match {_NAME_RE.pattern}")
        role = data.get("role")
        if role not in ROLES:
            raise SpecError(f"node {n}: role {role!r} (must be one of {', '.join(ROLES)})")
        if role != SWITCH:
            nbrs = list(g.neighbors(n))
            if len(nbrs) != 1 or g.nodes[nbrs[0]].get("role") != SWITCH:
                raise SpecError(f"host {n}: must have exactly one link, to a switch")
    for u, v in g.edges:
        try:
            link_params(g, u, v)
        except SpecError as exc:
            raise SpecError(f"link {u}-{v}: {exc}") from None
        except TypeError as exc:
            raise SpecError(f"link {u}-{v}: {exc}") from None
    if not nx.is_connected(g):
        parts = sorted(sorted(c, key=natural_key)[0] for c in nx.connected_components(g))
        raise SpecError(f"topology is not connected (parts starting at {', '.join(parts)})")
    if sum(1 for _, r in g.nodes(data="role") if r == MASTER) > 1:
        raise SpecError("topology has more than one master")


@dataclass(frozen=True)
class PathProfile:
    """What a path through the spec should measure: hops, delay, jitter, bottleneck."""

    nodes: tuple[str, ...]
    one_way_ms: float
    jitter_ms: float
    bottleneck_mbit: float | None

    @property
    def rtt_ms(self) -> float:
        return 2 * self.one_way_ms

    @property
    def links(self) -> list[str]:
        return [f"{a}-{b}" for a, b in zip(self.nodes, self.nodes[1:])]


def path_profile(g: nx.Graph, src: str, dst: str) -> PathProfile:
    """The delay-shortest path from ``src`` to ``dst`` and its configured totals."""
    nodes = nx.shortest_path(g, src, dst, weight=lambda u, v, d: d.get("delay_ms", 0.0) + 1e-9)
    params = [link_params(g, a, b) for a, b in zip(nodes, nodes[1:])]
    rates = [p.bw_mbit for p in params if p.bw_mbit]
    return PathProfile(
        tuple(nodes),
        sum(p.delay_ms for p in params),
        sum(p.jitter_ms for p in params),
        min(rates) if rates else None,
    )
