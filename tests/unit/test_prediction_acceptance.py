"""The prediction engine's claims at full scale: 50 helpers, 200 videos, an hour of viewers.

On a seeded synthetic trace the model beats playhead extrapolation and both popularity
baselines on precision at the push budget and on MAE, on the last third of the hour
(held-out time) and on a trace drawn with another seed (held-out seed).  With a new hot
video at 30 minutes, the model retrained every 5 minutes keeps its accuracy after the
shift and is never worse than one frozen before it.  (About a minute of CPU.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from testbed.core import demand as D
from testbed.core import workload as W

HOUR = 3600.0


def trace_of(cfg: W.WorkloadConfig):
    return W.generate(cfg).trace()


@pytest.fixture(scope="module")
def setting():
    cfg = W.WorkloadConfig(helpers=tuple(f"h{i}" for i in range(1, 51)),
                           videos=W.synthetic_catalogue(200, seed=7), duration_s=HOUR,
                           seed=7, arrival_rate=0.02,
                           shifts=(W.PopularityShift(1800.0, "vod-0199", 0.3),))
    n_segments = {v: int(np.ceil(d / cfg.segment_s - 1e-9)) for v, d in cfg.videos}
    dcfg = D.DemandConfig()
    end = HOUR - dcfg.horizon_s
    trace = trace_of(cfg)
    data = D.dataset(trace, dcfg, n_segments, D.snapshot_times(trace, dcfg, end=end))
    other = trace_of(dataclasses.replace(cfg, seed=8))
    held = D.dataset(other, dcfg, n_segments, D.snapshot_times(other, dcfg, end=end))
    return cfg, dcfg, data, held


def test_the_trace_is_at_the_scale_the_claim_needs(setting):
    cfg, _, data, _ = setting
    assert len(cfg.helpers) >= 50 and len(cfg.videos) >= 200 and cfg.duration_s >= HOUR
    assert data.frame["helper"].nunique() == 50
    assert data.frame["t"].max() - data.frame["t"].min() >= HOUR - 60
    assert data.frame["label"].sum() > 50_000


def test_the_model_beats_every_baseline_on_held_out_time_and_seed(setting):
    _, dcfg, data, held = setting
    cut = 2400.0
    tables = D.compare(data.between(-np.inf, cut - dcfg.horizon_s),
                       {"time": data.between(cut, np.inf), "seed": held.between(cut, np.inf)},
                       dcfg)
    for name, table in tables.items():
        print(name, table.round(4).to_string(), sep="\n")
        model = table.loc["model"]
        for rival in ("playhead", "global-popularity", "helper-popularity"):
            assert model["precision"] > table.loc[rival, "precision"], (name, rival)
            assert model["mae"] < table.loc[rival, "mae"], (name, rival)
        # by a margin over the strongest baseline, and within the oracle's bound
        assert model["precision"] >= table.loc["playhead", "precision"] + 0.01, name
        assert model["mae"] <= 0.9 * table.loc["playhead", "mae"], name
        assert model["precision"] <= table.loc["oracle", "precision"] + 1e-9, name


def test_retraining_keeps_accuracy_through_a_popularity_shift(setting):
    _, dcfg, data, _ = setting
    rep = D.online_replay(data, dcfg, retrain_s=300.0, train_window_s=900.0,
                          first_train_s=300.0, freeze_after=1500.0)
    print(rep.round(4).to_string())
    assert rep["version"].is_monotonic_increasing and rep["version"].max() >= 11
    before = rep[(rep["t"] >= 600) & (rep["t"] < 1800)]
    after = rep[rep["t"] >= 1800 + 2 * 300]  # two retrain periods after the shift
    # accuracy after the shift is back to (at least) what it was before; MAE grows with
    # the traffic, so it is judged against playhead extrapolation's in the same minutes
    assert after["precision"].mean() >= 0.97 * before["precision"].mean()
    gain = lambda df: (df["mae"] / df["playhead_mae"]).mean()  # noqa: E731
    assert gain(after) <= 1.05 * gain(before)
    # retraining is never worse than keeping the model trained before the shift
    assert after["precision"].mean() >= after["precision_frozen"].mean() - 0.002
    assert after["mae"].mean() <= after["mae_frozen"].mean() + 0.0005
    # and the model beats playhead extrapolation in (almost) every minute after it
    assert (after["precision"] > after["playhead_precision"]).mean() >= 0.9
