"""A seeded viewer workload per helper region, calibrated against published measurements.

:func:`generate` turns a :class:`WorkloadConfig` into viewer :class:`Session` s: each
carries a :class:`~testbed.core.player.SessionPlan` and a patience, which drive the
emulated viewers, and :func:`trace_frame` turns the same sessions into the event stream
the helpers would report (a *trace*).  :func:`check_trace` checks and types a trace that
comes from elsewhere (:func:`testbed.traces.read_trace` / :func:`testbed.traces.write_trace`
store one as CSV or Parquet: the core does no file I/O), and :func:`sessions_from_trace`
rebuilds sessions from a trace (one of ours, or one a user brings) so that an emulation
can replay it.  Everything is a pure function of the config: the same config gives the
same sessions and a byte-identical CSV trace.

One idea per module: :mod:`.config` (the config, shifts, flash crowds), :mod:`.checks`
(the error and parameter checks), :mod:`.watch` (the watch fraction law),
:mod:`.catalogue`, :mod:`.session`, :mod:`.playback` (how a plan plays),
:mod:`.generate`, :mod:`.trace` (the trace frame and its check), :mod:`.record`
(sessions to trace), :mod:`.replay` (trace to sessions) and :mod:`.measure`.

Model:

* **Regions are helpers.**  Sessions arrive at each region as a Poisson process of mean
  ``arrival_rate`` per second, optionally following a daily rhythm
  ``rate(t) = arrival_rate * (1 + daily_amplitude * cos(2*pi*(h(t) - peak_hour) / 24))``
  with ``h(t) = start_hour + t / 3600``, sampled by thinning.  Each region draws from its
  own ``numpy`` generator seeded from ``(seed, region index)``, so adding a region leaves
  the others' sessions as they were.
* **Popularity** is Zipf with exponent ``zipf_s`` over ``videos`` in the given (global)
  order.  Region ``r`` draws from ``(1 - regional_skew) * p_global + regional_skew *
  p_local_r``, ``p_local_r`` being the same law over a seeded permutation of the videos
  particular to the region.  A :class:`PopularityShift` sends a share of the arrivals
  from ``at_s`` on to one video (a new hot video); the others follow the normal law.
* **Flash crowds** (:class:`FlashCrowd`: a video everyone suddenly watches, a live event)
  come on top of those arrivals: from ``at_s`` for ``duration_s`` seconds, each region in
  the crowd's ``regions`` (every helper by default) gets a Poisson process of ``rate``
  more sessions per second, rising linearly from 0 over the first ``ramp_s`` seconds
  (thinning), every one watching the crowd's ``video``: an on-demand video from its start
  with the usual watch fraction, pauses, seeks and patience, a live channel from the live
  edge like any live session.  Each (crowd, region) pair draws from its own generator
  seeded from ``(seed, crowd index, region index)``, so adding a crowd leaves the steady
  sessions and the other crowds' as they were; its session ids hold an ``f`` and the
  crowd's index (``s0003f01...``), so they never clash with the steady ones.
* **Live channels** (``live``, chosen with ``live_share``, uniformly among channels) run
  from the trace's start: segment ``i`` is out at ``(i + 1) * segment_s``.  A viewer joins
  at the live edge ``floor(t / segment_s) - 1`` (at least 0), watches for an exponential
  time of mean ``mean_live_watch_s`` (with pauses, no seeks) and fetches each segment as
  it comes out.
* **Start-up delay** (synthetic traces only: in the emulation the network decides) is
  lognormal with median ``startup_median_s`` and shape ``startup_sigma``.
* **Patience** follows Krishnan & Sitaraman, "Video stream quality impacts viewer
  behavior: inferring causality using quasi-experimental designs", IMC 2012: viewers start
  to abandon after 2 s of start-up delay and each further second adds about 5.8 % of
  abandonment.  Patience is ``patience_grace_s + U`` with ``U ~ Uniform(0,
  1 / patience_slope)``, so ``P(abandon | delay d) = min(1, patience_slope * (d - 2))``
  for ``d > 2`` and 0 below.  A session whose start-up delay exceeds its patience leaves
  at ``arrival + patience`` (``abandon``, never ``start``).
* **Watch fraction** follows Finamore et al., "YouTube everywhere: impact of device and
  infrastructure synergies on user experience", IMC 2011 (about 60 % of views stop within
  the first 20 % of the video).  A view plays to the end with probability
  ``complete_share``; otherwise it watches a fraction ``f`` of the video (media seconds
  played / duration) drawn from an exponential law truncated to [0, 1], whose rate is
  solved by bisection so that ``P(f <= early_stop_fraction) = early_stop_share`` over all
  started views.  (A negative rate, mass towards the end, is allowed.)
* **Pauses and seeks** come as Poisson processes in playback time:
  ``pause_rate_per_min`` pauses per minute played, each ``Exp(mean_pause_s)`` long (at
  most ten times the mean), and ``seek_rate_per_min`` seeks, back (``seek_back_share``)
  to a uniform position behind the playhead or forward to a uniform position ahead of it,
  never past ``duration - segment_s`` and, for a view that stops, never so far that the
  rest of its watch budget no longer fits before the end.  Playback counts towards the
  budget wherever it happens; the view ends with ``stop`` when the budget is spent and
  with ``complete`` at the end of the video.  So a view that stops has watched exactly
  its fraction, and ``watch_fraction`` is 1.0 for one that plays to the end.

Requests in a trace mirror :class:`~testbed.core.player.Player`'s pacing (a segment is
fetched once it starts less than ``max_buffer_s`` ahead of the playhead): at arrival, and
after a seek, a burst of the segments in that window, ``download_s`` apart; the first
frame (``start``) comes at ``arrival + startup_s`` (the burst is squeezed into that time
when it would take longer) and playback resumes after a seek once the burst is in.  In
steady play segment ``j`` is requested when the playhead reaches ``j * segment_s -
max_buffer_s``, one per ``segment_s``; none while paused (the buffer is full), none after
the end, none beyond the last segment.  Sessions arrive within ``duration_s`` and are
followed to their end.

A trace row (:data:`TRACE_COLUMNS`) is what a helper reports: ``at`` (seconds since the
trace's start), ``helper`` (the region), ``viewer`` (a pseudonymous session id, never an
address), ``video``, ``kind`` (:data:`TRACE_KINDS`), ``playhead_s`` (media seconds at the
event; for a request the segment's start) and ``index`` (the segment of a request, -1
otherwise).
"""

from testbed.core.workload.catalogue import synthetic_catalogue
from testbed.core.workload.checks import WorkloadError
from testbed.core.workload.config import (
    FLASH_CROWD_KEYS,
    FlashCrowd,
    PopularityShift,
    WorkloadConfig,
)
from testbed.core.workload.generate import Workload, generate
from testbed.core.workload.measure import abandonment_by_delay, early_stop_share
from testbed.core.workload.record import trace_frame
from testbed.core.workload.replay import sessions_from_trace
from testbed.core.workload.session import Session
from testbed.core.workload.trace import TRACE_COLUMNS, TRACE_KINDS, TRACE_SUFFIXES, check_trace

__all__ = [
    "FLASH_CROWD_KEYS",
    "TRACE_COLUMNS",
    "TRACE_KINDS",
    "TRACE_SUFFIXES",
    "FlashCrowd",
    "PopularityShift",
    "Session",
    "Workload",
    "WorkloadConfig",
    "WorkloadError",
    "abandonment_by_delay",
    "check_trace",
    "early_stop_share",
    "generate",
    "sessions_from_trace",
    "synthetic_catalogue",
    "trace_frame",
]
