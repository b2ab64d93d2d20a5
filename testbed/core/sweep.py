"""Sweeps: a scenario and the keys to vary, expanded into points (pure).

A sweep file (YAML)::

    name: mesh-degree
    scenario: ../default.yaml      # relative to the sweep file
    mode: grid                     # grid: every combination; zip: the i-th of each
    set: {duration_s: 90}          # the same overrides at every point
    axes:                          # scenario keys (as for --set) and their values
      delivery.mesh_degree: [1, 2, 3]
      policy: [mesh-pull, predictive]

Any key :meth:`testbed.scenario.Scenario.with_overrides` takes can be an axis:
``topology.params.helpers_per_region``, ``delivery.cache_mb``, ``links.defaults.delay``,
``viewers.zipf_s``, ``seed``, ``policy`` ...  Points are numbered in expansion order (the
last axis varies fastest in a grid); their ids (``p00``, ``p01`` ...) name their run
directories, so a resumed sweep finds the points it already ran.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("grid", "zip")
SWEEP_KEYS = ("name", "description", "scenario", "mode", "set", "axes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?)*$")
MAX_POINTS = 10_000


class SweepError(ValueError):
    """A sweep file that cannot be expanded; the message names the file and the key."""


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its id and the values of every axis (in axis order)."""

    id: str
    values: Mapping[str, Any]

    def overrides(self, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The scenario overrides of this point: the fixed ones, then its axis values."""
        return {**fixed, **self.values}

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass(frozen=True)
class Sweep:
    name: str
    scenario: Path
    axes: Mapping[str, tuple[Any, ...]]
    mode: str = "grid"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def points(self) -> list[Point]:
        """Every point, in order, with ids ``p00``... (as wide as the count needs)."""
        keys = list(self.axes)
        if self.mode == "zip":
            combos = list(zip(*(self.axes[k] for k in keys)))
        else:
            combos = list(itertools.product(*(self.axes[k] for k in keys)))
        width = max(2, len(str(len(combos) - 1)))
        return [Point(f"p{i:0{width}d}", dict(zip(keys, combo))) for i, combo in enumerate(combos)]

    def describe(self) -> dict[str, Any]:
        """Plain data that identifies the sweep (a resumed sweep must match it)."""
        return {"name": self.name, "scenario": str(self.scenario), "mode": self.mode,
                "set": dict(self.fixed), "axes": {k: list(v) for k, v in self.axes.items()},
                "points": len(self.points())}


def _fail(source: str, path: str, msg: str) -> SweepError:
    return SweepError(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")


def _key(source: str, where: str, key: Any) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise _fail(source, where, f"{key!r} is not a scenario key (e.g. delivery.cache_mb)")
    return key


def parse_sweep(data: Any, source: str, base: Path | None = None) -> Sweep:
    """A :class:`Sweep` from loaded YAML; ``base`` resolves a relative ``scenario`` path."""
    if not isinstance(data, Mapping):
        raise _fail(source, "", "expected a mapping with 'scenario' and 'axes'")
    unknown = sorted(str(k) for k in data if k not in SWEEP_KEYS)
    if unknown:
        raise _fail(source, unknown[0], f"unknown key (expected one of {', '.join(SWEEP_KEYS)})")
    if "scenario" not in data or not isinstance(data["scenario"], str) or not data["scenario"]:
        raise _fail(source, "scenario", "missing: the path of the scenario to sweep")
    scenario = Path(data["scenario"])
    if base is not None and not scenario.is_absolute():
        scenario = base / scenario
    stem = Path(source).stem
    name = data.get("name", stem if _NAME.match(stem) else "sweep")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(source, "name", f"{name!r}: use letters, digits, '.', '_' or '-'")
    mode = data.get("mode", "grid")
    if mode not in MODES:
        raise _fail(source, "mode", f"{mode!r} must be one of {', '.join(MODES)}")
    fixed = data.get("set") or {}
    if not isinstance(fixed, Mapping):
        raise _fail(source, "set", "expected a mapping of scenario keys to values")
    fixed = {_key(source, "set", k): v for k, v in fixed.items()}
    axes_in = data.get("axes")
    if not isinstance(axes_in, Mapping) or not axes_in:
        raise _fail(source, "axes", "expected a mapping of scenario keys to lists of values")
    axes: dict[str, tuple[Any, ...]] = {}
    for k, values in axes_in.items():
        key = _key(source, "axes", k)
        if not isinstance(values, list) or not values:
            raise _fail(source, f"axes.{key}", "expected a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise _fail(source, f"axes.{key}", f"repeats a value: {values!r}")
        if key in fixed:
            raise _fail(source, f"axes.{key}", "is also in 'set'; give it in one place")
        axes[key] = tuple(values)
    if mode == "zip" and len({len(v) for v in axes.values()}) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in axes.items())
        raise _fail(source, "axes", f"zip needs lists of one length, got {sizes}")
    sweep = Sweep(name=name, scenario=scenario, axes=axes, mode=mode, fixed=fixed,
                  description=str(data.get("description") or ""))
    n = len(sweep.points()) if mode == "zip" else _product(len(v) for v in axes.values())
    if n > MAX_POINTS:
        raise _fail(source, "axes", f"{n} points exceed {MAX_POINTS}")
    return sweep


def _product(sizes: Any) -> int:
    out = 1
    for s in sizes:
        out *= s
    return out


__all__ = ["MODES", "Point", "Sweep", "SweepError", "parse_sweep"]
