"""A trace replayed as the live engine would see it: retraining on a sliding window."""

from __future__ import annotations

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig, DemandError, _positive
from testbed.core.demand.dataset import Dataset
from testbed.core.demand.evaluation import evaluate
from testbed.core.demand.predictors import DemandModel, ModelParams, PlayheadExtrapolation


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
