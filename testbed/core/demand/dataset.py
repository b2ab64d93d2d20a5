"""A labelled set of snapshots: the candidates' features, labels and the missed requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from testbed.core.demand.config import DemandConfig
from testbed.core.demand.events import snapshot_times
from testbed.core.demand.features import build_frame
from testbed.core.demand.labels import add_labels


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
