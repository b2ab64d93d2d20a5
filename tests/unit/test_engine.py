"""The prediction engine's state: telemetry in, checked and counted; models in; predictions out."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from testbed.core import demand as D
from testbed.core.engine import (
    DemandEngine,
    EngineConfig,
    EngineError,
    EventStore,
    TrainingResult,
    train,
)
from testbed.core.telemetry import MAX_BATCH, anonymise, telemetry_record
from testbed.core.workload import TRACE_COLUMNS, WorkloadConfig, generate, synthetic_catalogue

SALT = b"engine-test-salt"
SEG = 2.0
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Gradient boosting on one OpenMP thread: on a busy machine more threads spin and crawl."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def rec(kind, viewer, video, at, helper, index=None, **extra):
    if index is not None:
        extra["index"] = index
    head = index * SEG if index is not None else 0.0
    return telemetry_record(kind, viewer, SALT, video, head, at, helper, **extra)


def rq(viewer, video, at, helper, index):
    return rec("request", viewer, video, at, helper, index)


# alice plays v at h1, bob paused v at h1; carol stopped w at h2, dave plays w at h2
H1 = [rq("alice", "v", 100.0, "h1", 0), rec("start", "alice", "v", 100.5, "h1"),
      rq("alice", "v", 102.0, "h1", 1), rq("alice", "v", 104.0, "h1", 2),
      rq("alice", "v", 106.0, "h1", 3),
      rq("bob", "v", 101.0, "h1", 0), rq("bob", "v", 103.0, "h1", 1),
      rec("pause", "bob", "v", 104.5, "h1")]
H2 = [rq("carol", "w", 100.0, "h2", 0), rq("carol", "w", 102.0, "h2", 1),
      rq("carol", "w", 104.0, "h2", 2), rec("stop", "carol", "w", 105.0, "h2"),
      rq("dave", "w", 105.0, "h2", 0), rq("dave", "w", 106.0, "h2", 1)]
NOW = 107.0


@pytest.fixture
def engine() -> DemandEngine:
    e = DemandEngine(EngineConfig())
    for helper, batch in (("h1", H1), ("h2", H2)):
        rows, errors = e.ingest(batch, helper, now=NOW)
        assert errors == [] and len(rows) == len(batch)
    return e


# ---------------------------------------------------------------------- telemetry


def test_valid_records_are_stored_as_trace_rows(engine):
    assert engine.accepted == len(H1) + len(H2) and engine.batches == 2
    assert not engine.rejected
    frame = engine.store.frame()
    assert list(frame.columns) == list(TRACE_COLUMNS)
    assert len(frame) == len(engine.store) == len(H1) + len(H2)
    assert frame["at"].is_monotonic_increasing
    alice = frame[frame["viewer"] == anonymise("alice", SALT)]
    assert alice["kind"].tolist() == ["request", "start", "request", "request", "request"]
    assert alice["index"].tolist() == [0, -1, 1, 2, 3]
    assert engine.status()["stored"] == len(frame)


def bad_records():
    good = rq("alice", "v", 100.0, "h1", 4)
    missing = dict(good)
    del missing["at"]
    return [
        (missing, "missing_field"),
        ({**good, "at": "soon"}, "wrong_type"),
        ("junk", "wrong_type"),
        ({**good, "at": 200.0}, "future"),
        ({**good, "at": 100.0 - 700.0}, "too_old"),
        ({**good, "viewer": "alice"}, "not_pseudonym"),
        ({**good, "viewer": "10.0.0.7"}, "not_pseudonym"),
        ({**good, "source": "10.0.0.9:8080"}, "address"),
        ({**good, "video": "10.0.0.9"}, "address"),
        ({**good, "helper": "h2"}, "wrong_sender"),
        ({**good, "kind": "teleport"}, "bad_kind"),
        ({**good, "client_ip": "x"}, "field_not_allowed"),
    ]


def test_malformed_records_are_refused_counted_by_reason_and_the_good_ones_kept():
    e = DemandEngine(EngineConfig())
    good = [rq("alice", "v", 100.0, "h1", 0), rq("alice", "v", 102.0, "h1", 1)]
    bad = bad_records()
    batch = [good[0]] + [b for b, _ in bad] + [good[1]]
    rows, errors = e.ingest(batch, "h1", now=105.0)
    assert [r["index"] for r in rows] == [0, 1]
    assert len(errors) == len(bad)
    assert [int(err.split(":")[0].split()[1]) for err in errors] == list(range(1, len(bad) + 1))
    assert all("\n" not in err for err in errors)
    assert e.rejected == Counter(reason for _, reason in bad)
    assert e.accepted == 2 and len(e.store) == 2
    assert e.store.frame()["index"].tolist() == [0, 1]
    # a batch that is too big or not a list is refused whole
    rows, errors = e.ingest([good[0]] * (MAX_BATCH + 1), "h1", now=105.0)
    assert rows == [] and len(errors) == 1
    rows, errors = e.ingest({"events": good}, "h1", now=105.0)
    assert rows == [] and len(errors) == 1
    assert e.rejected["too_large"] == 1
    assert e.rejected["wrong_type"] == 3
    assert len(e.store) == 2 and e.batches == 3
    e.reject("unauthenticated")
    assert e.status()["rejected"]["unauthenticated"] == 1


@pytest.mark.parametrize("change, reason", [
    ({"kind": "future"}, "bad_kind"),
    ({"older": 1}, "field_not_allowed"),
])
def test_reasons_do_not_depend_on_the_sender_s_words(change, reason):
    e = DemandEngine(EngineConfig())
    rows, errors = e.ingest([{**rq("alice", "v", 100.0, "h1", 0), **change}], "h1", now=100.0)
    assert rows == [] and len(errors) == 1
    assert e.rejected == Counter({reason: 1})


def test_ingest_never_raises_on_garbage():
    e = DemandEngine(EngineConfig())
    for junk in (None, 3, "records", [None, 1.5, [], {}], [{"at": math.nan}]):
        rows, errors = e.ingest(junk, "h1", now=10.0)
        assert rows == [] and errors
    assert e.accepted == 0 and len(e.store) == 0 and sum(e.rejected.values()) == 8


def test_no_raw_viewer_id_or_address_reaches_the_store():
    e = DemandEngine(EngineConfig())
    raw = ["10.0.0.7", "10.0.0.8:5555", "alice@example", "fe80::1"]
    batch = [rq(v, "vod-0001", 50.0 + i, "h1", i) for i, v in enumerate(raw)]
    forged = [{**batch[0], "viewer": "10.0.0.7"}, {**batch[1], "source": "10.0.0.8:5555"},
              {**batch[2], "viewer": "alice@example"}]
    rows, errors = e.ingest(batch + forged, "h1", now=60.0)
    assert len(rows) == len(raw) and len(errors) == len(forged)
    frame = e.store.frame()
    assert frame["viewer"].map(lambda v: bool(HEX16.match(v))).all()
    assert set(frame["viewer"]) == {anonymise(v, SALT) for v in raw}
    text = frame.to_csv(index=False)
    assert "10.0.0." not in text and "fe80::" not in text and "alice" not in text
    assert "10.0.0." not in repr(e.predict(60.0))


# ---------------------------------------------------------------------- predictions


def test_predict_without_a_model_extrapolates_the_playheads(engine):
    out = engine.predict(NOW)
    assert out["version"] == 0 and out["t"] == NOW and out["horizon_s"] == 5.0
    # bob (paused) is due for v/2..v/5, alice for v/4..v/6; carol stopped, dave plays w
    assert out["predictions"] == {
        "h1": [["v", 4, 2.0], ["v", 5, 2.0], ["v", 2, 1.0], ["v", 3, 1.0], ["v", 6, 1.0]],
        "h2": [["w", 2, 1.0], ["w", 3, 1.0], ["w", 4, 1.0]],
    }
    for items in out["predictions"].values():
        p = [x[2] for x in items]
        assert p == sorted(p, reverse=True) and min(p) > 0
    assert {h: sorted(map(tuple, v)) for h, v in out["playheads"].items()} == {
        "h1": [("v", 1), ("v", 3)], "h2": [("w", 1)]}


def test_predict_lists_at_most_top_per_helper_and_only_the_helpers_asked(engine):
    out = engine.predict(NOW, top=2)
    assert out["predictions"] == {"h1": [["v", 4, 2.0], ["v", 5, 2.0]],
                                  "h2": [["w", 2, 1.0], ["w", 3, 1.0]]}
    only = engine.predict(NOW, helpers=["h2"])
    assert set(only["predictions"]) == {"h2"} and set(only["playheads"]) == {"h2"}
    assert only["predictions"]["h2"] == [["w", 2, 1.0], ["w", 3, 1.0], ["w", 4, 1.0]]
    unknown = engine.predict(NOW, helpers=["h9"])
    assert unknown["predictions"] == {"h9": []} and unknown["playheads"] == {}


def test_predict_forgets_sessions_after_the_timeout(engine):
    later = engine.predict(NOW + 40.0)
    assert later["predictions"] == {} and later["playheads"] == {}


@pytest.mark.parametrize("top", [0, -1, 1001, 2.5, True, "3"])
def test_bad_top_is_refused(engine, top):
    with pytest.raises(EngineError, match="top"):
        engine.predict(NOW, top=top)


def test_bad_engine_settings_are_refused():
    for kw in ({"retrain_s": 0}, {"min_train_s": -1.0}, {"max_age_s": "600"},
               {"top": 0}, {"top": True}):
        with pytest.raises(EngineError, match=next(iter(kw))):
            EngineConfig(**kw)


class Recorder:
    """A stand-in model that keeps the frame it was asked about."""

    def predict(self, frame):
        self.frame = frame.reset_index(drop=True)
        return np.ones(len(frame))


def test_predict_sees_the_features_training_sees_at_the_same_time():
    # one long session: 400 s of requests, one per segment; the engine trains on
    # build_frame over its whole store, so serving must see the same features
    e = DemandEngine(EngineConfig())
    batch = [rq("eve", "vod-0001", 2.0 * j, "h1", j) for j in range(200)]
    e.ingest(batch[:100], "h1", now=200.0)
    e.ingest(batch[100:], "h1", now=399.0)
    e.model = Recorder()
    out = e.predict(399.0)
    assert out["predictions"]["h1"]
    trained = D.build_frame(e.store.frame(399.0), [399.0], e.cfg.demand, e.n_segments)
    pd.testing.assert_frame_equal(e.model.frame, trained)


# ---------------------------------------------------------------------- training


def test_due_waits_for_min_train_s_then_for_retrain_s():
    e = DemandEngine(EngineConfig(retrain_s=30.0, min_train_s=45.0))
    assert not e.due(1000.0)                      # no telemetry yet
    e.ingest([rq("alice", "v", 100.0, "h1", 0)], "h1", now=100.0)
    assert not e.due(144.0) and e.due(145.0)
    frame = e.training_input(145.0)
    assert len(frame) == 1 and e.last_training == 145.0
    frame.loc[0, "video"] = "changed"             # a copy: the store is untouched
    assert e.store.frame()["video"].tolist() == ["v"]
    assert not e.due(174.0) and e.due(175.0)


def test_train_skips_with_a_reason_on_too_little_telemetry():
    cfg = EngineConfig(min_train_s=30.0)
    e = DemandEngine(cfg)
    e.ingest([rq("alice", "v", 100.0 + 2 * j, "h1", j) for j in range(10)], "h1", now=120.0)
    result = train(e.training_input(120.0), 120.0, cfg)
    assert result.model is None and result.metrics["skipped"] == "too little telemetry"
    empty = train(EventStore(10.0).frame(), 50.0, cfg)
    assert empty.model is None and empty.metrics["snapshots"] == 0
    assert empty.metrics["skipped"] == "too little telemetry"
    assert e.install(result) == 0 and e.model is None
    assert e.history == [result.metrics] and "version" not in e.history[0]


def test_train_skips_when_no_candidate_was_ever_requested():
    cfg = EngineConfig(min_train_s=30.0)
    # one request every 100 s: no session lasts, nothing is asked for again
    batch = [rq(f"v{j}", "v", 100.0 * j, "h1", 0) for j in range(5)]
    e = DemandEngine(cfg)
    e.ingest(batch, "h1", now=420.0)
    result = train(e.training_input(420.0), 420.0, cfg)
    assert result.metrics["snapshots"] >= 4
    assert result.model is None
    assert result.metrics["skipped"] == "no requests to learn from"


# generated telemetry, fed to the engine in 10 s batches per helper

WCFG = WorkloadConfig(tuple(f"h{i}" for i in range(6)), synthetic_catalogue(30, 5),
                      duration_s=600.0, arrival_rate=0.1, seed=7)
NSEG = {v: math.ceil(d / SEG - 1e-9) for v, d in WCFG.videos}
ECFG = EngineConfig(train_window_s=300.0, params=D.ModelParams(max_iter=30))


@pytest.fixture(scope="module")
def gen_trace() -> pd.DataFrame:
    trace = generate(WCFG).trace()
    return trace[trace["at"] < WCFG.duration_s].reset_index(drop=True)


@pytest.fixture(scope="module")
def records(gen_trace) -> list[dict]:
    out = []
    for at, helper, viewer, video, kind, head, index in gen_trace.itertuples(index=False):
        extra = {"index": int(index)} if kind == "request" else {}
        out.append(telemetry_record(kind, viewer, SALT, video, head, at, helper, **extra))
    return out


def feed(engine: DemandEngine, records: list[dict], start: float, end: float) -> None:
    """Ingest the records with ``start <= at < end`` in 10 s batches, per helper."""
    chunks: dict[int, dict[str, list]] = {}
    for r in records:
        if start <= r["at"] < end:
            chunks.setdefault(int(r["at"] // 10), {}).setdefault(r["helper"], []).append(r)
    for k in sorted(chunks):
        now = min(10.0 * (k + 1), end)
        for helper, rs in sorted(chunks[k].items()):
            for i in range(0, len(rs), 200):          # helpers send at most 200 a batch
                rows, errors = engine.ingest(rs[i:i + 200], helper, now=now)
                assert errors == [] and len(rows) == len(rs[i:i + 200])


@pytest.fixture(scope="module")
def trained(records):
    e = DemandEngine(ECFG, NSEG)
    feed(e, records, 0.0, 420.0)
    first = train(e.training_input(420.0), 420.0, ECFG, NSEG)
    v1 = e.install(first)
    feed(e, records, 420.0, 600.0)
    second = train(e.training_input(600.0), 600.0, ECFG, NSEG, previous=e.model)
    v2 = e.install(second)
    return e, first, second, (v1, v2)


def test_generated_telemetry_is_all_kept_and_pseudonymous(gen_trace, records, trained):
    e = trained[0]
    assert e.accepted == len(records) and not e.rejected
    frame = e.store.frame()
    assert len(frame) == len(records)
    assert frame["viewer"].map(lambda v: bool(HEX16.match(v))).all()
    assert not set(gen_trace["viewer"]) & set(frame["viewer"])
    assert set(frame["viewer"]) == {anonymise(v, SALT) for v in gen_trace["viewer"]}


def test_train_fits_a_model_and_install_bumps_the_version(trained):
    e, first, second, (v1, v2) = trained
    assert isinstance(first, TrainingResult) and isinstance(first.model, D.DemandModel)
    m = first.metrics
    assert m["trained_at"] == 420.0 and m["snapshots"] >= 4 and "skipped" not in m
    assert m["rows"] == first.model.trained_rows > 0
    assert m["scores"] == {}                      # nothing to compare against yet
    assert (v1, v2) == (1, 2) and e.version == 2 and e.model is second.model
    assert [h["version"] for h in e.history] == [1, 2]
    assert e.history[1]["trained_at"] == 600.0
    skipped = TrainingResult(None, {"trained_at": 630.0, "skipped": "too little telemetry"})
    assert e.install(skipped) == 2 and e.model is second.model
    assert len(e.history) == 3 and e.status()["last"] == e.history[-1]
    assert e.status()["trainings"] == 3


def test_train_scores_the_previous_model_next_to_playhead(trained):
    scores = trained[2].metrics["scores"]
    assert set(scores) == {"previous", "playhead"}
    for s in scores.values():
        assert set(s) == {"precision", "recall", "mae", "rmse"}
        assert 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1 and s["mae"] >= 0
    assert scores["previous"]["precision"] > 0


def test_train_uses_only_the_sliding_window(trained):
    first, second = trained[1], trained[2]
    # snapshots every 5 s in [now - 300, now - H]: 120..415 and 300..595
    assert first.metrics["snapshots"] == second.metrics["snapshots"] == 60
    # and the rows are the candidates of exactly those snapshots
    window = D.dataset(trained[0].store.frame(600.0), ECFG.demand, NSEG,
                       times=np.arange(300.0, 595.0 + 1e-9, 5.0))
    assert second.metrics["rows"] == len(window.frame) == second.model.trained_rows


def test_predict_with_a_model_uses_it(trained):
    e = trained[0]
    out = e.predict(600.0)
    assert out["version"] == 2
    items = [x for v in out["predictions"].values() for x in v]
    assert items and all(x[2] > 0 for x in items)
    assert any(x[2] != round(x[2]) for x in items)     # model means, not session counts
    for v in out["predictions"].values():
        assert len(v) <= ECFG.top
        assert [x[2] for x in v] == sorted((x[2] for x in v), reverse=True)


# ---------------------------------------------------------------------- store


def row(at, viewer="0123456789abcdef", index=-1):
    return {"at": at, "helper": "h1", "viewer": viewer, "video": "v",
            "kind": "request" if index >= 0 else "pause", "playhead_s": 0.0, "index": index}


def test_event_store_sorts_and_prunes_old_rows():
    store = EventStore(keep_s=10.0)
    store.add([row(5.0, index=2), row(1.0, index=0), row(3.0)])
    assert len(store) == 3 and store.total == 3
    f = store.frame()
    assert f["at"].tolist() == [1.0, 3.0, 5.0] and f["index"].tolist() == [0, -1, 2]
    assert f.dtypes["at"] == np.float64 and f.dtypes["index"] == np.int64
    store.add([row(12.0, index=3), row(4.5)])
    assert store.frame(now=14.0)["at"].tolist() == [4.5, 5.0, 12.0]   # older than 4 gone
    assert len(store) == 3 and store.total == 5
    assert store.frame(now=30.0).empty


def test_engine_keeps_training_window_plus_feature_windows():
    cfg = EngineConfig(train_window_s=100.0)
    d = cfg.demand
    assert cfg.keep_s == 100.0 + d.long_window_s + d.session_timeout_s + d.horizon_s
    e = DemandEngine(cfg)
    e.ingest([rq("alice", "v", 0.0, "h1", 0)], "h1", now=0.0)
    assert len(e.training_input(cfg.keep_s - 1.0)) == 1
    assert len(e.training_input(cfg.keep_s + 1.0)) == 0


def test_predict_answers_with_a_baseline_when_asked():
    e = DemandEngine(EngineConfig())
    recs = []
    for k, viewer in enumerate(("alice", "bob", "carol")):
        for i in range(4):
            recs.append(rq(viewer, "v", 90.0 + 2 * i + 0.1 * k, "h1", i))
    rows, errors = e.ingest(recs, "h1", now=100.0)
    assert errors == [] and len(rows) == 12
    play = e.predict(100.0, ["h1"], 5, predictor="playhead")
    pop = e.predict(100.0, ["h1"], 5, predictor="popularity")
    model = e.predict(100.0, ["h1"], 5)
    assert play["predictor"] == "playhead" and pop["predictor"] == "popularity"
    assert model["predictions"] == play["predictions"]  # no model yet: playhead stands in
    # the three viewers all asked for v/0..3 within the window and are going on: the
    # helper has just served those, popularity names nothing behind its sessions (and
    # nothing started here: no prefix); playhead extrapolation names the segments after
    assert pop["predictions"] == {"h1": []} and pop["horizon_s"] == e.cfg.demand.horizon_s
    assert {i for _, i, _ in play["predictions"]["h1"]} <= {4, 5, 6, 7, 8}
    # no start-up bursts unless asked for (EngineConfig.prefix), and never for popularity
    assert "arrivals" not in model and "arrivals" not in pop and "arrivals" not in play
    with pytest.raises(EngineError, match="predictor must be one of"):
        e.predict(100.0, ["h1"], 5, predictor="crystal-ball")


def test_predict_adds_the_start_up_bursts_of_sessions_to_come():
    e = DemandEngine(EngineConfig(prefix=3, arrivals_horizon_s=60.0))
    recs = [rec("start", f"s{k}", "v", 80.0 + 5 * k, "h1") for k in range(4)]
    recs += [rq(f"s{k}", "v", 80.5 + 5 * k, "h1", 0) for k in range(4)]
    rows, errors = e.ingest(recs, "h1", now=100.0)
    assert errors == [] and len(rows) == 8
    got = e.predict(100.0, ["h1", "h2"], 5)
    assert got["arrivals_horizon_s"] == 60.0
    burst = got["arrivals"]["h1"]
    assert [i for _, i, _ in burst] == [0, 1, 2] and {v for v, _, _ in burst} == {"v"}
    assert all(x > 0.3 for _, _, x in burst)  # 4 starts in 15 s, continued over a minute
    assert got["arrivals"]["h2"] and got["arrivals"]["h2"][0][2] < burst[0][2]
    assert "arrivals" not in DemandEngine(EngineConfig(prefix=0)).predict(100.0, ["h1"], 5)
