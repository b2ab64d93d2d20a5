"""Turn a topology spec into a Mininet ``Topo``, for ``mn --custom``.

The testbed's own builder (``testbed.emu``) reads specs directly; this module
exists so every generator can also be tried by hand with the stock ``mn``
command, whose ``TCLink`` takes the link parameters as keyword options.
Mininet is imported only when a ``Topo`` is actually built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from testbed.core.spec import (
    LINK_FIELDS,
    SWITCH,
    LinkParams,
    SpecError,
    natural_key,
    switches,
    validate,
)

if TYPE_CHECKING:
    from mininet.topo import Topo


def _ms(value: float) -> str:
    """5.0 -> '5ms', 0.25 -> '0.25ms' (the form tc and TCLink expect)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "ms"


def tclink_opts(data: Mapping[str, Any]) -> dict[str, Any]:
    """TCLink keyword options for one edge's attributes; unset fields are left out."""
    p = LinkParams(**{k: data[k] for k in LINK_FIELDS if k in data})
    opts: dict[str, Any] = {}
    if p.delay_ms:
        opts["delay"] = _ms(p.delay_ms)
    if p.jitter_ms:
        opts["jitter"] = _ms(p.jitter_ms)
    if p.loss_pct:
        opts["loss"] = p.loss_pct
    if p.bw_mbit is not None:
        opts["bw"] = p.bw_mbit
    if p.queue_pkts is not None:
        opts["max_queue_size"] = p.queue_pkts
    return opts


def to_mininet_topo(g: nx.Graph) -> Topo:
    """A Mininet ``Topo`` with the nodes and links of spec ``g`` (validated first).

    Switches get datapath ids 1, 2, ... in natural name order (s1 -> 1 as in
    Mininet's default); link options are those of :func:`tclink_opts`, so run
    ``mn`` with ``--link tc`` for them to take effect.
    """
    from mininet.topo import Topo

    validate(g)
    topo = Topo()
    for dpid, name in enumerate(switches(g), start=1):
        topo.addSwitch(name, dpid=f"{dpid:016x}")
    for name in sorted(g.nodes, key=natural_key):
        if g.nodes[name]["role"] != SWITCH:
            topo.addHost(name)
    for u, v in sorted(g.edges, key=lambda e: (natural_key(e[0]), natural_key(e[1]))):
        topo.addLink(u, v, **tclink_opts(g.edges[u, v]))
    return topo


def topo_factory(name: str) -> Callable[..., Topo]:
    """The callable ``mn --topo name,key=value,...`` calls: generate, then convert."""

    def build(*args: object, **params: object) -> Topo:
        if args:
            raise SpecError(
                f"{name}: positional argument {args[0]!r}: write key=value, "
                "and lists with ':' (e.g. tier_delays_ms=3:25)"
            )
        from topologies import generate

        return to_mininet_topo(generate(name, **params))

    build.__name__ = f"{name}_topo"
    build.__doc__ = f"Mininet Topo of the {name!r} topology generator."
    return build
