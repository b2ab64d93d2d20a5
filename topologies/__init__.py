"""Topology generators: named functions that return a validated topology spec.

Use :func:`generate` with a registry name and keyword parameters, or a spec
string such as ``"tiered,regions=4,tier_delays_ms=3:25"`` through
:func:`parse_spec_string` (the same ``name,key=value`` form as ``mn --topo``;
lists are written with ``:`` because ``,`` separates parameters).  Each
generator module is also a ``mn --custom`` file with a ``topos`` dict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import networkx as nx

from testbed.core.spec import SpecError, validate
from topologies import chain, geometric, isp, line, tiered
from topologies._params import ParamError, check_params, signature_params

__all__ = [
    "GENERATORS",
    "ParamError",
    "SpecError",
    "SpecStringError",
    "check_params_for",
    "generate",
    "parameters",
    "parse_spec_string",
]

#: Registry name -> generator (keyword-only parameters, returns an nx.Graph).
GENERATORS: dict[str, Callable[..., nx.Graph]] = {
    "chain": chain.make_chain,
    "geometric": geometric.make_geometric,
    "isp": isp.make_isp,
    "line": line.make_line,
    "tiered": tiered.make_tiered,
}

_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


def _lookup(name: str) -> Callable[..., nx.Graph]:
    try:
        return GENERATORS[name]
    except (KeyError, TypeError):
        raise SpecError(
            f"unknown topology generator {name!r} (expected one of {', '.join(sorted(GENERATORS))})"
        ) from None


def parameters(name: str) -> dict[str, object]:
    """Parameter name -> default for generator ``name``, in signature order."""
    return signature_params(_lookup(name))


def check_params_for(name: str, params: Mapping[str, object]) -> dict[str, object]:
    """``params`` converted to generator ``name``'s types; :class:`ParamError` if not.

    Unknown names and wrong types are caught here; ranges are checked when the
    generator runs.
    """
    return check_params(name, _lookup(name), params)


def _scalar(text: str) -> object:
    """Like Mininet's ``makeNumeric``, plus true/false: '4' -> 4, '0.5' -> 0.5."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text


class SpecStringError(SpecError):
    """A malformed spec string; ``detail`` says what is wrong without repeating it."""

    def __init__(self, text: object, detail: str) -> None:
        self.text, self.detail = text, detail
        super().__init__(f"topology spec string {text!r}: {detail}")


def parse_spec_string(text: str) -> tuple[str, dict[str, object]]:
    """``"tiered,regions=4,seed=2"`` -> ``("tiered", {"regions": 4, "seed": 2})``.

    Raises :class:`SpecStringError` for an empty name, a part without ``=``, an
    empty or repeated key.  Names and values are not checked here.
    """
    if not isinstance(text, str):
        raise SpecStringError(text, "expected text like 'tiered,regions=4'")
    name, *parts = (p.strip() for p in text.split(","))
    if not name:
        raise SpecStringError(text, "missing generator name")
    params: dict[str, object] = {}
    for part in parts:
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or not key:
            raise SpecStringError(
                text, f"{part!r} is not key=value (write lists with ':', e.g. tier_delays_ms=3:25)"
            )
        if key in params:
            raise SpecStringError(text, f"{key!r} given twice")
        params[key] = _scalar(value)
    return name, params


def generate(name: str, **params: object) -> nx.Graph:
    """Run generator ``name`` with ``params`` and return its validated spec.

    Raises :class:`SpecError` (:class:`ParamError` for a parameter) with a
    one-line message for an unknown generator or parameter, a wrong type or
    value, or a spec that does not validate.
    """
    fn = _lookup(name)
    g = fn(**check_params(name, fn, params))
    try:
        validate(g)
    except SpecError as exc:
        raise SpecError(f"{name}: {exc}") from None
    return g
