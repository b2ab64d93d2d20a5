"""Scenario problems: :class:`ScenarioError`, one line naming the file, the key path and the
value, and :class:`_Checker`, which checks a value's type and range and builds that line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import topologies
from testbed.scenario.units import _finite


class ScenarioError(ValueError):
    """A scenario that cannot be used; one line naming file, key path and value."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    """Builds one-line errors for one source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, reason: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {_show(value)} ({reason})")

    def mapping(self, data: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        """``data`` as a mapping whose keys are all in ``allowed``."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise self.fail(path, data, f"must be a mapping with keys {', '.join(allowed)}")
        for key in data:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                raise ScenarioError(
                    f"{self.source}: {where}: unknown key (expected one of {', '.join(allowed)})"
                )
        return data

    def integer(self, value: Any, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, value, "must be a whole number")
        if value < minimum:
            raise self.fail(path, value, f"must be >= {minimum}")
        return value

    def number(self, value: Any, path: str, minimum: float, strict: bool = False) -> float:
        try:
            x = _finite(value)
        except ValueError as exc:
            raise self.fail(path, value, str(exc)) from None
        if x < minimum or (strict and x == minimum):
            raise self.fail(path, value, f"must be {'>' if strict else '>='} {minimum:g}")
        return x

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, value, "must be text")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, value, "must be true or false")
        return value

    def fraction(self, value: Any, path: str) -> float:
        x = self.number(value, path, 0)
        if x > 1:
            raise self.fail(path, value, "must be between 0 and 1")
        return x

    def choice(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(path, value, f"must be one of {', '.join(allowed)}")
        return value


def _param_error(source: str, path: str, exc: topologies.ParamError) -> ScenarioError:
    where = f"{source}: {path}.{exc.param}"
    if exc.unknown:
        return ScenarioError(f"{where}: {exc.reason.replace('unknown parameter', 'unknown key')}")
    return ScenarioError(f"{where}: {_show(exc.value)} ({exc.reason})")
