"""Per-helper demand for the next few seconds: features from telemetry, models, evaluation.

The question the prefetch planner asks is: *how many requests will segment ``(video,
index)`` get at helper ``h`` in the next ``H`` seconds?*  This module answers it from the
telemetry the helpers report (a trace: one row per event, columns
:data:`testbed.core.workload.TRACE_COLUMNS`), in three steps.

**Candidates and features** (:func:`build_frame`).  At each snapshot time ``t`` and for
each helper, the candidate segments are

* the next few segments of every session the helper is serving, from its last request on
  (players read ahead one segment per ``segment_s`` while playing);
* the segments this helper served in the last ``window_s`` seconds (local popularity);
* the ``global_top`` segments most requested over all helpers in that window (global
  popularity: the first segments of popular videos are what new arrivals ask for);

at most ``max_candidates`` per helper.  Each candidate row carries features computed only
from events at or before ``t``: when the sessions are due to ask for it if they keep
playing (``eta_min``, ``n_due``...), their states (paused, just started, just sought),
recent pause, seek and abandon rates at the helper, local and global popularity of the
segment and of its video, and the helper's arrival rate.  The label (:func:`add_labels`)
is the number of requests for the segment at the helper in ``(t, t + H]``.

**Predictors** behind one interface (``fit(frame)``, ``predict(frame)`` -> expected
requests): :class:`DemandModel` (scikit-learn's histogram gradient boosting with a Poisson
loss) and the baselines :class:`GlobalPopularity`, :class:`HelperPopularity`,
:class:`PlayheadExtrapolation` (every viewer keeps playing) and :class:`Oracle` (the
future known: the bound).

**Evaluation** (:func:`evaluate`): mean absolute error over the candidates and the
requests no candidate covered, precision and recall at a push budget (the top ``budget``
segments per helper and snapshot with at least ``min_expected`` expected requests), and
calibration (predicted over actual requests, and the mean gap per decile of prediction).
:func:`online_replay` replays a trace as the live engine would see it: retrain every
``R`` seconds on a sliding window, score each snapshot with the model of the moment.

**Popularity prefetch** (:func:`popularity_demand`), the baseline the engine serves to a
cache that knows popularity and nothing of sessions but where they are: recently popular
segments still ahead of a session at the helper, and the first segments of the videos
likely to start there (:func:`arrival_demand`), never a live segment, over the horizon
asked.

Everything is pure: frames in, frames out.  pandas and numpy do the aggregation (a
snapshot's features are window counts, found by binary search over sorted keys, and an
as-of join of each session's last events).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

#: The features a model sees, in order.
FEATURES = (
    "index", "pos_frac", "eta_min", "k_min", "n_due", "n_due_paused", "n_near",
    "n_sessions", "since_req_min", "age_min", "just_sought",
    "seg_local", "seg_global", "vid_local", "vid_global", "vid_starts_local",
    "helper_active", "helper_arrivals", "helper_pause_rate", "helper_seek_rate",
    "helper_stop_rate",
)
KEYS = ("t", "helper", "video", "index")
#: Player event kinds that end a session.
ENDS = frozenset({"stop", "complete", "abandon"})
_BIG_ETA = 1e6


class DemandError(ValueError):
    """A bad demand configuration or input frame; one line naming what was wrong."""


def _positive(name: str, value: object, integer: bool = False) -> None:
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float)))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "an int" if integer else "a number"
        raise DemandError(f"demand {name} must be {kind} > 0, got {value!r}")


@dataclass(frozen=True)
class DemandConfig:
    """How demand is framed: horizon, snapshot step, windows, candidate limits, budget.

    ``horizon_s`` (H) is how far ahead a prediction reaches; ``step_s`` how often a
    snapshot is taken for training and evaluation (default H: disjoint label windows).
    ``budget`` is the number of pushes per helper and horizon the evaluation allows.
    """

    horizon_s: float = 5.0
    segment_s: float = 2.0
    step_s: float | None = None
    window_s: float = 60.0
    long_window_s: float = 300.0
    session_timeout_s: float = 30.0
    max_candidates: int = 100
    global_top: int = 10
    local_top: int = 5
    budget: int = 5
    min_expected: float = 0.0

    def __post_init__(self) -> None:
        for name in ("horizon_s", "segment_s", "window_s", "long_window_s",
                     "session_timeout_s"):
            _positive(name, getattr(self, name))
        if isinstance(self.min_expected, bool) or not isinstance(self.min_expected, (int, float)) \
                or not 0 <= self.min_expected < math.inf:
            raise DemandError(f"demand min_expected must be a number >= 0, "
                              f"got {self.min_expected!r}")
        if self.step_s is not None:
            _positive("step_s", self.step_s)
        for name in ("max_candidates", "global_top", "local_top", "budget"):
            _positive(name, getattr(self, name), integer=True)
        if not 1.0 <= self.horizon_s <= 60.0:
            raise DemandError(f"demand horizon_s must be within 1..60 s, got {self.horizon_s!r}")

    @property
    def step(self) -> float:
        return float(self.step_s if self.step_s is not None else self.horizon_s)

    @property
    def lookahead(self) -> int:
        """Segments after a session's last request that can be asked for within H."""
        return int(math.ceil(self.horizon_s / self.segment_s)) + 2

    @classmethod
    def from_mapping(cls, data: Mapping) -> DemandConfig:
        known = {f for f in cls.__dataclass_fields__}
        for key in data:
            if key not in known:
                raise DemandError(f"demand: unknown key {key!r} (known: {sorted(known)})")
        return cls(**dict(data))

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ window counting


class _WindowCounter:
    """Counts events per key within ``(t - w, t]`` by binary search over sorted (key, time)."""

    # Times are below 2**20 s (12 days) and keys below 2**30, so key * 2**21 + t is an exact
    # float64 ordering with sub-millisecond resolution.
    _SCALE = float(2 ** 21)

    def __init__(self, codes: np.ndarray, times: np.ndarray) -> None:
        self._comp = np.sort(codes.astype(np.float64) * self._SCALE + times)

    def count(self, codes: np.ndarray, t: np.ndarray, w: float) -> np.ndarray:
        base = codes.astype(np.float64) * self._SCALE
        hi = np.searchsorted(self._comp, base + t, side="right")
        lo = np.searchsorted(self._comp, base + np.maximum(t - w, -1.0), side="right")
        return (hi - lo).astype(np.float64)


class _Codes:
    """Stable integer codes for strings (helpers, videos, segment keys)."""

    def __init__(self) -> None:
        self.index: dict = {}

    def encode(self, values: Sequence) -> np.ndarray:
        out = np.empty(len(values), dtype=np.int64)
        index = self.index
        for i, v in enumerate(values):
            code = index.get(v)
            if code is None:
                code = index[v] = len(index)
            out[i] = code
        return out


def _check_events(events: pd.DataFrame) -> pd.DataFrame:
    need = ("at", "helper", "viewer", "video", "kind", "index")
    missing = [c for c in need if c not in events.columns]
    if missing:
        raise DemandError(f"events lack column(s) {missing}")
    ev = events[list(need) + (["playhead_s"] if "playhead_s" in events.columns else [])]
    if len(ev) and not ev["at"].is_monotonic_increasing:
        ev = ev.sort_values("at", kind="stable")
    return ev.reset_index(drop=True)


def snapshot_times(events: pd.DataFrame, cfg: DemandConfig, start: float | None = None,
                   end: float | None = None) -> np.ndarray:
    """Snapshot times every ``cfg.step`` from ``start`` (first event) to ``end`` (last - H)."""
    if len(events) == 0:
        return np.empty(0)
    first = float(events["at"].min()) if start is None else float(start)
    last = float(events["at"].max()) - cfg.horizon_s if end is None else float(end)
    first = math.ceil(first / cfg.step) * cfg.step
    if last < first:
        return np.empty(0)
    return np.arange(first, last + 1e-9, cfg.step)


# ------------------------------------------------------------------ features


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
    helper_c, video_c, viewer_c = _Codes(), _Codes(), _Codes()
    h = helper_c.encode(ev["helper"].to_numpy(object))
    v = video_c.encode(ev["video"].to_numpy(object))
    s = viewer_c.encode((ev["helper"] + "\x00" + ev["viewer"].astype(str)).to_numpy(object))
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
    frame["seg_local"] = _WindowCounter(req_codes, req_at).count(seg_code(fh, fv, fi), tt, w)
    frame["seg_global"] = _WindowCounter(req["v"].to_numpy() * max_idx + req["i"].to_numpy(),
                                         req_at).count(fv * max_idx + fi, tt, w)
    frame["vid_local"] = _WindowCounter(req["h"].to_numpy() * n_v + req["v"].to_numpy(),
                                        req_at).count(fh * n_v + fv, tt, w)
    frame["vid_global"] = _WindowCounter(req["v"].to_numpy(), req_at).count(fv, tt, w)
    starts = kind == "start"
    frame["vid_starts_local"] = _WindowCounter(h[starts] * n_v + v[starts], at[starts]).count(
        fh * n_v + fv, tt, lw)
    frame["helper_arrivals"] = _WindowCounter(h[starts], at[starts]).count(fh, tt, lw)
    hreq = _WindowCounter(h[is_req], at[is_req]).count(fh, tt, lw)
    for col, kinds in (("helper_pause_rate", ("pause",)), ("helper_seek_rate", ("seek",)),
                       ("helper_stop_rate", ("stop", "abandon"))):
        m = np.isin(kind, kinds)
        frame[col] = _WindowCounter(h[m], at[m]).count(fh, tt, lw) / np.maximum(hreq, 1.0)
    act = active.reset_index()
    act_key = np.searchsorted(times, act["t"].to_numpy()) * n_h + act["h"].to_numpy()
    act_val = dict(zip(act_key.tolist(), act["helper_active"].to_numpy().tolist()))
    frame["helper_active"] = np.array([act_val.get(k, 0.0) for k in
                                       (np.searchsorted(times, tt) * n_h + fh).tolist()],
                                      dtype=np.float64)
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


def _empty_frame() -> pd.DataFrame:
    cols = {"t": pd.Series(dtype=np.float64), "helper": pd.Series(dtype=object),
            "video": pd.Series(dtype=object), "index": pd.Series(dtype=np.int64)}
    cols.update({c: pd.Series(dtype=np.float64) for c in FEATURES if c != "index"})
    return pd.DataFrame(cols)


# ------------------------------------------------------------------ labels


def requests_ahead(events: pd.DataFrame, times: Sequence[float], horizon_s: float
                   ) -> pd.DataFrame:
    """Requests per (t, helper, video, index) in ``(t, t + horizon_s]`` for each snapshot t."""
    ev = _check_events(events)
    r = ev[ev["kind"] == "request"]
    times = np.asarray(sorted(float(t) for t in times), dtype=np.float64)
    at = r["at"].to_numpy(np.float64)
    lo = np.searchsorted(times, at - horizon_s, side="left")  # t >= at - H
    hi = np.searchsorted(times, at, side="left")               # t < at
    cnt = np.maximum(hi - lo, 0)
    pos = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    rows = np.repeat(np.arange(len(r)), cnt)
    out = pd.DataFrame({"t": times[pos], "helper": r["helper"].to_numpy(object)[rows],
                        "video": r["video"].to_numpy(object)[rows],
                        "index": r["index"].to_numpy(np.int64)[rows]})
    return out.groupby(list(KEYS), sort=True).size().rename("label").reset_index()


def add_labels(frame: pd.DataFrame, events: pd.DataFrame, cfg: DemandConfig,
               times: Sequence[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame with a ``label`` column, the requests no candidate covered).

    The second frame lists ``(t, helper, video, index, label)`` of segments requested in
    ``(t, t + H]`` at a helper that had no candidate row for them: every predictor
    predicted 0 there, and evaluation counts them.  ``times``: the snapshots (default:
    those in ``frame``; give them, or the requests after a snapshot without a single
    candidate are lost).
    """
    if times is None:
        times = np.unique(frame["t"].to_numpy()) if len(frame) else np.empty(0)
    lab = requests_ahead(events, times, cfg.horizon_s)
    merged = frame.merge(lab, on=list(KEYS), how="left", indicator=False)
    merged["label"] = merged["label"].fillna(0.0).astype(np.float64)
    covered = lab.merge(frame[list(KEYS)], on=list(KEYS), how="left", indicator=True)
    missed = covered[covered["_merge"] == "left_only"].drop(columns="_merge")
    return merged, missed.reset_index(drop=True)


# ------------------------------------------------------------------ predictors


class Predictor:
    """``fit(frame)`` then ``predict(frame)``: expected requests in ``(t, t + H]`` per row."""

    name = "predictor"

    def __init__(self, cfg: DemandConfig) -> None:
        self.cfg = cfg

    def fit(self, frame: pd.DataFrame) -> Predictor:
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


class GlobalPopularity(Predictor):
    """The segment's request rate over all helpers in the window, shared among the helpers."""

    name = "global-popularity"

    def fit(self, frame: pd.DataFrame) -> GlobalPopularity:
        self.helpers = max(1, int(frame["helper"].nunique())) if len(frame) else 1
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        helpers = getattr(self, "helpers", max(1, int(frame["helper"].nunique())))
        rate = frame["seg_global"].to_numpy() / self.cfg.window_s
        return rate * self.cfg.horizon_s / helpers


class HelperPopularity(Predictor):
    """The segment's request rate at this helper in the window, continued."""

    name = "helper-popularity"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["seg_local"].to_numpy() / self.cfg.window_s * self.cfg.horizon_s


class PlayheadExtrapolation(Predictor):
    """Every viewer keeps playing: the sessions due to ask for the segment within H."""

    name = "playhead"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["n_due"] + frame["n_due_paused"]).to_numpy(np.float64)


class Oracle(Predictor):
    """The future known: the label itself (needs a ``label`` column)."""

    name = "oracle"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if "label" not in frame.columns:
            raise DemandError("the oracle needs labelled rows (a 'label' column)")
        return frame["label"].to_numpy(np.float64)


@dataclass
class ModelParams:
    """Gradient boosting settings and the training-set cap (rows, sampled evenly).

    Twenty shallow trees: on the benchmark's hour of telemetry, 100 trees of 31 leaves
    scored the same precision (within 0.002) and took six times longer to predict.
    """

    max_iter: int = 20
    learning_rate: float = 0.3
    max_leaf_nodes: int = 15
    max_depth: int = 5
    min_samples_leaf: int = 50
    l2_regularization: float = 1.0
    max_rows: int = 200_000
    seed: int = 0


class DemandModel(Predictor):
    """The probability that a segment is requested, times the requests such a segment gets.

    A histogram gradient-boosting classifier on :data:`FEATURES` learns ``P(label >= 1)``
    (bounded, so a rare combination of features cannot make it explode, as a log-link
    regression can); the expected count is that probability times the mean count of
    requested segments in training with the same number of due sessions (1, 2, 3+).
    """

    name = "model"

    def __init__(self, cfg: DemandConfig, params: ModelParams | None = None) -> None:
        super().__init__(cfg)
        self.params = params or ModelParams()
        self.model = None
        self.trained_rows = 0
        self.per_hit = np.ones(4)

    @staticmethod
    def _due_bucket(frame: pd.DataFrame) -> np.ndarray:
        due = frame["n_due"].to_numpy() + frame["n_due_paused"].to_numpy()
        return np.clip(due, 0, 3).astype(np.int64)

    def fit(self, frame: pd.DataFrame) -> DemandModel:
        from sklearn.ensemble import HistGradientBoostingClassifier

        if "label" not in frame.columns:
            raise DemandError("training needs labelled rows (a 'label' column)")
        y = frame["label"].to_numpy() > 0 if len(frame) else np.zeros(0, dtype=bool)
        if y.sum() == 0 or y.all():
            raise DemandError("training needs rows with and without requests")
        p = self.params
        if len(frame) > p.max_rows:
            frame = frame.sample(p.max_rows, random_state=p.seed)
            y = frame["label"].to_numpy() > 0
        model = HistGradientBoostingClassifier(
            max_iter=p.max_iter, learning_rate=p.learning_rate, max_depth=p.max_depth,
            max_leaf_nodes=p.max_leaf_nodes, min_samples_leaf=p.min_samples_leaf,
            l2_regularization=p.l2_regularization, early_stopping=False,
            random_state=p.seed)
        model.fit(frame[list(FEATURES)].to_numpy(np.float64), y)
        bucket = self._due_bucket(frame)
        label = frame["label"].to_numpy(np.float64)
        for b in range(4):
            hit = y & (bucket == b)
            self.per_hit[b] = label[hit].mean() if hit.any() else 1.0
        self.model = model
        self.trained_rows = len(frame)
        return self

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """P(at least one request for the row's segment at its helper within H)."""
        if self.model is None:
            raise DemandError("the model has not been trained")
        if len(frame) == 0:
            return np.empty(0)
        return self.model.predict_proba(frame[list(FEATURES)].to_numpy(np.float64))[:, 1]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.probability(frame) * self.per_hit[self._due_bucket(frame)]


BASELINES = (GlobalPopularity, HelperPopularity, PlayheadExtrapolation, Oracle)


def predictors(cfg: DemandConfig, params: ModelParams | None = None) -> list[Predictor]:
    """The model and every baseline, in table order."""
    return [DemandModel(cfg, params)] + [cls(cfg) for cls in BASELINES]


# ------------------------------------------------------------------ evaluation


def top_budget(frame: pd.DataFrame, pred: np.ndarray, budget: int, min_expected: float = 0.0
               ) -> np.ndarray:
    """Boolean mask: per (t, helper) the ``budget`` rows of highest prediction >= min.

    Ties are broken in a seeded random order, the same for every predictor, so that a
    predictor that says nothing about a row does not inherit an order from its name.
    """
    n = len(frame)
    if n == 0:
        return np.zeros(0, dtype=bool)
    pred = np.asarray(pred, dtype=np.float64)
    t_code, _ = pd.factorize(frame["t"].to_numpy())
    h_code, helpers = pd.factorize(frame["helper"].to_numpy())
    group = t_code.astype(np.int64) * max(len(helpers), 1) + h_code
    tie = np.random.default_rng(0).permutation(n)
    order = np.lexsort((tie, -pred, group))
    g = group[order]
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    chosen = order[(rank < budget) & (pred[order] >= min_expected)]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def point_forecast(mean: np.ndarray) -> np.ndarray:
    """The whole number of requests nearest each predicted mean (what MAE scores).

    Counts here are small: a segment expected 0.3 times is asked for 0 times most often,
    so absolute error rewards the nearest count, not the mean.  Every predictor goes
    through this same rounding; RMSE scores the means themselves.
    """
    return np.floor(np.clip(np.asarray(mean, dtype=np.float64), 0.0, None) + 0.5)


@dataclass
class Scores:
    """One predictor's figures on one labelled set."""

    name: str
    mae: float
    rmse: float
    precision: float
    recall: float
    pushes: int
    calibration: float
    calibration_error: float
    rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(name: str, frame: pd.DataFrame, pred: np.ndarray, missed: pd.DataFrame,
             cfg: DemandConfig) -> Scores:
    """MAE, precision and recall at the budget, and calibration of ``pred`` on ``frame``."""
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, None)
    label = frame["label"].to_numpy(np.float64)
    missed_sum = float(missed["label"].sum()) if len(missed) else 0.0
    rows = len(frame) + len(missed)
    missed_sq = float((missed["label"] ** 2).sum()) if len(missed) else 0.0
    mae = (float(np.abs(point_forecast(pred) - label).sum()) + missed_sum) / max(rows, 1)
    rmse = math.sqrt((float(((pred - label) ** 2).sum()) + missed_sq) / max(rows, 1))
    mask = top_budget(frame, pred, cfg.budget, cfg.min_expected)
    hits = int((label[mask] > 0).sum())
    pushes = int(mask.sum())
    wanted = int((label > 0).sum()) + len(missed)
    total_pred, total_label = float(pred.sum()), float(label.sum()) + missed_sum
    calibration = total_pred / total_label if total_label else float("nan")
    if len(frame) >= 10:
        bins = pd.qcut(pd.Series(pred).rank(method="first"), 10, labels=False)
        per = pd.DataFrame({"b": bins, "p": pred, "y": label}).groupby("b")[["p", "y"]].mean()
        cal_err = float((per["p"] - per["y"]).abs().mean())
    else:
        cal_err = float("nan")
    precision = hits / pushes if pushes else 0.0
    recall = hits / wanted if wanted else 0.0
    return Scores(name, mae, rmse, precision, recall, pushes, calibration, cal_err, rows)


def scores_table(scores: Sequence[Scores]) -> pd.DataFrame:
    return pd.DataFrame([s.as_dict() for s in scores]).set_index("name")


@dataclass
class Dataset:
    """A labelled frame and the requests its candidates missed."""

    frame: pd.DataFrame
    missed: pd.DataFrame

    def between(self, start: float, end: float) -> Dataset:
        f = self.frame[(self.frame["t"] >= start) & (self.frame["t"] < end)]
        m = self.missed[(self.missed["t"] >= start) & (self.missed["t"] < end)]
        return Dataset(f.reset_index(drop=True), m.reset_index(drop=True))


def dataset(events: pd.DataFrame, cfg: DemandConfig, n_segments: Mapping[str, int] | None = None,
            times: Sequence[float] | None = None) -> Dataset:
    """Features and labels at every snapshot of ``events`` (or at ``times``)."""
    ts = snapshot_times(events, cfg) if times is None else np.asarray(times, dtype=np.float64)
    frame = build_frame(events, ts, cfg, n_segments)
    labelled, missed = add_labels(frame, events, cfg, ts)
    return Dataset(labelled, missed)


def compare(train: Dataset, tests: Mapping[str, Dataset], cfg: DemandConfig,
            params: ModelParams | None = None) -> dict[str, pd.DataFrame]:
    """Fit every predictor on ``train``; a scores table per named test set."""
    fitted = [p.fit(train.frame) for p in predictors(cfg, params)]
    return {label: scores_table([evaluate(p.name, ds.frame, p.predict(ds.frame), ds.missed, cfg)
                                 for p in fitted])
            for label, ds in tests.items()}


def online_replay(data: Dataset, cfg: DemandConfig, retrain_s: float, train_window_s: float,
                  first_train_s: float, period_s: float = 60.0,
                  params: ModelParams | None = None, freeze_after: float | None = None
                  ) -> pd.DataFrame:
    """Accuracy over time of a model retrained every ``retrain_s`` on a sliding window.

    At each retrain time r (from ``first_train_s``) the model is fitted on snapshots in
    ``[r - train_window_s, r - H]`` (their labels are known by r) and scores the
    snapshots in ``[r, r + retrain_s)``.  Returns one row per ``period_s`` with the
    precision, recall and MAE of that model (and its version), and of playhead
    extrapolation.  With ``freeze_after``, the same figures (``*_frozen``) for the model
    that stopped being retrained then: what retraining buys.
    """
    _positive("retrain_s", retrain_s)
    _positive("train_window_s", train_window_s)
    frame = data.frame
    if len(frame) == 0:
        raise DemandError("online replay needs a non-empty dataset")
    end = float(frame["t"].max()) + cfg.step
    preds = np.full(len(frame), np.nan)
    frozen_preds = np.full(len(frame), np.nan)
    version = np.zeros(len(frame), dtype=np.int64)
    model: DemandModel | None = None
    frozen: DemandModel | None = None
    r, n = float(first_train_s), 0
    t = frame["t"].to_numpy()
    while r < end:
        train = frame[(t >= r - train_window_s) & (t <= r - cfg.horizon_s)]
        if len(train) and 0 < (train["label"] > 0).sum() < len(train):
            model = DemandModel(cfg, params).fit(train)
            n += 1
        if freeze_after is not None and r <= freeze_after:
            frozen = model
        sel = (t >= r) & (t < r + retrain_s)
        if model is not None and sel.any():
            preds[sel] = model.predict(frame[sel])
            version[sel] = n
            if frozen is not None:
                frozen_preds[sel] = preds[sel] if frozen is model else frozen.predict(frame[sel])
        r += retrain_s
    base = PlayheadExtrapolation(cfg).predict(frame)
    rows = []
    period = np.floor(t / period_s) * period_s
    missed_period = np.floor(data.missed["t"].to_numpy() / period_s) * period_s
    for p in np.unique(period[~np.isnan(preds)]):
        sel = period == p
        sub = Dataset(frame[sel].reset_index(drop=True), data.missed[missed_period == p])
        m = evaluate("model", sub.frame, preds[sel], sub.missed, cfg)
        b = evaluate("playhead", sub.frame, base[sel], sub.missed, cfg)
        row = {"t": p, "version": int(version[sel].max()), "precision": m.precision,
               "recall": m.recall, "mae": m.mae, "playhead_precision": b.precision,
               "playhead_recall": b.recall, "playhead_mae": b.mae}
        if freeze_after is not None and not np.isnan(frozen_preds[sel]).any():
            f = evaluate("frozen", sub.frame, frozen_preds[sel], sub.missed, cfg)
            row.update(precision_frozen=f.precision, recall_frozen=f.recall, mae_frozen=f.mae)
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ sessions to come

ARRIVAL_COLUMNS = ["helper", "video", "index", "expected"]


def arrival_demand(events: pd.DataFrame, now: float, *, window_s: float, horizon_s: float,
                   prefix: int, helpers: Sequence[str] | None = None, mix: float = 0.5,
                   videos: Sequence[str] | None = None, top_videos: int = 10,
                   exclude: Collection[str] = (), since: float | None = None
                   ) -> pd.DataFrame:
    """Expected requests over the next ``horizon_s`` from sessions not started yet.

    A new session asks for its video's first ``prefix`` segments at once (the start-up
    burst), which no forecast of running sessions can see coming.  Per helper, sessions
    arrive at the rate of the ``start`` events of the last ``window_s`` seconds (half its
    own, half the mean over helpers, so a quiet helper still expects some; over the time
    the telemetry covers when that is shorter than the window), and pick a
    video with the probability of a ``mix`` of the global and the helper's own recent
    choices.  Expected requests for segment ``i < prefix`` of video ``v`` at helper ``h``:
    ``rate_h * horizon_s * p_h(v)``, for its ``top_videos`` likeliest videos (only those in
    ``videos`` when given, e.g. the on-demand catalogue; never those in ``exclude``).
    ``since``: when the telemetry begins (default: the first event given), for callers
    that pass only the window.
    """
    for name, v in (("window_s", window_s), ("horizon_s", horizon_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise DemandError(f"arrival_demand: {name} must be > 0, got {v!r}")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 1:
        raise DemandError(f"arrival_demand: prefix must be an int >= 1, got {prefix!r}")
    if not 0.0 <= mix <= 1.0:
        raise DemandError(f"arrival_demand: mix must be within 0..1, got {mix!r}")
    at = events["at"]
    starts = events[(events["kind"] == "start") & (at > now - window_s) & (at <= now)]
    if videos is not None:
        starts = starts[starts["video"].isin(set(videos))]
    if exclude:
        starts = starts[~starts["video"].isin(set(exclude))]
    names = sorted(set(helpers) if helpers is not None else set(starts["helper"]))
    if starts.empty or not names:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    # the rate over the time telemetry has covered, when that is shorter than the window
    first = float(at.min()) if since is None else min(float(since), float(at.min()))
    span = max(min(window_s, now - first), min(window_s, 10.0))
    helper_of = starts["helper"].to_numpy(object)
    own = pd.Series(helper_of).value_counts().reindex(names, fill_value=0).to_numpy(float)
    mean = len(starts) / max(len(names), len(set(helper_of)))
    rate = 0.5 * (own + mean) / span
    share = _video_shares(starts, names, own > 0, mix)
    vids = np.array(sorted(set(starts["video"])), dtype=object)
    n_v = len(vids)
    # per helper, its likeliest videos first (ties by video id)
    order = np.lexsort((np.tile(np.arange(n_v), len(names)), -share.ravel(),
                        np.repeat(np.arange(len(names)), n_v)))
    rank = np.tile(np.arange(n_v), len(names))
    pick = order[rank < min(top_videos, n_v)]
    h_i, v_i = np.divmod(pick, n_v)
    expected = rate[h_i] * horizon_s * share.ravel()[pick]
    return pd.DataFrame({
        "helper": np.repeat(np.asarray(names, dtype=object)[h_i], prefix),
        "video": np.repeat(vids[v_i], prefix),
        "index": np.tile(np.arange(prefix, dtype=np.int64), len(pick)),
        "expected": np.repeat(expected, prefix)}, columns=ARRIVAL_COLUMNS)


def _video_shares(starts: pd.DataFrame, names: Sequence[str], has_own: np.ndarray,
                  mix: float) -> np.ndarray:
    """helpers x videos (sorted ids): the chance a new session at the helper picks the
    video: ``mix`` of everyone's recent choices and the rest its own, or everyone's alone
    for a helper that started nothing."""
    vids = sorted(set(starts["video"]))
    v_code = pd.Index(vids).get_indexer(starts["video"])
    glob = np.bincount(v_code, minlength=len(vids)) / len(starts)
    h_code = pd.Index(names).get_indexer(starts["helper"])
    mine = h_code >= 0
    local = np.zeros((len(names), len(vids)))
    np.add.at(local, (h_code[mine], v_code[mine]), 1.0)
    local /= np.maximum(local.sum(axis=1, keepdims=True), 1.0)
    return np.where(has_own[:, None], mix * glob[None, :] + (1 - mix) * local, glob[None, :])


# ------------------------------------------------------------------ popularity

SESSION_COLUMNS = ["helper", "viewer", "video", "index"]


def current_sessions(events: pd.DataFrame, now: float, timeout_s: float,
                     helpers: Collection[str] | None = None) -> pd.DataFrame:
    """The sessions going at ``now``: ``helper, viewer, video, index`` of the last request
    of each session heard from within ``timeout_s`` whose last event is not an end.

    Rows in the order of those last requests; only ``helpers``' sessions when given.
    """
    at = events["at"]
    ev = events[(at >= now - timeout_s) & (at <= now)]
    if helpers is not None:
        ev = ev[ev["helper"].isin(set(helpers))]
    if len(ev) == 0:
        return pd.DataFrame(columns=SESSION_COLUMNS)
    last = ev.groupby(["helper", "viewer"], sort=False).tail(1)
    ended = last.loc[last["kind"].isin(ENDS), ["helper", "viewer"]]
    req = ev[ev["kind"] == "request"].groupby(["helper", "viewer"], sort=False).tail(1)
    if len(ended):
        gone = pd.MultiIndex.from_frame(ended)
        req = req[~pd.MultiIndex.from_frame(req[["helper", "viewer"]]).isin(gone)]
    return req[SESSION_COLUMNS].reset_index(drop=True)


def popularity_demand(events: pd.DataFrame, now: float, cfg: DemandConfig, *,
                      horizon_s: float, prefix: int, prefix_window_s: float,
                      live: Collection[str] = (), helpers: Sequence[str] | None = None,
                      n_segments: Mapping[str, int] | None = None, mix: float = 0.5,
                      since: float | None = None) -> pd.DataFrame:
    """Expected requests per helper and segment over exactly ``horizon_s``, from
    popularity alone (the prefetch a CDN would run): ``helper, video, index, expected``.

    * Popular segments ahead of sessions: a segment's request rate over the last
      ``cfg.window_s`` (``1 - mix`` of its rate at the helper, ``mix`` of its rate over
      all helpers shared among the helpers that served requests), times ``horizon_s``;
      only for segments past the last request of at least one session going at the
      helper on that video (:func:`current_sessions`).
    * Prefix caching: the first ``prefix`` segments of the videos new sessions are likely
      to start at the helper (:func:`arrival_demand` over ``prefix_window_s``).

    A segment that every session going at the helper on its video has asked for already
    is never a row (the helper has just served it); nor is any segment of a ``live``
    video (the multicast tree brings those as they are made).  Where both parts name a
    segment they estimate the same flow of requests: the larger counts, not the sum.
    ``events`` need reach back only ``max(cfg.window_s, prefix_window_s,
    cfg.session_timeout_s)`` when ``since`` says when the telemetry begins.
    """
    _positive("horizon_s", horizon_s)
    _positive("prefix_window_s", prefix_window_s)
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise DemandError(f"popularity prefix must be an int >= 0, got {prefix!r}")
    live = frozenset(live)
    sessions = current_sessions(events, now, cfg.session_timeout_s, helpers)
    sessions = sessions[~sessions["video"].isin(live)]
    lowest = sessions.groupby(["helper", "video"], sort=False)["index"].min().rename("lowest")
    parts = [_popular_ahead(events, now, cfg, horizon_s, lowest, live, mix)]
    if prefix > 0:
        at = events["at"]
        names = list(helpers) if helpers is not None else sorted(
            set(events.loc[(at > now - prefix_window_s) & (at <= now), "helper"]))
        parts.append(arrival_demand(events, now, window_s=prefix_window_s,
                                    horizon_s=horizon_s, prefix=prefix, helpers=names,
                                    mix=mix, exclude=live, since=since))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    rows = pd.concat(parts, ignore_index=True)
    rows["index"] = rows["index"].astype(np.int64)
    rows = _not_passed(_within(rows, n_segments), lowest)
    return rows.groupby(["helper", "video", "index"], as_index=False, sort=True)[
        "expected"].max()[ARRIVAL_COLUMNS]


def _popular_ahead(events: pd.DataFrame, now: float, cfg: DemandConfig, horizon_s: float,
                   lowest: pd.Series, live: frozenset, mix: float) -> pd.DataFrame:
    """Recently requested segments past some session's last request at the helper, with
    their recent request rate continued over ``horizon_s``."""
    at = events["at"]
    req = events[(events["kind"] == "request") & (at > now - cfg.window_s) & (at <= now)]
    if len(req) == 0 or len(lowest) == 0:
        return pd.DataFrame(columns=ARRIVAL_COLUMNS)
    serving = max(1, req["helper"].nunique())
    req = req[~req["video"].isin(live)]
    glob = req.groupby(["video", "index"], sort=False).size().rename("g").reset_index()
    local = req.groupby(["helper", "video", "index"], sort=False).size().rename("l")
    cand = lowest.reset_index().merge(glob, on="video")
    cand = cand[cand["index"].to_numpy() > cand["lowest"].to_numpy()]
    mine = local.reindex(pd.MultiIndex.from_frame(cand[["helper", "video", "index"]]))
    own = np.nan_to_num(mine.to_numpy(np.float64))
    share = cand["g"].to_numpy(np.float64) / serving
    cand = cand.assign(expected=((1 - mix) * own + mix * share) / cfg.window_s * horizon_s)
    return cand[ARRIVAL_COLUMNS]


def _within(rows: pd.DataFrame, n_segments: Mapping[str, int] | None) -> pd.DataFrame:
    """Rows whose index is inside the video (videos of unknown length: all)."""
    if not n_segments or len(rows) == 0:
        return rows
    codes, vids = pd.factorize(rows["video"])
    limit = np.array([n_segments.get(v, np.inf) for v in vids], dtype=np.float64)
    return rows[rows["index"].to_numpy() < limit[codes]]


def _not_passed(rows: pd.DataFrame, lowest: pd.Series) -> pd.DataFrame:
    """Drop rows at or behind the last request of every session at the helper on the video."""
    if len(rows) == 0 or len(lowest) == 0:
        return rows
    low = lowest.reindex(pd.MultiIndex.from_frame(rows[["helper", "video"]])).to_numpy(float)
    return rows[np.isnan(low) | (rows["index"].to_numpy() > low)]
