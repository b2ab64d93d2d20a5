"""A helper's segment cache: bounded bytes, pluggable eviction, versions for coherency.

Segments are keyed ``(video_id, index)`` and carry the version of the video they belong to.
Coherency works through a per-video *floor*: :meth:`SegmentCache.invalidate` raises it when
the master republishes a video, drops every cached segment below it and makes later puts
of older versions no-ops, so a late tree or mesh push can never bring stale bytes back.

Eviction policies are small objects behind the :class:`EvictionPolicy` protocol, named in
:data:`POLICIES` ("lru", "lfu", "fifo").  The cache tells the policy what happened; the
policy only answers which key to evict next.

Pure: time comes in as ``now`` and is only recorded, never read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from testbed.core.content import StandIn

Key = tuple[str, int]

ORIGINS = ("prefetch", "tree", "mesh", "live", "origin")


class CacheError(ValueError):
    """A bad argument to the cache (key, version, origin, capacity); the message names it."""


@dataclass
class Entry:
    """One cached segment and its bookkeeping (mutable: hits and last_used change on access)."""

    key: Key
    version: int
    data: bytes
    origin: str
    stored_at: float
    last_used: float
    hits: int = 0

    @property
    def size(self) -> int:
        return len(self.data)


class EvictionPolicy(Protocol):
    """Tracks the cached keys and picks the next victim; the cache owns the entries."""

    def on_insert(self, key: Key, now: float) -> None: ...

    def on_access(self, key: Key, now: float) -> None: ...

    def on_remove(self, key: Key) -> None: ...

    def victim(self) -> Key:
        """The key to evict next (not removed: the cache calls on_remove). KeyError if empty."""
        ...


class LRUPolicy:
    """Least recently used (inserted or accessed) goes first."""

    name = "lru"

    def __init__(self) -> None:
        self._order: OrderedDict[Key, None] = OrderedDict()

    def on_insert(self, key: Key, now: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def on_access(self, key: Key, now: float) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def on_remove(self, key: Key) -> None:
        self._order.pop(key, None)

    def victim(self) -> Key:
        if not self._order:
            raise KeyError(f"{self.name}: nothing to evict")
        return next(iter(self._order))

    def __len__(self) -> int:
        return len(self._order)


class FIFOPolicy(LRUPolicy):
    """First inserted goes first; accesses change nothing (LRU without the recency)."""

    name = "fifo"

    def on_access(self, key: Key, now: float) -> None:
        pass


class LFUPolicy:
    """Least frequently used goes first; among equals, the least recently used.

    The frequency of a key is 1 at insertion plus one per access.  O(1) per event: keys sit
    in one recency-ordered bucket per frequency.
    """

    name = "lfu"

    def __init__(self) -> None:
        self._freq: dict[Key, int] = {}
        self._buckets: dict[int, OrderedDict[Key, None]] = {}
        self._min = 0

    def _unlink(self, key: Key) -> int | None:
        f = self._freq.pop(key, None)
        if f is not None:
            bucket = self._buckets[f]
            del bucket[key]
            if not bucket:
                del self._buckets[f]
        return f

    def _link(self, key: Key, f: int) -> None:
        self._freq[key] = f
        self._buckets.setdefault(f, OrderedDict())[key] = None

    def on_insert(self, key: Key, now: float) -> None:
        self._unlink(key)
        self._link(key, 1)
        self._min = 1

    def on_access(self, key: Key, now: float) -> None:
        f = self._unlink(key)
        if f is None:
            return
        self._link(key, f + 1)
        if f == self._min and f not in self._buckets:
            self._min = f + 1

    def on_remove(self, key: Key) -> None:
        self._unlink(key)

    def victim(self) -> Key:
        if not self._freq:
            raise KeyError("lfu: nothing to evict")
        if self._min not in self._buckets:
            self._min = min(self._buckets)
        return next(iter(self._buckets[self._min]))

    def frequency(self, key: Key) -> int:
        """How often ``key`` was used (0 when not tracked)."""
        return self._freq.get(key, 0)

    def __len__(self) -> int:
        return len(self._freq)


POLICIES: dict[str, Callable[[], EvictionPolicy]] = {
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "fifo": FIFOPolicy,
}


def make_policy(name: str) -> EvictionPolicy:
    """A fresh eviction policy by name; ValueError naming an unknown one."""
    try:
        factory = POLICIES[name]
    except (KeyError, TypeError):
        raise CacheError(f"unknown eviction policy {name!r} (choose from "
                         f"{', '.join(POLICIES)})") from None
    return factory()


def _check_key(key: object) -> Key:
    if (not isinstance(key, tuple) or len(key) != 2 or not isinstance(key[0], str)
            or not isinstance(key[1], int) or isinstance(key[1], bool) or key[1] < 0):
        raise CacheError(f"cache key {key!r:.80} (must be (video_id, index >= 0))")
    return key


def _check_version(version: object, what: str = "version") -> int:
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CacheError(f"cache {what} {version!r:.80} (must be an integer >= 0)")
    return version


STAT_KEYS = ("hits", "misses", "inserts", *(f"inserts_{o}" for o in ORIGINS), "evictions",
             "refused", "stale", "invalidated", "outdated", "duplicates", "replaced",
             "dropped_below_min", "removed")


class SegmentCache:
    """Segments up to ``capacity_bytes`` in total, evicted by a named policy.

    ``used_bytes`` is always the sum of the cached entries' sizes and never exceeds the
    capacity.  Counters in :attr:`stats` (beyond the contract's hits, misses, inserts and
    inserts_<origin>, evictions, refused, stale, invalidated): ``outdated`` puts older than
    the cached version, ``duplicates`` puts of the cached version (first copy kept),
    ``replaced`` entries superseded by a newer version, ``dropped_below_min`` entries a
    ``get(min_version=...)`` threw away, ``removed`` explicit :meth:`discard` calls.
    """

    def __init__(self, capacity_bytes: int, policy: str = "lru") -> None:
        if (not isinstance(capacity_bytes, int) or isinstance(capacity_bytes, bool)
                or capacity_bytes < 0):
            raise CacheError(f"cache capacity_bytes {capacity_bytes!r} (must be an integer >= 0)")
        self._capacity = capacity_bytes
        self._policy_name = policy
        self._policy = make_policy(policy)
        self._entries: dict[Key, Entry] = {}
        self._by_video: dict[str, set[int]] = {}
        self._floors: dict[str, int] = {}
        self._used = 0
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        #: goes up whenever an entry comes or goes (a new version replaces an entry): the
        #: same count means the same keys, order and versions
        self.changes = 0

    # -- properties ------------------------------------------------------------------------
    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def free_bytes(self) -> int:
        return self._capacity - self._used

    @property
    def policy(self) -> str:
        """The eviction policy's name."""
        return self._policy_name

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters (see the class docstring)."""
        return dict(self._stats)

    # -- internals -------------------------------------------------------------------------
    def _drop(self, key: Key) -> Entry:
        entry = self._entries.pop(key)
        self.changes += 1
        self._used -= entry.size
        indices = self._by_video[key[0]]
        indices.discard(key[1])
        if not indices:
            del self._by_video[key[0]]
        self._policy.on_remove(key)
        return entry

    # -- operations ------------------------------------------------------------------------
    def put(self, key: Key, version: int, data: bytes, origin: str, now: float) -> list[Key]:
        """Store a segment; returns the keys evicted to make room (possibly none).

        Ignored (nothing changes, [] returned): a version below the video's floor
        (``stale``), older than the cached one (``outdated``), the same as the cached one
        (``duplicates``), or data larger than the whole capacity (``refused``).
        """
        _check_key(key)
        _check_version(version)
        if origin not in ORIGINS:
            raise CacheError(f"cache origin {origin!r:.80} (must be one of {', '.join(ORIGINS)})")
        if not isinstance(data, (bytes, StandIn)):
            if not isinstance(data, (bytearray, memoryview)):
                raise CacheError(f"cache data: {type(data).__name__} (must be bytes or a "
                                 f"StandIn)")
            data = bytes(data)
        if version < self._floors.get(key[0], 0):
            self._stats["stale"] += 1
            return []
        old = self._entries.get(key)
        if old is not None and version <= old.version:
            self._stats["outdated" if version < old.version else "duplicates"] += 1
            return []
        if len(data) > self._capacity:
            self._stats["refused"] += 1
            return []
        if old is not None:
            self._drop(key)
            self._stats["replaced"] += 1
        evicted: list[Key] = []
        while self._used + len(data) > self._capacity:
            victim = self._policy.victim()
            self._drop(victim)
            evicted.append(victim)
        self._stats["evictions"] += len(evicted)
        self._entries[key] = Entry(key, version, data, origin, now, now)
        self.changes += 1
        self._by_video.setdefault(key[0], set()).add(key[1])
        self._used += len(data)
        self._policy.on_insert(key, now)
        self._stats["inserts"] += 1
        self._stats[f"inserts_{origin}"] += 1
        return evicted

    def get(self, key: Key, now: float, min_version: int = 0) -> Entry | None:
        """The cached entry (a hit: counts, refreshes recency) or None (a miss).

        An entry older than ``min_version`` is dropped and the lookup is a miss.
        """
        _check_version(min_version, "min_version")
        entry = self._entries.get(key)
        if entry is not None and entry.version < min_version:
            self._drop(key)
            self._stats["dropped_below_min"] += 1
            entry = None
        if entry is None:
            self._stats["misses"] += 1
            return None
        entry.hits += 1
        entry.last_used = now
        self._policy.on_access(key, now)
        self._stats["hits"] += 1
        return entry

    def peek(self, key: Key) -> Entry | None:
        """The cached entry without counting a hit or changing recency."""
        return self._entries.get(key)

    def discard(self, key: Key) -> bool:
        """Drop one entry (e.g. it failed its digest); True if it was cached."""
        if key not in self._entries:
            return False
        self._drop(key)
        self._stats["removed"] += 1
        return True

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._entries
        except TypeError:
            return False

    def keys(self) -> list[Key]:
        """Cached keys in insertion order."""
        return list(self._entries)

    def __iter__(self) -> Iterator[Key]:
        """Cached keys in insertion order (a snapshot: safe while the cache changes)."""
        return iter(list(self._entries))

    def video_keys(self, video_id: str) -> list[Key]:
        """Cached keys of one video, by index."""
        return [(video_id, i) for i in sorted(self._by_video.get(video_id, ()))]

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, video_id: str, version: int) -> list[Key]:
        """Raise the video's floor to ``version`` and drop its cached segments below it.

        The floor never goes down (invalidations may arrive out of order); returns the
        dropped keys by index.
        """
        if not isinstance(video_id, str):
            raise CacheError(f"cache video_id {video_id!r:.80} (must be a string)")
        _check_version(version)
        floor = max(self._floors.get(video_id, 0), version)
        self._floors[video_id] = floor
        dropped = [k for k in self.video_keys(video_id) if self._entries[k].version < floor]
        for k in dropped:
            self._drop(k)
        self._stats["invalidated"] += len(dropped)
        return dropped

    def versions(self) -> dict[str, tuple[int, int]]:
        """Video -> (lowest, highest) version of its cached segments."""
        out: dict[str, tuple[int, int]] = {}
        for (video, _), e in self._entries.items():
            lo, hi = out.get(video, (e.version, e.version))
            out[video] = (min(lo, e.version), max(hi, e.version))
        return out

    def floor(self, video_id: str) -> int:
        """The lowest version of ``video_id`` the cache accepts (0 until invalidated)."""
        return self._floors.get(video_id, 0)

    def __repr__(self) -> str:
        return (f"SegmentCache({len(self)} entries, {self._used}/{self._capacity} bytes, "
                f"{self._policy_name})")
