"""A viewer's player as a pure state machine, and the behaviour model that plans its sessions.

:class:`Player` is driven by ``now`` (seconds since the run started): :meth:`Player.poll`
advances playback, applies the plan's actions and says which segments to fetch;
:meth:`Player.on_segment` reports a download's end.  The same code then plays in the
emulation (asyncio, wall clock) and in the simulator (event clock).

Model:

* The buffer holds whole segments; its level is the media (seconds) contiguous from the
  playhead.  Playback consumes it in real time while playing.
* A segment is fetched when it starts less than ``max_buffer_s`` ahead of the playhead
  (so the buffer stays near ``max_buffer_s``), at most ``max_inflight`` at a time, never
  beyond the live edge.
* Start-up (first frame), the end of a stall and the end of a seek all wait for the
  buffer to hold ``min(startup_buffer_s, remaining media)``.
* A stall starts when the buffer runs dry while playing before the end; start-up and seek
  waits are not stalls (a seek's wait is ``seek_wait_s``).
* Pauses stop playback but not fetching.  A seek flushes the buffer and the requests in
  flight; their late arrivals are ignored.
* Plan actions are positioned in seconds of media **from where the session starts**
  (``start_index * segment_s``), so for on-demand videos (start 0) they are plain
  playhead positions, and a live plan need not know the live edge in advance.  Actions
  apply in order, each when playback reaches its position.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

ACTION_KINDS = ("pause", "seek", "stop")
EVENT_KINDS = ("start", "stall", "resume_play", "pause", "resume", "seek", "stop", "complete",
               "abandon")
_EPS = 1e-9
#: How far past the moment a segment enters the fetch window :meth:`Player.next_wakeup`
#: asks to be woken, so that float rounding cannot leave it just outside.
_WAKE_SLACK = 1e-6


class PlayerError(ValueError):
    """A bad plan or player parameter."""


def _finite(name: str, value: float, low: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlayerError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise PlayerError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SessionPlan:
    """What one viewer session will do, decided up front by the behaviour model.

    ``actions`` are ``(playhead_s, kind, arg)`` in the order they happen: ``pause`` for
    ``arg`` seconds, ``seek`` to playhead ``arg``, ``stop`` (abandon; ``arg`` unused).
    Playheads (and seek targets) count from the session's start position.
    """

    video_id: str
    start_at: float
    start_index: int = 0
    actions: tuple[tuple[float, str, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.video_id, str) or not self.video_id:
            raise PlayerError(f"plan video_id must be non-empty text, got {self.video_id!r}")
        _finite("plan start_at", self.start_at)
        if isinstance(self.start_index, bool) or not isinstance(self.start_index, int) \
                or self.start_index < 0:
            raise PlayerError(f"plan start_index must be an int >= 0, got {self.start_index!r}")
        for action in self.actions:
            if not isinstance(action, tuple) or len(action) != 3:
                raise PlayerError(f"plan action must be (playhead_s, kind, arg), got {action!r}")
            pos, kind, arg = action
            if kind not in ACTION_KINDS:
                raise PlayerError(f"plan action kind must be one of {ACTION_KINDS}, got {kind!r}")
            if not (type(pos) is float and type(arg) is float  # the usual case, quickly
                    and 0.0 <= pos < math.inf and 0.0 <= arg < math.inf):
                _finite(f"plan {kind} playhead_s", pos)
                _finite(f"plan {kind} arg", arg)


@dataclass(frozen=True)
class Fetch:
    """Download segment ``index`` of the session's video."""

    index: int


@dataclass(frozen=True)
class PlayerEvent:
    """Something that happened at ``at``; ``fields`` always has ``playhead_s`` and ``index``."""

    kind: str
    at: float
    fields: Mapping = field(default_factory=dict)


class Player:
    """One session's playback: buffer, stalls, pauses, seeks, QoE counters.

    ``live_edge(now)`` gives the newest segment index available (live channels); the
    session then starts at ``max(plan.start_index, live_edge(join time))`` and never asks
    for a segment past the edge.  ``last_segment_s`` is the length of a shorter last
    segment (default: ``segment_s``); ``live_poll_s`` is how often :meth:`next_wakeup`
    asks to look again when the next segment is not yet published.
    """

    def __init__(self, viewer: str, plan: SessionPlan, n_segments: int, segment_s: float,
                 startup_buffer_s: float = 4.0, max_buffer_s: float = 12.0,
                 max_inflight: int = 1, live_edge: Callable[[float], int] | None = None,
                 *, last_segment_s: float | None = None, live_poll_s: float = 0.25,
                 asked_at: float | None = None) -> None:
        if isinstance(n_segments, bool) or not isinstance(n_segments, int) or n_segments < 1:
            raise PlayerError(f"n_segments must be an int >= 1, got {n_segments!r}")
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) \
                or max_inflight < 1:
            raise PlayerError(f"max_inflight must be an int >= 1, got {max_inflight!r}")
        self.segment_s = _finite("segment_s", segment_s, strict=True)
        self.startup_buffer_s = _finite("startup_buffer_s", startup_buffer_s, strict=True)
        self.max_buffer_s = _finite("max_buffer_s", max_buffer_s, strict=True)
        if self.max_buffer_s < self.startup_buffer_s:
            raise PlayerError(f"max_buffer_s {max_buffer_s!r} is below startup_buffer_s "
                              f"{startup_buffer_s!r}")
        last = self.segment_s if last_segment_s is None else _finite(
            "last_segment_s", last_segment_s, strict=True)
        if last > self.segment_s + _EPS:
            raise PlayerError(f"last_segment_s {last_segment_s!r} exceeds segment_s")
        self.live_poll_s = _finite("live_poll_s", live_poll_s, strict=True)
        if plan.start_index >= n_segments:
            raise PlayerError(f"plan start_index {plan.start_index} is past the last segment "
                              f"({n_segments - 1})")
        self.viewer = viewer
        self.plan = plan
        self.n_segments = n_segments
        self.max_inflight = max_inflight
        self.live_edge = live_edge
        self.media_end = (n_segments - 1) * self.segment_s + last

        self._state = "idle"  # idle startup playing stalled paused seeking done
        self._t = 0.0
        self._base = 0.0
        self._pos = 0.0
        self._have: set[int] = set()
        self._inflight: set[int] = set()
        self._next_action = 0
        self._pause_until = 0.0
        self._wait_from = 0.0
        self._events: list[PlayerEvent] = []
        self.joined_at: float | None = None
        #: the session's first request (its manifest, asked before the player existed):
        #: start-up is measured from it when given, else from the join
        self.asked_at = asked_at
        self.abandoned_at_start = False
        self.start_index = plan.start_index
        self.startup_s: float | None = None
        self.ended_at: float | None = None
        self.stalls = 0
        self.stall_s = 0.0
        self.played_s = 0.0
        self.pauses = 0
        self.pause_s = 0.0
        self.seeks = 0
        self.seek_wait_s = 0.0
        self.segments = 0
        self.fetches = 0
        self.fetch_failures = 0
        self.late_arrivals = 0
        self.abandoned = False
        self.completed = False

    # ------------------------------------------------------------------ geometry
    def _seg_of(self, pos: float) -> int:
        return min(self.n_segments - 1, max(0, math.floor(pos / self.segment_s + _EPS)))

    def _seg_start(self, i: int) -> float:
        return i * self.segment_s

    def _seg_end(self, i: int) -> float:
        return self.media_end if i == self.n_segments - 1 else (i + 1) * self.segment_s

    def _buffer_end(self) -> float:
        i = self._seg_of(self._pos)
        end = self._pos
        while i < self.n_segments and i in self._have:
            end = self._seg_end(i)
            i += 1
        return max(end, self._pos)

    @property
    def state(self) -> str:
        """idle, startup, playing, stalled, paused, seeking or done."""
        return self._state

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def playhead_s(self) -> float:
        """Media position (seconds from the video's beginning) as of the last call."""
        return self._pos

    @property
    def needed(self) -> int | None:
        """The segment playback waits for next: the first one not held from the playhead on
        (None when the rest of the video is held)."""
        if self._state in ("idle", "done"):
            return None
        i = self._seg_of(self._buffer_end())
        while i < self.n_segments and i in self._have:
            i += 1
        return i if i < self.n_segments else None

    @property
    def buffer_s(self) -> float:
        """Seconds of media buffered ahead of the playhead as of the last call."""
        return self._buffer_end() - self._pos

    # ------------------------------------------------------------------ events
    def _emit(self, kind: str, at: float, **fields: object) -> None:
        self._events.append(PlayerEvent(kind, at, {
            "playhead_s": round(self._pos, 6), "index": self._seg_of(self._pos), **fields}))

    def _take_events(self) -> list[PlayerEvent]:
        events, self._events = self._events, []
        return events

    def _need(self) -> float:
        """Buffer level that ends a start-up, stall or seek wait."""
        return min(self.startup_buffer_s, self.media_end - self._pos)

    def _check_ready(self, now: float) -> None:
        """End a start-up, stall or seek wait once the buffer holds enough."""
        if self._state not in ("startup", "stalled", "seeking"):
            return
        if self._buffer_end() - self._pos < self._need() - _EPS:
            return
        if self._state == "startup":
            since = self.asked_at if self.asked_at is not None else self.joined_at
            self.startup_s = now - (since or 0.0)
            self._emit("start", now, startup_s=round(self.startup_s, 6))
        else:
            cause = "stall" if self._state == "stalled" else "seek"
            self._emit("resume_play", now, cause=cause, wait_s=round(now - self._wait_from, 6))
        self._state = "playing"

    def _end(self, kind: str, at: float) -> None:
        self._emit(kind, at)
        self._state = "done"
        self.ended_at = at
        if kind == "complete":
            self.completed = True
        else:
            self.abandoned = True

    # ------------------------------------------------------------------ time
    def _join(self, now: float) -> None:
        self.joined_at = now
        self._t = now
        start = self.plan.start_index
        if self.live_edge is not None:
            start = max(start, min(int(self.live_edge(now)), self.n_segments - 1))
        self.start_index = start
        self._base = self._pos = self._seg_start(start)
        self._state = "startup"
        self._check_ready(now)

    def _action_pos(self) -> float:
        if self._next_action >= len(self.plan.actions):
            return math.inf
        return self._base + self.plan.actions[self._next_action][0]

    def _apply_action(self) -> None:
        _, kind, arg = self.plan.actions[self._next_action]
        self._next_action += 1
        t = self._t
        if kind == "pause":
            self.pauses += 1
            self._state = "paused"
            self._pause_until = t + arg
            self._emit("pause", t, duration_s=arg)
        elif kind == "seek":
            target = min(max(self._base + arg, 0.0), self._seg_start(self.n_segments - 1))
            self.seeks += 1
            self._emit("seek", t, from_s=round(self._pos, 6), to_s=round(target, 6))
            self._have.clear()
            self._inflight.clear()
            self._pos = target
            self._state = "seeking"
            self._wait_from = t
            self._check_ready(t)
        else:
            self._end("stop", t)

    def _stall_or_complete(self) -> None:
        if self._pos >= self.media_end - _EPS:
            self._end("complete", self._t)
        else:
            self.stalls += 1
            self._state = "stalled"
            self._wait_from = self._t
            self._emit("stall", self._t)

    def _step(self, now: float) -> bool:
        """One state change or stretch of time up to ``now``; False when nothing is left."""
        state = self._state
        if state == "playing":
            if self._action_pos() <= self._pos + _EPS:
                self._apply_action()
                return True
            end = self._buffer_end()
            if end - self._pos <= _EPS:
                self._stall_or_complete()
                return True
            if self._t >= now:
                return False
            target = min(end, self._action_pos())
            if self._t + (target - self._pos) <= now:
                self.played_s += target - self._pos
                self._t += target - self._pos
                self._pos = target
            else:
                self.played_s += now - self._t
                self._pos += now - self._t
                self._t = now
            return True
        if state == "paused":
            if self._pause_until <= self._t:
                self._state = "playing"
                self._emit("resume", self._t)
                return True
            if self._t >= now:
                return False
            until = min(self._pause_until, now)
            self.pause_s += until - self._t
            self._t = until
            return True
        if state in ("startup", "stalled", "seeking"):  # waiting for segments
            if self._t >= now:
                return False
            if state == "stalled":
                self.stall_s += now - self._t
            elif state == "seeking":
                self.seek_wait_s += now - self._t
            self._t = now
            return True
        return False

    def _advance(self, now: float) -> None:
        """Play from the last call's time to ``now``, handling every state change between."""
        while self._step(now):
            pass

    # ------------------------------------------------------------------ fetching
    def _edge(self, now: float) -> int:
        if self.live_edge is None:
            return self.n_segments - 1
        return min(int(self.live_edge(now)), self.n_segments - 1)

    def _candidates(self, now: float) -> tuple[list[int], int | None, bool]:
        """(fetchable now, next missing segment beyond the window, blocked by the live edge)."""
        out: list[int] = []
        edge = self._edge(now)
        limit = self._pos + self.max_buffer_s - _EPS
        i = self._seg_of(self._pos)
        while i < self.n_segments:
            if i not in self._have and i not in self._inflight:
                if self._seg_start(i) >= limit:
                    return out, i, False
                if i > edge:
                    return out, None, True
                out.append(i)
            elif self._seg_start(i) >= limit:
                return out, None, False
            i += 1
        return out, None, False

    def _fetches(self, now: float) -> list[Fetch]:
        if self._state in ("idle", "done"):
            return []
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return []
        chosen = self._candidates(now)[0][:room]
        self._inflight.update(chosen)
        self.fetches += len(chosen)
        return [Fetch(i) for i in chosen]

    # ------------------------------------------------------------------ API
    def poll(self, now: float) -> tuple[list[Fetch], list[PlayerEvent]]:
        """Advance to ``now``; return the fetches to issue and the events that happened."""
        if self._state == "done":
            return [], self._take_events()
        if self._state == "idle":
            if now < self.plan.start_at:
                return [], []
            self._join(now)
        now = max(now, self._t)  # time never runs backwards for the player
        self._advance(now)
        self._check_ready(now)
        self._advance(now)
        if self._state != "done":
            cur = self._seg_of(self._pos)
            self._have = {i for i in self._have if i >= cur}
        return self._fetches(now), self._take_events()

    def on_segment(self, index: int, now: float, ok: bool) -> list[PlayerEvent]:
        """A download ended at ``now``; ``ok=False`` (failed, bad digest) means fetch again.

        Arrivals of segments not in flight (flushed by a seek, duplicates) are ignored.
        """
        if self._state in ("idle", "done"):
            return self._take_events()
        now = max(now, self._t)
        self._advance(now)
        if index not in self._inflight:
            self.late_arrivals += 1
            return self._take_events()
        self._inflight.discard(index)
        if ok:
            self._have.add(index)
            self.segments += 1
        else:
            self.fetch_failures += 1
        self._check_ready(now)
        self._advance(now)
        return self._take_events()

    def abandon(self, now: float) -> list[PlayerEvent]:
        """The viewer leaves at ``now`` (outside the plan): an ``abandon`` event, session over."""
        if self._state == "idle":  # left before the session began: never joined
            self.abandoned_at_start = True
            self._end("abandon", now)
            return self._take_events()
        now = max(now, self._t)
        self._advance(now)
        if self._state != "done":
            self.abandoned_at_start = self.startup_s is None
            self._end("abandon", now)
        return self._take_events()

    def next_wakeup(self, now: float) -> float:
        """When :meth:`poll` should next be called if no download ends first (inf: never)."""
        state = self._state
        if state == "done":
            return math.inf
        if state == "idle":
            return max(now, self.plan.start_at)
        fetchable, next_missing, blocked = self._candidates(now)
        free = len(self._inflight) < self.max_inflight
        if fetchable and free:
            return now
        times = [math.inf]
        if blocked and free:
            times.append(max(now, self._t) + self.live_poll_s)
        if state == "playing":
            times.append(self._t + self._buffer_end() - self._pos)
            times.append(self._t + self._action_pos() - self._pos)
            if next_missing is not None and free:
                times.append(self._t + self._seg_start(next_missing) - self.max_buffer_s
                             - self._pos + _WAKE_SLACK)
        elif state == "paused":
            times.append(self._pause_until)
        return max(now, min(times))

    def qoe(self) -> dict:
        """The session's quality of experience so far (JSON-ready)."""
        denom = self.played_s + self.stall_s
        return {
            "asked_at": self.asked_at if self.asked_at is not None else self.joined_at,
            "joined_at": self.joined_at,
            "startup_s": self.startup_s,
            "abandoned_at_start": self.abandoned_at_start,
            "stalls": self.stalls,
            "stall_s": round(self.stall_s, 6),
            "played_s": round(self.played_s, 6),
            "rebuffer_ratio": round(self.stall_s / denom, 6) if denom > 0 else 0.0,
            "abandoned": self.abandoned,
            "completed": self.completed,
            "segments": self.segments,
            "start_index": self.start_index,
            "seeks": self.seeks,
            "seek_wait_s": round(self.seek_wait_s, 6),
            "pauses": self.pauses,
            "pause_s": round(self.pause_s, 6),
            "fetches": self.fetches,
            "fetch_failures": self.fetch_failures,
            "late_arrivals": self.late_arrivals,
            "ended_at": self.ended_at,
        }


# ---------------------------------------------------------------------- behaviour model


class BehaviourModel:
    """Plans each viewer's sessions: which video (Zipf over on-demand ids, or live), when,
    and the pauses, seeks and abandonment in it.  Deterministic per ``(seed, viewer)``.

    On-demand sessions abandon with ``abandon_prob`` somewhere in the video (else play to
    the end), pause once with ``pause_prob`` (mean ``mean_pause_s``), seek once with
    ``seek_prob``.  Live sessions (share ``live_share``) watch for an exponential time
    (mean ``mean_live_watch_s``) then stop, with the same pause chance and no seeks.
    Sessions follow each other after an exponential gap of mean ``mean_gap_s``; a
    session's expected length is its media plus pauses plus ``overhead_s``.
    """

    def __init__(self, seed: int, zipf_s: float = 0.8, pause_prob: float = 0.2,
                 seek_prob: float = 0.15, abandon_prob: float = 0.4, live_share: float = 0.2,
                 mean_gap_s: float = 10.0, *, mean_pause_s: float = 5.0,
                 mean_live_watch_s: float = 40.0, overhead_s: float = 2.0) -> None:
        self.seed = seed
        self.zipf_s = _finite("zipf_s", zipf_s)
        for name, p in (("pause_prob", pause_prob), ("seek_prob", seek_prob),
                        ("abandon_prob", abandon_prob), ("live_share", live_share)):
            if _finite(name, p) > 1:
                raise PlayerError(f"{name} must be within 0..1, got {p!r}")
        self.pause_prob, self.seek_prob = float(pause_prob), float(seek_prob)
        self.abandon_prob, self.live_share = float(abandon_prob), float(live_share)
        self.mean_gap_s = _finite("mean_gap_s", mean_gap_s)
        self.mean_pause_s = _finite("mean_pause_s", mean_pause_s, strict=True)
        self.mean_live_watch_s = _finite("mean_live_watch_s", mean_live_watch_s, strict=True)
        self.overhead_s = _finite("overhead_s", overhead_s)

    def zipf_weights(self, n: int) -> list[float]:
        """Popularity of ranks 1..n (first id most popular), normalised to sum 1."""
        w = [1.0 / (rank ** self.zipf_s) for rank in range(1, n + 1)]
        total = sum(w)
        return [x / total for x in w]

    def _rng(self, viewer: str) -> random.Random:
        return random.Random(f"meshcast-behaviour:{self.seed}:{viewer}")

    def _gap(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean_gap_s) if self.mean_gap_s > 0 else 0.0

    def _pause(self, rng: random.Random) -> float:
        return round(min(6 * self.mean_pause_s, rng.expovariate(1.0 / self.mean_pause_s)), 3)

    def _vod_actions(self, rng: random.Random, dur: float) -> tuple[list, float, float]:
        """(actions, media seconds watched, pause seconds) for an on-demand session."""
        actions: list[tuple[float, str, float]] = []
        watched = paused = 0.0
        pos = 0.0
        kinds = [k for k, p in (("pause", self.pause_prob), ("seek", self.seek_prob))
                 if rng.random() < p]
        rng.shuffle(kinds)
        for kind in kinds:
            at = round(rng.uniform(pos, pos + 0.6 * (dur - pos)), 3)
            watched += at - pos
            if kind == "pause":
                length = self._pause(rng)
                actions.append((at, "pause", length))
                paused += length
                pos = at
            else:
                target = round(rng.uniform(0.0, 0.9 * dur), 3)
                actions.append((at, "seek", target))
                pos = target
        if rng.random() < self.abandon_prob and dur - pos > 1.0:
            at = round(rng.uniform(pos + 0.05 * (dur - pos), pos + 0.95 * (dur - pos)), 3)
            actions.append((at, "stop", 0.0))
            watched += at - pos
        else:
            watched += dur - pos
        return actions, watched, paused

    def _live_actions(self, rng: random.Random, dur: float) -> tuple[list, float, float]:
        watch = min(0.95 * dur, max(4.0, rng.expovariate(1.0 / self.mean_live_watch_s)))
        watch = round(watch, 3)
        actions: list[tuple[float, str, float]] = []
        paused = 0.0
        if rng.random() < self.pause_prob:
            paused = self._pause(rng)
            actions.append((round(rng.uniform(0.0, watch), 3), "pause", paused))
        actions.append((watch, "stop", 0.0))
        return actions, watch, paused

    def sessions(self, viewer: str, catalogue_ids: Sequence[str], durations: Mapping[str, float],
                 live_ids: Sequence[str], run_s: float) -> list[SessionPlan]:
        """One viewer's back-to-back sessions starting within ``run_s`` seconds.

        ``catalogue_ids`` in popularity order (ids also in ``live_ids`` are left out of
        the Zipf draw); ``durations`` must cover every id used.  ``start_index`` is 0:
        the caller (or :class:`Player` with ``live_edge``) places live sessions at the edge.
        """
        _finite("run_s", run_s)
        live = list(live_ids)
        vod = [v for v in catalogue_ids if v not in set(live)]
        if not vod and not live:
            raise PlayerError(f"viewer {viewer!r}: no videos to watch")
        for vid in vod + live:
            if vid not in durations:
                raise PlayerError(f"no duration for video {vid!r}")
            _finite(f"duration of {vid!r}", durations[vid], strict=True)
        cum = list(accumulate(self.zipf_weights(len(vod)))) if vod else []
        rng = self._rng(viewer)
        plans: list[SessionPlan] = []
        t = rng.uniform(0.0, self.mean_gap_s) if self.mean_gap_s > 0 else 0.0
        while t < run_s:
            if live and (not vod or rng.random() < self.live_share):
                vid = live[rng.randrange(len(live))]
                actions, watched, paused = self._live_actions(rng, float(durations[vid]))
            else:
                k = min(bisect_right(cum, rng.random() * cum[-1]), len(vod) - 1)
                vid = vod[k]
                actions, watched, paused = self._vod_actions(rng, float(durations[vid]))
            plans.append(SessionPlan(vid, round(t, 3), 0, tuple(actions)))
            t += watched + paused + self.overhead_s + self._gap(rng)
        return plans
