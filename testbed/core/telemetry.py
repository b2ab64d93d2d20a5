"""Viewer telemetry as it leaves a helper: anonymised, whitelisted records, bounded buffering.

A helper turns each player event (and each segment request) into a record with
:func:`telemetry_record` before sending it to the prediction engine.  The viewer's id is
replaced by a keyed hash (:func:`anonymise`, HMAC-SHA256 under the run's pseudonym key,
which only helpers hold and which is drawn anew for every run): the engine can follow one
viewer's session without learning who or where it is, and cannot undo the pseudonym by
hashing the (enumerable) viewer ids itself.  Only whitelisted keys get through, and a value
that is an IP address or the raw viewer id is refused, so a careless caller cannot leak
either.

What a viewer host posts is only taken under a session token (:func:`session_token`) the
helper issued with the session's manifest, at most at a session's rate
(:class:`SessionGate`).  :class:`TelemetryBuffer` holds records between batches; when it is
full it drops from the session holding the most, so a flooding session cannot evict the
others' records, and counts what it dropped.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import itertools
import math
import re
from collections import OrderedDict, deque
from collections.abc import Iterable

#: Player event kinds (``resume_play`` = playback restarts after a stall or seek) plus
#: ``request`` (a segment served to the viewer).
TELEMETRY_KINDS = ("start", "pause", "resume", "seek", "stop", "complete", "abandon", "stall",
                   "request", "resume_play")
#: Keys every record has.
BASE_KEYS = ("kind", "viewer", "video", "playhead_s", "at", "helper")
#: Optional keys a caller may add through ``**extra``.
EXTRA_KEYS = frozenset({
    "index", "version", "bytes", "source", "latency_ms", "duration_s", "wait_s", "cause",
    "from_s", "to_s", "startup_s", "stall_s", "session", "seq",
})
#: Key fragments that mean identity or location; named in the error so the leak is obvious.
_IDENTIFYING = ("ip", "addr", "viewer", "host", "mac", "user", "port")


class TelemetryError(ValueError):
    """A telemetry record that would break the schema or leak identity.

    ``reason``: a short counter key (``wrong_type``, ``address``, ``future``...), fixed by
    the check that failed, never read from the record.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class Refusal(str):
    """One refused record's error line, with the reason it was refused as ``.reason``."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Refusal:
        obj = super().__new__(cls, text)
        obj.reason = reason
        return obj


def _keyed(key: bytes, purpose: bytes, *parts: str) -> str:
    if not isinstance(key, (bytes, bytearray)) or len(key) < 8:
        raise TelemetryError("the pseudonym key must be bytes, at least 8 of them")
    return hmac.new(bytes(key), b"\0".join([purpose, *(p.encode() for p in parts)]),
                    hashlib.sha256).hexdigest()


def anonymise(viewer_id: str, key: bytes) -> str:
    """A stable pseudonym for ``viewer_id`` under the run's pseudonym ``key``: the first
    16 hex digits of HMAC-SHA256.  Without the key it can be neither computed nor undone."""
    if not isinstance(viewer_id, str):
        raise TelemetryError(f"viewer id must be text, got {type(viewer_id).__name__}")
    return _keyed(key, b"pseudonym", viewer_id)[:16]


def session_token(key: bytes, viewer_id: str, video: str) -> str:
    """The token a helper hands a viewer with a session's manifest (32 hex digits): the
    session's telemetry is taken only under it.  Keyed like :func:`anonymise`, so any helper
    of the run can check it (a viewer that fails over keeps its session) and nobody else can
    make one."""
    return _keyed(key, b"session", viewer_id, video)[:32]


def token_ok(key: bytes, viewer_id: str, video: str, token: object) -> bool:
    """True when ``token`` is the session token of ``viewer_id`` watching ``video``."""
    return isinstance(token, str) and hmac.compare_digest(
        token.encode(), session_token(key, viewer_id, video).encode())


class SessionGate:
    """Per-session token buckets for what viewers post: ``rate`` events per second, up to
    ``burst`` at once.  At most ``max_sessions`` buckets are kept, the least recently used
    forgotten first (a forgotten session starts again with a full bucket, so forgetting
    never refuses anything a session is owed)."""

    def __init__(self, rate: float = 2.0, burst: float = 200.0,
                 max_sessions: int = 4096) -> None:
        if not (rate > 0 and burst >= 1 and max_sessions >= 1):
            raise TelemetryError(f"session gate: rate {rate!r} must be > 0, burst {burst!r} "
                                 f">= 1 and max_sessions {max_sessions!r} >= 1")
        self.rate, self.burst, self.max_sessions = float(rate), float(burst), max_sessions
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def admit(self, session: str, events: int, now: float) -> bool:
        """Take ``events`` from ``session``'s bucket; False (nothing taken) when it lacks
        them."""
        level, then = self._buckets.pop(session, (self.burst, now))
        level = min(self.burst, level + max(0.0, now - then) * self.rate)
        ok = events <= level
        self._buckets[session] = (level - events if ok else level, now)
        if len(self._buckets) > self.max_sessions:
            self._buckets.popitem(last=False)
        return ok

    def __len__(self) -> int:
        return len(self._buckets)


_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.%]+)\]")


def _is_address(text: str) -> bool:
    """True when ``text`` is or contains an IP address (``10.0.0.7:80``, ``[::1]:80``...)."""
    if "." not in text and ":" not in text:  # every address written as text has one
        return False
    for candidate in _IPV4.findall(text) + _BRACKETED.findall(text) + [text]:
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        return True
    return False


def _check_value(key: str, value: object, viewer_id: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise TelemetryError(f"telemetry {key}: {value!r} is not a finite number",
                                 "wrong_type")
        return
    if not isinstance(value, str):
        raise TelemetryError(f"telemetry {key}: {type(value).__name__} is not a plain value",
                             "wrong_type")
    if len(value) > 256:
        raise TelemetryError(f"telemetry {key}: text longer than 256 characters", "wrong_type")
    if viewer_id and value == viewer_id:
        raise TelemetryError(f"telemetry {key}: carries the raw viewer id", "not_pseudonym")
    if _is_address(value):
        raise TelemetryError(f"telemetry {key}: {value!r} is an address", "address")


def telemetry_record(kind: str, viewer_id: str, pseudonym_key: bytes, video: str,
                     playhead_s: float, at: float, helper: str, **extra: object) -> dict:
    """A telemetry record with the viewer anonymised; only known keys and plain values.

    Raises :class:`TelemetryError` (a ``ValueError``) for an unknown kind, an extra key
    outside :data:`EXTRA_KEYS` (naming identifying ones such as ``ip``/``addr``/``viewer``),
    a value that is an address or the raw viewer id, or a non-finite number.
    """
    if kind not in TELEMETRY_KINDS:
        raise TelemetryError(f"telemetry kind {kind!r} is not one of {TELEMETRY_KINDS}")
    for key in extra:
        if key in EXTRA_KEYS:
            continue
        low = key.lower()
        if any(frag in low for frag in _IDENTIFYING):
            raise TelemetryError(f"telemetry field {key!r} would identify the viewer")
        raise TelemetryError(f"telemetry field {key!r} is not allowed")
    for name, number in (("playhead_s", playhead_s), ("at", at)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) \
                or not math.isfinite(number):
            raise TelemetryError(f"telemetry {name} must be a finite number, got {number!r}")
    if float(playhead_s) < 0:
        raise TelemetryError(f"telemetry playhead_s must be >= 0, got {playhead_s!r}")
    for name, text in (("video", video), ("helper", helper)):
        if not isinstance(text, str) or not text:
            raise TelemetryError(f"telemetry {name} must be non-empty text, got {text!r}")
        _check_value(name, text, viewer_id)
    for key, value in extra.items():
        _check_value(key, value, viewer_id)
    return {"kind": kind, "viewer": anonymise(viewer_id, pseudonym_key), "video": video,
            "playhead_s": float(playhead_s), "at": float(at), "helper": helper, **extra}


class TelemetryBuffer:
    """Records waiting to be sent, oldest first; at most ``max_items``.

    When full, the oldest record of the session (``viewer`` pseudonym) holding the most
    goes: each session keeps a fair share, so one that floods evicts only its own records.
    Among equal shares the oldest record goes, as a plain bounded queue would.
    """

    def __init__(self, max_items: int = 10_000) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise TelemetryError(f"max_items must be an int >= 1, got {max_items!r}")
        self.max_items = max_items
        self._by: dict[object, deque[tuple[int, dict]]] = {}
        self._seq = itertools.count()
        self._n = 0
        self.dropped = 0
        self.added = 0

    def add(self, record: dict) -> bool:
        """Queue ``record``; False when that pushed an older record out."""
        if not isinstance(record, dict):
            raise TelemetryError(f"telemetry record must be a dict, got {type(record).__name__}")
        self.added += 1
        who = record.get("viewer")
        queue = self._by.get(who)
        if queue is None:
            queue = self._by[who] = deque()
        queue.append((next(self._seq), record))
        self._n += 1
        if self._n <= self.max_items:
            return True
        top = max(len(q) for q in self._by.values())
        self._pop(min(((q[0][0], k) for k, q in self._by.items() if len(q) == top),
                      key=lambda pair: pair[0])[1])
        self.dropped += 1
        return False

    def _pop(self, who: object) -> dict:
        queue = self._by[who]
        _, record = queue.popleft()
        if not queue:
            del self._by[who]
        self._n -= 1
        return record

    def extend(self, records: Iterable[dict]) -> int:
        """Queue several; returns how many older records were dropped to make room."""
        return sum(not self.add(r) for r in records)

    def drain(self, max_items: int | None = None) -> list[dict]:
        """Remove and return up to ``max_items`` records (all when None), oldest first."""
        if max_items is not None and (isinstance(max_items, bool)
                                      or not isinstance(max_items, int) or max_items < 0):
            raise TelemetryError(f"drain max_items must be an int >= 0, got {max_items!r}")
        n = self._n if max_items is None else min(max_items, self._n)
        if n == 0:
            return []
        if len(self._by) == 1:
            (who,) = self._by
            return [self._pop(who) for _ in range(n)]
        heads = [(q[0][0], i, who) for i, (who, q) in enumerate(self._by.items())]
        heapq.heapify(heads)
        out = []
        while len(out) < n:
            _, i, who = heapq.heappop(heads)
            out.append(self._pop(who))
            queue = self._by.get(who)
            if queue:
                heapq.heappush(heads, (queue[0][0], i, who))
        return out

    def __len__(self) -> int:
        return self._n


# ---------------------------------------------------------------- the engine's side

#: A pseudonym as :func:`anonymise` makes it: 16 lower-case hex digits.
_PSEUDONYM = re.compile(r"^[0-9a-f]{16}$")
#: The most records one batch may carry (helpers send at most 200); a bigger batch is
#: refused whole.
MAX_BATCH = 400


def check_record(rec: object, sender: str, now: float, max_future_s: float = 5.0,
                 max_age_s: float = 3600.0) -> dict:
    """One record as the prediction engine accepts it, or :class:`TelemetryError`.

    The checks a receiver must make whatever the sender promised: the base keys present
    and typed, a known kind, only whitelisted extra keys, ``helper`` equal to the
    authenticated ``sender``, a viewer that is a pseudonym (never a raw id), no value that
    is an address, ``at`` neither later than ``now + max_future_s`` nor older than
    ``max_age_s``, and a non-negative integer ``index`` on every request.  Returns a trace
    row: ``at, helper, viewer, video, kind, playhead_s, index`` (-1 unless a request).
    """
    if not isinstance(rec, dict):
        raise TelemetryError(f"record is a {type(rec).__name__}, not an object", "wrong_type")
    missing = [k for k in BASE_KEYS if k not in rec]
    if missing:
        raise TelemetryError(f"record lacks {', '.join(missing)}", "missing_field")
    for key in rec:
        if key not in BASE_KEYS and key not in EXTRA_KEYS:
            raise TelemetryError(f"record field {str(key)[:40]!r} is not allowed",
                                 "field_not_allowed")
    kind, viewer, helper = rec["kind"], rec["viewer"], rec["helper"]
    if kind not in TELEMETRY_KINDS:
        raise TelemetryError(f"record kind {str(kind)[:40]!r} is not one of {TELEMETRY_KINDS}",
                             "bad_kind")
    if not isinstance(viewer, str) or not _PSEUDONYM.match(viewer):
        raise TelemetryError("record viewer is not a pseudonym (16 hex digits)", "not_pseudonym")
    if helper != sender:
        raise TelemetryError(f"record helper {str(helper)[:40]!r} is not the sender {sender!r}",
                             "wrong_sender")
    for key, value in rec.items():
        _check_value(str(key), value, "")
    for key in ("at", "playhead_s"):
        v = rec[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TelemetryError(f"record {key} must be a number, got {type(v).__name__}",
                                 "wrong_type")
    at, playhead = float(rec["at"]), float(rec["playhead_s"])
    if at > now + max_future_s:
        raise TelemetryError(f"record at={at:.3f} is {at - now:.1f} s in the future", "future")
    if at < now - max_age_s:
        raise TelemetryError(f"record at={at:.3f} is older than {max_age_s:.0f} s", "too_old")
    if playhead < 0:
        raise TelemetryError(f"record playhead_s must be >= 0, got {playhead!r}", "bad_value")
    video = rec["video"]
    if not isinstance(video, str) or not video:
        raise TelemetryError("record video must be non-empty text", "wrong_type")
    index = rec.get("index", -1 if kind != "request" else None)
    if kind == "request" and (isinstance(index, bool) or not isinstance(index, int)
                              or index < 0):
        raise TelemetryError(f"request index must be an int >= 0, got {index!r}", "bad_value")
    return {"at": at, "helper": helper, "viewer": viewer, "video": video, "kind": kind,
            "playhead_s": playhead, "index": int(index) if kind == "request" else -1}


def check_batch(events: object, sender: str, now: float, **limits: float
                ) -> tuple[list[dict], list[Refusal]]:
    """(accepted rows, one :class:`Refusal` line per refused record) for a batch.

    A batch that is not a list, or holds more than :data:`MAX_BATCH` records, is refused
    whole (one error, no rows); otherwise each record stands or falls alone.
    """
    if not isinstance(events, list):
        return [], [Refusal(f"batch is a {type(events).__name__}, not a list", "wrong_type")]
    if len(events) > MAX_BATCH:
        return [], [Refusal(f"batch of {len(events)} records exceeds {MAX_BATCH}",
                            "too_large")]
    rows, errors = [], []
    for i, rec in enumerate(events):
        try:
            rows.append(check_record(rec, sender, now, **limits))
        except TelemetryError as exc:
            errors.append(Refusal(f"record {i}: {exc}", exc.reason))
    return rows, errors
