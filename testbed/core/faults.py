"""A seeded fault campaign, sans I/O: which faults strike when, and the steps that make them.

A campaign draws ``count`` faults over a run, one at a time: each in its own slot of the
window from ``start_s`` to ``duration_s - quiet_s`` (the quiet end lets the network settle
before it is checked), at a random time within the slot, of a kind among ``kinds`` (each
kind once, in a random order, before any twice), against a random target of that kind:

* ``helper_crash``: a helper is killed (SIGKILL) and started again ``down_s`` later, with
  an empty cache (cold);
* ``master_restart``: the master is killed and started again at once, from its saved state;
* ``engine_kill``: the prediction engine is killed and started again ``down_s`` later;
* ``controller_restart``: the SDN controller is stopped and started again at once;
* ``link_down``: a link between two switches, or a helper's access link, loses every
  packet for ``down_s``;
* ``region_cut``: every link from a region's switches to the rest of the network, for
  ``cut_s`` (tens of seconds);
* ``link_flap``: a link between two switches goes down and up every ``flap_period_s`` / 2
  for ``down_s``.

:func:`draw` gives the faults, :func:`steps` the timeline of primitive steps (kill, start,
restart, link down, link up) a backend applies.  The same seed and the same topology give
the same campaign.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import pandas as pd

from testbed.core import records as R
from testbed.core.spec import MASTER

FAULT_KINDS = ("helper_crash", "master_restart", "engine_kill", "controller_restart",
               "link_down", "region_cut", "link_flap")
#: what each kind's target is
TARGETS = {"helper_crash": "a helper", "master_restart": "the master",
           "engine_kill": "the engine", "controller_restart": "the controller",
           "link_down": "a link", "region_cut": "a region", "link_flap": "a link"}
STEP_ACTIONS = ("kill", "start", "restart", "down", "up")
SETTLE_S = 3.0  # at least this long between one fault's end and the next one's start


class FaultError(ValueError):
    """A campaign that cannot be drawn (its settings, or a topology without targets)."""


@dataclass(frozen=True)
class FaultsConfig:
    """A scenario's ``faults:`` section (seconds of run time)."""

    count: int = 6
    kinds: tuple[str, ...] = FAULT_KINDS
    start_s: float = 25.0
    quiet_s: float = 20.0
    down_s: tuple[float, float] = (4.0, 10.0)
    cut_s: tuple[float, float] = (10.0, 20.0)
    flap_period_s: float = 2.0
    fuzz_rate: float = 0.0  # validly signed hostile messages per second meanwhile (0: none)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise FaultError(f"faults.kinds: {unknown or '[]'} (known: {', '.join(FAULT_KINDS)})")
        if self.count < 0:
            raise FaultError(f"faults.count: {self.count} (must be >= 0)")
        for name in ("down_s", "cut_s"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise FaultError(f"faults.{name}: [{lo:g}, {hi:g}] (need 0 < low <= high)")
        if self.flap_period_s <= 0:
            raise FaultError(f"faults.flap_period_s: {self.flap_period_s:g} (must be > 0)")
        if not self.fuzz_rate >= 0:
            raise FaultError(f"faults.fuzz_rate: {self.fuzz_rate:g} (must be >= 0)")


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` against ``target`` from ``at_s`` for ``down_s`` (0: at once);
    ``links`` are the links it takes down, as ``(a, b)`` pairs."""

    at_s: float
    kind: str
    target: str
    down_s: float = 0.0
    links: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def end_s(self) -> float:
        return self.at_s + self.down_s

    def as_dict(self) -> dict:
        return {"at_s": round(self.at_s, 3), "kind": self.kind, "target": self.target,
                "down_s": round(self.down_s, 3), "links": ["-".join(p) for p in self.links]}


@dataclass(frozen=True, order=True)
class Step:
    """A primitive step at ``at_s``: ``action`` (kill, start, restart: a process named
    ``target``; down, up: the link ``target`` "a-b") for fault number ``fault``."""

    at_s: float
    fault: int
    action: str
    target: str


@dataclass(frozen=True)
class Targets:
    """What a topology offers to faults: helpers, the master, the engine (None: no engine),
    switch-to-switch links, helpers' access links, and each region's boundary links."""

    helpers: tuple[str, ...]
    master: str
    engine: str | None
    core_links: tuple[tuple[str, str], ...]
    access_links: Mapping[str, tuple[str, str]]
    regions: Mapping[str, tuple[tuple[str, str], ...]]

    @classmethod
    def of(cls, spec: nx.Graph, engine: str | None) -> Targets:
        role = nx.get_node_attributes(spec, "role")
        helpers = tuple(sorted((n for n, r in role.items() if r == "helper"), key=_natural))
        master = next(n for n, r in role.items() if r == "master")
        core = tuple(sorted(tuple(sorted(e, key=_natural)) for e in spec.edges
                            if role.get(e[0]) == role.get(e[1]) == "switch"))
        access = {h: tuple(sorted((h, next(iter(spec[h]))), key=_natural)) for h in helpers
                  if spec.degree(h) == 1}
        region = nx.get_node_attributes(spec, "region")
        regions: dict[str, tuple[tuple[str, str], ...]] = {}
        for r in sorted(set(region.values()), key=str):
            inside = {n for n, g in region.items() if g == r}
            edge = sorted(tuple(sorted((a, b), key=_natural)) for a, b in spec.edges
                          if (a in inside) != (b in inside))
            if edge:
                regions[str(r)] = tuple(edge)
        return cls(helpers, master, engine, core, access, regions)

    def of_kind(self, kind: str) -> list[str]:
        """The targets a fault of ``kind`` can strike (names; links as "a-b")."""
        if kind == "helper_crash":
            return list(self.helpers)
        if kind == "master_restart":
            return [self.master]
        if kind == "engine_kill":
            return [self.engine] if self.engine else []
        if kind == "controller_restart":
            return ["controller"]
        if kind == "link_down":
            return ["-".join(p) for p in (*self.core_links, *self.access_links.values())]
        if kind == "link_flap":
            return ["-".join(p) for p in self.core_links]
        return [f"region-{r}" for r in self.regions]

    def links_of(self, kind: str, target: str) -> tuple[tuple[str, str], ...]:
        if kind == "region_cut":
            return self.regions[target.removeprefix("region-")]
        if kind in ("link_down", "link_flap"):
            a, b = target.split("-", 1)
            return ((a, b),)
        return ()


def _natural(name: str) -> tuple:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1)


def draw(cfg: FaultsConfig, targets: Targets, duration_s: float, seed: int) -> tuple[Fault, ...]:
    """The campaign's faults, in time order (see the module)."""
    if cfg.count == 0:
        return ()
    kinds = [k for k in cfg.kinds if targets.of_kind(k)]
    if not kinds:
        raise FaultError(f"faults.kinds: this topology offers no target for {list(cfg.kinds)}")
    end = duration_s - cfg.quiet_s
    slot = (end - cfg.start_s) / cfg.count
    if slot < SETTLE_S + 1.0:
        raise FaultError(
            f"faults: {cfg.count} faults do not fit between start_s {cfg.start_s:g} and "
            f"{end:g} s (duration_s - quiet_s); give fewer faults or a longer run")
    rng = random.Random(f"faults:{seed}")
    # every kind once, in a random order, before any kind twice
    order = [k for _ in range(-(-cfg.count // len(kinds))) for k in rng.sample(kinds, len(kinds))]
    out = []
    for i in range(cfg.count):
        begin = cfg.start_s + i * slot
        kind = order[i]
        target = rng.choice(targets.of_kind(kind))
        lo, hi = cfg.cut_s if kind == "region_cut" else cfg.down_s
        down = 0.0 if kind in ("master_restart", "controller_restart") else rng.uniform(lo, hi)
        down = min(down, slot - SETTLE_S - 0.5)  # the fault ends inside its slot
        at = begin + rng.uniform(0.0, slot - SETTLE_S - down)
        out.append(Fault(round(at, 3), kind, target, round(down, 3),
                         targets.links_of(kind, target)))
    return tuple(out)


def steps(faults: Sequence[Fault], flap_period_s: float = 2.0) -> list[Step]:
    """The primitive steps of ``faults``, in time order."""
    out: list[Step] = []
    for i, f in enumerate(faults):
        if f.kind in ("helper_crash", "engine_kill"):
            out += [Step(f.at_s, i, "kill", f.target), Step(f.end_s, i, "start", f.target)]
        elif f.kind in ("master_restart", "controller_restart"):
            out.append(Step(f.at_s, i, "restart", f.target))
        elif f.kind == "link_flap":
            half = flap_period_s / 2
            t, down = f.at_s, True
            while t < f.end_s:
                out += [Step(round(t, 3), i, "down" if down else "up", "-".join(p))
                        for p in f.links]
                t += half
                down = not down
            if not down:  # it ended down: up again at the end
                out += [Step(f.end_s, i, "up", "-".join(p)) for p in f.links]
        else:  # link_down, region_cut
            out += [Step(f.at_s, i, "down", "-".join(p)) for p in f.links]
            out += [Step(f.end_s, i, "up", "-".join(p)) for p in f.links]
    return sorted(out)


# --------------------------------------------------------------------------- cut off


def cut_off(spec: nx.Graph, origin: str,
            link_steps: Sequence[tuple[float, str, str]]) -> dict[str, list[tuple[float, float]]]:
    """When each node had no path to ``origin``: node -> (from, to) spans in run seconds.

    ``link_steps`` are ``(at_s, action, "a-b")`` with action ``down`` or ``up``, in any
    order (others are ignored); a link down twice (two faults overlapping) is up only when
    both have ended.  A span still open at the last step ends at ``inf``.
    """
    events = sorted((float(at), action, target) for at, action, target in link_steps
                    if action in ("down", "up"))
    downs: dict[frozenset, int] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    since: dict[str, float] = {}   # node -> when it was cut off, while it is
    i = 0
    while i < len(events):
        at = events[i][0]
        while i < len(events) and events[i][0] == at:   # all the steps of one instant
            _, action, target = events[i]
            link = frozenset(target.split("-", 1))
            downs[link] = max(0, downs.get(link, 0) + (1 if action == "down" else -1))
            i += 1
        g = nx.restricted_view(spec, [], [tuple(link) for link, n in downs.items()
                                          if n and len(link) == 2])
        reach = nx.node_connected_component(g, origin) if origin in g else set()
        for node in spec.nodes:
            if node not in reach and node not in since:
                since[node] = at
            elif node in reach and node in since:
                out.setdefault(node, []).append((since.pop(node), at))
    for node, start in since.items():
        out.setdefault(node, []).append((start, float("inf")))
    return out


def overlap(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    """Seconds of ``[start, end]`` inside ``spans`` (disjoint, as :func:`cut_off` gives)."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


STALL_COLUMNS = ["at_s", "node", "player", "video", "live", "wait_s", "cut_off_s",
                 "beyond_cut_off_s"]


def stall_table(records: Iterable[dict], spec: nx.Graph,
                link_steps: Sequence[tuple[float, str, str]], warmup_s: float,
                live: Collection[str]) -> pd.DataFrame:
    """Every stall after the warm-up (ended by ``at_s``, ``wait_s`` long), with how much of
    it the viewer's host spent cut off from the origin by the links the campaign took down
    (:func:`cut_off` of ``link_steps``).  For a channel in ``live`` that time is excused:
    no new segment of it exists on the far side of the cut.  An on-demand stall is never
    excused (a copy may be held inside the region), nor is the time after the cut healed.
    ``beyond_cut_off_s`` is what is left to recovery."""
    origin = next((n for n, r in spec.nodes(data="role") if r == MASTER), None)
    spans = cut_off(spec, origin, link_steps) if origin is not None else {}
    rows = []
    for r in records:
        if (r.get("kind") != R.PLAYER or r.get("event") != "resume_play"
                or r.get("cause") != "stall" or float(r.get("at", 0.0)) < warmup_s):
            continue
        end, wait = float(r["at"]), float(r.get("wait_s") or 0.0)
        video = str(r.get("video", ""))
        is_live = video in live
        cut = overlap(end - wait, end, spans.get(r.get("node"), ()))
        rows.append({"at_s": end, "node": r.get("node"), "player": r.get("player"),
                     "video": video, "live": is_live, "wait_s": wait,
                     "cut_off_s": round(cut, 3),
                     "beyond_cut_off_s": round(wait - (cut if is_live else 0.0), 3)})
    return pd.DataFrame(rows, columns=STALL_COLUMNS)


def stall_verdict(stalls: pd.DataFrame) -> dict:
    """The longest stall left to recovery, and the stalls a cut-off region explains."""
    cut = stalls[stalls["cut_off_s"] > 0] if len(stalls) else stalls
    return {"longest_stall_beyond_cut_off_s": (float(stalls["beyond_cut_off_s"].max())
                                                if len(stalls) else 0.0),
            "stalls_cut_off": len(cut),
            "cut_off_stall_s": round(float(cut["cut_off_s"].sum()), 3) if len(cut) else 0.0}
