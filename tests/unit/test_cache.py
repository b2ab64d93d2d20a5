"""The helper's segment cache: capacity, eviction order, versions and invalidation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.core.cache import (
    ORIGINS,
    POLICIES,
    CacheError,
    FIFOPolicy,
    LFUPolicy,
    LRUPolicy,
    SegmentCache,
    make_policy,
)


def seg(n: int, fill: int = 1) -> bytes:
    return bytes([fill]) * n


def k(i: int, video: str = "vod-0000") -> tuple[str, int]:
    return (video, i)


# -- basics ----------------------------------------------------------------------------------
def test_put_then_get_is_a_hit_that_updates_bookkeeping():
    c = SegmentCache(1000)
    assert c.put(k(0), 1, seg(100), "tree", now=1.0) == []
    assert k(0) in c and len(c) == 1 and c.used_bytes == 100 and c.capacity_bytes == 1000
    e = c.get(k(0), now=5.0)
    assert e is not None and e.data == seg(100) and e.version == 1 and e.origin == "tree"
    assert (e.stored_at, e.last_used, e.hits, e.size) == (1.0, 5.0, 1, 100)
    assert c.get(k(1), now=6.0) is None
    s = c.stats
    assert (s["hits"], s["misses"], s["inserts"], s["inserts_tree"]) == (1, 1, 1, 1)
    assert all(s[f"inserts_{o}"] == 0 for o in ORIGINS if o != "tree")


def test_peek_changes_nothing():
    c = SegmentCache(300, "lru")
    c.put(k(0), 1, seg(100), "origin", 0)
    c.put(k(1), 1, seg(100), "origin", 1)
    c.put(k(2), 1, seg(100), "origin", 2)
    before = c.stats
    e = c.peek(k(0))
    assert e is not None and e.hits == 0 and e.last_used == 0
    assert c.peek(k(9)) is None and c.stats == before
    assert c.put(k(3), 1, seg(100), "origin", 3) == [k(0)]   # peek did not refresh k(0)


def test_stats_is_a_copy():
    c = SegmentCache(10)
    c.stats["hits"] = 99
    assert c.stats["hits"] == 0


# -- capacity ------------------------------------------------------------------------------
def test_oversized_object_is_refused_and_exact_fit_is_kept():
    c = SegmentCache(250)
    c.put(k(0), 1, seg(100), "mesh", 0)
    assert c.put(k(1), 1, seg(251), "mesh", 1) == []
    assert k(1) not in c and k(0) in c and c.stats["refused"] == 1 and c.used_bytes == 100
    assert c.put(k(2), 1, seg(250), "mesh", 2) == [k(0)]
    assert c.used_bytes == 250 and c.keys() == [k(2)] and c.stats["evictions"] == 1


def test_eviction_frees_as_much_as_needed():
    c = SegmentCache(300)
    for i in range(3):
        c.put(k(i), 1, seg(100), "prefetch", i)
    assert c.put(k(9), 1, seg(250), "prefetch", 9) == [k(0), k(1), k(2)]
    assert c.keys() == [k(9)] and c.used_bytes == 250


def test_zero_capacity_caches_nothing():
    c = SegmentCache(0)
    assert c.put(k(0), 1, seg(1), "origin", 0) == [] and len(c) == 0
    assert c.put(k(1), 1, b"", "origin", 0) == [] and len(c) == 1   # an empty segment fits


# -- eviction order --------------------------------------------------------------------------
def _three_then_touch(policy: str) -> SegmentCache:
    """a, b, c inserted in that order; a read twice, c once; the cache is full."""
    c = SegmentCache(300, policy)
    for i, t in ((0, 0.0), (1, 1.0), (2, 2.0)):
        c.put(k(i), 1, seg(100), "tree", t)
    c.get(k(0), 3.0)
    c.get(k(2), 4.0)
    c.get(k(0), 5.0)
    return c


def test_lru_evicts_least_recently_used():
    c = _three_then_touch("lru")
    assert c.put(k(3), 1, seg(100), "tree", 6.0) == [k(1)]
    assert c.put(k(4), 1, seg(100), "tree", 7.0) == [k(2)]
    assert c.put(k(5), 1, seg(100), "tree", 8.0) == [k(0)]


def test_fifo_evicts_in_insertion_order_regardless_of_reads():
    c = _three_then_touch("fifo")
    assert c.put(k(3), 1, seg(100), "tree", 6.0) == [k(0)]
    assert c.put(k(4), 1, seg(100), "tree", 7.0) == [k(1)]
    assert c.put(k(5), 1, seg(100), "tree", 8.0) == [k(2)]


def test_lfu_evicts_least_frequently_used_ties_by_recency():
    c = _three_then_touch("lfu")   # uses: a 3, b 1, c 2
    assert c.put(k(3), 1, seg(100), "tree", 6.0) == [k(1)]
    # now a 3, c 2, d 1: d goes next; then between e (1) and c (2), e goes
    assert c.put(k(4), 1, seg(100), "tree", 7.0) == [k(3)]
    assert c.put(k(5), 1, seg(100), "tree", 8.0) == [k(4)]
    c.get(k(5), 9.0)                # f now 2, like c; c was used longer ago
    assert c.put(k(6), 1, seg(100), "tree", 10.0) == [k(2)]


def test_policy_objects_track_keys_and_refuse_empty_victim():
    for cls in (LRUPolicy, LFUPolicy, FIFOPolicy):
        p = cls()
        with pytest.raises(KeyError):
            p.victim()
        p.on_insert(k(0), 0)
        p.on_insert(k(1), 1)
        p.on_access(k(0), 2)
        p.on_access(k(7), 3)        # unknown key: ignored
        assert len(p) == 2
        p.on_remove(k(0))
        p.on_remove(k(0))           # twice: harmless
        assert p.victim() == k(1) and len(p) == 1
    lfu = LFUPolicy()
    lfu.on_insert(k(0), 0)
    lfu.on_access(k(0), 1)
    assert lfu.frequency(k(0)) == 2 and lfu.frequency(k(1)) == 0


def test_policy_registry():
    assert set(POLICIES) == {"lru", "lfu", "fifo"}
    assert isinstance(make_policy("lfu"), LFUPolicy)
    assert make_policy("lru") is not make_policy("lru")
    with pytest.raises(ValueError, match="'mru'"):
        make_policy("mru")
    with pytest.raises(ValueError, match="eviction policy"):
        SegmentCache(100, "random")
    assert SegmentCache(100, "fifo").policy == "fifo"


# -- versions and coherency ----------------------------------------------------------------
def test_newer_version_replaces_older_is_ignored_same_is_a_duplicate():
    c = SegmentCache(1000)
    c.put(k(0), 2, seg(100, 2), "tree", 0)
    c.get(k(0), 1)
    assert c.put(k(0), 1, seg(50, 1), "mesh", 2) == []
    assert c.peek(k(0)).version == 2 and c.stats["outdated"] == 1
    assert c.put(k(0), 2, seg(70, 9), "mesh", 3) == []
    assert c.peek(k(0)).data == seg(100, 2) and c.stats["duplicates"] == 1
    c.put(k(0), 3, seg(40, 3), "live", 4)
    e = c.peek(k(0))
    assert (e.version, e.data, e.origin, e.hits, e.stored_at) == (3, seg(40, 3), "live", 0, 4)
    assert c.used_bytes == 40 and len(c) == 1 and c.stats["replaced"] == 1


def test_invalidate_drops_older_segments_of_that_video_only():
    c = SegmentCache(10_000)
    c.put(k(0), 1, seg(100), "tree", 0)
    c.put(k(1), 2, seg(100), "tree", 0)
    c.put(k(2), 1, seg(100), "tree", 0)
    c.put(k(0, "vod-0001"), 1, seg(100), "tree", 0)
    assert c.invalidate("vod-0000", 2) == [k(0), k(2)]
    assert c.keys() == [k(1), k(0, "vod-0001")] and c.used_bytes == 200
    assert c.floor("vod-0000") == 2 and c.floor("vod-0001") == 0
    assert c.stats["invalidated"] == 2
    # a late push of the old version cannot bring stale bytes back
    assert c.put(k(0), 1, seg(100), "mesh", 1) == [] and k(0) not in c
    assert c.stats["stale"] == 1
    assert c.put(k(0), 2, seg(100), "mesh", 1) == [] and k(0) in c


def test_invalidation_floor_never_goes_down():
    c = SegmentCache(10_000)
    c.invalidate("live-00", 5)
    assert c.invalidate("live-00", 3) == [] and c.floor("live-00") == 5
    c.put(k(0, "live-00"), 4, seg(1), "live", 0)
    assert len(c) == 0
    assert c.invalidate("never-seen", 1) == [] and c.floor("never-seen") == 1


def test_get_with_min_version_drops_old_entry_as_a_miss():
    c = SegmentCache(1000)
    c.put(k(0), 1, seg(100), "prefetch", 0)
    assert c.get(k(0), 1, min_version=1) is not None
    assert c.get(k(0), 2, min_version=2) is None
    assert k(0) not in c and c.used_bytes == 0
    s = c.stats
    assert (s["hits"], s["misses"], s["dropped_below_min"]) == (1, 1, 1)


def test_discard_and_video_keys():
    c = SegmentCache(1000)
    for i in (3, 1, 2):
        c.put(k(i), 1, seg(10), "origin", 0)
    assert c.video_keys("vod-0000") == [k(1), k(2), k(3)] and c.video_keys("x") == []
    assert c.discard(k(2)) and not c.discard(k(2))
    assert c.video_keys("vod-0000") == [k(1), k(3)] and c.used_bytes == 20
    assert c.stats["removed"] == 1


@pytest.mark.parametrize("call, match", [
    (lambda c: c.put(("v", 0), 1, b"x", "cdn", 0), "origin"),
    (lambda c: c.put(("v", -1), 1, b"x", "tree", 0), "key"),
    (lambda c: c.put(["v", 0], 1, b"x", "tree", 0), "key"),
    (lambda c: c.put(("v", 0), -1, b"x", "tree", 0), "version"),
    (lambda c: c.put(("v", 0), 1, "x", "tree", 0), "data"),
    (lambda c: c.get(("v", 0), 0, min_version=-1), "min_version"),
    (lambda c: c.invalidate(7, 1), "video_id"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(CacheError, match=match):
        call(SegmentCache(100))


@pytest.mark.parametrize("capacity", [-1, 1.5, True, "100"])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity_bytes"):
        SegmentCache(capacity)


# -- properties against a reference model ------------------------------------------------------
class Model:
    """The cache's contract written the slow, obvious way."""

    def __init__(self, capacity, policy):
        self.capacity, self.policy = capacity, policy
        self.entries = {}   # key -> dict(version, size, freq, touched, inserted)
        self.floors = {}
        self.tick = 0

    def _rank(self, key):
        e = self.entries[key]
        return {"lru": (e["touched"],), "fifo": (e["inserted"],),
                "lfu": (e["freq"], e["touched"])}[self.policy]

    def put(self, key, version, size):
        self.tick += 1
        old = self.entries.get(key)
        if (version < self.floors.get(key[0], 0) or (old and version <= old["version"])
                or size > self.capacity):
            return []
        self.entries.pop(key, None)
        evicted = []
        while sum(e["size"] for e in self.entries.values()) + size > self.capacity:
            victim = min(self.entries, key=self._rank)
            del self.entries[victim]
            evicted.append(victim)
        self.entries[key] = {"version": version, "size": size, "freq": 1,
                             "touched": self.tick, "inserted": self.tick}
        return evicted

    def get(self, key, min_version):
        self.tick += 1
        e = self.entries.get(key)
        if e and e["version"] < min_version:
            del self.entries[key]
            e = None
        if e:
            e["freq"] += 1
            e["touched"] = self.tick
        return e["version"] if e else None

    def invalidate(self, video, version):
        self.floors[video] = max(self.floors.get(video, 0), version)
        dropped = sorted(k for k, e in self.entries.items()
                         if k[0] == video and e["version"] < self.floors[video])
        for key in dropped:
            del self.entries[key]
        return dropped


_keys = st.tuples(st.sampled_from(["vod-0000", "vod-0001", "live-00"]), st.integers(0, 5))
# a key, or (half the time) "the i-th cached key", so hits and re-puts are common
_key_refs = _keys | st.integers(0, 20)
# mostly round sizes, so exact fits and ties between equal-sized entries happen often
_sizes = st.sampled_from([0, 100, 100, 100, 200, 300]) | st.integers(0, 400)
_put = st.tuples(st.just("put"), _key_refs, st.integers(0, 3), _sizes, st.sampled_from(ORIGINS))
_ops = st.lists(st.one_of(
    _put, _put,
    st.tuples(st.just("get"), _key_refs, st.sampled_from([0, 0, 0, 1, 2])),
    st.tuples(st.just("peek"), _key_refs),
    st.tuples(st.just("invalidate"), _key_refs, st.integers(0, 3)),
    st.tuples(st.just("discard"), _key_refs),
), min_size=30, max_size=100)


def run_against_model(policy, capacity, ops):
    """Apply ops to a cache and to the model; check results and invariants after each."""
    c, m = SegmentCache(capacity, policy), Model(capacity, policy)
    for now, (op, ref, *args) in enumerate(ops):
        cached = c.keys()
        key = ref if isinstance(ref, tuple) else cached[ref % len(cached)] if cached else k(0)
        if op == "put":
            version, size, origin = args
            evicted = c.put(key, version, bytes([version]) * size, origin, float(now))
            assert evicted == m.put(key, version, size)
            assert not any(e in c for e in evicted)
        elif op == "get":
            (min_version,) = args
            e = c.get(key, float(now), min_version)
            assert (e.version if e else None) == m.get(key, min_version)
            assert e is None or (e.last_used == now and e.version >= min_version)
        elif op == "peek":
            e = c.peek(key)
            expected = m.entries[key]["version"] if key in m.entries else None
            assert (e.version if e else None) == expected
        elif op == "invalidate":
            assert c.invalidate(key[0], args[0]) == m.invalidate(key[0], args[0])
        elif c.discard(key):
            del m.entries[key]
        assert c.used_bytes <= c.capacity_bytes
        assert c.used_bytes == sum(c.peek(kk).size for kk in c)
        assert len(c) == len(m.entries) == len(c._policy)
    entries = [c.peek(kk) for kk in c]
    assert set(c.keys()) == set(m.entries) and list(c) == c.keys()
    assert all(e.version >= c.floor(e.key[0]) for e in entries)
    assert all(e.data == bytes([e.version]) * e.size for e in entries)
    s = c.stats
    assert s["inserts"] == sum(s[f"inserts_{o}"] for o in ORIGINS)


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(sorted(POLICIES)),
       capacity=st.sampled_from([0, 100, 300, 500]) | st.integers(0, 1000), ops=_ops)
def test_random_operations_match_the_model_and_respect_capacity(policy, capacity, ops):
    run_against_model(policy, capacity, ops)


def _long_run(rng, n):
    """n random ops, biased towards cached keys, small versions and round sizes."""
    ops = []
    for _ in range(n):
        ref = rng.randrange(20) if rng.random() < 0.5 else (
            rng.choice(["vod-0000", "vod-0001", "live-00"]), rng.randrange(6))
        op = rng.choice(["put", "put", "get", "get", "peek", "invalidate", "discard"])
        args = {"put": lambda: (rng.randrange(4) if rng.random() < 0.1 else 1,
                                rng.choice([0, 100, 100, 200, rng.randrange(400)]),
                                rng.choice(ORIGINS)),
                "get": lambda: (rng.choice([0, 0, 0, 0, 1, 2]),),
                "invalidate": lambda: (rng.randrange(3) if rng.random() < 0.1 else 0,),
                }.get(op, tuple)()
        ops.append((op, ref, *args))
    return ops


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("seed", range(8))
def test_long_random_runs_match_the_model(policy, seed):
    """Long seeded runs reach the deep states (many hits between evictions) lists rarely do."""
    import random

    rng = random.Random(seed)
    run_against_model(policy, rng.choice([300, 500, 700]), _long_run(rng, 400))
