"""Link semantics, and the other checks a scenario needs the built topology for.

The generator's own link attributes stand; ``links.defaults`` fill only the fields an edge
does not have; ``overrides`` replace fields on the named link.  A link event must name a
link the topology has, and a flash crowd's regions helpers it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

from testbed.core.spec import HELPER, hosts
from testbed.scenario.errors import _Checker

if TYPE_CHECKING:
    from testbed.scenario.model import EventConfig, FlashCrowdConfig, LinkConfig


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
