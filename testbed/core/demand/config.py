"""How demand is framed (:class:`DemandConfig`) and what a bad input raises."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass


class DemandError(ValueError):
    """A bad demand configuration or input frame; one line naming what was wrong."""


def _positive(name: str, value: object, integer: bool = False) -> None:
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float)))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "an int" if integer else "a number"
        raise DemandError(f"demand {name} must be {kind} > 0, got {value!r}")


@dataclass(frozen=True)
class DemandConfig:
    """How demand is framed: horizon, snapshot step, windows, candidate limits, budget.

    ``horizon_s`` (H) is how far ahead a prediction reaches; ``step_s`` how often a
    snapshot is taken for training and evaluation (default H: disjoint label windows).
    ``budget`` is the number of pushes per helper and horizon the evaluation allows.
    """

    horizon_s: float = 5.0
    segment_s: float = 2.0
    step_s: float | None = None
    window_s: float = 60.0
    long_window_s: float = 300.0
    session_timeout_s: float = 30.0
    max_candidates: int = 100
    global_top: int = 10
    local_top: int = 5
    budget: int = 5
    min_expected: float = 0.0

    def __post_init__(self) -> None:
        for name in ("horizon_s", "segment_s", "window_s", "long_window_s",
                     "session_timeout_s"):
            _positive(name, getattr(self, name))
        if isinstance(self.min_expected, bool) or not isinstance(self.min_expected, (int, float)) \
                or not 0 <= self.min_expected < math.inf:
            raise DemandError(f"demand min_expected must be a number >= 0, "
                              f"got {self.min_expected!r}")
        if self.step_s is not None:
            _positive("step_s", self.step_s)
        for name in ("max_candidates", "global_top", "local_top", "budget"):
            _positive(name, getattr(self, name), integer=True)
        if not 1.0 <= self.horizon_s <= 60.0:
            raise DemandError(f"demand horizon_s must be within 1..60 s, got {self.horizon_s!r}")

    @property
    def step(self) -> float:
        return float(self.step_s if self.step_s is not None else self.horizon_s)

    @property
    def lookahead(self) -> int:
        """Segments after a session's last request that can be asked for within H."""
        return int(math.ceil(self.horizon_s / self.segment_s)) + 2

    @classmethod
    def from_mapping(cls, data: Mapping) -> DemandConfig:
        known = {f for f in cls.__dataclass_fields__}
        for key in data:
            if key not in known:
                raise DemandError(f"demand: unknown key {key!r} (known: {sorted(known)})")
        return cls(**dict(data))

    def as_dict(self) -> dict:
        return asdict(self)
