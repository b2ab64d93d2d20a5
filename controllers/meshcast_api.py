"""The northbound API as an app of its own: topology, mesh neighbours, paths and tiers.

Reads the topology file named by ``MESHCAST_TOPOLOGY``, builds a
:class:`~testbed.core.northbound.NorthboundState` over it and registers it with the
``wsgi`` context, which serves it on 127.0.0.1:``MESHCAST_API_PORT`` (default 8080).
Link metrics are the configured ones; when the mesh pairs change, a
:class:`~testbed.core.routing.PathKeeper` recomputes their latency-shortest paths, which
``GET /paths`` shows (this app installs no flows; run it beside ``l2``).  A fuller
controller app owns its state the same way and provides measured metrics, trees and the
paths it installs.  ``MESHCAST_MESH_DEGREE`` sets the mesh degree limit k (default 3).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

try:
    from controllers import compat
except ImportError:  # loaded by path: the manager has put controllers/ on sys.path
    import compat  # type: ignore[no-redef]  # and compat adds the repository root

from controllers.northbound import WSGIApplication
from testbed.core.l2 import NetView, TopologyError
from testbed.core.linkmetrics import MetricGraph
from testbed.core.northbound import (
    DEFAULT_MAX_DEGREE,
    Change,
    MeshChange,
    NorthboundState,
    paths_snapshot,
    topology_snapshot,
)
from testbed.core.routing import PathKeeper

TOPOLOGY_ENV = "MESHCAST_TOPOLOGY"
DEGREE_ENV = "MESHCAST_MESH_DEGREE"


def load_view(path: str) -> NetView:
    """The network as built, from the topology file at ``path``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return NetView.from_json(text)
    except TopologyError as exc:
        raise TopologyError(f"{path}: {exc}") from None


def mesh_degree(environ: dict[str, str]) -> int:
    """The degree limit k from ``MESHCAST_MESH_DEGREE`` (default 3)."""
    text = environ.get(DEGREE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DEGREE
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{DEGREE_ENV}={text!r}: must be an integer >= 1")
    return int(text)


class MeshcastApi(compat.BaseApp):
    """Serves the northbound API over the configured topology."""

    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.topology = os.environ.get(TOPOLOGY_ENV, "")
        try:
            if not self.topology:
                raise TopologyError(f"environment variable {TOPOLOGY_ENV} is not set")
            view = load_view(self.topology)
            degree = mesh_degree(dict(os.environ))
        except (TopologyError, ValueError) as exc:
            self.logger.error("api: %s", exc)
            sys.exit(2)
        self.graph = MetricGraph.from_view(view).graph
        self.keeper = PathKeeper()
        self.state = NorthboundState(
            view, max_degree=degree,
            topology=lambda: topology_snapshot(view, self.graph),
            paths=lambda: paths_snapshot(self.keeper.paths, self.graph, self.state.pairs),
            on_error=self.fault)
        self.state.add_listener(self.changed)
        kwargs["wsgi"].register(self.state)
        self.logger.info("api: %s: %d helpers, mesh degree k=%d", self.topology,
                         len(self.state.helpers), degree)

    def fault(self, what: str, exc: BaseException) -> None:
        """A listener or provider of the northbound state failed (the API survived it)."""
        self.logger.error("api: northbound %s", what,
                          exc_info=(type(exc), exc, exc.__traceback__))

    def changed(self, change: Change) -> None:
        """An accepted change (called under the API lock): re-path the mesh pairs."""
        if isinstance(change, MeshChange):
            self.keeper.set_pairs(change.pairs)
            self.keeper.update(time.monotonic(), self.graph)
            self.logger.info("api: %s neighbours %s; %d mesh pairs", change.helper,
                             ",".join(change.neighbours) or "-", len(change.pairs))
        else:
            self.logger.info("api: tiers version %d: %s", change.version,
                             " ".join(f"{h}={t}" for h, t in change.tiers.items()))
