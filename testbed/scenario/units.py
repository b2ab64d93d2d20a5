"""Link quantities in a scenario file: numbers, or text with a unit, to ms, Mbit/s, % and packets.

Pure: every function takes a value as YAML gave it and returns the number in the
scenario's unit, or raises ``ValueError`` with the reason (the parser adds file and key).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")
_TIME_UNITS = {"": 1.0, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0,
               "us": 0.001, "usec": 0.001, "\u00b5s": 0.001}
_RATE_UNITS = {"": 1.0, "bit": 1e-6, "kbit": 1e-3, "mbit": 1.0, "gbit": 1000.0}


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return float(value)


def _quantity(value: object, units: Mapping[str, float], kind: str) -> float:
    """A number, or text "<number><unit>", scaled by ``units``."""
    if isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            raise ValueError(f"expected a {kind} like {_example(kind)}")
        unit = m.group(2).lower()
        if unit.endswith("/s") and kind == "rate":
            unit = unit[:-2]
        if unit not in units:
            hint = "; note tc's 'mbps' means megabytes/s" if unit.endswith("bps") else ""
            known = ", ".join(u for u in units if u)
            raise ValueError(f"unknown unit {m.group(2)!r}, use {known}{hint}")
        return _finite(float(m.group(1)) * units[unit])
    try:
        return _finite(value)
    except ValueError:
        raise ValueError(f"expected a {kind} like {_example(kind)}") from None


def _example(kind: str) -> str:
    return {"duration": "5ms, 0.5s or 500us", "rate": "10Mbit, 1Gbit or 500kbit"}[kind]


def parse_time_ms(value: object) -> float:
    """Delay or jitter in ms: 5 -> 5.0, "0.5s" -> 500.0, "500us" -> 0.5."""
    ms = _quantity(value, _TIME_UNITS, "duration")
    if ms < 0:
        raise ValueError("must be >= 0")
    return ms


def parse_rate_mbit(value: object) -> float:
    """Bandwidth in Mbit/s: 10 -> 10.0, "1Gbit" -> 1000.0, "500kbit" -> 0.5."""
    mbit = _quantity(value, _RATE_UNITS, "rate")
    if mbit <= 0:
        raise ValueError("must be > 0")
    return mbit


def parse_loss_pct(value: object) -> float:
    """Loss in percent: 1 -> 1.0, "1%" -> 1.0, "0.5 %" -> 0.5."""
    text = value.strip().removesuffix("%").strip() if isinstance(value, str) else value
    try:
        pct = _finite(float(text) if isinstance(text, str) else text)
    except ValueError:
        raise ValueError("expected a percentage like 1 or '1%'") from None
    if not 0 <= pct <= 100:
        raise ValueError("must be between 0 and 100")
    return pct


def parse_queue_pkts(value: object) -> int:
    """Queue length in packets: a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number of packets")
    if value < 1:
        raise ValueError("must be >= 1")
    return value
