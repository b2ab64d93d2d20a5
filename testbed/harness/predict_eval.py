"""``testbed workload`` and ``testbed predict-eval``: make a trace, judge predictors on it.

:func:`write_workload` generates a synthetic trace (:mod:`testbed.core.workload`) and
writes it with its parameters beside it (``TRACE.json``), so that the same workload can
be drawn again under another seed.

:func:`predict_eval` trains the demand model and every baseline on the first part of a
trace and scores them (:mod:`testbed.core.demand`) on the later part (held-out time) and
on the same stretch of a trace from another seed (held-out seed: ``holdout``, or drawn
from ``TRACE.json``).  With ``replay`` it also replays the trace as the live engine would,
retraining every ``retrain_s`` on a sliding window, next to a model frozen at its first
training: accuracy over time, which shows what retraining buys after a popularity shift.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.core import demand as D
from testbed.core import workload as W
from testbed.traces import read_trace, write_trace


def sidecar(trace: Path) -> Path:
    return trace.with_suffix(".json")


def write_workload(cfg: W.WorkloadConfig, path: Path) -> pd.DataFrame:
    """Generate ``cfg``'s trace into ``path`` (CSV or Parquet) and its config beside it."""
    trace = W.generate(cfg).trace()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_trace(trace, path)
    sidecar(path).write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return trace


def load_config(trace: Path) -> W.WorkloadConfig | None:
    """The workload a trace was drawn from, when its ``.json`` sits beside it."""
    path = sidecar(trace)
    if not path.exists():
        return None
    try:
        return W.WorkloadConfig.from_mapping(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise W.WorkloadError(f"{path}: {exc}") from None


def infer_segment_s(trace: pd.DataFrame) -> float:
    """Segment length from request rows (``playhead_s = index * segment_s``); 2 s if none."""
    req = trace[(trace["kind"] == "request") & (trace["index"] > 0)]
    if len(req) == 0:
        return 2.0
    return float(np.median(req["playhead_s"].to_numpy() / req["index"].to_numpy()))


def active_times(trace: pd.DataFrame, cfg: D.DemandConfig) -> np.ndarray:
    """Snapshots while viewers still arrive: after the last arrival the trace only drains."""
    starts = trace.loc[trace["kind"] == "start", "at"]
    end = float(trace["at"].max()) - cfg.horizon_s
    if len(starts):
        end = min(end, float(starts.max()))
    return D.snapshot_times(trace, cfg, end=end)


@dataclass
class Evaluation:
    """What :func:`predict_eval` found: a scores table per test set, the replay, notes."""

    tables: dict[str, pd.DataFrame]
    replay: pd.DataFrame | None
    notes: list[str]
    config: D.DemandConfig
    split_at: float
    shifts: tuple[float, ...] = ()

    def summary(self) -> dict:
        out: dict = {"split_at_s": self.split_at, "config": self.config.as_dict(),
                     "notes": self.notes}
        for name, table in self.tables.items():
            out[name] = json.loads(table.to_json(orient="index"))
        return out


def predict_eval(trace_path: Path, holdout: Path | None = None, train_frac: float = 2 / 3,
                 horizon_s: float = 5.0, budget: int = 5, replay: bool = False,
                 retrain_s: float = 300.0, window_s: float = 900.0,
                 say: Callable[[str], None] = print) -> Evaluation:
    """Train on the first ``train_frac`` of the trace; score on the rest and a held-out seed."""
    if not 0.1 <= train_frac <= 0.9:
        raise D.DemandError(f"train_frac must be within 0.1..0.9, got {train_frac!r}")
    trace = read_trace(trace_path)
    wcfg = load_config(trace_path)
    notes: list[str] = []
    if wcfg is not None:
        seg = wcfg.segment_s
        n_segments = {v: max(1, math.ceil(d / seg - 1e-9))
                      for v, d in (*wcfg.videos, *wcfg.live)}
    else:
        seg = infer_segment_s(trace)
        n_segments = None
        notes.append(f"no {sidecar(trace_path).name}: segment_s {seg:g} inferred from the "
                     f"requests, video lengths unknown")
    cfg = D.DemandConfig(horizon_s=horizon_s, segment_s=seg, budget=budget)
    say(f"building features for {trace_path} ({len(trace)} events)")
    data = D.dataset(trace, cfg, n_segments, active_times(trace, cfg))
    if len(data.frame) == 0:
        raise D.DemandError(f"{trace_path}: no request to predict")
    first, last = float(data.frame["t"].min()), float(data.frame["t"].max())
    cut = first + train_frac * (last - first)
    tests = {"held-out time": data.between(cut, np.inf)}
    other = None
    if holdout is not None:
        other = read_trace(holdout)
        notes.append(f"held-out seed: {holdout}")
    elif wcfg is not None:
        seed = wcfg.seed + 1
        other = W.generate(dataclasses.replace(wcfg, seed=seed)).trace()
        notes.append(f"held-out seed: the same workload drawn with seed {seed}")
    else:
        notes.append("no held-out seed: give --holdout TRACE")
    if other is not None:
        say("building features for the held-out seed")
        tests["held-out seed"] = D.dataset(other, cfg, n_segments,
                                           active_times(other, cfg)).between(cut, np.inf)
    say("training the model and the baselines")
    tables = D.compare(data.between(-np.inf, cut - cfg.horizon_s), tests, cfg)
    rep = None
    if replay:
        say(f"replaying: retraining every {retrain_s:g} s on the last {window_s:g} s")
        rep = D.online_replay(data, cfg, retrain_s, window_s, first_train_s=retrain_s,
                              freeze_after=retrain_s)
    shifts = tuple(s.at_s for s in wcfg.shifts) if wcfg is not None else ()
    return Evaluation(tables, rep, notes, cfg, cut, shifts)


def write_evaluation(ev: Evaluation, out: Path) -> list[Path]:
    """Tables as CSV, the summary as JSON and, with a replay, accuracy over time as PNG."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in ev.tables.items():
        p = out / f"scores-{name.replace(' ', '-')}.csv"
        table.to_csv(p)
        paths.append(p)
    (out / "summary.json").write_text(json.dumps(ev.summary(), indent=1, default=float))
    paths.append(out / "summary.json")
    if ev.replay is not None:
        ev.replay.to_csv(out / "accuracy-over-time.csv", index=False)
        paths += [out / "accuracy-over-time.csv", plot_replay(ev.replay, out, ev.shifts)]
    return paths


def plot_replay(rep: pd.DataFrame, out: Path, shifts: tuple[float, ...] = ()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    minutes = rep["t"] / 60
    ax.plot(minutes, rep["precision"], label="model, retrained")
    ax.plot(minutes, rep["precision_frozen"], label="model, frozen after first training")
    ax.plot(minutes, rep["playhead_precision"], label="playhead extrapolation", ls="--")
    for at in shifts:
        ax.axvline(at / 60, color="grey", lw=0.8)
    ax.set_xlabel("trace time (min)")
    ax.set_ylabel("precision at budget")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "accuracy-over-time.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
