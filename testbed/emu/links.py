"""Mininet link and interface classes for the testbed's one link type.

A link is shaped the same way in both modes (htb rate on each end's egress, with a
lower-priority class for prefetch pushes; offloads off); delay, jitter and loss come from
netem on the same interfaces, or, in userspace mode, from the link emulator sitting
between two veth pairs:

    node1:intf1 <-veth-> relay_a (root ns)  [linkemu]  relay_b (root ns) <-veth-> node2:intf2

With XDP switch ports (Open vSwitch's userspace datapath on ``afxdp`` ports) a
switch sends through an XDP socket, which hands frames to the veth past its qdiscs, so a
switch's egress shaping cannot sit on the switch's own port.  It sits on the next egress
its frames meet instead: the far relay's (``relay_b`` for a switch at ``node1``) when the
link has a delay line, else an ``ifb`` device fed by the ingress of the host at the other
end.  The frames see the same rate and queue; with a delay line the queue comes after the
link's delay rather than before it, which for a constant delay gives the same departure
times (a FIFO server and a fixed delay commute).
"""

from __future__ import annotations

from dataclasses import dataclass

from mininet.link import Intf, Link
from mininet.node import Switch
from mininet.util import quietRun

from testbed.core.spec import LinkParams
from testbed.emu import tc


class ShapingError(RuntimeError):
    """A tc or ip command that should have worked did not."""


def _check(output: str, cmd: str, where: str) -> None:
    if output.strip():
        raise ShapingError(f"{where}: '{cmd}' failed: {output.strip()}")


@dataclass(frozen=True)
class ShapingSite:
    """Where an interface's egress shaping lives when not on the interface itself:
    device ``dev`` in ``node``'s namespace (``node`` None: the root namespace)."""

    dev: str
    node: object | None = None

    def cmd(self, command: str) -> str:
        if self.node is None:
            return quietRun(command)
        return self.node.cmd(command)


class EmuIntf(Intf):
    """An interface with offloads off and the link's egress shaping applied."""

    def config(self, link_params: LinkParams | None = None, mode: str = tc.USERSPACE,
               shape_at: ShapingSite | None = None, **params):
        result = super().config(**params)
        self.cmd(tc.offload_command(self.name))
        self.link_params = link_params or LinkParams()
        self.mode = mode
        self.shape_at = shape_at
        self.apply_shaping()
        return result

    @property
    def shaping_device(self) -> str:
        """The device whose egress holds this interface's shaping."""
        return self.shape_at.dev if self.shape_at else self.name

    def _shaping_cmd(self, command: str) -> str:
        return self.shape_at.cmd(command) if self.shape_at else self.cmd(command)

    def apply_shaping(self) -> None:
        """(Re)install the egress qdiscs; Open vSwitch drops them when it adds a port."""
        where = f"{self.node.name}:{self.name}" + (
            f" (on {self.shape_at.dev})" if self.shape_at else "")
        for cmd in tc.tc_commands(self.shaping_device, self.link_params, self.mode):
            _check(self._shaping_cmd(cmd), cmd, where)

    def shaping_problems(self) -> list[str]:
        """What of the link's plan (qdiscs, htb classes, push filter) this interface lacks."""
        plan = tc.shaping_plan(self.link_params, self.mode)
        if not plan.qdiscs:
            return []
        classes = self.tc_show("class") if plan.classes else ""
        filters = self.tc_show("filter") if plan.filters else ""
        return tc.shaping_problems(plan, self.tc_show("qdisc"), classes, filters)

    def tc_show(self, part: str, stats: bool = False) -> str:
        """``tc [-s] PART show`` of the device that holds this interface's shaping."""
        flag = "-s " if stats else ""
        return self._shaping_cmd(f"tc {flag}{part} show dev {self.shaping_device}")

    def shaping_in_place(self) -> bool:
        """True when everything the link needs is installed on this interface."""
        return not self.shaping_problems()


class EmuLink(Link):
    """A Mininet link; with ``relays=(a, b)`` it is two veth pairs meeting in the root ns.

    ``xdp_ports``: the switches' ports are XDP sockets, so a switch end's shaping goes to
    the far relay, or to an ``ifb`` on the host at the other end (see the module's notes).
    """

    def __init__(self, node1, node2, relays: tuple[str, str] | None = None,
                 xdp_ports: bool = False, **params):
        self.relays = relays
        self.ifbs: list[tuple[object, str, int]] = []  # (host, ifb, which intf feeds it)
        params["intf"] = EmuIntf
        plan = tc.shaping_plan(params.get("link_params") or LinkParams(),
                               params.get("mode", tc.USERSPACE))
        if xdp_ports and plan.qdiscs:
            for side, (node, other) in enumerate(((node1, node2), (node2, node1)), start=1):
                if not isinstance(node, Switch):
                    continue
                site = self._site_for_switch_end(side, other)
                key = "params1" if side == 1 else "params2"
                params[key] = {**(params.get(key) or {}), "shape_at": site}
        super().__init__(node1, node2, **params)
        for host, ifb, side in self.ifbs:
            intf = self.intf1 if side == 1 else self.intf2
            for cmd in (f"tc qdisc replace dev {intf.name} ingress",
                        f"tc filter add dev {intf.name} parent ffff: protocol all prio 1 u32 "
                        f"match u32 0 0 action mirred egress redirect dev {ifb}"):
                _check(host.cmd(cmd), cmd, f"{host.name}:{intf.name}")

    def _site_for_switch_end(self, side: int, other) -> ShapingSite:
        """Where the egress shaping of the switch at ``side`` (1 or 2) goes."""
        if self.relays:
            return ShapingSite(self.relays[1] if side == 1 else self.relays[0])
        if isinstance(other, Switch):
            raise ValueError(f"link to {other.name}: a link between two switches with XDP "
                             "ports needs relays to hold its shaping")
        ifb = f"mcifb{len(getattr(other, 'meshcast_ifbs', []))}"
        other.meshcast_ifbs = [*getattr(other, "meshcast_ifbs", []), ifb]
        # an ifb queues 32 frames by default; the veth it stands in for, tc.DEFAULT_LIMIT
        for cmd in (f"ip link add {ifb} type ifb",
                    f"ip link set dev {ifb} txqueuelen {tc.DEFAULT_LIMIT} up"):
            _check(other.cmd(cmd), cmd, f"{other.name}:{ifb}")
        self.ifbs.append((other, ifb, 2 if side == 1 else 1))
        return ShapingSite(ifb, other)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None,  # noqa: N802
                     node1=None, node2=None, deleteIntfs=True):  # noqa: N803
        if not self.relays:
            return Link.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                     deleteIntfs=deleteIntfs)
        relay_a, relay_b = self.relays
        for relay, name, addr, node in ((relay_a, intfname1, addr1, node1),
                                        (relay_b, intfname2, addr2, node2)):
            address = f" address {addr}" if addr else ""
            cmd = (f"ip link add name {relay} type veth peer name {name}{address} "
                   f"netns {node.pid}")
            _check(quietRun(cmd), cmd, "relay")
            for cmd in (f"ip link set dev {relay} up", f"ip link set dev {relay} mtu 1500"):
                _check(quietRun(cmd), cmd, "relay")
            quietRun(tc.offload_command(relay))
        return None

    def delete(self):
        super().delete()
        for relay in self.relays or ():
            quietRun(f"ip link del {relay}")
