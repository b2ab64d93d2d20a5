"""A helper's peer measurements: every peer with few helpers, a bounded set with many."""

from __future__ import annotations

import random

import pytest

from testbed.core.content import CatalogueConfig, build_catalogue
from testbed.core.mesh import PeerMetric
from testbed.core.node import helper as H
from testbed.core.node.effects import Send, SetTimer, Timer

CAT = build_catalogue(CatalogueConfig(videos=2, live_channels=0, duration_s=10.0))


def book(n: int) -> dict[str, str]:
    return {"m1": "10.0.0.1", **{f"h{i}": f"10.1.{i // 256}.{i % 256}" for i in range(1, n + 1)}}


def logic(n: int, name: str = "h1", addresses: dict | None = None) -> H.HelperLogic:
    return H.HelperLogic(H.HelperSettings(name=name, master="m1",
                                          addresses=addresses or book(n), catalogue=CAT,
                                          cache_bytes=10_000_000, mesh_degree=3))


def rtt_of(peer: str) -> float:
    return 1.0 + (int(peer[1:]) * 7919) % 97  # fixed per peer, spread over 1-98 ms


def run_round(h: H.HelperLogic, now: float, answer=lambda p: True) -> list[str]:
    """One neighbour round: probes answered (those ``answer`` lets through), bandwidth
    samples for what it measures; the peers probed."""
    out = h.handle(Timer("neighbours"), now)
    probed = [e.to for e in out if isinstance(e, Send) and e.msg_type == "peer_probe"]
    for p in probed:
        if answer(p):
            h.handle(H.PeerRtt(p, rtt_of(p)), now + 0.01)
    wait = next(e for e in out if isinstance(e, SetTimer) and e.name == "neighbours_measured")
    out = h.handle(Timer("neighbours_measured"), wait.at)
    for e in out:
        if isinstance(e, H.MeasureBandwidth):
            h.handle(H.BandwidthSample(e.peer, e.nbytes, e.nbytes * 8 / 20e6), wait.at + 0.05)
    h.handle(Timer("bandwidth_wait"), wait.at + H.BW_WAIT_S)
    return probed


class OldRotation:
    """The probe targets as every helper chose them before the bound (the reference)."""

    def __init__(self, peers: list[str]):
        self.peers = peers
        self.rounds = 0

    def targets(self, neighbours: tuple[str, ...]) -> list[str]:
        others = [p for p in self.peers if p not in neighbours]
        if not others:
            return list(neighbours)
        start = (self.rounds * H.PEER_SAMPLE) % len(others)
        sample = (others[start:] + others[:start])[:H.PEER_SAMPLE]
        self.rounds += 1
        return [*neighbours, *sample]


@pytest.mark.parametrize("n", [2, 3, 8, 30, H.PEER_STATE_MAX + 1])
def test_few_peers_probe_exactly_as_before(n):
    h = logic(n)
    ref = OldRotation([p for p in book(n) if p not in ("h1", "m1")])
    rng = random.Random(n)
    assert list(h.peer_rtt) == ref.peers           # every peer, in address-book order
    for r in range(60):
        if r % 7 == 3:  # the neighbours change now and then
            peers = rng.sample(ref.peers, min(len(ref.peers), 5))
            h.selector.update({p: PeerMetric(rng.uniform(1, 50), 50.0) for p in peers}, r)
        assert h.probe_targets() == ref.targets(h.selector.neighbours)
    assert len(h.peer_rtt) == len(ref.peers)


def test_few_peers_same_neighbours_as_before_over_rounds():
    h = logic(8)
    ref = OldRotation([f"h{i}" for i in range(2, 9)])
    for r in range(20):
        expected = ref.targets(h.selector.neighbours)
        assert run_round(h, 10.0 * r) == expected
    nearest = sorted(ref.peers, key=rtt_of)[:3]
    assert set(h.selector.neighbours) == set(nearest)
    assert set(h.peer_rtt) == set(ref.peers)


def test_many_peers_memory_is_bounded_and_every_peer_is_probed():
    n = 200
    h = logic(n, name="h7")
    peers = [p for p in book(n) if p not in ("h7", "m1")]
    probed: set[str] = set()
    rounds = 0
    while probed != set(peers):
        rounds += 1
        assert rounds <= 2 * len(peers) // H.PEER_SAMPLE, sorted(set(peers) - probed)[:5]
        last = run_round(h, 10.0 * rounds, answer=lambda p: int(p[1:]) % 5 != 0)
        probed.update(last)
        assert len(h.peer_rtt) <= H.PEER_STATE_MAX
        assert len(h.peer_bw) <= H.PEER_STATE_MAX and len(h.peer_bw_at) <= H.PEER_STATE_MAX
        assert set(h.selector.neighbours) <= set(h.peer_rtt)
    assert "h7" not in probed and "m1" not in probed
    # the nearest peers found on the way are the neighbours; the rest kept are the best
    best = sorted((p for p in peers if int(p[1:]) % 5), key=lambda p: (rtt_of(p), p))
    assert set(h.selector.neighbours) <= set(best[:H.PEER_STATE_MAX])
    kept = [p for p, s in h.peer_rtt.items() if s and p not in last]
    assert max(rtt_of(p) for p in kept) <= rtt_of(best[H.PEER_STATE_MAX - 1])


def test_many_helpers_spread_their_probes_and_their_choices():
    """Each helper's sample starts after its own place in the address book: the first
    rounds of 300 helpers probe every peer about equally often, and their neighbours are
    many different peers, not the same few at the top of the book."""
    n = 300
    book_ = book(n)
    helpers = [logic(n, name=f"h{i}", addresses=book_) for i in range(1, n + 1)]
    probed: dict[str, int] = {}
    chosen: dict[str, int] = {}
    for h in helpers:
        for r in range(3):
            for p in run_round(h, 10.0 * (r + 1)):
                probed[p] = probed.get(p, 0) + 1
        for p in h.selector.neighbours:
            chosen[p] = chosen.get(p, 0) + 1
    # all starting at the top: 13 peers probed, one of them 897 times, and 4 neighbours
    # for everyone (one chosen by 299 of the 300)
    assert len(probed) == n and max(probed.values()) <= 40
    assert len(chosen) >= n // 2 and max(chosen.values()) <= 20


def test_many_peers_probe_the_parent_and_keep_its_rtt():
    h = logic(200, name="h7")
    h.set_table({"version": 1, "tier": 2, "parent": "h150", "children": [],
                 "ancestors": ["h150", "m1"]})
    for r in range(80):
        assert "h150" in run_round(h, 10.0 * r)
    assert h.peer_rtt["h150"] and h.pull_peers() == [
        p for p in h.selector.neighbours if rtt_of(p) < rtt_of("h150")]


def test_push_orders_accepted_along_any_peer_not_only_remembered_ones():
    h = logic(200, name="h7")
    body = {"video": CAT.ids()[0], "index": 0, "version": 1, "push_id": "p1"}
    (rec, reply) = h.push_order(1, {**body, "route": ["h7", "h190"]})
    assert reply.status == 404 and rec.kind == "push_order_missed"  # a peer: no copy here
    for bad in (["h7", "m1"], ["h7", "h7"], ["h7", "h999"], ["h8", "h9"]):
        (rec, reply) = h.push_order(1, {**body, "route": bad})
        assert reply.status == 400 and rec.fields["reason"] == "bad_route"


def test_helpers_given_one_address_book_share_its_names():
    addresses = book(300)
    a, b = logic(300, "h1", addresses), logic(300, "h2", addresses)
    assert a._names is b._names and len(a._names) == 301


def test_inventory_is_sent_only_when_the_cache_changed():
    h = logic(8)

    sends: list = []
    orig = h._choose

    def spy(now: float) -> list:
        out = orig(now)
        sends.extend(e for e in out if isinstance(e, Send) and e.msg_type == "neighbours")
        return out

    h._choose = spy
    run_round(h, 0.0)
    assert sends[-1].payload == b"[]"
    run_round(h, 10.0)
    assert sends[-1].payload == b""
    h.cache.put((CAT.ids()[0], 1), 1, b"x" * 100, "tree", 11.0)
    run_round(h, 20.0)
    assert sends[-1].payload == f'[["{CAT.ids()[0]}", 1, 1]]'.encode()
    run_round(h, 30.0)
    assert sends[-1].payload == b""
    h.cache.discard((CAT.ids()[0], 1))
    h.cache.put((CAT.ids()[0], 1), 1, b"x" * 100, "tree", 31.0)  # back as it was
    run_round(h, 40.0)
    assert sends[-1].payload == b""
