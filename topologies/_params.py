"""Generator parameters: type coercion against a signature, and range checks.

Parameters arrive from spec strings (``tiered,regions=4``), from ``mn --topo``
(where Mininet has already turned numeric strings into numbers) and from YAML
scenarios.  :func:`check_params` turns them into the types a generator's
signature declares, so every generator receives clean values and every bad
value gives a one-line :class:`ParamError` naming the parameter.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from testbed.core.spec import SpecError

#: How a list of numbers is written in a spec string: ``3:25`` (``,`` separates
#: parameters there), or ``3,25`` / ``3 25`` in YAML and Python.
_LIST_SEP = re.compile(r"[\s,:;/]+")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class ParamError(SpecError):
    """A generator parameter that is unknown, ill-typed or out of range."""

    def __init__(self, generator: str, param: str, value: object, reason: str) -> None:
        self.generator, self.param, self.value, self.reason = generator, param, value, reason
        self.unknown = value is _UNKNOWN  # the generator takes no such parameter
        if self.unknown:
            super().__init__(f"{generator}: {param}: {reason}")
        else:
            super().__init__(f"{generator}: {param}={value!r} ({reason})")


_UNKNOWN = object()  # marks "the key itself is wrong", not its value


def require(ok: bool, generator: str, param: str, value: object, reason: str) -> None:
    """Raise :class:`ParamError` unless ``ok``; generators use it for range checks."""
    if not ok:
        raise ParamError(generator, param, value, reason)


def unknown_param(generator: str, param: str, known: typing.Iterable[str]) -> ParamError:
    """The error for a parameter the generator does not take."""
    return ParamError(
        generator, param, _UNKNOWN, f"unknown parameter (expected one of {', '.join(known)})"
    )


def float_list(value: object) -> tuple[float, ...]:
    """``"3:25"``, ``"3,25"``, ``25`` or ``[3, 25]`` -> ``(3.0, 25.0)``; ValueError otherwise."""
    if isinstance(value, str):
        parts = [p for p in _LIST_SEP.split(value.strip()) if p]
        items: list[object] = [float(p) for p in parts]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    out = tuple(_number(v) for v in items)
    if not out:
        raise ValueError("empty list")
    return out


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    if not math.isfinite(value):
        raise ValueError("not finite")
    return float(value)


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint``; raises ValueError with what was expected."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, args[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
        raise ValueError("expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError("expected an integer")
    if hint is float:
        try:
            return _number(value)
        except ValueError:
            raise ValueError("expected a finite number") from None
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    if origin is tuple:
        try:
            return float_list(value)
        except ValueError:
            raise ValueError("expected numbers, written like 3:25") from None
    raise TypeError(f"unsupported parameter type {hint!r}")  # a generator bug, not user input


def signature_params(fn: Callable[..., object]) -> dict[str, object]:
    """Parameter name -> default value, in signature order."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def check_params(
    generator: str, fn: Callable[..., object], params: Mapping[str, object]
) -> dict[str, object]:
    """``params`` converted to the types in ``fn``'s signature; :class:`ParamError` if not."""
    known = signature_params(fn)
    hints = typing.get_type_hints(fn)
    out: dict[str, object] = {}
    for key, value in params.items():
        if key not in known:
            raise unknown_param(generator, key, known)
        try:
            out[key] = _coerce(value, hints[key])
        except ValueError as exc:
            raise ParamError(generator, key, value, str(exc)) from None
    return out
