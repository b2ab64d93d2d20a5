"""Per-helper demand for the next few seconds: features from telemetry, models, evaluation.

The question the prefetch planner asks is: *how many requests will segment ``(video,
index)`` get at helper ``h`` in the next ``H`` seconds?*  This package answers it from the
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

One idea per module: :mod:`.config`, :mod:`.events` (telemetry in, snapshot times),
:mod:`.counting` (window counts), :mod:`.features`, :mod:`.labels`, :mod:`.predictors`,
:mod:`.dataset`, :mod:`.evaluation`, :mod:`.replay` (online replay), :mod:`.arrivals`
(sessions to come) and :mod:`.popularity` (popularity prefetch).
"""

from testbed.core.demand.arrivals import ARRIVAL_COLUMNS, arrival_demand
from testbed.core.demand.config import DemandConfig, DemandError
from testbed.core.demand.dataset import Dataset, dataset
from testbed.core.demand.evaluation import (
    Scores,
    compare,
    evaluate,
    point_forecast,
    scores_table,
    top_budget,
)
from testbed.core.demand.events import ENDS, snapshot_times
from testbed.core.demand.features import FEATURES, build_frame
from testbed.core.demand.labels import KEYS, add_labels, requests_ahead
from testbed.core.demand.popularity import SESSION_COLUMNS, current_sessions, popularity_demand
from testbed.core.demand.predictors import (
    BASELINES,
    DemandModel,
    GlobalPopularity,
    HelperPopularity,
    ModelParams,
    Oracle,
    PlayheadExtrapolation,
    Predictor,
    predictors,
)
from testbed.core.demand.replay import online_replay

__all__ = [
    "ARRIVAL_COLUMNS",
    "BASELINES",
    "ENDS",
    "FEATURES",
    "KEYS",
    "SESSION_COLUMNS",
    "Dataset",
    "DemandConfig",
    "DemandError",
    "DemandModel",
    "GlobalPopularity",
    "HelperPopularity",
    "ModelParams",
    "Oracle",
    "PlayheadExtrapolation",
    "Predictor",
    "Scores",
    "add_labels",
    "arrival_demand",
    "build_frame",
    "compare",
    "current_sessions",
    "dataset",
    "evaluate",
    "online_replay",
    "point_forecast",
    "popularity_demand",
    "predictors",
    "requests_ahead",
    "scores_table",
    "snapshot_times",
    "top_budget",
]
