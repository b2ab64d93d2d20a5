"""The master's delivery side (prefetch rounds, pushes, forecasts, republishing) on a fake
clock, with no network: the engine's and holders' answers are handed in as events."""

from __future__ import annotations

import json

import pytest

from testbed.core.content import CatalogueConfig, build_catalogue
from testbed.core.node.effects import Record, Response, Send, SetTimer, Timer
from testbed.core.node.master import DECIDE, PINGBACK, MasterLogic, Neighbours, ProbeReply
from testbed.core.node.origin import (
    ACTIVE_S,
    FORECAST,
    PREFETCH,
    REPUBLISH,
    LinkLoad,
    OriginLogic,
    OriginSettings,
    Publish,
    PushFromOrigin,
)
from testbed.core.prefetch import make_policy
from testbed.core.records import KINDS
from testbed.core.timing import Pingback
from testbed.plan import Republish

IPS = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3", "h4": "10.0.0.4"}
NEAR_FAR = {"h1": 1.0, "h2": 1.2, "h3": 40.0, "h4": 42.0}
CATALOGUE = build_catalogue(CatalogueConfig(videos=3, live_channels=1, duration_s=60.0,
                                            live_duration_s=600.0, bitrate_kbps=300,
                                            segment_s=2.0))
SEG = CATALOGUE["vod-0000"].segment_size(0)
T0 = 1_700_000_000.0


def tree(*, tables: bool = True) -> MasterLogic:
    lg = MasterLogic("m", "10.0.0.100", IPS, pingback=Pingback("m", tier_count=2),
                     interval_s=5.0, probes=3, started_at=0.0, versions=None,
                     nonce_key=b"t")
    if tables:
        out = lg.handle(Timer(PINGBACK), 0.0)
        for p in (e for e in out if isinstance(e, Send)):
            lg.handle(ProbeReply(p.to, p.body["nonce"], NEAR_FAR[p.to], 0.0), 0.1)
        (decide,) = [e for e in out if isinstance(e, SetTimer) and e.name == DECIDE]
        lg.handle(Timer(DECIDE, decide.token), decide.at)
    return lg


def report(lg: MasterLogic, helper: str, peers: dict[str, tuple[float, float]],
           inventory=None) -> None:
    body = {"neighbours": {p: {"latency_ms": lat, "bw_mbit": bw}
                           for p, (lat, bw) in peers.items()}}
    payload = json.dumps(inventory).encode() if inventory is not None else b""
    lg.handle(Neighbours(helper, body, payload), 0.5)


def origin(policy: str = "predictive", *, budget: int = 10 * SEG, source: str = "nearest",
           master: MasterLogic | None = None, republish=(), links=(), reserve=None,
           engine: str | None = "e1", versions=None, planned=None) -> OriginLogic:
    settings = OriginSettings(
        catalogue=CATALOGUE, policy=make_policy(policy), prefetch_interval_s=1.0,
        push_budget_bytes=budget, push_source=source, push_reserve=reserve, push_port=8081,
        engine=engine, engine_top=20, horizon_s=10.0, live_t0=0.0, t0=T0, links=links,
        republish=republish, planned=planned)
    return OriginLogic(master if master is not None else tree(), settings, versions,
                       id_key=b"k")


def forecast(lg: OriginLogic, now: float, predictions: dict, playheads=None,
             status: int = 200) -> list:
    """Ask the engine at ``now`` and hand back its answer."""
    (ask,) = [e for e in lg.handle(Timer(FORECAST), now) if isinstance(e, Send)]
    answer = {"version": 3, "predictions": predictions, "playheads": playheads or {}}
    return lg.handle(Response(ask.ref, status, json.dumps(answer).encode()), now + 0.05)


def records(effects, kind: str) -> list[dict]:
    return [e.fields for e in effects if isinstance(e, Record) and e.kind == kind]


def of(effects, cls) -> list:
    return [e for e in effects if isinstance(e, cls)]


WANTED = {"h3": [["vod-0000", 0, 2.0], ["vod-0000", 1, 1.5], ["vod-0001", 0, 1.0]],
          "h4": [["vod-0002", 0, 3.0]]}


# -- timers -------------------------------------------------------------------------------
def test_start_sets_the_forecast_prefetch_and_first_republish_timers() -> None:
    events = (Republish(40.0, "vod-0001"), Republish(20.0, "vod-0000"))
    lg = origin(republish=events)
    assert lg.start(100.0) == [SetTimer(FORECAST, 102.5), SetTimer(PREFETCH, 103.0),
                               SetTimer(REPUBLISH, 20.0, 1)]
    assert origin("none", engine=None).start(0.0) == []
    blind = origin("oracle", planned=None).start(0.0)
    assert records(blind, "oracle_blind") == [{"reason": "no planned workload"}]


def test_the_engine_is_asked_as_before_and_its_port_path_and_timeout_are_set() -> None:
    lg = origin("popularity,horizon_s=30")
    out = lg.handle(Timer(FORECAST), 5.0)
    (ask,) = of(out, Send)
    assert ask.to == "e1" and ask.msg_type == "predict" and ask.path == "/predict"
    assert ask.cls == "prediction" and ask.timeout_s == 3.0 and ask.ref is not None
    assert ask.body == {"helpers": ["h1", "h2", "h3", "h4"], "top": 20,
                        "predictor": "popularity", "horizon_s": 30.0}
    assert SetTimer(FORECAST, 7.0) in out
    # the next tick while the answer is out: no second ask until it comes
    assert of(lg.handle(Timer(FORECAST), 7.0), Send) == []
    got = lg.handle(Response(ask.ref, 200, b'{"version": 1, "predictions": {}}'), 7.5)
    assert [e.kind for e in of(got, Record)] == ["forecast_model", "forecast"]
    (again,) = of(got, Send)
    assert again.msg_type == "predict" and again.ref != ask.ref


def test_a_forecast_is_recorded_with_the_same_fields() -> None:
    lg = origin()
    out = forecast(lg, 2.5, WANTED)
    assert records(out, "forecast_model") == [{"version": 3}]
    (rec,) = records(out, "forecast")
    assert rec["version"] == 3 and rec["segments"] == 4 and rec["bytes"] > 0
    assert set(rec) == set(KINDS["forecast"].fields)
    # the same model again: no forecast_model
    assert records(forecast(lg, 4.5, WANTED), "forecast_model") == []


# -- prefetch rounds ----------------------------------------------------------------------
def test_a_round_pushes_the_forecast_within_the_budget_from_the_master() -> None:
    lg = origin(budget=3 * SEG)
    forecast(lg, 2.5, WANTED)
    out = lg.handle(Timer(PREFETCH), 3.0)
    assert SetTimer(PREFETCH, 4.0) in out
    pushes = records(out, "push")
    assert 0 < len(pushes) <= 3 and sum(p["bytes"] for p in pushes) <= 3 * SEG
    for p in pushes:
        assert set(p) == set(KINDS["push"].fields)
        assert p["route"][0] == "m" == p["source"] and p["route"][-1] == p["dest"]
        assert len(p["push_id"]) == 12
    sent = of(out, PushFromOrigin)
    assert [s.body["push_id"] for s in sent] == [p["push_id"] for p in pushes]
    for s, p in zip(sent, pushes):
        assert s.port == 8081
        assert s.body == {"video": p["video"], "index": p["index"], "version": 1,
                          "route": p["route"], "hop": 1, "push_id": p["push_id"],
                          "keep": p["keep"]}
    assert len({p["push_id"] for p in pushes}) == len(pushes)
    # the best value per byte first: vod-0002/0 (3 expected) at h4
    assert (pushes[0]["video"], pushes[0]["index"], pushes[0]["dest"]) == ("vod-0002", 0, "h4")


def test_the_same_key_gives_the_same_push_ids() -> None:
    def ids():
        lg = origin()
        forecast(lg, 2.5, WANTED)
        return [p["push_id"] for p in records(lg.handle(Timer(PREFETCH), 3.0), "push")]

    assert ids() == ids() and ids()


def test_a_push_starts_at_the_nearest_holder_and_a_refusal_falls_back_to_the_origin() -> None:
    master = tree()
    report(master, "h3", {"h4": (0.5, 1000.0)}, inventory=[["vod-0000", 0, 1]])
    report(master, "h4", {"h3": (0.5, 1000.0), "h2": (40.0, 50.0)})
    lg = origin(master=master)
    forecast(lg, 2.5, {"h4": [["vod-0000", 0, 2.0]]})
    out = lg.handle(Timer(PREFETCH), 3.0)
    (push,) = records(out, "push")
    assert push["route"] == ["h3", "h4"] and push["source"] == "h3"
    assert of(out, PushFromOrigin) == []
    (order,) = of(out, Send)
    assert (order.to, order.msg_type, order.path, order.cls) == ("h3", "push_order",
                                                                "/control", "control")
    assert order.ref is not None and order.body["push_id"] == push["push_id"]
    # the holder refuses: the origin sends it along its own route
    back = lg.handle(Response(order.ref, 409), 3.2)
    (fb,) = records(back, "push_fallback")
    assert fb == {"push_id": push["push_id"], "holder": "h3", "status": 409,
                  "route": fb["route"]}
    assert fb["route"][0] == "m" and fb["route"][-1] == "h4"
    (again,) = of(back, PushFromOrigin)
    assert again.body["route"] == fb["route"] and again.body["push_id"] == push["push_id"]
    # nothing came back at all: status None, as before
    lg2 = origin(master=master)
    forecast(lg2, 2.5, {"h4": [["vod-0000", 0, 2.0]]})
    (order2,) = of(lg2.handle(Timer(PREFETCH), 3.0), Send)
    assert records(lg2.handle(Response(order2.ref, 0), 3.5), "push_fallback")[0]["status"] is None
    # an accepted order needs nothing more; its answer is not handled twice
    lg3 = origin(master=master)
    forecast(lg3, 2.5, {"h4": [["vod-0000", 0, 2.0]]})
    (order3,) = of(lg3.handle(Timer(PREFETCH), 3.0), Send)
    assert lg3.handle(Response(order3.ref, 200), 3.5) == []
    assert lg3.handle(Response(order3.ref, 500), 3.6) == []


def test_with_source_master_every_push_starts_at_the_master() -> None:
    master = tree()
    report(master, "h3", {"h4": (0.5, 1000.0)}, inventory=[["vod-0000", 0, 1]])
    lg = origin(master=master, source="master")
    forecast(lg, 2.5, {"h4": [["vod-0000", 0, 2.0]]})
    (push,) = records(lg.handle(Timer(PREFETCH), 3.0), "push")
    assert push["source"] == "m"


def test_a_segment_in_flight_is_not_pushed_again_within_ten_seconds() -> None:
    lg = origin()
    forecast(lg, 2.5, WANTED)
    first = {(p["video"], p["index"], p["dest"]) for p in
             records(lg.handle(Timer(PREFETCH), 3.0), "push")}
    assert len(first) == 4
    forecast(lg, 3.5, WANTED)
    assert records(lg.handle(Timer(PREFETCH), 4.0), "push") == []
    forecast(lg, 12.5, WANTED)
    assert records(lg.handle(Timer(PREFETCH), 13.0), "push") == []
    # more than 10 s on, with no inventory saying it landed: pushed again
    forecast(lg, 13.5, WANTED)
    again = {(p["video"], p["index"], p["dest"]) for p in
             records(lg.handle(Timer(PREFETCH), 13.5), "push")}
    assert again == first


def test_a_failed_forecast_is_recorded_and_a_stale_one_pushes_nothing() -> None:
    lg = origin()
    forecast(lg, 2.5, WANTED)
    (ask,) = of(lg.handle(Timer(FORECAST), 4.5), Send)
    failed = lg.handle(Response(ask.ref, 0, b"TimeoutError"), 7.5)
    assert records(failed, "forecast_failed") == [{"error": "TimeoutError"}]
    (ask,) = of(lg.handle(Timer(FORECAST), 8.0), Send)
    failed = lg.handle(Response(ask.ref, 503, b"not trained"), 8.1)
    assert records(failed, "forecast_failed") == [{"error": "status 503: b'not trained'"}]
    (ask,) = of(lg.handle(Timer(FORECAST), 9.0), Send)
    failed = lg.handle(Response(ask.ref, 200, b"{not json"), 9.1)
    assert len(records(failed, "forecast_failed")) == 1
    # the last good forecast is older than ACTIVE_S: nothing is planned from it
    assert records(lg.handle(Timer(PREFETCH), 2.55 + ACTIVE_S + 0.1), "push") == []
    # ... while a fresh one is
    fresh = origin()
    forecast(fresh, 2.5, WANTED)
    assert records(fresh.handle(Timer(PREFETCH), 2.5 + ACTIVE_S - 1.0), "push")


def test_a_playhead_policy_pushes_after_the_playheads_within_the_live_edge() -> None:
    lg = origin("next-segments,lookahead=3", budget=100 * SEG)
    forecast(lg, 2.5, {}, playheads={"h1": [["vod-0001", 5]], "h2": [["live-00", 0]]})
    out = lg.handle(Timer(PREFETCH), 7.0)  # the live edge at 7 s: segment 2
    got = sorted((p["dest"], p["video"], p["index"]) for p in records(out, "push"))
    assert got == [("h1", "vod-0001", 6), ("h1", "vod-0001", 7), ("h1", "vod-0001", 8),
                   ("h2", "live-00", 1), ("h2", "live-00", 2)]


def test_the_oracle_plans_from_the_planned_requests() -> None:
    planned = [(5.0, "h2", "vod-0001", 3), (6.0, "h2", "vod-0001", 3), (60.0, "h1", "vod-0000", 1)]
    lg = origin("oracle", planned=planned)
    (push,) = records(lg.handle(Timer(PREFETCH), 3.0), "push")
    assert (push["dest"], push["video"], push["index"]) == ("h2", "vod-0001", 3)
    assert push["expected_hits"] == 2.0


def test_a_busy_link_leaves_no_room_for_pushes() -> None:
    links = (("m", "s1", 1.0, 10.0), ("s1", "h1", 1.0, 10.0), ("s1", "h2", 1.0, 10.0),
             ("s1", "h3", 1.0, 10.0), ("s1", "h4", 1.0, 10.0))
    busy = {"at": 3.0, "links": [{"a": "m", "b": "s1", "ab_mbit": 9.5, "ba_mbit": 0.0}]}
    lg = origin(links=links, reserve=0.2)
    assert lg.needs_load and not origin().needs_load
    forecast(lg, 2.5, WANTED)
    assert lg.handle(LinkLoad(busy), 3.0) == []
    assert records(lg.handle(Timer(PREFETCH), 3.0), "push") == []
    # the load measured long ago (or unreadable) does not count: the capacity bounds it
    lg.handle(LinkLoad(None), 4.0)
    pushes = records(lg.handle(Timer(PREFETCH), 4.0), "push")
    assert pushes and sum(p["bytes"] for p in pushes) <= 10e6 * 0.8 / 8


# -- republishing -------------------------------------------------------------------------
def test_a_republish_bumps_the_version_publishes_and_invalidates_the_first_tier() -> None:
    versions = {v: 1 for v in CATALOGUE.ids()}
    events = (Republish(20.0, "vod-0001"), Republish(30.0, "vod-0001"))
    lg = origin(republish=events, versions=versions)
    out = lg.handle(Timer(REPUBLISH, 0), 20.0)
    assert versions["vod-0001"] == 2
    assert out[0] == Publish("vod-0001", 2)
    (rec,) = records(out, "republish")
    assert rec == {"video": "vod-0001", "version": 2, "inv_id": rec["inv_id"],
                   "issued": T0 + 20.0}
    assert set(rec) == set(KINDS["republish"].fields)
    sends = of(out, Send)
    assert sorted(s.to for s in sends) == ["h1", "h2"]  # the master's children: tier 1
    for s in sends:
        assert (s.msg_type, s.path, s.cls, s.ref) == ("invalidate", "/control", "control",
                                                      None)
        assert s.body == {"video": "vod-0001", "version": 2, "issued": T0 + 20.0,
                          "inv_id": rec["inv_id"], "route": ["m"]}
    assert out.index(Publish("vod-0001", 2)) < out.index(sends[0])
    assert out[-1] == SetTimer(REPUBLISH, 30.0, 1)
    second = lg.handle(Timer(REPUBLISH, 1), 30.0)
    assert versions["vod-0001"] == 3 and not of(second, SetTimer)
    assert records(second, "republish")[0]["inv_id"] != rec["inv_id"]
    # pushes carry the new version
    forecast(lg, 31.0, {"h3": [["vod-0001", 0, 2.0]]})
    (push,) = of(lg.handle(Timer(PREFETCH), 31.5), PushFromOrigin)
    assert push.body["version"] == 3


def test_without_tables_a_republish_invalidates_every_helper() -> None:
    lg = origin(master=tree(tables=False), republish=(Republish(1.0, "vod-0000"),))
    out = lg.handle(Timer(REPUBLISH, 0), 1.0)
    assert sorted(s.to for s in of(out, Send)) == sorted(IPS)


def test_an_unknown_video_is_an_event_error_and_the_next_event_still_comes() -> None:
    events = (Republish(5.0, "nope"), Republish(6.0, "vod-0000"))
    lg = origin(republish=events)
    out = lg.handle(Timer(REPUBLISH, 0), 5.0)
    assert out == [Record("event_error", {"error": "republish: unknown video 'nope'"}),
                   SetTimer(REPUBLISH, 6.0, 1)]
    assert lg.versions["vod-0000"] == 1


@pytest.mark.parametrize("event", [Timer(REPUBLISH, 7), Timer(REPUBLISH, None),
                                   Timer("other"), Response(99, 200)])
def test_stray_events_do_nothing(event) -> None:
    assert origin().handle(event, 1.0) == []
