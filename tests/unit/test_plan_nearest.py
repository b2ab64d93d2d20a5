"""Who plays which helper's sessions: the one multi-source search gives what a search
from every host would (checked against that straightforward version)."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from testbed.core import spec as S
from testbed.harness.plan import assign_players, hosts_for_helpers, nearest_sources, roles_of
from topologies import generate


def reference_players(spec, viewers, helpers, per_host):
    out = {}
    for v in viewers:
        sw = next(iter(spec.neighbors(v)))
        local = sorted((h for h in helpers if sw in spec.neighbors(h)), key=S.natural_key)
        if not local:
            dist = nx.single_source_shortest_path_length(spec, v)
            best = min(dist.get(h, 1 << 30) for h in helpers)
            local = [h for h in helpers if dist.get(h) == best]
        turn = itertools.cycle(local)
        out[v] = [(f"{v}-{i}", next(turn)) for i in range(per_host)]
    return out


def reference_hosts(spec, viewers, helpers, players):
    out = {}
    for h in helpers:
        near = sorted((v for v, plist in players.items() if any(x == h for _, x in plist)),
                      key=S.natural_key)
        if not near and viewers:
            dist = nx.single_source_shortest_path_length(spec, h)
            best = min(dist.get(v, 1 << 30) for v in viewers)
            near = [v for v in viewers if dist.get(v) == best]
        out[h] = near
    return out


def random_spec(seed: int) -> nx.Graph:
    """Switches in a sparse random graph (possibly in pieces), hosts on random switches;
    some switches have none."""
    rng = random.Random(seed)
    n = rng.randint(3, 40)
    g = nx.gnp_random_graph(n, rng.uniform(0.03, 0.3), seed=seed)
    spec = nx.Graph()
    spec.add_nodes_from((f"s{i + 1}", {"role": S.SWITCH}) for i in g.nodes)
    spec.add_edges_from((f"s{u + 1}", f"s{v + 1}") for u, v in g.edges)
    used = rng.sample(range(1, n + 1), rng.randint(1, n))
    spec.add_edge("m1", f"s{rng.choice(used)}")
    spec.nodes["m1"]["role"] = S.MASTER
    for role, prefix in ((S.HELPER, "h"), (S.VIEWER, "v")):
        for i in range(rng.randint(1, 3 * n)):
            spec.add_edge(f"{prefix}{i + 1}", f"s{rng.choice(used)}")
            spec.nodes[f"{prefix}{i + 1}"]["role"] = role
    return spec


def check(spec: nx.Graph, per_host: int) -> None:
    _, helpers, viewers = roles_of(spec)
    reachable = all(any(nx.has_path(spec, v, h) for h in helpers) for v in viewers)
    if reachable:  # else both give up on a viewer with no helper in reach
        players = assign_players(spec, viewers, helpers, per_host)
        assert players == reference_players(spec, viewers, helpers, per_host)
    else:
        players = {v: [] for v in viewers[::2]}
    assert hosts_for_helpers(spec, viewers, helpers, players) == \
        reference_hosts(spec, viewers, helpers, players)
    # unsorted sources keep their own order
    shuffled = random.Random(len(viewers)).sample(viewers, len(viewers))
    assert hosts_for_helpers(spec, shuffled, helpers, {}) == \
        reference_hosts(spec, shuffled, helpers, {})


@pytest.mark.parametrize("seed", range(30))
def test_random_specs_match_a_search_from_every_host(seed):
    check(random_spec(seed), per_host=1 + seed % 4)


@pytest.mark.parametrize("name, params", [
    ("geometric", {"switches": 30, "radius": 0.2, "helpers": 70, "viewers": 9, "seed": 3}),
    ("geometric", {"switches": 12, "radius": 0.5, "helpers": 5, "viewers": 30, "seed": 8}),
    ("isp", {"helpers": 40, "viewers": 4}),
    ("tiered", {}),
])
def test_generated_specs_match_a_search_from_every_host(name, params):
    spec = generate(name, **params)
    check(spec, per_host=2)


def test_nearest_sources_keeps_every_tie():
    spec = nx.path_graph(["a", "b", "c", "d", "e"])
    spec.add_node("lone")
    near = nearest_sources(spec, ["a", "e", "c"])
    assert near["a"] == {"a"} and near["b"] == {"a", "c"} and near["d"] == {"c", "e"}
    assert "lone" not in near
    assert nearest_sources(spec, []) == {}
