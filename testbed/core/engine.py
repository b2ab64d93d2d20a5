"""The prediction engine's state, without I/O: telemetry store, model versions, predictions.

The engine daemon (:mod:`testbed.nodes.engine`) feeds :class:`DemandEngine` the helpers'
telemetry batches (:meth:`DemandEngine.ingest` checks every record with
:func:`testbed.core.telemetry.check_record` and counts what it refuses, by reason), asks it
for predictions (:meth:`DemandEngine.predict`: the top segments per helper for the next
``H`` seconds, from the current model, or from playhead extrapolation until a model
exists; or from a baseline: :func:`~testbed.core.demand.popularity_demand` or playhead
extrapolation), and retrains in the background: :meth:`DemandEngine.training_input` takes
a copy of the store, :func:`train` (a pure function, run in another process) fits a new
:class:`~testbed.core.demand.DemandModel` on the sliding window and scores it, and
:meth:`DemandEngine.install` swaps it in.  Predictions never wait for training.

Each training also scores the model it replaces on the snapshots since the last training,
which that model never saw: the series of those scores is the engine's accuracy over time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from testbed.core import demand as D
from testbed.core.telemetry import TelemetryError, check_batch
from testbed.core.workload import TRACE_COLUMNS


def predict_lookback(d: D.DemandConfig) -> float:
    """Telemetry a prediction looks at: enough for every feature window (features are
    capped so that older events would not change them; see ``build_frame``)."""
    return d.long_window_s + d.session_timeout_s


#: What :meth:`DemandEngine.predict` can answer with.
PREDICTORS = ("model", "popularity", "playhead")
#: The horizons a popularity answer may be asked for, in seconds.
POPULARITY_HORIZON_S = (1.0, 600.0)


class EngineError(ValueError):
    """A bad engine setting or request."""


@dataclass(frozen=True)
class EngineConfig:
    """Retraining cadence and window; the demand framing; limits on what is accepted."""

    demand: D.DemandConfig = field(default_factory=D.DemandConfig)
    retrain_s: float = 30.0
    train_window_s: float = 900.0
    min_train_s: float = 40.0  # the scenario's default (testbed.scenario.EngineSection)
    top: int = 20
    max_future_s: float = 5.0
    max_age_s: float = 600.0
    params: D.ModelParams = field(default_factory=D.ModelParams)
    #: sessions to come (:func:`D.arrival_demand`): their start-up bursts of ``prefix``
    #: segments expected over ``arrivals_horizon_s``, from the starts of the last
    #: ``arrivals_window_s``; ``prefix`` 0: none
    prefix: int = 0
    arrivals_horizon_s: float = 60.0
    arrivals_window_s: float = 300.0
    #: the popularity baseline's prefix caching: the first ``popularity_prefix`` segments
    #: of the videos likely to start (what a new session asks for at once: the player's
    #: buffer over the segment length; 12 s / 2 s by default), from the starts of the
    #: last ``arrivals_window_s``
    popularity_prefix: int = 6

    def __post_init__(self) -> None:
        for name in ("retrain_s", "train_window_s", "min_train_s", "max_future_s",
                     "max_age_s", "arrivals_horizon_s", "arrivals_window_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise EngineError(f"engine {name} must be a number > 0, got {v!r}")
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
            raise EngineError(f"engine top must be an int >= 1, got {self.top!r}")
        for name in ("prefix", "popularity_prefix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise EngineError(f"engine {name} must be an int >= 0, got {v!r}")

    @property
    def keep_s(self) -> float:
        """How much telemetry the store keeps: the training window plus feature windows."""
        d = self.demand
        return self.train_window_s + d.long_window_s + d.session_timeout_s + d.horizon_s


class EventStore:
    """Accepted telemetry rows; a sorted DataFrame on demand, rows older than keep_s pruned."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
        self._pending: list[dict] = []
        self.total = 0

    def add(self, rows: Sequence[dict]) -> None:
        self._pending.extend(rows)
        self.total += len(rows)

    def frame(self, now: float | None = None) -> pd.DataFrame:
        if self._pending:
            new = pd.DataFrame(self._pending, columns=list(TRACE_COLUMNS)).astype(_DTYPES)
            self._pending = []
            both = pd.concat([self._frame, new], ignore_index=True)
            self._frame = both.sort_values("at", kind="stable").reset_index(drop=True)
        if now is not None and len(self._frame):
            old = self._frame["at"].to_numpy() < now - self.keep_s
            if old.any():
                self._frame = self._frame[~old].reset_index(drop=True)
        return self._frame

    def __len__(self) -> int:
        return len(self._frame) + len(self._pending)


_DTYPES = {"at": "float64", "helper": "object", "viewer": "object", "video": "object",
           "kind": "object", "playhead_s": "float64", "index": "int64"}


@dataclass
class TrainingResult:
    """A fitted model (None when there was too little to learn from) and its scores."""

    model: D.DemandModel | None
    metrics: dict


def train(events: pd.DataFrame, now: float, cfg: EngineConfig,
          n_segments: Mapping[str, int] | None = None,
          previous: D.DemandModel | None = None) -> TrainingResult:
    """Fit on the snapshots in ``[now - train_window_s, now - H]``.

    When a ``previous`` model is given it is scored, next to playhead extrapolation, on
    the snapshots of the last ``retrain_s`` (which it never saw): how well the model that
    was serving did, period after period.
    """
    d = cfg.demand
    start = max(float(events["at"].min()) if len(events) else now, now - cfg.train_window_s)
    times = D.snapshot_times(events, d, start=start, end=now - d.horizon_s)
    metrics: dict = {"trained_at": now, "snapshots": int(len(times))}
    if len(times) < 4 or now - start < cfg.min_train_s:
        metrics["skipped"] = "too little telemetry"
        return TrainingResult(None, metrics)
    data = D.dataset(events, d, n_segments, times)
    labels = data.frame["label"].to_numpy() if len(data.frame) else np.zeros(0)
    if not (labels > 0).any() or (labels > 0).all():
        metrics["skipped"] = "no requests to learn from" if not (labels > 0).any() \
            else "no candidate went unrequested"
        return TrainingResult(None, metrics)
    scored: dict = {}
    recent = data.between(now - cfg.retrain_s - d.horizon_s, np.inf)
    if previous is not None and len(recent.frame):
        for name, p in (("previous", previous), ("playhead", D.PlayheadExtrapolation(d))):
            s = D.evaluate(name, recent.frame, p.predict(recent.frame), recent.missed, d)
            scored[name] = {"precision": round(s.precision, 4), "recall": round(s.recall, 4),
                            "mae": round(s.mae, 5), "rmse": round(s.rmse, 5)}
    model = D.DemandModel(d, cfg.params).fit(data.frame)
    metrics.update({"rows": int(len(data.frame)), "trained_rows": model.trained_rows,
                    "scores": scored})
    return TrainingResult(model, metrics)


class DemandEngine:
    """Telemetry in, predictions out; models swapped in as they are trained."""

    def __init__(self, cfg: EngineConfig, n_segments: Mapping[str, int] | None = None,
                 live: Iterable[str] = ()) -> None:
        self.cfg = cfg
        self.n_segments = dict(n_segments or {})
        #: live channels: the popularity baseline never names their segments
        self.live = frozenset(live)
        self.store = EventStore(cfg.keep_s)
        self.model: D.DemandModel | None = None
        self.version = 0
        self.history: list[dict] = []
        self.rejected: Counter = Counter()
        self.accepted = 0
        self.batches = 0
        self.last_training = -float("inf")
        self.started_at: float | None = None

    # -- telemetry ----------------------------------------------------------------------
    def ingest(self, events: object, sender: str, now: float) -> tuple[list[dict], list[str]]:
        """Store a batch's valid records; (the rows kept, error lines).  Never raises."""
        if self.started_at is None:
            self.started_at = now
        rows, errors = check_batch(events, sender, now, max_future_s=self.cfg.max_future_s,
                                   max_age_s=self.cfg.max_age_s)
        for e in errors:
            self.rejected[e.reason] += 1
        self.store.add(rows)
        self.accepted += len(rows)
        self.batches += 1
        return rows, errors

    def reject(self, reason: str) -> None:
        """Count a batch refused before its records could be looked at."""
        self.rejected[reason] += 1

    # -- training -----------------------------------------------------------------------
    def due(self, now: float) -> bool:
        return now - self.last_training >= self.cfg.retrain_s and self.started_at is not None \
            and now - self.started_at >= self.cfg.min_train_s

    def training_input(self, now: float) -> pd.DataFrame:
        """A copy of the store for :func:`train`; marks the training as started."""
        self.last_training = now
        return self.store.frame(now).copy()

    def install(self, result: TrainingResult) -> int:
        """Swap in a trained model (if any); returns the version now serving."""
        entry = dict(result.metrics)
        if result.model is not None:
            self.version += 1
            self.model = result.model
            entry["version"] = self.version
        self.history.append(entry)
        return self.version

    # -- predictions --------------------------------------------------------------------
    def predict(self, now: float, helpers: Sequence[str] | None = None,
                top: int | None = None, predictor: str = "model",
                horizon_s: float | None = None) -> dict:
        """``{"version", "predictor", "t", "horizon_s", "predictions": {helper: [[video,
        index, expected]]}, "playheads": {helper: [[video, index]]}}``; top ``top``
        segments per helper, expected requests over ``horizon_s`` (the answer's).

        ``predictor``: ``model`` (the current model; playhead extrapolation until one is
        trained), ``playhead`` (every session keeps playing), both over the engine's
        horizon, or ``popularity`` (:func:`D.popularity_demand`: recently popular
        segments ahead of the helper's sessions and the prefixes of the videos likely to
        start, never a live segment), over ``horizon_s`` when given (1..600 s).  For
        ``model`` the answer also has ``arrivals`` when ``prefix`` > 0: the start-up
        bursts expected from sessions to come (:meth:`arrivals`).
        """
        top = self.cfg.top if top is None else top
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
            raise EngineError(f"top must be an int within 1..1000, got {top!r}")
        if predictor not in PREDICTORS:
            raise EngineError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
        horizon = self._horizon(predictor, horizon_s)
        d = self.cfg.demand
        ev = self.store.frame(now)
        recent = _between(ev, now - predict_lookback(d), now)
        wanted = None if helpers is None else set(helpers)
        if predictor == "popularity":
            rows = self._popularity(ev, now, helpers, horizon)
        else:
            rows = self._forecast(recent, now, wanted, predictor)
        version = self.version if predictor == "model" else 0
        answer = {"version": version, "predictor": predictor, "t": now,
                  "horizon_s": horizon, "predictions": _top_rows(rows, top, helpers),
                  "playheads": self.playheads(recent, now, wanted)}
        if predictor == "model" and self.cfg.prefix > 0:
            answer["arrivals"] = self.arrivals(ev, now, helpers)
            answer["arrivals_horizon_s"] = self.cfg.arrivals_horizon_s
        return answer

    def _horizon(self, predictor: str, horizon_s: object) -> float:
        """The horizon of an answer: the engine's, or the one asked of popularity."""
        h = self.cfg.demand.horizon_s
        if horizon_s is None:
            return h
        lo, hi = POPULARITY_HORIZON_S
        if isinstance(horizon_s, bool) or not isinstance(horizon_s, (int, float)) \
                or not lo <= horizon_s <= hi:
            raise EngineError(f"horizon_s must be a number within {lo:g}..{hi:g} s, "
                              f"got {horizon_s!r}")
        if predictor != "popularity" and float(horizon_s) != h:
            raise EngineError(f"horizon_s applies to popularity only; {predictor} forecasts "
                              f"the engine's {h:g} s, got {horizon_s!r}")
        return float(horizon_s)

    def _forecast(self, recent: pd.DataFrame, now: float, wanted: set[str] | None,
                  predictor: str) -> pd.DataFrame:
        """``helper, video, index, expected`` from the model or playhead extrapolation."""
        d = self.cfg.demand
        frame = D.build_frame(recent, [now], d, self.n_segments)
        if wanted is not None:
            frame = frame[frame["helper"].isin(wanted)]
        if predictor == "model" and self.model is not None:
            pred = self.model.predict(frame) if len(frame) else np.empty(0)
        else:
            pred = D.PlayheadExtrapolation(d).predict(frame)
        return pd.DataFrame({"helper": frame["helper"].to_numpy(),
                             "video": frame["video"].to_numpy(),
                             "index": frame["index"].to_numpy(), "expected": pred})

    def _popularity(self, ev: pd.DataFrame, now: float, helpers: Sequence[str] | None,
                    horizon: float) -> pd.DataFrame:
        """The popularity baseline's rows over ``horizon`` (:func:`D.popularity_demand`)."""
        c, d = self.cfg, self.cfg.demand
        back = max(d.window_s, d.session_timeout_s, c.arrivals_window_s)
        since = float(ev["at"].iloc[0]) if len(ev) else now
        return D.popularity_demand(_between(ev, now - back, now), now, d, horizon_s=horizon,
                                   prefix=c.popularity_prefix,
                                   prefix_window_s=c.arrivals_window_s, live=self.live,
                                   helpers=helpers, n_segments=self.n_segments, since=since)

    def arrivals(self, ev: pd.DataFrame, now: float,
                 helpers: Sequence[str] | None = None) -> dict[str, list]:
        """Per helper, ``[video, index, expected]`` of the start-up bursts of sessions to
        come over ``arrivals_horizon_s`` (:func:`D.arrival_demand`)."""
        c = self.cfg
        rows = D.arrival_demand(ev, now, window_s=c.arrivals_window_s,
                                horizon_s=c.arrivals_horizon_s, prefix=c.prefix,
                                helpers=helpers)
        out: dict[str, list] = {h: [] for h in (helpers or [])}
        for h, g in rows.groupby("helper", sort=True):
            out[str(h)] = [[v, int(i), round(float(x), 4)]
                           for v, i, x in g[["video", "index", "expected"]].itertuples(
                               index=False)]
        return out

    def playheads(self, recent: pd.DataFrame, now: float,
                  helpers: set[str] | None = None) -> dict[str, list]:
        """Per helper, ``[video, last requested index]`` of each session still going."""
        going = D.current_sessions(recent, now, self.cfg.demand.session_timeout_s, helpers)
        out: dict[str, list] = {}
        for h, video, i in going[["helper", "video", "index"]].itertuples(index=False):
            out.setdefault(h, []).append([video, int(i)])
        return out

    def status(self) -> dict:
        return {"version": self.version, "accepted": self.accepted, "batches": self.batches,
                "stored": len(self.store), "rejected": dict(self.rejected),
                "trainings": len(self.history),
                "last": self.history[-1] if self.history else None}


def _between(ev: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """The rows of the time-sorted store with ``start <= at <= end``."""
    at = ev["at"].to_numpy()
    return ev.iloc[np.searchsorted(at, start, "left"):np.searchsorted(at, end, "right")]


def _top_rows(rows: pd.DataFrame, top: int, helpers: Sequence[str] | None
              ) -> dict[str, list]:
    """``{helper: [[video, index, expected], ...]}``: each helper's ``top`` rows of
    positive expectation, highest first (ties by video and index); every helper asked
    for has an entry."""
    out: dict[str, list] = {h: [] for h in (helpers or [])}
    if len(rows) == 0:
        return out
    f = rows[rows["expected"].to_numpy(np.float64) > 0]
    f = f.sort_values(["helper", "expected", "video", "index"],
                      ascending=[True, False, True, True])
    f = f[f.groupby("helper", sort=False).cumcount().to_numpy() < top]
    for h, v, i, p in zip(f["helper"].tolist(), f["video"].tolist(), f["index"].tolist(),
                          f["expected"].tolist()):
        out.setdefault(h, []).append([v, int(i), round(float(p), 4)])
    return out


__all__ = ["DemandEngine", "EngineConfig", "EngineError", "EventStore", "TelemetryError",
           "TrainingResult", "train"]
