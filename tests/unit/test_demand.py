"""Per-helper demand: candidates and features, labels, predictors, evaluation, replay."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from testbed.core import demand as D
from testbed.core.workload import (
    TRACE_COLUMNS,
    PopularityShift,
    WorkloadConfig,
    generate,
    synthetic_catalogue,
)

SEG = 2.0
CFG = D.DemandConfig()          # H 5 s, segment 2 s, window 60 s, long window 300 s
T = 107.0                       # the snapshot of the hand-written traces


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Gradient boosting on one OpenMP thread: on a busy machine more threads spin and crawl."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def events(rows) -> pd.DataFrame:
    """A trace from ``(at, helper, viewer, video, kind, index)`` tuples, sorted by time."""
    df = pd.DataFrame([{"at": float(at), "helper": h, "viewer": v, "video": vid, "kind": k,
                        "playhead_s": max(i, 0) * SEG, "index": i}
                       for at, h, v, vid, k, i in rows], columns=list(TRACE_COLUMNS))
    return df.sort_values("at", kind="stable").reset_index(drop=True)


def req(at, helper, viewer, video, index):
    return (at, helper, viewer, video, "request", index)


def ev(at, helper, viewer, video, kind):
    return (at, helper, viewer, video, kind, -1)


# Viewer a plays v at h1 (one request per segment_s); b paused v at h1; c stopped w at h1;
# d plays v at h2; "old" asked for v long before the window.
A = [req(100, "h1", "a", "v", 0), ev(100.5, "h1", "a", "v", "start"),
     req(102, "h1", "a", "v", 1), req(104, "h1", "a", "v", 2), req(106, "h1", "a", "v", 3)]
B = [req(101, "h1", "b", "v", 0), req(103, "h1", "b", "v", 1), ev(104.5, "h1", "b", "v", "pause")]
C = [req(100, "h1", "c", "w", 0), ev(100.2, "h1", "c", "w", "start"), req(102, "h1", "c", "w", 1),
     ev(103, "h1", "c", "w", "stop")]
DD = [req(105, "h2", "d", "v", 0), req(106, "h2", "d", "v", 1)]
OLD = [req(40, "h1", "old", "v", 0)]
BASE = A + B + C + DD + OLD


def rows_of(frame, helper, video):
    sub = frame[(frame["helper"] == helper) & (frame["video"] == video)]
    return sub.set_index("index")


# ---------------------------------------------------------------------- candidates


def test_playhead_candidates_follow_the_last_request():
    frame = D.build_frame(events(A), [T], CFG)
    assert set(frame["t"]) == {T} and set(frame["helper"]) == {"h1"}
    assert set(frame.columns) == {"t", "helper", "video", "index", *D.FEATURES}
    v = rows_of(frame, "h1", "v")
    ahead = v[v["n_near"] > 0]
    assert list(ahead.index) == [4, 5, 6, 7, 8]           # lookahead = ceil(5/2)+2 = 5
    k = np.arange(1, 6)
    assert list(ahead["eta_min"]) == list(106.0 + k * SEG - T)
    assert list(ahead["k_min"]) == list(k.astype(float))
    assert list(ahead["n_due"]) == [1, 1, 1, 0, 0]          # due within H = 5 s
    assert (ahead["n_due_paused"] == 0).all()
    assert (ahead["since_req_min"] == 1.0).all() and (ahead["age_min"] == 7.0).all()
    assert (ahead["n_sessions"] == 1).all() and (ahead["helper_active"] == 1).all()
    # the segments already served are popularity candidates, no session is due for them
    behind = v[v["n_near"] == 0]
    assert list(behind.index) == [0, 1, 2, 3]
    assert (behind["eta_min"] == 1e6).all() and (behind["n_due"] == 0).all()


def test_candidates_reach_at_most_2h_ahead():
    cfg = D.DemandConfig(segment_s=4.0)                 # lookahead ceil(5/4)+2 = 4
    e = events([req(100, "h1", "a", "v", 0), req(104, "h1", "a", "v", 1)])
    frame = D.build_frame(e, [105.0], cfg)
    ahead = frame[frame["n_near"] > 0]
    assert list(ahead["index"]) == [2, 3]               # eta 3 and 7; 11 and 15 > 2H
    assert list(ahead["eta_min"]) == [3.0, 7.0] and list(ahead["n_due"]) == [1, 0]


def test_paused_session_counts_apart_and_a_stopped_one_gives_no_candidates():
    # r paused and then asked for the next segment: it plays again
    R = [req(100, "h1", "r", "u", 0), ev(101, "h1", "r", "u", "pause"), req(105, "h1", "r", "u", 1)]
    u = rows_of(D.build_frame(events(R), [T], CFG), "h1", "u")
    assert u.loc[2, ["n_due", "n_due_paused", "eta_min"]].tolist() == [1, 0, 0]
    frame = D.build_frame(events(A + B + C), [T], CFG)
    v = rows_of(frame, "h1", "v")
    # index 4: a (eta 1, playing) and b (last request 103, k = 3, eta 2, paused)
    assert v.loc[4, ["n_due", "n_due_paused", "n_near", "eta_min"]].tolist() == [1, 1, 2, 1]
    assert v.loc[5, ["n_due", "n_due_paused"]].tolist() == [1, 1]
    # index 6: a due at eta 5, b at eta 6 is past H
    assert v.loc[6, ["n_due", "n_due_paused", "n_near"]].tolist() == [1, 0, 2]
    # index 2 and 3: b only (due, but paused), eta 103 + 2k - 107
    assert v.loc[2, ["n_due", "n_due_paused", "eta_min"]].tolist() == [0, 1, -2]
    assert v.loc[3, ["n_due", "n_due_paused", "eta_min"]].tolist() == [0, 1, 0]
    assert (v["n_sessions"] == 2).all()
    # c stopped at 103: its segments are only popularity candidates, nothing past them
    w = rows_of(frame, "h1", "w")
    assert list(w.index) == [0, 1]
    assert (w[["n_due", "n_due_paused", "n_near", "n_sessions"]] == 0).all().all()
    assert (frame["helper_active"] == 2).all()
    # playhead extrapolation sees both sessions
    pred = D.PlayheadExtrapolation(CFG).predict(frame)
    assert (pred == frame["n_due"] + frame["n_due_paused"]).all()


@pytest.mark.parametrize("end", sorted(D.ENDS))
def test_every_kind_of_end_closes_the_session(end):
    frame = D.build_frame(events(A + [ev(106.5, "h1", "a", "v", end)]), [T], CFG)
    assert (frame["n_near"] == 0).all() and (frame["helper_active"] == 0).all()
    # an end before the last request belongs to an earlier stretch: still playing
    again = D.build_frame(events(A[:-1] + [ev(105.0, "h1", "a", "v", end), A[-1]]), [T], CFG)
    assert again.loc[again["index"] == 4, "n_due"].tolist() == [1]


def test_timed_out_session_gives_no_candidates():
    cfg = D.DemandConfig(session_timeout_s=10.0)
    frame = D.build_frame(events(A), [106.0 + 10.0, 106.0 + 10.5], cfg)
    at_edge, late = frame[frame["t"] == 116.0], frame[frame["t"] == 116.5]
    assert (at_edge["n_near"] > 0).any()
    assert (late["n_near"] == 0).all() and (late["helper_active"] == 0).all()


def test_window_counts_match_hand_counts():
    # a request exactly at t - window_s is outside (t - w, t]; one exactly at t is inside
    rows = BASE + [req(T - 60.0, "h1", "edge", "v", 0), req(T, "h1", "e", "v", 0)]
    frame = D.build_frame(events(rows), [T], CFG)
    h1v, h1w, h2v = rows_of(frame, "h1", "v"), rows_of(frame, "h1", "w"), rows_of(frame, "h2", "v")
    # seg_local: requests for the segment at the helper; seg_global: at every helper
    assert h1v.loc[0, ["seg_local", "seg_global"]].tolist() == [3, 4]     # a b e | + d
    assert h1v.loc[1, ["seg_local", "seg_global"]].tolist() == [2, 3]     # a b | + d
    assert h1v.loc[3, ["seg_local", "seg_global"]].tolist() == [1, 1]
    assert h2v.loc[0, ["seg_local", "seg_global"]].tolist() == [1, 4]
    assert h1w.loc[0, ["seg_local", "seg_global"]].tolist() == [1, 1]
    # video counts: a 4 + b 2 + e 1 at h1, and d 2 at h2
    assert (h1v["vid_local"] == 7).all() and (h1v["vid_global"] == 9).all()
    assert (h2v["vid_local"] == 2).all() and (h2v["vid_global"] == 9).all()
    assert (h1w["vid_local"] == 2).all() and (h1w["vid_global"] == 2).all()
    # long window (300 s): starts of a (v) and c (w); old and edge requests count in rates
    assert (h1v["vid_starts_local"] == 1).all() and (h1w["vid_starts_local"] == 1).all()
    h1 = frame[frame["helper"] == "h1"]
    assert (h1["helper_arrivals"] == 2).all()
    assert h1["helper_pause_rate"].tolist() == pytest.approx([1 / 11] * len(h1))
    assert h1["helper_stop_rate"].tolist() == pytest.approx([1 / 11] * len(h1))
    assert (h1["helper_seek_rate"] == 0).all()
    h2 = frame[frame["helper"] == "h2"]
    assert (h2[["helper_arrivals", "helper_pause_rate", "helper_stop_rate"]] == 0).all().all()
    assert (h1["helper_active"] == 3).all() and (h2["helper_active"] == 1).all()


def test_global_top_segments_reach_every_helper_with_sessions():
    frame = D.build_frame(events(BASE), [T], CFG)
    # h2 never served w, but w's segments are among the most requested of the window
    assert list(rows_of(frame, "h2", "w").index) == [0, 1]
    only_top = D.build_frame(events(BASE), [T], D.DemandConfig(global_top=1, local_top=1))
    h2 = only_top[only_top["helper"] == "h2"]
    assert set(h2.loc[h2["n_near"] == 0, "index"]) == {0}   # v/0, the most requested


FUTURE = [req(107.5, "h1", "a", "v", 4), ev(108.0, "h1", "b", "v", "resume"),
          req(108.5, "h1", "b", "v", 2), req(109.0, "h3", "f", "x", 0),
          req(110.0, "h1", "g", "y", 70), ev(112.0, "h1", "a", "v", "stop"),
          req(150.0, "h2", "d", "v", 2), ev(151.0, "h2", "d", "v", "seek")]


def test_features_use_only_events_at_or_before_t():
    times = [103.0, 105.0, T]
    past = D.build_frame(events(BASE), times, CFG)
    both = D.build_frame(events(BASE + FUTURE), times, CFG)
    assert len(past) > 0
    pd.testing.assert_frame_equal(past, both)


def test_features_ignore_the_future_on_a_generated_trace(trace):
    times = [300.0, 450.0, 600.0]
    past = D.build_frame(trace[trace["at"] <= 600.0], times, CFG)
    both = D.build_frame(trace, times, CFG)
    assert len(past) > 100
    pd.testing.assert_frame_equal(past, both)


def test_max_candidates_caps_rows_per_snapshot_and_helper():
    full = D.build_frame(events(BASE), [103.0, T], CFG)
    assert full.groupby(["t", "helper"]).size().max() > 4
    cap = D.build_frame(events(BASE), [103.0, T], D.DemandConfig(max_candidates=4))
    sizes = cap.groupby(["t", "helper"]).size()
    assert sizes.max() <= 4
    assert (sizes == full.groupby(["t", "helper"]).size().clip(upper=4)).all()
    # kept rows are a subset with the same features
    merged = cap.merge(full, on=list(D.KEYS), suffixes=("", "_full"))
    assert len(merged) == len(cap)
    for c in D.FEATURES[1:]:
        assert (merged[c] == merged[c + "_full"]).all(), c
    # sessions first: at (T, h1) the kept rows are all due
    h1 = cap[(cap["t"] == T) & (cap["helper"] == "h1")]
    assert ((h1["n_due"] + h1["n_due_paused"]) >= 1).all()


def test_max_candidates_keeps_every_due_segment_before_popularity_rows():
    # at (T, h1) five segments are due: v/2 and v/3 (b, paused; eta -2 and 0), v/4, v/5
    # (a and b) and v/6 (a): a cap of five keeps exactly those.
    full = D.build_frame(events(A + B + C), [T], CFG)
    h1 = full[full["helper"] == "h1"]
    due = h1[(h1["n_due"] + h1["n_due_paused"]) >= 1]
    assert sorted(due["index"]) == [2, 3, 4, 5, 6]
    cap = D.build_frame(events(A + B + C), [T], D.DemandConfig(max_candidates=5))
    kept = cap[cap["helper"] == "h1"]
    assert sorted(zip(kept["video"], kept["index"])) == [("v", i) for i in (2, 3, 4, 5, 6)]


def test_n_segments_stops_candidates_at_the_end_and_sets_pos_frac():
    frame = D.build_frame(events(BASE), [T], CFG, n_segments={"v": 6})
    v = frame[frame["video"] == "v"]
    assert v["index"].max() == 5
    assert v["pos_frac"].tolist() == pytest.approx((v["index"] / 6).tolist())
    assert (frame.loc[frame["video"] == "w", "pos_frac"] == -1.0).all()
    # without lengths every candidate is kept and pos_frac is unknown
    free = D.build_frame(events(BASE), [T], CFG)
    assert free.loc[free["video"] == "v", "index"].max() == 8
    assert (free["pos_frac"] == -1.0).all()


def test_empty_inputs_give_an_empty_frame_and_missing_columns_are_named():
    empty = D.build_frame(events(BASE), [], CFG)
    assert len(empty) == 0 and list(empty.columns) == ["t", "helper", "video", "index",
                                                       *D.FEATURES[1:]]
    assert len(D.build_frame(events([]), [T], CFG)) == 0
    with pytest.raises(D.DemandError, match="kind"):
        D.build_frame(events(BASE).drop(columns="kind"), [T], CFG)


def test_snapshot_times_step_from_the_first_event_to_the_last_minus_h():
    e = events([req(3.0, "h1", "a", "v", 0), req(31.0, "h1", "a", "v", 1)])
    assert list(D.snapshot_times(e, CFG)) == [5.0, 10.0, 15.0, 20.0, 25.0]
    stepped = D.DemandConfig(step_s=2.5)
    assert list(D.snapshot_times(e, stepped, start=10.0, end=15.0)) == [10.0, 12.5, 15.0]
    assert len(D.snapshot_times(events([]), CFG)) == 0


# ---------------------------------------------------------------------- labels


def test_requests_ahead_counts_requests_in_t_to_t_plus_h():
    e = events([req(10.0, "h1", "a", "v", 0), req(12.0, "h1", "a", "v", 1),
                req(15.0, "h1", "a", "v", 2), req(15.5, "h1", "b", "v", 2),
                req(13.0, "h2", "c", "v", 2), ev(14.0, "h1", "a", "v", "pause")])
    lab = D.requests_ahead(e, [10.0, 12.0], 5.0)
    got = {(t, h, v, i): n for t, h, v, i, n in lab.itertuples(index=False)}
    assert got == {
        (10.0, "h1", "v", 1): 1,        # 12 in (10, 15]; the request at 10 is not
        (10.0, "h1", "v", 2): 1,        # 15 = t + H counts, 15.5 does not
        (10.0, "h2", "v", 2): 1,
        (12.0, "h1", "v", 2): 2,        # 15 and 15.5; the request at 12 is not
        (12.0, "h2", "v", 2): 1,
    }


def test_add_labels_counts_each_candidate_and_lists_the_missed_requests():
    e = events(BASE + FUTURE + [req(112.0, "h1", "a", "v", 5), req(112.5, "h1", "a", "v", 6)])
    frame = D.build_frame(e, [T], CFG)
    labelled, missed = D.add_labels(frame, e, CFG)
    assert len(labelled) == len(frame)
    pd.testing.assert_frame_equal(labelled.drop(columns="label"), frame)
    lab = labelled.set_index(["helper", "video", "index"])["label"]
    assert lab[("h1", "v", 4)] == 1          # a at 107.5
    assert lab[("h1", "v", 2)] == 1          # b at 108.5
    assert lab[("h1", "v", 5)] == 1          # at 112.0 = t + H
    assert lab[("h1", "v", 6)] == 0          # at 112.5, past the horizon
    assert lab.sum() == 3
    got = {(t, h, v, i): n for t, h, v, i, n in missed.itertuples(index=False)}
    assert got == {(T, "h3", "x", 0): 1,     # a helper with no candidates at all
                   (T, "h1", "y", 70): 1}    # a segment no candidate covered


def test_dataset_counts_requests_after_a_snapshot_with_no_candidates():
    # nothing happened within the window before 197: no candidate at all, yet the request
    # at 200 is in (197, 202] and every predictor missed it
    e = events([req(10.0, "h1", "a", "v", 0), req(12.0, "h1", "a", "v", 1),
                ev(13.0, "h1", "a", "v", "stop"),
                req(200.0, "h1", "b", "v", 0), req(202.0, "h1", "b", "v", 1)])
    data = D.dataset(e, CFG, times=[11.0, 197.0, 200.0])
    assert set(data.frame["t"]) == {11.0, 200.0}
    wanted = data.frame["label"].sum() + data.missed["label"].sum()
    assert wanted == 4                        # 12 for 11; 200 and 202 for 197; 202 for 200
    assert list(zip(data.missed["t"], data.missed["index"])) == [(197.0, 0), (197.0, 1)]


# ---------------------------------------------------------------------- predictors


def hand_frame() -> pd.DataFrame:
    rows = []
    for h, seg_local, seg_global, due, paused in (("h1", 6, 12, 1, 0), ("h1", 0, 30, 0, 2),
                                                  ("h2", 3, 3, 2, 1), ("h3", 0, 0, 0, 0)):
        r = dict.fromkeys(D.FEATURES, 0.0)
        r.update(t=10.0, helper=h, video="v", index=len(rows), seg_local=seg_local,
                 seg_global=seg_global, n_due=due, n_due_paused=paused)
        rows.append(r)
    return pd.DataFrame(rows)


def test_playhead_extrapolation_is_every_due_session():
    f = hand_frame()
    assert D.PlayheadExtrapolation(CFG).predict(f).tolist() == [1, 2, 3, 0]


def test_popularity_rates_scale_with_window_and_horizon():
    f = hand_frame()
    assert D.HelperPopularity(CFG).predict(f).tolist() == pytest.approx(
        [6 / 60 * 5, 0, 3 / 60 * 5, 0])
    wide = D.DemandConfig(window_s=120.0, horizon_s=10.0)
    assert D.HelperPopularity(wide).predict(f).tolist() == pytest.approx(
        [6 / 120 * 10, 0, 3 / 120 * 10, 0])
    # shared among the helpers seen in training (3 here), or in the frame when unfitted
    g = D.GlobalPopularity(CFG).fit(f)
    assert g.predict(f).tolist() == pytest.approx([12 / 60 * 5 / 3, 30 / 60 * 5 / 3,
                                                   3 / 60 * 5 / 3, 0])
    assert D.GlobalPopularity(CFG).fit(f[f["helper"] != "h3"]).predict(f)[1] == \
        pytest.approx(30 / 60 * 5 / 2)
    assert D.GlobalPopularity(CFG).predict(f.iloc[:2])[1] == pytest.approx(30 / 60 * 5)
    assert D.GlobalPopularity(wide).fit(f).predict(f)[1] == pytest.approx(30 / 120 * 10 / 3)


def test_oracle_returns_the_labels_and_needs_them():
    f = hand_frame()
    with pytest.raises(D.DemandError, match="label"):
        D.Oracle(CFG).predict(f)
    f["label"] = [0.0, 2.0, 1.0, 0.0]
    assert D.Oracle(CFG).predict(f).tolist() == [0, 2, 1, 0]


def test_demand_model_refuses_to_predict_before_fit_and_degenerate_training():
    f = hand_frame()
    with pytest.raises(D.DemandError, match="not been trained"):
        D.DemandModel(CFG).predict(f)
    with pytest.raises(D.DemandError, match="label"):
        D.DemandModel(CFG).fit(f)
    f["label"] = 0.0
    with pytest.raises(D.DemandError, match="with and without"):
        D.DemandModel(CFG).fit(f)
    f["label"] = 1.0
    with pytest.raises(D.DemandError, match="with and without"):
        D.DemandModel(CFG).fit(f)


def test_demand_model_predicts_probability_times_requests_per_hit(dataset_a):
    model = D.DemandModel(CFG, D.ModelParams(max_iter=20)).fit(dataset_a.frame)
    f = dataset_a.frame.iloc[:500]
    p = model.probability(f)
    assert ((p >= 0) & (p <= 1)).all()
    bucket = np.clip(f["n_due"] + f["n_due_paused"], 0, 3).astype(int)
    assert model.predict(f) == pytest.approx(p * model.per_hit[bucket])
    assert model.trained_rows == len(dataset_a.frame)
    # requests per requested segment, by due sessions 0, 1, 2, 3+, learnt from training
    train = dataset_a.frame
    tb = np.clip(train["n_due"] + train["n_due_paused"], 0, 3).astype(int)
    for b in range(4):
        hit = (train["label"] > 0) & (tb == b)
        want = train.loc[hit, "label"].mean() if hit.any() else 1.0
        assert model.per_hit[b] == pytest.approx(want)
    assert model.per_hit[2] > model.per_hit[1] >= 1
    assert len(model.predict(f.iloc[:0])) == 0


# ---------------------------------------------------------------------- evaluation


def eval_frame():
    frame = pd.DataFrame({"t": [0.0] * 6, "helper": ["h1"] * 4 + ["h2"] * 2,
                          "video": ["v"] * 6, "index": range(6),
                          "label": [2.0, 0.0, 1.0, 1.0, 0.0, 0.0]})
    pred = np.array([3.0, 0.4, 0.6, 0.0, 0.2, 0.7])
    missed = pd.DataFrame({"t": [0.0], "helper": ["h1"], "video": ["w"], "index": [0],
                           "label": [2.0]})
    return frame, pred, missed


def test_evaluate_on_a_hand_made_frame():
    frame, pred, missed = eval_frame()
    cfg = D.DemandConfig(budget=2)
    s = D.evaluate("x", frame, pred, missed, cfg)
    # h1 pushes rows 0 and 2 (both hits), h2 rows 5 and 4 (no hit)
    assert s.pushes == 4 and s.precision == pytest.approx(2 / 4)
    assert s.recall == pytest.approx(2 / 4)                 # wanted: rows 0, 2, 3 + missed
    # nearest counts 3 0 1 0 0 1 against 2 0 1 1 0 0, plus the 2 missed requests
    assert s.mae == pytest.approx((1 + 0 + 0 + 1 + 0 + 1 + 2) / 7)
    assert s.rmse == pytest.approx(math.sqrt((1 + .16 + .16 + 1 + .04 + .49 + 4) / 7))
    assert s.calibration == pytest.approx(4.9 / 6)
    assert s.rows == 7 and math.isnan(s.calibration_error)
    picky = D.evaluate("x", frame, pred, missed, D.DemandConfig(budget=2, min_expected=0.5))
    assert picky.pushes == 3 and picky.precision == pytest.approx(2 / 3)
    assert picky.recall == pytest.approx(2 / 4)


def test_evaluate_clips_negative_predictions_and_scores_a_perfect_forecast():
    frame, _, missed = eval_frame()
    perfect = D.evaluate("o", frame, frame["label"].to_numpy(), missed.iloc[:0], CFG)
    assert perfect.mae == 0 and perfect.rmse == 0 and perfect.calibration == 1.0
    neg = D.evaluate("n", frame, -np.ones(6), missed, CFG)
    assert neg.calibration == 0 and neg.mae == pytest.approx((4 + 2) / 7)


def test_point_forecast_is_the_nearest_count():
    assert D.point_forecast(np.array([-1.0, 0.0, 0.49, 0.5, 1.49, 1.5, 2.7])).tolist() == \
        [0, 0, 0, 1, 1, 2, 3]


def test_top_budget_ties_are_seeded_and_the_same_for_every_predictor():
    n = 40
    frame = pd.DataFrame({"t": np.repeat([0.0, 5.0], n // 2),
                          "helper": np.tile(np.repeat(["h1", "h2"], n // 4), 2)})
    zeros, ones = np.zeros(n), np.full(n, 7.0)
    m0 = D.top_budget(frame, zeros, 3)
    assert (m0 == D.top_budget(frame, ones, 3)).all()
    assert (m0 == D.top_budget(frame.copy(), zeros, 3)).all()
    per = pd.Series(m0).groupby([frame["t"], frame["helper"]]).sum()
    assert (per == 3).all()
    # not the first rows of each group: the order is a seeded shuffle
    assert not all(m0[i] for i in (0, 1, 2))
    # a predictor with one preference keeps it and fills the rest from the same order
    pref = zeros.copy()
    pref[9] = 1.0
    m1 = D.top_budget(frame, pref, 3)
    assert m1[9]
    assert (m1[10:] == m0[10:]).all()
    assert D.top_budget(frame, zeros, 3, min_expected=0.5).sum() == 0
    assert D.top_budget(frame.iloc[:0], zeros[:0], 3).shape == (0,)


def test_the_same_ties_give_every_predictor_the_same_pushes(dataset_a):
    f = dataset_a.frame
    popular = D.evaluate("g", f, np.zeros(len(f)), dataset_a.missed, CFG)
    masks = [D.top_budget(f, p, CFG.budget) for p in (np.zeros(len(f)), np.full(len(f), 0.1))]
    assert (masks[0] == masks[1]).all()
    assert popular.pushes == masks[0].sum()
    per = pd.Series(masks[0]).groupby([f["t"], f["helper"]]).sum()
    assert per.max() <= CFG.budget


# ---------------------------------------------------------------------- on a generated trace


WCFG = WorkloadConfig(tuple(f"h{i}" for i in range(8)), synthetic_catalogue(40, 1),
                      duration_s=900.0, arrival_rate=0.08, seed=1)
NSEG = {v: math.ceil(d / SEG - 1e-9) for v, d in WCFG.videos}


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return generate(WCFG).trace()


@pytest.fixture(scope="module")
def dataset_a(trace) -> D.Dataset:
    return D.dataset(trace, CFG, NSEG)


@pytest.fixture(scope="module")
def dataset_b() -> D.Dataset:
    other = WorkloadConfig(WCFG.helpers, WCFG.videos, duration_s=WCFG.duration_s,
                           arrival_rate=WCFG.arrival_rate, seed=2)
    return D.dataset(generate(other).trace(), CFG, NSEG)


def test_generated_dataset_is_consistent(trace, dataset_a):
    f = dataset_a.frame
    assert len(f) > 10_000 and f["label"].sum() > 1000
    assert f.groupby(["t", "helper"]).size().max() <= CFG.max_candidates
    assert not f.duplicated(list(D.KEYS)).any()
    assert (f["index"] < f["video"].map(NSEG)).all()
    # every request in (t, t + H] of a snapshot is a label or a missed request
    times = np.unique(f["t"])
    lab = D.requests_ahead(trace, times, CFG.horizon_s)
    assert f["label"].sum() + dataset_a.missed["label"].sum() == lab["label"].sum()
    assert dataset_a.missed["label"].sum() < 0.3 * lab["label"].sum()


@pytest.fixture(scope="module")
def tables(dataset_a, dataset_b) -> dict:
    cut = WCFG.duration_s * 2 / 3
    train = dataset_a.between(0.0, cut)
    later = dataset_a.between(cut, WCFG.duration_s)
    return D.compare(train, {"later": later, "other seed": dataset_b}, CFG)


@pytest.mark.parametrize("test_set", ["later", "other seed"])
def test_model_beats_every_baseline_and_the_oracle_bounds_precision(tables, test_set):
    table = tables[test_set]
    assert list(table.index) == ["model", "global-popularity", "helper-popularity",
                                 "playhead", "oracle"]
    model = table.loc["model"]
    for base in ("playhead", "global-popularity", "helper-popularity"):
        assert model.precision > table.loc[base, "precision"] + 0.02, base
        assert model.mae < table.loc[base, "mae"], base
    assert (table["precision"] <= table.loc["oracle", "precision"] + 1e-12).all()
    assert (table["pushes"] == table.loc["oracle", "pushes"]).all()
    assert 0.6 < model.calibration < 1.25


def test_online_replay_retrains_and_a_frozen_model_stays_put():
    cfg = WorkloadConfig(tuple(f"h{i}" for i in range(6)), synthetic_catalogue(30, 2),
                         duration_s=600.0, arrival_rate=0.08, seed=3,
                         shifts=(PopularityShift(300.0, "vod-0025", 0.4),))
    tr = generate(cfg).trace()
    data = D.dataset(tr[tr["at"] <= 600.0], CFG, {v: math.ceil(d / SEG - 1e-9)
                                                   for v, d in cfg.videos})
    params = D.ModelParams(max_iter=15)
    kw = dict(retrain_s=60.0, train_window_s=240.0, first_train_s=120.0, period_s=60.0,
              params=params)
    live = D.online_replay(data, CFG, **kw)
    assert list(live.columns) == ["t", "version", "precision", "recall", "mae",
                                  "playhead_precision", "playhead_recall", "playhead_mae"]
    assert live["t"].tolist() == [120.0 + 60.0 * i for i in range(len(live))]
    assert live["t"].iloc[-1] >= 540.0
    assert live["version"].tolist() == list(range(1, len(live) + 1))
    both = D.online_replay(data, CFG, freeze_after=240.0, **kw)
    # the retrained model's figures do not depend on the frozen one running beside it
    pd.testing.assert_frame_equal(both[list(live.columns)], live)
    # the frozen model is the retrained one until the freeze (version 3, at 240 s), then
    # stays: its figures equal the live ones before 300 s and differ after
    before = both["t"] < 300.0
    for col in ("precision", "recall", "mae"):
        assert both.loc[before, f"{col}_frozen"].tolist() == both.loc[before, col].tolist()
    assert (both.loc[~before, "mae_frozen"] != both.loc[~before, "mae"]).any()
    assert (both[["precision_frozen", "recall_frozen"]].to_numpy() >= 0).all()
    with pytest.raises(D.DemandError, match="retrain_s"):
        D.online_replay(data, CFG, retrain_s=0.0, train_window_s=60.0, first_train_s=60.0)
    empty = D.Dataset(data.frame.iloc[:0], data.missed.iloc[:0])
    with pytest.raises(D.DemandError, match="non-empty"):
        D.online_replay(empty, CFG, retrain_s=60.0, train_window_s=60.0, first_train_s=60.0)


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize("field, value", [
    ("horizon_s", 0.0), ("horizon_s", 90.0), ("horizon_s", 0.5), ("segment_s", -1.0),
    ("window_s", math.nan), ("long_window_s", "300"), ("session_timeout_s", math.inf),
    ("step_s", 0.0), ("max_candidates", 2.5), ("budget", 0), ("global_top", True),
    ("local_top", -3), ("min_expected", -0.1), ("min_expected", math.inf),
])
def test_bad_config_values_are_refused_with_one_line_naming_the_field(field, value):
    with pytest.raises(D.DemandError, match=field) as info:
        D.DemandConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_config_from_mapping_round_trips_and_refuses_unknown_keys():
    cfg = D.DemandConfig(horizon_s=10.0, step_s=2.5, budget=3)
    assert D.DemandConfig.from_mapping(cfg.as_dict()) == cfg
    assert cfg.step == 2.5 and CFG.step == CFG.horizon_s
    assert CFG.lookahead == 5 and cfg.lookahead == 7
    with pytest.raises(D.DemandError, match="unknown key 'horizon'") as info:
        D.DemandConfig.from_mapping({"horizon": 5.0})
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------- sessions to come


def starts(*rows):
    """``(at, helper, video)`` starts, and one request long before to set the time span."""
    return events([req(0.0, "h1", "x", "v", 5)]
                  + [ev(at, h, f"s{k}", vid, "start") for k, (at, h, vid) in enumerate(rows)])


def test_arrival_demand_expects_start_up_bursts_of_likely_videos():
    # h1: 3 starts of v and 1 of w in 100 s; h2: 2 starts of w; span 100 s (< window)
    trace = starts((10, "h1", "v"), (20, "h1", "v"), (30, "h1", "v"), (40, "h1", "w"),
                   (50, "h2", "w"), (60, "h2", "w"))
    got = D.arrival_demand(trace, 100.0, window_s=300, horizon_s=60, prefix=3,
                           helpers=["h1", "h2", "h3"], mix=0.5)
    assert list(got.columns) == D.ARRIVAL_COLUMNS
    x = {(h, v, i): e for h, v, i, e in got.itertuples(index=False)}
    # the first 3 segments of each video, the same expectation for each
    assert {i for _, _, i in x} == {0, 1, 2} and x[("h1", "v", 0)] == x[("h1", "v", 2)]
    # h1's rate: half its own 4 starts, half the mean (6 starts / 3 helpers) per 100 s;
    # its choice of v: half global (3/6), half its own (3/4)
    rate = 0.5 * (4 + 2) / 100
    assert x[("h1", "v", 0)] == pytest.approx(rate * 60 * (0.5 * 0.5 + 0.5 * 0.75))
    # h3 started nothing: half the mean rate, and everyone's choices
    assert x[("h3", "w", 0)] == pytest.approx(0.5 * 2 / 100 * 60 * 0.5)
    # h2 likes w: it expects more of w than of v
    assert x[("h2", "w", 0)] > x[("h2", "v", 0)]


def test_arrival_demand_looks_only_at_the_window_and_the_given_videos():
    trace = starts((10, "h1", "old"), (250, "h1", "v"), (260, "h1", "live-00"))
    got = D.arrival_demand(trace, 300.0, window_s=100, horizon_s=60, prefix=2,
                           helpers=["h1"], videos=["v", "old"], top_videos=5)
    assert set(got["video"]) == {"v"} and len(got) == 2
    assert D.arrival_demand(trace, 5.0, window_s=100, horizon_s=60, prefix=2).empty
    one = D.arrival_demand(starts(*[(k, "h1", f"v{k}") for k in range(1, 30)]), 40.0,
                           window_s=100, horizon_s=60, prefix=1, top_videos=4)
    assert len(one) == 4


@pytest.mark.parametrize("bad, match", [
    ({"window_s": 0}, "window_s"), ({"horizon_s": -1}, "horizon_s"),
    ({"prefix": 0}, "prefix"), ({"prefix": 1.5}, "prefix"), ({"mix": 2}, "mix")])
def test_arrival_demand_refuses_bad_settings(bad, match):
    kw = {"window_s": 100, "horizon_s": 60, "prefix": 2, **bad}
    with pytest.raises(D.DemandError, match=match):
        D.arrival_demand(starts((1, "h1", "v")), 10.0, **kw)


def test_arrival_demand_leaves_out_excluded_videos_and_breaks_ties_by_video_id():
    trace = starts((10, "h1", "b"), (20, "h1", "a"), (30, "h1", "live-00"), (40, "h1", "c"))
    got = D.arrival_demand(trace, 100.0, window_s=300, horizon_s=60, prefix=1,
                           top_videos=2, exclude={"live-00"})
    assert got["video"].tolist() == ["a", "b"]          # a, b, c tie: the first two ids
    assert got["expected"].tolist() == pytest.approx([3 / 100 * 60 / 3] * 2)


def test_current_sessions_are_the_last_requests_of_sessions_not_ended_nor_timed_out():
    got = D.current_sessions(events(BASE), T, CFG.session_timeout_s)
    assert list(got.columns) == D.SESSION_COLUMNS
    assert {(h, v, vid, i) for h, v, vid, i in got.itertuples(index=False)} == {
        ("h1", "a", "v", 3), ("h1", "b", "v", 1), ("h2", "d", "v", 1)}
    assert D.current_sessions(events(BASE), T, 30.0, helpers={"h2"})["viewer"].tolist() == ["d"]
    assert D.current_sessions(events(BASE), T + 40.0, 30.0).empty
