"""Candidate segments and their features at each snapshot, from events at or before it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig
from testbed.core.demand.counting import _Codes, _WindowCounter
from testbed.core.demand.events import ENDS, _check_events

#: The features a model sees, in order.
FEATURES = (
    "index", "pos_frac", "eta_min", "k_min", "n_due", "n_due_paused", "n_near",
    "n_sessions", "since_req_min", "age_min", "just_sought",
    "seg_local", "seg_global", "vid_local", "vid_global", "vid_starts_local",
    "helper_active", "helper_arrivals", "helper_pause_rate", "helper_seek_rate",
    "helper_stop_rate",
)
_BIG_ETA = 1e6
#: Events this much further than every window are left out of a count: they are never in
#: one, however the counter's combined key rounds.
_MARGIN_S = 2.0


def build_frame(events: pd.DataFrame, times: Sequence[float], cfg: DemandConfig,
                n_segments: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Candidate rows with features at each snapshot time; uses only events at or before t.

    ``events``: telemetry (``at, helper, viewer, video, kind, index``; ``index`` is the
    segment of a ``request`` row, -1 otherwise).  ``n_segments``: video lengths in
    segments, for ``pos_frac`` and to drop candidates past a video's end (unknown videos
    get ``pos_frac`` -1 and no limit).
    """
    ev = _check_events(events)
    times = np.asarray(sorted(float(t) for t in times), dtype=np.float64)
    if len(times) == 0 or len(ev) == 0:
        return _empty_frame()
    nseg = dict(n_segments or {})
    at = ev["at"].to_numpy(np.float64)
    kind = ev["kind"].to_numpy(object)
    helper_c, video_c = _Codes(), _Codes()
    h = helper_c.encode(ev["helper"])
    v = video_c.encode(ev["video"])
    s = _session_codes(h, ev["viewer"])
    idx = ev["index"].to_numpy(np.int64)
    is_req = kind == "request"
    n_h, n_v = max(len(helper_c.index), 1), max(len(video_c.index), 1)
    max_idx = int(idx.max()) + cfg.lookahead + 2 if len(idx) else 1

    def seg_code(hh, vv, ii):
        return (hh * n_v + vv) * max_idx + ii

    # ---- sessions: one row per (session, snapshot) while the session may be active
    sessions = pd.DataFrame({"s": s, "at": at})
    span = sessions.groupby("s")["at"].agg(["min", "max"])
    lo = np.searchsorted(times, span["min"].to_numpy(), side="left")
    hi = np.searchsorted(times, span["max"].to_numpy() + cfg.session_timeout_s, side="right")
    reps = np.maximum(hi - lo, 0)
    s_ids = np.repeat(span.index.to_numpy(), reps)
    offs = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    t_idx = np.repeat(lo, reps) + offs
    pairs = pd.DataFrame({"t": times[t_idx], "s": s_ids}).sort_values("t", kind="stable")
    first_at = span["min"]

    req = pd.DataFrame({"at": at[is_req], "s": s[is_req], "h": h[is_req], "v": v[is_req],
                        "i": idx[is_req]})
    oth = pd.DataFrame({"at": at[~is_req], "s": s[~is_req], "k": kind[~is_req]})
    st = pd.merge_asof(pairs, req.rename(columns={"at": "req_at"}), left_on="t",
                       right_on="req_at", by="s", direction="backward")
    st = pd.merge_asof(st.sort_values("t", kind="stable"),
                       oth.rename(columns={"at": "ev_at"}), left_on="t", right_on="ev_at",
                       by="s", direction="backward")
    st = st[st["req_at"].notna()]
    ended = st["k"].isin(ENDS) & (st["ev_at"] >= st["req_at"])
    last = np.fmax(st["req_at"].to_numpy(), st["ev_at"].fillna(-1.0).to_numpy())
    alive = ~ended.to_numpy() & (st["t"].to_numpy() - last <= cfg.session_timeout_s)
    st = st[alive].copy()
    st["paused"] = (st["k"] == "pause") & (st["ev_at"] >= st["req_at"])
    st["sought"] = (st["k"].isin(("seek", "resume_play"))
                    & (st["t"] - st["ev_at"] <= cfg.horizon_s)).astype(np.float64)
    # capped, so that a prediction looking back long_window_s + session_timeout_s sees the
    # same value as training on the whole history
    st["age"] = np.minimum(st["t"] - first_at.reindex(st["s"]).to_numpy(), cfg.long_window_s)
    st["since_req"] = st["t"] - st["req_at"]
    st["h"] = st["h"].astype(np.int64)
    st["v"] = st["v"].astype(np.int64)
    st["i"] = st["i"].astype(np.int64)

    # helper-level activity at each snapshot
    active = st.groupby(["t", "h"]).size().rename("helper_active")

    # ---- playhead candidates: the next `lookahead` segments of each session
    L = cfg.lookahead
    n = len(st)
    k = np.tile(np.arange(1, L + 1), n)
    rep = np.repeat(np.arange(n), L)
    cand = pd.DataFrame({
        "t": st["t"].to_numpy()[rep], "h": st["h"].to_numpy()[rep],
        "v": st["v"].to_numpy()[rep], "i": st["i"].to_numpy()[rep] + k, "k": k,
        "paused": st["paused"].to_numpy()[rep], "sought": st["sought"].to_numpy()[rep],
        "age": st["age"].to_numpy()[rep], "since_req": st["since_req"].to_numpy()[rep],
    })
    cand["eta"] = (st["req_at"].to_numpy()[rep] + k * cfg.segment_s) - cand["t"]
    if nseg:
        inv_v = {c: name for name, c in video_c.index.items()}
        limit = np.array([nseg.get(inv_v[c], 1 << 30) for c in range(n_v)], dtype=np.int64)
        cand = cand[cand["i"].to_numpy() < limit[cand["v"].to_numpy()]]
    cand = cand[cand["eta"] <= 2 * cfg.horizon_s]
    due = cand["eta"] <= cfg.horizon_s
    cand["due_play"] = (due & ~cand["paused"]).astype(np.float64)
    cand["due_paused"] = (due & cand["paused"]).astype(np.float64)
    g = cand.groupby(["t", "h", "v", "i"], sort=False)
    play = g.agg(eta_min=("eta", "min"), k_min=("k", "min"), n_due=("due_play", "sum"),
                 n_due_paused=("due_paused", "sum"), n_near=("eta", "size"),
                 since_req_min=("since_req", "min"), age_min=("age", "min"),
                 just_sought=("sought", "max")).reset_index()
    vid_sessions = st.groupby(["t", "h", "v"]).size().rename("n_sessions").reset_index()

    # ---- popularity candidates: the helper's own most served segments in the window, and
    # the most requested over all helpers (each helper with sessions gets those)
    req_at = req["at"].to_numpy()
    req_codes = seg_code(req["h"].to_numpy(), req["v"].to_numpy(), req["i"].to_numpy())
    t_lo = np.searchsorted(req_at, times - cfg.window_s, side="right")
    t_hi = np.searchsorted(req_at, times, side="right")
    cnt = t_hi - t_lo
    parts = [play[["t", "h", "v", "i"]]]
    if cnt.sum():
        pos = np.repeat(t_lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        t_of = np.repeat(np.arange(len(times)), cnt)
        # (snapshot, segment code) pairs and their counts, by one integer key
        pair = t_of.astype(np.int64) * (n_h * n_v * max_idx) + req_codes[pos]
        keys, counts = np.unique(pair, return_counts=True)
        t_i, code = np.divmod(keys, n_h * n_v * max_idx)
        hh, rest = np.divmod(code, n_v * max_idx)
        loc = pd.DataFrame({"t": times[t_i], "h": hh, "g": rest, "c": counts})
        loc = loc.sort_values(["t", "h", "c", "g"], ascending=[True, True, False, True],
                              kind="stable").groupby(["t", "h"], sort=False).head(cfg.local_top)
        vv, ii = np.divmod(loc["g"].to_numpy(), max_idx)
        parts.append(pd.DataFrame({"t": loc["t"].to_numpy(), "h": loc["h"].to_numpy(),
                                   "v": vv, "i": ii}))
        span = n_v * max_idx
        gk, gc = np.unique(t_of.astype(np.int64) * span + req_codes[pos] % span,
                           return_counts=True)
        g_t, g_seg = np.divmod(gk, span)
        gl = pd.DataFrame({"t": g_t, "g": g_seg, "c": gc})
        gl = gl.sort_values(["t", "c", "g"], ascending=[True, False, True], kind="stable")
        gl = gl.groupby("t", sort=False).head(cfg.global_top)
        gl["t"] = times[gl["t"].to_numpy()]
        top = active.reset_index()[["t", "h"]].merge(gl, on="t")
        vv, ii = np.divmod(top["g"].to_numpy(), max_idx)
        parts.append(pd.DataFrame({"t": top["t"].to_numpy(), "h": top["h"].to_numpy(),
                                   "v": vv, "i": ii}))
    keys = pd.concat(parts, ignore_index=True)
    keys = keys.drop_duplicates(["t", "h", "v", "i"]).sort_values(
        ["t", "h", "v", "i"], kind="stable")
    frame = keys.merge(play, on=["t", "h", "v", "i"], how="left")
    frame = frame.merge(vid_sessions, on=["t", "h", "v"], how="left")
    for c in ("t", "h", "v", "i"):
        frame[c] = frame[c].astype(np.float64 if c == "t" else np.int64)
    for c, fill in (("eta_min", _BIG_ETA), ("k_min", 99.0), ("n_due", 0.0),
                    ("n_due_paused", 0.0), ("n_near", 0.0), ("n_sessions", 0.0),
                    ("since_req_min", _BIG_ETA), ("age_min", _BIG_ETA), ("just_sought", 0.0)):
        frame[c] = frame[c].astype(np.float64).fillna(fill)

    # ---- cap candidates per helper and snapshot (sessions first, then popularity)
    tt = frame["t"].to_numpy()
    fh = frame["h"].to_numpy()
    group = np.searchsorted(times, tt) * n_h + fh
    sizes = np.bincount(group)
    if sizes.max(initial=0) > cfg.max_candidates:
        eta = np.clip(frame["eta_min"].to_numpy(), 0.0, 1e3)  # overdue (paused): nearest
        score = frame["n_due"].to_numpy() + frame["n_due_paused"].to_numpy() + 1.0 / (1.0 + eta)
        order = np.lexsort((-score, group))
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        rank = np.arange(len(order)) - starts[group[order]]
        keep = np.sort(order[rank < cfg.max_candidates])
        frame = frame.iloc[keep].reset_index(drop=True)
        tt, fh = frame["t"].to_numpy(), frame["h"].to_numpy()

    # ---- window counts
    fv, fi = frame["v"].to_numpy(), frame["i"].to_numpy()
    w, lw = cfg.window_s, cfg.long_window_s

    def counter(codes: np.ndarray, when: np.ndarray, window: float) -> _WindowCounter:
        """Counts of the events that may fall in some snapshot's window (the others,
        further than a margin from every window, are left out before sorting)."""
        keep = (when > times[0] - window - _MARGIN_S) & (when <= times[-1] + _MARGIN_S)
        return _WindowCounter(codes[keep], when[keep])

    frame["seg_local"] = counter(req_codes, req_at, w).count(seg_code(fh, fv, fi), tt, w)
    frame["seg_global"] = counter(req["v"].to_numpy() * max_idx + req["i"].to_numpy(),
                                  req_at, w).count(fv * max_idx + fi, tt, w)
    frame["vid_local"] = counter(req["h"].to_numpy() * n_v + req["v"].to_numpy(),
                                 req_at, w).count(fh * n_v + fv, tt, w)
    frame["vid_global"] = counter(req["v"].to_numpy(), req_at, w).count(fv, tt, w)
    starts = kind == "start"
    frame["vid_starts_local"] = counter(h[starts] * n_v + v[starts], at[starts], lw).count(
        fh * n_v + fv, tt, lw)
    frame["helper_arrivals"] = counter(h[starts], at[starts], lw).count(fh, tt, lw)
    hreq = counter(h[is_req], at[is_req], lw).count(fh, tt, lw)
    for col, kinds in (("helper_pause_rate", ("pause",)), ("helper_seek_rate", ("seek",)),
                       ("helper_stop_rate", ("stop", "abandon"))):
        m = np.logical_or.reduce([kind == k for k in kinds])  # np.isin sorts objects
        frame[col] = counter(h[m], at[m], lw).count(fh, tt, lw) / np.maximum(hreq, 1.0)
    act = active.reset_index()
    act_key = np.searchsorted(times, act["t"].to_numpy()) * n_h + act["h"].to_numpy()
    found = pd.Index(act_key).get_indexer(np.searchsorted(times, tt) * n_h + fh)
    act_val = act["helper_active"].to_numpy(np.float64)
    frame["helper_active"] = (np.where(found >= 0, act_val[found], 0.0) if len(act_val)
                              else np.zeros(len(found)))
    inv_v = {c: name for name, c in video_c.index.items()}
    inv_h = {c: name for name, c in helper_c.index.items()}
    vid_len = np.array([float(nseg.get(inv_v[c], 0)) for c in range(n_v)])
    known = vid_len[fv] > 0
    frame["pos_frac"] = np.where(known, fi / np.where(known, vid_len[fv], 1.0), -1.0)
    out = pd.DataFrame({
        "t": tt,
        "helper": np.array([inv_h[c] for c in range(len(inv_h))], dtype=object)[fh],
        "video": np.array([inv_v[c] for c in range(len(inv_v))], dtype=object)[fv],
        "index": fi.astype(np.int64),
    })
    for c in FEATURES:
        if c != "index":
            out[c] = frame[c].to_numpy(np.float64)
    return out


def _session_codes(helper_codes: np.ndarray, viewers: pd.Series) -> np.ndarray:
    """A code per (helper, viewer) pair, in order of first appearance: the codes of the
    texts ``helper + "\\x00" + viewer``, without making those texts."""
    # the texts of the distinct viewers only (``astype(str)`` of every row costs more)
    raw, distinct = pd.factorize(viewers, use_na_sentinel=False)
    viewer = _Codes().encode([str(x) for x in distinct.tolist()])[np.asarray(raw)]
    pair = helper_codes * max(int(viewer.max(initial=0)) + 1, 1) + viewer
    return pd.factorize(pair)[0].astype(np.int64)


def _empty_frame() -> pd.DataFrame:
    cols = {"t": pd.Series(dtype=np.float64), "helper": pd.Series(dtype=object),
            "video": pd.Series(dtype=object), "index": pd.Series(dtype=np.int64)}
    cols.update({c: pd.Series(dtype=np.float64) for c in FEATURES if c != "index"})
    return pd.DataFrame(cols)
