"""Scoring predictions: MAE, precision and recall at a push budget, calibration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig
from testbed.core.demand.dataset import Dataset
from testbed.core.demand.predictors import ModelParams, predictors


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


def compare(train: Dataset, tests: Mapping[str, Dataset], cfg: DemandConfig,
            params: ModelParams | None = None) -> dict[str, pd.DataFrame]:
    """Fit every predictor on ``train``; a scores table per named test set."""
    fitted = [p.fit(train.frame) for p in predictors(cfg, params)]
    return {label: scores_table([evaluate(p.name, ds.frame, p.predict(ds.frame), ds.missed, cfg)
                                 for p in fitted])
            for label, ds in tests.items()}
