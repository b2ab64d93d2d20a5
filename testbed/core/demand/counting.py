"""Integer codes for names and event counts over sliding windows, by binary search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


class _WindowCounter:
    """Counts events per key within ``(t - w, t]`` by binary search over sorted (key, time)."""

    # Times are below 2**20 s (12 days) and keys below 2**30, so key * 2**21 + t is an exact
    # float64 ordering with sub-millisecond resolution.
    _SCALE = float(2 ** 21)

    def __init__(self, codes: np.ndarray, times: np.ndarray) -> None:
        self._codes = np.asarray(codes, dtype=np.int64)
        self._base = self._codes.astype(np.float64) * self._SCALE
        self._raw = self._base + times
        self._comp: np.ndarray | None = None  # sorted when queried at several times

    def count(self, codes: np.ndarray, t: np.ndarray, w: float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if len(t) and len(self._raw) and (t == t[0]).all():
            return self._count_at(np.asarray(codes, dtype=np.int64), t[:1], w)
        if self._comp is None:
            self._comp = np.sort(self._raw)
        base = codes.astype(np.float64) * self._SCALE
        hi = np.searchsorted(self._comp, base + t, side="right")
        lo = np.searchsorted(self._comp, base + np.maximum(t - w, -1.0), side="right")
        return (hi - lo).astype(np.float64)

    def _count_at(self, codes: np.ndarray, t: np.ndarray, w: float) -> np.ndarray:
        """Every query at one time: each event is tested against its own key's bounds, by
        the same arithmetic as the binary search (so the same counts), then counted per key
        without sorting the events."""
        inside = (self._raw > self._base + np.maximum(t - w, -1.0)) & (self._raw <= self._base + t)
        keys = self._codes[inside]
        if len(keys) == 0 or len(codes) == 0:
            return np.zeros(len(codes))
        low = min(int(keys.min()), int(codes.min()))
        span = max(int(keys.max()), int(codes.max())) - low + 1
        if span <= 4 * (len(keys) + len(codes)) + 1024:
            per_key = np.bincount(keys - low, minlength=span)
            return per_key[codes - low].astype(np.float64)
        uniq, counts = np.unique(keys, return_counts=True)
        at = np.minimum(np.searchsorted(uniq, codes), len(uniq) - 1)
        return np.where(uniq[at] == codes, counts[at], 0).astype(np.float64)


class _Codes:
    """Stable integer codes for strings (helpers, videos, segment keys)."""

    def __init__(self) -> None:
        self.index: dict = {}

    def encode(self, values: Sequence) -> np.ndarray:
        """Each value's code; a value not seen before gets the next one, in order of first
        appearance (one pass in C over the values, a Python step per distinct value)."""
        if len(values) == 0:
            return np.empty(0, dtype=np.int64)
        if not isinstance(values, (pd.Series, pd.Index)):  # a column is coded as it is
            values = np.asarray(values, dtype=object)
        first, distinct = pd.factorize(values, use_na_sentinel=False)
        index = self.index
        codes = np.empty(len(distinct), dtype=np.int64)
        for j, v in enumerate(distinct.tolist()):
            code = index.get(v)
            if code is None:
                code = index[v] = len(index)
            codes[j] = code
        return codes[np.asarray(first)]
