"""One viewer session: who, where, what and how it watches."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.core.player import SessionPlan


@dataclass(frozen=True)
class Session:
    """One viewer session.

    ``watch_fraction`` is the media played over the video's duration as the plan plays
    it (1.0 for a view that plays to the end); ``abandoned_at_startup`` says the viewer
    left before the first frame in the synthetic trace (its start-up delay exceeded its
    patience); the plan is still what it would have watched.
    """

    id: str
    helper: str
    video: str
    arrive_at: float
    startup_s: float
    patience_s: float
    watch_fraction: float
    abandoned_at_startup: bool
    plan: SessionPlan
    live: bool = False
