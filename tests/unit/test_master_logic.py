"""The master's pingback rounds, tier tables and neighbour reports, on a fake clock."""

from __future__ import annotations

import json

import pytest

from testbed.core.node.effects import Record, Send, SetTimer, Timer
from testbed.core.node.master import (
    DECIDE,
    FIRST_TABLES_WAIT_S,
    PINGBACK,
    SETTLE_S,
    STAGGER_SHARE,
    MasterLogic,
    Neighbours,
    ProbeReply,
    WriteSync,
    stagger,
)
from testbed.core.timing import Pingback

IPS = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3", "h4": "10.0.0.4"}
NEAR_FAR = {"h1": 1.0, "h2": 1.2, "h3": 40.0, "h4": 42.0}


def logic(helpers=IPS, *, probes: int = 3, interval: float = 5.0, live: bool = True,
          versions=None, key: bytes = b"test") -> MasterLogic:
    return MasterLogic("m", "10.0.0.100", helpers,
                       pingback=Pingback("m", tier_count=2),
                       interval_s=interval, probes=probes, started_at=0.0, live=live,
                       versions=versions, nonce_key=key)


def probes_of(effects) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and e.msg_type == "probe"]


def routing_of(effects) -> dict[str, dict]:
    return {e.to: e.body for e in effects if isinstance(e, Send) and e.msg_type == "routing"}


def timer(effects, name: str) -> SetTimer:
    (t,) = [e for e in effects if isinstance(e, SetTimer) and e.name == name]
    return t


def round_trip(lg: MasterLogic, now: float, rtt: dict[str, float]) -> list:
    """One whole round: start, the helpers in ``rtt`` answer every probe, decide."""
    out = lg.handle(Timer(PINGBACK), now)
    for p in probes_of(out):
        if p.to in rtt:
            lg.handle(ProbeReply(p.to, p.body["nonce"], rtt[p.to], 0.0001), now + 0.1)
    decide = timer(out, DECIDE)
    return out + lg.handle(Timer(DECIDE, decide.token), decide.at)


def test_start_sets_the_first_round() -> None:
    assert logic().start(10.0) == [SetTimer(PINGBACK, 11.0)]


def test_a_round_probes_every_helper_with_distinct_nonces() -> None:
    lg = logic()
    out = lg.handle(Timer(PINGBACK), 2.0)
    probes = probes_of(out)
    assert len(probes) == 3 * len(IPS)
    assert {p.to for p in probes} == set(IPS)
    assert all(sum(p.to == h for p in probes) == 3 for h in IPS)
    nonces = [p.body["nonce"] for p in probes]
    assert len(set(nonces)) == len(nonces)
    assert all(set(p.body) == {"nonce"} and p.via == "udp" and p.cls == "control"
               for p in probes)
    assert lg.nonces == {p.body["nonce"]: p.to for p in probes}
    # the next round starts an interval after this one; the decision after the stagger
    assert timer(out, PINGBACK).at == pytest.approx(7.0)
    assert timer(out, DECIDE).at == pytest.approx(2.0 + probes[-1].delay_s + 0.004 + 0.03
                                                  + SETTLE_S)
    # a new round draws new nonces
    again = probes_of(lg.handle(Timer(PINGBACK), 7.0))
    assert not {p.body["nonce"] for p in again} & set(nonces)


def test_the_stagger_keeps_the_old_pace_for_few_helpers() -> None:
    probes = probes_of(logic().handle(Timer(PINGBACK), 0.0))
    delays = [p.delay_s for p in probes]
    # 4 ms between probes, 30 ms more between passes
    assert delays[:6] == pytest.approx([0.0, 0.004, 0.008, 0.012, 0.046, 0.050])
    assert delays == sorted(delays)


def test_the_stagger_of_ten_thousand_helpers_fits_in_half_the_interval() -> None:
    helpers = {f"h{i}": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(10_000)}
    lg = logic(helpers, interval=5.0)
    out = lg.handle(Timer(PINGBACK), 100.0)
    probes = probes_of(out)
    assert len(probes) == 30_000 and len(lg.nonces) == 30_000
    assert max(p.delay_s for p in probes) <= STAGGER_SHARE * 5.0
    assert timer(out, DECIDE).at < timer(out, PINGBACK).at
    assert stagger(10_000, 3, 5.0)[2] == pytest.approx(2.5)
    assert stagger(3, 3, 5.0) == pytest.approx((0.004, 0.03, 3 * (3 * 0.004 + 0.03)))


def test_replies_become_samples() -> None:
    lg = logic()
    round_trip(lg, 1.0, {"h1": 3.0, "h2": 7.5})
    assert lg.pingback.index.latency("h1") == 3.0
    assert lg.pingback.index.samples("h1") == 3
    assert lg.pingback.index.latency("h2") == 7.5
    assert lg.pingback.index.latency("h3") is None
    # the answered probes are no longer awaited, the others still are
    assert sorted(lg.nonces.values()) == ["h3"] * 3 + ["h4"] * 3


def test_a_helper_that_answers_nothing_times_out_at_the_next_round() -> None:
    lg = logic()
    out = lg.handle(Timer(PINGBACK), 1.0)
    probes = probes_of(out)
    # h1 answers everything, h2 one probe of three, h3 and h4 nothing
    for p in probes:
        if p.to == "h1":
            lg.handle(ProbeReply("h1", p.body["nonce"], 2.0), 1.1)
    first_h2 = next(p for p in probes if p.to == "h2")
    lg.handle(ProbeReply("h2", first_h2.body["nonce"], 2.0), 1.1)
    idx = lg.pingback.index
    assert idx.timeouts("h3") == 0  # not yet: a late answer still counts
    lg.handle(Timer(PINGBACK), 6.0)
    assert idx.timeouts("h3") == idx.timeouts("h4") == 1
    assert idx.timeouts("h1") == idx.timeouts("h2") == 0


def test_the_first_tables_wait_for_every_helper_until_the_deadline() -> None:
    lg = logic()
    answering = {h: NEAR_FAR[h] for h in ("h1", "h2", "h3")}  # h4 is silent
    for now in (1.0, 6.0, 11.0):
        out = round_trip(lg, now, answering)
        assert not [e for e in out if isinstance(e, (Record, WriteSync))]
        assert not routing_of(out)
        assert lg.pingback.version == 0
    out = round_trip(lg, FIRST_TABLES_WAIT_S + 1.0, answering)
    assert lg.pingback.version == 1
    assert set(routing_of(out)) == {"h1", "h2", "h3"}


def test_the_first_tables_come_as_soon_as_every_helper_answered() -> None:
    lg = logic()
    out = round_trip(lg, 1.0, NEAR_FAR)
    assert lg.pingback.version == 1
    (rec,) = [e for e in out if isinstance(e, Record)]
    assert rec.kind == "tiers"
    assert rec.fields == {"version": 1, "tiers": [["h1", "h2"], ["h3", "h4"]],
                          "index_ms": {"h1": 1.0, "h2": 1.2, "h3": 40.0, "h4": 42.0}}
    (sync,) = [e for e in out if isinstance(e, WriteSync)]
    assert sync.data == {"tiers": [["h1", "h2"], ["h3", "h4"]], "mesh": {}}
    # the record and the sync come before the routing messages
    kinds = [type(e).__name__ for e in out if not isinstance(e, SetTimer)
             and not (isinstance(e, Send) and e.msg_type == "probe")]
    assert kinds[:2] == ["Record", "WriteSync"]


def test_tier_tables_put_near_helpers_under_the_master_and_far_ones_below() -> None:
    lg = logic()
    routing = routing_of(round_trip(lg, 1.0, NEAR_FAR))
    assert set(routing) == set(IPS)
    for h in ("h1", "h2"):
        assert routing[h]["tier"] == 1
        assert routing[h]["parent"] == "m"
        assert routing[h]["parent_addr"] == "10.0.0.100"
        assert routing[h]["ancestors"] == ["m"]
        assert routing[h]["live_group"] == "239.77.100.1"
    for h in ("h3", "h4"):
        body = routing[h]
        assert body["tier"] == 2
        assert body["parent"] in ("h1", "h2")
        assert body["parent_addr"] == IPS[body["parent"]]
        assert body["ancestors"] == [body["parent"], "m"]
        assert body["live_group"] == f"239.77.{IPS[body['parent']].rsplit('.', 1)[1]}.1"
        assert h in routing[body["parent"]]["children"]
    assert all(b["version"] == 1 and b["tiers"] == [["h1", "h2"], ["h3", "h4"]]
               for b in routing.values())
    sends = [e for e in round_trip(logic(), 1.0, NEAR_FAR) if isinstance(e, Send)
             and e.msg_type == "routing"]
    assert all(s.path == "/control" and s.via == "http" and s.cls == "control"
               for s in sends)


def test_a_routing_table_the_helper_does_not_hold_is_sent_again() -> None:
    lg = logic()
    first = routing_of(round_trip(lg, 1.0, NEAR_FAR))
    report = {"neighbours": {}, "table": 1}
    assert lg.handle(Neighbours("h3", report), 4.0) == []                    # it holds it
    assert lg.handle(Neighbours("h3", {**report, "table": 0}), 2.0) == []   # just sent
    out = lg.handle(Neighbours("h3", {**report, "table": 0}), 5.0)         # lost: again
    assert routing_of(out) == {"h3": first["h3"]}
    assert [e.fields for e in out if isinstance(e, Record) and e.kind == "routing_resent"] == [
        {"helper": "h3", "held": 0, "version": 1}]
    assert lg.handle(Neighbours("h3", {**report, "table": 0}), 6.0) == []  # not at once
    assert routing_of(lg.handle(Neighbours("h3", {**report, "table": 0}), 8.5))
    # a report without the field (or a helper never sent a table) changes nothing
    assert lg.handle(Neighbours("h3", {"neighbours": {}}), 20.0) == []
    assert lg.handle(Neighbours("h9", {**report, "table": 0}), 20.0) == []


def test_no_live_channel_no_relay_group() -> None:
    lg = logic(live=False)
    routing = routing_of(round_trip(lg, 1.0, NEAR_FAR))
    assert {b["live_group"] for b in routing.values()} == {""}


def test_routing_goes_only_to_helpers_whose_place_changed() -> None:
    lg = logic()
    first = {h: NEAR_FAR[h] for h in ("h1", "h2", "h3")}
    round_trip(lg, 1.0, first)
    assert routing_of(round_trip(lg, FIRST_TABLES_WAIT_S + 1.0, first)).keys() \
        == {"h1", "h2", "h3"}
    # nothing moved: no new tables, nothing sent
    out = round_trip(lg, FIRST_TABLES_WAIT_S + 6.0, first)
    assert not routing_of(out) and lg.pingback.version == 1
    # h4 joins far away: it and its new parent are told; the others' places are the same
    out = round_trip(lg, FIRST_TABLES_WAIT_S + 11.0, NEAR_FAR)
    assert lg.pingback.version == 2
    routing = routing_of(out)
    parent = routing["h4"]["parent"]
    assert set(routing) == {"h4", parent}
    assert "h4" in routing[parent]["children"]


def test_foreign_nonces_and_wrong_senders_are_ignored() -> None:
    lg = logic()
    out = lg.handle(Timer(PINGBACK), 1.0)
    p1 = next(p for p in probes_of(out) if p.to == "h1")
    n1 = p1.body["nonce"]
    foreign = max(lg.nonces) + 1
    lg.handle(ProbeReply("h1", foreign, 1.0), 1.1)          # never sent
    lg.handle(ProbeReply("h2", n1, 1.0), 1.1)               # sent to h1, not h2
    assert lg.pingback.index.latency("h1") is None
    assert lg.pingback.index.latency("h2") is None
    assert lg.nonces[n1] == "h1"  # a wrong sender does not use up h1's probe
    lg.handle(ProbeReply("h1", n1, 4.0), 1.1)
    assert lg.pingback.index.latency("h1") == 4.0
    lg.handle(ProbeReply("h1", n1, 1.0), 1.2)               # the same nonce twice
    assert lg.pingback.index.samples("h1") == 1
    # a probe of the last round, answered after the next one started
    p2 = next(p for p in probes_of(out) if p.to == "h2")
    lg.handle(Timer(PINGBACK), 6.0)
    lg.handle(ProbeReply("h2", p2.body["nonce"], 1.0), 6.1)
    assert lg.pingback.index.latency("h2") is None


@pytest.mark.parametrize("rtt, held", [(-0.5, 0.0), (10_000.0, 0.0), (5.0, -0.001)])
def test_impossible_answers_are_no_samples(rtt: float, held: float) -> None:
    lg = logic()
    p = probes_of(lg.handle(Timer(PINGBACK), 1.0))[0]
    lg.handle(ProbeReply(p.to, p.body["nonce"], rtt, held), 1.1)
    assert lg.pingback.index.latency(p.to) is None


# m --10 ms-- s1 --1 ms-- h1, h2 (100 Mbit/s); s1 --20 ms-- s2 --1 ms-- h3, h4 (10 Mbit/s)
LINKS = (("m", "s1", 10.0, 1000.0), ("s1", "h1", 1.0, 100.0), ("s1", "h2", 1.0, 100.0),
         ("s1", "s2", 20.0, 10.0), ("s2", "h3", 1.0, 100.0), ("s2", "h4", None, None))


def bounded_logic() -> MasterLogic:
    return MasterLogic("m", "10.0.0.100", IPS, pingback=Pingback("m", tier_count=2),
                       interval_s=5.0, probes=1, links=LINKS)


def test_the_hold_time_cannot_bring_a_helper_nearer_than_the_links_allow() -> None:
    lg = bounded_logic()
    assert [lg.rtt_floor_ms(h) for h in IPS] == [22.0, 22.0, 62.0, 60.0]
    out = lg.handle(Timer(PINGBACK), 1.0)
    nonce = {p.to: p.body["nonce"] for p in probes_of(out)}
    # h1 says it held the probe 20 ms: 23 ms measured, 3 ms claimed, 22 ms kept (counted)
    assert lg.handle(ProbeReply("h1", nonce["h1"], 3.0, 0.020), 1.1) == [
        Record("rejected", {"reason": "held_beyond_floor", "sender": "h1",
                            "what": "probe_reply"})]
    # h2 honest; h3 a hair under its floor (the emulation's error): kept at it, not counted
    assert lg.handle(ProbeReply("h2", nonce["h2"], 23.5, 0.0002), 1.1) == []
    assert lg.handle(ProbeReply("h3", nonce["h3"], 61.8, 0.0002), 1.1) == []
    assert [lg.pingback.index.latency(h) for h in ("h1", "h2", "h3")] == [22.0, 23.5, 62.0]
    assert lg.beyond == {"held_beyond_floor": 1}
    # h4 claims a hold longer than the whole round trip: the floor again, counted
    lg.handle(Timer(PINGBACK), 6.0)
    lg.handle(Timer(PINGBACK), 11.0)
    out = lg.handle(Timer(PINGBACK), 16.0)
    (p4,) = [p for p in probes_of(out) if p.to == "h4"]
    assert lg.handle(ProbeReply("h4", p4.body["nonce"], 61.0 - 500.0, 0.5), 16.1)
    assert lg.pingback.index.latency("h4") == 60.0 and lg.beyond["held_beyond_floor"] == 2
    # without the plan's links nothing is bounded (as before)
    lg = logic()
    p = probes_of(lg.handle(Timer(PINGBACK), 1.0))[0]
    lg.handle(ProbeReply(p.to, p.body["nonce"], 3.0, 0.020), 1.1)
    assert lg.pingback.index.latency(p.to) == 3.0 and not lg.beyond


def test_neighbour_reports_are_held_within_the_links_bounds() -> None:
    lg = bounded_logic()
    body = {"neighbours": {
        "h2": {"latency_ms": 0.1, "bw_mbit": 1000},   # 4 ms and 100 Mbit/s at best: a lie
        "h3": {"latency_ms": 45.0, "bw_mbit": 12},    # 42 ms, 10 Mbit/s: within the margin
        "h4": {"latency_ms": 41.5, "bw_mbit": 1},     # a hair under 42 ms: noise
        "m": {"latency_ms": 1, "bw_mbit": 1},         # the master is nobody's neighbour
        "h9": {"latency_ms": 1, "bw_mbit": 1}}}       # nor is a stranger
    out = lg.handle(Neighbours("h1", body), 1.0)
    rejected = [e.fields["reason"] for e in out if isinstance(e, Record)
                and e.kind == "rejected"]
    assert rejected == ["unknown_peer", "unknown_peer", "report_beyond_floor"]
    got = {p: (m.latency_ms, m.bw_mbit) for p, m in lg.reports["h1"].items()}
    assert got == {"h2": (4.0, 100.0), "h3": (45.0, 10.0), "h4": (42.0, 1.0)}
    assert lg.beyond == {"unknown_peer": 2, "report_beyond_floor": 1}


@pytest.mark.parametrize("neighbours", [
    {f"h{i}": {"latency_ms": 1, "bw_mbit": 1} for i in range(65)},
    {"h2": {"latency_ms": float("nan"), "bw_mbit": 1}},
    {"h2": {"latency_ms": 1, "bw_mbit": -1}}])
def test_an_oversized_or_impossible_report_is_refused(neighbours) -> None:
    lg = bounded_logic()
    assert lg.handle(Neighbours("h1", {"neighbours": neighbours}), 1.0) == [
        Record("rejected", {"reason": "malformed", "sender": "h1", "what": "neighbours"})]
    assert "h1" not in lg.reports


def test_nonces_come_from_the_key() -> None:
    def nonces(key: bytes) -> list[int]:
        return [p.body["nonce"] for p in probes_of(logic(key=key).handle(Timer(PINGBACK), 1.0))]

    assert nonces(b"k1") == nonces(b"k1")
    assert not set(nonces(b"k1")) & set(nonces(b"k2"))
    assert all(0 <= n < 2 ** 48 for n in nonces(b"k1"))


def test_a_decision_still_due_when_the_next_round_starts_is_taken_first() -> None:
    lg = logic(interval=0.2)  # the decision (0.5 s after the probes) comes after the round
    out = lg.handle(Timer(PINGBACK), 1.0)
    stale = timer(out, DECIDE)
    for p in probes_of(out):
        lg.handle(ProbeReply(p.to, p.body["nonce"], NEAR_FAR[p.to]), 1.05)
    assert stale.at > timer(out, PINGBACK).at
    out = lg.handle(Timer(PINGBACK), 1.2)
    assert lg.pingback.version == 1 and len(routing_of(out)) == 4
    assert lg.handle(Timer(DECIDE, stale.token), stale.at) == []  # already taken


def test_neighbour_reports() -> None:
    versions = {"v1": 2, "v2": 1}
    lg = logic(versions=versions)
    body = {"neighbours": {"h2": {"latency_ms": 3, "bw_mbit": 40}}}
    inv = json.dumps([["v1", 0, 1], ["v1", 1, 2], ["v2", 5, 1]]).encode()
    out = lg.handle(Neighbours("h1", body, inv), 1.0)
    assert out == [Record("mesh_report", {"helper": "h1", "neighbours": ["h2"]}),
                   WriteSync({"tiers": [], "mesh": {"h1": ["h2"]}})]
    assert lg.reports["h1"]["h2"].latency_ms == 3.0
    assert lg.inventory["h1"] == {("v1", 1), ("v2", 5)}  # v1 version 1 is out of date
    # the same neighbours again: nothing to tell; an empty payload keeps the inventory
    body2 = {"neighbours": {"h2": {"latency_ms": 9, "bw_mbit": 40}}}
    assert lg.handle(Neighbours("h1", body2, b""), 2.0) == []
    assert lg.reports["h1"]["h2"].latency_ms == 9.0
    assert lg.inventory["h1"] == {("v1", 1), ("v2", 5)}


@pytest.mark.parametrize("neighbours", [{"h2": {"latency_ms": 3}},
                                        {"h2": {"latency_ms": "x", "bw_mbit": 1}},
                                        {"h2": 7}, ["h2"], None])
def test_a_malformed_neighbour_report_is_rejected(neighbours) -> None:
    lg = logic()
    lg.handle(Neighbours("h1", {"neighbours": {"h3": {"latency_ms": 1, "bw_mbit": 1}}}), 1.0)
    out = lg.handle(Neighbours("h1", {"neighbours": neighbours}), 2.0)
    assert out == [Record("rejected", {"reason": "malformed", "sender": "h1",
                                       "what": "neighbours"})]
    assert set(lg.reports["h1"]) == {"h3"}  # the last good report stands


def test_a_malformed_inventory_is_rejected_but_the_neighbours_count() -> None:
    lg = logic()
    body = {"neighbours": {"h2": {"latency_ms": 3, "bw_mbit": 40}}}
    out = lg.handle(Neighbours("h1", body, b"[[1, 2]]"), 1.0)
    assert out[0] == Record("rejected", {"reason": "malformed", "sender": "h1",
                                         "what": "inventory"})
    assert [e.kind for e in out if isinstance(e, Record)] == ["rejected", "mesh_report"]
    assert "h1" not in lg.inventory and set(lg.reports["h1"]) == {"h2"}


def test_the_sync_carries_tiers_and_mesh() -> None:
    lg = logic()
    lg.handle(Neighbours("h3", {"neighbours": {"h4": {"latency_ms": 1, "bw_mbit": 9},
                                               "h1": {"latency_ms": 2, "bw_mbit": 9}}}), 0.5)
    out = round_trip(lg, 1.0, NEAR_FAR)
    (sync,) = [e for e in out if isinstance(e, WriteSync)]
    assert sync.data == {"tiers": [["h1", "h2"], ["h3", "h4"]], "mesh": {"h3": ["h1", "h4"]}}


def test_from_delivery_reads_the_run_settings() -> None:
    d = {"tiers": [5.0, 30.0], "fanout": 2, "pingback_interval_s": 4.0, "pingback_probes": 2}
    lg = MasterLogic.from_delivery("m", "10.0.0.100", IPS, d, nonce_key=b"k")
    assert lg.interval_s == 4.0 and lg.probes == 2
    assert lg.pingback.bands_ms == (5.0, 30.0) and lg.pingback.fanout == 2
    assert len(probes_of(lg.handle(Timer(PINGBACK), 0.0))) == 2 * len(IPS)
