"""The workload's error, and the checks its parameters go through."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

#: Slack for float comparisons (positions, shares).
_EPS = 1e-9


class WorkloadError(ValueError):
    """A bad workload parameter or trace."""


def _number(name: str, value: object, low: float | None = None, high: float | None = None,
            *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise WorkloadError(f"workload {name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise WorkloadError(f"workload {name} must be {'>' if low_open else '>='} {low}, "
                            f"got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise WorkloadError(f"workload {name} must be {'<' if high_open else '<='} {high}, "
                            f"got {value!r}")
    return v


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise WorkloadError(f"workload {name} must be non-empty text, got {value!r}")
    return value


def _items(name: str, value: object) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (tuple, list)):
        raise WorkloadError(f"workload {name} must be a list, got {value!r}")
    return tuple(value)


def _durations(name: str, value: object) -> tuple[tuple[str, float], ...]:
    out = []
    seen: set[str] = set()
    for entry in _items(name, value):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (tuple, list)) \
                or len(entry) != 2:
            raise WorkloadError(f"workload {name} entry must be (id, duration_s), got {entry!r}")
        vid = _text(f"{name} id", entry[0])
        if vid in seen:
            raise WorkloadError(f"workload {name}: id {vid!r} appears twice")
        seen.add(vid)
        out.append((vid, _number(f"{name} duration of {vid!r}", entry[1], 0.0, low_open=True)))
    return tuple(out)
