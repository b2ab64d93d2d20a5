"""Integer codes for names and event counts over sliding windows, by binary search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class _WindowCounter:
    """Counts events per key within ``(t - w, t]`` by binary search over sorted (key, time)."""

    # Times are below 2**20 s (12 days) and keys below 2**30, so key * 2**21 + t is an exact
    # float64 ordering with sub-millisecond resolution.
    _SCALE = float(2 ** 21)

    def __init__(self, codes: np.ndarray, times: np.ndarray) -> None:
        self._comp = np.sort(codes.astype(np.float64) * self._SCALE + times)

    def count(self, codes: np.ndarray, t: np.ndarray, w: float) -> np.ndarray:
        base = codes.astype(np.float64) * self._SCALE
        hi = np.searchsorted(self._comp, base + t, side="right")
        lo = np.searchsorted(self._comp, base + np.maximum(t - w, -1.0), side="right")
        return (hi - lo).astype(np.float64)


class _Codes:
    """Stable integer codes for strings (helpers, videos, segment keys)."""

    def __init__(self) -> None:
        self.index: dict = {}

    def encode(self, values: Sequence) -> np.ndarray:
        out = np.empty(len(values), dtype=np.int64)
        index = self.index
        for i, v in enumerate(values):
            code = index.get(v)
            if code is None:
                code = index[v] = len(index)
            out[i] = code
        return out
